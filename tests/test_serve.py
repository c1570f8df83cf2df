"""The HTTP server on Ray Serve, started as a user starts it: the demo model, a local Ray, one replica.

Its answers are compared with what segmenter_predict.py writes for the same files (byte for byte), its
refusals with the one-line JSON errors the issue names, and its page is used in a real headless Chromium.
"""
import asyncio
import base64
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_script

from segmenter.demo import DEMO_MODEL
from segmenter.demo.scenes import draw_street_scene

pytest.importorskip("ray.serve")
TOKEN = "t0k3n-for-tests"
ENGINE = ["--device", "openvino", "--precision", "fp32", "--image-size", "128"]  # 128: one window for a square
SIZES = {"square": (90, 90), "wide": (256, 512), "tall": (400, 150), "street": (1024, 2048)}
MAX_REQUESTS, MAX_BODY_MB = 2, 4.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """segmenter_serve.py in a subprocess; its output read line by line."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "segmenter_serve.py"), "--port", str(self.port),
                                      *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "SEGMENTER_TOKEN": TOKEN})
        self.lines: queue.Queue = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            if line.startswith("serving "):
                return
        self.stop()
        pytest.fail("the server did not start:\n" + "".join(self.output))

    def request(self, method: str, path: str, body=None, headers: dict | None = None, token: bool = True,
                chunked: bool = False) -> tuple[int, dict, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {**({"Authorization": f"Bearer {TOKEN}"} if token else {}), **(headers or {})}
        connection.request(method, path, body=body, headers=headers, encode_chunked=chunked)
        answer = connection.getresponse()
        status, answer_headers, data = answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        connection.close()
        return status, answer_headers, data

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("requests")
    for i, (name, (h, w)) in enumerate(SIZES.items()):
        cv2.imwrite(str(folder / f"{name}.png"), draw_street_scene(h, w, i).bgr())
    cv2.imwrite(str(folder / "photo.jpg"), draw_street_scene(480, 640, 7).bgr())
    return folder


@pytest.fixture(scope="module")
def predicted(images, tmp_path_factory) -> Path:
    """What segmenter_predict.py writes for the same images, model and settings."""
    out = tmp_path_factory.mktemp("predicted")
    proc = run_script("segmenter_predict.py", "--model", DEMO_MODEL, "--input", images, "--output-dir", out, *ENGINE)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def server():
    started = Server("--model", str(DEMO_MODEL), *ENGINE, "--max-requests", str(MAX_REQUESTS),
                     "--max-body-mb", str(MAX_BODY_MB), "--batch-wait-ms", "5")
    started.wait_ready()
    yield started
    started.stop()


def assert_refused(answer: tuple[int, dict, bytes], status: int, *fragments: str) -> None:
    code, headers, data = answer
    assert code == status, (code, data[:300])
    assert headers["content-type"] == "application/json"
    assert b"\n" not in data.strip() and b"Traceback" not in data
    error = json.loads(data)["error"]
    for fragment in fragments:
        assert fragment in error, (fragment, error)


def assert_still_serving(server: Server, images: Path, predicted: Path) -> None:
    code, _, data = server.request("POST", "/segment", (images / "wide.png").read_bytes())
    assert code == 200 and data == (predicted / "wide_labels.png").read_bytes()


def test_labels_equal_predicts_for_one_and_several_windows(server, images, predicted):
    for image in sorted(images.iterdir()):
        code, headers, data = server.request("POST", "/segment", image.read_bytes(),
                                             {"Content-Type": "application/octet-stream"})
        assert code == 200 and headers["content-type"] == "image/png", data[:300]
        assert data == (predicted / f"{image.stem}_labels.png").read_bytes(), image.name
        assert float(headers["x-segmenter-seconds"]) > 0


def test_requests_need_one_window_and_several(images):
    """The images above: a square one fits one window, the others need several (so merging is exercised)."""
    from segmenter.api import open_model
    from segmenter.data.plan import ImagePlan

    model = open_model(DEMO_MODEL, device="openvino", precision="fp32", image_size=128, log=lambda *_: None)
    counts = {name: ImagePlan.for_image(name, name, "", "", hw, model.cfg).n_windows for name, hw in SIZES.items()}
    assert counts["square"] == 1 and all(n > 1 for name, n in counts.items() if name != "square"), counts


def test_every_output(server, images, predicted):
    body = (images / "street.png").read_bytes()
    for output, suffix in (("color", "color"), ("overlay", "overlay"), ("labels", "labels")):
        code, headers, data = server.request("POST", f"/segment?output={output}", body)
        assert code == 200 and headers["content-type"] == "image/png"
        assert data == (predicted / f"street_{suffix}.png").read_bytes(), output
    code, headers, data = server.request("POST", "/segment?output=json", body)
    assert code == 200 and headers["content-type"] == "application/json"
    answer = json.loads(data)
    labels = cv2.imread(str(predicted / "street_labels.png"), cv2.IMREAD_UNCHANGED)
    assert (answer["height"], answer["width"]) == labels.shape == SIZES["street"]
    assert base64.b64decode(answer["labels_png"]) == (predicted / "street_labels.png").read_bytes()
    ids, counts = np.unique(labels, return_counts=True)
    from segmenter.data.datasets import dataset_spec

    names = dataset_spec("cityscapes").classes
    assert {c["id"]: (c["name"], c["pixels"]) for c in answer["classes"]} == \
        {int(i): (names[i], int(n)) for i, n in zip(ids, counts)}
    assert [c["pixels"] for c in answer["classes"]] == sorted(counts.tolist(), reverse=True)
    assert answer["seconds"] > 0


def test_multipart_file_field(server, images, predicted):
    boundary = "----segmenter-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + (images / "photo.jpg").read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    code, _, data = server.request("POST", "/segment", body,
                                   {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert code == 200 and data == (predicted / "photo_labels.png").read_bytes()


def test_model_and_health(server):
    code, _, data = server.request("GET", "/model")
    assert code == 200
    described = json.loads(data)
    from segmenter.files import file_sha256

    assert described["model"]["sha256"] == file_sha256(DEMO_MODEL) and described["model"]["format"] == "upstream"
    assert described["dataset"] == "Cityscapes" and len(described["classes"]) == len(described["palette"]) == 19
    assert described["evaluation"]["window"] == 128 and described["evaluation"]["image_size"] == 128
    assert (described["engine"]["device"], described["engine"]["precision"]) == ("openvino", "fp32")
    assert described["engine"]["replicas"] == 1 and described["server"]["max_requests"] == MAX_REQUESTS
    assert "openvino" in described["versions"] and str(ROOT) not in data.decode()  # no paths of the server
    code, _, data = server.request("GET", "/health", token=False)
    assert code == 200 and json.loads(data)["ready"] is True


def png_header_only(h: int, w: int) -> bytes:
    """A PNG whose header claims (h, w) pixels, with one tiny compressed row: decoding it would need h*w*3 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * (3 * w + 1))) + chunk(b"IEND", b"")


