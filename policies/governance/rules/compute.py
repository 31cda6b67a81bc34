"""Nodes: IMDSv2 and its hop limit, EBS encryption, the GPU allow-list and caps, GPU demand per pool, Karpenter's
disruption budgets."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from .. import karpenter
from ..conventions import GPU_POOL_LABEL
from ..cost import GPU, pinned_gpu_pods
from ..prices import price_book
from ..resources import Resource, as_list
from .base import NODE_CLASS, NODE_POOL, Context, Finding, _count, _true, _unknown, resource_rule, stack_rule


@stack_rule(
    "gpu-pool-demand-within-limit",
    "The GPUs that workloads pin to a pool fit within its GPU limit (the rest would stay Pending).",
)
def _gpu_pool_demand(ctx: Context) -> Iterator[Finding]:
    demand = pinned_gpu_pods(ctx.stack)
    for pool in ctx.stack.of_type(NODE_POOL):
        name = str(pool.get("spec", "template", "metadata", "labels", GPU_POOL_LABEL) or pool.get("metadata", "name"))
        limit = _count(pool.get("spec", "limits", GPU))
        wanted = sum(demand.get(name, ()))
        if limit is not None and wanted > limit:
            yield Finding(
                pool.urn,
                f"spec.limits.{GPU}",
                limit,
                f"workloads pin {wanted} GPUs to pool {name!r}, over its limit of {limit}: {wanted - limit} would "
                "stay Pending; raise the pool's max_gpus or lower the models' replicas",
            )


@resource_rule(
    "imdsv2-required",
    "Instances require IMDSv2 tokens.",
    ("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance", NODE_CLASS),
    basic=True,
)
def _imdsv2(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if r.type == NODE_CLASS:
        tokens = r.get("spec", "metadataOptions", "httpTokens")
        if tokens not in (None, "required"):  # Karpenter defaults to required
            yield "spec.metadataOptions.httpTokens", tokens, "must be required"
        return
    if _unknown(r.inputs.get("metadataOptions")):
        return
    tokens = r.get("metadataOptions", "httpTokens")
    if tokens != "required":
        yield "metadataOptions.httpTokens", tokens or "optional (default)", "must be required (IMDSv2)"


@resource_rule(
    "ebs-encrypted",
    "Every EBS volume and block-device mapping is encrypted.",
    (
        "aws:ec2/launchTemplate:LaunchTemplate",
        "aws:ebs/volume:Volume",
        "aws:ec2/instance:Instance",
        NODE_CLASS,
        "kubernetes:storage.k8s.io/v1:StorageClass",
    ),
    basic=True,
)
def _ebs(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if r.type == "aws:ebs/volume:Volume":
        if not _true(r.get("encrypted")) and not _unknown(r.inputs.get("encrypted")):
            yield "encrypted", r.get("encrypted"), "must be true"
    elif r.type == "aws:ec2/instance:Instance":
        if r.get("rootBlockDevice") is not None and not _true(r.get("rootBlockDevice", "encrypted")):
            yield "rootBlockDevice.encrypted", r.get("rootBlockDevice", "encrypted"), "must be true"
    elif r.type == "kubernetes:storage.k8s.io/v1:StorageClass":
        if r.get("provisioner") == "ebs.csi.aws.com" and r.get("parameters", "encrypted") != "true":
            yield "parameters.encrypted", r.get("parameters", "encrypted"), 'must be "true"'
    else:
        mappings = r.get("spec", "blockDeviceMappings") if r.type == NODE_CLASS else r.get("blockDeviceMappings")
        prefix = "spec.blockDeviceMappings" if r.type == NODE_CLASS else "blockDeviceMappings"
        for i, mapping in enumerate(as_list(mappings)):
            ebs = mapping.get("ebs") if isinstance(mapping, Mapping) else None
            if isinstance(ebs, Mapping) and not _true(ebs.get("encrypted")) and not _unknown(ebs.get("encrypted")):
                yield (
                    f"{prefix}[{i}].ebs.encrypted",
                    ebs.get("encrypted"),
                    'must be true (the schema takes the string "true")',
                )


def _nodepool_values(r: Resource, key: str) -> list[str]:
    for req in as_list(r.get("spec", "template", "spec", "requirements")):
        if isinstance(req, Mapping) and req.get("key") == key and req.get("operator") == "In":
            return [str(v) for v in as_list(req.get("values"))]
    return []


@resource_rule(
    "gpu-instance-allowlist",
    "GPU instance and capacity types are allow-listed per environment.",
    (NODE_POOL, "aws:eks/nodeGroup:NodeGroup"),
    params={"instanceTypes": [], "capacityTypes": ["on-demand", "spot"]},
)
def _gpu_allowlist(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    allowed_types = set(ctx.param("gpu-instance-allowlist", "instanceTypes", []))
    allowed_caps = set(ctx.param("gpu-instance-allowlist", "capacityTypes", ["on-demand", "spot"]))
    if r.type == NODE_POOL:
        types = _nodepool_values(r, "node.kubernetes.io/instance-type")
        caps = _nodepool_values(r, "karpenter.sh/capacity-type")
        field_types, field_caps = (
            "spec.template.spec.requirements[instance-type]",
            "spec.template.spec.requirements[capacity-type]",
        )
    else:
        types = [str(t) for t in as_list(r.get("instanceTypes"))]
        cap = r.get("capacityType")
        caps = ["spot" if cap == "SPOT" else "on-demand"]
        field_types, field_caps = "instanceTypes", "capacityType"
        if not any(_is_gpu_type(t) for t in types):
            return
    bad = [t for t in types if _is_gpu_type(t) and allowed_types and t not in allowed_types]
    if bad:
        yield field_types, bad, f"not allowed in {ctx.env}; allowed: {', '.join(sorted(allowed_types))}"
    bad_caps = [c for c in caps if c not in allowed_caps]
    if bad_caps:
        yield field_caps, bad_caps, f"not allowed in {ctx.env}; allowed: {', '.join(sorted(allowed_caps))}"


def _is_gpu_type(instance_type: str) -> bool:
    gpus = price_book().gpus(instance_type)
    if gpus is not None:
        return gpus > 0
    # Unpriced: judge by family (EC2's accelerated-computing g* and p* families), never let it pass unseen.
    return bool(re.match(r"^[gp]\d", instance_type))


@stack_rule(
    "gpu-capacity-cap", "All GPU pools together stay under the environment's GPU cap.", params={"maxGpus": None}
)
def _gpu_cap(ctx: Context) -> Iterator[Finding]:
    cap = ctx.param("gpu-capacity-cap", "maxGpus")
    if cap is None:
        return
    total, parts = 0, []
    for pool in ctx.stack.of_type(NODE_POOL):
        limit = _count(pool.get("spec", "limits", GPU))
        if limit is not None:
            total += limit
            parts.append(f"{pool.name} {limit}")
    for group in ctx.stack.of_type("aws:eks/nodeGroup:NodeGroup"):
        types = as_list(group.get("instanceTypes"))
        most = _count(group.get("scalingConfig", "maxSize"))
        gpus = max((price_book().gpus(str(t)) or 0 for t in types), default=0)
        if gpus and most is not None:
            total += most * gpus
            parts.append(f"{group.name} {most * gpus}")
    if total > int(cap):
        urn = ctx.stack.of_type(NODE_POOL)[0].urn if ctx.stack.of_type(NODE_POOL) else ""
        yield Finding(
            urn,
            "spec.limits.nvidia.com/gpu",
            total,
            f"GPU pools add up to {total} GPUs ({', '.join(parts)}), over the {ctx.env} cap of {cap}",
        )


@resource_rule(
    "imds-hop-limit",
    "Instance metadata answers the node only (hop limit 1): pods cannot reach node credentials.",
    ("aws:ec2/launchTemplate:LaunchTemplate", NODE_CLASS),
    basic=True,
)
def _hop_limit(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    path = ("spec", "metadataOptions") if r.type == NODE_CLASS else ("metadataOptions",)
    if _unknown(r.inputs.get(path[0])):
        return
    hops = _count(r.get(*path, "httpPutResponseHopLimit"))
    if hops is None and r.type == NODE_CLASS:
        return  # Karpenter's default is 1
    if hops != 1:
        yield ".".join((*path, "httpPutResponseHopLimit")), hops, "must be 1"


@resource_rule(
    "karpenter-disruption-budget",
    "Karpenter never disrupts every node of a pool at once, and still replaces drifted nodes: with the "
    "budgets that are always active (a scheduled one may be off), a pool of `nodes` nodes keeps at least one "
    "through consolidation and drift, and drift (a new AMI, a changed NodeClass) may take at least one node "
    "(budgets read as Karpenter v1.12.1 reads them, policies/governance/karpenter.py).",
    (NODE_POOL,),
    params={"nodes": 2},
)
def _disruption_budget(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    disruption = r.get("spec", "disruption")
    if _unknown(disruption) or (disruption is not None and not isinstance(disruption, Mapping)):
        return
    budgets = None if disruption is None else disruption.get("budgets")
    if _unknown(budgets):
        return
    if budgets is not None and not all(isinstance(b, Mapping) for b in as_list(budgets)):
        yield "spec.disruption.budgets", budgets, "must be a list of budgets ({nodes, reasons, schedule, duration})"
        return
    budgets = None if budgets is None else as_list(budgets)
    nodes = int(ctx.param("karpenter-disruption-budget", "nodes", 2))
    for reason in karpenter.REASONS:
        allowed = karpenter.allowed_disruptions(budgets, nodes, reason)
        if allowed >= nodes:
            yield (
                "spec.disruption.budgets",
                budgets,
                f"let Karpenter disrupt all {nodes} nodes of a {nodes}-node pool at once for {reason}: add an "
                'always-active budget below that (e.g. {nodes: "10%"}, which Karpenter rounds up to one node)',
            )
            return
    if karpenter.allowed_disruptions(budgets, nodes, "Drifted") < 1:
        yield (
            "spec.disruption.budgets",
            budgets,
            "let no drifted node be replaced, ever (an always-active budget of 0 nodes for Drifted): node image "
            "and NodeClass changes would never roll; allow one node (a scheduled budget of 0 can still keep drift "
            "out of busy hours)",
        )
