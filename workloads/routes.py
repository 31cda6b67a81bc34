"""A catalog model's way in: its HTTPRoute on the platform's Gateway, and the Envoy Gateway policies on that route.

- The route: the model's own host under the gateway's domain, `<name>.<gateway.hostname>` (the listener takes
  `*.<hostname>`), every path as the client sent it, so every protocol the server speaks works unchanged
  (`https://minilm.<host>/v1/embeddings`; an OpenAI client's base URL is `https://<name>.<host>/v1`). It sends to
  the predictor Service KServe's Standard mode makes for each InferenceService (`<isvc>-predictor`, port 80 to the
  container's port; KServe's service_reconciler.go). A canary gets exactly its `traffic_percent` by backendRef
  weight, whatever the replica counts; a shadow gets copies of `percent` % of the requests (RequestMirror), and
  the stable version another `percent` %, its noise floor; a fallback is another region's gateway as an Envoy
  Gateway Backend of lower priority, called with its own key and host, beside which the predictors are named by
  hostname so that Envoy Gateway keeps them in one cluster (`backend_refs`); the request timeout is the runtime's
  (a streamed LLM answer is one request).
- SecurityPolicy: API keys from each caller team's Secret (`modelyard-api-keys-<team>` in the model namespace,
  every key named `<team>.<name>`; the key is read from `Authorization: Bearer <key>`, and removed before the
  model sees the request), the client id forwarded in `x-modelyard-client`, and authorization that admits only
  the catalog's callers: a valid key of another team gets 403, no or an unknown key 401. The key sets of every
  team the catalog names are admitted by every route, so that 403 and 401 mean what they say. Or, where the
  platform names an identity provider, its JWT, the team claim forwarded in the same header and authorized alike.
- BackendTrafficPolicy: each caller team's request rate (Envoy's local rate limit, enforced by every proxy replica
  at its share: the limit over the gateway's replicas), retries only where the runtime's calls may be replayed
  (otherwise only when the call never reached a replica), a circuit breaker at what the model's replicas hold, and
  passive health checks that eject a replica after consecutive 5xx; the gateway's own 401, 403 and 429 in
  OpenAI's error shape.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from modelyard.platform.gateway import CLIENT_ID_HEADER, LISTENER, response_overrides
from modelyard.workloads.catalog import ModelEntry

#: The port KServe's predictor Service listens on (constants.CommonDefaultHttpPort).
PREDICTOR_SERVICE_PORT = 80
#: Retries of a call the runtime may replay: on another replica, after a connection failure, a reset or a 503.
RETRIES = 2
#: Consecutive 5xx answers after which a replica is ejected, for BASE_EJECTION (longer each time it recurs).
CONSECUTIVE_5XX = 5
BASE_EJECTION = "30s"
#: The port a fallback elsewhere (another modelyard gateway) listens on.
FALLBACK_PORT = 443


def fallback_secret(model: str) -> str:
    """The Secret in the model namespace holding the key for a model's fallback gateway (`credential`: `Bearer <key>`,
    Envoy Gateway's credential injection)."""
    return f"modelyard-fallback-{model}"


def api_keys_secret(team: str) -> str:
    """The Secret in the model namespace holding a team's API keys, one key a client (`<team>.<name>`)."""
    return f"modelyard-api-keys-{team}"


def predictor_service(isvc_name: str) -> str:
    """The Service KServe's Standard mode makes for a predictor (componentMeta.Name, constants.PredictorServiceName)."""
    return f"{isvc_name}-predictor"


def model_host(model: str, gateway_hostname: str) -> str:
    """The name a model is called at: its own label under the gateway's domain (the listener's `*.<hostname>`)."""
    return f"{model}.{gateway_hostname}"


def _weighted_versions(model: ModelEntry) -> list[tuple[str, int]]:
    """The InferenceServices callers' requests go to, with their weights: the stable version, and while a canary
    runs the canary, so that it carries exactly its traffic_percent (Gateway API: each backend's share is its weight
    over the weights' sum)."""
    canary = model.canary.traffic_percent if model.canary_active and model.canary else 0
    refs = [(model.name, 100 - canary)]
    if canary:
        refs.append((f"{model.name}-canary", canary))
    return refs


