"""Segment a user's own images and videos: label maps, colour maps and overlays, mirroring the input tree.

The same plans, windows, merge and resize back to the original size as evaluation (the pipeline
module): an evaluation image's labels here equal those segmenter_eval.py saves.
"""
from __future__ import annotations

import fnmatch
import glob
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..data.datasets import DatasetSpec
from ..data.images import IMAGE_SUFFIXES, Census, header_size, load_image, same_shape_windows, take_census, write_image
from ..data.plan import ImagePlan, WindowConfig
from ..engines.backends import Engine
from ..errors import SegmenterError
from ..evaluation.pipeline import Finished, Job, run_pipeline
from ..extras import installed
from ..files import atomic_write
from ..progress import progress
from ..system import check_memory
from .visualize import frame_overlay, overlay_picture

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
SAVE_KINDS = ("labels", "color", "overlay")
RUN_RECORD = "run.yaml"  # beside predict's outputs: what produced them


@dataclass(frozen=True)
class Source:
    """An input file and where its outputs go: `<output dir>/<rel>_<kind>.png` (or `_overlay.mp4` for videos)."""

    path: Path
    rel: str  # relative output path without suffix, mirroring the input tree
    video: bool = False


def walk_files(root: Path, skip: str | None = None) -> list[Path]:
    """Every file under root, folders in name order; links followed once by real path (a loop is walked once),
    and the folder `skip` (a real path: the run's own output folder) left out."""
    seen_dirs, seen_files, found = set(), set(), []

    def visit(folder: Path) -> None:
        real = os.path.realpath(folder)
        if real in seen_dirs or real == skip:
            return
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir():
                visit(path)
            elif entry.is_file() and os.path.realpath(path) not in seen_files:
                seen_files.add(os.path.realpath(path))
                found.append(path)

    visit(root)
    return found


def _matches(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Glob semantics per path component: `**` any number of folders; `*`, `?`, `[...]` within a name; names
    starting with a dot only where the pattern's does."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches(parts[i:], pattern[1:]) for i in range(len(parts) + 1)
                   if not any(p.startswith(".") for p in parts[:i]))
    return bool(parts) and (not parts[0].startswith(".") or pattern[0].startswith(".")) \
        and fnmatch.fnmatchcase(parts[0], pattern[0]) and _matches(parts[1:], pattern[1:])


def _media(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES]


def collect_sources(inputs: list[str], output_dir: Path | None = None) -> list[Source]:
    """Files, folders (recursively: their images and videos) and globs; outputs mirror each input's tree.

    With several inputs, each folder's or glob's outputs go under its own name, so equal names never collide.
    Folders and globs are walked alike (links followed once by real path); the output folder is never read.
    """
    skip = os.path.realpath(output_dir) if output_dir is not None else None
    items: list[tuple[Path, str]] = []  # (file, rel path without suffix)
    several = len(inputs) > 1
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            if os.path.realpath(path) == skip:
                raise SegmenterError(f"{output_dir}: the output folder is the input folder {spec}; its outputs "
                                     "would mix with your files and be read back as inputs; choose another folder")
            base = path.resolve().name if several else ""
            items += [(p, os.path.join(base, str(p.relative_to(path).with_suffix(""))))
                      for p in _media(walk_files(path, skip))]
        elif path.is_file():
            items.append((path, path.stem))
        elif glob.has_magic(spec):
            static = list(itertools.takewhile(lambda part: not glob.has_magic(part), path.parts))
            root = Path(*static) if static else Path(".")
            pattern = path.parts[len(static):]
            matches = [p for p in walk_files(root, skip) if _matches(p.relative_to(root).parts, pattern)]
            if not matches:
                raise SegmenterError(f"{spec}: the pattern matches no file")
            base = root.resolve().name if several else ""
            items += [(p, os.path.join(base, str(p.relative_to(root).with_suffix("")))) for p in matches]
        else:
            raise SegmenterError(f"{spec}: no such file or folder")
    if not items:
        raise SegmenterError(f"{', '.join(inputs)}: no image or video files ({', '.join(IMAGE_SUFFIXES)}, "
                             f"{', '.join(VIDEO_SUFFIXES)})")
    sources, taken = [], set()
    for path, rel in items:  # a name used twice (a.jpg and a.png, or two equal files given) gets -2, -3, ...
        unique, n = rel, 1
        while unique in taken:
            n += 1
            unique = f"{rel}-{n}"
        taken.add(unique)
        sources.append(Source(path, unique, path.suffix.lower() in VIDEO_SUFFIXES))
    return sources


