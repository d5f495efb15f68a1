"""Shared helpers for the auto_LiRPA reference pipeline and the golden files (run by hand, never in CI).

Needs the .venv-lirpa venv (torch 1.13.1, auto-lirpa 0.3, onnx, highspy); see tools/reference/README.md.
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools", "train"))
from nets import ARCHS  # noqa: E402

# shared/ sits beside the project root (../shared); from a worktree under wt/ it is one level higher
SHARED = next(
    (p for p in (os.path.join(REPO, "..", "shared"), os.path.join(REPO, "..", "..", "shared")) if os.path.isdir(p)),
    os.path.join(REPO, "..", "shared"),
)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2471, 0.2435, 0.2616)


def shared_path(rel, shared=None):
    return os.path.abspath(os.path.join(shared or os.environ.get("UPCC_SHARED", SHARED), rel))


def load_mnist_model(path):
    """A safetensors file written by tools/train/train.py; the architecture is read from its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        arch = f.metadata()["arch"]
    model = ARCHS[arch]()
    model.load_state_dict(load_file(path))
    return model.eval()


def load_mnist_npz(path, n):
    d = np.load(path)
    x = d["images"][:n].astype(np.float64) / 255.0
    return x.reshape(len(x), 1, 28, 28), d["labels"][:n].astype(np.int64)


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0)) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class ResNet(nn.Module):
    """VNN-COMP 2021 cifar10_resnet ResNet-2B/4B; names match the ONNX initializers. Input in [0,1] pixels;
    the CIFAR normalisation is the first layer, so eps stays in pixel units."""

    def __init__(self, width, stages, hidden_in):
        super().__init__()
        self.norm = Normalize(CIFAR_MEAN, CIFAR_STD)
        self.conv1 = nn.Conv2d(3, width, 3, 2, 1)
        cin = width
        self.stages = []
        for s, blocks in enumerate(stages):
            layers = []
            for cout, stride in blocks:
                layers.append(Block(cin, cout, stride))
                cin = cout
            setattr(self, f"layer{s + 1}", nn.Sequential(*layers))
            self.stages.append(f"layer{s + 1}")
        self.linear1 = nn.Linear(hidden_in, 100)
        self.linear2 = nn.Linear(100, 10)

    def forward(self, x):
        return self.forward_normalized(self.norm(x))

    def forward_normalized(self, x):
        x = F.relu(self.conv1(x))
        for name in self.stages:
            x = getattr(self, name)(x)
        x = F.relu(self.linear1(torch.flatten(x, 1)))
        return self.linear2(x)


class NormalizedBody(nn.Module):
    """A ResNet without its normalisation layer: input already normalised."""

    def __init__(self, resnet):
        super().__init__()
        self.resnet = resnet

    def forward(self, z):
        return self.resnet.forward_normalized(z)


def load_resnet(onnx_path):
    import onnx
    from onnx import numpy_helper

    name = os.path.basename(onnx_path)
    if name == "resnet_2b.onnx":
        model = ResNet(8, [[(16, 2), (16, 1)]], 1024)
    elif name == "resnet_4b.onnx":
        model = ResNet(16, [[(32, 2), (32, 1)], [(32, 2), (32, 1)]], 512)
    else:
        raise ValueError(f"unknown ResNet {name}")
    g = onnx.load(onnx_path).graph
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in g.initializer}
    state = model.state_dict()
    missing = set(state) - set(weights) - {"norm.mean", "norm.std"}
    extra = set(weights) - set(state)
    if missing or extra:
        raise ValueError(f"ONNX initializers do not match the module: missing {missing}, extra {extra}")
    state.update(weights)
    model.load_state_dict(state)
    return model.eval()


def load_eran_cifar(path, n):
    """ERAN csv: label, then 3072 pixels 0-255 in HWC order. Returns x [n,3,32,32] in [0,1] (CHW), labels."""
    rows = np.loadtxt(path, delimiter=",", dtype=np.int64, max_rows=n)
    labels = rows[:, 0]
    x = np.ascontiguousarray(rows[:, 1:].reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2)).astype(np.float64) / 255.0
    return x, labels


def spec_matrix(labels, k=10):
    """Rows e_y - e_j for the classes j != y in increasing order: [n, k-1, k]."""
    n = len(labels)
    c = torch.zeros(n, k - 1, k)
    for i, y in enumerate(labels):
        others = [j for j in range(k) if j != y]
        for r, j in enumerate(others):
            c[i, r, y] = 1.0
            c[i, r, j] = -1.0
    return c


def crown_linear_bounds(model, x, labels, eps, method="backward", batch=None, alpha_iters=20):
    """auto_LiRPA linear lower bounds of the margins f_y - f_j w.r.t. the input, x perturbed by an l_inf ball.

    Returns float64 numpy arrays lower [n,9], A [n,9,d], bias [n,9] with margin(x+delta) >= A.delta + bias for
    |delta|_inf <= eps (bias = value at delta = 0 = lower + eps*|A|_1). A w.r.t. x equals A w.r.t. a delta added
    to x; auto_LiRPA 0.3 crashes on an unperturbed x beside a perturbed delta in patches mode, hence this form.
    """
    from auto_LiRPA import BoundedModule, BoundedTensor
    from auto_LiRPA.perturbations import PerturbationLpNorm

    x = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32).contiguous()
    n = x.shape[0]
    batch = batch or n
    opts = {"optimize_bound_args": {"iteration": alpha_iters}}
    # A ResNet's normalisation z = (x - mu)/sigma is bounded exactly as a per-channel box on z
    # (auto_LiRPA 0.3's patches mode cannot bound the division); A w.r.t. x is then A_z / sigma.
    if isinstance(model, ResNet):
        mu, sigma = model.norm.mean, model.norm.std
        net = NormalizedBody(model)
    else:
        mu, sigma = torch.zeros(1), torch.ones(1)
        net = model
    bounded = BoundedModule(net, torch.zeros_like(x[:1]), bound_opts=opts, device="cpu")
    out_name, in_name = bounded.output_name[0], bounded.input_name[0]
    lowers, As, biases = [], [], []
    for s in range(0, n, batch):
        xb = x[s : s + batch]
        c = spec_matrix(labels[s : s + batch])
        zb, z_lo, z_hi = (xb - mu) / sigma, (xb - eps - mu) / sigma, (xb + eps - mu) / sigma
        ptb = PerturbationLpNorm(norm=np.inf, eps=eps) if net is model else PerturbationLpNorm(
            norm=np.inf, eps=None, x_L=z_lo, x_U=z_hi)
        bz = BoundedTensor(zb if net is not model else xb, ptb)
        lb, _, a_dict = bounded.compute_bounds(
            x=(bz,), C=c, method=method, bound_upper=False, return_A=True, needed_A_dict={out_name: [in_name]}
        )
        rec = a_dict[out_name][in_name]
        k = c.shape[1]
        lA_z = rec["lA"].detach().double().reshape(xb.shape[0], k, *xb.shape[1:])
        lbias = rec["lbias"].detach().reshape(xb.shape[0], k).double()
        # bound w.r.t. z: lA_z.z + lbias; w.r.t. delta at x fixed: (lA_z/sigma).delta + (lA_z.z(x) + lbias)
        bias = torch.einsum("nkd,nd->nk", lA_z.flatten(2), zb.double().flatten(1)) + lbias
        lA = (lA_z / sigma.double()).flatten(2)
        lowers.append(lb.detach().double().numpy())
        As.append(lA.numpy())
        biases.append(bias.numpy())
    return np.concatenate(lowers), np.concatenate(As), np.concatenate(biases)
