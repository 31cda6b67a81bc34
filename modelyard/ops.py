"""`modelyard ops`: the steps a runbook would otherwise have someone type, against the environment's
Prometheus (prometheus-api-client) and AWS (boto3).

Every command returns rows (plain dicts, printed as a table or as `--json`) and whether it found a
problem (exit 1). Prometheus unreachable, no AWS credentials, an unknown model: `OpsError`, exit 2.
The series are the ones `platform/signals.py` names and `platform/rules.py` records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.platform import signals
from modelyard.platform.rules import error_ratio
from modelyard.policies.governance import conventions

#: Windows the SLO burn rates are reported over, and the error-budget period.


class OpsError(Exception):
    """Something outside the command is missing or wrong; the message says what and how to fix it."""


@dataclass
class Result:
    title: str
    columns: Sequence[str]
    rows: list[dict[str, Any]]
    problem: bool = False
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "problem": self.problem, "rows": self.rows, "notes": self.notes, **self.extra}


class Prometheus:
    """The queries ops needs, through prometheus-api-client."""

    def __init__(self, url: str, timeout: float = 10):
        from prometheus_api_client import PrometheusConnect

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client = PrometheusConnect(url=self.url, disable_ssl=not self.url.startswith("https://"))
        try:
            reachable = self.client.check_prometheus_connection()
        except Exception:  # the client raises on connection errors in some versions
            reachable = False
        if not reachable:
            raise OpsError(
                f"Prometheus at {self.url} is unreachable; port-forward it first (kubectl -n monitoring "
                "port-forward svc/kube-prometheus-stack-prometheus 9090) or pass --prometheus URL"
            )

    def vector(self, expr: str) -> list[tuple[dict[str, str], float]]:
        try:
            result = self.client.custom_query(query=expr, params={"timeout": str(int(self.timeout))})
        except Exception as exc:
            raise OpsError(f"Prometheus at {self.url} refused the query {expr!r}: {exc}") from None
        out = []
        for item in result:
            value = float(item["value"][1])
            out.append((dict(item["metric"]), value))
        return out

    def scalar_by(self, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {tuple(m.get(k, "") for k in labels): v for m, v in self.vector(expr)}

    def alerts(self) -> list[dict[str, Any]]:
        import requests

        try:
            response = requests.get(f"{self.url}/api/v1/alerts", timeout=self.timeout)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise OpsError(f"Prometheus at {self.url}: cannot list alerts: {exc}") from None
        return list(response.json()["data"]["alerts"])


def _num(value: float | None, digits: int = 2) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


def _models(prom: Prometheus, model: str | None) -> dict[tuple[str, ...], float]:
    objectives = prom.scalar_by(signals.SLO_AVAILABILITY, "namespace", "model")
    if model is not None:
        objectives = {k: v for k, v in objectives.items() if k[1] == model}
        if not objectives:
            known = sorted({m for _, m in prom.scalar_by(signals.SLO_AVAILABILITY, "namespace", "model")})
            raise OpsError(f"unknown model {model!r}: models with an SLO here: {', '.join(known) or 'none'}")
    return objectives


#: The SLO alerts `ops slo` mirrors, by SLI kind: (page alert, ticket alert).
SLO_ALERTS = {
    "errors": ("ModelErrorBudgetBurnFast", "ModelErrorBudgetBurnSlow"),
    "slow": ("ModelLatencyBudgetBurnFast", "ModelLatencyBudgetBurnSlow"),
}


def _burning(burns: Mapping[str, float], pairs: Sequence[tuple[str, str, float]]) -> bool:
    """The alert condition: over some (long, short) pair, both ratios above factor x the budget rate."""
    return any(burns[long] > factor and burns[short] > factor for long, short, factor in pairs)


def slo(prom: Prometheus, model: str | None = None) -> Result:
    """Burn rates per model over exactly the windows the SLO alerts use, read from the ratios the rules
    record, and the alerts whose conditions hold (`alerts`): `page` when a fast-burn alert's holds for
    some window pair, `ticket` when only a slow-burn one's does. Also the 30-day availability budget left."""
    # Availability per model; latency per (model, indicator): request, or an LLM's ttft and itl.
    Key = tuple[str, str, str]
    objectives: dict[str, dict[Key, float]] = {
        "errors": {(k[0], k[1], ""): v for k, v in _models(prom, model).items()},
        "slow": {
            (k[0], k[1], k[2]): v
            for k, v in prom.scalar_by(signals.SLO_LATENCY, "namespace", "model", "indicator").items()
        },
    }
    ratios: dict[tuple[str, str], dict[Key, float]] = {
        (kind, w): {
            (k[0], k[1], k[2] if kind == "slow" else ""): v
            for k, v in prom.scalar_by(conventions.sli_ratio(kind, w), "namespace", "model", "indicator").items()
        }
        for kind in conventions.SLI_KINDS
        for w in conventions.SLI_WINDOWS
    }
    period = prom.scalar_by(error_ratio(conventions.BUDGET_PERIOD), "namespace", "model")
    rows, problem = [], False
    for (namespace, name, _), availability in sorted(objectives["errors"].items()):
        row: dict[str, Any] = {"namespace": namespace, "model": name, "objective": availability}
        firing: list[str] = []
        status = "ok"
        for kind in conventions.SLI_KINDS:
            for key, objective in sorted(objectives[kind].items()):
                if key[:2] != (namespace, name):
                    continue  # another model's objective (or none: no latency objective for this model)
                allowed = max(1 - objective, 1e-9)  # an objective of 1 allows no bad requests at all
                burns = {w: (ratios[kind, w].get(key) or 0.0) / allowed for w in conventions.SLI_WINDOWS}
                # The whole-request indicator keeps its name (latency_burn_*); an LLM's are ttft_burn_*, itl_burn_*.
                prefix = "burn" if kind == "errors" else "latency_burn" if key[2] == "request" else f"{key[2]}_burn"
                row.update({f"{prefix}_{w}": _num(burns[w]) for w in conventions.SLI_WINDOWS})
                page, ticket = SLO_ALERTS[kind]
                if _burning(burns, conventions.PAGE_BURNS) and page not in firing:
                    firing.append(page)
                    status = "page"
                if _burning(burns, conventions.TICKET_BURNS) and ticket not in firing:
                    firing.append(ticket)
                    status = "ticket" if status == "ok" else status
        allowed = max(1 - availability, 1e-9)
        row["budget_left"] = _num(max(0.0, 1 - (period.get((namespace, name)) or 0.0) / allowed), 4)
        row["status"] = status
        row["alerts"] = firing
        problem = problem or status != "ok"
        rows.append(row)
    columns = [
        "namespace",
        "model",
        "objective",
        *[f"burn_{w}" for w in conventions.SLI_WINDOWS],
        "budget_left",
        "status",
        "alerts",
    ]
    title = "SLO burn rates (1 = spending the 30-day budget exactly; the alerts' windows and factors)"
    return Result(title, columns, rows, problem)


