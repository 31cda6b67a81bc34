"""The model catalog: which models an environment serves, validated before anything is registered.

A workloads stack file holds `modelyard:workloads` (the environment, its tier, the platform stack to
read, and the catalog file); the catalog (`workloads/catalog/<env>.yaml`) lists the models. Both are
frozen pydantic models with the same error standard as the platform config: one line per problem,
naming the full path, what is allowed and the bad value.

A model's artifacts live at `s3://<the environment's model bucket>/<name>/<version>/`, which is where
`modelyard model push` puts them, so a catalog cannot point a model at another bucket.

Drift: `drift: {image_tag: 1.0.0-cpu}` beside `models:` runs the environment's drift worker (the serving image's
`modelyard_server.drift_worker`) and has every model on the modelyard runtime sample `sample_percent` of its
answered texts to it (workloads/drift.py, docs/model-quality.md).

Gateway log: `gateway_log: {image_tag: 1.0.0-cpu}` runs the gateway log counter (the serving image's
`modelyard_server.gateway_log`), which the gateway's proxies send their access log to: who called each model, what
the gateway refused itself, what a fallback answered (workloads/gateway_log.py, docs/gateway.md).

Canary: `canary: {version: "2", traffic_percent: 10}` runs version 2 beside the stable version, and the model's
gateway route sends it exactly that share (workloads/routes.py).
Promote by setting `version: "2"` (a canary whose version is the stable one is finished and not
deployed); roll back with `traffic_percent: 0`. Each is a one-line change.

Shadow: `shadow: {version: "2", percent: 10}` runs version 2 on copies of 10 % of the model's requests (its route's
request mirror), answering nobody: a candidate compared on live traffic before any caller sees it. The route copies
the stable version another 10 %, its noise floor; the drift worker judges the two versions' answers to the same texts
(`modelyard ops shadow`, docs/model-quality.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from modelyard.config import Tags
from modelyard.platform.signals import DRIFT_MIN_WINDOW
from modelyard.policies.governance import fit, gpus
from modelyard.policies.governance.conventions import WORKLOADS_CONFIG_KEY
from modelyard.stackfile import read_stack_config
from modelyard.validation import (
    ConfigError,
    DnsLabel,
    FieldProblems,
    Hostname,
    Model,
    RoleArn,
    Seq,
    TagValue,
    fmt_value,
    pattern,
    read_yaml,
    validate_model,
    validate_stack_key,
)
from modelyard.workloads.runtimes import RUNTIMES, ImageTag, Runtime, Signal, refuse_latest, runtime_for, signal

WORKLOADS_KEY = WORKLOADS_CONFIG_KEY
CATALOG = "catalog"

Version = Annotated[str, pattern(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,62}$", "a version such as 1, 2 or 2026-11-01")]
Quantity = Annotated[str, pattern(r"^\d+(\.\d+)?(m|Mi|Gi)?$", "a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi")]
StackName = Annotated[
    str,
    pattern(
        r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$",
        "a stack reference such as organization/modelyard-platform/dev",
    ),
]
if TYPE_CHECKING:
    RuntimeConfig = Any
else:
    #: The catalog's `runtime:` mapping: one variant per registered runtime, chosen by `kind`.
    RuntimeConfig = Annotated[Union[tuple(r.config for r in RUNTIMES.values())], Field(discriminator="kind")]  # noqa: UP007


class GpuRequest(Model):
    pool: DnsLabel
    count: int = Field(default=1, ge=1, le=8)


class Resources(Model):
    cpu: Quantity
    memory: Quantity
    gpu: GpuRequest | None = None


#: The autoscaler's own metrics, for every runtime: percent of the request (KServe's HPA). A runtime adds
#: its serving signals (workloads/runtimes: inflight for the embedding server, queue and kv_cache for vLLM).
HPA_TARGETS = {"cpu": (70, 10, 100), "memory": (70, 10, 100)}


class Awake(Model):
    """When a model that scales to zero runs (KEDA's cron trigger, one replica from `start` until `end`, as
    five-field cron schedules in `timezone`); past `end` it sleeps once its queue is empty."""

    timezone: str
    start: str
    end: str

    @model_validator(mode="after")
    def _schedules(self) -> Awake:
        import zoneinfo

        from modelyard.policies.governance import admission

        problems: list[tuple[str, str, object]] = []
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(("timezone", "must be an IANA time zone such as Europe/Berlin or Etc/UTC", self.timezone))
        for key in ("start", "end"):
            try:
                admission.parse_cron(getattr(self, key))
            except admission.Refused as exc:
                problems.append(
                    (key, f"must be a cron schedule as KEDA reads it (such as 0 8 * * 1-5): {exc}", getattr(self, key))
                )
        if not problems and self.start == self.end:
            problems.append(("end", "must differ from start", self.end))
        if problems:
            raise FieldProblems(problems)
        return self


class Replicas(Model):
    #: 0 scales the model to zero outside `awake` (dev only: nothing wakes it on a request; docs/runtimes.md).
    min: int = Field(ge=0, le=100)
    max: int = Field(ge=1, le=200)
    #: What the autoscaler scales on. cpu or memory: the HPA, on utilisation of the request (KServe
    #: Standard mode). A runtime's serving signal (inflight for modelyard; queue or kv_cache for vllm): KEDA,
    #: per replica, read from Prometheus; the default for GPU models on a runtime that has one, whose CPU
    #: says nothing about the GPU's load. Unset: the runtime's first signal for those, cpu for the rest.
    scale_metric: Annotated[str, pattern(r"^[a-z_]{1,32}$", "cpu, memory or a runtime's serving signal")] | None = None
    #: Percent for cpu and memory (default 70); for a serving signal, its unit per replica.
    scale_target: int | None = None
    #: With min 0: when the model runs.
    awake: Awake | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Replicas:
        if self.min > self.max:
            raise FieldProblems([("max", f"must be ≥ min ({self.min})", self.max)])
        if self.min == 0 and self.awake is None:
            raise FieldProblems(
                [
                    (
                        "awake",
                        "is required with min 0: a schedule that wakes the model (KServe's Standard mode and KEDA "
                        "at the pinned versions have nothing that wakes a model at zero on a request)",
                        None,
                    )
                ]
            )
        if self.min > 0 and self.awake is not None:
            raise FieldProblems([("awake", f"is only for a model that scales to zero (min 0, got {self.min})", "set")])
        return self


class Canary(Model):
    version: Version
    traffic_percent: int = Field(ge=0, le=99)


class Fallback(Model):
    """Where the model's requests go while its own replicas cannot answer: the same catalog entry behind another
    modelyard gateway (another region), at `host` (its `<model>.<gateway hostname>`). The gateway sends there only
    once too few of its own replicas are healthy (Envoy's priorities: a lower one takes the share the higher cannot,
    past an overprovisioning of 1.4), with the key in the model namespace's Secret `modelyard-fallback-<model>`
    (its `credential`: `Bearer <key>`), over TLS checked against the CA in ConfigMap `ca_config_map` (its `ca.crt`),
    or the system's CAs."""

    host: Hostname
    #: The version it serves: the entry's own for an embedding or a prediction (the same vector space).
    version: Version
    ca_config_map: DnsLabel | None = None


