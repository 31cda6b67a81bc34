"""The drift worker: one small CPU Deployment per environment that takes the model servers' tap samples
(tap.py) and exports, per model and version, whether the latest window of them has drifted from the
version's reference (drift.py).

    python -m modelyard_server.drift_worker [--port 8090] [--window 200] [--interval 60]

HTTP (one process, uvicorn):
- `POST /v1/samples`: a batch of samples of one model version (JSON: model, version, reference_sha256,
  dimensions, embeddings as base64 little-endian float32, chars, tokens; keys, each sample's join key or
  null, tap.py). The answer says whether the
  worker holds that reference (`"reference": "known" | "missing" | "none"`); the tap sends it when missing.
- `PUT /v1/references/<model>/<version>`: the version's drift_reference.npz, with its sha256 in `x-sha256`.
- `GET /metrics` (the drift series below), `GET /healthz`.
Every refusal is a 4xx whose JSON `error` names the field and what is allowed.

Each model version keeps a sliding window of its last `--window` samples. Every `--interval` seconds a
window that is full and has new samples is tested against the reference: MMD with a permutation null on
the embeddings (signal `embedding`, the model's output), Kolmogorov-Smirnov and PSI on characters and
tokens per text (signals `chars`, `tokens`, its input). Series (labels model, model_version; signal where said):
`modelyard_drift_p_value{signal}`, `modelyard_drift_statistic{signal}` (MMD^2, KS D),
`modelyard_drift_psi{signal}`, `modelyard_drift_centroid_distance`, `modelyard_drift_window_samples` (the
alerts' minimum-sample guard), `modelyard_drift_reference_samples` (0: none yet), `modelyard_drift_samples_total`,
`modelyard_drift_evaluations_total`. Memory is bounded: at most `--max_versions` versions, each a window and
a reference of at most reference.MAX_TEXTS rows; a version beyond the bound is refused (429). A version no tap
has sent samples of for `--idle_seconds` (an hour) is forgotten with its series: a retired version keeps no alert.

Samples with keys are joined across a model's versions (shadow.py) while the model has more than one (its answers
held for at most 4 x window keys, each answered at most 4 times): every interval, each version answering the
same texts twice gets its noise floor (`modelyard_shadow_noise_pairs`, `_noise_threshold`, `_noise_knn_overlap`),
and each two versions answering the same texts a comparison, under both orders of the two (labels model,
model_version, other_version): `modelyard_shadow_pairs`, `_exceeding`, `_cosine{quantile}`, `_knn_overlap`,
`_p_value`, and `modelyard_shadow_verdict{verdict}` (1 for same, differs or hold; 0 for the others).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import logging
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest

from . import drift, shadow
from .reference import ReferenceError, parse

log = logging.getLogger("modelyard_server.drift_worker")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SAMPLES_LIMIT = 8 * 1024 * 1024
REFERENCE_LIMIT = 64 * 1024 * 1024
MAX_DIMENSIONS = 8192
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,62}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
SIGNALS = ("embedding", "chars", "tokens")
VERDICTS = ("same", "differs", "hold")


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Series:
    """The worker's Prometheus series, in a registry of its own."""

    def __init__(self) -> None:
        disable_created_metrics()  # the `_created` series say nothing the counters need
        self.registry = CollectorRegistry()
        labels = ["model", "model_version"]
        r = self.registry
        self.samples = Counter("modelyard_drift_samples", "Tap samples received", labels, registry=r)
        self.window = Gauge("modelyard_drift_window_samples", "Samples in the window tested", labels, registry=r)
        self.reference = Gauge(
            "modelyard_drift_reference_samples", "Rows of the version's reference (0: none)", labels, registry=r
        )
        self.evaluations = Counter("modelyard_drift_evaluations", "Windows tested", labels, registry=r)
        self.p_value = Gauge(
            "modelyard_drift_p_value", "p-value of the window against the reference", [*labels, "signal"], registry=r
        )
        self.statistic = Gauge(
            "modelyard_drift_statistic", "Test statistic (MMD^2, KS D)", [*labels, "signal"], registry=r
        )
        self.psi = Gauge("modelyard_drift_psi", "Population stability index", [*labels, "signal"], registry=r)
        self.centroid = Gauge(
            "modelyard_drift_centroid_distance", "1 - cosine of the mean embeddings", labels, registry=r
        )
        # The shadow comparison (shadow.py): a version against itself (noise), and against another version.
        pair = [*labels, "other_version"]
        self.noise_pairs = Gauge(
            "modelyard_shadow_noise_pairs", "Pairs of the version's answers to the same text", labels, registry=r
        )
        self.noise_threshold = Gauge(
            "modelyard_shadow_noise_threshold", "The version's own 99th percentile 1 - cosine", labels, registry=r
        )
        self.noise_knn = Gauge(
            "modelyard_shadow_noise_knn_overlap",
            "Nearest neighbours kept by the version against itself",
            labels,
            registry=r,
        )
        self.pairs = Gauge("modelyard_shadow_pairs", "Texts both versions answered, in the window", pair, registry=r)
        self.exceeding = Gauge(
            "modelyard_shadow_exceeding", "Of the pairs, those beyond the noise threshold", pair, registry=r
        )
        self.cosine = Gauge(
            "modelyard_shadow_cosine", "Cosine of the versions' answers, by quantile", [*pair, "quantile"], registry=r
        )
        self.knn = Gauge("modelyard_shadow_knn_overlap", "Nearest neighbours the versions share", pair, registry=r)
        self.shadow_p_value = Gauge(
            "modelyard_shadow_p_value", "p-value of the exceedances at the noise rate", pair, registry=r
        )
        self.verdict = Gauge(
            "modelyard_shadow_verdict",
            "1 for the comparison's verdict (same, differs, hold)",
            [*pair, "verdict"],
            registry=r,
        )


