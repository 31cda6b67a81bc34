"""cert-manager: issues the serving certificates of KServe's admission webhooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi

from modelyard.infra.nodes import SYSTEM_POOL_LABEL
from modelyard.platform.common import (
    CONTAINER_SECURITY,
    PLATFORM_PRIORITY_CLASS,
    POD_SECURITY,
    helm_release,
    namespace,
    resources,
)

NAMESPACE = "cert-manager"


@dataclass(frozen=True, kw_only=True)
class CertManagerArgs:
    labels: Mapping[str, str]
    replicas: int
    #: What must exist first (the monitoring CRDs, for its ServiceMonitor).
    depends_on: Sequence[pulumi.Resource] = ()


class CertManager(pulumi.ComponentResource):
    """cert-manager with its CRDs, on the system nodes, hardened, with a ServiceMonitor."""

    release: pulumi.Resource

    def __init__(self, name: str, args: CertManagerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:platform:CertManager", name, None, opts)
        ns = namespace(f"{name}-ns", NAMESPACE, args.labels, pulumi.ResourceOptions(parent=self))
        component = {
            "resources": resources("50m", "128Mi", "500m", "256Mi"),
            "containerSecurityContext": dict(CONTAINER_SECURITY),
            "securityContext": dict(POD_SECURITY),
        }
        self.release = helm_release(
            f"{name}-release",
            "cert-manager",
            namespace=ns.metadata["name"],
            values={
                "crds": {"enabled": True, "keep": True},
                "global": {
                    "nodeSelector": dict([SYSTEM_POOL_LABEL]),
                    "commonLabels": dict(args.labels),
                    "priorityClassName": PLATFORM_PRIORITY_CLASS,
                },
                "replicaCount": args.replicas,
                "podDisruptionBudget": {"enabled": args.replicas > 1, "minAvailable": 1},
                **component,
                "webhook": {"replicaCount": args.replicas, **component},
                "cainjector": {"replicaCount": args.replicas, **component},
                "prometheus": {"enabled": True, "servicemonitor": {"enabled": True}},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        self.register_outputs({})
