"""NetworkPolicies for every namespace the platform owns: deny everything, then allow what each
component needs (DNS, the API server, AWS APIs, Prometheus scrapes, admission webhooks, model traffic).

The VPC CNI enforces them once its network policy agent is on (infra/eks.py ADDON_CONFIGURATION).
Peers inside the cluster are selected by namespace (and the gateway's proxies by their labels too); the API
server (its ENIs sit in the VPC's subnets) and the gateway's clients by the VPC's CIDR, or the client ranges
configured; AWS APIs by port 443 anywhere. With the VPC CNI, pods have VPC addresses too, so a port open to the
VPC (an admission webhook, the gateway's listener) is open to every pod; the webhooks authenticate their caller
with TLS, the gateway every request. The model port admits no address range: only the gateway's proxies and
Prometheus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from modelyard.infra.karpenter import NAMESPACE as KARPENTER_NAMESPACE
from modelyard.infra.karpenter import WARM_CAPACITY_NAMESPACE
from modelyard.platform.autoscaling import METRICS_API_PORT as KEDA_METRICS_API_PORT
from modelyard.platform.autoscaling import NAMESPACE as KEDA_NAMESPACE
from modelyard.platform.autoscaling import WEBHOOK_PORT as KEDA_WEBHOOK_PORT
from modelyard.platform.cert_manager import NAMESPACE as CERT_MANAGER_NAMESPACE
from modelyard.platform.gpu import NAMESPACE as NVIDIA_NAMESPACE
from modelyard.platform.kserve import NAMESPACE as KSERVE_NAMESPACE
from modelyard.platform.monitoring import NAMESPACE as MONITORING_NAMESPACE
from modelyard.policies.governance.conventions import MODEL_PORT

#: Who is on the other side: pods of a namespace, the pods of a namespace with some labels, any address in the VPC,
#: one CIDR, or any address at all.
Peer = (
    Literal["vpc", "anywhere"]
    | tuple[Literal["namespace"], str]
    | tuple[Literal["pods"], str, tuple[tuple[str, str], ...]]
    | tuple[Literal["cidr"], str]
)
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
#: The drift worker's port (workloads/drift.py): the model pods' taps send to it, Prometheus scrapes it.
DRIFT_PORT = 8090
#: The gateway log counter in the model namespace (platform/gateway.py): the proxies send their access log to its
#: OTLP/gRPC port, Prometheus scrapes its metrics port.
GATEWAY_LOG_PORT = 4317
GATEWAY_LOG_METRICS_PORT = 9464
#: Prometheus's HTTP API (KEDA queries the serving signal there).
PROMETHEUS_PORT = 9090
#: Envoy Gateway's namespace, where its controller and the proxies it runs live (platform/gateway.py).
GATEWAY_NAMESPACE = "envoy-gateway-system"
#: The proxies' listener in their containers (443 + Envoy Gateway's shift of privileged ports).
GATEWAY_CONTAINER_PORT = 10443
#: The controller's xDS port, its pod-topology webhook's, and the metrics port of the controller and the proxies.
GATEWAY_XDS_PORT = 18000
GATEWAY_WEBHOOK_PORT = 9443
GATEWAY_METRICS_PORT = 19001
#: The labels of the proxies serving the platform's Gateway (Envoy Gateway's EnvoyAppLabel and owning-gateway
#: label; platform/gateway.py holds them to the source).
OWNING_GATEWAY_LABEL = "gateway.envoyproxy.io/owning-gateway-name"
GATEWAY_PROXY_LABELS: Mapping[str, str] = {
    "app.kubernetes.io/name": "envoy",
    "app.kubernetes.io/component": "proxy",
    "app.kubernetes.io/managed-by": "envoy-gateway",
    OWNING_GATEWAY_LABEL: "models",
}


#: The pods each allowance into the model namespace is for: the model pods (KServe's label on every predictor pod,
#: policies/governance/kserve.py: `component: predictor`), the drift worker (workloads/drift.py) and the gateway log
#: counter (workloads/gateway_log.py).
PREDICTOR_POD_LABELS: Mapping[str, str] = {"component": "predictor"}
DRIFT_POD_LABELS: Mapping[str, str] = {"app.kubernetes.io/name": "modelyard-drift"}
GATEWAY_LOG_POD_LABELS: Mapping[str, str] = {"app.kubernetes.io/name": "modelyard-gateway-log"}


def _labels(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


@dataclass(frozen=True)
class Allow:
    """One allowance: traffic in one direction, to or from `peer`, on `ports` (TCP; empty: every port), for the pods
    of the namespace with the labels `target` (empty: every pod)."""

    name: str
    direction: Literal["ingress", "egress"]
    peer: Peer
    ports: tuple[int, ...] = ()
    target: tuple[tuple[str, str], ...] = ()


API_SERVER = Allow("api-server", "egress", "vpc", (443,))
AWS_APIS = Allow("aws-apis", "egress", "anywhere", (443,))


def scraped_on(*ports: int) -> Allow:
    return Allow("prometheus-scrapes", "ingress", ("namespace", MONITORING_NAMESPACE), ports)


def webhook_on(port: int) -> Allow:
    """Admission webhooks are called by the API server, from its ENIs in the VPC."""
    return Allow("admission-webhook", "ingress", "vpc", (port,))


def allowances(
    model_namespace: str,
    client_cidrs: Sequence[str] = (),
    fallback_cidrs: Sequence[str] = (),
    identity_provider: bool = False,
) -> dict[str, tuple[Allow, ...]]:
    """What each platform namespace may send and receive beyond DNS. `client_cidrs`: who may reach the gateway's
    listener (empty: the VPC); `fallback_cidrs`: where the proxies may send a model's fallback requests (443);
    `identity_provider`: the proxies fetch a JWT provider's keys (443 anywhere)."""
    proxies: Peer = ("pods", GATEWAY_NAMESPACE, tuple(sorted(GATEWAY_PROXY_LABELS.items())))
    clients: tuple[Allow, ...] = tuple(
        Allow(f"clients-{i}", "ingress", ("cidr", cidr), (GATEWAY_CONTAINER_PORT,))
        for i, cidr in enumerate(client_cidrs)
    ) or (Allow("clients", "ingress", "vpc", (GATEWAY_CONTAINER_PORT,)),)
    fallbacks = tuple(
        Allow(f"fallbacks-{i}", "egress", ("cidr", cidr), (443,)) for i, cidr in enumerate(fallback_cidrs)
    )
    return {
        # The gateway: clients to the proxies' listener; the proxies to the model port; the controller to the API
        # and the proxies to the controller's xDS inside the namespace; the API server to its pod webhook.
        GATEWAY_NAMESPACE: (
            *clients,
            *fallbacks,
            *((Allow("identity-provider", "egress", "anywhere", (443,)),) if identity_provider else ()),
            API_SERVER,
            Allow("models", "egress", ("namespace", model_namespace), (MODEL_PORT,)),
            Allow("access-log", "egress", ("namespace", model_namespace), (GATEWAY_LOG_PORT,)),
            Allow("same-namespace", "egress", ("namespace", GATEWAY_NAMESPACE), (GATEWAY_XDS_PORT,)),
            Allow("same-namespace", "ingress", ("namespace", GATEWAY_NAMESPACE), (GATEWAY_XDS_PORT,)),
            webhook_on(GATEWAY_WEBHOOK_PORT),
            scraped_on(GATEWAY_METRICS_PORT),
        ),
        KARPENTER_NAMESPACE: (AWS_APIS, scraped_on(8080)),
        WARM_CAPACITY_NAMESPACE: (),
        CERT_MANAGER_NAMESPACE: (API_SERVER, webhook_on(10250), scraped_on(9402)),
        KSERVE_NAMESPACE: (API_SERVER, webhook_on(9443), scraped_on(8080, 8443)),
        MONITORING_NAMESPACE: (
            # Prometheus scrapes pods and kubelets; kube-state-metrics and the operator watch the API.
            Allow("cluster", "egress", "vpc"),
            # Alertmanager publishes to SNS and to webhook receivers.
            AWS_APIS,
            Allow("same-namespace", "ingress", ("namespace", MONITORING_NAMESPACE)),
            Allow("keda-queries", "ingress", ("namespace", KEDA_NAMESPACE), (PROMETHEUS_PORT,)),
            webhook_on(10250),
        ),
        NVIDIA_NAMESPACE: (scraped_on(9400),),
        # KEDA watches the API, serves external metrics and admission to the API server, and reads
        # the serving signal from Prometheus.
        KEDA_NAMESPACE: (
            API_SERVER,
            Allow("metrics-api", "ingress", "vpc", (KEDA_METRICS_API_PORT, KEDA_WEBHOOK_PORT)),
            Allow("prometheus-queries", "egress", ("namespace", MONITORING_NAMESPACE), (PROMETHEUS_PORT,)),
        ),
        model_namespace: (
            # The gateway's proxies only, to the model pods only: no address range reaches the model port (the only
            # way in is the gateway).
            Allow("inference", "ingress", proxies, (MODEL_PORT,), _labels(PREDICTOR_POD_LABELS)),
            # Their access log, to the gateway log counter only.
            Allow("access-log", "ingress", proxies, (GATEWAY_LOG_PORT,), _labels(GATEWAY_LOG_POD_LABELS)),
            scraped_on(MODEL_PORT, DRIFT_PORT, GATEWAY_LOG_METRICS_PORT),
            # The model pods' drift taps to the drift worker, inside the namespace.
            Allow("drift-samples", "egress", ("namespace", model_namespace), (DRIFT_PORT,)),
            Allow("drift-samples", "ingress", ("namespace", model_namespace), (DRIFT_PORT,), _labels(DRIFT_POD_LABELS)),
            # The storage initializer and vLLM read S3 and exchange their web identity at STS, both through the VPC's
            # interface endpoints (infra/network.py: their private DNS answers inside the VPC): nothing beyond it.
            Allow("aws-apis", "egress", "vpc", (443,)),
        ),
    }