def output_paths(source: Source, out_dir: Path, save: tuple[str, ...], frames: bool) -> list[Path]:
    """The files a source's outputs go to (a video's frames: their folder)."""
    stem = out_dir / source.rel
    if source.video:
        paths = [Path(f"{stem}_overlay.mp4")] if "overlay" in save else []
        return paths + ([Path(f"{stem}_frames")] if frames else [])
    kinds = [*save, "labelIds"] if "labels" in save else list(save)  # label ids: for Cityscapes models
    return [Path(f"{stem}_{kind}.png") for kind in kinds]


def check_outputs(sources: list[Source], out_dir: Path, save: tuple[str, ...], frames: bool) -> None:
    """No output may overwrite an input (an output folder among the inputs, or a name like photo_color.png)."""
    inputs = {os.path.realpath(s.path): s.path for s in sources}
    record = out_dir / RUN_RECORD
    if os.path.realpath(record) in inputs:
        raise SegmenterError(f"{record}: the run record would overwrite the input {inputs[os.path.realpath(record)]}; "
                             "choose an output folder outside the inputs")
    for source in sources:
        for target in output_paths(source, out_dir, save, frames):
            if os.path.realpath(target) in inputs:
                raise SegmenterError(f"{target}: an output of {source.path} would overwrite the input "
                                     f"{inputs[os.path.realpath(target)]}; choose an output folder outside the inputs")


def input_census(sources: list[Source], cfg: WindowConfig, limit: int | None = None,
                 n_cls: int = 1) -> tuple[Census | None, int]:
    """The census of the inputs' images and first video frames (None when none can be read), and the windows the
    run will infer: every image's, and every video frame's (frame counts from the containers), up to `limit`
    images and frames. Files that cannot be read, or whose header declares an image too large to merge in the
    memory available, are left out: they are reported when they are reached."""
    paths, sizes, items = [], [], []
    for source in sources:
        try:
            if source.video:
                capture = cv2.VideoCapture(str(source.path))
                hw = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
                count = max(1, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
                capture.release()
            else:
                hw, count = header_size(source.path), 1
            fits(ImagePlan.for_image(source.path.name, "x", source.path, "", hw, cfg), n_cls)
        except SegmenterError:
            continue
        if min(hw) > 0:
            paths.append(source.path)
            sizes.append(hw)
            items.append(count)
    if not paths:
        return None, 0
    census = take_census(paths, cfg, sizes=sizes)
    windows, left = 0, limit if limit is not None else sum(items)
    for plan, count in zip(census.plans, items):
        windows += plan.n_windows * min(count, left)
        left -= min(count, left)
    return census, windows


def fits(plan: ImagePlan, n_cls: int) -> None:
    """Refuse, before any pixel is decoded, an image whose windows cannot be merged in the memory available."""
    h, w = plan.original_hw
    check_memory(plan.merge_bytes(n_cls), f"{plan.image_path}: {h}x{w}, {plan.n_windows} windows: merging its "
                 "windows")


def first_frame_windows(sources: list[Source], cfg: WindowConfig) -> np.ndarray:
    """(k, 3, window, window) windows of the first readable video frame, to measure engines on."""
    for source in sources:
        capture = cv2.VideoCapture(str(source.path))
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        capture.release()
        if ok:
            plan = ImagePlan.for_image(source.path.name, "frame", source.path, "", frame.shape[:2], cfg)
            return same_shape_windows(frame, plan, cfg)
    raise SegmenterError("no image or video frame could be read to measure the engines on")


@dataclass
class Summary:
    """What a prediction run did: images and frames done, their windows, and the inputs that could not be read."""

    inputs: int = 0  # images and videos started
    images: int = 0
    frames: int = 0
    windows: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)


def write_run_record(path: Path, parts: dict, run: dict) -> dict:
    """The provenance record of a prediction run (model, settings, engine, run, machine, versions), written
    atomically; returns it."""
    import yaml

    from ..evaluation.provenance import run_record

    record = run_record(parts["model"], parts["engine"], run, parts["evaluation"])
    atomic_write(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(record, sort_keys=False)))
    return record


