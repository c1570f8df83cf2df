"""The guide's steps between files: the window manifest, preprocess, the ais_bench stand-in, postprocess."""
