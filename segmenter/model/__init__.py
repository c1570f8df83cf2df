"""The network and its files: the Segmenter model, released variants and checkpoints, ONNX export, the export cache."""
