"""Grafana dashboards as code: model serving, GPU fleet and cost.

Each dashboard is generated here as Grafana JSON and shipped as a ConfigMap labelled for the Grafana
sidecar, which loads it into a "modelyard" folder. Panels read the series named in `signals.py` and
the recording rules of `rules.py`; tests/test_dashboards.py parses every panel's PromQL with promtool.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.platform import signals as s
from modelyard.policies.governance import conventions as c

#: The pool variable's filter on a recorded per-pool series.
POOL_FILTER = '{gpu_pool=~"$gpu_pool"}'
#: Label the Grafana sidecar watches for (kube-prometheus-stack's default).
DASHBOARD_LABEL = ("grafana_dashboard", "1")
#: Grafana folder the sidecar files these dashboards under.
FOLDER = "modelyard"

_MODEL = 'namespace=~"$namespace", model=~"$model"'
_RATE = "$__rate_interval"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[tuple[str, str], ...]  # (name, label_values query)
    panels: tuple[Panel, ...]

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"

    def expressions(self) -> list[str]:
        return [t.expr for p in self.panels for t in p.targets]

    def to_json(self) -> dict[str, Any]:
        panels = []
        for i, panel in enumerate(self.panels):
            width = 24 if panel.kind == "timeseries" and len(self.panels) % 2 and i == len(self.panels) - 1 else 12
            panels.append(
                {
                    "id": i + 1,
                    "type": panel.kind,
                    "title": panel.title,
                    "description": panel.description,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "gridPos": {"h": 8, "w": width, "x": (i % 2) * 12, "y": (i // 2) * 8},
                    "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                    "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]}},
                    "targets": [
                        {"refId": chr(ord("A") + j), "expr": t.expr, "legendFormat": t.legend}
                        for j, t in enumerate(panel.targets)
                    ],
                }
            )
        variables: list[dict[str, Any]] = [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"}
        ]
        for name, query in self.variables:
            variables.append(
                {
                    "name": name,
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {"query": query, "refId": name},
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "refresh": 2,
                }
            )
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["modelyard"],
            "editable": False,
            "schemaVersion": 39,
            "time": {"from": "now-6h", "to": "now"},
            "refresh": "1m",
            "templating": {"list": variables},
            "panels": panels,
        }

    def render(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)


def _quantile(q: str, histogram: str = s.REQUEST_DURATION) -> Target:
    return Target(
        f"histogram_quantile({q}, sum by (model, model_version, le) (rate({histogram}_bucket{{{_MODEL}}}[{_RATE}])))",
        f"p{q[2:].ljust(2, '0')} {{{{model}}}} {{{{model_version}}}}",
    )


def _burn() -> Panel:
    """Each objective's 1-hour burn rate: availability, and latency per indicator."""
    return Panel(
        "Error budget burn rate (1h)",
        (
            Target(
                f"{c.sli_ratio('errors', '1h')}{{{_MODEL}}}\n/ on (namespace, model) "
                f"(1 - {s.SLO_AVAILABILITY}{{{_MODEL}}})",
                "availability {{model}}",
            ),
            Target(
                f"{c.sli_ratio('slow', '1h')}{{{_MODEL}}}\n/ on (namespace, model, indicator) "
                f"(1 - {s.SLO_LATENCY}{{{_MODEL}}})",
                "latency {{model}} {{indicator}}",
            ),
        ),
        description="1 spends the budget exactly over 30 days; 14.4 for an hour pages.",
    )


