"""Degradation benchmark: the real server with the bundled model under an open-loop overload, and its cache.
Prints figures; targets:

(1) at twice the server's capacity, a quarter of it high-priority and the rest marked low, with admission by the
    latency objective (--latency_objective_ms 250, the staging and prod p99): the high class keeps >= 99 % of its
    requests answered within 250 ms (counted from each request's scheduled send time) while the low class is
    shed with 429 and Retry-After; the same load against a server that queues without a useful bound
    (--max_queue 4096, what Infinity, Ray Serve or a naive app do) beside it;
(2) a cache hit answered in < 2 ms at the server and byte-identical to the first answer (measured at the client
    over keep-alive loopback, so the figure bounds the server's time from above), a miss beside it.

Capacity is measured first, in the same run: the texts a second the server answers, admitting by the objective,
under an open loop past it.
The load generator runs on the same machine and shares its CPUs (modelyard.loadtest, standard library).

    python bench_degrade.py [--seconds 20] [--objective-ms 250]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from pathlib import Path

import httpx
from bench import Server

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
from modelyard import loadtest as lt  # noqa: E402  (the repository's load generator; standard library only)

TEXTS = 8


def run_classes(port: int, plan: dict[str, float], seconds: float, seed: int) -> dict[str, list[lt.Sample]]:
    """An open loop per priority class (requests a second), on one clock, in one event loop."""
    target = lt.Target.parse(f"http://127.0.0.1:{port}", lt.EMBEDDINGS_PATH)

    async def both() -> dict[str, list[lt.Sample]]:
        start = time.perf_counter() + 0.1
        runs = {}
        for i, (priority, rate) in enumerate(plan.items()):
            times = lt.schedule(rate, seconds, "poisson", seed + i)
            bodies = lt.embeddings_bodies("minilm", len(times), TEXTS, seed=seed * 10 + i)
            headers = {"x-modelyard-priority": priority}
            runs[priority] = lt.run_async(target, bodies, times, timeout=30, headers=headers, start=start)
        results = await asyncio.gather(*runs.values())
        return dict(zip(runs, results, strict=True))

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(both())
    finally:
        loop.close()


def describe(name: str, samples: list[lt.Sample], objective_ms: float, seconds: float) -> dict[str, float]:
    answered = [s for s in samples if s.ok and s.latency is not None]
    within = [s for s in answered if s.latency is not None and s.latency * 1000 <= objective_ms]
    statuses: dict[int, int] = {}
    for s in samples:
        statuses[s.status] = statuses.get(s.status, 0) + 1
    latencies = sorted(s.latency for s in answered if s.latency is not None)
    p99 = latencies[max(0, int(0.99 * len(latencies)) - 1)] * 1000 if latencies else float("nan")
    share = len(within) / len(samples) if samples else 0.0
    codes = ", ".join(f"{code or 'no answer'}: {n}" for code, n in sorted(statuses.items()))
    print(
        f"  {name:5} {len(samples):5} requests · {share:6.1%} answered within {objective_ms:g} ms · answered p99 "
        f"{p99:,.0f} ms · {len(answered) * TEXTS / seconds:,.0f} texts/s answered · statuses {codes}"
    )
    return {"requests": len(samples), "within_share": share, "p99_ms": p99}


def within_at_server(port: int, objective_ms: float) -> tuple[float, float]:
    """(answers, answers within the objective) so far, from the server's own latency histogram (its OpenAI route;
    the objective must be one of its buckets)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    le = f"{objective_ms / 1000:g}"
    le = le if "." in le else le + ".0"

    def bucket(bound: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("modelyard_request_duration_seconds_bucket{")
            and f'le="{bound}"' in line
            and 'protocol="openai"' in line
        )

    return bucket("+Inf"), bucket(le)


def capacity(port: int, seconds: float) -> float:
    """Texts a second the server answers within the objective when offered more (60 requests a second: past what
    it answers, and not so many that the load generator takes the CPUs from it); the excess refused."""
    samples = run_classes(port, {"high": 60.0}, seconds, seed=1)["high"]
    return sum(TEXTS for s in samples if s.ok) / seconds


