# One entry point for people and CI. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SIM_ARGS ?=
# `make sim` writes runs/default; `make sim SIM_ARGS=...` its own folder, named by a hash of the arguments,
# so trying a flag never replaces an earlier run (fedcore refuses a non-empty --out without --overwrite).
SIM_OUT ?= $(if $(strip $(SIM_ARGS)),runs/sim-$(shell printf '%s' "$(SIM_ARGS)" | sha256sum | cut -c1-10),runs/default)
# The oldest Python that pyproject.toml promises (requires-python >= 3.10), if this machine has it.
OLDEST_PYTHON ?= $(shell for p in $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10 python3.10; do \
	"$$p" --version >/dev/null 2>&1 && { command -v "$$p"; break; }; done)
OLD_VENV := .venv-py310

RUST_SOURCES := $(shell find rust/src -name '*.rs') Cargo.toml .cargo/config.toml
PY_META := pyproject.toml

.PHONY: help sim study test lint rust-test py-test bench bench-rust fuzz fuzz-million clean test-oldest-python

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python $(RUST_SOURCES) $(PY_META)
	$(BIN)/pip install -q -e '.[dev,torch,mlx,hf,flower,ray]'
	@touch $(STAMP)

# The folder is named by the args, so --overwrite only ever replaces a run of the same args (same numbers).
sim: $(STAMP) ## set up and run the default simulation (runs/default; with SIM_ARGS=...: runs/sim-<hash>)
	$(BIN)/fedcore sim --overwrite --out $(SIM_OUT) $(SIM_ARGS)

study: $(STAMP) ## the accuracy-per-byte study (264 runs, about 45 min on 2 cores): runs/study/results.md
	$(BIN)/fedcore sweep --out runs/study

test: lint rust-test py-test ## set up and run every check: fmt, clippy, cargo test, ruff, mypy, pytest

lint: $(STAMP) ## formatting and static checks, Rust and Python
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	$(BIN)/ruff check python tests benches docs examples
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest fedcodec._fedcodec --mypy-config-file pyproject.toml

rust-test: ## the Rust core's unit and property tests (no Python)
	cargo test --quiet

py-test: $(STAMP) ## pytest (exit code 5, "no tests ran", fails too)
	$(BIN)/pytest -q

# Not part of `make test`: the first run builds the Rust extension for 3.10 (minutes, over the 2-minute budget).
test-oldest-python: ## the CLI smoke tests under Python 3.10 when this machine has one (else: says so, exits 0)
	@if [ -z "$(OLDEST_PYTHON)" ]; then echo "no python3.10 here: skipped"; exit 0; fi; \
	set -e; [ -x $(OLD_VENV)/bin/python ] || $(OLDEST_PYTHON) -m venv $(OLD_VENV); \
	$(OLD_VENV)/bin/pip install -q -e '.[dev]'; \
	$(OLD_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/fedcore/test_cli_smoke.py

bench: $(STAMP) ## kernels beside the numpy/torch way; prints one table and writes benches/RESULTS.md
	$(BIN)/python benches/report.py

bench-rust: ## criterion benches of the Rust core
	cargo bench

clean: ## remove build outputs and the virtualenv
	rm -rf target $(VENV) $(OLD_VENV) python/fedcodec/*.so .pytest_cache .mypy_cache .ruff_cache

fuzz-million: ## mutation fuzz of every decoder, 1,000,000 frames: crashes, non-finite outputs, slowest frame, peak memory
	FEDCODEC_FUZZ_FRAMES=1000000 cargo test --test fuzz -- --nocapture
