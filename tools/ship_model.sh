#!/usr/bin/env bash
# Calibrates a grid-trained model for shipping, as README "What ERR holds" describes (issue #32):
#  1. sigma scale and the conditional bias correction on the validation split of configs/train.yaml's grid;
#  2. the two SYSERR terms from calibration runs on seeds 777-780 (dr7 + ideal: known fluxes; realistic:
#     free scales), 2 realizations each;
#  3. the shipped-config runs (dr7 and ideal 100 realizations, realistic 20) with the model, into out/ship_*.
# Usage: tools/ship_model.sh MODEL [JOBS]   (MODEL: path without extension, e.g. network/models/uara_default)
# Each run resumes: a rerun of this script redoes only what changed.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
model=$1
cli=${CSST_CLI:-build/pipeline/csst-flatcube}
[ -x "$cli" ] || { echo "error: $cli not found (build first: make build, or set CSST_CLI)" >&2; exit 2; }
"$cli" calibrate configs/train.yaml --set train.out="$model" --set train.bias_correction=true
for s in 777 778 779 780; do
  for c in dr7 ideal realistic; do
    "$cli" run configs/$c.yaml --set random_seed=$s --set output.dir=out/cal_${c}_$s \
      --set network.model="$model" --set validate.realizations=2 --set validate.report=false \
      --set assemble.quicklooks=false
  done
done
"$cli" calibrate configs/train.yaml --set train.out="$model" \
  --systematic-from out/cal_dr7_{777,778,779,780}/validation.json out/cal_ideal_{777,778,779,780}/validation.json
"$cli" calibrate configs/train.yaml --set train.out="$model" \
  --systematic-from out/cal_realistic_{777,778,779,780}/validation.json
for c in dr7 ideal realistic; do
  r=100
  [ $c = realistic ] && r=20
  "$cli" run configs/$c.yaml --set output.dir=out/ship_$c --set network.model="$model" --set validate.realizations=$r
done
"$cli" evaluate configs/train.yaml --set network.model="$model" --out "$model.evaluation.json"
