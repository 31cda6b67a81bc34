"""Failover for real, on loopback (modelyard/failover.py): two model-server replicas with the bundled model behind
Debian's HAProxy, under open-loop load, while one is deleted as the plan renders its termination, deleted without
its preStop pause (the failing verdict), killed, or cut off in a network namespace of the test's own making. The
rendered times are replayed at a tenth (the order of the events is what is judged); benchmarks/failover.py runs
them at full length and 80 % load."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Plan

from modelyard import failover
from modelyard.policies.governance import kserve
from modelyard.policies.governance.resources import Stack, from_preview
from modelyard.policies.governance.rules import kserve_settings

ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
#: 20 requests a second of 8 texts: about 70 % of what two replicas of the real model answer here.
LOAD = {"rate": 20.0, "seconds": 4.0, "event_at": 1.5, "texts": 8, "constant": False}


def rendered_pod(plan: Plan, name: str) -> dict[str, Any]:
    """The pod KServe builds from the plan's InferenceService (its controller's merge, ported)."""
    [isvc] = [s["inputs"] for s in plan.of_type(ISVC) if s["inputs"]["metadata"]["name"] == name]
    return kserve.model_pod(isvc, kserve_settings(Stack(from_preview(plan.digest))))


def test_a_sigterm_as_the_plan_renders_it_loses_nothing_and_one_without_its_pause_loses_requests(
    all_plans: dict[str, Plan],
) -> None:
    termination = failover.Termination.of_pod(rendered_pod(all_plans["prod"], "minilm")["spec"])
    # What rule model-pod-termination asks, on the pod as KServe builds it.
    assert termination.prestop_s > failover.PROPAGATION_S
    assert termination.grace_s > termination.prestop_s + termination.drain_s
    # Behind a bare Service (kube-proxy retries nothing): the pause alone keeps every request answered.
    drill = failover.terminate(termination, scale=0.1, kind="service", **LOAD)  # type: ignore[arg-type]
    print(drill.report())
    assert drill.ok and drill.lost == 0, drill.report()
    assert "exited 0" in drill.report()
    # SIGTERM at the deletion, while the endpoints still route to it: refused, or 503 on a connection it had open.
    bare = failover.Termination(0, termination.drain_s, termination.grace_s)
    failing = failover.terminate(bare, scale=0.1, kind="service", name="SIGTERM without a pause", **LOAD)  # type: ignore[arg-type]
    print(failing.report())
    assert not failing.ok and failing.lost > 0 and "FAIL" in failing.report()


def test_a_killed_replica_loses_nothing_where_idempotent_calls_are_replayed() -> None:
    drill = failover.kill(kind="idempotent", **LOAD)  # type: ignore[arg-type]
    print(drill.report())
    assert drill.ok and drill.lost == 0 and drill.allowed == 0


def test_a_lost_zone_costs_latency_not_requests() -> None:
    try:
        drill = failover.lose_zone(**LOAD)  # type: ignore[arg-type]
    except failover.DrillError as exc:
        # A machine that grants no network namespaces (a container without CAP_NET_ADMIN) cannot run it at all.
        if "Operation not permitted" in str(exc) or "Permission denied" in str(exc):
            pytest.skip(f"no network namespace can be made here: {exc}")
        raise
    print(drill.report())
    assert drill.ok and drill.lost == 0
    latencies = [s.latency for s in drill.samples if s.latency is not None]
    # What the cut-off replica held waited for the balancer's server timeout before it was replayed.
    assert max(latencies) > 0.5