def gpu(prom: Prometheus) -> Result:
    """Provisioned vs allocated vs used GPUs by pool; idle GPUs and what they cost a day."""
    provisioned = prom.scalar_by(conventions.POOL_GPUS_PROVISIONED, "gpu_pool")
    allocated = prom.scalar_by(conventions.POOL_GPUS_ALLOCATED, "gpu_pool")
    cost = prom.scalar_by(conventions.POOL_GPU_COST, "gpu_pool")
    used = prom.scalar_by(
        f"avg by (gpu_pool) ({signals.GPU_UTIL} * on (hostname) group_left (gpu_pool) "
        f'label_replace({conventions.GPU_NODE_INFO}, "hostname", "$1", "node", "(.*)"))',
        "gpu_pool",
    )
    rows, problem = [], False
    for (pool,) in sorted(set(provisioned) | set(allocated)):
        p, a = provisioned.get((pool,), 0.0), allocated.get((pool,), 0.0)
        idle = max(p - a, 0.0)
        per_gpu_hour = cost.get((pool,), 0.0) / p if p else 0.0
        problem = problem or idle > 0
        rows.append(
            {
                "gpu_pool": pool,
                "provisioned": p,
                "allocated": a,
                "idle": idle,
                "utilisation_pct": _num(used.get((pool,))),
                "idle_usd_per_day": _num(idle * per_gpu_hour * 24),
            }
        )
    by_model = [
        {"namespace": m.get("namespace", ""), "model": m.get("model", ""), "gpus": v}
        for m, v in prom.vector(conventions.MODEL_GPUS_ALLOCATED)
    ]
    return Result(
        "GPUs by pool",
        ["gpu_pool", "provisioned", "allocated", "idle", "utilisation_pct", "idle_usd_per_day"],
        rows,
        problem,
        extra={"byModel": sorted(by_model, key=lambda r: (r["namespace"], r["model"]))},
    )


