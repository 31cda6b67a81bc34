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
    """The flags as `vllm serve` parses them, and the weights' source as its loaders read it: an object-storage
    path (streamed by the Run:ai loader, which the image installs), with extra-config keys that loader takes."""
    flags = cli_flags()
    loaders = json.loads((REFERENCE / "loaders.json").read_text())
    assert loaders["image_installs_runai_streamer_s3"]
    for where, isvc in vllm_isvcs(all_plans):
        container = isvc["spec"]["predictor"]["containers"][0]
        weights, parsed = parse_vllm_serve(container["args"], flags)
        assert weights.startswith(tuple(loaders["object_storage_schemes"])), where
        assert parsed["--load-format"] in loaders["load_formats"], where
        extra = json.loads(parsed["--model-loader-extra-config"])
        assert set(extra) <= set(loaders["runai_streamer_extra_config_keys"]), where
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
    weights, parsed = parse_vllm_serve(vllm.RUNTIME.args(model, "s3://b/chat/1/"), flags)
    assert weights == "s3://b/chat/1/" and parsed["--load-format"] == "runai_streamer"
    assert parsed["--enable-prefix-caching"] is False
    assert parsed["--lora-modules"] == ["support-tone=/mnt/models/support-tone", "legal=/mnt/models/legal"]
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
        signals.VLLM_REQUEST_GENERATION_TOKENS: "histogram",
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
        # Writable: HOME (every cache, and the config files the streamer pulls, resolve under it), /tmp, /dev/shm.
        for path in (env["HOME"], "/tmp", "/dev/shm"):
            assert "emptyDir" in volumes[mounts[path]], (where, path)
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert env["HF_HUB_OFFLINE"] == "1"
        # The weights stream from the model version's prefix; nothing downloads them to the pod's disk.
        args = container["args"]
        assert re.fullmatch(r"s3://modelyard-[a-z]+-models-\d{12}/[a-z0-9-]+/[^/]+/", args[0]), (where, args[0])
        assert args[args.index("--load-format") + 1] == "runai_streamer"
        assert "STORAGE_URI" not in env and pod["initContainers"] == [], where
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/health", (where, probe)
        startup = container["startupProbe"]
        tp = int(args[args.index("--tensor-parallel-size") + 1])
        assert tp == int(container["resources"]["limits"][GPU_RESOURCE])
        shutdown = int(args[args.index("--shutdown-timeout") + 1])
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] > pre_stop + shutdown, where
        assert startup["periodSeconds"] * startup["failureThreshold"] >= vllm.ENGINE_START_S, where


def test_startup_budget_grows_with_the_weights_and_shm_with_tensor_parallelism() -> None:
    small = vllm.Architecture(**LLAMA_8B, weights_gib=2.0)
    large = vllm.Architecture(**LLAMA_8B, weights_gib=64.0)
    # The whole checkpoint streams once per pod at 0.25 GiB/s, however many GPUs share it.
    assert vllm.startup_seconds(large) - vllm.startup_seconds(small) == pytest.approx(62 / 0.25)
    assert [vllm.shm_gib(tp) for tp in (1, 2, 4, 8)] == [1, 4, 8, 16]
    assert vllm.loader_config(1) == {"concurrency": 16, "memory_limit": 2 * 2**30}
    assert vllm.loader_config(4) == {**vllm.loader_config(1), "distributed": True}


def built_pod(entry: dict[str, Any]) -> dict[str, Any]:
    """The pod spec KServe builds of `entry`'s predictor as the workloads stack renders it (bucket b)."""
    from modelyard.workloads.models import predictor

    model = parse_catalog({"models": [entry]}, stack="dev", source="x", tier="dev").models[0]
    spec = predictor(
        model,
        isvc_name="chat",
        version="1",
        min_replicas=1,
        bucket="b",
        registry="r",
        service_account="model-puller",
        images={"vllm": "img"},
    )
    return kserve.model_pod({"metadata": {"name": "chat", "namespace": "models"}, "spec": {"predictor": spec}})["spec"]


