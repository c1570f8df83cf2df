"""Segmenter inference and evaluation, in floors: model, data, engines, evaluation, the guide's file route,
outputs and demo data, over shared helpers; `segmenter.api` opens a model, segments images and evaluates."""
