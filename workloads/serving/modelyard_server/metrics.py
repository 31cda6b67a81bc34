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
DURATION = Histogram(
    "modelyard_request_duration_seconds", "Request latency", ["model_name", "protocol"], buckets=LATENCY_BUCKETS
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
#: reason: queue_full, draining, model_unavailable (refused before any work), deadline (given up at the
#: request's own deadline, its texts not yet computed dropped).
REJECTED = Counter(
    "modelyard_rejected_requests", "Requests refused, or given up at their own deadline", ["model_name", "reason"]
)
#: Connections a front's guard closed: read_timeout (a request not in by its deadline), evicted (the
#: quietest connection, for a new one beyond the cap), refused (beyond the cap with every one busy).
CLOSED_CONNECTIONS = Counter(
    "modelyard_closed_connections", "Connections the server's guard closed", ["model_name", "reason"]
)


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

    def observe(self, child: Any, value: float) -> None:
        entry = self.histograms.get(child)
        if entry is None:
            bounds = list(child._upper_bounds)
            entry = self.histograms[child] = (bounds, [0] * len(bounds), [0.0])
        bounds, counts, total = entry
        counts[bisect_left(bounds, value)] += 1
        total[0] += value

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
