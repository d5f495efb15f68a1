#!/usr/bin/env python3
"""Check the PyTorch ResNet-2B/4B (weights from the ONNX initializers, normalisation inside) against onnxruntime
on ERAN's 100 CIFAR-10 images, and print their accuracy. Run by hand in .venv-lirpa."""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lirpa_common as lc  # noqa: E402


def main():
    import onnxruntime as ort

    torch.set_num_threads(1)
    x, y = lc.load_eran_cifar(lc.shared_path("external/eran/cifar10_test.csv"), 100)
    xt = torch.tensor(x, dtype=torch.float32)
    mean = np.array(lc.CIFAR_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(lc.CIFAR_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    for name in ("resnet_2b", "resnet_4b"):
        path = lc.shared_path(f"external/vnncomp2021/cifar10_resnet/onnx/{name}.onnx")
        model = lc.load_resnet(path)
        with torch.no_grad():
            out = model(xt).numpy()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(path, opts)
        feed = sess.get_inputs()[0].name
        ref = np.concatenate([sess.run(None, {feed: (xt[i : i + 1].numpy() - mean) / std})[0] for i in range(100)])
        diff = np.abs(out - ref).max()
        assert diff < 1e-4, f"{name}: PyTorch and onnxruntime differ by {diff}"
        print(f"{name}: max |torch - onnxruntime| = {diff:.2e}, correct {(out.argmax(1) == y).sum()}/100")


if __name__ == "__main__":
    main()
