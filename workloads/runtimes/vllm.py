"""Large language models on vLLM's own OpenAI-compatible server (`vllm serve`), pinned in versions.IMAGES.

Why vLLM's server and not KServe's Hugging Face runtime with its vLLM backend: KServe v0.16.0's runtime
bundles vLLM 0.9.2 (python/huggingfaceserver/pyproject.toml) behind its own argument layer, so the engine is
what KServe last pinned, and every engine flag passes through a second parser. Here the engine is pinned on
its own, its command line is held to the flags `vllm serve` registers at that version
(tests/conformance/vllm-v0.34.0/cli.json) and its series to the names its stat logger creates (metrics.json);
KServe still admits, labels and stores the predictor (a custom container, as for the embedding server).

The pod: `vllm serve s3://<bucket>/<model>/<version>/` (the image's entrypoint) on the model port. The weights
are streamed from the model store straight into GPU memory by the Run:ai model streamer the image ships (vLLM's
`runai_streamer` load format; config and tokenizer files are pulled into HOME), not downloaded to disk by
KServe's storage initializer and read back (the choice is argued at "the weights" below). LoRA adapters, small,
still come through the storage initializer (only the version's `adapters/` prefix). A read-only root with
emptyDirs for HOME (every cache the engine, Triton and torch.compile write resolves under it), /tmp, and a
memory-backed /dev/shm sized for tensor parallelism; no hub access, no usage telemetry. The HTTP server starts
only once the engine is built (weights loaded, KV cache allocated), and `/health` answers 503 once the engine is
dead: readiness and liveness read it, and a startup probe waits for it with a budget from the weights' size. On
scale-in a preStop pause lets endpoints drop the pod, then vLLM's `--shutdown-timeout` lets streams finish; the
grace period covers both.

What can be known before a GPU exists is checked here: tensor parallel size equals the GPUs per pod and divides
the attention heads (vLLM's ModelConfig.verify_with_parallel_config), `max_model_len` is within the model's
positions, and one request of `max_model_len` tokens fits the KV cache the smallest GPU of the pool leaves
(vllm/v1/core/kv_cache_planning.py, _check_enough_kv_cache_memory), estimated as below.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from modelyard.platform import signals as series
from modelyard.platform.network_policy import MODEL_PORT
from modelyard.policies.governance.fit import quantity_mi
from modelyard.validation import FieldProblems, Model, Seq, pattern

from . import PRESTOP_S, LatencySlo, PodContext, Problem, Runtime, Signal, Throughput, startup_failures

if TYPE_CHECKING:
    from modelyard.platform.dashboards import Dashboard
    from modelyard.policies.governance.gpus import GpuClassSpec, InstanceType
    from modelyard.workloads.catalog import ModelEntry

#: versions.IMAGES key of the engine's image (mirrored into the platform's ECR).
IMAGE_KEY = "vllm"
#: Where KServe's storage initializer puts what STORAGE_URI names (here, the version's LoRA adapters).
MODEL_DIR = "/mnt/models"
HOME = "/home/vllm"

# -- the weights: streamed, once per pod, never written to disk (docs/runtimes.md has the arithmetic).
#    Chosen over KServe v0.16.0's two node-level caches: a modelcar (an OCI image of the weights, cached by the
#    node's container runtime) replaces the model container's securityContext with one that only sets the UID
#    and adds containers that set nothing else (pkg/utils/storage.go, ConfigureModelcarToContainer), so the
#    pod fails Pod Security `restricted`; LocalModelCache needs a hostPath agent DaemonSet (privileged Pod
#    Security), a PersistentVolume per node group, download Jobs whose image defaults to
#    kserve/storage-initializer:latest, and starts pods whether their node's copy is complete or not.
#: The Run:ai streamer's parallel reads from S3 (RUNAI_STREAMER_CONCURRENCY; its default is 16).
STREAM_CONCURRENCY = 16
#: The CPU memory the streamer may buffer (RUNAI_STREAMER_MEMORY_LIMIT), counted in the pod's memory.
STREAM_BUFFER_GIB = 2
#: What the engine's own process holds in CPU memory besides the streamer's buffer and /dev/shm (Python,
#: the tokenizer, CUDA's host allocations): the pod's memory must cover all three.
ENGINE_HOST_GIB = 4
#: The rate the startup budget assumes: a GPU instance's baseline network bandwidth at its smallest size
#: (2.5 Gbit/s for g5, g6 and g6e .xlarge, 0.29 GiB/s), rounded down.
STREAM_GIB_PER_S = 0.25

# -- the KV cache estimate (what vLLM measures on the GPU at start; see versions.UNVERIFIED)
#: Share of a GPU's nominal memory CUDA reports as its total (an A10G's 24 GiB shows 23,028 MiB: 0.937).
VISIBLE_MEMORY_SHARE = 0.93
#: What the engine holds besides weights and KV cache: the profiled activation peak, CUDA graphs, the
#: CUDA context and NCCL buffers. vLLM measures it at start; 2 GiB is this estimate's allowance.
ENGINE_OVERHEAD_GIB = 2.0
#: Bytes per KV cache element by model dtype (the KV cache takes the model's dtype by default).
DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2}
#: Tokens per KV cache block: CacheConfig.DEFAULT_BLOCK_SIZE (vllm/config/cache.py) at 0.34.0.
BLOCK_SIZE = 64

# -- the plan's throughput assumption, for the cost of a million tokens (what a GPU node measures instead:
#    versions.UNVERIFIED). Decoding is bound by memory bandwidth: each step reads every GPU's share of the
#    weights once and each running sequence's KV cache, and yields one token per running sequence.
#: Sequences decoding together (or max_num_seqs where that is lower).
ASSUMED_BATCH = 32
#: Mean tokens in a running sequence's KV cache (or max_model_len where that is lower).
ASSUMED_CONTEXT = 1024
#: Share of the GPU's memory bandwidth a decode step achieves.
BANDWIDTH_EFFICIENCY = 0.6

# -- the pod's timings
#: Engine start besides reading weights: CUDA graph capture and torch.compile (its cache lives in the pod's
#: emptyDir, so every pod compiles once).
ENGINE_START_S = 240
STARTUP_PERIOD_S = 10

#: Memory-backed /dev/shm: NCCL's shared-memory transport between the GPUs of one pod needs more than a
#: container's 64 MiB; it counts against the container's memory limit.
SHM_GIB_ONE_GPU = 1
SHM_GIB_PER_GPU = 2


class Architecture(Model):
    """The model's shape, from its Hugging Face `config.json`, and the size of its weight files."""

    #: num_hidden_layers
    layers: int = Field(ge=1, le=1024)
    #: num_attention_heads
    attention_heads: int = Field(ge=1, le=1024)
    #: num_key_value_heads (equal to attention_heads without grouped-query attention)
    kv_heads: int = Field(ge=1, le=1024)
    #: head_dim (hidden_size / num_attention_heads where config.json has no head_dim)
    head_dim: int = Field(ge=8, le=1024)
    #: max_position_embeddings: the longest context the model was built for
    max_position_embeddings: int = Field(ge=128, le=10_485_760)
    #: The weight files' total size in GiB (what `modelyard model push` uploads, quantized or not).
    weights_gib: float = Field(gt=0, le=4096)

    @model_validator(mode="after")
    def _heads(self) -> Architecture:
        if self.attention_heads % self.kv_heads:
            raise FieldProblems([("kv_heads", f"must divide attention_heads ({self.attention_heads})", self.kv_heads)])
        return self


