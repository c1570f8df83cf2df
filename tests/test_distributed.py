"""Evaluation on Ray (local runtime, a second node, a killed actor) and resuming stopped runs on both routes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT, read_metrics, run_script

ray = pytest.importorskip("ray", reason="Ray is installed by requirements-ray.txt (the test set-up)")

N_IMAGES = 8
SLOW = ("--image-size", 384)  # many windows per image: a run lasts long enough to be stopped half-way


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray")
    for args in (("tools/make_dataset.py", "--data-root", root / "data", "--n-images", N_IMAGES, "--size", 96, 192),
                 ("tools/make_random_checkpoint.py", "--out-dir", root / "model", "--im-size", 64, "--seed", 8),
                 ("segmenter_pytorch2onnx.py", "-c", root / "model" / "checkpoint.pth", "-o", root / "m.onnx")):
        proc = run_script(*args)
        assert proc.returncode == 0, proc.stderr
    return root


def eval_args(root: Path, metrics: Path, *extra) -> list:
    return ["segmenter_eval.py", "--model", root / "m.onnx", "--cfg-path", root / "model" / "variant.yml",
            "--data-root", root / "data", "--metrics-path", metrics, "--device", "cpu", "--precision", "fp32", *extra]


def evaluate(root: Path, metrics: Path, *extra) -> subprocess.CompletedProcess:
    proc = run_script(*eval_args(root, metrics, *extra))
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def reference(setup) -> dict:
    """The single-process run: metrics and label PNGs, with and without the slow settings."""
    evaluate(setup, setup / "single.yaml", "--pred-dir", setup / "pred_single")
    evaluate(setup, setup / "single_slow.yaml", *SLOW)
    return {"fast": read_metrics(setup / "single.yaml"),
            "slow": read_metrics(setup / "single_slow.yaml")}


@pytest.mark.parametrize("actors", [1, 2])
def test_ray_equals_single_process(setup, reference, tmp_path, actors):
    proc = evaluate(setup, tmp_path / "ray.yaml", "--ray", "--ray-actors", actors, "--pred-dir", tmp_path / "pred")
    assert read_metrics(tmp_path / "ray.yaml") == reference["fast"]
    assert "images per Ray node" in proc.stdout
    single = sorted((setup / "pred_single" / "labels").iterdir())
    assert len(single) == N_IMAGES
    for png in single:
        assert (tmp_path / "pred" / "labels" / png.name).read_bytes() == png.read_bytes()


def test_ray_measures_auto_once_on_the_driver(setup, tmp_path):
    """`auto` on Ray: measured once, on the driver's machine, before the actors start; the actors open the
    engine chosen, and the metrics equal a single-process run on it."""
    env = {"SEGMENTER_CACHE_DIR": str(tmp_path / "cache")}
    common = ["segmenter_eval.py", "--model", setup / "m.onnx", "--cfg-path", setup / "model" / "variant.yml",
              "--data-root", setup / "data"]
    proc = run_script(*common, "--metrics-path", tmp_path / "ray.yaml", "--ray", "--ray-actors", 2, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("auto: measuring") == 1 and "images per Ray node" in proc.stdout
    chosen = [line for line in proc.stdout.splitlines() if line.startswith("auto: ") and "measuring" not in line]
    device, precision = chosen[0].split(",")[0].split()[1:3]
    single = run_script(*common, "--metrics-path", tmp_path / "single.yaml", "--device", device, "--precision",
                        precision, env=env)
    assert single.returncode == 0, single.stderr
    assert read_metrics(tmp_path / "ray.yaml") == read_metrics(tmp_path / "single.yaml")


def journal_lines(path: Path) -> list[dict]:
    """The journal's complete lines of scored images (not its header, nor the lines of the runs that wrote to it).

    A run being watched may be half-way through writing a long line, so a last line without its newline is left out.
    """
    lines = path.read_text().split("\n")[1:-1]
    return [doc for line in lines if "session" not in (doc := json.loads(line))]


def stop_after(args: list, journal: Path, images: int, sig: int) -> None:
    """Start an evaluation and stop it with `sig` once `images` images are journaled."""
    proc = subprocess.Popen([sys.executable, *[str(a) for a in args]], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal_lines(journal)) >= images:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped"
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)


def test_stopped_runs_resume_on_both_routes(setup, reference, tmp_path):
    metrics = tmp_path / "m.yaml"
    journal = Path(f"{metrics}.journal.jsonl")
    # single-process route, killed outright half-way; then resumed on Ray
    stop_after(eval_args(setup, metrics, *SLOW, "--resume"), journal, 2, signal.SIGKILL)
    done = len(journal_lines(journal))
    assert 2 <= done < N_IMAGES and not metrics.exists()
    proc = evaluate(setup, metrics, *SLOW, "--resume", "--ray", "--ray-actors", 2)
    assert f"{done} images already scored" in proc.stdout
    assert read_metrics(metrics) == reference["slow"]
    prefixes = [line["prefix"] for line in journal_lines(journal)]
    assert len(prefixes) == len(set(prefixes)) == N_IMAGES  # each image scored once
    # Ray route interrupted with Ctrl-C half-way; then resumed in one process
    metrics.unlink()
    journal.unlink()
    stop_after(eval_args(setup, metrics, *SLOW, "--resume", "--ray"), journal, 1, signal.SIGINT)
    done = len(journal_lines(journal))
    assert 1 <= done < N_IMAGES
    proc = evaluate(setup, metrics, *SLOW, "--resume")
    assert f"{done} images already scored" in proc.stdout
    assert read_metrics(metrics) == reference["slow"]
    assert len({line["prefix"] for line in journal_lines(journal)}) == len(journal_lines(journal)) == N_IMAGES


def test_a_killed_actor_is_restarted_and_its_images_redone(setup, reference, tmp_path):
    """Fault injected: an actor kills its own process the first time it has scored two images."""
    from segmenter.data.images import sample_census
    from segmenter.data.settings import resolve_dataset, window_config
    from segmenter.evaluation.distributed import RayScorer, ray_evaluate
    from segmenter.evaluation.metrics import compute_scores
    from segmenter.model.formats.upstream import load_variant

    marker = tmp_path / "killed_once"

    class DyingScorer(RayScorer):
        scored = 0

        def __call__(self, rows):
            out = super().__call__(rows)
            self.scored += len(out["row"])
            if self.scored >= 2 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # the actor's process dies with results not yet returned
            return out

    variant = load_variant(setup / "model" / "variant.yml")
    spec = resolve_dataset(variant)
    cfg = window_config(variant, spec, log=lambda _: None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        book = ray_evaluate(sample_census(spec.samples(setup / "data"), cfg).plans, spec, cfg, setup / "m.onnx", "cpu",
                            "fp32", None, 1, 2, None, scorer=DyingScorer, log=lambda _: None)
    finally:
        ray.shutdown()
    assert marker.exists()  # the fault did happen
    assert book.images == N_IMAGES
    scores = compute_scores(book.confusion.matrix, spec)
    assert scores == reference["fast"]


def test_a_second_node_joined_by_address_does_part_of_the_work(setup, reference, tmp_path):
    """A cluster started the usual way: a head and a worker node (each with one CPU) on this machine."""
    ray_cli = str(Path(sys.executable).with_name("ray"))
    auth = {"RAY_AUTH_MODE": "token"}  # `ray start --head` turns on token auth (the token in ~/.ray/auth_token)
    env = {**os.environ, **auth}
    port = 6390 + os.getpid() % 100
    subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                    "--node-ip-address=127.0.0.1"], check=True, capture_output=True, env=env, timeout=120)
    try:
        subprocess.run([ray_cli, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--node-ip-address=127.0.0.1"],
                       check=True, capture_output=True, env=env, timeout=120)
        proc = run_script(*eval_args(setup, tmp_path / "cluster.yaml", "--ray", f"127.0.0.1:{port}", "--ray-actors", 2),
                          env=auth)
        assert proc.returncode == 0, proc.stderr
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
    assert "Ray: 2 nodes, 2 CPUs" in proc.stdout
    nodes = proc.stdout.split("images per Ray node: ")[1].splitlines()[0].split(", ")
    assert len(nodes) == 2 and sum(int(n.split()[1]) for n in nodes) == N_IMAGES  # both nodes scored images
    assert read_metrics(tmp_path / "cluster.yaml") == reference["fast"]


def test_gpu_engines_ask_ray_for_a_gpu_per_actor(monkeypatch, setup):
    """Every device the engine table marks as a GPU one (torch-cuda included) gets num_gpus=1 per actor."""
    import segmenter.evaluation.distributed as distributed
    from segmenter.data.images import sample_census
    from segmenter.data.settings import resolve_dataset, window_config
    from segmenter.engines.table import DEVICES
    from segmenter.model.formats.upstream import load_variant

    asked = {}

    class FakeDataset:
        def map_batches(self, scorer, **kwargs):
            asked.update(kwargs)
            return self

        def iter_batches(self, **_):
            return iter(())

    context = SimpleNamespace(wait_for_min_actors_s=-1)

    class FakeRay:
        data = type("data", (), {"from_items": staticmethod(lambda rows, **_: FakeDataset()),
                                 "ActorPoolStrategy": staticmethod(lambda size, **_: size),
                                 "DataContext": SimpleNamespace(get_current=lambda: context)})
        exceptions = SimpleNamespace(GetTimeoutError=TimeoutError)

        @staticmethod
        def cluster_resources():
            return {"CPU": 4, "GPU": 2}

        @staticmethod
        def put(data):
            return data

    monkeypatch.setattr(distributed, "start_ray", lambda address, log: FakeRay)
    variant = load_variant(setup / "model" / "variant.yml")
    spec = resolve_dataset(variant)
    cfg = window_config(variant, spec, log=lambda _: None)
    plans = sample_census(spec.samples(setup / "data"), cfg).plans[:1]
    for device in DEVICES.values():
        with pytest.raises(Exception, match="Ray returned 0 of 1 images"):
            distributed.ray_evaluate(plans, spec, cfg, setup / "m.onnx", device.name, device.precisions[0], None, 1,
                                     2, None, log=lambda _: None)
        assert (asked["num_gpus"], asked["num_cpus"]) == ((1, 0) if device.gpu else (0, 2)), device.name
        assert context.wait_for_min_actors_s > 0  # the cluster has room for both actors: all started first
    assert DEVICES["torch-cuda"].gpu
