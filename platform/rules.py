"""Alerting and recording rules as code: one source, rendered two ways.

`platform_rule_groups(params)` returns every rule group the platform ships. `prometheus_rule_spec`
renders groups as the spec of a prometheus-operator `PrometheusRule` (what the cluster loads);
`promtool_rule_file` renders them as a plain `groups:` file (what `promtool check rules` and
`promtool test rules` read, Debian's 2.42 included). Both come from the same objects, so what is
tested is what is deployed.

Every alert carries `severity` (critical pages, warning opens a ticket, info is informational) and
the annotations `summary`, `description` and `runbook_url` (`<runbook_base_url>/<AlertName>.md`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from modelyard.platform import signals as s
from modelyard.policies.governance import conventions as c

Severity = Literal["critical", "warning", "info"]

# The SLO windows and burn factors, and the warm-capacity namespace, are conventions (one module).
PAGE_BURNS, TICKET_BURNS, SLI_WINDOWS = c.PAGE_BURNS, c.TICKET_BURNS, c.SLI_WINDOWS
WARM_CAPACITY_NAMESPACE = c.WARM_CAPACITY_NAMESPACE


@dataclass(frozen=True)
class Record:
    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def render(self, _: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"record": self.record, "expr": _clean(self.expr)}
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


@dataclass(frozen=True)
class Alert:
    alert: str
    expr: str
    severity: Severity
    summary: str
    description: str
    for_: str = "0m"

    def render(self, runbook_base_url: str | None) -> dict[str, Any]:
        if runbook_base_url is None:
            raise ValueError(f"alert {self.alert} needs a runbook base URL (monitoring.runbook_base_url)")
        out: dict[str, Any] = {"alert": self.alert, "expr": _clean(self.expr)}
        if self.for_ != "0m":
            out["for"] = self.for_
        out["labels"] = {"severity": self.severity}
        out["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": f"{runbook_base_url}/{self.alert}.md",
        }
        return out


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: tuple[Record | Alert, ...]
    interval: str | None = None

    def render(self, runbook_base_url: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.interval:
            out["interval"] = self.interval
        out["rules"] = [rule.render(runbook_base_url) for rule in self.rules]
        return out


@dataclass(frozen=True)
class InstancePrice:
    """What one node of `instance_type` costs per hour with `capacity_type`, and its GPU count."""

    instance_type: str
    capacity_type: str
    usd_per_hour: float


@dataclass(frozen=True)
class RuleParams:
    monthly_budget_usd: float
    hours_per_month: int
    prices: Sequence[InstancePrice]


def _clean(expr: str) -> str:
    """One space-normalised line per source line, no blank lines: stable YAML and readable diffs."""
    return "\n".join(line.rstrip() for line in expr.strip().splitlines() if line.strip())


def alerts(groups: Iterable[RuleGroup]) -> list[Alert]:
    return [rule for group in groups for rule in group.rules if isinstance(rule, Alert)]


def prometheus_rule_spec(groups: Sequence[RuleGroup], runbook_base_url: str | None = None) -> dict[str, Any]:
    """The `spec` of a PrometheusRule holding `groups`."""
    return {"groups": [g.render(runbook_base_url) for g in groups]}


def promtool_rule_file(groups: Sequence[RuleGroup], runbook_base_url: str | None = None) -> str:
    """`groups` as a plain Prometheus rule file (the input of promtool)."""
    return yaml.safe_dump(prometheus_rule_spec(groups, runbook_base_url), sort_keys=False, width=120)


# ---------------------------------------------------------------------------------------------
# SLOs: generic multi-window burn-rate alerts over every model that has an objective series


def _by(labels: str, expr: str) -> str:
    return f"sum by ({labels}) ({expr})"


#: What a latency indicator measures, in an alert's words (request: whole requests; ttft: times to the first
#: token; itl: gaps between tokens).
INDICATOR_TEXT = "{{ $labels.indicator }} measurements (request: whole requests, ttft: first tokens, itl: token gaps)"


def error_ratio(w: str) -> str:
    """The share of a model's requests that failed over `w`, per (namespace, model), from its runtime's own
    series: the model server's answers (ERROR_CODES), or the engine's request outcomes (vLLM: requests it
    failed, and those its queue bound refused, over all it finished or refused). Each model's pods export one
    runtime's series, never both. `or ... * 0`: traffic with no error (or no refusal) counts 0, not no value."""
    per_model = "namespace, model"
    total = _by(per_model, f"rate({s.REQUESTS_TOTAL}[{w}])")
    errors = _by(per_model, f'rate({s.REQUESTS_TOTAL}{{code=~"{s.ERROR_CODES}"}}[{w}])')
    refused = _by(per_model, f"rate({s.VLLM_ADMISSION_REJECTIONS}[{w}])")
    failed = _by(per_model, f'rate({s.VLLM_REQUEST_SUCCESS}{{finished_reason="error"}}[{w}])')
    finished = _by(per_model, f"rate({s.VLLM_REQUEST_SUCCESS}[{w}])")
    return (
        f"(\n({errors}\nor {total} * 0)\n/ {total}\n)\nor\n"
        f"(\n({failed}\n+ ({refused} or {finished} * 0))\n/ ({finished}\n+ ({refused} or {finished} * 0))\n)"
    )


