network n = onnx("no_such_model.onnx")
