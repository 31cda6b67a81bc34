"""The port of Envoy Gateway's choice between one cluster and a cluster per backendRef, held to Envoy Gateway's own
translator cases at v1.9.0 (tests/conformance/envoy-gateway-v1.9.0/xds-ir, from `internal/xds/translator/testdata`):
for every route there with more than one backend, the port must make the same choice, and give each backend the
share of requests Envoy's configuration gives it (weighted clusters' weights, or the highest priority's locality
weights in one cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.policies.governance import envoy_gateway as eg

CASES = Path(__file__).parent / "conformance" / "envoy-gateway-v1.9.0" / "xds-ir"


def _setting(raw: dict[str, Any]) -> eg.Setting:
    tls = raw.get("tls") or {}
    return eg.Setting(
        name=raw["name"],
        weight=int(raw.get("weight", 1)),
        address_type=raw.get("addressType"),
        has_endpoints=bool(raw.get("endpoints")),
        filters=raw.get("filters") is not None,
        protocol=raw.get("protocol", "HTTP"),
        force_http1_upstream=bool(raw.get("forceHTTP1Upstream")),
        auto_sni=bool(tls.get("autoSNIFromEndpointHostname")),
        prefer_local=raw.get("preferLocal") is not None,
        priority=int(raw.get("priority", 0)),
        invalid=bool(raw.get("invalid")),
        needs_no_endpoints=bool(raw.get("isDynamicResolver") or raw.get("isCustomBackend")),
    )


def _walk(value: Any) -> Any:
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def _cases() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((CASES / "in").glob("*.yaml")):
        ir = yaml.safe_load(path.read_text()) or {}
        for listener in ir.get("http") or []:
            for route in listener.get("routes") or []:
                destination = route.get("destination") or {}
                if len(destination.get("settings") or []) > 1 and not destination.get("backendClusterRefs"):
                    found.append((path.stem, route))
    return found


def _route_action(case: str, name: str) -> dict[str, Any]:
    routes = yaml.safe_load((CASES / "out" / f"{case}.routes.yaml").read_text())
    [action] = [r["route"] for r in _walk(routes) if r.get("name") == name and isinstance(r.get("route"), dict)]
    return action


def _localities(case: str, cluster: str) -> list[dict[str, Any]]:
    endpoints = yaml.safe_load((CASES / "out" / f"{case}.endpoints.yaml").read_text())
    [assignment] = [e for e in endpoints if e["clusterName"] == cluster]
    return list(assignment["endpoints"])


CASE_LIST = _cases()


def test_the_vendored_cases_cover_both_choices() -> None:
    choices = {"weightedClusters" in _route_action(case, route["name"]) for case, route in CASE_LIST}
    assert len(CASE_LIST) >= 20 and choices == {True, False}


@pytest.mark.parametrize(("case", "route"), CASE_LIST, ids=[f"{c}:{r['name']}" for c, r in CASE_LIST])
def test_the_port_chooses_and_shares_as_envoy_gateway_does(case: str, route: dict[str, Any]) -> None:
    settings = [_setting(s) for s in route["destination"]["settings"]]
    lb = (route.get("traffic") or {}).get("loadBalancer") or {}
    prefer_local = lb.get("preferLocal") is not None or bool(lb.get("weightedZones"))
    action = _route_action(case, route["name"])
    split = eg.needs_cluster_per_setting(settings, route_prefer_local=prefer_local)
    assert split == ("weightedClusters" in action)
    got = eg.shares(settings, route_prefer_local=prefer_local)
    if split:
        clusters = action["weightedClusters"]["clusters"]
        total = sum(c["weight"] for c in clusters)
        assert got == pytest.approx({c["name"]: c["weight"] / total for c in clusters})
        return
    localities = _localities(case, action["cluster"])
    top = min(loc.get("priority", 0) for loc in localities)
    level = [loc for loc in localities if loc.get("priority", 0) == top]
    total = sum(loc["loadBalancingWeight"] for loc in level)
    assert got == pytest.approx({loc["locality"]["region"]: loc["loadBalancingWeight"] / total for loc in level})


def test_a_fallback_in_one_cluster_waits_and_then_takes_all() -> None:
    stable = eg.Setting(name="stable", kind="Backend", weight=90, address_type=eg.FQDN)
    canary = eg.Setting(name="canary", kind="Backend", weight=10, address_type=eg.FQDN)
    fallback = eg.Setting(name="fallback", kind="Backend", weight=1, address_type=eg.FQDN, priority=1)
    assert eg.shares([stable, canary, fallback]) == pytest.approx({"stable": 0.9, "canary": 0.1})
    assert eg.failover_shares([stable, canary, fallback]) == {"fallback": 1.0}


def test_a_fallback_beside_services_takes_a_share_and_cannot_take_over() -> None:
    """A Service's endpoints are addresses, a fallback's a hostname: Envoy Gateway splits the rule, the fallback gets
    1 request in 101 while the model is healthy, and once the model's pods are gone their share is errors."""
    stable = eg.Setting(name="stable", weight=100, address_type=eg.IP)
    fallback = eg.Setting(name="fallback", kind="Backend", weight=1, address_type=eg.FQDN, priority=1)
    assert eg.shares([stable, fallback]) == pytest.approx({"stable": 100 / 101, "fallback": 1 / 101})
    assert eg.failover_shares([stable, fallback]) == pytest.approx(
        {eg.INVALID_BACKEND_CLUSTER: 100 / 101, "fallback": 1 / 101}
    )
    # Even at the same address type, a Service with no ready pod splits the rule.
    ip_fallback = eg.Setting(name="fallback", kind="Backend", weight=1, address_type=eg.IP, priority=1)
    assert eg.shares([stable, ip_fallback]) == pytest.approx({"stable": 1.0})
    assert eg.failover_shares([stable, ip_fallback])[eg.INVALID_BACKEND_CLUSTER] == pytest.approx(100 / 101)
    assert "HasMixedEndpoints" in eg.split_reasons([stable, fallback])[0]
