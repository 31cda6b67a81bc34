"""`modelyard cost`, `policy` and `diff` through the CLI, as a user's CI runs them, on previews of 1x, 10x,
100x and 500x the prod plan (every copy with its own URNs, GPU pools and dependencies, so the joins of
stack rules do real work; 500x is about 100,000 resources). Each command runs as a user's CI runs it;
the figures are its wall time and the peak of its RSS summed over its processes (`diff` reads its two
documents in two).

Targets: 100,000 resources under 10 s and 1 GiB per command; the per-resource time at 100x
within 1.5x of that at 1x (linear).

    python benchmarks/review_scale.py [--scales 1 10 100 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from governance_scale import prod_digest, replicate


def whole(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """An offline-plan document: every resource, nothing omitted."""
    return {
        "modelyard": {"format": 1, "source": "offline-plan", "env": "prod", "projects": []},
        "steps": steps,
        "changeSummary": {"create": len(steps)},
    }


def head_of(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same stack with a change on every 50th resource (a tag, or a description)."""
    out = json.loads(json.dumps(steps))
    for i, step in enumerate(out):
        inputs = step["newState"]["inputs"]
        if i % 50 == 0 and isinstance(inputs, dict):
            inputs["description"] = f"changed {i}"
    return out


def _tree_rss(pid: int) -> int:
    """Resident KiB of `pid` and every process under it, from /proc (0 once it is gone)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        pending += [int(c) for c in children]
    return total


def run(args: list[str], out: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS and exit code of `modelyard ARGS`. The peak is of the sum over the command's
    processes (`diff` reads its two documents in two), sampled every 5 ms, and never less than the
    largest process's own peak (wait4's rusage)."""
    peak = 0

    def sample(pid: int, done: threading.Event) -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, _tree_rss(pid))

    with out.open("wb") as sink:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "modelyard.cli", *args], stdout=sink, stderr=sink)
        done = threading.Event()
        sampler = threading.Thread(target=sample, args=(child.pid, done))
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{args[0]} failed ({code}): {out.read_text()[-2000:]}")
    return seconds, max(peak, usage.ru_maxrss) / 1024, code


def speed() -> float:
    """Seconds for a fixed pure-Python loop: how fast this machine is right now (a shared machine's speed
    drifts by half from one minute to the next; read the figures against it)."""
    started, total = time.perf_counter(), 0
    for i in range(20_000_000):
        total += i
    return time.perf_counter() - started


def write(scale: int, directory: Path) -> None:
    """base.json and head.json for `scale`; run in its own process, so the measuring process stays small
    (a child's peak RSS on Linux includes what its parent held when it forked)."""
    steps = replicate({"steps": prod_digest()["steps"]}, scale * 193)["steps"]
    (directory / "base.json").write_text(json.dumps(whole(steps)))
    (directory / "head.json").write_text(json.dumps(whole(head_of(steps))))
    print(len(steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100, 500])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command; the median is printed")
    parser.add_argument("--write", nargs=2, metavar=("SCALE", "DIR"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.write:
        write(int(options.write[0]), Path(options.write[1]))
        return
    print(f"machine speed: a fixed pure-Python loop took {speed():.2f} s")
    per_resource: dict[str, dict[int, float]] = {}
    net: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.json"
        empty.write_text(json.dumps(whole([])))
        startup = {
            name: run(args, Path(tmp) / "out.txt")[0]
            for name, args in {
                "cost": ["cost", str(empty)],
                "policy": ["policy", str(empty), "--env", "prod"],
                "diff": ["diff", str(empty), str(empty)],
            }.items()
        }
        print("start-up (an empty preview): " + ", ".join(f"{k} {v:.2f} s" for k, v in startup.items()))
        for scale in options.scales:
            made = subprocess.run(
                [sys.executable, __file__, "--write", str(scale), tmp], capture_output=True, text=True, check=True
            )
            count = int(made.stdout.split()[-1])
            base, head = Path(tmp) / "base.json", Path(tmp) / "head.json"
            print(f"{scale}x: {count:,} resources, {head.stat().st_size / 1e6:,.1f} MB")
            commands = {
                "cost": ["cost", str(head), "--json"],
                "policy": ["policy", str(head), "--env", "prod", "--json"],
                "diff": ["diff", str(base), str(head), "--json"],
            }
            for name, args in commands.items():
                # The median of --repeat runs (a shared machine's speed drifts); the largest peak RSS.
                runs = sorted(run(args, Path(tmp) / "out.txt")[:2] for _ in range(options.repeat))
                seconds, rss = runs[len(runs) // 2][0], max(r[1] for r in runs)
                per_resource.setdefault(name, {})[scale] = seconds / count
                net.setdefault(name, {})[scale] = max(seconds - startup[name], 0.0) / count
                verdict = "met" if seconds < 10 and rss < 1024 else "MISSED"
                print(
                    f"  {name:6} {seconds:7.2f} s  {rss:7.0f} MiB peak RSS, all processes  "
                    f"(100k target < 10 s, < 1 GiB: {verdict})"
                )
    if 1 in options.scales and 100 in options.scales:
        for name, times in per_resource.items():
            ratio = times[100] / times[1]
            verdict = "met" if ratio <= 1.5 else "MISSED"
            print(f"per-resource time, 100x / 1x: {name} {ratio:.2f} (target <= 1.5: {verdict})")
    print(f"machine speed at the end: {speed():.2f} s")
    # Net of start-up, against 100x (at 1x and 10x the net time is a few hundredths of a second: noise).
    largest = max(options.scales)
    for name, times in net.items():
        if 100 in times and largest > 100 and times[100]:
            ratio = times[largest] / times[100]
            print(f"per-resource time net of start-up, {largest}x / 100x: {name} {ratio:.2f} (1.0 is linear)")


if __name__ == "__main__":
    main()
