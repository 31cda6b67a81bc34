"""The gateway log counter: a Deployment of the serving image's `modelyard_server.gateway_log` behind the Service
the platform made for it (platform/gateway.py, GATEWAY_LOG_SERVICE), which the gateway's proxies send their access
log to, and the PodMonitor that puts its counts (platform/signals.py: GATEWAY_RESPONSES) in Prometheus: who called
each model, what the gateway refused itself (401, 403, 429, its own 503s), and what a fallback answered.

Two replicas, spread across zones: each proxy's log stream goes to one of them, and the queries sum over pods. A
replica that restarts starts its counts at zero, which Prometheus's rate() reads as a reset. The counter holds no
credentials (no service account token) and keeps nothing but its bounded counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from modelyard.platform import signals
from modelyard.platform.common import CONTAINER_SECURITY, POD_SECURITY, job_pod_monitor, zone_spread
from modelyard.platform.gateway import GATEWAY_LOG_SERVICE
from modelyard.platform.network_policy import GATEWAY_LOG_METRICS_PORT, GATEWAY_LOG_POD_LABELS, GATEWAY_LOG_PORT
from modelyard.workloads.catalog import GatewayLog

#: An OTLP record costs the counter a few microseconds: one CPU counts tens of thousands of requests a second.
RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}
REPLICAS = 2


def deployment_spec(cfg: GatewayLog, registry: str, labels: Mapping[str, str]) -> dict[str, Any]:
    pod_labels = {**labels, **GATEWAY_LOG_POD_LABELS}
    container = {
        "name": "gateway-log",
        "image": f"{registry}:{cfg.image_tag}",
        "command": ["python", "-m", "modelyard_server.gateway_log"],
        "args": ["--port", str(GATEWAY_LOG_PORT), "--metrics_port", str(GATEWAY_LOG_METRICS_PORT)],
        "ports": [
            {"name": "otlp-grpc", "containerPort": GATEWAY_LOG_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": GATEWAY_LOG_METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": RESOURCES,
        "readinessProbe": {"tcpSocket": {"port": GATEWAY_LOG_PORT}, "periodSeconds": 10},
        "livenessProbe": {
            "httpGet": {"path": "/metrics", "port": GATEWAY_LOG_METRICS_PORT},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": {**CONTAINER_SECURITY, "runAsNonRoot": True},
    }
    return {
        "replicas": REPLICAS,
        "selector": {"matchLabels": dict(GATEWAY_LOG_POD_LABELS)},
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": {**POD_SECURITY, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
                "topologySpreadConstraints": [zone_spread(GATEWAY_LOG_POD_LABELS)],
                "containers": [container],
            },
        },
    }


def pod_monitor_spec(namespace: str) -> dict[str, Any]:
    # The counter's own `model` label names the model; the target adds none.
    return job_pod_monitor(namespace, GATEWAY_LOG_POD_LABELS, "metrics", signals.GATEWAY_LOG_JOB)


@dataclass(frozen=True, kw_only=True)
class GatewayLogCounterArgs:
    config: GatewayLog
    namespace: pulumi.Input[str]
    registry: pulumi.Input[str]
    labels: Mapping[str, str]


class GatewayLogCounter(pulumi.ComponentResource):
    """The gateway log counter's Deployment and PodMonitor (its Service is the platform's)."""

    def __init__(self, name: str, args: GatewayLogCounterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:workloads:GatewayLogCounter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        meta: Any = {
            "name": GATEWAY_LOG_SERVICE,
            "namespace": args.namespace,
            "labels": {**args.labels, **GATEWAY_LOG_POD_LABELS},
        }
        spec: Any = pulumi.Output.from_input(args.registry).apply(
            lambda registry: deployment_spec(args.config, registry, args.labels)
        )
        k8s.apps.v1.Deployment(f"{name}-deployment", metadata=meta, spec=spec, opts=child)
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata=meta,
            spec=pulumi.Output.from_input(args.namespace).apply(pod_monitor_spec),
            opts=child,
        )
        self.register_outputs({})
