#!/usr/bin/env bash
# Issue #15 ablations: each variant trains one member for configs/ablation.yaml's 40 epochs from the
# same initialisation, then is evaluated on the 20k grid's test split (the same 5 088 stars for all).
# grid55 trains on the 55 000-star grid (configs/grid55.yaml: the 20k grid plus 35 000 more stars,
# the same test stars) for 15 epochs, the same number of spectra seen as 40 epochs of the 20k grid. Resumable: a finished variant
# (its .evaluation.json exists) is skipped, an interrupted one resumes from its checkpoint.
# Usage: tools/ablation.sh [variant ...]   (default: all); summary in out/ablation/summary.txt
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/pipeline/csst-flatcube
declare -A variants=(
  [nll]=""
  [beta_nll]="--set train.loss=beta_nll --set train.beta=0.5"
  [mse_warmup]="--set train.loss=mse_warmup --set train.warmup_epochs=5"
  [cosine]="--set train.schedule=cosine"
  [batch2048]="--set train.batch=2048"
  [pca48]="--set train.pca_components=48"
  [grid55]="--set train.grid=out/grid55/grid.fits --set train.epochs=15"
)
order=(nll beta_nll mse_warmup cosine batch2048 pca48 grid55)
[[ $# -gt 0 ]] && order=("$@")
mkdir -p out/ablation
for v in "${order[@]}"; do
  out=out/ablation/$v
  [[ -f $out.evaluation.json ]] && { echo "ablation $v: done"; continue; }
  # shellcheck disable=SC2086
  $bin train configs/ablation.yaml --set train.out=$out --set network.model=$out ${variants[$v]} >> out/ablation/$v.log 2>&1
  $bin evaluate configs/ablation.yaml --set train.out=$out --set network.model=$out \
    --out $out.evaluation.json >> out/ablation/$v.log 2>&1
  echo "ablation $v: trained and evaluated"
done
python3 - "${order[@]}" > out/ablation/summary.txt <<'PY'
import json, sys
def cell(e, teff, snr, band, key):
    return next(c[key] for c in e["table"] if c["teff"] == teff and c["snr"] == snr and c["band"] == band)
print("| variant | σ 6000 K SNR 20 GU / GV / GI | σ 8000 K SNR 20 GU / GV / GI | median 6000 K SNR 20 GU / GV / GI |"
      " 1σ coverage GU / GV / GI | RMSAE median | best val NLL (epoch) | CPU h |")
print("|---|---|---|---|---|---|---|---|")
for v in sys.argv[1:]:
    try:
        e = json.load(open(f"out/ablation/{v}.evaluation.json"))
        t = json.load(open(f"out/ablation/{v}.json"))["training"]
    except FileNotFoundError:
        continue
    f = lambda teff, key, fmt: " / ".join(fmt % cell(e, teff, 20.0, b, key) for b in ("GU", "GV", "GI"))
    cov = " / ".join("%.3f" % e["coverage"][b]["1sigma"] for b in ("GU", "GV", "GI"))
    print(f"| {v} | {f(6000.0, 'sigma', '%.4f')} | {f(8000.0, 'sigma', '%.4f')} | {f(6000.0, 'median', '%+.4f')} | {cov} |"
          f" {e['rmsae']['median']:.4f} | {t['best_val_nll']:.0f} ({t['best_epoch']}) | {t.get('cpu_seconds', 0) / 3600:.2f} |")
PY
cat out/ablation/summary.txt
