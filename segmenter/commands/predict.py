"""Segment your own images and videos: label maps, colour maps and overlays with a legend.

Inputs are image files, folders (searched recursively for images and videos) or glob patterns; outputs
mirror the input tree under --output-dir: <name>_labels.png (class indices; for Cityscapes also
<name>_labelIds.png), <name>_color.png (the data set's palette) and <name>_overlay.png (input and
prediction side by side, with a legend). A video gives <name>_overlay.mp4 (same frame rate and size)
and, with --frames, a PNG set per frame. Files that cannot be read are reported; the rest are still
processed, and the exit status is 1 if any failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segmenter.cli import (
    ArgumentParser,
    add_engine_flags,
    add_model_flags,
    add_view_flags,
    add_window_flags,
    model_reads,
    open_model_from_args,
    positive_float,
    positive_int,
)
from segmenter.data.settings import describe
from segmenter.errors import SegmenterError, run_cli
from segmenter.evaluation.provenance import RunClock, summary_line
from segmenter.files import ensure_writable_dir, refuse_overwrite
from segmenter.outputs.predict import (
    RUN_RECORD,
    SAVE_KINDS,
    check_outputs,
    collect_sources,
    first_frame_windows,
    input_census,
    run_predict,
    write_run_record,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python segmenter_predict.py --model models/demo/checkpoint.pth "
                            "--input runs/demo/data/cityscapes/leftImg8bit/val --output-dir runs/predict")
    add_model_flags(parser)
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="Image files, folders (recursively) or glob patterns (quoted); videos (mp4, avi, mov, "
                             "mkv, webm) too.")
    parser.add_argument("--output-dir", required=True, help="Folder to write the outputs into, mirroring the inputs.")
    parser.add_argument("--save", default=",".join(SAVE_KINDS),
                        help=f"Which outputs to write, comma-separated from {', '.join(SAVE_KINDS)}. Default: all.")
    parser.add_argument("--frames", action="store_true",
                        help="For videos, also write the chosen outputs of every frame as PNGs (<name>_frames/).")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="Stop after this many images or video frames, for a quick look.")
    parser.add_argument("--alpha", type=positive_float, default=0.55,
                        help="Opacity of the prediction colours in overlays, up to 1. Default: 0.55.")
    add_window_flags(parser)
    add_view_flags(parser)
    add_engine_flags(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    clock = RunClock()
    save = tuple(kind.strip() for kind in args.save.split(",") if kind.strip())
    unknown = [kind for kind in save if kind not in SAVE_KINDS]
    if unknown or not save:
        raise SegmenterError(f"--save {args.save}: choose from {', '.join(SAVE_KINDS)}")
    if args.alpha > 1:
        raise SegmenterError(f"--alpha {args.alpha}: must be at most 1")
    sources = collect_sources(args.input, Path(args.output_dir))
    check_outputs(sources, Path(args.output_dir), save, args.frames)
    refuse_overwrite({"output folder": args.output_dir}, model_reads(args))
    out_dir = ensure_writable_dir(args.output_dir, "output folder")
    model = open_model_from_args(args)
    refuse_overwrite({"output folder": out_dir}, model.reads())
    print(describe(model.cfg, model.spec))
    census, run_windows = input_census(sources, model.cfg, args.limit, model.spec.n_cls)  # without images too large
    readable = {plan.image_path for plan in census.plans} if census is not None else set()
    images = [s.path for s in sources if not s.video and s.path in readable]  # the probe reads only these
    if images:
        model.resolve_on(images, run_windows)
    elif model.needs_measuring(run_windows):
        model.resolve(first_frame_windows(sources, model.cfg), run_windows)
    engine = model.engine
    print(f"{len(sources)} inputs -> {out_dir}")
    summary = run_predict(sources, model.spec, model.cfg, engine, out_dir, save, args.frames, args.batch_size,
                          args.workers, args.limit, args.alpha)
    record = write_run_record(out_dir / RUN_RECORD, model.provenance(), clock.finish(
        summary.windows, summary.images + summary.frames, frames=summary.frames, inputs=summary.inputs,
        unreadable=len(summary.failed)))
    print(f"segmented {summary.images} images and {summary.frames} video frames into {out_dir} (what produced "
          f"them: {out_dir / RUN_RECORD})")
    print(summary_line(record))
    if summary.failed:
        print(f"error: {len(summary.failed)} of {summary.inputs} inputs could not be read: " +
              "; ".join(f"{path} ({reason})" for path, reason in summary.failed[:5]) +
              (" ..." if len(summary.failed) > 5 else ""), file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """The `segmenter-predict` command (and the top-level segmenter_predict.py)."""
    run_cli(lambda: main(parse_args()))


if __name__ == "__main__":
    run()
