"""What every in-cluster service shares: namespaces, pinned Helm releases, hardening and sizing.

Every namespace carries the stack's labels and a Pod Security Admission level: `restricted` unless a
service needs the host (the NVIDIA device plugin and DCGM exporter, the node exporter), and then
`privileged` is enforced while `restricted` is still audited and warned about, so anything new that
lands there is visible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from modelyard.policies.governance.conventions import ZONE_LABEL
from modelyard.versions import HELM_CHARTS

PodSecurity = Literal["restricted", "privileged"]
#: Pod Security Admission level enforced on every namespace the platform creates unless it needs the host.
POD_SECURITY_LEVEL: PodSecurity = "restricted"

#: Container hardening for every chart that takes a container securityContext.
CONTAINER_SECURITY: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
#: The PriorityClass of the platform's controllers (KServe's controller and webhook, KEDA, cert-manager, the
#: Prometheus operator, Prometheus, Alertmanager, kube-state-metrics): above every model pod (priority 0) and the
#: GPU warm-capacity placeholders (negative), so that on full system nodes a CPU model is preempted, never the
#: webhook every model pod's creation waits on. Karpenter keeps its chart's system-cluster-critical, the GPU
#: daemonsets system-node-critical.
PLATFORM_PRIORITY_CLASS = "modelyard-platform"
PLATFORM_PRIORITY = 1_000_000
#: Pod-level hardening: never root, the runtime's default seccomp profile.
POD_SECURITY: Mapping[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def zone_spread(match_labels: Mapping[str, str]) -> dict[str, Any]:
    """A topology spread that keeps the pods `match_labels` selects in different zones, at most one apart,
    never stacked in one (`DoNotSchedule`: a pod waits for capacity in another zone rather than join the
    others in one, so losing a zone leaves the rest running)."""
    return {
        "maxSkew": 1,
        "topologyKey": ZONE_LABEL,
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": dict(match_labels)},
    }


def job_pod_monitor(
    namespace: str, match_labels: Mapping[str, str], port: str, job: str, path: str = "/metrics"
) -> dict[str, Any]:
    """A PodMonitor spec for the pods `match_labels` selects in `namespace` (kube-prometheus-stack ignores
    `prometheus.io/*` annotations), scraped every 30 s on the container port named `port` at `path`, their targets
    labelled `job`: the series' own labels name what they are about."""
    return {
        "namespaceSelector": {"matchNames": [namespace]},
        "selector": {"matchLabels": dict(match_labels)},
        "podMetricsEndpoints": [
            {
                "port": port,
                "path": path,
                "interval": "30s",
                "relabelings": [{"targetLabel": "job", "replacement": job}],
            }
        ],
    }


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, dict[str, str]]:
    """Requests and limits for one container."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


def namespace_labels(labels: Mapping[str, str], enforce: PodSecurity = POD_SECURITY_LEVEL) -> dict[str, str]:
    """`labels` plus the Pod Security Admission labels for `enforce` (and restricted audit/warn)."""
    return {
        **labels,
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/audit": POD_SECURITY_LEVEL,
        "pod-security.kubernetes.io/warn": POD_SECURITY_LEVEL,
    }


def namespace(
    resource_name: str,
    name: str,
    labels: Mapping[str, str],
    opts: pulumi.ResourceOptions,
    enforce: PodSecurity = POD_SECURITY_LEVEL,
) -> k8s.core.v1.Namespace:
    return k8s.core.v1.Namespace(
        resource_name, metadata={"name": name, "labels": namespace_labels(labels, enforce)}, opts=opts
    )


def container_defaults(
    resource_name: str,
    namespace: pulumi.Input[str],
    defaults: Mapping[str, Mapping[str, str]],
    labels: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.LimitRange:
    """A LimitRange giving every container of `namespace` that sets none `defaults`' requests and limits
    (`resources(...)`'s shape): the API server's LimitRanger fills them in at admission."""
    spec: Any = {
        "limits": [
            {"type": "Container", "defaultRequest": dict(defaults["requests"]), "default": dict(defaults["limits"])}
        ]
    }
    return k8s.core.v1.LimitRange(
        resource_name,
        metadata={"name": "container-defaults", "namespace": namespace, "labels": dict(labels)},
        spec=spec,
        opts=opts,
    )


def helm_release(
    resource_name: str,
    chart_key: str,
    *,
    namespace: pulumi.Input[str],
    values: Mapping[str, Any],
    opts: pulumi.ResourceOptions,
    release_name: str | None = None,
) -> k8s.helm.v3.Release:
    """A Helm release of a chart pinned in versions.py; atomic, so a failed upgrade rolls back."""
    chart = HELM_CHARTS[chart_key]
    return k8s.helm.v3.Release(
        resource_name,
        name=release_name or chart_key,
        chart=chart.chart,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository) if chart.repository else None,
        namespace=namespace,
        atomic=True,
        cleanup_on_fail=True,
        max_history=10,
        values=dict(values),
        opts=opts,
    )
