"""The runtime registry, and the vLLM runtime held to vLLM 0.34.0 itself: its command line parsed against the
flags `vllm serve` registers at that version, its series against the names its stat logger creates
(tests/conformance/vllm-v0.34.0/, read from the source release), the pod KServe builds of it, and what can be
known before a GPU exists (tensor parallelism, context, KV cache)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ENVS, Plan

from modelyard.platform import signals
from modelyard.policies.governance import gpus, kserve, pod_security
from modelyard.policies.governance.conventions import GPU_RESOURCE
from modelyard.programs import PROJECTS
from modelyard.validation import ConfigError
from modelyard.versions import IMAGES
from modelyard.workloads import catalog as catalog_module
from modelyard.workloads.catalog import load_workloads, parse_catalog, placement_problems
from modelyard.workloads.runtimes import RUNTIMES, vllm

REFERENCE = Path(__file__).parent / "conformance" / f"vllm-{IMAGES['vllm'].rsplit(':', 1)[1]}"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
PODMONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
SCALEDOBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"

LLAMA_8B = {"layers": 32, "attention_heads": 32, "kv_heads": 8, "head_dim": 128, "max_position_embeddings": 131072}


def cli_flags() -> dict[str, Any]:
    return json.loads((REFERENCE / "cli.json").read_text())["flags"]


def vllm_metrics() -> dict[str, Any]:
    return json.loads((REFERENCE / "metrics.json").read_text())


def parse_vllm_serve(argv: list[str], flags: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`vllm serve [model_tag] [options]` as argparse would take it with the flags of cli.json: the model
    tag, then each option with what its kind accepts; an unknown option or a bad value raises ValueError."""
    if not argv or argv[0].startswith("-"):
        raise ValueError("the model tag (the first argument) is missing")
    tag, rest, parsed = argv[0], argv[1:], {}
    i = 0
    while i < len(rest):
        name = rest[i]
        negated = name.startswith("--no-") and name[:2] + name[5:] in flags
        canonical = name[:2] + name[5:] if negated else name
        spec = flags.get(canonical)
        if spec is None:
            raise ValueError(f"unrecognized arguments: {name}")
        kind = spec["kind"]
        if negated and kind != "bool":
            raise ValueError(f"{name}: only a BooleanOptionalAction takes --no-")
        if kind in {"bool", "flag"}:
            parsed[canonical] = not negated
            i += 1
            continue
        values = []
        i += 1
        while i < len(rest) and not rest[i].startswith("--"):
            values.append(rest[i])
            i += 1
            if kind != "list":
                break
        if not values:
            raise ValueError(f"{name}: expected a value")
        value = values[0]
        if kind == "int":
            int(value)
        elif kind == "float":
            float(value)
        elif kind == "choices" and value not in [str(c) for c in spec["choices"]]:
            raise ValueError(f"{name}: invalid choice {value!r} (choose from {spec['choices']})")
        parsed[name] = values if kind == "list" else value
    return tag, parsed


def llm_entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "chat",
        "team": "assistants",
        "runtime": {
            "kind": "vllm",
            "architecture": {**LLAMA_8B, "weights_gib": 14.96},
            "engine": {"max_model_len": 8192},
        },
        "version": "1",
        "resources": {"cpu": "3", "memory": "10Gi", "gpu": {"pool": "a10g", "count": 1}},
        "replicas": {"min": 1, "max": 2},
        "slo": {"availability": 0.995, "ttft_ms": 1000, "itl_ms": 100},
    }
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = entry
        for p in parents:
            node = node[p]
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    return entry


def cpu_entry(name: str, runtime: dict[str, Any], **slo: Any) -> dict[str, Any]:
    """A CPU model on `runtime` with a 500 ms p99 objective and `slo` over it."""
    return {
        "name": name,
        "team": "search",
        "runtime": runtime,
        "version": "1",
        "resources": {"cpu": "1", "memory": "1Gi"},
        "replicas": {"min": 1, "max": 2},
        "slo": {"availability": 0.99, "p99_latency_ms": 500, **slo},
    }


def problems_of(entry: dict[str, Any], tier: str = "dev") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_catalog({"models": [entry]}, stack=tier, source="catalog.yaml", tier=tier)
    return caught.value.problems


def isvcs(plan: Plan) -> dict[str, dict[str, Any]]:
    return {s["inputs"]["metadata"]["name"]: s["inputs"] for s in plan.of_type(ISVC)}


