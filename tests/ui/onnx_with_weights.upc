network n = onnx("fixtures/unsupported_ops.onnx") weights "fixtures/tiny.safetensors"
