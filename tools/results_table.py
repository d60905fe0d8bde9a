#!/usr/bin/python3
"""Markdown tables of calibration-study results from the runs' own validation.json files (docs/results.md).

Usage: tools/results_table.py NAME=RUN_DIR [NAME=RUN_DIR ...]
Prints three tables: the Monte Carlo (precision, relative precision, bias, 1-sigma coverage of ERR), the shipped
cube read back through FlatProduct (precision, bias, coverage of its ERR, SYSERR), and the sample's mean SED
error (validation.json sed_bias, row "all"). Bands GU / GV / GI in each cell.
"""
import json
import sys

BANDS = ("GU", "GV", "GI")


def cell(values, fmt="%.2g"):
    return " / ".join(fmt % v if v is not None else "-" for v in values)


def main(args):
    if not args:
        sys.stderr.write(__doc__)
        return 2
    runs = []
    for a in args:
        name, _, path = a.partition("=")
        with open(path.rstrip("/") + "/validation.json") as f:
            runs.append((name, json.load(f)))
    print("| config | stars | realizations | Monte Carlo precision | relative precision | bias | coverage of ERR |")
    print("|---|---|---|---|---|---|---|")
    for name, d in runs:
        b = [d["bands"][x] for x in BANDS]
        print("| %s | %d | %d | %s | %s | %s | %s |" % (
            name, d["n_stars"], d["realizations"], cell([x["precision"] for x in b]),
            cell([x["relative_precision"] for x in b]), cell([x["bias"] for x in b], "%+.2g"),
            cell([x["coverage_1sigma"] for x in b], "%.3f")))
    print()
    print("| config | shipped-cube precision | bias | coverage of its ERR | relative precision | SYSERR |")
    print("|---|---|---|---|---|---|")
    for name, d in runs:
        s = [d["bands"][x]["shipped_cube"] for x in BANDS]
        print("| %s | %s | %s | %s | %s | %s |" % (
            name, cell([x["precision"] for x in s]), cell([x["bias"] for x in s], "%+.2g"),
            cell([x["coverage_1sigma"] for x in s], "%.3f"), cell([x["relative_precision"] for x in s]),
            cell([x["systematic_error"] for x in s], "%.2g")))
    print()
    print("| config | sample's mean SED error (mu/SED - 1) |")
    print("|---|---|")
    for name, d in runs:
        rows = {r["label"]: r for r in d.get("sed_bias", [])}
        if "all" in rows:
            print("| %s | %s |" % (name, cell([rows["all"][x] for x in BANDS], "%+.2g")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
