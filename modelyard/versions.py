"""Every version the platform deploys, in one place.

Kubernetes, EKS add-ons, Helm charts, node images and container images are pinned here and nowhere
else; Python dependencies are pinned in pyproject.toml. tests/test_versions.py checks that every
Helm release, add-on and image in a plan comes from this module, and that no dependency floats.

EKS add-on versions depend on the Kubernetes minor version. Refresh them with
`aws eks describe-addon-versions --kubernetes-version <minor> --addon-name <name>` before an
upgrade: they are not checked against the EKS API here (no AWS account on the build machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True)
class HelmChart:
    """A Helm chart pinned to one exact version."""

    chart: str
    version: str
    #: Classic chart repository URL; None when `chart` is an oci:// reference.
    repository: str | None = None


#: Kubernetes minor versions this blueprint is tested against, oldest first. The last is the default.
SUPPORTED_KUBERNETES_VERSIONS: Final = ("1.34", "1.35")
DEFAULT_KUBERNETES_VERSION: Final = SUPPORTED_KUBERNETES_VERSIONS[-1]

#: Managed EKS add-on versions per Kubernetes minor version.
EKS_ADDONS: Final = MappingProxyType(
    {
        "1.34": MappingProxyType(
            {
                "eks-pod-identity-agent": "v1.3.8-eksbuild.2",
                "vpc-cni": "v1.20.4-eksbuild.1",
                "coredns": "v1.12.4-eksbuild.1",
                "kube-proxy": "v1.34.1-eksbuild.2",
                "aws-ebs-csi-driver": "v1.51.0-eksbuild.1",
            }
        ),
        "1.35": MappingProxyType(
            {
                "eks-pod-identity-agent": "v1.3.10-eksbuild.1",
                "vpc-cni": "v1.21.1-eksbuild.1",
                "coredns": "v1.13.1-eksbuild.1",
                "kube-proxy": "v1.35.0-eksbuild.2",
                "aws-ebs-csi-driver": "v1.53.0-eksbuild.1",
            }
        ),
    }
)

#: Helm charts deployed by the platform stack.
HELM_CHARTS: Final = MappingProxyType(
    {
        "karpenter": HelmChart(chart="oci://public.ecr.aws/karpenter/karpenter", version="1.12.1"),
    }
)

#: The EKS-optimised Amazon Linux 2023 release Karpenter launches GPU nodes from. Karpenter picks
#: the NVIDIA variant of this release for GPU instance types. Pinned so nodes only change on purpose.
KARPENTER_AMI_ALIAS: Final = "al2023@v20261110"

#: SSM parameter for the system node group's AMI release (the EKS-optimised AL2023 image).
SYSTEM_NODE_AMI_TYPE: Final = "AL2023_x86_64_STANDARD"

#: Container images deployed directly (not through a chart), by digest-free immutable tag.
IMAGES: Final = MappingProxyType(
    {
        # Holds warm GPU capacity for pools that do not scale to zero (see infra/karpenter.py).
        "pause": "registry.k8s.io/pause:3.10.1",
    }
)