def test_lora_adapters_alone_come_through_the_storage_initializer() -> None:
    """KServe's storage initializer downloads STORAGE_URI into /mnt/models (storage_initializer_injector.go): with
    adapters, STORAGE_URI is the version's adapters/ prefix, so the small adapters land on disk and the base
    weights still stream."""
    entry = llm_entry()
    entry["runtime"]["engine"]["lora"] = [{"name": "legal"}]
    pod = built_pod(entry)
    init = {c["name"]: c for c in pod["initContainers"]}
    assert init[kserve.STORAGE_INITIALIZER]["args"] == ["s3://b/chat/1/adapters/", kserve.MODEL_MOUNT]
    args = pod["containers"][0]["args"]
    assert args[0] == "s3://b/chat/1/" and f"legal={kserve.MODEL_MOUNT}/legal" in args
    assert pod_security.violations(pod) == []


def test_a_modelcar_would_fail_pod_security_so_the_weights_stream() -> None:
    """Why not KServe's modelcar (an OCI image of the weights, cached per node): ported from KServe v0.16.0
    pkg/utils/storage.go ConfigureModelcarToContainer with the chart's uidModelcar 1010, it replaces the model
    container's securityContext with {runAsUser} and adds a sidecar and an init container with only that; the
    pod then fails Pod Security `restricted`, which the model namespace enforces."""
    pod = built_pod(llm_entry())
    assert pod_security.violations(pod) == []
    uid = {"runAsUser": 1010}
    target = pod["containers"][0]
    target["securityContext"] = dict(uid)
    target["volumeMounts"].append({"name": "kserve-provision-location", "mountPath": "/mnt", "readOnly": False})
    image = "registry/models/chat:1"
    limits = {"cpu": "10m", "memory": "15Mi"}
    pod["containers"].append(
        {
            "name": "modelcar",
            "image": image,
            "args": ["sh", "-c", "ln -sf /proc/$$$$/root/models /mnt/models && sleep infinity"],
            "resources": {"limits": limits, "requests": limits},
            "securityContext": dict(uid),
            "volumeMounts": [{"name": "kserve-provision-location", "mountPath": "/mnt"}],
        }
    )
    pod["initContainers"].append(
        {"name": "modelcar-init", "image": image, "resources": {"limits": limits, "requests": limits}}
    )
    pod["volumes"].append({"name": "kserve-provision-location", "emptyDir": {}})
    pod["shareProcessNamespace"] = True
    failed = {field.split(".")[0] for field, _, _ in pod_security.violations(pod)}
    # The model container, the modelcar sidecar and its init container each fail restricted.
    assert {"containers[0]", "containers[1]", "initContainers[0]"} <= failed, failed


def test_an_llm_pod_has_memory_for_shm_the_streamer_and_the_engine() -> None:
    assert problems_of(llm_entry(resources__memory="6Gi")) == [
        "catalog.models[0].resources.memory: must be at least 7Gi for the vllm runtime with 1 GPU: /dev/shm 1Gi, "
        "the weight streamer's 2Gi buffer and 4Gi for the engine (got '6Gi')"
    ]
    assert problems_of(llm_entry(resources__memory="500m"))[0].startswith("catalog.models[0].resources.memory: must")


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
        if "modelyard.io/model" in m["inputs"]["spec"]["selector"].get("matchLabels", {})
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
            {"resources__gpu__count": 3, "resources__memory": "16Gi"},
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


# -- the unit of cost


