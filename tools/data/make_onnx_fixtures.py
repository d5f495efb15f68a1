#!/usr/bin/env python3
"""Writes the ONNX import test fixtures and their onnxruntime goldens into tests/data/formats/.

  .venv/bin/pip install numpy onnx onnxruntime
  .venv/bin/python tools/data/make_onnx_fixtures.py

* ops.onnx: a small CNN using every supported lowering (Sub/Div normalisation, Conv, BatchNormalization,
  Add/Sub of activations, const - x, Mul, AveragePool, Shape→Gather→Unsqueeze→Concat→Reshape, MatMul, Gemm
  with transB=0 and alpha/beta, Constant) plus golden outputs for two random inputs.
* unsupported.onnx: a model with three unsupported nodes (Sigmoid, grouped Conv, Softmax).
* nan_weight.onnx, shape_mismatch.onnx, div_zero.onnx, dangling.onnx: models that must be refused.
* resnets.json: logits of the VNN-COMP 2021 ResNet-2B/4B on the first 5 ERAN CIFAR-10 test images.
"""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "formats"
SHARED = ROOT.parent / "shared"
if not SHARED.exists():
    SHARED = ROOT.parent.parent / "shared"
CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2471, 0.2435, 0.2616]


def run(model_path, x):
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: x.astype(np.float32)})[0]


def init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def ops_model(rng):
    c = lambda *s: rng.normal(size=s).astype(np.float32) * 0.5
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["n0"], name="sub_mean"),
        helper.make_node("Div", ["n0", "std"], ["n1"], name="div_std"),
        helper.make_node("Conv", ["n1", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2],
                         kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c1", "g", "beta", "rm", "rv"], ["bn"], name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["a1"], name="residual"),
        helper.make_node("Sub", ["a1", "c2"], ["s1"], name="sub_acts"),
        helper.make_node("Sub", ["half", "s1"], ["s2"], name="half_minus"),
        helper.make_node("Mul", ["scale", "s2"], ["m1"], name="mul_scale"),
        helper.make_node("Relu", ["m1"], ["r2"], name="relu2"),
        helper.make_node("AveragePool", ["r2"], ["p1"], name="avgpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["p1"], ["shape"], name="shape"),
        helper.make_node("Constant", [], ["zero"], name="const_zero",
                         value=numpy_helper.from_array(np.array(0, dtype=np.int64))),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["batch"], ["batch1"], name="unsqueeze", axes=[0]),
        helper.make_node("Concat", ["batch1", "minus_one"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["p1", "target"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "wm"], ["h"], name="matmul"),
        helper.make_node("Add", ["h", "bm"], ["h1"], name="add_bias"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu3"),
        helper.make_node("Gemm", ["h2", "wg", "bg"], ["y"], name="gemm", alpha=0.5, beta=2.0, transB=0),
        helper.make_node("Relu", ["h1"], ["unused"], name="dead_branch"),
    ]
    inits = [
        init("mean", np.array([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1)),
        init("std", np.array([0.2, 0.25, 0.3]).reshape(3, 1, 1)),
        init("w1", c(4, 3, 3, 3)), init("b1", c(4)),
        init("g", 1 + c(4) * 0.1), init("beta", c(4)), init("rm", c(4)), init("rv", 1 + np.abs(c(4))),
        init("w2", c(4, 4, 3, 3)),
        init("half", [0.5]), init("scale", c(1, 4, 1, 1)),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one"),
        init("wm", c(36, 12)), init("bm", c(12)),
        init("wg", c(12, 5)), init("bg", c(1, 5)),
    ]
    graph = helper.make_graph(
        nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def unsupported_model():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="grouped", group=2),
        helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
        helper.make_node("Flatten", ["s"], ["f"], name="flat"),
        helper.make_node("Softmax", ["f"], ["y"], name="soft"),
    ]
    graph = helper.make_graph(
        nodes, "unsupported", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 18])],
        [init("w", np.ones((2, 1, 3, 3)))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def small_model(name, nodes, inits, out_dims):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def invalid_models():
    """Models that decode but must be refused: (file name, model)."""
    gemm = lambda w: ([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)], [init("w", w)])
    nan_nodes, nan_inits = gemm(np.array([[1, 2, np.nan, 4]]))
    wide_nodes, wide_inits = gemm(np.ones((2, 5)))
    return [
        ("nan_weight.onnx", small_model("nan", nan_nodes, nan_inits, [1, 1])),
        ("shape_mismatch.onnx", small_model("wide", wide_nodes, wide_inits, [1, 2])),
        ("div_zero.onnx", small_model("divzero", [helper.make_node("Div", ["x", "z"], ["y"], name="div")],
                                      [init("z", [1, 0, 1, 1])], [1, 4])),
        ("dangling.onnx", small_model("dangling", [helper.make_node("Relu", ["nowhere"], ["y"], name="relu")],
                                      [], [1, 4])),
    ]


def eran_cifar(n):
    rows = np.loadtxt(SHARED / "external" / "eran" / "cifar10_test.csv", delimiter=",", max_rows=n)
    labels = rows[:, 0].astype(int)
    images = rows[:, 1:].reshape(n, 32, 32, 3).transpose(0, 3, 1, 2) / 255.0
    mean = np.array(CIFAR_MEAN).reshape(1, 3, 1, 1)
    std = np.array(CIFAR_STD).reshape(1, 3, 1, 1)
    return (images - mean) / std, labels


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    model = ops_model(rng)
    onnx.checker.check_model(model)
    onnx.save(model, OUT / "ops.onnx")
    inputs = rng.uniform(0, 1, size=(2, 1, 3, 12, 12)).astype(np.float32)
    outputs = [run(OUT / "ops.onnx", x) for x in inputs]
    json.dump({"inputs": [x.ravel().tolist() for x in inputs], "outputs": [y.ravel().tolist() for y in outputs]},
              open(OUT / "ops.json", "w"))
    unsupported = unsupported_model()
    onnx.save(unsupported, OUT / "unsupported.onnx")
    for file_name, model in invalid_models():
        onnx.save(model, OUT / file_name)

    images, labels = eran_cifar(5)
    resnets = {"mean": CIFAR_MEAN, "std": CIFAR_STD, "labels": labels.tolist()}
    for name in ["resnet_2b", "resnet_4b"]:
        path = SHARED / "external" / "vnncomp2021" / "cifar10_resnet" / "onnx" / f"{name}.onnx"
        logits = [run(path, x[None]).ravel().tolist() for x in images]
        resnets[name] = logits
        print(name, "predictions", np.argmax(logits, axis=1).tolist(), "labels", labels.tolist())
    json.dump(resnets, open(OUT / "resnets.json", "w"), indent=1)


if __name__ == "__main__":
    main()
