"""IAM semantics the engine does not check, judged from AWS's own action tables as parliament ships them.

- every action named (wildcards expanded) exists;
- an `aws:ResourceTag/...` condition on the resource an action is creating can never match (the resource
  has no tags yet), unless the operator is an ...IfExists one;
- an `aws:RequestTag/...` or `aws:TagKeys` condition on an action that takes no tags can never match.

The tables (parliament's iam_definition.json, from AWS's Service Authorization Reference) say which
condition keys each action and resource type accepts; nothing here is a hand-written action list.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import parliament
from iam_docs import as_list

TAG_ON_CREATE = "aws:RequestTag/${TagKey}"


@cache
def _services() -> Mapping[str, Mapping[str, Any]]:
    return {s["prefix"]: s for s in parliament.iam_definition}


def privilege(action: str) -> Mapping[str, Any] | None:
    prefix, _, name = action.partition(":")
    service = _services().get(prefix.lower())
    if service is None:
        return None
    return next((p for p in service["privileges"] if p["privilege"].lower() == name.lower()), None)


def expand(action: str) -> list[str]:
    """`ec2:Describe*` → every EC2 action it names; an unknown action → []."""
    try:
        expanded = parliament.expand_action(action, raise_exceptions=True)
        return sorted({f"{a['service']}:{a['action']}" for a in expanded})
    except (parliament.UnknownActionException, parliament.UnknownPrefixException):
        return []


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def created_resource_types(action: str) -> set[str]:
    """Resource types this action creates: those it takes creation tags for and cannot read tags from, and
    for `CreateX`, resource type `x` when the action takes creation tags at all."""
    found = privilege(action)
    if found is None:
        return set()
    rows = found["resource_types"]
    action_keys = {k for r in rows if r["resource_type"] == "" for k in r["condition_keys"]}
    created = {
        r["resource_type"].rstrip("*")
        for r in rows
        if r["resource_type"]
        and TAG_ON_CREATE in r["condition_keys"]
        and "aws:ResourceTag/${TagKey}" not in r["condition_keys"]
    }
    name = action.split(":", 1)[1]
    if name.startswith("Create") and TAG_ON_CREATE in action_keys:
        created.add(_kebab(name.removeprefix("Create")))
    return created


def accepts_request_tags(action: str) -> bool:
    found = privilege(action)
    return found is not None and any(TAG_ON_CREATE in r["condition_keys"] for r in found["resource_types"])


def _resource_types_of(arn: str, action: str) -> set[str]:
    """The resource types of `action` that the statement resource `arn` can name."""
    found = privilege(action)
    if found is None or arn == "*":
        return set()
    prefix = action.split(":", 1)[0].lower()
    # The tables write ARN formats with ${Placeholders}; parliament matches them as globs.
    formats = {r["resource"]: re.sub(r"\$\{.*?\}", "*", r["arn"]) for r in _services()[prefix]["resources"]}
    return {
        r["resource_type"].rstrip("*")
        for r in found["resource_types"]
        if r["resource_type"]
        and r["resource_type"].rstrip("*") in formats
        and parliament.is_arn_match(r["resource_type"].rstrip("*"), formats[r["resource_type"].rstrip("*")], arn)
    }


def findings(document: Mapping[str, Any]) -> Iterator[str]:
    """One line per problem in an identity or resource policy."""
    for index, statement in enumerate(as_list(document.get("Statement", []))):
        where = statement.get("Sid", f"statement {index}")
        actions = as_list(statement.get("Action", []))
        for action in actions:
            if action != "*" and not expand(action):
                yield f"{where}: {action} is not an AWS action"
        conditions = statement.get("Condition", {})
        tag_keys = [
            (operator, key)
            for operator, block in conditions.items()
            for key in block
            if not operator.endswith("IfExists")
        ]
        resources = as_list(statement.get("Resource", "*"))
        for action in (a for pattern in actions if pattern != "*" for a in expand(pattern)):
            created = created_resource_types(action)
            named = set().union(*(_resource_types_of(str(arn), action) for arn in resources))
            for operator, key in tag_keys:
                if key.startswith("aws:ResourceTag/") and created & named and named <= created:
                    yield (
                        f"{where}: {operator} {key} can never match {action}: it creates "
                        f"{', '.join(sorted(created & named))}, which has no tags yet (use aws:RequestTag)"
                    )
                if (key.startswith("aws:RequestTag/") or key == "aws:TagKeys") and not accepts_request_tags(action):
                    yield f"{where}: {operator} {key} can never match {action}: it takes no tags"
