"""The gateway's access log, from the EnvoyProxy that asks for it to the counter that reads it.

Held to Envoy Gateway v1.9.0's own translator cases (tests/conformance/envoy-gateway-v1.9.0/gatewayapi, from
`internal/gatewayapi/testdata`): an OpenTelemetry sink's JSON format fields become the record's attributes
(envoyproxy-accesslog-otel-text-attrs), and a sink naming a Service that does not exist leaves the whole Gateway
not accepted (envoyproxy-accesslog-backend-invalid), which is why the platform makes the counter's Service and rule
gateway-telemetry-services-exist holds every plan to it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml
from conftest import Plan

from modelyard.platform import gateway
from modelyard.platform.network_policy import GATEWAY_LOG_METRICS_PORT, GATEWAY_LOG_PORT
from modelyard.programs import REPO_ROOT

CASES = Path(__file__).parent / "conformance" / "envoy-gateway-v1.9.0" / "gatewayapi"
ENVOY_PROXY = "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _case(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        yaml.safe_load((CASES / f"{name}.in.yaml").read_text()),
        yaml.safe_load((CASES / f"{name}.out.yaml").read_text()),
    )


def test_envoy_gateway_makes_the_json_fields_the_records_attributes() -> None:
    given, made = _case("envoyproxy-accesslog-otel-text-attrs")
    [setting] = given["envoyProxyForGatewayClass"]["spec"]["telemetry"]["accessLog"]["settings"]
    [ir] = next(iter(made["xdsIR"].values()))["accessLog"]["openTelemetry"]
    assert {a["key"]: a["value"] for a in ir["attributes"]} == setting["format"]["json"]


def test_envoy_gateway_refuses_the_gateway_when_a_sinks_service_is_missing() -> None:
    given, made = _case("envoyproxy-accesslog-backend-invalid")
    [sink] = [
        s
        for setting in given["envoyProxyForGatewayClass"]["spec"]["telemetry"]["accessLog"]["settings"]
        for s in setting["sinks"]
        if s["type"] == "OpenTelemetry"
    ]
    assert sink["openTelemetry"]["backendRefs"][0]["name"] == "service-not-found"
    [accepted] = [c for c in made["gateways"][0]["status"]["conditions"] if c["type"] == "Accepted"]
    assert accepted["status"] == "False"
    assert accepted["message"].startswith("Invalid access log backendRefs in the referenced EnvoyProxy")


def test_the_counter_reads_the_attributes_the_platform_asks_for() -> None:
    """The serving image's counter (another environment: its source is read, not imported) and the EnvoyProxy agree
    on the attribute names."""
    source = REPO_ROOT / "workloads" / "serving" / "modelyard_server" / "gateway_log.py"
    [value] = [
        node.value
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ATTRIBUTES" for t in node.targets)
    ]
    assert tuple(ast.literal_eval(value)) == tuple(gateway.ACCESS_LOG_ATTRIBUTES)


def test_every_environment_logs_to_stdout_and_to_the_counters_service(plans: dict[str, Plan]) -> None:
    for env, plan in plans.items():
        proxy = plan.one(ENVOY_PROXY)["inputs"]
        stdout, counted = proxy["spec"]["telemetry"]["accessLog"]["settings"]
        assert stdout == {"sinks": [{"type": "File", "file": {"path": "/dev/stdout"}}]}
        assert counted["format"] == {"type": "JSON", "json": dict(gateway.ACCESS_LOG_ATTRIBUTES)}
        [ref] = counted["sinks"][0]["openTelemetry"]["backendRefs"]
        service = plan.named("kubernetes:core/v1:Service", "gateway-log-service")
        assert (ref["name"], ref["namespace"]) == (
            service["inputs"]["metadata"]["name"],
            service["inputs"]["metadata"]["namespace"],
        )
        assert ref["port"] in [p["port"] for p in service["inputs"]["spec"]["ports"]]
        # Made before the EnvoyProxy names it.
        assert service["urn"] in plan.one(ENVOY_PROXY).get("dependencies", []), env
        policies = {p["inputs"]["metadata"]["name"]: p["inputs"] for p in plan.of_type(POLICY)}
        ports = [r["ports"] for r in policies["allow-access-log-egress"]["spec"]["egress"]]
        assert ports == [[{"protocol": "TCP", "port": GATEWAY_LOG_PORT}]]
        ingress = [
            p
            for p in plan.of_type(POLICY)
            if p["inputs"]["metadata"]["name"] == "allow-access-log-ingress"
            and p["inputs"]["metadata"]["namespace"] == ref["namespace"]
        ]
        assert ingress, env
        [rule] = ingress[0]["inputs"]["spec"]["ingress"]
        assert rule["from"][0]["podSelector"]["matchLabels"] == dict(gateway.proxy_labels())


def test_the_counter_runs_behind_the_platforms_service_and_is_scraped(all_plans: dict[str, Plan]) -> None:
    from modelyard.policies.governance.pod_security import violations

    for env, plan in all_plans.items():
        service = plan.named("kubernetes:core/v1:Service", "gateway-log-service")["inputs"]
        deployment = plan.named("kubernetes:apps/v1:Deployment", "gateway-log-deployment")["inputs"]
        pod = deployment["spec"]["template"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert deployment["metadata"]["namespace"] == service["metadata"]["namespace"]
        [container] = pod["spec"]["containers"]
        assert container["command"] == ["python", "-m", "modelyard_server.gateway_log"]
        assert container["args"] == ["--port", str(GATEWAY_LOG_PORT), "--metrics_port", str(GATEWAY_LOG_METRICS_PORT)]
        assert violations(pod["spec"], "restricted") == [], env
        assert pod["spec"]["automountServiceAccountToken"] is False
        monitor = plan.named("kubernetes:monitoring.coreos.com/v1:PodMonitor", "gateway-log-podmonitor")["inputs"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
        scrapes = plan.named(POLICY, "network-policies-models-allow-prometheus-scrapes-ingress")
        assert {"protocol": "TCP", "port": GATEWAY_LOG_METRICS_PORT} in scrapes["inputs"]["spec"]["ingress"][0]["ports"]
