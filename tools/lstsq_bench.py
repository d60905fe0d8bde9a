#!/usr/bin/python3
"""Comparison for `make bench`: the independent per-wavelength flat fits done with numpy.linalg.lstsq.

Reads the points exported by csst-bench (a .npy array with rows: slice, x, y, ratio, sigma, nx, ny,
order), builds the same Legendre basis (coefficients ordered by degree, then decreasing power of u)
and solves every slice's weighted least-squares problem. Prints the wall time and the largest
difference to the C++ (Ceres) coefficients, which the bench exports as a second .npy.
"""
import sys
import time

import numpy as np


def legendre(u, order):
    p = [np.ones_like(u), u]
    for k in range(2, order + 1):
        p.append(((2 * k - 1) * u * p[k - 1] - (k - 1) * p[k - 2]) / k)
    return p[: order + 1]


def basis(x, y, nx, ny, order):
    u = 2 * x / (nx - 1) - 1
    v = 2 * y / (ny - 1) - 1
    pu, pv = legendre(u, order), legendre(v, order)
    cols = []
    for d in range(order + 1):
        for i in range(d, -1, -1):
            cols.append(pu[i] * pv[d - i])
    return np.stack(cols, axis=1)


def main():
    pts = np.load(sys.argv[1])
    ref = np.load(sys.argv[2]) if len(sys.argv) > 2 else None
    nx, ny, order = pts[0, 5], pts[0, 6], int(pts[0, 7])
    order_idx = np.argsort(pts[:, 0], kind="stable")
    pts = pts[order_idx]
    slices, starts = np.unique(pts[:, 0], return_index=True)
    bounds = list(starts) + [len(pts)]
    t0 = time.perf_counter()
    coeffs = []
    for k in range(len(slices)):
        p = pts[bounds[k]:bounds[k + 1]]
        w = 1.0 / p[:, 4]
        a = basis(p[:, 1], p[:, 2], nx, ny, order) * w[:, None]
        c, *_ = np.linalg.lstsq(a, p[:, 3] * w, rcond=None)
        coeffs.append(c)
    dt = time.perf_counter() - t0
    print(f"numpy.linalg.lstsq: {len(slices)} independent fits in {dt:.2f} s")
    if ref is not None:
        diff = np.max(np.abs(np.array(coeffs) - ref))
        print(f"numpy vs Ceres coefficients: max |difference| = {diff:.2e}")


if __name__ == "__main__":
    main()
