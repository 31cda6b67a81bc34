"""The front door's routes and policies: the Gateway API's hostname matching held to the specification's examples,
Envoy Gateway's filter order as its source sets it (what the policies rely on), the routes of every environment
(exact canary weights, timeouts, retries by the runtime, limits at the gateway's replicas), and the gateway's
own errors as the OpenAI client reads them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
import yaml
from conftest import ENVS, Plan, plan_all, stack_raw
from gateway_api import listener_takes, shares

from modelyard.config import FULL_KEY, GatewayConfig
from modelyard.platform import gateway
from modelyard.platform.network_policy import GATEWAY_CONTAINER_PORT
from modelyard.policies.governance import envoy_gateway as eg
from modelyard.policies.governance import policy
from modelyard.policies.governance.resources import from_preview
from modelyard.stackfile import parse_platform_config
from modelyard.validation import ConfigError
from modelyard.workloads.routes import tenant_limit

FOLDER = Path(__file__).parent / "conformance" / "envoy-gateway-v1.9.0"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
TRAFFIC = "kubernetes:gateway.envoyproxy.io/v1alpha1:BackendTrafficPolicy"
SECURITY = "kubernetes:gateway.envoyproxy.io/v1alpha1:SecurityPolicy"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


@pytest.mark.parametrize(
    ("listener", "hostname", "takes"),
    [
        # The specification's own examples (gateway_types.go, Listener.Hostname).
        ("*.example.com", "test.example.com", True),
        ("*.example.com", "foo.test.example.com", True),
        ("*.example.com", "example.com", False),
        ("foo.example.com", "foo.example.com", True),
        ("foo.example.com", "bar.example.com", False),
    ],
)
def test_a_listener_takes_hostnames_as_the_specification_says(listener: str, hostname: str, takes: bool) -> None:
    assert listener_takes(listener, hostname) is takes


def test_the_policies_filters_run_in_the_order_they_rely_on() -> None:
    """The client id the API key filter forwards is set before authorization and the rate limit read it, and the
    custom response filter, first in the chain, sees the local replies of all three."""
    order = {f["filter"]: f["order"] for f in yaml.safe_load((FOLDER / "filter_order.yaml").read_text())}
    assert (
        order["envoy.filters.http.custom_response"]
        < order["envoy.filters.http.api_key_auth"]
        < order["envoy.filters.http.rbac"]
        < order["envoy.filters.http.local_ratelimit"]
        < order["envoy.filters.http.router"]
    )


def test_a_privileged_listener_port_is_shifted_as_envoy_gateway_shifts_it() -> None:
    assert gateway.container_port(gateway.LISTENER_PORT) == GATEWAY_CONTAINER_PORT == 10443
    assert gateway.container_port(8443) == 8443


def plans_gateway_config(env: str) -> GatewayConfig:
    return parse_platform_config(stack_raw(env)[FULL_KEY], stack=env, source=f"Pulumi.{env}.yaml").serving.gateway


@pytest.mark.parametrize("env", ENVS)
def test_every_model_has_a_guarded_route_with_exact_weights(all_plans: dict[str, Plan], env: str) -> None:
    plan = all_plans[env]
    routes = {r["inputs"]["metadata"]["name"]: r["inputs"] for r in plan.of_type(ROUTE)}
    isvcs = {
        i["inputs"]["metadata"]["name"]: i["inputs"]
        for i in plan.of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService")
    }
    models = {i["metadata"]["labels"]["modelyard.io/model"] for i in isvcs.values()}
    assert set(routes) == models
    for name, route in routes.items():
        (rule,) = route["spec"]["rules"]
        got = shares(rule)
        canary = isvcs.get(f"{name}-canary")
        if canary is not None:
            asked = int(canary["metadata"]["annotations"]["modelyard.io/traffic-percent"])
            assert got == {f"{name}-predictor": (100 - asked) / 100, f"{name}-canary-predictor": asked / 100}
        else:
            assert got == {f"{name}-predictor": 1.0}
        assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
        assert route["spec"]["parentRefs"][0]["name"] == gateway.GATEWAY_NAME
        # The platform's listener takes the model's host (the Gateway is the platform stack's).
        (host,) = route["spec"]["hostnames"]
        assert host.split(".", 1)[0] == name
        listener = gateway.listener_hostname(plans_gateway_config(env))
        assert listener_takes(listener, host), (listener, host)
    guarded = {p["inputs"]["spec"]["targetRefs"][0]["name"]: p["inputs"]["spec"] for p in plan.of_type(SECURITY)}
    assert set(guarded) == set(routes)
    for spec in guarded.values():
        assert spec["apiKeyAuth"]["sanitize"] is True and spec["authorization"]["defaultAction"] == "Deny"


@pytest.mark.parametrize("env", ENVS)
def test_retries_follow_the_runtime_and_limits_the_gateways_replicas(all_plans: dict[str, Plan], env: str) -> None:
    plan = all_plans[env]
    runtimes = {
        i["inputs"]["metadata"]["labels"]["modelyard.io/model"]: i["inputs"]["metadata"]["labels"][
            "modelyard.io/runtime"
        ]
        for i in plan.of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService")
    }
    for traffic in plan.of_type(TRAFFIC):
        spec = traffic["inputs"]["spec"]
        model = spec["targetRefs"][0]["name"]
        triggers = set(spec["retry"]["retryOn"]["triggers"])
        if runtimes[model] == "vllm":
            # A completion is retried only where it never reached the engine.
            assert triggers == {"connect-failure", "refused-stream"}, model
        else:
            assert "retriable-status-codes" in triggers and spec["retry"]["retryOn"]["httpStatusCodes"] == [503]
        # Envoy Gateway's buildLocalRateLimit: no rule without client selectors here, so every unit is a multiple
        # of the default (Second); one rule a caller team.
        rules = spec["rateLimit"]["local"]["rules"]
        assert all(r["clientSelectors"] for r in rules) and len(rules) <= 16
        assert {o["match"]["statusCodes"][0]["value"] for o in spec["responseOverride"]} == {401, 403, 429}


def test_a_tenants_limit_is_split_across_the_gateways_replicas() -> None:
    assert tenant_limit(20, 2) == {"requests": 10, "unit": "Second"}
    assert tenant_limit(25, 3) == {"requests": 9, "unit": "Second"}
    assert tenant_limit(1, 3) == {"requests": 20, "unit": "Minute"}


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, openai.AuthenticationError), (403, openai.PermissionDeniedError), (429, openai.RateLimitError)],
)
def test_the_gateways_own_errors_are_what_the_openai_client_reads(status: int, error: type[Exception]) -> None:
    """The bodies the gateway answers with (responseOverride), through the real OpenAI client: its error class,
    message and code."""
    override = next(o for o in gateway.response_overrides(1) if o["match"]["statusCodes"][0]["value"] == status)
    # Only Envoy's own plain-text replies: a model's JSON error (the server's 429 and its Retry-After) passes.
    assert override["match"]["responseHeaders"] == [
        {"name": "content-type", "value": {"type": "Prefix", "value": "text/plain"}}
    ]
    body = override["response"]["body"]["inline"]

    headers = {"content-type": override["response"]["contentType"]}
    headers |= {h["name"]: h["value"] for h in override["response"].get("header", {}).get("set", [])}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    client = openai.OpenAI(
        api_key="search.ci-key",
        base_url="https://minilm.models.modelyard.internal/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(answer)),
        max_retries=0,
    )
    with pytest.raises(error) as raised:
        client.embeddings.create(model="minilm", input="hello")
    message, code = gateway.GATEWAY_ERRORS[status]
    assert raised.value.code == code  # type: ignore[attr-defined]
    if status == 429:  # the rate limit's unit, where the client's own backoff reads it
        assert raised.value.response.headers["retry-after"] == "1"  # type: ignore[attr-defined]
    assert message in str(raised.value)
    assert json.loads(body)["error"]["type"] == ("requests" if status == 429 else "invalid_request_error")


def test_every_route_authenticates_with_keys_of_every_team(all_plans: dict[str, Plan]) -> None:
    """A valid key of another team is admitted by authentication and refused by authorization (403), never a 401."""
    for env in ENVS:
        plan = all_plans[env]
        specs: list[dict[str, Any]] = [p["inputs"]["spec"] for p in plan.of_type(SECURITY)]
        secrets = [{r["name"] for r in s["apiKeyAuth"]["credentialRefs"]} for s in specs]
        assert all(s == secrets[0] for s in secrets), env


def test_a_shadow_gets_copies_and_no_callers_request(all_plans: dict[str, Plan]) -> None:
    """staging's minilm runs version 2 as a shadow: the route copies it 10 % of the requests and weighs it 0, and
    copies the stable version another 10 %, the noise floor the shadow's answers are judged against."""
    route = next(
        r["inputs"] for r in all_plans["staging"].of_type(ROUTE) if r["inputs"]["metadata"]["name"] == "minilm"
    )
    (rule,) = route["spec"]["rules"]
    assert shares(rule) == {"minilm-predictor": 1.0}
    mirrors = [f["requestMirror"] for f in rule["filters"] if f["type"] == "RequestMirror"]
    assert mirrors == [
        {"backendRef": {"group": "", "kind": "Service", "name": "minilm-shadow-predictor", "port": 80}, "percent": 10},
        {"backendRef": {"group": "", "kind": "Service", "name": "minilm-predictor", "port": 80}, "percent": 10},
    ]
    isvcs = {i["inputs"]["metadata"]["name"]: i["inputs"] for i in all_plans["staging"].of_type(ISVC)}
    shadow = isvcs["minilm-shadow"]["metadata"]
    assert shadow["labels"]["modelyard.io/role"] == "shadow" and shadow["labels"]["modelyard.io/model-version"] == "2"


