"""What Envoy Gateway makes of one HTTPRoute rule's backendRefs: one Envoy cluster, or one cluster per backendRef.

The difference decides who answers. In one cluster each backendRef is a locality, weighted by its backendRef, at its
priority: a `fallback` Backend (priority 1) takes no share while the higher priority's hosts are healthy, and takes
their share as they fail (Envoy's priority levels). Split into one cluster per backendRef, the route picks a cluster
by weight alone: a fallback then takes weight/sum of every request while the model is healthy, and a backend with no
ready endpoint turns its whole share into errors, which no priority can catch.

Ported from Envoy Gateway v1.9.0 (envoyproxy/gateway, tag v1.9.0):
- `internal/xds/translator/route.go`, buildXdsRouteAction and buildXdsWeightedRouteAction: weighted clusters when
  the route needs a cluster per setting (or names more than one cluster); each setting with endpoints gets its own
  entry at its weight, and the weight of settings that are invalid or have no endpoints goes to
  `invalid-backend-cluster` (500, or 503 when some have no endpoints);
- `internal/ir/xds.go`, HTTPRoute.NeedsClusterPerSetting, RouteDestination.NeedsClusterPerSetting and the
  predicates it calls (HasMixedEndpoints, HasFiltersInSettings, HasPreferLocalZone, HasMixedUpstreamProtocol-
  Requirements, HasMixedAutoSNISettings), ToBackendWeights and BackendWeights.AddWeighted;
- `internal/gatewayapi/route.go`: a Service's address type from its EndpointSlices (IP; FQDN only for FQDN slices),
  a Backend's from its endpoints (`ip` IP, `fqdn` FQDN, `unix` UDS; IP with UDS is STATIC, FQDN with either MIXED),
  `fallback: true` as priority 1; a backendRef's own filters become the setting's filters;
- `internal/xds/translator/cluster.go`, buildXdsClusterLoadAssignment: in one cluster, each setting a locality at its
  priority and weight (locality-weighted load balancing by default).
Checked against Envoy Gateway's own translator cases (`internal/xds/translator/testdata/{in,out}/xds-ir`, the routes
with more than one backend), vendored in tests/conformance/envoy-gateway-v1.9.0/xds-ir.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

#: ir.DestinationAddressType values.
IP, FQDN, UDS, STATIC, MIXED = "IP", "FQDN", "UDS", "STATIC", "MIXED"
#: The cluster Envoy Gateway sends the weight of unusable backends to (it answers 500, or 503).
INVALID_BACKEND_CLUSTER = "invalid-backend-cluster"


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One backendRef as Envoy Gateway's IR holds it (ir.DestinationSetting), reduced to what the choice reads."""

    name: str
    #: `Service` or `Backend` (what the backendRef names).
    kind: str = "Service"
    #: The backendRef's weight (Gateway API: 1 when unset).
    weight: int = 1
    address_type: str | None = None
    #: Whether it has endpoints now (a Service with no ready pod has none).
    has_endpoints: bool = True
    #: Whether the backendRef carries its own filters (header changes, a credential, a host rewrite, ...).
    filters: bool = False
    protocol: str = "HTTP"
    force_http1_upstream: bool = False
    auto_sni: bool = False
    prefer_local: bool = False
    #: 1 for a Backend marked `fallback`.
    priority: int = 0
    invalid: bool = False
    #: A dynamic resolver or a custom backend: usable with no endpoints.
    needs_no_endpoints: bool = False


def address_type(types: Sequence[str]) -> str | None:
    """A Backend's address type from its endpoints' kinds (route.go): one kind is that kind; IP with UDS is STATIC;
    anything with FQDN is MIXED; no endpoints, none."""
    kinds = set(types)
    if not kinds:
        return None
    if len(kinds) == 1:
        return next(iter(kinds))
    return MIXED if FQDN in kinds else STATIC


def has_mixed_endpoints(settings: Sequence[Setting]) -> bool:
    kinds = {s.address_type for s in settings if s.address_type is not None}
    return MIXED in kinds or (FQDN in kinds and len(kinds) > 1)


def needs_cluster_per_setting(settings: Sequence[Setting], *, route_prefer_local: bool = False) -> bool:
    """HTTPRoute.NeedsClusterPerSetting: the rule is split into one cluster per backendRef."""
    if route_prefer_local:
        return True
    unavailable = sum(s.weight for s in settings if s.invalid or not (s.has_endpoints or s.needs_no_endpoints))
    if unavailable > 0:
        return True
    auto_sni = sum(1 for s in settings if s.auto_sni)
    return (
        has_mixed_endpoints(settings)
        or any(s.filters for s in settings)
        or (len(settings) > 1 and any(s.prefer_local for s in settings))
        or (any(s.force_http1_upstream for s in settings) and any(s.protocol in ("HTTP2", "GRPC") for s in settings))
        or (auto_sni > 0 and auto_sni != len(settings))
    )


def split_reasons(settings: Sequence[Setting]) -> list[str]:
    """Why Envoy Gateway would split these backendRefs into a cluster each, in words (empty when it would not)."""
    found = []
    if has_mixed_endpoints(settings):
        found.append("a hostname (FQDN) backend beside address backends (HasMixedEndpoints)")
    if any(s.filters for s in settings):
        named = ", ".join(s.name for s in settings if s.filters)
        found.append(f"filters on a backendRef ({named}; HasFiltersInSettings)")
    if any(s.invalid or not (s.has_endpoints or s.needs_no_endpoints) for s in settings):
        named = ", ".join(s.name for s in settings if s.invalid or not (s.has_endpoints or s.needs_no_endpoints))
        found.append(f"a backend with no endpoints ({named}; ToBackendWeights)")
    return found


def shares(settings: Sequence[Setting], *, route_prefer_local: bool = False) -> dict[str, float]:
    """Each setting's share of the rule's requests while every host is healthy, by name, with what goes to
    `invalid-backend-cluster`; settings that get nothing are left out.

    Split: Envoy's weighted clusters, each weight over the sum. One cluster: the highest priority's localities by
    their weights (a lower priority is reached only as the higher one's hosts fail)."""
    total = sum(s.weight for s in settings)
    if not total:
        return {}
    if needs_cluster_per_setting(settings, route_prefer_local=route_prefer_local) or len(settings) == 1:
        found: dict[str, float] = {}
        for s in settings:
            usable = not s.invalid and (s.has_endpoints or s.needs_no_endpoints)
            key = s.name if usable else INVALID_BACKEND_CLUSTER
            if s.weight:
                found[key] = found.get(key, 0.0) + s.weight / total
        return found
    top = min(s.priority for s in settings)
    level = [s for s in settings if s.priority == top]
    level_total = sum(s.weight for s in level)
    return {s.name: s.weight / level_total for s in level if s.weight and level_total}


def failover_shares(settings: Sequence[Setting]) -> dict[str, float]:
    """Each setting's share once every host of the highest priority has failed. What failed differs by kind: a
    Service's ready endpoints are gone (so it has none, which by itself splits the rule into clusters), a Backend's
    endpoints stay and fail Envoy's health checks. In one cluster the next priority's localities take all by weight;
    split, there is no priority to fail over to: the failed shares become errors (`invalid-backend-cluster`) or stay
    with hosts that fail."""
    top = min((s.priority for s in settings), default=0)
    failed = [s if s.priority != top or s.kind != "Service" else replace(s, has_endpoints=False) for s in settings]
    if needs_cluster_per_setting(failed):
        return shares(failed)
    rest = [s for s in failed if s.priority > top]
    return shares(rest) if rest else {}
