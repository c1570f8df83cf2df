"""The files between the guide's steps: gt_file.txt, its manifest (the window layout) and the bin folder's stamp.

gt_file.txt is the guide's list, `<image file name>\\t<gt path>` per line. The manifest beside it
(same name, .json) records the settings, each image's prefix, size, views and anchors, and a
fingerprint of that layout; the same fingerprint goes into the bin folder (LAYOUT_STAMP), and
segmenter_infer.py copies it into its summary, so postprocess can tell outputs of another layout.
Everything read back is checked: types, ranges, and that each image's windows are the ones its size
implies. Version 1 manifests (one view per image, `stem`) are still read.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data.datasets import DATASETS, DatasetSpec
from ..data.plan import (
    MAX_SCALE,
    MAX_VIEWS,
    RESIZE_RULES,
    VIEW_MERGES,
    ImagePlan,
    View,
    WindowConfig,
    layout_fingerprint,
    stem_of,
)
from ..errors import SegmenterError
from ..files import atomic_write
from ..model.formats import FORMATS
from ..model.variant import NORMALIZATIONS
from ..system import check_memory

MANIFEST_VERSION = 2
LAYOUT_STAMP = "segmenter_layout.json"
MAX_SIDE = 100_000  # pixels; bounds what a manifest may ask to allocate
# The guide's own preprocess writes no manifest; its layout is fixed:
GUIDE_LAYOUT = {"image_hw": (1024, 2048), "image_size": 1024, "window_size": 768, "window_stride": 736, "n_cls": 19}
GUIDE_LAYOUT_TEXT = (f"{GUIDE_LAYOUT['image_hw'][0]}x{GUIDE_LAYOUT['image_hw'][1]} images, windows of "
                     f"{GUIDE_LAYOUT['window_size']} at stride {GUIDE_LAYOUT['window_stride']}, "
                     f"{GUIDE_LAYOUT['n_cls']} classes")


def manifest_beside(gt_path: str | Path) -> Path:
    """The manifest lives beside the gt file: same name, .json suffix."""
    return Path(gt_path).with_suffix(".json")


@dataclass(frozen=True)
class Layout:
    """The window layout of a run: settings, class count, one plan per image, and its fingerprint."""

    cfg: WindowConfig
    n_cls: int
    plans: list[ImagePlan]
    fingerprint: str
    source: Path | None  # the manifest read, or None for the guide's fixed layout
    dataset: str = "cityscapes"
    model_format: str = "upstream"  # the checkpoint format of the model it was written for (its own metrics)
    description: dict = field(default_factory=dict)  # what preprocess recorded of the model's description
    split: str = ""


# ----------------------------------------------------------------------------- gt_file.txt


def write_gt_file(path: Path, plans: list[ImagePlan]) -> None:
    """The guide's gt_file.txt: `<image file name>\\t<gt path>` per line."""
    text = "".join(f"{p.name}\t{p.gt_path}\n" for p in plans)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, errors="surrogateescape"))


def read_gt_file(path: Path) -> list[tuple[str, str]]:
    """(image file name, gt path) per line; malformed lines and repeated entries are errors."""
    if not path.is_file():
        raise SegmenterError(f"{path}: gt file not found; run segmenter_preprocess.py first")
    try:
        text = path.read_text(errors="surrogateescape")
    except OSError as exc:
        raise SegmenterError(f"{path}: cannot be read ({exc.strerror})") from None
    entries: list[tuple[str, str]] = []
    first_line: dict[tuple[str, str], int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise SegmenterError(f"{path}:{number}: expected '<image file name>\\t<gt path>'")
        entry = (parts[0], parts[1])
        if entry in first_line:
            raise SegmenterError(f"{path}:{number}: {parts[0]} is listed twice (also line {first_line[entry]}); "
                                 "each image may be scored once")
        first_line[entry] = number
        entries.append(entry)
    if not entries:
        raise SegmenterError(f"{path}: lists no images")
    return entries


# ----------------------------------------------------------------------------- manifest


def write_manifest(path: Path, cfg: WindowConfig, spec: DatasetSpec, plans: list[ImagePlan], **extra) -> str:
    """Write the manifest atomically; returns the layout fingerprint it records."""
    fingerprint = layout_fingerprint(cfg, plans)
    doc = {"version": MANIFEST_VERSION, "fingerprint": fingerprint, "dataset": spec.name, "n_cls": spec.n_cls,
           **cfg.to_json(), **extra, "images": [plan.to_json() for plan in plans]}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1)))
    return fingerprint


