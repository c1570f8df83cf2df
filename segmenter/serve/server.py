"""Start the server: the model prepared and its engine chosen once, then replicas on Ray Serve until a signal.

The driver exports the model (or makes its converted copy) and decides an `auto` engine before any replica
starts, as the evaluation's Ray route does; the replicas receive the prepared file through Ray's object
store, so they run on any node of a cluster. SIGINT or SIGTERM stop the application (Ray Serve lets the
requests in flight finish), then Ray.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from ..engines.runtime import check_model_file
from ..engines.table import is_gpu, opens_checkpoint
from ..errors import SegmenterError
from ..evaluation.distributed import model_file_refs, ray_session
from ..evaluation.provenance import versions_record
from ..files import file_sha256
from .replica import SegmenterReplica
from .requests import ServeSettings

APP_NAME = "segmenter"
READY_S = 120.0  # how long the proxy may take to answer once the replicas run


def served_record(model, served_file: Path, settings: ServeSettings, replicas: int, threads: int) -> dict:
    """What GET /model answers: the model (file names and digests, no paths of this machine), its classes and
    palette, the window settings, the engine, the server's bounds and the versions."""
    record = model.provenance()
    described = {k: v for k, v in record["model"].items() if k not in ("path", "config")}
    spec = model.spec
    return {"model": described, "served_file": {"file": served_file.name, "sha256": file_sha256(served_file)},
            "dataset": spec.title, "classes": list(spec.classes),
            "palette": [[int(c) for c in colour] for colour in spec.palette], "evaluation": record["evaluation"],
            "engine": {**record["engine"], "threads": threads, "replicas": replicas},
            "server": {"max_batch_size": settings.max_batch_size,
                       "batch_wait_ms": round(1000 * settings.batch_wait_s, 3),
                       "max_requests": settings.max_requests, "max_body_bytes": settings.max_body_bytes,
                       "token": settings.token is not None},
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions_record()}


def check_port(host: str, port: int) -> None:
    """Refuse a host and port this machine cannot listen on (in use, or not one of its addresses)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise SegmenterError(f"cannot listen on {host}:{port} ({reason}); give another port or host") from None


def _wait_until_answering(url: str, stop: threading.Event) -> None:
    deadline = time.monotonic() + READY_S
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url + "health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SegmenterError(f"the server did not answer at {url}health within {READY_S:.0f} s")
        time.sleep(0.2)


def serve_model(model, settings: ServeSettings, host: str, port: int, address: str | None, replicas: int,
                log=print, ready=None) -> None:
    """Serve an opened, resolved model (api.Model) on `host`:`port` with `replicas` replicas on Ray (a local
    runtime, or the cluster at `address`) until SIGINT or SIGTERM; `ready(url)` is called once it answers."""
    check_port(host, port)
    served = model.model_file()
    check_model_file(served, model.cfg, model.spec)
    variant = model.variant if opens_checkpoint(model.device) else None
    model.release()  # the replicas open their own engines
    stop = threading.Event()
    if address is None:  # a local Ray starts its workers at niceness 15: the replicas would yield the CPU to
        os.environ.setdefault("RAY_worker_niceness", "0")  # anything else on the machine, clients included
    with ray_session(address, log) as ray:
        from ray import serve

        # after ray.init, which sets a SIGTERM handler of its own in the driver: these stop the server cleanly
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            logging.getLogger("ray.serve").setLevel(logging.ERROR)
            gpu = is_gpu(model.device)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            threads = model.threads or (1 if gpu else max(1, cpus // replicas))
            description = served_record(model, served, settings, replicas, threads)
            serve.start(http_options={"host": host, "port": port})
            deployment = SegmenterReplica.options(
                # a replica takes twice its limit and more (those past the limit get its 503 at once); a burst
                # waits in Ray Serve's queue until it is handed over (bodies unread: a connection each, a bounded
                # number of them; Ray Serve's own 503 past it)
                num_replicas=replicas, max_ongoing_requests=2 * settings.max_requests + 8,
                max_queued_requests=max(64, 16 * settings.max_requests) * replicas,
                ray_actor_options={"num_cpus": 0 if gpu else min(threads, cpus), "num_gpus": 1 if gpu else 0})
            try:
                serve.run(deployment.bind(model_file_refs(served), model.device, model.precision, threads, model.cfg,
                                          model.spec, variant, settings, description),
                          name=APP_NAME, route_prefix="/", blocking=False)
            except RuntimeError as exc:
                raise SegmenterError(f"the replicas did not start: {_last_line(exc)}") from None
            url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}/"
            _wait_until_answering(url, stop)
            if not stop.is_set():
                log(f"serving {model.path.name} ({model.device} {model.precision}, {replicas} replica"
                    f"{'s' if replicas > 1 else ''}, {threads} thread{'s' if threads > 1 else ''} each) at {url}; "
                    "Ctrl-C stops")
                if ready is not None:
                    ready(url)
            while not stop.wait(0.5):
                pass
            log("stopping: the requests in flight finish first")
            serve.delete(APP_NAME)  # the replicas finish what they hold, then stop; Ray Serve itself stays up on a
            log("stopped")  # cluster (other applications may use it), and goes with a local Ray at its shutdown
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _last_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    found = [line for line in lines if "SegmenterError" in line or "Error:" in line]
    return (found[-1] if found else lines[-1] if lines else type(exc).__name__)[:300]