@dataclass
class Stream:
    """One model version's window (a ring of the last `size` samples) and reference."""

    size: int
    dimensions: int
    vectors: np.ndarray = field(init=False)
    chars: np.ndarray = field(init=False)
    tokens: np.ndarray = field(init=False)
    filled: int = 0
    next_row: int = 0
    new: int = 0
    #: time.monotonic() of the latest samples.
    last_seen: float = 0.0
    #: The reference's lengths, a subsample of its embeddings (drift.MAX_REFERENCE rows) and their mean over
    #: every row: what the tests read; the rest of its embeddings is not kept.
    reference_sha: str | None = None
    reference_rows: np.ndarray | None = None
    reference_mean: np.ndarray | None = None
    reference_chars: np.ndarray | None = None
    reference_tokens: np.ndarray | None = None
    bandwidth: float | None = None

    def __post_init__(self) -> None:
        self.vectors = np.zeros((self.size, self.dimensions), np.float32)
        self.chars = np.zeros(self.size, np.int32)
        self.tokens = np.zeros(self.size, np.int32)

    def add(self, vectors: np.ndarray, chars: np.ndarray, tokens: np.ndarray) -> None:
        for start in range(0, len(vectors), self.size):
            v, c, t = (
                vectors[start : start + self.size],
                chars[start : start + self.size],
                tokens[start : start + self.size],
            )
            k = len(v)
            rows = (self.next_row + np.arange(k)) % self.size
            self.vectors[rows], self.chars[rows], self.tokens[rows] = v, c, t
            self.next_row = (self.next_row + k) % self.size
            self.filled = min(self.size, self.filled + k)
        self.new += len(vectors)


@dataclass(frozen=True)
class WorkerSettings:
    window: int = 200
    interval: float = 60.0
    permutations: int = drift.PERMUTATIONS
    max_versions: int = 64
    seed: int | None = None
    #: A version no tap has sent samples of for this long is forgotten, its series removed: a retired version
    #: (promoted away, rolled back) neither holds memory nor keeps an alert firing.
    idle_seconds: float = 3600.0


def _field(document: dict[str, Any], key: str, kind: type, what: str) -> Any:
    value = document.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Refused(400, f"{key}: must be {what} (got {orjson.dumps(value).decode()[:80]})")
    return value


def _counts(document: dict[str, Any], key: str, n: int) -> np.ndarray:
    values = document.get(key)
    if not isinstance(values, list) or len(values) != n or not all(type(v) is int and v >= 0 for v in values):
        raise Refused(400, f"{key}: must be a list of {n} whole numbers ≥ 0, one per embedding")
    return np.asarray(values, np.int32)