#: Envoy Gateway v1.9.0's translation of a ClientTrafficPolicy's `headers.requestID` into the HTTP connection
#: manager's (generate_request_id, preserve_external_request_id): internal/xds/translator/listener.go.
REQUEST_ID_ACTIONS = {
    "PreserveOrGenerate": (True, True),
    "Preserve": (False, True),
    "Disable": (False, False),
    "Generate": (True, False),
}


def test_copies_of_a_request_carry_the_id_the_gateway_made() -> None:
    """The gateway makes every request's id and keeps no client's (so no caller picks which texts are sampled), and
    Envoy Gateway renders a route's two mirrors as two request mirror policies, each its own fraction, with the
    request's headers unchanged (no `-shadow` host suffix): its own translator test output at the pinned tag."""
    assert REQUEST_ID_ACTIONS[gateway.client_traffic_spec()["headers"]["requestID"]] == (True, False)
    (config,) = yaml.safe_load((FOLDER / "xds-multiple-mirrors.routes.yaml").read_text())
    (route,) = config["virtualHosts"][0]["routes"]
    policies = route["route"]["requestMirrorPolicies"]
    assert [p["runtimeFraction"]["defaultValue"]["numerator"] for p in policies] == [250000, 440000]
    assert all(p["disableShadowHostSuffixAppend"] for p in policies)


