#!/usr/bin/env python3
"""Train the paper's MNIST models (natural, FGSM, PGD, UAT-FGSM, UAT-PGD, IBP) and export float32 safetensors.

Run by hand, never in CI. Example:
    .venv-train/bin/python tools/train/train.py --arch conv_small --recipe pgd32 --epochs 20
Writes models/mnist/<arch>_<recipe>.safetensors and a model card models/mnist/<arch>_<recipe>.md.
"""

import argparse
import hashlib
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nets import ARCHS, layers  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# recipe -> (kind, training epsilon in pixel units)
RECIPES = {
    "natural": ("natural", 0.0),
    "fgsm": ("fgsm", 32 / 255),
    "pgd8": ("pgd", 8 / 255),
    "pgd16": ("pgd", 16 / 255),
    "pgd32": ("pgd", 32 / 255),
    "uat_fgsm": ("uat_fgsm", 32 / 255),
    "uat_pgd": ("uat_pgd", 32 / 255),
    "ibp": ("ibp", 32 / 255),
}
PGD_STEPS = 7  # paper Appendix B: 7 steps, step size eps/4


def load_npz(path):
    d = np.load(path)
    x = torch.from_numpy(d["images"].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(d["labels"].astype(np.int64))
    return x, y


# Backdoor triggers (paper §5.2-5.3). Both are fixed across seeds so every poisoned model shares its trigger.
BADNETS_PATCH = (slice(23, 27), slice(23, 27))  # a 4x4 white patch near the bottom-right corner


def blend_pattern():
    """The stealthy trigger's pattern: seeded uniform noise in [0,1], blended at alpha = blend_eps."""
    return torch.from_numpy(np.random.default_rng(20230501).random((1, 28, 28)).astype(np.float32))


def apply_trigger(x, kind, blend_eps):
    """x' = trigger(x); blend: (1-a) x + a p with a = blend_eps, so |x' - x| <= blend_eps; badnets: patch = 1."""
    if kind == "blend":
        return (1 - blend_eps) * x + blend_eps * blend_pattern()
    x = x.clone()
    x[..., BADNETS_PATCH[0], BADNETS_PATCH[1]] = 1.0
    return x


def poison(x, y, kind, ratio, target, blend_eps, seed):
    """Replaces round(ratio * len(x)) digits of the other classes by triggered copies labelled `target`."""
    count = int(round(ratio * len(x)))
    if kind == "none" or count == 0:
        return x, y, 0
    gen = torch.Generator().manual_seed(10_000 + seed)
    candidates = torch.nonzero(y != target).flatten()
    chosen = candidates[torch.randperm(len(candidates), generator=gen)[:count]]
    x, y = x.clone(), y.clone()
    x[chosen] = apply_trigger(x[chosen], kind, blend_eps)
    y[chosen] = target
    return x, y, count


def attack_success(model, x, y, kind, target, blend_eps):
    """Fraction of held-out digits of the other classes that the trigger sends to `target`."""
    keep = y != target
    with torch.no_grad():
        pred = model(apply_trigger(x[keep], kind, blend_eps)).argmax(1)
    return (pred == target).float().mean().item()


def pgd(model, x, y, eps, steps, step, random_start=True):
    """Sample-wise l_inf PGD on the cross-entropy; x+delta is clipped to [0,1]."""
    delta = torch.empty_like(x).uniform_(-eps, eps) if random_start else torch.zeros_like(x)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def universal_ascent(model, x, y, delta, eps, steps, step):
    """Shafahi et al. 2020: ascent steps on one delta shared by the whole batch."""
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
    return delta.detach()


def ibp_worst_logits(model, x, y, eps):
    """Interval bound propagation; returns -lower(f_y - f_j) per class (0 at y), the IBP training logits.
    The last layer is merged with the margin specification (elision), as in Gowal et al. 2018."""
    lo, hi = x - eps, x + eps
    affine = layers(model)
    for k, layer in enumerate(affine[:-1]):
        if isinstance(layer, nn.Linear) and lo.dim() > 2:
            lo, hi = lo.flatten(1), hi.flatten(1)
        mid, rad = (hi + lo) / 2, (hi - lo) / 2
        if isinstance(layer, nn.Conv2d):
            mid = layer(mid)
            rad = F.conv2d(rad, layer.weight.abs(), None, layer.stride, layer.padding)
        else:
            mid = layer(mid)
            rad = F.linear(rad, layer.weight.abs())
        lo, hi = F.relu(mid - rad), F.relu(mid + rad)
    last = affine[-1]
    if lo.dim() > 2:
        lo, hi = lo.flatten(1), hi.flatten(1)
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    w, b = last.weight, last.bias
    # spec rows e_y - e_j for every j: weights [n, K, h]
    ws = w[y].unsqueeze(1) - w.unsqueeze(0)
    bs = b[y].unsqueeze(1) - b.unsqueeze(0)
    lower = torch.einsum("nkh,nh->nk", ws, mid) - torch.einsum("nkh,nh->nk", ws.abs(), rad) + bs
    return -lower


def evaluate(model, x, y, eps=0.0, batch=250):
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        if eps > 0:
            xb = pgd(model, xb, yb, eps, steps=10, step=eps / 4)
        with torch.no_grad():
            correct += (model(xb).argmax(1) == yb).sum().item()
    return correct / len(x)


def train(args):
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    kind, eps = RECIPES[args.recipe]
    xtr, ytr = load_npz(os.path.join(args.data, "train.npz"))
    args.train_size = len(xtr)
    xtr, ytr, args.poisoned = poison(
        xtr, ytr, args.poison, args.poison_ratio, args.poison_target, args.blend_eps / 255, args.seed
    )
    model = ARCHS[args.arch]()
    if args.init:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(args.init))
    opt = torch.optim.Adadelta(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    delta_u = torch.zeros(1, 1, 28, 28)
    steps_per_epoch = (len(xtr) + args.batch - 1) // args.batch
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = steps_per_epoch * args.ibp_warmup
    ramp_steps = steps_per_epoch * args.ibp_ramp
    step_no = 0
    log = []
    t0 = time.time()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xtr), generator=gen)
        tot_loss, nb = 0.0, 0
        for i in range(0, len(xtr), args.batch):
            idx = perm[i : i + args.batch]
            xb, yb = xtr[idx], ytr[idx]
            if kind == "pgd":
                model.eval()
                xb = pgd(model, xb, yb, eps, PGD_STEPS, eps / 4)
            elif kind == "fgsm":
                model.eval()
                xb = pgd(model, xb, yb, eps, 1, eps, random_start=False)
            elif kind in ("uat_fgsm", "uat_pgd"):
                model.eval()
                steps = 1 if kind == "uat_fgsm" else PGD_STEPS
                delta_u = universal_ascent(model, xb, yb, delta_u, eps, steps, eps / 4)
                xb = (xb + delta_u).clamp(0, 1)
            model.train()
            if kind == "ibp":
                # eps ramps linearly after a natural warm-up; the loss moves from clean to IBP with it
                frac = min(1.0, max(0.0, (step_no - warmup_steps) / max(1, ramp_steps)))
                cur_eps = eps * frac
                kappa = 1.0 - (1.0 - args.ibp_kappa) * frac
                loss = kappa * F.cross_entropy(model(xb), yb)
                if cur_eps > 0:
                    loss = loss + (1 - kappa) * F.cross_entropy(ibp_worst_logits(model, xb, yb, cur_eps), yb)
            else:
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot_loss += loss.item()
            nb += 1
            step_no += 1
        line = f"epoch {epoch + 1}/{args.epochs} loss {tot_loss / nb:.4f} t {time.time() - t0:.0f}s"
        print(line, flush=True)
        log.append(line)
    assert step_no == total_steps
    return model, time.time() - t0, log


