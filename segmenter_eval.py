#!/usr/bin/env python3
"""Evaluate a model on its data set (Cityscapes, ADE20K, Pascal Context) in one streaming process: no files between.

The command lives in segmenter/commands/eval.py; installed, it is also `segmenter-eval`.
"""
from segmenter.commands.eval import run

if __name__ == "__main__":
    run()
