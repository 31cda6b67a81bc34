"""The policy rules: plain functions over the resources of a preview, one module per domain, one registry.

A resource rule looks at one resource (its type, camelCase inputs, and the stack around it for joins);
a stack rule looks at the whole preview. Each returns `Finding`s naming the field, the bad value and
the fix; `policy.evaluate` turns them into `Violation`s with the rule's enforcement level for the
environment.

Absent fields mean the AWS or Kubernetes default (an EKS endpoint with no `endpointPublicAccess` is
public to 0.0.0.0/0; a KMS key without `enableKeyRotation` does not rotate). Values the engine does not
know yet are skipped, never reported. Shapes vary the way real previews do: policy documents as JSON
strings or objects, `Statement` and `Action` as a value or a list, booleans as `true` or `"true"`.

A new rule goes in its domain's module under `@resource_rule` or `@stack_rule` (from `base`); a new
domain is a module here, imported below. Registration follows import order, which changes no verdict:
reports sort what the rules find.
"""

from __future__ import annotations

from ..conventions import ISVC_LABEL
from . import (  # noqa: F401
    budgets,
    ci,
    cluster,
    compute,
    gateway,
    iam,
    namespaces,
    network,
    pods,
    services,
    storage,
    tags,
)
from .base import ISVC, RULES, SCALED_OBJECT, Context, Finding, Level, Rule, Violation
from .pods import kserve_settings

__all__ = [
    "ISVC",
    "ISVC_LABEL",
    "RULES",
    "SCALED_OBJECT",
    "Context",
    "Finding",
    "Level",
    "Rule",
    "Violation",
    "kserve_settings",
]