class LoraAdapter(Model):
    """A LoRA adapter of the base model, shipped in the model version under `adapters/<name>/`."""

    name: Annotated[str, pattern(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", "a lowercase DNS label")]


class Engine(Model):
    """Typed vLLM engine settings: each is one `vllm serve` flag."""

    #: --max-model-len: the longest prompt plus answer, in tokens. Required: vLLM's default is the model's
    #: whole context, which a single GPU's KV cache rarely holds.
    max_model_len: int = Field(ge=256, le=10_485_760)
    #: --gpu-memory-utilization: the share of GPU memory the engine takes up front (weights, activations, KV).
    gpu_memory_utilization: float = Field(default=0.9, ge=0.5, le=0.98)
    #: --max-num-seqs: the most sequences in one batch (vLLM's default when unset).
    max_num_seqs: int | None = Field(default=None, ge=1, le=4096)
    #: --max-num-queued-reqs: the most requests waiting; past it vLLM refuses (counted as
    #: vllm:admission_rejections_total, an error against availability). Unset: no bound.
    max_queued_requests: int | None = Field(default=None, ge=1, le=100_000)
    #: --dtype
    dtype: Literal["auto", "bfloat16", "float16"] = "auto"
    #: --quantization: how the weights are quantized (None: as the checkpoint's config says, or not at all).
    quantization: Literal["awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "compressed-tensors"] | None = None
    #: --enable-prefix-caching / --no-enable-prefix-caching
    prefix_caching: bool = True
    #: --enable-lora, --lora-modules name=/mnt/models/<name> (the version's adapters/<name>/), --max-loras
    lora: Seq[LoraAdapter] = ()
    #: --max-lora-rank
    max_lora_rank: Literal[8, 16, 32, 64, 128, 256] = 16
    #: The longest one request (a whole stream) may take, in seconds: vLLM's --shutdown-timeout on scale-in,
    #: and the pod's grace period with it.
    request_timeout_s: int = Field(default=300, ge=10, le=3600)

    @model_validator(mode="after")
    def _lora(self) -> Engine:
        names = [a.name for a in self.lora]
        dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if dup is not None:
            raise FieldProblems([("lora", "names each adapter once", dup)])
        return self


class VllmRuntime(Model):
    """vLLM's OpenAI-compatible server for a large language model."""

    kind: Literal["vllm"]
    engine: Engine
    architecture: Architecture


def kv_bytes_per_token(arch: Architecture, tp: int, dtype: str) -> int:
    """KV cache bytes one token takes on one GPU, over all layers: per KV head that GPU holds (vLLM:
    ModelConfig.get_num_kv_heads, max(1, total // tp)), a key and a value of head_dim elements
    (vllm/v1/kv_cache_interface.py: AttentionSpec.state_content_size_bytes, (head_size + head_size_v) x the
    dtype's size, times num_kv_heads per page slot)."""
    return 2 * arch.layers * max(1, arch.kv_heads // tp) * arch.head_dim * DTYPE_BYTES[dtype]


def usable_tokens(available_bytes: int, per_token: int, block_size: int = BLOCK_SIZE) -> int:
    """The tokens one request may hold in a KV cache of `available_bytes`: whole blocks of `block_size`
    tokens, less the one BlockPool keeps as its null block (vllm/v1/core/kv_cache_planning.py
    check_enough_kv_cache_memory; upstream's test_check_enough_kv_cache_memory_reserves_null_block)."""
    return max(0, available_bytes // (per_token * block_size) - 1) * block_size


def kv_cache_tokens(runtime: VllmRuntime, gpu_memory_gib: float, tp: int) -> tuple[float, int]:
    """(GiB left for the KV cache, tokens one request may hold) on one GPU of `gpu_memory_gib` nominal
    memory; vLLM refuses to start when the second is below max_model_len."""
    e, arch = runtime.engine, runtime.architecture
    budget = gpu_memory_gib * VISIBLE_MEMORY_SHARE * e.gpu_memory_utilization
    left = budget - arch.weights_gib / tp - ENGINE_OVERHEAD_GIB
    per_token = kv_bytes_per_token(arch, tp, e.dtype)
    return left, usable_tokens(max(0, int(left * 2**30)), per_token)


def decode_tokens_per_second(runtime: VllmRuntime, bandwidth_gbps: float, tp: int) -> float:
    """Generated tokens a second of one replica (tp GPUs in step) under the assumption above."""
    e, arch = runtime.engine, runtime.architecture
    batch = min(ASSUMED_BATCH, e.max_num_seqs or ASSUMED_BATCH)
    context = min(ASSUMED_CONTEXT, e.max_model_len)
    step_bytes = arch.weights_gib * 2**30 / tp + batch * context * kv_bytes_per_token(arch, tp, e.dtype)
    return batch * BANDWIDTH_EFFICIENCY * bandwidth_gbps * 1e9 / step_bytes


def shm_gib(tp: int) -> int:
    return SHM_GIB_ONE_GPU if tp == 1 else SHM_GIB_PER_GPU * tp


def startup_seconds(arch: Architecture) -> float:
    """How long a pod may take to answer /health: the engine's start plus streaming the whole checkpoint once
    (with tensor parallelism the ranks stream shares of it and exchange them: `distributed`)."""
    return ENGINE_START_S + arch.weights_gib / STREAM_GIB_PER_S


def loader_config(tp: int) -> dict[str, Any]:
    """--model-loader-extra-config of the runai_streamer load format (RunaiModelStreamerLoader's keys)."""
    config: dict[str, Any] = {"concurrency": STREAM_CONCURRENCY, "memory_limit": STREAM_BUFFER_GIB * 2**30}
    if tp > 1:
        config["distributed"] = True
    return config


def grace_seconds(engine: Engine) -> int:
    return PRESTOP_S + engine.request_timeout_s + 15


class Vllm(Runtime):
    kind = "vllm"
    config = VllmRuntime
    mirrored_images = (IMAGE_KEY,)
    reads_model_store = True
    #: queue: requests waiting for the scheduler per replica (the engine's own queue; past a few, each new
    #: one waits for a sequence to finish). kv_cache: percent of the KV cache in use, averaged over replicas.
    signals = (
        Signal("queue", series.VLLM_WAITING, 4, 1, 1000, "requests waiting per replica"),
        Signal("kv_cache", series.VLLM_KV_CACHE, 80, 10, 100, "percent of the KV cache in use", scale=100),
    )
    latency_slos = MappingProxyType(
        {
            "ttft_ms": LatencySlo("ttft", series.VLLM_TTFT_BUCKETS, "vLLM's time-to-first-token"),
            "itl_ms": LatencySlo("itl", series.VLLM_ITL_BUCKETS, "vLLM's inter-token latency"),
        }
    )

    #: A completion is neither reproducible nor free: it is retried only where it never reached the engine.
    idempotent = False
    #: A smaller model may answer while this one cannot (served under this entry's name).
    fallback_may_differ = True

    def route_timeout_s(self, model: ModelEntry) -> int:
        """The longest answer at the objectives' pace: the first token within ttft_ms, then max_model_len tokens
        each within itl_ms (a streamed answer is one request to the gateway, however long it streams)."""
        runtime = model.runtime
        assert isinstance(runtime, VllmRuntime)
        ttft, itl = model.slo.ttft_ms or 0, model.slo.itl_ms or 0
        return math.ceil((ttft + runtime.engine.max_model_len * itl) / 1000)

    def in_flight_per_replica(self, model: ModelEntry) -> int:
        """The sequences the engine decodes together (max_num_seqs, or the plan's assumed batch), and as many
        waiting."""
        runtime = model.runtime
        assert isinstance(runtime, VllmRuntime)
        return 2 * (runtime.engine.max_num_seqs or ASSUMED_BATCH)

    def check(self, model: ModelEntry) -> list[Problem]:
        runtime = model.runtime
        assert isinstance(runtime, VllmRuntime)
        gpu = model.resources.gpu
        if gpu is None:
            return [("resources.gpu", "is required for the vllm runtime (vLLM serves on GPUs)", None)]
        problems: list[Problem] = []
        arch, e = runtime.architecture, runtime.engine
        if arch.attention_heads % gpu.count:
            # vLLM: "Total number of attention heads must be divisible by tensor parallel size".
            problems.append(
                (
                    "resources.gpu.count",
                    f"is the tensor parallel size and must divide the model's attention heads ({arch.attention_heads})",
                    gpu.count,
                )
            )
        need = shm_gib(gpu.count) + STREAM_BUFFER_GIB + ENGINE_HOST_GIB
        memory = model.resources.memory
        # A memory quantity in millibytes ("500m") is a typo, and far below any need.
        if (0 if memory.endswith("m") else quantity_mi(memory)) < need * 1024:
            problems.append(
                (
                    "resources.memory",
                    f"must be at least {need}Gi for the vllm runtime with {gpu.count} GPU: /dev/shm "
                    f"{shm_gib(gpu.count)}Gi, the weight streamer's {STREAM_BUFFER_GIB}Gi buffer and "
                    f"{ENGINE_HOST_GIB}Gi for the engine",
                    model.resources.memory,
                )
            )
        if e.max_model_len > arch.max_position_embeddings:
            problems.append(
                (
                    "runtime.engine.max_model_len",
                    f"must be ≤ the model's max_position_embeddings ({arch.max_position_embeddings})",
                    e.max_model_len,
                )
            )
        return problems

    def fit_problems(self, model: ModelEntry, instance_types: Sequence[InstanceType]) -> list[str]:
        runtime = model.runtime
        assert isinstance(runtime, VllmRuntime) and model.resources.gpu is not None
        if not instance_types:
            return []
        tp = model.resources.gpu.count
        smallest = min(instance_types, key=lambda t: t.gpu_memory_gib)
        left, tokens = kv_cache_tokens(runtime, smallest.gpu_memory_gib, tp)
        e, arch = runtime.engine, runtime.architecture
        need = e.max_model_len * kv_bytes_per_token(arch, tp, e.dtype) / 2**30
        if tokens >= e.max_model_len:
            return []
        return [
            f"runtime.engine.max_model_len: {e.max_model_len:,} tokens need {need:.1f} GiB of KV cache per GPU; "
            f"a {smallest.gpu_memory_gib} GiB GPU ({smallest.name}) leaves about {max(left, 0):.1f} GiB at "
            f"gpu_memory_utilization {e.gpu_memory_utilization:g} after {arch.weights_gib / tp:.1f} GiB of weights: "
            f"about {tokens:,} tokens, and vLLM refuses to start (lower max_model_len, quantize, or more GPUs) "
            f"(got {e.max_model_len})"
        ]

    def args(self, model: ModelEntry, weights_uri: str) -> list[str]:
        """The `vllm serve` command line after the image's entrypoint, streaming the weights from `weights_uri`
        (the model version's s3:// prefix)."""
        runtime = model.runtime
        assert isinstance(runtime, VllmRuntime) and model.resources.gpu is not None
        e = runtime.engine
        tp = model.resources.gpu.count
        args = [
            weights_uri,
            "--load-format",
            "runai_streamer",
            "--model-loader-extra-config",
            json.dumps(loader_config(tp), separators=(",", ":")),
            "--served-model-name",
            model.name,
            "--host",
            "0.0.0.0",
            "--port",
            str(MODEL_PORT),
            "--max-model-len",
            str(e.max_model_len),
            "--gpu-memory-utilization",
            f"{e.gpu_memory_utilization:g}",
            "--tensor-parallel-size",
            str(tp),
            "--dtype",
            e.dtype,
            "--enable-prefix-caching" if e.prefix_caching else "--no-enable-prefix-caching",
            "--shutdown-timeout",
            str(e.request_timeout_s),
        ]
        if e.max_num_seqs is not None:
            args += ["--max-num-seqs", str(e.max_num_seqs)]
        if e.max_queued_requests is not None:
            args += ["--max-num-queued-reqs", str(e.max_queued_requests)]
        if e.quantization is not None:
            args += ["--quantization", e.quantization]
        if e.lora:
            args += ["--enable-lora", "--max-loras", str(len(e.lora)), "--max-lora-rank", str(e.max_lora_rank)]
            args += ["--lora-modules", *(f"{a.name}={MODEL_DIR}/{a.name}" for a in e.lora)]
        return args

    def pod(self, model: ModelEntry, ctx: PodContext) -> dict[str, Any]:
        from modelyard.workloads.models import hardened_container, resources

        runtime = model.runtime
        assert isinstance(runtime, VllmRuntime) and model.resources.gpu is not None
        tp = model.resources.gpu.count
        health = {"httpGet": {"path": "/health", "port": MODEL_PORT}}
        # KServe's storage initializer downloads STORAGE_URI into /mnt/models before start: only the adapters.
        adapters = [{"name": "STORAGE_URI", "value": f"{ctx.storage_uri}adapters/"}] if runtime.engine.lora else []
        container = {
            "name": "kserve-container",
            "image": ctx.images[IMAGE_KEY],
            "args": self.args(model, ctx.storage_uri),
            "env": [
                *adapters,
                {"name": "HOME", "value": HOME},
                {"name": "HF_HUB_OFFLINE", "value": "1"},
                {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
                {"name": "DO_NOT_TRACK", "value": "1"},
            ],
            "ports": [{"name": self.metrics_port, "containerPort": MODEL_PORT, "protocol": "TCP"}],
            "resources": resources(model),
            "startupProbe": {
                **health,
                "periodSeconds": STARTUP_PERIOD_S,
                "failureThreshold": startup_failures(startup_seconds(runtime.architecture), STARTUP_PERIOD_S),
            },
            "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 3, "timeoutSeconds": 3},
            "livenessProbe": {**health, "periodSeconds": 15, "failureThreshold": 4, "timeoutSeconds": 5},
            "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_S}}},
            # The image's own `vllm` user (UID 2000): a name in /etc/passwd for the libraries that look one up.
            "securityContext": {**hardened_container(), "runAsUser": 2000, "runAsGroup": 2000},
            "volumeMounts": [
                {"name": "home", "mountPath": HOME},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "dshm", "mountPath": "/dev/shm"},
            ],
        }
        return {
            "containers": [container],
            "volumes": [
                {"name": "home", "emptyDir": {"sizeLimit": "10Gi"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib(tp)}Gi"}},
            ],
            "terminationGracePeriodSeconds": grace_seconds(runtime.engine),
        }

    def gpu_memory_reservation(self, model: ModelEntry) -> float | None:
        runtime = model.runtime
        assert isinstance(runtime, VllmRuntime)
        return runtime.engine.gpu_memory_utilization

    def throughput(self, model: ModelEntry, gpu: GpuClassSpec) -> Throughput:
        runtime = model.runtime
        assert isinstance(runtime, VllmRuntime) and model.resources.gpu is not None
        e = runtime.engine
        batch = min(ASSUMED_BATCH, e.max_num_seqs or ASSUMED_BATCH)
        return Throughput(
            decode_tokens_per_second(runtime, gpu.memory_bandwidth_gbps, model.resources.gpu.count),
            "generated tokens",
            f"{batch} sequences of {min(ASSUMED_CONTEXT, e.max_model_len):,} tokens decoding together, each step "
            f"reading the weights and their KV cache at {BANDWIDTH_EFFICIENCY:.0%} of the "
            f"{gpu.gpu_class.upper()}'s {gpu.memory_bandwidth_gbps:,} GB/s",
        )

    def dashboards(self) -> Sequence[Dashboard]:
        from modelyard.platform.dashboards import llm

        return (llm(),)

    def describe(self, model: ModelEntry) -> str:
        runtime = model.runtime
        assert isinstance(runtime, VllmRuntime)
        e = runtime.engine
        quant = f" {e.quantization}" if e.quantization else ""
        return f"vllm{quant} ctx {e.max_model_len:,}"


RUNTIME = Vllm()
