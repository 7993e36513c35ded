#!/usr/bin/env bash
# Issue-8 figures on a GPU machine: the scheduler's overhead, BERT-base serving figures on ONNX
# Runtime CUDA FP16 and PyTorch CUDA FP16 (benchmarks/serving_figures.py), and the plugin's own
# offline/server cases there (reports included), plus an ORT CUDA run with TunableOp kernel
# tuning on. Writes JSON, Markdown and HTML under OUTDIR.
#   bash benchmarks/gpu_serving.sh OUTDIR [STEP...]
# STEPs: overhead ort-cuda torch-cuda plugin (default: all four; one device call of 10 minutes
# holds about two of them).
set -uo pipefail
out=${1:?usage: gpu_serving.sh OUTDIR [overhead|ort-cuda|torch-cuda|plugin]...}
shift
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(overhead ort-cuda torch-cuda plugin)
mkdir -p "$out"
plugin=(-p pytest_xfperf.plugin)
python3 -c "import importlib.metadata as m; m.version('pytest-xfperf')" 2>/dev/null && plugin=()
start=$(date +%s)
for step in "${steps[@]}"; do
  case "$step" in
    overhead)
      python3 benchmarks/serving_figures.py overhead > "$out/overhead.json" 2> "$out/overhead.err";;
    ort-cuda|torch-cuda)
      python3 benchmarks/serving_figures.py model --model bert-base --backend "$step" \
        --precision fp16 --requests 2000 --batches 1,8,32,64 --server-batch 64 --budget 60 \
        > "$out/bert-base_${step}_fp16.json" 2> "$out/bert-base_${step}.err";;
    plugin)
      python3 -m pytest "${plugin[@]}" tests/perf -p no:cacheprovider -q -rs --xfperf \
        --xfperf-models bert-base --xfperf-backends ort-cuda,torch-cuda --xfperf-precisions fp16 \
        --xfperf-shapes 64x128 --xfperf-scenarios single-stream,offline,server \
        --xfperf-serving-requests 2000 --xfperf-server-budget 60 \
        --xfperf-baselines /tmp/gpu-baselines --xfperf-report "$out/plugin.json" \
        --xfperf-markdown "$out/plugin.md" --xfperf-html "$out/plugin.html" \
        --xfperf-prices "gpu-nvidia-h100-80gb-hbm3-x1-cpu-intel-xeon-16c=3.0" \
        > "$out/plugin.txt" 2>&1
      echo "plugin run rc=$?"
      # Kernel tuning: ORT CUDA with TunableOp on, from a project whose pyproject turns it on
      # (the setting is recorded in the result's settings).
      tune=$(mktemp -d)
      cp tests/perf/test_inference.py "$tune/test_tuned.py"
      printf '[tool.xfperf]\nmodels = ["bert-base"]\n[tool.xfperf.ort-cuda]\ntunable_op = true\n' \
        > "$tune/pyproject.toml"
      (cd "$tune" && python3 -m pytest "${plugin[@]}" test_tuned.py -p no:cacheprovider -q \
        --xfperf --xfperf-backends ort-cuda --xfperf-precisions fp16 \
        --xfperf-shapes 1x128,64x128 --xfperf-report "$out/tuned.json") > "$out/tuned.txt" 2>&1
      echo "tuned run rc=$?";;
    *) echo "unknown step $step" >&2; exit 2;;
  esac
  echo "$step done at $(( $(date +%s) - start )) s"
done