def slo_groups() -> list[RuleGroup]:
    """Error and slow ratios per model over every SLI window, from each runtime's own series, and the
    multi-window burn-rate alerts over them. Availability reads the model server's answers (modelyard) or
    the engine's request outcomes (vLLM: requests it failed, and those its queue bound refused, over all it
    finished or refused); latency one ratio per indicator (signals.LATENCY_INDICATORS), labelled with it."""
    per_model = "namespace, model"
    records: list[Record] = []
    for w in SLI_WINDOWS:
        records.append(Record(c.sli_ratio("errors", w), error_ratio(w)))
        for indicator, histogram in s.LATENCY_INDICATORS.items():
            fast = _by(
                per_model,
                f"rate({histogram}_bucket[{w}])\n"
                f"* on (namespace, model, le) group_left ()\n"
                f'{s.SLO_LATENCY_THRESHOLD}{{indicator="{indicator}"}}',
            )
            count = _by(per_model, f"rate({histogram}_count[{w}])")
            records.append(Record(c.sli_ratio("slow", w), f"1 - (\n{fast}\n/ {count}\n)", {"indicator": indicator}))

    def burn(kind: str, objective: str, pairs: Sequence[tuple[str, str, float]], on: str) -> str:
        parts = []
        for long, short, rate in pairs:
            budget = f"on ({on}) ({rate:g} * (1 - {objective}))"
            parts.append(
                f"(\n  {c.sli_ratio(kind, long)} > {budget}\nand on ({on})\n  {c.sli_ratio(kind, short)} > {budget}\n)"
            )
        return "\nor\n".join(parts)

    latency = "namespace, model, indicator"
    model = "{{ $labels.model }} in {{ $labels.namespace }}"
    alerts_ = [
        Alert(
            "ModelErrorBudgetBurnFast",
            burn("errors", s.SLO_AVAILABILITY, PAGE_BURNS, per_model),
            "critical",
            f"{model} is burning its availability error budget fast",
            f"{model} answers {{{{ $value | humanizePercentage }}}} of requests with an error (the model server: "
            "5xx, 429, or 404 for its own name; vLLM: requests the engine failed or its queue bound refused): at "
            f"least {c.burn_text(PAGE_BURNS)}. At this pace a {c.BUDGET_PERIOD} budget is gone in a few days.",
            for_="2m",
        ),
        Alert(
            "ModelErrorBudgetBurnSlow",
            burn("errors", s.SLO_AVAILABILITY, TICKET_BURNS, per_model),
            "warning",
            f"{model} is using its availability error budget faster than it refills",
            f"{model} has answered {{{{ $value | humanizePercentage }}}} of requests with an error (5xx, 429, 404;"
            f" for vLLM, failed or refused): at least {c.burn_text(TICKET_BURNS)}, faster than the budget refills.",
            for_="1h",
        ),
        Alert(
            "ModelLatencyBudgetBurnFast",
            burn("slow", s.SLO_LATENCY, PAGE_BURNS, latency),
            "critical",
            f"{model} is burning its {{{{ $labels.indicator }}}} latency error budget fast",
            f"{{{{ $value | humanizePercentage }}}} of {model}'s {INDICATOR_TEXT} are slower than its SLO "
            f"threshold: at least {c.burn_text(PAGE_BURNS)}.",
            for_="2m",
        ),
        Alert(
            "ModelLatencyBudgetBurnSlow",
            burn("slow", s.SLO_LATENCY, TICKET_BURNS, latency),
            "warning",
            f"{model} is using its {{{{ $labels.indicator }}}} latency error budget faster than it refills",
            f"{{{{ $value | humanizePercentage }}}} of {model}'s {INDICATOR_TEXT} are slower than its SLO "
            f"threshold: at least {c.burn_text(TICKET_BURNS)}, faster than the budget refills.",
            for_="1h",
        ),
        Alert(
            "ModelMetricsAbsent",
            f"max by (namespace, model) ({s.SLO_AVAILABILITY})\nunless on (namespace, model)\n"
            f'max by (namespace, model) (up{{job="{s.MODEL_JOB}"}} == 1)\nunless on (namespace, model)\n'
            # A model scaled to zero on purpose (its predictor Deployment asked for no pod) is asleep, not absent.
            f'max by (namespace, model) (label_replace({s.KSM_DEPLOYMENT_REPLICAS} == 0, "model", "$1", '
            f'"deployment", "(.+)-predictor"))',
            "warning",
            f"{model} has an SLO but no model pod is being scraped",
            f"{model} is in the catalog (it has an availability objective) but Prometheus has scraped no "
            "healthy pod of it for 10 minutes while its predictor asks for pods: it is down, not selected by the "
            "PodMonitor, or its metrics port is wrong. Its SLO alerts cannot fire while this lasts.",
            for_="10m",
        ),
    ]
    return [
        RuleGroup("modelyard-slo-sli", tuple(records), interval="30s"),
        RuleGroup("modelyard-slo-alerts", tuple(alerts_)),
    ]


