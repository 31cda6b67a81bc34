"""`modelyard ops` against a real Prometheus server on loopback, loaded with series through
`promtool tsdb create-blocks-from openmetrics` and evaluating the platform's own rules, and against
moto for AWS Budgets. No mocked Prometheus client."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
import yaml
from moto import mock_aws
from support import TEST_PARAMS, free_port, prometheus_server

from modelyard.cli import main
from modelyard.platform import rules

STEP = 15  # seconds between samples
HOURS = 3


def openmetrics(now: int) -> str:
    """Three hours of series ending 30 s ago: two models (embed burning its budget, with a failing canary;
    calm healthy), a GPU pool of two g5.xlarge nodes with one GPU held, and a GPU reporting an XID."""
    start = now - HOURS * 3600
    times = list(range(start, now - 30, STEP))
    families: dict[str, list[str]] = {}

    def add(name: str, labels: str, value_at) -> None:  # type: ignore[no-untyped-def]
        families.setdefault(name, [])
        families[name] += [f"{name}{{{labels}}} {value_at(i)} {t}" for i, t in enumerate(times)]

    m = 'namespace="models",model="embed"'
    add("modelyard_requests_total", f'{m},inferenceservice="embed",code="200"', lambda i: 25 * i)
    add("modelyard_requests_total", f'{m},inferenceservice="embed",code="500"', lambda i: 1 * i)  # ~4% errors
    add("modelyard_requests_total", f'{m},inferenceservice="embed-canary",code="200"', lambda i: 5 * i)
    add("modelyard_requests_total", f'{m},inferenceservice="embed-canary",code="500"', lambda i: 2 * i)  # ~29%
    add(
        "modelyard_requests_total",
        'namespace="models",model="calm",inferenceservice="calm",code="200"',
        lambda i: 50 * i,
    )
    # Stable: 99.2% within 100 ms. Canary: 3 of 7 over 250 ms, so its p99 is the last bucket's bound.
    for isvc, fast, mid, total in (("embed", 25.8, 26, 26), ("embed-canary", 2, 4, 7)):
        add(
            "modelyard_request_duration_seconds_bucket",
            f'{m},inferenceservice="{isvc}",le="0.1"',
            lambda i, f=fast: f * i,
        )
        add(
            "modelyard_request_duration_seconds_bucket",
            f'{m},inferenceservice="{isvc}",le="0.25"',
            lambda i, v=mid: v * i,
        )
        add(
            "modelyard_request_duration_seconds_bucket",
            f'{m},inferenceservice="{isvc}",le="+Inf"',
            lambda i, t=total: t * i,
        )
    # One model per SLO alert window pair, objective 0.999 (a budget of 0.1% errors), 1,000 requests a step:
    # steady8 burns 8x everywhere (the 6h/30m page pair and not the 1h/5m one), burst burns 48x for the
    # last 20 minutes (the 1h/5m page pair only: 16x over 1h, 5.3x over the 3 hours there are), steady3
    # burns 3x (the 3d/6h ticket pair only).
    burst_from = (now - 20 * 60 - start) // STEP
    for model, errors_at in (
        ("steady8", lambda i: 8 * i),
        ("burst", lambda i: 48 * max(0, i - burst_from)),
        ("steady3", lambda i: 3 * i),
    ):
        labels = f'namespace="models",model="{model}",inferenceservice="{model}"'
        add("modelyard_requests_total", f'{labels},code="500"', errors_at)
        add("modelyard_requests_total", f'{labels},code="200"', lambda i, e=errors_at: 1000 * i - e(i))
    # Drift: embed version 2 answers unlike its reference (its input lengths are alike); calm's window is not
    # full yet; steady8 has no reference. embed's pods dropped 1 of every 10 texts their taps sampled.
    d = 'namespace="models",pod="modelyard-drift-1",job="modelyard-drift"'
    for model, window, reference, p_values in (
        ("embed", 200, 400, {"embedding": 0.002, "chars": 0.3, "tokens": 0.2}),
        ("calm", 120, 400, {}),
        ("steady8", 200, 0, {}),
    ):
        labels = f'{d},model="{model}",model_version="2"'
        add("modelyard_drift_window_samples", labels, lambda i, w=window: w)
        add("modelyard_drift_reference_samples", labels, lambda i, r=reference: r)
        for sig, p in p_values.items():
            add("modelyard_drift_p_value", f'{labels},signal="{sig}"', lambda i, v=p: v)
            if sig != "embedding":
                add("modelyard_drift_psi", f'{labels},signal="{sig}"', lambda i: 0.04)
        if p_values:
            add("modelyard_drift_centroid_distance", labels, lambda i: 0.081)
    # embed's latency objective: 99 % within 250 ms (the canary has 3 of 7 over it).
    add("modelyard:slo_latency_objective", f'{m},indicator="request"', lambda i: 0.99)
    add("modelyard:slo_latency_threshold", f'{m},indicator="request",le="0.25"', lambda i: 1)
    # Canaries judged on their counts: `good`'s has 6,000 requests in 30 minutes and no error (enough to pass a
    # 0.999 objective, which needs 1,497); `fresh`'s 120 and no error (not enough yet).
    for model, per_step in (("good", 50), ("fresh", 1)):
        for isvc in (model, f"{model}-canary"):
            add(
                "modelyard_requests_total",
                f'namespace="models",model="{model}",inferenceservice="{isvc}",code="200"',
                lambda i, k=per_step: k * i,
            )
    # twin: a canary of version 2 that passes on errors (6,000 requests, none failed) while its shadow, the same
    # version on copies of stable's requests, answers 40 of 200 texts beyond stable's noise. fresh: a shadow of
    # version 3 with no noise floor yet (the worker exports each comparison from both sides).
    for isvc, version in (("twin", "1"), ("twin-canary", "2")):
        add(
            "modelyard_requests_total",
            f'namespace="models",model="twin",inferenceservice="{isvc}",model_version="{version}",code="200"',
            lambda i: 50 * i,
        )
    shadows = (
        ("twin", "1", "2", "differs", {"pairs": 200, "exceeding": 40, "knn_overlap": 0.78, "p_value": 1e-12}),
        ("fresh", "1", "3", "hold", {"pairs": 30, "knn_overlap": 0.99}),
    )
    for model, stable, candidate, verdict, figures in shadows:
        for version, other in ((stable, candidate), (candidate, stable)):
            labels = f'{d},model="{model}",model_version="{version}",other_version="{other}"'
            for name, value in figures.items():
                add(f"modelyard_shadow_{name}", labels, lambda i, v=value: v)
            for q, cosine in (("0.01", 0.91), ("0.05", 0.92), ("0.5", 0.944)):
                add("modelyard_shadow_cosine", f'{labels},quantile="{q}"', lambda i, v=cosine: v)
            for each in ("same", "differs", "hold"):
                add("modelyard_shadow_verdict", f'{labels},verdict="{each}"', lambda i, v=int(each == verdict): v)
    twin = f'{d},model="twin",model_version="1"'
    add("modelyard_shadow_noise_pairs", twin, lambda i: 200)
    add("modelyard_shadow_noise_threshold", twin, lambda i: 1e-5)
    add("modelyard_shadow_noise_knn_overlap", twin, lambda i: 1.0)
    add("modelyard_tap_samples_total", f'{m},outcome="sampled"', lambda i: 10 * i)
    add("modelyard_tap_samples_total", f'{m},outcome="dropped"', lambda i: 1 * i)
    for model in ("embed", "calm", "steady8", "burst", "steady3"):
        add("modelyard:slo_availability_objective", f'namespace="models",model="{model}"', lambda i: 0.999)
    for node in ("n1", "n2"):
        labels = (
            f'node="{node}",label_modelyard_io_gpu_pool="a10g",'
            'label_node_kubernetes_io_instance_type="g5.xlarge",label_karpenter_sh_capacity_type="on-demand"'
        )
        add("kube_node_labels", labels, lambda i: 1)
        add("kube_node_status_capacity", f'node="{node}",resource="nvidia_com_gpu"', lambda i: 1)
        add("DCGM_FI_DEV_GPU_UTIL", f'hostname="{node}",gpu="0"', lambda i, n=node: 60 if n == "n1" else 0)
    add(
        "kube_pod_container_resource_requests",
        'namespace="models",pod="embed-1",container="c",node="n1",resource="nvidia_com_gpu"',
        lambda i: 1,
    )
    add(
        "kube_pod_labels",
        'namespace="models",pod="embed-1",label_serving_kserve_io_inferenceservice="embed"',
        lambda i: 1,
    )
    add("DCGM_FI_DEV_XID_ERRORS", 'hostname="n2",gpu="0"', lambda i: 79)
    # The gateway's proxy: embed's route answers 10/s (1/s of it 5xx), its breaker at its limit and one replica
    # ejected; calm's route 20/s, healthy.
    g = 'namespace="envoy-gateway-system",pod="envoy-models-1",job="modelyard-gateway"'
    for route, ok, failed, open_, out in (("embed", 9, 1, 1, 1), ("calm", 20, 0, 0, 0)):
        cluster = f'{g},envoy_cluster_name="httproute/models/{route}/rule/0"'
        add("envoy_cluster_upstream_rq_xx", f'{cluster},envoy_response_code_class="2"', lambda i, k=ok: k * STEP * i)
        add(
            "envoy_cluster_upstream_rq_xx", f'{cluster},envoy_response_code_class="5"', lambda i, k=failed: k * STEP * i
        )
        add("envoy_cluster_upstream_rq_retry", cluster, lambda i, k=failed: k * STEP * i)
        add("envoy_cluster_circuit_breakers_default_rq_open", cluster, lambda i, v=open_: v)
        add("envoy_cluster_outlier_detection_ejections_active", cluster, lambda i, v=out: v)
        add("envoy_cluster_membership_healthy", cluster, lambda i: 2)
    # An LLM on vLLM (platform/rules.py llm_drift_group): its stable version cuts off 2 % of its answers at
    # max_tokens, 100 tokens an answer; a canary in the last 50 minutes cuts off 20 %, 400 tokens an answer.
    llm = 'namespace="models",model="chat",engine="0",model_name="chat"'
    add("vllm:request_success_total", f'{llm},inferenceservice="chat",finished_reason="stop"', lambda i: 49 * i)
    add("vllm:request_success_total", f'{llm},inferenceservice="chat",finished_reason="length"', lambda i: 1 * i)
    add("vllm:request_generation_tokens_sum", f'{llm},inferenceservice="chat"', lambda i: 5000 * i)
    add("vllm:request_generation_tokens_count", f'{llm},inferenceservice="chat"', lambda i: 50 * i)
    late = len(times) - 200
    canary = f'{llm},inferenceservice="chat-canary"'
    for name, labels, per_step in (
        ("vllm:request_success_total", f'{canary},finished_reason="stop"', 8),
        ("vllm:request_success_total", f'{canary},finished_reason="length"', 2),
        ("vllm:request_generation_tokens_sum", canary, 4000),
        ("vllm:request_generation_tokens_count", canary, 10),
    ):
        families.setdefault(name, [])
        families[name] += [f"{name}{{{labels}}} {per_step * (i - late)} {t}" for i, t in enumerate(times) if i >= late]
    # The gateway log counter (two replicas): embed's callers got 3 401s and 1 429 a second from the gateway itself,
    # and its fallback answered 1 of its 10 a second; calm's were all answered by calm.
    c = 'namespace="models",job="modelyard-gateway-log"'
    for pod, model, code, by, per_s in (
        ("a", "embed", "200", "model", 9),
        ("b", "embed", "200", "fallback", 1),
        ("a", "embed", "401", "gateway", 3),
        ("b", "embed", "429", "gateway", 1),
        ("a", "calm", "200", "model", 20),
    ):
        labels = f'{c},pod="modelyard-gateway-log-{pod}",model="{model}",code="{code}",team="t",answered_by="{by}"'
        add("modelyard_gateway_responses_total", labels, lambda i, k=per_s: k * STEP * i)
    return "\n".join(line for lines in families.values() for line in lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("prom")
    (tmp / "series.om").write_text(openmetrics(int(time.time())))
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", "series.om", "data"], cwd=tmp, check=True
    )
    spec = rules.prometheus_rule_spec(rules.platform_rule_groups(TEST_PARAMS), "https://x/runbooks")
    for group in spec["groups"]:
        group.pop("interval", None)  # evaluate every second here, not every 30 s or minute
    (tmp / "rules.yaml").write_text(yaml.safe_dump(spec))
    (tmp / "prometheus.yml").write_text(
        yaml.safe_dump({"global": {"evaluation_interval": "1s"}, "rule_files": ["rules.yaml"]})
    )
    with prometheus_server(tmp) as (url, log):
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                ready = requests.get(
                    f"{url}/api/v1/query", params={"query": "pool:modelyard_gpus_provisioned:sum"}, timeout=2
                )
                if ready.status_code == 200 and ready.json()["data"]["result"]:
                    alerts = requests.get(f"{url}/api/v1/alerts", timeout=2).json()["data"]["alerts"]
                    names = {a["labels"]["alertname"]: a["state"] for a in alerts}
                    if names.get("GPUXidError") == "firing" and "ModelErrorBudgetBurnFast" in names:
                        break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("Prometheus did not evaluate the rules in 60 s:\n" + log.read_text()[-3000:])
        yield url


def ops(url: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(["ops", "--prometheus", url, "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def active_slo_alerts(url: str) -> dict[str, set[str]]:
    """What the platform's own alert rules, evaluated by this Prometheus, say per model (pending or firing)."""
    alerts = requests.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    out: dict[str, set[str]] = {}
    for alert in alerts:
        name = alert["labels"]["alertname"]
        if name.startswith("Model") and "BudgetBurn" in name:
            out.setdefault(alert["labels"]["model"], set()).add(name)
    return out


