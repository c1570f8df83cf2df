"""A Ray Serve replica: one engine, and the HTTP endpoints that segment images with the suite's own windows and merge.

`POST /segment` takes an encoded image (the raw body, or one multipart file field) and answers its labels
as a single-channel PNG (the same bytes segmenter_predict.py writes as `_labels.png`), or with `?output=`
color, overlay or json. The windows of concurrent requests share engine calls (batching.py: at most
`max_batch_size` windows, formed when the engine is free, waiting at most `batch_wait_s` for others).
`GET /model` is the provenance of what is served, `GET /health` says ready, `GET /` is the page (page.py).
Every refusal is a 4xx with a one-line JSON error; requests in flight and body sizes are bounded (503 with
Retry-After, 413); with a token, every endpoint but /health needs `Authorization: Bearer <token>` (or the
cookie the page sets when opened with `?token=`).
"""
# no `from __future__ import annotations`: Ray Serve rebuilds the endpoints' signatures, and FastAPI must see
# their parameter types (Request) as objects, not strings
import asyncio
import base64
import hmac
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from starlette.exceptions import HTTPException

from ..data.datasets import DatasetSpec
from ..data.images import decode_image, encode_image, header_size, view_windows
from ..data.plan import ImagePlan, WindowConfig
from ..errors import SegmenterError
from ..evaluation.pipeline import engine_logits
from ..evaluation.scoring import ImageMerger
from ..outputs.visualize import overlay_picture
from ..system import available_memory
from .batching import WindowBatcher
from .page import page_html
from .requests import MemoryBudget, Refused, ServeSettings, image_bytes

OUTPUTS = ("labels", "color", "overlay", "json")
MEMORY_SHARE = 0.6  # of the memory available when a replica starts: what its requests may hold at once
COOKIE = "segmenter_token"
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # no generated pages: nothing fetched from outside


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


def _reason(exc: SegmenterError) -> str:
    """An error about the request's image without the name it was given inside the package."""
    return str(exc).split(": ", 1)[-1] if str(exc).startswith(("the body: ", "the image: ")) else str(exc)


@app.exception_handler(Refused)
async def _refused(request: Request, exc: Refused) -> JSONResponse:
    return _error(exc.status, exc.message, exc.headers)


