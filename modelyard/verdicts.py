"""What a reviewer reads about cost and policy: the text `modelyard cost`, `modelyard policy` and
`modelyard plan` print. The figures come from `policies/governance` (one rule set, one estimator)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from modelyard.policies.governance.cost import DEFAULT_REGION, Estimate
from modelyard.policies.governance.policy import Report

if TYPE_CHECKING:
    from modelyard.workloads.catalog import ModelEntry


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def cost_text(est: Estimate, *, top: int = 8) -> str:
    out = [
        f"Monthly cost estimate ({est.region}, {est.hours_per_month} h/month, AWS list prices)",
        f"  {'':<58}{'baseline':>12} {'ceiling':>12}",
    ]
    for layer, (baseline, ceiling) in est.by_layer().items():
        if baseline or ceiling:
            out.append(f"  {layer:<58}{_usd(baseline):>12} {_usd(ceiling):>12}")
    out.append(f"  {'total':<58}{_usd(est.baseline):>12} {_usd(est.ceiling):>12}")
    priced = sorted((i for i in est.items if i.baseline or i.ceiling), key=lambda i: (-i.ceiling, i.urn))
    if priced:
        out.append(f"  largest items (of {len(priced)} priced):")
        for item in priced[:top]:
            name = item.urn.rsplit("::", 1)[-1]
            out.append(f"    {name:<28}{_usd(item.baseline):>12} {_usd(item.ceiling):>12}  {item.basis}")
    u = est.usage
    out.append(
        "  usage assumptions (policies/governance/usage.yaml): "
        f"NAT {u.nat_gateway_gb_per_month:g} GB/month each, "
        f"endpoints {u.interface_endpoint_gb_per_month:g} GB/month each, "
        f"model store {u.model_store_gb:g} GB (a replica as much), pushed {u.model_push_gb_per_month:g} GB/month, "
        f"other buckets {u.other_bucket_gb:g} GB, "
        f"logs {u.log_ingest_gb_per_month:g} GB/month + {u.log_storage_gb:g} GB kept per group, "
        f"ECR {u.ecr_storage_gb:g} GB, CI runner {u.ci_runner_minutes_per_month:g} build minutes/month"
    )
    out += [f"  note: {n}" for n in est.notes]
    missing = sorted({i.type for i in est.not_priced()})
    out.append(f"  not priced: {', '.join(missing) if missing else 'nothing'}")
    return "\n".join(out) + "\n"


def unit_cost_text(models: Iterable[ModelEntry], pools: Any, region: str) -> str:
    """What a unit of work (for an LLM, a million generated tokens) costs each model whose runtime states a
    throughput: one replica's GPUs at the cheapest price per GPU of its pool's instance types, over what the
    runtime assumes one replica serves on the pool's GPU class. Empty when no model has such a unit."""
    from modelyard.policies.governance.gpus import GPU_CLASSES
    from modelyard.policies.governance.prices import price_book

    book = price_book()
    region = region if region in book.regions else DEFAULT_REGION
    by_name = {str(p.get("name")): p for p in pools or [] if isinstance(p, Mapping)}
    lines = []
    for m in models:
        gpu = m.resources.gpu
        pool = by_name.get(gpu.pool) if gpu else None
        if gpu is None or pool is None or pool.get("gpuClass") not in GPU_CLASSES:
            continue
        throughput = m.runtime_module.throughput(m, GPU_CLASSES[pool["gpuClass"]])
        if throughput is None:
            continue
        priced = []
        for name in pool.get("instanceTypes", []):
            usd, gpus = book.ec2_hourly(region, name), book.gpus(name)
            if usd and gpus:
                priced.append((usd / gpus, name))
        if not priced:
            lines.append(f"  {m.name} on {gpu.pool}: no instance type of the pool is priced in {region}")
            continue
        per_gpu, cheapest = min(priced)
        per_million = per_gpu * gpu.count / (throughput.per_second * 3600 / 1e6)
        line = (
            f"  {m.name} on {gpu.pool}: about {throughput.per_second:,.0f} {throughput.unit}/s per replica, "
            f"{_usd(per_million)} per million on-demand ({gpu.count} x {_usd(per_gpu)}/GPU-hour on {cheapest})"
        )
        if "spot" in pool.get("capacityTypes", []):
            line += f", {_usd(per_million * (1 - book.spot_discount))} on spot"
        lines += [line, f"    assumed: {throughput.assumption}"]
    if not lines:
        return ""
    head = f"Cost per unit of work ({region}, list prices; the throughput is an assumption, not a measurement)"
    return "\n".join([head, *lines]) + "\n"


def policy_text(report: Report, source: str) -> str:
    out = [
        f"Policy ({source}): {report.rules_run} rules, {len(report.mandatory)} mandatory and "
        f"{len(report.advisory)} advisory violation(s)"
    ]
    for v in report.violations:
        value = repr(v.value)
        value = value if len(value) <= 60 else value[:57] + "..."
        out.append(f"  {v.level.upper():<9} {v.rule}: {v.urn.rsplit('::', 1)[-1]} {v.field} = {value}")
        out.append(f"            {v.message}")
    if not report.violations:
        out.append("  no violations")
    return "\n".join(out) + "\n"
