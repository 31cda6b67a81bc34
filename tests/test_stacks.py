"""Whole-stack invariants, per environment."""

from __future__ import annotations

import json

import pytest
from conftest import ENVS, Plan

from modelyard.tags import REQUIRED_KEYS

STATEFUL = (
    "aws:eks/cluster:Cluster",
    "aws:s3/bucket:Bucket",
    "aws:kms/key:Key",
    "aws:ecr/repository:Repository",
    "aws:cloudwatch/logGroup:LogGroup",
    "aws:sns/topic:Topic",
)


@pytest.mark.parametrize("env", ENVS)
def test_no_default_providers_and_every_resource_in_a_component(plans: dict[str, Plan], env: str) -> None:
    plan = plans[env]
    providers = {s["urn"] for s in plan.states if s["type"].startswith("pulumi:providers:")}
    # prod's model store is replicated: a second AWS provider, in the replica's region, with the same default tags.
    replica = (
        {f"urn:pulumi:{env}::modelyard-platform::pulumi:providers:aws::aws-model-replica"} if env == "prod" else set()
    )
    assert providers == {
        f"urn:pulumi:{env}::modelyard-platform::pulumi:providers:aws::aws",
        f"urn:pulumi:{env}::modelyard-platform::pulumi:providers:kubernetes::k8s",
        f"urn:pulumi:{env}::modelyard-platform::pulumi:providers:random::random",
        *replica,
    }
    for urn in replica:
        inputs = plan.by_urn[urn]["inputs"]
        assert (
            inputs["region"] == "us-west-2"
            and inputs["defaultTags"] == plan.named("pulumi:providers:aws", "aws")["inputs"]["defaultTags"]
        )
    for state in plan.states:
        if not state.get("custom") or state["type"].startswith("pulumi:providers:"):
            continue
        provider_urn = state.get("provider", "").rsplit("::", 1)[0]
        assert provider_urn in providers, f"{state['urn']} uses provider {state.get('provider')!r}"
        assert plan.parent_type(state).startswith(("modelyard:infra:", "modelyard:platform:")), (
            f"{state['urn']} is outside a component"
        )


@pytest.mark.parametrize("env", ENVS)
def test_tags_reach_everything(plans: dict[str, Plan], env: str) -> None:
    plan = plans[env]
    tags = plan.default_tags()
    assert tuple(tags) == REQUIRED_KEYS and tags["env"] == env
    for state in plan.states:
        if state["type"].startswith("kubernetes:") and "metadata" in state["inputs"]:
            labels = state["inputs"]["metadata"].get("labels", {})
            assert labels.get("modelyard.io/env") == env, f"{state['urn']} lacks the env label"
            assert labels.get("app.kubernetes.io/managed-by") == "modelyard", state["urn"]


@pytest.mark.parametrize("env", ENVS)
def test_every_kms_key_rotates_and_nothing_is_unencrypted(plans: dict[str, Plan], env: str) -> None:
    plan = plans[env]
    keys = plan.of_type("aws:kms/key:Key")
    # Encryption: logs, EKS secrets, model store, ECR, alert topics, the backup vault where backups are on, prod's
    # replica. Signing: the model manifests' key, which KMS cannot rotate (an asymmetric key is replaced).
    signing = [k for k in keys if k["inputs"].get("keyUsage") == "SIGN_VERIFY"]
    assert [k["inputs"]["customerMasterKeySpec"] for k in signing] == ["ECC_NIST_P256"]
    keys = [k for k in keys if k not in signing]
    assert len(keys) == {"dev": 5, "staging": 6, "prod": 7}[env]
    for key in [*keys, *signing]:
        policy = json.loads(key["inputs"]["policy"])
        assert policy["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    for key in keys:
        assert key["inputs"]["enableKeyRotation"] is True, key["urn"]
    for group in plan.of_type("aws:cloudwatch/logGroup:LogGroup"):
        assert "kmsKeyId" in group["inputs"], group["urn"]


@pytest.mark.parametrize("env", ENVS)
def test_no_iam_wildcards_on_everything(plans: dict[str, Plan], env: str) -> None:
    plan = plans[env]
    for state in plan.of_type("aws:iam/rolePolicy:RolePolicy"):
        for st in json.loads(state["inputs"]["policy"])["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert "*" not in actions, state["urn"]
            assert not any(a.endswith(":*") for a in actions), f"{state['urn']}: {actions}"


def test_stateful_resources_protected_only_where_configured(plans: dict[str, Plan]) -> None:
    for env, expected in (("dev", False), ("staging", True), ("prod", True)):
        for token in STATEFUL:
            for state in plans[env].of_type(token):
                assert bool(state.get("protect")) is expected, f"{env}: {state['urn']}"
        # Deleting either deletes every InferenceService: KServe's CRDs and the model namespace.
        crds = plans[env].named("kubernetes:helm.sh/v3:Release", "kserve-crds")
        models = plans[env].named("kubernetes:core/v1:Namespace", "kserve-models-ns")
        assert bool(crds.get("protect")) is expected and bool(models.get("protect")) is expected, env


@pytest.mark.parametrize("env", ENVS)
def test_outputs_the_workloads_stack_needs(plans: dict[str, Plan], env: str) -> None:
    out = plans[env].outputs()
    assert out["clusterName"] == f"modelyard-{env}"
    assert out["kubeconfig"] == "[secret]"
    assert out["modelBucket"] == f"modelyard-{env}-models-123456789012"
    assert out["oidcIssuerUrl"].startswith("https://oidc.eks.") and out["modelKmsKeyArn"].startswith("arn:aws:kms:")
    assert out["clusterEndpoint"].startswith("https://")
    pools = out["gpuPools"]
    assert pools and all({"name", "gpuClass", "nodeSelector", "toleration"} <= set(p) for p in pools)


def test_environments_differ_on_purpose(plans: dict[str, Plan]) -> None:
    dev, staging, prod = (plans[e] for e in ENVS)
    assert len(dev.of_type("aws:ec2/natGateway:NatGateway")) < len(prod.of_type("aws:ec2/natGateway:NatGateway"))
    # GPU pools, plus the CPU model pool in each
    assert len(dev.of_type("kubernetes:karpenter.sh/v1:NodePool")) == 1 + 1
    assert len(staging.of_type("kubernetes:karpenter.sh/v1:NodePool")) == 2 + 1
    assert len(dev.states) < len(prod.states)