def _keys(document: dict[str, Any], n: int) -> list[int | None] | None:
    """The samples' join keys (tap.py), None when the tap sent none."""
    keys = document.get("keys")
    if keys is None:
        return None
    if (
        not isinstance(keys, list)
        or len(keys) != n
        or not all(k is None or (type(k) is int and 0 <= k < 1 << 63) for k in keys)
    ):
        raise Refused(400, f"keys: must be a list of {n} entries, each null or a whole number from 0 to 2^63 - 1")
    return keys


class Worker:
    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.series = Series()
        self.streams: dict[tuple[str, str], Stream] = {}
        self.lock = threading.Lock()
        self.rng = np.random.default_rng(settings.seed)
        self.pairing = shadow.Pairing(settings.window, settings.max_versions)

    # -- intake

    def take_samples(self, body: bytes) -> dict[str, Any]:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Refused(400, f"(body): not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise Refused(
                400, "(body): must be a JSON object with model, version, dimensions, embeddings, chars, tokens"
            )
        model = _field(document, "model", str, "a model name (a lowercase DNS label)")
        version = _field(document, "version", str, "a version such as 1 or 2026-11-01")
        if not _NAME.match(model):
            raise Refused(400, f"model: must be a lowercase DNS label of at most 40 characters (got {model!r})")
        if not _VERSION.match(version):
            raise Refused(400, f"version: must be letters, digits, '.', '_' or '-' (got {version!r})")
        dimensions = _field(document, "dimensions", int, f"a whole number from 1 to {MAX_DIMENSIONS}")
        if not 1 <= dimensions <= MAX_DIMENSIONS:
            raise Refused(400, f"dimensions: must be from 1 to {MAX_DIMENSIONS} (got {dimensions})")
        sha = document.get("reference_sha256")
        if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha)):
            raise Refused(400, "reference_sha256: must be 64 lowercase hex digits, or null when the model has none")
        encoded = _field(document, "embeddings", str, "base64 of little-endian float32 rows")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(400, "embeddings: not valid base64") from None
        if not raw or len(raw) % (4 * dimensions):
            raise Refused(400, f"embeddings: {len(raw)} bytes is not a whole number of {dimensions}-float rows")
        vectors = np.frombuffer(raw, "<f4").reshape(-1, dimensions)
        if not np.isfinite(vectors).all():
            raise Refused(400, "embeddings: hold NaN or infinite values")
        n = len(vectors)
        chars, tokens = _counts(document, "chars", n), _counts(document, "tokens", n)
        keys = _keys(document, n)
        key = (model, version)
        with self.lock:
            stream = self.streams.get(key)
            if stream is None:
                if len(self.streams) >= self.settings.max_versions:
                    raise Refused(429, f"this worker holds at most {self.settings.max_versions} model versions")
                stream = self.streams[key] = Stream(self.settings.window, dimensions)
                self.series.reference.labels(model, version).set(0)
            if stream.dimensions != dimensions:
                raise Refused(
                    409,
                    f"dimensions: {model} version {version} has {stream.dimensions}-dimensional samples "
                    f"(got {dimensions})",
                )
            stream.add(vectors, chars, tokens)
            # Joined only while the model has another version (a shadow, a canary): a model alone keeps no answers.
            if keys is not None and sum(m == model for m, _ in self.streams) > 1:
                self.pairing.add(model, version, keys, vectors)
            stream.last_seen = time.monotonic()
            self.series.samples.labels(model, version).inc(n)
            self.series.window.labels(model, version).set(stream.filled)
            known = "none" if sha is None else ("known" if stream.reference_sha == sha else "missing")
        return {"accepted": n, "reference": known}

    def take_reference(self, model: str, version: str, sha: str | None, body: bytes) -> dict[str, Any]:
        if not _NAME.match(model) or not _VERSION.match(version):
            raise Refused(404, "no such reference path; use /v1/references/<model>/<version>")
        if sha is None or not _SHA256.match(sha):
            raise Refused(400, "x-sha256: must be the file's sha256, 64 lowercase hex digits")
        if hashlib.sha256(body).hexdigest() != sha:
            raise Refused(400, "x-sha256: does not match the body's sha256 (the file was cut or altered on the way)")
        try:
            reference = parse(body, f"reference of {model} version {version}")
        except ReferenceError as exc:
            raise Refused(400, str(exc)) from None
        with self.lock:
            stream = self.streams.get((model, version))
            if stream is None:
                raise Refused(
                    409, f"no samples of {model} version {version} yet; the tap sends the reference after them"
                )
            if reference.embeddings.shape[1] != stream.dimensions:
                raise Refused(
                    409,
                    f"the reference has {reference.embeddings.shape[1]} dimensions; {model} version {version}'s "
                    f"samples have {stream.dimensions}",
                )
            stream.reference_sha = sha
            stream.reference_rows = drift.reference_rows(reference.embeddings, self.rng).copy()
            stream.reference_mean = reference.embeddings.mean(0, keepdims=True)
            stream.reference_chars, stream.reference_tokens = reference.chars, reference.tokens
            stream.bandwidth = drift.median_bandwidth(reference.embeddings, self.rng)
            stream.new = max(stream.new, 1)
            self.series.reference.labels(model, version).set(len(reference.embeddings))
        return {"model": model, "version": version, "reference_samples": len(reference.embeddings)}

    # -- tests

    def forget_idle(self, now: float | None = None) -> list[tuple[str, str]]:
        """Drops the versions idle for `idle_seconds` and every series of theirs; returns them."""
        now = time.monotonic() if now is None else now
        with self.lock:
            idle = [k for k, s in self.streams.items() if now - s.last_seen > self.settings.idle_seconds]
            for key in idle:
                del self.streams[key]
                series = self.series
                for metric in (series.samples, series.window, series.reference, series.evaluations, series.centroid):
                    with contextlib.suppress(KeyError):
                        metric.remove(*key)
                for metric in (series.p_value, series.statistic, series.psi):
                    for signal in SIGNALS:
                        with contextlib.suppress(KeyError):
                            metric.remove(*key, signal)
                model = key[0]
                for metric in (series.noise_pairs, series.noise_threshold, series.noise_knn):
                    with contextlib.suppress(KeyError):
                        metric.remove(*key)
                for a, b in self.pairing.forget(*key):
                    for first, second in ((a, b), (b, a)):
                        self._remove_comparison(model, first, second)
        return idle

    def _remove_comparison(self, model: str, version: str, other: str) -> None:
        series = self.series
        for metric in (series.pairs, series.exceeding, series.knn, series.shadow_p_value):
            with contextlib.suppress(KeyError):
                metric.remove(model, version, other)
        for quantile in ("0.01", "0.05", "0.5"):
            with contextlib.suppress(KeyError):
                series.cosine.remove(model, version, other, quantile)
        for verdict in VERDICTS:
            with contextlib.suppress(KeyError):
                series.verdict.remove(model, version, other, verdict)

    def compare_versions(self) -> dict[tuple[str, str, str], shadow.Comparison]:
        """The shadow comparisons (shadow.py) of every pair of versions with answers to the same texts, into the
        series (each under both orders of the two versions); returns them."""
        with self.lock:
            floors, comparisons = self.pairing.evaluate()
        series = self.series
        for (model, version), noise in floors.items():
            series.noise_pairs.labels(model, version).set(noise.pairs)
            series.noise_threshold.labels(model, version).set(noise.threshold)
            if noise.knn_overlap is not None:
                series.noise_knn.labels(model, version).set(noise.knn_overlap)
        for (model, a, b), c in comparisons.items():
            for version, other in ((a, b), (b, a)):
                labels = (model, version, other)
                series.pairs.labels(*labels).set(c.pairs)
                for quantile, cosine in c.cosine.items():
                    series.cosine.labels(*labels, quantile).set(cosine)
                if c.exceeding is not None:
                    series.exceeding.labels(*labels).set(c.exceeding)
                if c.knn_overlap is not None:
                    series.knn.labels(*labels).set(c.knn_overlap)
                if c.p_value is not None:
                    series.shadow_p_value.labels(*labels).set(c.p_value)
                for verdict in VERDICTS:
                    series.verdict.labels(*labels, verdict).set(1 if verdict == c.verdict else 0)
        return comparisons

    def evaluate(self) -> int:
        """Tests every full window with new samples and a reference; returns how many it tested."""
        self.forget_idle()
        with self.lock:
            due = []
            for key, s in self.streams.items():
                if s.reference_rows is not None and s.filled >= s.size and s.new:
                    due.append((key, s.vectors.copy(), s.chars.copy(), s.tokens.copy(), s))
                    s.new = 0
        for (model, version), vectors, chars, tokens, s in due:
            assert s.reference_rows is not None and s.reference_mean is not None
            assert s.reference_chars is not None and s.reference_tokens is not None
            mmd = drift.mmd_test(
                vectors, s.reference_rows, rng=self.rng, permutations=self.settings.permutations, bandwidth=s.bandwidth
            )
            tests = {
                "chars": drift.ks_test(chars, s.reference_chars),
                "tokens": drift.ks_test(tokens, s.reference_tokens),
            }
            series = self.series
            series.p_value.labels(model, version, "embedding").set(mmd.p_value)
            series.statistic.labels(model, version, "embedding").set(mmd.mmd2)
            series.centroid.labels(model, version).set(drift.centroid_distance(vectors, s.reference_mean))
            for name, result in tests.items():
                series.p_value.labels(model, version, name).set(result.p_value)
                series.statistic.labels(model, version, name).set(result.statistic)
                series.psi.labels(model, version, name).set(result.psi)
            series.evaluations.labels(model, version).inc()
        self.compare_versions()
        return len(due)

    def run_evaluations(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.interval):
            try:
                self.evaluate()
            except Exception:
                log.exception("drift evaluation failed")