def vllm_isvcs(all_plans: dict[str, Plan]) -> list[tuple[str, dict[str, Any]]]:
    found = [
        (f"{env}/{name}", isvc)
        for env in ENVS
        for name, isvc in isvcs(all_plans[env]).items()
        if isvc["spec"]["predictor"].get("containers")
        and "vllm-openai" in isvc["spec"]["predictor"]["containers"][0]["image"]
    ]
    assert found, "no vLLM model in any shipped catalog"
    return found


# -- the registry


def test_every_runtime_is_one_module_with_its_kind_and_the_catalog_takes_each() -> None:
    assert set(RUNTIMES) == {"modelyard", "kserve", "vllm"}
    for kind, runtime in RUNTIMES.items():
        assert runtime.kind == kind
        assert runtime.config.model_fields["kind"].annotation.__args__ == (kind,)  # type: ignore[union-attr]
        assert runtime.metrics_port, kind
        for sig in runtime.signals:
            assert sig.low <= sig.default_target <= sig.high, (kind, sig.name)
        for key in runtime.latency_slos:
            assert key in catalog_module.Slo.model_fields, (kind, key)
    union = catalog_module.ModelEntry.model_fields["runtime"].annotation
    assert {t.model_fields["kind"].annotation.__args__[0] for t in union.__args__} == set(RUNTIMES)  # type: ignore[union-attr]


# -- vLLM's command line and series at the pinned version


def test_the_reference_is_the_pinned_version() -> None:
    assert REFERENCE.is_dir(), f"re-extract tests/conformance/ for {IMAGES['vllm']} (extract_vllm.py)"
    # The release archive it was read from, by hash.
    assert re.search(r"sha256: [0-9a-f]{64}", (REFERENCE / "PROVENANCE.md").read_text())
    flags = cli_flags()
    # What the extraction must have found for the parse below to mean anything.
    assert flags["--dtype"]["kind"] == "choices" and "bfloat16" in flags["--dtype"]["choices"]
    assert flags["--enable-prefix-caching"]["kind"] == "bool"
    assert flags["--max-model-len"]["kind"] == "int"
    assert len(flags) > 200


def test_every_rendered_vllm_command_line_parses_as_vllm_serve_takes_it(all_plans: dict[str, Plan]) -> None:
    flags = cli_flags()
    for where, isvc in vllm_isvcs(all_plans):
        container = isvc["spec"]["predictor"]["containers"][0]
        tag, parsed = parse_vllm_serve(container["args"], flags)
        assert tag == kserve.MODEL_MOUNT, where
        assert parsed["--served-model-name"] == [isvc["metadata"]["labels"]["modelyard.io/model"]], where
        assert parsed["--port"] == str(container["ports"][0]["containerPort"]), where


def test_every_engine_setting_renders_to_a_flag_vllm_accepts() -> None:
    """Every catalog setting at once (quantization, LoRA, queue bound, no prefix caching) parses; the parser
    itself refuses what vllm serve would."""
    entry = llm_entry()
    entry["runtime"]["engine"] = {
        "max_model_len": 4096,
        "gpu_memory_utilization": 0.85,
        "max_num_seqs": 32,
        "max_queued_requests": 100,
        "dtype": "float16",
        "quantization": "awq_marlin",
        "prefix_caching": False,
        "lora": [{"name": "support-tone"}, {"name": "legal"}],
        "max_lora_rank": 64,
        "request_timeout_s": 600,
    }
    model = parse_catalog({"models": [entry]}, stack="dev", source="x", tier="dev").models[0]
    flags = cli_flags()
    _, parsed = parse_vllm_serve(vllm.RUNTIME.args(model), flags)
    assert parsed["--enable-prefix-caching"] is False
    assert parsed["--lora-modules"] == [
        "support-tone=/mnt/models/adapters/support-tone",
        "legal=/mnt/models/adapters/legal",
    ]
    assert parsed["--quantization"] in flags["--quantization"]["suggested"]
    for bad in (["--max-model-len", "lots"], ["--dtype", "int4"], ["--max-lora-rank", "12"], ["--no-port"], ["--nope"]):
        with pytest.raises(ValueError):
            parse_vllm_serve(["/mnt/models", *bad], flags)


@pytest.mark.parametrize("quantization", vllm.Engine.model_fields["quantization"].annotation.__args__[0].__args__)  # type: ignore[union-attr]
def test_each_quantization_the_catalog_offers_is_one_vllm_knows(quantization: str) -> None:
    assert quantization in cli_flags()["--quantization"]["suggested"]


