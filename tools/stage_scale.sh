#!/usr/bin/env bash
# Seconds, CPU seconds and peak RSS of every stage at a given star count (issue #31 item 2): runs CONFIG with
# `--set sample.n_stars=N` stage by stage (`--to STAGE`), each stage its own process, so that each stage's record
# in OUT/nN/manifest.json (duration_s, cpu_s, peak_rss_mb) is the stage's alone; the logs in OUT/nN.STAGE.log;
# then writes OUT/stages.md with `tools/docs_tables.py stages` (docs/benchmarks.md's tables).
#
# Usage: tools/stage_scale.sh CONFIG OUT N [N ...]   (extra --set options in CSST_SCALE_SET)
# Example: tools/stage_scale.sh configs/ideal.yaml out/scale_ideal 400 4000
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
    "$cli" run "$config" --set sample.n_stars="$n" --set sample.synthesis=grid \
      --set output.dir="$out/n$n" ${CSST_SCALE_SET:-} --to "$stage" > "$out/n$n.$stage.log" 2>&1 ||
      { echo "error: stage $stage failed, see $out/n$n.$stage.log" >&2; exit 1; }
  done
  runs+=("$n stars=$out/n$n")
done
/usr/bin/python3 "$(dirname "$0")/docs_tables.py" stages "${runs[@]}" | tee "$out/stages.md"