class Shadow(Model):
    """A candidate version that answers copies of `percent` of the model's requests, mirrored by its gateway route,
    never its callers: Envoy sends the copy and drops the answer, so a slow or dead shadow costs the primary
    nothing. Its pods tap their answers to the drift worker under its version, which compares them with the stable
    version's answers to the same texts; its series are the model's name with `-shadow`, outside the model's SLO."""

    version: Version
    percent: int = Field(ge=1, le=100)


class Slo(Model):
    """Availability, and the latency objectives the runtime reads (workloads/runtimes: `latency_slos`):
    p99_latency_ms for a whole request (modelyard, kserve); ttft_ms and itl_ms, time to first token and
    between tokens, at latency_percentile, for an LLM (vllm). Each threshold is one of the histogram's buckets."""

    availability: float = Field(ge=0.9, le=0.99999)
    p99_latency_ms: int | None = None
    ttft_ms: int | None = None
    itl_ms: int | None = None
    latency_percentile: Literal[95, 99] = 95


class Load(Model):
    """The load the entry must carry at its objectives: what `modelyard loadtest` sends by default (open loop),
    `requests_per_second` across the model (every replica), `texts_per_request` texts in each (an embedding
    model's; an LLM's request is one prompt)."""

    requests_per_second: float = Field(gt=0, le=10_000)
    texts_per_request: int = Field(default=1, ge=1, le=2048)


