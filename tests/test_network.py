"""Network: subnets per AZ, NAT per config, private endpoints, flow logs, locked default SG."""

from __future__ import annotations

import json

from conftest import Plan

NET = "modelyard:infra:Network"


def test_subnets_per_az_and_private_nodes(plans: dict[str, Plan]) -> None:
    for env, az in (("dev", 2), ("prod", 3)):
        plan = plans[env]
        subnets = plan.of_type("aws:ec2/subnet:Subnet")
        assert len(subnets) == 2 * az
        for s in subnets:
            assert plan.parent_type(s) == NET, s["urn"]
            assert s["inputs"]["mapPublicIpOnLaunch"] is False, f"{s['urn']} hands out public IPs"
        private = [s for s in subnets if "private" in s["urn"]]
        assert all(s["inputs"]["tags"]["karpenter.sh/discovery"] == f"modelyard-{env}" for s in private)
        assert {s["inputs"]["availabilityZone"] for s in private} == {f"us-east-1{c}" for c in "abc"[:az]}


def test_nat_gateways_follow_the_nat_strategy(plans: dict[str, Plan]) -> None:
    assert len(plans["dev"].of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert len(plans["prod"].of_type("aws:ec2/natGateway:NatGateway")) == 3
    # Each prod private route table goes through its own AZ's NAT.
    prod = plans["prod"]
    nat_ids = {
        rt["inputs"]["routes"][0]["natGatewayId"]
        for rt in prod.of_type("aws:ec2/routeTable:RouteTable")
        if "private" in rt["urn"]
    }
    assert len(nat_ids) == 3


def test_private_endpoints(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    endpoints = {
        (e["inputs"]["serviceName"], e["inputs"]["vpcEndpointType"]): e["inputs"]
        for e in plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert ("com.amazonaws.us-east-1.s3", "Gateway") in endpoints
    for svc in ("ecr.api", "ecr.dkr", "sts", "s3"):
        ep = endpoints[(f"com.amazonaws.us-east-1.{svc}", "Interface")]
        assert ep["privateDnsEnabled"] is True
    # S3's private DNS answers every resolver in the VPC, not only on-premises ones: the model pods reach S3 inside
    # the VPC (their NetworkPolicy allows nothing beyond it).
    s3 = endpoints[("com.amazonaws.us-east-1.s3", "Interface")]
    assert s3["dnsOptions"]["privateDnsOnlyForInboundResolverEndpoint"] is False
    sg = plan.named("aws:ec2/securityGroup:SecurityGroup", "network-endpoints-sg")["inputs"]
    assert [r["cidrBlocks"] for r in sg["ingress"]] == [["10.40.0.0/16"]]
    assert all(r["fromPort"] == 443 for r in sg["ingress"])


def test_default_security_group_is_emptied(plans: dict[str, Plan]) -> None:
    default = plans["dev"].one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")["inputs"]
    assert default.get("ingress", []) == [] and default.get("egress", []) == []


def test_flow_logs_are_on_encrypted_and_write_only_their_group(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    flow = plan.one("aws:ec2/flowLog:FlowLog")["inputs"]
    assert flow["trafficType"] == "ALL" and flow["logDestinationType"] == "cloud-watch-logs"
    group = plan.named("aws:cloudwatch/logGroup:LogGroup", "network-flow-logs")["inputs"]
    assert group["retentionInDays"] == 365
    assert group["kmsKeyId"].startswith("arn:aws:kms:")
    policy = json.loads(plan.named("aws:iam/rolePolicy:RolePolicy", "network-flow-logs-policy")["inputs"]["policy"])
    resources = policy["Statement"][0]["Resource"]
    assert all(r.startswith("arn:aws:logs:us-east-1:123456789012:log-group:/modelyard/") for r in resources)
