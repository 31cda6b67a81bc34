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