FALLBACK_HOST = "qwen-chat.models.staging-west.modelyard.internal"


def _with_fallback(catalog: dict[str, Any]) -> dict[str, Any]:
    entry = next(m for m in catalog["models"] if m["name"] == "qwen-chat")
    entry["fallback"] = {"host": FALLBACK_HOST, "version": "1-small", "ca_config_map": "staging-west-ca"}
    return catalog


def _staging_catalog() -> dict[str, Any]:
    from modelyard.programs import REPO_ROOT

    return yaml.safe_load((REPO_ROOT / "workloads" / "catalog" / "staging.yaml").read_text())


def test_a_fallback_is_a_lower_priority_backend_called_with_its_own_key_and_host(tmp_path: Path) -> None:
    """An LLM's fallback (another version under the same name, behind another region's gateway): Envoy Gateway's
    Backend marked fallback, the other gateway's key injected and its host set on the rule; the predictor named by
    its Service's DNS name beside it, so that Envoy Gateway keeps both in one cluster and the fallback takes nothing
    while the model answers and everything once it cannot (its translator's choice, ported); the platform opens the
    proxies' egress to the fallback ranges and Envoy Gateway's Backend API; every object admitted by its CRD at
    v1.9.0."""
    from crd_schema import load_crds, refusals

    def cidrs(p: dict[str, Any]) -> None:
        p.setdefault("serving", {}).setdefault("gateway", {})["fallback_cidrs"] = ["10.80.0.0/16"]

    plan = plan_all("staging", _with_fallback(_staging_catalog()), tmp_path, platform_edit=cidrs)
    route = next(r["inputs"] for r in plan.of_type(ROUTE) if r["inputs"]["metadata"]["name"] == "qwen-chat")
    (rule,) = route["spec"]["rules"]
    assert {"type": "URLRewrite", "urlRewrite": {"hostname": FALLBACK_HOST}} in rule["filters"]
    assert all("filters" not in ref for ref in rule["backendRefs"])
    made = plan.of_type("kubernetes:gateway.envoyproxy.io/v1alpha1:Backend")
    backends = {b["inputs"]["metadata"]["name"]: b["inputs"] for b in made}
    assert [(r["kind"], r["name"], r["weight"]) for r in rule["backendRefs"]] == [
        ("Backend", "qwen-chat-predictor", 100),
        ("Backend", "qwen-chat-fallback", 1),
    ]
    assert backends["qwen-chat-predictor"]["spec"] == {
        "endpoints": [{"fqdn": {"hostname": "qwen-chat-predictor.models.svc.cluster.local", "port": 80}}]
    }
    backend = backends["qwen-chat-fallback"]
    assert backend["spec"]["fallback"] is True
    assert backend["spec"]["endpoints"] == [{"fqdn": {"hostname": FALLBACK_HOST, "port": 443}}]
    assert backend["spec"]["tls"] == {
        "sni": FALLBACK_HOST,
        "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "staging-west-ca"}],
    }
    settings = [
        eg.Setting(
            name=ref["name"],
            kind="Backend",
            weight=ref["weight"],
            address_type=eg.address_type(["FQDN" for e in backends[ref["name"]]["spec"]["endpoints"] if "fqdn" in e]),
            priority=1 if backends[ref["name"]]["spec"].get("fallback") else 0,
        )
        for ref in rule["backendRefs"]
    ]
    assert not eg.needs_cluster_per_setting(settings)
    assert eg.shares(settings) == {"qwen-chat-predictor": 1.0}
    assert eg.failover_shares(settings) == {"qwen-chat-fallback": 1.0}
    key = next(f["inputs"] for f in plan.of_type("kubernetes:gateway.envoyproxy.io/v1alpha1:HTTPRouteFilter"))
    assert key["spec"]["credentialInjection"]["credential"]["valueRef"]["name"] == "modelyard-fallback-qwen-chat"
    values = plan.named("kubernetes:helm.sh/v3:Release", "gateway-release")["inputs"]["values"]
    assert values["config"]["envoyGateway"]["extensionApis"] == {"enableBackend": True}
    egress = [
        p["inputs"]
        for p in plan.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if p["inputs"]["metadata"]["name"] == "allow-fallbacks-0-egress"
    ]
    assert egress[0]["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.80.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    ]
    crds = load_crds(FOLDER)
    for obj in (*backends.values(), key, route):
        assert refusals(obj, crds) == [], obj["kind"]
    # The predictor's Backend reaches an InferenceService's predictor, and the fallback waits: the plan passes.
    report = policy.evaluate(from_preview(plan.digest), "staging", policy.load_config("staging"))
    assert [v for v in report.violations if v.level == "mandatory"] == []


def test_an_embedding_models_fallback_must_be_the_same_version(tmp_path: Path) -> None:
    catalog = _staging_catalog()
    catalog["models"][0]["fallback"] = {"host": "minilm.models.west.modelyard.internal", "version": "2"}
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    with pytest.raises(ConfigError, match=r"fallback\.version: must be the entry's version '1'"):
        plan_all("staging", catalog, tmp_path)


def test_a_fallback_the_platform_gives_no_way_out_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"qwen-chat: a fallback needs the platform's serving.gateway.fallback_cidrs"):
        plan_all("staging", _with_fallback(_staging_catalog()), tmp_path)


