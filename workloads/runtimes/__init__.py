"""The runtime registry: what each kind of model server brings to a catalogued model.

A catalog entry's `runtime: {kind: ...}` selects one module here. Each supplies, for its kind:

- `config`: the catalog's `runtime:` mapping (a frozen pydantic model with `kind: Literal[...]`);
- `check`: the cross-field checks of an entry that only its kind knows (one problem per field);
- `fit_problems`: what can be known of the pod on a pool's instance types before a GPU exists;
- `pod`: its part of the predictor: containers (or KServe's `model`), volumes, probes, grace period;
- `metrics_port`: the container port name the model's PodMonitor scrapes (it must be declared);
- `signals`: the serving signals KEDA can scale it on (the first is the GPU default), besides cpu/memory;
- `latency_slos`: the SLO keys it accepts, each the latency indicator (platform/signals.LATENCY_INDICATORS)
  and histogram buckets it is read from; availability is every runtime's;
- `objectives`: the objective series the platform's burn-rate alerts join on (platform/rules.py);
- `describe`: its part of the plan's one line per model;
- `gpu_memory_reservation`: the share of GPU memory its engine takes up front, if it does;
- `throughput`: its unit of cost, and what the plan assumes one replica serves of it on a GPU class
  (the plan prices that unit from the pool's instance prices);
- `dashboards`: the Grafana dashboards its series feed (platform/dashboards.py builds them).

Adding a runtime is one module with a `RUNTIME` and its tests, and a line in `RUNTIMES` below.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from modelyard.validation import Model, pattern

if TYPE_CHECKING:
    from modelyard.platform.dashboards import Dashboard
    from modelyard.policies.governance.gpus import GpuClassSpec, InstanceType
    from modelyard.workloads.catalog import ModelEntry

Problem = tuple[str, str, Any]

ImageTag = Annotated[
    str,
    pattern(
        r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$|^sha256:[0-9a-f]{64}$",
        "an immutable tag such as 1.0.0-cpu, or sha256:<digest>",
    ),
]


def refuse_latest(tag: str) -> None:
    """An image tag of the platform's ECR repository, whose tags are immutable: `latest` would be moved by every
    push, so it is refused (FieldProblems on `image_tag`)."""
    from modelyard.validation import FieldProblems

    if tag == "latest":
        raise FieldProblems([("image_tag", "must be an immutable tag (ECR refuses to move one), not latest", "latest")])


#: How long, at most, the endpoint controllers, kube-proxy and a load balancer take to stop sending new requests
#: to a pod being deleted (they act in parallel with its preStop): a model pod's preStop must last longer.
ENDPOINT_PROPAGATION_S = 10
#: The preStop pause of every model pod: past the propagation, so no new request reaches a pod after SIGTERM.
PRESTOP_S = 15


@dataclass(frozen=True)
class Signal:
    """A serving signal KEDA scales a predictor on: `series` summed over the InferenceService's pods (times
    `scale`), divided by the replica count against the catalog's `scale_target` (AverageValue)."""

    name: str
    series: str
    default_target: int
    low: int
    high: int
    #: What the target counts, for docs and errors.
    unit: str
    scale: float = 1.0

    def query(self, namespace: str, isvc_name: str, *, absent_is_zero: bool = False) -> str:
        """No pod scraped means no series: an empty result (an error for KEDA, `ignoreNullValues: false`),
        never 0; except for a model that scales to zero (`absent_is_zero`), where no pod is its resting state
        (Prometheus itself down is still an error)."""
        expr = f'sum({self.series}{{namespace="{namespace}", inferenceservice="{isvc_name}"}})'
        expr = f"{expr} * {self.scale:g}" if self.scale != 1 else expr
        return f"({expr}) or vector(0)" if absent_is_zero else expr


@dataclass(frozen=True)
class LatencySlo:
    """A latency SLO key: the indicator it sets, the histogram buckets (seconds, as `le` renders) its
    threshold must be one of, and the share of requests (or token gaps) that must be within it."""

    indicator: str
    buckets: Sequence[str]
    #: The histogram, in an error message's words.
    histogram: str
    #: None: the percentile comes from the entry's `slo.latency_percentile`.
    percentile: int | None = None

    @property
    def thresholds_ms(self) -> tuple[int, ...]:
        return tuple(round(float(b) * 1000) for b in self.buckets)

    def le(self, ms: int) -> str:
        return self.buckets[self.thresholds_ms.index(ms)]


@dataclass(frozen=True)
class Objective:
    """One latency objective of a model: `share` of its `indicator` within the `le` bucket."""

    indicator: str
    share: float
    le: str


@dataclass(frozen=True)
class Throughput:
    """What the plan assumes one replica of a model serves on a GPU class: `per_second` of `unit` (such as
    "generated tokens"), on the stated `assumption`."""

    per_second: float
    unit: str
    assumption: str


@dataclass(frozen=True, kw_only=True)
class PodContext:
    """What a runtime's pod needs from the platform stack and the catalog entry's version."""

    #: The model's artifacts: s3://<bucket>/<name>/<version>/.
    storage_uri: str
    #: The platform's ECR repository for this repository's model server images.
    registry: str
    #: The platform's ECR mirror of each runtime image, by versions.IMAGES key.
    images: Mapping[str, str] = field(default_factory=dict)
    #: The version this pod serves (the catalog's, or its canary's).
    version: str = ""
    #: The environment's drift worker (its samples endpoint) and the share of answered texts a tap sends it;
    #: None where the catalog runs no drift worker.
    tap_url: str | None = None
    tap_share: float = 0.01
    #: The platform's manifest signing key, public half (base64 DER): a server that checks the manifest checks its
    #: signature with it; empty: none rendered.
    signing_key: str = ""


