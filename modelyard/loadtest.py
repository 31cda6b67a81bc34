"""`modelyard loadtest`: an open-loop load test of one catalogued model, with a verdict against its objectives.

Open loop: requests leave on a schedule fixed before the run (constant or Poisson arrivals at the rate), never
waiting for earlier answers, and every latency is counted from a request's *scheduled* send time, so a server
(or a client) that falls behind is charged for the wait instead of hiding it (coordinated omission).

An LLM's request is an OpenAI chat completion streamed as server-sent events (what vLLM's server and any
OpenAI-compatible endpoint answer): the time to the first content token, the gaps between tokens, the
tokens and the finish reason are read from the stream as it arrives. A request fails on a status other than
200, an `error` event in the stream, a stream that ends without a finish reason, a connection error or the
entry's request timeout.

The verdict holds the run to the catalog entry's objectives as the platform's SLIs measure them: the share of
first tokens within `ttft_ms` and of token gaps within `itl_ms` against `latency_percentile`, and the share of
failed requests against `availability` (with the error budget the run burned). Goodput is the requests a
second that succeeded with their first token within the threshold and their own gaps within it at the
objective's share.

An embedding model's request is an OpenAI embeddings call (what the platform's model server answers on
`/v1/embeddings`) of the entry's texts per request, every text of the run a different one, so the server's
embedding cache answers none of them and what is measured is the model. It fails on a status other than
200, an answer without one vector per text, a connection error or the timeout; the verdict holds the share
of answered requests within `p99_latency_ms` (counted from the schedule) to 99 % and the failures to
`availability`: the platform's SLIs over the same requests (the model server's latency histogram observes
the requests it answered, its request counter every answer), so a run's verdict is what the burn-rate rules
say of it (tests/test_slo_agreement.py, in a real Prometheus).
Standard library only: the client must not be what is measured.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

#: What the client sends besides the prompt: streamed, with the usage chunk at the end.
CHAT_PATH = "/v1/chat/completions"
#: Where an embedding model answers.
EMBEDDINGS_PATH = "/v1/embeddings"
#: The most bytes of a non-200 answer kept for its error text.
ERROR_BODY_BYTES = 2048
#: Default load: this share of what the plan assumes the entry's minimum replicas serve.
DEFAULT_LOAD = 0.8


class LoadTestError(Exception):
    """The run cannot start (a bad URL or argument); the message says which and what is allowed."""


@dataclass(frozen=True)
class Objectives:
    availability: float
    ttft_ms: int
    itl_ms: int
    #: The share of first tokens (and of gaps) that must be within their thresholds, e.g. 0.95.
    share: float


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str, endpoint: str = CHAT_PATH) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LoadTestError(f"--url {url!r}: must be http:// or https:// and a host, such as http://127.0.0.1:8080")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise LoadTestError(f"--url {url!r}: the port must be a number from 1 to 65535") from None
        base = parts.path.rstrip("/")
        path = base if base.endswith(endpoint) else base + endpoint
        return cls(parts.scheme, parts.hostname, port, path)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


@dataclass
class Sample:
    """One request of the run; times in seconds from the run's start."""

    scheduled: float
    sent: float = math.nan
    status: int = 0
    #: From the scheduled send time to the first content token.
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    finish_reason: str | None = None
    #: From the scheduled send time to the end of the stream.
    latency: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def good(self, objectives: Objectives) -> bool:
        if not self.ok or self.ttft is None or self.ttft * 1000 > objectives.ttft_ms:
            return False
        within = sum(1 for g in self.gaps if g * 1000 <= objectives.itl_ms)
        return not self.gaps or within / len(self.gaps) >= objectives.share


