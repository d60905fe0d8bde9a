#!/usr/bin/env bash
# How each ideal assumption moves the precision (docs/results.md): configs/ideal_paper_errors.yaml (the paper's
# error table as the prediction error, so the flat-field part is judged alone), then one assumption dropped at a
# time, 400 stars, 5 realizations (20 for the unchanged run), into out/assume_*. Each run resumes.
# Usage: tools/assumptions.sh [OUT_PREFIX]   (default out/assume); then `make docs` refreshes the table.
set -euo pipefail
prefix=${1:-out/assume}
cli=${CSST_CLI:-build/pipeline/csst-flatcube}
[ -x "$cli" ] || { echo "error: $cli not found (build first: make build, or set CSST_CLI)" >&2; exit 2; }
run() {  # NAME REALIZATIONS --set ...
  local name=$1 r=$2
  shift 2
  "$cli" run configs/ideal_paper_errors.yaml --set output.dir="${prefix}_$name" --set validate.realizations="$r" \
    --set validate.report=false --set assemble.quicklooks=false "$@"
}
run none 20
run noise 5 --set simulation.photon_noise=true
run flux 5 --set compare.flux_scale=unknown --set compare.scale_error=0.05 --set flatfield.mode=joint
run reddening 5 --set simulation.reddening=true --set sample.ebv_max=0.3 --set compare.reddening=true \
  --set compare.ebv_sigma=0.02
run r 5 --set simulation.resolving_power_gu=225 --set simulation.resolving_power_gv=250 \
  --set simulation.resolving_power_gi=250 --set simulation.constant_r=false --set simulation.r_slope=0.2 --set simulation.r_field=0.05
run outliers 5 --set simulation.zeroth_order_fraction=0.05 --set simulation.cosmic_ray_rate=0.002 \
  --set simulation.outlier_fraction=0.05 --set simulation.outlier_amplitude=0.1 --set flatfield.loss=cauchy \
  --set flatfield.loss_scale=3.0
