"""Serve segmentations over HTTP on Ray Serve, with the suite's own windows, merge and engines.

POST an encoded image to /segment and get its class indices back as a PNG (the same bytes
segmenter_predict.py writes as <name>_labels.png); ?output=color, overlay or json choose other answers.
GET /model describes what is served, GET /health says ready, GET / is a page to try images in a browser.
The model is exported and its engine chosen once, before the replicas start; concurrent requests share
engine calls. Ctrl-C (or SIGTERM) lets the requests in flight finish, then stops.
"""
from __future__ import annotations

import argparse
import os

from segmenter.cli import (
    ArgumentParser,
    add_device_flags,
    add_model_flags,
    add_view_flags,
    add_window_flags,
    calibration_dir_images,
    open_model_from_args,
    positive_float,
    positive_int,
)
from segmenter.data.settings import describe
from segmenter.defaults import SERVE_HOST, SERVE_PORT
from segmenter.errors import SegmenterError, run_cli
from segmenter.extras import require
from segmenter.serve.requests import ServeSettings

TOKEN_VARIABLE = "SEGMENTER_TOKEN"
SERVE_RUN_WINDOWS = 100_000  # `auto` decides for a long run: a server answers many windows
DEFAULT = ServeSettings()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python segmenter_serve.py --model models/demo/checkpoint.pth "
                            "--device openvino --precision fp32   # then open http://127.0.0.1:8000/")
    add_model_flags(parser)
    parser.add_argument("--port", type=positive_int, default=SERVE_PORT,
                        help=f"TCP port to listen on. Default: {SERVE_PORT}.")
    parser.add_argument("--host", default=SERVE_HOST,
                        help="Address to listen on; 0.0.0.0 answers other machines too (give a --token then). "
                             f"Default: {SERVE_HOST}, this machine only.")
    parser.add_argument("--ray", nargs="?", const="local", default="local", metavar="ADDRESS",
                        help="Where the replicas run: a local Ray runtime on this machine (the default, nothing to "
                             "start by hand), or the cluster at ADDRESS (auto, host:6379, ray://host:10001), its "
                             "nodes sharing the replicas.")
    parser.add_argument("--replicas", type=positive_int, default=1,
                        help="Replicas, each one engine: each takes one GPU, or the CPUs divided among the replicas "
                             "(--threads to set). Default: 1.")
    parser.add_argument("--max-batch-size", type=positive_int, default=DEFAULT.max_batch_size,
                        help="Windows per engine call, from one request or several arriving together. "
                             f"Default: {DEFAULT.max_batch_size}.")
    parser.add_argument("--batch-wait-ms", type=positive_float, default=1000 * DEFAULT.batch_wait_s,
                        help="The longest a window waits for others to fill a batch, in milliseconds. "
                             f"Default: {1000 * DEFAULT.batch_wait_s:g}.")
    parser.add_argument("--max-requests", type=positive_int, default=DEFAULT.max_requests,
                        help="Requests in flight per replica; past it the answer is 503 with Retry-After. "
                             f"Default: {DEFAULT.max_requests}.")
    parser.add_argument("--max-body-mb", type=positive_float, default=DEFAULT.max_body_bytes / 2**20,
                        help=f"Largest request body in MB; a larger one is answered 413. Default: "
                             f"{DEFAULT.max_body_bytes / 2**20:g}.")
    parser.add_argument("--token", default=None,
                        help=f"Require 'Authorization: Bearer TOKEN' on every endpoint but /health (the page: open "
                             f"/?token=TOKEN once). Default: the {TOKEN_VARIABLE} environment variable, else none.")
    parser.add_argument("--alpha", type=positive_float, default=DEFAULT.alpha,
                        help=f"Opacity of the prediction colours in overlays, up to 1. Default: {DEFAULT.alpha}.")
    add_window_flags(parser)
    add_view_flags(parser)
    add_device_flags(parser, threads="the CPU cores divided among the replicas, one per GPU replica")
    return parser.parse_args(argv)


def probe_windows_of(model, args: argparse.Namespace):
    """Windows an `auto` engine is measured on: of the --calibration-dir images (static int8 calibrates on
    them), else of a generated street scene at the data set's image size (static int8 is then not a candidate)."""
    images = calibration_dir_images(args)
    if images:
        return images, None
    from segmenter.data.images import same_shape_windows
    from segmenter.data.plan import ImagePlan
    from segmenter.demo.scenes import draw_street_scene

    size = model.cfg.image_size
    bgr = draw_street_scene(size, size * min(model.spec.box_ratio, 2), 0).bgr()  # a street photo's shape
    plan = ImagePlan.for_image("scene", "scene", "", "", bgr.shape[:2], model.cfg)
    return None, same_shape_windows(bgr, plan, model.cfg, max(2, model.batch_size))


def main(args: argparse.Namespace) -> int:
    require("ray.serve", "serve", "the server")
    from segmenter.serve.server import check_port, serve_model

    if args.alpha > 1:
        raise SegmenterError(f"--alpha {args.alpha}: must be at most 1")
    check_port(args.host, args.port)  # before the model is prepared
    token = args.token if args.token is not None else os.environ.get(TOKEN_VARIABLE) or None
    settings = ServeSettings(max_requests=args.max_requests, max_body_bytes=int(args.max_body_mb * 2**20),
                             max_batch_size=args.max_batch_size, batch_wait_s=args.batch_wait_ms / 1000, token=token,
                             alpha=args.alpha)
    args.batch_size = args.max_batch_size
    model = open_model_from_args(args)
    print(describe(model.cfg, model.spec))
    if model.needs_measuring(SERVE_RUN_WINDOWS):
        images, windows = probe_windows_of(model, args)
        if images:
            model.resolve_on(images, SERVE_RUN_WINDOWS)
        else:
            model.resolve(windows, SERVE_RUN_WINDOWS)
    if args.host not in ("127.0.0.1", "localhost", "::1") and token is None:
        print(f"warning: listening on {args.host} without a token: anyone who reaches this port may use the server")
    serve_model(model, settings, args.host, args.port, None if args.ray == "local" else args.ray, args.replicas,
                log=lambda line: print(line, flush=True))  # read as it comes by whoever started the server
    return 0


def run() -> None:
    """The `segmenter-serve` command (and the top-level segmenter_serve.py)."""
    run_cli(lambda: main(parse_args()))


if __name__ == "__main__":
    run()