def schedule(rate: float, duration: float, arrivals: str = "constant", seed: int = 0) -> list[float]:
    """Send times (seconds from the start) of an open-loop run: `rate` a second over `duration`, evenly
    spaced, or as a Poisson process (exponential gaps) from `seed`."""
    if arrivals == "constant":
        return [i / rate for i in range(max(1, math.floor(rate * duration)))]
    rng = random.Random(seed)
    times, t = [], rng.expovariate(rate)
    while t < duration:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def prompt(words: int) -> str:
    """A prompt of about `words` words (about as many tokens), the same for every request."""
    text = "Summarise the operating notes that follow in one paragraph for an on-call engineer."
    filler = ("the", "platform", "serves", "models", "on", "GPU", "nodes", "and", "reports", "their", "latency")
    return " ".join([text, *(filler[i % len(filler)] for i in range(max(0, words - 12)))])


def request_body(model: str, words: int, max_tokens: int) -> bytes:
    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt(words)}],
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> Any:
    """The response body as it arrives: chunked transfer decoded, else up to Content-Length or EOF."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            if not size_line:
                raise ConnectionError("the stream ended inside a chunk")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    else:
        left = int(headers["content-length"]) if "content-length" in headers else None
        while left is None or left > 0:
            data = await reader.read(65536 if left is None else min(65536, left))
            if not data:
                return
            if left is not None:
                left -= len(data)
            yield data


def _events(buffer: bytearray) -> Iterable[bytes]:
    """Complete server-sent events' `data` fields, taken off the front of `buffer`."""
    while True:
        raw = bytes(buffer).replace(b"\r\n", b"\n")
        end = raw.find(b"\n\n")
        if end < 0:
            buffer[:] = raw
            return
        event, rest = raw[:end], raw[end + 2 :]
        buffer[:] = rest
        data = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if data:
            yield b"\n".join(data)


async def _send(
    target: Target, body: bytes, sample: Sample, start: float, headers: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, str]]:
    """A connection of its own, the POST of `body` on it (the time it left in `sample.sent`), its answer's status
    (in `sample.status`) and headers read; the caller reads the body and closes the writer."""
    context = ssl.create_default_context() if target.scheme == "https" else None
    reader, writer = await asyncio.open_connection(target.host, target.port, ssl=context)
    sample.sent = time.perf_counter() - start
    try:
        head = [
            f"POST {target.path} HTTP/1.1",
            f"Host: {target.host}:{target.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}")
        sample.status = int(parts[1])
        response_headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            response_headers[name.strip().lower()] = value.strip()
    except BaseException:
        writer.close()
        raise
    return reader, writer, response_headers


async def _stream(target: Target, body: bytes, sample: Sample, start: float, headers: dict[str, str]) -> None:
    reader, writer, response_headers = await _send(
        target, body, sample, start, {"Accept": "text/event-stream", **headers}
    )
    try:
        if sample.status != 200:
            text = bytearray()
            async for data in _read_body(reader, response_headers):
                text += data[: ERROR_BODY_BYTES - len(text)]
            sample.error = f"HTTP {sample.status}: {bytes(text).decode('utf-8', 'replace').strip()[:200]}"
            return
        buffer, last, done = bytearray(), None, False
        async for data in _read_body(reader, response_headers):
            now = time.perf_counter() - start
            buffer += data
            for event in _events(buffer):
                if event == b"[DONE]":
                    done = True
                    continue
                chunk = json.loads(event)
                if "error" in chunk:
                    error = chunk["error"]
                    sample.error = f"error event: {error.get('message', error) if isinstance(error, dict) else error}"
                    continue
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content") or delta.get("reasoning_content"):
                        if last is None:
                            sample.ttft = now - sample.scheduled
                        else:
                            sample.gaps.append(now - last)
                        last = now
                        sample.tokens += 1
                    if choice.get("finish_reason"):
                        sample.finish_reason = choice["finish_reason"]
                usage = chunk.get("usage")
                if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                    sample.tokens = usage["completion_tokens"]
        sample.latency = time.perf_counter() - start - sample.scheduled
        if sample.error is None and (not done or sample.finish_reason is None):
            sample.error = "the stream ended without a finish reason"
    finally:
        writer.close()


