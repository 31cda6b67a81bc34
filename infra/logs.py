"""The stack's log encryption key, shared by VPC flow logs and EKS control-plane logs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from modelyard.infra import iam
from modelyard.infra.common import AccountContext, kms_key


@dataclass(frozen=True, kw_only=True)
class LogEncryptionArgs:
    cluster_name: str
    account: AccountContext
    deletion_protection: bool


class LogEncryption(pulumi.ComponentResource):
    """A rotating KMS key that CloudWatch Logs may use for this account's log groups in this region only."""

    key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: LogEncryptionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:infra:LogEncryption", name, None, opts)
        account = args.account
        key = kms_key(
            f"{name}-key",
            description=f"CloudWatch log groups of {args.cluster_name}",
            account=account,
            alias=f"{args.cluster_name}-logs",
            parent=self,
            extra_statements=[iam.logs_key_statement(account.region, account.account_id, account.partition)],
            protect=args.deletion_protection,
        )
        self.key_arn = key.arn
        self.register_outputs({"key_arn": self.key_arn})
