"""NetworkPolicies as the cluster would enforce them: every platform namespace denies by default, and the
flows each component needs get through while the rest do not.

`allowed` evaluates the planned NetworkPolicy objects with Kubernetes' semantics (a pod is isolated in
a direction once any policy selecting it names that direction; traffic passes when some policy's rule
admits it, and a connection needs the sender's egress and the receiver's ingress).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import ENVS, Plan

from modelyard.platform.network_policy import (
    GATEWAY_CONTAINER_PORT,
    GATEWAY_LOG_METRICS_PORT,
    GATEWAY_LOG_PORT,
    GATEWAY_METRICS_PORT,
    GATEWAY_NAMESPACE,
    GATEWAY_PROXY_LABELS,
    GATEWAY_XDS_PORT,
    NAMESPACE_LABEL,
    OWNING_GATEWAY_LABEL,
    allowances,
    policy_specs,
)

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
VPC = {"dev": "10.40.0.0/16", "staging": "10.50.0.0/16", "prod": "10.60.0.0/16"}


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace and labels, with an address in the VPC) or an address outside the cluster."""

    ip: str
    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"the evaluator reads matchLabels only: {selector}"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(peer: Mapping[str, Any], other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return ipaddress.ip_address(other.ip) in ipaddress.ip_network(peer["ipBlock"]["cidr"])
    if other.namespace is None:
        return False
    ns_labels = {NAMESPACE_LABEL: other.namespace}
    if "namespaceSelector" in peer and not _selects(peer["namespaceSelector"], ns_labels):
        return False
    if "namespaceSelector" not in peer and "podSelector" in peer:
        return False  # a bare podSelector means the policy's own namespace; not used here
    return _selects(peer.get("podSelector", {}), dict(other.labels))


def _direction_admits(
    policies: list[dict[str, Any]], pod: Endpoint, other: Endpoint, port: int, proto: str, direction: str
) -> bool:
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and _selects(p["spec"]["podSelector"], dict(pod.labels))
        and direction.capitalize() in p["spec"]["policyTypes"]
    ]
    if not selecting:
        return True  # not isolated in this direction
    key = "to" if direction == "egress" else "from"
    for policy in selecting:
        for rule in policy["spec"].get(direction, []):
            peers_ok = any(_peer_matches(peer, other) for peer in rule.get(key, [{"ipBlock": {"cidr": "0.0.0.0/0"}}]))
            ports_ok = not rule.get("ports") or any(
                p["port"] == port and p.get("protocol", "TCP") == proto for p in rule["ports"]
            )
            if peers_ok and ports_ok:
                return True
    return False


def allowed(policies: list[dict[str, Any]], source: Endpoint, dest: Endpoint, port: int, proto: str = "TCP") -> bool:
    egress = source.namespace is None or _direction_admits(policies, source, dest, port, proto, "egress")
    ingress = dest.namespace is None or _direction_admits(policies, dest, source, port, proto, "ingress")
    return egress and ingress


def _policies(plan: Plan) -> list[dict[str, Any]]:
    return [s["inputs"] for s in plan.of_type(NETPOL)]


def pod(env: str, namespace: str, host: int, **labels: str) -> Endpoint:
    base = ipaddress.ip_network(VPC[env])
    return Endpoint(str(base.network_address + host), namespace, tuple(sorted(labels.items())))


