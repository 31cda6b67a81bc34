"""Model store: private, versioned, SSE-KMS, TLS-only, lifecycle, access logs; read-only IRSA pull role; the
replica in another region (prod) and the report of a version that failed to replicate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ParamValidationError
from conftest import Plan


def _for_bucket(plan: Plan, token: str, bucket: str) -> dict:  # type: ignore[type-arg]
    found = [s for s in plan.of_type(token) if s["inputs"]["bucket"] == bucket]
    assert len(found) == 1, f"{token} for {bucket}: {len(found)}"
    return found[0]["inputs"]


def test_every_bucket_is_private_and_owner_enforced(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    for bucket in plan.of_type("aws:s3/bucket:Bucket"):
        name = bucket["inputs"]["bucket"]
        block = _for_bucket(plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", name)
        assert all(
            block[k] is True
            for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        ), name
        own = _for_bucket(plan, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", name)
        assert own["rule"]["objectOwnership"] == "BucketOwnerEnforced"
        policy = json.loads(_for_bucket(plan, "aws:s3/bucketPolicy:BucketPolicy", name)["policy"])
        assert any(s["Sid"] == "DenyInsecureTransport" for s in policy["Statement"]), name
        assert bucket["inputs"]["forceDestroy"] is False


def test_model_bucket_versioned_kms_and_lifecycle(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    bucket = "modelyard-prod-models-123456789012"
    sse = _for_bucket(
        plan, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", bucket
    )["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert sse["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith("arn:aws:kms:")
    assert sse["bucketKeyEnabled"] is True
    versioning = _for_bucket(plan, "aws:s3/bucketVersioning:BucketVersioning", bucket)
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    rule = _for_bucket(plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", bucket)["rules"][0]
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 90
    logging = _for_bucket(plan, "aws:s3/bucketLogging:BucketLogging", bucket)
    assert logging["targetBucket"] == "modelyard-prod-model-access-logs-123456789012"
    assert all(b.get("protect") for b in plan.of_type("aws:s3/bucket:Bucket"))


def test_existing_kms_key_is_used_when_configured(plan_with) -> None:  # type: ignore[no-untyped-def]
    arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    plan = plan_with("dev", lambda p: p["model_store"].update(kms_key_arn=arn))
    sse = _for_bucket(
        plan,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "modelyard-dev-models-123456789012",
    )["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == arn
    assert not [k for k in plan.of_type("aws:kms/key:Key") if "models-key" in k["urn"]]


def test_each_model_pull_role_is_read_only_on_its_prefix_for_its_service_account(all_plans: dict[str, Plan]) -> None:
    plan = all_plans["dev"]
    for model in plan.outputs_of("modelyard-workloads")["models"]:
        role = plan.named("aws:iam/role:Role", f"{model}-pull-role")["inputs"]
        trust = json.loads(role["assumeRolePolicy"])["Statement"][0]
        assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
        conditions = trust["Condition"]["StringEquals"]
        assert sorted(conditions.values()) == ["sts.amazonaws.com", f"system:serviceaccount:models:{model}-puller"]
        doc = json.loads(plan.named("aws:iam/rolePolicy:RolePolicy", f"{model}-pull-policy")["inputs"]["policy"])
        actions = sorted(
            a for st in doc["Statement"] for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
        )
        assert actions == ["kms:Decrypt", "s3:GetObject", "s3:ListBucket"]
        resources = {st["Sid"]: st["Resource"] for st in doc["Statement"]}
        assert resources["ListModelBucket"] == "arn:aws:s3:::modelyard-dev-models-123456789012"
        assert resources["ReadThisModel"] == f"arn:aws:s3:::modelyard-dev-models-123456789012/{model}/*"
        assert all(st["Effect"] == "Allow" for st in doc["Statement"])


def test_access_log_bucket_accepts_only_the_model_bucket(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    policy = json.loads(
        _for_bucket(plan, "aws:s3/bucketPolicy:BucketPolicy", "modelyard-dev-model-access-logs-123456789012")["policy"]
    )
    allow = next(s for s in policy["Statement"] if s["Effect"] == "Allow")
    assert allow["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert allow["Condition"]["ArnLike"]["aws:SourceArn"] == "arn:aws:s3:::modelyard-dev-models-123456789012"


PROD_BUCKET = "modelyard-prod-models-123456789012"
PROD_REPLICA = "modelyard-prod-model-replica-123456789012"


def _region(plan: Plan, state: dict) -> str:  # type: ignore[type-arg]
    provider_urn = state["provider"].rsplit("::", 1)[0]
    return str(plan.by_urn[provider_urn]["inputs"]["region"])


def test_prod_replicates_every_model_version_to_another_region(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    [replica] = [b for b in plan.of_type("aws:s3/bucket:Bucket") if b["inputs"]["bucket"] == PROD_REPLICA]
    source = next(b for b in plan.of_type("aws:s3/bucket:Bucket") if b["inputs"]["bucket"] == PROD_BUCKET)
    assert (_region(plan, source), _region(plan, replica)) == ("us-east-1", "us-west-2")
    assert replica["protect"] is True
    # As private, encrypted, versioned and locked as the source, every companion in the replica's region.
    for token in (
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    ):
        [state] = [s for s in plan.of_type(token) if s["inputs"]["bucket"] == PROD_REPLICA]
        assert _region(plan, state) == "us-west-2", token
    sse = _for_bucket(
        plan, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", PROD_REPLICA
    )["rules"][0]
    replica_key = plan.named("aws:kms/key:Key", "models-replica-key")
    assert _region(plan, replica_key) == "us-west-2" and replica_key["inputs"]["enableKeyRotation"] is True
    assert sse["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith("arn:aws:kms:us-west-2:")
    lock = _for_bucket(plan, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", PROD_REPLICA)
    assert lock["rule"]["defaultRetention"] == {"mode": "GOVERNANCE", "days": 90}
    # The rule: every version (KMS-encrypted ones too), re-encrypted with the replica's key, metrics on, no deletes.
    config = plan.one("aws:s3/bucketReplicationConfig:BucketReplicationConfig")["inputs"]
    [rule] = config["rules"]
    assert rule["status"] == "Enabled" and rule["filter"] == {"prefix": ""} and rule["priority"] == 1
    assert rule["deleteMarkerReplication"] == {"status": "Disabled"}
    assert rule["sourceSelectionCriteria"] == {"sseKmsEncryptedObjects": {"status": "Enabled"}}
    assert rule["destination"]["bucket"] == f"arn:aws:s3:::{PROD_REPLICA}"
    assert (
        rule["destination"]["encryptionConfiguration"]["replicaKmsKeyId"]
        == sse["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"]
    )
    assert rule["destination"]["metrics"] == {"status": "Enabled"}
    assert config["role"].startswith("arn:aws:iam::123456789012:role/models-replication-role-")
    # Only the replication role writes replicas, nobody writes or deletes there directly.
    policy = json.loads(_for_bucket(plan, "aws:s3/bucketPolicy:BucketPolicy", PROD_REPLICA)["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReplicasOnlyThroughReplication"]["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": config["role"]}
    }
    assert by_sid["NoDirectWrites"]["Action"] == ["s3:PutObject"] and "Condition" not in by_sid["NoDirectWrites"]
    assert "s3:DeleteObjectVersion" in by_sid["NoDeletes"]["Action"]
    # A version S3 could not replicate is reported to the storage topic.
    notification = plan.one("aws:s3/bucketNotification:BucketNotification")["inputs"]
    assert notification["bucket"] == PROD_BUCKET
    [topic] = notification["topics"]
    assert topic["events"] == ["s3:Replication:OperationFailedReplication"]
    assert topic["topicArn"].endswith(":modelyard-prod-storage")
    assert plan.outputs()["modelReplicaBucket"] == PROD_REPLICA


def test_a_stack_without_a_replica_region_replicates_nothing(plans: dict[str, Plan]) -> None:
    for env in ("dev", "staging"):
        plan = plans[env]
        assert not plan.of_type("aws:s3/bucketReplicationConfig:BucketReplicationConfig")
        assert not plan.of_type("aws:s3/bucketNotification:BucketNotification")
        assert [p["urn"].rsplit("::", 1)[-1] for p in plan.of_type("pulumi:providers:aws")] == ["aws"]


def _s3_api(value: object) -> object:
    """A replication configuration as the plan has it (Pulumi's names) in the S3 API's names."""
    special = {"id": "ID", "replicaKmsKeyId": "ReplicaKmsKeyID"}
    if isinstance(value, dict):
        return {special.get(k, k[:1].upper() + k[1:]): _s3_api(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_s3_api(v) for v in value]
    return value


def test_the_replication_configuration_is_one_the_s3_api_takes(plans: dict[str, Plan]) -> None:
    """The rendered rule through botocore's S3 model (its shapes and required members) into moto, and read back;
    the V2 rule has what AWS's own PutBucketReplication example gives one (tests/references/aws-services.json)."""
    import boto3
    from iam_docs import substitute
    from moto import mock_aws

    plan = plans["prod"]
    config = plan.one("aws:s3/bucketReplicationConfig:BucketReplicationConfig")["inputs"]
    api = {"Role": config["role"], "Rules": _s3_api(config["rules"])}
    reference = json.loads((Path(__file__).parent / "references" / "aws-services.json").read_text())["s3-replication"]
    example = substitute(reference["configuration"], {"DestinationBucketArn": f"arn:aws:s3:::{PROD_REPLICA}"})
    rule = api["Rules"][0]  # type: ignore[index]
    for key in ("Status", "Priority", "DeleteMarkerReplication", "Filter"):
        assert rule[key] == example[key], key
    assert rule["Destination"]["Bucket"] == example["Destination"]["Bucket"]
    with mock_aws():
        east, west = boto3.client("s3", region_name="us-east-1"), boto3.client("s3", region_name="us-west-2")
        east.create_bucket(Bucket=PROD_BUCKET)
        west.create_bucket(Bucket=PROD_REPLICA, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        for client, name in ((east, PROD_BUCKET), (west, PROD_REPLICA)):
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        east.put_bucket_replication(Bucket=PROD_BUCKET, ReplicationConfiguration=api)  # type: ignore[arg-type]
        back = east.get_bucket_replication(Bucket=PROD_BUCKET)["ReplicationConfiguration"]
        assert back["Role"] == config["role"]
        assert (
            back["Rules"][0]["Destination"]["EncryptionConfiguration"] == rule["Destination"]["EncryptionConfiguration"]
        )
        # botocore checks every name against S3's model: a misspelt one is refused before any request.
        wrong = json.loads(json.dumps(api).replace("ReplicaKmsKeyID", "ReplicaKmsKeyId"))
        with pytest.raises(ParamValidationError, match="ReplicaKmsKeyId"):
            east.put_bucket_replication(Bucket=PROD_BUCKET, ReplicationConfiguration=wrong)


def test_only_the_push_role_may_sign_and_only_manifest_digests(plans: dict[str, Plan]) -> None:
    """The manifest signing key (infra/model_store.py): ECDSA on P-256, signing only; kms:Sign for the push role
    alone, on that key, for SHA-256 digests; its public half exported for the workloads stack."""
    for env, plan in plans.items():
        [key] = [k for k in plan.of_type("aws:kms/key:Key") if k["inputs"].get("keyUsage") == "SIGN_VERIFY"]
        assert key["inputs"]["customerMasterKeySpec"] == "ECC_NIST_P256"
        alias = next(a for a in plan.of_type("aws:kms/alias:Alias") if a["urn"].endswith("::models-signing-key-alias"))
        assert alias["inputs"]["name"] == f"alias/modelyard-{env}-model-signing"
        assert key["urn"] in alias["propertyDependencies"]["targetKeyId"]
        signers = [
            (p["urn"].rsplit("::", 1)[1], st)
            for p in plan.of_type("aws:iam/rolePolicy:RolePolicy")
            for st in json.loads(p["inputs"]["policy"])["Statement"]
            if "kms:Sign" in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
        ]
        assert [name for name, _ in signers] == ["models-push-signs"], env
        statement = signers[0][1]
        assert statement["Condition"] == {
            "StringEquals": {"kms:SigningAlgorithm": "ECDSA_SHA_256", "kms:MessageType": "DIGEST"}
        }
        policy = next(
            p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy") if p["urn"].endswith("::models-push-signs")
        )
        assert key["urn"] in policy["propertyDependencies"]["policy"]
        assert plan.outputs()["modelSigningPublicKey"].startswith("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE")