def cost(prom: Prometheus, budgets: Any, account_id: str, env: str, hours_per_month: int = 730) -> Result:
    """Month-to-date spend and forecast (AWS Budgets) against the budget, beside the live GPU cost."""
    name = conventions.budget_name(env)
    try:
        budget = budgets.describe_budget(AccountId=account_id, BudgetName=name)["Budget"]
    except budgets.exceptions.NotFoundException:
        raise OpsError(f"no AWS Budget named {name} in account {account_id}: is the {env} platform stack up?") from None
    limit = float(budget["BudgetLimit"]["Amount"])
    spend = budget.get("CalculatedSpend", {})
    actual = float(spend.get("ActualSpend", {}).get("Amount", 0))
    forecast = float(spend.get("ForecastedSpend", {}).get("Amount", 0)) if spend.get("ForecastedSpend") else None
    gpu_hourly = sum(v for _, v in prom.vector(f"sum({conventions.POOL_GPU_COST})"))
    row = {
        "budget": name,
        "limit_usd": limit,
        "actual_usd": actual,
        "forecast_usd": forecast,
        "forecast_pct": _num(100 * forecast / limit, 1) if forecast is not None else None,
        "gpu_usd_per_hour_live": _num(gpu_hourly),
        "gpu_usd_month_pace": _num(gpu_hourly * hours_per_month),
    }
    over = (forecast is not None and forecast > limit) or actual > limit
    return Result(f"Spend against the {env} budget", list(row), [row], over)


#: The confidence of the canary's tests: 95 %, one-sided.
CANARY_ALPHA = 0.05


def _rate_test(name: str, canary: tuple[float, float], stable: tuple[float, float], budget: float) -> dict[str, Any]:
    """One canary metric as counts of bad requests (errors, or answers slower than the SLO's threshold) out of all:
    the rate the canary may have (`allowed`: stable's own, or the objective's budget where stable does better),
    Failed when the canary's count is improbably high at that rate (exact binomial test, p < 0.05), Successful when
    the canary has the requests the objective needs and its 95 % upper bound is within twice the allowed rate,
    Inconclusive otherwise."""
    from modelyard import binomial

    (n_c, x_c), (n_s, x_s) = canary, stable
    n, x = round(n_c), min(round(x_c), round(n_c))
    stable_rate = x_s / n_s if n_s else 0.0
    allowed = max(stable_rate, budget)
    tolerance = min(2 * allowed, 0.5)
    needed = binomial.requests_needed(tolerance, CANARY_ALPHA)
    p_value = binomial.sf(x, n, allowed) if n else 1.0
    upper = binomial.upper_bound(x, n, CANARY_ALPHA)
    if n and p_value < CANARY_ALPHA:
        result = "Failed"
    elif n >= needed and upper <= tolerance:
        result = "Successful"
    else:
        result = "Inconclusive"
    return {
        "name": name,
        "canary": _num(x / n if n else None, 5),
        "stable": _num(stable_rate, 5),
        "allowed": _num(allowed, 5),
        "canary_upper_95": _num(upper, 5),
        "p_value": _num(p_value, 4),
        "requests": n,
        "needed": needed,
        "successCondition": f"requests >= {needed} and upper_95 <= {tolerance:.4g}",
        "failureCondition": f"p_value < {CANARY_ALPHA:g} (more than {allowed:.4g} of requests)",
        "result": result,
    }


