"""KEDA: scales GPU predictors on the serving signal.

A GPU predictor's InferenceService carries `serving.kserve.io/autoscalerClass: external`, so KServe makes
no HPA for it, and the workloads stack creates a KEDA ScaledObject for its Deployment (workloads/models.py)
whose Prometheus trigger reads `modelyard_inflight_texts` per replica and falls back to a fixed floor
when the signal is missing. KServe's own KEDA class (v0.16.0) builds a ScaledObject with no fallback,
which freezes or drops a loaded predictor to its minimum when Prometheus fails. A GPU predictor's CPU is
idle while its GPU is busy or not, so the HPA on CPU (KServe's default) either never scales it or
scales it on noise.
"""

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
    zone_spread,
)

NAMESPACE = "keda"
#: KEDA's components, as its chart names them in the per-component values.
COMPONENTS = ("operator", "metricServer", "webhooks")
#: Each component's pods, by the `app` label its chart template selects them with (keda/templates/*/
#: deployment.yaml at chart 2.20.2, the names' defaults operator.name and webhooks.name), and the key the
#: chart's topologySpreadConstraints value uses for it (`metricsServer` there, `metricServer` elsewhere).
POD_APP = {
    "operator": ("keda-operator", "operator"),
    "metricServer": ("keda-operator-metrics-apiserver", "metricsServer"),
    "webhooks": ("keda-admission-webhooks", "webhooks"),
}
#: The metrics API server (the API server calls it for external metrics) and the admission webhooks.
METRICS_API_PORT = 6443
WEBHOOK_PORT = 9443


@dataclass(frozen=True, kw_only=True)
class KedaArgs:
    labels: Mapping[str, str]
    replicas: int
    depends_on: Sequence[pulumi.Resource] = ()


class Keda(pulumi.ComponentResource):
    """KEDA with its CRDs, on the system nodes, hardened (restricted Pod Security)."""

    release: pulumi.Resource

    def __init__(self, name: str, args: KedaArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:platform:Keda", name, None, opts)
        ns = namespace(f"{name}-ns", NAMESPACE, args.labels, pulumi.ResourceOptions(parent=self))
        container = {**CONTAINER_SECURITY, "seccompProfile": {"type": "RuntimeDefault"}}
        self.release = helm_release(
            f"{name}-release",
            "keda",
            namespace=ns.metadata["name"],
            values={
                "crds": {"install": True},
                "additionalLabels": dict(args.labels),
                "priorityClassName": PLATFORM_PRIORITY_CLASS,
                "nodeSelector": dict([SYSTEM_POOL_LABEL]),
                "operator": {"replicaCount": args.replicas},
                "metricsServer": {"replicaCount": args.replicas},
                "webhooks": {"enabled": True, "replicaCount": args.replicas},
                # With two or more replicas: each component's pods across zones, one kept through a drain (the
                # webhook refuses ScaledObject changes while it has no pod; the metrics server answers the HPA).
                "podDisruptionBudget": {c: {"minAvailable": 1} for c in COMPONENTS} if args.replicas > 1 else {},
                **(
                    {"topologySpreadConstraints": {key: [zone_spread({"app": app})] for app, key in POD_APP.values()}}
                    if args.replicas > 1
                    else {}
                ),
                "podSecurityContext": {c: dict(POD_SECURITY) for c in COMPONENTS},
                "securityContext": {c: dict(container) for c in COMPONENTS},
                "resources": {c: resources("100m", "128Mi", "1", "512Mi") for c in COMPONENTS},
                # The operator and the metrics server read Secrets only in KEDA's own namespace (the chart drops
                # the cluster-wide list/watch on Secrets and sets KEDA_RESTRICT_SECRET_ACCESS): no trigger here
                # authenticates with a Secret, so cluster-wide read access to every Secret would be reach for nothing.
                "permissions": {
                    "operator": {"restrict": {"secret": True}},
                    "metricServer": {"restrict": {"secret": True}},
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        self.register_outputs({})
