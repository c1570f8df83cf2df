#!/usr/bin/env python3
"""Run an exported ONNX model over .bin/.npy inputs with ais_bench's flags, file layout and summary.

The command lives in segmenter/commands/infer.py; installed, it is also `segmenter-infer`.
"""
from segmenter.commands.infer import run

if __name__ == "__main__":
    run()
