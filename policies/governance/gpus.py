"""GPU classes and the EC2 instance types that carry them: the one GPU table.

It feeds config validation (which GPU classes exist and which instance types a pool may list), the
Karpenter NodePools (instance families, GPU-class labels), the cost estimate and the capacity policies
(GPUs per instance); prices live in prices.yaml, keyed by the same instance type names. A class may be
sold in several EC2 families (H200: p5e and p5en): add a family's rows to its class, and everything
else follows. Standard library only: the policy pack imports it on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal


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
    instance_types: MappingProxyType[str, InstanceType]
    #: The GPU's memory bandwidth in GB/s (NVIDIA's datasheet): what an LLM's decoding is bound by, and so
    #: the plan's throughput assumption for the cost of a million tokens (workloads/runtimes/vllm.py).
    memory_bandwidth_gbps: int

    @property
    def families(self) -> tuple[str, ...]:
        """The EC2 instance families that carry this class, in table order."""
        return tuple(dict.fromkeys(family_of(name) for name in self.instance_types))


def family_of(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def _family(family: str, gpu_mem: int, rows: list[tuple[str, int, int, int]]) -> dict[str, InstanceType]:
    return {
        f"{family}.{size}": InstanceType(f"{family}.{size}", gpus, gpu_mem, vcpus, mem)
        for size, gpus, vcpus, mem in rows
    }


def _class(gpu_class: str, bandwidth_gbps: int, *families: dict[str, InstanceType]) -> GpuClassSpec:
    return GpuClassSpec(gpu_class, MappingProxyType({k: v for f in families for k, v in f.items()}), bandwidth_gbps)


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
        "t4": _class(
            "t4",
            320,
            _family(
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
        ),
        # A10G (g5) and L4 (g6) instances come in the same sizes.
        "a10g": _class("a10g", 600, _family("g5", 24, _G5_G6_SIZES)),
        "l4": _class("l4", 300, _family("g6", 24, _G5_G6_SIZES)),
        "l40s": _class(
            "l40s",
            864,
            _family(
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
        ),
        "a100": _class("a100", 1555, _family("p4d", 40, [("24xlarge", 8, 96, 1152)])),
        "h100": _class("h100", 3350, _family("p5", 80, [("48xlarge", 8, 192, 2048)])),
        # H200 comes in two families: p5e (EFA) and p5en (faster EFA and CPU-GPU links), same GPUs.
        "h200": _class(
            "h200",
            4800,
            _family("p5e", 141, [("48xlarge", 8, 192, 2048)]),
            _family("p5en", 141, [("48xlarge", 8, 192, 2048)]),
        ),
    }
)


if TYPE_CHECKING:
    GpuClass = str
else:
    #: A GPU class name, as config validation accepts it: the table's keys.
    GpuClass = Literal[tuple(GPU_CLASSES)]


def instance_type(name: str) -> InstanceType | None:
    """The GPU instance type called `name`, or None when it is not a known GPU type."""
    for spec in GPU_CLASSES.values():
        if name in spec.instance_types:
            return spec.instance_types[name]
    return None
