"""Namespaces: the Pod Security admission label, default-deny network policy and a CNI that enforces it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..resources import Resource, as_list, as_name, dig, document
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


ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
#: The Kubernetes groups teams' roles map to (workloads/team_access.py).
TEAM_GROUP_PREFIX = "modelyard:team:"
READ_VERBS = frozenset({"get", "list", "watch"})


def _team_subjects(binding: Resource) -> list[str]:
    return [
        str(dig(s, "name"))
        for s in as_list(binding.get("subjects"))
        if dig(s, "kind") == "Group" and str(dig(s, "name")).startswith(TEAM_GROUP_PREFIX)
    ]


@stack_rule(
    "team-access-read-only",
    "A team's group (modelyard:team:<team>) is bound only inside a namespace, and only to a Role of this stack that "
    "reads: get, list and watch, never Secrets, never every resource or every verb. Teams change models through the "
    "catalog, a reviewed change.",
)
def _team_access(ctx: Context) -> Iterator[Finding]:
    for binding in ctx.stack.of_type(CLUSTER_ROLE_BINDING):
        for group in _team_subjects(binding):
            yield Finding(binding.urn, "subjects", group, "binds a team across the whole cluster")
    roles = {
        (as_name(r.get("metadata", "namespace")), as_name(r.get("metadata", "name"))): r
        for r in ctx.stack.of_type(ROLE)
    }
    for binding in ctx.stack.of_type(ROLE_BINDING):
        groups = _team_subjects(binding)
        if not groups:
            continue
        ref = binding.get("roleRef")
        if dig(ref, "kind") != "Role":
            yield Finding(
                binding.urn, "roleRef.kind", dig(ref, "kind"), f"binds {groups[0]} to a ClusterRole, not a Role here"
            )
            continue
        role = roles.get((as_name(binding.get("metadata", "namespace")), as_name(dig(ref, "name"))))
        if role is None:
            yield Finding(binding.urn, "roleRef.name", dig(ref, "name"), "names no Role this stack makes")
            continue
        for i, rule in enumerate(as_list(role.get("rules"))):
            verbs = {str(v) for v in as_list(dig(rule, "verbs"))}
            resources = {str(r) for r in as_list(dig(rule, "resources"))}
            if not verbs <= READ_VERBS:
                yield Finding(
                    role.urn,
                    f"rules[{i}].verbs",
                    sorted(verbs - READ_VERBS),
                    f"lets {groups[0]} do more than read (get, list, watch)",
                )
            if resources & {"secrets", "*"} or "*" in {str(g) for g in as_list(dig(rule, "apiGroups"))}:
                yield Finding(
                    role.urn,
                    f"rules[{i}].resources",
                    sorted(resources & {"secrets", "*"}) or ["*"],
                    f"lets {groups[0]} read Secrets or every resource",
                )
