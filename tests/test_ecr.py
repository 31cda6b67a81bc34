"""ECR: immutable tags, scan on push, KMS encryption, untagged images expire."""

from __future__ import annotations

import json

from conftest import Plan


def test_repository_settings(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    repo = plan.one("aws:ecr/repository:Repository")
    inputs = repo["inputs"]
    assert plan.parent_type(repo) == "modelyard:infra:ImageRegistry"
    assert inputs["imageTagMutability"] == "IMMUTABLE"
    assert inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert inputs["encryptionConfigurations"][0]["encryptionType"] == "KMS"
    assert inputs["encryptionConfigurations"][0]["kmsKey"].startswith("arn:aws:kms:")
    assert repo.get("protect") is True and plans["dev"].one("aws:ecr/repository:Repository").get("protect") is None
    rules = json.loads(plan.one("aws:ecr/lifecyclePolicy:LifecyclePolicy")["inputs"]["policy"])["rules"]
    assert rules[0]["selection"]["tagStatus"] == "untagged"
