#!/usr/bin/env bash
# How the cube's precision scales with the number of calibration stars (issue #8).
# Runs CONFIG once per star count with `--set sample.n_stars=N` (a fresh simulated sample of N
# stars each time, same seed), then writes into OUT: scaling.json, scaling.md (the table) and
# index.html with precision_vs_stars.png (gnuplot), precision per band against N with the
# N^-1/2 law through the smallest sample drawn for reference.
#
# Usage: tools/star_scaling.sh CONFIG OUT [REALIZATIONS] [N ...]
#   defaults: 20 realizations, N = 100 400 1600 6400
# Example: tools/star_scaling.sh configs/ideal_paper_errors.yaml out/scaling_paper_errors
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
config=$1
out=$2
realizations=${3:-20}
shift $(( $# >= 3 ? 3 : 2 ))
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(100 400 1600 6400)
cli=${CSST_CLI:-build/pipeline/csst-flatcube}
[ -x "$cli" ] || { echo "error: $cli not found (build first: make build, or set CSST_CLI)" >&2; exit 2; }
mkdir -p "$out"
for n in "${counts[@]}"; do
  echo "== $config with $n stars, $realizations realizations -> $out/n$n" >&2
  "$cli" run "$config" --set sample.n_stars="$n" --set output.dir="$out/n$n" \
    --set validate.realizations="$realizations" --set assemble.quicklooks=false
done
/usr/bin/python3 - "$config" "$out" "$realizations" "${counts[@]}" <<'PY'
import json, math, os, sys, tempfile
config, out, realizations = sys.argv[1], sys.argv[2], int(sys.argv[3])
counts = [int(n) for n in sys.argv[4:]]
bands = ["GU", "GV", "GI"]
paper = {"GU": 0.005, "GV": 0.0003, "GI": 0.0005}  # Yang et al. 2024, 400 stars, ideal case
rows = []
for n in counts:
    v = json.load(open(os.path.join(out, "n%d" % n, "validation.json")))
    rows.append({"n_stars": n, **{b: v["bands"][b]["precision"] for b in bands}})
def write(path, text):  # atomic: temp file + rename
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
write(os.path.join(out, "scaling.json"), json.dumps({"config": config, "realizations": realizations, "rows": rows,
                                                     "paper_400_stars": paper}, indent=1) + "\n")
md = ["| stars | GU | GV | GI | GU x sqrt(N/%d) | GV x sqrt(N/%d) | GI x sqrt(N/%d) |" % ((counts[0],) * 3),
      "|---|---|---|---|---|---|---|"]
for r in rows:
    f = math.sqrt(r["n_stars"] / counts[0])
    md.append("| %d | %.2e | %.2e | %.2e | %.2e | %.2e | %.2e |" % (r["n_stars"], r["GU"], r["GV"], r["GI"],
              r["GU"] * f, r["GV"] * f, r["GI"] * f))
md.append("")
md.append("Precision = median over each band's wavelengths of the RMS of (fitted - true) / true over the detector "
          "and %d realizations; config %s. The last three columns are constant when precision falls as N^-1/2. "
          "Paper (400 stars, ideal): GU 0.005, GV 0.0003, GI 0.0005." % (realizations, config))
write(os.path.join(out, "scaling.md"), "\n".join(md) + "\n")
data = "\n".join("%d %g %g %g" % (r["n_stars"], r["GU"], r["GV"], r["GI"]) for r in rows) + "\n"
write(os.path.join(out, "scaling.dat"), data)
n0 = counts[0]
gp = """set terminal pngcairo size 800,560
set output 'precision_vs_stars.png'
set logscale xy
set xlabel 'number of stars'
set ylabel 'precision (RMS of (fitted - true)/true)'
set title 'Flat-cube precision against the number of stars (%s)' noenhanced
set key outside right
set grid
f(x, p) = p * sqrt(%d.0 / x)
plot 'scaling.dat' using 1:2 with linespoints lw 2 title 'GU', \\
     '' using 1:3 with linespoints lw 2 title 'GV', \\
     '' using 1:4 with linespoints lw 2 title 'GI', \\
     f(x, %g) dt 2 lc rgb 'gray' title 'N^{-1/2}', f(x, %g) dt 2 lc rgb 'gray' notitle, f(x, %g) dt 2 lc rgb 'gray' notitle
""" % (os.path.basename(config), n0, rows[0]["GU"], rows[0]["GV"], rows[0]["GI"])
write(os.path.join(out, "scaling.gp"), gp)
have_png = os.system("cd '%s' && gnuplot scaling.gp > gnuplot.log 2>&1" % out) == 0
table = "".join("<tr><td>%d</td><td>%.2e</td><td>%.2e</td><td>%.2e</td></tr>" % (r["n_stars"], r["GU"], r["GV"], r["GI"])
                for r in rows)
html = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>Precision vs number of stars</title>
<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}td,th{padding:4px 12px;text-align:right}</style></head>
<body><h1>Flat-cube precision against the number of calibration stars</h1>
<p>Config <code>%s</code>, %d Monte Carlo realizations per star count; each count is a fresh simulated sample
(same seed). Precision: median over the band's wavelengths of the RMS of (fitted &minus; true)/true over the
detector area and the realizations. Paper (400 stars, ideal case): GU 0.005, GV 0.0003, GI 0.0005.</p>
<table><tr><th>stars</th><th>GU</th><th>GV</th><th>GI</th></tr>%s</table>
%s</body></html>
""" % (config, realizations, table, '<p><img src="precision_vs_stars.png" alt="precision against stars"></p>' if have_png else
       "<p>(gnuplot not installed: no figure)</p>")
write(os.path.join(out, "index.html"), html)
print("\n".join(md))
PY
