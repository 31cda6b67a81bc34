"""The ECR repository for model-server images."""

from __future__ import annotations

import json
from dataclasses import dataclass

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


class ImageRegistry(pulumi.ComponentResource):
    """An ECR repository with immutable tags (a tag always means the same image), scan on push and
    encryption with its own KMS key."""

    repository_url: pulumi.Output[str]

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
        repository = aws.ecr.Repository(
            f"{name}-model-server",
            name=f"modelyard-{args.env}/model-server",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS", kms_key=key.arn)
            ],
            force_delete=False,
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )
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
        self.register_outputs({"repository_url": self.repository_url})
