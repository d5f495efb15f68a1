#!/usr/bin/env python3
"""The paper's pipeline on the model and samples upcc gets: auto_LiRPA CROWN linear bounds, then the compact
Theorem 1 MILP solved with HiGHS (highspy). Run by hand, never in CI; see README.md here.

    .venv-lirpa/bin/python tools/reference/run_reference.py --model models/mnist/conv_small_natural.safetensors \
        --data data/mnist/heldout.npz --n 100 --eps 6/255 [--out results/x.json]

Prints one JSON object per eps: sample-wise and universal certified counts, the MILP status, incumbent and proven
dual bound, sizes before/after presolve, seconds per stage and peak RSS.
"""

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from fractions import Fraction

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lirpa_common as lc  # noqa: E402


def parse_eps(text):
    return float(Fraction(text))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def presolve(A, bias, eps):
    """Drop pairs whose sample-wise lower bound is positive (never attackable); fix samples with every pair dropped
    as certified and samples with a pair whose upper bound is <= 0 as not certified (attacked by every delta)."""
    l1 = np.abs(A).sum(-1)
    lower, upper = bias - eps * l1, bias + eps * l1
    attackable = lower <= 0
    samplewise = ~attackable.any(1)
    always_broken = (upper <= 0).any(1)
    open_samples = np.where(~samplewise & ~always_broken)[0]
    return lower, upper, attackable, samplewise, always_broken, open_samples


