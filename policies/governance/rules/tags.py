"""Tags on AWS resources and the matching labels on Kubernetes objects."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..conventions import LABEL_KEYS, TAG_KEYS
from ..resources import S3_BUCKET_COMPANIONS, Resource
from .base import Context, _unknown, resource_rule

REQUIRED_TAGS = TAG_KEYS


REQUIRED_LABELS = LABEL_KEYS


#: AWS types that cannot carry tags (their parent resource does).
UNTAGGABLE = S3_BUCKET_COMPANIONS | frozenset(
    {
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:ec2/route:Route",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        "aws:kms/alias:Alias",
        "aws:ecr/lifecyclePolicy:LifecyclePolicy",
        "aws:ecr/repositoryPolicy:RepositoryPolicy",
        "aws:sqs/queuePolicy:QueuePolicy",
        "aws:cloudwatch/eventTarget:EventTarget",
        "aws:sns/topicPolicy:TopicPolicy",
        "aws:sns/topicSubscription:TopicSubscription",
        "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
        "aws:costexplorer/costAllocationTag:CostAllocationTag",
    }
)


@resource_rule("aws-required-tags", "Every taggable AWS resource carries env, team, cost-center and managed-by.", None)
def _aws_tags(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if not r.type.startswith("aws:") or r.type in UNTAGGABLE:
        return
    own = r.inputs.get("tags")
    if _unknown(own):
        return
    tags = {**ctx.stack.provider_default_tags(r), **(own if isinstance(own, Mapping) else {})}
    missing = [k for k in REQUIRED_TAGS if not tags.get(k)]
    if missing:
        yield (
            "tags",
            sorted(tags),
            f"missing tag(s) {', '.join(missing)}; set them in the AWS provider's defaultTags (modelyard/tags.py)"
            " or on the resource",
        )


@resource_rule("k8s-required-labels", "Kubernetes objects carry the matching modelyard.io labels.", None)
def _k8s_labels(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if not r.type.startswith("kubernetes:") or r.type.startswith(("kubernetes:helm.sh/", "pulumi:")):
        return
    labels = r.get("metadata", "labels")
    if _unknown(r.inputs.get("metadata")):
        return
    labels = labels if isinstance(labels, Mapping) else {}
    missing = [k for k in REQUIRED_LABELS if not labels.get(k)]
    if missing:
        yield (
            "metadata.labels",
            sorted(labels),
            f"missing label(s) {', '.join(missing)}; use k8s_labels() (modelyard/tags.py)",
        )
