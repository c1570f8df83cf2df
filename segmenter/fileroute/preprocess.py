"""The guide's preprocess: one float32 .bin per window, gt_file.txt, and a manifest of the window layout."""
from __future__ import annotations

import glob
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2

from ..data.arrays import write_window_file
from ..data.datasets import DatasetSpec, Sample
from ..data.images import read_image, view_windows, window_census
from ..data.plan import ImagePlan, ViewLayout, WindowConfig, assign_prefixes
from ..errors import SegmenterError
from ..files import ensure_writable_dir, ensure_writable_file
from ..progress import track
from ..system import cpu_threads
from .manifest import LAYOUT_STAMP, manifest_beside, write_gt_file, write_manifest, write_stamp


def typical_windows(cfg: WindowConfig) -> int:
    """Windows of an image exactly the shape of the fit box (e.g. 1024x2048 for Cityscapes)."""
    return ImagePlan.for_image("", "", "", "", (cfg.image_size, cfg.box_ratio * cfg.image_size), cfg).n_windows


def window_suffix(view: ViewLayout, cfg: WindowConfig) -> str:
    """.bin for windows of the full size (raw float32, as the guide writes them); .npy for a smaller one, whose
    header says its height and width (a view of an MMSegmentation model below the crop)."""
    return ".bin" if view.window_hw == (cfg.window_size, cfg.window_size) else ".npy"


def _remove_stale_windows(bin_dir: Path, plan: ImagePlan, cfg: WindowConfig) -> int:
    """Delete `<prefix>_<k>.bin/.npy` that this layout does not write (k beyond its count, or the other suffix):
    windows of an earlier run with other settings."""
    written = {plan.window_name(k) + window_suffix(view, cfg) for k, view in enumerate(
        v for v in plan.views for _ in v.anchors)}
    removed = 0
    for path in glob.glob(os.path.join(glob.escape(str(bin_dir)), f"{glob.escape(plan.prefix)}_*")):
        name = Path(path).name
        prefix, _, k = Path(path).stem.rpartition("_")
        if prefix == plan.prefix and k.isdigit() and Path(path).suffix in (".bin", ".npy") and name not in written:
            os.remove(path)
            removed += 1
    return removed


def _preprocess_one(job: tuple[Sample, str, WindowConfig, Path, int]) -> tuple[ImagePlan, int]:
    sample, prefix, cfg, bin_dir, usual = job
    bgr = read_image(sample.image_path)
    plan = ImagePlan.for_image(sample.name, prefix, sample.image_path, sample.gt_path, bgr.shape[:2], cfg)
    size = plan.n_windows * 3 * cfg.window_size ** 2 * 4
    if plan.n_windows > max(32, 4 * usual):
        h, w = plan.original_hw
        print(f"warning: {sample.image_path} ({h}x{w}) needs {plan.n_windows} windows ({size / 2**20:.1f} MiB of "
              f"input files), {plan.n_windows / usual:.0f}x the {usual} of a usual image", flush=True)
    free = shutil.disk_usage(bin_dir).free
    if size > free:
        raise SegmenterError(f"{bin_dir}: {size / 2**20:.0f} MiB needed for the windows of {sample.name} but only "
                             f"{free / 2**20:.0f} MiB free; free space or choose another bin folder")
    k = 0
    for view, windows in zip(plan.views, view_windows(bgr, plan, cfg)):
        suffix = window_suffix(view, cfg)
        for window in windows:  # (1, 3, h, w) float32, as the model's input
            write_window_file(bin_dir / f"{plan.window_name(k)}{suffix}", window[None], suffix[1:])
            k += 1
    return plan, _remove_stale_windows(bin_dir, plan, cfg)


def _init_worker() -> None:
    cv2.setNumThreads(1)


def run_preprocess(samples: list[Sample], bin_dir: Path, gt_path: Path, cfg: WindowConfig, spec: DatasetSpec,
                   workers: int | None = None, log=print, **manifest_extra) -> list[ImagePlan]:
    """Write every window of the samples into bin_dir, then gt_file.txt and its manifest (last, atomically)."""
    manifest = manifest_beside(gt_path)
    if gt_path.suffix == ".json":
        raise SegmenterError(f"{gt_path}: the gt file must not end in .json: the manifest is written beside it as "
                             f"{manifest.name} and would overwrite it")
    ensure_writable_file(gt_path, "gt file")
    ensure_writable_dir(bin_dir, "bin folder")
    log(window_census(samples, cfg))
    prefixes = assign_prefixes([s.name for s in samples])
    renamed = [(s, p) for s, p in zip(samples, prefixes) if p != s.stem]
    if renamed:
        log(f"note: images with the same name before the first dot as another image (e.g. "
            f"{renamed[0][0].image_path}) get unique window prefixes (e.g. {renamed[0][1]}_0.bin), "
            f"{len(renamed)} in all, recorded in {manifest.name}")
    ours = set(prefixes)
    stale = [p for p in bin_dir.iterdir() if p.suffix in (".bin", ".npy") and p.stem.rpartition("_")[0] not in ours]
    if stale:
        log(f"warning: {bin_dir} holds {len(stale)} .bin files of other images (e.g. {stale[0].name}); "
            "an inference run on the folder will include them")
    (bin_dir / LAYOUT_STAMP).unlink(missing_ok=True)  # no stamp until the folder is complete
    usual = typical_windows(cfg)
    jobs = [(s, p, cfg, bin_dir, usual) for s, p in zip(samples, prefixes)]
    workers = workers or min(len(jobs), cpu_threads())
    bar = dict(total=len(jobs), desc="preprocess", unit="img")
    if workers <= 1:
        _init_worker()
        results = [_preprocess_one(j) for j in track(jobs, **bar)]
    else:
        with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
            results = list(track(pool.map(_preprocess_one, jobs), **bar))
    plans = [plan for plan, _ in results]
    removed = sum(n for _, n in results)
    if removed:
        log(f"note: removed {removed} window files of an earlier run with other settings from {bin_dir}")
    write_gt_file(gt_path, plans)
    fingerprint = write_manifest(manifest, cfg, spec, plans, **manifest_extra)
    write_stamp(bin_dir, fingerprint, manifest, sum(p.n_windows for p in plans))
    return plans
