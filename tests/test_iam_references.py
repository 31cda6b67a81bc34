"""Every permission a third-party component needs, compared statement by statement with that component's
own reference at the pinned version (tests/references/, each with its provenance).

Where modelyard is deliberately tighter than upstream, the difference is named here with its reason;
any other difference fails. A chart or add-on bump fails until its reference is re-read and recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ENVS, Plan
from iam_docs import as_list, normalised, substitute

from modelyard.infra.eks import ADDON_CONFIGURATION, ADDON_IDENTITIES
from modelyard.infra.karpenter import INTERRUPTION_EVENTS
from modelyard.infra.nodes import NODE_POLICIES
from modelyard.versions import HELM_CHARTS

REFERENCES = Path(__file__).parent / "references"
KARPENTER = json.loads((REFERENCES / "karpenter-1.12.json").read_text())
SERVICES = json.loads((REFERENCES / "aws-services.json").read_text())
ACCOUNT = "123456789012"


def _variables(plan: Plan) -> dict[str, str]:
    cluster = plan.one("aws:eks/cluster:Cluster")["inputs"]["name"]
    region = plan.named("pulumi:providers:aws", "aws")["inputs"]["region"]
    return {
        "ClusterName": cluster,
        "AWS::Partition": "aws",
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT,
        # The node role, found through the access entry that admits its nodes (not through the policy).
        "KarpenterNodeRole.Arn": next(
            e["inputs"]["principalArn"]
            for e in plan.of_type("aws:eks/accessEntry:AccessEntry")
            if e["inputs"]["type"] == "EC2_LINUX"
        ),
        "KarpenterInterruptionQueue.Arn": f"arn:aws:sqs:{region}:{ACCOUNT}:{cluster}",
    }


def _policy(plan: Plan, token: str, name: str) -> dict[str, Any]:
    return dict(json.loads(plan.named(token, name)["inputs"]["policy"]))


def test_karpenter_reference_matches_the_pinned_chart() -> None:
    """The reference was read for one minor version; bumping the chart must re-read it."""
    major_minor = ".".join(HELM_CHARTS["karpenter"].version.split(".")[:2])
    assert major_minor == KARPENTER["provenance"]["chart_versions"], (
        f"karpenter chart is {HELM_CHARTS['karpenter'].version} but tests/references/karpenter-*.json records "
        f"v{KARPENTER['provenance']['chart_versions']}: read website/content/en/v{major_minor}/getting-started/"
        "getting-started-with-karpenter/cloudformation.yaml at the new tag, record it, and re-check the policy"
    )


@pytest.mark.parametrize("env", ENVS)
def test_karpenter_controller_policy_is_the_reference_statement_for_statement(plans: dict[str, Plan], env: str) -> None:
    plan = plans[env]
    ours = {
        st["Sid"]: st
        for st in _policy(plan, "aws:iam/rolePolicy:RolePolicy", "karpenter-controller-policy")["Statement"]
    }
    reference = {st["Sid"]: st for st in substitute(KARPENTER["controller_policy"], _variables(plan))}
    assert sorted(ours) == sorted(reference), "statements differ: compare the Sids with the reference"
    for sid, statement in reference.items():
        assert normalised(ours[sid]) == normalised(statement), f"{sid} differs from Karpenter v1.12's reference"


def test_karpenter_controller_policy_fits_an_inline_role_policy(plans: dict[str, Plan]) -> None:
    """IAM caps a role's inline policies at 10,240 characters (white space not counted); upstream splits
    the same statements into five managed policies, we keep one inline policy and so must fit."""
    for env in ENVS:
        doc = plans[env].named("aws:iam/rolePolicy:RolePolicy", "karpenter-controller-policy")["inputs"]["policy"]
        assert len(json.dumps(json.loads(doc), separators=(",", ":"))) < 10_240, env


def test_interruption_queue_is_tighter_than_the_reference(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    variables = _variables(plan)
    ours = [
        normalised(st)
        for st in json.loads(plan.one("aws:sqs/queuePolicy:QueuePolicy")["inputs"]["policy"])["Statement"]
    ]
    allow_ref, deny_ref = (normalised(st) for st in substitute(KARPENTER["interruption_queue_policy"], variables))
    allow, deny = ours
    # Deliberately tighter: only EventBridge (upstream also admits the SQS service principal), only this
    # account's interruption rules (upstream: any account's EventBridge could forge an interruption and
    # make Karpenter drain GPU nodes).
    rules = sorted(
        name
        for r in plan.of_type("aws:cloudwatch/eventRule:EventRule")
        if (name := r["urn"].split("::")[-1]).startswith("karpenter-")
    )
    assert allow["Principal"] == {"Service": ["events.amazonaws.com"]}
    assert allow_ref["Principal"]["Service"] == ["events.amazonaws.com", "sqs.amazonaws.com"]
    assert {k: v for k, v in allow.items() if k not in ("Principal", "Condition")} == {
        k: v for k, v in allow_ref.items() if k not in ("Principal", "Condition")
    }
    assert set(allow["Condition"]) == {("ArnEquals", "aws:SourceArn"), ("StringEquals", "aws:SourceAccount")}
    assert allow["Condition"][("StringEquals", "aws:SourceAccount")] == [ACCOUNT]
    source_arns = allow["Condition"][("ArnEquals", "aws:SourceArn")]
    prefix = f"arn:aws:events:{variables['AWS::Region']}:{ACCOUNT}:rule/"
    # One ARN per interruption rule of this stack (the engine names each rule after its resource name).
    assert len(source_arns) == len(rules) == len(KARPENTER["interruption_rules"])
    assert all(any(arn.startswith(prefix + rule) for arn in source_arns) for rule in rules)
    # The TLS-only deny is upstream's, with `*` for `sqs:*` (the same actions on a queue resource).
    assert deny["Effect"] == deny_ref["Effect"] == "Deny"
    assert (deny["Resource"], deny["Condition"]) == (deny_ref["Resource"], deny_ref["Condition"])
    assert deny["Action"] == ["*"] and deny_ref["Action"] == ["sqs:*"]
    queue = plan.one("aws:sqs/queue:Queue")["inputs"]
    assert queue["messageRetentionSeconds"] == KARPENTER["interruption_queue"]["MessageRetentionPeriod"]
    assert queue["sqsManagedSseEnabled"] is KARPENTER["interruption_queue"]["SqsManagedSseEnabled"]


def test_interruption_rules_are_the_reference_rules(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    planned = [json.loads(r["inputs"]["eventPattern"]) for r in plan.of_type("aws:cloudwatch/eventRule:EventRule")]
    key = json.dumps
    assert sorted(map(key, planned)) == sorted(map(key, KARPENTER["interruption_rules"]))
    assert len(plan.of_type("aws:cloudwatch/eventTarget:EventTarget")) == len(INTERRUPTION_EVENTS)


def test_node_role_policies_are_the_reference_less_the_cni_policy() -> None:
    """Upstream attaches AmazonEKS_CNI_Policy to the node role; here the VPC CNI gets it through its own
    Pod Identity role (below), so no pod can borrow network-interface permissions from the node."""
    assert set(KARPENTER["node_role_managed_policies"]) - set(NODE_POLICIES) == {"AmazonEKS_CNI_Policy"}
    assert set(NODE_POLICIES) <= set(KARPENTER["node_role_managed_policies"])


@pytest.mark.parametrize("addon", ["vpc-cni", "aws-ebs-csi-driver"])
def test_addon_roles_attach_the_upstream_managed_policy(plans: dict[str, Plan], addon: str) -> None:
    reference = SERVICES[addon]
    assert ADDON_IDENTITIES[addon] == (reference["service_account"], reference["managed_policy"])
    plan = plans["prod"]
    attached = [
        a["inputs"]["policyArn"]
        for a in plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a["urn"].endswith(f"-{addon}-role-policy")
    ]
    assert attached == [f"arn:aws:iam::aws:policy/{reference['managed_policy']}"]
    installed = next(a for a in plan.of_type("aws:eks/addon:Addon") if a["inputs"]["addonName"] == addon)
    assert installed["inputs"]["podIdentityAssociations"][0]["serviceAccount"] == reference["service_account"]


def test_ebs_volumes_use_no_key_the_csi_role_cannot_use(plans: dict[str, Plan]) -> None:
    """The managed EBS CSI policy covers encryption with the AWS managed key only; a StorageClass naming a
    customer managed key (kmsKeyId) would also need upstream's KMS statement, which the role lacks."""
    for env in ENVS:
        for sc in plans[env].of_type("kubernetes:storage.k8s.io/v1:StorageClass"):
            params = sc["inputs"]["parameters"]
            assert params.get("encrypted") == "true"
            assert "kmsKeyId" not in params, (
                f"{env}: {sc['urn']} names a KMS key; add "
                f"{SERVICES['aws-ebs-csi-driver']['customer_managed_key_statement']} to the CSI role"
            )


