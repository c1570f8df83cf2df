"""Running exported models: the engine table, ONNX Runtime, OpenVINO, PyTorch, lower precisions, the measured auto choice."""