def backend_refs(model: ModelEntry) -> list[dict[str, Any]]:
    """The stable predictor, and while a canary runs the canary's, at their weights; with a fallback, each predictor
    as an Envoy Gateway Backend by its Service's name, and the fallback a Backend marked `fallback`.

    Envoy Gateway v1.9.0 keeps a rule's backends in one Envoy cluster (each a locality at its weight and priority, so
    that a fallback at priority 1 waits for the model's own hosts to fail) only when they are all addresses or all
    hostnames, none has filters of its own, and every one has endpoints; otherwise each gets a cluster of its own,
    chosen by weight alone (policies/governance/envoy_gateway.py, ported from its translator). A predictor Service's
    endpoints are its ready pods' addresses, which vanish when they do, so beside a fallback the predictors are
    hostnames, and the fallback's key and host are set on the rule (`rule_filters`)."""
    versions = _weighted_versions(model)
    if model.fallback is None:
        return [
            {
                "group": "",
                "kind": "Service",
                "name": predictor_service(isvc),
                "port": PREDICTOR_SERVICE_PORT,
                "weight": w,
            }
            for isvc, w in versions
        ]
    return [
        *(
            {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": predictor_service(isvc), "weight": w}
            for isvc, w in versions
        ),
        {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": f"{model.name}-fallback", "weight": 1},
    ]


def predictor_backend_spec(isvc_name: str, namespace: str) -> dict[str, Any]:
    """A predictor Service by its cluster DNS name (Envoy resolves it to the Service's address; the Service's proxy
    picks a ready pod), so that the route's backends stay hostnames whether or not a pod is ready."""
    host = f"{predictor_service(isvc_name)}.{namespace}.svc.cluster.local"
    return {"endpoints": [{"fqdn": {"hostname": host, "port": PREDICTOR_SERVICE_PORT}}]}


def rule_filters(model: ModelEntry) -> list[dict[str, Any]]:
    """The rule's own filters: the shadow's mirrors, and with a fallback the fallback gateway's key and host (on the
    rule, not the fallback's backendRef: filters on a backendRef split the rule into a cluster per backend). The
    model's own replicas therefore see the fallback's host and key too; the key admits this model's team to the same
    model elsewhere, which they serve."""
    found = mirror_filters(model)
    if model.fallback is not None:
        found += [
            {
                "type": "ExtensionRef",
                "extensionRef": {
                    "group": "gateway.envoyproxy.io",
                    "kind": "HTTPRouteFilter",
                    "name": f"{model.name}-fallback",
                },
            },
            {"type": "URLRewrite", "urlRewrite": {"hostname": model.fallback.host}},
        ]
    return found


def fallback_backend_spec(model: ModelEntry) -> dict[str, Any]:
    """The fallback gateway as an Envoy Gateway Backend: its host on 443, TLS checked against its CA (or the
    system's), and `fallback: true` (priority 1: traffic only as the model's own replicas fail)."""
    assert model.fallback is not None
    f = model.fallback
    tls: dict[str, Any] = {"sni": f.host}
    if f.ca_config_map:
        tls["caCertificateRefs"] = [{"group": "", "kind": "ConfigMap", "name": f.ca_config_map}]
    else:
        tls["wellKnownCACertificates"] = "System"
    return {
        "endpoints": [{"fqdn": {"hostname": f.host, "port": FALLBACK_PORT}}],
        "fallback": True,
        "tls": tls,
    }


def fallback_filter_spec(model: ModelEntry) -> dict[str, Any]:
    """The fallback gateway's key, injected where the caller's own was removed (API key authentication's sanitize)."""
    return {
        "credentialInjection": {
            "overwrite": True,
            "credential": {"valueRef": {"group": "", "kind": "Secret", "name": fallback_secret(model.name)}},
        }
    }


def mirror_filters(model: ModelEntry) -> list[dict[str, Any]]:
    """While a shadow runs: a copy of `percent` of the requests to its predictor, and, as Diffy does, a copy of
    `percent` to the stable version's own predictor, whose answers to the same texts are the noise floor the shadow
    is judged against (the drift worker joins the copies by their x-request-id: modelyard_server/shadow.py). Gateway
    API's RequestMirror: Envoy sends each copy and drops its answer, never holding the caller's; the two copies are
    drawn independently. The stable version serves `percent` more requests while a shadow runs."""
    if not (model.shadow_active and model.shadow):
        return []
    return [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {
                    "group": "",
                    "kind": "Service",
                    "name": predictor_service(isvc),
                    "port": PREDICTOR_SERVICE_PORT,
                },
                "percent": model.shadow.percent,
            },
        }
        for isvc in (f"{model.name}-shadow", model.name)
    ]