# ---------------------------------------------------------------------------------------------
# KServe predictors


def kserve_group() -> RuleGroup:
    isvc = s.ksm_label(c.ISVC_LABEL)
    with_isvc = f'* on (namespace, pod) group_left ({isvc}) kube_pod_labels{{{isvc}!=""}}'
    return RuleGroup(
        "modelyard-kserve",
        (
            Alert(
                "KServePredictorNotReady",
                f'sum by (namespace, {isvc}) (\n  kube_pod_status_ready{{condition="true"}}\n  {with_isvc}\n) == 0',
                "critical",
                "InferenceService {{ $labels." + isvc + " }} in {{ $labels.namespace }} has no ready predictor",
                "No predictor pod of {{ $labels." + isvc + " }} has been ready for 5 minutes: every request "
                "to it fails. Typical causes: the model failed to download or load, the image cannot be "
                "pulled, or no GPU node could be launched.",
                for_="5m",
            ),
            Alert(
                "KServePredictorCrashLooping",
                f"max by (namespace, pod, container, {isvc}) (\n"
                f'  kube_pod_container_status_waiting_reason{{reason="CrashLoopBackOff"}}\n  {with_isvc}\n) == 1',
                "warning",
                "Predictor pod {{ $labels.pod }} of {{ $labels." + isvc + " }} is crash-looping",
                "Container {{ $labels.container }} of {{ $labels.pod }} ({{ $labels.namespace }}) has been in "
                "CrashLoopBackOff for 10 minutes.",
                for_="10m",
            ),
        ),
    )


# ---------------------------------------------------------------------------------------------
# GPUs


#: How far past its engine's reservation a GPU's memory may go (the CUDA context, another library's buffer)
#: before GPUMemoryOverReservation calls it a leak.
RESERVATION_MARGIN = 0.05