@pytest.mark.parametrize("env", ENVS)
def test_every_platform_namespace_denies_by_default(plans: dict[str, Plan], env: str) -> None:
    plan = plans[env]
    owned = {n["inputs"]["metadata"]["name"] for n in plan.of_type("kubernetes:core/v1:Namespace")}
    by_ns: dict[str, set[str]] = {}
    for policy in _policies(plan):
        by_ns.setdefault(policy["metadata"]["namespace"], set()).add(policy["metadata"]["name"])
    assert set(by_ns) == owned, "every namespace the platform creates, and only those, has policies"
    for ns, names in by_ns.items():
        assert {"default-deny", "allow-dns"} <= names, ns
    deny = next(p for p in _policies(plan) if p["metadata"]["name"] == "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("env", ENVS)
def test_the_flows_components_need_get_through_and_others_do_not(plans: dict[str, Plan], env: str) -> None:
    plan = plans[env]
    vpc = plan.one("aws:ec2/vpc:Vpc")["inputs"]["cidrBlock"]
    assert vpc == VPC[env]
    policies = _policies(plan)
    model_ns = plan.outputs()["modelNamespace"]
    prometheus = pod(env, "monitoring", 10, app="prometheus")
    coredns = pod(env, "kube-system", 11, **{"k8s-app": "kube-dns"})
    api_server = Endpoint(str(ipaddress.ip_network(vpc).network_address + 12))  # an EKS ENI in the VPC
    # A model pod as KServe labels it (policies/governance/kserve.py: `component: predictor`).
    model = pod(env, model_ns, 13, app="model", component="predictor")
    kserve = pod(env, "kserve", 14, app="kserve-controller")
    karpenter = pod(env, "karpenter", 15, app="karpenter")
    dcgm = pod(env, "nvidia", 16, app="dcgm-exporter")
    warm = pod(env, "gpu-warm-capacity", 17, app="warm-capacity")
    certs = pod(env, "cert-manager", 18, app="webhook")
    keda = pod(env, "keda", 19, app="keda-operator")
    drift = pod(env, model_ns, 20, **{"app.kubernetes.io/name": "modelyard-drift"})
    proxy = pod(env, GATEWAY_NAMESPACE, 21, **GATEWAY_PROXY_LABELS)
    # Envoy Gateway's controller: its own labels, not the proxies'.
    controller = pod(env, GATEWAY_NAMESPACE, 22, **{"control-plane": "envoy-gateway"})
    other_proxy = pod(env, GATEWAY_NAMESPACE, 23, **{**GATEWAY_PROXY_LABELS, OWNING_GATEWAY_LABEL: "another"})
    client = Endpoint(str(ipaddress.ip_network(vpc).network_address + 200))  # a caller in the VPC
    s3 = Endpoint("52.216.0.10")
    # S3's and STS's interface endpoints: addresses in the private subnets, what their private DNS answers in the VPC.
    s3_inside = Endpoint(str(ipaddress.ip_network(vpc).network_address + 30))
    internet = Endpoint("203.0.113.7")
    gateway_log = pod(env, model_ns, 24, **{"app.kubernetes.io/name": "modelyard-gateway-log"})

    must = [
        (prometheus, dcgm, 9400),
        (prometheus, model, 8080),
        (prometheus, karpenter, 8080),
        (api_server, kserve, 9443),
        (api_server, certs, 10250),
        (kserve, api_server, 443),
        (karpenter, s3, 443),
        (model, s3_inside, 443),
        (model, coredns, 53),
        (warm, coredns, 53),
        (keda, prometheus, 9090),  # the serving signal GPU predictors scale on
        (keda, api_server, 443),
        (api_server, keda, 6443),  # external metrics for the HPA KEDA owns
        (model, drift, 8090),  # the drift tap's samples
        (prometheus, drift, 8090),
        (client, proxy, GATEWAY_CONTAINER_PORT),  # the only way in
        (proxy, model, 8080),
        (proxy, controller, GATEWAY_XDS_PORT),
        (controller, api_server, 443),
        (prometheus, proxy, GATEWAY_METRICS_PORT),
        (proxy, gateway_log, GATEWAY_LOG_PORT),  # the access log
        (prometheus, gateway_log, GATEWAY_LOG_METRICS_PORT),
    ]
    must_not = [
        (model, karpenter, 8080),
        (model, prometheus, 9090),
        (model, internet, 80),
        (model, internet, 443),
        (model, s3, 443),  # S3's public addresses: only through its interface endpoint
        (client, gateway_log, GATEWAY_LOG_PORT),
        (model, gateway_log, GATEWAY_LOG_PORT),
        # Each allowance into the model namespace is for its own pods only.
        (proxy, gateway_log, 8080),
        (proxy, drift, 8080),
        (model, gateway_log, 8090),
        (warm, internet, 443),
        (warm, model, 8080),
        (dcgm, internet, 443),
        (kserve, internet, 443),
        (internet, model, 8080),
        (model, kserve, 8080),
        (keda, model, 8080),
        (keda, internet, 443),
        (model, keda, 6443),
        (kserve, drift, 8090),  # only the model namespace's pods send samples
        (internet, drift, 8090),
        (drift, internet, 80),
        (client, model, 8080),  # no address range reaches the model port
        (api_server, model, 8080),
        (controller, model, 8080),
        (other_proxy, model, 8080),  # a proxy of another Gateway
        (internet, proxy, GATEWAY_CONTAINER_PORT),
        (proxy, internet, 443),
        (proxy, kserve, 8080),
    ]
    owned = {n["inputs"]["metadata"]["name"] for n in plan.of_type("kubernetes:core/v1:Namespace")}
    if "gpu-warm-capacity" not in owned:  # no pool keeps warm GPUs in this environment: no such pods
        must = [f for f in must if warm not in f]
        must_not = [f for f in must_not if warm not in f]
    for source, dest, port in must:
        proto = "UDP" if port == 53 else "TCP"
        assert allowed(policies, source, dest, port, proto), f"{env}: {source} → {dest}:{port} is blocked"
    for source, dest, port in must_not:
        assert not allowed(policies, source, dest, port), f"{env}: {source} → {dest}:{port} gets through"


def test_every_namespace_has_an_entry_in_the_allowance_table() -> None:
    table = allowances("models")
    assert table["gpu-warm-capacity"] == ()
    assert {"karpenter", "cert-manager", "kserve", "monitoring", "nvidia", "keda", "models", GATEWAY_NAMESPACE} <= set(
        table
    )


def test_listed_client_ranges_replace_the_vpc_at_the_gateway() -> None:
    policies = [
        {"metadata": {"name": name, "namespace": ns}, "spec": spec}
        for ns, allows in allowances("models", ["192.0.2.0/24"]).items()
        for name, spec in policy_specs(allows, VPC["dev"]).items()
    ]
    proxy = pod("dev", GATEWAY_NAMESPACE, 21, **GATEWAY_PROXY_LABELS)
    assert allowed(policies, Endpoint("192.0.2.9"), proxy, GATEWAY_CONTAINER_PORT)
    assert not allowed(policies, Endpoint("10.40.0.200"), proxy, GATEWAY_CONTAINER_PORT)
