"""The model store: a private, versioned, KMS-encrypted S3 bucket and the read-only role that pulls from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from modelyard.config import ModelStoreConfig
from modelyard.infra import iam
from modelyard.infra.common import AccountContext, kms_key

#: Actions the model-pull role may take, exactly the calls its two readers make: KServe's storage initializer
#: lists the model's prefix, then downloads each object; vLLM's Run:ai streamer lists the version's prefix,
#: then reads the config files and byte ranges of the weights (GetObject, HeadObject under the same action;
#: tests/references/aws-services.json). Nothing else.
MODEL_PULL_OBJECT_ACTIONS = ("s3:GetObject",)
MODEL_PULL_BUCKET_ACTIONS = ("s3:ListBucket",)
#: What `modelyard model push` calls through the push role (modelyard/model_push.py): it lists the version's
#: prefix and its unfinished multipart uploads, reads objects back (HeadObject, under GetObject), writes them
#: (PutObject also covers CreateMultipartUpload, UploadPart and CompleteMultipartUpload) and lists the parts
#: of an upload it resumes. Never a delete: the bucket policy refuses every delete to everyone.
MODEL_PUSH_OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts")
MODEL_PUSH_BUCKET_ACTIONS = ("s3:ListBucket", "s3:ListBucketMultipartUploads")
#: Object writes and deletes the bucket policy refuses to every principal but the push role (writes) or to
#: every principal (deletes, retention changes): versions are immutable in the store, not by courtesy.
WRITE_ACTIONS = ("s3:PutObject",)
DELETE_ACTIONS = ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:BypassGovernanceRetention")


def bucket_access(
    bucket_arn: Any,
    key_arn: Any,
    region: str,
    *,
    bucket_actions: Sequence[str],
    objects: tuple[str, Sequence[str]],
    kms: tuple[str, str | list[str]],
) -> iam.Document:
    """A role's access to the model bucket: `bucket_actions` on the bucket, the `objects` statement (Sid,
    actions) on its objects, and the `kms` statement (Sid, actions) on its key, through S3 only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListModelBucket", "Effect": "Allow", "Action": list(bucket_actions), "Resource": bucket_arn},
            {
                "Sid": objects[0],
                "Effect": "Allow",
                "Action": list(objects[1]),
                "Resource": pulumi.Output.concat(bucket_arn, "/*"),
            },
            {
                "Sid": kms[0],
                "Effect": "Allow",
                "Action": kms[1],
                "Resource": key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
            },
        ],
    }


def no_deletes(objects: pulumi.Input[str]) -> iam.Document:
    """The bucket policy statement that refuses every delete and retention change to every principal."""
    return {"Sid": "NoDeletes", "Effect": "Deny", "Principal": "*", "Action": list(DELETE_ACTIONS), "Resource": objects}


def model_pull_policy(bucket_arn: Any, key_arn: Any, region: str, model: str) -> iam.Document:
    """A model's pull role (the workloads stack makes one per catalogued model): list and read that model's
    prefix of the bucket and nothing else, decrypt through S3 only. What KServe's storage initializer and vLLM's
    streamer call (tests/test_iam_references.py)."""
    prefix = f"{model}/"
    document = bucket_access(
        bucket_arn,
        key_arn,
        region,
        bucket_actions=MODEL_PULL_BUCKET_ACTIONS,
        objects=("ReadThisModel", MODEL_PULL_OBJECT_ACTIONS),
        kms=("DecryptModelsThroughS3", "kms:Decrypt"),
    )
    listing, objects = document["Statement"][0], document["Statement"][1]
    listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}}
    objects["Resource"] = pulumi.Output.concat(bucket_arn, "/", prefix, "*")
    return document


def model_pull_service_account(model: str) -> str:
    """The service account a model's pods pull as (its pull role trusts this one alone)."""
    return f"{model}-puller"


def model_push_role_name(env: str) -> str:
    """The push role's name: `modelyard model push` assumes it by this name."""
    return f"modelyard-{env}-model-push"


#: The manifest signing key: ECDSA on P-256, SHA-256 digests (what `modelyard model push` asks KMS for, and what the
#: model server verifies with the key's public half).
SIGNING_KEY_SPEC = "ECC_NIST_P256"
SIGNING_ALGORITHM = "ECDSA_SHA_256"


def signing_key_alias(env: str) -> str:
    """The alias `modelyard model push` signs with: KMS takes it as the key id."""
    return f"alias/modelyard-{env}-model-signing"


