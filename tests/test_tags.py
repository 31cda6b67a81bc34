"""The one tag function."""

from __future__ import annotations

import pytest

from modelyard.tags import REQUIRED_KEYS, k8s_labels, standard_tags


def test_standard_tags_are_complete_and_pure() -> None:
    tags = standard_tags(env="dev", team="ml-platform", cost_center="cc-1")
    assert tuple(tags) == REQUIRED_KEYS
    assert tags == standard_tags(env="dev", team="ml-platform", cost_center="cc-1")
    assert standard_tags(env="dev", team="t", cost_center="c", model="minilm")["model"] == "minilm"


def test_tags_are_valid_label_values() -> None:
    with pytest.raises(ValueError, match=r"tag team='ML Platform' is not a valid Kubernetes label value"):
        standard_tags(env="dev", team="ML Platform", cost_center="c")
    with pytest.raises(ValueError, match="model="):
        standard_tags(env="dev", team="t", cost_center="c", model="x" * 64)


def test_k8s_labels() -> None:
    labels = k8s_labels(standard_tags(env="dev", team="t", cost_center="c"))
    assert labels == {
        "modelyard.io/env": "dev",
        "modelyard.io/team": "t",
        "modelyard.io/cost-center": "c",
        "app.kubernetes.io/managed-by": "modelyard",
    }
