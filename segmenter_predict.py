#!/usr/bin/env python3
"""Segment your own images and videos: label maps, colour maps and overlays with a legend.

The command lives in segmenter/commands/predict.py; installed, it is also `segmenter-predict`.
"""
from segmenter.commands.predict import run

if __name__ == "__main__":
    run()