def route_spec(model: ModelEntry, gateway: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "parentRefs": [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "namespace": gateway["namespace"],
                "name": gateway["name"],
                "sectionName": LISTENER,
            }
        ],
        "hostnames": [model_host(model.name, gateway["hostname"])],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                **({"filters": filters} if (filters := rule_filters(model)) else {}),
                "backendRefs": backend_refs(model),
                "timeouts": {"request": f"{model.runtime_module.route_timeout_s(model)}s"},
            }
        ],
    }


def callers_expression(teams: tuple[str, ...]) -> str:
    """The authorization rule's CEL (Envoy's attributes): the forwarded client id starts with a caller team's name."""
    header = f"request.headers['{CLIENT_ID_HEADER}']"
    return " || ".join(f"{header}.startsWith('{team}.')" for team in teams)


#: The JWT provider's name in a SecurityPolicy (authorization's principal names it).
JWT_PROVIDER = "oidc"


def security_spec(model: ModelEntry, all_teams: tuple[str, ...], auth: Mapping[str, Any]) -> dict[str, Any]:
    """Who may call the model: with API keys (`auth.mode` api-keys), any catalog team's key authenticates and the
    forwarded client id's team must be a caller; with JWTs (`jwt`), the provider's token, whose team claim must be a
    caller (forwarded in the same header, so limits and the server's counts read it alike)."""
    target = {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": model.name}]}
    if auth.get("mode") == "jwt":
        claim = str(auth["teamClaim"])
        provider = {
            "name": JWT_PROVIDER,
            "issuer": auth["issuer"],
            "audiences": list(auth["audiences"]),
            "remoteJWKS": {"uri": auth["jwksUri"]},
            "claimToHeaders": [{"claim": claim, "header": CLIENT_ID_HEADER}],
        }
        principal = {
            "jwt": {
                "provider": JWT_PROVIDER,
                "claims": [{"name": claim, "valueType": "String", "values": list(model.callers)}],
            }
        }
        return {
            **target,
            "jwt": {"providers": [provider]},
            "authorization": {
                "defaultAction": "Deny",
                "rules": [{"name": "callers", "action": "Allow", "principal": principal}],
            },
        }
    return {
        **target,
        "apiKeyAuth": {
            "credentialRefs": [{"group": "", "kind": "Secret", "name": api_keys_secret(t)} for t in all_teams],
            "extractFrom": [{"headers": ["authorization"]}],
            "forwardClientIDHeader": CLIENT_ID_HEADER,
            "sanitize": True,
        },
        "authorization": {
            "defaultAction": "Deny",
            "rules": [{"name": "callers", "action": "Allow", "cel": callers_expression(model.callers)}],
        },
    }


def tenant_limit(requests_per_second: float, gateway_replicas: int) -> dict[str, Any]:
    """One proxy replica's share of a team's rate, in whole requests per second, or per minute below one a second
    (Envoy's local rate limit counts whole requests in a unit of time)."""
    per_second = requests_per_second / gateway_replicas
    if per_second >= 1:
        return {"requests": math.ceil(per_second), "unit": "Second"}
    return {"requests": max(1, math.ceil(per_second * 60)), "unit": "Minute"}


def traffic_spec(model: ModelEntry, gateway_replicas: int) -> dict[str, Any]:
    rt = model.runtime_module
    triggers = ["connect-failure", "refused-stream"]
    retry: dict[str, Any] = {"numRetries": RETRIES, "retryOn": {"triggers": triggers}}
    if rt.idempotent:
        retry["retryOn"] = {"triggers": [*triggers, "reset", "retriable-status-codes"], "httpStatusCodes": [503]}
    retry["perRetry"] = {"backOff": {"baseInterval": "100ms", "maxInterval": "1s"}}
    bound = rt.in_flight_per_replica(model) * max(model.replicas.max, 1)
    limit = tenant_limit(model.access.requests_per_second, gateway_replicas)
    return {
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": model.name}],
        "rateLimit": {
            "local": {
                "rules": [
                    {
                        "clientSelectors": [
                            {
                                "headers": [
                                    {
                                        "name": CLIENT_ID_HEADER,
                                        "type": "RegularExpression",
                                        # `<team>.<client>` (an API key's client id) or `<team>` (a JWT's claim).
                                        "value": f"^{team}([.].+)?$",
                                    }
                                ]
                            }
                        ],
                        "limit": limit,
                    }
                    for team in model.callers
                ]
            }
        },
        "retry": retry,
        "circuitBreaker": {"maxConnections": bound, "maxPendingRequests": bound, "maxParallelRequests": bound},
        "healthCheck": {
            "passive": {
                "consecutive5XxErrors": CONSECUTIVE_5XX,
                "interval": "10s",
                "baseEjectionTime": BASE_EJECTION,
                "maxEjectionPercent": 50,
            }
        },
        "responseOverride": response_overrides(1 if limit["unit"] == "Second" else 60),
    }


@dataclass(frozen=True, kw_only=True)
class ModelRouteArgs:
    model: ModelEntry
    #: Every team the catalog names (owners and callers): their key Secrets authenticate on every route.
    all_teams: tuple[str, ...]
    namespace: pulumi.Input[str]
    #: The platform's `gateway` output: namespace, name, hostname and replicas of its Gateway.
    gateway: pulumi.Input[Mapping[str, Any]]
    labels: Mapping[str, str]


class ModelRoute(pulumi.ComponentResource):
    """A model's HTTPRoute on the platform's Gateway, with its SecurityPolicy and BackendTrafficPolicy."""

    def __init__(self, name: str, args: ModelRouteArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:workloads:ModelRoute", name, None, opts)
        m = args.model
        gateway = pulumi.Output.from_input(args.gateway)
        meta: Any = {"name": m.name, "namespace": args.namespace, "labels": dict(args.labels)}
        # The fallback's Backend and key filter, and the predictors as Backends beside it, first: the route names them.
        refs: list[pulumi.Resource] = []
        if m.fallback is not None:
            fallback = k8s.apiextensions.CustomResource(
                f"{name}-fallback",
                api_version="gateway.envoyproxy.io/v1alpha1",
                kind="Backend",
                metadata={**meta, "name": f"{m.name}-fallback"},
                spec=fallback_backend_spec(m),
                opts=pulumi.ResourceOptions(parent=self),
            )
            fallback_filter = k8s.apiextensions.CustomResource(
                f"{name}-fallback-credentials",
                api_version="gateway.envoyproxy.io/v1alpha1",
                kind="HTTPRouteFilter",
                metadata={**meta, "name": f"{m.name}-fallback"},
                spec=fallback_filter_spec(m),
                opts=pulumi.ResourceOptions(parent=self),
            )
            refs = [fallback, fallback_filter]
            namespace = pulumi.Output.from_input(args.namespace)
            for isvc, _ in _weighted_versions(m):
                refs.append(
                    k8s.apiextensions.CustomResource(
                        f"{name}-{predictor_service(isvc)}",
                        api_version="gateway.envoyproxy.io/v1alpha1",
                        kind="Backend",
                        metadata={**meta, "name": predictor_service(isvc)},
                        spec=namespace.apply(functools.partial(predictor_backend_spec, isvc)),
                        opts=pulumi.ResourceOptions(parent=self),
                    )
                )
        route = k8s.apiextensions.CustomResource(
            f"{name}-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata=meta,
            spec=gateway.apply(lambda g: route_spec(m, g)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=refs),
        )
        after = pulumi.ResourceOptions(parent=self, depends_on=[route])
        k8s.apiextensions.CustomResource(
            f"{name}-security",
            api_version="gateway.envoyproxy.io/v1alpha1",
            kind="SecurityPolicy",
            metadata=meta,
            spec=gateway.apply(lambda g: security_spec(m, args.all_teams, g.get("auth") or {"mode": "api-keys"})),
            opts=after,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-traffic",
            api_version="gateway.envoyproxy.io/v1alpha1",
            kind="BackendTrafficPolicy",
            metadata=meta,
            spec=gateway.apply(lambda g: traffic_spec(m, int(g["replicas"]))),
            opts=after,
        )
        self.register_outputs({})