def canary(prom: Prometheus, model: str, window: str = "30m") -> Result:
    """The canary against stable over `window`, by what the model's SLO counts: its error ratio, and its share of
    requests slower than the SLO's latency threshold. Each an exact binomial test (`_rate_test`) with the
    number of requests the objective needs before it can pass; the verdict in the shape Argo Rollouts' analysis
    uses (each metric Successful, Failed or Inconclusive): promote, roll back, or hold, and "not enough traffic
    yet" rather than promote while the canary has too few requests."""
    canary_isvc = f"{model}-canary"
    where = f'model="{model}"'
    totals = prom.scalar_by(
        f"sum by (inferenceservice) (increase({signals.REQUESTS_TOTAL}{{{where}}}[{window}]))", "inferenceservice"
    )
    if (model,) not in totals and (canary_isvc,) not in totals:
        raise OpsError(f"unknown model {model!r}: no requests from it in the last {window}")
    if (canary_isvc,) not in totals:
        raise OpsError(f"model {model!r} has no canary receiving traffic (no {canary_isvc} in the last {window})")
    errors = prom.scalar_by(
        f"sum by (inferenceservice) (increase({signals.REQUESTS_TOTAL}"
        f'{{{where}, code=~"{signals.ERROR_CODES}"}}[{window}]))',
        "inferenceservice",
    )
    objective = prom.scalar_by(f"max({signals.SLO_AVAILABILITY}{{{where}}})")
    availability = objective.get((), 0.999)
    notes = []
    if () not in objective:
        notes.append(f"no availability objective recorded for {model}: judged against 0.999")

    def counts(table: dict[tuple[str, ...], float], isvc: str) -> float:
        return table.get((isvc,), 0.0)

    metrics = [
        _rate_test(
            "error-ratio",
            (counts(totals, canary_isvc), counts(errors, canary_isvc)),
            (counts(totals, model), counts(errors, model)),
            1 - availability,
        )
    ]
    thresholds = prom.vector(f'{signals.SLO_LATENCY_THRESHOLD}{{{where}, indicator="request"}}')
    share = prom.scalar_by(f'max({signals.SLO_LATENCY}{{{where}, indicator="request"}})')
    if thresholds and () in share:
        le = thresholds[0][0].get("le", "")
        bucket = prom.scalar_by(
            f'sum by (inferenceservice) (increase({signals.REQUEST_DURATION}_bucket{{{where}, le="{le}"}}[{window}]))',
            "inferenceservice",
        )
        seen = prom.scalar_by(
            f'sum by (inferenceservice) (increase({signals.REQUEST_DURATION}_bucket{{{where}, le="+Inf"}}[{window}]))',
            "inferenceservice",
        )

        def slow(isvc: str) -> tuple[float, float]:
            n = counts(seen, isvc)
            return n, max(0.0, n - counts(bucket, isvc))

        metrics.append(_rate_test(f"slower-than-{float(le) * 1000:g}ms", slow(canary_isvc), slow(model), 1 - share[()]))
    else:
        notes.append(f"no request latency objective recorded for {model}: latency not judged")
    results = {m["result"] for m in metrics}
    short = [m for m in metrics if m["requests"] < m["needed"]]
    verdict = "rollback" if "Failed" in results else "promote" if results == {"Successful"} else "hold"
    # The shadow verdict on the canary's version, where a shadow of it ran: errors and latency can pass while the
    # answers changed, which only the comparison sees; such a canary is held for a person to decide.
    versions = prom.scalar_by(
        f"max by (inferenceservice, model_version) ({signals.REQUESTS_TOTAL}{{{where}}})",
        "inferenceservice",
        "model_version",
    )
    canary_versions = {v for (isvc, v) in versions if isvc == canary_isvc}
    compared = [r for r in _comparisons(prom, model) if r["candidate"] in canary_versions]
    shadow_verdict = compared[0]["verdict"] if compared else None
    if shadow_verdict is None:
        notes.append("no shadow comparison of the canary's version: its answers are not judged")
    else:
        notes.append(f"shadow comparison of version {compared[0]['candidate']}: {shadow_verdict}")
        if shadow_verdict == "differs" and verdict == "promote":
            verdict = "hold"
            notes.append("held: the canary's answers differ from stable's beyond its noise (modelyard ops shadow)")
    cn, sn = counts(totals, canary_isvc), counts(totals, model)
    notes.insert(0, f"canary {int(cn)} requests, stable {int(sn)} in the last {window}")
    title = f"Canary analysis of {model}: {verdict}"
    if verdict == "hold" and short:
        worst = max(short, key=lambda m: m["needed"])
        title += (
            f" (not enough traffic yet: {worst['requests']} of the {worst['needed']} requests {worst['name']} needs)"
        )
    return Result(
        title,
        ["name", "canary", "stable", "allowed", "canary_upper_95", "p_value", "requests", "needed", "result"],
        metrics,
        verdict == "rollback",
        notes,
        extra={"verdict": verdict, "window": window, "enough_traffic": not short, "shadow": shadow_verdict},
    )


