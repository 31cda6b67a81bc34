"""The front door: Envoy Gateway (pinned chart) and the one Gateway every model is reached through.

Envoy Gateway turns Gateway API objects and its own policies into Envoy configuration. The platform installs
the controller, one GatewayClass whose EnvoyProxy puts the proxies on the system nodes behind an internal NLB,
and one Gateway with an HTTPS listener for every model's host, `*.<hostname>` (TLS terminated at the proxies, with a
wildcard certificate cert-manager issues). The workloads stack attaches one HTTPRoute per catalog model, with that
model's authentication, authorization, limits, retries and breaker (workloads/routes.py).

What Envoy Gateway does with these objects is read from its source at the pinned tag (v1.9.0), recorded in
tests/conformance/envoy-gateway-v1.9.0/PROVENANCE.md:
- the proxies' pod labels (`internal/infrastructure/kubernetes/proxy/resource.go`, EnvoyAppLabel), which the
  model namespace's NetworkPolicy admits;
- a listener's port below 1024 is served on port + 10000 in the proxy container
  (`internal/gatewayapi/listener.go`, servicePortToContainerPort), the port the gateway's NetworkPolicy opens;
- the order of Envoy's HTTP filters (`internal/xds/translator/httpfilters.go`, newOrderedHTTPFilter): API key
  authentication sets the client-id header before RBAC (authorization) and the rate limits read it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from modelyard.config import GatewayConfig
from modelyard.infra.nodes import SYSTEM_POOL_LABEL
from modelyard.platform import signals
from modelyard.platform.common import (
    PLATFORM_PRIORITY_CLASS,
    container_defaults,
    helm_release,
    job_pod_monitor,
    namespace,
    resources,
    zone_spread,
)
from modelyard.platform.network_policy import (
    GATEWAY_LOG_METRICS_PORT,
    GATEWAY_LOG_POD_LABELS,
    GATEWAY_LOG_PORT,
    GATEWAY_NAMESPACE,
    GATEWAY_PROXY_LABELS,
    NAMESPACE_LABEL,
    OWNING_GATEWAY_LABEL,
)

NAMESPACE = GATEWAY_NAMESPACE
#: Envoy Gateway's controller name (the chart's `config.envoyGateway.gateway.controllerName` default).
CONTROLLER_NAME = "gateway.envoyproxy.io/gatewayclass-controller"
GATEWAY_CLASS = "modelyard"
GATEWAY_NAME = GATEWAY_PROXY_LABELS[OWNING_GATEWAY_LABEL]
LISTENER = "https"
LISTENER_PORT = 443
#: The header the gateway sets to the authenticated client's id (API key authentication's forwardClientIDHeader).
#: A client's own value is removed before any filter reads it (the ClientTrafficPolicy's early headers).
CLIENT_ID_HEADER = "x-modelyard-client"
#: The gateway's certificate and the platform CA that issues it unless `gateway.issuer` names another.
CA_ISSUER = "modelyard-ca"
CERTIFICATE_SECRET = "models-gateway-tls"
#: Defaults for a container of the gateway's namespace that sets none: Envoy Gateway v1.9.0 gives the proxies'
#: shutdown manager requests and no limits (DefaultShutdownManagerContainerResourceRequirements), and its controller
#: a memory limit and no CPU limit (the chart's values).
CONTAINER_DEFAULTS = resources("10m", "32Mi", "1", "512Mi")
#: Deadline for a request's headers and body from the connection's first byte (Envoy's request_headers_timeout
#: via ClientTrafficPolicy `timeout.http.requestReceivedTimeout`): a silent or trickling client is cut off.
REQUEST_RECEIVED_TIMEOUT = "10s"
#: A client connection with no request in flight is closed after this.
IDLE_TIMEOUT = "60s"
#: Connections one proxy replica holds at most (ClientTrafficPolicy `connection.connectionLimit`).
CONNECTION_LIMIT = 10_000
#: Where the proxies serve Envoy's statistics (bootstrap.EnvoyStatsPort, the container port named `metrics`).
STATS_PORT_NAME = "metrics"
STATS_PATH = "/stats/prometheus"
#: Envoy Gateway v1.9.0 serves a listener port below 1024 on this much more in the proxy container.
WELL_KNOWN_PORT_SHIFT = 10_000
MIN_EPHEMERAL_PORT = 1024


def container_port(service_port: int) -> int:
    """servicePortToContainerPort (listener.go) for proxies Envoy Gateway runs in Kubernetes: a privileged port is
    shifted so that the container binds it without CAP_NET_BIND_SERVICE."""
    return service_port + WELL_KNOWN_PORT_SHIFT if service_port < MIN_EPHEMERAL_PORT else service_port


def proxy_labels() -> dict[str, str]:
    """The labels of the pods that serve the platform's Gateway (EnvoyAppLabel and the owning Gateway)."""
    return dict(GATEWAY_PROXY_LABELS)


