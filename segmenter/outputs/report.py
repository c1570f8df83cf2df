"""An evaluation report: one self-contained HTML page (pictures embedded) a person can read.

Headline metrics, per-class IoU as a sorted bar chart and a table, the row-normalized confusion
matrix as a heat map, a table of per-image mIoU, and a gallery of the worst images (input,
prediction, ground truth, errors).
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np

from ..data.datasets import DatasetSpec
from ..data.images import encode_image, read_image
from ..evaluation.metrics import iou_from_confusion
from ..evaluation.scoring import ScoreBook
from ..files import atomic_write
from .visualize import figure_png, gallery_picture

MAX_MATRIX_CLASSES = 60  # the heat map shows at most this many classes (the most frequent in the ground truth)

STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1500px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 13px; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.headline td { font-size: 16px; } img { max-width: 100%; } .scroll { max-height: 420px; overflow-y: auto; }
.note { color: #666; font-size: 13px; } h4 { font-size: 14px; margin: 12px 0 4px; } table.run th { width: 180px; }
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _num(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def iou_bar_chart(iou: np.ndarray, spec: DatasetSpec) -> bytes:
    """Per-class IoU (percent), sorted, with class names and values; absent classes left out."""
    from matplotlib.figure import Figure

    shown = [c for c in np.argsort(np.nan_to_num(iou, nan=-1)) if not np.isnan(iou[c])]
    fig = Figure(figsize=(9, 1.2 + 0.24 * len(shown)))
    ax = fig.add_subplot()
    values = [100 * iou[c] for c in shown]
    ax.barh(range(len(shown)), values, color=[np.asarray(spec.palette[c]) / 255 for c in shown], edgecolor="black",
            linewidth=0.4)
    ax.set_yticks(range(len(shown)), [spec.classes[c] for c in shown], fontsize=8)
    for y, v in enumerate(values):
        ax.text(v + 0.5, y, f"{v:.1f}", va="center", fontsize=7)
    ax.set_xlim(0, 105)
    ax.set_xlabel("IoU %")
    ax.set_title("Per-class IoU, sorted")
    fig.tight_layout()
    return figure_png(fig)


def confusion_heat_map(matrix: np.ndarray, spec: DatasetSpec) -> tuple[bytes, str]:
    """Row-normalized confusion matrix (each ground-truth class sums to 1) with class names; a note on what shows."""
    from matplotlib.figure import Figure

    rows = matrix.sum(1)
    present = [c for c in np.argsort(-rows, kind="stable") if rows[c] > 0][:MAX_MATRIX_CLASSES]
    present = sorted(present)
    sub = matrix[np.ix_(present, present)].astype(np.float64)
    norm = sub / np.maximum(rows[present][:, None], 1)
    size = max(5.0, 0.28 * len(present) + 2.5)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    image = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    names = [spec.classes[c] for c in present]
    ax.set_xticks(range(len(present)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(present)), names, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    ax.set_title("Confusion matrix, each row normalized")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the ground-truth class's pixels")
    fig.tight_layout()
    left_out = int((rows > 0).sum()) - len(present)
    note = (f"{len(present)} classes present in the ground truth" +
            (f"; the {left_out} rarest left out" if left_out > 0 else ""))
    return figure_png(fig), note


def measured_panel(record: dict) -> list[str]:
    """"How this was measured": the provenance record as tables, one per part (model, data, evaluation, engine,
    run, machine, versions)."""
    parts = ['<h2>How this was measured</h2>', '<div id="provenance">']
    for section, values in record.items():
        rows = []
        for key, value in values.items():
            if isinstance(value, dict):
                value = "; ".join(f"{k}: {v}" for k, v in value.items())
            elif isinstance(value, list):
                value = ", ".join(map(str, value)) if not value or not isinstance(value[0], dict) else \
                    "; ".join(", ".join(f"{k} {v}" for k, v in item.items()) for item in value)
            rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>")
        parts += [f"<h4>{html.escape(section)}</h4>", f'<table class="run" id="run-{html.escape(section)}">',
                  *rows, "</table>"]
    return parts + ["</div>"]


def write_report(folder: str | Path, book: ScoreBook, spec: DatasetSpec, scores: dict, title: str,
                 log=print, record: dict | None = None) -> Path:
    """Write `folder/report.html` (self-contained), with a "how this was measured" panel of the provenance
    `record` when given; returns its path."""
    folder = Path(folder)
    matrix = book.confusion.matrix
    iou = iou_from_confusion(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(matrix.sum(1) > 0, np.diag(matrix) / matrix.sum(1), np.nan)
    parts = [f"<h1>{html.escape(title)}</h1>", '<table class="headline">']
    headline = [("data set", spec.title), ("inference", scores["inference"].replace("_", "-")),
                *([("model", f"{record['model']['architecture']} ({record['model']['file']}, "
                   f"{record['model']['format']})"),
                   ("engine", f"{record['engine']['device']} {record['engine']['precision']}")] if record else []),
                ("images", str(book.images)), ("mIoU %", _num(scores["mean_iou"])),
                ("pixel accuracy %", _num(scores["pixel_accuracy"])),
                ("mean accuracy %", _num(scores["mean_accuracy"]))]
    if "mean_iou_categories" in scores:
        headline.append(("category mIoU %", _num(scores["mean_iou_categories"])))
    parts += [f"<tr><th>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in headline] + ["</table>"]

    parts += ["<h2>Per-class IoU</h2>", _img(iou_bar_chart(iou, spec), "per-class IoU bar chart"),
              '<table id="per-class"><tr><th>class</th><th>IoU %</th><th>accuracy %</th><th>pixels</th></tr>']
    for c in range(spec.n_cls):
        parts.append(f'<tr><td>{html.escape(spec.classes[c])}</td><td class="num">{_num(100 * iou[c])}</td>'
                     f'<td class="num">{_num(100 * acc[c])}</td><td class="num">{int(matrix[c].sum())}</td></tr>')
    parts.append("</table>")
    if "cat_iou_categories" in scores:
        parts += ["<h2>Category IoU</h2>", "<table>"] + [
            f'<tr><td>{k}</td><td class="num">{_num(v)}</td></tr>' for k, v in scores["cat_iou_categories"].items()
        ] + ["</table>"]

    heat, note = confusion_heat_map(matrix, spec)
    parts += ["<h2>Confusion matrix</h2>", f'<p class="note">{note}</p>', _img(heat, "confusion matrix heat map")]

    ranked = sorted(book.results, key=lambda r: (np.nan_to_num(r.mean_iou, nan=np.inf), r.name))
    parts += ["<h2>Per-image mIoU</h2>", '<p class="note">Worst first; mIoU over the classes in the image\'s '
              "ground truth or prediction.</p>", '<div class="scroll"><table id="per-image">',
              "<tr><th>image</th><th>mIoU %</th><th>pixel accuracy %</th><th>labelled pixels</th></tr>"]
    for r in ranked:
        parts.append(f'<tr><td>{html.escape(r.name)}</td><td class="num">{_num(100 * r.mean_iou)}</td>'
                     f'<td class="num">{_num(100 * r.pixel_accuracy)}</td><td class="num">{r.labelled}</td></tr>')
    parts.append("</table></div>")

    if record:
        parts += measured_panel(record)
    parts.append("<h2>Worst images</h2>")
    for miou, plan, labels in book.worst_images():
        if not plan.image_path:
            parts.append(f'<p class="note">{html.escape(plan.name)}: image path unknown (no manifest)</p>')
            continue
        bgr = read_image(plan.image_path)
        gt = spec.read_labels(plan.gt_path, plan.original_hw)
        picture, _ = gallery_picture(bgr, labels, gt, spec)
        parts += [f"<h3>{html.escape(plan.name)}: mIoU {100 * miou:.2f} %</h3>", _img(encode_image(picture), plan.name)]

    page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>" + html.escape(title) +
            f"</title><style>{STYLE}</style></head><body>" + "\n".join(parts) + "</body></html>\n")
    target = folder / "report.html"
    atomic_write(target, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    log(f"wrote {target}")
    return target
