"""ECR: immutable tags, scan on push, KMS encryption, untagged images expire."""

from __future__ import annotations

import json

from conftest import Plan


def test_repository_settings(plans: dict[str, Plan]) -> None:
    """The model server's repository and one mirror per image KServe injects and per runtime image, all alike."""
    from modelyard.infra.ecr import mirror_name
    from modelyard.platform.kserve import KSERVE_MIRRORS
    from modelyard.workloads.runtimes import RUNTIME_MIRRORS

    plan = plans["prod"]
    repos = plan.of_type("aws:ecr/repository:Repository")
    assert sorted(r["inputs"]["name"] for r in repos) == sorted(
        [
            "modelyard-prod/model-server",
            *(mirror_name("prod", u) for u in {**KSERVE_MIRRORS, **RUNTIME_MIRRORS}.values()),
        ]
    )
    for repo in repos:
        inputs = repo["inputs"]
        assert plan.parent_type(repo) == "modelyard:infra:ImageRegistry"
        assert inputs["imageTagMutability"] == "IMMUTABLE"
        assert inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert inputs["encryptionConfigurations"][0]["encryptionType"] == "KMS"
        assert inputs["encryptionConfigurations"][0]["kmsKey"].startswith("arn:aws:kms:")
        assert repo.get("protect") is True
    assert all(r.get("protect") is None for r in plans["dev"].of_type("aws:ecr/repository:Repository"))
    assert mirror_name("prod", "nvcr.io/nvidia/tritonserver") == "modelyard-prod/mirror/nvidia/tritonserver"
    rules = json.loads(plan.one("aws:ecr/lifecyclePolicy:LifecyclePolicy")["inputs"]["policy"])["rules"]
    assert rules[0]["selection"]["tagStatus"] == "untagged"
