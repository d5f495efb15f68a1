#!/usr/bin/env python3
"""Self-check of run_reference.solve_milp on random one-dimensional instances, where the exact minimum over delta of
the number of certified samples can be found by scanning the breakpoints. Run by hand: python check_milp.py"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_reference import solve_milp  # noqa: E402


def exact_count(A, bias, eps):
    a, b = A[..., 0], bias  # [n, k]
    points = {-eps, eps}
    for r in (-b / np.where(a == 0, np.nan, a)).ravel():
        if np.isfinite(r) and -eps <= r <= eps:
            points.update({r, min(eps, r + 1e-9), max(-eps, r - 1e-9)})
    # certified at delta <=> every bound > 0; the minimum over delta is attained at a breakpoint or near one
    return min(int(((a * t + b) > 0).all(1).sum()) for t in points)


def main():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n, k, eps = int(rng.integers(1, 8)), int(rng.integers(1, 4)), float(rng.uniform(0.1, 1))
        A = rng.normal(size=(n, k, 1))
        bias = rng.normal(size=(n, k)) * 0.5 + 0.3
        got = solve_milp(A, bias, eps, time_limit=30, threads=1)
        want = exact_count(A, bias, eps)
        assert got["milp_status"] in ("Optimal", "trivial"), got
        assert got["universal_certified"] == want, (trial, got, want)
    print("200 random instances: MILP count == exact count")


if __name__ == "__main__":
    main()
