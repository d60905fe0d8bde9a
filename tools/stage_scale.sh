#!/usr/bin/env bash
# Seconds and peak RSS of every stage at a given star count (issue #31 item 2): runs CONFIG with
# `--set sample.n_stars=N` stage by stage, each stage its own process under GNU time (-v), the logs in
# OUT/nN.STAGE.log, then writes OUT/stages.md with tools/stage_table.py.
#
# Usage: tools/stage_scale.sh CONFIG OUT N [N ...]   (extra --set options in CSST_SCALE_SET)
# Example: tools/stage_scale.sh configs/ideal.yaml /tmp/stage_scale 20000 100000
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,8p' "$0" >&2
  exit 2
fi
config=$1
out=$2
shift 2
cli=${CSST_CLI:-build/pipeline/csst-flatcube}
[ -x "$cli" ] || { echo "error: $cli not found (build first: make build, or set CSST_CLI)" >&2; exit 2; }
mkdir -p "$out"
runs=()
for n in "$@"; do
  for stage in sample ingest predict simulate compare fit assemble validate; do
    echo "== $n stars: $stage" >&2
    /usr/bin/time -v "$cli" run "$config" --set sample.n_stars="$n" --set sample.synthesis=grid \
      --set output.dir="$out/n$n" ${CSST_SCALE_SET:-} --to "$stage" > "$out/n$n.$stage.log" 2>&1 ||
      { echo "error: stage $stage failed, see $out/n$n.$stage.log" >&2; exit 1; }
  done
  runs+=("n$n:$n")
done
"$(dirname "$0")/stage_table.py" "$out" "${runs[@]}" | tee "$out/stages.md"
