#!/usr/bin/env python3
"""Cut a data set's images into normalized float32 window files (.bin); write gt_file.txt and its manifest.

The command lives in segmenter/commands/preprocess.py; installed, it is also `segmenter-preprocess`.
"""
from segmenter.commands.preprocess import run

if __name__ == "__main__":
    run()
