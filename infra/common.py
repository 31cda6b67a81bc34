"""What every AWS-layer component shares: the account context and KMS keys."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from modelyard.infra import iam


@dataclass(frozen=True, kw_only=True)
class AccountContext:
    """Where the stack deploys: account, partition and region, resolved once per stack."""

    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    region: str

    @staticmethod
    def lookup(region: str, provider: pulumi.ProviderResource) -> AccountContext:
        opts = pulumi.InvokeOptions(provider=provider)
        identity = aws.get_caller_identity_output(opts=opts)
        partition = aws.get_partition_output(opts=opts)
        return AccountContext(account_id=identity.account_id, partition=partition.partition, region=region)


def kms_key(
    name: str,
    *,
    description: str,
    account: AccountContext,
    alias: str,
    parent: pulumi.Resource,
    extra_statements: list[iam.Document] | None = None,
    protect: bool = False,
    provider: pulumi.ProviderResource | None = None,
) -> aws.kms.Key:
    """A customer-managed, rotating KMS key with an alias, parented to `parent` (in `provider`'s region when
    given, else the parent's). The key policy lets the account administer it through IAM, plus
    `extra_statements` for services that need a grant."""
    key = aws.kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=30,
        policy=iam.to_json(iam.kms_key_policy(account.account_id, account.partition, extra_statements)),
        opts=pulumi.ResourceOptions(parent=parent, protect=protect, provider=provider),
    )
    aws.kms.Alias(
        f"{name}-alias",
        name=f"alias/{alias}",
        target_key_id=key.key_id,
        opts=pulumi.ResourceOptions(parent=parent, provider=provider),
    )
    return key


def name_tag(name: str) -> dict[str, str]:
    """A Name tag for resources shown by name in the EC2 console; the rest come from default tags."""
    return {"Name": name}
