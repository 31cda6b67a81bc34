"""S3: public access, ACLs, encryption, versioning, TLS, ownership, and public principals in policies; backup vaults."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..resources import Resource, as_list, dig, sequence, statements
from .base import POLICY_FIELDS, Context, Finding, _true, _unknown, resource_rule, stack_rule
from .iam import _binds

PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")


def _bucket_companions(ctx: Context, bucket: Resource, typ: str) -> list[Resource]:
    return ctx.stack.referencing(bucket, typ, prop="bucket") or ctx.stack.referencing(bucket, typ)


def _is_model_bucket(ctx: Context, bucket: Resource) -> bool:
    name = bucket.get("bucket")
    return isinstance(name, str) and name == ctx.model_bucket()


@stack_rule("s3-public-access-blocked", "Every bucket blocks public access (all four settings).", basic=True)
def _s3_pab(ctx: Context) -> Iterator[Finding]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    for bucket in ctx.stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        blocks = _bucket_companions(ctx, bucket, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        if not blocks:
            yield Finding(
                bucket.urn, "publicAccessBlock", None, "no BucketPublicAccessBlock; add one with all four flags true"
            )
            continue
        off = [f for f in flags if not _true(blocks[0].get(f)) and not _unknown(blocks[0].inputs.get(f))]
        if off:
            yield Finding(blocks[0].urn, ", ".join(off), False, "must be true: public access stays possible otherwise")


@resource_rule(
    "s3-no-public-acl",
    "No bucket ACL grants public or any-AWS-user access.",
    ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucket:Bucket"),
    basic=True,
)
def _s3_acl(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    acl = r.get("acl")
    if acl in PUBLIC_ACLS:
        yield "acl", acl, "is a public canned ACL; use private and BucketOwnerEnforced ownership"
    for i, grant in enumerate(as_list(r.get("accessControlPolicy", "grants"))):
        uri = (grant.get("grantee") or {}).get("uri", "") if isinstance(grant, Mapping) else ""
        if uri.endswith(("/AllUsers", "/AuthenticatedUsers")):
            yield f"accessControlPolicy.grants[{i}]", uri, "grants access to everyone; remove the grant"


@stack_rule("s3-encryption", "Every bucket has default encryption; the model store uses SSE-KMS.", basic=True)
def _s3_sse(ctx: Context) -> Iterator[Finding]:
    for bucket in ctx.stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        configs = _bucket_companions(
            ctx, bucket, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        )
        if not configs:
            yield Finding(bucket.urn, "serverSideEncryption", None, "no encryption configuration; add SSE-KMS")
            continue
        algo = configs[0].get("rules", 0, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        if _is_model_bucket(ctx, bucket) and algo is not None and algo != "aws:kms":
            yield Finding(
                configs[0].urn,
                "rules[0].applyServerSideEncryptionByDefault.sseAlgorithm",
                algo,
                "the model store must use aws:kms",
            )


@stack_rule("s3-model-versioning", "The model store keeps versions (restores deleted models).")
def _s3_versioning(ctx: Context) -> Iterator[Finding]:
    for bucket in ctx.stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        if not _is_model_bucket(ctx, bucket):
            continue
        versioning = _bucket_companions(ctx, bucket, "aws:s3/bucketVersioning:BucketVersioning")
        status = versioning[0].get("versioningConfiguration", "status") if versioning else None
        if status != "Enabled" and not (
            versioning and status is None and _unknown(versioning[0].inputs.get("versioningConfiguration"))
        ):
            yield Finding(bucket.urn, "versioning", status, "the model bucket must have versioning Enabled")


#: What keeps a model version as it was pushed: no principal may delete a version or change its retention.
MODEL_STORE_DELETES = (
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutObjectRetention",
    "s3:BypassGovernanceRetention",
)


def _denied(policies: list[Resource], action: str, *, to_all_but_one: bool = False) -> bool:
    """Whether a Deny statement of the bucket's policy refuses `action` to every principal (or, with
    `to_all_but_one`, to every principal but one named by aws:PrincipalArn)."""
    for p in policies:
        for st in statements(p.get("policy")):
            if st.get("Effect") != "Deny" or st.get("Principal") not in ("*", {"AWS": "*"}):
                continue
            if not any(a in (action, "s3:*") for a in as_list(st.get("Action"))):
                continue
            condition = st.get("Condition") or {}
            if not condition and not to_all_but_one:
                return True
            named = (condition.get("ArnNotEquals") or {}).get("aws:PrincipalArn")
            if to_all_but_one and len(condition) == 1 and len(as_list(named)) == 1:
                return True
    return False


@stack_rule(
    "model-store-immutable",
    "The model store keeps every version as pushed: Object Lock with a default retention, one writer (the "
    "push role), and no deletes for anyone.",
)
def _model_store_immutable(ctx: Context) -> Iterator[Finding]:
    for bucket in ctx.stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        if not _is_model_bucket(ctx, bucket):
            continue
        locks = _bucket_companions(ctx, bucket, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
        mode = locks[0].get("rule", "defaultRetention", "mode") if locks else None
        if mode not in ("GOVERNANCE", "COMPLIANCE") and not (locks and _unknown(locks[0].inputs.get("rule"))):
            yield Finding(bucket.urn, "objectLock", mode, "the model bucket needs Object Lock with a default retention")
        policies = _bucket_companions(ctx, bucket, "aws:s3/bucketPolicy:BucketPolicy")
        if policies and _unknown(policies[0].inputs.get("policy")):
            continue
        if not _denied(policies, "s3:PutObject", to_all_but_one=True):
            yield Finding(bucket.urn, "policy", None, "no statement denies s3:PutObject to all but the push role")
        missing = [a for a in MODEL_STORE_DELETES if not _denied(policies, a)]
        if missing:
            yield Finding(bucket.urn, "policy", missing, "the bucket policy must deny these to every principal")


@stack_rule("s3-tls-only", "Every bucket policy denies requests without TLS.", basic=True)
def _s3_tls(ctx: Context) -> Iterator[Finding]:
    for bucket in ctx.stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        policies = _bucket_companions(ctx, bucket, "aws:s3/bucketPolicy:BucketPolicy")
        if policies and _unknown(policies[0].inputs.get("policy")):
            continue
        denies = any(
            st.get("Effect") == "Deny"
            and str((st.get("Condition") or {}).get("Bool", {}).get("aws:SecureTransport")).lower() == "false"
            for p in policies
            for st in statements(p.get("policy"))
        )
        if not denies:
            yield Finding(bucket.urn, "policy", None, "no bucket policy statement denies aws:SecureTransport false")


@resource_rule(
    "no-public-principal",
    'No resource policy allows Principal "*" without a condition.',
    tuple(POLICY_FIELDS),
    basic=True,
)
def _public_principal(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    field_ = POLICY_FIELDS[r.type]
    for i, st in enumerate(statements(r.get(field_))):
        principal = st.get("Principal")
        values = as_list(principal.get("AWS")) if isinstance(principal, Mapping) else as_list(principal)
        if st.get("Effect") == "Allow" and "*" in values and not _binds(st):
            yield (
                f"{field_}.Statement[{i}]",
                principal,
                "allows anyone: name the principals, or bind them with a condition on the source account, ARN, "
                "VPC or organization (aws:SecureTransport alone binds nobody)",
            )


@stack_rule("s3-ownership-enforced", "Every bucket enforces object ownership (ACLs disabled).")
def _s3_ownership(ctx: Context) -> Iterator[Finding]:
    for bucket in ctx.stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        controls = _bucket_companions(ctx, bucket, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
        if not any(c.get("rule", "objectOwnership") == "BucketOwnerEnforced" for c in controls):
            yield Finding(bucket.urn, "ownershipControls", None, "add BucketOwnershipControls: BucketOwnerEnforced")


@stack_rule(
    "backup-vault-protected",
    "Backup vaults are encrypted with a customer-managed KMS key and, where the environment asks, locked (no "
    "recovery point deleted before its retention); where it asks for backups, every EBS StorageClass tags its "
    "volumes with a tag a backup selection takes.",
    params={"requireLock": False, "requireBackups": False},
)
def _backup_vault(ctx: Context) -> Iterator[Finding]:
    lock_type = "aws:backup/vaultLockConfiguration:VaultLockConfiguration"
    locked_names = {str(lock.get("backupVaultName")) for lock in ctx.stack.of_type(lock_type)}
    for vault in ctx.stack.of_type("aws:backup/vault:Vault"):
        key = vault.get("kmsKeyArn")
        if not _unknown(key) and not key:
            yield Finding(vault.urn, "kmsKeyArn", key, "set a customer-managed KMS key (the default is AWS-owned)")
        if not ctx.param("backup-vault-protected", "requireLock", False):
            continue
        if (
            not ctx.stack.referencing(vault, lock_type, prop="backupVaultName")
            and vault.get("name") not in locked_names
        ):
            yield Finding(
                vault.urn,
                "name",
                vault.get("name"),
                "lock the vault (a VaultLockConfiguration with min_retention_days): without one, whoever may delete "
                "recovery points can empty it",
            )
    if not ctx.param("backup-vault-protected", "requireBackups", False):
        return
    selected = set()
    for selection in ctx.stack.of_type("aws:backup/selection:Selection"):
        for condition in as_list(selection.get("conditions")):
            for equals in as_list(condition.get("stringEquals") if isinstance(condition, Mapping) else None):
                if isinstance(equals, Mapping):
                    selected.add((str(equals.get("key")).removeprefix("aws:ResourceTag/"), str(equals.get("value"))))
    for sc in ctx.stack.of_type("kubernetes:storage.k8s.io/v1:StorageClass"):
        if sc.get("provisioner") != "ebs.csi.aws.com":
            continue
        params = sc.get("parameters")
        if _unknown(params):
            continue
        tags = {
            tuple(str(v).split("=", 1))
            for k, v in (params.items() if isinstance(params, Mapping) else ())
            if str(k).lower().startswith("tagspecification") and "=" in str(v)
        }
        if not tags & selected:
            yield Finding(
                sc.urn,
                "parameters",
                params,
                "tag the volumes it provisions (tagSpecification_1: key=value) with a tag an AWS Backup selection "
                "takes: nothing backs them up",
            )


#: The event S3 sends for a version it could not replicate.
REPLICATION_FAILED = "s3:Replication:OperationFailedReplication"
BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")


@stack_rule(
    "model-store-replicated",
    "The model store is replicated to a bucket in another region: every version, SSE-KMS ones included, "
    "re-encrypted there, with the metrics S3 needs to report a failed version and a notification of it.",
    params={"requireReplica": False},
)
def _model_replica(ctx: Context) -> Iterator[Finding]:
    """What replicates nothing without an error: a rule left Disabled; no SseKmsEncryptedObjects selection (S3
    skips every SSE-KMS object, and every model version is one); no replica key (S3 refuses the selection
    without one); the destination in the source's own region; metrics off (then S3 sends no failure event);
    no notification of that event. Versioning and Object Lock on the destination S3 itself enforces."""
    for bucket in ctx.stack.of_type(*BUCKET_TYPES):
        if not _is_model_bucket(ctx, bucket):
            continue
        configs = _bucket_companions(ctx, bucket, "aws:s3/bucketReplicationConfig:BucketReplicationConfig")
        if not configs:
            if ctx.param("model-store-replicated", "requireReplica", False):
                yield Finding(
                    bucket.urn,
                    "replication",
                    None,
                    "replicate the model bucket to another region (model_store.replica_region): one region's loss "
                    "takes every model otherwise",
                )
            continue
        config = configs[0]
        rules = config.inputs.get("rules")
        if _unknown(rules):
            continue
        for i, rule in enumerate(sequence(rules)):
            where = f"rules[{i}]"
            if dig(rule, "status") != "Enabled":
                yield Finding(config.urn, f"{where}.status", dig(rule, "status"), "must be Enabled")
            sse = dig(rule, "sourceSelectionCriteria", "sseKmsEncryptedObjects", "status")
            if sse != "Enabled":
                yield Finding(
                    config.urn,
                    f"{where}.sourceSelectionCriteria.sseKmsEncryptedObjects.status",
                    sse,
                    "must be Enabled: S3 replicates no SSE-KMS object without it, and every model version is one",
                )
            key = dig(rule, "destination", "encryptionConfiguration", "replicaKmsKeyId")
            if not key and not _unknown(dig(rule, "destination", "encryptionConfiguration")):
                yield Finding(
                    config.urn,
                    f"{where}.destination.encryptionConfiguration.replicaKmsKeyId",
                    key,
                    "name a KMS key of the destination's region to encrypt the replicas with",
                )
            metrics = dig(rule, "destination", "metrics", "status")
            if metrics != "Enabled":
                yield Finding(
                    config.urn,
                    f"{where}.destination.metrics.status",
                    metrics,
                    "must be Enabled: without replication metrics S3 sends no event for a version it failed",
                )
        here = ctx.stack.provider_region(bucket)
        for dest in (r for r in ctx.stack.resources if r.type in BUCKET_TYPES and config.depends_on(r.urn, "rules")):
            there = ctx.stack.provider_region(dest)
            if here is not None and there == here:
                yield Finding(
                    config.urn,
                    "rules.destination.bucket",
                    there,
                    f"the replica is in the source's own region ({here}): it survives nothing the source does not",
                )
        notified = any(
            REPLICATION_FAILED in as_list(topic.get("events"))
            for n in _bucket_companions(ctx, bucket, "aws:s3/bucketNotification:BucketNotification")
            for topic in sequence(n.get("topics"))
            if isinstance(topic, Mapping)
        )
        if not notified:
            yield Finding(
                bucket.urn,
                "notifications",
                None,
                f"send {REPLICATION_FAILED} to a topic someone reads: a version that fails to replicate says so "
                "nowhere else",
            )
