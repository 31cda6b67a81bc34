"""Model-server benchmark: measures, in one run on this machine,
(o) with `--overhead`: the server's own cost per request. The model is replaced by a constant vector
    (the server's --constant_encoder), the server is pinned to one core and wrk to another, against a
    bare uvicorn + httptools + uvloop + orjson ASGI app returning the same body on the same core;
    v1 and OpenAI requests. Target: >= 50% of the bare app.
(a) raw in-process encode throughput of the model at its best batch size (the limit),
(b) an unbatched server (max batch 1: one request per forward pass) under concurrent load,
(c) this server (adaptive batching) under concurrent load, then at 80% of its saturation (three runs,
    the median p99 judged),
(d) this server at 2x saturation: only 200s and 503s, every accepted request answered,
and prints sentences/s, p50/p99 latency, the servers' peak RSS and the ratios.

Targets on CPU here: (c) >= 85% of (a) and >= 2x (b); p99 under 250 ms at 80% of saturation; RSS
under 1.5 GiB. Run it with the serving environment's python (make bench-serving):

    python bench.py [--seconds 15] [--overload-seconds 60] [--device cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
#: wrk (Debian package `wrk`) drives the closed-loop runs: a C load generator takes far less of this
#: 2-core machine than a Python client would, so the servers' figures are theirs, not the client's.
WRK_SCRIPT = """
local f = assert(io.open(os.getenv("BODIES"), "r"))
bodies = {}
for line in f:lines() do bodies[#bodies + 1] = line end
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i % #bodies) + 1])
end
"""
WORDS = [
    "model",
    "serving",
    "platform",
    "latency",
    "throughput",
    "embedding",
    "vector",
    "search",
    "cluster",
    "node",
    "gpu",
    "kernel",
    "batch",
    "queue",
    "request",
    "response",
    "retrieval",
    "document",
    "query",
    "index",
    "shard",
    "replica",
    "budget",
    "alert",
    "dashboard",
    "metric",
    "label",
]


def corpus(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24))) for _ in range(n)]


def loop_ms() -> float:
    """Milliseconds for a fixed pure-Python loop, printed beside each phase: this machine's speed moves
    by a third or more from one minute to the next, and the ratios compare phases minutes apart."""
    started = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i
    return (time.perf_counter() - started) * 1000


def peak_rss_mib(pid: int) -> float:
    """Peak RSS of a process and every process under it, added up (the server is several processes)."""
    import psutil

    total = 0.0
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def bare_app(port: int, body_file: str) -> None:
    """The reference for the overhead figure: an ASGI app that reads the body and answers a fixed one."""
    import uvicorn

    body = Path(body_file).read_bytes()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # as the server runs it
    )


def raw_throughput(device: str | None, seconds: float) -> tuple[str, float, dict[str, float]]:
    """The model's limit in this process: sentences/s by batch size, one pass at a time on torch's
    threads; on a CPU also one single-threaded pass per CPU side by side (threads over the one model, as
    the server's --model_instances runs them). The best of all is the limit."""
    import threading

    import torch

    sys.path.insert(0, str(HERE))
    from modelyard_server.encoder import Encoder, bundled_model_dir

    enc = Encoder(bundled_model_dir(), device=device)
    texts = corpus(2048)
    enc.encode(texts[:8])  # warm up
    threads = torch.get_num_threads()
    layouts = [(1, threads)]
    if enc.device.type == "cpu" and len(os.sched_getaffinity(0)) > 1:
        layouts.append((len(os.sched_getaffinity(0)), 1))
    results: dict[str, float] = {}
    for passes, per_pass in layouts:
        torch.set_num_threads(per_pass)
        for size in (1, 8, 16, 32, 64):
            done = [0] * passes
            stop = time.perf_counter() + seconds / 5 / len(layouts)

            def work(k: int, size: int = size, done: list[int] = done, stop: float = stop, step: int = passes) -> None:
                i = k * size
                while time.perf_counter() < stop:
                    enc.encode([texts[(i + j) % len(texts)] for j in range(size)])
                    done[k] += size
                    i += step * size

            started = time.perf_counter()
            workers = [threading.Thread(target=work, args=(k,)) for k in range(passes)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            results[f"{passes}x{per_pass}t b{size}"] = sum(done) / (time.perf_counter() - started)
    torch.set_num_threads(threads)
    best = max(results, key=lambda k: results[k])
    return best, results[best], results


class Server:
    def __init__(self, port: int, *extra: str, device: str | None = None, cpus: str | None = None, argv=None):  # type: ignore[no-untyped-def]
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        self.port = port
        command = argv or [sys.executable, "-m", "modelyard_server", "--http_port", str(port), "--host", "127.0.0.1"]
        pin = ["taskset", "-c", cpus] if cpus else []
        self.proc = subprocess.Popen(
            [*pin, *command, *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code in (200, 405):
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            time.sleep(0.5)
        raise RuntimeError("server did not become ready")

    def stop(self) -> float:
        rss = peak_rss_mib(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        return rss


def wrk_closed_loop(
    port: int,
    concurrency: int,
    seconds: float,
    workdir: Path,
    route: str = "v1",
    cpus: str | None = None,
    sentences: int = 1,
) -> dict[str, Any]:
    """`concurrency` connections with wrk, each sending the next request when the last returns; `sentences`
    per request; texts/s in the result."""
    import re
    import shutil

    texts = corpus(1024 * sentences, seed=11)
    groups = [texts[i * sentences : (i + 1) * sentences] for i in range(1024)]
    bodies = workdir / f"bodies-{route}-{sentences}.jsonl"
    if route == "openai":
        lines = [json.dumps({"model": "minilm", "input": g}) for g in groups]
        path = "/v1/embeddings"
    else:
        lines = [json.dumps({"instances": g}) for g in groups]
        path = "/v1/models/minilm:predict"
    bodies.write_text("\n".join(lines) + "\n")
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    wrk = shutil.which("wrk")
    assert wrk
    out = subprocess.run(
        [
            *(["taskset", "-c", cpus] if cpus else []),
            wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{int(seconds)}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BODIES": str(bodies)},
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = int(bad.group(1)) if bad else 0
    return {
        "rps": rate * (total - non2xx) / max(total, 1) * sentences,
        "requests_per_s": rate,
        "p50": ms("50"),
        "p99": ms("99"),
        "codes": {"non-2xx": non2xx, "total": total},
    }


def closed(port: int, concurrency: int, seconds: float, workdir: Path) -> dict[str, Any]:
    import shutil

    if shutil.which("wrk"):
        return wrk_closed_loop(port, concurrency, seconds, workdir)
    print("    (wrk not installed: a Python client drives this run and takes CPU from the server)")
    return asyncio.run(closed_loop(port, concurrency, seconds))


async def closed_loop(port: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """`concurrency` clients, each sending the next one-sentence request as soon as the last returns."""
    texts = corpus(4096, seed=11)
    latencies: list[float] = []
    codes: dict[int, int] = {}
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as client:

        async def worker(w: int) -> None:
            i = w
            while time.perf_counter() < stop:
                body = {"instances": [texts[i % len(texts)]]}
                t0 = time.perf_counter()
                r = await client.post("/v1/models/minilm:predict", json=body)
                latencies.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    ok = codes.get(200, 0)
    q = statistics.quantiles(latencies, n=100)
    return {"rps": ok / elapsed, "p50": q[49] * 1000, "p99": q[98] * 1000, "codes": codes}  # type: ignore[dict-item]


class _Conn:
    """One keep-alive HTTP/1.1 connection, spoken by hand: far cheaper per request than an HTTP library,
    so the load generator leaves the CPU to the server."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            self.writer = None
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length = 0
        close = False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and "close" in value.lower():
                close = True
        data = await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.writer = None
        return status, data


def wait_idle(port: int, timeout: float = 60) -> None:
    """Until the server holds no texts: a closed-loop run leaves its last requests queued when the load
    generator stops, and the next phase must not start behind them."""
    import re

    deadline = time.time() + timeout
    while time.time() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        held = sum(float(v) for v in re.findall(r"^modelyard_inflight_texts\{[^}]*\} (\S+)$", text, re.M))
        if held == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the server still held texts after {timeout} s")


async def open_loop(port: int, rate: float, seconds: float, connections: int = 512) -> dict[str, Any]:
    """Requests arriving at `rate` per second (Poisson), whatever the server does; latency counts from the
    intended arrival, so waiting for a free connection is included."""
    bodies = [json.dumps({"instances": [t]}).encode() for t in corpus(1024, seed=13)]
    latencies: list[float] = []
    codes: dict[int | str, int] = {}
    rng = random.Random(3)
    pool: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(_Conn(port))

    async def one(i: int, due: float) -> None:
        conn = await pool.get()
        key: int | str
        try:
            status, data = await conn.post("/v1/models/minilm:predict", bodies[i % len(bodies)])
            key = status
            if status == 200:
                assert data.count(b"[") == 2, "one embedding per accepted request"
                latencies.append(time.perf_counter() - due)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            key = type(exc).__name__
            conn.writer = None
        finally:
            pool.put_nowait(conn)
        codes[key] = codes.get(key, 0) + 1

    tasks = []
    started = time.perf_counter()
    due, i = started, 0
    while due < started + seconds:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
        i += 1
        due += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 2 else [float("nan")] * 99
    return {"rps": len(latencies) / elapsed, "sent": i, "p50": q[49] * 1000, "p99": q[98] * 1000, "codes": codes}


def overhead(seconds: float, concurrency: int, rounds: int) -> None:
    """(o): the server with a constant encoder against a bare ASGI app returning the same body, each on
    core 0 (all its processes), wrk on core 1. The two are measured in turn, `rounds` short runs each
    (`seconds` in all per route and side), and the medians compared: a shared machine's speed drifts by
    more than the difference measured, so the runs are short and many."""
    import shutil

    if not shutil.which("wrk") or not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("--overhead needs wrk, taskset and 2 CPUs")
    workdir = Path(tempfile.mkdtemp(prefix="modelyard-overhead-"))
    for route in ("v1", "openai"):
        server = Server(18190, "--constant_encoder", "--workers", "1", "--max_queue", "4096", cpus="0")
        body = {"v1": {"instances": [corpus(1)[0]]}, "openai": {"model": "minilm", "input": [corpus(1)[0]]}}[route]
        path = {"v1": "/v1/models/minilm:predict", "openai": "/v1/embeddings"}[route]
        reply = httpx.post(f"http://127.0.0.1:18190{path}", json=body, timeout=10).content
        (workdir / "body.json").write_bytes(reply)
        bare = Server(
            18191,
            argv=[sys.executable, str(Path(__file__).resolve()), "--bare-app", "18191", str(workdir / "body.json")],
            cpus="0",
        )
        for warm in (server, bare):  # first connections, allocator arenas, the interpreter's specialisation
            wrk_closed_loop(warm.port, concurrency, 1, workdir, route=route, cpus="1")
        ours, reference = [], []
        for _ in range(rounds):  # the idle one of the two takes no CPU
            each = max(1.0, seconds / rounds)
            ours.append(wrk_closed_loop(server.port, concurrency, each, workdir, route=route, cpus="1"))
            reference.append(wrk_closed_loop(bare.port, concurrency, each, workdir, route=route, cpus="1"))
        server.stop()
        bare.stop()
        mine = statistics.median(r["requests_per_s"] for r in ours)
        theirs = statistics.median(r["requests_per_s"] for r in reference)
        ratio = mine / theirs
        print(
            f"(o) {route}: this server {mine:.0f} requests/s (p99 {statistics.median(r['p99'] for r in ours):.1f} ms), "
            f"bare ASGI app {theirs:.0f}/s, same {len(reply)}-byte body, one core each, medians of {rounds} "
            f"alternating runs: ratio {ratio:.2f} (target >= 0.50: {'met' if ratio >= 0.5 else 'MISSED'})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--overload-seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--json", metavar="F", help="also write the figures as JSON to F")
    parser.add_argument("--server-arg", action="append", default=[], help="extra argument for server (c), repeatable")
    parser.add_argument("--overhead", action="store_true", help="only (o): the server's own cost per request")
    parser.add_argument("--rounds", type=int, default=15, help="(o): alternating runs per route and side")
    parser.add_argument("--bare-app", nargs=2, metavar=("PORT", "BODY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be 1 or more (got {args.rounds})")
    if args.bare_app:
        bare_app(int(args.bare_app[0]), args.bare_app[1])
        return
    if args.overhead:
        overhead(args.seconds, args.concurrency, args.rounds)
        return
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads")

    print(f"    (machine speed: a fixed loop took {loop_ms():.0f} ms)")
    best, limit, by_size = raw_throughput(device, args.seconds)
    print(
        "(a) raw encode, sentences/s by passes at once x torch threads each, batch size: "
        + ", ".join(f"{k}: {v:.0f}" for k, v in by_size.items())
        + f"; the limit: {limit:.0f} ({best})"
    )

    workdir = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    unbatched = Server(18181, "--max_batch_size", "1", "--max_wait_ms", "0", "--max_queue", "100000", device=device)
    b = closed(unbatched.port, args.concurrency, args.seconds, workdir)
    b_rss = unbatched.stop()
    print(
        f"(b) unbatched server: {b['rps']:.0f} sentences/s, p50 {b['p50']:.1f} ms, "
        f"p99 {b['p99']:.1f} ms, RSS {b_rss:.0f} MiB"
    )

    server = Server(18182, *args.server_arg, device=device)
    print(f"    (machine speed: a fixed loop took {loop_ms():.0f} ms)")
    c = closed(server.port, args.concurrency, args.seconds, workdir)
    print(
        f"(c) this server, {args.concurrency} clients: {c['rps']:.0f} sentences/s, "
        f"p50 {c['p50']:.1f} ms, p99 {c['p99']:.1f} ms, codes {c['codes']}"
    )
    # Three runs at 80%, the server idle before each, each at 80% of a saturation measured just before
    # it (the first: (c) itself); the verdict reads the median p99. This machine's speed changes from
    # one minute to the next (raw rates here have ranged from 128 to 218 sentences/s), and 80% of a
    # fast minute's saturation offered in a slow minute is an overload no server answers in time.
    at80_runs = []
    for k in range(3):
        saturation = c if k == 0 else closed(server.port, args.concurrency, max(5.0, args.seconds / 3), workdir)
        wait_idle(server.port)
        speed = loop_ms()
        run = asyncio.run(open_loop(server.port, 0.8 * saturation["rps"], args.seconds))
        run["offered"] = 0.8 * saturation["rps"]
        run["loop_ms"] = speed
        at80_runs.append(run)
    at80 = sorted(at80_runs, key=lambda r: r["p99"])[1]
    print(
        "    at 80% of saturation, three runs: "
        + "; ".join(
            f"{r['offered']:.0f}/s offered (loop {r['loop_ms']:.0f} ms): p50 {r['p50']:.1f} ms, "
            f"p99 {r['p99']:.1f} ms, codes {r['codes']}"
            for r in at80_runs
        )
        + f"; median p99 {at80['p99']:.1f} ms"
    )
    wait_idle(server.port)
    over = asyncio.run(open_loop(server.port, 2 * c["rps"], args.overload_seconds))
    c_rss = server.stop()
    fives = {k: v for k, v in over["codes"].items() if isinstance(k, int) and k >= 500 and k != 503}
    errors = {k: v for k, v in over["codes"].items() if isinstance(k, str)}
    print(
        f"(d) 2x saturation for {args.overload_seconds:.0f} s ({2 * c['rps']:.0f}/s offered, {over['sent']} sent): "
        f"codes {over['codes']}; 5xx other than 503: {sum(fives.values())}; unanswered: {sum(errors.values())}"
    )
    print(f"    peak RSS of this server: {c_rss:.0f} MiB")
    ratio_a, ratio_b = c["rps"] / limit, c["rps"] / b["rps"]
    # What batching gains in-process here, beside (c)/(b): the raw limit over the raw rate of one-text
    # passes laid out as the unbatched server runs them (every instance at once).
    single = max(v for k, v in by_size.items() if k.endswith(" b1"))
    print(
        f"ratios: (c)/(a) = {ratio_a:.2f} (target >= 0.85: {'met' if ratio_a >= 0.85 else 'MISSED'}); "
        f"(c)/(b) = {ratio_b:.2f} (target >= 2: {'met' if ratio_b >= 2 else 'MISSED'}; in (a) the best batch "
        f"encodes {limit / single:.2f} times one-text passes); "
        f"p99 at 80% = {at80['p99']:.0f} ms (target < 250: {'met' if at80['p99'] < 250 else 'MISSED'}); "
        f"RSS {c_rss:.0f} MiB (target < 1536: {'met' if c_rss < 1536 else 'MISSED'})"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "device": device,
                    "a": {"best": best, "sps": limit, "by_size": by_size},
                    "b": b,
                    "c": c,
                    "at80": at80,
                    "at80_runs": at80_runs,
                    "overload": over,
                    "rss_mib": c_rss,
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
