#!/usr/bin/env python3
"""Cost model for `mpirun -np R csst-flatcube run` (docs/cluster.md), from a one-rank, one-thread run's log.

Usage: tools/cluster_cost.py RUN_LOG N_STARS [--bytes-per-realization B]
RUN_LOG is the log of `csst-flatcube run CONFIG --threads 1` (stage times, validate's per-realization
thread-seconds); N_STARS its sample size. Prints per-star costs and the predicted wall time for 10^6 and 10^7
stars with 100 realizations on 16, 64 and 256 ranks: the fit (independent mode: one rank per detector, so over
min(R, 12) ranks) + what rank 0 runs alone (assemble) + the sharded stages (sample, ingest, predict, simulate,
compare, validate) / R + what rank 0 receives at 1 GB/s. The bytes rank 0
receives per star are those `make bench` section mpi measured (docs/cluster.md): predict 4 592, simulate 71 kB,
compare 57 kB, the simulated sample's truth 91 kB, ingest's prepared inputs about 20 kB (2238 pixels of flux, error
and mask); per realization 9.6 MB (--bytes-per-realization).
"""
import re
import sys

DETECTORS = 12  # the fit's unit under MPI: detector d on rank d mod R
BYTES_PER_STAR = {"sample": 91e3, "ingest": 20.2e3, "predict": 4592, "simulate": 71e3, "compare": 57e3}


def tables(log, n, per_real_bytes=9.6e6):
    """The model's two tables and the line between them, as Markdown lines (tools/docs_tables.py)."""
    out = []
    stage, per_real = {}, None
    for line in open(log):
        m = re.search(r"stage (\w+): done in ([0-9.]+) s", line)
        if m:
            stage[m.group(1)] = float(m.group(2))
        m = re.search(r"per realization \(thread-seconds\): (.*)", line)
        if m:
            per_real = sum(float(x) for x in re.findall(r"[a-z]+ ([0-9.]+)", m.group(1)))
    if per_real is None:
        raise SystemExit(f"{log}: no 'per realization (thread-seconds)' line (run with validate.realizations >= 1)")
    by_detector = {k: stage.get(k, 0.0) / n for k in ("fit",)}
    sharded = {k: stage.get(k, 0.0) / n for k in ("sample", "ingest", "predict", "simulate", "compare")}
    fixed = stage.get("assemble", 0.0)
    real = per_real / n
    out += ["| per star, one thread | s |", "|---|---|"]
    for k, v in by_detector.items():
        out.append(f"| {k} (per detector, on up to {DETECTORS} ranks) | {v:.2e} |")
    for k, v in sharded.items():
        out.append(f"| {k} (sharded) | {v:.2e} |")
    out.append(f"| one realization of validate (sharded) | {real:.2e} |")
    out.append("")
    out.append(f"assemble (rank 0, independent of N): {fixed:.1f} s; rank 0 receives per star "
          + ", ".join(f"{k} {v / 1e3:.1f} kB" for k, v in BYTES_PER_STAR.items())
          + f", and {per_real_bytes / 1e6:.1f} MB per realization (validate)")
    out.append("")
    out.append("| stars | ranks | sharded, simulated sample | sharded, real spectra | fit (up to 12 ranks) and "
          "assemble (rank 0) | communication, simulated | total, simulated | total, real |")
    out.append("|---|---|---|---|---|---|---|---|")
    for stars in (1e6, 1e7):
        for ranks in (16, 64, 256):
            sim = stars * (sum(sharded.values()) + 100 * real) / ranks
            # real spectra: no sample and no simulate (the observations come from outside)
            realp = stars * (sharded["ingest"] + sharded["predict"] + sharded["compare"] + 100 * real) / ranks
            r0 = stars * sum(by_detector.values()) / min(ranks, DETECTORS) + fixed
            comm = (stars * sum(BYTES_PER_STAR.values()) + 100 * per_real_bytes) / 1e9
            comm_real = (stars * (BYTES_PER_STAR["ingest"] + BYTES_PER_STAR["predict"] + BYTES_PER_STAR["compare"])
                         + 100 * per_real_bytes) / 1e9
            h = lambda s: f"{s / 3600:.2f} h"
            out.append(f"| {stars:.0e} | {ranks} | {h(sim)} | {h(realp)} | {h(r0)} | {comm:.0f} s | "
                  f"{h(sim + r0 + comm)} | {h(realp + r0 + comm_real)} |")
    return out


def main():
    log, n = sys.argv[1], float(sys.argv[2])
    per_real_bytes = 9.6e6
    if "--bytes-per-realization" in sys.argv:
        per_real_bytes = float(sys.argv[sys.argv.index("--bytes-per-realization") + 1])
    for line in tables(log, n, per_real_bytes):
        print(line)


if __name__ == "__main__":
    main()
