"""The pod Envoy Gateway v1.9.0 runs for a Gateway's proxies, as its source builds it from the EnvoyProxy
(envoyproxy/gateway v1.9.0, internal/infrastructure/kubernetes/proxy/resource.go and resource_provider.go):
- labels: EnvoyAppLabel (`app.kubernetes.io/name: envoy`, `component: proxy`, `managed-by: envoy-gateway`) and the
  owning Gateway's name and namespace;
- the `envoy` container: expectedEnvoySecurityContext (resource.DefaultSecurityContext: no privilege escalation,
  every capability dropped, not privileged, non-root, RuntimeDefault seccomp; then user and group 65532 and a
  writable root), the EnvoyProxy's container resources, ports `metrics` 19001 (enablePrometheus) and `readiness`
  19003 (the listeners' ports are not declared: the Service targets them by number);
- the `shutdown-manager` container: the same security context, DefaultShutdownManagerContainerResourceRequirements
  (requests 10m and 32Mi, no limits);
- volumes `certs` (Secret `envoy`) and `sds` (a ConfigMap) outside the gateway namespace mode;
- the pod's security context as the EnvoyProxy's `envoyDeployment.pod.securityContext` (none: no pod-level one),
  its nodeSelector and topology spread from the same place.
Then what the API server's admission does to it in a namespace with a LimitRange (LimitRanger: a container
without a limit or request for a resource gets the LimitRange's `default` or `defaultRequest`).
"""

from __future__ import annotations

import copy
from typing import Any

PROXY_LABELS = {
    "app.kubernetes.io/name": "envoy",
    "app.kubernetes.io/component": "proxy",
    "app.kubernetes.io/managed-by": "envoy-gateway",
}


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsGroup": 65532,
        "runAsUser": 65532,
    }


def proxy_pod(envoy_proxy: dict[str, Any], gateway: str, namespace: str) -> dict[str, Any]:
    """The proxies' pod (metadata and spec) for `gateway` from the EnvoyProxy's spec."""
    deployment = envoy_proxy["provider"]["kubernetes"].get("envoyDeployment", {})
    pod_config = deployment.get("pod", {})
    container = deployment.get("container", {})
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "envoy",
                "command": ["envoy"],
                "securityContext": _security_context(),
                "resources": copy.deepcopy(container.get("resources", {})),
                "ports": [
                    {"name": "metrics", "containerPort": 19001, "protocol": "TCP"},
                    {"name": "readiness", "containerPort": 19003, "protocol": "TCP"},
                ],
            },
            {
                "name": "shutdown-manager",
                "command": ["envoy-gateway"],
                "securityContext": _security_context(),
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
            },
        ],
        "volumes": [
            {"name": "certs", "secret": {"secretName": "envoy", "defaultMode": 420}},
            {"name": "sds", "configMap": {"name": f"envoy-{gateway}", "defaultMode": 420}},
        ],
    }
    for field in ("nodeSelector", "topologySpreadConstraints", "tolerations", "affinity"):
        if field in pod_config:
            spec[field] = copy.deepcopy(pod_config[field])
    if "securityContext" in pod_config:
        spec["securityContext"] = copy.deepcopy(pod_config["securityContext"])
    labels = {
        **PROXY_LABELS,
        "gateway.envoyproxy.io/owning-gateway-name": gateway,
        "gateway.envoyproxy.io/owning-gateway-namespace": namespace,
    }
    return {"metadata": {"labels": labels, "namespace": namespace}, "spec": spec}


def limit_range_defaults(pod: dict[str, Any], limit_range: dict[str, Any]) -> dict[str, Any]:
    """LimitRanger's defaulting of each container's resources from a LimitRange's Container item."""
    out = copy.deepcopy(pod)
    for item in limit_range["limits"]:
        if item.get("type") != "Container":
            continue
        for c in out["spec"]["containers"]:
            resources = c.setdefault("resources", {})
            for kind, source in (("limits", "default"), ("requests", "defaultRequest")):
                for name, value in item.get(source, {}).items():
                    resources.setdefault(kind, {}).setdefault(name, value)
    return out
