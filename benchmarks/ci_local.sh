#!/usr/bin/env bash
# The commands of docs/ci.md's workflow, on this machine: the 4 CPU shards one after another,
# the merge (its exit status is the workflow's), a nightly-style run with the drift gate on a
# fresh history, and `history show`. The GPU job needs a GPU and is left out.
#   bash benchmarks/ci_local.sh OUT_DIR
set -uo pipefail
out=${1:?usage: ci_local.sh OUT_DIR}
mkdir -p "$out/reports"
cd "$(dirname "$0")/.."
for k in 1 2 3 4; do
  start=$(date +%s)
  pytest --xfperf tests/perf --xfperf-shard "$k/4" --xfperf-history off \
    --xfperf-report "$out/reports/xfperf-cpu-$k.json" -q -p no:cacheprovider \
    > "$out/shard-$k.txt" 2>&1
  echo "shard $k/4: exit $? in $(( $(date +%s) - start )) s; $(grep -E '^shard ' "$out/shard-$k.txt")"
done
status=0
python -m pytest_xfperf report merge "$out"/reports/*.json \
  --markdown "$out/merged.md" --html "$out/merged.html" || status=$?
echo "merge: exit $status"
history="$out/history.db"
pytest --xfperf tests/perf --xfperf-fail-on-drift --xfperf-history "$history" \
  --xfperf-report "$out/nightly.json" -q -p no:cacheprovider > "$out/nightly.txt" 2>&1
echo "nightly: exit $?"
python -m pytest_xfperf history show '*' --history "$history" > "$out/history.txt"
echo "history show: exit $?"