class _H264:
    """An H.264 mp4 writer (PyAV, whose wheels carry libx264): what browsers and players show."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        from fractions import Fraction

        import av

        self.container = av.open(str(path), "w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height = size[0] - size[0] % 2, size[1] - size[1] % 2  # yuv420p: even
        self.stream.pix_fmt = "yuv420p"
        self.av = av

    def write(self, frame: np.ndarray) -> None:
        frame = frame[: self.stream.height, : self.stream.width]
        for packet in self.stream.encode(self.av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")):
            self.container.mux(packet)

    def release(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


class _Videos:
    """One overlay video writer per input video, opened at its first frame with its frame rate and size: H.264
    where PyAV is installed (the `video` extra), else OpenCV's MPEG-4 Part 2, said once."""

    def __init__(self, out_dir: Path, log=print) -> None:
        self.out_dir, self.writers, self.rates, self.log = out_dir, {}, {}, log
        self.h264 = installed("av")

    def write(self, source: Source, frame: np.ndarray) -> None:
        if source.rel not in self.writers:
            target = self.out_dir / f"{source.rel}_overlay.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.mp4")
            size = (frame.shape[1], frame.shape[0])
            if self.h264:
                writer = _H264(tmp, self.rates[source.rel], size)
            else:
                if not self.writers:
                    self.log("note: overlay videos are written as MPEG-4 Part 2, which browsers do not play; pip "
                             "install 'segmenter-infer[video]' (PyAV) for H.264")
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.rates[source.rel], size)
                if not writer.isOpened():
                    raise SegmenterError(f"{target}: OpenCV cannot write an mp4 video here")
            self.writers[source.rel] = (writer, tmp, target)
        self.writers[source.rel][0].write(frame)

    def close(self, keep: bool) -> None:
        for writer, tmp, target in self.writers.values():
            writer.release()
            if keep:
                os.replace(tmp, target)
            else:
                tmp.unlink(missing_ok=True)


def _jobs(sources: list[Source], cfg: WindowConfig, limit: int | None, videos: _Videos, summary: Summary,
          n_cls: int):
    """A job per image and per video frame, in order; at most `limit` images (or frames of a video) in all. An
    image's size is checked from its header before it is decoded."""
    count = 0
    for source in sources:
        if limit is not None and count >= limit:
            return
        summary.inputs += 1
        if not source.video:
            def load(source=source):
                fits(ImagePlan.for_image(source.path.name, source.rel, source.path, "", header_size(source.path),
                                         cfg), n_cls)
                bgr, digest = load_image(source.path)
                return ImagePlan.for_image(source.path.name, source.rel, source.path, "", bgr.shape[:2], cfg), bgr, \
                    digest
            count += 1
            yield Job(load, (source, None))
            continue
        capture = cv2.VideoCapture(str(source.path))
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        if not ok:
            summary.failed.append((source.path, "cannot be read as a video"))
            continue
        videos.rates[source.rel] = capture.get(cv2.CAP_PROP_FPS) or 25.0
        index = 0
        while ok and (limit is None or count < limit):
            plan = ImagePlan.for_image(f"{source.path.name}#{index}", f"{source.rel}_{index:06d}", source.path, "",
                                       frame.shape[:2], cfg)
            count += 1
            yield Job(lambda plan=plan, frame=frame: (plan, frame, None), (source, index))
            index += 1
            ok, frame = capture.read()
        capture.release()


def run_predict(sources: list[Source], spec: DatasetSpec, cfg: WindowConfig, engine: Engine, out_dir: Path,
                save: tuple[str, ...] = SAVE_KINDS, frames: bool = False, batch_size: int = 1, workers: int = 2,
                limit: int | None = None, alpha: float = 0.55, log=print) -> Summary:
    """Segment every source; write the outputs asked for; unreadable inputs are reported, not fatal."""
    summary = Summary()
    videos = _Videos(out_dir, log)

    def sink(done: Finished) -> None:
        source, index = done.job.meta
        labels, bgr = done.merger.labels(), done.image
        if index is None or frames:
            stem = out_dir / (source.rel if index is None else f"{source.rel}_frames/{index:06d}")
            if "labels" in save:
                write_image(f"{stem}_labels.png", labels)
                if spec.label_ids:
                    write_image(f"{stem}_labelIds.png", spec.to_label_ids(labels))
            if "color" in save:
                write_image(f"{stem}_color.png", spec.colourize(labels))
            if "overlay" in save and index is None:
                write_image(f"{stem}_overlay.png", overlay_picture(bgr, labels, spec, alpha)[0])
        summary.windows += done.merger.plan.n_windows
        if index is None:
            summary.images += 1
        else:
            summary.frames += 1
            if "overlay" in save:
                videos.write(source, frame_overlay(bgr, labels, spec, alpha))
        bar.update(1)

    def failed(job: Job, exc: SegmenterError) -> None:
        summary.failed.append((job.meta[0].path, str(exc).split(": ", 1)[-1]))
        log(f"warning: {exc}")

    ok = False
    total = None if any(s.video for s in sources) else min(len(sources), limit or len(sources))
    with progress(total=total, desc="predict", unit="img") as bar:
        try:
            run_pipeline(_jobs(sources, cfg, limit, videos, summary, spec.n_cls), cfg, engine, sink, batch_size,
                         workers, keep_image=True, on_error=failed)
            ok = True
        finally:
            videos.close(keep=ok)
    return summary
