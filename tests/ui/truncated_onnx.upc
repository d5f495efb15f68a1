network n = onnx("fixtures/truncated.onnx")
