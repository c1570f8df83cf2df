#!/usr/bin/env python3
"""Convert a Segmenter checkpoint into the upstream release format or MMSegmentation's.

The command lives in segmenter/commands/convert.py; installed, it is also `segmenter-convert`.
"""
from segmenter.commands.convert import run

if __name__ == "__main__":
    run()
