#!/usr/bin/env python3
"""Every results table in docs/, made from the runs' own JSON (issue #28 item 1).

A table in a page sits between two markers that name its generator and its sources:

    <!-- table: study dr7=out/ship_dr7 ideal=out/ship_ideal -->
    | config | stars | ... |
    <!-- end table -->

Usage:
  tools/docs_tables.py refresh [PAGE.md ...]   rewrite every table whose sources are here (default: docs/*.md)
  tools/docs_tables.py check [--committed] [PAGE.md ...]
                                              fail on a malformed or unknown marker, on a results table outside
                                              a marker (pages in RESULT_PAGES), or on a table that differs from
                                              what its sources give; --committed: compare only the tables whose
                                              sources git tracks (the ctest entry), the others are listed as kept
  tools/docs_tables.py KIND ARG...            print one generator's output (star_scaling.sh writes scaling.md so)

Kinds (ARG paths relative to the repository root; NAME=DIR is a run's output.dir; names may be quoted):
  study NAME=DIR...        Monte Carlo precision, relative precision, bias, coverage of ERR (validation.json)
  shipped NAME=DIR...      the shipped cube read back: precision, bias, coverage of its ERR, SYSERR
  sed_bias NAME=DIR...     the sample's mean SED error (validation.json sed_bias, row "all")
  sed_bias_rows DIR        every row of one run's sed_bias table
  precision NAME=DIR...    Monte Carlo precision alone, one row per run (the ablations)
  scaling DIR              DIR/scaling.json (tools/star_scaling.sh): absolute and relative precision, seconds,
                           peak RSS, and the smallest N reaching the paper's numbers
  evaluation FILE T:S...   a network evaluation (csst-flatcube evaluate): median / sigma per band at Teff T, SNR S
  coverage FILE...         a network evaluation's 1- and 2-sigma coverage and RMSAE, one row per file
  common_error NAME=FILE...  a network evaluation's error common to its test stars per band and SNR
  wavelengths SNR FILE...  a network evaluation's sigma, median and coverage at its wavelengths, one row per file
  stages NAME=DIR...       seconds, CPU seconds and peak RSS per stage from each run's manifest.json (duration_s,
                           cpu_s, peak_rss_mb: the stage's process; tools/stage_scale.sh runs one stage a process)
  bench FILE [SECTION]     make bench's JSON (out/bench/bench.json): one row per figure (of one section)
  synth_check FILE         csst-synth-check --json FILE: the synthesizer against Kurucz 1993, per Teff and log g
  cluster_cost LOG N       tools/cluster_cost.py's model from a one-thread run's log of N stars (docs/cluster.md)
  text                     not a result (a description): kept as written
A generator's numbers are formatted here only, so a rerun of the runs and `make docs` refresh every page.
"""
import glob
import json
import math
import os
import re
import shlex
import subprocess
import sys

BANDS = ("GU", "GV", "GI")
PAPER_IDEAL = {"GU": 0.005, "GV": 0.0003, "GI": 0.0005}  # Yang et al. 2024, 400 stars, ideal case
STAGES = ("sample", "ingest", "predict", "truth", "simulate", "observations", "compare", "fit", "assemble",
          "validate")
# Pages whose every table is a result (or marked `text`).
RESULT_PAGES = ("results.md", "benchmarks.md", "network.md", "simulation.md", "cluster.md")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = re.compile(r"^(\s*)<!-- table: (.*?) -->\s*$")  # indented inside a list item: the table is too
END = "<!-- end table -->"


class Missing(Exception):
    """A source of a table is not here (the run was not made on this machine)."""


def load(path, what):
    full = os.path.join(ROOT, path)
    if not os.path.exists(full):
        raise Missing(path)
    try:
        with open(full) as f:
            return json.load(f)
    except ValueError as e:
        raise SystemExit("docs_tables: %s is not valid JSON (%s): %s" % (path, what, e))


def cell(values, fmt="%.2g"):
    return " / ".join(fmt % v if v is not None else "-" for v in values)