class App:
    """The worker's ASGI app."""

    def __init__(self, worker: Worker):
        self.worker = worker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        try:
            if method == "POST" and path == "/v1/samples":
                body = await self._body(receive, SAMPLES_LIMIT)
                await self._json(send, 200, self.worker.take_samples(body))
            elif method == "PUT" and path.startswith("/v1/references/"):
                parts = path[len("/v1/references/") :].split("/")
                if len(parts) != 2:
                    raise Refused(404, "no such reference path; use /v1/references/<model>/<version>")
                sha = dict(scope["headers"]).get(b"x-sha256")
                body = await self._body(receive, REFERENCE_LIMIT)
                result = self.worker.take_reference(parts[0], parts[1], sha.decode("latin-1") if sha else None, body)
                await self._json(send, 200, result)
            elif method == "GET" and path == "/metrics":
                text = generate_latest(self.worker.series.registry)
                await self._send(send, 200, text, b"text/plain; version=0.0.4; charset=utf-8")
            elif method == "GET" and path == "/healthz":
                await self._json(send, 200, {"ok": True})
            elif path in ("/v1/samples", "/metrics", "/healthz") or path.startswith("/v1/references/"):
                raise Refused(405, f"{method} is not allowed on {path}")
            else:
                raise Refused(404, f"no route {method} {path}")
        except Refused as exc:
            await self._json(send, exc.status, {"error": str(exc)})

    @staticmethod
    async def _body(receive: Receive, limit: int) -> bytes:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Refused(400, "(body): the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"(body): more than {limit} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    @staticmethod
    async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _json(self, send: Send, status: int, value: Any) -> None:
        await self._send(send, status, orjson.dumps(value), b"application/json")


def _positive(kind: type) -> Callable[[str], Any]:
    def parse_value(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be more than 0 (got {text})")
        return value

    return parse_value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modelyard_server.drift_worker", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--window", type=_positive(int), default=200, help="samples per window tested (default 200)")
    parser.add_argument("--interval", type=_positive(float), default=60.0, help="seconds between tests (default 60)")
    parser.add_argument(
        "--permutations", type=_positive(int), default=drift.PERMUTATIONS, help="relabellings per MMD test"
    )
    parser.add_argument("--max_versions", type=_positive(int), default=64, help="model versions held at most")
    parser.add_argument(
        "--idle_seconds",
        type=_positive(float),
        default=3600.0,
        help="forget a version (and its series) no tap has sent samples of for this long (default 3600)",
    )
    args = parser.parse_args(argv)
    if args.window < 20:
        parser.error(f"argument --window: must be at least 20 samples for a two-sample test (got {args.window})")
    return args


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    worker = Worker(
        WorkerSettings(args.window, args.interval, args.permutations, args.max_versions, idle_seconds=args.idle_seconds)
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_evaluations, args=(stop,), name="drift-tests", daemon=True)
    thread.start()
    log.info(
        "drift worker on %s:%d: windows of %d samples tested every %g s",
        args.host,
        args.port,
        args.window,
        args.interval,
    )
    config = uvicorn.Config(
        App(worker),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