#: The prefix server access logs are written under in the log bucket.
ACCESS_LOG_PREFIX = "models/"


def model_bucket_name(env: str, account_id: str) -> str:
    """The model store's bucket name: `modelyard model push` finds it the same way."""
    return f"modelyard-{env}-models-{account_id}"


def model_replica_bucket_name(env: str, account_id: str) -> str:
    """The replica's bucket name, in `model_store.replica_region` (policies/governance/usage.yaml's
    model_replica_pattern matches it: priced as the model store, never taken for it)."""
    return f"modelyard-{env}-model-replica-{account_id}"


#: What S3 Replication reads of each source version, as the role AWS documents for replication needs it
#: ("Setting up permissions for live replication"; with Object Lock, its retention and legal hold too).
REPLICATION_SOURCE_BUCKET_ACTIONS = ("s3:GetReplicationConfiguration", "s3:ListBucket")
REPLICATION_SOURCE_OBJECT_ACTIONS = (
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
)
#: What it writes in the replica: versions and their tags, never a delete (delete markers stay behind).
REPLICATION_DESTINATION_ACTIONS = ("s3:ReplicateObject", "s3:ReplicateTags")
#: The event S3 sends when a version could not be replicated (needs replication metrics on the rule).
REPLICATION_FAILED_EVENT = "s3:Replication:OperationFailedReplication"


@dataclass(frozen=True, kw_only=True)
class ModelStoreArgs:
    config: ModelStoreConfig
    env: str
    account: AccountContext
    deletion_protection: bool
    #: The provider of `config.replica_region` (programs.py makes it when the region is set).
    replica_provider: pulumi.ProviderResource | None = None


def _private_bucket(
    name: str, bucket: aws.s3.Bucket, parent: pulumi.Resource, provider: pulumi.ProviderResource | None = None
) -> list[pulumi.Resource]:
    """The companions every bucket here gets: public access fully blocked and object ownership enforced."""
    child = pulumi.ResourceOptions(parent=parent, provider=provider)
    return [
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        ),
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        ),
    ]


def _model_bucket_settings(
    prefix: str,
    bucket: aws.s3.Bucket,
    key_arn: pulumi.Input[str],
    cfg: ModelStoreConfig,
    parent: pulumi.Resource,
    *,
    versioned: bool,
    provider: pulumi.ProviderResource | None = None,
) -> list[pulumi.Resource]:
    """What the model bucket and its replica share: SSE-KMS with a bucket key, versioning, noncurrent versions
    expired after the retention and unfinished uploads aborted after 7 days, and Object Lock in governance mode
    where `object_lock_days` is set (with the bucket policy's deletes refused, a bypass takes an administrator
    changing that policy first). Returns the versioning and, where set, the lock: what must come after them."""
    child = pulumi.ResourceOptions(parent=parent, provider=provider)
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{prefix}-sse",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=key_arn
                ),
                bucket_key_enabled=True,
            )
        ],
        opts=child,
    )
    versioning = aws.s3.BucketVersioning(
        f"{prefix}-versioning",
        bucket=bucket.id,
        versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
            status="Enabled" if versioned else "Suspended"
        ),
        opts=child,
    )
    after_versioning = pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=[versioning])
    aws.s3.BucketLifecycleConfiguration(
        f"{prefix}-lifecycle",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-noncurrent-versions",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=cfg.noncurrent_version_retention_days
                ),
                abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=7
                ),
            )
        ],
        opts=after_versioning,
    )
    settled: list[pulumi.Resource] = [versioning]
    if cfg.object_lock_days is not None:
        settled.append(
            aws.s3.BucketObjectLockConfiguration(
                f"{prefix}-object-lock",
                bucket=bucket.id,
                object_lock_enabled="Enabled",
                rule=aws.s3.BucketObjectLockConfigurationRuleArgs(
                    default_retention=aws.s3.BucketObjectLockConfigurationRuleDefaultRetentionArgs(
                        mode="GOVERNANCE", days=cfg.object_lock_days
                    )
                ),
                opts=after_versioning,
            )
        )
    return settled