#: A team the gateway admits: it names a Secret and starts client ids, so a lowercase DNS label (no dots).
TEAM_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
#: Caller teams one model may name: Envoy Gateway takes at most 16 local rate limit rules per policy (one a team).
MAX_CALLERS = 16


class Access(Model):
    """Who may call the model through the gateway, and how fast. `callers`: the teams whose API keys the gateway
    admits for it (its own team always); `requests_per_second`: each caller team's rate, in requests (the gateway
    cannot count an embedding request's texts or an LLM's tokens before answering)."""

    callers: Seq[TagValue] = ()
    requests_per_second: float = Field(default=20, gt=0, le=100_000)


def _slo_problems(rt: Runtime, slo: Slo) -> list[tuple[str, str, object]]:
    problems: list[tuple[str, str, object]] = []
    wanted = rt.latency_slos
    if "latency_percentile" in slo.model_fields_set and all(w.percentile for w in wanted.values()):
        fixed = ", ".join(f"{k} is p{w.percentile}" for k, w in wanted.items())
        problems.append(
            ("slo.latency_percentile", f"is not read by the {rt.kind} runtime ({fixed})", slo.latency_percentile)
        )
    for key in ("p99_latency_ms", "ttft_ms", "itl_ms"):
        value = getattr(slo, key)
        if key not in wanted:
            if value is not None:
                problems.append(
                    (f"slo.{key}", f"is not read by the {rt.kind} runtime; it takes {', '.join(wanted)}", value)
                )
            continue
        allowed = wanted[key].thresholds_ms
        if value is None:
            problems.append((f"slo.{key}", f"is required for the {rt.kind} runtime", None))
        elif value not in allowed:
            problems.append(
                (
                    f"slo.{key}",
                    f"must be one of {wanted[key].histogram} buckets: {', '.join(map(str, allowed))}",
                    value,
                )
            )
    return problems


def _load_problems(rt: Runtime, load: Load | None) -> list[tuple[str, str, object]]:
    if load is None:
        return []
    most = rt.max_texts_per_request
    if most is None and "texts_per_request" in load.model_fields_set:
        return [
            (
                "load.texts_per_request",
                f"is not read by the {rt.kind} runtime (a request is one prompt)",
                load.texts_per_request,
            )
        ]
    if most is not None and load.texts_per_request > most:
        return [
            (
                "load.texts_per_request",
                f"must be at most {most}, the texts the {rt.kind} server takes in one request",
                load.texts_per_request,
            )
        ]
    return []