def openai_error(status: int, message: str, code: str) -> str:
    """A gateway answer in OpenAI's error shape, as the model server writes its own (workloads/serving front.py):
    the OpenAI clients raise their status's error class with this message and code."""
    kind = "requests" if status == 429 else "invalid_request_error"
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


#: What the gateway itself answers, by status: no or an invalid credential (API key or JWT authentication), a
#: team that may not call the model (RBAC), a team over its rate (local rate limit).
GATEWAY_ERRORS: Mapping[int, tuple[str, str]] = {
    401: (
        "Missing or invalid credentials: send your team's API key (or your identity provider's token) as "
        "'Authorization: Bearer ...'.",
        "invalid_api_key",
    ),
    403: ("Your team may not call this model (the catalog entry's callers).", "model_not_allowed"),
    429: (
        "Your team's request rate for this model is over its limit; retry after Retry-After seconds.",
        "rate_limit_exceeded",
    ),
}
#: Envoy's local replies (the authentication, RBAC and rate limit filters') are plain text; a model's own errors
#: are JSON and pass through untouched (the model server's 429 keeps its message and Retry-After).
LOCAL_REPLY_CONTENT_TYPE = "text/plain"


def response_overrides(retry_after_s: int) -> list[dict[str, Any]]:
    """BackendTrafficPolicy `responseOverride` entries that give the gateway's own 401, 403 and 429 OpenAI's error
    body (Envoy's custom response filter, first in the chain, sees the later filters' local replies), the 429 a
    Retry-After of the rate limit's unit; only for Envoy's own plain-text replies."""
    found = []
    for status, (message, code) in GATEWAY_ERRORS.items():
        response: dict[str, Any] = {
            "contentType": "application/json",
            "body": {"type": "Inline", "inline": openai_error(status, message, code)},
        }
        if status == 429:
            response["header"] = {"set": [{"name": "retry-after", "value": str(retry_after_s)}]}
        found.append(
            {
                "match": {
                    "statusCodes": [{"type": "Value", "value": status}],
                    "responseHeaders": [
                        {"name": "content-type", "value": {"type": "Prefix", "value": LOCAL_REPLY_CONTENT_TYPE}}
                    ],
                },
                "response": response,
            }
        )
    return found


#: The gateway log counter (workloads/serving/modelyard_server/gateway_log.py, run by the workloads stack in the model
#: namespace): the proxies send each request's access log record to its Service over OTLP/gRPC. The platform makes
#: the Service, because Envoy Gateway v1.9.0 refuses the whole Gateway (Accepted false, "Invalid access log
#: backendRefs in the referenced EnvoyProxy") when an access log's Service does not exist
#: (internal/gatewayapi/listener.go, processAccessLog's caller and processBackendRefsForTelemetry); with no counter
#: pod behind it yet, Envoy's logger has no peer and drops the records, and the gateway serves on.
GATEWAY_LOG_SERVICE = "modelyard-gateway-log"
#: The record's attributes (the EnvoyProxy's JSON format fields, which Envoy Gateway makes the OpenTelemetry
#: record's attributes: internal/gatewayapi/listener.go, processAccessLog) and what the counter reads of each:
#: the route (its model), the status, the client id the gateway set after authenticating the caller, the upstream
#: host (`-`: the gateway answered itself) and the upstream TLS version (only a fallback, another gateway, is
#: reached over TLS; the model's own replicas are plaintext inside the cluster).
ACCESS_LOG_ATTRIBUTES: Mapping[str, str] = {
    "route": "%ROUTE_NAME%",
    "status": "%RESPONSE_CODE%",
    "client": f"%REQ({CLIENT_ID_HEADER.upper()})%",
    "upstream": "%UPSTREAM_HOST%",
    "upstream_tls": "%UPSTREAM_TLS_VERSION%",
}


