"""The front door: every route authenticates, no address range reaches a model's port, and a canary gets the
share of its route the catalog asks for."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .. import envoy_gateway as eg
from ..conventions import (
    MIRROR_PERCENT_ANNOTATION,
    MODEL_PORT,
    MODELS_NAMESPACE_LABEL,
    ROLE_LABEL,
    TRAFFIC_PERCENT_ANNOTATION,
)
from ..resources import Resource, as_list, as_name, dig
from .base import ISVC, NAMESPACE, NETWORK_POLICY, Context, Finding, _unknown, stack_rule

HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
SECURITY_POLICY = "kubernetes:gateway.envoyproxy.io/v1alpha1:SecurityPolicy"
#: The SecurityPolicy fields that authenticate a caller (Envoy Gateway v1.9.0's SecurityPolicySpec).
AUTHENTICATION = ("apiKeyAuth", "jwt", "oidc", "basicAuth", "extAuth")


def _weight(ref: dict[str, Any]) -> int:
    """A backendRef's weight (1 when unset); a value that is not a whole number counts as none."""
    value = ref.get("weight", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _targets(policy: Resource) -> list[tuple[str, str]]:
    """(kind, name) of what a policy attaches to: `targetRefs`, or the older single `targetRef`."""
    refs = as_list(policy.get("spec", "targetRefs")) or as_list(policy.get("spec", "targetRef"))
    return [(str(dig(r, "kind")), str(dig(r, "name"))) for r in refs if isinstance(r, dict)]


@stack_rule("route-authenticated", "Every HTTPRoute is the target of a SecurityPolicy that authenticates its callers.")
def _route_authenticated(ctx: Context) -> Iterator[Finding]:
    guarded = {
        (as_name(p.get("metadata", "namespace")), name)
        for p in ctx.stack.of_type(SECURITY_POLICY)
        if any(p.get("spec", field) for field in AUTHENTICATION)
        for kind, name in _targets(p)
        if kind == "HTTPRoute"
    }
    for route in ctx.stack.of_type(HTTP_ROUTE):
        meta = route.inputs.get("metadata")
        if _unknown(meta):
            continue
        key = (as_name(route.get("metadata", "namespace")), as_name(route.get("metadata", "name")))
        if key not in guarded:
            yield Finding(
                route.urn,
                "metadata.name",
                key[1],
                f"no SecurityPolicy with one of {', '.join(AUTHENTICATION)} targets this route: anyone who reaches "
                "the gateway calls it",
            )


def _model_namespaces(ctx: Context) -> set[str | None]:
    """The namespaces the stack labels as serving models."""
    return {
        as_name(ns.get("metadata", "name"))
        for ns in ctx.stack.of_type(NAMESPACE)
        if dig(ns.inputs, "metadata", "labels", MODELS_NAMESPACE_LABEL) == "true"
    } - {None}


def _admits_port(rule: Any, port: int) -> bool:
    """Whether an ingress rule may admit `port`: no ports (every one), no port in an entry, the number, or a name
    (a named port is resolved on each pod: the model containers name theirs, `http1`, so a name may be it)."""
    ports = as_list(dig(rule, "ports"))
    return not ports or any(
        (value := dig(p, "port")) is None
        or value in (port, str(port))
        or (isinstance(value, str) and not value.isdigit())
        for p in ports
    )


@stack_rule(
    "model-port-closed-to-cidrs",
    "No NetworkPolicy of a model namespace admits an address range to the model port (the gateway is the way in).",
)
def _model_port_closed(ctx: Context) -> Iterator[Finding]:
    model_namespaces = _model_namespaces(ctx)
    for policy in ctx.stack.of_type(NETWORK_POLICY):
        if as_name(policy.get("metadata", "namespace")) not in model_namespaces:
            continue
        for i, rule in enumerate(as_list(policy.get("spec", "ingress"))):
            if not _admits_port(rule, MODEL_PORT):
                continue
            peers = as_list(dig(rule, "from"))
            if not peers:
                yield Finding(policy.urn, f"spec.ingress[{i}].from", [], "admits every source to the model port")
            for j, peer in enumerate(peers):
                cidr = dig(peer, "ipBlock", "cidr")
                if isinstance(cidr, str):
                    try:
                        net = ipaddress.ip_network(cidr, strict=False)
                    except ValueError:
                        net = None
                    yield Finding(
                        policy.urn,
                        f"spec.ingress[{i}].from[{j}].ipBlock.cidr",
                        cidr,
                        f"opens the model port to {'every address' if net and net.prefixlen == 0 else 'a range'}: "
                        "admit the gateway's proxies (and Prometheus) by namespace and labels instead",
                    )


VPC = "aws:ec2/vpc:Vpc"


@stack_rule(
    "model-egress-in-vpc",
    "No NetworkPolicy of a model namespace lets its pods send beyond the VPC: they reach S3 and STS through the "
    "VPC's interface endpoints, and a pod that could reach the internet could copy a model out.",
)
def _model_egress(ctx: Context) -> Iterator[Finding]:
    model_namespaces = _model_namespaces(ctx)
    vpcs = []
    for vpc in ctx.stack.of_type(VPC):
        with contextlib.suppress(TypeError, ValueError):
            vpcs.append(ipaddress.ip_network(vpc.get("cidrBlock")))
    for policy in ctx.stack.of_type(NETWORK_POLICY):
        if as_name(policy.get("metadata", "namespace")) not in model_namespaces:
            continue
        for i, rule in enumerate(as_list(policy.get("spec", "egress"))):
            peers = as_list(dig(rule, "to"))
            if not peers:
                yield Finding(policy.urn, f"spec.egress[{i}].to", [], "lets the model pods send to every address")
            for j, peer in enumerate(peers):
                cidr = dig(peer, "ipBlock", "cidr")
                if not isinstance(cidr, str):
                    continue
                try:
                    net = ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    net = None
                if net is not None and net.version == 4 and vpcs:
                    inside = any(net.version == v.version and net.subnet_of(v) for v in vpcs)  # type: ignore[arg-type]
                else:
                    inside = net is not None and net.prefixlen > 0 and net.is_private
                if not inside:
                    yield Finding(
                        policy.urn,
                        f"spec.egress[{i}].to[{j}].ipBlock.cidr",
                        cidr,
                        "lets the model pods send beyond the VPC: S3 and STS are reached through its interface "
                        "endpoints (infra/network.py)",
                    )


def _route_mirrors(route: Resource) -> dict[str, float]:
    """Each Service a route copies requests to, by name, with the share copied (Gateway API RequestMirror: percent,
    or fraction, or all when neither is set)."""
    found: dict[str, float] = {}
    for rule in as_list(route.get("spec", "rules")):
        for f in as_list(dig(rule, "filters")):
            mirror = dig(f, "requestMirror")
            if dig(f, "type") != "RequestMirror" or not isinstance(mirror, dict):
                continue
            name = as_name(dig(mirror, "backendRef", "name"))
            percent, fraction = mirror.get("percent"), mirror.get("fraction")
            if isinstance(percent, int):
                share = percent / 100
            elif isinstance(fraction, dict) and isinstance(fraction.get("numerator"), int):
                share = fraction["numerator"] / (fraction.get("denominator") or 100)
            else:
                share = 1.0
            if name is not None:
                found[name] = found.get(name, 0.0) + share
    return found


BACKEND = "kubernetes:gateway.envoyproxy.io/v1alpha1:Backend"
#: A Backend endpoint naming a Service by its cluster DNS name: `<service>.<namespace>.svc[.cluster.local]`.
_SERVICE_HOST = re.compile(r"^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?\.?$")


@dataclass(frozen=True)
class _Backend:
    """One backendRef of a rule: what Envoy Gateway makes of it, and the Service it reaches (if one)."""

    setting: eg.Setting
    service: str | None


Backends = dict[tuple[str | None, str], Resource]


def _rule_backends(rule: Any, namespace: str | None, backends: Backends) -> list[_Backend]:
    """A rule's backendRefs as Envoy Gateway v1.9.0's IR holds them (policies/governance/envoy_gateway.py): a Service
    by its pods' addresses (IP), a Backend by its endpoints, at priority 1 when it is a `fallback`, a Backend nobody
    makes invalid; each with the Service it reaches (a Service, or a Backend naming one by its cluster DNS name)."""
    found = []
    for i, ref in enumerate(as_list(dig(rule, "backendRefs"))):
        if not isinstance(ref, dict):
            continue
        name = as_name(ref.get("name"))
        common: dict[str, Any] = {"name": f"backend/{i}", "weight": _weight(ref), "filters": bool(ref.get("filters"))}
        if ref.get("kind", "Service") == "Service" and ref.get("group", "") in ("", "core"):
            found.append(_Backend(eg.Setting(**common, kind="Service", address_type=eg.IP), name))
            continue
        if ref.get("kind") != "Backend" or ref.get("group") != "gateway.envoyproxy.io":
            continue
        backend = backends.get((as_name(ref.get("namespace")) or namespace, name or ""))
        if backend is None:
            found.append(_Backend(eg.Setting(**common, kind="Backend", invalid=True), None))
            continue
        kinds, hosts = [], []
        for endpoint in as_list(backend.get("spec", "endpoints")):
            if dig(endpoint, "fqdn") is not None:
                kinds.append(eg.FQDN)
                hosts.append(str(dig(endpoint, "fqdn", "hostname")))
            elif dig(endpoint, "ip") is not None:
                kinds.append(eg.IP)
            elif dig(endpoint, "unix") is not None:
                kinds.append(eg.UDS)
        services = {(m.group(2), m.group(1)) for h in hosts if (m := _SERVICE_HOST.match(h))}
        service = None
        if len(services) == 1 and len(hosts) == len(kinds):
            svc_namespace, service = next(iter(services))
            service = service if svc_namespace == namespace else None
        setting = eg.Setting(
            **common,
            kind="Backend",
            address_type=eg.address_type(kinds),
            has_endpoints=bool(kinds),
            auto_sni=backend.get("spec", "tls", "autoSNIFromEndpointHostname") is True,
            priority=1 if backend.get("spec", "fallback") is True else 0,
        )
        found.append(_Backend(setting, service))
    return found


def _backends(ctx: Context) -> Backends:
    return {
        (as_name(b.get("metadata", "namespace")), str(b.get("metadata", "name"))): b for b in ctx.stack.of_type(BACKEND)
    }


def _route_shares(route: Resource, backends: Backends) -> dict[str, float]:
    """Each Service's share of the route's callers' requests while the model is healthy, by name, as Envoy Gateway
    v1.9.0 builds the rule (one cluster with priorities, or a weighted cluster per backend)."""
    namespace = as_name(route.get("metadata", "namespace"))
    shares: dict[str, float] = {}
    for rule in as_list(route.get("spec", "rules")):
        found = _rule_backends(rule, namespace, backends)
        got = eg.shares([b.setting for b in found])
        for b in found:
            share = got.get(b.setting.name, 0.0)
            if b.service is not None and share:
                shares[b.service] = shares.get(b.service, 0.0) + share
    return shares


@stack_rule(
    "canary-weight-carried",
    "Each canary gets the share of its model's route the catalog asks for, each shadow the copies it asks for and "
    "no caller's request, and every route's weighted backends are predictors that exist.",
)
def _canary_weight(ctx: Context) -> Iterator[Finding]:
    predictors = {
        (as_name(isvc.get("metadata", "namespace")), f"{isvc.get('metadata', 'name')}-predictor"): isvc
        for isvc in ctx.stack.of_type(ISVC)
        if as_name(isvc.get("metadata", "name")) is not None
    }
    routes = ctx.stack.of_type(HTTP_ROUTE)
    if not routes:
        return
    backends = _backends(ctx)
    carried: dict[tuple[str | None, str], float] = {}
    mirrored: dict[tuple[str | None, str], float] = {}
    for route in routes:
        namespace = as_name(route.get("metadata", "namespace"))
        for service, share in _route_mirrors(route).items():
            mirrored[(namespace, service)] = mirrored.get((namespace, service), 0.0) + share
        for service, share in _route_shares(route, backends).items():
            carried[(namespace, service)] = carried.get((namespace, service), 0.0) + share
            if share > 0 and (namespace, service) not in predictors:
                yield Finding(
                    route.urn,
                    "spec.rules.backendRefs",
                    service,
                    f"sends {share:.0%} of this route to a Service no InferenceService here makes: those requests fail",
                )
    for key, isvc in predictors.items():
        role = dig(isvc.inputs, "metadata", "labels", ROLE_LABEL)
        if role == "shadow":
            yield from _shadow_findings(isvc, key, carried.get(key, 0.0), mirrored.get(key, 0.0))
            continue
        if role != "canary":
            continue
        asked = dig(isvc.inputs, "metadata", "annotations", TRAFFIC_PERCENT_ANNOTATION)
        try:
            float(asked)
        except (TypeError, ValueError):
            continue
        got = carried.get(key, 0.0)
        if abs(got * 100 - float(asked)) > 1e-6:
            yield Finding(
                isvc.urn,
                f"metadata.annotations.{TRAFFIC_PERCENT_ANNOTATION}",
                asked,
                f"the routes carry {got:.2%} of the model's traffic to {key[1]}, not the {asked}% the catalog asks",
            )


def _shadow_findings(isvc: Resource, key: tuple[str | None, str], carried: float, mirrored: float) -> Iterator[Finding]:
    """A shadow answers copies, never callers: no route weighs it, and the routes copy it the share asked."""
    if carried > 0:
        yield Finding(
            isvc.urn,
            "metadata.labels.modelyard.io/role",
            "shadow",
            f"the routes send {carried:.2%} of callers' requests to {key[1]}: a shadow's answers would reach them",
        )
    asked = dig(isvc.inputs, "metadata", "annotations", MIRROR_PERCENT_ANNOTATION)
    try:
        percent = float(asked)
    except (TypeError, ValueError):
        return
    if abs(mirrored * 100 - percent) > 1e-6:
        yield Finding(
            isvc.urn,
            f"metadata.annotations.{MIRROR_PERCENT_ANNOTATION}",
            asked,
            f"the routes copy {mirrored:.2%} of the model's requests to {key[1]}, not the {asked}% the catalog asks",
        )


@stack_rule(
    "route-fallback-waits",
    "A route's fallback takes none of its callers' requests while the model's own replicas answer, and takes them "
    "over when they cannot: Envoy Gateway v1.9.0 keeps a fallback at its lower priority only in one cluster with the "
    "model's backends, which it builds only while they are all hostnames (or all addresses), none has filters of its "
    "own and each has endpoints; a predictor Service's endpoints vanish with its pods.",
)
def _fallback_waits(ctx: Context) -> Iterator[Finding]:
    backends = _backends(ctx)
    for route in ctx.stack.of_type(HTTP_ROUTE):
        namespace = as_name(route.get("metadata", "namespace"))
        for i, rule in enumerate(as_list(route.get("spec", "rules"))):
            found = _rule_backends(rule, namespace, backends)
            settings = [b.setting for b in found]
            fallbacks = [s for s in settings if s.priority > 0]
            if not fallbacks:
                continue
            field = f"spec.rules[{i}].backendRefs"
            got = eg.shares(settings)
            taken = sum(got.get(f.name, 0.0) for f in fallbacks)
            if taken > 0:
                reasons = "; ".join(eg.split_reasons(settings))
                yield Finding(
                    route.urn,
                    field,
                    [f.name for f in fallbacks],
                    f"the fallback takes {taken:.2%} of callers' requests while the model is healthy, and cannot take "
                    f"over: Envoy Gateway gives this rule a cluster per backend ({reasons})",
                )
                continue
            services = [s.name for s in settings if s.kind == "Service" and s.priority == 0]
            if services:
                lost = eg.failover_shares(settings).get(eg.INVALID_BACKEND_CLUSTER, 0.0)
                yield Finding(
                    route.urn,
                    field,
                    services,
                    "a predictor Service beside the fallback: once its pods are gone it has no endpoints, Envoy "
                    f"Gateway splits the rule and {lost:.2%} of requests fail instead of falling back; name each "
                    "predictor as a Backend by its Service's DNS name",
                )


ENVOY_PROXY = "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy"
SERVICE = "kubernetes:core/v1:Service"


def _telemetry_refs(proxy: Resource) -> Iterator[tuple[str, Any]]:
    """Every backendRef an EnvoyProxy's telemetry sends to, with its field: access log sinks (OpenTelemetry, ALS),
    the tracing provider, metric sinks (Envoy Gateway v1.9.0's ProxyTelemetry)."""
    telemetry = proxy.get("spec", "telemetry")
    for i, setting in enumerate(as_list(dig(telemetry, "accessLog", "settings"))):
        for j, sink in enumerate(as_list(dig(setting, "sinks"))):
            for key in ("openTelemetry", "als"):
                for k, ref in enumerate(as_list(dig(sink, key, "backendRefs"))):
                    yield f"spec.telemetry.accessLog.settings[{i}].sinks[{j}].{key}.backendRefs[{k}]", ref
    for k, ref in enumerate(as_list(dig(telemetry, "tracing", "provider", "backendRefs"))):
        yield f"spec.telemetry.tracing.provider.backendRefs[{k}]", ref
    for j, sink in enumerate(as_list(dig(telemetry, "metrics", "sinks"))):
        for k, ref in enumerate(as_list(dig(sink, "openTelemetry", "backendRefs"))):
            yield f"spec.telemetry.metrics.sinks[{j}].openTelemetry.backendRefs[{k}]", ref


@stack_rule(
    "gateway-telemetry-services-exist",
    "Every Service an EnvoyProxy sends its access log, traces or metrics to is made by this stack, with that port: "
    "Envoy Gateway v1.9.0 refuses the whole Gateway (Accepted false, 'Invalid access log backendRefs in the "
    "referenced EnvoyProxy') while one is missing, and then no model can be reached.",
)
def _telemetry_services(ctx: Context) -> Iterator[Finding]:
    services: dict[tuple[str, str], set[Any]] = {}
    #: Services whose namespace a preview does not know yet: a reference by their name cannot be judged.
    unsure: set[str] = set()
    for svc in ctx.stack.of_type(SERVICE):
        namespace, name = svc.get("metadata", "namespace"), svc.get("metadata", "name")
        if _unknown(name):
            return
        if _unknown(namespace):
            unsure.add(str(name))
            continue
        declared = (dig(p, "port") for p in as_list(svc.get("spec", "ports")))
        services[(str(namespace), str(name))] = {p for p in declared if isinstance(p, int | str)}
    for proxy in ctx.stack.of_type(ENVOY_PROXY):
        own = as_name(proxy.get("metadata", "namespace"))
        for field, ref in _telemetry_refs(proxy):
            if not isinstance(ref, dict) or ref.get("kind", "Service") != "Service":
                continue
            name, namespace = as_name(ref.get("name")), as_name(ref.get("namespace")) or own
            if name is None or namespace is None or name in unsure:
                continue
            ports: set[Any] | None = services.get((namespace, name))
            if ports is None:
                yield Finding(
                    proxy.urn,
                    field,
                    f"{namespace}/{name}",
                    "names a Service this stack does not make: Envoy Gateway refuses the Gateway until it exists",
                )
            elif not (isinstance(port := ref.get("port"), int | str) and port in ports):
                yield Finding(
                    proxy.urn,
                    f"{field}.port",
                    ref.get("port"),
                    f"is no port of {namespace}/{name} (it has {sorted(ports, key=str)}): Envoy "
                    "Gateway refuses the Gateway",
                )
