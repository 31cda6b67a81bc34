"""The ECR repositories: the model server's images, and mirrors of the upstream images KServe injects
into model pods (its storage initializer and serving runtimes), so that every image a model pod runs
comes from the account's own registry."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from modelyard.infra.common import AccountContext, kms_key

#: Untagged images (left behind by failed pushes) are removed after this many days.
UNTAGGED_EXPIRY_DAYS = 14


@dataclass(frozen=True, kw_only=True)
class ImageRegistryArgs:
    env: str
    account: AccountContext
    deletion_protection: bool
    #: Upstream images to mirror, by key: key -> upstream repository (e.g. kserve/storage-initializer).
    mirrors: Mapping[str, str] = field(default_factory=dict)


def mirror_name(env: str, upstream: str) -> str:
    """The ECR repository that mirrors `upstream` (a Docker Hub or other registry path)."""
    return f"modelyard-{env}/mirror/{upstream.split('/', 1)[1] if '.' in upstream.split('/', 1)[0] else upstream}"


class ImageRegistry(pulumi.ComponentResource):
    """ECR repositories with immutable tags (a tag always means the same image), scan on push and
    encryption with their own KMS key: the model server's, and one mirror per upstream image in `mirrors`
    (copied in with `crane copy`, docs/operations.md)."""

    repository_url: pulumi.Output[str]
    mirror_urls: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: ImageRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:infra:ImageRegistry", name, None, opts)
        key = kms_key(
            f"{name}-key",
            description=f"Model-server images of the {args.env} environment",
            account=args.account,
            alias=f"modelyard-{args.env}-ecr",
            parent=self,
            protect=args.deletion_protection,
        )

        def repo(logical: str, repo_name: str) -> aws.ecr.Repository:
            return aws.ecr.Repository(
                logical,
                name=repo_name,
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
                encryption_configurations=[
                    aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS", kms_key=key.arn)
                ],
                force_delete=False,
                opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
            )

        repository = repo(f"{name}-model-server", f"modelyard-{args.env}/model-server")
        self.mirror_urls = {
            key: repo(f"{name}-mirror-{key.rsplit('.', 1)[-1]}", mirror_name(args.env, upstream)).repository_url
            for key, upstream in sorted(args.mirrors.items())
        }
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repository.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": f"Expire untagged images after {UNTAGGED_EXPIRY_DAYS} days",
                            "selection": {
                                "tagStatus": "untagged",
                                "countType": "sinceImagePushed",
                                "countUnit": "days",
                                "countNumber": UNTAGGED_EXPIRY_DAYS,
                            },
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.repository_url = repository.repository_url
        self.register_outputs({"repository_url": self.repository_url, "mirror_urls": self.mirror_urls})