def test_every_series_the_platform_reads_is_one_vllm_creates() -> None:
    ref = vllm_metrics()
    created = ref["metrics"]
    read = {
        signals.VLLM_TTFT: "histogram",
        signals.VLLM_ITL: "histogram",
        signals.VLLM_REQUEST_SUCCESS: "counter",
        signals.VLLM_ADMISSION_REJECTIONS: "counter",
        signals.VLLM_WAITING: "gauge",
        signals.VLLM_RUNNING: "gauge",
        signals.VLLM_KV_CACHE: "gauge",
        signals.VLLM_PROMPT_TOKENS: "counter",
        signals.VLLM_GENERATION_TOKENS: "counter",
    }
    for series, kind in read.items():
        # prometheus_client exposes a counter `x` as `x_total`.
        name = series.removesuffix("_total") if kind == "counter" else series
        assert name in created, series
        assert created[name]["type"] == kind, series
    assert "error" in ref["finish_reasons"]
    as_le = [
        [str(float(b)) for b in ref["buckets"][k]]
        for k in ("TIME_TO_FIRST_TOKEN_BUCKETS", "INTER_TOKEN_LATENCY_BUCKETS")
    ]
    assert as_le == [list(signals.VLLM_TTFT_BUCKETS), list(signals.VLLM_ITL_BUCKETS)]
    for runtime in RUNTIMES.values():
        for sig in runtime.signals:
            if sig.series.startswith("vllm:"):
                assert sig.series in created, sig.series


# -- the pod