def test_bad_requests_are_one_line_json_and_the_server_keeps_serving(server, images, predicted):
    street = (images / "street.png").read_bytes()
    cases = [
        (("POST", "/segment", b"this is not an image at all"), 400, "cannot be decoded"),
        (("POST", "/segment", street[:len(street) // 3]), 400, "cannot be decoded"),
        (("POST", "/segment", b""), 400, "empty body"),
        (("GET", "/segment", None), 405, "GET is not allowed"),
        (("POST", "/segmentation", street), 404, "no endpoint /segmentation"),
        (("DELETE", "/model", None), 405, "DELETE"),
        (("POST", "/segment?output=mask", street), 400, "output='mask'"),
        (("POST", "/segment", png_header_only(60000, 60000)), 413, "60000x60000"),
    ]
    for (method, path, body), status, fragment in cases:
        assert_refused(server.request(method, path, body), status, fragment)
        assert_still_serving(server, images, predicted)


def test_token(server, images):
    body = (images / "square.png").read_bytes()
    for method, path, data in (("POST", "/segment", body), ("GET", "/model", None), ("GET", "/", None)):
        assert_refused(server.request(method, path, data, token=False), 401, "token")
        assert_refused(server.request(method, path, data, {"Authorization": "Bearer wrong"}, token=False), 401)
    assert server.request("GET", "/health", token=False)[0] == 200
    assert server.request("GET", "/", token=True)[0] == 200


def test_body_limit_is_413(server, images, predicted):
    big = os.urandom(int(MAX_BODY_MB * 2**20) + 1000)
    assert_refused(server.request("POST", "/segment", big), 413, "at most")
    assert_refused(server.request("POST", "/segment", iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                                  chunked=True), 413, "at most")  # no declared length: counted as it arrives
    assert_still_serving(server, images, predicted)


def test_requests_past_the_limit_are_503_with_retry_after(server, images, predicted):
    body = (images / "street.png").read_bytes()
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: server.request("POST", "/segment", body), range(12)))
    refused = [a for a in answers if a[0] == 503]
    assert refused and all(a[0] in (200, 503) for a in answers), [a[0] for a in answers]
    assert all(a[2] == (predicted / "street_labels.png").read_bytes() for a in answers if a[0] == 200)
    for answer in refused:
        assert_refused(answer, 503, "in flight")
        assert answer[1]["retry-after"] == "1"
    assert_still_serving(server, images, predicted)


def chromium_driver():
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium or chromium-driver is missing: .ci/run installs them")
        pytest.skip("no chromium and chromium-driver here (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", "--disable-background-networking"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)


def test_the_page_shows_the_overlay_and_the_legend_in_chromium(server, images, predicted, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from segmenter.data.datasets import dataset_spec

    browser = chromium_driver()
    try:
        browser.get(f"http://127.0.0.1:{server.port}/?token={TOKEN}")  # sets the cookie the page's requests carry
        assert "Segment an image" in browser.title
        browser.find_element(By.ID, "file").send_keys(str(images / "street.png"))
        WebDriverWait(browser, 120).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#legend li"))
        status = browser.find_element(By.ID, "status").text
        assert "2048×1024" in status and "s for the request" in status, status
        shown = [li.get_attribute("data-cls") for li in browser.find_elements(By.CSS_SELECTOR, "#legend li")]
        labels = cv2.imread(str(predicted / "street_labels.png"), cv2.IMREAD_UNCHANGED)
        names = dataset_spec("cityscapes").classes
        assert sorted(shown) == sorted(names[i] for i in np.unique(labels))
        canvas = browser.find_element(By.ID, "view")
        drawn = browser.execute_script("return arguments[0].toDataURL('image/png')", canvas)
        pixels = cv2.imdecode(np.frombuffer(base64.b64decode(drawn.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        photo = cv2.imread(str(images / "street.png"))
        palette = np.array(dataset_spec("cityscapes").palette, np.float64)[:, ::-1]  # BGR
        expected = 0.45 * photo + 0.55 * palette[labels]  # the page's blend at its default opacity
        assert pixels.shape == photo.shape and np.abs(pixels - expected).mean() < 1.5
        shot = tmp_path / "page.png"
        browser.save_screenshot(str(shot))
        screen = cv2.imread(str(shot))
        assert screen is not None and screen.std() > 20 and len(np.unique(screen.reshape(-1, 3), axis=0)) > 100
    finally:
        browser.quit()


def test_sigterm_lets_requests_in_flight_finish(server, images, predicted):
    """Last: stops the module's server."""
    body = (images / "street.png").read_bytes()
    with ThreadPoolExecutor(2) as pool:
        answers = [pool.submit(server.request, "POST", "/segment", body) for _ in range(2)]
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        codes = [a.result()[0] for a in answers]
    assert codes == [200, 200]
    assert server.proc.wait(120) == 0
    output = "".join(server.output)
    assert "stopping: the requests in flight finish first" in output and "stopped" in output
    assert "Traceback" not in output


def test_memory_budget_makes_requests_wait_and_refuses_what_never_fits():
    import asyncio

    from segmenter.serve.requests import MemoryBudget, Refused

    async def scenario() -> list[str]:
        budget, events = MemoryBudget(100), []

        async def request(name: str, nbytes: int, hold: float) -> None:
            await budget.take(nbytes, name)
            events.append(f"{name} in")
            await asyncio.sleep(hold)
            events.append(f"{name} out")
            await budget.give(nbytes)

        with pytest.raises(Refused) as refused:
            await budget.take(101, "an image of 9x9")
        assert refused.value.status == 413 and "an image of 9x9" in refused.value.message
        await asyncio.gather(request("a", 60, 0.05), request("b", 60, 0.0), request("c", 40, 0.0))
        assert budget.used == 0
        return events

    events = asyncio.run(scenario())
    assert events.index("b in") > events.index("a out")  # b waited for a's memory
    assert events.index("c in") < events.index("a out")  # c fitted beside a


def test_windows_arriving_while_the_engine_runs_fill_its_next_call():
    from segmenter.serve.batching import WindowBatcher

    calls: list[list[int]] = []

    async def engine(windows: list[np.ndarray]) -> np.ndarray:  # a slow engine; logits: the window's id doubled
        calls.append([int(w[0, 0, 0]) for w in windows])
        await asyncio.sleep(0.05)
        if any(w[0, 0, 0] == 99 for w in windows):
            raise RuntimeError("engine failed")
        return np.stack([2 * w for w in windows])

    def window(i: int, side: int = 4) -> np.ndarray:
        return np.full((3, side, side), i, np.float32)

    async def scenario() -> list:
        batcher = WindowBatcher(engine, max_batch=4, wait_s=0.01)
        first = asyncio.ensure_future(batcher(window(0)))  # alone: runs after waiting at most 10 ms
        await asyncio.sleep(0.02)
        rest = [asyncio.ensure_future(batcher(window(i))) for i in range(1, 7)]  # arrive while the engine runs
        small = asyncio.ensure_future(batcher(window(7, side=2)))  # another shape: a call of its own
        results = await asyncio.gather(first, *rest, small)
        with pytest.raises(RuntimeError, match="engine failed"):
            await batcher(window(99))
        assert (await batcher(window(8)))[0, 0, 0] == 16  # the batcher keeps serving after a failed call
        assert (batcher.calls, batcher.windows) == (len(calls) - 1, 9)
        return results

    results = asyncio.run(scenario())
    assert [int(r[0, 0, 0]) for r in results] == [2 * i for i in range(8)]
    assert calls[:4] == [[0], [1, 2, 3, 4], [5, 6], [7]]
