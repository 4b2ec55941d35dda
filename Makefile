# One entry point for people and CI. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SIM_ARGS ?=

RUST_SOURCES := $(shell find rust/src -name '*.rs') Cargo.toml
PY_META := pyproject.toml

.PHONY: help sim study test lint rust-test py-test bench bench-rust fuzz fuzz-million clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python $(RUST_SOURCES) $(PY_META)
	$(BIN)/pip install -q -e '.[dev,torch,mlx]'
	@touch $(STAMP)

sim: $(STAMP) ## set up and run the default simulation (digits, 100 clients, FedAvg, torch)
	$(BIN)/fedcore sim --out runs/default $(SIM_ARGS)

study: $(STAMP) ## the accuracy-per-byte study (264 runs, about 45 min on 2 cores): runs/study/results.md
	$(BIN)/fedcore sweep --out runs/study

test: lint rust-test py-test ## set up and run every check: fmt, clippy, cargo test, ruff, mypy, pytest

lint: $(STAMP) ## formatting and static checks, Rust and Python
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	$(BIN)/ruff check python tests benches docs
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest fedcodec._fedcodec --mypy-config-file pyproject.toml

rust-test: ## the Rust core's unit and property tests (no Python)
	cargo test --quiet

py-test: $(STAMP) ## pytest (exit code 5, "no tests ran", fails too)
	$(BIN)/pytest -q

bench: $(STAMP) ## kernels beside the numpy/torch way; prints one table and writes benches/RESULTS.md
	$(BIN)/python benches/report.py

bench-rust: ## criterion benches of the Rust core
	cargo bench

clean: ## remove build outputs and the virtualenv
	rm -rf target $(VENV) python/fedcodec/*.so .pytest_cache .mypy_cache .ruff_cache

fuzz-million: ## mutation fuzz of every decoder, 1,000,000 frames: crashes, non-finite outputs, slowest frame, peak memory
	FEDCODEC_FUZZ_FRAMES=1000000 cargo test --test fuzz -- --nocapture
