"""Evaluation on a Ray cluster (Ray Data): the same per-image work as one process, spread over actors.

The driver lists the images and keeps the books; Ray Data feeds their paths to a fixed-size pool of
actors (`map_batches` with a callable class), each holding one engine and pinned to its CPU threads or
one GPU. An actor decodes, preprocesses, infers, merges and scores its images with the package's own
pipeline and returns only each image's confusion counts (and, when asked, its label PNG). The model
reaches the actors through Ray's object store; the images are read from their paths, which must be
visible at the same place on every node (shared storage, as for any cluster evaluation).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..data.plan import ImagePlan, WindowConfig
from ..engines.table import is_gpu
from ..errors import SegmenterError
from ..extras import require
from ..files import FileDigest
from ..progress import progress
from .journal import Entry, Journal
from .metrics import save_prediction_pngs
from .pipeline import Finished, run_pipeline
from .scoring import ScoreBook, score_image

IMAGES_PER_CALL = 2  # images per actor call: small, so results stream back and a lost actor redoes little
ACTORS_START_S = 600  # how long the whole pool may take to start before the first image is handed out


class RayScorer:
    """A Ray Data actor: one engine; scores the images of each batch of rows it is given.

    The package's own errors (a file that cannot be read, a ground truth of another size) come back as an
    `error` row, so the driver reports them as one line, as one process does.
    """

    def __init__(self, model_files: list, device: str, precision: str, threads: int | None, batch_size: int,
                 cfg_json: dict, dataset: str, keep_labels: bool, variant=None) -> None:
        import ray

        from ..data.datasets import dataset_spec
        from ..engines.backends import open_engine

        self.batch_size, self.keep_labels = batch_size, keep_labels
        self.cfg, self.spec = WindowConfig.from_json(cfg_json), dataset_spec(dataset)
        self.node = ray.get_runtime_context().get_node_id()
        self.error = ""
        try:
            self.model_path = unpack_model_files(model_files)
            self.engine = open_engine(self.model_path, device, precision, threads, batch_size, variant=variant)
        except SegmenterError as exc:
            self.error = str(exc)

    def score(self, rows: dict[str, np.ndarray]) -> list[tuple]:
        """(row, (K, K) counts, label PNG or b"", image digest, ground-truth digest) per image, in any order."""
        from ..data.images import encode_image, load_image
        from ..data.plan import ImagePlan
        from .pipeline import Job

        def job(i: int) -> Job:
            def load():
                bgr, digest = load_image(str(rows["image_path"][i]))
                plan = ImagePlan.for_image(str(rows["name"][i]), str(rows["prefix"][i]), str(rows["image_path"][i]),
                                           str(rows["gt_path"][i]), bgr.shape[:2], self.cfg)
                return plan, bgr, digest
            return Job(load, int(rows["row"][i]))

        results = []

        def sink(done: Finished) -> None:
            score = score_image(done.merger, self.spec, done.merger.plan.gt_path)
            results.append((done.job.meta, score.confusion, encode_image(score.labels) if self.keep_labels else b"",
                            json.dumps(done.digest.to_json()), json.dumps(score.gt_digest.to_json())))

        run_pipeline([job(i) for i in range(len(rows["row"]))], self.cfg, self.engine, sink, self.batch_size,
                     workers=2, images_ahead=2)
        return results

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        k = self.spec.n_cls
        error = self.error
        if not error:
            try:
                results = self.score(rows)
            except SegmenterError as exc:  # one row that says so; the driver stops with it
                error = str(exc)
        if error:
            results = [(-1, np.zeros((k, k), np.int64), b"", "", "")]
        return {"row": np.array([r[0] for r in results], np.int64),
                "confusion": np.stack([r[1].reshape(k * k) for r in results]).astype(np.int64),
                "labels_png": np.array([r[2] for r in results], dtype=object),
                "image_file": np.array([r[3] for r in results], dtype=object),
                "gt_file": np.array([r[4] for r in results], dtype=object),
                "error": np.array([error] * len(results), dtype=object),
                "node": np.array([self.node] * len(results), dtype=object)}


CONNECT_SECONDS = 10  # to reach a cluster's address before Ray's own retries (minutes) begin


def check_reachable(address: str) -> None:
    """A host:port (or ray://host:port) address must accept a connection within CONNECT_SECONDS."""
    import socket

    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        return  # `auto` and the like: Ray resolves them itself, quickly
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise SegmenterError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it with "
                             "`ray start --head` there, or give its address") from None