def drift(prom: Prometheus, model: str) -> Result:
    """The drift worker's latest tests of each version of `model`, one row a signal, with the verdict the drift
    alerts read (platform/rules.py: drift_group): the p-value against the level (the input signals at the split
    level), `too few samples` below the alerts' window, `no reference` until the tap has sent one. Beside them,
    the share of sampled texts the model's pods dropped (their tap buffer full) over 15 minutes."""
    where = f'model="{model}"'
    windows = prom.scalar_by(f"{signals.DRIFT_WINDOW}{{{where}}}", "namespace", "model_version")
    if not windows:
        if prom.vector(f"{signals.LLM_REQUESTS}{{{where}}}"):
            return _llm_drift(prom, model)
        known = sorted({m.get("model", "") for m, _ in prom.vector(signals.DRIFT_WINDOW)})
        llms = sorted({m.get("model", "") for m, _ in prom.vector(signals.LLM_REQUESTS)})
        raise OpsError(
            f"no drift samples of model {model!r}: its pods have no tap or the drift worker is not scraped, and "
            f"it is no LLM vLLM serves (models with drift samples: {', '.join(known) or 'none'}; LLMs: "
            f"{', '.join(llms) or 'none'})"
        )
    references = prom.scalar_by(f"{signals.DRIFT_REFERENCE}{{{where}}}", "namespace", "model_version")
    labels = ("namespace", "model_version", "signal")
    p_values = prom.scalar_by(f"{signals.DRIFT_P_VALUE}{{{where}}}", *labels)
    psi = prom.scalar_by(f"{signals.DRIFT_PSI}{{{where}}}", *labels)
    centroid = prom.scalar_by(f"{signals.DRIFT_CENTROID}{{{where}}}", "namespace", "model_version")
    input_alpha = signals.DRIFT_ALPHA / len(signals.DRIFT_INPUT_SIGNALS)
    rows = []
    for (namespace, version), window in sorted(windows.items()):
        for sig in (signals.DRIFT_OUTPUT_SIGNAL, *signals.DRIFT_INPUT_SIGNALS):
            key = (namespace, version, sig)
            alpha = signals.DRIFT_ALPHA if sig == signals.DRIFT_OUTPUT_SIGNAL else input_alpha
            p = p_values.get(key)
            if not references.get((namespace, version)):
                verdict = "no reference"
            elif window < signals.DRIFT_MIN_WINDOW or p is None:
                verdict = f"too few samples ({int(window)} of {signals.DRIFT_MIN_WINDOW})"
            else:
                verdict = "drift" if p < alpha else "no drift"
            rows.append(
                {
                    "namespace": namespace,
                    "version": version,
                    "signal": sig,
                    "side": "output" if sig == signals.DRIFT_OUTPUT_SIGNAL else "input",
                    "p_value": _num(p, 4),
                    "level": alpha,
                    "psi": _num(psi.get(key), 3),
                    "centroid_distance": _num(centroid.get((namespace, version)), 4)
                    if sig == signals.DRIFT_OUTPUT_SIGNAL
                    else None,
                    "window": int(window),
                    "verdict": verdict,
                }
            )
    tap = prom.scalar_by(f"sum by (outcome) (increase({signals.TAP_SAMPLES_TOTAL}{{{where}}}[15m]))", "outcome")
    sampled = tap.get(("sampled",), 0.0)
    notes = [
        f"windows of at least {signals.DRIFT_MIN_WINDOW} samples; levels {signals.DRIFT_ALPHA:g} (output) and "
        f"{input_alpha:g} (each input signal); the alerts wait 5 minutes"
    ]
    if sampled:
        notes.append(f"tap: {tap.get(('dropped',), 0.0) / sampled:.1%} of sampled texts dropped in 15 minutes")
    drifting = any(r["verdict"] == "drift" for r in rows)
    return Result(
        f"Drift of {model}: {'drift' if drifting else 'no drift found'}",
        ["namespace", "version", "side", "signal", "p_value", "level", "psi", "centroid_distance", "window", "verdict"],
        rows,
        drifting,
        notes,
    )


