"""Helpers for tests that read the IAM documents of a plan: every policy, normalised for comparison."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from conftest import Plan

from modelyard.policies.governance.resources import as_list

#: Resource types whose inputs hold an IAM policy document, and the property that holds it.
POLICY_PROPERTIES: Mapping[str, str] = {
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/role:Role": "assumeRolePolicy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:kms/key:Key": "policy",
}


def documents(plan: Plan) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type token, resource name, parsed document) for every IAM document in the plan."""
    for token, prop in POLICY_PROPERTIES.items():
        for state in plan.of_type(token):
            text = state["inputs"].get(prop)
            if text:
                yield token, state["urn"].split("::")[-1], json.loads(text)


def substitute(value: Any, variables: Mapping[str, str]) -> Any:
    """Replace CloudFormation-style `${Name}` placeholders in every string of a reference document."""
    if isinstance(value, str):
        for name, replacement in variables.items():
            value = value.replace("${" + name + "}", replacement)
        return value
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {substitute(k, variables): substitute(v, variables) for k, v in value.items()}
    return value


def normalised(statement: Mapping[str, Any]) -> dict[str, Any]:
    """A statement with list/scalar spellings and ordering made irrelevant, and action names lower-cased
    (IAM action names are case-insensitive: `SNS:Publish` is `sns:Publish`)."""
    conditions = {
        (operator, key): sorted(str(v) for v in as_list(value))
        for operator, block in statement.get("Condition", {}).items()
        for key, value in block.items()
    }
    principal = statement.get("Principal")
    if isinstance(principal, dict):
        principal = {kind: sorted(as_list(who)) for kind, who in principal.items()}
    return {
        "Effect": statement["Effect"],
        "Principal": principal,
        "Action": sorted(a.lower() for a in as_list(statement.get("Action", []))),
        "Resource": sorted(as_list(statement.get("Resource", []))),
        "Condition": dict(sorted(conditions.items())),
    }
