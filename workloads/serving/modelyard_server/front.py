"""A front process: HTTP, validation and tokenization, as one plain ASGI app on uvicorn (httptools,
uvloop), with the model in another process (dispatch.py, engine.py).

Every route answers with bytes orjson wrote straight from numpy arrays; there is no framework between
the socket and the handler, so the cost per request stays close to the HTTP itself.

Routes (KServe's own, Open Inference Protocol v2 with its binary extension, and OpenAI's):
- `POST /v1/models/<name>:predict`, `GET /v1/models/<name>` (KServe v1; the latter also in OpenAI's
  model shape), `GET /v1/models` (KServe's `models` list beside OpenAI's `object: list`, `data`);
- `POST /v2/models/<name>[/versions/<v>]/infer` (JSON with or without a Content-Type, or binary
  tensors after `Inference-Header-Content-Length`), `GET /v2/models/<name>`, `/v2/models/<name>/ready`,
  `/v2/health/live`, `/v2/health/ready`, `GET /v2`;
- `POST /v1/embeddings` (OpenAI; every error in OpenAI's error shape);
- `GET /metrics` (every process's series, added up).
Bodies: `Content-Encoding: gzip` or identity; the size cap holds for chunked bodies and after
decompression. A request may give its answer a deadline (DEADLINE_HEADERS): past it, 504 and its queued
texts dropped. Connections are guarded (_protocol): a read deadline and a cap per front.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import math
import re
import signal
import socket
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import orjson

from . import __version__, metrics
from .dispatch import PRIORITIES, DeadlinePassed, Dispatcher, ModelFailed, Overloaded, Shed
from .stopping import STOP_SIGNALS
from .tap import Tap, TapSettings
from .validation import BadRequest, Limits, openai_request, v1_texts, v2_request

log = logging.getLogger("modelyard_server.front")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON = b"application/json"
#: The inference protocols, as the `protocol` label of the request series names them.
PROTOCOLS = ("v1", "v2", "openai")
#: The statuses the platform's availability SLI reads (platform/signals.py: 200 and every ERROR_CODES status
#: this server answers), exported at 0 before the first request.
SLI_STATUSES = (200, 404, 429, 500, 503, 504)
NUMPY = orjson.OPT_SERIALIZE_NUMPY
CREATED = int(time.time())


class ClientGone(Exception):
    """The client disconnected before its body arrived."""


#: Where an inference request's task waits in its scope, so that the connection, when its client goes
#: away before the answer, cancels it: the request's texts still queued in this front are then never
#: computed (the dispatcher drops pieces whose request is done), which matters most when the server is
#: overloaded and clients time out and retry. Texts already at the model are computed and dropped.
WAITING = "modelyard.waiting"
GONE = "client disconnected"


#: What a request task is cancelled with when its body has not arrived by its read deadline (Guard).
TIMED_OUT = "request not received in time"


@dataclass(frozen=True)
class Guard:
    """What a front allows a connection: `read_timeout` seconds for a request's headers and body to
    arrive, counted from the moment the connection opens (its first request) or from the first byte of
    each later one (the idle time between requests is the keep-alive timeout's), and at most
    `max_connections` connections at once."""

    read_timeout: float = 30.0
    max_connections: int = 1024


@dataclass(frozen=True)
class FrontSettings:
    model_name: str
    limits: Limits
    body_limit: int
    dimensions: int
    guard: Guard = Guard()
    #: The drift tap (tap.py), or None for none.
    tap: TapSettings | None = None
    #: The model's max_seq_length: an answer with a text that reached it is marked degraded (0: never).
    max_seq_length: int = 0


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, at most `limit` bytes whether it comes with a Content-Length, chunked or gzip."""
    length = encoding = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"content-encoding":
            encoding = value
    if length is not None and length.isdigit() and int(length) > limit:
        raise BadRequest("(body)", f"{int(length)} bytes; at most {limit} are allowed", 413)
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest("(body)", f"more than {limit} bytes; at most {limit} are allowed", 413)
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if encoding is None:
        return body
    encoding = encoding.strip().lower()
    if encoding in (b"identity", b""):
        return body
    if encoding not in (b"gzip", b"x-gzip"):
        raise BadRequest(
            "Content-Encoding", f"{encoding.decode('latin-1')!r} is not supported; use gzip or identity", 415
        )
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest("(body)", f"not valid gzip ({exc})") from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise BadRequest("(body)", f"more than {limit} bytes after gzip decompression; at most {limit}", 413)
    if not inflater.eof:
        raise BadRequest("(body)", "the gzip stream is truncated")
    return plain


#: Request headers that give the answer a deadline, in seconds from the moment the request's headers are
#: in: this server's own, and the read timeout the OpenAI Python client sends with every request
#: (openai/openai-python, src/openai/_base_client.py, `_build_headers`: `x-stainless-read-timeout`, its
#: httpx read timeout, 600 s by default). The smallest one given applies.
DEADLINE_HEADERS = (b"x-request-timeout", b"x-stainless-read-timeout")


def request_timeout(headers: list[tuple[bytes, bytes]]) -> float | None:
    """The request's own timeout in seconds (the smallest DEADLINE_HEADERS value), or None."""
    timeout = None
    for name, value in headers:
        if name in DEADLINE_HEADERS:
            try:
                seconds = float(value)
            except ValueError:
                seconds = math.nan
            if not 0 < seconds < math.inf:
                shown = value.decode("latin-1")
                raise BadRequest(name.decode(), f"must be a number of seconds more than 0 (got {shown!r})")
            timeout = seconds if timeout is None else min(timeout, seconds)
    return timeout


#: The request's priority class (dispatch.PRIORITIES); unmarked requests are high. In a cluster the gateway
#: sets it from the caller's identity (a client's own value is what reaches the pod otherwise).
PRIORITY_HEADER = b"x-modelyard-priority"
#: Set on an answer that is not the whole of what was asked, with the reason (metrics.DEGRADED).
DEGRADED_HEADER = b"x-modelyard-degraded"


#: The caller's client id, as the platform's gateway forwards it after authenticating the caller's key
#: (`<team>.<client>`; the gateway removes any value a client sends itself).
CALLER_HEADER = b"x-modelyard-client"
#: Distinct calling teams one front counts under their own names; past them, `other` (bounded series).
MAX_CALLERS = 64
#: What request_caller answers for no header or no team, and the name past MAX_CALLERS teams.
RESERVED_CALLERS = frozenset({"none", "invalid", "other"})
#: A team as the catalog allows one (workloads/catalog.py TEAM_NAME): a lowercase DNS label.
_TEAM = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def request_caller(headers: list[tuple[bytes, bytes]]) -> str:
    """The calling team (CALLER_HEADER's text before its first dot), `none` without the header, `invalid` where
    it names no team."""
    for name, value in headers:
        if name == CALLER_HEADER:
            team = value.decode("latin-1").strip().split(".", 1)[0]
            return team if _TEAM.fullmatch(team) else "invalid"
    return "none"


#: The request's id, which the gateway generates for each request and copies into its mirrors: the tap keys
#: its samples by it (tap.py), so that copies of one request are sampled alike and joined (shadow.py).
REQUEST_ID_HEADER = b"x-request-id"


def request_id(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The request's `x-request-id`, None without one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            return value.strip() or None
    return None


def request_priority(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's priority (PRIORITY_HEADER), `high` when unmarked; any other value is a BadRequest."""
    for name, value in headers:
        if name == PRIORITY_HEADER:
            priority = value.strip().lower().decode("latin-1")
            if priority not in PRIORITIES:
                allowed = " or ".join(PRIORITIES)
                raise BadRequest("x-modelyard-priority", f"must be {allowed} (got {value.decode('latin-1')!r})")
            return priority
    return "high"


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    # orjson refuses escaped lone surrogates ("\ud800"), which JSON's grammar allows; the standard
    # library reads them, so validation can name the text at fault instead of the whole body.
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("(body)", f"not valid JSON: {error}") from None


class App:
    """The ASGI app of one front process."""

    def __init__(self, settings: FrontSettings, dispatcher: Dispatcher):
        self.settings = settings
        self.dispatcher = dispatcher
        name = settings.model_name
        self.name = name
        self._counts: dict[tuple[str, int], Any] = {}
        self._caller_counts: dict[tuple[str, int], Any] = {}
        #: The teams counted under their own names (at most MAX_CALLERS).
        self._callers: set[str] = set()
        # Every answer the availability SLI reads exists from the start, at 0: a series Prometheus first
        # scrapes at some count N loses those N from rate() and increase(), and is extrapolated by its own
        # first sample, so the error ratio over a window with a new 503 series would read low.
        for protocol in PROTOCOLS:
            for status in SLI_STATUSES:
                self._count(protocol, status)
        self._closed: dict[str, Any] = {}
        self._durations = {p: metrics.DURATION.labels(name, p) for p in PROTOCOLS}
        self._truncated = metrics.DEGRADED.labels(name, "truncated")
        self._metadata = orjson.dumps(
            {
                "name": name,
                "versions": [],
                "platform": "pytorch",
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, settings.dimensions]}],
            }
        )
        self._openai_model = {"id": name, "object": "model", "created": CREATED, "owned_by": "modelyard"}
        self.tap = (
            None
            if settings.tap is None
            else Tap(settings.tap, name, settings.dimensions, dispatcher.tally, dispatcher.metrics_changed)
        )
        self._tap_task: asyncio.Task[None] | None = None

    # -- plumbing

    def _count_caller(self, caller: str, status: int) -> Any:
        """The caller counter's child for a team and status; past MAX_CALLERS distinct teams, `other`."""
        key = (caller, status)
        child = self._caller_counts.get(key)
        if child is None:
            if caller not in self._callers and caller not in RESERVED_CALLERS:
                if len(self._callers) >= MAX_CALLERS:
                    return self._count_caller("other", status)
                self._callers.add(caller)
            child = self._caller_counts[key] = metrics.CALLER_REQUESTS.labels(self.name, caller, str(status))
        return child

    def _count(self, protocol: str, status: int) -> Any:
        key = (protocol, status)
        child = self._counts.get(key)
        if child is None:
            child = self._counts[key] = metrics.REQUESTS.labels(self.name, protocol, str(status))
        return child

    @staticmethod
    async def _send(
        send: Send, status: int, body: bytes, content_type: bytes = JSON, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _json(self, send: Send, status: int, value: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        await self._send(send, status, orjson.dumps(value, option=NUMPY), JSON, extra)

    def connection_closed(self, reason: str) -> None:
        """Counts a connection the guard closed (_protocol): read_timeout, evicted or refused."""
        child = self._closed.get(reason)
        if child is None:
            child = self._closed[reason] = metrics.CLOSED_CONNECTIONS.labels(self.name, reason)
        self.dispatcher.tally.inc(child)
        self.dispatcher.metrics_changed()

    def _degraded(self, tokens: Any) -> list[tuple[bytes, bytes]]:
        """The degraded header (and its count) for an answer with a text at the model's max_seq_length."""
        limit = self.settings.max_seq_length
        if not limit or int(tokens.max(initial=0)) < limit:
            return []
        self.dispatcher.tally.inc(self._truncated)
        return [(DEGRADED_HEADER, b"truncated")]

    def _ready(self) -> bool:
        return self.dispatcher.ready and not self.dispatcher.draining

    # -- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        protocol = None
        if method == "POST":
            if path.startswith("/v1/models/") and path.endswith(":predict"):
                protocol = "v1"
            elif path.startswith("/v2/models/") and path.endswith("/infer"):
                protocol = "v2"
            elif path == "/v1/embeddings":
                protocol = "openai"
        if protocol is None:
            await self._other(scope, send, method, path)
            return
        started = time.perf_counter()
        status = 500
        try:
            status = await self._inference(protocol, scope, receive, send)
        finally:
            tally = self.dispatcher.tally
            tally.inc(self._count(protocol, status))
            tally.inc(self._count_caller(request_caller(scope["headers"]), status))
            if status == 200:  # the latency SLI is of answers; a refusal or an error is availability's
                tally.observe(self._durations[protocol], time.perf_counter() - started)
            self.dispatcher.metrics_changed()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.dispatcher.start(asyncio.get_running_loop())
                if self.tap is not None:
                    self._tap_task = asyncio.get_running_loop().create_task(self.tap.run())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._tap_task is not None:
                    self._tap_task.cancel()
                self.dispatcher.flush_metrics()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _inference(self, protocol: str, scope: Scope, receive: Receive, send: Send) -> int:
        """Answers one inference request; returns the status it sent (499: the client went away)."""
        scope[WAITING] = asyncio.current_task()
        try:
            timeout = request_timeout(scope["headers"])
            deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
            priority = request_priority(scope["headers"])
            body = await read_body(scope, receive, self.settings.body_limit)
            if protocol == "v1":
                return await self._v1(scope, body, send, deadline, priority)
            if protocol == "v2":
                return await self._v2(scope, body, send, deadline, priority)
            return await self._openai(scope, body, send, deadline, priority)
        except ClientGone:
            return 499
        except asyncio.CancelledError as exc:
            if exc.args == (TIMED_OUT,):  # the connection's read deadline (OneWriteProtocol._read_due)
                cast("asyncio.Task[Any]", asyncio.current_task()).uncancel()
                message = (
                    f"the request did not arrive in full within {self.settings.guard.read_timeout:g} s "
                    "(counted from the connection's opening, or from the first byte of a later request on it)"
                )
                await self._error(send, protocol, 408, message, code="timeout", extra=[(b"connection", b"close")])
                return 408
            if exc.args != (GONE,):  # not the connection's doing (OneWriteProtocol.connection_lost)
                raise
            return 499
        except BadRequest as exc:
            await self._error(send, protocol, exc.status, str(exc), param=exc.field)
            return exc.status
        except DeadlinePassed as exc:
            await self._error(send, protocol, 504, f"{exc} ({timeout:g} s)", code="timeout")
            return 504
        except Shed as exc:
            retry = [(b"retry-after", str(exc.retry_after).encode())]
            await self._error(send, protocol, 429, exc.reason, code="rate_limit_exceeded", extra=retry)
            return 429
        except Overloaded as exc:
            retry = [(b"retry-after", str(exc.retry_after).encode())]
            await self._error(send, protocol, 503, exc.reason, code="overloaded", extra=retry)
            return 503
        except Exception as exc:
            if not isinstance(exc, ModelFailed):
                log.exception("%s request failed", protocol)
            message = str(exc) if isinstance(exc, ModelFailed) else f"internal error ({type(exc).__name__})"
            await self._error(send, protocol, 500, message)
            return 500

    async def _error(
        self,
        send: Send,
        protocol: str,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """An error in the protocol's own shape: OpenAI's error object, or KServe's `{"error": message}`."""
        if protocol != "openai":
            await self._json(send, status, {"error": message}, extra)
            return
        # OpenAI's own types: "requests" for a request-rate limit (429), as its API answers one.
        kind = "requests" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
        await self._json(
            send, status, {"error": {"message": message, "type": kind, "param": param, "code": code}}, extra
        )

    def _unknown_model(self, name: str) -> BadRequest:
        return BadRequest("model", f"{name!r} is not served here; this server has {self.name!r}", 404)

    def _tap(self, scope: Scope, texts: list[str], vectors: np.ndarray, tokens: np.ndarray) -> None:
        if self.tap is not None:
            self.tap.offer(texts, vectors, tokens, request_id(scope["headers"]))

    async def _v1(self, scope: Scope, body: bytes, send: Send, deadline: float | None, priority: str) -> int:
        name = scope["path"][len("/v1/models/") : -len(":predict")]
        if name != self.name:
            raise self._unknown_model(name)
        texts = v1_texts(parse_json(body), self.settings.limits)
        result = await self.dispatcher.embed(texts, "instances", deadline, priority)
        body = orjson.dumps({"predictions": result.vectors}, option=NUMPY)
        await self._send(send, 200, body, JSON, self._degraded(result.tokens))
        self._tap(scope, texts, result.vectors, result.tokens)
        return 200

    async def _v2(self, scope: Scope, body: bytes, send: Send, deadline: float | None, priority: str) -> int:
        rest = scope["path"][len("/v2/models/") : -len("/infer")]
        name, _, version = rest.partition("/versions/")
        if name != self.name or "/" in name:
            raise self._unknown_model(name)
        headers = dict(scope["headers"])
        header_length = headers.get(b"inference-header-content-length")
        binary = b""
        if header_length is not None:
            if not header_length.isdigit() or int(header_length) > len(body):
                raise BadRequest(
                    "Inference-Header-Content-Length", f"must be the JSON header's length, at most {len(body)}"
                )
            binary = body[int(header_length) :]
            body = body[: int(header_length)]
        request = v2_request(parse_json(body), binary, self.settings.limits)
        result = await self.dispatcher.embed(request.texts, "inputs[0].data", deadline, priority)
        vectors = result.vectors
        degraded = self._degraded(result.tokens)
        self._tap(scope, request.texts, vectors, result.tokens)
        output: dict[str, Any] = {"name": "embedding", "datatype": "FP32", "shape": [len(vectors), vectors.shape[1]]}
        response: dict[str, Any] = {"model_name": self.name, "id": request.id, "outputs": [output]}
        if version:
            response["model_version"] = version
        if not request.binary_output:
            output["data"] = vectors.reshape(-1)
            await self._json(send, 200, response, degraded)
            return 200
        raw = vectors.astype("<f4", copy=False).tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
        head = orjson.dumps(response)
        await self._send(
            send,
            200,
            head + raw,
            b"application/octet-stream",
            [(b"inference-header-content-length", str(len(head)).encode()), *degraded],
        )
        return 200

    async def _openai(self, scope: Scope, body: bytes, send: Send, deadline: float | None, priority: str) -> int:
        req = openai_request(parse_json(body), self.settings.dimensions, self.settings.limits)
        if req.model != self.name:
            message = f"model {req.model!r} does not exist here; this server has {self.name!r}"
            await self._error(send, "openai", 404, message, param="model", code="model_not_found")
            return 404
        result = await self.dispatcher.embed(req.texts, "input", deadline, priority)
        vectors = result.vectors
        self._tap(scope, req.texts, vectors, result.tokens)
        if req.encoding_format == "base64":
            little = vectors.astype("<f4", copy=False)
            data: list[dict[str, Any]] = [
                {"object": "embedding", "index": i, "embedding": base64.b64encode(little[i].tobytes()).decode()}
                for i in range(len(little))
            ]
        else:
            data = [{"object": "embedding", "index": i, "embedding": vectors[i]} for i in range(len(vectors))]
        tokens = sum(result.tokens.tolist())
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        response = {"object": "list", "data": data, "model": self.name, "usage": usage}
        await self._send(send, 200, orjson.dumps(response, option=NUMPY), JSON, self._degraded(result.tokens))
        return 200

    async def _other(self, scope: Scope, send: Send, method: str, path: str) -> None:
        """Health, metadata, model lists and metrics (GET), or 404/405."""
        if method not in ("GET", "HEAD"):
            if path in ("/v1/embeddings",) or path.endswith((":predict", "/infer")):
                await self._json(send, 405, {"error": f"{method} is not allowed here; use POST"}, [(b"allow", b"POST")])
            else:
                await self._json(send, 404, {"error": f"no route {method} {path}"})
            return
        name = self.name
        if path == "/metrics":
            self.dispatcher.flush_metrics()
            await self._send(send, 200, metrics.render(), b"text/plain; version=0.0.4; charset=utf-8")
        elif path == "/v2/health/live":
            await self._json(send, 200, {"live": True})
        elif path == "/v2/health/ready":
            ready = self._ready()
            await self._json(send, 200 if ready else 503, {"ready": ready})
        elif path == "/v2":
            await self._json(
                send, 200, {"name": "modelyard", "version": __version__, "extensions": ["binary_tensor_data"]}
            )
        elif path == f"/v2/models/{name}":
            await self._send(send, 200, self._metadata)
        elif path == f"/v2/models/{name}/ready":
            ready = self._ready()
            await self._json(send, 200 if ready else 503, {"name": name, "ready": ready})
        elif path == "/v1/models":
            await self._json(send, 200, {"models": [name], "object": "list", "data": [self._openai_model]})
        elif path == f"/v1/models/{name}":
            ready = self._ready()
            await self._json(send, 200 if ready else 503, {"name": name, "ready": ready, **self._openai_model})
        elif path.startswith(("/v1/models/", "/v2/models/")):
            await self._json(send, 404, {"error": f"model not found: this server has {name!r}"})
        else:
            await self._json(send, 404, {"error": f"no route GET {path}"})


class _OneWrite:
    """The socket transport of one connection, as uvicorn's protocol sees it: what uvicorn writes for a
    response (its status line and headers, then the body, two writes) is held and sent in one write when
    the response is complete, so a response is one send(2) and one TCP segment instead of two. Anything
    written otherwise (a 100 Continue, a streamed body) goes out at the end of this turn of the event
    loop; close() sends what is held first."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, []
            if not self._transport.is_closing():
                self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    # What uvicorn calls on every request, passed straight through (the rest goes by __getattr__).
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _raw_response(status: int, reason: bytes, message: str, *extra: bytes) -> bytes:
    """A whole response written by the connection itself (no request to answer it through): JSON
    `{"error": message}`, and the connection closes after it."""
    body = orjson.dumps({"error": message})
    head = [b"HTTP/1.1 %d %s" % (status, reason), b"content-type: application/json", b"content-length: %d" % len(body)]
    return b"\r\n".join([*head, *extra, b"connection: close", b"", body])


def _protocol(guard: Guard = Guard(), closed: Callable[[str], None] = lambda reason: None) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol (pinned in requirements.txt), with two costs per request taken out:
    each response is sent with one write (_OneWrite), and the keep-alive timer is armed once per idle
    period instead of cancelled and armed again for every request: a connection idle for
    `timeout_keep_alive` seconds is still closed, checked when its timer fires. A connection lost
    before its answer cancels the request it was waiting for (WAITING).

    And the guard uvicorn lacks (it has no header or body timeout, and arms its keep-alive timer only
    after a response, so a connection that sends nothing, or a byte a second, was held for as long as
    its client liked):
    - a read deadline (`guard.read_timeout`): a request's headers and body must have arrived that long
      after the connection opened (its first request) or after the request's first byte (later ones).
      Past it, a request whose headers are in is answered 408 by the app, in its protocol's error shape;
      one whose headers are not, 408 by the connection; either way the connection closes. One timer per
      connection, armed once per reading period and checked when it fires, as the keep-alive one;
    - a connection cap (`guard.max_connections` per front): a connection beyond it closes the one that
      has been quiet longest among those with no request being answered (silent, still sending its
      request, or idle between requests), or, when every one is busy, is itself answered 503 with
      Retry-After and closed. Idle sockets cannot hold a front's file descriptors or lock clients out.
    `closed(reason)` is told of each connection the guard closes: read_timeout, evicted or refused."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class OneWriteProtocol(HttpToolsProtocol):  # type: ignore[misc]
        idle_since: float | None = None
        #: When the request being received began (the connection's opening, for its first).
        reading_since = 0.0
        #: The cycle that was current when that request began: while it still is, the request's headers
        #: are not in (uvicorn makes a cycle for each request once its headers are).
        begun_with: Any = None
        read_timer: asyncio.TimerHandle | None = None
        close_after_response = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            # _OneWrite passes everything but write, close and the write buffer's size through.
            super().connection_made(cast(asyncio.Transport, _OneWrite(transport, self.loop)))
            self.reading_since = self.loop.time()
            self.read_timer = self.loop.call_later(guard.read_timeout, self._read_due)
            if len(self.connections) > guard.max_connections:
                self._make_room()

        def connection_lost(self, exc: Exception | None) -> None:
            for timer in (self.timeout_keep_alive_task, self.read_timer):
                if timer is not None:
                    timer.cancel()
            self.timeout_keep_alive_task = self.read_timer = None
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete and (waiting := self._waiting(cycle)) is not None:
                waiting.cancel(GONE)  # App._inference answers 499 to no one; its texts are dropped
            super().connection_lost(exc)

        @staticmethod
        def _waiting(cycle: Any) -> asyncio.Task[Any] | None:
            """The inference request task a cycle's connection may cancel (App._inference: WAITING)."""
            return cast("asyncio.Task[Any] | None", cycle.scope.get(WAITING))

        # -- the connection cap

        def _quiet_since(self) -> float | None:
            """Since when this connection has had no request being answered (None: one is)."""
            cycle = self.cycle
            if self.pipeline or (cycle is not None and not cycle.response_complete) or self.transport.is_closing():
                return None
            return self.idle_since if self.idle_since is not None else self.reading_since

        def _make_room(self) -> None:
            others = [cast(OneWriteProtocol, c) for c in self.connections if c is not self]
            quiet = [(since, c) for c in others if (since := c._quiet_since()) is not None]
            if quiet:
                _, oldest = min(quiet, key=lambda pair: pair[0])
                oldest.transport.close()
                closed("evicted")
                return
            message = f"this server holds at most {guard.max_connections} connections per process, all busy"
            self.transport.write(_raw_response(503, b"Service Unavailable", message, b"retry-after: 1"))
            self.transport.close()
            closed("refused")

        # -- the read deadline: one timer, armed once per reading period, checked when it fires

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self.cycle is not None:  # a later request: its deadline counts from its first byte
                self.reading_since = self.loop.time()
                if self.read_timer is None:
                    self.read_timer = self.loop.call_later(guard.read_timeout, self._read_due)
            self.begun_with = self.cycle

        def _read_due(self) -> None:
            self.read_timer = None
            if self.transport.is_closing():
                return
            cycle = self.cycle
            headers_in = cycle is not self.begun_with
            if headers_in and not cycle.more_body:
                return  # the request is in; the next one arms the timer again
            left = self.reading_since + guard.read_timeout - self.loop.time()
            if left > 0:  # a later request, begun after this timer was armed
                self.read_timer = self.loop.call_later(left, self._read_due)
                return
            closed("read_timeout")
            if self.pipeline:  # the request is queued behind one being answered: that one goes out, then close
                self.pipeline.clear()
                self.close_after_response = True
                self.flow.pause_reading()
            elif cycle is None or cycle.response_complete:
                if not headers_in:  # nothing of it answered yet
                    message = f"the request did not arrive in full within {guard.read_timeout:g} s"
                    self.transport.write(_raw_response(408, b"Request Timeout", message))
                self.transport.close()  # else it was answered without waiting for its body
            elif headers_in and not cycle.response_started and (waiting := self._waiting(cycle)) is not None:
                waiting.cancel(TIMED_OUT)  # App._inference answers 408 in its protocol's shape, and closes
            else:  # a response is under way (to this request, or to the one before it): it goes out, then close
                cycle.keep_alive = False

        # -- keep-alive

        def _unset_keepalive_if_required(self) -> None:
            # uvicorn calls this when a request begins: the connection is busy, its timer stays.
            self.idle_since = None

        def on_response_complete(self) -> None:
            cast(_OneWrite, self.transport).flush()
            # uvicorn's on_response_complete, but for the keep-alive timer.
            self.server_state.total_requests += 1
            if self.close_after_response:
                self.transport.close()
            if self.transport.is_closing():
                return
            self.idle_since = None
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
                return
            self.idle_since = self.loop.time()
            if self.timeout_keep_alive_task is None:
                self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_due)

        def _keep_alive_due(self) -> None:
            self.timeout_keep_alive_task = None
            if self.idle_since is None:
                return  # busy: armed again when its response is complete
            left = self.idle_since + self.timeout_keep_alive - self.loop.time()
            if left > 0:
                self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_due)
            else:
                self.timeout_keep_alive_handler()

    return OneWriteProtocol


def front_main(
    index: int,
    settings: FrontSettings,
    dispatcher: Dispatcher,
    listener: socket.socket,
    grace_period: int,
    keep_alive: int = 65,
) -> None:
    """Entry point of front process `index` (forked by the supervisor)."""
    import uvicorn

    app = App(settings, dispatcher)

    class DrainingServer(uvicorn.Server):  # type: ignore[misc]
        """uvicorn's graceful shutdown on SIGTERM (from the supervisor): stop accepting, answer what is in
        flight; anything new on an open connection gets 503 + Retry-After. SIGINT (a terminal's Ctrl-C
        reaches the whole process group) is left to the supervisor, which sends SIGTERM."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            if sig == signal.SIGINT:
                return
            dispatcher.draining = True
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        log_config=None,
        timeout_graceful_shutdown=grace_period,
        timeout_keep_alive=keep_alive,
        # Says nothing of the software it runs (uvicorn's default sends `server: uvicorn`).
        server_header=False,
        access_log=False,
        loop="uvloop",
        http=_protocol(settings.guard, app.connection_closed),
        lifespan="on",
        # Client addresses are not used (no access log, no per-client logic): skip X-Forwarded-* parsing.
        proxy_headers=False,
    )
    server = DrainingServer(config)
    # The supervisor held SIGTERM and SIGINT back while this process started; from here they reach the
    # server (uvicorn sets the same handler while it runs), so a SIGTERM that came during start-up
    # drains it as soon as it listens. uvicorn raises the signal it caught again once it has shut down;
    # this handler takes it, and the process ends with status 0 after a clean drain.
    for stop in STOP_SIGNALS:
        signal.signal(stop, server.handle_exit)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # Everything loaded so far lives as long as the process: keep the cyclic collector off it.
    gc.collect()
    gc.freeze()
    server.run(sockets=[listener])
    log.info("front %d: drained", index)
