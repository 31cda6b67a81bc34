"""How many nodes of a NodePool Karpenter may disrupt at once: its disruption budgets, as Karpenter reads them.

Ported from kubernetes-sigs/karpenter v1.12.1 (the core the pinned chart 1.12.1 runs), `pkg/apis/v1/nodepool.go`:
`GetAllowedDisruptionsByReason` (the minimum over the active budgets that apply to a reason; a budget without
`reasons` applies to every reason; none active: unbounded) and `Budget.GetAllowedDisruptions` (a count as
given, a percentage of the pool's nodes rounded up, as Kubernetes rounds a PDB's maxUnavailable; a value that
does not parse fails closed, 0). Whether a scheduled budget is active is the caller's question (upstream walks
a cron schedule back by its duration): `active` answers it per budget. The CRD's defaults apply first: no
`budgets` at all is one budget of 10 %. tests/test_policy_rules.py runs upstream's own cases of
`pkg/apis/v1/nodepool_budgets_test.go` against this port. Standard library only (the policy pack loads it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

#: The disruption reasons a budget may name (upstream's DisruptionReason constants).
REASONS: Final = ("Empty", "Underutilized", "Drifted")
#: The CRD's default when a NodePool sets no budgets (`+kubebuilder:default:={{nodes: "10%"}}`).
DEFAULT_BUDGETS: Final = ({"nodes": "10%"},)
#: upstream returns math.MaxInt32 when no active budget bounds a reason.
UNBOUNDED: Final = 2**31 - 1
#: The CRD's pattern for `nodes`.
NODES_PATTERN: Final = re.compile(r"^((100|[0-9]{1,2})%|[0-9]+)$")


def always_active(budget: Mapping[str, Any]) -> bool:
    """A budget without schedule and duration is always active (upstream's IsActive)."""
    return budget.get("schedule") is None and budget.get("duration") is None


def budget_allows(budget: Mapping[str, Any], nodes: int) -> int:
    """Nodes one active budget lets be disrupted at once in a pool of `nodes` nodes."""
    value = str(budget.get("nodes", "10%"))
    if not NODES_PATTERN.match(value):
        return 0
    if value.endswith("%"):
        return math.ceil(int(value[:-1]) * nodes / 100)
    return int(value)


def allowed_disruptions(
    budgets: Iterable[Mapping[str, Any]] | None,
    nodes: int,
    reason: str,
    active: Callable[[Mapping[str, Any]], bool] = always_active,
) -> int:
    """The nodes Karpenter may disrupt at once for `reason` in a pool of `nodes` nodes."""
    allowed = UNBOUNDED
    for budget in DEFAULT_BUDGETS if budgets is None else budgets:
        if not active(budget):
            continue
        reasons = budget.get("reasons")
        if reasons is None or reason in reasons:
            allowed = min(allowed, budget_allows(budget, nodes))
    return allowed