class _Checker:
    """Typed access to a loaded manifest; every problem is one error naming the file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> SegmenterError:
        return SegmenterError(f"{self.path}: {where} {problem}; rerun segmenter_preprocess.py to write a new manifest")

    def get(self, doc: dict, key: str, where: str):
        if not isinstance(doc, dict) or key not in doc:
            raise self.fail(f"{where}{key}", "is missing")
        return doc[key]

    def integer(self, doc: dict, key: str, lo: int, hi: int, where: str = "") -> int:
        value = self.get(doc, key, where)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(f"{where}{key}", f"must be an integer from {lo} to {hi}, got {value!r}")
        return value

    def text(self, doc: dict, key: str, where: str = "") -> str:
        value = self.get(doc, key, where)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}{key}", f"must be a non-empty string, got {value!r}")
        return value

    def size(self, doc: dict, key: str, where: str) -> tuple[int, int]:
        value = self.get(doc, key, where)
        if not (isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in value)):
            raise self.fail(f"{where}{key}", f"must be [height, width] in 1..{MAX_SIDE}, got {value!r}")
        return value[0], value[1]

    def flag(self, doc: dict, key: str, default: bool) -> bool:
        value = doc.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, doc: dict, key: str, known: tuple[str, ...], default: str | None = None) -> str:
        value = doc.get(key, default or known[0])
        if value not in known:
            raise self.fail(key, f"must be one of {', '.join(known)}, got {value!r}")
        return value

    def views(self, doc: dict) -> tuple[View, ...]:
        raw = doc.get("views", [{"scale": 1.0, "flip": False}])
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_VIEWS:
            raise self.fail("views", f"must be a list of 1 to {MAX_VIEWS} views, got {raw!r}")
        views = []
        for i, v in enumerate(raw):
            scale, flip, of_image = (v.get("scale"), v.get("flip"), v.get("of_image", False)) \
                if isinstance(v, dict) else (None, None, None)
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= MAX_SCALE \
                    or not isinstance(flip, bool) or not isinstance(of_image, bool):
                raise self.fail(f"views[{i}]", f"must be {{scale: number in (0, {MAX_SCALE:g}], flip: bool, of_image: "
                                f"bool}}, got {v!r}")
            views.append(View(float(scale), flip, of_image))
        return tuple(views)


def _stored_views(check: _Checker, entry: dict, version: int, where: str) -> list[tuple]:
    """(resized_hw, canvas_hw, anchors) per view as the manifest stores them."""
    raw = [entry] if version == 1 else check.get(entry, "views", where)
    if not isinstance(raw, list):
        raise check.fail(f"{where}views", "must be a list")
    stored = []
    for i, view in enumerate(raw):
        at = where if version == 1 else f"{where}views[{i}]."
        anchors = check.get(view, "anchors", at)
        if not isinstance(anchors, list) or not all(
                isinstance(a, list) and len(a) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in a)
                for a in anchors):
            raise check.fail(f"{at}anchors", "must be a list of [top, left] integer pairs")
        stored.append((check.size(view, "resized_hw", at), check.size(view, "canvas_hw", at),
                       tuple(tuple(a) for a in anchors)))
    return stored


def read_manifest(path: Path) -> Layout:
    """Load and check a manifest: every value typed and in range, every image's windows as its size implies."""
    check = _Checker(path)
    try:
        doc = json.loads(path.read_text(errors="surrogateescape"))
    except (OSError, ValueError) as exc:
        raise SegmenterError(f"{path}: not a readable manifest ({str(exc)[:120]}); rerun segmenter_preprocess.py") \
            from None
    if not isinstance(doc, dict):
        raise check.fail("the top level", "must be a JSON object")
    version = check.integer(doc, "version", 1, 99)
    if version > MANIFEST_VERSION:
        raise SegmenterError(f"{path}: manifest version {version} is newer than this software reads "
                             f"({MANIFEST_VERSION}); update it")
    n_cls = check.integer(doc, "n_cls", 1, 255)
    window = check.integer(doc, "window_size", 1, 8192)
    stride = check.integer(doc, "window_stride", 1, window)
    normalization = check.text(doc, "normalization")
    if normalization not in NORMALIZATIONS:
        raise check.fail("normalization", f"must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    cfg = WindowConfig(image_size=check.integer(doc, "image_size", 1, MAX_SIDE), window_size=window,
                       window_stride=stride, normalization=normalization,
                       box_ratio=check.integer(doc, "box_ratio", 1, 64) if "box_ratio" in doc else 2,
                       views=check.views(doc), raise_to_window=check.flag(doc, "raise_to_window", True),
                       resize_rule=check.choice(doc, "resize_rule", RESIZE_RULES),
                       view_merge=check.choice(doc, "view_merge", VIEW_MERGES))
    entries = check.get(doc, "images", "")
    if not isinstance(entries, list) or not entries:
        raise check.fail("images", "must be a non-empty list")
    plans, prefixes = [], set()
    for i, entry in enumerate(entries):
        where = f"images[{i}]."
        name = check.text(entry, "name", where)
        prefix = check.text(entry, "prefix" if version > 1 else "stem", where)
        if "." in prefix or "/" in prefix or prefix in prefixes:
            raise check.fail(f"{where}prefix", f"{prefix!r} must be unique and hold no '.' or '/'")
        prefixes.add(prefix)
        hw = check.size(entry, "original_hw", where)
        gt = entry.get("gt_path", "")
        image_path = entry.get("image_path", "")
        if not isinstance(gt, str) or not isinstance(image_path, str):
            raise check.fail(where + "gt_path", "and image_path must be strings")
        plan = ImagePlan.for_image(name, prefix, image_path, gt, hw, cfg)
        stored = _stored_views(check, entry, version, where)
        expected = [(v.resized_hw, v.canvas_hw, v.anchors) for v in plan.views]
        if stored != expected:
            raise SegmenterError(f"{path}: the windows recorded for {name} (view sizes or anchors) differ from those "
                                 f"its size {hw[0]}x{hw[1]} implies with windows of {window}, stride {stride}: "
                                 "the manifest was edited or damaged; rerun segmenter_preprocess.py")
        check_memory(plan.merge_bytes(n_cls), f"{path}: merging the windows of {name}")
        plans.append(plan)
    fingerprint = layout_fingerprint(cfg, plans)
    if version > 1 and doc.get("fingerprint") != fingerprint:
        raise check.fail("fingerprint", f"{doc.get('fingerprint')!r} does not match the layout it records")
    dataset = doc.get("dataset", "cityscapes")  # version 1 knew only Cityscapes
    if dataset not in DATASETS or DATASETS[dataset].n_cls != n_cls:
        raise check.fail("dataset", f"{dataset!r} must be one of {', '.join(DATASETS)} with n_cls classes")
    description = doc.get("description", {})
    if not isinstance(description, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float))
                                                    for k, v in description.items()):
        raise check.fail("description", "must be a mapping of names to values")
    split = doc.get("split", "")
    return Layout(cfg, n_cls, plans, fingerprint, path, dataset,
                  check.choice(doc, "model_format", tuple(FORMATS), "upstream"), description,
                  split if isinstance(split, str) else "")