def test_vpc_cni_enforces_network_policies(plans: dict[str, Plan]) -> None:
    for env in ENVS:
        cni = next(a for a in plans[env].of_type("aws:eks/addon:Addon") if a["inputs"]["addonName"] == "vpc-cni")
        assert json.loads(cni["inputs"]["configurationValues"]) == ADDON_CONFIGURATION["vpc-cni"]
        assert ADDON_CONFIGURATION["vpc-cni"] == {"enableNetworkPolicy": "true"}


def test_cost_topic_admits_budgets_as_its_user_guide_says(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    topic_arn = plan.named("aws:sns/topicPolicy:TopicPolicy", "alerts-cost-policy")["inputs"]["arn"]
    statements = {
        st["Sid"]: st for st in _policy(plan, "aws:sns/topicPolicy:TopicPolicy", "alerts-cost-policy")["Statement"]
    }
    reference = substitute(
        SERVICES["budgets-to-sns"]["statement"],
        {"TopicArn": topic_arn, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"},
    )
    assert normalised(statements["BudgetsPublish"]) == normalised(reference)
    # Cost Anomaly Detection publishes from costalerts; only on this account's behalf.
    anomaly = normalised(statements["CostalertsPublish"])
    assert anomaly["Principal"] == {"Service": ["costalerts.amazonaws.com"]}
    assert anomaly["Condition"] == {("StringEquals", "aws:SourceAccount"): [ACCOUNT]}


def test_alertmanager_may_publish_to_its_topics_and_nothing_else(plans: dict[str, Plan]) -> None:
    reference = SERVICES["alertmanager-to-sns"]
    plan = plans["prod"]
    doc = _policy(plan, "aws:iam/rolePolicy:RolePolicy", "alerts-alertmanager-policy")
    actions = {a for st in doc["Statement"] for a in as_list(st["Action"])}
    assert actions == set(reference["actions"]) | set(reference["encrypted_topic_actions"])
    publish = next(st for st in doc["Statement"] if st["Action"] == "sns:Publish")
    receiver_topics = {
        p["inputs"]["arn"]
        for p in plan.of_type("aws:sns/topicPolicy:TopicPolicy")
        if not p["urn"].endswith(("-cost-policy", "-storage-policy"))
    }
    assert set(as_list(publish["Resource"])) == receiver_topics


def test_access_log_delivery_is_the_reference_and_tighter(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    logs_arn = f"arn:aws:s3:::modelyard-prod-model-access-logs-{ACCOUNT}"
    doc = _policy(plan, "aws:s3/bucketPolicy:BucketPolicy", "models-access-logs-policy")
    ours = normalised(doc["Statement"][0])
    reference = normalised(
        substitute(
            SERVICES["s3-server-access-logs"]["statement"], {"TargetBucketArn": logs_arn, "AWS::AccountId": ACCOUNT}
        )
    )
    assert {k: ours[k] for k in ("Effect", "Principal", "Action")} == {
        k: reference[k] for k in ("Effect", "Principal", "Action")
    }
    # Tighter: only under the prefix the model bucket writes to, and only from the model bucket.
    assert ours["Resource"] == [f"{logs_arn}/models/*"] and reference["Resource"] == [f"{logs_arn}/*"]
    assert ours["Condition"] == {
        **reference["Condition"],
        ("ArnLike", "aws:SourceArn"): [f"arn:aws:s3:::modelyard-prod-models-{ACCOUNT}"],
    }
    logging = plan.one("aws:s3/bucketLogging:BucketLogging")["inputs"]
    assert logging["targetPrefix"] == "models/"


def test_flow_logs_role_is_the_reference_and_tighter(plans: dict[str, Plan]) -> None:
    reference = SERVICES["vpc-flow-logs"]
    plan = plans["prod"]
    trust = json.loads(plan.named("aws:iam/role:Role", "network-flow-logs-role")["inputs"]["assumeRolePolicy"])
    trust_statement = normalised(trust["Statement"][0])
    assert {k: trust_statement[k] for k in ("Effect", "Principal", "Action")} == {
        k: normalised(reference["trust"])[k] for k in ("Effect", "Principal", "Action")
    }
    # Tighter: only on behalf of this account.
    assert trust_statement["Condition"] == {("StringEquals", "aws:SourceAccount"): [ACCOUNT]}
    statement = normalised(_policy(plan, "aws:iam/rolePolicy:RolePolicy", "network-flow-logs-policy")["Statement"][0])
    # Tighter: the log group exists (this stack creates it, encrypted, with a retention), so neither
    # CreateLogGroup nor DescribeLogGroups, and only that group rather than "*".
    assert set(normalised(reference["statement"])["Action"]) - set(statement["Action"]) == {
        "logs:createloggroup",
        "logs:describeloggroups",
    }
    assert set(statement["Action"]) < set(normalised(reference["statement"])["Action"])
    group = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/modelyard/modelyard-prod/vpc-flow-logs"
    assert statement["Resource"] == [group, f"{group}:*"]


def test_each_models_pull_role_allows_what_the_storage_initializer_calls_on_its_own_prefix(
    all_plans: dict[str, Plan],
) -> None:
    """KServe's storage initializer lists the version's prefix and reads each object; a model's role allows exactly
    that, on its own model's prefix of the bucket (workloads/models.py), for every catalogued model."""
    reference = SERVICES["kserve-storage-initializer-s3"]
    plan = all_plans["prod"]
    bucket = f"arn:aws:s3:::modelyard-prod-models-{ACCOUNT}"
    models = plan.outputs_of("modelyard-workloads")["models"]
    assert models
    for model in models:
        doc = _policy(plan, "aws:iam/rolePolicy:RolePolicy", f"{model}-pull-policy")
        by_sid = {st["Sid"]: st for st in doc["Statement"]}
        assert as_list(by_sid["ListModelBucket"]["Action"]) == reference["bucket_actions"]
        assert by_sid["ListModelBucket"]["Resource"] == bucket
        assert by_sid["ListModelBucket"]["Condition"] == {"StringLike": {"s3:prefix": [f"{model}/", f"{model}/*"]}}
        assert as_list(by_sid["ReadThisModel"]["Action"]) == reference["object_actions"]
        assert by_sid["ReadThisModel"]["Resource"] == f"{bucket}/{model}/*"
        assert as_list(by_sid["DecryptModelsThroughS3"]["Action"]) == reference["kms_actions"]


def test_the_replication_role_is_the_reference_and_tighter(plans: dict[str, Plan]) -> None:
    """AWS's PutBucketReplication example role, less what this store never needs: no ReplicateDelete (deletes are
    refused everywhere), GetObjectVersionForReplication (replication's own action) for GetObjectVersion; plus
    what Object Lock and SSE-KMS add (AWS's replication guide), each through S3 in its own region only."""
    plan = plans["prod"]
    source, replica = (
        f"arn:aws:s3:::modelyard-prod-models-{ACCOUNT}",
        f"arn:aws:s3:::modelyard-prod-model-replica-{ACCOUNT}",
    )
    reference = SERVICES["s3-replication"]
    trust = json.loads(plan.named("aws:iam/role:Role", "models-replication-role")["inputs"]["assumeRolePolicy"])
    [statement] = trust["Statement"]
    ours = normalised(statement)
    assert {k: ours[k] for k in ("Effect", "Principal", "Action")} == {
        k: normalised(reference["trust"])[k] for k in ("Effect", "Principal", "Action")
    }
    # Tighter: only for this bucket, on this account's behalf.
    assert ours["Condition"] == {
        ("StringEquals", "aws:SourceAccount"): [ACCOUNT],
        ("ArnLike", "aws:SourceArn"): [source],
    }
    expected = [
        normalised(st)
        for st in substitute(reference["statements"], {"SourceBucketArn": source, "DestinationBucketArn": replica})
    ]
    doc = _policy(plan, "aws:iam/rolePolicy:RolePolicy", "models-replication-policy")
    by_sid = {st["Sid"]: normalised(st) for st in doc["Statement"]}
    assert by_sid["ReadTheSourceConfiguration"] == expected[0]
    read = by_sid["ReadSourceVersions"]
    assert read["Resource"] == expected[1]["Resource"]
    assert set(expected[1]["Action"]) - set(read["Action"]) == {"s3:getobjectversion"}
    assert set(read["Action"]) - set(expected[1]["Action"]) == {
        "s3:getobjectversionforreplication",
        "s3:getobjectretention",
        "s3:getobjectlegalhold",
    }
    write = by_sid["WriteReplicas"]
    assert write["Resource"] == expected[2]["Resource"]
    assert set(expected[2]["Action"]) - set(write["Action"]) == {"s3:replicatedelete"}
    assert set(write["Action"]) < set(expected[2]["Action"])
    decrypt, encrypt = by_sid["DecryptSourceVersions"], by_sid["EncryptReplicas"]
    assert decrypt["Action"] == ["kms:decrypt"] and encrypt["Action"] == ["kms:encrypt", "kms:generatedatakey"]
    assert decrypt["Condition"][("StringEquals", "kms:ViaService")] == ["s3.us-east-1.amazonaws.com"]
    assert encrypt["Condition"][("StringEquals", "kms:ViaService")] == ["s3.us-west-2.amazonaws.com"]
    assert decrypt["Condition"][("StringLike", "kms:EncryptionContext:aws:s3:arn")] == [source, f"{source}/*"]
    assert encrypt["Condition"][("StringLike", "kms:EncryptionContext:aws:s3:arn")] == [replica, f"{replica}/*"]
    assert all(r.startswith("arn:aws:kms:us-west-2:") for r in encrypt["Resource"])


def test_the_storage_topic_admits_s3_as_its_guide_says_and_only_for_the_model_bucket(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    policy = plan.named("aws:sns/topicPolicy:TopicPolicy", "alerts-storage-policy")["inputs"]
    by_sid = {st["Sid"]: st for st in json.loads(policy["policy"])["Statement"]}
    reference = SERVICES["s3-events-to-sns"]
    expected = normalised(
        substitute(
            reference["statement"],
            {"TopicArn": policy["arn"], "BucketName": f"modelyard-prod-models-{ACCOUNT}", "AWS::AccountId": ACCOUNT},
        )
    )
    ours = normalised(by_sid["S3ReportsFailures"])
    assert {k: ours[k] for k in ("Effect", "Principal", "Action", "Resource")} == {
        k: expected[k] for k in ("Effect", "Principal", "Action", "Resource")
    }
    # Tighter: the bucket's own ARN for the reference's any-region, any-account pattern.
    assert ours["Condition"] == {
        ("StringEquals", "aws:SourceAccount"): [ACCOUNT],
        ("ArnLike", "aws:SourceArn"): [f"arn:aws:s3:::modelyard-prod-models-{ACCOUNT}"],
    }
    # EventBridge publishes for the backup failure rule only.
    events = normalised(by_sid["EventsReportsFailures"])
    assert events["Principal"] == {"Service": ["events.amazonaws.com"]}
    assert events["Condition"][("ArnLike", "aws:SourceArn")] == [
        f"arn:aws:events:us-east-1:{ACCOUNT}:rule/modelyard-prod-backup-failures"
    ]
    # The topic's key lets both services encrypt what they publish (the reference's key statement, per service).
    key = json.loads(plan.named("aws:kms/key:Key", "alerts-key")["inputs"]["policy"])
    [grant] = [st for st in key["Statement"] if st.get("Sid") == "StorageServicesPublishEncrypted"]
    assert set(as_list(grant["Principal"]["Service"])) == {"s3.amazonaws.com", "events.amazonaws.com"}
    assert {a.lower() for a in reference["key_statement"]["Action"]} <= {
        a.lower().rstrip("*") for a in as_list(grant["Action"])
    }