def solve_milp(A, bias, eps, time_limit, threads):
    """min sum q_i  s.t.  sum_j z_ij + q_i >= 1;  a_ij.delta + U_ij z_ij <= U_ij - b_ij;  |delta| <= eps;
    q, z binary (paper Theorem 1 in compact form, U_ij = b_ij + eps |a_ij|_1). Returns the stats dict."""
    import highspy

    n, k, d = A.shape
    lower, upper, attackable, samplewise, always_broken, open_samples = presolve(A, bias, eps)
    stats = {
        "samplewise_certified": int(samplewise.sum()),
        "fixed_not_certified": int(always_broken.sum()),
        "size_before_presolve": {"binaries": n * (k + 1), "rows": n * (k + 1), "nonzeros": int(n * k * (d + 2) + n)},
    }
    pairs = [(i, j) for i in open_samples for j in range(k) if attackable[i, j]]
    if not pairs:
        stats.update(milp_status="trivial", objective=0.0, dual_bound=0.0, mip_gap=0.0, nodes=0,
                     size_after_presolve={"binaries": 0, "rows": 0, "nonzeros": 0, "delta_columns": 0})
        stats["universal_certified"] = stats["universal_incumbent"] = stats["samplewise_certified"]
        return stats
    rows_a = np.stack([A[i, j] for i, j in pairs])
    used = np.where(np.abs(rows_a).max(0) > 0)[0]  # delta coordinates that appear in some row
    nd, nq, nz = len(used), len(open_samples), len(pairs)
    qcol = {i: nd + t for t, i in enumerate(open_samples)}
    # columns: delta (nd), q (nq), z (nz); build row-wise then hand HiGHS a CSR matrix
    starts, index, value, row_lo, row_hi = [0], [], [], [], []
    for i in open_samples:  # sum_j z_ij + q_i >= 1
        zs = [nd + nq + p for p, (pi, _) in enumerate(pairs) if pi == i]
        index += [qcol[i]] + zs
        value += [1.0] * (1 + len(zs))
        starts.append(len(index))
        row_lo.append(1.0)
        row_hi.append(highspy.kHighsInf)
    for p, (i, j) in enumerate(pairs):  # a.delta + U z <= U - b
        a = A[i, j, used]
        nzs = np.nonzero(a)[0]
        index += nzs.tolist() + [nd + nq + p]
        value += a[nzs].tolist() + [float(upper[i, j])]
        starts.append(len(index))
        row_lo.append(-highspy.kHighsInf)
        row_hi.append(float(upper[i, j] - bias[i, j]))
    ncol = nd + nq + nz
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = ncol, len(row_lo)
    lp.col_cost_ = np.r_[np.zeros(nd), np.ones(nq), np.zeros(nz)]
    lp.col_lower_ = np.r_[np.full(nd, -eps), np.zeros(nq + nz)]
    lp.col_upper_ = np.r_[np.full(nd, eps), np.ones(nq + nz)]
    lp.row_lower_, lp.row_upper_ = np.array(row_lo), np.array(row_hi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
    lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(value)
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = ncol, len(row_lo)
    lp.integrality_ = [highspy.HighsVarType.kContinuous] * nd + [highspy.HighsVarType.kInteger] * (nq + nz)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("threads", int(threads))
    h.passModel(lp)
    h.run()
    info = h.getInfo()
    status = h.modelStatusToString(h.getModelStatus())
    objective = float(info.objective_function_value)
    dual = float(info.mip_dual_bound)
    stats.update(
        milp_status=status,
        objective=objective,
        dual_bound=dual,
        mip_gap=float(info.mip_gap),
        nodes=int(info.mip_node_count),
        size_after_presolve={"binaries": nq + nz, "rows": len(row_lo), "nonzeros": len(index), "delta_columns": nd},
    )
    # proven: sample-wise certified plus the MILP's dual bound (never the incumbent, which over-claims on a limit)
    proven = math.ceil(dual - 1e-6) if np.isfinite(dual) else 0
    stats["universal_certified"] = stats["samplewise_certified"] + max(0, proven)
    stats["universal_incumbent"] = stats["samplewise_certified"] + int(round(objective))
    return stats


def load(args):
    if args.model.startswith("shared:"):
        rel = args.model[len("shared:"):]
        model = lc.load_resnet(lc.shared_path("external/" + rel, args.shared))
        x, labels = lc.load_eran_cifar(args.data or lc.shared_path("external/eran/cifar10_test.csv", args.shared),
                                       args.n)
    else:
        model = lc.load_mnist_model(args.model)
        x, labels = lc.load_mnist_npz(args.data or os.path.join(lc.REPO, "data", "mnist", "heldout.npz"), args.n)
    return model, x, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="MNIST .safetensors from tools/train, or shared:vnncomp2021/...onnx")
    ap.add_argument("--data", default=None, help="MNIST .npz (default data/mnist/heldout.npz) or ERAN CIFAR csv")
    ap.add_argument("--shared", default=None)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--eps", nargs="+", type=str, required=True, help="e.g. 4/255 6/255 8/255")
    ap.add_argument("--batch", type=int, default=None, help="auto_LiRPA batch size (default: all n at once)")
    ap.add_argument("--time-limit", type=float, default=600.0, help="HiGHS time limit in seconds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the JSON list here too")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    results = []
    for eps_text in args.eps:
        eps = parse_eps(eps_text)
        t0 = time.perf_counter()
        model, x, labels = load(args)
        _, A, bias = lc.crown_linear_bounds(model, x, labels, eps, method="backward", batch=args.batch)
        t_bounds = time.perf_counter() - t0
        t1 = time.perf_counter()
        stats = solve_milp(A, bias, eps, args.time_limit, args.threads)
        t_milp = time.perf_counter() - t1
        res = {
            "model": args.model,
            "data": args.data or "default",
            "n": int(len(labels)),
            "eps": eps_text,
            "eps_value": eps,
            "method": "auto_LiRPA 0.3 CROWN (method='backward'), x perturbed, per-sample intermediate bounds",
            **stats,
            "seconds": {"bounds": round(t_bounds, 3), "milp": round(t_milp, 3), "total": round(t_bounds + t_milp, 3)},
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "threads": args.threads,
            "host": platform.node(),
            "torch": torch.__version__,
        }
        print(json.dumps(res), flush=True)
        results.append(res)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results if len(results) > 1 else results[0], f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