def overload(seconds: float, objective_ms: float, low_share: float) -> None:
    print(f"(1) overload: {TEXTS} texts a request, Poisson arrivals, latency from the schedule")
    server = Server(18301, "--latency_objective_ms", f"{objective_ms:g}")
    try:
        run_classes(18301, {"high": 20.0}, 3, seed=9)  # warm up
        cap = capacity(18301, 10)
    finally:
        server.stop()
    total = 2 * cap / TEXTS
    plan = {"high": total / 4, "low": 3 * total / 4}
    print(
        f"  capacity: {cap:,.0f} texts/s answered within the objective under an open loop past it; at 2x: "
        f"{plan['high']:.1f} high and {plan['low']:.1f} low requests a second for {seconds:g} s"
    )
    for label, args in (
        (f"admission by the objective (--latency_objective_ms {objective_ms:g})", ["--latency_objective_ms"]),
        ("a queue of 4096 texts (--max_queue 4096)", ["--max_queue", "4096"]),
    ):
        extra = [*args, f"{objective_ms:g}"] if args == ["--latency_objective_ms"] else args
        server = Server(18302, *extra, "--low_priority_share", f"{low_share:g}")
        try:
            run_classes(18302, {"high": 20.0}, 3, seed=9)
            before = within_at_server(18302, objective_ms)
            results = run_classes(18302, plan, seconds, seed=5)
            after = within_at_server(18302, objective_ms)
        finally:
            server.stop()
        answered, within = after[0] - before[0], after[1] - before[1]
        print(f" {label}: at the server, {within / answered:.1%} of {answered:.0f} answers within {objective_ms:g} ms")
        figures = {k: describe(k, v, objective_ms, seconds) for k, v in results.items()}
        retry = sum(1 for s in results["low"] if s.status == 429)
        print(
            f"  low class shed with 429: {retry} · high class within objective: {figures['high']['within_share']:.1%}"
        )


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """One keep-alive HTTP/1.1 exchange on a raw socket: the response body (httpx's own overhead, about a
    millisecond a request, would hide the figure measured)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(b":")[1])
    while len(body) < length:
        body += sock.recv(65536)
    return body


def _request(text: str) -> bytes:
    body = json.dumps({"model": "minilm", "input": [text]}).encode()
    head = f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


def cache() -> None:
    print("(2) cache: one text, sequential requests on one keep-alive connection (a raw socket)")
    server = Server(18303, "--workers", "1", "--cache_mb", "64")
    try:
        with socket.create_connection(("127.0.0.1", 18303)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            same_text = _request("the same question, asked again and again")
            first = _exchange(sock, same_text)
            hits, same = [], 0
            for _ in range(2000):
                t = time.perf_counter()
                answer = _exchange(sock, same_text)
                hits.append((time.perf_counter() - t) * 1000)
                same += answer == first
            misses = []
            for i in range(300):
                other = _request(f"a question never asked before, number {i}")
                t = time.perf_counter()
                _exchange(sock, other)
                misses.append((time.perf_counter() - t) * 1000)
        metrics = httpx.get("http://127.0.0.1:18303/metrics", timeout=10).text
    finally:
        server.stop()
    hit_lines = [line for line in metrics.splitlines() if line.startswith("modelyard_cache_texts_total")]

    def q(values: list[float], p: float) -> float:
        return sorted(values)[int(p * (len(values) - 1))]

    print(
        f"  hit:  p50 {statistics.median(hits):.2f} ms · p99 {q(hits, 0.99):.2f} ms round trip · {same} of "
        f"{len(hits)} answers byte-identical to the first"
    )
    print(f"  miss: p50 {statistics.median(misses):.2f} ms · p99 {q(misses, 0.99):.2f} ms round trip")
    print("  " + " · ".join(hit_lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of each overload run (default 20)")
    parser.add_argument("--objective-ms", type=float, default=250.0, help="the latency objective (default 250)")
    parser.add_argument(
        "--low-share", type=float, default=0.5, help="the servers' --low_priority_share (default 0.5, theirs)"
    )
    parser.add_argument("--skip-overload", action="store_true")
    args = parser.parse_args()
    if not args.skip_overload:
        overload(args.seconds, args.objective_ms, args.low_share)
    cache()


if __name__ == "__main__":
    main()
