"""Serving the trained classifier: the input/output contract, ONNX export, prediction, registry."""
