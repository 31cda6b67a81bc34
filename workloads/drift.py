"""The environment's drift worker in the cluster: a Deployment of the serving image's
`modelyard_server.drift_worker`, the Service the model pods' taps send to, and the PodMonitor that puts its
series (platform/signals.py: DRIFT_*) in Prometheus, where the drift alerts (platform/rules.py) read them.

One replica: a version's window lives in the worker's memory (a restart empties it, and it fills again from the
taps: at 1 % of 100 texts/s, in 3 minutes 20 seconds); two replicas behind the Service would each test half of
the samples. The worker holds no credentials (no service account token: it calls no API) and receives the
references from the taps, which read them from the model directories their servers verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from modelyard.platform import signals
from modelyard.platform.common import CONTAINER_SECURITY, POD_SECURITY, job_pod_monitor
from modelyard.platform.network_policy import DRIFT_POD_LABELS, DRIFT_PORT
from modelyard.workloads.catalog import Drift

NAME = "modelyard-drift"
#: The pod label the Service and the PodMonitor select.
SELECTOR = dict(DRIFT_POD_LABELS)
#: What the worker may use: one CPU for its tests (a 200-sample window against a 1,000-row reference with 500
#: relabellings takes about 0.1 s), memory for up to 64 versions' windows and reference subsamples, and the answers
#: a shadow comparison joins (held only while a model has two versions: modelyard_server/shadow.py).
RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


def tap_url(namespace: str) -> str:
    """Where a model pod's tap sends its samples: the worker's Service in the model namespace."""
    return f"http://{NAME}.{namespace}.svc:{DRIFT_PORT}/v1/samples"


def deployment_spec(drift: Drift, registry: str, labels: Mapping[str, str]) -> dict[str, Any]:
    pod_labels = {**labels, **SELECTOR}
    probe = {"httpGet": {"path": "/healthz", "port": DRIFT_PORT}, "periodSeconds": 10}
    container = {
        "name": "drift-worker",
        "image": f"{registry}:{drift.image_tag}",
        "command": ["python", "-m", "modelyard_server.drift_worker"],
        "args": ["--port", str(DRIFT_PORT), "--window", str(drift.window), "--interval", "60"],
        "ports": [{"name": "http", "containerPort": DRIFT_PORT, "protocol": "TCP"}],
        "resources": RESOURCES,
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 3},
        "securityContext": {**CONTAINER_SECURITY, "runAsNonRoot": True},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "replicas": 1,
        "selector": {"matchLabels": dict(SELECTOR)},
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {
                "automountServiceAccountToken": False,
                # A UID no host account has (the image's own user is 1000; the worker writes nothing but /tmp).
                "securityContext": {**POD_SECURITY, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
            },
        },
    }


def pod_monitor_spec(namespace: str) -> dict[str, Any]:
    # The worker's own `model` and `model_version` labels name the model; the target adds none.
    return job_pod_monitor(namespace, SELECTOR, "http", signals.DRIFT_JOB)


@dataclass(frozen=True, kw_only=True)
class DriftWorkerArgs:
    drift: Drift
    namespace: pulumi.Input[str]
    registry: pulumi.Input[str]
    labels: Mapping[str, str]


class DriftWorker(pulumi.ComponentResource):
    """The drift worker's Deployment, Service and PodMonitor."""

    def __init__(self, name: str, args: DriftWorkerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:workloads:DriftWorker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {**args.labels, **SELECTOR}
        meta: Any = {"name": NAME, "namespace": args.namespace, "labels": labels}
        spec: Any = pulumi.Output.from_input(args.registry).apply(
            lambda registry: deployment_spec(args.drift, registry, args.labels)
        )
        k8s.apps.v1.Deployment(f"{name}-deployment", metadata=meta, spec=spec, opts=child)
        service_spec: Any = {
            "selector": dict(SELECTOR),
            "ports": [{"name": "http", "port": DRIFT_PORT, "targetPort": DRIFT_PORT, "protocol": "TCP"}],
        }
        k8s.core.v1.Service(f"{name}-service", metadata=meta, spec=service_spec, opts=child)
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata=meta,
            spec=pulumi.Output.from_input(args.namespace).apply(pod_monitor_spec),
            opts=child,
        )
        self.register_outputs({})
