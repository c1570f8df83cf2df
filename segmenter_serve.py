#!/usr/bin/env python3
"""Serve segmentations over HTTP on Ray Serve: POST an image, get its labels; a page to try it in a browser.

The command lives in segmenter/commands/serve.py; installed, it is also `segmenter-serve`.
"""
from segmenter.commands.serve import run

if __name__ == "__main__":
    run()
