"""AWS Backup of the monitoring volumes: the StorageClass tags what it provisions, the plan selects that tag."""

from __future__ import annotations

import json

from conftest import Plan

from modelyard.policies.governance.cost import estimate
from modelyard.policies.governance.resources import Stack, from_preview

STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"


def test_the_selection_takes_exactly_the_volumes_the_storage_class_tags(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    tag = plan.one(STORAGE_CLASS)["inputs"]["parameters"]["tagSpecification_1"]
    key, value = tag.split("=")
    selection = plan.one("aws:backup/selection:Selection")["inputs"]
    assert selection["resources"] == ["arn:aws:ec2:*:*:volume/*"]
    assert selection["conditions"] == [{"stringEquals": [{"key": f"aws:ResourceTag/{key}", "value": value}]}]
    assert value == "prod-monitoring"
    role = plan.named("aws:iam/role:Role", "backup-role")["inputs"]
    trust = json.loads(role["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "backup.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    assert selection["iamRoleArn"].endswith(":role/modelyard-prod-backup")


def test_the_plan_follows_the_config_and_prod_locks_the_vault(plans: dict[str, Plan]) -> None:
    prod, staging = plans["prod"], plans["staging"]
    [rule] = prod.one("aws:backup/plan:Plan")["inputs"]["rules"]
    assert rule["schedule"] == "cron(0 3 * * ? *)" and rule["lifecycle"] == {"deleteAfter": 35}
    vault = prod.one("aws:backup/vault:Vault")["inputs"]
    assert vault["kmsKeyArn"] and vault["forceDestroy"] is False and rule["targetVaultName"] == vault["name"]
    lock = prod.one("aws:backup/vaultLockConfiguration:VaultLockConfiguration")["inputs"]
    assert lock == {**lock, "backupVaultName": vault["name"], "minRetentionDays": 35}
    assert "changeableForDays" not in lock  # governance mode: the lock can still be removed on purpose
    assert staging.of_type("aws:backup/vaultLockConfiguration:VaultLockConfiguration") == []
    assert staging.one("aws:backup/plan:Plan")["inputs"]["rules"][0]["lifecycle"] == {"deleteAfter": 7}
    # dev backs nothing up: no vault, and its volumes carry no backup tag.
    dev = plans["dev"]
    assert dev.of_type("aws:backup/vault:Vault") == []
    assert "tagSpecification_1" not in dev.one(STORAGE_CLASS)["inputs"]["parameters"]


def test_snapshots_are_priced_from_the_tagged_volumes(plans: dict[str, Plan]) -> None:
    items = {i.urn.split("::")[-1]: i for i in estimate(Stack(from_preview(plans["prod"].digest))).items}
    # prod's monitoring volumes: 2 x 200 GiB Prometheus + 3 x 5 GiB Alertmanager + 20 GiB Grafana = 435 GiB,
    # at $0.05 per GB-month; the ceiling keeps a full copy for each of the 35 days.
    assert (items["backup-plan"].baseline, items["backup-plan"].ceiling) == (21.75, 761.25)
    assert items["backup-vault"].kind == "free"


def _job_event(detail_type: str, detail: dict[str, str]) -> str:
    """An AWS Backup event as EventBridge delivers it (the envelope of AWS Backup's EventBridge guide)."""
    return json.dumps(
        {
            "version": "0",
            "id": "710b0398-d48e-f3c3-afca-cfeb2fdaa656",
            "detail-type": detail_type,
            "source": "aws.backup",
            "account": "123456789012",
            "time": "2026-12-04T03:10:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:ec2:us-east-1:123456789012:volume/vol-0123456789abcdef0"],
            "detail": {"backupVaultName": "modelyard-prod", **detail},
        }
    )


def test_a_failed_job_reaches_the_storage_topic_and_a_completed_one_does_not(plans: dict[str, Plan]) -> None:
    """The rule's pattern, parsed and matched by moto's EventBridge (the validation PutRule applies and the
    matcher its PutEvents routes with; moto's TestEventPattern is not implemented): every failed backup, copy and
    restore job matches, none that completed or is still running; the states are the API's own (botocore's
    enums: the events carry them), backup and copy jobs by `state`, restore jobs by `status`."""
    import botocore.session
    from moto.events.models import EventPattern

    from modelyard.infra.backup import FAILED_JOBS

    model = botocore.session.get_session().get_service_model("backup")
    enums = {
        "Backup Job State Change": model.shape_for("BackupJobState").enum,
        "Copy Job State Change": model.shape_for("CopyJobState").enum,
        "Restore Job State Change": model.shape_for("RestoreJobStatus").enum,
    }
    plan = plans["prod"]
    rule = plan.named("aws:cloudwatch/eventRule:EventRule", "backup-failures")["inputs"]
    assert rule["name"] == "modelyard-prod-backup-failures"
    target = plan.named("aws:cloudwatch/eventTarget:EventTarget", "backup-failures-target")["inputs"]
    assert target["arn"] == "arn:aws:sns:us-east-1:123456789012:modelyard-prod-storage"
    pattern = EventPattern.load(rule["eventPattern"])
    matched: dict[str, set[str]] = {}
    for kind, field, _ in FAILED_JOBS:
        for state in enums[kind]:
            if pattern.matches_event(json.loads(_job_event(kind, {field: state}))):
                matched.setdefault(kind, set()).add(state)
        # The other field never matches: a restore job has no `state`, a backup job no `status`.
        other = "status" if field == "state" else "state"
        assert not pattern.matches_event(json.loads(_job_event(kind, {other: "FAILED"})))
    assert not pattern.matches_event(
        {**json.loads(_job_event("Backup Job State Change", {"state": "FAILED"})), "source": "aws.s3"}
    )
    assert matched == {
        "Backup Job State Change": {"ABORTED", "FAILED", "EXPIRED", "PARTIAL"},
        "Copy Job State Change": {"FAILED", "PARTIAL"},
        "Restore Job State Change": {"ABORTED", "FAILED"},
    }
    assert all(set(states) <= set(enums[kind]) for kind, _, states in FAILED_JOBS)
    # Staging backs up too and hears of failures; dev backs up nothing.
    assert plans["staging"].named("aws:cloudwatch/eventRule:EventRule", "backup-failures")
    assert not [r for r in plans["dev"].of_type("aws:cloudwatch/eventRule:EventRule") if "backup" in r["urn"]]


def test_the_storage_topic_mails_the_warning_route(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    subscriptions = [
        s["inputs"]["endpoint"]
        for s in plan.of_type("aws:sns/topicSubscription:TopicSubscription")
        if "alerts-storage-email" in s["urn"]
    ]
    assert subscriptions == ["ml-platform@example.com"]
    assert plan.outputs()["storageEventsTopicArn"] == "arn:aws:sns:us-east-1:123456789012:modelyard-prod-storage"
    assert "storageEventsTopicArn" not in plans["dev"].outputs()