def embeddings_bodies(model: str, requests: int, texts: int, words: int = 12, seed: int = 0) -> list[bytes]:
    """`requests` OpenAI embeddings bodies of `texts` texts each, about `words` words a text, no text repeated in
    the run (a cache would answer a repeated one)."""
    rng = random.Random(seed)
    vocabulary = (
        "invoice", "parcel", "refund", "account", "delivery", "password", "order", "payment", "address", "courier",
        "subscription", "warranty", "receipt", "tracking", "balance", "transfer", "upgrade", "cancel", "support",
    )  # fmt: skip
    bodies = []
    for r in range(requests):
        batch = [
            f"request {r} text {t}: " + " ".join(rng.choice(vocabulary) for _ in range(max(1, words - 4)))
            for t in range(texts)
        ]
        bodies.append(json.dumps({"model": model, "input": batch}).encode())
    return bodies


async def _post(target: Target, body: bytes, sample: Sample, start: float, headers: dict[str, str]) -> None:
    """One embeddings request: the whole answer read, one vector per text of `body` checked."""
    reader, writer, response_headers = await _send(target, body, sample, start, headers)
    try:
        data = bytearray()
        async for chunk in _read_body(reader, response_headers):
            data += chunk
        sample.latency = time.perf_counter() - start - sample.scheduled
        if sample.status != 200:
            text = bytes(data[:ERROR_BODY_BYTES]).decode("utf-8", "replace").strip()
            sample.error = f"HTTP {sample.status}: {text[:200]}"
            return
        asked = len(json.loads(body)["input"])
        got = json.loads(data).get("data")
        if not isinstance(got, list) or len(got) != asked:
            sample.error = f"bad answer: {len(got) if isinstance(got, list) else 'no'} vectors for {asked} texts"
            return
        sample.tokens = asked  # texts, for an embedding model
    finally:
        writer.close()


async def _one(
    target: Target, body: bytes, sample: Sample, start: float, timeout: float, headers: dict[str, str]
) -> None:
    call = _post if target.path.endswith(EMBEDDINGS_PATH) else _stream
    try:
        await asyncio.wait_for(call(target, body, sample, start, headers), timeout)
    except TimeoutError:
        sample.error = f"no complete answer within the request timeout ({timeout:g} s)"
    except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
        sample.error = f"{type(exc).__name__}: {exc}"[:200]


async def run_async(
    target: Target,
    body: bytes | Sequence[bytes],
    times: Sequence[float],
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
    start: float | None = None,
) -> list[Sample]:
    """Send `body` (or the next of `bodies`, in turn) at each of `times` (seconds from `start`, by default 50 ms
    from now, on the perf_counter clock), never waiting for an answer before the next."""
    bodies = [body] if isinstance(body, bytes) else list(body)
    samples = [Sample(scheduled=t) for t in times]
    start = time.perf_counter() + 0.05 if start is None else start
    tasks = []
    for i, sample in enumerate(samples):
        delay = start + sample.scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        request = bodies[i % len(bodies)]
        tasks.append(asyncio.create_task(_one(target, request, sample, start, timeout, headers or {})))
    await asyncio.gather(*tasks)
    return samples