def named(args):
    out = []
    for a in args:
        name, sep, path = a.partition("=")
        if not sep or not name or not path:
            raise SystemExit("docs_tables: argument '%s' is not NAME=DIR" % a)
        out.append((name, path))
    return out


def validations(args):
    return [(name, load(os.path.join(path, "validation.json"), "validation.json")) for name, path in named(args)]


def band(d, b):
    if b not in d["bands"]:
        raise SystemExit("docs_tables: validation.json has no band %s" % b)
    return d["bands"][b]


def gen_study(args):
    rows = ["| config | stars | realizations | Monte Carlo precision | relative precision | bias | coverage of ERR |",
            "|---|---|---|---|---|---|---|"]
    for name, d in validations(args):
        b = [band(d, x) for x in BANDS]
        rows.append("| %s | %d | %d | %s | %s | %s | %s |" % (
            name, d["n_stars"], d["realizations"], cell([x["precision"] for x in b]),
            cell([x["relative_precision"] for x in b]), cell([x["bias"] for x in b], "%+.2g"),
            cell([x["coverage_1sigma"] for x in b], "%.3f")))
    return rows


def gen_shipped(args):
    rows = ["| config | shipped-cube precision | bias | coverage of its ERR | relative precision | SYSERR |",
            "|---|---|---|---|---|---|"]
    for name, d in validations(args):
        s = [band(d, x)["shipped_cube"] for x in BANDS]
        rows.append("| %s | %s | %s | %s | %s | %s |" % (
            name, cell([x["precision"] for x in s]), cell([x["bias"] for x in s], "%+.2g"),
            cell([x["coverage_1sigma"] for x in s], "%.3f"), cell([x["relative_precision"] for x in s]),
            cell([x["systematic_error"] for x in s], "%.2g")))
    return rows


def sed_rows(d, where):
    rows = d.get("sed_bias")
    if not rows:
        raise SystemExit("docs_tables: %s has no sed_bias table" % where)
    return rows


def gen_sed_bias(args):
    rows = ["| config | sample's mean SED error (mu/SED - 1) |", "|---|---|"]
    for name, d in validations(args):
        by_label = {r["label"]: r for r in sed_rows(d, name)}
        if "all" not in by_label:
            raise SystemExit("docs_tables: %s's sed_bias has no row 'all'" % name)
        rows.append("| %s | %s |" % (name, cell([by_label["all"][x] for x in BANDS], "%+.2g")))
    return rows


def gen_sed_bias_rows(args):
    if len(args) != 1:
        raise SystemExit("docs_tables: sed_bias_rows takes one run folder")
    d = load(os.path.join(args[0], "validation.json"), "validation.json")
    rows = ["| stars | n | mean mu/SED - 1, GU / GV / GI |", "|---|---|---|"]
    for r in sed_rows(d, args[0]):
        rows.append("| %s | %d | %s |" % (r["label"], r["n"], cell([r[x] for x in BANDS], "%+.2g")))
    return rows


def gen_precision(args):
    rows = ["| run | realizations | GU | GV | GI |", "|---|---|---|---|---|"]
    for name, d in validations(args):
        rows.append("| %s | %d | %s |" % (
            name, d["realizations"], " | ".join("%.2g" % band(d, x)["precision"] for x in BANDS)))
    return rows