def test_slo_says_what_the_alerts_say_for_every_window_pair(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ops slo` evaluates the alerts' own windows and factors on the ratios the rules record: for each
    window pair, the verdict on-call reads is the one the pager gave."""
    code, result = ops(prometheus, "slo", capsys=capsys)
    rows = {r["model"]: r for r in result["rows"]}
    alerts = active_slo_alerts(prometheus)
    for name, row in rows.items():
        assert set(row["alerts"]) == alerts.get(name, set()), (name, row, alerts.get(name))
    # 8x over every window pages through the 6h/30m pair (it once said `ticket`).
    steady8 = rows["steady8"]
    assert steady8["status"] == "page" and steady8["burn_1h"] < 14.4 < steady8["burn_5m"] * 2
    assert steady8["burn_6h"] > 6 and steady8["burn_30m"] > 6
    # A 20-minute burst pages through the 1h/5m pair alone.
    burst = rows["burst"]
    assert burst["status"] == "page" and burst["burn_1h"] > 14.4 and burst["burn_5m"] > 14.4 and burst["burn_6h"] < 6
    # 3x everywhere opens a ticket through the 3d/6h pair.
    steady3 = rows["steady3"]
    assert steady3["status"] == "ticket" and steady3["alerts"] == ["ModelErrorBudgetBurnSlow"]
    assert rows["calm"]["status"] == "ok" and rows["calm"]["alerts"] == []
    assert code == 1


def test_slo_burn_rates_and_budget(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = ops(prometheus, "slo", capsys=capsys)
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["embed"]["status"] == "page" and rows["embed"]["burn_1h"] > 14.4
    assert rows["embed"]["budget_left"] == 0.0
    assert rows["calm"]["status"] == "ok" and rows["calm"]["burn_1h"] == 0.0 and rows["calm"]["budget_left"] == 1.0
    assert code == 1  # a problem found
    code, one = ops(prometheus, "slo", "--model", "calm", capsys=capsys)
    assert code == 0 and [r["model"] for r in one["rows"]] == ["calm"]


def test_gpu_idle_and_its_cost(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = ops(prometheus, "gpu", capsys=capsys)
    [pool] = result["rows"]
    assert (pool["gpu_pool"], pool["provisioned"], pool["allocated"], pool["idle"]) == ("a10g", 2.0, 1.0, 1.0)
    assert pool["idle_usd_per_day"] == round(1.006 * 24, 2)  # one idle g5.xlarge GPU
    assert pool["utilisation_pct"] == 30.0
    assert result["byModel"] == [{"namespace": "models", "model": "embed", "gpus": 1.0}]
    assert code == 1


def test_canary_verdict_with_evidence(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = ops(prometheus, "canary", "embed", capsys=capsys)
    assert result["verdict"] == "rollback" and code == 1
    metrics = {m["name"]: m for m in result["rows"]}
    errors = metrics["error-ratio"]
    assert errors["result"] == "Failed" and errors["p_value"] < 0.05
    assert errors["canary"] > 0.25 and errors["stable"] < 0.05 and errors["allowed"] == errors["stable"]
    slow = metrics["slower-than-250ms"]
    assert slow["result"] == "Failed" and slow["stable"] == 0 and slow["allowed"] == 0.01  # the SLO's 1 %


def test_a_canary_passes_only_with_the_requests_its_objective_needs(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No error in 6,000 requests passes a 0.999 objective (the 95 % bound 0.0005, within 0.002); no error in
    120 does not yet: 1,497 are needed before zero errors say anything at that objective."""
    code, result = ops(prometheus, "canary", "good", capsys=capsys)
    [errors] = result["rows"]
    assert result["verdict"] == "promote" and code == 0 and errors["result"] == "Successful"
    assert errors["needed"] == 1497 and errors["requests"] > 5000 and errors["canary_upper_95"] < 0.0006
    assert "no availability objective recorded for good: judged against 0.999" in result["notes"]
    code, result = ops(prometheus, "canary", "fresh", capsys=capsys)
    [errors] = result["rows"]
    assert result["verdict"] == "hold" and not result["enough_traffic"] and errors["result"] == "Inconclusive"
    assert f"not enough traffic yet: {errors['requests']} of the 1497 requests error-ratio needs" in result["title"]


def test_shadow_verdict_from_the_stable_side_and_beside_the_canary(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """ops shadow reads each comparison once, from the side of the version with a noise floor; a canary that passes
    on errors is held while the shadow of its version says its answers differ."""
    code, result = ops(prometheus, "shadow", "twin", capsys=capsys)
    [row] = result["rows"]
    assert code == 1 and result["title"] == "Shadow comparison of twin: differs"
    assert (row["stable"], row["candidate"], row["pairs"], row["beyond_noise"]) == ("1", "2", 200, 40)
    assert row["noise_pairs"] == 200 and row["noise_threshold"] == 1e-5 and row["knn_overlap"] == 0.78
    assert row["cosine_p50"] == 0.944 and row["verdict"] == "differs"
    code, result = ops(prometheus, "shadow", "fresh", capsys=capsys)
    [row] = result["rows"]
    assert code == 0 and result["verdict"] == "hold" and (row["stable"], row["candidate"]) == ("1", "3")
    assert "1 vs 3: hold, waiting for a noise floor (stable pairs)" in result["notes"]
    code, result = ops(prometheus, "canary", "twin", capsys=capsys)
    assert result["verdict"] == "hold" and result["shadow"] == "differs" and code == 0
    assert "shadow comparison of version 2: differs" in result["notes"]
    code, result = ops(prometheus, "canary", "good", capsys=capsys)
    assert result["verdict"] == "promote" and result["shadow"] is None
    assert "no shadow comparison of the canary's version: its answers are not judged" in result["notes"]


def test_drift_with_the_alerts_verdict(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = ops(prometheus, "drift", "embed", capsys=capsys)
    rows = {r["signal"]: r for r in result["rows"]}
    assert code == 1 and result["title"] == "Drift of embed: drift"
    assert rows["embedding"]["verdict"] == "drift" and rows["embedding"]["side"] == "output"
    assert rows["embedding"]["centroid_distance"] == 0.081 and rows["embedding"]["level"] == 0.01
    assert rows["tokens"]["verdict"] == "no drift" and rows["tokens"]["level"] == 0.005
    assert rows["chars"]["psi"] == 0.04
    assert "tap: 10.0% of sampled texts dropped in 15 minutes" in result["notes"]
    code, result = ops(prometheus, "drift", "calm", capsys=capsys)
    assert code == 0 and {r["verdict"] for r in result["rows"]} == {"too few samples (120 of 200)"}
    code, result = ops(prometheus, "drift", "steady8", capsys=capsys)
    assert code == 0 and {r["verdict"] for r in result["rows"]} == {"no reference"}


def test_drift_of_an_llm_reads_its_answers(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    """vLLM has no tap: an LLM's drift is its engine's own series as the platform records them, each version's
    last hour against the model's hours before."""
    code, result = ops(prometheus, "drift", "chat", capsys=capsys)
    rows = {r["inferenceservice"]: r for r in result["rows"]}
    assert code == 1 and result["title"] == "Answers of chat: drift"
    canary, stable = rows["chat-canary"], rows["chat"]
    assert canary["verdict"] == "drift" and canary["z"] > 4
    assert canary["cut_off"] == pytest.approx(0.2, abs=0.01) and canary["tokens_per_answer"] == pytest.approx(400, 1)
    assert stable["cut_off"] == pytest.approx(0.02, abs=0.005) and stable["tokens_per_answer"] == pytest.approx(100, 1)
    assert stable["baseline_cut_off"] == pytest.approx(0.02, abs=0.005) and stable["verdict"] == "no drift"
    assert stable["baseline_tokens"] == pytest.approx(100, 1)


def test_gateway_routes_with_their_breakers_the_gateways_own_answers_and_the_fallbacks_share(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = ops(prometheus, "gateway", capsys=capsys)
    rows = {r["route"]: r for r in result["rows"]}
    assert code == 1 and set(rows) == {"models/embed", "models/calm"}
    # Rates over a window that the series stop 30 s short of: compared with each other, not with their nominal values.
    embed, calm = rows["models/embed"], rows["models/calm"]
    assert embed["error_share"] == 0.1 and calm["requests_per_s"] == pytest.approx(2 * embed["requests_per_s"], 0.02)
    assert embed["breaker"] == "at its limit" and embed["ejected"] == 1 and embed["healthy"] == 2
    assert calm["breaker"] == "closed" and calm["error_share"] == 0.0 and calm["ejected"] == 0
    assert result["notes"] == []
    assert embed["fallback_share"] == pytest.approx(0.1, abs=0.005) and calm["fallback_share"] == 0.0
    own = dict(part.split(" ") for part in embed["gateway_answers"].split(", "))
    assert set(own) == {"401", "429"}
    assert float(own["401"].removesuffix("/s")) == pytest.approx(3 * float(own["429"].removesuffix("/s")), 0.02)
    assert calm["gateway_answers"] == "none"
    assert main(["ops", "--prometheus", prometheus, "gateway", "--window", "10m"]) == 1
    assert "models/embed" in capsys.readouterr().out  # the table


def test_alerts_with_runbooks(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = ops(prometheus, "alerts", capsys=capsys)
    by_name = {r["alert"]: r for r in result["rows"]}
    assert by_name["GPUXidError"]["state"] == "firing"
    assert by_name["GPUXidError"]["runbook"] == "https://x/runbooks/GPUXidError.md"
    assert by_name["ModelErrorBudgetBurnFast"]["state"] in ("pending", "firing")
    assert code == 1
    assert main(["ops", "--prometheus", prometheus, "alerts"]) == 1
    assert "GPUXidError" in capsys.readouterr().out  # the table


def test_cost_against_the_budget(
    prometheus: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("budgets", region_name="us-east-1").create_budget(
            AccountId="123456789012",
            Budget={
                "BudgetName": "modelyard-dev",
                "BudgetLimit": {"Amount": "1500", "Unit": "USD"},
                "TimeUnit": "MONTHLY",
                "BudgetType": "COST",
                "CalculatedSpend": {
                    "ActualSpend": {"Amount": "700", "Unit": "USD"},
                    "ForecastedSpend": {"Amount": "1800", "Unit": "USD"},
                },
            },
        )
        code, result = ops(prometheus, "cost", "--env", "dev", capsys=capsys)
        [row] = result["rows"]
        assert (row["limit_usd"], row["actual_usd"], row["forecast_usd"], row["forecast_pct"]) == (
            1500.0,
            700.0,
            1800.0,
            120.0,
        )
        assert row["gpu_usd_per_hour_live"] == 2.01  # two on-demand g5.xlarge
        assert code == 1  # the forecast passes the budget
        assert main(["ops", "--prometheus", prometheus, "cost", "--env", "prod"]) == 2
        assert "no AWS Budget named modelyard-prod" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["slo", "--model", "nope"],
            "unknown model 'nope': models with an SLO here: burst, calm, embed, steady3, steady8",
        ),
        (["canary", "calm"], "model 'calm' has no canary receiving traffic"),
        (["canary", "ghost"], "unknown model 'ghost'"),
        (["drift", "ghost"], "no drift samples of model 'ghost'"),
        (["shadow", "calm"], "no shadow comparison of model 'calm': no shadow runs"),
    ],
)
def test_unknown_models_exit_2(
    prometheus: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["ops", "--prometheus", prometheus, *args]) == 2
    assert message in capsys.readouterr().err


def test_unreachable_prometheus_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops", "--prometheus", f"http://127.0.0.1:{free_port()}", "gpu"]) == 2
    assert "is unreachable" in capsys.readouterr().err


def test_canary_decide_writes_the_one_line_edits_its_verdicts_ask_for(
    prometheus: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`modelyard canary decide --apply` in a checkout whose dev catalog runs three canaries: embed's (failing) is
    rolled back, good's promoted, fresh's held; each a one-line edit of the catalog."""
    import shutil

    from modelyard.programs import REPO_ROOT

    shutil.copy(REPO_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "workloads" / "catalog").mkdir(parents=True)
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        shutil.copy(REPO_ROOT / "workloads" / name, tmp_path / "workloads" / name)
    entry = (
        "  - name: {name}\n    team: search\n    runtime: {{kind: modelyard, image_tag: 1.0.0-cpu}}\n"
        '    version: "1"\n    resources: {{cpu: "2", memory: 2Gi}}\n    replicas: {{min: 1, max: 2}}\n'
        '    slo: {{availability: 0.999, p99_latency_ms: 250}}\n    canary: {{version: "2", traffic_percent: 20}}\n'
    )
    catalog = tmp_path / "workloads" / "catalog" / "dev.yaml"
    before = "models:\n" + "".join(entry.format(name=n) for n in ("embed", "good", "fresh"))
    catalog.write_text(before)
    argv = ["--cwd", str(tmp_path), "canary", "decide", "--env", "dev", "--prometheus", prometheus, "--json"]
    assert main([*argv, "--apply"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_model = {d["model"]: d for d in out["decisions"]}
    assert by_model["embed"] == {
        **by_model["embed"],
        "verdict": "rollback",
        "change": "canary.traffic_percent: 20 -> 0",
        "applied": True,
    }
    assert by_model["good"]["verdict"] == "promote" and by_model["good"]["change"] == "version: 1 -> 2"
    assert by_model["fresh"]["verdict"] == "hold" and by_model["fresh"]["applied"] is False
    changed = [(a, b) for a, b in zip(before.splitlines(), catalog.read_text().splitlines(), strict=True) if a != b]
    assert changed == [
        ('    canary: {version: "2", traffic_percent: 20}', '    canary: {version: "2", traffic_percent: 0}'),
        ('    version: "1"', '    version: "2"'),
    ]
    assert main([*argv[:-1], "--model", "calm"]) == 2
    assert "--model 'calm' has no running canary in the dev catalog (models with one: fresh)" in capsys.readouterr().err
