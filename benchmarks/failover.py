"""Failover drills at 80 % load (modelyard/failover.py): two replicas of the real model server with the bundled
model behind Debian's HAProxy on loopback, the termination the plan renders for the staging embedding model
replayed at full length. Prints each drill's verdict; targets:

- 0 failed requests across a SIGTERM of one of two replicas (its preStop pause, drain and grace period as
  rendered), and what the same SIGTERM without the pause loses beside it;
- a SIGKILL loses at most what was in flight where the balancer tries a refused connection elsewhere, and 0 where
  it replays idempotent calls (behind a bare Service, what it is sent until its readiness fails, beside them);
- a replica cut off in its own network namespace (a lost zone) costs latency, not requests (needs root).

Run from the repository root with the platform environment's python (the model server's own environment must be
built: make test builds both):

    python benchmarks/failover.py [--texts 8] [--load 0.8]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from modelyard import failover
from modelyard import loadtest as lt
from modelyard.programs import PROJECTS
from modelyard.workloads.catalog import load_workloads
from modelyard.workloads.runtimes import PodContext


def rendered(env: str, model: str) -> failover.Termination:
    """The termination the workloads stack renders for `model`'s pod (its runtime's part of the predictor)."""
    entry = next(
        m for m in load_workloads(PROJECTS["workloads"].stack_file(env), stack=env).catalog.models if m.name == model
    )
    ctx = PodContext(storage_uri=f"s3://bucket/{model}/1/", registry="registry/modelyard-server", version="1")
    return failover.Termination.of_pod(entry.runtime_module.pod(entry, ctx))


def capacity(texts: int, seconds: float = 8.0) -> float:
    """Requests a second one replica alone answers (the survivor of a drill carries the load alone: N+1), under an
    open loop past it, counted as answered within the run; its queue holds what it cannot answer yet."""
    workdir = Path(tempfile.mkdtemp(prefix="modelyard-capacity-"))
    replica = failover.Replica(workdir, "alone", drain_s=5, constant=False, python=failover.SERVING_PYTHON)
    try:
        replica.wait_ready()
        target = lt.Target.parse(replica.url, lt.EMBEDDINGS_PATH)
        times = lt.schedule(60, seconds, "constant")
        samples = lt.run(target, lt.embeddings_bodies("minilm", len(times), texts), times, timeout=30)
    finally:
        replica.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return sum(1 for s in samples if s.ok and s.latency is not None and s.scheduled + s.latency <= seconds) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=8, help="texts a request (default 8)")
    parser.add_argument("--load", type=float, default=0.8, help="share of the measured capacity (default 0.8)")
    parser.add_argument("--env", default="staging", help="the catalog whose rendered termination is replayed")
    parser.add_argument("--model", default="minilm")
    args = parser.parse_args()
    termination = rendered(args.env, args.model)
    print(
        f"rendered for {args.model} ({args.env}): preStop {termination.prestop_s:g} s, the server's drain "
        f"{termination.drain_s:g} s, grace period {termination.grace_s:g} s; the balancer drops a replica "
        f"{failover.PROPAGATION_S:g} s after its deletion"
    )
    started = time.time()
    per_second = capacity(args.texts)
    rate = args.load * per_second
    print(
        f"capacity: {per_second:.1f} requests/s of {args.texts} texts answered by one replica alone; load "
        f"{args.load:.0%} of it: {rate:.1f}/s"
    )
    common = {"rate": rate, "texts": args.texts, "constant": False}
    seconds = termination.prestop_s + 10
    drills = [
        failover.terminate(termination, seconds=seconds, event_at=3, **common),
        failover.terminate(
            failover.Termination(0, termination.drain_s, termination.grace_s),
            seconds=10,
            event_at=3,
            name="SIGTERM without the preStop pause",
            **common,
        ),
        failover.kill(seconds=10, event_at=3, kind="service", **common),
        failover.kill(seconds=10, event_at=3, kind="safe", **common),
        failover.kill(seconds=10, event_at=3, kind="idempotent", **common),
    ]
    for drill in drills:
        print(drill.report())
    try:
        print(failover.lose_zone(seconds=10, event_at=3, **common).report())
    except failover.DrillError as exc:
        print(f"lost zone: not run ({exc})")
    print(f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