def access_log_spec(model_namespace: str) -> dict[str, Any]:
    """Every request's access log: to the proxies' stdout in Envoy Gateway's default JSON (as without this), and to the
    gateway log counter with the attributes it counts by."""
    counter = {"group": "", "kind": "Service", "name": GATEWAY_LOG_SERVICE, "namespace": model_namespace}
    return {
        "settings": [
            {"sinks": [{"type": "File", "file": {"path": "/dev/stdout"}}]},
            {
                "format": {"type": "JSON", "json": dict(ACCESS_LOG_ATTRIBUTES)},
                "sinks": [
                    {
                        "type": "OpenTelemetry",
                        "openTelemetry": {"backendRefs": [{**counter, "port": GATEWAY_LOG_PORT}]},
                    }
                ],
            },
        ]
    }


def gateway_log_service_spec() -> dict[str, Any]:
    return {
        "selector": dict(GATEWAY_LOG_POD_LABELS),
        "ports": [
            {"name": "otlp-grpc", "port": GATEWAY_LOG_PORT, "targetPort": GATEWAY_LOG_PORT, "protocol": "TCP"},
            {
                "name": "metrics",
                "port": GATEWAY_LOG_METRICS_PORT,
                "targetPort": GATEWAY_LOG_METRICS_PORT,
                "protocol": "TCP",
            },
        ],
    }


def load_balancer_annotations(cfg: GatewayConfig) -> dict[str, str]:
    """The proxies' Service as an NLB, as EKS's cloud controller reads the annotations (the legacy provider: no
    AWS Load Balancer Controller is installed), internal unless configured otherwise."""
    annotations = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
    if cfg.load_balancer == "internal":
        annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] = "true"
    return annotations


def envoy_proxy_spec(cfg: GatewayConfig, vpc_cidr: str, model_namespace: str) -> dict[str, Any]:
    """The EnvoyProxy the GatewayClass points at: replicas spread across zones on the system nodes, kept through
    drains, with limits, behind the load balancer that admits only the configured client ranges; the access log to
    stdout and to the gateway log counter."""
    pod: dict[str, Any] = {"nodeSelector": dict([SYSTEM_POOL_LABEL])}
    if cfg.replicas > 1:
        pod["topologySpreadConstraints"] = [zone_spread(proxy_labels())]
    return {
        "telemetry": {"accessLog": access_log_spec(model_namespace)},
        "provider": {
            "type": "Kubernetes",
            "kubernetes": {
                "envoyDeployment": {
                    "replicas": cfg.replicas,
                    "pod": pod,
                    "container": {"resources": resources("500m", "512Mi", "2", "1Gi")},
                },
                "envoyPDB": {"minAvailable": 1} if cfg.replicas > 1 else {"maxUnavailable": 1},
                "envoyService": {
                    "type": "LoadBalancer",
                    "annotations": load_balancer_annotations(cfg),
                    "loadBalancerSourceRanges": list(cfg.source_cidrs) or [vpc_cidr],
                    # Client addresses reach the proxies (the rate limit and logs see them), and a node without a
                    # proxy is not a target.
                    "externalTrafficPolicy": "Local",
                },
            },
        },
    }


def listener_hostname(cfg: GatewayConfig) -> str:
    """Every model's host: `<model>.<hostname>` (workloads/routes.py), under one wildcard listener and certificate."""
    return f"*.{cfg.hostname}"


