"""NetworkPolicies for every namespace the platform owns: deny everything, then allow what each
component needs (DNS, the API server, AWS APIs, Prometheus scrapes, admission webhooks, model traffic).

The VPC CNI enforces them once its network policy agent is on (infra/eks.py ADDON_CONFIGURATION).
Peers inside the cluster are selected by namespace; the API server (its ENIs sit in the VPC's
subnets) and other callers from the VPC by the VPC's CIDR; AWS APIs by port 443 anywhere. With the VPC
CNI, pods have VPC addresses too, so a port open to the VPC (an admission webhook, the model port) is
open to every pod; the webhooks authenticate their caller with TLS, and the model port is the service.
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

#: Who is on the other side: pods of a namespace, any address in the VPC, or any address at all.
Peer = Literal["vpc", "anywhere"] | tuple[Literal["namespace"], str]
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
#: The HTTP port model servers listen on (workloads/models.py) and are scraped on.
MODEL_PORT = 8080
#: The drift worker's port (workloads/drift.py): the model pods' taps send to it, Prometheus scrapes it.
DRIFT_PORT = 8090
#: Prometheus's HTTP API (KEDA queries the serving signal there).
PROMETHEUS_PORT = 9090


@dataclass(frozen=True)
class Allow:
    """One allowance: traffic in one direction, to or from `peer`, on `ports` (TCP; empty: every port)."""

    name: str
    direction: Literal["ingress", "egress"]
    peer: Peer
    ports: tuple[int, ...] = ()


API_SERVER = Allow("api-server", "egress", "vpc", (443,))
AWS_APIS = Allow("aws-apis", "egress", "anywhere", (443,))


def scraped_on(*ports: int) -> Allow:
    return Allow("prometheus-scrapes", "ingress", ("namespace", MONITORING_NAMESPACE), ports)


def webhook_on(port: int) -> Allow:
    """Admission webhooks are called by the API server, from its ENIs in the VPC."""
    return Allow("admission-webhook", "ingress", "vpc", (port,))


def allowances(model_namespace: str) -> dict[str, tuple[Allow, ...]]:
    """What each platform namespace may send and receive beyond DNS."""
    return {
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
            # Clients inside the VPC (in-cluster callers, an internal load balancer) and Prometheus.
            Allow("inference", "ingress", "vpc", (MODEL_PORT,)),
            scraped_on(MODEL_PORT, DRIFT_PORT),
            # The model pods' drift taps to the drift worker, inside the namespace.
            Allow("drift-samples", "egress", ("namespace", model_namespace), (DRIFT_PORT,)),
            Allow("drift-samples", "ingress", ("namespace", model_namespace), (DRIFT_PORT,)),
            # The storage initializer reads S3 (gateway endpoint: S3's public addresses) and STS.
            AWS_APIS,
        ),
    }


def _peer(peer: Peer, vpc_cidr: str) -> dict[str, Any]:
    if peer == "vpc":
        return {"ipBlock": {"cidr": vpc_cidr}}
    if peer == "anywhere":
        return {"ipBlock": {"cidr": "0.0.0.0/0"}}
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: peer[1]}}}


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
            "podSelector": {},
            "policyTypes": [allow.direction.capitalize()],
            allow.direction: [rule],
        }
    return specs


@dataclass(frozen=True, kw_only=True)
class NetworkPoliciesArgs:
    labels: Mapping[str, str]
    vpc_cidr: str
    model_namespace: str
    #: The namespaces the platform created (each must have an entry in `allowances`).
    namespaces: Sequence[str]
    #: The components that create the namespaces.
    depends_on: Sequence[pulumi.Resource] = ()


class NetworkPolicies(pulumi.ComponentResource):
    """Default deny in every platform namespace, with the allowances `allowances` lists."""

    def __init__(self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:platform:NetworkPolicies", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        table = allowances(args.model_namespace)
        for namespace in args.namespaces:
            specs: dict[str, Any] = policy_specs(table[namespace], args.vpc_cidr)
            for policy, spec in specs.items():
                metadata: Any = {"name": policy, "namespace": namespace, "labels": dict(args.labels)}
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-{namespace}-{policy}", metadata=metadata, spec=spec, opts=child
                )
        self.register_outputs({})