def gpu_group() -> RuleGroup:
    gpu_type = f'resource_type="{c.GPU_RESOURCE}"'
    used = f"{s.GPU_FB_USED} / ({s.GPU_FB_USED} + {s.GPU_FB_FREE})"
    # The reservation of each pod whose engine reserves GPU memory up front: its InferenceService's recorded
    # ratio, on the pod through kube-state-metrics' pod labels.
    isvc = s.ksm_label(c.ISVC_LABEL)
    reserving = (
        f'max by (namespace, pod) (\n  kube_pod_labels{{{isvc}!=""}}\n'
        f"  * on (namespace, {isvc}) group_left ()\n"
        f'  label_replace({s.GPU_MEMORY_RESERVATION}, "{isvc}", "$1", "inferenceservice", "(.+)")\n)'
    )
    return RuleGroup(
        "modelyard-gpu",
        (
            Alert(
                "GPUAllocatedIdle",
                f'avg by (namespace, pod) (\n  {s.GPU_UTIL}{{pod!="", namespace!="{WARM_CAPACITY_NAMESPACE}"}}\n) < 5',
                "warning",
                "Pod {{ $labels.pod }} holds GPUs it does not use",
                "The GPUs allocated to {{ $labels.namespace }}/{{ $labels.pod }} have averaged "
                "{{ $value | humanize }}% utilisation for 30 minutes. They are paid for and idle: scale the "
                "model down, lower its minReplicas, or move it to CPU or a smaller GPU class.",
                for_="30m",
            ),
            Alert(
                "GPUMemoryNearFull",
                f"{used} > 0.95\nunless on (namespace, pod)\n{reserving}",
                "warning",
                "GPU {{ $labels.gpu }} on {{ $labels.hostname }} is over 95% of its memory",
                "GPU {{ $labels.gpu }} on {{ $labels.hostname }} (pod {{ $labels.namespace }}/{{ $labels.pod }}) "
                "has used {{ $value | humanizePercentage }} of its memory for 15 minutes; the next larger batch "
                "or sequence may fail with CUDA out-of-memory. (A pod whose engine reserves its memory up front, "
                "vLLM, is judged against its reservation instead: GPUMemoryOverReservation.)",
                for_="15m",
            ),
            Alert(
                "GPUMemoryOverReservation",
                f"{used}\n> on (namespace, pod) group_left ()\n({reserving} + {RESERVATION_MARGIN:g})",
                "warning",
                "Pod {{ $labels.pod }} uses more GPU memory than its engine reserves",
                "GPU {{ $labels.gpu }} on {{ $labels.hostname }} is {{ $value | humanizePercentage }} full for "
                "15 minutes, over its engine's fixed reservation (--gpu-memory-utilization) by more than "
                f"{RESERVATION_MARGIN:.0%}. An engine that reserves up front holds its share from start to end: "
                "growth past it is a leak or a second process on the GPU.",
                for_="15m",
            ),
            Alert(
                "GPUXidError",
                f"max_over_time({s.GPU_XID}[10m]) > 0",
                "critical",
                "GPU {{ $labels.gpu }} on {{ $labels.hostname }} reported XID {{ $value }}",
                "The NVIDIA driver reported XID error {{ $value }} on GPU {{ $labels.gpu }} of node "
                "{{ $labels.hostname }}. XIDs 48, 63, 64, 74, 79, 92, 94 and 95 mean failing hardware or a "
                "GPU that fell off the bus: cordon and replace the node. Others usually point at the "
                "application (for example 13 or 31: an illegal memory access).",
            ),
            Alert(
                "GPUPoolAtLimit",
                "(\n"
                f"  max by (nodepool) (karpenter_nodepools_usage{{{gpu_type}}})\n"
                f"  >= on (nodepool) max by (nodepool) (karpenter_nodepools_limit{{{gpu_type}}})\n"
                ")\nand on () (\n"
                '  sum (kube_pod_container_resource_requests{resource="nvidia_com_gpu"}\n'
                "    * on (namespace, pod) group_left ()\n"
                '    (max by (namespace, pod) (kube_pod_status_phase{phase="Pending"}) == 1)\n'
                "  ) > 0\n)",
                "warning",
                "GPU pool {{ $labels.nodepool }} is at its GPU limit while GPU pods wait",
                "NodePool {{ $labels.nodepool }} has launched {{ $value }} GPUs, its limit, and GPU pods have "
                "been pending for 15 minutes. Raise the pool's max_gpus in the stack config (and check the "
                "budget), or lower a model's replicas.",
                for_="15m",
            ),
        ),
    )


# ---------------------------------------------------------------------------------------------
# Prometheus and Alertmanager themselves


