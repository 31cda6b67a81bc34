"""Budgets: one exists and notifies, and the estimate's baseline and ceiling stay under it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ..resources import Resource, as_list
from .base import CLUSTER, Context, Finding, stack_rule


def _budget(ctx: Context) -> Resource | None:
    budgets = ctx.stack.of_type("aws:budgets/budget:Budget")
    return budgets[0] if budgets else None


@stack_rule("budget-exists", "The environment has an AWS Budget with actual and forecast notifications.")
def _budget_exists(ctx: Context) -> Iterator[Finding]:
    clusters = ctx.stack.of_type(*CLUSTER)
    if not clusters:
        return  # a workloads-only preview: the platform stack owns the budget
    budget = _budget(ctx)
    if budget is None:
        yield Finding(
            clusters[0].urn, "budget", None, f"no aws:budgets/budget for {ctx.env}; add one (infra/alerts.py)"
        )
        return
    kinds = {
        str(n.get("notificationType"))
        for n in as_list(budget.get("notifications"))
        if isinstance(n, Mapping) and isinstance(n.get("notificationType"), str)
    }
    missing = [k for k in ("ACTUAL", "FORECASTED") if k not in kinds]
    if missing:
        yield Finding(
            budget.urn, "notifications", sorted(k for k in kinds if k), f"add {' and '.join(missing)} notifications"
        )


def _budget_amount(ctx: Context) -> tuple[float, str] | None:
    budget = _budget(ctx)
    amount = budget.get("limitAmount") if budget else None
    if amount is not None:
        try:
            return float(amount), budget.urn if budget else ""
        except (TypeError, ValueError):
            return None
    configured = ctx.param("budget-baseline", "monthlyBudgetUsd")
    return (float(configured), "") if configured else None


def _over_budget(ctx: Context, figure: float, what: str) -> Iterator[Finding]:
    found = _budget_amount(ctx)
    if found is None:
        return
    amount, urn = found
    if figure > amount:
        yield Finding(urn, "limitAmount", amount, f"{what} ${figure:,.2f}/month, over the ${amount:,.2f} budget")


@stack_rule(
    "budget-baseline",
    "The estimated monthly cost at minimum stays under the budget.",
    params={"monthlyBudgetUsd": None},
)
def _budget_baseline(ctx: Context) -> Iterator[Finding]:
    yield from _over_budget(ctx, ctx.estimate.baseline, "the estimated baseline is")


@stack_rule("budget-ceiling", "With every pool at its limit, the estimate stays under the budget.")
def _budget_ceiling(ctx: Context) -> Iterator[Finding]:
    yield from _over_budget(ctx, ctx.estimate.ceiling, "with every pool at its limit the estimate is")
