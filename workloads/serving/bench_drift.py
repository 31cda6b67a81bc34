"""Drift benchmark: the drift tests on the bundled model's real embeddings, the drift alert's timing through
promtool, and what the sampling tap costs the server. Prints figures; targets:

(1) at a window of 200 texts against a 1,000-text reference: a 20 % topic shift (a fifth of the window about a
    topic the reference has none of) detected with power >= 0.95, and <= 1 % false alarms on drift-free windows
    (at the output alert's level, 0.01), by the MMD test the worker runs; a subtler shift (the window's topic
    mix moved, nothing new) reported beside it;
(2) at one sampled text a second, the worker testing a window a minute, ModelOutputDrift (the platform's rule,
    evaluated by promtool) fires within 10 minutes of a 20 % shift and never in the drift-free half hour before;
(3) the tap (--tap_share 0.01, the default, to a running worker) adding <= 2 % to the server's p99 at 80 % of its
    saturation, and the server's memory flat while the worker is stopped and the tap drops.

Run it with the serving environment's python:

    python bench_drift.py [--seconds 15] [--rounds 5] [--windows 200] [--skip-tap]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import drift_stream
import numpy as np
import topics
from modelyard_server import drift
from modelyard_server.drift_worker import Worker, WorkerSettings
from modelyard_server.reference import Reference

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BASE = {"billing": 1.0, "shipping": 1.0, "programming": 1.0, "medicine": 1.0}
ALPHA = 0.01


def encode(texts: list[str]) -> np.ndarray:
    from modelyard_server.encoder import Encoder
    from modelyard_server.tokenizer import bundled_model_dir

    encoder = encode.__dict__.setdefault("encoder", Encoder(bundled_model_dir(), device="cpu"))
    return np.concatenate([encoder.encode(texts[i : i + 64]).vectors for i in range(0, len(texts), 64)])


def detection(windows: int, rng: np.random.Generator) -> None:
    started = time.perf_counter()
    reference = encode(topics.mix(BASE, 1000, 1))
    calm = encode(topics.mix(BASE, 4000, 2))
    new_topic = encode(topics.sentences("cooking", 1500, 3))
    remixed = encode(topics.mix({"billing": 4.0, "shipping": 1.0, "programming": 1.0, "medicine": 1.0}, 2000, 4))
    print(f"(1) encoded {1000 + 4000 + 1500 + 2000} texts in {time.perf_counter() - started:.0f} s")
    width = drift.median_bandwidth(reference, rng)

    def p(window: np.ndarray) -> float:
        return drift.mmd_test(window, reference, rng=rng, bandwidth=width).p_value

    def pick(pool: np.ndarray, n: int) -> np.ndarray:
        return pool[rng.choice(len(pool), n, replace=False)]

    started = time.perf_counter()
    null = [p(pick(calm, 200)) for _ in range(windows)]
    shifted = [p(np.concatenate([pick(calm, 160), pick(new_topic, 40)])) for _ in range(windows // 2)]
    mixed = [p(pick(remixed, 200)) for _ in range(windows // 2)]
    tests = len(null) + len(shifted) + len(mixed)
    false_alarms = float(np.mean(np.array(null) < ALPHA))
    power = float(np.mean(np.array(shifted) < ALPHA))
    print(f"    {tests} MMD tests ({drift.PERMUTATIONS} relabellings each) in {time.perf_counter() - started:.0f} s")
    print(f"    false alarms on {len(null)} drift-free windows: {false_alarms:.1%} (target <= 1 %)")
    print(f"    power, 20 % of the window a new topic: {power:.1%} (target >= 95 %)")
    print(f"    power, the topic mix moved (billing 4 of 7 instead of 1 of 4): {np.mean(np.array(mixed) < ALPHA):.1%}")
    print(f"    median p-value: drift-free {np.median(null):.3f}, 20 % new topic {np.median(shifted):.4f}")
    verdict = false_alarms <= 0.01 and power >= 0.95
    print(f"    verdict: {'met' if verdict else 'MISSED'}")


def alert_timing(workdir: Path) -> None:
    """1 sample/s: 30 drift-free minutes, then 20 % of the traffic a new topic; the worker (in process, its own
    code) tests the last 200 every minute; its series each minute are promtool's input for the platform's rule."""
    calm_minutes, shifted_minutes = 30, 15
    reference_texts = topics.mix(BASE, 1000, 21)
    stream = topics.mix(BASE, 60 * calm_minutes, 22) + topics.mix({**BASE, "cooking": 1.0}, 60 * shifted_minutes, 23)
    vectors = encode(reference_texts + stream)
    chars = np.array([len(t) for t in reference_texts + stream], np.int32)
    reference = Reference(vectors[:1000], chars[:1000], np.full(1000, 20, np.int32))
    worker = Worker(WorkerSettings(window=200, seed=5))
    p_values, windows = drift_stream.minute_series(worker, reference, vectors[1000:], chars[1000:], 60)
    print(f"(2) {len(p_values)} minutes at 1 sample/s; the shift at minute {calm_minutes}")
    print("    p-value by minute after the shift: " + ", ".join(f"{p:.3f}" for p in p_values[calm_minutes:] if p))
    if not shutil.which("promtool"):
        print("    promtool is not installed: the alert's timing is not checked (make tools installs it)")
        return
    (workdir / "rules.yaml").write_text(drift_stream.platform_drift_rules(REPO))
    firing_at = None
    for minute in range(5, calm_minutes + shifted_minutes):
        check = [{"eval_time": f"{minute}m", "alertname": "ModelOutputDrift", "exp_alerts": []}]
        test = drift_stream.promtool_test("rules.yaml", p_values, windows, check)
        (workdir / "timing.test.yaml").write_text(json.dumps(test))
        quiet = subprocess.run(["promtool", "test", "rules", "timing.test.yaml"], cwd=workdir, capture_output=True)
        if quiet.returncode != 0:
            firing_at = minute
            break
    if firing_at is None:
        print("    ModelOutputDrift never fired: MISSED")
        return
    after = firing_at - calm_minutes
    met = 0 <= after <= 10
    print(
        f"    ModelOutputDrift (promtool, the platform's rule) first fires at minute {firing_at}: "
        f"{after} min after the shift (target <= 10, never before it): {'met' if met else 'MISSED'}"
    )


def rss_mib(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def tap_cost(seconds: float, rounds: int, workdir: Path) -> None:
    import bench
    import httpx

    worker_port, plain_port, tapped_port, full_port = 18290, 18291, 18292, 18293
    worker = subprocess.Popen(
        [sys.executable, "-m", "modelyard_server.drift_worker", "--host", "127.0.0.1", "--port", str(worker_port)],
        cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tap = ["--model_version", "1", "--tap_url", f"http://127.0.0.1:{worker_port}/v1/samples"]
    plain = bench.Server(plain_port, "--max_queue", "4096")
    tapped = bench.Server(tapped_port, "--max_queue", "4096", *tap, "--tap_share", "0.01")
    servers = {"plain": plain, "tapped": tapped}
    try:
        saturation = bench.closed(plain_port, 64, seconds, workdir)["rps"]
        bench.wait_idle(plain_port)
        rate = 0.8 * saturation
        print(f"(3) saturation without the tap {saturation:.0f} requests/s; open loop at {rate:.0f}/s (80 %)")
        p99: dict[str, list[float]] = {"plain": [], "tapped": []}
        cpu: dict[str, list[float]] = {"plain": [], "tapped": []}
        for _ in range(rounds):
            for name, server in servers.items():
                before = sum(server.cpu_seconds().values())
                run = asyncio.run(bench.open_loop(server.port, rate, seconds))
                bench.wait_idle(server.port)
                p99[name].append(run["p99"])
                cpu[name].append((sum(server.cpu_seconds().values()) - before) / max(run["sent"], 1) * 1e6)
        med = {k: float(np.median(v)) for k, v in p99.items()}
        cpu_med = {k: float(np.median(v)) for k, v in cpu.items()}
        text = httpx.get(f"http://127.0.0.1:{tapped_port}/metrics", timeout=10).text
        sent = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("modelyard_tap_samples_total") and 'outcome="sent"' in line
        )
        print(
            f"    p99 without the tap {med['plain']:.0f} ms, with it {med['tapped']:.0f} ms (medians of {rounds} "
            f"alternating runs): {med['tapped'] / med['plain'] - 1:+.1%} (target <= +2 %); runs "
            f"{', '.join(f'{x:.0f}' for x in p99['tapped'])} vs {', '.join(f'{x:.0f}' for x in p99['plain'])}"
        )
        print(
            f"    CPU per request, all processes: {cpu_med['plain']:.0f} us without, {cpu_med['tapped']:.0f} us with "
            f"({cpu_med['tapped'] / cpu_med['plain'] - 1:+.1%}); {sent:.0f} samples sent to the worker"
        )
    finally:
        tapped.stop()
        plain.stop()
        worker.terminate()
        worker.wait(timeout=30)
    # The worker gone and every answered text sampled: the buffer fills in seconds and the tap drops from then on.
    # RSS after each run, beside a server without a tap, both started afresh, under the same load.
    full = bench.Server(full_port, "--max_queue", "4096", *tap, "--tap_share", "1")
    plain = bench.Server(plain_port, "--max_queue", "4096")
    try:
        trend: dict[str, list[float]] = {"no tap": [], "tap, worker stopped": []}
        for _ in range(2 * rounds):
            for name, server in (("no tap", plain), ("tap, worker stopped", full)):
                asyncio.run(bench.open_loop(server.port, rate, seconds))
                bench.wait_idle(server.port)
                trend[name].append(rss_mib(server.proc.pid))
        text = httpx.get(f"http://127.0.0.1:{full_port}/metrics", timeout=10).text
        dropped = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("modelyard_tap_samples_total") and 'outcome="dropped"' in line
        )
        for name, values in trend.items():
            print(f"    RSS after each {seconds:.0f} s run, {name}: {', '.join(f'{v:.0f}' for v in values)} MiB")
        print(f"    the stopped worker's tap dropped {dropped:.0f} samples")
    finally:
        full.stop()
        plain.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per load run in (3)")
    parser.add_argument("--windows", type=int, default=200, help="drift-free windows tested in (1)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating load runs per server in (3)")
    parser.add_argument("--skip-tap", action="store_true", help="skip (3), the server runs")
    args = parser.parse_args()
    rng = np.random.default_rng(11)
    with tempfile.TemporaryDirectory() as tmp:
        detection(args.windows, rng)
        alert_timing(Path(tmp))
        if not args.skip_tap:
            tap_cost(args.seconds, args.rounds, Path(tmp))


if __name__ == "__main__":
    main()
