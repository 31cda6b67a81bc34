"""GPU classes and the EC2 instance types that carry them: the one GPU table.

It feeds config validation (which instance types a pool may list), the Karpenter NodePools (instance
families, GPU-class labels), the cost estimate and the capacity policies (GPUs per instance); prices
live in prices.yaml, keyed by the same instance type names. Standard library only: the policy pack
imports it on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

GpuClass = Literal["t4", "a10g", "l4", "l40s", "a100", "h100"]


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpus: int
    gpu_memory_gib: int
    vcpus: int
    memory_gib: int


@dataclass(frozen=True)
class GpuClassSpec:
    gpu_class: str
    family: str
    instance_types: MappingProxyType[str, InstanceType]


def _family(gpu_class: str, family: str, gpu_mem: int, rows: list[tuple[str, int, int, int]]) -> GpuClassSpec:
    types = {
        f"{family}.{size}": InstanceType(f"{family}.{size}", gpus, gpu_mem, vcpus, mem)
        for size, gpus, vcpus, mem in rows
    }
    return GpuClassSpec(gpu_class, family, MappingProxyType(types))


_G5_G6_SIZES = [
    ("xlarge", 1, 4, 16),
    ("2xlarge", 1, 8, 32),
    ("4xlarge", 1, 16, 64),
    ("8xlarge", 1, 32, 128),
    ("12xlarge", 4, 48, 192),
    ("16xlarge", 1, 64, 256),
    ("24xlarge", 4, 96, 384),
    ("48xlarge", 8, 192, 768),
]

GPU_CLASSES: Final = MappingProxyType(
    {
        "t4": _family(
            "t4",
            "g4dn",
            16,
            [
                ("xlarge", 1, 4, 16),
                ("2xlarge", 1, 8, 32),
                ("4xlarge", 1, 16, 64),
                ("8xlarge", 1, 32, 128),
                ("12xlarge", 4, 48, 192),
                ("16xlarge", 1, 64, 256),
            ],
        ),
        # A10G (g5) and L4 (g6) instances come in the same sizes.
        "a10g": _family("a10g", "g5", 24, _G5_G6_SIZES),
        "l4": _family("l4", "g6", 24, _G5_G6_SIZES),
        "l40s": _family(
            "l40s",
            "g6e",
            48,
            [
                ("xlarge", 1, 4, 32),
                ("2xlarge", 1, 8, 64),
                ("4xlarge", 1, 16, 128),
                ("8xlarge", 1, 32, 256),
                ("12xlarge", 4, 48, 384),
                ("16xlarge", 1, 64, 512),
                ("24xlarge", 4, 96, 768),
                ("48xlarge", 8, 192, 1536),
            ],
        ),
        "a100": _family("a100", "p4d", 40, [("24xlarge", 8, 96, 1152)]),
        "h100": _family("h100", "p5", 80, [("48xlarge", 8, 192, 2048)]),
    }
)


def instance_type(name: str) -> InstanceType | None:
    """The GPU instance type called `name`, or None when it is not a known GPU type."""
    family = name.split(".", 1)[0]
    for spec in GPU_CLASSES.values():
        if spec.family == family:
            return spec.instance_types.get(name)
    return None
