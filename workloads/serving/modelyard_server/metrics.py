"""The server's Prometheus series, in prometheus_client's multiprocess mode: every process (the fronts
and the model owner) writes its own files under $PROMETHEUS_MULTIPROC_DIR, and `/metrics`, answered by
whichever front the scrape reaches, adds them up. The supervisor sets that directory before anything
imports this module; names and buckets are the platform's contract (platform/signals.py, tested).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

#: Latency buckets in seconds; a latency SLO threshold must be one of them (platform/signals.py).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = Counter(
    "modelyard_requests", "Answered requests, by protocol and HTTP status code", ["model_name", "protocol", "code"]
)
#: The same answers by calling team: the team in the client id the platform's gateway forwards (x-modelyard-client,
#: `<team>.<client>`, set after it authenticated the caller's key), `none` for a request that came past no gateway,
#: `invalid` for an id that names no team, `other` past the teams a front counts (front.MAX_CALLERS).
CALLER_REQUESTS = Counter(
    "modelyard_caller_requests",
    "Answered requests by calling team and HTTP status code",
    ["model_name", "caller", "code"],
)
#: Latency of the requests answered (200): a fast refusal must not make the latency SLI look better; the
#: request counter above has every answer, and availability reads it.
DURATION = Histogram(
    "modelyard_request_duration_seconds",
    "Latency of answered (200) requests",
    ["model_name", "protocol"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram("modelyard_batch_size", "Texts per forward pass", ["model_name"], buckets=BATCH_BUCKETS)
#: Seconds per forward pass (what KServe's own servers call request_predict_seconds).
FORWARD = Histogram("modelyard_forward_seconds", "Forward pass latency", ["model_name"], buckets=LATENCY_BUCKETS)
QUEUE_DEPTH = Gauge(
    "modelyard_queue_depth", "Texts waiting for a forward pass", ["model_name"], multiprocess_mode="livesum"
)
#: The autoscaling signal for GPU predictors: texts accepted and not yet answered (queued or running).
IN_FLIGHT = Gauge(
    "modelyard_inflight_texts", "Texts accepted and not yet answered", ["model_name"], multiprocess_mode="livesum"
)
#: reason: queue_full, draining, model_unavailable, objective (refused before any work: the texts ahead would
#: not be answered within the latency objective at the front's measured pace), shed (a low-priority request
#: refused past its share of that bound), deadline (given up at the request's own deadline, its texts not
#: yet computed dropped).
REJECTED = Counter(
    "modelyard_rejected_requests", "Requests refused, or given up at their own deadline", ["model_name", "reason"]
)
#: Connections a front's guard closed: read_timeout (a request not in by its deadline), evicted (the
#: quietest connection, for a new one beyond the cap), refused (beyond the cap with every one busy).
CLOSED_CONNECTIONS = Counter(
    "modelyard_closed_connections", "Connections the server's guard closed", ["model_name", "reason"]
)
#: What the model receives, per text tokenized (InputSignals): the cheap drift signals every pod exports.
CHARS_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
TOKENS_BUCKETS = (4, 8, 16, 32, 64, 128, 256, 512)
SHARE_BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
INPUT_CHARS = Histogram("modelyard_input_chars", "Characters per text", ["model_name"], buckets=CHARS_BUCKETS)
INPUT_TOKENS = Histogram(
    "modelyard_input_tokens", "Tokens per text, after truncation", ["model_name"], buckets=TOKENS_BUCKETS
)
TRUNCATED = Counter(
    "modelyard_truncated_texts",
    "Texts that reached the model's max_seq_length (truncated, or exactly that long)",
    ["model_name"],
)
UNKNOWN_SHARE = Histogram(
    "modelyard_unknown_token_share",
    "Share of a text's tokens the vocabulary does not know",
    ["model_name"],
    buckets=SHARE_BUCKETS,
)
#: The sampling tap (tap.py): sampled (picked), dropped (the buffer full), sent (accepted by the drift worker),
#: refused (discarded after a 4xx the worker would give again); send failures by reason (unreachable, timeout,
#: refused: a non-2xx answer).
TAP_SAMPLES = Counter(
    "modelyard_tap_samples", "Texts the drift tap sampled, dropped and sent", ["model_name", "outcome"]
)
TAP_FAILURES = Counter("modelyard_tap_send_failures", "Failed sends to the drift worker", ["model_name", "reason"])
#: The model owner's embedding cache (cache.py): texts looked up, by `outcome` (hit, miss), and what its entries
#: hold now by its own accounting (rows and their keys).
CACHE_TEXTS = Counter("modelyard_cache_texts", "Texts looked up in the embedding cache", ["model_name", "outcome"])
CACHE_BYTES = Gauge(
    "modelyard_cache_bytes", "Bytes the embedding cache's entries hold", ["model_name"], multiprocess_mode="livesum"
)
#: The texts admitted ahead of a request before it is refused: with a latency objective, the model owner's pace
#: times the objective (every front sees the same), else the fixed --max_queue share of a front (the most of any
#: front shown).
ADMISSION_BOUND = Gauge(
    "modelyard_admission_bound_texts",
    "Texts admitted ahead of a request before it is refused",
    ["model_name"],
    multiprocess_mode="livemax",
)
#: Answers that are not the whole of what was asked, by `reason`: truncated (a text reached the model's
#: max_seq_length, so what lies beyond it is not in its vector). The answer says so in x-modelyard-degraded.
DEGRADED = Counter("modelyard_degraded_responses", "Answers marked degraded, by reason", ["model_name", "reason"])


class InputSignals:
    """The input histograms of one front, observed for every text it tokenizes (Dispatcher._tokenize):
    characters, tokens, texts at the model's max_seq_length, and the share of tokens that are the
    vocabulary's unknown token (where it has one)."""

    def __init__(self, model_name: str, max_seq_length: int, unknown_id: int | None):
        self.max_seq_length = max_seq_length
        self.unknown_id = unknown_id
        self.chars = INPUT_CHARS.labels(model_name)
        self.tokens = INPUT_TOKENS.labels(model_name)
        self.truncated = TRUNCATED.labels(model_name)
        self.unknown = UNKNOWN_SHARE.labels(model_name)

    def observe(self, tally: Tally, texts: list[str], ids: Any, lengths: Any) -> None:
        import numpy as np

        tally.observe_many(self.chars, np.fromiter(map(len, texts), np.int64, len(texts)))
        tally.observe_many(self.tokens, lengths)
        at_limit = int(np.count_nonzero(lengths >= self.max_seq_length))
        if at_limit:
            tally.inc(self.truncated, at_limit)
        if self.unknown_id is not None and len(lengths):
            starts = np.concatenate(([0], np.cumsum(lengths[:-1], dtype=np.int64)))
            unknown = np.add.reduceat((ids == self.unknown_id).astype(np.int32), starts)
            tally.observe_many(self.unknown, unknown / np.maximum(lengths, 1))


