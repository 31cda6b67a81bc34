"""The platform controllers' PriorityClass (platform/common.py: PLATFORM_PRIORITY_CLASS), created before any chart:
a pod naming a PriorityClass that does not exist is refused at admission."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from modelyard.platform.common import PLATFORM_PRIORITY, PLATFORM_PRIORITY_CLASS


@dataclass(frozen=True, kw_only=True)
class PlatformPriorityArgs:
    labels: Mapping[str, str]


class PlatformPriority(pulumi.ComponentResource):
    """`modelyard-platform`: above model pods (0) and the warm placeholders (negative), never the default."""

    def __init__(self, name: str, args: PlatformPriorityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:platform:PlatformPriority", name, None, opts)
        k8s.scheduling.v1.PriorityClass(
            f"{name}-class",
            metadata={"name": PLATFORM_PRIORITY_CLASS, "labels": dict(args.labels)},
            value=PLATFORM_PRIORITY,
            global_default=False,
            preemption_policy="PreemptLowerPriority",
            description="modelyard's platform controllers: above model pods, so a full system node preempts a model",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