def test_decode_throughput_is_bound_by_memory_bandwidth() -> None:
    """The plan's assumption, by hand for Qwen2.5-7B (the shipped LLM) on an L4: a step reads 14.2 GiB of
    weights and 32 sequences x 1,024 tokens x 56 KiB of KV cache at 60 % of 300 GB/s, and yields 32 tokens."""
    arch = vllm.Architecture(
        layers=28, attention_heads=28, kv_heads=4, head_dim=128, max_position_embeddings=32768, weights_gib=14.2
    )
    runtime = vllm.VllmRuntime(kind="vllm", architecture=arch, engine=vllm.Engine(max_model_len=16384))
    step = 14.2 * 2**30 + 32 * 1024 * (2 * 28 * 4 * 128 * 2)
    assert vllm.decode_tokens_per_second(runtime, 300, 1) == pytest.approx(32 * 0.6 * 300e9 / step)
    assert vllm.decode_tokens_per_second(runtime, 300, 1) == pytest.approx(336.3, abs=0.1)
    # Twice the bandwidth, twice the tokens; two GPUs in tensor parallel each read half of everything.
    assert vllm.decode_tokens_per_second(runtime, 600, 1) == pytest.approx(
        2 * vllm.decode_tokens_per_second(runtime, 300, 1)
    )
    assert vllm.decode_tokens_per_second(runtime, 300, 2) > 1.9 * vllm.decode_tokens_per_second(runtime, 300, 1)
    # A batch bound below the assumption is the batch; a short context shrinks the KV cache read.
    few = runtime.model_copy(update={"engine": vllm.Engine(max_model_len=16384, max_num_seqs=8)})
    assert vllm.decode_tokens_per_second(few, 300, 1) == pytest.approx(
        8 * 0.6 * 300e9 / (14.2 * 2**30 + 8 * 1024 * 57344)
    )
    short = runtime.model_copy(update={"engine": vllm.Engine(max_model_len=512)})
    assert vllm.decode_tokens_per_second(short, 300, 1) > vllm.decode_tokens_per_second(runtime, 300, 1)


def test_the_plan_prices_a_million_tokens_from_the_pools_cheapest_gpu() -> None:
    from modelyard.verdicts import unit_cost_text

    w = load_workloads(PROJECTS["workloads"].stack_file("staging"), stack="staging")
    llm = next(m for m in w.catalog.models if m.runtime.kind == "vllm")
    l4 = {"name": llm.resources.gpu.pool, "gpuClass": "l4", "instanceTypes": ["g6.2xlarge", "g6.xlarge"]}
    throughput = llm.runtime_module.throughput(llm, gpus.GPU_CLASSES["l4"])
    per_million = 0.8048 / (throughput.per_second * 3600 / 1e6)
    text = unit_cost_text(w.catalog.models, [{**l4, "capacityTypes": ["on-demand"]}], "us-east-1")
    assert f"${per_million:.2f} per million on-demand (1 x $0.80/GPU-hour on g6.xlarge)" in text
    assert "spot" not in text and "assumed: 32 sequences of 1,024 tokens" in text and "L4's 300 GB/s" in text
    spot = unit_cost_text(w.catalog.models, [{**l4, "capacityTypes": ["spot", "on-demand"]}], "us-east-1")
    assert f"${per_million * 0.4:.2f} on spot" in spot
    # Only models whose runtime states a unit are priced per unit; none, no section.
    others = [m for m in w.catalog.models if m.runtime.kind != "vllm"]
    assert others and unit_cost_text(others, [l4], "us-east-1") == ""
    unpriced = unit_cost_text([llm], [{**l4, "instanceTypes": ["g6.unknown"]}], "us-east-1")
    assert "no instance type of the pool is priced in us-east-1" in unpriced
    # An unpriced region is priced with the default one, as the monthly estimate is.
    assert "(us-east-1, list prices" in unit_cost_text([llm], [l4], "eu-north-9")


# -- a dev LLM that scales to zero


def asleep_entry(**awake: Any) -> dict[str, Any]:
    schedule = {"timezone": "Etc/UTC", "start": "0 8 * * 1-5", "end": "0 19 * * 1-5", **awake}
    return llm_entry(replicas={"min": 0, "max": 1, "awake": schedule})


