"""AWS Backup of the monitoring volumes: an encrypted vault (locked in governance mode where asked), a daily plan
and a selection by the tag the monitoring StorageClass puts on every volume it provisions.

The EBS CSI driver applies a StorageClass's `tagSpecification_<n>: "key=value"` parameters to each volume it
creates (kubernetes-sigs/aws-ebs-csi-driver, docs/tagging.md and docs/parameters.md, v1.6.0 and later; its
AmazonEBSCSIDriverPolicy allows `ec2:CreateTags` on CreateVolume), so a volume Prometheus' StatefulSet gets in a
new zone is backed up without anyone listing it. AWS Backup assumes its own role with the AWS managed
policies for backups and restores; the selection takes EBS volumes AND the tag condition (AWS Backup Developer
Guide, "Assigning resources programmatically"; the API's BackupSelection: several conditions are ANDed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from modelyard.config import BackupConfig
from modelyard.infra import iam
from modelyard.infra.common import AccountContext, kms_key
from modelyard.policies.governance.conventions import BACKUP_TAG_KEY, backup_selection

#: The job states that mean a job did not do its work, per EventBridge event: AWS Backup's events carry the API's
#: states (backup and copy jobs `state`, restore jobs `status`: its EventBridge guide; the values are botocore's
#: BackupJobState, CopyJobState and RestoreJobStatus enums, tests/test_backup.py).
FAILED_JOBS = (
    ("Backup Job State Change", "state", ("ABORTED", "FAILED", "EXPIRED", "PARTIAL")),
    ("Copy Job State Change", "state", ("FAILED", "PARTIAL")),
    ("Restore Job State Change", "status", ("ABORTED", "FAILED")),
)


def failure_pattern() -> dict[str, object]:
    """The EventBridge pattern of a failed backup, copy or restore job of AWS Backup."""
    return {
        "source": ["aws.backup"],
        "$or": [{"detail-type": [kind], "detail": {field: list(states)}} for kind, field, states in FAILED_JOBS],
    }


def failure_rule_name(env: str) -> str:
    """The EventBridge rule that sends failed jobs to the storage topic (whose policy names its ARN)."""
    return f"modelyard-{env}-backup-failures"


#: The AWS managed policies AWS Backup's role needs to snapshot EBS volumes and restore them.
BACKUP_SERVICE_POLICIES = (
    "service-role/AWSBackupServiceRolePolicyForBackup",
    "service-role/AWSBackupServiceRolePolicyForRestores",
)


@dataclass(frozen=True, kw_only=True)
class BackupsArgs:
    env: str
    account: AccountContext
    config: BackupConfig
    deletion_protection: bool


class Backups(pulumi.ComponentResource):
    """The vault, the plan and the tag selection; `vault_name` is what the restore runbook lists."""

    vault_name: pulumi.Output[str]

    def __init__(self, name: str, args: BackupsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:infra:Backups", name, None, opts)
        cfg, account = args.config, args.account
        child = pulumi.ResourceOptions(parent=self)
        key = kms_key(
            f"{name}-key",
            description=f"AWS Backup vault of modelyard {args.env}",
            account=account,
            alias=f"modelyard-{args.env}-backup",
            parent=self,
            protect=args.deletion_protection,
        )
        vault = aws.backup.Vault(
            f"{name}-vault",
            name=f"modelyard-{args.env}",
            kms_key_arn=key.arn,
            force_destroy=False,
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )
        if cfg.vault_lock:
            # Without changeable_for_days the lock stays in governance mode: it can still be removed on purpose.
            aws.backup.VaultLockConfiguration(
                f"{name}-vault-lock",
                backup_vault_name=vault.name,
                min_retention_days=cfg.retention_days,
                opts=child,
            )
        role = aws.iam.Role(
            f"{name}-role",
            name=f"modelyard-{args.env}-backup",
            description=f"AWS Backup for modelyard {args.env}: snapshots and restores of tagged volumes",
            assume_role_policy=iam.to_json(
                iam.service_trust("backup.amazonaws.com", source_account=account.account_id)
            ),
            opts=child,
        )
        for i, policy in enumerate(BACKUP_SERVICE_POLICIES):
            aws.iam.RolePolicyAttachment(
                f"{name}-role-{i}",
                role=role.name,
                policy_arn=iam.managed_policy_arn(account.partition, policy),
                opts=child,
            )
        plan = aws.backup.Plan(
            f"{name}-plan",
            name=f"modelyard-{args.env}-monitoring",
            rules=[
                {
                    "rule_name": "daily",
                    "target_vault_name": vault.name,
                    "schedule": cfg.schedule,
                    "start_window": 60,
                    "completion_window": 180,
                    "lifecycle": {"delete_after": cfg.retention_days},
                }
            ],
            opts=child,
        )
        aws.backup.Selection(
            f"{name}-selection",
            name=f"modelyard-{args.env}-monitoring",
            plan_id=plan.id,
            iam_role_arn=role.arn,
            resources=[pulumi.Output.concat("arn:", account.partition, ":ec2:*:*:volume/*")],
            # Resources AND conditions (AWS's "Assigning resources programmatically", example 1): EBS volumes carrying
            # this environment's tag, nothing else.
            conditions=[
                {"string_equals": [{"key": f"aws:ResourceTag/{BACKUP_TAG_KEY}", "value": backup_selection(args.env)}]}
            ],
            opts=child,
        )
        self.vault_name = vault.name
        self._env, self._name = args.env, name
        self.register_outputs({"vault_name": self.vault_name})

    def report_failures(self, topic_arn: pulumi.Input[str], after: Sequence[pulumi.Resource]) -> None:
        """Sends every failed backup, copy or restore job to `topic_arn` (EventBridge: AWS Backup's own SNS
        notifications cannot tell a failed backup job from a completed one), once the topic lets the rule
        publish (`after`)."""
        child = pulumi.ResourceOptions(parent=self)
        rule = aws.cloudwatch.EventRule(
            f"{self._name}-failures",
            name=failure_rule_name(self._env),
            description=f"Failed AWS Backup jobs of modelyard {self._env}",
            event_pattern=iam.to_json(failure_pattern()),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{self._name}-failures-target",
            rule=rule.name,
            arn=topic_arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
        )