def render() -> bytes:
    """Every process's series, added up (counters and histograms summed, gauges as their mode says)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return bytes(generate_latest(registry))


class Tally:
    """Observations kept in plain Python and written to the shared files in one go (`flush`): in
    multiprocess mode every write takes a lock and checks the pid, which per request cost more than the
    HTTP itself. Owners flush every few tens of milliseconds and before answering /metrics."""

    def __init__(self) -> None:
        self.counts: dict[Any, float] = {}
        self.histograms: dict[Any, tuple[list[float], list[int], list[float]]] = {}

    def inc(self, child: Any, amount: float = 1) -> None:
        self.counts[child] = self.counts.get(child, 0) + amount

    def _entry(self, child: Any) -> tuple[list[float], list[int], list[float]]:
        entry = self.histograms.get(child)
        if entry is None:
            bounds = list(child._upper_bounds)
            entry = self.histograms[child] = (bounds, [0] * len(bounds), [0.0])
        return entry

    def observe(self, child: Any, value: float) -> None:
        bounds, counts, total = self._entry(child)
        counts[bisect_left(bounds, value)] += 1
        total[0] += value

    def observe_many(self, child: Any, values: Any) -> None:
        """`observe` for every value of a numpy array, in one pass."""
        import numpy as np

        bounds, counts, total = self._entry(child)
        found = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
        for i in np.flatnonzero(found).tolist():
            counts[i] += int(found[i])
        total[0] += float(values.sum())

    def flush(self) -> None:
        for child, amount in self.counts.items():
            if amount:
                child.inc(amount)
        self.counts = {}
        for child, (_, counts, total) in self.histograms.items():
            # prometheus_client keeps one (non-cumulative) value per bucket and one for the sum.
            for i, n in enumerate(counts):
                if n:
                    child._buckets[i].inc(n)
            if any(counts):
                child._sum.inc(total[0])
        self.histograms = {}