def _peer(peer: Peer, vpc_cidr: str) -> dict[str, Any]:
    if peer == "vpc":
        return {"ipBlock": {"cidr": vpc_cidr}}
    if peer == "anywhere":
        return {"ipBlock": {"cidr": "0.0.0.0/0"}}
    if peer[0] == "cidr":
        return {"ipBlock": {"cidr": peer[1]}}
    found: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: peer[1]}}}
    if peer[0] == "pods":
        found["podSelector"] = {"matchLabels": dict(peer[2])}
    return found


def policy_specs(allows: Sequence[Allow], vpc_cidr: str) -> dict[str, dict[str, Any]]:
    """NetworkPolicy specs by name: default deny, DNS to CoreDNS, and one per allowance."""
    specs: dict[str, dict[str, Any]] = {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "allow-dns": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "kube-system"}},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": proto, "port": 53} for proto in ("UDP", "TCP")],
                }
            ],
        },
    }
    for allow in allows:
        rule: dict[str, Any] = {"to" if allow.direction == "egress" else "from": [_peer(allow.peer, vpc_cidr)]}
        if allow.ports:
            rule["ports"] = [{"protocol": "TCP", "port": port} for port in allow.ports]
        specs[f"allow-{allow.name}-{allow.direction}"] = {
            "podSelector": {"matchLabels": dict(allow.target)} if allow.target else {},
            "policyTypes": [allow.direction.capitalize()],
            allow.direction: [rule],
        }
    return specs


