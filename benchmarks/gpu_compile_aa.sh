#!/usr/bin/env bash
# Unchanged re-runs (A/A) of torch-compile on a GPU through the plugin's own runs: how far a
# compiled case's device time moves between processes, the figure GatePolicy's spread for its
# pacing rests on. Each step is one `pytest --xfperf tests/perf` process at a 5 % tolerance.
#   bash benchmarks/gpu_compile_aa.sh OUTDIR BASELINES STEP...
# Steps: record | gate (BERT-base seq 128, batch 1 and 32, every torch-compile precision);
# gen-record | gen-gate (gpt2-small and llama-tiny generation on GEN_BACKENDS, default
# torch-compile; e.g. GEN_BACKENDS=torch-cuda-graph,torch-compile for both captured generators).
# A step is skipped once DEADLINE_S seconds (default 430) have passed since the script began.
# Writes each run's JSON report and terminal output under OUTDIR; the baselines go to BASELINES
# and the runs' history to BASELINES.history.db, both copied to OUTDIR at the end, where
#   python -m pytest_xfperf history spreads --history OUTDIR/history.db --baseline FILE
# reads the A/A spreads from them.
set -uo pipefail
out=${1:?usage: gpu_compile_aa.sh OUTDIR BASELINES STEP...}
base=${2:?usage: gpu_compile_aa.sh OUTDIR BASELINES STEP...}
shift 2
began=$(date +%s)
deadline=${DEADLINE_S:-430}
mkdir -p "$out" "$base"
plugin=(-p pytest_xfperf.plugin)
python3 -c "import importlib.metadata as m; m.version('pytest-xfperf')" 2>/dev/null && plugin=()
encoder=(--xfperf-models bert-base --xfperf-backends torch-compile
         --xfperf-precisions fp16,bf16,int8-dynamic,fp8 --xfperf-shapes 1x128,32x128)
generation=(--xfperf-models gpt2-small,llama-tiny --xfperf-backends "${GEN_BACKENDS:-torch-compile}"
            --xfperf-precisions fp16,bf16 --xfperf-shapes b1p128n32,b8p128n32)
run() {  # NAME ARGS...: one pytest --xfperf run, its report and its output under OUTDIR
  local name=$1; shift
  local start=$(date +%s)
  if (( start - began > deadline )); then
    echo "$name: skipped, $(( start - began )) s past the start" | tee -a "$out/runs.txt"
    return
  fi
  python3 -m pytest "${plugin[@]}" tests/perf -p no:cacheprovider -q -rs --xfperf \
    --xfperf-history "$base.history.db" --xfperf-tolerance 5% --xfperf-tolerances speedup=0.05 \
    --xfperf-baselines "$base" --xfperf-cache-dir /tmp/xfperf-aa-cache \
    --xfperf-report "$out/$name.json" "$@" > "$out/$name.txt" 2>&1
  echo "$name: exit $? in $(( $(date +%s) - start )) s ($(date -u +%H:%M:%S) UTC)" \
    | tee -a "$out/runs.txt"
}
index=0
for step in "$@"; do
  index=$((index + 1))
  case "$step" in
    record) run "${index}_record" "${encoder[@]}" --xfperf-update-baselines;;
    gate) run "${index}_gate" "${encoder[@]}";;
    gen-record) run "${index}_gen_record" "${generation[@]}" --xfperf-update-baselines;;
    gen-gate) run "${index}_gen_gate" "${generation[@]}";;
    *) echo "unknown step $step" >&2; exit 2;;
  esac
done
cp -r "$base" "$out/baselines"
cp "$base.history.db" "$out/history.db"
