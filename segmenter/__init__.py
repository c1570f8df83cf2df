"""Segmenter inference and evaluation: model, checkpoints, export, data, engines and metrics."""