def run(
    target: Target,
    body: bytes | Sequence[bytes],
    times: Sequence[float],
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> list[Sample]:
    # A loop of its own, never the thread's: asyncio.run() would leave the thread with no event loop, and the
    # Pulumi runtime a caller may run next in-process (the offline plan) asks for the current one.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(run_async(target, body, times, timeout=timeout, headers=headers))
    finally:
        loop.close()


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q` quantile (0 < q <= 1), or None of no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class Verdict:
    requests: int
    failed: int
    failures: dict[str, int]
    ttft_within: float | None
    itl_within: float | None
    error_ratio: float
    #: The run's error ratio over the budget's (1 - availability): 1 spends the budget exactly at its pace.
    burn_rate: float
    goodput: float
    tokens_per_second: float
    ttft_ms: dict[str, float | None]
    itl_ms: dict[str, float | None]
    #: The latest a request left after its scheduled time (the client's own lag; latency counts it).
    send_lag_ms: float
    missed: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.missed


def _ms(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p95 and p99 of `values` (seconds) in milliseconds, None where there are none."""
    quantiles = {f"p{round(q * 100)}": percentile(values, q) for q in (0.5, 0.95, 0.99)}
    return {name: None if v is None else v * 1000 for name, v in quantiles.items()}


def _failures(samples: Sequence[Sample]) -> dict[str, int]:
    """Failed requests by kind (an error's text before its first colon)."""
    return dict(sorted(Counter((s.error or "").split(":", 1)[0] for s in samples if not s.ok).items()))


def _send_lag_ms(samples: Sequence[Sample]) -> float:
    """The latest any request left after its scheduled time (the client's own lag; latency counts it)."""
    return max((s.sent - s.scheduled for s in samples if not math.isnan(s.sent)), default=0.0) * 1000


def judge(samples: Sequence[Sample], objectives: Objectives, duration: float) -> Verdict:
    ok = [s for s in samples if s.ok]
    ttfts = [s.ttft for s in ok if s.ttft is not None]
    gaps = [g for s in ok for g in s.gaps]
    failed = len(samples) - len(ok)
    ttft_within = sum(1 for t in ttfts if t * 1000 <= objectives.ttft_ms) / len(ttfts) if ttfts else None
    itl_within = sum(1 for g in gaps if g * 1000 <= objectives.itl_ms) / len(gaps) if gaps else None
    error_ratio = failed / len(samples) if samples else 0.0
    missed = []
    if ttft_within is None or ttft_within < objectives.share:
        missed.append("ttft")
    if itl_within is not None and itl_within < objectives.share:
        missed.append("itl")
    if error_ratio > 1 - objectives.availability:
        missed.append("availability")

    return Verdict(
        requests=len(samples),
        failed=failed,
        failures=_failures(samples),
        ttft_within=ttft_within,
        itl_within=itl_within,
        error_ratio=error_ratio,
        burn_rate=error_ratio / (1 - objectives.availability),
        goodput=sum(1 for s in samples if s.good(objectives)) / duration,
        tokens_per_second=sum(s.tokens for s in ok) / duration,
        ttft_ms=_ms(ttfts),
        itl_ms=_ms(gaps),
        send_lag_ms=_send_lag_ms(samples),
        missed=tuple(missed),
    )


@dataclass(frozen=True)
class LatencyObjectives:
    """An embedding model's objectives: `share` of requests within `latency_ms`, failures within 1 - availability."""

    availability: float
    latency_ms: int
    share: float = 0.99


@dataclass(frozen=True)
class LatencyVerdict:
    requests: int
    failed: int
    failures: dict[str, int]
    #: The share of answered requests within the threshold (the platform's latency SLI; failures are availability's).
    within: float
    error_ratio: float
    burn_rate: float
    #: Requests a second answered within the threshold, and texts a second answered at all.
    goodput: float
    texts_per_second: float
    latency_ms: dict[str, float | None]
    send_lag_ms: float
    missed: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.missed


def judge_latency(samples: Sequence[Sample], objectives: LatencyObjectives, duration: float) -> LatencyVerdict:
    ok = [s for s in samples if s.ok and s.latency is not None]
    latencies = [s.latency for s in ok if s.latency is not None]
    good = sum(1 for t in latencies if t * 1000 <= objectives.latency_ms)
    failed = len(samples) - len(ok)
    within = good / len(ok) if ok else 0.0
    error_ratio = failed / len(samples) if samples else 0.0
    missed = []
    if not ok or within < objectives.share:
        missed.append("latency")
    if error_ratio > 1 - objectives.availability:
        missed.append("availability")
    return LatencyVerdict(
        requests=len(samples),
        failed=failed,
        failures=_failures(samples),
        within=within,
        error_ratio=error_ratio,
        burn_rate=error_ratio / (1 - objectives.availability),
        goodput=good / duration,
        texts_per_second=sum(s.tokens for s in ok) / duration,
        latency_ms=_ms(latencies),
        send_lag_ms=_send_lag_ms(samples),
        missed=tuple(missed),
    )


def report_latency(verdict: LatencyVerdict, objectives: LatencyObjectives, say: Callable[[str], None] = print) -> None:
    mark = {True: "ok", False: "MISSED"}
    say(
        f"  requests  {verdict.requests} sent · {verdict.requests - verdict.failed} answered · {verdict.failed} failed"
        + (f" ({', '.join(f'{k}: {n}' for k, n in verdict.failures.items())})" if verdict.failures else "")
    )
    say(
        f"  latency   {_quantiles(verdict.latency_ms)} · {verdict.within:.1%} of answered requests within "
        f"{objectives.latency_ms} ms (objective {objectives.share:.0%})  {mark['latency' not in verdict.missed]}"
    )
    say(
        f"  errors    {verdict.error_ratio:.2%} (objective ≤ {1 - objectives.availability:.2%}): the run burned its "
        f"error budget at {verdict.burn_rate:.2f}x the pace that spends it  "
        f"{mark['availability' not in verdict.missed]}"
    )
    say(f"  goodput   {verdict.goodput:.2f} requests/s within the objective · {verdict.texts_per_second:,.0f} texts/s")
    say(f"  client    sent at most {verdict.send_lag_ms:.0f} ms after schedule (latency counts from the schedule)")
    say(f"verdict: {'met' if verdict.ok else 'MISSED (' + ', '.join(verdict.missed) + ')'}")


def _pct(value: float | None) -> str:
    return "no data" if value is None else f"{value:.1%}"


def _quantiles(values: dict[str, float | None]) -> str:
    return " · ".join(f"{k} {'-' if v is None else f'{v:,.0f} ms'}" for k, v in values.items())


def report(verdict: Verdict, objectives: Objectives, say: Callable[[str], None] = print) -> None:
    share = f"{objectives.share:.0%}"
    mark = {True: "ok", False: "MISSED"}
    say(
        f"  requests  {verdict.requests} sent · {verdict.requests - verdict.failed} answered · {verdict.failed} failed"
        + (f" ({', '.join(f'{k}: {n}' for k, n in verdict.failures.items())})" if verdict.failures else "")
    )
    say(
        f"  ttft      {_quantiles(verdict.ttft_ms)} · {_pct(verdict.ttft_within)} within {objectives.ttft_ms} ms "
        f"(objective {share})  {mark['ttft' not in verdict.missed]}"
    )
    # No gap measured (no answer had two tokens) judges nothing: said, not passed.
    itl_mark = "no data" if verdict.itl_within is None else mark["itl" not in verdict.missed]
    say(
        f"  itl       {_quantiles(verdict.itl_ms)} · {_pct(verdict.itl_within)} within {objectives.itl_ms} ms "
        f"(objective {share})  {itl_mark}"
    )
    say(
        f"  errors    {verdict.error_ratio:.2%} (objective ≤ {1 - objectives.availability:.2%}): the run burned its "
        f"error budget at {verdict.burn_rate:.2f}x the pace that spends it  "
        f"{mark['availability' not in verdict.missed]}"
    )
    say(
        f"  goodput   {verdict.goodput:.2f} requests/s within every objective · {verdict.tokens_per_second:,.0f} "
        "tokens/s generated"
    )
    say(f"  client    sent at most {verdict.send_lag_ms:.0f} ms after schedule (latency counts from the schedule)")
    say(f"verdict: {'met' if verdict.ok else 'MISSED (' + ', '.join(verdict.missed) + ')'}")


def write_samples(samples: Sequence[Sample], path: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(asdict(s)) + "\n")
