"""EKS: pinned version, KMS-encrypted secrets, all logs, endpoint access per env, access entries, IRSA, add-ons."""

from __future__ import annotations

from conftest import Plan

from modelyard.versions import EKS_ADDONS

CLUSTER = "aws:eks/cluster:Cluster"


def test_cluster_security_settings(plans: dict[str, Plan]) -> None:
    for env, plan in plans.items():
        cluster = plan.one(CLUSTER)
        inputs = cluster["inputs"]
        assert plan.parent_type(cluster) == "modelyard:infra:Cluster"
        assert inputs["version"] == "1.35"
        assert inputs["encryptionConfig"]["resources"] == ["secrets"]
        assert inputs["encryptionConfig"]["provider"]["keyArn"].startswith("arn:aws:kms:")
        assert sorted(inputs["enabledClusterLogTypes"]) == sorted(
            ["api", "audit", "authenticator", "controllerManager", "scheduler"]
        ), env
        assert inputs["accessConfig"]["authenticationMode"] == "API", "aws-auth ConfigMap must not be used"
        assert inputs["vpcConfig"]["endpointPrivateAccess"] is True
        # The secrets key is a dependency of the encryption config, as the engine would see it.
        key_urns = plan.of_type("aws:kms/key:Key")
        assert any(k["urn"] in cluster["propertyDependencies"]["encryptionConfig"] for k in key_urns)


def test_endpoint_private_in_prod_public_only_with_cidrs_elsewhere(plans: dict[str, Plan]) -> None:
    prod = plans["prod"].one(CLUSTER)["inputs"]["vpcConfig"]
    assert prod["endpointPublicAccess"] is False and "publicAccessCidrs" not in prod
    dev = plans["dev"].one(CLUSTER)["inputs"]["vpcConfig"]
    assert dev["endpointPublicAccess"] is True
    assert dev["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_deletion_protection_follows_config(plans: dict[str, Plan]) -> None:
    assert plans["prod"].one(CLUSTER)["inputs"]["deletionProtection"] is True
    assert plans["prod"].one(CLUSTER).get("protect") is True
    assert plans["dev"].one(CLUSTER)["inputs"]["deletionProtection"] is False
    assert "protect" not in plans["dev"].one(CLUSTER)


def test_control_plane_logs_are_encrypted_with_retention(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    group = plan.named("aws:cloudwatch/logGroup:LogGroup", "eks-control-plane-logs")
    assert group["inputs"]["name"] == "/aws/eks/modelyard-dev/cluster"
    assert group["inputs"]["retentionInDays"] == 14 and "kmsKeyId" in group["inputs"]
    assert group["urn"] in plan.one(CLUSTER)["dependencies"]


def test_oidc_provider_for_irsa(plans: dict[str, Plan]) -> None:
    oidc = plans["dev"].one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")["inputs"]
    assert oidc["clientIdLists"] == ["sts.amazonaws.com"]
    assert oidc["url"].startswith("https://oidc.eks.us-east-1.amazonaws.com/id/")


def test_admin_access_entries_from_config(plan_with) -> None:  # type: ignore[no-untyped-def]
    arn = "arn:aws:iam::123456789012:role/platform-admin"
    plan = plan_with("dev", lambda p: p["eks"].update(admin_role_arns=[arn]))
    entries = [e["inputs"] for e in plan.of_type("aws:eks/accessEntry:AccessEntry")]
    assert {"principalArn": arn, "type": "STANDARD"}.items() <= next(
        e for e in entries if e["type"] == "STANDARD"
    ).items()
    assoc = plan.one("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")["inputs"]
    assert assoc["policyArn"].endswith(":cluster-access-policy/AmazonEKSClusterAdminPolicy")


def test_managed_addons_pinned_and_ordered(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    addons = {a["inputs"]["addonName"]: a for a in plan.of_type("aws:eks/addon:Addon")}
    assert set(addons) == {"vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver", "eks-pod-identity-agent"}
    for name, addon in addons.items():
        assert addon["inputs"]["addonVersion"] == EKS_ADDONS["1.35"][name]
    node_group = plan.one("aws:eks/nodeGroup:NodeGroup")
    # Networking comes before nodes; CoreDNS and EBS CSI need nodes.
    assert addons["vpc-cni"]["urn"] in node_group["dependencies"]
    assert node_group["urn"] in addons["coredns"]["dependencies"]
    # Add-ons that call AWS get their own Pod Identity role, after the agent is running.
    for name in ("vpc-cni", "aws-ebs-csi-driver"):
        assert addons[name]["inputs"]["podIdentityAssociations"][0]["roleArn"].startswith("arn:aws:iam::")
    assert addons["eks-pod-identity-agent"]["urn"] in addons["vpc-cni"]["dependencies"]
    # EBS CSI waits for the node group, which itself waits for the agent.
    assert addons["eks-pod-identity-agent"]["urn"] in node_group["dependencies"]