@app.exception_handler(HTTPException)
async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    what = {404: f"no endpoint {request.url.path}: the endpoints are POST /segment, GET /model, GET /health, GET /",
            405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
    return _error(exc.status_code, what)


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _error(422, f"bad request parameters: {exc.errors()[0].get('msg', 'invalid')}")


@app.exception_handler(SegmenterError)
async def _failed(request: Request, exc: SegmenterError) -> JSONResponse:
    return _error(500, f"the server failed on this request: {exc}")


@app.exception_handler(Exception)
async def _internal(request: Request, exc: Exception) -> JSONResponse:
    return _error(500, f"the server failed on this request ({type(exc).__name__}); it keeps serving")


@serve.deployment
@serve.ingress(app)
class SegmenterReplica:
    """One engine on the prepared model; the endpoints above."""

    def __init__(self, model_files: list, device: str, precision: str, threads: int | None, cfg: WindowConfig,
                 spec: DatasetSpec, variant, settings: ServeSettings, description: dict) -> None:
        from ..engines.backends import open_engine
        from ..evaluation.distributed import unpack_model_files

        self.cfg, self.spec, self.settings, self.description = cfg, spec, settings, description
        self.engine = open_engine(unpack_model_files(model_files), device, precision, threads,
                                  settings.max_batch_size, variant=variant)
        self.engine_calls = ThreadPoolExecutor(1, thread_name_prefix="engine")  # one engine call at a time
        self.cpu_work = ThreadPoolExecutor(2, thread_name_prefix="images")  # decoding, windows, merging, encoding
        self.infer = WindowBatcher(self._engine_call, settings.max_batch_size, settings.batch_wait_s)
        self.in_flight = 0
        self.memory = MemoryBudget(int(MEMORY_SHARE * available_memory()))

    # --- the engine, shared by concurrent requests

    async def _engine_call(self, windows: list[np.ndarray]) -> np.ndarray:
        """Logits of windows of one shape from several requests, in one engine call off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.engine_calls, engine_logits, self.engine,
                                                                windows, self.settings.max_batch_size)

    def request_bytes(self, plan: ImagePlan) -> int:
        """Memory a request holds at most: its pixels (decoded and resized), its windows, a batch of logits and
        the merge at the image's size."""
        h, w = plan.original_hw
        window = 4 * self.cfg.window_size ** 2
        return 6 * h * w + plan.n_windows * 3 * window + self.settings.max_batch_size * self.spec.n_cls * window + \
            plan.merge_bytes(self.spec.n_cls)

    async def answer(self, data: bytes, output: str, start: float) -> Response:
        """The answer for an encoded image: its size read from the header, its share of memory taken (or refused)
        before a pixel is decoded, its windows through the shared engine, merged in order as they come back."""
        loop = asyncio.get_running_loop()
        try:
            hw = await loop.run_in_executor(self.cpu_work, header_size, data)
        except SegmenterError as exc:
            raise Refused(400, f"{_reason(exc)}; send a JPEG, PNG, BMP, TIFF or WebP image") from None
        plan = ImagePlan.for_image("request", "request", "", "", hw, self.cfg)
        cost = self.request_bytes(plan)
        await self.memory.take(cost, f"an image of {hw[0]}x{hw[1]} ({plan.n_windows} windows)")
        tasks: list = []
        try:
            try:
                bgr = await loop.run_in_executor(self.cpu_work, decode_image, data, "the body")
            except SegmenterError as exc:
                raise Refused(400, f"{_reason(exc)}; send a JPEG, PNG, BMP, TIFF or WebP image") from None
            if bgr.shape[:2] != hw:  # a header that disagrees with its pixels: the pixels' plan and cost
                plan = ImagePlan.for_image("request", "request", "", "", bgr.shape[:2], self.cfg)
                extra = max(0, self.request_bytes(plan) - cost)
                await self.memory.take(extra, f"an image of {bgr.shape[0]}x{bgr.shape[1]} ({plan.n_windows} windows)")
                cost += extra
            windows = await loop.run_in_executor(self.cpu_work, lambda: [w for view in view_windows(bgr, plan, self.cfg)
                                                                         for w in view])
            tasks = [asyncio.ensure_future(self.infer(window)) for window in windows]
            del windows
            merger = ImageMerger(plan, self.spec.n_cls, self.cfg.window_size)
            for k, task in enumerate(tasks):
                await loop.run_in_executor(self.cpu_work, merger.add, k, await task)
            tasks = []
            labels = await loop.run_in_executor(self.cpu_work, merger.labels)
            return await loop.run_in_executor(self.cpu_work, self._answer, output, bgr, labels,
                                              time.perf_counter() - start)
        finally:
            for task in tasks:
                task.cancel()
            await self.memory.give(cost)

    # --- access and bounds

    def _authorized(self, request: Request) -> None:
        token = self.settings.token
        if token is None:
            return
        given = request.headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Refused(401, "this server needs a token: send Authorization: Bearer <token>",
                          {"WWW-Authenticate": "Bearer"})

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refused(413, f"a body of {int(declared):,} bytes; this server takes at most {limit:,}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"a body of more than {limit:,} bytes; this server takes at most {limit:,}")
            chunks.append(chunk)
        return b"".join(chunks)

    # --- the endpoints

    @app.post("/segment")
    async def segment(self, request: Request, output: str = "labels") -> Response:
        self._authorized(request)
        if output not in OUTPUTS:
            raise Refused(400, f"output={output!r} is not one of {', '.join(OUTPUTS)}")
        if self.in_flight >= self.settings.max_requests:
            raise Refused(503, f"{self.in_flight} requests in flight, the most this server takes at once; retry "
                          "shortly", {"Retry-After": "1"})
        self.in_flight += 1
        start = time.perf_counter()
        try:
            data = image_bytes(await self._body(request), request.headers.get("content-type", ""))
            if not data:
                raise Refused(400, "an empty body; send an encoded image (JPEG, PNG, BMP, TIFF or WebP)")
            return await self.answer(data, output, start)
        finally:
            self.in_flight -= 1

    def _answer(self, output: str, bgr: np.ndarray, labels: np.ndarray, seconds: float) -> Response:
        headers = {"X-Segmenter-Seconds": f"{seconds:.4f}"}
        if output == "labels":
            return Response(encode_image(labels), media_type="image/png", headers=headers)
        if output == "color":
            return Response(encode_image(self.spec.colourize(labels)), media_type="image/png", headers=headers)
        if output == "overlay":
            picture = overlay_picture(bgr, labels, self.spec, self.settings.alpha)[0]
            return Response(encode_image(picture), media_type="image/png", headers=headers)
        ids, counts = np.unique(labels, return_counts=True)
        classes = [{"id": int(i), "name": self.spec.classes[i], "pixels": int(n),
                    "color": list(self.spec.palette[i])} for i, n in zip(ids, counts) if i < self.spec.n_cls]
        return JSONResponse({"height": int(labels.shape[0]), "width": int(labels.shape[1]),
                             "classes": sorted(classes, key=lambda c: -c["pixels"]),
                             "labels_png": base64.b64encode(encode_image(labels)).decode(),
                             "seconds": round(seconds, 4)}, headers=headers)

    @app.get("/model")
    def model(self, request: Request) -> JSONResponse:
        self._authorized(request)
        return JSONResponse(self.description)

    @app.get("/health")
    def health(self) -> JSONResponse:
        return JSONResponse({"ready": True, "engine": self.engine.name, "in_flight": self.in_flight,
                             "engine_calls": self.infer.calls, "windows": self.infer.windows})

    @app.get("/")
    def page(self, request: Request, token: str | None = None) -> HTMLResponse:
        given = self.settings.token
        if given is not None and token is not None and hmac.compare_digest(token.encode(), given.encode()):
            response = HTMLResponse(page_html(self.description, self.settings.alpha))  # its requests carry the cookie
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        self._authorized(request)
        return HTMLResponse(page_html(self.description, self.settings.alpha))


