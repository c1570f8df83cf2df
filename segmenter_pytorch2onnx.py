#!/usr/bin/env python3
"""Export a Segmenter checkpoint to ONNX: the released format (checkpoint.pth + variant.yml), MMSegmentation's or

The command lives in segmenter/commands/pytorch2onnx.py; installed, it is also `segmenter-pytorch2onnx`.
"""
from segmenter.commands.pytorch2onnx import run

if __name__ == "__main__":
    run()
