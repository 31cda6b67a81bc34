"""The sampling tap of a front: a bounded share of the texts it answered, as their embeddings and lengths,
sent to the environment's drift worker (drift_worker.py) in the background.

- Sampling: each answered text is taken with probability `share`. A request the gateway sent carries its
  `x-request-id`, which the gateway generates for every request and copies into its mirrors: each of its
  texts then has a key, 63 bits of a BLAKE2b digest of the id and the text's place in the request, and is
  taken when the key falls in the lowest `share` of the range. Every pod that answers a copy of the request
  (the stable version, its shadow) takes the same texts and sends them with the same keys, which the worker
  joins to compare the versions' answers (shadow.py). The keys are random across requests, so a text sent
  often is sampled as often as it is sent. A request without an id (one that did not come through the
  gateway) is sampled by geometric gaps between samples: a request that takes none costs one subtraction.
- The buffer: `capacity` rows allocated once (embeddings, characters, tokens). A sample that finds it full
  is dropped and counted (`modelyard_tap_samples{outcome="dropped"}`); the buffer never grows, and nothing
  on a request's path waits for the worker: a slow or dead worker costs the server nothing but the drops.
- The sender: every `interval` seconds, up to `batch` rows in one `POST /v1/samples` (stdlib asyncio,
  HTTP/1.1, a `timeout`); accepted rows leave the buffer. On a failure the rows stay and the next try waits
  twice as long, up to `MAX_BACKOFF`; rows the worker refuses for what they are (a 4xx other than 429, such
  as another version's dimensions) are discarded and counted (`outcome="refused"`), never sent again. When
  the worker answers that it lacks this version's reference, the tap sends the model directory's
  drift_reference.npz (verified with the rest of the directory when the server runs with --verify_manifest)
  with its sha256.
Nothing here imports prometheus_client at module level: the supervisor checks the settings before its
metrics directory exists. The texts themselves never leave the pod: the worker needs what the model made
of them, not what they say.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
import orjson

if TYPE_CHECKING:
    from .metrics import Tally

log = logging.getLogger("modelyard_server.tap")

#: The longest wait between tries while the worker is unreachable.
MAX_BACKOFF = 30.0


#: Keys are 63-bit: JSON numbers every parser reads exactly as integers.
KEY_RANGE = 1 << 63
#: The longest `x-request-id` a key is made of (Envoy's are UUIDs, 36 characters).
MAX_REQUEST_ID = 128


def sample_keys(request_id: bytes, count: int) -> list[int]:
    """The keys of a request's `count` texts: a 512-bit BLAKE2b digest of the request id and a block number gives
    eight 64-bit words, the keys of eight texts in turn (the top bit off)."""
    keys: list[int] = []
    for block in range((count + 7) // 8):
        digest = hashlib.blake2b(b"%d:%s" % (block, request_id)).digest()
        keys += [word >> 1 for word in struct.unpack(">8Q", digest)]
    return keys[:count]


def samples_body(
    model: str,
    version: str,
    vectors: np.ndarray,
    chars: np.ndarray,
    tokens: np.ndarray,
    keys: list[int | None],
    reference_sha: str | None = None,
) -> bytes:
    """A `POST /v1/samples` body (drift_worker.py): rows of embeddings with their lengths and join keys."""
    return orjson.dumps(
        {
            "model": model,
            "version": version,
            "reference_sha256": reference_sha,
            "dimensions": int(vectors.shape[1]),
            "embeddings": base64.b64encode(vectors.astype("<f4", copy=False).tobytes()).decode(),
            "chars": chars,
            "tokens": tokens,
            "keys": keys,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


class TapUrlError(ValueError):
    """A --tap_url this tap cannot send to; the message says what is allowed."""


def parse_url(url: str) -> tuple[str, int, str]:
    """(host, port, path) of an http:// URL with a path (the worker's /v1/samples)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.path.startswith("/"):
        raise TapUrlError(
            f"must be an http:// URL of the drift worker's samples endpoint, such as "
            f"http://modelyard-drift.models:8090/v1/samples (got {url!r})"
        )
    try:
        port = parts.port or 80
    except ValueError:
        raise TapUrlError(f"has a port that is not a number from 1 to 65535 (got {url!r})") from None
    return parts.hostname, port, parts.path


@dataclass(frozen=True)
class TapSettings:
    url: str
    #: Share of answered texts sampled, (0, 1].
    share: float
    #: The model version the samples are of (the catalog's), sent with them.
    version: str
    #: drift_reference.npz in the model directory, if there is one.
    reference: Path | None = None
    capacity: int = 1024
    batch: int = 256
    interval: float = 1.0
    timeout: float = 5.0


async def http_call(
    host: str, port: int, method: str, path: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh connection (`connection: close`); the status and at most 64 KiB of body."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            head = [f"{method} {path} HTTP/1.1", f"host: {host}:{port}", f"content-length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            head.append("connection: close")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            data = b""
            while len(data) < 65536 and (chunk := await reader.read(65536)):
                data += chunk
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    status_line, _, rest = data.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}")
    return int(parts[1]), rest.partition(b"\r\n\r\n")[2]


