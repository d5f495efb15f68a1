//! ONNX graph import into the IR (stub).
