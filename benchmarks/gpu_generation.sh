#!/usr/bin/env bash
# Generation on a GPU through the plugin's own runs: a smoke of every PyTorch GPU generation
# backend and precision on the tiny models (recorded, then gated in a second process), and
# llama-small figures (TTFT, TPOT, tokens/s, % of peak and bandwidth, token agreement).
#   bash benchmarks/gpu_generation.sh OUTDIR [smoke|compile|llama-b1|llama-b32|bf16|gpt2-quantized|
#                                              ort-smoke|ort-llama]...
# (compile: the smoke on torch-compile and torch-cuda-graph only; bf16: llama-small and
# gpt2-small compiled in BF16, for the BF16 token bar; gpt2-quantized: gpt2-small compiled in
# INT8 and FP8 at b32; ort-smoke, ort-llama: ONNX Runtime's captured generation, below.)
# Writes each run's JSON report, its terminal output and the smoke's baseline file under OUTDIR.
set -uo pipefail
out=${1:?usage: gpu_generation.sh OUTDIR [smoke|llama]...}
shift
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(smoke llama-b1 llama-b32)
mkdir -p "$out"
plugin=(-p pytest_xfperf.plugin)
python3 -c "import importlib.metadata as m; m.version('pytest-xfperf')" 2>/dev/null && plugin=()
run() {  # NAME ARGS...: one pytest --xfperf run, its report and its output under OUTDIR
  local name=$1; shift
  local began=$(date +%s)
  python3 -m pytest "${plugin[@]}" tests/perf -p no:cacheprovider -q -rs --xfperf \
    --xfperf-history off --xfperf-tolerance 10% --xfperf-tolerances speedup=0.1 \
    --xfperf-report "$out/$name.json" "$@" > "$out/$name.txt" 2>&1
  local status=$?
  echo "$name: exit $status in $(( $(date +%s) - began )) s ($(date -u +%H:%M:%S) UTC)" \
    | tee -a "$out/runs.txt"
  return $status
}
for step in "${steps[@]}"; do
  case "$step" in
    smoke|compile)
      backends=torch-cuda,torch-cuda-graph,torch-compile
      [ "$step" = compile ] && backends=torch-cuda-graph,torch-compile
      smoke=(--xfperf-models gpt2-tiny,llama-tiny --xfperf-backends "$backends"
             --xfperf-precisions fp16,int8-dynamic,fp8 --xfperf-shapes b2p32n8
             --xfperf-baselines "$out/baselines")
      run "${step}_record" "${smoke[@]}" --xfperf-update-baselines
      run "${step}_gate" "${smoke[@]}";;
    llama-b1|llama-b32)
      run "${step/-/_small_}" --xfperf-models llama-small \
        --xfperf-backends torch-cuda-graph,torch-compile \
        --xfperf-precisions fp16,int8-dynamic,fp8 --xfperf-shapes "${step#llama-}p128n64";;
    bf16)
      run bf16_small --xfperf-models llama-small,gpt2-small --xfperf-backends torch-compile \
        --xfperf-precisions bf16 --xfperf-shapes b1p128n64,b32p128n64;;
    gpt2-quantized)
      run gpt2_small_quantized --xfperf-models gpt2-small --xfperf-backends torch-compile \
        --xfperf-precisions int8-dynamic,fp8 --xfperf-shapes b32p128n64;;
    ort-smoke|ort-llama)
      # ort-cuda-graph's captured generation, recorded then gated at 5 %: the tiny models,
      # or llama-small next to ort-cuda (the same fusions, its steps launched one by one).
      # A later --xfperf-tolerance wins over run()'s 10 %.
      if [ "$step" = ort-smoke ]; then
        ort=(--xfperf-models gpt2-tiny,llama-tiny --xfperf-backends ort-cuda-graph
             --xfperf-shapes b2p32n8)
      else
        ort=(--xfperf-models llama-small --xfperf-backends ort-cuda,ort-cuda-graph
             --xfperf-shapes b1p128n32,b8p128n32)
      fi
      ort+=(--xfperf-precisions fp32,fp16 --xfperf-baselines "$out/baselines"
            --xfperf-tolerance 5%)
      run "${step/-/_}_record" "${ort[@]}" --xfperf-update-baselines &&
        run "${step/-/_}_gate" "${ort[@]}";;
    *) echo "unknown step $step" >&2; exit 2;;
  esac
done
