"""Does a model pod fit on a node of its pool? What a node offers pods once the kubelet, the VM and the
daemonsets have taken theirs.

Karpenter launches a node only for an instance type whose allocatable capacity holds the pod; a pod
that no type of its pool can hold stays Pending for ever (and the cost estimate must not price it at $0).
The figures follow Karpenter's own computation for the EKS-optimised AMIs (aws/karpenter-provider-aws,
`pkg/providers/instancetype/types.go`: kubeReservedResources, evictionThreshold; `vmMemoryOverheadPercent`
default 0.075 in its settings), with the pod density capped at 110 (the largest reservation it makes).
The daemonsets on every GPU node are the NVIDIA device plugin, the DCGM exporter and the node exporter
(this platform's chart values) and the EKS add-ons' node agents (an allowance: aws-node, kube-proxy,
ebs-csi-node, eks-pod-identity-agent). `versions.UNVERIFIED` names the command that checks a real node.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .gpus import instance_type

VM_MEMORY_OVERHEAD = 0.075
MAX_PODS = 110
EVICTION_HARD_MI = 100
#: Requests (CPU millicores, memory MiB) the EKS add-ons' node agents take on every node: an allowance.
EKS_NODE_AGENTS = (250, 256)
#: Requests of the daemonsets every GPU node runs: NVIDIA device plugin 50m/64Mi, DCGM exporter 100m/256Mi,
#: node exporter 20m/32Mi (platform/gpu.py, platform/monitoring.py; tests/test_conformance.py holds these
#: figures to the plan's chart values), and the EKS agents.
GPU_NODE_DAEMONSETS = (50 + 100 + 20 + EKS_NODE_AGENTS[0], 64 + 256 + 32 + EKS_NODE_AGENTS[1])
#: Requests of the daemonsets every CPU node runs: the node exporter and the EKS agents.
CPU_NODE_DAEMONSETS = (20 + EKS_NODE_AGENTS[0], 32 + EKS_NODE_AGENTS[1])
#: General-purpose families whose shape follows from the name: memory GiB per vCPU.
_GIB_PER_VCPU = {"m": 4, "c": 2, "r": 8}
_SIZES = {"large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32, "12xlarge": 48, "16xlarge": 64}


@dataclass(frozen=True)
class Node:
    """What one instance type offers pods: CPU millicores, memory MiB, GPUs."""

    instance_type: str
    cpu_m: int
    memory_mi: int
    gpus: int

    def describe(self) -> str:
        gpus = f"{self.gpus} GPU, " if self.gpus else ""
        return f"{self.instance_type} ({gpus}{self.cpu_m / 1000:g} CPU, {self.memory_mi / 1024:.1f} GiB)"


def kube_reserved(vcpus: int, max_pods: int = MAX_PODS) -> tuple[int, int]:
    """Karpenter's kube-reserved for the EKS AMIs: CPU 6 % of the first core, 1 % of the second, 0.5 % of
    the next two, 0.25 % of the rest (millicores); memory 11 MiB per pod + 255 MiB."""
    cpu = 0.0
    for core in range(vcpus):
        cpu += 1000 * (0.06 if core == 0 else 0.01 if core == 1 else 0.005 if core < 4 else 0.0025)
    return int(cpu + 0.5), 11 * max_pods + 255


def shape(name: str) -> tuple[int, int, int] | None:
    """(vCPUs, memory GiB, GPUs) of an instance type: the GPU table's, or derived from a general-purpose
    name (m7i.xlarge: 4 vCPUs, 16 GiB); None when unknown."""
    gpu = instance_type(name)
    if gpu is not None:
        return gpu.vcpus, gpu.memory_gib, gpu.gpus
    match = re.match(r"^([mcr])\d+[a-z]*\.(\w+)$", name)
    if match and match.group(2) in _SIZES:
        vcpus = _SIZES[match.group(2)]
        return vcpus, vcpus * _GIB_PER_VCPU[match.group(1)], 0
    return None


def allocatable(name: str, daemonsets: tuple[int, int] = GPU_NODE_DAEMONSETS) -> Node | None:
    found = shape(name)
    if found is None:
        return None
    vcpus, memory_gib, gpus = found
    cpu_reserved, memory_reserved = kube_reserved(vcpus)
    memory = memory_gib * 1024
    memory -= int(memory * VM_MEMORY_OVERHEAD) + memory_reserved + EVICTION_HARD_MI + daemonsets[1]
    return Node(name, vcpus * 1000 - cpu_reserved - daemonsets[0], memory, gpus)


def quantity_m(value: str) -> int:
    """A CPU quantity in millicores."""
    return int(value[:-1]) if value.endswith("m") else int(float(value) * 1000)


def quantity_mi(value: str) -> int:
    """A memory quantity in MiB."""
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(float(value) / 2**20)


@dataclass(frozen=True)
class Verdict:
    fits: bool
    largest: Node | None


def fits(
    requests: Mapping[str, str],
    gpus: int,
    instance_types: Iterable[str],
    daemonsets: tuple[int, int] = GPU_NODE_DAEMONSETS,
) -> Verdict:
    """Whether a pod requesting `requests` (cpu, memory) and `gpus` fits one of `instance_types`, and the
    largest node among them (by GPUs, then memory, then CPU) for the message when it does not."""
    cpu, memory = quantity_m(str(requests["cpu"])), quantity_mi(str(requests["memory"]))
    nodes = [n for n in (allocatable(t, daemonsets) for t in instance_types) if n is not None]
    if not nodes:
        return Verdict(True, None)  # nothing known to judge by
    largest = max(nodes, key=lambda n: (n.gpus, n.memory_mi, n.cpu_m))
    ok = any(n.gpus >= gpus and n.cpu_m >= cpu and n.memory_mi >= memory for n in nodes)
    return Verdict(ok, largest)
