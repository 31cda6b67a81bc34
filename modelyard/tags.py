"""The one tag set every resource carries, valid both as AWS tags and as Kubernetes labels."""

from __future__ import annotations

import re
from collections.abc import Mapping

from modelyard.policies.governance.conventions import TAG_KEYS

_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")

MANAGED_BY = "modelyard"

#: Keys every taggable AWS resource and every Kubernetes object must carry.
REQUIRED_KEYS = TAG_KEYS


def standard_tags(*, env: str, team: str, cost_center: str, model: str | None = None) -> dict[str, str]:
    """The tag set for one environment (and, for model resources, one model).

    Keys and values are valid as AWS tags and as Kubernetes label values (at most 63 characters of
    letters, digits, '.', '_' and '-'), so the same map fans out to provider default tags,
    launch-template tag specifications, Karpenter EC2NodeClass tags and object labels.
    """
    tags = {"env": env, "team": team, "cost-center": cost_center, "managed-by": MANAGED_BY}
    if model is not None:
        tags["model"] = model
    for key, value in tags.items():
        if not _LABEL_VALUE.match(value):
            raise ValueError(
                f"tag {key}={value!r} is not a valid Kubernetes label value "
                "(at most 63 of A-Z a-z 0-9 . _ -, starting and ending alphanumeric)"
            )
    return tags


def k8s_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """Kubernetes labels for a tag set, under the modelyard.io/ prefix plus the well-known managed-by."""
    labels = {f"modelyard.io/{key}": value for key, value in tags.items() if key != "managed-by"}
    labels["app.kubernetes.io/managed-by"] = tags.get("managed-by", MANAGED_BY)
    return labels