def monitoring_group() -> RuleGroup:
    return RuleGroup(
        "modelyard-monitoring",
        (
            Alert(
                "PrometheusConfigReloadFailed",
                "max_over_time(prometheus_config_last_reload_successful[5m]) == 0",
                "warning",
                "Prometheus {{ $labels.pod }} failed to load its configuration",
                "Prometheus {{ $labels.namespace }}/{{ $labels.pod }} has been running on an old "
                "configuration for 10 minutes because the new one does not load: new scrape targets and "
                "rules are not in effect.",
                for_="10m",
            ),
            Alert(
                "PrometheusRuleEvaluationFailures",
                "sum by (namespace, pod, rule_group) (increase(prometheus_rule_evaluation_failures_total[5m])) > 0",
                "critical",
                "Prometheus fails to evaluate rule group {{ $labels.rule_group }}",
                "{{ $value | humanize }} evaluations of {{ $labels.rule_group }} failed in 5 minutes, for 15 "
                "minutes: the alerts in that group cannot fire.",
                for_="15m",
            ),
            Alert(
                "PrometheusNotificationsFailing",
                "sum by (namespace, pod) (rate(prometheus_notifications_errors_total[5m]))\n"
                "/ sum by (namespace, pod) (rate(prometheus_notifications_sent_total[5m])) > 0.01",
                "critical",
                "Prometheus {{ $labels.pod }} cannot deliver alerts to Alertmanager",
                "{{ $value | humanizePercentage }} of alert notifications from {{ $labels.pod }} to "
                "Alertmanager failed over 5 minutes: firing alerts may not reach anyone.",
                for_="10m",
            ),
            Alert(
                "AlertmanagerConfigReloadFailed",
                "max_over_time(alertmanager_config_last_reload_successful[5m]) == 0",
                "critical",
                "Alertmanager {{ $labels.pod }} failed to load its configuration",
                "Alertmanager {{ $labels.namespace }}/{{ $labels.pod }} rejected its new configuration 10 "
                "minutes ago and still routes with the old one.",
                for_="10m",
            ),
            Alert(
                "AlertmanagerNotificationsFailing",
                "sum by (namespace, pod, integration) (rate(alertmanager_notifications_failed_total[5m]))\n"
                "/ sum by (namespace, pod, integration) (rate(alertmanager_notifications_total[5m])) > 0.01",
                "critical",
                "Alertmanager cannot deliver {{ $labels.integration }} notifications",
                "{{ $value | humanizePercentage }} of {{ $labels.integration }} notifications from "
                "{{ $labels.pod }} failed over 5 minutes: check the receiver (SNS topic policy and role, "
                "webhook Secret).",
                for_="10m",
            ),
        ),
    )


# ---------------------------------------------------------------------------------------------
# Model quality: drift of what a model receives and answers (the drift worker's tests)


def drift_group() -> RuleGroup:
    """A model version whose window of tap samples the drift worker finds unlike its reference, in its output
    (the embeddings' MMD test) or its input (the length tests, the level split over them), for 5 minutes:
    about five windows in a row at the worker's one test a minute. The guard: a window of at least
    DRIFT_MIN_WINDOW samples, whatever the worker was started with."""
    by = "namespace, model, model_version"
    guard = f"and on ({by})\n{s.DRIFT_WINDOW} >= {s.DRIFT_MIN_WINDOW}"
    inputs = "|".join(s.DRIFT_INPUT_SIGNALS)
    input_alpha = s.DRIFT_ALPHA / len(s.DRIFT_INPUT_SIGNALS)
    where = "{{ $labels.model }} version {{ $labels.model_version }} ({{ $labels.namespace }})"
    return RuleGroup(
        "modelyard-drift",
        (
            Alert(
                "ModelOutputDrift",
                f'min by ({by}) ({s.DRIFT_P_VALUE}{{signal="{s.DRIFT_OUTPUT_SIGNAL}"}}) < {s.DRIFT_ALPHA:g}\n{guard}',
                "warning",
                f"{where} answers unlike its reference",
                "The drift worker's MMD test puts the embeddings of the latest window of sampled texts apart from "
                f'the version\'s reference (p = {{{{ printf "%.3f" $value }}}} < {s.DRIFT_ALPHA:g}) for 5 minutes: the '
                "traffic moved to topics or phrasing the reference does not hold, or the model answers differently.",
                for_="5m",
            ),
            Alert(
                "ModelInputDrift",
                f'min by ({by}) ({s.DRIFT_P_VALUE}{{signal=~"{inputs}"}}) < {input_alpha:g}\n{guard}',
                "warning",
                f"{where} receives texts unlike its reference",
                "The lengths of the latest window of sampled texts (characters or tokens per text, "
                f'Kolmogorov-Smirnov) differ from the version\'s reference (p = {{{{ printf "%.3f" $value }}}} < '
                f"{input_alpha:g}) for 5 minutes.",
                for_="5m",
            ),
        ),
    )