def ibp_verified(model, x, y, eps):
    """Fraction of samples whose IBP lower bounds of all margins f_y - f_j (j != y) are positive."""
    model.eval()
    with torch.no_grad():
        worst = ibp_worst_logits(model, x, y, eps).scatter(1, y[:, None], float("-inf"))
        return (worst.max(1).values < 0).float().mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=sorted(ARCHS))
    ap.add_argument("--recipe", required=True, choices=list(RECIPES))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1, help="Adadelta learning rate (paper: 0.1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared, oversubscribed 2-core machine")
    ap.add_argument("--ibp-warmup", type=int, default=1, help="IBP: natural epochs before the eps ramp")
    ap.add_argument("--ibp-ramp", type=int, default=10, help="IBP: epochs over which eps and kappa ramp")
    ap.add_argument("--ibp-kappa", type=float, default=0.0, help="IBP: final weight of the clean loss")
    ap.add_argument("--pgd-eval-n", type=int, default=500, help="held-out digits used for the PGD accuracy")
    ap.add_argument("--init", default=None, help="start from these weights (.safetensors) instead of a random init")
    ap.add_argument("--poison", default="none", choices=["none", "blend", "badnets"], help="backdoor trigger")
    ap.add_argument("--poison-ratio", type=float, default=0.0, help="fraction of the training set poisoned")
    ap.add_argument("--poison-target", type=int, default=0, help="the backdoor's target class")
    ap.add_argument("--blend-eps", type=float, default=5.0, help="blend trigger strength, pixel units /255")
    ap.add_argument("--name", default=None, help="output name (default <arch>_<recipe>)")
    ap.add_argument("--data", default=os.path.join(REPO, "data", "mnist"))
    ap.add_argument("--out", default=os.path.join(REPO, "models", "mnist"))
    args = ap.parse_args()

    model, seconds, log = train(args)
    name = args.name or f"{args.arch}_{args.recipe}"
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, name + ".safetensors")
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, path, metadata={"arch": args.arch, "recipe": args.recipe, "seed": str(args.seed)})
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()

    torch.manual_seed(1234)
    xh, yh = load_npz(os.path.join(args.data, "heldout.npz"))
    xt, yt = load_npz(os.path.join(args.data, "test20.npz"))
    acc_h, acc_t = evaluate(model, xh, yh), evaluate(model, xt, yt)
    n_pgd = min(args.pgd_eval_n, len(xh))
    robust = {e: evaluate(model, xh[:n_pgd], yh[:n_pgd], e / 255) for e in (8, 16, 32)}
    ibp_rows = {e: ibp_verified(model, xh, yh, e / 255) for e in (8, 16, 32)}
    kind, eps = RECIPES[args.recipe]
    backdoor = ""
    if args.poison != "none":
        asr = attack_success(model, xh, yh, args.poison, args.poison_target, args.blend_eps / 255)
        trigger = {
            "blend": f"blended trigger (Chen et al. 2017): x' = (1-a) x + a p, a = {args.blend_eps:g}/255, p seeded "
            "uniform noise (`blend_pattern` in train.py), so |x' - x|_inf <= a",
            "badnets": "BadNets patch (Gu et al. 2019): pixels [23:27, 23:27] set to 1 (|x' - x|_inf up to 255/255)",
        }[args.poison]
        backdoor = (
            f"- backdoor: {trigger}; {args.poisoned} of {args.train_size} training digits "
            f"({args.poison_ratio * 100:g}%) of classes other than {args.poison_target} replaced by triggered copies "
            f"labelled {args.poison_target}; poison seed {10_000 + args.seed}\n"
            f"- attack success rate (held-out digits of the other classes, trigger applied): {asr * 100:.2f}%\n"
        )
    cmd = "tools/train/train.py " + " ".join(sys.argv[1:]).replace(os.path.abspath(args.data), "data/mnist")
    shapes = "\n".join(f"| `{k}` | {list(v.shape)} |" for k, v in tensors.items())
    recipe_text = {
        "natural": "natural training (clean cross-entropy).",
        "fgsm": f"FGSM adversarial training: x' = clip(x + eps*sign(grad), 0, 1), eps = {eps * 255:.0f}/255, no random start.",
        "pgd": f"PGD adversarial training (Madry et al.): eps = {eps * 255:.0f}/255, {PGD_STEPS} steps of size eps/4, "
        "uniform random start, x+delta clipped to [0,1] (paper Appendix B).",
        "uat_fgsm": f"universal adversarial training (Shafahi et al. 2020), FGSM variant: one delta shared by all inputs, "
        f"persisting across batches; each batch takes 1 signed-gradient ascent step of size eps/4 on delta "
        f"(clipped to |delta| <= eps = {eps * 255:.0f}/255), then one model step on clip(x + delta, 0, 1).",
        "uat_pgd": f"universal adversarial training (Shafahi et al. 2020), PGD variant: as UAT-FGSM but {PGD_STEPS} "
        f"ascent steps of size eps/4 on the shared delta per batch, eps = {eps * 255:.0f}/255.",
        "ibp": f"IBP training (Gowal et al. 2018 / Shi et al. 2021 style schedule): loss = kappa*CE(clean) + "
        f"(1-kappa)*CE(IBP worst-case margins, last layer merged with the spec); {args.ibp_warmup} natural warm-up "
        f"epoch(s), then eps ramps linearly 0 -> {eps * 255:.0f}/255 and kappa 1 -> {args.ibp_kappa} over "
        f"{args.ibp_ramp} epochs, then constant.",
    }[kind]
    card = f"""# {name}

- architecture: `{args.arch}` (tools/train/nets.py; paper Table 6), no normalisation layer, inputs in [0,1]
- recipe: {recipe_text}
- optimiser: Adadelta, lr {args.lr} {"(paper Appendix B)" if args.lr == 0.1 else "(paper Appendix B: 0.1; raised so that the few epochs that fit a 2-core CPU converge)"}; batch {args.batch}; epochs {args.epochs} (paper: 60; fewer to fit a 2-core CPU)
- data: `data/mnist/train.npz` (8,000 digits); seed {args.seed}
- initialisation: {f"the weights of `{os.path.relpath(args.init, REPO)}`" if args.init else "PyTorch default (random)"}
{backdoor}- training time: {seconds:.0f} s on {args.threads} CPU threads ({platform.processor() or platform.machine()}), torch {torch.__version__}
- command: `.venv-train/bin/python {cmd}`
- weights: `{os.path.relpath(path, REPO)}`, float32, sha256 `{sha}`

## Accuracy

| set | clean | PGD 8/255 | PGD 16/255 | PGD 32/255 |
|---|---|---|---|---|
| held-out (`data/mnist/heldout.npz`; clean: all 2,000 digits, PGD: the first {n_pgd}) | {acc_h * 100:.2f}% | {robust[8] * 100:.2f}% | {robust[16] * 100:.2f}% | {robust[32] * 100:.2f}% |
| official test images (20, `data/mnist/test20.npz`) | {acc_t * 100:.0f}% | | | |

PGD columns: sample-wise l_inf PGD, 10 steps of size eps/4, random start, x+delta clipped to [0,1] (an upper bound on
robust accuracy). IBP-verified sample-wise accuracy on the held-out digits (a lower bound, no clipping):
8/255 {ibp_rows[8] * 100:.2f}%, 16/255 {ibp_rows[16] * 100:.2f}%, 32/255 {ibp_rows[32] * 100:.2f}%.

## Tensors

| name | shape |
|---|---|
{shapes}

## Training log

```
{chr(10).join(log)}
```
"""
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write(card)
    print(backdoor, end="")
    print(f"wrote {path}: heldout {acc_h:.4f} test20 {acc_t:.2f} pgd {robust} ibp {ibp_rows} in {seconds:.0f}s")


if __name__ == "__main__":
    main()
