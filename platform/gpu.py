"""NVIDIA GPU enablement: the device plugin (advertises `nvidia.com/gpu`) and the DCGM exporter (GPU
metrics), both only on GPU pool nodes.

GPU nodes run the EKS-optimised AL2023 NVIDIA AMI, which ships the driver and container toolkit, so
the full GPU operator is not needed; both daemons tolerate the GPU taint and select nodes by the
pool label Karpenter puts on every GPU node, so they never land on system nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from modelyard.infra.karpenter import GPU_POOL_LABEL, GPU_TAINT
from modelyard.platform.common import helm_release, namespace, resources

NAMESPACE = "nvidia"

GPU_TOLERATIONS = [{"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}]
GPU_NODE_AFFINITY: Mapping[str, Any] = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": GPU_POOL_LABEL, "operator": "Exists"}]}]
        }
    }
}


@dataclass(frozen=True, kw_only=True)
class NvidiaGpuArgs:
    labels: Mapping[str, str]
    #: The monitoring CRDs must exist before the DCGM exporter's ServiceMonitor.
    depends_on: Sequence[pulumi.Resource] = ()


class NvidiaGpu(pulumi.ComponentResource):
    """The NVIDIA device plugin and DCGM exporter (pinned charts) on GPU nodes only, with a
    ServiceMonitor that keeps the exporter's pod attribution (`honorLabels`)."""

    def __init__(self, name: str, args: NvidiaGpuArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:platform:NvidiaGpu", name, None, opts)
        # Both daemons mount host paths (kubelet's device-plugin socket, the driver), which only the
        # privileged Pod Security level admits; restricted is still audited and warned about.
        ns = namespace(f"{name}-ns", NAMESPACE, args.labels, pulumi.ResourceOptions(parent=self), enforce="privileged")
        on_gpu_nodes = {"affinity": dict(GPU_NODE_AFFINITY), "tolerations": GPU_TOLERATIONS, "nodeSelector": {}}
        opts_ = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        helm_release(
            f"{name}-device-plugin",
            "nvidia-device-plugin",
            namespace=ns.metadata["name"],
            values={
                **on_gpu_nodes,
                "priorityClassName": "system-node-critical",
                "resources": resources("50m", "64Mi", "200m", "128Mi"),
                # GPU feature discovery needs node-feature-discovery; the pool labels say enough here.
                "gfd": {"enabled": False},
                "nfd": {"enabled": False},
            },
            opts=opts_,
        )
        helm_release(
            f"{name}-dcgm-exporter",
            "dcgm-exporter",
            namespace=ns.metadata["name"],
            values={
                **on_gpu_nodes,
                "priorityClassName": "system-node-critical",
                "resources": resources("100m", "256Mi", "500m", "512Mi"),
                "serviceMonitor": {
                    "enabled": True,
                    "interval": "15s",
                    # The exporter labels each GPU with the namespace/pod/container it is allocated to;
                    # honour those instead of renaming them exported_*, and drop the target's own
                    # pod/namespace/container so an unallocated GPU is not attributed to the exporter.
                    "honorLabels": True,
                    "relabelings": [{"action": "labeldrop", "regex": "pod|namespace|container"}],
                },
            },
            opts=opts_,
        )
        self.register_outputs({})