def llm_drift_group() -> RuleGroup:
    """What an LLM answers, from vLLM's own series (it has no tap): each InferenceService's share of answers cut
    off at max_tokens over the last LLM_DRIFT_WINDOW against its model's over the LLM_DRIFT_BASELINE before it, by
    a two-proportion z test with pooled variance, and the mean tokens an answer has on each side. The alert needs
    LLM_DRIFT_MIN_REQUESTS finished requests on both sides and |z| beyond LLM_DRIFT_Z for 15 minutes."""
    w, b = s.LLM_DRIFT_WINDOW, s.LLM_DRIFT_BASELINE
    isvc, model = "namespace, model, inferenceservice", "namespace, model"
    finished = f"increase({s.VLLM_REQUEST_SUCCESS}[{{w}}]{{offset}})"
    cut = f'increase({s.VLLM_REQUEST_SUCCESS}{{{{finished_reason="length"}}}}[{{w}}]{{offset}})'
    tokens = f"increase({s.VLLM_REQUEST_GENERATION_TOKENS}_{{part}}[{{w}}]{{offset}})"
    now, before = {"w": w, "offset": ""}, {"w": b, "offset": f" offset {w}"}

    def mean(by: str, span: Mapping[str, str]) -> str:
        return f"{_by(by, tokens.format(part='sum', **span))}\n/ {_by(by, tokens.format(part='count', **span))}"

    n1, x1, n0, x0 = s.LLM_REQUESTS, s.LLM_CUT_OFF, s.LLM_REQUESTS_BASELINE, s.LLM_CUT_OFF_BASELINE
    # Joined on the model: the baseline has one value per model, the window one per InferenceService.
    join = "on (namespace, model) group_left ()"
    pooled = f"(({x1} + {join} {x0}) / ({n1} + {join} {n0}))"
    z = f"({x1} / {n1} - {join} ({x0} / {n0}))\n/ sqrt({pooled} * (1 - {pooled}) * (1 / {n1} + {join} (1 / {n0})))"
    guard = f"and {n1} >= {s.LLM_DRIFT_MIN_REQUESTS}\nand on (namespace, model) {n0} >= {s.LLM_DRIFT_MIN_REQUESTS}"
    where = "{{ $labels.inferenceservice }} ({{ $labels.namespace }})"
    return RuleGroup(
        "modelyard-llm-drift",
        (
            Record(n1, _by(isvc, finished.format(**now))),
            # No cut-off at all is a share of 0, not no value.
            Record(x1, f"{_by(isvc, cut.format(**now))}\nor {n1} * 0"),
            Record(n0, _by(model, finished.format(**before))),
            Record(x0, f"{_by(model, cut.format(**before))}\nor {n0} * 0"),
            Record(s.LLM_CUT_OFF_Z, z),
            Record(s.LLM_ANSWER_TOKENS, mean(isvc, now)),
            Record(s.LLM_ANSWER_TOKENS_BASELINE, mean(model, before)),
            Alert(
                "LlmOutputDrift",
                f"abs({s.LLM_CUT_OFF_Z}) > {s.LLM_DRIFT_Z:g}\n{guard}",
                "warning",
                f"{where} cuts off a different share of its answers than its model did",
                f"Over the last {w}, the share of {{{{ $labels.inferenceservice }}}}'s answers cut off at max_tokens "
                f"differs from what {{{{ $labels.model }}}} answered over the {b} before (two-proportion test, "
                f'|z| = {{{{ printf "%.1f" $value }}}}, beyond {s.LLM_DRIFT_Z:g}, with at least '
                f"{s.LLM_DRIFT_MIN_REQUESTS} requests on each side) for 15 minutes: the answers grew or shrank (a new "
                "version, a changed prompt template, other traffic) or max_tokens changed.",
                for_="15m",
            ),
        ),
    )


# ---------------------------------------------------------------------------------------------
# Live GPU cost


