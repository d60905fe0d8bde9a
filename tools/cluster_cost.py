#!/usr/bin/env python3
"""Cost model for `mpirun -np R csst-flatcube run` (docs/cluster.md), from a one-rank, one-thread run's log.

Usage: tools/cluster_cost.py RUN_LOG N_STARS [--bytes-per-realization B]
RUN_LOG is the log of `csst-flatcube run CONFIG --threads 1` (stage times, validate's per-realization
thread-seconds); N_STARS its sample size. Prints per-star costs and the predicted wall time for 10^6 and 10^7
stars with 100 realizations on 16, 64 and 256 ranks: the stages rank 0 runs alone (ingest, simulate, compare,
fit, assemble) + the sharded ones (sample, predict, validate) / R + what rank 0 receives at 1 GB/s.
"""
import re
import sys


def main():
    log, n = sys.argv[1], float(sys.argv[2])
    per_real_bytes = 9.6e6
    if "--bytes-per-realization" in sys.argv:
        per_real_bytes = float(sys.argv[sys.argv.index("--bytes-per-realization") + 1])
    stage, per_real = {}, None
    for line in open(log):
        m = re.search(r"stage (\w+): done in ([0-9.]+) s", line)
        if m:
            stage[m.group(1)] = float(m.group(2))
        m = re.search(r"per realization \(thread-seconds\): (.*)", line)
        if m:
            per_real = sum(float(x) for x in re.findall(r"[a-z]+ ([0-9.]+)", m.group(1)))
    serial = {k: stage.get(k, 0.0) / n for k in ("ingest", "simulate", "compare", "fit")}
    sample = stage.get("sample", 0.0) / n
    fixed = stage.get("assemble", 0.0)
    predict = stage.get("predict", 0.0) / n
    real = per_real / n
    print("| per star, one thread | s |\n|---|---|")
    for k, v in serial.items():
        print(f"| {k} (rank 0 alone) | {v:.2e} |")
    print(f"| sample (sharded) | {sample:.2e} |\n| predict (sharded) | {predict:.2e} |\n"
          f"| one realization of validate (sharded) | {real:.2e} |")
    print(f"\nassemble (rank 0, independent of N): {fixed:.1f} s; rank 0 receives 4592 bytes per star (predict) "
          f"and {per_real_bytes / 1e6:.1f} MB per realization (validate); the simulated sample's truth (about 90 kB per "
          f"star) goes to rank 0 too\n")
    print("| stars | ranks | sharded (sample + predict + 100 realizations) | rank 0 alone, simulated sample | "
          "rank 0 alone, real spectra (ingest, compare, fit) | communication | total, simulated | total, real |")
    print("|---|---|---|---|---|---|---|---|")
    for stars in (1e6, 1e7):
        for ranks in (16, 64, 256):
            sharded = stars * (sample + predict + 100 * real) / ranks
            sharded_real = stars * (predict + 100 * real) / ranks
            sim = stars * sum(serial.values()) + fixed
            realp = stars * (serial["ingest"] + serial["compare"] + serial["fit"]) + fixed
            comm = (stars * (4592 + 90e3) + 100 * per_real_bytes) / 1e9
            comm_real = (stars * 4592 + 100 * per_real_bytes) / 1e9
            h = lambda s: f"{s / 3600:.2f} h"
            print(f"| {stars:.0e} | {ranks} | {h(sharded)} | {h(sim)} | {h(realp)} | {comm:.0f} s | "
                  f"{h(sharded + sim + comm)} | {h(sharded_real + realp + comm_real)} |")


if __name__ == "__main__":
    main()