def model_file_refs(model_path: Path) -> list:
    """The model's files (an OpenVINO IR has two) put in Ray's object store: [(name, [ref])], for actors on any
    node (the refs wrapped in a list so that Ray hands them over unresolved)."""
    import ray

    files = [model_path] + ([model_path.with_suffix(".bin")] if model_path.suffix == ".xml" else [])
    return [(f.name, [ray.put(f.read_bytes())]) for f in files]


def unpack_model_files(model_files: list) -> Path:
    """In an actor: the model's files from the object store, written to a folder of its own; the model's path."""
    import ray

    folder = Path(tempfile.mkdtemp(prefix="segmenter-actor-"))
    for name, ref in model_files:
        (folder / name).write_bytes(ray.get(ref[0]))
    return folder / model_files[0][0]


_TERMINAL: list = []  # the process's own stderr while Ray's backend writes to its log


@contextmanager
def ray_session(address: str | None, log=print) -> Iterator:
    """Ray for the duration (joined at `address`, or a local runtime), its backend's notes kept out of the run's
    output: the C++ core writes them to file descriptor 2, which points at a log file meanwhile
    (`<temp>/segmenter-ray-<pid>.log`, named if Ray fails), while Python's stderr still reaches the terminal."""
    sys.stderr.flush()
    if not _TERMINAL:
        _TERMINAL.append(open(os.dup(2), "w", buffering=1, errors="backslashreplace"))  # kept open: Ray's
    saved, backend = sys.stderr, Path(tempfile.gettempdir()) / f"segmenter-ray-{os.getpid()}.log"  # handlers
    fd = os.open(backend, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # may hold it
    original = os.dup(2)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stderr = _TERMINAL[0]
    try:
        ray = start_ray(address, log)
        try:
            yield ray
        finally:
            ray.shutdown()
    except SegmenterError:
        raise
    except Exception as exc:
        raise SegmenterError(f"Ray failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
                             f"); its backend's log: {backend}") from exc
    finally:
        sys.stderr.flush()
        sys.stderr = saved
        os.dup2(original, 2)
        os.close(original)


def start_ray(address: str | None, log=print):
    """Join the cluster at `address` (e.g. auto, ray://host:10001), or start a local Ray runtime."""
    ray = require("ray", "ray", "the Ray route")
    if ray.is_initialized():
        return ray
    import logging

    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # Ray's own notes would drown the run's output
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=True, logging_level="ERROR")
    if address not in (None, "local"):
        check_reachable(address)
    try:
        if address in (None, "local"):
            ray.init(**kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SegmenterError(f"cannot join the Ray cluster at {address} ({str(exc).splitlines()[0][:160]}); "
                             "start it with `ray start --head`, or give its address") from None
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the package reports progress itself
    ray.data.DataContext.get_current().print_on_execution_start = False
    resources = ray.cluster_resources()
    log(f"Ray: {len(ray.nodes())} nodes, {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs")
    return ray


def _started(ray, batches: Iterator, actors: int) -> Iterator:
    """The batches, with Ray's time-out while starting the actor pool turned into one line."""
    try:
        yield from batches
    except ray.exceptions.GetTimeoutError:
        raise SegmenterError(f"Ray could not start {actors} actors within {ACTORS_START_S} s; ask for fewer actors "
                             "or add nodes") from None


def ray_evaluate(plans: list[ImagePlan], spec, cfg: WindowConfig, model_path: Path, device: str, precision: str,
                 threads: int | None, batch_size: int, actors: int, address: str | None, pred_dir: Path | None = None,
                 journal: Journal | None = None, book: ScoreBook | None = None, keep_labels: bool = False,
                 variant=None, scorer=RayScorer, log=print) -> ScoreBook:
    """Score the images of `plans` on Ray with `actors` actors; adds to `book` and `journal` as images come back.

    The metrics do not depend on the order in which images finish or on the number of actors; an image whose
    result arrives twice (a task retried after an actor died) counts once.
    """
    ray = start_ray(address, log)
    book = book or ScoreBook(spec.n_cls)
    rows = [{"row": i, "name": p.name, "prefix": p.prefix, "image_path": str(p.image_path), "gt_path": str(p.gt_path)}
            for i, p in enumerate(plans)]
    if not rows:
        return book
    gpus = is_gpu(device)
    resources = ray.cluster_resources()
    threads = threads or (1 if gpus else max(1, int(resources.get("CPU", 1)) // actors))
    fits = (resources.get("GPU", 0) if gpus else resources.get("CPU", 0) / threads) >= actors
    # Where the cluster has room for the whole pool, every actor is started before the first image is handed out,
    # so that the work is spread over all of them rather than taken by the first to be ready.
    ray.data.DataContext.get_current().wait_for_min_actors_s = ACTORS_START_S if fits else -1
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // IMAGES_PER_CALL)))
    refs = model_file_refs(model_path)  # held here: restarted actors fetch them again
    scored = dataset.map_batches(  # Ray Data restarts a dead actor and retries its batch by default
        scorer, batch_size=IMAGES_PER_CALL, compute=ray.data.ActorPoolStrategy(
            size=actors, max_tasks_in_flight_per_actor=1),  # a call at a time: the next goes to an idle actor
        num_gpus=1 if gpus else 0, num_cpus=0 if gpus else threads,
        fn_constructor_kwargs=dict(model_files=refs, device=device, precision=precision, threads=threads,
                                   batch_size=batch_size, cfg_json=cfg.to_json(), dataset=spec.name,
                                   keep_labels=keep_labels, variant=variant))
    saved_in = os.path.realpath(pred_dir) if pred_dir is not None else None
    seen: set[int] = set()
    per_node: dict[str, int] = {}
    k = spec.n_cls
    with progress(total=len(rows), desc="evaluate on Ray", unit="img") as bar:
        for batch in _started(ray, scored.iter_batches(batch_size=None, batch_format="numpy"), actors):
            for row, flat, png, image_file, gt_file, error, node in zip(
                    batch["row"], batch["confusion"], batch["labels_png"], batch["image_file"], batch["gt_file"],
                    batch["error"], batch["node"]):
                if error:
                    raise SegmenterError(error)  # the package's own error, raised in an actor
                if int(row) in seen:
                    continue
                seen.add(int(row))
                item = rows[int(row)]
                confusion = np.asarray(flat, np.int64).reshape(k, k)
                labels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED) if len(png) else None
                plan = ImagePlan(item["name"], item["prefix"], item["image_path"], item["gt_path"],
                                 labels.shape if labels is not None else (0, 0))
                book.add_counts(item["name"], item["prefix"], confusion, plan, labels)
                if pred_dir is not None and labels is not None:
                    save_prediction_pngs(pred_dir, item["prefix"], labels, spec)
                if journal is not None:
                    journal.record(Entry(item["name"], item["prefix"], confusion, FileDigest(*json.loads(image_file)),
                                         FileDigest(*json.loads(gt_file)), saved_in))
                per_node[node] = per_node.get(node, 0) + 1
                bar.update(1)
    if len(seen) != len(rows):
        raise SegmenterError(f"Ray returned {len(seen)} of {len(rows)} images; the metrics would be incomplete")
    log("images per Ray node: " + ", ".join(f"{node[:8]} {n}" for node, n in sorted(per_node.items())))
    return book


