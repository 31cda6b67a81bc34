"""System node group: managed, on-demand, encrypted gp3, IMDSv2, tags passed to instances."""

from __future__ import annotations

import json

from conftest import Plan


def test_system_node_group(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    group = plan.one("aws:eks/nodeGroup:NodeGroup")
    inputs = group["inputs"]
    assert plan.parent_type(group) == "modelyard:infra:SystemNodeGroup"
    assert inputs["capacityType"] == "ON_DEMAND"
    assert inputs["instanceTypes"] == ["m7i.xlarge"]
    assert inputs["scalingConfig"] == {"minSize": 3, "desiredSize": 3, "maxSize": 6}
    assert inputs["labels"] == {"modelyard.io/pool": "system"}


def test_launch_template_encrypts_and_requires_imdsv2(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    lt = plan.one("aws:ec2/launchTemplate:LaunchTemplate")["inputs"]
    assert lt["metadataOptions"]["httpTokens"] == "required"
    assert lt["metadataOptions"]["httpPutResponseHopLimit"] == 1
    ebs = lt["blockDeviceMappings"][0]["ebs"]
    # The schema types `encrypted` as a string.
    assert ebs["encrypted"] == "true" and ebs["volumeType"] == "gp3"
    # Default tags do not reach instances launched by a node group: the template carries them.
    tags = plan.default_tags()
    for spec in lt["tagSpecifications"]:
        assert tags.items() <= spec["tags"].items(), spec["resourceType"]
    assert {s["resourceType"] for s in lt["tagSpecifications"]} == {"instance", "volume", "network-interface"}


def test_node_role_has_only_node_policies(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    attached = [
        a["inputs"]["policyArn"]
        for a in plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if "system-role" in a["urn"]
    ]
    assert sorted(a.rsplit("/", 1)[1] for a in attached) == [
        "AmazonEC2ContainerRegistryPullOnly",
        "AmazonEKSWorkerNodePolicy",
        "AmazonSSMManagedInstanceCore",
    ]
    role = plan.named("aws:iam/role:Role", "system-role")["inputs"]
    trust = json.loads(role["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
