#!/usr/bin/env python3
"""Merge window outputs per image, compare with the ground truth, write the metrics (mIoU) file.

The command lives in segmenter/commands/postprocess.py; installed, it is also `segmenter-postprocess`.
"""
from segmenter.commands.postprocess import run

if __name__ == "__main__":
    run()
