"""The modelyard model server: a KServe custom predictor serving sentence embeddings.

Endpoints (KServe's own, plus OpenAI's):
- KServe v1: `POST /v1/models/<name>:predict` with `{"instances": ["text", ...]}`;
  `GET /v1/models/<name>` (readiness).
- Open Inference Protocol v2: `POST /v2/models/<name>/infer` with one BYTES input of shape [n];
  `GET /v2/models/<name>` (metadata), `/v2/models/<name>/ready`, `/v2/health/live|ready`.
- OpenAI: `POST /v1/embeddings` with `{"model": "<name>", "input": "text" | ["text", ...]}`.
- `GET /metrics`: KServe's latency histograms and the `modelyard_*` series below.

Requests from every protocol share one adaptive batcher (batcher.py). Bad input is answered 4xx with
the field named (validation.py); a full queue or a draining server 503 with Retry-After. On SIGTERM
the server stops accepting connections, answers what is in flight, and exits 0.

One process per pod (`--workers` > 1 would give each process its own /metrics): scale with replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import signal
import struct
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.protocol.rest.server import RESTServer
from prometheus_client import Counter, Gauge, Histogram

from .batcher import Batcher, BatchStats, Overloaded
from .encoder import Encoder, bundled_model_dir
from .validation import BadRequest, Limits, openai_request, v1_texts, v2_texts

log = logging.getLogger("modelyard_server")

#: Latency buckets in seconds; a latency SLO threshold must be one of them (platform/signals.py).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

REQUESTS = Counter(
    "modelyard_requests", "Answered requests, by protocol and HTTP status code", ["model_name", "protocol", "code"]
)
DURATION = Histogram(
    "modelyard_request_duration_seconds", "Request latency", ["model_name", "protocol"], buckets=LATENCY_BUCKETS
)
BATCH_SIZE = Histogram("modelyard_batch_size", "Texts per forward pass", ["model_name"], buckets=BATCH_BUCKETS)
QUEUE_DEPTH = Gauge("modelyard_queue_depth", "Texts waiting for a batch", ["model_name"])
REJECTED = Counter("modelyard_rejected_requests", "Requests refused before any work", ["model_name", "reason"])


def protocol_of(path: str) -> tuple[str, str] | None:
    """(protocol, model name from the path) for inference paths; None for health, metadata, metrics."""
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        return "v1", path[len("/v1/models/") : -len(":predict")]
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "v2", path[len("/v2/models/") :].split("/", 1)[0]
    if path == "/v1/embeddings":
        return "openai", ""
    return None


class EmbeddingModel(Model):  # type: ignore[misc]
    """A KServe model whose predict goes through the shared batcher."""

    def __init__(
        self, name: str, model_dir: Path, *, limits: Limits, max_batch_size: int, max_wait_ms: float, max_queue: int
    ):
        super().__init__(name)
        self.model_dir = model_dir
        self.limits = limits
        self._batching = {"max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms, "max_queue": max_queue}
        self.encoder: Encoder | None = None
        self.batcher: Batcher | None = None
        self.draining = False

    def load(self) -> bool:
        self.encoder = Encoder(self.model_dir)
        stats = BatchStats(on_batch=lambda size, _: BATCH_SIZE.labels(self.name).observe(size))
        self.batcher = Batcher(self.encoder.encode, stats=stats, **self._batching)  # type: ignore[arg-type]
        QUEUE_DEPTH.labels(self.name).set_function(lambda: self.batcher.queued if self.batcher else 0)
        self.ready = True
        return True

    @property
    def dimensions(self) -> int:
        assert self.encoder is not None
        return self.encoder.dimensions

    async def embed(self, texts: list[str]) -> Any:
        assert self.batcher is not None
        if self.draining:
            REJECTED.labels(self.name, "draining").inc()
            raise Overloaded("the server is shutting down", retry_after=1)
        self.batcher.start()
        try:
            return await self.batcher.submit(texts)
        except Overloaded:
            REJECTED.labels(self.name, "queue_full").inc()
            raise

    async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        if isinstance(payload, InferRequest):
            inputs = [
                (i.name, i.datatype, list(i.shape), list(i.data) if i.data is not None else None)
                for i in payload.inputs
            ]
            encoded = await self.embed(v2_texts(inputs, self.limits))
            n, dims = len(encoded.vectors), self.dimensions
            output = InferOutput(name="embedding", shape=[n, dims], datatype="FP32")
            output.set_data_from_numpy(_as_numpy(encoded.vectors), binary_data=False)
            return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[output])
        if isinstance(payload, bytes | str):
            # KServe hands over the raw body when the Content-Type is not JSON; accept JSON anyway.
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise BadRequest("(body)", f"not valid JSON: {exc}") from None
        encoded = await self.embed(v1_texts(payload, self.limits))
        return {"predictions": encoded.vectors}

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": "text", "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": "embedding", "datatype": "FP32", "shape": [-1, self.dimensions]}]


def _as_numpy(vectors: list[list[float]]) -> Any:
    import numpy as np

    return np.asarray(vectors, dtype=np.float32)


def _float_b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


Scope = MutableMapping[str, Any]
Receive = Callable[..., Awaitable[Any]]
Send = Callable[..., Awaitable[Any]]


class MetricsMiddleware:
    """Counts every inference request by protocol and status code, and times it (pure ASGI)."""

    def __init__(self, app: Any, model_name: str):
        self.app = app
        self.model_name = model_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = protocol_of(scope.get("path", "")) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        protocol = kind[0]
        status = 500
        started = time.perf_counter()

        async def capture(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            REQUESTS.labels(self.model_name, protocol, str(status)).inc()
            DURATION.labels(self.model_name, protocol).observe(time.perf_counter() - started)


class BodyLimitMiddleware:
    """Refuses bodies larger than `limit` bytes with 413 before reading them."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                response = JSONResponse(
                    {"error": f"(body): {int(length)} bytes; at most {self.limit} are allowed"}, status_code=413
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(model: EmbeddingModel, server: ModelServer, *, body_limit: int) -> Any:
    """KServe's FastAPI app with our middleware, error handlers and the OpenAI route added."""
    import kserve.model_server as kms

    app = kms.app

    async def bad_request(request: Request, exc: BadRequest) -> Response:
        if request.url.path == "/v1/embeddings":
            body = {"error": {"message": str(exc), "type": "invalid_request_error", "param": exc.field, "code": None}}
            return JSONResponse(body, status_code=exc.status)
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def overloaded(request: Request, exc: Overloaded) -> Response:
        return JSONResponse({"error": exc.reason}, status_code=503, headers={"Retry-After": str(exc.retry_after)})

    async def embeddings(request: Request) -> Response:
        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise BadRequest("(body)", f"not valid JSON: {exc}") from None
        req = openai_request(payload, model.dimensions, model.limits)
        if req.model != model.name:
            error = {
                "message": f"model {req.model!r} does not exist here; this server has {model.name!r}",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
            return JSONResponse({"error": error}, status_code=404)
        encoded = await model.embed(req.texts)
        data = [
            {"object": "embedding", "index": i, "embedding": _float_b64(v) if req.encoding_format == "base64" else v}
            for i, v in enumerate(encoded.vectors)
        ]
        tokens = sum(encoded.tokens)
        body = {
            "object": "list",
            "data": data,
            "model": model.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Response(orjson.dumps(body), media_type="application/json")

    app.add_exception_handler(BadRequest, bad_request)
    app.add_exception_handler(Overloaded, overloaded)
    app.add_api_route("/v1/embeddings", embeddings, methods=["POST"])
    app.add_middleware(BodyLimitMiddleware, limit=body_limit)
    app.add_middleware(MetricsMiddleware, model_name=model.name)
    rest = RESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension, 0)
    rest.create_application()
    return app


class DrainingServer(uvicorn.Server):  # type: ignore[misc]
    """uvicorn's graceful shutdown (stop accepting, finish in-flight requests), with the model marked
    draining first so anything that still reaches it gets 503 + Retry-After instead of an error."""

    def __init__(self, config: uvicorn.Config, model: EmbeddingModel):
        super().__init__(config)
        self.model = model

    def handle_exit(self, sig: int, frame: Any) -> None:
        log.info("signal %s: draining (queue %s texts)", sig, self.model.batcher.queued if self.model.batcher else 0)
        self.model.draining = True
        self.model.ready = False
        super().handle_exit(sig, frame)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="modelyard-server", description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", default="minilm", help="the name clients address (default: minilm)")
    parser.add_argument(
        "--model_dir",
        default=None,
        help="a sentence-transformers directory (default: the bundled all-MiniLM-L6-v2; in a cluster /mnt/models)",
    )
    parser.add_argument("--http_port", type=int, default=8080)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--max_batch_size", type=int, default=16)
    parser.add_argument("--max_wait_ms", type=float, default=2.0)
    parser.add_argument("--max_queue", type=int, default=128, help="texts waiting before requests get 503")
    parser.add_argument("--max_inputs", type=int, default=64, help="texts per request")
    parser.add_argument("--max_chars", type=int, default=8192, help="characters per text")
    parser.add_argument("--grace_period", type=int, default=30, help="seconds to finish in-flight work on SIGTERM")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # KServe logs a timing line per request at INFO; at hundreds of requests a second that is CPU the
    # model needs. Latency lives in /metrics instead.
    from kserve.logging import trace_logger

    trace_logger.setLevel(logging.WARNING)
    model_dir = Path(args.model_dir) if args.model_dir else bundled_model_dir()
    limits = Limits(max_inputs=args.max_inputs, max_chars=args.max_chars)
    model = EmbeddingModel(
        args.model_name,
        model_dir,
        limits=limits,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
    )
    model.load()
    server = ModelServer(
        http_port=args.http_port,
        enable_grpc=False,
        workers=1,
        grace_period=args.grace_period,
        enable_latency_logging=False,
    )
    server.register_model(model)
    model.enable_latency_logging = False
    body_limit = args.max_inputs * (args.max_chars * 4 + 64) + 4096
    app = build_app(model, server, body_limit=body_limit)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.http_port,
        log_config=None,
        timeout_graceful_shutdown=args.grace_period,
        timeout_keep_alive=65,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
    # uvicorn re-raises the signal it caught once it has shut down; a handler that does nothing lets
    # the process end with status 0 after a clean drain instead of dying of that signal.
    signal.signal(signal.SIGTERM, lambda *_: None)

    async def run() -> None:
        await DrainingServer(config, model).serve()
        if model.batcher is not None:
            await model.batcher.stop()

    asyncio.run(run())
    log.info("drained, exiting")
    return 0
