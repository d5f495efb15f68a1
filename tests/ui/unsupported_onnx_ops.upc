network n = onnx("fixtures/unsupported_ops.onnx")