def _llm_drift(prom: Prometheus, model: str) -> Result:
    """An LLM's answers, from vLLM's own series as the platform records them (platform/rules.py llm_drift_group):
    each InferenceService's last hour against its model's day before, the share cut off at max_tokens with the
    z statistic the alert reads, and tokens per answer."""
    where = f'model="{model}"'
    isvc = ("namespace", "inferenceservice")
    requests = prom.scalar_by(f"{signals.LLM_REQUESTS}{{{where}}}", *isvc)
    cut = prom.scalar_by(f"{signals.LLM_CUT_OFF}{{{where}}}", *isvc)
    z = prom.scalar_by(f"{signals.LLM_CUT_OFF_Z}{{{where}}}", *isvc)
    tokens = prom.scalar_by(f"{signals.LLM_ANSWER_TOKENS}{{{where}}}", *isvc)
    base_requests = prom.scalar_by(f"{signals.LLM_REQUESTS_BASELINE}{{{where}}}", "namespace")
    base_cut = prom.scalar_by(f"{signals.LLM_CUT_OFF_BASELINE}{{{where}}}", "namespace")
    base_tokens = prom.scalar_by(f"{signals.LLM_ANSWER_TOKENS_BASELINE}{{{where}}}", "namespace")
    least = signals.LLM_DRIFT_MIN_REQUESTS
    rows = []
    for (namespace, name), n in sorted(requests.items()):
        n0 = base_requests.get((namespace,), 0.0)
        stat = z.get((namespace, name))
        if n < least or n0 < least:
            verdict = f"too few requests ({int(min(n, n0))} of {least})"
        elif stat is None or math.isnan(stat):
            verdict = "no cut-offs either side"
        else:
            verdict = "drift" if abs(stat) > signals.LLM_DRIFT_Z else "no drift"
        rows.append(
            {
                "namespace": namespace,
                "inferenceservice": name,
                "requests": int(n),
                "baseline_requests": int(n0),
                "cut_off": _num(cut.get((namespace, name), 0.0) / n if n else None, 4),
                "baseline_cut_off": _num(base_cut.get((namespace,), 0.0) / n0 if n0 else None, 4),
                "z": _num(stat, 2),
                "tokens_per_answer": _num(tokens.get((namespace, name)), 1),
                "baseline_tokens": _num(base_tokens.get((namespace,)), 1),
                "verdict": verdict,
            }
        )
    drifting = any(r["verdict"] == "drift" for r in rows)
    return Result(
        f"Answers of {model}: {'drift' if drifting else 'no drift found'}",
        [
            "namespace",
            "inferenceservice",
            "requests",
            "baseline_requests",
            "cut_off",
            "baseline_cut_off",
            "z",
            "tokens_per_answer",
            "baseline_tokens",
            "verdict",
        ],
        rows,
        drifting,
        [
            f"the last {signals.LLM_DRIFT_WINDOW} of each InferenceService against its model's "
            f"{signals.LLM_DRIFT_BASELINE} before; drift at |z| > {signals.LLM_DRIFT_Z:g} with {least} requests a side "
            "(the alert waits 15 minutes)"
        ],
    )


def _comparisons(prom: Prometheus, model: str) -> list[dict[str, Any]]:
    """The drift worker's comparisons of `model`'s versions, each from the side of the version with a noise floor
    (the stable one: its route mirrors it copies of the requests it serves; a shadow gets one copy of each)."""
    where = f'model="{model}"'
    pair = ("model_version", "other_version")
    noise = prom.scalar_by(f"{signals.SHADOW_NOISE_PAIRS}{{{where}}}", "model_version")
    threshold = prom.scalar_by(f"{signals.SHADOW_NOISE_THRESHOLD}{{{where}}}", "model_version")
    noise_knn = prom.scalar_by(f"{signals.SHADOW_NOISE_KNN}{{{where}}}", "model_version")
    figures = {
        name: prom.scalar_by(f"{metric}{{{where}}}", *pair)
        for name, metric in (
            ("pairs", signals.SHADOW_PAIRS),
            ("exceeding", signals.SHADOW_EXCEEDING),
            ("knn", signals.SHADOW_KNN),
            ("p_value", signals.SHADOW_P_VALUE),
        )
    }
    cosine = prom.scalar_by(f"{signals.SHADOW_COSINE}{{{where}}}", *pair, "quantile")
    chosen: dict[frozenset[str], tuple[tuple[str, str], str]] = {}
    for labels, _ in prom.vector(f"{signals.SHADOW_VERDICT}{{{where}}} == 1"):
        key = (labels.get("model_version", ""), labels.get("other_version", ""))
        # Each comparison is exported from both sides: the side with a noise floor is the stable one (without one
        # on either side, the lower version).
        rank = ((key[0],) not in noise, key)
        held = chosen.get(frozenset(key))
        if held is None or rank < ((held[0][0],) not in noise, held[0]):
            chosen[frozenset(key)] = (key, labels.get("verdict", ""))
    rows = []
    for key, verdict in chosen.values():
        stable = key[:1]
        rows.append(
            {
                "stable": key[0],
                "candidate": key[1],
                "pairs": int(figures["pairs"].get(key, 0)),
                "beyond_noise": None if key not in figures["exceeding"] else int(figures["exceeding"][key]),
                "cosine_p1": _num(cosine.get((*key, "0.01")), 4),
                "cosine_p5": _num(cosine.get((*key, "0.05")), 4),
                "cosine_p50": _num(cosine.get((*key, "0.5")), 4),
                "knn_overlap": _num(figures["knn"].get(key), 3),
                "noise_pairs": int(noise.get(stable, 0)),
                "noise_threshold": _num(threshold.get(stable), 7),
                "noise_knn_overlap": _num(noise_knn.get(stable), 3),
                "p_value": _num(figures["p_value"].get(key), 4),
                "verdict": verdict,
            }
        )
    return sorted(rows, key=lambda r: (r["stable"], r["candidate"]))