def test_the_dev_llm_scales_to_zero_and_wakes_on_its_schedule(all_plans: dict[str, Plan]) -> None:
    """KServe v0.16.0 admits minReplicas 0 and, for autoscalerClass external, leaves the Deployment's replicas
    to KEDA (deployment_reconciler.go ignores them for every class but none); KEDA v2.20.2 scales it to zero
    while no trigger is active. The cron trigger is that wake-up, and at zero an absent queue series reads 0
    (Prometheus down is still an error, and the fallback then serves)."""
    plan = all_plans["dev"]
    isvc = isvcs(plan)["qwen-small"]
    assert isvc["spec"]["predictor"]["minReplicas"] == 0
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    [so] = [
        s["inputs"] for s in plan.of_type(SCALEDOBJECT) if s["inputs"]["metadata"]["name"] == "qwen-small-predictor"
    ]
    spec = so["spec"]
    assert spec["minReplicaCount"] == 0 and spec["fallback"]["replicas"] == 1
    queue, cron = spec["triggers"]
    assert queue["metadata"]["query"].endswith(" or vector(0)")
    assert cron == {
        "type": "cron",
        "name": "awake",
        "metadata": {"timezone": "Etc/UTC", "start": "0 8 * * 1-5", "end": "0 19 * * 1-5", "desiredReplicas": "1"},
    }
    from modelyard.policies.governance import admission

    admission.validate_scaled_object(so)
    admission.validate_scalers(so)
    # Staging and prod models never sleep, and their queue stays an error when absent.
    for env in ("staging", "prod"):
        for s in all_plans[env].of_type(SCALEDOBJECT):
            assert s["inputs"]["spec"]["minReplicaCount"] >= 1
            assert "vector(0)" not in s["inputs"]["spec"]["triggers"][0]["metadata"]["query"]


@pytest.mark.parametrize(
    ("entry", "tier", "expected"),
    [
        (
            llm_entry(replicas={"min": 0, "max": 1}),
            "dev",
            "catalog.models[0].replicas.awake: is required with min 0: a schedule that wakes the model (KServe's "
            "Standard mode and KEDA at the pinned versions have nothing that wakes a model at zero on a request) "
            "(got None)",
        ),
        (
            asleep_entry(),
            "staging",
            "catalog.models[0].replicas.min: must be ≥ 1 in the staging tier (only dev scales a model to zero) (got 0)",
        ),
        (
            asleep_entry(start="0 25 * * *"),
            "dev",
            "catalog.models[0].replicas.awake.start: must be a cron schedule as KEDA reads it (such as 0 8 * * 1-5): "
            "end of range (25) above maximum (23): 25 (got '0 25 * * *')",
        ),
        (
            asleep_entry(end="@daily"),
            "dev",
            "catalog.models[0].replicas.awake.end: must be a cron schedule as KEDA reads it (such as 0 8 * * 1-5): "
            "parser does not accept descriptors: @daily (got '@daily')",
        ),
        (
            asleep_entry(timezone="Mars/Olympus"),
            "dev",
            "catalog.models[0].replicas.awake.timezone: must be an IANA time zone such as Europe/Berlin or Etc/UTC "
            "(got 'Mars/Olympus')",
        ),
        (
            llm_entry(
                replicas={"min": 1, "max": 2, "awake": {"timezone": "UTC", "start": "0 8 * * *", "end": "0 9 * * *"}}
            ),
            "dev",
            "catalog.models[0].replicas.awake: is only for a model that scales to zero (min 0, got 1) (got 'set')",
        ),
        (
            cpu_entry("embed", {"kind": "kserve", "model_format": "sklearn"})
            | {
                "replicas": {"min": 0, "max": 2, "awake": {"timezone": "UTC", "start": "0 8 * * *", "end": "0 9 * * *"}}
            },
            "dev",
            "catalog.models[0].replicas.min: 0 needs a serving signal to scale on (KEDA scales to zero; KServe's HPA "
            "on cpu cannot) (got 0)",
        ),
    ],
)
def test_scaling_to_zero_is_refused_where_nothing_would_wake_it(
    entry: dict[str, Any], tier: str, expected: str
) -> None:
    assert problems_of(entry, tier) == [expected]


def test_a_canary_needs_its_stable_version_awake() -> None:
    entry = asleep_entry()
    entry["canary"] = {"version": "2", "traffic_percent": 10}
    assert problems_of(entry) == [
        "catalog.models[0].canary: needs the stable version running: replicas.min ≥ 1 (got '2')"
    ]