@dataclass(frozen=True, kw_only=True)
class NetworkPoliciesArgs:
    labels: Mapping[str, str]
    vpc_cidr: str
    model_namespace: str
    #: Who may reach the gateway's listener (empty: the VPC), and where its fallbacks are.
    client_cidrs: Sequence[str] = ()
    fallback_cidrs: Sequence[str] = ()
    #: Whether the gateway checks JWTs against a provider's published keys (egress on 443).
    identity_provider: bool = False
    #: The namespaces the platform created (each must have an entry in `allowances`).
    namespaces: Sequence[str]
    #: The components that create the namespaces.
    depends_on: Sequence[pulumi.Resource] = ()


class NetworkPolicies(pulumi.ComponentResource):
    """Default deny in every platform namespace, with the allowances `allowances` lists."""

    def __init__(self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:platform:NetworkPolicies", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        table = allowances(args.model_namespace, args.client_cidrs, args.fallback_cidrs, args.identity_provider)
        for namespace in args.namespaces:
            specs: dict[str, Any] = policy_specs(table[namespace], args.vpc_cidr)
            for policy, spec in specs.items():
                metadata: Any = {"name": policy, "namespace": namespace, "labels": dict(args.labels)}
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-{namespace}-{policy}", metadata=metadata, spec=spec, opts=child
                )
        self.register_outputs({})
