"""Kubernetes RBAC's decision for one request, ported from kubernetes/kubernetes (v1.34 line):
- `pkg/apis/rbac/v1/evaluation_helpers.go`: VerbMatches, APIGroupMatches, ResourceMatches (`*`, an exact
  `resource/subresource`, `*/subresource`), ResourceNameMatches (no names: every name);
- `plugin/pkg/auth/authorizer/rbac/rbac.go`, RuleAllows: a resource request is allowed by a rule that matches its verb,
  API group, resource (with its subresource) and name; and `pkg/registry/rbac/validation/rule.go`,
  VisitRulesFor: a ClusterRoleBinding's rules apply in every namespace, a RoleBinding's only in its own.
Bindings and roles as a plan renders them (camelCase fields)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Request:
    verb: str
    group: str
    resource: str
    namespace: str
    subresource: str = ""
    name: str = ""


def rule_allows(rule: Mapping[str, Any], r: Request) -> bool:
    combined = f"{r.resource}/{r.subresource}" if r.subresource else r.resource
    verbs = rule.get("verbs", [])
    groups = rule.get("apiGroups", [])
    resources = rule.get("resources", [])
    names = rule.get("resourceNames", [])
    return (
        any(v in ("*", r.verb) for v in verbs)
        and any(g in ("*", r.group) for g in groups)
        and any(
            res in ("*", combined)
            or (
                r.subresource
                and len(res) == len(r.subresource) + 2
                and res.startswith("*/")
                and res.endswith(r.subresource)
            )
            for res in resources
        )
        and (not names or r.name in names)
    )


def allowed(
    group: str, request: Request, roles: Iterable[Mapping[str, Any]], bindings: Iterable[Mapping[str, Any]]
) -> bool:
    """Whether a member of `group` may make `request`, given the stack's Roles and RoleBindings."""
    by_key = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in roles}
    for binding in bindings:
        subjects = binding.get("subjects", [])
        if not any(s.get("kind") == "Group" and s.get("name") == group for s in subjects):
            continue
        namespace = binding["metadata"]["namespace"]
        if namespace != request.namespace or binding["roleRef"]["kind"] != "Role":
            continue
        role = by_key.get((namespace, binding["roleRef"]["name"]))
        if role and any(rule_allows(rule, request) for rule in role.get("rules", [])):
            return True
    return False