class ModelStore(pulumi.ComponentResource):
    """Model artifacts live in one bucket per environment: versioned, SSE-KMS with a bucket key, public
    access fully blocked, ACLs disabled, TLS-only, noncurrent versions expired after a retention, and
    server access logs kept in a second private bucket. Each catalogued model's pods pull through their own IRSA
    role, which reads that model's prefix and decrypts with this key through S3, nothing wider (the workloads
    stack makes it: model_pull_policy)."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]
    #: The one writer of the bucket (`modelyard model push` assumes it).
    model_push_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:infra:ModelStore", name, None, opts)
        cfg, account = args.config, args.account
        child = pulumi.ResourceOptions(parent=self)
        protect = pulumi.ResourceOptions(parent=self, protect=args.deletion_protection)

        if cfg.kms_key_arn is None:
            key_arn: pulumi.Input[str] = kms_key(
                f"{name}-key",
                description=f"Model artifacts of the {args.env} environment",
                account=account,
                alias=f"modelyard-{args.env}-models",
                parent=self,
                protect=args.deletion_protection,
            ).arn
        else:
            key_arn = cfg.kms_key_arn

        logs = aws.s3.Bucket(
            f"{name}-access-logs",
            bucket=pulumi.Output.concat("modelyard-", args.env, "-model-access-logs-", account.account_id),
            force_destroy=False,
            opts=protect,
        )
        log_companions = _private_bucket(f"{name}-access-logs", logs, self)
        # Server access logging writes only to buckets encrypted with S3-managed keys.
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-access-logs-sse",
            bucket=logs.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-access-logs-lifecycle",
            bucket=logs.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-access-logs",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                        days=cfg.access_log_retention_days
                    ),
                )
            ],
            opts=child,
        )

        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=pulumi.Output.from_input(account.account_id).apply(lambda a: model_bucket_name(args.env, a)),
            force_destroy=False,
            opts=protect,
        )
        companions = _private_bucket(f"{name}-bucket", bucket, self)
        versioning = _model_bucket_settings(f"{name}-bucket", bucket, key_arn, cfg, self, versioned=cfg.versioning)[0]
        objects = pulumi.Output.concat(bucket.arn, "/*")
        pusher = aws.iam.Role(
            f"{name}-push-role",
            name=model_push_role_name(args.env),
            description=f"modelyard model push in {args.env}: the one writer of the model bucket, never a delete",
            assume_role_policy=iam.to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {
                                "AWS": list(cfg.pusher_role_arns)
                                or pulumi.Output.concat(
                                    "arn:", account.partition, ":iam::", account.account_id, ":root"
                                )
                            },
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-push-policy",
            role=pusher.id,
            policy=iam.to_json(
                bucket_access(
                    bucket.arn,
                    key_arn,
                    account.region,
                    bucket_actions=MODEL_PUSH_BUCKET_ACTIONS,
                    objects=("WriteAndVerifyModels", MODEL_PUSH_OBJECT_ACTIONS),
                    kms=("EncryptModelsThroughS3", ["kms:GenerateDataKey", "kms:Decrypt"]),
                )
            ),
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-bucket-policy",
            bucket=bucket.id,
            policy=iam.to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        iam.deny_insecure_transport([bucket.arn, objects]),
                        {
                            "Sid": "WritesOnlyThroughThePushRole",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": list(WRITE_ACTIONS),
                            "Resource": objects,
                            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": pusher.arn}},
                        },
                        no_deletes(objects),
                    ],
                }
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=companions),
        )
        aws.s3.BucketPolicy(
            f"{name}-access-logs-policy",
            bucket=logs.id,
            policy=iam.to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "S3ServerAccessLogsFromTheModelBucket",
                            "Effect": "Allow",
                            "Principal": {"Service": "logging.s3.amazonaws.com"},
                            "Action": "s3:PutObject",
                            # Only under the prefix the model bucket logs to, only from that bucket.
                            "Resource": pulumi.Output.concat(logs.arn, "/", ACCESS_LOG_PREFIX, "*"),
                            "Condition": {
                                "ArnLike": {"aws:SourceArn": bucket.arn},
                                "StringEquals": {"aws:SourceAccount": account.account_id},
                            },
                        },
                        iam.deny_insecure_transport([logs.arn, pulumi.Output.concat(logs.arn, "/*")]),
                    ],
                }
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=log_companions),
        )
        aws.s3.BucketLogging(
            f"{name}-bucket-logging",
            bucket=bucket.id,
            target_bucket=logs.id,
            target_prefix=ACCESS_LOG_PREFIX,
            opts=child,
        )

        self._bucket, self._name = bucket, name
        self.replica_bucket_name: pulumi.Output[str] | None = None
        # The manifest's signature: only the push role may sign with this key, and only SHA-256 digests with ECDSA
        # (the key policy leaves the rest to IAM, like every key here). An asymmetric key cannot rotate by itself;
        # a new key is a new alias target and a new public key in the workloads stack.
        signing_key = aws.kms.Key(
            f"{name}-signing-key",
            description=f"Signs the manifests of {args.env}'s model versions (modelyard model push)",
            key_usage="SIGN_VERIFY",
            customer_master_key_spec=SIGNING_KEY_SPEC,
            deletion_window_in_days=30,
            policy=iam.to_json(iam.kms_key_policy(account.account_id, account.partition)),
            opts=protect,
        )
        aws.kms.Alias(
            f"{name}-signing-key-alias",
            name=signing_key_alias(args.env),
            target_key_id=signing_key.key_id,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-push-signs",
            role=pusher.id,
            policy=iam.to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "SignManifestDigests",
                            "Effect": "Allow",
                            "Action": "kms:Sign",
                            "Resource": signing_key.arn,
                            "Condition": {
                                "StringEquals": {
                                    "kms:SigningAlgorithm": SIGNING_ALGORITHM,
                                    "kms:MessageType": "DIGEST",
                                }
                            },
                        }
                    ],
                }
            ),
            opts=child,
        )
        # What the model server verifies with (base64 DER, SubjectPublicKeyInfo): read back from KMS.
        self.signing_public_key: pulumi.Output[str] = aws.kms.get_public_key_output(
            key_id=signing_key.arn, opts=pulumi.InvokeOptions(parent=self)
        ).public_key
        self.signing_key_arn = signing_key.arn

        self._replication: aws.s3.BucketReplicationConfig | None = None
        if cfg.replica_region is not None:
            if args.replica_provider is None:
                raise ValueError("model_store.replica_region is set but no provider of that region was given")
            self._replicate(name, args, bucket, key_arn, versioning, pusher)

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.kms_key_arn = pulumi.Output.from_input(key_arn)
        self.model_push_role_arn = pusher.arn
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "replica_bucket_name": self.replica_bucket_name,
            }
        )

    def _replicate(
        self,
        name: str,
        args: ModelStoreArgs,
        source: aws.s3.Bucket,
        source_key_arn: pulumi.Input[str],
        source_versioning: pulumi.Resource,
        pusher: aws.iam.Role,
    ) -> None:
        """The replica in `replica_region`: a bucket as private, versioned, encrypted (a key of its own region)
        and locked as the source, written only by S3 Replication's role, which reads every source version
        (KMS-encrypted ones included: S3 skips those unless the rule selects them) and writes no delete."""
        cfg, account = args.config, args.account
        region = cfg.replica_region
        assert region is not None
        provider = args.replica_provider
        key = kms_key(
            f"{name}-replica-key",
            description=f"Model artifact replicas of the {args.env} environment ({region})",
            account=account,
            alias=f"modelyard-{args.env}-model-replica",
            parent=self,
            protect=args.deletion_protection,
            provider=provider,
        )
        replica = aws.s3.Bucket(
            f"{name}-replica-bucket",
            bucket=pulumi.Output.from_input(account.account_id).apply(lambda a: model_replica_bucket_name(args.env, a)),
            force_destroy=False,
            opts=pulumi.ResourceOptions(parent=self, provider=provider, protect=args.deletion_protection),
        )
        companions = _private_bucket(f"{name}-replica-bucket", replica, self, provider)
        # Versioned whatever the source says (replication needs it); a locked source replicates only to a locked
        # destination, whose replicas keep the source's retention.
        locked = _model_bucket_settings(
            f"{name}-replica-bucket", replica, key.arn, cfg, self, versioned=True, provider=provider
        )
        source_objects = pulumi.Output.concat(source.arn, "/*")
        replica_objects = pulumi.Output.concat(replica.arn, "/*")
        role = aws.iam.Role(
            f"{name}-replication-role",
            description=f"S3 Replication of the {args.env} model bucket to {region}: reads versions, writes "
            "replicas, never a delete",
            assume_role_policy=iam.to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "s3.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": account.account_id},
                                "ArnLike": {"aws:SourceArn": source.arn},
                            },
                        }
                    ],
                }
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # With S3 Bucket Keys on both buckets the encryption context is the bucket's ARN, not the object's.
        aws.iam.RolePolicy(
            f"{name}-replication-policy",
            role=role.id,
            policy=iam.to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "ReadTheSourceConfiguration",
                            "Effect": "Allow",
                            "Action": list(REPLICATION_SOURCE_BUCKET_ACTIONS),
                            "Resource": source.arn,
                        },
                        {
                            "Sid": "ReadSourceVersions",
                            "Effect": "Allow",
                            "Action": list(REPLICATION_SOURCE_OBJECT_ACTIONS),
                            "Resource": source_objects,
                        },
                        {
                            "Sid": "WriteReplicas",
                            "Effect": "Allow",
                            "Action": list(REPLICATION_DESTINATION_ACTIONS),
                            "Resource": replica_objects,
                        },
                        {
                            "Sid": "DecryptSourceVersions",
                            "Effect": "Allow",
                            "Action": "kms:Decrypt",
                            "Resource": source_key_arn,
                            "Condition": {
                                "StringEquals": {"kms:ViaService": f"s3.{account.region}.amazonaws.com"},
                                "StringLike": {"kms:EncryptionContext:aws:s3:arn": [source.arn, source_objects]},
                            },
                        },
                        {
                            "Sid": "EncryptReplicas",
                            "Effect": "Allow",
                            "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                            "Resource": key.arn,
                            "Condition": {
                                "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                                "StringLike": {"kms:EncryptionContext:aws:s3:arn": [replica.arn, replica_objects]},
                            },
                        },
                    ],
                }
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.s3.BucketPolicy(
            f"{name}-replica-bucket-policy",
            bucket=replica.id,
            policy=iam.to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        iam.deny_insecure_transport([replica.arn, replica_objects]),
                        {
                            # Replicas arrive through replication; nobody writes the replica directly.
                            "Sid": "NoDirectWrites",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": list(WRITE_ACTIONS),
                            "Resource": replica_objects,
                        },
                        {
                            "Sid": "ReplicasOnlyThroughReplication",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": list(REPLICATION_DESTINATION_ACTIONS),
                            "Resource": replica_objects,
                            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": role.arn}},
                        },
                        no_deletes(replica_objects),
                    ],
                }
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=companions),
        )
        self._replication = aws.s3.BucketReplicationConfig(
            f"{name}-bucket-replication",
            bucket=source.id,
            role=role.arn,
            rules=[
                aws.s3.BucketReplicationConfigRuleArgs(
                    id=f"models-to-{region}",
                    status="Enabled",
                    # A Filter makes this a V2 rule, which S3 takes only with a Priority and DeleteMarkerReplication.
                    filter=aws.s3.BucketReplicationConfigRuleFilterArgs(prefix=""),
                    priority=1,
                    delete_marker_replication=aws.s3.BucketReplicationConfigRuleDeleteMarkerReplicationArgs(
                        status="Disabled"
                    ),
                    source_selection_criteria=aws.s3.BucketReplicationConfigRuleSourceSelectionCriteriaArgs(
                        sse_kms_encrypted_objects=aws.s3.BucketReplicationConfigRuleSourceSelectionCriteriaSseKmsEncryptedObjectsArgs(
                            status="Enabled"
                        )
                    ),
                    destination=aws.s3.BucketReplicationConfigRuleDestinationArgs(
                        bucket=replica.arn,
                        storage_class="STANDARD",
                        encryption_configuration=aws.s3.BucketReplicationConfigRuleDestinationEncryptionConfigurationArgs(
                            replica_kms_key_id=key.arn
                        ),
                        # Replication metrics: what S3 needs to send the failure event (report_failures).
                        metrics=aws.s3.BucketReplicationConfigRuleDestinationMetricsArgs(status="Enabled"),
                    ),
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[source_versioning, *locked]),
        )
        # A restore copies the replica back through the push role (the source's one writer): it may read replicas.
        aws.iam.RolePolicy(
            f"{name}-push-restore-policy",
            role=pusher.id,
            policy=iam.to_json(
                bucket_access(
                    replica.arn,
                    key.arn,
                    region,
                    bucket_actions=MODEL_PULL_BUCKET_ACTIONS,
                    objects=("ReadReplicasToRestore", MODEL_PULL_OBJECT_ACTIONS),
                    kms=("DecryptReplicasThroughS3", "kms:Decrypt"),
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.replica_bucket_name = replica.bucket

    def report_failures(self, topic_arn: pulumi.Input[str], after: Sequence[pulumi.Resource]) -> None:
        """Sends S3's event for a version it could not replicate to `topic_arn`, once the topic's policy
        (`after`) lets this bucket publish: S3 checks that it can when the notification is configured."""
        if self._replication is None:
            return
        aws.s3.BucketNotification(
            f"{self._name}-bucket-notifications",
            bucket=self._bucket.id,
            topics=[aws.s3.BucketNotificationTopicArgs(topic_arn=topic_arn, events=[REPLICATION_FAILED_EVENT])],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*after, self._replication]),
        )
