#!/usr/bin/env python3
"""Write the auto_LiRPA golden files tests/golden/<model>_crown.npz (issue 3 §5(c)); run by hand, never in CI.

    .venv-lirpa/bin/python tools/golden/make_goldens.py [--data data/mnist] [--shared ../shared]

Keys: x [n,d] float64 (exact inputs in [0,1]), labels [n] int64, eps, lower [n,9] (CROWN sample-wise lower bounds
of f_y - f_j, j != y increasing), A [n,9,d] float32 (coefficients w.r.t. the input pixels), bias [n,9] (value of
the linear bound at delta = 0 = lower + eps*|A|_1), lower_alpha [n,9] (alpha-CROWN, 20 iters).
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import lirpa_common as lc  # noqa: E402


def check(model, x, labels, eps, lower, A, bias):
    """Self-checks: lower == bias - eps|A|_1, and the bound holds on sampled corners of the box."""
    recomputed = bias - eps * np.abs(A).sum(-1)
    err = np.abs(recomputed - lower).max() / max(1.0, np.abs(lower).max())
    assert err < 1e-4, f"lower != bias - eps|A|_1 (rel err {err})"
    g = torch.Generator().manual_seed(0)
    xt = torch.as_tensor(x, dtype=torch.float32)
    c = lc.spec_matrix(labels).double()
    worst = np.inf
    for _ in range(20):
        delta = (torch.randint(0, 2, xt.shape, generator=g).float() * 2 - 1) * eps
        with torch.no_grad():
            out = model((xt + delta).reshape(len(x), *model_input_shape(model))).double()
        margins = torch.einsum("nkc,nc->nk", c, out).numpy()
        lin = np.einsum("nkd,nd->nk", A.astype(np.float64), delta.double().numpy()) + bias
        worst = min(worst, (margins - lin).min())
    assert worst > -1e-4, f"linear bound violated by sampled delta ({worst})"
    return err, worst


def model_input_shape(model):
    return (3, 32, 32) if isinstance(model, lc.ResNet) else (1, 28, 28)


def golden(model, x, labels, eps, model_ref, out):
    n = len(x)
    xf = x.reshape(n, -1)
    lower, A, bias = lc.crown_linear_bounds(model, x, labels, eps, method="backward")
    A32 = A.astype(np.float32)
    # bias from the stored float32 A so the file is self-consistent; lower stays auto_LiRPA's own
    bias = bias - np.einsum("nkd,nd->nk", A - A32.astype(np.float64), xf)
    err, worst = check(model, xf, labels, eps, lower, A32.astype(np.float64), bias)
    # C order and numbers only: upcc's npz reader takes numeric arrays; the model is named in tests/golden/README.md
    keys = {k: np.ascontiguousarray(v) for k, v in dict(x=xf, labels=labels, eps=np.float64(eps), lower=lower, A=A32, bias=bias).items()}
    print(f"{out}: model {model_ref}")
    np.savez_compressed(out, **keys)  # CROWN first, so a slow or failing alpha-CROWN loses nothing
    print(f"wrote {out}: n={n} eps={eps:.6f} min lower {lower.min():.4f} max lower {lower.max():.4f} "
          f"self-check rel err {err:.2e}, sampled slack min {worst:.2e}", flush=True)
    try:
        lower_alpha, _, _ = lc.crown_linear_bounds(model, x, labels, eps, method="CROWN-Optimized")
    except Exception as e:  # keep the CROWN golden even if alpha-CROWN fails
        print(f"alpha-CROWN failed: {e!r}")
        return
    assert (lower_alpha >= lower - 1e-4).all(), "alpha-CROWN looser than CROWN"
    keys["lower_alpha"] = np.ascontiguousarray(lower_alpha)
    np.savez_compressed(out, **keys)
    print(f"added lower_alpha: mean gain over CROWN {(lower_alpha - lower).mean():.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(lc.REPO, "data", "mnist"))
    ap.add_argument("--shared", default=None, help="shared/ folder (default ../shared beside the repo)")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--only", choices=["conv_small", "resnet_2b"], default=None)
    ap.add_argument("--out", default=os.path.join(lc.REPO, "tests", "golden"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    if args.only != "resnet_2b":
        mnist(args)
    if args.only != "conv_small":
        cifar(args)


def mnist(args):
    weights = "models/mnist/conv_small_natural.safetensors"
    model = lc.load_mnist_model(os.path.join(lc.REPO, weights))
    x, labels = lc.load_mnist_npz(os.path.join(args.data, "heldout.npz"), args.n)
    golden(model, x, labels, 6 / 255, weights, os.path.join(args.out, "conv_small_natural_crown.npz"))


def cifar(args):
    rel = "vnncomp2021/cifar10_resnet/onnx/resnet_2b.onnx"
    model = lc.load_resnet(lc.shared_path("external/" + rel, args.shared))
    x, labels = lc.load_eran_cifar(lc.shared_path("external/eran/cifar10_test.csv", args.shared), args.n)
    golden(model, x, labels, 1 / 255, "shared:" + rel, os.path.join(args.out, "resnet_2b_crown.npz"))


if __name__ == "__main__":
    main()
