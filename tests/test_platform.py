"""The in-cluster layer under mocks: what each chart is given, and the security settings it carries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import ENVS, Plan, stack_raw

from modelyard.config import FULL_KEY
from modelyard.stackfile import parse_platform_config
from modelyard.validation import ConfigError
from modelyard.versions import HELM_CHARTS

RELEASE = "kubernetes:helm.sh/v3:Release"


def values(plan: Plan, name: str) -> dict[str, Any]:
    return dict(plan.named(RELEASE, name)["inputs"]["values"])


@pytest.mark.parametrize("env", ENVS)
def test_every_release_is_a_pinned_chart_installed_atomically(plans: dict[str, Plan], env: str) -> None:
    releases = plans[env].of_type(RELEASE)
    assert len(releases) == 9
    for release in releases:
        inputs = release["inputs"]
        pinned = [c for c in HELM_CHARTS.values() if c.chart == inputs["chart"]]
        assert pinned and inputs["version"] == pinned[0].version, release["urn"]
        if pinned[0].repository:
            assert inputs["repositoryOpts"] == {"repo": pinned[0].repository}
        assert inputs["atomic"] is True and inputs["cleanupOnFail"] is True


def test_install_order_monitoring_crds_then_cert_manager_then_kserve(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    urn = {name: plan.named(RELEASE, name)["urn"] for name in ("monitoring-release", "cert-manager-release")}
    assert urn["monitoring-release"] in plan.named(RELEASE, "cert-manager-release")["dependencies"]
    assert urn["cert-manager-release"] in plan.named(RELEASE, "kserve-release")["dependencies"]
    assert plan.named(RELEASE, "kserve-crds")["urn"] in plan.named(RELEASE, "kserve-release")["dependencies"]
    for name in ("nvidia-device-plugin", "nvidia-dcgm-exporter"):
        assert urn["monitoring-release"] in plan.named(RELEASE, name)["dependencies"]
    # The gateway's certificate is a cert-manager object: its CRDs come first.
    assert urn["cert-manager-release"] in plan.named(RELEASE, "gateway-release")["dependencies"]


def test_kserve_standard_mode_and_no_entrance_of_its_own(plans: dict[str, Plan]) -> None:
    """KServe creates no Ingress or route: the platform's gateway is the only way in."""
    controller = values(plans["dev"], "kserve-release")["kserve"]["controller"]
    assert controller["deploymentMode"] == "Standard"
    assert controller["gateway"] == {"disableIngressCreation": True, "ingressGateway": {"enableGatewayApi": False}}
    assert controller["nodeSelector"] == {"modelyard.io/pool": "system"}
    with pytest.raises(ConfigError, match=r"serving\.ingress: unknown key"):
        parse_platform_config(
            {**stack_raw("dev")[FULL_KEY], "serving": {"ingress": {"mode": "cluster-local"}}},
            stack="dev",
            source="Pulumi.dev.yaml",
        )


@pytest.mark.parametrize("env", ENVS)
def test_each_model_pulls_as_its_own_account_bound_to_its_own_role(all_plans: dict[str, Plan], env: str) -> None:
    plan = all_plans[env]
    accounts = {a["inputs"]["metadata"]["name"]: a for a in plan.of_type("kubernetes:core/v1:ServiceAccount")}
    isvcs = plan.of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService")
    assert isvcs
    for isvc in isvcs:
        model = isvc["inputs"]["metadata"]["labels"]["modelyard.io/model"]
        name = isvc["inputs"]["spec"]["predictor"]["serviceAccountName"]
        assert name == f"{model}-puller", isvc["urn"]
        account = accounts[name]["inputs"]
        assert account["metadata"]["namespace"] == "models" and account["automountServiceAccountToken"] is False
        notes = account["metadata"]["annotations"]
        role = next(r for r in plan.of_type("aws:iam/role:Role") if r["urn"].endswith(f"::{model}-pull-role"))
        assert role["urn"] in accounts[name]["propertyDependencies"]["metadata"]
        assert notes["serving.kserve.io/s3-region"] == "us-east-1"
        assert notes["serving.kserve.io/s3-endpoint"] == "s3.us-east-1.amazonaws.com"
        assert notes["serving.kserve.io/s3-usehttps"] == "1"
        assert notes["serving.kserve.io/s3-useanoncredential"] == "false"
        # The role trusts exactly this account.
        trust = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"][0]["Condition"]["StringEquals"]
        assert f"system:serviceaccount:models:{name}" in trust.values()
    # The platform makes no pull account of its own any more: nothing reads the whole bucket.
    platform_accounts = [
        a for a in plan.of_type("kubernetes:core/v1:ServiceAccount") if "modelyard-platform" in a["urn"]
    ]
    assert platform_accounts == []


