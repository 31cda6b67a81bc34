"""Network: open ingress, the default security group, VPC flow logs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..resources import Resource, as_list
from .base import OPEN_CIDRS, Context, Finding, resource_rule, stack_rule


def _sg_is_load_balancers(ctx: Context, sg_urn: str) -> bool:
    return any(
        lb.depends_on(sg_urn, "securityGroups")
        for lb in ctx.stack.of_type("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
    )


@resource_rule(
    "no-open-ingress",
    "No ingress from 0.0.0.0/0 or ::/0, except 80/443 on load balancers.",
    (
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    ),
    basic=True,
)
def _open_ingress(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    rules: list[tuple[str, Mapping[str, Any], str | None]] = []
    if r.type == "aws:ec2/securityGroup:SecurityGroup":
        rules = [
            (f"ingress[{i}]", rule, r.urn)
            for i, rule in enumerate(as_list(r.get("ingress")))
            if isinstance(rule, Mapping)
        ]
    elif r.type == "aws:ec2/securityGroupRule:SecurityGroupRule":
        if r.get("type") == "ingress":
            deps = r.property_dependencies.get("securityGroupId", ())
            rules = [("", r.inputs, deps[0] if deps else None)]
    else:
        deps = r.property_dependencies.get("securityGroupId", ())
        single: dict[str, Any] = dict(r.inputs)
        single["cidrBlocks"] = [single.get("cidrIpv4")] if single.get("cidrIpv4") else []
        single["ipv6CidrBlocks"] = [single.get("cidrIpv6")] if single.get("cidrIpv6") else []
        rules = [("", single, deps[0] if deps else None)]
    for path, rule, sg in rules:
        cidrs = [c for c in [*as_list(rule.get("cidrBlocks")), *as_list(rule.get("ipv6CidrBlocks"))] if c in OPEN_CIDRS]
        if not cidrs:
            continue
        ports = (rule.get("fromPort"), rule.get("toPort"))
        web = ports[0] == ports[1] and ports[0] in (80, 443)
        if web and sg and _sg_is_load_balancers(ctx, sg):
            continue
        prefix = f"{path}." if path else ""
        yield (
            f"{prefix}cidrBlocks",
            cidrs,
            f"opens ports {ports[0]}-{ports[1]} to the internet; only 80/443 on a load balancer may be",
        )


@stack_rule("vpc-flow-logs", "Every VPC has flow logs.", basic=True)
def _flow_logs(ctx: Context) -> Iterator[Finding]:
    for vpc in ctx.stack.of_type("aws:ec2/vpc:Vpc"):
        if not ctx.stack.referencing(vpc, "aws:ec2/flowLog:FlowLog"):
            yield Finding(
                vpc.urn, "flowLogs", None, "no aws:ec2/flowLog for this VPC; add one to an encrypted log group"
            )


@resource_rule(
    "default-security-group-empty",
    "The VPC's default security group has no rules.",
    ("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",),
    basic=True,
)
def _default_sg(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    for key in ("ingress", "egress"):
        rules_ = r.get(key)
        if rules_:
            yield key, rules_, "must be empty: nothing should use the default group"