def gateway_spec(cfg: GatewayConfig, model_namespace: str) -> dict[str, Any]:
    """One HTTPS listener for the models' hosts; routes only from the model namespace."""
    return {
        "gatewayClassName": GATEWAY_CLASS,
        "listeners": [
            {
                "name": LISTENER,
                "protocol": "HTTPS",
                "port": LISTENER_PORT,
                "hostname": listener_hostname(cfg),
                "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": CERTIFICATE_SECRET}]},
                "allowedRoutes": {
                    "namespaces": {"from": "Selector", "selector": {"matchLabels": {NAMESPACE_LABEL: model_namespace}}},
                    "kinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
                },
            }
        ],
    }


#: Every request gets an `x-request-id` of the gateway's making, a client's own discarded (Envoy Gateway's
#: RequestIDAction; Generate is also its default, said here because the model servers depend on it): the route's
#: mirrors copy it, and the models' taps key their samples by it, so that the copies of a request are sampled
#: alike and their answers compared (workloads/serving/modelyard_server/shadow.py). A client cannot choose it.
REQUEST_ID = "Generate"


def client_traffic_spec() -> dict[str, Any]:
    """What every client connection gets: TLS 1.2 or newer, a deadline for its request, an idle timeout, a cap on
    connections, its own client-id header removed before any filter reads it, and a request id of the gateway's."""
    return {
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY_NAME}],
        "tls": {"minVersion": "1.2"},
        "timeout": {"http": {"requestReceivedTimeout": REQUEST_RECEIVED_TIMEOUT, "idleTimeout": IDLE_TIMEOUT}},
        "connection": {"connectionLimit": {"value": CONNECTION_LIMIT}},
        "headers": {"earlyRequestHeaders": {"remove": [CLIENT_ID_HEADER]}, "requestID": REQUEST_ID},
    }


def proxy_pod_monitor() -> dict[str, Any]:
    """Prometheus scrapes the Gateway's proxies: the routes' request, breaker and ejection statistics the gateway
    dashboard and alerts read."""
    return job_pod_monitor(NAMESPACE, proxy_labels(), STATS_PORT_NAME, signals.GATEWAY_JOB, STATS_PATH)


@dataclass(frozen=True, kw_only=True)
class GatewayArgs:
    config: GatewayConfig
    labels: Mapping[str, str]
    vpc_cidr: str
    model_namespace: str
    #: The model namespace as made (KServe's component): the gateway log counter's Service goes there.
    model_namespace_made: pulumi.Input[str]
    replicas: int
    #: cert-manager (its CRDs and webhook) and the platform PriorityClass come first.
    depends_on: Sequence[pulumi.Resource] = ()


