"""The model catalog: which models an environment serves, validated before anything is registered.

A workloads stack file holds `modelyard:workloads` (the environment, its tier, the platform stack to
read, and the catalog file); the catalog (`workloads/catalog/<env>.yaml`) lists the models. Both are
frozen pydantic models with the same error standard as the platform config: one line per problem,
naming the full path, what is allowed and the bad value.

A model's artifacts live at `s3://<the environment's model bucket>/<name>/<version>/`, which is where
`modelyard model push` puts them, so a catalog cannot point a model at another bucket.

Canary: `canary: {version: "2", traffic_percent: 10}` runs version 2 beside the stable version.
Promote by setting `version: "2"` (a canary whose version is the stable one is finished and not
deployed); roll back with `traffic_percent: 0`. Each is a one-line change.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from modelyard.config import Tags
from modelyard.platform.signals import LATENCY_BUCKETS
from modelyard.policies.governance import fit
from modelyard.policies.governance.conventions import WORKLOADS_CONFIG_KEY
from modelyard.stackfile import read_stack_config
from modelyard.validation import (
    ConfigError,
    DnsLabel,
    FieldProblems,
    Model,
    Seq,
    TagValue,
    fmt_value,
    pattern,
    read_yaml,
    validate_model,
    validate_stack_key,
)

WORKLOADS_KEY = WORKLOADS_CONFIG_KEY
CATALOG = "catalog"

Version = Annotated[str, pattern(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,62}$", "a version such as 1, 2 or 2026-11-01")]
ImageTag = Annotated[
    str,
    pattern(
        r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$|^sha256:[0-9a-f]{64}$",
        "an immutable tag such as 1.0.0-cpu, or sha256:<digest>",
    ),
]
Quantity = Annotated[str, pattern(r"^\d+(\.\d+)?(m|Mi|Gi)?$", "a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi")]
StackName = Annotated[
    str,
    pattern(
        r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$",
        "a stack reference such as organization/modelyard-platform/dev",
    ),
]
#: p99 latency thresholds the SLI can read: the model server's histogram buckets, in milliseconds.
LATENCY_MS = tuple(int(float(b) * 1000) for b in LATENCY_BUCKETS)


class ModelyardRuntime(Model):
    """This repository's model server image (workloads/serving), from the platform's ECR repository."""

    kind: Literal["modelyard"]
    image_tag: ImageTag

    @model_validator(mode="after")
    def _immutable(self) -> ModelyardRuntime:
        if self.image_tag == "latest":
            raise FieldProblems(
                [("image_tag", "must be an immutable tag (ECR refuses to move one), not latest", "latest")]
            )
        return self


class KServeRuntime(Model):
    """A KServe built-in serving runtime, chosen by model format."""

    kind: Literal["kserve"]
    model_format: Literal["huggingface", "sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "tensorflow"]


class GpuRequest(Model):
    pool: DnsLabel
    count: int = Field(default=1, ge=1, le=8)


class Resources(Model):
    cpu: Quantity
    memory: Quantity
    gpu: GpuRequest | None = None


#: Default `scale_target` per `scale_metric`: percent of the request for cpu and memory; texts accepted and
#: not yet answered per replica for inflight: one of the server's default 256-text GPU batches (past it,
#: requests wait for a whole pass; below it, the GPU is not yet busy with full batches).
SCALE_TARGETS = {"cpu": 70, "memory": 70, "inflight": 256}
#: Allowed `scale_target` range per `scale_metric`.
SCALE_TARGET_RANGE = {"cpu": (10, 100), "memory": (10, 100), "inflight": (1, 10_000)}


class Replicas(Model):
    min: int = Field(ge=1, le=100)
    max: int = Field(ge=1, le=200)
    #: What the autoscaler scales on. cpu or memory: the HPA, on utilisation of the request (KServe
    #: Standard mode). inflight: KEDA, on the model server's `modelyard_inflight_texts` per replica, read
    #: from Prometheus (the serving signal; the default for GPU models on the modelyard runtime, whose CPU
    #: says nothing about the GPU's load). Unset: inflight for those, cpu for the rest.
    scale_metric: Literal["cpu", "memory", "inflight"] | None = None
    #: Percent for cpu and memory (default 70), texts in flight per replica for inflight (default 256).
    scale_target: int | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Replicas:
        if self.min > self.max:
            raise FieldProblems([("max", f"must be ≥ min ({self.min})", self.max)])
        return self


class Canary(Model):
    version: Version
    traffic_percent: int = Field(ge=0, le=99)


class Slo(Model):
    availability: float = Field(ge=0.9, le=0.99999)
    p99_latency_ms: int

    @model_validator(mode="after")
    def _bucket(self) -> Slo:
        if self.p99_latency_ms not in LATENCY_MS:
            allowed = ", ".join(str(ms) for ms in LATENCY_MS)
            raise FieldProblems(
                [("p99_latency_ms", f"must be one of the server's latency buckets: {allowed}", self.p99_latency_ms)]
            )
        return self


class ModelEntry(Model):
    name: Annotated[
        str, pattern(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", "a lowercase DNS label of at most 40 characters")
    ]
    team: TagValue
    runtime: Annotated[ModelyardRuntime | KServeRuntime, Field(discriminator="kind")]
    version: Version
    resources: Resources
    replicas: Replicas
    slo: Slo
    canary: Canary | None = None

    @model_validator(mode="after")
    def _autoscaling(self) -> ModelEntry:
        """Fill in the scale metric and target, and refuse the combinations that cannot work."""
        r = self.replicas
        serving_signal = self.runtime.kind == "modelyard"
        metric = r.scale_metric or ("inflight" if self.resources.gpu and serving_signal else "cpu")
        if metric == "inflight" and not serving_signal:
            raise FieldProblems(
                [
                    (
                        "replicas.scale_metric",
                        "inflight needs the modelyard runtime (KServe's built-in runtimes export no "
                        "modelyard_inflight_texts); use cpu or memory",
                        metric,
                    )
                ]
            )
        if self.resources.gpu and serving_signal and metric != "inflight":
            raise FieldProblems(
                [
                    (
                        "replicas.scale_metric",
                        f"{metric} does not measure a GPU predictor's load (its CPU is busy at a few percent of the "
                        "GPU); use inflight, the serving signal",
                        metric,
                    )
                ]
            )
        target = r.scale_target if r.scale_target is not None else SCALE_TARGETS[metric]
        low, high = SCALE_TARGET_RANGE[metric]
        if not low <= target <= high:
            raise FieldProblems(
                [("replicas.scale_target", f"must be {low} to {high} for scale_metric {metric}", target)]
            )
        object.__setattr__(self, "replicas", r.model_copy(update={"scale_metric": metric, "scale_target": target}))
        return self

    @property
    def canary_active(self) -> bool:
        return self.canary is not None and self.canary.traffic_percent > 0 and self.canary.version != self.version

    def canary_replicas(self) -> tuple[int, int]:
        """(stable, canary) minimum replicas for the requested split. Traffic reaches pods through one
        Service, so the split follows replica counts: the canary gets the share nearest the request."""
        assert self.canary is not None
        pct = self.canary.traffic_percent / 100
        canary = max(1, math.floor(self.replicas.min * pct / (1 - pct) + 0.5))
        return self.replicas.min, canary


class Catalog(Model):
    models: Seq[ModelEntry] = ()

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        names = [m.name for m in self.models]
        problems = [
            (f"models[{i}].name", "is used by another model; names must be unique", n)
            for i, n in enumerate(names)
            if n in names[:i]
        ]
        for i, m in enumerate(self.models):
            if f"{m.name}-canary" in names:
                problems.append((f"models[{i}].name", f"clashes with {m.name}-canary, its canary's name", m.name))
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


#: The least minReplicas per tier (an InferenceService is one pod per replica).
MIN_REPLICAS = {"dev": 1, "staging": 1, "prod": 2}


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
        problems = [re.sub(r"\.runtime\.(modelyard|kserve)\.", ".runtime.", p) for p in problems]
        raise ConfigError(stack, source, problems)
    least = MIN_REPLICAS[tier]
    problems = [
        f"{CATALOG}.models[{i}].replicas.min: must be ≥ {least} in the {tier} tier (got {m.replicas.min})"
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
    return Workloads(cfg, parse_catalog(document, stack=stack, source=path.name, tier=cfg.tier), path)


def load_workloads(path: Path, *, stack: str) -> Workloads:
    raw = read_stack_config(path, stack=stack, key=WORKLOADS_KEY)
    return parse_workloads(raw, stack=stack, source=path.name, directory=path.parent)


def placement_problems(catalog: Catalog, pools: Any, env: str) -> list[str]:
    """Every GPU model's pool exists in the platform stack (its `gpuPools` output), and the model's pod fits
    on at least one instance type of that pool once the kubelet, the VM and the daemonsets have taken
    their share (policies/governance/fit.py): one line per model that could never be scheduled."""
    by_name = {str(p.get("name")): p for p in pools or [] if isinstance(p, Mapping)}
    problems = []
    for i, m in enumerate(catalog.models):
        gpu = m.resources.gpu
        if gpu is None:
            continue
        where = f"{CATALOG}.models[{i}].resources"
        pool = by_name.get(gpu.pool)
        if pool is None:
            problems.append(
                f"{where}.gpu.pool: no such GPU pool in the {env} platform stack "
                f"(pools: {', '.join(by_name)}) (got {gpu.pool!r})"
            )
            continue
        verdict = fit.fits({"cpu": m.resources.cpu, "memory": m.resources.memory}, gpu.count, pool["instanceTypes"])
        if not verdict.fits and verdict.largest is not None:
            problems.append(
                f"{where}: model {m.name} asks for {gpu.count} GPU, {m.resources.cpu} CPU and {m.resources.memory} "
                f"per pod, which no node of GPU pool {gpu.pool} can hold; its largest is "
                f"{verdict.largest.describe()} after the kubelet's reservation and the daemonsets"
            )
    return problems
