#!/usr/bin/env python3
"""Seconds and peak RSS per stage from runs made stage by stage (tools/stage_scale.sh), as a Markdown table.

Usage: tools/stage_table.py DIR TAG:N [TAG:N ...]
Reads DIR/TAG.STAGE.log for every stage: the engine's "stage S: done in X s" line and GNU time's (-v) wall clock,
user + system seconds and maximum resident set size, which the script appends to each log.
"""
import os
import re
import sys

STAGES = ["sample", "ingest", "predict", "simulate", "compare", "fit", "assemble", "validate"]


def parse(path, stage):
    if not os.path.exists(path):
        return None
    text = open(path, errors="replace").read()
    done = re.findall(r"stage %s: done in ([0-9.]+) s" % stage, text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    user = re.search(r"User time \(seconds\): ([0-9.]+)", text)
    system = re.search(r"System time \(seconds\): ([0-9.]+)", text)
    status = re.search(r"Exit status: (\d+)", text)
    if not (done and rss and user and system) or (status and status.group(1) != "0"):
        return None
    return float(done[-1]), float(user.group(1)) + float(system.group(1)), int(rss.group(1)) / 1e6


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    folder, runs = sys.argv[1], [a.split(":") for a in sys.argv[2:]]
    head = "| stage | " + " | ".join("%s stars" % format(int(n), ",").replace(",", " ") for _, n in runs) + " |"
    print(head)
    print("|---" * (len(runs) + 1) + "|")
    for stage in STAGES:
        cells = []
        for tag, _ in runs:
            r = parse(os.path.join(folder, "%s.%s.log" % (tag, stage)), stage)
            cells.append("—" if r is None else "%.1f s (%.0f CPU s), %.2f GB" % r)
        print("| %s | %s |" % (stage, " | ".join(cells)))
    print()
    print("Seconds: the engine's \"done in\" (wall); CPU s: user + system of the stage's process; GB: its peak RSS.")


if __name__ == "__main__":
    main()
