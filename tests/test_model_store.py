"""Model store: private, versioned, SSE-KMS, TLS-only, lifecycle, access logs; read-only IRSA pull role."""

from __future__ import annotations

import json

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


def test_model_pull_role_is_read_only_on_this_bucket_for_one_service_account(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    role = plan.named("aws:iam/role:Role", "models-pull-role")["inputs"]
    trust = json.loads(role["assumeRolePolicy"])["Statement"][0]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    conditions = trust["Condition"]["StringEquals"]
    assert sorted(conditions.values()) == ["sts.amazonaws.com", "system:serviceaccount:models:model-puller"]
    doc = json.loads(plan.named("aws:iam/rolePolicy:RolePolicy", "models-pull-policy")["inputs"]["policy"])
    actions = sorted(
        a for st in doc["Statement"] for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    )
    assert actions == ["kms:Decrypt", "s3:GetObject", "s3:ListBucket"]
    resources = {st["Sid"]: st["Resource"] for st in doc["Statement"]}
    assert resources["ListModelBucket"] == "arn:aws:s3:::modelyard-dev-models-123456789012"
    assert resources["ReadModels"] == "arn:aws:s3:::modelyard-dev-models-123456789012/*"
    assert all(st["Effect"] == "Allow" for st in doc["Statement"])


def test_access_log_bucket_accepts_only_the_model_bucket(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    policy = json.loads(
        _for_bucket(plan, "aws:s3/bucketPolicy:BucketPolicy", "modelyard-dev-model-access-logs-123456789012")["policy"]
    )
    allow = next(s for s in policy["Statement"] if s["Effect"] == "Allow")
    assert allow["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert allow["Condition"]["ArnLike"]["aws:SourceArn"] == "arn:aws:s3:::modelyard-dev-models-123456789012"
