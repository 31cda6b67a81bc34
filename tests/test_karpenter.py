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
    entry = plans["dev"].named("aws:eks/accessEntry:AccessEntry", "karpenter-node-access")["inputs"]
    assert entry["type"] == "EC2_LINUX"
    assert entry["principalArn"].startswith("arn:aws:iam::123456789012:role/karpenter-node-role")


def test_one_nodepool_per_gpu_pool(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    pools = {p["inputs"]["metadata"]["name"]: p["inputs"] for p in plan.of_type(NODEPOOL)}
    assert set(pools) == {"gpu-a10g", "gpu-l40s", "cpu-models"}
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
    spec = plan.named(NODECLASS, "karpenter-a10g-nodeclass")["inputs"]["spec"]
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


# Upstream's budgets (kubernetes-sigs/karpenter v1.12.1, pkg/apis/v1/nodepool_budgets_test.go, BeforeEach): at its
# clock (2000-06-15 12:30:30 UTC) every "* * * * *" budget of 1h is active and the @weekly one is not; which is
# active is given here, as the port leaves the cron schedule to its caller.
UPSTREAM_BUDGETS = [
    {"nodes": "10", "schedule": "* * * * *", "duration": "1h"},
    {"nodes": "100", "schedule": "* * * * *", "duration": "1h"},
    {"nodes": "100%", "schedule": "* * * * *", "duration": "1h"},
    {"reasons": ["Drifted", "Underutilized"], "nodes": "15", "schedule": "* * * * *", "duration": "1h"},
    {"reasons": ["Drifted"], "nodes": "5", "schedule": "* * * * *", "duration": "1h"},
    {"reasons": ["Underutilized", "Drifted", "Empty"], "nodes": "0", "schedule": "@weekly", "duration": "1h"},
]


def _active_at_upstream_clock(budget: dict) -> bool:
    return budget.get("schedule") in (None, "* * * * *")


def test_disruption_budgets_match_upstreams_cases() -> None:
    from modelyard.policies.governance import karpenter

    def allowed(budgets: list[dict], reason: str, active=_active_at_upstream_clock) -> int:
        return karpenter.allowed_disruptions(budgets, 100, reason, active)

    budgets = [dict(b) for b in UPSTREAM_BUDGETS]
    # "should return 0 for all reasons if a budget is active for all reasons"
    weekly_on = [*budgets[:5], {**budgets[5], "schedule": "* * * * *"}]
    assert {allowed(weekly_on, r) for r in karpenter.REASONS} == {0}
    # "should return MaxInt32 for all reasons when there are no active budgets"
    yearly = [{**b, "schedule": "@yearly"} for b in budgets]
    assert {allowed(yearly, r) for r in karpenter.REASONS} == {karpenter.UNBOUNDED}
    # "should ignore reason-defined budgets when inactive"
    reasons_off = [
        *budgets[:3],
        {**budgets[3], "schedule": "@yearly"},
        {**budgets[4], "schedule": "@yearly"},
        budgets[5],
    ]
    assert {allowed(reasons_off, r) for r in karpenter.REASONS} == {10}
    # "should return the budget for all disruption reasons when undefined"
    assert {allowed(budgets[:1], r) for r in karpenter.REASONS} == {10}
    # "should get the minimum budget for each reason"
    more = [*budgets, {"schedule": "* * * * *", "nodes": "4", "duration": "1h", "reasons": ["Empty"]}]
    assert (allowed(more, "Empty"), allowed(more, "Drifted"), allowed(more, "Underutilized")) == (4, 5, 10)
    # AllowedDisruptions: an invalid nodes value fails closed; a count and a percentage as given.
    assert karpenter.budget_allows({"nodes": "1000a%"}, 100) == 0
    assert (karpenter.budget_allows(budgets[0], 100), karpenter.budget_allows(budgets[2], 100)) == (10, 100)
    # Rounded up, as upstream's comment says: 5 % of 10 nodes lets one go rather than block every disruption.
    assert karpenter.budget_allows({"nodes": "5%"}, 10) == 1
    # The CRD's default when a NodePool sets none: one budget of 10 %.
    assert karpenter.allowed_disruptions(None, 30, "Drifted") == 3


def test_a_cpu_pool_for_models_apart_from_the_system_nodes(all_plans: dict[str, Plan]) -> None:
    plan = all_plans["prod"]
    pool = plan.named(NODEPOOL, "karpenter-cpu-models-nodepool")["inputs"]
    spec = pool["spec"]["template"]["spec"]
    reqs = {r["key"]: r["values"] for r in spec["requirements"]}
    assert reqs["node.kubernetes.io/instance-type"] == ["m7i.xlarge", "m7i.2xlarge"]
    assert reqs["karpenter.k8s.aws/instance-family"] == ["m7i"] and reqs["karpenter.sh/capacity-type"] == ["on-demand"]
    assert spec["taints"] == [{"key": "modelyard.io/cpu-models", "value": "true", "effect": "NoSchedule"}]
    assert pool["spec"]["template"]["metadata"]["labels"]["modelyard.io/pool"] == "cpu-models"
    assert pool["spec"]["limits"] == {"cpu": "32"}
    ebs = plan.named(NODECLASS, "karpenter-cpu-models-nodeclass")["inputs"]["spec"]["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] is True
    # Every model without a GPU selects the pool and tolerates its taint; nothing else tolerates it.
    cpu_models = 0
    for isvc in plan.of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService"):
        predictor = isvc["inputs"]["spec"]["predictor"]
        if "modelyard.io/gpu-pool" not in predictor["nodeSelector"]:
            cpu_models += 1
            assert predictor["nodeSelector"] == {"modelyard.io/pool": "cpu-models"}
            assert predictor["tolerations"] == [{**spec["taints"][0], "operator": "Equal"}]
    assert cpu_models >= 1
    for dep in plan.of_type("kubernetes:apps/v1:Deployment"):
        tolerations = dep["inputs"]["spec"]["template"]["spec"].get("tolerations", [])
        assert all(t.get("key") != "modelyard.io/cpu-models" for t in tolerations)


def _tolerates(toleration: dict, taint: dict) -> bool:
    """Kubernetes' ToleratesTaint (k8s.io/api core/v1 toleration.go): the effect matches or is empty, the key
    matches (or is empty with Exists), and Exists matches any value, Equal (the default) only the taint's."""
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    if toleration.get("key") and toleration["key"] != taint["key"]:
        return False
    if toleration.get("operator") == "Exists":
        return True
    return toleration.get("value", "") == taint.get("value", "")


def test_the_node_exporter_runs_on_every_nodepools_nodes(plans: dict[str, Plan]) -> None:
    """A taint a NodePool sets keeps the node exporter off those nodes unless it tolerates it: every node would
    then be missing from the node dashboards and the cost rules."""
    for env, plan in plans.items():
        values = plan.named("kubernetes:helm.sh/v3:Release", "monitoring-release")["inputs"]["values"]
        tolerations = values["prometheus-node-exporter"]["tolerations"]
        for pool in plan.of_type(NODEPOOL):
            for taint in pool["inputs"]["spec"]["template"]["spec"].get("taints", []):
                assert any(_tolerates(t, taint) for t in tolerations), (env, pool["urn"], taint)
    # The matcher itself: Equal needs the value, Exists does not, a different effect never matches.
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert _tolerates({"key": "k", "value": "v"}, taint) and not _tolerates({"key": "k", "value": "w"}, taint)
    assert _tolerates({"key": "k", "operator": "Exists"}, taint)
    assert not _tolerates({"key": "k", "operator": "Exists", "effect": "NoExecute"}, taint)
