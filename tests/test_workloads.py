"""The workloads project: catalog validation, the plan of each environment (with the StackReference
answered from the platform plan), canaries, and the SLO objectives the platform's alerts read."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ENVS, Plan, plan_all
from support import promtool

from modelyard.cli import main
from modelyard.platform import rules
from modelyard.policies.governance import kserve, pod_security
from modelyard.policies.governance.rules import RULES
from modelyard.programs import PROJECTS, REPO_ROOT
from modelyard.validation import ConfigError
from modelyard.workloads.catalog import WORKLOADS_KEY, load_workloads, parse_catalog
from modelyard.workloads.models import slo_rule_groups

BAD = sorted((Path(__file__).parent / "fixtures" / "bad_catalog").glob("*.yaml"))
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


def header(path: Path) -> tuple[str, list[str]]:
    lines = path.read_text().splitlines()
    return lines[0].removeprefix("# stack: "), [
        x.removeprefix("# expect: ") for x in lines if x.startswith("# expect: ")
    ]


def test_every_bad_catalog_fails_in_its_own_way() -> None:
    assert BAD, "no bad catalogs under tests/fixtures/bad_catalog"
    assert len({tuple(header(p)[1]) for p in BAD}) == len(BAD)


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_catalog_gives_exactly_the_expected_problems(path: Path) -> None:
    stack, expected = header(path)
    with pytest.raises(ConfigError) as caught:
        parse_catalog(yaml.safe_load(path.read_text()), stack=stack, source=path.name, tier=stack)
    assert caught.value.problems == expected


def isvcs(plan: Plan) -> dict[str, dict[str, Any]]:
    return {s["inputs"]["metadata"]["name"]: s["inputs"] for s in plan.of_type(ISVC)}


@pytest.mark.parametrize("env", ENVS)
def test_every_model_gets_its_objects_and_urns_keep_their_project(all_plans: dict[str, Plan], env: str) -> None:
    plan = all_plans[env]
    w = load_workloads(PROJECTS["workloads"].stack_file(env), stack=env)
    projects = {p["project"] for p in plan.digest["modelyard"]["projects"]}
    assert projects == {"modelyard-platform", "modelyard-workloads"}
    for state in plan.of_type(ISVC):
        assert state["urn"].startswith(f"urn:pulumi:{env}::modelyard-workloads::")
    for m in w.catalog.models:
        names = [m.name] + ([f"{m.name}-canary"] if m.canary_active else [])
        assert set(names) <= set(isvcs(plan))
        pdbs = {
            s["inputs"]["metadata"]["name"]: s["inputs"]
            for s in plan.of_type("kubernetes:policy/v1:PodDisruptionBudget")
        }
        for name in names:
            assert pdbs[name]["spec"]["selector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": name}
        monitors = {
            s["inputs"]["metadata"]["name"] for s in plan.of_type("kubernetes:monitoring.coreos.com/v1:PodMonitor")
        }
        assert m.name in monitors
    outputs = plan.digest["modelyard"]["projects"][1]["outputs"]
    assert outputs["models"] == [m.name for m in w.catalog.models]


def test_inference_service_fields(all_plans: dict[str, Plan]) -> None:
    plan = all_plans["prod"]
    platform = plan.digest["modelyard"]["projects"][0]["outputs"]
    gpu = isvcs(plan)["minilm-gpu"]
    assert gpu["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Standard",
        # KServe makes no HPA: the ScaledObject below scales the predictor on the serving signal.
        "serving.kserve.io/autoscalerClass": "external",
    }
    assert gpu["metadata"]["labels"]["modelyard.io/model-version"] == "1"
    p = gpu["spec"]["predictor"]
    assert p["minReplicas"] == 3 and p["maxReplicas"] == 8
    assert not {"scaleMetric", "scaleTarget", "autoScaling"} & set(p)
    scalers = {
        s["inputs"]["metadata"]["name"]: s["inputs"]["spec"]
        for s in plan.of_type("kubernetes:keda.sh/v1alpha1:ScaledObject")
    }
    assert set(scalers) == {"minilm-gpu-predictor", "minilm-gpu-canary-predictor", "qwen-chat-predictor"}
    assert scalers["minilm-gpu-predictor"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "minilm-gpu-predictor"},
        "minReplicaCount": 3,
        "maxReplicaCount": 8,
        "fallback": {"failureThreshold": 3, "replicas": 4, "behavior": "currentReplicasIfHigher"},
        "triggers": [
            {
                "type": "prometheus",
                "name": "inflight",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": platform["prometheusUrl"],
                    "query": 'sum(modelyard_inflight_texts{namespace="models", inferenceservice="minilm-gpu"})',
                    "threshold": "256",
                    "ignoreNullValues": "false",
                },
            }
        ],
    }
    assert platform["prometheusUrl"] == "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
    canary = scalers["minilm-gpu-canary-predictor"]["triggers"][0]["metadata"]["query"]
    assert 'inferenceservice="minilm-gpu-canary"' in canary
    # The canary answers to the catalog's name, as its clients address it.
    [canary_container] = isvcs(plan)["minilm-gpu-canary"]["spec"]["predictor"]["containers"]
    assert canary_container["args"][:2] == ["--model_name", "minilm-gpu"]
    assert p["serviceAccountName"] == "minilm-gpu-puller"
    assert p["nodeSelector"] == {"modelyard.io/gpu-pool": "a10g"}
    assert p["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert p["securityContext"]["runAsNonRoot"] is True
    [c] = p["containers"]
    assert c["image"] == f"{platform['ecrRepositoryUrl']}:1.0.0-cuda"
    assert (
        c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}
    )
    assert c["env"] == [{"name": "STORAGE_URI", "value": f"s3://{platform['modelBucket']}/minilm-gpu/1/"}]
    assert c["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/models/minilm-gpu/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    sc = c["securityContext"]
    assert (
        sc["readOnlyRootFilesystem"] is True
        and sc["allowPrivilegeEscalation"] is False
        and sc["capabilities"] == {"drop": ["ALL"]}
    )
    cpu = isvcs(plan)["minilm"]["spec"]["predictor"]
    # A model without a GPU runs on the CPU model pool, never beside the platform on the system nodes.
    assert cpu["nodeSelector"] == {"modelyard.io/pool": "cpu-models"}
    assert cpu["tolerations"] == [
        {"key": "modelyard.io/cpu-models", "value": "true", "effect": "NoSchedule", "operator": "Equal"}
    ]
    # A CPU model keeps KServe's HPA on CPU.
    assert cpu["scaleMetric"] == "cpu" and cpu["scaleTarget"] == 70 and "autoScaling" not in cpu
    assert "serving.kserve.io/autoscalerClass" not in isvcs(plan)["minilm"]["metadata"]["annotations"]


def test_prod_keeps_at_least_two_replicas(all_plans: dict[str, Plan]) -> None:
    for name, isvc in isvcs(all_plans["prod"]).items():
        if isvc["metadata"]["labels"]["modelyard.io/role"] == "stable":
            assert isvc["spec"]["predictor"]["minReplicas"] >= 2, name


def test_canary_split_promote_and_rollback_are_one_line(tmp_path: Path) -> None:
    catalog = yaml.safe_load((REPO_ROOT / "workloads" / "catalog" / "prod.yaml").read_text())
    running = isvcs(plan_all("prod", catalog, tmp_path))
    assert running["minilm-gpu-canary"]["spec"]["predictor"]["containers"][0]["env"][0]["value"].endswith(
        "/minilm-gpu/2/"
    )
    assert running["minilm-gpu-canary"]["spec"]["predictor"]["minReplicas"] == 1  # 1 of 4 = 25%
    promoted = copy.deepcopy(catalog)
    promoted["models"][1]["version"] = "2"
    after = isvcs(plan_all("prod", promoted, tmp_path))
    assert "minilm-gpu-canary" not in after
    assert after["minilm-gpu"]["spec"]["predictor"]["containers"][0]["env"][0]["value"].endswith("/minilm-gpu/2/")
    rolled_back = copy.deepcopy(catalog)
    rolled_back["models"][1]["canary"]["traffic_percent"] = 0
    back = isvcs(plan_all("prod", rolled_back, tmp_path))
    assert (
        "minilm-gpu-canary" not in back
        and back["minilm-gpu"]["metadata"]["labels"]["modelyard.io/model-version"] == "1"
    )


def test_plan_shows_the_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "prod", "--project", "workloads"]) == 0
    out = capsys.readouterr().out
    assert "canary v2: 25% of traffic by route weight, 1 replica(s)" in out
    assert "modelyard plan prod — modelyard-workloads/prod" in out


def test_all_plans_both_projects_into_one_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "all.json"
    assert main(["plan", "staging", "--project", "all", "--out", str(out)]) == 0
    digest = json.loads(out.read_text())
    assert [p["project"] for p in digest["modelyard"]["projects"]] == ["modelyard-platform", "modelyard-workloads"]
    assert f"Policy (policies/config/staging.json): {len(RULES)} rules, 0 mandatory" in capsys.readouterr().out


def test_a_pool_the_platform_lacks_is_a_config_error(tmp_path: Path) -> None:
    catalog = yaml.safe_load((REPO_ROOT / "workloads" / "catalog" / "staging.yaml").read_text())
    catalog["models"][1]["resources"]["gpu"]["pool"] = "h100"
    stack = yaml.safe_load((REPO_ROOT / "workloads" / "Pulumi.staging.yaml").read_text())
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    stack["config"][WORKLOADS_KEY]["catalog"] = str(tmp_path / "catalog.yaml")
    stack_file = tmp_path / "Pulumi.staging.yaml"
    stack_file.write_text(yaml.safe_dump(stack))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard.cli",
            "plan",
            "staging",
            "--project",
            "workloads",
            "--config-file",
            str(stack_file),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert (
        "catalog.models[1].resources.gpu.pool: no such GPU pool in the staging platform stack "
        "(pools: a10g, l4) (got 'h100')" in run.stderr
    )
    assert "Traceback" not in run.stderr


def test_slo_objectives_feed_the_platform_burn_alerts(tmp_path: Path) -> None:
    """promtool: a catalogued model's objective rules plus the platform's rules page on its 5xx burn."""
    w = load_workloads(PROJECTS["workloads"].stack_file("prod"), stack="prod")
    model = w.catalog.models[0]
    groups = slo_rule_groups(model, "models") + rules.slo_groups()
    spec = rules.prometheus_rule_spec(groups, "https://x/runbooks")
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'modelyard_requests_total{{namespace="models", model="{model.name}", code="200"}}',
                        "values": "0+100x90",
                    },
                    {
                        "series": f'modelyard_requests_total{{namespace="models", model="{model.name}", code="503"}}',
                        "values": "0+3x90",
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": "modelyard:slo_latency_threshold",
                        "eval_time": "1m",
                        "exp_samples": [
                            {
                                "labels": "modelyard:slo_latency_threshold"
                                f'{{indicator="request", le="0.25", model="{model.name}", namespace="models"}}',
                                "value": 1,
                            }
                        ],
                    }
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "70m",
                        "alertname": "ModelErrorBudgetBurnFast",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "critical", "namespace": "models", "model": model.name}}
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "slo.test.yaml").write_text(yaml.safe_dump(test))
    result = promtool("test", "rules", "slo.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    check = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout


@pytest.mark.parametrize("env", ENVS)
def test_every_model_pod_as_kserve_injects_it_passes_restricted(all_plans: dict[str, Plan], env: str) -> None:
    plan = all_plans[env]
    values = plan.named("kubernetes:helm.sh/v3:Release", "kserve-release")["inputs"]["values"]
    settings = kserve.Settings.from_values(values)
    model_ns = {
        n["inputs"]["metadata"]["name"]: n["inputs"]["metadata"]["labels"]
        for n in plan.of_type("kubernetes:core/v1:Namespace")
    }
    for name, isvc in isvcs(plan).items():
        assert model_ns[isvc["metadata"]["namespace"]]["pod-security.kubernetes.io/enforce"] == "restricted"
        # No logger or batcher: KServe would inject its agent container, which nothing here configures.
        assert not {"logger", "batcher"} & set(isvc["spec"]["predictor"]), name
        assert pod_security.violations(kserve.model_pod(isvc, settings)["spec"]) == [], f"{env}/{name}"


def test_restricted_refuses_an_injected_storage_initializer_that_states_no_security_context(
    all_plans: dict[str, Plan],
) -> None:
    """KServe's chart (v0.16.0) gives the initializer a securityContext without seccomp; the pod passes
    only with the values set here (or the pod-level seccomp). With none stated, the pod is refused, and the
    pod-security rule, which judges the pod KServe builds, says where."""
    name, isvc = next(iter(isvcs(all_plans["prod"]).items()))
    bare = kserve.Settings(storage={**kserve.STORAGE_DEFAULTS, "containerSecurityContext": {}})
    fields = {field for field, _, _ in pod_security.violations(kserve.model_pod(isvc, bare)["spec"])}
    assert fields == {
        "initContainers[0].securityContext.allowPrivilegeEscalation",
        "initContainers[0].securityContext.capabilities.drop",
    }, name


def test_no_drift_worker_means_no_sample_leaves_a_model_pod() -> None:
    """A catalog without `drift:` runs no worker, and its model servers get no --tap_url (their input histograms
    stay on /metrics); with one, each carries the worker's Service and the catalog's share."""
    from modelyard.workloads.drift import tap_url
    from modelyard.workloads.models import predictor

    entry = {
        "name": "minilm", "team": "search", "runtime": {"kind": "modelyard", "image_tag": "1.0.0-cpu"},
        "version": "4", "resources": {"cpu": "2", "memory": "2Gi"}, "replicas": {"min": 1, "max": 2},
        "slo": {"availability": 0.99, "p99_latency_ms": 500},
    }  # fmt: skip
    catalog = parse_catalog({"models": [entry]}, stack="dev", source="x", tier="dev")
    assert catalog.drift is None
    common = {"isvc_name": "minilm", "version": "4", "min_replicas": 1, "bucket": "b", "registry": "r"}
    [c] = predictor(catalog.models[0], service_account="s", **common)["containers"]  # type: ignore[arg-type]
    assert "--tap_url" not in c["args"] and c["args"][c["args"].index("--model_version") + 1] == "4"
    # Admission by the entry's p99 objective, not a fixed queue.
    assert c["args"][c["args"].index("--latency_objective_ms") + 1] == "500"
    tapped = parse_catalog(
        {"drift": {"image_tag": "1.0.0-cpu", "sample_percent": 2.5}, "models": [entry]},
        stack="dev",
        source="x",
        tier="dev",
    )
    assert tapped.drift is not None and tapped.drift.window == 200
    [c] = predictor(
        tapped.models[0],
        service_account="s",
        tap_url=tap_url("models"),
        tap_share=tapped.drift.sample_percent / 100,
        **common,  # type: ignore[arg-type]
    )["containers"]
    args = c["args"]
    assert args[args.index("--tap_url") + 1] == "http://modelyard-drift.models.svc:8090/v1/samples"
    assert args[args.index("--tap_share") + 1] == "0.025"
