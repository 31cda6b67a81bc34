"""Karpenter: pinned chart, Pod Identity, interruption queue, scoped controller policy, NodePools per GPU pool."""

from __future__ import annotations

import json

from conftest import Plan

from modelyard.versions import HELM_CHARTS, IMAGES, KARPENTER_AMI_ALIAS

NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
NODECLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"


def test_chart_pinned_and_on_system_nodes(plans: dict[str, Plan]) -> None:
    release = plans["prod"].named("kubernetes:helm.sh/v3:Release", "karpenter-release")["inputs"]
    assert (release["chart"], release["version"]) == (HELM_CHARTS["karpenter"].chart, HELM_CHARTS["karpenter"].version)
    values = release["values"]
    assert values["settings"] == {"clusterName": "modelyard-prod", "interruptionQueue": "modelyard-prod"}
    assert values["nodeSelector"] == {"modelyard.io/pool": "system"}
    assert values["replicas"] == 2
    assert values["controller"]["resources"]["limits"]["memory"] == "1Gi"


def test_controller_identity_is_pod_identity_for_one_service_account(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    assoc = plan.one("aws:eks/podIdentityAssociation:PodIdentityAssociation")["inputs"]
    assert (assoc["namespace"], assoc["serviceAccount"]) == ("karpenter", "karpenter")
    trust = json.loads(plan.named("aws:iam/role:Role", "karpenter-controller-role")["inputs"]["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    # The trust names what the association names, by the session tags EKS sets: no other association in the
    # account (another cluster's, another namespace's) can use the role.
    cluster_arn = "arn:aws:eks:us-east-1:123456789012:cluster/" + plan.one("aws:eks/cluster:Cluster")["inputs"]["name"]
    assert trust["Statement"][0]["Condition"]["StringEquals"] == {
        "aws:SourceAccount": "123456789012",
        "aws:RequestTag/eks-cluster-arn": cluster_arn,
        "aws:RequestTag/kubernetes-namespace": assoc["namespace"],
        "aws:RequestTag/kubernetes-service-account": assoc["serviceAccount"],
    }


def test_controller_policy_is_scoped(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    doc = json.loads(plan.named("aws:iam/rolePolicy:RolePolicy", "karpenter-controller-policy")["inputs"]["policy"])
    for st in doc["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert not any(a == "*" or a.endswith(":*") for a in actions), st["Sid"]
        if st["Resource"] == "*":
            # Only calls that support no resource-level permissions may use "*".
            assert st["Sid"] in {
                "AllowRegionalReadActions",
                "AllowPricingReadActions",
                "AllowUnscopedInstanceProfileListAction",
                "AllowUnscopedEC2DescribeInstanceStatus",
            }, st["Sid"]
    by_sid = {st["Sid"]: st for st in doc["Statement"]}
    assert by_sid["AllowPassingInstanceRole"]["Resource"].startswith(
        "arn:aws:iam::123456789012:role/karpenter-node-role"
    )
    assert by_sid["AllowInterruptionQueueActions"]["Resource"] == "arn:aws:sqs:us-east-1:123456789012:modelyard-dev"
    assert by_sid["AllowScopedDeletion"]["Condition"]["StringEquals"] == {
        "aws:ResourceTag/kubernetes.io/cluster/modelyard-dev": "owned"
    }


def test_interruption_queue_and_rules(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    queue = plan.one("aws:sqs/queue:Queue")["inputs"]
    assert queue["sqsManagedSseEnabled"] is True
    policy = json.loads(plan.one("aws:sqs/queuePolicy:QueuePolicy")["inputs"]["policy"])
    assert any(
        st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for st in policy["Statement"]
    )
    # Every rule targets the queue (the rules themselves are compared with Karpenter's in test_iam_references).
    targets = plan.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert len(targets) == len(plan.of_type("aws:cloudwatch/eventRule:EventRule")) == 5
    assert {t["inputs"]["arn"] for t in targets} == {"arn:aws:sqs:us-east-1:123456789012:modelyard-dev"}


def test_node_role_has_an_access_entry(plans: dict[str, Plan]) -> None:
    entry = plans["dev"].one("aws:eks/accessEntry:AccessEntry")["inputs"]
    assert entry["type"] == "EC2_LINUX"
    assert entry["principalArn"].startswith("arn:aws:iam::123456789012:role/karpenter-node-role")


def test_one_nodepool_per_gpu_pool(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    pools = {p["inputs"]["metadata"]["name"]: p["inputs"] for p in plan.of_type(NODEPOOL)}
    assert set(pools) == {"gpu-a10g", "gpu-l40s"}
    a10g = pools["gpu-a10g"]
    spec = a10g["spec"]["template"]["spec"]
    reqs = {r["key"]: r["values"] for r in spec["requirements"]}
    assert reqs["node.kubernetes.io/instance-type"] == ["g5.xlarge", "g5.2xlarge", "g5.4xlarge"]
    assert reqs["karpenter.sh/capacity-type"] == ["on-demand"]
    assert reqs["karpenter.k8s.aws/instance-family"] == ["g5"]
    assert spec["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert a10g["spec"]["limits"] == {"nvidia.com/gpu": "16"}
    labels = a10g["spec"]["template"]["metadata"]["labels"]
    assert labels["modelyard.io/gpu-class"] == "a10g" and labels["modelyard.io/gpu-pool"] == "a10g"
    disruption = a10g["spec"]["disruption"]
    assert disruption["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    assert disruption["consolidateAfter"] == "30m" and disruption["budgets"] == [{"nodes": "10%"}]
    dev = {p["inputs"]["metadata"]["name"]: p["inputs"] for p in plans["dev"].of_type(NODEPOOL)}
    assert {r["key"]: r["values"] for r in dev["gpu-a10g"]["spec"]["template"]["spec"]["requirements"]}[
        "karpenter.sh/capacity-type"
    ] == ["spot", "on-demand"]


def test_nodeclass_encrypts_requires_imdsv2_and_tags(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    spec = plan.one(NODECLASS)["inputs"]["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": KARPENTER_AMI_ALIAS}]
    assert spec["metadataOptions"]["httpTokens"] == "required"
    ebs = spec["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] is True and ebs["volumeType"] == "gp3"
    assert plan.default_tags().items() <= spec["tags"].items()
    assert spec["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "modelyard-dev"}}]


def test_warm_capacity_only_where_pools_do_not_scale_to_zero(plans: dict[str, Plan]) -> None:
    assert plans["dev"].of_type("kubernetes:apps/v1:Deployment") == []
    warm = plans["prod"].one("kubernetes:apps/v1:Deployment")["inputs"]
    assert warm["spec"]["replicas"] == 2
    pod = warm["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"modelyard.io/gpu-pool": "a10g"}
    assert pod["priorityClassName"] == "modelyard-warm-capacity"
    container = pod["containers"][0]
    assert container["image"] == IMAGES["pause"]
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    priority = plans["prod"].named("kubernetes:scheduling.k8s.io/v1:PriorityClass", "karpenter-warm-priority")["inputs"]
    assert priority["value"] < 0 and priority["preemptionPolicy"] == "Never"


def test_gpu_tolerations_only_on_gpu_workloads(plans: dict[str, Plan]) -> None:
    """Only pods meant for GPU nodes tolerate the GPU taint; the controller runs on system nodes."""
    plan = plans["prod"]
    values = plan.named("kubernetes:helm.sh/v3:Release", "karpenter-release")["inputs"]["values"]
    assert "tolerations" not in values
    for dep in plan.of_type("kubernetes:apps/v1:Deployment"):
        pod = dep["inputs"]["spec"]["template"]["spec"]
        assert "modelyard.io/gpu-pool" in pod["nodeSelector"]