def test_the_vllm_pod_kserve_builds_can_run_its_engine(all_plans: dict[str, Plan]) -> None:
    for where, isvc in vllm_isvcs(all_plans):
        pod = kserve.model_pod(isvc)["spec"]
        assert pod_security.violations(pod) == [], where
        container = pod["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        env = {e["name"]: e["value"] for e in container["env"]}
        # Writable: HOME (every cache resolves under it), /tmp, /dev/shm; the weights read-only.
        for path in (env["HOME"], "/tmp", "/dev/shm"):
            assert "emptyDir" in volumes[mounts[path]], (where, path)
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert env["STORAGE_URI"] == kserve.MODEL_MOUNT and env["HF_HUB_OFFLINE"] == "1"
        assert any(m["mountPath"] == kserve.MODEL_MOUNT and m.get("readOnly") for m in container["volumeMounts"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/health", (where, probe)
        startup = container["startupProbe"]
        args = container["args"]
        tp = int(args[args.index("--tensor-parallel-size") + 1])
        assert tp == int(container["resources"]["limits"][GPU_RESOURCE])
        shutdown = int(args[args.index("--shutdown-timeout") + 1])
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] > pre_stop + shutdown, where
        assert startup["periodSeconds"] * startup["failureThreshold"] >= vllm.ENGINE_START_S, where


def test_startup_budget_grows_with_the_weights_and_shm_with_tensor_parallelism() -> None:
    small = vllm.Architecture(**LLAMA_8B, weights_gib=2.0)
    large = vllm.Architecture(**LLAMA_8B, weights_gib=64.0)
    assert vllm.startup_seconds(large, 1) - vllm.startup_seconds(small, 1) == pytest.approx(62 * 1024 / 125)
    assert vllm.startup_seconds(large, 4) < vllm.startup_seconds(large, 1)
    assert [vllm.shm_gib(tp) for tp in (1, 2, 4, 8)] == [1, 4, 8, 16]


@pytest.mark.parametrize("env", ENVS)
def test_every_model_pod_declares_the_port_its_pod_monitor_scrapes(all_plans: dict[str, Plan], env: str) -> None:
    """A PodMonitor drops a target whose pod declares no such port (prometheus-operator's PodMetricsEndpoint):
    KServe's built-in runtimes declare none, so the catalog's `model` must."""
    plan = all_plans[env]
    values = plan.named("kubernetes:helm.sh/v3:Release", "kserve-release")["inputs"]["values"]
    settings = kserve.Settings.from_values(values)
    monitors = {
        m["inputs"]["spec"]["selector"]["matchLabels"]["modelyard.io/model"]: m["inputs"]["spec"]
        for m in plan.of_type(PODMONITOR)
        if m["inputs"]["spec"]["selector"].get("matchLabels")
    }
    for name, isvc in isvcs(plan).items():
        model = isvc["metadata"]["labels"]["modelyard.io/model"]
        port = monitors[model]["podMetricsEndpoints"][0]["port"]
        pod = kserve.model_pod(isvc, settings)["spec"]
        declared = {p.get("name") for c in pod["containers"] for p in c.get("ports", [])}
        assert port in declared, f"{env}/{name}: PodMonitor port {port} not in {declared}"


def test_a_kserve_runtime_model_declares_the_runtimes_port() -> None:
    entry = cpu_entry("iris", {"kind": "kserve", "model_format": "sklearn"})
    from modelyard.workloads.models import predictor

    model = parse_catalog({"models": [entry]}, stack="dev", source="x", tier="dev").models[0]
    spec = predictor(
        model, isvc_name="iris", version="1", min_replicas=1, bucket="b", registry="r", service_account="s"
    )
    pod = kserve.model_pod({"metadata": {"name": "iris", "namespace": "models"}, "spec": {"predictor": spec}})
    assert pod["spec"]["containers"][0]["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert pod["spec"]["containers"][0]["image"].startswith("kserve/sklearnserver:")


# -- autoscaling on the engine's queue


def test_the_llm_scales_on_the_engines_queue_and_fails_safe(all_plans: dict[str, Plan]) -> None:
    scalers = {s["inputs"]["metadata"]["name"]: s["inputs"]["spec"] for s in all_plans["prod"].of_type(SCALEDOBJECT)}
    spec = scalers["qwen-chat-predictor"]
    trigger = spec["triggers"][0]
    assert (
        trigger["metadata"]["query"]
        == f'sum({signals.VLLM_WAITING}{{namespace="models", inferenceservice="qwen-chat"}})'
    )
    assert trigger["metadata"]["ignoreNullValues"] == "false" and trigger["metricType"] == "AverageValue"
    assert spec["fallback"]["behavior"] == "currentReplicasIfHigher"
    isvc = isvcs(all_plans["prod"])["qwen-chat"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    assert "scaleMetric" not in isvc["spec"]["predictor"]


def test_kv_cache_signal_reads_percent() -> None:
    model = parse_catalog(
        {"models": [llm_entry(replicas={"min": 1, "max": 2, "scale_metric": "kv_cache"})]},
        stack="dev",
        source="x",
        tier="dev",
    ).models[0]
    assert model.replicas.scale_target == 80
    assert model.scaling_signal is not None
    assert model.scaling_signal.query("models", "chat") == (
        f'sum({signals.VLLM_KV_CACHE}{{namespace="models", inferenceservice="chat"}}) * 100'
    )


# -- what can be known before a GPU exists


def test_kv_cache_bytes_per_token_follow_the_models_shape() -> None:
    """Llama-3.1-8B: 32 layers x 8 KV heads x 128 dims x 2 (K and V) x 2 bytes = 128 KiB a token; with
    tensor parallelism each GPU holds its share of the KV heads, never less than one (vLLM's get_num_kv_heads)."""
    arch = vllm.Architecture(**LLAMA_8B, weights_gib=14.96)
    assert vllm.kv_bytes_per_token(arch, 1, "bfloat16") == 131072
    assert vllm.kv_bytes_per_token(arch, 2, "auto") == 65536
    assert vllm.kv_bytes_per_token(arch, 16, "auto") == vllm.kv_bytes_per_token(arch, 8, "auto") == 16384


def pools(*types: str) -> list[dict[str, Any]]:
    return [{"name": "a10g", "instanceTypes": list(types)}]


def test_the_full_llama_context_cannot_fit_an_a10g_and_says_why() -> None:
    """What a user of the issue tried: Llama-3.1-8B at its whole 131,072-token context on an A10G."""
    entry = llm_entry(runtime__engine__max_model_len=131072)
    catalog = parse_catalog({"models": [entry]}, stack="staging", source="x", tier="staging")
    problems = placement_problems(catalog, pools("g5.xlarge", "g5.2xlarge"), "staging")
    assert len(problems) == 1
    text = problems[0]
    assert text.startswith("catalog.models[0].runtime.engine.max_model_len: 131,072 tokens need 16.0 GiB")
    assert "g5.xlarge" in text and "vLLM refuses to start" in text
    # At 8,192 tokens it fits; so does the whole context on a 48 GiB L40S.
    assert (
        placement_problems(
            parse_catalog({"models": [llm_entry()]}, stack="dev", source="x", tier="dev"), pools("g5.xlarge"), "dev"
        )
        == []
    )
    fits = parse_catalog({"models": [entry]}, stack="dev", source="x", tier="dev")
    assert placement_problems(fits, pools("g6e.xlarge"), "dev") == []


def test_kv_estimate_reads_the_smallest_gpu_of_the_pool() -> None:
    runtime = vllm.VllmRuntime(
        kind="vllm",
        architecture=vllm.Architecture(**LLAMA_8B, weights_gib=14.96),
        engine=vllm.Engine(max_model_len=8192),
    )
    left, tokens = vllm.kv_cache_tokens(runtime, gpus.GPU_CLASSES["a10g"].instance_types["g5.xlarge"].gpu_memory_gib, 1)
    assert left == pytest.approx(24 * 0.93 * 0.9 - 14.96 - 2.0)
    # Whole 64-token blocks of 128 KiB a token, less the null block.
    assert tokens == (int(left * 2**30) // (131072 * 64) - 1) * 64


def test_one_request_must_fit_whole_blocks_beside_the_null_block() -> None:
    """vLLM's own case (tests/v1/core/test_kv_cache_planning.py at 0.34.0,
    test_check_enough_kv_cache_memory_reserves_null_block): 512 tokens in blocks of 16 need 32 blocks; a cache
    of exactly 32 is refused (one is the null block), 33 is accepted."""
    per_token = 4096
    page = per_token * 16
    assert vllm.usable_tokens(page * 32, per_token, 16) < 512 <= vllm.usable_tokens(page * 33, per_token, 16)
    assert vllm.usable_tokens(page * 33 - 1, per_token, 16) < 512
    assert vllm.usable_tokens(0, per_token) == 0


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"resources": {"cpu": "3", "memory": "10Gi"}},
            "catalog.models[0].resources.gpu: is required for the vllm runtime (vLLM serves on GPUs) (got None)",
        ),
        (
            {"resources__gpu__count": 3},
            "catalog.models[0].resources.gpu.count: is the tensor parallel size and must divide the model's attention "
            "heads (32) (got 3)",
        ),
        (
            {"runtime__engine__max_model_len": 262144},
            "catalog.models[0].runtime.engine.max_model_len: must be ≤ the model's max_position_embeddings (131072) "
            "(got 262144)",
        ),
        (
            {"runtime__architecture__kv_heads": 5},
            "catalog.models[0].runtime.architecture.kv_heads: must divide attention_heads (32) (got 5)",
        ),
        (
            {"slo__p99_latency_ms": 500},
            "catalog.models[0].slo.p99_latency_ms: is not read by the vllm runtime; it takes ttft_ms, itl_ms (got 500)",
        ),
        (
            {"slo__ttft_ms": 300},
            "catalog.models[0].slo.ttft_ms: must be one of vLLM's time-to-first-token buckets: 1, 5, 10, 20, 40, 60, "
            "80, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000, 20000, 40000, 80000, 160000, 640000, 2560000 "
            "(got 300)",
        ),
        (
            {"replicas": {"min": 1, "max": 2, "scale_metric": "cpu"}},
            "catalog.models[0].replicas.scale_metric: cpu does not measure a GPU predictor's load (its CPU is busy "
            "at a few percent of the GPU); use queue or kv_cache, the serving signal (got 'cpu')",
        ),
        (
            {"replicas": {"min": 1, "max": 2, "scale_metric": "inflight"}},
            "catalog.models[0].replicas.scale_metric: inflight is a signal of the modelyard runtime "
            "(modelyard_inflight_texts); the vllm runtime scales on cpu, memory, queue, kv_cache (got 'inflight')",
        ),
        (
            {"runtime__engine__lora": [{"name": "tone"}, {"name": "tone"}]},
            "catalog.models[0].runtime.engine.lora: names each adapter once (got 'tone')",
        ),
        (
            {"runtime__engine__dtype": "float32"},
            "catalog.models[0].runtime.engine.dtype: must be 'auto', 'bfloat16' or 'float16' (got 'float32')",
        ),
    ],
)
def test_each_llm_refusal_is_one_line_naming_its_field(changes: dict[str, Any], expected: str) -> None:
    assert problems_of(llm_entry(**changes)) == [expected]


def test_a_fixed_percentile_runtime_refuses_latency_percentile() -> None:
    entry = cpu_entry("minilm", {"kind": "modelyard", "image_tag": "1.0.0-cpu"}, latency_percentile=95)
    assert problems_of(entry) == [
        "catalog.models[0].slo.latency_percentile: is not read by the modelyard runtime (p99_latency_ms is p99) "
        "(got 95)"
    ]


def test_the_shipped_llms_fit_their_pools() -> None:
    for env in ("staging", "prod"):
        w = load_workloads(PROJECTS["workloads"].stack_file(env), stack=env)
        raw = yaml.safe_load(PROJECTS["platform"].stack_file(env).read_text())["config"]["modelyard:platform"]
        pool_list = [{"name": p["name"], "instanceTypes": p["instance_types"]} for p in raw["gpu_pools"]]
        llms = [m for m in w.catalog.models if m.runtime.kind == "vllm"]
        assert llms, env
        assert placement_problems(w.catalog, pool_list, env) == []
