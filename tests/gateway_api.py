"""What a Gateway API implementation does with an HTTPRoute, as the specification states it (v1.6.1,
apis/v1/gateway_types.go and httproute_types.go): whether a listener takes a route's hostname (a wildcard label
`*.` is a suffix match: `*.example.com` takes `test.example.com` and `foo.test.example.com`, not `example.com`),
and each backend's share of a rule (its weight over the rule's weights' sum; the weight defaults to 1)."""

from __future__ import annotations

from typing import Any


def listener_takes(listener: str, hostname: str) -> bool:
    """A listener's hostname (exact, or a `*.` suffix) against a route's."""
    if listener.startswith("*."):
        suffix = listener[1:]
        return hostname.endswith(suffix) and len(hostname) > len(suffix)
    return listener == hostname


def shares(rule: dict[str, Any]) -> dict[str, float]:
    """Each backendRef's share of a rule of Services by name (weight defaults to 1). A rule with an Envoy Gateway
    Backend is Envoy Gateway's to share (policies/governance/envoy_gateway.py), not the specification's."""
    refs = list(rule.get("backendRefs", []))
    assert all(r.get("kind", "Service") == "Service" for r in refs), "a rule with Backends: use envoy_gateway"
    total = sum(int(r.get("weight", 1)) for r in refs)
    return {r["name"]: int(r.get("weight", 1)) / total for r in refs} if total else {}
