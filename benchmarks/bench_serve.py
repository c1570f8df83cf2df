#!/usr/bin/env python3
"""The server under load on the loopback address, against the same engine called directly in the same run.

A random checkpoint of a released shape (Seg-T by default; weights do not change the cost) is served by
segmenter_serve.py (a local Ray, one replica); a fixed number of requests is posted at each concurrency,
Cityscapes-size (1024x2048) and ADE20K-size (512x683) generated street scenes in turn. Before the server
starts, the same engine, precision and batch size run the same images through the Python API: one image at
a time (the per-image time) and batched across images (the throughput a server can approach). Prints the
machine, a Markdown table (throughput, p50 and p99 latency, the server's peak memory) and the targets at
concurrency 8: throughput at least 0.8x the direct batched figure, p99 within 2x the direct per-image time
times the concurrency.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from segmenter.api import open_model
from segmenter.cli import ArgumentParser
from segmenter.demo.checkpoints import write_random_checkpoint
from segmenter.demo.scenes import draw_street_scene
from segmenter.engines.autotune import machine_id
from segmenter.evaluation.pipeline import Job, run_pipeline

ROOT = Path(__file__).resolve().parents[1]

SIZES = {"Cityscapes 1024x2048": (1024, 2048), "ADE20K 512x683": (512, 683)}
QUIET = lambda *_: None  # noqa: E731


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def direct(model, images: list[np.ndarray]) -> tuple[float, float]:
    """(seconds per image one at a time, images per second batched across images) through the Python API."""
    one = []
    for image in images[:4]:
        start = time.perf_counter()
        model.segment(image)
        one.append(time.perf_counter() - start)
    jobs = [Job(lambda image=image: (model_plan(model, image), image, None)) for image in images]
    start = time.perf_counter()
    run_pipeline(jobs, model.cfg, model.engine, lambda done: done.merger.labels(), model.batch_size, model.workers)
    return float(np.median(one)), len(images) / (time.perf_counter() - start)


def model_plan(model, image: np.ndarray):
    from segmenter.data.plan import ImagePlan

    return ImagePlan.for_image("image", "image", "", "", image.shape[:2], model.cfg)


def server_processes() -> list[int]:
    """The pids of this machine's Ray processes and the server's driver (the server's memory is theirs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"ray::" in line or b"segmenter_serve.py" in line or b"raylet" in line or b"gcs_server" in line:
                found.append(int(entry.name))
    return found


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class MemoryWatch(threading.Thread):
    """The peak of the server's total resident memory, sampled every 50 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.done = 0, threading.Event()

    def run(self) -> None:
        pids = server_processes()
        while not self.done.wait(0.05):
            self.peak = max(self.peak, rss_bytes(pids))


def post(port: int, body: bytes) -> float:
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("POST", "/segment", body=body)
    answer = connection.getresponse()
    answer.read()
    connection.close()
    if answer.status != 200:
        raise RuntimeError(f"the server answered {answer.status}")
    return time.perf_counter() - start


def load(port: int, body: bytes, requests: int, concurrency: int) -> tuple[float, float, float, int]:
    """(requests per second, p50 s, p99 s, peak server memory in bytes) of `requests` posts, `concurrency` at once."""
    watch = MemoryWatch()
    watch.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(lambda _: post(port, body), range(requests)))
    wall = time.perf_counter() - start
    watch.done.set()
    watch.join()
    return requests / wall, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)), watch.peak


def start_server(checkpoint: Path, args) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "segmenter_serve.py"), "--model", str(checkpoint),
                               "--device", args.device, "--precision", args.precision, "--port", str(port),
                               "--max-batch-size", str(args.max_batch_size),
                               "--max-requests", str(max(args.concurrencies) + 1)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in server.stdout:
        if line.startswith("serving "):
            print(line.strip(), flush=True)
            threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
            return server, port
    raise SystemExit("the server did not start")


def main() -> None:
    parser = ArgumentParser(__doc__, example="python benchmarks/bench_serve.py --size T --requests 16 --rounds 2")
    parser.add_argument("--size", default="T", choices=["tiny", "T", "S", "B"], help="Model shape. Default: T.")
    parser.add_argument("--device", default="openvino", help="Engine device. Default: openvino.")
    parser.add_argument("--precision", default="fp32", help="Engine precision. Default: fp32.")
    parser.add_argument("--max-batch-size", type=int, default=4, help="Windows per engine call. Default: 4.")
    parser.add_argument("--requests", type=int, default=16, help="Requests per concurrency and size. Default: 16.")
    parser.add_argument("--concurrency", default="1,4,8", help="Concurrencies, comma-separated. Default: 1,4,8.")
    parser.add_argument("--rounds", type=int, default=2,
                        help="Rounds of every measurement, direct and served in turn; the best of each is kept. "
                             "Default: 2.")
    args = parser.parse_args()
    args.concurrencies = [int(c) for c in args.concurrency.split(",")]
    print(f"machine: {machine_id()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["SEGMENTER_CACHE_DIR"] = str(tmp / "cache")  # the server reuses this run's export
        checkpoint = write_random_checkpoint(tmp / "model", args.size, image_size=512, n_cls=150, dataset="ade20k",
                                             im_size=512)
        model = open_model(checkpoint, device=args.device, precision=args.precision, batch_size=args.max_batch_size,
                           log=QUIET)
        images = {name: [draw_street_scene(h, w, seed).bgr() for seed in range(args.requests)]
                  for name, (h, w) in SIZES.items()}
        bodies = {name: cv2.imencode(".png", found[0])[1].tobytes() for name, found in images.items()}
        model.segment(images[next(iter(SIZES))][0])  # the engine opened before the server starts
        server, port = start_server(checkpoint, args)
        best: dict = {}
        try:
            for round_ in range(args.rounds):
                for name, body in bodies.items():  # direct and served in turn: the machine's drift falls on both
                    per_image, batched = direct(model, images[name])
                    old = best.get((name, "direct"), (float("inf"), 0.0))
                    best[name, "direct"] = (min(old[0], per_image), max(old[1], batched))
                    post(port, body)  # warm-up
                    for concurrency in args.concurrencies:
                        measured = load(port, body, args.requests, concurrency)
                        old = best.get((name, concurrency))
                        best[name, concurrency] = measured if old is None else (
                            max(old[0], measured[0]), min(old[1], measured[1]), min(old[2], measured[2]),
                            max(old[3], measured[3]))
                print(f"round {round_ + 1} of {args.rounds} done", flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(120)
        print(f"\nSeg-{args.size} (150 classes, windows of {model.cfg.window_size}), {args.device} {args.precision}, "
              f"batch {args.max_batch_size}, {args.requests} requests per row, best of {args.rounds} rounds:\n\n"
              "| image | windows | concurrency | requests/s | direct batched images/s | ratio | p50 s | p99 s | "
              "p99 bound s | server peak memory |\n|---|---|---|---|---|---|---|---|---|---|")
        verdicts = []
        for name in bodies:
            per_image, batched = best[name, "direct"]
            windows = model_plan(model, images[name][0]).n_windows
            for concurrency in args.concurrencies:
                rate, p50, p99, peak = best[name, concurrency]
                bound = 2 * per_image * concurrency
                print(f"| {name} | {windows} | {concurrency} | {rate:.2f} | {batched:.2f} | {rate / batched:.2f} | "
                      f"{p50:.2f} | {p99:.2f} | {bound:.2f} | {peak / 2**30:.2f} GiB |")
                if concurrency == 8:
                    verdicts.append(f"{name} at concurrency 8: throughput {rate / batched:.2f}x direct batched "
                                    f"({'meets' if rate >= 0.8 * batched else 'misses'} 0.8x), p99 {p99:.2f} s "
                                    f"({'within' if p99 <= bound else 'over'} {bound:.2f} s = 2 x {per_image:.2f} s "
                                    "direct per image x 8)")
        print("\n" + "\n".join(verdicts))


if __name__ == "__main__":
    main()
