"""The front door's routes and policies: the Gateway API's path rewrite held to the specification's table,
Envoy Gateway's filter order as its source sets it (what the policies rely on), the routes of every environment
(exact canary weights, timeouts, retries by the runtime, limits at the gateway's replicas), and the gateway's
own errors as the OpenAI client reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
import yaml
from conftest import ENVS, Plan
from gateway_api import prefix_matches, replace_prefix, shares

from modelyard.platform import gateway
from modelyard.platform.network_policy import GATEWAY_CONTAINER_PORT
from modelyard.workloads.routes import tenant_limit

FOLDER = Path(__file__).parent / "conformance" / "envoy-gateway-v1.9.0"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
TRAFFIC = "kubernetes:gateway.envoyproxy.io/v1alpha1:BackendTrafficPolicy"
SECURITY = "kubernetes:gateway.envoyproxy.io/v1alpha1:SecurityPolicy"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


@pytest.mark.parametrize("case", yaml.safe_load((FOLDER / "rewrite_cases.yaml").read_text()))
def test_the_rewrite_answers_as_the_specifications_table(case: dict[str, str]) -> None:
    assert replace_prefix(case["request"], case["prefix"], case["replace"]) == case["modified"]


def test_a_prefix_matches_whole_path_elements() -> None:
    assert prefix_matches("/models/minilm", "/models/minilm/v1/embeddings")
    assert prefix_matches("/models/minilm", "/models/minilm")
    assert not prefix_matches("/models/minilm", "/models/minilm-canary/v1/embeddings")


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
        assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": f"/models/{name}"}}]
        assert route["spec"]["parentRefs"][0]["name"] == gateway.GATEWAY_NAME
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
    for policy in plan.of_type(TRAFFIC):
        spec = policy["inputs"]["spec"]
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
    override = next(o for o in gateway.response_overrides() if o["match"]["statusCodes"][0]["value"] == status)
    body = override["response"]["body"]["inline"]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": override["response"]["contentType"]})

    client = openai.OpenAI(
        api_key="search.ci-key",
        base_url="https://models.modelyard.internal/models/minilm/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(answer)),
        max_retries=0,
    )
    with pytest.raises(error) as raised:
        client.embeddings.create(model="minilm", input="hello")
    message, code = gateway.GATEWAY_ERRORS[status]
    assert raised.value.code == code  # type: ignore[attr-defined]
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
    """staging's minilm runs version 2 as a shadow: the route copies it 10 % of the requests and weighs it 0."""
    route = next(
        r["inputs"] for r in all_plans["staging"].of_type(ROUTE) if r["inputs"]["metadata"]["name"] == "minilm"
    )
    (rule,) = route["spec"]["rules"]
    assert shares(rule) == {"minilm-predictor": 1.0}
    mirrors = [f["requestMirror"] for f in rule["filters"] if f["type"] == "RequestMirror"]
    assert mirrors == [
        {"backendRef": {"group": "", "kind": "Service", "name": "minilm-shadow-predictor", "port": 80}, "percent": 10}
    ]
    isvcs = {i["inputs"]["metadata"]["name"]: i["inputs"] for i in all_plans["staging"].of_type(ISVC)}
    shadow = isvcs["minilm-shadow"]["metadata"]
    assert shadow["labels"]["modelyard.io/role"] == "shadow" and shadow["labels"]["modelyard.io/model-version"] == "2"