def test_model_namespace_is_restricted_with_default_limits(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    namespaces = {
        n["inputs"]["metadata"]["name"]: n["inputs"]["metadata"]["labels"]
        for n in plan.of_type("kubernetes:core/v1:Namespace")
    }
    enforce = {name: labels["pod-security.kubernetes.io/enforce"] for name, labels in namespaces.items()}
    # Only the namespaces whose daemons read the host are privileged; restricted is still audited there.
    assert {n for n, level in enforce.items() if level == "privileged"} == {"monitoring", "nvidia"}
    assert enforce["models"] == enforce["kserve"] == enforce["cert-manager"] == "restricted"
    assert all(labels["pod-security.kubernetes.io/audit"] == "restricted" for labels in namespaces.values())
    limits = plan.named("kubernetes:core/v1:LimitRange", "kserve-models-defaults")["inputs"]
    assert limits["metadata"]["namespace"] == "models"
    assert limits["spec"]["limits"][0]["default"] == {"cpu": "2", "memory": "4Gi"}


def test_nvidia_daemons_run_only_on_gpu_nodes(plans: dict[str, Plan]) -> None:
    for name in ("nvidia-device-plugin", "nvidia-dcgm-exporter"):
        v = values(plans["dev"], name)
        assert v["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        terms = v["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [{"matchExpressions": [{"key": "modelyard.io/gpu-pool", "operator": "Exists"}]}]
        assert v["resources"]["limits"], name
    monitor = values(plans["dev"], "nvidia-dcgm-exporter")["serviceMonitor"]
    assert monitor["enabled"] is True and monitor["honorLabels"] is True
    assert monitor["relabelings"] == [{"action": "labeldrop", "regex": "pod|namespace|container"}]


def test_only_gpu_daemons_and_the_node_exporter_tolerate_the_gpu_taint(plans: dict[str, Plan]) -> None:
    tolerating = set()
    for release in plans["prod"].of_type(RELEASE):
        if "nvidia.com/gpu" in json.dumps(release["inputs"]["values"]):
            tolerating.add(release["urn"].rsplit("::", 1)[1])
    assert tolerating == {"nvidia-device-plugin", "nvidia-dcgm-exporter", "monitoring-release"}
    kps = values(plans["prod"], "monitoring-release")
    assert "nvidia.com/gpu" not in json.dumps({k: v for k, v in kps.items() if k != "prometheus-node-exporter"})


def test_cert_manager_hardened_with_crds_and_metrics(plans: dict[str, Plan]) -> None:
    v = values(plans["prod"], "cert-manager-release")
    assert v["crds"] == {"enabled": True, "keep": True}
    assert v["replicaCount"] == 2 and v["podDisruptionBudget"]["enabled"] is True
    for part in (v, v["webhook"], v["cainjector"]):
        assert part["containerSecurityContext"]["readOnlyRootFilesystem"] is True
        assert part["securityContext"]["runAsNonRoot"] is True
        assert part["resources"]["limits"]
    assert v["prometheus"]["servicemonitor"]["enabled"] is True
    assert values(plans["dev"], "cert-manager-release")["podDisruptionBudget"]["enabled"] is False


@pytest.mark.parametrize(
    ("env", "retention", "storage", "replicas"),
    [("dev", "7d", "20Gi", 1), ("staging", "15d", "50Gi", 1), ("prod", "30d", "200Gi", 2)],
)
def test_prometheus_retention_and_storage_per_environment(
    plans: dict[str, Plan], env: str, retention: str, storage: str, replicas: int
) -> None:
    spec = values(plans[env], "monitoring-release")["prometheus"]["prometheusSpec"]
    assert spec["retention"] == retention and spec["replicas"] == replicas
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == storage and claim["storageClassName"] == "gp3-encrypted"
    for key in ("serviceMonitor", "podMonitor", "rule", "probe"):
        assert spec[f"{key}SelectorNilUsesHelmValues"] is False
    assert spec["externalLabels"]["env"] == env


@pytest.mark.parametrize("env", ENVS)
def test_prometheus_and_alertmanager_replicas_sit_in_different_zones_with_a_disruption_budget(
    plans: dict[str, Plan], env: str
) -> None:
    """Where there are two or more replicas, a zone spread on the label the chart's own PDBs select the
    operator's pods by (kube-prometheus-stack 81.6.2 templates/prometheus/podDisruptionBudget.yaml and
    templates/alertmanager/podDisruptionBudget.yaml: `app.kubernetes.io/name`), and the chart's PDB; with
    one replica neither (a PDB of minAvailable 1 would block every drain)."""
    chart = values(plans[env], "monitoring-release")
    for app, spec_key in (("prometheus", "prometheusSpec"), ("alertmanager", "alertmanagerSpec")):
        spec = chart[app][spec_key]
        if spec["replicas"] < 2:
            assert "topologySpreadConstraints" not in spec and "podDisruptionBudget" not in chart[app]
            continue
        (spread,) = spec["topologySpreadConstraints"]
        assert spread["topologyKey"] == "topology.kubernetes.io/zone" and spread["maxSkew"] == 1
        assert spread["whenUnsatisfiable"] == "DoNotSchedule"
        assert spread["labelSelector"] == {"matchLabels": {"app.kubernetes.io/name": app}}
        assert chart[app]["podDisruptionBudget"] == {"enabled": True, "minAvailable": 1}
    if env == "prod":
        assert chart["prometheus"]["prometheusSpec"]["replicas"] >= 2 and "podDisruptionBudget" in chart["alertmanager"]


@pytest.mark.parametrize("env", ENVS)
def test_storage_class_is_encrypted_and_kept_where_protected(plans: dict[str, Plan], env: str) -> None:
    sc = plans[env].one("kubernetes:storage.k8s.io/v1:StorageClass")["inputs"]
    # Where backups are on (staging, prod), the EBS CSI driver tags every volume for the backup selection.
    tags = {"tagSpecification_1": f"modelyard-backup={env}-monitoring"} if env != "dev" else {}
    assert sc["parameters"] == {"type": "gp3", "encrypted": "true", **tags}
    assert sc["reclaimPolicy"] == ("Delete" if env == "dev" else "Retain")


@pytest.mark.parametrize("env", ENVS)
def test_grafana_never_has_a_default_password(plans: dict[str, Plan], env: str) -> None:
    plan = plans[env]
    grafana = values(plan, "monitoring-release")["grafana"]
    assert grafana["admin"]["existingSecret"] == "grafana-admin"
    assert "adminPassword" not in grafana and "prom-operator" not in json.dumps(grafana)
    assert grafana["grafana.ini"]["auth.anonymous"]["enabled"] is False
    assert grafana["grafana.ini"]["users"]["allow_sign_up"] is False
    secret = plan.one("kubernetes:core/v1:Secret")["inputs"]
    assert secret["metadata"]["name"] == "grafana-admin" and secret["stringData"] == "[secret]"
    password = plan.one("random:index/randomPassword:RandomPassword")["inputs"]
    assert password["length"] >= 32
    assert plan.outputs()["grafanaAdminSecret"] == "monitoring/grafana-admin"


def test_alertmanager_routes_by_severity_to_configured_receivers(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    am = values(plan, "monitoring-release")["alertmanager"]
    assert am["enabled"] is True
    config = am["config"]
    routes = [(r["matchers"], r["receiver"], r.get("continue")) for r in config["route"]["routes"]]
    assert (['severity = "critical"'], "oncall", True) in routes
    assert (['severity = "critical"'], "ml-platform", False) in routes
    assert (['severity = "warning"'], "ml-platform", False) in routes
    assert config["route"]["receiver"] == "ml-platform"
    receivers = {r["name"]: r for r in config["receivers"]}
    assert (
        receivers["oncall"]["webhook_configs"][0]["url_file"] == "/etc/alertmanager/secrets/alertmanager-pagerduty/url"
    )
    assert am["alertmanagerSpec"]["secrets"] == ["alertmanager-deadmans-switch", "alertmanager-pagerduty"]
    topic = receivers["ml-platform"]["sns_configs"][0]
    assert topic["topic_arn"].startswith("arn:aws:sns:us-east-1:123456789012:") and topic["sigv4"] == {
        "region": "us-east-1"
    }
    role_arn = am["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role_arn.startswith("arn:aws:iam::123456789012:role/alerts-alertmanager-role")
    assert am["serviceAccount"]["name"] == "alertmanager"
    assert am["alertmanagerSpec"]["replicas"] == 3


def test_eks_managed_control_plane_is_not_scraped(plans: dict[str, Plan]) -> None:
    v = values(plans["dev"], "monitoring-release")
    for part in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert v[part] == {"enabled": False}
    assert v["defaultRules"]["rules"] == {"alertmanager": False, "prometheus": False}
    allow = v["kube-state-metrics"]["metricLabelsAllowlist"]
    assert "pods=[serving.kserve.io/inferenceservice]" in allow
    assert "nodes=[node.kubernetes.io/instance-type,karpenter.sh/capacity-type,modelyard.io/gpu-pool]" in allow


def test_model_pods_are_scraped_by_a_podmonitor_on_kserve_s_label(plans: dict[str, Plan]) -> None:
    monitor = plans["dev"].named("kubernetes:monitoring.coreos.com/v1:PodMonitor", "monitoring-models-podmonitor")[
        "inputs"
    ]["spec"]
    assert monitor["namespaceSelector"] == {"matchNames": ["models"]}
    assert monitor["selector"]["matchExpressions"][0]["key"] == "serving.kserve.io/inferenceservice"
    targets = {r["targetLabel"] for r in monitor["podMetricsEndpoints"][0]["relabelings"]}
    assert targets == {"job", "inferenceservice", "model", "model_version"}
    karpenter = plans["dev"].one("kubernetes:monitoring.coreos.com/v1:ServiceMonitor")["inputs"]["spec"]
    assert karpenter["namespaceSelector"] == {"matchNames": ["karpenter"]}


def amtool(*args: str, config: dict[str, Any], tmp_path: Any) -> str:
    """Alertmanager's own tool on the rendered configuration. Debian's amtool is 0.25, which predates
    webhook `url_file` (the chart's Alertmanager reads it); it is given the same tree with `url` in its
    place, which changes nothing it routes."""
    import shutil
    import subprocess

    import yaml

    exe = shutil.which("amtool")
    assert exe, "amtool is missing: install Debian's prometheus-alertmanager package (make test does)"
    text = json.dumps(config).replace('"url_file": "/etc/alertmanager/secrets/', '"url": "https://secret.invalid/')
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(json.loads(text)))
    argv = [a.format(config=path) for a in args]
    done = subprocess.run([exe, *argv], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("env", ENVS)
def test_alertmanager_routes_as_the_stack_file_says_by_amtool(plans: dict[str, Plan], env: str, tmp_path: Any) -> None:
    """The configuration is one Alertmanager loads; Watchdog reaches the dead man's switch every minute where
    one is named (prod requires it), nowhere otherwise; a critical alert reaches every receiver its route
    lists, in order."""
    import yaml

    from modelyard.programs import REPO_ROOT

    config = values(plans[env], "monitoring-release")["alertmanager"]["config"]
    assert "SUCCESS" in amtool("check-config", "{config}", config=config, tmp_path=tmp_path)
    stack = yaml.safe_load((REPO_ROOT / f"Pulumi.{env}.yaml").read_text())["config"]["modelyard:platform"]
    alerting = stack["monitoring"]["alerting"]

    def routed(*labels: str) -> str:
        argv = ("config", "routes", "test", "--config.file={config}", *labels)
        return amtool(*argv, config=config, tmp_path=tmp_path).strip()

    assert routed("alertname=Watchdog", "severity=none") == alerting.get("watchdog", "null")
    assert routed("alertname=GPUXidError", "severity=critical") == ",".join(alerting["routes"]["critical"])
    assert routed("alertname=InfoInhibitor", "severity=none") == "null"
    if alerting.get("watchdog"):
        (route,) = [r for r in config["route"]["routes"] if r["receiver"] == alerting["watchdog"]]
        assert route["repeat_interval"] == "1m" and route["group_wait"] == "0s"


def test_platform_controllers_outrank_model_pods(plans: dict[str, Plan]) -> None:
    """One PriorityClass above model pods (0) and the warm placeholders (negative), created before any chart, named
    by every controller the charts render: KEDA's components, cert-manager's, the Prometheus operator, Prometheus,
    Alertmanager and kube-state-metrics (KServe's controller by its patch, tests/test_conformance.py)."""
    from modelyard.infra.karpenter import WARM_PRIORITY_CLASS
    from modelyard.platform.common import PLATFORM_PRIORITY, PLATFORM_PRIORITY_CLASS

    for env, plan in plans.items():
        classes = {
            c["inputs"]["metadata"]["name"]: c for c in plan.of_type("kubernetes:scheduling.k8s.io/v1:PriorityClass")
        }
        ours = classes[PLATFORM_PRIORITY_CLASS]
        assert ours["inputs"]["value"] == PLATFORM_PRIORITY > 0 and ours["inputs"]["globalDefault"] is False
        if WARM_PRIORITY_CLASS in classes:
            assert classes[WARM_PRIORITY_CLASS]["inputs"]["value"] < 0 < PLATFORM_PRIORITY
        monitoring = plan.named("kubernetes:helm.sh/v3:Release", "monitoring-release")
        assert ours["urn"] in monitoring["dependencies"], env  # every other chart waits on monitoring's
        values = {
            r: plan.named("kubernetes:helm.sh/v3:Release", r)["inputs"]["values"]
            for r in ("keda-release", "cert-manager-release")
        }
        assert values["keda-release"]["priorityClassName"] == PLATFORM_PRIORITY_CLASS
        assert values["cert-manager-release"]["global"]["priorityClassName"] == PLATFORM_PRIORITY_CLASS
        kps = monitoring["inputs"]["values"]
        for where in (
            kps["prometheusOperator"],
            kps["prometheus"]["prometheusSpec"],
            kps["alertmanager"]["alertmanagerSpec"],
            kps["kube-state-metrics"],
        ):
            assert where["priorityClassName"] == PLATFORM_PRIORITY_CLASS, env


def _expand(template: str, groups: list[str | None]) -> str:
    """A relabeling replacement with `$1` and `${1}` replaced by the regex's groups."""
    import re as regex

    return regex.sub(r"\$\{(\d+)\}|\$(\d+)", lambda g: groups[int(g[1] or g[2])] or "", template)


def _relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str]:
    """Prometheus's `replace` relabeling as its configuration reference states it: the source labels' values
    joined by `;`, matched against the regex anchored at both ends (default `(.*)`), and on a match the target
    label set to the replacement (default `$1`) with its groups expanded."""
    import re as regex

    out = dict(labels)
    for rule in rules:
        assert rule.get("action", "replace") == "replace"
        value = ";".join(out.get(name, "") for name in rule.get("sourceLabels", []))
        found = regex.fullmatch(rule.get("regex", "(.*)"), value)
        if found is None:
            continue
        out[rule["targetLabel"]] = _expand(rule.get("replacement", "$1"), [found.group(0), *found.groups()])
    return out


def test_a_shadows_series_are_its_own_outside_the_models_slo() -> None:
    """The model PodMonitor's relabeling: stable and canary pods are the catalog's model (one SLO); a shadow's
    pods are `<model>-shadow`, which no objective names."""
    from modelyard.platform.monitoring import model_pod_monitor

    rules = model_pod_monitor("models", {"modelyard.io/model": "minilm"})["podMetricsEndpoints"][0]["relabelings"]
    meta = "__meta_kubernetes_pod_label_"
    for role, isvc, model in (
        ("stable", "minilm", "minilm"),
        ("canary", "minilm-canary", "minilm"),
        ("shadow", "minilm-shadow", "minilm-shadow"),
    ):
        pod = {
            f"{meta}serving_kserve_io_inferenceservice": isvc,
            f"{meta}modelyard_io_model": "minilm",
            f"{meta}modelyard_io_role": role,
            f"{meta}modelyard_io_model_version": "2",
        }
        assert _relabel(rules, pod)["model"] == model, role


def test_the_gateways_proxies_are_scraped_where_envoy_gateway_serves_their_statistics(plans: dict[str, Plan]) -> None:
    """Envoy Gateway v1.9.0 names the proxies' stats port `metrics` (19001, bootstrap.EnvoyStatsPort) and serves
    Prometheus's format at /stats/prometheus; the PodMonitor selects the Gateway's proxies by their labels."""
    from modelyard.platform.network_policy import GATEWAY_PROXY_LABELS

    monitor = plans["dev"].named("kubernetes:monitoring.coreos.com/v1:PodMonitor", "gateway-proxy-monitor")["inputs"]
    assert monitor["metadata"]["namespace"] == "envoy-gateway-system"
    assert monitor["spec"]["selector"] == {"matchLabels": dict(GATEWAY_PROXY_LABELS)}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/stats/prometheus")


def test_the_gateways_proxies_as_envoy_gateway_builds_them_pass_pod_security_with_limits(
    plans: dict[str, Plan],
) -> None:
    """The proxies' pod as Envoy Gateway v1.9.0 builds it from the platform's EnvoyProxy (tests/envoy_gateway.py)
    is admitted by the namespace's `restricted` Pod Security, every container has limits once the namespace's
    LimitRange defaults them (the shutdown manager comes with none), and the PodMonitor and the model namespace's
    NetworkPolicy select it."""
    from envoy_gateway import limit_range_defaults, proxy_pod

    from modelyard.policies.governance.pod_security import violations

    for env, plan in plans.items():
        proxy = plan.one("kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy")["inputs"]
        limits = plan.named("kubernetes:core/v1:LimitRange", "gateway-defaults")["inputs"]
        assert limits["metadata"]["namespace"] == "envoy-gateway-system"
        pod = limit_range_defaults(proxy_pod(proxy["spec"], "models", "envoy-gateway-system"), limits["spec"])
        namespace = plan.named("kubernetes:core/v1:Namespace", "gateway-ns")["inputs"]["metadata"]["labels"]
        assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
        assert violations(pod["spec"], "restricted") == [], env
        for c in pod["spec"]["containers"]:
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), (env, c["name"])
        labels = pod["metadata"]["labels"]
        monitor = plan.named("kubernetes:monitoring.coreos.com/v1:PodMonitor", "gateway-proxy-monitor")["inputs"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert [p["name"] for p in pod["spec"]["containers"][0]["ports"]] == ["metrics", "readiness"]
        inference = next(
            p["inputs"]["spec"]
            for p in plan.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
            if p["inputs"]["metadata"]["name"] == "allow-inference-ingress"
        )
        peer = inference["ingress"][0]["from"][0]
        assert peer["podSelector"]["matchLabels"].items() <= labels.items()
        # Its own privilege is checkable: the same pod with a root container is refused.
        pod["spec"]["containers"][1]["securityContext"]["runAsNonRoot"] = False
        assert violations(pod["spec"], "restricted"), env