def token_cost_records() -> list[Record]:
    """The USD a million tokens cost each LLM InferenceService: the price of the GPUs its pods hold
    (MODEL_GPU_COST, whose `model` is the InferenceService) over the tokens its engine counted, both over
    TOKEN_COST_WINDOW. A canary is priced on its own; an idle engine has no figure (its GPU cost shows on
    the cost dashboard) rather than an infinite one."""
    w = c.TOKEN_COST_WINDOW
    usd_per_second = (
        "sum by (namespace, inferenceservice) (\n"
        f'  label_replace(avg_over_time({c.MODEL_GPU_COST}[{w}]), "inferenceservice", "$1", "model", "(.+)")\n'
        ") / 3600"
    )
    by = "namespace, inferenceservice, model"
    counted = {
        "generation": f"rate({s.VLLM_GENERATION_TOKENS}[{w}])",
        "all": f"rate({s.VLLM_GENERATION_TOKENS}[{w}]) + rate({s.VLLM_PROMPT_TOKENS}[{w}])",
    }
    return [
        Record(
            c.MODEL_TOKEN_COST,
            f"{usd_per_second} * 1e6\n/ on (namespace, inferenceservice) group_right ()\n"
            f"(sum by ({by}) ({tokens}) > 0)",
            {"tokens": kind},
        )
        for kind, tokens in counted.items()
    ]


def cost_groups(params: RuleParams) -> list[RuleGroup]:
    """Recording rules that price GPU nodes from kube-state-metrics, with the same price table the plan's
    cost estimate reads, and an alert on the spend pace."""
    pool, itype, ctype = (s.ksm_label(k) for k in (c.GPU_POOL_LABEL, *s.KSM_NODE_LABELS[:2]))
    isvc = s.ksm_label(c.ISVC_LABEL)
    prices = [
        Record(
            "modelyard:ec2_instance_price_usd_per_hour",
            f"vector({p.usd_per_hour:.6g})",
            {"instance_type": p.instance_type, "capacity_type": p.capacity_type},
        )
        for p in sorted(params.prices, key=lambda p: (p.instance_type, p.capacity_type))
    ]
    node_info = Record(
        c.GPU_NODE_INFO,
        "max by (node, gpu_pool, instance_type, capacity_type) (\n"
        "  label_replace(label_replace(label_replace(\n"
        f'    kube_node_labels{{{pool}!=""}},\n'
        f'    "gpu_pool", "$1", "{pool}", "(.+)"),\n'
        f'    "instance_type", "$1", "{itype}", "(.+)"),\n'
        f'    "capacity_type", "$1", "{ctype}", "(.+)")\n'
        ")",
    )
    gpu_requests = 'kube_pod_container_resource_requests{resource="nvidia_com_gpu"}'
    per_model = (
        "  label_replace(\n"
        f"    {gpu_requests}\n"
        f"    * on (namespace, pod) group_left ({isvc}) kube_pod_labels,\n"
        f'    "model", "$1", "{isvc}", "(.*)")\n'
    )
    records = [
        *prices,
        node_info,
        Record(
            c.GPU_NODE_PRICE,
            f"{c.GPU_NODE_INFO}\n"
            "* on (instance_type, capacity_type) group_left () modelyard:ec2_instance_price_usd_per_hour",
        ),
        Record(
            c.GPU_NODE_GPUS,
            'sum by (node) (kube_node_status_capacity{resource="nvidia_com_gpu"})\n'
            f"* on (node) group_left (gpu_pool) {c.GPU_NODE_INFO}",
        ),
        Record(c.GPU_PRICE_PER_GPU, f"{c.GPU_NODE_PRICE} / on (node) group_left () {c.GPU_NODE_GPUS}"),
        Record(c.POOL_GPU_COST, f"sum by (gpu_pool) ({c.GPU_NODE_PRICE})"),
        Record(c.POOL_GPUS_PROVISIONED, f"sum by (gpu_pool) ({c.GPU_NODE_GPUS})"),
        Record(
            c.POOL_GPUS_ALLOCATED,
            f"sum by (gpu_pool) (\n  {gpu_requests}\n  * on (node) group_left (gpu_pool) {c.GPU_NODE_INFO}\n)",
        ),
        Record(c.MODEL_GPUS_ALLOCATED, f"sum by (namespace, model) (\n{per_model})"),
        Record(
            c.MODEL_GPU_COST,
            f"sum by (namespace, model) (\n{per_model}  * on (node) group_left () {c.GPU_PRICE_PER_GPU}\n)",
        ),
        *token_cost_records(),
        Record("modelyard:budget_monthly_usd", f"vector({params.monthly_budget_usd:.6g})"),
    ]
    pace = Alert(
        "GPUSpendPaceOverBudget",
        f"sum (avg_over_time({c.POOL_GPU_COST}[6h])) * {params.hours_per_month}\n> on () modelyard:budget_monthly_usd",
        "warning",
        "GPU nodes alone are on pace to exceed the monthly budget",
        "At the last 6 hours' rate, GPU nodes cost ${{ $value | humanize }} a month, over this environment's "
        "whole monthly budget. AWS Budgets tracks the full bill; this alert sees the GPU part hours earlier. "
        "See the cost dashboard for the pools and models behind it.",
        for_="1h",
    )
    return [
        RuleGroup("modelyard-gpu-cost", tuple(records), interval="1m"),
        RuleGroup("modelyard-cost-alerts", (pace,)),
    ]


