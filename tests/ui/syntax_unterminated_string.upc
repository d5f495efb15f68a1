network n = onnx("model.onnx)
dataset d = npz("x.npz")