def test_with_an_identity_provider_callers_present_its_jwt_and_their_team_claim_decides(tmp_path: Path) -> None:
    """serving.gateway.oidc: every route checks the provider's JWT (issuer, audience, signature by its published
    keys), the team claim forwarded where API keys put the client id, authorization by that claim; the proxies
    reach the provider's keys on 443; every object admitted by its CRD."""
    from crd_schema import load_crds, refusals

    def oidc(p: dict[str, Any]) -> None:
        p.setdefault("serving", {}).setdefault("gateway", {})["oidc"] = {
            "issuer": "https://login.example.com/",
            "jwks_uri": "https://login.example.com/.well-known/jwks.json",
            "audiences": ["modelyard"],
            "team_claim": "team",
        }

    plan = plan_all("staging", _staging_catalog(), tmp_path, platform_edit=oidc)
    specs = {p["inputs"]["spec"]["targetRefs"][0]["name"]: p["inputs"] for p in plan.of_type(SECURITY)}
    minilm = specs["minilm"]
    assert "apiKeyAuth" not in minilm["spec"]
    (provider,) = minilm["spec"]["jwt"]["providers"]
    assert provider["remoteJWKS"] == {"uri": "https://login.example.com/.well-known/jwks.json"}
    assert provider["claimToHeaders"] == [{"claim": "team", "header": gateway.CLIENT_ID_HEADER}]
    (rule,) = minilm["spec"]["authorization"]["rules"]
    assert rule["principal"]["jwt"]["claims"] == [
        {"name": "team", "valueType": "String", "values": ["search", "assistants"]}
    ]
    crds = load_crds(FOLDER)
    for spec in specs.values():
        assert refusals(spec, crds) == []
    names = {p["inputs"]["metadata"]["name"] for p in plan.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}
    assert "allow-identity-provider-egress" in names
    # A team's rate reads the claim (a bare team) as it reads a key's client id (`<team>.<client>`).
    traffic = next(
        p["inputs"]["spec"] for p in plan.of_type(TRAFFIC) if p["inputs"]["spec"]["targetRefs"][0]["name"] == "minilm"
    )
    pattern = traffic["rateLimit"]["local"]["rules"][0]["clientSelectors"][0]["headers"][0]["value"]
    assert re.fullmatch(pattern, "search") and re.fullmatch(pattern, "search.ci")
    assert not re.fullmatch(pattern, "searching") and not re.fullmatch(pattern, "search-team.ci")
    report = policy.evaluate(from_preview(plan.digest), "staging", policy.load_config("staging"))
    assert [v for v in report.violations if v.level == "mandatory"] == []