def serving() -> Dashboard:
    requests = f"rate({s.REQUESTS_TOTAL}{{{_MODEL}}}[{_RATE}])"
    by = "sum by (model, model_version)"
    return Dashboard(
        uid="modelyard-serving",
        title="Model serving",
        description="Requests, latency and errors per model and version (canary vs stable side by side).",
        variables=(
            ("namespace", f"label_values({s.REQUESTS_TOTAL}, namespace)"),
            ("model", f'label_values({s.REQUESTS_TOTAL}{{namespace=~"$namespace"}}, model)'),
        ),
        panels=(
            Panel("Requests per second", (Target(f"{by} ({requests})", "{{model}} {{model_version}}"),), "reqps"),
            Panel("Latency p50 / p95 / p99", (_quantile("0.5"), _quantile("0.95"), _quantile("0.99")), "s"),
            Panel(
                "Error ratio (5xx, 429, 404)",
                (
                    Target(
                        f'{by} (rate({s.REQUESTS_TOTAL}{{{_MODEL}, code=~"{s.ERROR_CODES}"}}[{_RATE}]))'
                        f"\n/ {by} ({requests})",
                        "{{model}} {{model_version}}",
                    ),
                ),
                "percentunit",
            ),
            Panel(
                "Requests by calling team",
                (
                    Target(
                        f"sum by (model, caller, code) (rate({s.CALLER_REQUESTS_TOTAL}{{{_MODEL}}}[{_RATE}]))",
                        "{{model}} {{caller}} {{code}}",
                    ),
                ),
                "reqps",
                description="The team of the client id the gateway forwarded after checking its key; none: a call "
                "that came past no gateway. The gateway's own refusals (401, 403, 429) never reach the model: the "
                "Gateway dashboard shows them.",
            ),
            Panel(
                "Client errors (4xx) per second",
                (
                    Target(
                        f'sum by (model, code) (rate({s.REQUESTS_TOTAL}{{{_MODEL}, code=~"4.."}}[{_RATE}]))',
                        "{{model}} {{code}}",
                    ),
                ),
                "reqps",
            ),
            _burn(),
            Panel(
                "Admission bound and texts in flight",
                (
                    Target(f"max by (model, pod) ({s.ADMISSION_BOUND}{{{_MODEL}}})", "bound {{pod}}"),
                    Target(f"sum by (model, pod) ({s.IN_FLIGHT}{{{_MODEL}}})", "in flight {{pod}}"),
                ),
                description="With --latency_objective_ms (the entry's p99): the texts the model's measured pace "
                "answers within the objective; requests beyond it are refused (503, reason objective), the low "
                "class from its share of it (429, reason shed).",
            ),
            Panel(
                "Embedding cache hit ratio",
                (
                    Target(
                        f'sum by (model) (rate({s.CACHE_TEXTS_TOTAL}{{{_MODEL}, outcome="hit"}}[{_RATE}]))'
                        f"\n/ sum by (model) (rate({s.CACHE_TEXTS_TOTAL}{{{_MODEL}}}[{_RATE}]))",
                        "{{model}}",
                    ),
                ),
                "percentunit",
            ),
            Panel(
                "Degraded answers per second",
                (
                    Target(
                        f"sum by (model, reason) (rate({s.DEGRADED_TOTAL}{{{_MODEL}}}[{_RATE}]))",
                        "{{model}} {{reason}}",
                    ),
                ),
                "reqps",
                description="truncated: a text reached the model's max_seq_length (x-modelyard-degraded).",
            ),
            Panel(
                "Rejected requests per second (overload, shed, draining)",
                (
                    Target(
                        f"sum by (model, reason) (rate({s.REJECTED_TOTAL}{{{_MODEL}}}[{_RATE}]))",
                        "{{model}} {{reason}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Connections closed by the server's guard per second",
                (
                    Target(
                        f"sum by (model, reason) (rate({s.CLOSED_CONNECTIONS_TOTAL}{{{_MODEL}}}[{_RATE}]))",
                        "{{model}} {{reason}}",
                    ),
                ),
                description="read_timeout: a request not in by its read deadline (slow or stuck clients); "
                "evicted: the quietest connection closed for a new one beyond the per-front cap; "
                "refused: beyond the cap with every connection busy (503).",
            ),
            Panel("Queue depth", (Target(f"sum by (model, pod) ({s.QUEUE_DEPTH}{{{_MODEL}}})", "{{pod}}"),)),
            # What KEDA scales GPU predictors on (workloads/models.py): compare with the model's scale_target.
            Panel(
                "In-flight texts per replica (GPU autoscaling signal)",
                (
                    Target(
                        f"sum by (inferenceservice) ({s.IN_FLIGHT}{{{_MODEL}}})"
                        f" / count by (inferenceservice) ({s.IN_FLIGHT}{{{_MODEL}}})",
                        "{{inferenceservice}}",
                    ),
                ),
            ),
            Panel(
                "Batch size p50 / p95",
                tuple(
                    Target(
                        f"histogram_quantile({q}, sum by (model, le) "
                        f"(rate({s.BATCH_SIZE}_bucket{{{_MODEL}}}[{_RATE}])))",
                        f"p{q[2:].ljust(2, '0')} {{{{model}}}}",
                    )
                    for q in ("0.5", "0.95")
                ),
            ),
        ),
    )


def quality() -> Dashboard:
    """What a model receives and answers against its version's reference: the drift worker's tests (the drift
    alerts' p-values, with their levels), how far (centroid distance, PSI), the windows they ran on, the taps
    feeding them, and the input histograms every model pod keeps."""
    by = "model, model_version"
    drift = f'{_MODEL}, model_version=~".+"'
    inputs = "|".join(s.DRIFT_INPUT_SIGNALS)
    input_alpha = s.DRIFT_ALPHA / len(s.DRIFT_INPUT_SIGNALS)

    def q(histogram: str, quantile: str) -> Target:
        return Target(
            f"histogram_quantile({quantile}, sum by ({by}, le) (rate({histogram}_bucket{{{_MODEL}}}[{_RATE}])))",
            f"p{quantile[2:].ljust(2, '0')} {{{{model}}}} {{{{model_version}}}}",
        )

    return Dashboard(
        uid="modelyard-quality",
        title="Model quality",
        description="Drift of each model version's input and output from its reference, and the taps that feed it.",
        variables=(
            ("namespace", f"label_values({s.DRIFT_WINDOW}, namespace)"),
            ("model", f'label_values({s.DRIFT_WINDOW}{{namespace=~"$namespace"}}, model)'),
        ),
        panels=(
            Panel(
                "Output drift: p-value of the embeddings (MMD)",
                (
                    Target(
                        f'min by ({by}) ({s.DRIFT_P_VALUE}{{{drift}, signal="{s.DRIFT_OUTPUT_SIGNAL}"}})',
                        "{{model}} {{model_version}}",
                    ),
                ),
                description=f"ModelOutputDrift: below {s.DRIFT_ALPHA:g} for 5 minutes, on a window of at least "
                f"{s.DRIFT_MIN_WINDOW} samples.",
            ),
            Panel(
                "Input drift: p-value of the lengths (KS)",
                (
                    Target(
                        f'min by ({by}, signal) ({s.DRIFT_P_VALUE}{{{drift}, signal=~"{inputs}"}})',
                        "{{model}} {{model_version}} {{signal}}",
                    ),
                ),
                description=f"ModelInputDrift: the lower of the two below {input_alpha:g} for 5 minutes.",
            ),
            Panel(
                "Centroid distance (1 - cosine of the mean embeddings)",
                (Target(f"max by ({by}) ({s.DRIFT_CENTROID}{{{drift}}})", "{{model}} {{model_version}}"),),
            ),
            Panel(
                "Length PSI",
                (
                    Target(
                        f"max by ({by}, signal) ({s.DRIFT_PSI}{{{drift}}})", "{{model}} {{model_version}} {{signal}}"
                    ),
                ),
                description="Under 0.1: alike; 0.1 to 0.25: moderate; above 0.25: a large shift.",
            ),
            Panel(
                "Samples in the window and in the reference",
                (
                    Target(f"max by ({by}) ({s.DRIFT_WINDOW}{{{drift}}})", "window {{model}} {{model_version}}"),
                    Target(f"max by ({by}) ({s.DRIFT_REFERENCE}{{{drift}}})", "reference {{model}} {{model_version}}"),
                ),
                description="A reference of 0: the tap has not sent it (no drift_reference.npz in the version).",
            ),
            Panel(
                "Tap samples per second (sampled, dropped, sent)",
                (
                    Target(
                        f"sum by (model, outcome) (rate({s.TAP_SAMPLES_TOTAL}{{{_MODEL}}}[{_RATE}]))",
                        "{{model}} {{outcome}}",
                    ),
                ),
                description="Dropped: a pod's tap buffer was full (the worker slow or away); the answers were not.",
            ),
            Panel("Characters per text", (q(s.INPUT_CHARS, "0.5"), q(s.INPUT_CHARS, "0.9"))),
            Panel("Tokens per text", (q(s.INPUT_TOKENS, "0.5"), q(s.INPUT_TOKENS, "0.9"))),
            Panel(
                "Texts at the model's length limit, and unknown tokens",
                (
                    Target(
                        f"sum by (model) (rate({s.TRUNCATED_TOTAL}{{{_MODEL}}}[{_RATE}]))\n"
                        f"/ sum by (model) (rate({s.INPUT_TOKENS}_count{{{_MODEL}}}[{_RATE}]))",
                        "at the limit {{model}}",
                    ),
                    Target(
                        f"sum by (model) (rate({s.UNKNOWN_TOKEN_SHARE}_sum{{{_MODEL}}}[{_RATE}]))\n"
                        f"/ sum by (model) (rate({s.UNKNOWN_TOKEN_SHARE}_count{{{_MODEL}}}[{_RATE}]))",
                        "unknown tokens {{model}}",
                    ),
                ),
                "percentunit",
            ),
        ),
    )


def _per_replica(series: str) -> str:
    """`series` summed over an InferenceService's pods and divided by their count: what KEDA compares with a
    scale target (AverageValue)."""
    return f"sum by (inferenceservice) ({series}{{{_MODEL}}})\n/ count by (inferenceservice) ({series}{{{_MODEL}}})"


def llm() -> Dashboard:
    """The vLLM runtime's dashboard (workloads/runtimes/vllm.py): latency per token, throughput, the engine's
    queue and KV cache, outcomes and the cost of a million tokens, per model and version."""
    by = "sum by (model, model_version)"
    return Dashboard(
        uid="modelyard-llm",
        title="LLM serving",
        description="Large language models on vLLM: time to first token, inter-token latency, tokens per second, "
        "the engine's queue and KV cache, request outcomes and the cost of a million tokens.",
        variables=(
            ("namespace", f"label_values({s.VLLM_RUNNING}, namespace)"),
            ("model", f'label_values({s.VLLM_RUNNING}{{namespace=~"$namespace"}}, model)'),
        ),
        panels=(
            Panel(
                "Time to first token p50 / p95 / p99",
                tuple(_quantile(q, s.VLLM_TTFT) for q in ("0.5", "0.95", "0.99")),
                "s",
                description="From a request's arrival at the engine to its first output token (queueing and "
                "prefill): the `ttft` indicator of the model's SLO.",
            ),
            Panel(
                "Inter-token latency p50 / p95 / p99",
                tuple(_quantile(q, s.VLLM_ITL) for q in ("0.5", "0.95", "0.99")),
                "s",
                description="Gaps between consecutive output tokens of a stream: the `itl` indicator.",
            ),
            Panel(
                "Tokens per second",
                (
                    Target(
                        f"{by} (rate({s.VLLM_GENERATION_TOKENS}{{{_MODEL}}}[{_RATE}]))",
                        "generated {{model}} {{model_version}}",
                    ),
                    Target(
                        f"{by} (rate({s.VLLM_PROMPT_TOKENS}{{{_MODEL}}}[{_RATE}]))",
                        "prompt {{model}} {{model_version}}",
                    ),
                ),
            ),
            Panel(
                "USD per million tokens (last hour)",
                (Target(f"{c.MODEL_TOKEN_COST}{{{_MODEL}}}", "{{inferenceservice}} {{tokens}}"),),
                "currencyUSD",
                description="The GPUs' price (the cost dashboard's) over the tokens the engine counted; "
                "`generation`: per generated token, `all`: per prompt or generated token. No line while idle.",
            ),
            Panel(
                "Requests waiting and running per replica (the queue autoscaling signal)",
                (
                    Target(_per_replica(s.VLLM_WAITING), "waiting {{inferenceservice}}"),
                    Target(_per_replica(s.VLLM_RUNNING), "running {{inferenceservice}}"),
                ),
                description="Compare waiting with the model's scale_target on the `queue` signal.",
            ),
            Panel(
                "KV cache in use",
                (Target(f"max by (model, pod) ({s.VLLM_KV_CACHE}{{{_MODEL}}})", "{{model}} {{pod}}"),),
                "percentunit",
                description="Near 1, new sequences wait or running ones are preempted; the `kv_cache` signal.",
            ),
            Panel(
                "Finished requests per second by reason",
                (
                    Target(
                        f"sum by (model, finished_reason) (rate({s.VLLM_REQUEST_SUCCESS}{{{_MODEL}}}[{_RATE}]))",
                        "{{model}} {{finished_reason}}",
                    ),
                    Target(
                        f"sum by (model) (rate({s.VLLM_ADMISSION_REJECTIONS}{{{_MODEL}}}[{_RATE}]))",
                        "{{model}} refused (queue bound)",
                    ),
                ),
                "reqps",
                description="`error` and refusals count against availability; `length` is an answer cut at "
                "max_tokens or max_model_len; `abort` a client that went away.",
            ),
            Panel(
                "Answers against the day before: cut-off z and tokens per answer",
                (
                    Target(f"{s.LLM_CUT_OFF_Z}{{{_MODEL}}}", "{{inferenceservice}} cut-off z"),
                    Target(f"{s.LLM_ANSWER_TOKENS}{{{_MODEL}}}", "{{inferenceservice}} tokens per answer, last hour"),
                    Target(
                        f"{s.LLM_ANSWER_TOKENS_BASELINE}{{{_MODEL}}}", "{{model}} tokens per answer, the day before"
                    ),
                ),
                description=f"LlmOutputDrift fires beyond ±{s.LLM_DRIFT_Z:g} with {s.LLM_DRIFT_MIN_REQUESTS} requests "
                "on each side (platform/rules.py: llm_drift_group); runbooks/LlmOutputDrift.md.",
            ),
            _burn(),
        ),
    )


def _pool_of(metric: str) -> str:
    """`metric` (a DCGM series, by hostname) with the node's GPU pool attached."""
    return (
        f"{metric}\n* on (hostname) group_left (gpu_pool)\n"
        f'label_replace({c.GPU_NODE_INFO}{{gpu_pool=~"$gpu_pool"}}, "hostname", "$1", "node", "(.*)")'
    )


def gpu_fleet() -> Dashboard:
    return Dashboard(
        uid="modelyard-gpu-fleet",
        title="GPU fleet",
        description="GPUs by pool and node: provisioned vs allocated vs used, memory, power and errors.",
        variables=(("gpu_pool", f"label_values({c.GPU_NODE_INFO}, gpu_pool)"),),
        panels=(
            Panel(
                "GPUs provisioned vs allocated by pool",
                (
                    Target(c.POOL_GPUS_PROVISIONED + POOL_FILTER, "provisioned {{gpu_pool}}"),
                    Target(c.POOL_GPUS_ALLOCATED + POOL_FILTER, "allocated {{gpu_pool}}"),
                ),
            ),
            Panel(
                "GPU utilisation by pool",
                (Target(f"avg by (gpu_pool) (\n{_pool_of(s.GPU_UTIL)}\n)", "{{gpu_pool}}"),),
                "percent",
            ),
            Panel(
                "GPU utilisation by node",
                (Target(f"avg by (gpu_pool, hostname) (\n{_pool_of(s.GPU_UTIL)}\n)", "{{gpu_pool}} {{hostname}}"),),
                "percent",
            ),
            Panel(
                "GPU memory used by node",
                (
                    Target(
                        f"max by (gpu_pool, hostname) (\n{_pool_of(s.GPU_FB_USED)}\n"
                        f"/ on (gpu, hostname) group_left () ({s.GPU_FB_USED} + {s.GPU_FB_FREE})\n)",
                        "{{gpu_pool}} {{hostname}}",
                    ),
                ),
                "percentunit",
            ),
            Panel(
                "Power draw by pool",
                (Target(f"sum by (gpu_pool) (\n{_pool_of(s.GPU_POWER)}\n)", "{{gpu_pool}}"),),
                "watt",
            ),
            Panel(
                "Allocated GPUs by model",
                (Target(c.MODEL_GPUS_ALLOCATED, "{{namespace}} {{model}}"),),
            ),
            Panel(
                "XID errors (last value per GPU)",
                (Target(f"max by (hostname, gpu) (max_over_time({s.GPU_XID}[5m])) > 0", "{{hostname}} GPU {{gpu}}"),),
                description="Any value is an XID code; see the GPUXidError runbook for what each means.",
            ),
        ),
    )


def gateway() -> Dashboard:
    """The front door: from Envoy's statistics on the proxies, each model route's requests by class, latency and
    retries, its breaker and ejected replicas, the certificate's days left; from the gateway's access log (the
    gateway log counter), the answers the gateway gave itself by model and status, every model's requests by calling
    team, and the share a fallback answered."""
    routes = 'envoy_cluster_name=~"$route"'
    by_route = "envoy_cluster_name"
    return Dashboard(
        uid="modelyard-gateway",
        title="Gateway",
        description="The one way into models: requests per route, the gateway's own refusals, breakers, ejections.",
        variables=(
            # A route's cluster: httproute/<namespace>/<model>/rule/0.
            ("route", f"label_values({s.GATEWAY_UPSTREAM_RQ_XX}{{{s.GATEWAY_ROUTE_CLUSTERS}}}, envoy_cluster_name)"),
            # The model, as the gateway log counter names it (its route's name).
            ("model", f"label_values({s.GATEWAY_RESPONSES}, model)"),
        ),
        panels=(
            Panel(
                "Requests per route, by response class",
                (
                    Target(
                        f"sum by ({by_route}, envoy_response_code_class) "
                        f"(rate({s.GATEWAY_UPSTREAM_RQ_XX}{{{routes}}}[{_RATE}]))",
                        "{{envoy_cluster_name}} {{envoy_response_code_class}}xx",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Answers the gateway gave itself, by model and status",
                (
                    Target(
                        f"sum by (model, code) (rate({s.GATEWAY_RESPONSES}"
                        f'{{answered_by="gateway", model=~"$model"}}[{_RATE}]))',
                        "{{model}} {{code}}",
                    ),
                ),
                "reqps",
                description="From the gateway's access log (the gateway log counter): 401 no or an unknown key, 403 "
                "a team the model does not admit, 429 a team over its rate, 503 the breaker or no replica left, 404 "
                "no route (model `none`).",
            ),
            Panel(
                "Requests by calling team, every model",
                (
                    Target(
                        f'sum by (model, team) (rate({s.GATEWAY_RESPONSES}{{model=~"$model"}}[{_RATE}]))',
                        "{{model}} {{team}}",
                    ),
                ),
                "reqps",
                description="Every request the gateway answered, LLMs' included (their servers count no callers), by "
                "the team of the client id the gateway set after checking the caller's key or token; none: no valid "
                "credential. Requests, not tokens: the gateway does not read answers.",
            ),
            Panel(
                "Share answered by the fallback",
                (
                    Target(
                        f'sum by (model) (rate({s.GATEWAY_RESPONSES}{{answered_by="fallback", model=~"$model"}}'
                        f"[{_RATE}]))\n/ sum by (model) (rate({s.GATEWAY_RESPONSES}"
                        f'{{answered_by!="gateway", model=~"$model"}}[{_RATE}]))',
                        "{{model}}",
                    ),
                ),
                "percentunit",
                description="The requests another region's gateway answered for a model whose own replicas could "
                "not: GatewayFallbackAnswering after 10 minutes.",
            ),
            Panel(
                "p99 latency per route (at the gateway)",
                (
                    Target(
                        f"histogram_quantile(0.99, sum by ({by_route}, le) "
                        f"(rate({s.GATEWAY_UPSTREAM_RQ_TIME}_bucket{{{routes}}}[{_RATE}])))",
                        "{{envoy_cluster_name}}",
                    ),
                ),
                "ms",
            ),
            Panel(
                "Retries per route",
                (
                    Target(
                        f"sum by ({by_route}) (rate({s.GATEWAY_RETRIES}{{{routes}}}[{_RATE}]))",
                        "{{envoy_cluster_name}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Breaker at its limit (1) and requests it refused",
                (
                    Target(
                        f"max by ({by_route}) ({s.GATEWAY_BREAKER_OPEN}{{{routes}}})", "open {{envoy_cluster_name}}"
                    ),
                    Target(
                        f"sum by ({by_route}) (rate({s.GATEWAY_BREAKER_OVERFLOW}{{{routes}}}[{_RATE}]))",
                        "refused {{envoy_cluster_name}}",
                    ),
                ),
                description="GatewayBreakerOpen: at its limit for 5 minutes.",
            ),
            Panel(
                "Replicas ejected and healthy per route",
                (
                    Target(f"max by ({by_route}) ({s.GATEWAY_EJECTED}{{{routes}}})", "ejected {{envoy_cluster_name}}"),
                    Target(f"max by ({by_route}) ({s.GATEWAY_HEALTHY}{{{routes}}})", "healthy {{envoy_cluster_name}}"),
                ),
                description="GatewayReplicaEjected: a replica out for 10 minutes.",
            ),
            Panel(
                "Days until the gateway's certificate expires",
                (
                    Target(
                        f"min by (envoy_tls_certificate) ({s.GATEWAY_CERT_EXPIRY} - time()) / 86400",
                        "{{envoy_tls_certificate}}",
                    ),
                ),
                description=f"cert-manager renews 15 days before; GatewayCertificateExpiring below "
                f"{s.GATEWAY_CERT_DAYS}.",
            ),
        ),
    )


def cost(hours_per_month: int) -> Dashboard:
    return Dashboard(
        uid="modelyard-cost",
        title="GPU cost",
        description=(
            "Live GPU cost from the same price table as the plan's estimate (list prices, spot at the "
            "assumed discount). AWS Budgets and Cost Explorer have the full bill."
        ),
        variables=(("gpu_pool", f"label_values({c.GPU_NODE_INFO}, gpu_pool)"),),
        panels=(
            Panel(
                "GPU spend pace vs monthly budget (USD / month)",
                (
                    Target(f"sum ({c.POOL_GPU_COST}) * {hours_per_month}", "GPU nodes, at this rate"),
                    Target("modelyard:budget_monthly_usd", "budget"),
                ),
                "currencyUSD",
            ),
            Panel(
                "USD per hour by pool",
                (Target(c.POOL_GPU_COST + POOL_FILTER, "{{gpu_pool}}"),),
                "currencyUSD",
            ),
            Panel(
                "USD per hour by namespace and model",
                (Target(c.MODEL_GPU_COST, "{{namespace}} {{model}}"),),
                "currencyUSD",
            ),
            Panel(
                "Idle GPU cost (provisioned, not allocated), USD per hour",
                (
                    Target(
                        f"{c.POOL_GPU_COST}{POOL_FILTER}\n"
                        f"* on (gpu_pool) (1 - {c.POOL_GPUS_ALLOCATED} / {c.POOL_GPUS_PROVISIONED})",
                        "{{gpu_pool}}",
                    ),
                ),
                "currencyUSD",
            ),
            Panel(
                "GPU-hours in the selected range by pool",
                (
                    Target(
                        f"sum by (gpu_pool) (sum_over_time({c.POOL_GPUS_PROVISIONED}{POOL_FILTER}[$__range:5m])) / 12",
                        "{{gpu_pool}}",
                    ),
                ),
                kind="stat",
                description="Samples every 5 minutes, so the sum over the range divided by 12 is GPU-hours.",
            ),
            Panel(
                "USD in the selected range by namespace and model",
                (
                    Target(
                        f"sum by (namespace, model) (sum_over_time({c.MODEL_GPU_COST}[$__range:5m])) / 12",
                        "{{namespace}} {{model}}",
                    ),
                ),
                "currencyUSD",
                kind="stat",
            ),
        ),
    )


def platform_dashboards(hours_per_month: int) -> Sequence[Dashboard]:
    """Each runtime's dashboards (the model server's `serving`, vLLM's `llm`), then the fleet's and cost's."""
    from modelyard.workloads.runtimes import RUNTIMES

    own = tuple(board for runtime in RUNTIMES.values() for board in runtime.dashboards())
    return (*own, gpu_fleet(), gateway(), cost(hours_per_month))


#: What each Grafana variable stands for when an expression is checked outside Grafana.
GRAFANA_SUBSTITUTIONS = {
    "$__rate_interval": "5m",
    "$__range": "1d",
    "$namespace": ".*",
    "$model": ".*",
    "$gpu_pool": ".*",
    "$route": "httproute/.+",
}


def checkable(expr: str) -> str:
    """`expr` with Grafana's variables replaced by values PromQL accepts (longest names first)."""
    for var in sorted(GRAFANA_SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(var, GRAFANA_SUBSTITUTIONS[var])
    return expr