class Tap:
    def __init__(
        self,
        settings: TapSettings,
        model_name: str,
        dimensions: int,
        tally: Tally,
        changed: Callable[[], None] = lambda: None,
    ):
        # Imported here, in the front: the supervisor reads TapSettings before prometheus_client may be
        # imported (its multiprocess directory is set later, server.main).
        from . import metrics

        self.settings = settings
        self.model_name = model_name
        self.host, self.port, self.path = parse_url(settings.url)
        capacity = settings.capacity
        self.vectors = np.empty((capacity, dimensions), np.float32)
        self.chars = np.empty(capacity, np.int32)
        self.tokens = np.empty(capacity, np.int32)
        #: Each row's key (shadow.py's join), -1 for a row sampled without a request id.
        self.keys = np.empty(capacity, np.int64)
        self.count = 0
        self.tally = tally
        #: Told when the tap counted something outside a request (the sender), so that it reaches /metrics.
        self.changed = changed
        self._random = random.Random()
        self._gap = self._next_gap()
        self._counters = {
            o: metrics.TAP_SAMPLES.labels(model_name, o) for o in ("sampled", "dropped", "sent", "refused")
        }
        self._failures = {r: metrics.TAP_FAILURES.labels(model_name, r) for r in ("unreachable", "timeout", "refused")}
        self._reference_sha: str | None = None
        if settings.reference is not None:
            self._reference_sha = hashlib.sha256(settings.reference.read_bytes()).hexdigest()
        self.backoff = settings.interval

    def _next_gap(self) -> int:
        """Texts until the next sample: geometric with success probability `share` (1: every text)."""
        share = self.settings.share
        if share >= 1:
            return 1
        return 1 + int(math.log(1.0 - self._random.random()) / math.log(1.0 - share))

    def offer(self, texts: list[str], vectors: np.ndarray, tokens: np.ndarray, request_id: bytes | None = None) -> None:
        """After an answer: the texts the sampler picks go into the buffer, or are dropped when it is full."""
        if request_id:
            threshold = int(self.settings.share * KEY_RANGE)
            all_keys = sample_keys(request_id[:MAX_REQUEST_ID], len(texts))
            picked = [i for i, k in enumerate(all_keys) if k < threshold]
            keys = [all_keys[i] for i in picked]
        else:
            picked, keys = self._gaps(len(texts)), []
        if not picked:
            return
        room = self.settings.capacity - self.count
        taken = picked[:room]
        if taken:
            end = self.count + len(taken)
            self.vectors[self.count : end] = vectors[taken]
            self.tokens[self.count : end] = tokens[taken]
            self.chars[self.count : end] = [len(texts[i]) for i in taken]
            self.keys[self.count : end] = keys[: len(taken)] if keys else -1
            self.count = end
        self.tally.inc(self._counters["sampled"], len(picked))
        if len(picked) > len(taken):
            self.tally.inc(self._counters["dropped"], len(picked) - len(taken))

    def _gaps(self, n: int) -> list[int]:
        """The rows of `n` texts the geometric gaps land on."""
        self._gap -= n
        if self._gap > 0:
            return []
        picked = []
        at = n + self._gap - 1  # the row the gap lands on
        while at < n:
            picked.append(at)
            at += self._next_gap()
        self._gap = at - n + 1
        return picked

    def payload(self, k: int) -> bytes:
        keys = [None if key < 0 else key for key in self.keys[:k].tolist()]
        return samples_body(
            self.model_name,
            self.settings.version,
            self.vectors[:k],
            self.chars[:k],
            self.tokens[:k],
            keys,
            self._reference_sha,
        )

    async def send_once(self) -> bool:
        """Sends up to `batch` rows; True when the worker took them (or there was nothing to send)."""
        k = min(self.count, self.settings.batch)
        if not k:
            return True
        try:
            status, body = await self._call("POST", self.path, self.payload(k), {"content-type": "application/json"})
        except TimeoutError:
            self.tally.inc(self._failures["timeout"])
            return False
        except (OSError, ConnectionError):
            self.tally.inc(self._failures["unreachable"])
            return False
        finally:
            self.changed()
        if status != 200:
            self.tally.inc(self._failures["refused"])
            log.warning("drift worker refused %d samples: %d %s", k, status, body[:200].decode("utf-8", "replace"))
            if not (400 <= status < 500 and status != 429):
                return False
            # Refused for what they are: sending them again would be refused again.
            self._discard(k)
            self.tally.inc(self._counters["refused"], k)
            return True
        self._discard(k)
        self.tally.inc(self._counters["sent"], k)
        with contextlib.suppress(ValueError, AttributeError):
            if orjson.loads(body).get("reference") == "missing" and self.settings.reference is not None:
                await self._send_reference()
        return True

    def _discard(self, k: int) -> None:
        """The first `k` rows leave the buffer."""
        rest = self.count - k
        if rest:
            self.vectors[:rest] = self.vectors[k : self.count]
            self.chars[:rest] = self.chars[k : self.count]
            self.tokens[:rest] = self.tokens[k : self.count]
            self.keys[:rest] = self.keys[k : self.count]
        self.count = rest

    async def _send_reference(self) -> None:
        assert self.settings.reference is not None and self._reference_sha is not None
        path = f"/v1/references/{self.model_name}/{self.settings.version}"
        data = self.settings.reference.read_bytes()
        try:
            status, body = await self._call(
                "PUT", path, data, {"content-type": "application/octet-stream", "x-sha256": self._reference_sha}
            )
        except (TimeoutError, OSError, ConnectionError) as exc:
            log.warning("drift reference not sent: %s", exc or type(exc).__name__)
            return
        if status not in (200, 204):
            log.warning("drift worker refused the reference: %d %s", status, body[:200].decode("utf-8", "replace"))

    async def _call(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        return await http_call(self.host, self.port, method, path, body, headers, self.settings.timeout)

    async def run(self) -> None:
        """The sender loop (a task of the front's event loop, cancelled when the front stops)."""
        while True:
            await asyncio.sleep(self.backoff)
            ok = await self.send_once()
            self.backoff = self.settings.interval if ok else min(MAX_BACKOFF, self.backoff * 2)


def reference_in(model_dir: Path) -> Path | None:
    from .reference import REFERENCE

    path = model_dir / REFERENCE
    return path if path.is_file() else None