def shadow(prom: Prometheus, model: str) -> Result:
    """The drift worker's verdict on each version of `model` answering the same texts as the stable one (a shadow,
    on copies of the stable's requests): `same` (within the stable version's own noise: at most a few texts beyond
    its threshold, the same nearest neighbours), `differs`, or `hold` (too few pairs, or no noise floor yet).
    The figures behind it: how many texts both answered, how many diverged beyond the stable's noise, the cosine
    percentiles, the nearest neighbours kept, and the noise floor's own. Exit 1 when a candidate differs."""
    rows = _comparisons(prom, model)
    if not rows:
        known = sorted({m.get("model", "") for m, _ in prom.vector(signals.SHADOW_PAIRS)})
        raise OpsError(
            f"no shadow comparison of model {model!r}: no shadow runs, or its copies have not reached the drift "
            f"worker yet (models compared: {', '.join(known) or 'none'})"
        )
    verdicts = {r["verdict"] for r in rows}
    verdict = "differs" if "differs" in verdicts else "same" if verdicts == {"same"} else "hold"
    notes = [
        "a text counts beyond the noise when 1 - cosine exceeds the stable version's own 99th percentile against "
        "itself (noise_threshold); differs: more than 2 % of texts beyond it (exact binomial, p < 0.01) or nearest "
        "neighbours kept 5 points below the noise's; same: at least 100 pairs of each kind, at most 5 % beyond "
        "(95 % upper bound)"
    ]
    for r in rows:
        if r["verdict"] == "hold":
            need = "a noise floor (stable pairs)" if r["beyond_noise"] is None else "more pairs"
            notes.append(f"{r['stable']} vs {r['candidate']}: hold, waiting for {need}")
    return Result(
        f"Shadow comparison of {model}: {verdict}",
        [
            "stable",
            "candidate",
            "pairs",
            "beyond_noise",
            "cosine_p1",
            "cosine_p5",
            "cosine_p50",
            "knn_overlap",
            "noise_pairs",
            "noise_threshold",
            "noise_knn_overlap",
            "verdict",
        ],
        rows,
        verdict == "differs",
        notes,
        extra={"verdict": verdict},
    )


def _route(cluster: str) -> str:
    """`httproute/<namespace>/<name>/rule/<i>` (Envoy Gateway's cluster of a route's rule) as `<namespace>/<name>`."""
    parts = cluster.split("/")
    return f"{parts[1]}/{parts[2]}" if len(parts) >= 3 and parts[0] == "httproute" else cluster