# ---------------------------------------------------------------------------------------------
# The gateway


def gateway_group() -> RuleGroup:
    """The front door's own failures: a route's breaker at its limit (the gateway refusing with 503 what the
    model's replicas cannot hold), replicas ejected for consecutive 5xx, a model answered by its fallback, an access
    log nobody counts, and a certificate cert-manager has not renewed."""
    routes = s.GATEWAY_ROUTE_CLUSTERS
    return RuleGroup(
        "modelyard-gateway",
        (
            Alert(
                "GatewayBreakerOpen",
                f"max by (envoy_cluster_name) ({s.GATEWAY_BREAKER_OPEN}{{{routes}}}) == 1",
                "warning",
                "The gateway's breaker for {{ $labels.envoy_cluster_name }} is at its limit",
                "The route's requests in flight reached what its model's replicas hold at their maximum for 5 "
                "minutes: the gateway refuses the excess with 503 at once. The model is at capacity or stuck.",
                for_="5m",
            ),
            Alert(
                "GatewayReplicaEjected",
                f"max by (envoy_cluster_name) ({s.GATEWAY_EJECTED}{{{routes}}}) > 0",
                "warning",
                "The gateway has taken replicas of {{ $labels.envoy_cluster_name }} out of its route",
                "{{ $value }} replica(s) answered 5 consecutive 5xx and have been out of the route for 10 minutes "
                "(ejected again each time they return): the rest carry their share.",
                for_="10m",
            ),
            Alert(
                "GatewayFallbackAnswering",
                f'sum by (model) (rate({s.GATEWAY_RESPONSES}{{answered_by="fallback"}}[5m])) > 0',
                "warning",
                "Another region's gateway is answering for {{ $labels.model }}",
                "For 10 minutes the model's fallback has answered {{ $value | humanize }} requests a second: too few "
                "of the model's own replicas are healthy to carry its traffic here (the gateway's access log).",
                for_="10m",
            ),
            Alert(
                "GatewayLogMissing",
                f"sum(rate({s.GATEWAY_UPSTREAM_RQ_XX}{{{routes}}}[15m])) > 0\n"
                f"unless sum(rate({s.GATEWAY_LOG_RECORDS}[15m])) > 0",
                "warning",
                "The gateway's access log is not being counted",
                "Models answered requests through the gateway for 15 minutes and the gateway log counter counted none: "
                "the gateway's own refusals, requests by team and fallback use are not seen.",
                for_="15m",
            ),
            Alert(
                "GatewayCertificateExpiring",
                f"min by (envoy_tls_certificate) ({s.GATEWAY_CERT_EXPIRY}) - time() < {s.GATEWAY_CERT_DAYS} * 86400",
                "warning",
                f"The gateway's certificate expires within {s.GATEWAY_CERT_DAYS} days",
                "cert-manager renews the gateway's certificate 15 days before it expires; this one is still "
                "served with less than a week left, so its renewal failed.",
                for_="1h",
            ),
        ),
    )


def platform_rule_groups(params: RuleParams) -> list[RuleGroup]:
    """Every rule group the platform stack deploys, in evaluation order."""
    return [
        *slo_groups(),
        kserve_group(),
        gpu_group(),
        monitoring_group(),
        drift_group(),
        llm_drift_group(),
        gateway_group(),
        *cost_groups(params),
    ]