class ModelEntry(Model):
    name: Annotated[
        str, pattern(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", "a lowercase DNS label of at most 40 characters")
    ]
    team: TagValue
    runtime: RuntimeConfig
    version: Version
    resources: Resources
    replicas: Replicas
    slo: Slo
    canary: Canary | None = None
    shadow: Shadow | None = None
    fallback: Fallback | None = None
    load: Load | None = None
    access: Access = Access()

    @property
    def callers(self) -> tuple[str, ...]:
        """The teams whose keys the gateway admits for this model: its own first, then the catalog's callers."""
        return (self.team, *(t for t in dict.fromkeys(self.access.callers) if t != self.team))

    @property
    def runtime_module(self) -> Runtime:
        """The runtime module this entry's `runtime.kind` selects."""
        return runtime_for(self.runtime.kind)

    @model_validator(mode="after")
    def _runtime(self) -> ModelEntry:
        """The SLO keys the runtime reads, its own checks, and the scale metric and target (filled in)."""
        rt = self.runtime_module
        problems = [*_slo_problems(rt, self.slo), *_load_problems(rt, self.load), *rt.check(self)]
        if self.fallback is not None and not rt.fallback_may_differ and self.fallback.version != self.version:
            problems.append(
                (
                    "fallback.version",
                    f"must be the entry's version {self.version!r}: a {rt.kind} model's fallback answers in the same "
                    "vector space only as the same model and version",
                    self.fallback.version,
                )
            )
        for i, team in enumerate(self.callers):
            if not TEAM_NAME.fullmatch(team):
                where = "team" if i == 0 else f"access.callers[{list(self.access.callers).index(team)}]"
                problems.append(
                    (
                        where,
                        f"names the team's key Secret (modelyard-api-keys-{team}) and starts its client ids "
                        "(<team>.<client>) at the gateway: a lowercase DNS label (a-z, 0-9, '-')",
                        team,
                    )
                )
        if len(self.callers) > MAX_CALLERS:
            problems.append(
                (
                    "access.callers",
                    f"names {len(self.callers)} teams with the model's own; at most {MAX_CALLERS} (one rate limit "
                    "rule each, Envoy Gateway's cap)",
                    list(self.access.callers),
                )
            )
        if problems:
            raise FieldProblems(problems)
        r = self.replicas
        has_signal = bool(rt.signals)
        default = rt.signals[0].name if self.resources.gpu and has_signal else "cpu"
        metric = r.scale_metric or default
        allowed = [*HPA_TARGETS, *(sig.name for sig in rt.signals)]
        if metric not in allowed:
            theirs = next(((o.kind, sig) for o in RUNTIMES.values() if (sig := signal(o, metric))), None)
            why = (
                f"{metric} is a signal of the {theirs[0]} runtime ({theirs[1].series})"
                if theirs
                else f"{metric} is no signal"
            )
            raise FieldProblems(
                [("replicas.scale_metric", f"{why}; the {rt.kind} runtime scales on {', '.join(allowed)}", metric)]
            )
        if self.resources.gpu and has_signal and metric in HPA_TARGETS:
            raise FieldProblems(
                [
                    (
                        "replicas.scale_metric",
                        f"{metric} does not measure a GPU predictor's load (its CPU is busy at a few percent of the "
                        f"GPU); use {' or '.join(sig.name for sig in rt.signals)}, the serving signal",
                        metric,
                    )
                ]
            )
        found = signal(rt, metric)
        default_target, low, high = (
            HPA_TARGETS[metric] if found is None else (found.default_target, found.low, found.high)
        )
        target = r.scale_target if r.scale_target is not None else default_target
        if not low <= target <= high:
            unit = "percent of the request" if found is None else found.unit
            raise FieldProblems(
                [("replicas.scale_target", f"must be {low} to {high} for scale_metric {metric} ({unit})", target)]
            )
        if r.min == 0 and found is None:
            raise FieldProblems(
                [
                    (
                        "replicas.min",
                        f"0 needs a serving signal to scale on (KEDA scales to zero; KServe's HPA on {metric} cannot)",
                        0,
                    )
                ]
            )
        if r.min == 0 and self.canary is not None:
            raise FieldProblems([("canary", "needs the stable version running: replicas.min ≥ 1", self.canary.version)])
        if r.min == 0 and self.shadow is not None:
            raise FieldProblems(
                [
                    (
                        "shadow",
                        "needs the stable version running to copy its requests: replicas.min ≥ 1",
                        self.shadow.version,
                    )
                ]
            )
        object.__setattr__(self, "replicas", r.model_copy(update={"scale_metric": metric, "scale_target": target}))
        return self

    @property
    def scaling_signal(self) -> Signal | None:
        """The serving signal KEDA scales this model on, or None where KServe's HPA does (cpu, memory)."""
        assert self.replicas.scale_metric is not None
        return signal(self.runtime_module, self.replicas.scale_metric)

    @property
    def canary_active(self) -> bool:
        return self.canary is not None and self.canary.traffic_percent > 0 and self.canary.version != self.version

    @property
    def shadow_active(self) -> bool:
        """A shadow runs while its version is not the stable one (promoted, it is finished)."""
        return self.shadow is not None and self.shadow.version != self.version

    def shadow_replicas(self) -> int:
        """The shadow's minimum replicas: its share of the stable minimum, at least one."""
        assert self.shadow is not None
        return max(1, math.ceil(self.replicas.min * self.shadow.percent / 100))

    def canary_replicas(self) -> int:
        """The canary's minimum replicas (the stable version keeps replicas.min). The gateway's route splits traffic
        by weight, whatever the replica counts; the canary starts with what its share of the stable minimum needs,
        at least one."""
        assert self.canary is not None
        return max(1, math.ceil(self.replicas.min * self.canary.traffic_percent / 100))


class Drift(Model):
    """The environment's drift worker and what the taps send it."""

    #: The model server image (this repository's, in the platform's ECR) whose drift worker runs.
    image_tag: ImageTag
    #: Samples per window tested; the drift alerts read windows of at least DRIFT_MIN_WINDOW.
    window: int = Field(default=DRIFT_MIN_WINDOW, ge=DRIFT_MIN_WINDOW, le=5000)
    #: Percent of each model's answered texts its pods sample (at 1 %, a model answering 100 texts/s sends one
    #: a second: a 200-sample window every 3 minutes and 20 seconds).
    sample_percent: float = Field(default=1.0, gt=0, le=100)

    @model_validator(mode="after")
    def _immutable(self) -> Drift:
        refuse_latest(self.image_tag)
        return self


class GatewayLog(Model):
    """The environment's gateway log counter (the serving image's gateway_log): the gateway's proxies send it their
    access log, and it counts who called each model and who answered (workloads/gateway_log.py)."""

    #: The model server image (this repository's, in the platform's ECR) whose gateway_log runs.
    image_tag: ImageTag

    @model_validator(mode="after")
    def _immutable(self) -> GatewayLog:
        refuse_latest(self.image_tag)
        return self


class Catalog(Model):
    models: Seq[ModelEntry] = ()
    #: The drift worker; unset: none, and no sample leaves a model pod.
    drift: Drift | None = None
    #: The gateway log counter; unset: the gateway's proxies' access log reaches no one (they drop it), and the
    #: gateway dashboard has no answers by team, refusals by model, or fallback answers.
    gateway_log: GatewayLog | None = None

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        names = [m.name for m in self.models]
        problems = [
            (f"models[{i}].name", "is used by another model; names must be unique", n)
            for i, n in enumerate(names)
            if n in names[:i]
        ]
        for i, m in enumerate(self.models):
            for role in ("canary", "shadow"):
                if f"{m.name}-{role}" in names:
                    problems.append((f"models[{i}].name", f"clashes with {m.name}-{role}, its {role}'s name", m.name))
        if problems:
            raise FieldProblems(problems)
        return self


class WorkloadsConfig(Model):
    """Everything under `modelyard:workloads` in a workloads stack file."""

    env: DnsLabel
    tier: Literal["dev", "staging", "prod"]
    #: The platform stack whose outputs (cluster, bucket, pools, registry) this stack reads.
    platform_stack: StackName
    #: The catalog file, relative to workloads/.
    catalog: Annotated[str, pattern(r"^[A-Za-z0-9_./-]+\.ya?ml$", "a YAML file path such as catalog/dev.yaml")]
    #: Who owns the stack (labels on every object); each model also carries its own team label.
    tags: Tags
    #: Each catalog team's IAM roles, whose holders get the team's read-only view of the model namespace
    #: (workloads/team_access.py): an EKS access entry per role into the group `modelyard:team:<team>`.
    team_access: dict[DnsLabel, Seq[RoleArn]] = Field(default_factory=dict)


#: The least minReplicas per tier (an InferenceService is one pod per replica).
MIN_REPLICAS = {"dev": 0, "staging": 1, "prod": 2}


@dataclass(frozen=True)
class Workloads:
    config: WorkloadsConfig
    catalog: Catalog
    catalog_path: Path


def parse_catalog(raw: Any, *, stack: str, source: str, tier: str) -> Catalog:
    if not isinstance(raw, Mapping):
        raise ConfigError(stack, source, [f"{CATALOG}: must be a mapping with a models: list (got {fmt_value(raw)})"])
    catalog, problems = validate_model(Catalog, raw, CATALOG)
    if catalog is None:
        # pydantic puts the runtime variant in the path (runtime.kserve.model_format); users wrote
        # runtime.model_format.
        kinds = "|".join(RUNTIMES)
        problems = [re.sub(rf"\.runtime\.({kinds})\.", ".runtime.", p) for p in problems]
        raise ConfigError(stack, source, problems)
    least = MIN_REPLICAS[tier]
    problems = [
        f"{CATALOG}.models[{i}].replicas.min: must be ≥ {least} in the {tier} tier"
        + (" (only dev scales a model to zero)" if m.replicas.min == 0 else "")
        + f" (got {m.replicas.min})"
        for i, m in enumerate(catalog.models)
        if m.replicas.min < least
    ]
    if problems:
        raise ConfigError(stack, source, problems)
    return catalog


def parse_workloads(raw: Mapping[str, Any], *, stack: str, source: str, directory: Path) -> Workloads:
    """A workloads stack file's config and the catalog it names, both validated."""
    cfg = validate_stack_key(WorkloadsConfig, raw.get(WORKLOADS_KEY), key=WORKLOADS_KEY, stack=stack, source=source)
    path = directory / cfg.catalog
    document = read_yaml(path, stack=stack, missing=f"{WORKLOADS_KEY}.catalog: file not found: {path}")
    catalog = parse_catalog(document, stack=stack, source=path.name, tier=cfg.tier)
    teams = catalog_teams(catalog)
    unknown = [
        f"{WORKLOADS_KEY}.team_access.{team}: names no team of {cfg.catalog} (its teams: {', '.join(teams)})"
        for team in cfg.team_access
        if team not in teams
    ]
    if unknown:
        raise ConfigError(stack, source, unknown)
    return Workloads(cfg, catalog, path)


def catalog_teams(catalog: Catalog) -> tuple[str, ...]:
    """Every team the catalog names: each model's owner and callers."""
    return tuple(dict.fromkeys(t for m in catalog.models for t in m.callers))


def load_workloads(path: Path, *, stack: str) -> Workloads:
    raw = read_stack_config(path, stack=stack, key=WORKLOADS_KEY)
    return parse_workloads(raw, stack=stack, source=path.name, directory=path.parent)


def placement_problems(catalog: Catalog, pools: Any, env: str, cpu_pool: Any = None) -> list[str]:
    """Every GPU model's pool exists in the platform stack (its `gpuPools` output), and every model's pod fits
    on at least one instance type of its pool (a GPU pool, or the CPU pool of the `cpuPool` output) once the
    kubelet, the VM and the daemonsets have taken their share (policies/governance/fit.py): one line per
    model that could never be scheduled."""
    by_name = {str(p.get("name")): p for p in pools or [] if isinstance(p, Mapping)}
    problems = []
    for i, m in enumerate(catalog.models):
        gpu = m.resources.gpu
        if gpu is None:
            types = cpu_pool.get("instanceTypes") if isinstance(cpu_pool, Mapping) else None
            if types is None:
                continue
            requests = {"cpu": m.resources.cpu, "memory": m.resources.memory}
            verdict = fit.fits(requests, 0, [str(t) for t in types], fit.CPU_NODE_DAEMONSETS)
            if not verdict.fits and verdict.largest is not None:
                problems.append(
                    f"{CATALOG}.models[{i}].resources: model {m.name} asks for {m.resources.cpu} CPU and "
                    f"{m.resources.memory} per pod, which no node of the CPU pool can hold; its largest is "
                    f"{verdict.largest.describe()} after the kubelet's reservation and the daemonsets "
                    "(the platform's cpu_pool.instance_types)"
                )
            continue
        where = f"{CATALOG}.models[{i}].resources"
        pool = by_name.get(gpu.pool)
        if pool is None:
            problems.append(
                f"{where}.gpu.pool: no such GPU pool in the {env} platform stack "
                f"(pools: {', '.join(by_name)}) (got {gpu.pool!r})"
            )
            continue
        where_rt = f"{CATALOG}.models[{i}]"
        known = [t for t in (gpus.instance_type(str(n)) for n in pool["instanceTypes"]) if t is not None]
        problems += [f"{where_rt}.{p}" for p in m.runtime_module.fit_problems(m, known)]
        verdict = fit.fits({"cpu": m.resources.cpu, "memory": m.resources.memory}, gpu.count, pool["instanceTypes"])
        if not verdict.fits and verdict.largest is not None:
            problems.append(
                f"{where}: model {m.name} asks for {gpu.count} GPU, {m.resources.cpu} CPU and {m.resources.memory} "
                f"per pod, which no node of GPU pool {gpu.pool} can hold; its largest is "
                f"{verdict.largest.describe()} after the kubelet's reservation and the daemonsets"
            )
    return problems