class Gateway(pulumi.ComponentResource):
    """Envoy Gateway's controller, its GatewayClass and EnvoyProxy, the platform's Gateway with its certificate,
    and the ClientTrafficPolicy every connection gets."""

    release: pulumi.Resource

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:platform:Gateway", name, None, opts)
        cfg = args.config
        ns = namespace(f"{name}-ns", NAMESPACE, args.labels, pulumi.ResourceOptions(parent=self))
        container_defaults(
            f"{name}-defaults",
            ns.metadata["name"],
            CONTAINER_DEFAULTS,
            args.labels,
            pulumi.ResourceOptions(parent=self),
        )
        deployment: dict[str, Any] = {
            "replicas": args.replicas,
            "priorityClassName": PLATFORM_PRIORITY_CLASS,
            "pod": {"nodeSelector": dict([SYSTEM_POOL_LABEL])},
        }
        self.release = helm_release(
            f"{name}-release",
            "envoy-gateway",
            namespace=ns.metadata["name"],
            values={
                "deployment": deployment,
                "podDisruptionBudget": {"minAvailable": 1 if args.replicas > 1 else 0},
                # Envoy Gateway's Backend API (routes to addresses outside the cluster) only where the stack names
                # where fallbacks are (`fallback_cidrs`): catalog fallbacks are Backends.
                **(
                    {"config": {"envoyGateway": {"extensionApis": {"enableBackend": True}}}}
                    if cfg.fallback_cidrs
                    else {}
                ),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        after = pulumi.ResourceOptions(parent=self, depends_on=[self.release])
        labels = dict(args.labels)

        def custom(resource: str, api_version: str, kind: str, meta: dict[str, Any], spec: Any) -> Any:
            return k8s.apiextensions.CustomResource(
                f"{name}-{resource}",
                api_version=api_version,
                kind=kind,
                metadata={**meta, "labels": labels},
                spec=spec,
                opts=after,
            )

        issuer = cfg.issuer
        if issuer is None:
            issuer = CA_ISSUER
            cert_ns = "cert-manager"
            custom(
                "selfsigned",
                "cert-manager.io/v1",
                "ClusterIssuer",
                {"name": "modelyard-selfsigned"},
                {"selfSigned": {}},
            )
            custom(
                "ca-certificate",
                "cert-manager.io/v1",
                "Certificate",
                {"name": CA_ISSUER, "namespace": cert_ns},
                {
                    "isCA": True,
                    "commonName": f"modelyard {cfg.hostname} CA",
                    "secretName": CA_ISSUER,
                    "duration": "87600h",
                    "privateKey": {"algorithm": "ECDSA", "size": 256},
                    "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "modelyard-selfsigned"},
                },
            )
            custom(
                "ca-issuer",
                "cert-manager.io/v1",
                "ClusterIssuer",
                {"name": CA_ISSUER},
                {"ca": {"secretName": CA_ISSUER}},
            )
        custom(
            "certificate",
            "cert-manager.io/v1",
            "Certificate",
            {"name": CERTIFICATE_SECRET, "namespace": NAMESPACE},
            {
                "secretName": CERTIFICATE_SECRET,
                "dnsNames": [listener_hostname(cfg)],
                "duration": "2160h",
                "renewBefore": "360h",
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer},
            },
        )
        # Before the EnvoyProxy names it (see GATEWAY_LOG_SERVICE).
        log_meta: Any = {"name": GATEWAY_LOG_SERVICE, "namespace": args.model_namespace_made, "labels": labels}
        log_spec: Any = gateway_log_service_spec()
        log_service = k8s.core.v1.Service(
            f"{name}-log-service", metadata=log_meta, spec=log_spec, opts=pulumi.ResourceOptions(parent=self)
        )
        k8s.apiextensions.CustomResource(
            f"{name}-proxy-config",
            api_version="gateway.envoyproxy.io/v1alpha1",
            kind="EnvoyProxy",
            metadata={"name": GATEWAY_CLASS, "namespace": NAMESPACE, "labels": labels},
            spec=envoy_proxy_spec(cfg, args.vpc_cidr, args.model_namespace),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release, log_service]),
        )
        custom(
            "class",
            "gateway.networking.k8s.io/v1",
            "GatewayClass",
            {"name": GATEWAY_CLASS},
            {
                "controllerName": CONTROLLER_NAME,
                "parametersRef": {
                    "group": "gateway.envoyproxy.io",
                    "kind": "EnvoyProxy",
                    "name": GATEWAY_CLASS,
                    "namespace": NAMESPACE,
                },
            },
        )
        custom(
            "gateway",
            "gateway.networking.k8s.io/v1",
            "Gateway",
            {"name": GATEWAY_NAME, "namespace": NAMESPACE},
            gateway_spec(cfg, args.model_namespace),
        )
        custom(
            "proxy-monitor",
            "monitoring.coreos.com/v1",
            "PodMonitor",
            {"name": "envoy-proxies", "namespace": NAMESPACE},
            proxy_pod_monitor(),
        )
        custom(
            "client-traffic",
            "gateway.envoyproxy.io/v1alpha1",
            "ClientTrafficPolicy",
            {"name": GATEWAY_NAME, "namespace": NAMESPACE},
            client_traffic_spec(),
        )
        self.register_outputs({})
