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
  # The run's log (stage times) and GNU time's peak RSS beside the run's folder.
  /usr/bin/time -v -o "$out/n$n.time" "$cli" run "$config" --set sample.n_stars="$n" --set output.dir="$out/n$n" \
    --set validate.realizations="$realizations" --set assemble.quicklooks=false ${CSST_SCALING_SET:-} \
    2>&1 | tee "$out/n$n.log" | grep -E "stage [a-z]+: done|error" >&2
done
CSST_TOOLS_DIR="$(cd "$(dirname "$0")" && pwd)" /usr/bin/python3 - "$config" "$out" "$realizations" "${counts[@]}" <<'PY'
import json, math, os, sys, tempfile
config, out, realizations = sys.argv[1], sys.argv[2], int(sys.argv[3])
counts = [int(n) for n in sys.argv[4:]]
bands = ["GU", "GV", "GI"]
paper = {"GU": 0.005, "GV": 0.0003, "GI": 0.0005}  # Yang et al. 2024, 400 stars, ideal case
import re
rows = []
for n in counts:
    v = json.load(open(os.path.join(out, "n%d" % n, "validation.json")))
    row = {"n_stars": n, **{b: v["bands"][b]["precision"] for b in bands},
           **{b + "_relative": v["bands"][b]["relative_precision"] for b in bands}}
    # seconds per stage (this run's log) and the run's peak RSS (GNU time), where the files are there
    log, timing = os.path.join(out, "n%d.log" % n), os.path.join(out, "n%d.time" % n)
    if os.path.exists(log):
        row["stage_seconds"] = {m.group(1): float(m.group(2)) for m in
                                re.finditer(r"stage (\w+): done in ([0-9.]+) s", open(log).read())}
    if os.path.exists(timing):
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(timing).read())
        if m: row["peak_rss_mb"] = int(m.group(1)) / 1024.0
    rows.append(row)
def write(path, text):  # atomic: temp file + rename
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
write(os.path.join(out, "scaling.json"), json.dumps({"config": config, "realizations": realizations, "rows": rows,
                                                     "paper_400_stars": paper}, indent=1) + "\n")
sys.path.insert(0, os.environ["CSST_TOOLS_DIR"])
import docs_tables  # the tables as docs/results.md shows them (one formatter for both)
docs_tables.ROOT = os.getcwd()
md = docs_tables.generate("scaling", [out])
md.append("")
md.append("Precision = median over each band's wavelengths of the RMS of (fitted - true) / true over the detector "
          "and %d realizations; config %s. The last three columns are constant when precision falls as N^-1/2. "
          "Paper (400 stars, ideal): GU 0.005, GV 0.0003, GI 0.0005." % (realizations, config))
write(os.path.join(out, "scaling.md"), "\n".join(md) + "\n")
data = "\n".join("%d %g %g %g %g %g %g" % (r["n_stars"], r["GU"], r["GV"], r["GI"], r["GU_relative"],
                                            r["GV_relative"], r["GI_relative"]) for r in rows) + "\n"
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
     '' using 1:5 with linespoints dt 3 lc 1 title 'GU relative', \\
     '' using 1:6 with linespoints dt 3 lc 2 title 'GV relative', \\
     '' using 1:7 with linespoints dt 3 lc 3 title 'GI relative', \\
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
