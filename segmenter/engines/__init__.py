"""Running exported models: the engine table, ONNX Runtime, OpenVINO, PyTorch, lower precisions, auto."""