def gen_scaling(args):
    if len(args) != 1:
        raise SystemExit("docs_tables: scaling takes one folder (tools/star_scaling.sh's OUT)")
    s = load(os.path.join(args[0], "scaling.json"), "scaling.json")
    rows, base = s["rows"], s["rows"][0]["n_stars"]
    md = ["| stars | absolute GU | absolute GV | absolute GI | GU x sqrt(N/%d) | GV x sqrt(N/%d) | GI x sqrt(N/%d) |"
          % ((base,) * 3), "|---|---|---|---|---|---|---|"]
    for r in rows:
        f = math.sqrt(r["n_stars"] / base)
        md.append("| %d | %.2e | %.2e | %.2e | %.2e | %.2e | %.2e |" % (
            r["n_stars"], r["GU"], r["GV"], r["GI"], r["GU"] * f, r["GV"] * f, r["GI"] * f))
    md += ["", "| stars | relative GU | relative GV | relative GI | peak RSS [MB] | seconds per stage |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        st = ", ".join("%s %.0f" % (k, v) for k, v in r.get("stage_seconds", {}).items())
        md.append("| %d | %.2e | %.2e | %.2e | %s | %s |" % (
            r["n_stars"], r["GU_relative"], r["GV_relative"], r["GI_relative"],
            "%.0f" % r["peak_rss_mb"] if "peak_rss_mb" in r else "-", st or "-"))
    reach = []
    for b in BANDS:
        hit = [r["n_stars"] for r in rows if r[b + "_relative"] <= PAPER_IDEAL[b]]
        reach.append("%s %s" % (b, ("N = %d" % hit[0]) if hit else "not reached up to N = %d" % rows[-1]["n_stars"]))
    md += ["", "Smallest N whose relative precision reaches the paper's ideal-case numbers (%s): %s." % (
        ", ".join("%s %g" % (b, PAPER_IDEAL[b]) for b in BANDS), "; ".join(reach))]
    return md


def gen_evaluation(args):
    if len(args) < 2:
        raise SystemExit("docs_tables: evaluation takes FILE and at least one TEFF:SNR")
    d = load(args[0], "evaluation")
    cells = {(r["teff"], r["snr"], r["band"]): r for r in d["table"]}
    md = ["| Teff | SNR | GU | GV | GI |", "|---|---|---|---|---|"]
    for a in args[1:]:
        teff, sep, snr = a.partition(":")
        if not sep:
            raise SystemExit("docs_tables: '%s' is not TEFF:SNR" % a)
        key = (float(teff), float(snr))
        if any(key + (b,) not in cells for b in BANDS):
            raise SystemExit("docs_tables: %s has no row Teff %s SNR %s" % (args[0], teff, snr))
        md.append("| %s | %s | %s |" % (teff, snr, " | ".join(
            "%+.2g / %.2g" % (cells[key + (b,)]["median"], cells[key + (b,)]["sigma"]) for b in BANDS)))
    return md


def gen_coverage(args):
    md = ["| evaluation | 1σ coverage GU / GV / GI | 2σ coverage | RMSAE median |", "|---|---|---|---|"]
    for path in args:
        d = load(path, "evaluation")
        c = d["coverage"]
        md.append("| %s | %s | %s | %.3g |" % (
            os.path.basename(path), cell([c[b]["1sigma"] for b in BANDS], "%.3f"),
            cell([c[b]["2sigma"] for b in BANDS], "%.3f"), d["rmsae"]["median"]))
    return md


def gen_wavelengths(args):
    if len(args) < 2:
        raise SystemExit("docs_tables: wavelengths takes SNR and at least one evaluation FILE")
    snr = float(args[0])
    md = None
    for path in args[1:]:
        d = load(path, "evaluation")
        rows = sorted((r for r in d["per_wavelength"] if r["snr"] == snr), key=lambda r: r["wavelength"])
        if not rows:
            raise SystemExit("docs_tables: %s has no per_wavelength rows at SNR %g" % (path, snr))
        if md is None:
            at = " / ".join("%.0f" % r["wavelength"] for r in rows)
            md = ["| evaluation, SNR %g | σ at %s Å | median there | 1σ coverage there |" % (snr, at),
                  "|---|---|---|---|"]
        md.append("| %s | %s | %s | %s |" % (
            os.path.basename(path), cell([r["sigma"] for r in rows], "%.3f"),
            cell([r["median"] for r in rows], "%+.3f"), cell([r["coverage_1sigma"] for r in rows], "%.2f")))
    return md


def gen_common_error(args):
    md = ["| held-out set | common error at SNR 20 / 40 / 80, GU | GV | GI |", "|---|---|---|---|"]
    for name, path in named(args):
        d = load(path, "evaluation")
        by = {(r["band"], r["snr"]): r["common_error"] for r in d["common_error"]}
        snrs = (20.0, 40.0, 80.0)  # the header's columns
        md.append("| %s | %s |" % (name, " | ".join(cell([by.get((b, s)) for s in snrs], "%.3f") for b in BANDS)))
    return md


def gen_stages(args):
    runs = []
    for name, path in named(args):
        m = load(os.path.join(path, "manifest.json"), "manifest")
        runs.append((name, m.get("stages", m)))
    md = ["| stage | " + " | ".join(name for name, _ in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for stage in STAGES:
        if not any(stage in st for _, st in runs):
            continue
        out = []
        for _, st in runs:
            rec = st.get(stage)
            if not rec or "duration_s" not in rec:
                out.append("-")
                continue
            text = "%.1f s" % rec["duration_s"]
            if "cpu_s" in rec:
                text += " (%s CPU s)" % ("%.0f" % rec["cpu_s"] if rec["cpu_s"] >= 10 else "%.1f" % rec["cpu_s"])
            if "peak_rss_mb" in rec:
                text += ", %.2f GB" % (rec["peak_rss_mb"] / 1024.0)
            out.append(text)
        md.append("| %s | %s |" % (stage, " | ".join(out)))
    return md


def gen_bench(args):
    if len(args) not in (1, 2):
        raise SystemExit("docs_tables: bench takes make bench's JSON file and optionally one section")
    d = load(args[0], "bench")
    md = ["| section | what | measured |", "|---|---|---|"]
    for r in d["figures"]:
        if len(args) == 2 and r["section"] != args[1]:
            continue
        md.append("| %s | %s | %s |" % tuple(str(r[k]).replace("|", "\\|") for k in ("section", "what", "value")))
    return md


def gen_synth_check(args):
    if len(args) != 1:
        raise SystemExit("docs_tables: synth_check takes csst-synth-check's JSON file")
    d = load(args[0], "synth_check")
    by_teff = {}
    for r in d["rows"]:
        by_teff.setdefault(r["teff"], []).append(r)
    md = ["| Teff [K] | log g | median \\|Δ\\| 4000–10000 Å | median \\|Δ\\| 2500–4000 Å |", "|---|---|---|---|"]
    for teff in sorted(by_teff):
        rows = sorted(by_teff[teff], key=lambda r: r["logg"])
        md.append("| %.0f | %s | %s | %s |" % (
            teff, " / ".join("%.1f" % r["logg"] for r in rows),
            cell([r["median_4000_10000"] for r in rows], "%.3f"),
            cell([r["median_2500_4000"] for r in rows], "%.3f")))
    return md


def gen_cluster_cost(args):
    if len(args) != 2:
        raise SystemExit("docs_tables: cluster_cost takes a one-thread run's LOG and its number of stars")
    path = os.path.join(ROOT, args[0])
    if not os.path.exists(path):
        raise Missing(args[0])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import cluster_cost
    return cluster_cost.tables(path, float(args[1]))


KINDS = {"study": gen_study, "shipped": gen_shipped, "sed_bias": gen_sed_bias, "sed_bias_rows": gen_sed_bias_rows,
         "precision": gen_precision, "scaling": gen_scaling, "evaluation": gen_evaluation,
         "coverage": gen_coverage, "wavelengths": gen_wavelengths, "common_error": gen_common_error, "stages": gen_stages, "bench": gen_bench,
         "cluster_cost": gen_cluster_cost, "synth_check": gen_synth_check}


def sources(kind, args):
    """The files a block's generator reads (for --committed)."""
    if kind in ("evaluation",):
        return [args[0]]
    if kind in ("coverage",):
        return list(args)
    if kind in ("bench", "cluster_cost", "synth_check"):
        return [args[0]]
    if kind == "wavelengths":
        return list(args[1:])
    if kind == "scaling":
        return [os.path.join(args[0], "scaling.json")]
    if kind == "sed_bias_rows":
        return [os.path.join(args[0], "validation.json")]
    if kind == "common_error":
        return [path for _, path in named(args)]
    file = "manifest.json" if kind == "stages" else "validation.json"
    return [os.path.join(path, file) for _, path in named(args)]


def generate(kind, args):
    if kind not in KINDS:
        raise SystemExit("docs_tables: unknown table kind '%s' (kinds: %s, text)" % (kind, ", ".join(KINDS)))
    return KINDS[kind](args)


def tracked(paths):
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files", "--error-unmatch"] + paths, capture_output=True)
    except OSError:
        return False
    return out.returncode == 0


def process(page, mode, committed):
    """Returns (new text, problems, refreshed, kept)."""
    with open(page) as f:
        lines = f.read().split("\n")
    out, problems, refreshed, kept = [], [], [], []
    i, in_code = 0, False
    result_page = os.path.basename(page) in RESULT_PAGES
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_code = not in_code
        m = None if in_code else BEGIN.match(line)
        if not m:
            if result_page and not in_code and line.lstrip().startswith("|") and (
                    i == 0 or not lines[i - 1].lstrip().startswith("|")):
                problems.append("%s:%d: a table outside a <!-- table: ... --> marker" % (page, i + 1))
            out.append(line)
            i += 1
            continue
        try:
            words = shlex.split(m.group(2))
        except ValueError as e:
            problems.append("%s:%d: marker does not parse (%s)" % (page, i + 1, e))
            words = ["text"]
        j = i + 1
        indent = m.group(1)
        while j < len(lines) and lines[j].strip() != END:
            if BEGIN.match(lines[j]):
                break
            j += 1
        if j == len(lines) or lines[j].strip() != END:
            problems.append("%s:%d: marker without its '%s'" % (page, i + 1, END))
            out.extend(lines[i:j])
            i = j
            continue
        body = lines[i + 1:j]
        kind, args = words[0], words[1:]
        where = "%s:%d (%s)" % (page, i + 1, kind)
        new = body
        if kind != "text":
            if kind not in KINDS:
                problems.append("%s:%d: unknown table kind '%s'" % (page, i + 1, kind))
            elif committed and not tracked(sources(kind, args)):
                kept.append(where + ": sources not in git")
            else:
                try:
                    new = [(indent + x) if x else x for x in generate(kind, args)]
                    refreshed.append(where)
                    if mode == "check" and new != body:
                        problems.append("%s: the table differs from what %s gives" % (where, " ".join(words)))
                except Missing as e:
                    kept.append("%s: %s not here" % (where, e))
        out.append(line)
        out.extend(new)
        out.append(indent + END)
        i = j + 1
    return "\n".join(out), problems, refreshed, kept


def pages_from(argv):
    return argv or sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(__doc__)
        return 0 if argv else 2
    cmd = argv[0]
    if cmd in ("refresh", "check"):
        committed = "--committed" in argv[1:]
        pages = pages_from([a for a in argv[1:] if a != "--committed"])
        problems, refreshed, kept = [], [], []
        for page in pages:
            text, p, r, k = process(page, cmd, committed)
            problems += p
            refreshed += r
            kept += k
            with open(page) as f:
                old = f.read()
            if cmd == "refresh" and text != old:
                tmp = page + ".tmp.%d" % os.getpid()
                with open(tmp, "w") as f:
                    f.write(text)
                os.replace(tmp, page)
        for k in kept:
            print("kept %s" % k)
        print("%s: %d table(s) from their sources, %d kept as written, %d problem(s)" % (
            cmd, len(refreshed), len(kept), len(problems)))
        for p in problems:
            print("error: " + p, file=sys.stderr)
        return 1 if problems else 0
    for line in generate(cmd, argv[1:]):
        print(line)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Missing as e:
        print("docs_tables: %s not found" % e, file=sys.stderr)
        sys.exit(1)
