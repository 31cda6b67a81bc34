"""Dashboards as code: every panel's PromQL parses (promtool), and each ships as a sidecar ConfigMap."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import Plan
from support import promtool

from modelyard.platform import dashboards, signals
from modelyard.platform.rules import Record, RuleGroup, promtool_rule_file

BOARDS = dashboards.platform_dashboards(730)


def test_every_panel_expression_parses_with_promtool(tmp_path: Path) -> None:
    records = [
        Record(f"dashboard:check_{i}", dashboards.checkable(expr))
        for i, expr in enumerate(e for board in BOARDS for e in board.expressions())
    ]
    assert len(records) >= 25
    (tmp_path / "panels.yaml").write_text(
        promtool_rule_file([RuleGroup("panels", tuple(records))], "https://x/runbooks")
    )
    result = promtool("check", "rules", "panels.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(records)} rules found" in result.stdout


def test_no_grafana_variable_is_left_unsubstituted() -> None:
    for board in BOARDS:
        for expr in board.expressions():
            assert "$" not in re.sub(r'"\$1"', "", dashboards.checkable(expr)), expr


def test_the_dashboards_cover_serving_llms_the_fleet_and_cost() -> None:
    serving, quality, llm, fleet, gateway, cost = BOARDS
    text = {b.uid: " ".join(b.expressions()) for b in BOARDS}
    assert signals.REQUESTS_TOTAL in text[serving.uid] and "histogram_quantile(0.99" in text[serving.uid]
    assert f'code=~"{signals.ERROR_CODES}"' in text[serving.uid] and "model_version" in text[serving.uid]
    for metric in (signals.GPU_UTIL, signals.GPU_FB_USED, signals.GPU_POWER, "pool:modelyard_gpus_allocated:sum"):
        assert metric in text[fleet.uid], metric
    for series in ("pool:modelyard_gpu_cost_usd_per_hour:sum", "namespace_model:", "modelyard:budget_monthly_usd"):
        assert series in text[cost.uid], series
    for series in (signals.VLLM_TTFT, signals.VLLM_ITL, signals.VLLM_WAITING, signals.VLLM_KV_CACHE, "usd_per_million"):
        assert series in text[llm.uid], series
    for series in (signals.DRIFT_P_VALUE, signals.DRIFT_WINDOW, signals.TAP_SAMPLES_TOTAL, signals.INPUT_TOKENS):
        assert series in text[quality.uid], series
    for series in (signals.GATEWAY_UPSTREAM_RQ_XX, signals.GATEWAY_BREAKER_OPEN, signals.GATEWAY_EJECTED):
        assert series in text[gateway.uid], series
    assert len({b.uid for b in BOARDS}) == 6


def test_every_dashboard_is_a_runtimes_or_the_platforms() -> None:
    from modelyard.workloads.runtimes import RUNTIMES

    own = [b.uid for r in RUNTIMES.values() for b in r.dashboards()]
    assert own == ["modelyard-serving", "modelyard-quality", "modelyard-llm"]
    assert [b.uid for b in BOARDS] == [*own, "modelyard-gpu-fleet", "modelyard-gateway", "modelyard-cost"]


#: One scraped pod of an LLM as vLLM 0.34.0 exports it (model_name, engine) with the labels the model
#: PodMonitor adds (platform/monitoring.py), and the records the LLM panels read beside them.
LLM_POD = (
    'namespace="models", pod="chat-1", inferenceservice="chat", model="chat", model_version="1", '
    'job="modelyard-models", model_name="chat", engine="0"'
)


def _llm_series() -> list[dict[str, str]]:
    from modelyard.policies.governance import conventions as c

    series = []
    for histogram, buckets in (
        (signals.VLLM_TTFT, signals.VLLM_TTFT_BUCKETS),
        (signals.VLLM_ITL, signals.VLLM_ITL_BUCKETS),
    ):
        for i, le in enumerate((*buckets, "+Inf")):
            series.append({"series": f'{histogram}_bucket{{{LLM_POD}, le="{le}"}}', "values": f"0+{i + 1}x20"})
        series.append({"series": f"{histogram}_count{{{LLM_POD}}}", "values": f"0+{len(buckets) + 1}x20"})
    for counter in (signals.VLLM_GENERATION_TOKENS, signals.VLLM_PROMPT_TOKENS, signals.VLLM_ADMISSION_REJECTIONS):
        series.append({"series": f"{counter}{{{LLM_POD}}}", "values": "0+100x20"})
    series.append(
        {"series": f'{signals.VLLM_REQUEST_SUCCESS}{{{LLM_POD}, finished_reason="stop"}}', "values": "0+5x20"}
    )
    for gauge in (signals.VLLM_WAITING, signals.VLLM_RUNNING, signals.VLLM_KV_CACHE):
        series.append({"series": f"{gauge}{{{LLM_POD}}}", "values": "1x20"})
    model = 'namespace="models", model="chat"'
    series += [
        {"series": f'{c.MODEL_TOKEN_COST}{{{model}, inferenceservice="chat", tokens="generation"}}', "values": "1x20"},
        {"series": f"{c.sli_ratio('errors', '1h')}{{{model}}}", "values": "0.001x20"},
        {"series": f"{signals.SLO_AVAILABILITY}{{{model}}}", "values": "0.995x20"},
        {"series": f'{c.sli_ratio("slow", "1h")}{{{model}, indicator="ttft"}}', "values": "0.001x20"},
        {"series": f'{signals.SLO_LATENCY}{{{model}, indicator="ttft"}}', "values": "0.99x20"},
        # What platform/rules.py records of its answers (llm_drift_group).
        {"series": f'{signals.LLM_CUT_OFF_Z}{{{model}, inferenceservice="chat"}}', "values": "0.5x20"},
        {"series": f'{signals.LLM_ANSWER_TOKENS}{{{model}, inferenceservice="chat"}}', "values": "120x20"},
        {"series": f"{signals.LLM_ANSWER_TOKENS_BASELINE}{{{model}}}", "values": "118x20"},
    ]
    return series


def panels_show_data(tmp_path: Path, uid: str, picked: dict[str, str], series: list[dict[str, str]]) -> bool:
    """Whether every target of dashboard `uid`, with its variables `picked`, returns a series over `series`
    (promtool evaluates `absent()` of each)."""
    board = next(b for b in BOARDS if b.uid == uid)

    def chosen(expr: str) -> str:
        for var, value in picked.items():
            expr = expr.replace(var, value)
        return dashboards.checkable(expr)

    tests = [{"expr": f"absent({chosen(e)})", "eval_time": "15m", "exp_samples": []} for e in board.expressions()]
    (tmp_path / "none.yaml").write_text("groups: []\n")
    doc = {
        "rule_files": ["none.yaml"],
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    }
    (tmp_path / f"{uid}.test.yaml").write_text(json.dumps(doc))
    result = promtool("test", "rules", f"{uid}.test.yaml", cwd=tmp_path)
    return result.returncode == 0


def test_every_llm_panel_shows_data_for_an_llm_pod_as_vllm_exports_it(tmp_path: Path) -> None:
    """Each target of the LLM dashboard returns a series for one vLLM pod scraped through the model PodMonitor:
    its selectors match the labels vLLM and the PodMonitor give (promtool evaluates `absent()` of each)."""
    picked = {"$namespace": "models", "$model": "chat"}
    assert panels_show_data(tmp_path, "modelyard-llm", picked, _llm_series())
    # And the check can fail: without the PodMonitor's `model` label the panels are empty.
    unlabelled = [
        {**s, "series": s["series"].replace('model="chat", model_version', "model_version")} for s in _llm_series()
    ]
    assert not panels_show_data(tmp_path, "modelyard-llm", picked, unlabelled)


#: One model pod with the labels the model PodMonitor adds, and the drift worker's target (its own `model` and
#: `model_version`, the PodMonitor's job), as workloads/drift.py scrapes it.
MODEL_POD = (
    'namespace="models", pod="embed-1", inferenceservice="embed", model="embed", model_version="2", '
    'job="modelyard-models", model_name="embed"'
)
DRIFT_POD = 'namespace="models", pod="modelyard-drift-1", job="modelyard-drift", model="embed", model_version="2"'


def _quality_series(drift_pod: str = DRIFT_POD) -> list[dict[str, str]]:
    series = []
    for histogram, buckets in (
        ("modelyard_input_chars", ("16.0", "64.0")),
        ("modelyard_input_tokens", ("8.0", "32.0")),
        ("modelyard_unknown_token_share", ("0.0", "0.1")),
    ):
        for i, le in enumerate((*buckets, "+Inf")):
            series.append({"series": f'{histogram}_bucket{{{MODEL_POD}, le="{le}"}}', "values": f"0+{i + 1}x20"})
        series.append({"series": f"{histogram}_count{{{MODEL_POD}}}", "values": "0+3x20"})
        series.append({"series": f"{histogram}_sum{{{MODEL_POD}}}", "values": "0+30x20"})
    series.append({"series": f"{signals.TRUNCATED_TOTAL}{{{MODEL_POD}}}", "values": "0+1x20"})
    for outcome in ("sampled", "sent"):
        series.append(
            {"series": f'{signals.TAP_SAMPLES_TOTAL}{{{MODEL_POD}, outcome="{outcome}"}}', "values": "0+2x20"}
        )
    for sig in ("embedding", "chars", "tokens"):
        series.append({"series": f'{signals.DRIFT_P_VALUE}{{{drift_pod}, signal="{sig}"}}', "values": "0.3x20"})
    for sig in ("chars", "tokens"):
        series.append({"series": f'{signals.DRIFT_PSI}{{{drift_pod}, signal="{sig}"}}', "values": "0.02x20"})
    for gauge, value in (
        (signals.DRIFT_CENTROID, "0.01"),
        (signals.DRIFT_WINDOW, "200"),
        (signals.DRIFT_REFERENCE, "1000"),
    ):
        series.append({"series": f"{gauge}{{{drift_pod}}}", "values": f"{value}x20"})
    return series


def test_every_quality_panel_shows_data_for_a_model_pod_and_the_drift_worker(tmp_path: Path) -> None:
    """Each target of the quality dashboard returns a series for one model pod (its input histograms and tap)
    and the drift worker's tests of it, with the labels their PodMonitors give; without the worker's
    `model_version` the drift panels are empty."""
    picked = {"$namespace": "models", "$model": "embed"}
    assert panels_show_data(tmp_path, "modelyard-quality", picked, _quality_series())
    unlabelled = _quality_series(DRIFT_POD.replace(', model_version="2"', ""))
    assert not panels_show_data(tmp_path, "modelyard-quality", picked, unlabelled)


#: One proxy of the platform's Gateway as its PodMonitor scrapes it, and a model route's cluster as Envoy Gateway
#: names it (httproute/<namespace>/<name>/rule/<index>).
PROXY = 'namespace="envoy-gateway-system", pod="envoy-models-1", job="modelyard-gateway"'
ROUTE_CLUSTER = 'envoy_cluster_name="httproute/models/embed/rule/0"'
#: One replica of the gateway log counter as its PodMonitor scrapes it.
COUNTER = 'namespace="models", pod="modelyard-gateway-log-a", job="modelyard-gateway-log"'


def _gateway_series(cluster: str = ROUTE_CLUSTER) -> list[dict[str, str]]:
    series = []
    for cls in ("2", "5"):
        labels = f'{PROXY}, {cluster}, envoy_response_code_class="{cls}"'
        series.append({"series": f"{signals.GATEWAY_UPSTREAM_RQ_XX}{{{labels}}}", "values": "0+5x20"})
    # The gateway log counter's counts of the same model: answered by it, by its fallback, refused by the gateway.
    model = cluster.split("/")[2] if cluster.count("/") >= 3 else "unrouted"
    for code, team, by in (("200", "search", "model"), ("200", "search", "fallback"), ("429", "search", "gateway")):
        labels = f'{COUNTER}, model="{model}", code="{code}", team="{team}", answered_by="{by}"'
        series.append({"series": f"{signals.GATEWAY_RESPONSES}{{{labels}}}", "values": "0+3x20"})
    for i, le in enumerate(("10", "100", "+Inf")):
        bucket = f'{signals.GATEWAY_UPSTREAM_RQ_TIME}_bucket{{{PROXY}, {cluster}, le="{le}"}}'
        series.append({"series": bucket, "values": f"0+{i + 1}x20"})
    for counter in (signals.GATEWAY_RETRIES, signals.GATEWAY_BREAKER_OVERFLOW):
        series.append({"series": f"{counter}{{{PROXY}, {cluster}}}", "values": "0+1x20"})
    for gauge in (signals.GATEWAY_BREAKER_OPEN, signals.GATEWAY_EJECTED, signals.GATEWAY_HEALTHY):
        series.append({"series": f"{gauge}{{{PROXY}, {cluster}}}", "values": "1x20"})
    cert = f'{signals.GATEWAY_CERT_EXPIRY}{{{PROXY}, envoy_tls_certificate="models-gateway-tls"}}'
    series.append({"series": cert, "values": "7776000x20"})
    return series


def test_every_gateway_panel_shows_data_for_a_proxy_as_envoy_exports_it(tmp_path: Path) -> None:
    """Each target of the gateway dashboard returns a series for one proxy's statistics with Envoy's names and tags,
    for a route's cluster as Envoy Gateway names it; a cluster of another name (not a model route) shows nothing."""
    picked = {"$route": "httproute/models/embed/rule/0", "$model": "embed"}
    assert panels_show_data(tmp_path, "modelyard-gateway", picked, _gateway_series())
    other = _gateway_series('envoy_cluster_name="models/embed"')
    assert not panels_show_data(tmp_path, "modelyard-gateway", picked, other)


def test_dashboards_ship_as_labelled_configmaps(plans: dict[str, Plan]) -> None:
    maps = plans["prod"].of_type("kubernetes:core/v1:ConfigMap")
    shipped = {m["inputs"]["metadata"]["name"]: m["inputs"] for m in maps}
    assert set(shipped) == {f"dashboard-{b.uid}" for b in BOARDS}
    for board in BOARDS:
        cm = shipped[f"dashboard-{board.uid}"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "monitoring"
        model = json.loads(cm["data"][board.file_name])
        assert model["uid"] == board.uid and model["panels"] and model["editable"] is False
        assert all(t["expr"] for p in model["panels"] for t in p["targets"])


def test_the_sidecar_is_configured_for_that_label(plans: dict[str, Plan]) -> None:
    release = plans["prod"].named("kubernetes:helm.sh/v3:Release", "monitoring-release")["inputs"]
    sidecar = release["values"]["grafana"]["sidecar"]["dashboards"]
    assert (sidecar["label"], sidecar["labelValue"]) == dashboards.DASHBOARD_LABEL
