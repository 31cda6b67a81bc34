"""metrics.Tally writes into prometheus_client's own values: what it flushes must render exactly as the
same observations made through prometheus_client's Counter.inc and Histogram.observe."""

from __future__ import annotations

import math
import random

from modelyard_server.metrics import LATENCY_BUCKETS, Tally
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


def series(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def build() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("t_requests", "t", ["code"], registry=registry)
    histogram = Histogram("t_seconds", "t", ["protocol"], buckets=LATENCY_BUCKETS, registry=registry)
    return registry, counter, histogram


def test_a_flushed_tally_renders_as_direct_observations() -> None:
    rng = random.Random(5)
    # Values on and around every bucket bound, and past the last one.
    values = [*LATENCY_BUCKETS, *(b * 1.0001 for b in LATENCY_BUCKETS), *(rng.uniform(0, 12) for _ in range(500))]
    direct, d_count, d_hist = build()
    tallied, t_count, t_hist = build()
    tally = Tally()
    for i, v in enumerate(values):
        code = ("200", "503")[i % 2]
        d_count.labels(code).inc()
        d_hist.labels("v1").observe(v)
        tally.inc(t_count.labels(code))
        tally.observe(t_hist.labels("v1"), v)
        if i % 97 == 0:
            tally.flush()  # several flushes add up
    tally.flush()
    tally.flush()  # an empty flush changes nothing
    # Every count and bucket exactly; the sum to the last bits (it is added up in another order).
    exact = [line for line in series(direct) if "_sum{" not in line]
    assert [line for line in series(tallied) if "_sum{" not in line] == exact
    assert any("_bucket{" in line for line in exact)
    [t_sum] = [float(line.split()[-1]) for line in series(tallied) if "_sum{" in line]
    [d_sum] = [float(line.split()[-1]) for line in series(direct) if "_sum{" in line]
    assert math.isclose(t_sum, d_sum, rel_tol=1e-12)
