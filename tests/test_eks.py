"""EKS: pinned version, KMS-encrypted secrets, all logs, endpoint access per env, access entries, IRSA, add-ons."""

from __future__ import annotations

import json

from conftest import Plan, stack_raw

from modelyard.config import FULL_KEY
from modelyard.infra.ci import deploy_role_name
from modelyard.plan.engine import run_program
from modelyard.programs import PROJECTS
from modelyard.stackfile import parse_platform_config
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
    oidc = plans["dev"].named("aws:iam/openIdConnectProvider:OpenIdConnectProvider", "eks-oidc")["inputs"]
    assert oidc["clientIdLists"] == ["sts.amazonaws.com"]
    assert oidc["url"].startswith("https://oidc.eks.us-east-1.amazonaws.com/id/")


def _admin_entries(plan: Plan) -> dict[str, str]:
    """Principal ARN by logical name of every access entry given AmazonEKSClusterAdminPolicy."""
    admin = {
        a["inputs"]["principalArn"]
        for a in plan.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
        if a["inputs"]["policyArn"].endswith(":cluster-access-policy/AmazonEKSClusterAdminPolicy")
        and a["inputs"]["accessScope"] == {"type": "cluster"}
    }
    return {
        e["urn"].rsplit("::", 1)[1]: e["inputs"]["principalArn"]
        for e in plan.of_type("aws:eks/accessEntry:AccessEntry")
        if e["inputs"]["principalArn"] in admin
    }


def test_no_implicit_admin_every_admin_entry_declared(plans: dict[str, Plan]) -> None:
    for env, plan in plans.items():
        cluster = plan.one(CLUSTER)
        assert cluster["inputs"]["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False, env
        entries = _admin_entries(plan)
        # With ci, the deployer is CI's deploy role (infra/ci.py), made by the stack before the cluster.
        assert entries["eks-deployer"] == f"arn:aws:iam::123456789012:role/{deploy_role_name(env)}", env
        assert entries["eks-admin-0"] == "arn:aws:iam::123456789012:role/platform-admin", env
        break_glass = plan.named("aws:iam/role:Role", "eks-break-glass")["inputs"]["name"]
        assert entries["eks-break-glass"] == f"arn:aws:iam::123456789012:role/{break_glass}", env
        assert set(entries) == {"eks-deployer", "eks-admin-0", "eks-break-glass"}, env


def test_without_ci_the_deployer_is_the_role_running_it(plan_with) -> None:  # type: ignore[no-untyped-def]
    plan = plan_with("dev", lambda p: p.pop("ci"))
    # The offline plan runs as a user: the session context gives its own ARN.
    assert _admin_entries(plan)["eks-deployer"] == "arn:aws:iam::123456789012:user/offline-plan"


def test_the_creator_flag_never_replaces_a_running_cluster() -> None:
    """EKS reads the flag at creation only, and the provider replaces a cluster whose flag changes: the engine
    is told to ignore it (a resource option, which a preview's newState does not carry)."""
    cfg = parse_platform_config(stack_raw("dev")[FULL_KEY], stack="dev", source="Pulumi.dev.yaml")
    result = run_program(PROJECTS["platform"], "dev", cfg, stack_raw("dev"), region=cfg.region)
    (cluster,) = [r for r in result.registrations if r.type == CLUSTER]
    assert cluster.ignore_changes == ["accessConfig.bootstrapClusterCreatorAdminPermissions"]


def test_the_kubernetes_provider_waits_for_the_deployers_entry(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    deployer = next(
        a
        for a in plan.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
        if a["urn"].endswith("::eks-deployer-policy")
    )
    provider = next(s for s in plan.states if s["type"] == "pulumi:providers:kubernetes")
    assert deployer["urn"] in provider["propertyDependencies"]["kubeconfig"]


def test_break_glass_role_needs_mfa_within_the_hour(plans: dict[str, Plan]) -> None:
    role = plans["prod"].named("aws:iam/role:Role", "eks-break-glass")["inputs"]
    assert role["name"] == "modelyard-prod-break-glass" and role["maxSessionDuration"] == 3600
    (statement,) = json.loads(role["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert statement["Condition"] == {
        "Bool": {"aws:MultiFactorAuthPresent": "true"},
        "NumericLessThan": {"aws:MultiFactorAuthAge": "3600"},
    }


def test_declared_deployer_admins_and_no_break_glass(plan_with) -> None:  # type: ignore[no-untyped-def]
    deployer = "arn:aws:iam::123456789012:role/modelyard-deploy"
    arn = "arn:aws:iam::123456789012:role/platform-admin"
    plan = plan_with(
        "dev",
        lambda p: (
            p.pop("ci"),
            p["eks"].update(admin_role_arns=[arn], deployer_role_arn=deployer, break_glass=False),
        ),
    )
    assert _admin_entries(plan) == {"eks-deployer": deployer, "eks-admin-0": arn}
    assert not [r for r in plan.of_type("aws:iam/role:Role") if r["urn"].endswith("::eks-break-glass")]


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