def guide_layout(entries: list[tuple[str, str]], gt_path: Path) -> Layout:
    """The fixed layout of the guide's own preprocess, for a gt file without a manifest."""
    g = GUIDE_LAYOUT
    cfg = WindowConfig(g["image_size"], g["window_size"], g["window_stride"], "vit")
    seen: dict[str, str] = {}
    for name, _ in entries:
        if stem_of(name) in seen:
            raise SegmenterError(f"{gt_path}: {seen[stem_of(name)]} and {name} share the window prefix "
                                 f"'{stem_of(name)}', so their outputs overwrite each other; preprocess with "
                                 "segmenter_preprocess.py, which gives each image its own prefix")
        seen[stem_of(name)] = name
    plans = [ImagePlan.for_image(name, stem_of(name), "", gt, g["image_hw"], cfg) for name, gt in entries]
    return Layout(cfg, g["n_cls"], plans, layout_fingerprint(cfg, plans), None)


def read_layout(gt_path: Path, manifest_path: Path | None = None, log=print) -> Layout:
    """The layout of every image of the gt file, in its order, with the gt file's ground-truth paths.

    From the manifest (default: beside the gt file) or, without one, the guide's fixed layout.
    """
    entries = read_gt_file(gt_path)
    path = manifest_path or manifest_beside(gt_path)
    if not path.is_file():
        if manifest_path is not None:
            raise SegmenterError(f"{manifest_path}: manifest not found")
        log(f"note: no manifest {path.name} beside {gt_path}: assuming the guide's fixed layout ({GUIDE_LAYOUT_TEXT})")
        return guide_layout(entries, gt_path)
    layout = read_manifest(path)
    by_name: dict[str, list[ImagePlan]] = {}
    for plan in layout.plans:
        by_name.setdefault(plan.name, []).append(plan)
    plans, moved = [], 0
    for name, gt in entries:
        candidates = by_name.get(name, [])
        if len(candidates) > 1:  # same file name in two folders: the gt path tells them apart
            candidates = [p for p in candidates if os.path.realpath(p.gt_path) == os.path.realpath(gt)]
        if len(candidates) != 1:
            raise SegmenterError(f"{path}: no entry for {name} (gt {gt}) listed in {gt_path}; the gt file and the "
                                 "manifest come from different runs")
        plan = candidates[0]
        if os.path.realpath(plan.gt_path) != os.path.realpath(gt):
            moved += 1
            plan = replace(plan, gt_path=gt)
        plans.append(plan)
    if moved:
        log(f"note: {gt_path} gives other ground-truth paths than {path.name} for {moved} images; using the gt file's")
    return replace(layout, plans=plans)


# ----------------------------------------------------------------------------- the bin folder's stamp


def write_stamp(bin_dir: Path, fingerprint: str, manifest: Path, windows: int) -> None:
    doc = {"fingerprint": fingerprint, "manifest": str(manifest), "windows": windows}
    atomic_write(bin_dir / LAYOUT_STAMP, lambda tmp: Path(tmp).write_text(json.dumps(doc)))


def read_stamp(folder: Path) -> str | None:
    """The layout fingerprint of a bin folder written by segmenter_preprocess.py, if it has one."""
    try:
        value = json.loads((folder / LAYOUT_STAMP).read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
