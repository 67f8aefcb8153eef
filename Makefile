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

.PHONY: install lock run test clean
# What both entry points install is the lock, exactly: every package at its locked version and
# hash, none resolved on the day (requirements/README.md). A changed lock rebuilds the venv, so
# nothing from an older set stays behind; a changed pyproject.toml only reinstalls autodp.
LOCK ?= requirements/lock.txt
LOCKED := $(VENV)/.locked-$(notdir $(basename $(LOCK)))
STAMP := $(VENV)/.installed-$(notdir $(basename $(LOCK)))
install: $(STAMP)
export AUTODP_LOCK := $(abspath $(LOCK))
$(LOCKED): $(LOCK)
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)
	$(BIN)/pip install -q --no-deps --require-hashes -r $(LOCK)
	touch $@
$(STAMP): $(LOCKED) pyproject.toml
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Re-resolve on purpose: after a change to pyproject.toml's ranges or requirements/*.in, or to
# take upstream releases. uv resolves for a named target without installing it, so the GPU set
# (vllm, CUDA torch) is locked from a CPU machine too. uv does not read pip's config: it is given
# pip's find-links, where this machine kind keeps its CPU torch (requirements/cpu-constraints.txt).
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --quiet \
  --custom-compile-command "make lock"
FIND_LINKS ?= $(shell $(PY) -m pip config get global.find-links 2>/dev/null)
lock:
	@test -n "$(FIND_LINKS)" || { echo "make lock: pip has no find-links holding the CPU torch (set FIND_LINKS=dir)"; exit 2; }
	test -x $(BIN)/pip || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)
	mkdir -p .cache
	$(BIN)/uv pip compile requirements/no-deps.in --no-deps $(TARGET) --no-header -o .cache/no-deps.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev $(TARGET) --find-links $(FIND_LINKS) \
	  -c requirements/cpu-constraints.txt -o requirements/lock.txt.tmp
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra vllm $(TARGET) -o requirements/lock-gpu.txt.tmp
	for f in lock lock-gpu; do cat .cache/no-deps.txt >> requirements/$$f.txt.tmp && \
	  mv requirements/$$f.txt.tmp requirements/$$f.txt; done

run: install
	$(BIN)/python launch.py

# As root, the localhost SLURM cluster starts first (slurm/local-cluster.sh; it stays up for the
# next run) and SLURM_CONF points the tests at it. Where it cannot start, the SLURM tests skip
# and pytest's summary says why; with AUTODP_REQUIRE_SLURM=1 (.ci/run sets it) they fail.
# A local Ray cluster (slurm/local-ray.sh; it stays up too) must start: the Ray tests join it.
test: install
	@line=$$(PATH=$(CURDIR)/$(BIN):$$PATH slurm/local-ray.sh start) || { echo "make test: the local Ray cluster did not start"; exit 1; }; \
	eval "$$line"; \
	if [ "$$(id -u)" -ne 0 ]; then echo "make test: not root, no SLURM cluster started"; \
	elif line=$$(slurm/local-cluster.sh start); then eval "$$line"; \
	else echo "make test: the SLURM cluster did not start (see above): the SLURM tests will skip (fail with AUTODP_REQUIRE_SLURM=1)"; fi; \
	$(BIN)/python -m pytest -q --durations=25 tests; rc=$$?; [ $$rc -eq 5 ] && { echo "no tests collected"; exit 0; }; exit $$rc

clean:
	rm -rf $(VENV) .cache outputs multirun
