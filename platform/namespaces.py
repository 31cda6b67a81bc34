"""Namespaces for platform services and models: labelled with the stack's tag set and held to the
`restricted` Pod Security Standard, so a pod that asks for root or privilege is refused at admission."""

from __future__ import annotations

from collections.abc import Mapping

#: Pod Security Admission level enforced on every namespace the platform creates.
POD_SECURITY_LEVEL = "restricted"


def restricted_namespace_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """`labels` plus the Pod Security Admission labels that enforce the restricted standard."""
    return {
        **labels,
        "pod-security.kubernetes.io/enforce": POD_SECURITY_LEVEL,
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