class Runtime(ABC):
    """The base every runtime module's `RUNTIME` derives from; the defaults fit a runtime with no serving
    signal and one whole-request latency indicator."""

    kind: ClassVar[str]
    config: ClassVar[type[Model]]
    metrics_port: ClassVar[str] = "http1"
    signals: ClassVar[tuple[Signal, ...]] = ()
    latency_slos: ClassVar[Mapping[str, LatencySlo]] = {}
    #: Images it runs that the platform mirrors into ECR (versions.IMAGES keys).
    mirrored_images: ClassVar[tuple[str, ...]] = ()
    #: Whether the model container reads the model store itself (vLLM streams its weights). Otherwise KServe's
    #: storage initializer alone downloads, and the pod's AWS credentials are withheld from the model container.
    reads_model_store: ClassVar[bool] = False
    #: The most texts one request may carry (the catalog's `load.texts_per_request`), or None for a runtime whose
    #: request is one prompt.
    max_texts_per_request: ClassVar[int | None] = None
    #: Whether a call may be replayed on another replica after it reached one (the gateway's retries): an embedding
    #: is the same for the same input and changes nothing. A runtime that is not is retried only where the call
    #: never reached a replica (connection refused or reset before a byte went out).
    idempotent: ClassVar[bool] = True
    #: Whether a fallback elsewhere may run another version (for an LLM, a smaller model under the same name). An
    #: embedding or a prediction must come from the same model and version, or it lands in another vector space.
    fallback_may_differ: ClassVar[bool] = False

    def route_timeout_s(self, model: ModelEntry) -> int:
        """How long the gateway waits for a whole answer (its route's request timeout)."""
        return 30

    def in_flight_per_replica(self, model: ModelEntry) -> int:
        """Requests one replica holds at once, answered or queued: the gateway's breaker opens past this many per
        replica of the model's maximum."""
        return 1024

    def check(self, model: ModelEntry) -> list[Problem]:
        return []

    def fit_problems(self, model: ModelEntry, instance_types: Sequence[InstanceType]) -> list[str]:
        return []

    @abstractmethod
    def pod(self, model: ModelEntry, ctx: PodContext) -> dict[str, Any]:
        """The runtime's part of the predictor: `containers` (or KServe's `model`), `volumes`, pod fields."""

    def objectives(self, model: ModelEntry) -> list[Objective]:
        out = []
        for key, slo in self.latency_slos.items():
            ms = getattr(model.slo, key)
            percentile = slo.percentile or model.slo.latency_percentile
            out.append(Objective(slo.indicator, percentile / 100, slo.le(ms)))
        return out

    def describe(self, model: ModelEntry) -> str:
        return self.kind

    def gpu_memory_reservation(self, model: ModelEntry) -> float | None:
        """The share of each GPU's memory the engine takes up front by design, or None where memory follows
        the load (the platform's GPUMemoryNearFull judges those; GPUMemoryOverReservation the others)."""
        return None

    def throughput(self, model: ModelEntry, gpu: GpuClassSpec) -> Throughput | None:
        """The plan's assumption of what one replica serves on `gpu`'s class, or None where the runtime is
        priced by the hour alone."""
        return None

    def dashboards(self) -> Sequence[Dashboard]:
        return ()

    def slo_text(self, model: ModelEntry) -> str:
        parts = [f"{model.slo.availability:.3%} available"]
        for key, slo in self.latency_slos.items():
            percentile = slo.percentile or model.slo.latency_percentile
            parts.append(f"{slo.indicator} p{percentile} ≤ {getattr(model.slo, key)} ms")
        return ", ".join(parts)


def signal(runtime: Runtime, name: str) -> Signal | None:
    return next((s for s in runtime.signals if s.name == name), None)


def startup_failures(seconds: float, period: int) -> int:
    """A startup probe's failureThreshold for a budget of `seconds` at one probe every `period` seconds."""
    return max(1, math.ceil(seconds / period))


def _registry() -> Mapping[str, Runtime]:
    from . import kserve, modelyard, vllm

    return {r.kind: r for r in (modelyard.RUNTIME, kserve.RUNTIME, vllm.RUNTIME)}


RUNTIMES: Mapping[str, Runtime] = _registry()


def runtime_for(kind: str) -> Runtime:
    return RUNTIMES[kind]


def _image_parts(key: str) -> tuple[str, str]:
    from modelyard.versions import IMAGES

    repository, tag = IMAGES[key].rsplit(":", 1)
    return repository, tag


#: The runtime images the platform mirrors into its ECR (infra/ecr.py), by mirror key: `runtime.<IMAGES key>`
#: -> the upstream repository. Every registered runtime's, whether a catalog uses it or not (the platform
#: stack does not read catalogs).
RUNTIME_MIRRORS: Mapping[str, str] = {
    f"runtime.{key}": _image_parts(key)[0] for r in RUNTIMES.values() for key in r.mirrored_images
}


def runtime_images(mirror_urls: Mapping[str, Any]) -> dict[str, Any]:
    """The platform's `runtimeImages` output: each mirrored runtime image at its pinned tag, by IMAGES key."""
    import pulumi

    return {
        key.split(".", 1)[1]: pulumi.Output.concat(mirror_urls[key], ":", _image_parts(key.split(".", 1)[1])[1])
        for key in RUNTIME_MIRRORS
    }