def gateway(prom: Prometheus, window: str = "5m") -> Result:
    """Each model route at the gateway: requests by class, retries, the breaker and the replicas ejected (what the
    Gateway alerts read, without their wait); from the gateway's access log, what the gateway answered itself by
    status (401, 403, 429, its own 503) and the share a fallback answered. A route whose breaker is at its limit,
    that has replicas ejected, or whose fallback answers, is a problem."""
    routes = signals.GATEWAY_ROUTE_CLUSTERS
    by_class = prom.scalar_by(
        f"sum by (envoy_cluster_name, envoy_response_code_class) "
        f"(rate({signals.GATEWAY_UPSTREAM_RQ_XX}{{{routes}}}[{window}]))",
        "envoy_cluster_name",
        "envoy_response_code_class",
    )
    retries = prom.scalar_by(
        f"sum by (envoy_cluster_name) (rate({signals.GATEWAY_RETRIES}{{{routes}}}[{window}]))", "envoy_cluster_name"
    )
    breaker = prom.scalar_by(
        f"max by (envoy_cluster_name) ({signals.GATEWAY_BREAKER_OPEN}{{{routes}}})", "envoy_cluster_name"
    )
    ejected = prom.scalar_by(
        f"max by (envoy_cluster_name) ({signals.GATEWAY_EJECTED}{{{routes}}})", "envoy_cluster_name"
    )
    healthy = prom.scalar_by(
        f"max by (envoy_cluster_name) ({signals.GATEWAY_HEALTHY}{{{routes}}})", "envoy_cluster_name"
    )
    responses = signals.GATEWAY_RESPONSES
    own = prom.scalar_by(
        f'sum by (model, code) (rate({responses}{{answered_by="gateway"}}[{window}]))', "model", "code"
    )
    by_whom = prom.scalar_by(
        f'sum by (model, answered_by) (rate({responses}{{answered_by!="gateway"}}[{window}]))', "model", "answered_by"
    )
    clusters = sorted({c for c, _ in by_class} | set(k[0] for k in breaker) | set(k[0] for k in ejected))
    rows, problem = [], False
    for cluster in clusters:
        total = sum(v for (c, _), v in by_class.items() if c == cluster)
        errors = by_class.get((cluster, "5"), 0.0)
        open_ = breaker.get((cluster,), 0.0) >= 1
        out = ejected.get((cluster,), 0.0)
        model = _route(cluster).split("/")[-1]
        answered = sum(v for (m, _), v in by_whom.items() if m == model)
        fallback = by_whom.get((model, "fallback"), 0.0)
        problem = problem or open_ or out > 0 or fallback > 0
        refusals = ", ".join(f"{code} {_num(v)}/s" for (m, code), v in sorted(own.items()) if m == model and v > 0)
        rows.append(
            {
                "route": _route(cluster),
                "requests_per_s": _num(total),
                "error_share": _num(errors / total if total else None, 4),
                "retries_per_s": _num(retries.get((cluster,))),
                "breaker": "at its limit" if open_ else "closed",
                "ejected": out,
                "healthy": healthy.get((cluster,)),
                "gateway_answers": refusals or ("none" if (own or by_whom) else None),
                "fallback_share": _num(fallback / answered if answered else None, 4),
            }
        )
    notes = (
        []
        if own or by_whom
        else [
            "no gateway log counts: is the gateway log counter deployed (the catalog's gateway_log) and receiving "
            "(modelyard_gateway_log_records_total)? Without them its own answers and fallback use are unknown."
        ]
    )
    return Result(
        f"Gateway routes over {window}",
        [
            "route",
            "requests_per_s",
            "error_share",
            "retries_per_s",
            "breaker",
            "ejected",
            "healthy",
            "gateway_answers",
            "fallback_share",
        ],
        rows,
        problem,
        notes,
    )


def alerts(prom: Prometheus) -> Result:
    """What is firing or pending, with each alert's runbook."""
    rows = []
    for a in prom.alerts():
        labels: Mapping[str, str] = a.get("labels", {})
        notes: Mapping[str, str] = a.get("annotations", {})
        subject = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
        rows.append(
            {
                "alert": labels.get("alertname", ""),
                "severity": labels.get("severity", ""),
                "state": a.get("state", ""),
                "labels": subject,
                "summary": notes.get("summary", ""),
                "runbook": notes.get("runbook_url", ""),
            }
        )
    rows.sort(key=lambda r: ({"critical": 0, "warning": 1}.get(r["severity"], 2), r["alert"], r["labels"]))
    firing = any(r["state"] == "firing" for r in rows)
    return Result("Alerts", ["alert", "severity", "state", "labels", "summary", "runbook"], rows, firing)


def render(result: Result) -> str:
    """A table for a terminal (rich), with its notes."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    table = Table(title=result.title)
    for column in result.columns:
        table.add_column(column)
    for row in result.rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in result.columns))
    buffer = StringIO()
    console = Console(file=buffer, width=160, force_terminal=False, color_system=None)
    console.print(table)
    for note in result.notes:
        console.print(note)
    if not result.rows:
        console.print("(nothing)")
    return buffer.getvalue()
