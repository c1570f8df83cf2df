"""Segmenter inference and evaluation, in floors: model, data, engines, evaluation, the guide's file route,
outputs and demo data, over shared helpers; `segmenter.api` opens a model, segments images and evaluates."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("segmenter-infer")
except PackageNotFoundError:  # run from a checkout that was not installed
    __version__ = "0+unknown"
