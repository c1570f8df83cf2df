"""Merge window outputs per image, compare with the ground truth, write the metrics (mIoU) file."""
from __future__ import annotations

import argparse
from pathlib import Path

from segmenter.cli import ArgumentParser
from segmenter.data.datasets import dataset_spec
from segmenter.errors import run_cli
from segmenter.evaluation.metrics import format_report, write_metrics
from segmenter.evaluation.provenance import RunClock, file_route_record
from segmenter.fileroute.manifest import GUIDE_LAYOUT_TEXT, manifest_beside
from segmenter.fileroute.postprocess import read_summary, run_postprocess
from segmenter.files import ensure_writable_dir, ensure_writable_file, refuse_overwrite
from segmenter.model.formats import FORMATS
from segmenter.outputs.report import write_report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(__doc__, example="python segmenter_postprocess.py --result-dir runs/demo/result/result_bs1 "
                            "--gt-path runs/demo/gt_file.txt --metrics-path runs/demo/metrics.yaml")
    parser.add_argument("--result-dir", required=True,
                        help="Folder of the inference outputs (<image prefix>_<k>_0.bin or .npy), "
                             "e.g. result/result_bs1.")
    parser.add_argument("--gt-path", required=True, help="The gt_file.txt written by segmenter_preprocess.py.")
    parser.add_argument("--metrics-path", required=True, help="YAML file to write the metrics to.")
    parser.add_argument("--manifest", default=None,
                        help="Window-layout manifest. Default: the .json beside the gt file; without one, the "
                             f"guide's fixed layout ({GUIDE_LAYOUT_TEXT}).")
    parser.add_argument("--report", default=None, metavar="DIR",
                        help="Also write DIR/report.html: headline metrics, per-class IoU, confusion matrix, per-image "
                             "mIoU and the worst images, in one self-contained page.")
    parser.add_argument("--pred-dir", default=None,
                        help="Also save each prediction as labels/<prefix>.png (class indices), color/<prefix>.png "
                             "and, for Cityscapes, labelIds/<prefix>.png (for csEvalPixelLevelSemanticLabeling).")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    clock = RunClock()
    result_dir, gt_path = Path(args.result_dir), Path(args.gt_path)
    manifest = Path(args.manifest) if args.manifest else manifest_beside(gt_path)
    summary_path = result_dir.parent / f"{result_dir.name}_summary.json"
    outputs = {"metrics file": args.metrics_path, "prediction folder": args.pred_dir, "report": args.report}
    refuse_overwrite(outputs, {"gt file": gt_path, "manifest": manifest, "result folder": result_dir,
                               "inference summary": summary_path})
    ensure_writable_file(args.metrics_path, "metrics file")
    pred_dir = ensure_writable_dir(args.pred_dir, "prediction folder") if args.pred_dir else None
    if args.report:
        ensure_writable_dir(args.report, "report folder")
    book, layout = run_postprocess(result_dir, gt_path, Path(args.manifest) if args.manifest else None, pred_dir,
                                   report=bool(args.report), outputs=outputs)
    spec = dataset_spec(layout.dataset)
    print(format_report(book.confusion.matrix, spec, layout.cfg.inference))
    record = file_route_record(layout, read_summary(summary_path), clock, book.images)
    scores = write_metrics(args.metrics_path, book.confusion.matrix, spec, layout.cfg.inference,
                           FORMATS[layout.model_format].extra_metrics, record)
    if args.report:
        title = f"{record['model'].get('architecture', result_dir.name).split(',')[0]} ({result_dir.name}) on " \
                f"{spec.title} {layout.split}".strip()
        write_report(args.report, book, spec, scores, title, record=record)
    print(f"mIoU {scores['mean_iou']:.2f} at {record['engine']['device']} {record['engine']['precision']}; wrote "
          f"{args.metrics_path}")
    print(f"postprocess of {book.images} images in {record['run']['postprocess']['wall_seconds']:.1f} s"
          + (f"; inference {record['run']['inference']['windows_per_second']} windows/s"
             if "windows_per_second" in record["run"]["inference"] else ""))
    return 0


def run() -> None:
    """The `segmenter-postprocess` command (and the top-level segmenter_postprocess.py)."""
    run_cli(lambda: main(parse_args()))


if __name__ == "__main__":
    run()
