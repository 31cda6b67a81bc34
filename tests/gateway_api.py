"""What a Gateway API implementation does with an HTTPRoute, as the specification states it (v1.6.1,
apis/v1/httproute_types.go): which rule a path matches (PathPrefix: whole path elements, a trailing `/` ignored),
the path a ReplacePrefixMatch rewrite sends on, and each backend's share (its weight over the rule's weights' sum).
Held to the specification's own table (tests/conformance/envoy-gateway-v1.9.0/rewrite_cases.yaml)."""

from __future__ import annotations

from typing import Any


def _elements(path: str) -> list[str]:
    return [e for e in path.split("/") if e]


def prefix_matches(prefix: str, path: str) -> bool:
    """PathPrefix: the prefix's elements are the path's first elements (`/abc` matches `/abc`, `/abc/`, `/abc/def`,
    not `/abcd`)."""
    want = _elements(prefix)
    return _elements(path)[: len(want)] == want


def replace_prefix(path: str, prefix: str, replacement: str) -> str:
    """The path a ReplacePrefixMatch rewrite sends on: the matched elements replaced, the rest kept, a trailing `/`
    of the request kept."""
    assert prefix_matches(prefix, path), (path, prefix)
    rest = _elements(path)[len(_elements(prefix)) :]
    head = replacement.rstrip("/")
    out = head + ("/" + "/".join(rest) if rest else "")
    if path.endswith("/") and rest == [] and head:
        out += "/"
    return out or "/"


def shares(rule: dict[str, Any]) -> dict[str, float]:
    """Each backendRef's share of a rule's traffic by Service name (weight defaults to 1)."""
    refs = rule.get("backendRefs", [])
    total = sum(int(r.get("weight", 1)) for r in refs)
    return {r["name"]: int(r.get("weight", 1)) / total for r in refs} if total else {}
