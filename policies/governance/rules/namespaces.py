"""Namespaces: the Pod Security admission label, default-deny network policy and a CNI that enforces it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..resources import Resource, as_list, dig, document
from .base import ENFORCE, NAMESPACE, NETWORK_POLICY, Context, Finding, _unknown, resource_rule, stack_rule


@resource_rule(
    "namespace-pod-security",
    "Every namespace enforces a Pod Security level; privileged only where allow-listed.",
    (NAMESPACE,),
    basic=True,
    params={"privilegedNamespaces": ["nvidia", "monitoring"]},
)
def _namespace_pss(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    labels = r.get("metadata", "labels")
    if labels is None and _unknown(r.inputs.get("metadata")):
        return
    level = dig(labels, ENFORCE)
    name = r.get("metadata", "name")
    allowed = [str(n) for n in ctx.param("namespace-pod-security", "privilegedNamespaces", [])]
    if level not in ("baseline", "restricted", "privileged"):
        yield f"metadata.labels.{ENFORCE}", level, "set restricted (or baseline)"
    elif level == "privileged" and name not in allowed:
        yield f"metadata.labels.{ENFORCE}", level, f"privileged only in {', '.join(allowed) or 'no namespace'}"


@stack_rule("namespace-network-policy", "Every namespace denies traffic by default, and the CNI enforces it.")
def _namespace_network(ctx: Context) -> Iterator[Finding]:
    denied = {
        dig(p.inputs, "metadata", "namespace")
        for p in ctx.stack.of_type(NETWORK_POLICY)
        if isinstance(dig(p.inputs, "metadata", "namespace"), str)  # an odd value names no namespace
        and dig(p.inputs, "spec", "podSelector") == {}
        and {"Ingress", "Egress"} <= {t for t in as_list(dig(p.inputs, "spec", "policyTypes")) if isinstance(t, str)}
        and not dig(p.inputs, "spec", "ingress")
        and not dig(p.inputs, "spec", "egress")
    }
    for ns in ctx.stack.of_type(NAMESPACE):
        name = ns.get("metadata", "name")
        if isinstance(name, str) and name not in denied:
            yield Finding(ns.urn, "metadata.name", name, "no default-deny NetworkPolicy (podSelector: {}) here")
    for addon in ctx.stack.of_type("aws:eks/addon:Addon"):
        if addon.get("addonName") != "vpc-cni" or _unknown(addon.inputs.get("configurationValues")):
            continue
        values = document(addon.get("configurationValues")) or {}
        if str(values.get("enableNetworkPolicy")).lower() != "true":
            yield Finding(
                addon.urn,
                "configurationValues",
                addon.get("configurationValues"),
                'set {"enableNetworkPolicy": "true"}',
            )
