"""Policy and cost end to end: the shipped plans, the CLI, the CrossGuard adapter and pack, config
errors, and hand-computed cost figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ENVS, Plan

from modelyard.cli import main
from modelyard.policies.governance import cost, crossguard, policy, rules
from modelyard.policies.governance.resources import UNKNOWN, Resource, Stack, from_preview
from modelyard.programs import REPO_ROOT
from modelyard.versions import SUPPORTED_KUBERNETES_VERSIONS


def write(tmp_path: Path, doc: Any, name: str = "preview.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("env", ENVS)
def test_shipped_plans_pass_with_no_mandatory_violation(plans: dict[str, Plan], env: str) -> None:
    report = policy.evaluate(from_preview(plans[env].digest), env, policy.load_config(env))
    assert report.rules_run == len(rules.RULES)
    assert report.mandatory == []
    # Only the budget ceiling may speak up, and only as advice with its figure.
    assert {v.rule for v in report.advisory} <= {"budget-ceiling"}


def test_estimates_rise_from_dev_to_prod(plans: dict[str, Plan]) -> None:
    dev, staging, prod = (cost.estimate(from_preview(plans[e].digest)) for e in ENVS)
    assert dev.baseline < staging.baseline < prod.baseline
    assert dev.ceiling < staging.ceiling < prod.ceiling
    assert not dev.not_priced() and not prod.not_priced()


def test_prod_cost_by_hand(plans: dict[str, Plan]) -> None:
    est = cost.estimate(from_preview(plans["prod"].digest))
    items = {i.urn.rsplit("::", 1)[1]: i for i in est.items}
    # 2 warm A10Gs pinned by placeholder pods: 2 x g5.xlarge x 1.006 x 730 + 2 x 200 GiB gp3 x 0.08.
    assert items["karpenter-a10g-nodepool"].baseline == pytest.approx(2 * 1.006 * 730 + 2 * 200 * 0.08)
    # 16 GPUs at the limit: 16 x g5.xlarge on-demand.
    assert items["karpenter-a10g-nodepool"].ceiling == pytest.approx(16 * (1.006 * 730 + 200 * 0.08))
    # Scale-to-zero with nothing pinned: nothing at baseline; 8 x g6e.xlarge at the limit.
    assert items["karpenter-l40s-nodepool"].baseline == 0
    assert items["karpenter-l40s-nodepool"].ceiling == pytest.approx(8 * (1.861 * 730 + 200 * 0.08))
    # 3 m7i.xlarge system nodes with 50 GiB each, up to 6.
    assert items["system-ng"].baseline == pytest.approx(3 * (0.2016 * 730 + 50 * 0.08))
    assert items["system-ng"].ceiling == pytest.approx(6 * (0.2016 * 730 + 50 * 0.08))
    assert items["eks-cluster"].baseline == pytest.approx(73.0)
    assert items["network-nat-0"].baseline == pytest.approx(0.045 * 730 + 0.045 * 100)


def test_small_fixture_two_g5_for_a_month() -> None:
    doc = {
        "steps": [
            {
                "op": "create",
                "urn": "urn:pulumi:dev::p::aws:eks/nodeGroup:NodeGroup::gpu",
                "newState": {
                    "type": "aws:eks/nodeGroup:NodeGroup",
                    "inputs": {
                        "instanceTypes": ["g5.xlarge"],
                        "scalingConfig": {"desiredSize": 2, "maxSize": 2, "minSize": 2},
                        "diskSize": 0,
                    },
                },
            },
            {
                "op": "create",
                "urn": "urn:pulumi:dev::p::aws:foo/bar:Baz::mystery",
                "newState": {"type": "aws:foo/bar:Baz", "inputs": {}},
            },
        ]
    }
    est = cost.estimate(from_preview(doc))
    assert est.baseline == pytest.approx(1468.76)  # 2 x 1.006 USD x 730 h
    assert [i.type for i in est.not_priced()] == ["aws:foo/bar:Baz"]  # listed, not silently zero
    assert est.to_json()["notPriced"] == ["aws:foo/bar:Baz"]


def test_spot_pool_baseline_uses_the_discount_and_the_ceiling_on_demand() -> None:
    np = Resource(
        "urn:pulumi:dev::p::kubernetes:karpenter.sh/v1:NodePool::np",
        "kubernetes:karpenter.sh/v1:NodePool",
        {
            "spec": {
                "template": {
                    "metadata": {"labels": {"modelyard.io/gpu-pool": "a10g"}},
                    "spec": {
                        "requirements": [
                            {
                                "key": "node.kubernetes.io/instance-type",
                                "operator": "In",
                                "values": ["g5.xlarge", "g5.12xlarge"],
                            },
                            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]},
                        ]
                    },
                },
                "limits": {"nvidia.com/gpu": "8"},
            }
        },
    )
    pods = [
        Resource(
            f"urn:pulumi:dev::p::kubernetes:serving.kserve.io/v1beta1:InferenceService::m{i}",
            "kubernetes:serving.kserve.io/v1beta1:InferenceService",
            {
                "spec": {
                    "predictor": {
                        "minReplicas": 2,
                        "nodeSelector": {"modelyard.io/gpu-pool": "a10g"},
                        "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                    }
                }
            },
        )
        for i in range(2)
    ]
    est = cost.estimate(Stack([np, *pods]))
    pool = next(i for i in est.items if i.urn.endswith("::np"))
    # 4 one-GPU pods: 4 x g5.xlarge spot (0.4024/h) beats 1 x g5.12xlarge spot (2.2688/h).
    assert pool.baseline == pytest.approx(4 * 1.006 * 0.4 * 730)
    assert "4 pinned GPUs on 4 x g5.xlarge spot" in pool.basis
    assert pool.ceiling == pytest.approx(8 * 1.006 * 730)


def test_config_files_match_the_pinned_versions() -> None:
    for env in ENVS:
        config = policy.load_config(env)
        assert config.params["eks-version"]["supported"] == list(SUPPORTED_KUBERNETES_VERSIONS)


def test_enforcement_dev_advisory_except_basics_prod_mandatory() -> None:
    dev, prod = policy.load_config("dev"), policy.load_config("prod")
    for name, rule in rules.RULES.items():
        assert dev.level(name) == ("mandatory" if rule.basic else "advisory"), name
        assert prod.level(name) == ("advisory" if name == "budget-ceiling" else "mandatory"), name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"all": "strict"}, "all: must be one of advisory, mandatory, disabled (got 'strict')"),
        ({"kms-rotaton": "mandatory"}, "kms-rotaton: no such rule"),
        ({"gpu-capacity-cap": {"maxGPUs": 3}}, "gpu-capacity-cap: unknown parameter(s) maxGPUs; allowed: maxGpus"),
        ({"helm-pinned": {"enforcementLevel": "loud"}}, "helm-pinned.enforcementLevel: must be one of"),
        ([], "must be a JSON object of rule names"),
    ],
)
def test_bad_policy_config_is_named(raw: Any, message: str) -> None:
    with pytest.raises(policy.PolicyConfigError) as caught:
        policy.parse_config(raw, "x.json")
    assert message in str(caught.value)


def test_cli_policy_and_cost(plans: dict[str, Plan], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, plans["dev"].digest)
    assert main(["policy", str(path), "--env", "dev"]) == 0
    out = capsys.readouterr().out
    count = len(rules.RULES)
    assert f"Policy (policies/config/dev.json): {count} rules, 0 mandatory and 1 advisory violation(s)" in out
    assert "ADVISORY  budget-ceiling" in out
    assert main(["policy", str(path), "--env", "dev", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mandatory"] == 0 and report["violations"][0]["rule"] == "budget-ceiling"
    assert main(["cost", str(path), "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["baseline"] < est["ceiling"] and est["notPriced"] == [] and est["hoursPerMonth"] == 730
    assert main(["cost", str(path)]) == 0
    assert "usage assumptions (policies/governance/usage.yaml)" in capsys.readouterr().out


def test_cli_policy_exits_1_on_a_mandatory_violation(
    plans: dict[str, Plan], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = json.loads(json.dumps(plans["prod"].digest))
    for step in digest["steps"]:
        if step["newState"]["type"] == "aws:kms/key:Key":
            step["newState"]["inputs"]["enableKeyRotation"] = False
    assert main(["policy", str(write(tmp_path, digest)), "--env", "prod"]) == 1
    assert "MANDATORY kms-rotation" in capsys.readouterr().out


def test_plan_shows_cost_and_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "staging"]) == 0
    out = capsys.readouterr().out
    assert "Monthly cost estimate (us-east-1, 730 h/month, AWS list prices)" in out
    assert f"Policy (policies/config/staging.json): {len(rules.RULES)} rules, 0 mandatory" in out


def test_plan_exits_1_when_a_mandatory_rule_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"all": "mandatory", "gpu-capacity-cap": {"maxGpus": 2}}))
    assert main(["plan", "dev", "--policy-config", str(strict)]) == 1
    out = capsys.readouterr().out
    assert "MANDATORY gpu-capacity-cap" in out and "over the dev cap of 2" in out


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("{not json", ["policy", "{p}", "--env", "dev"], "not JSON: Expecting property name"),
        (
            '{"steps": [{"op": "explode", "urn": "x"}]}',
            ["cost", "{p}"],
            "not a preview: steps[0].urn must be a Pulumi URN",
        ),
        ('{"steps": [], "changeSummary": {}}', ["policy", "{p}", "--env", "qa"], "no policy config for 'qa'"),
        ('{"steps": [], "changeSummary": {}}', ["policy", "{p}", "--env", "Prod!"], "is not a stack name"),
        ('{"steps": [], "changeSummary": {}}', ["cost", "{p}", "--usage", "{p}"], "not a usage file"),
        ('{"steps": []}', ["cost", "{p}"], "it has no changeSummary"),
        (None, ["cost", "/no/such.json"], "no such file"),
    ],
)
def test_bad_input_files_exit_2_with_a_message(
    tmp_path: Path, content: str | None, args: list[str], message: str
) -> None:
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    argv = [a.replace("{p}", str(path)) for a in args]
    run = subprocess.run([sys.executable, "-m", "modelyard.cli", *argv], capture_output=True, text=True, check=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr


def test_crossguard_adapter_reports_through_report_violation(plans: dict[str, Plan]) -> None:
    from pulumi_policy import PolicyProviderResource, PolicyResource, PolicyResourceOptions, StackValidationArgs
    from pulumi_policy.proxy import unknown_checking_proxy

    states = [s for s in plans["prod"].states if s.get("custom")]
    providers = {
        s["urn"]: PolicyProviderResource(s["type"], s["inputs"], s["urn"], s["urn"].rsplit("::", 1)[1])
        for s in states
        if s["type"].startswith("pulumi:providers:")
    }
    opts = PolicyResourceOptions(False, [], None, [], None, [])  # type: ignore[arg-type]
    resources = []
    for s in states:
        if s["type"].startswith("pulumi:providers:"):
            continue
        props = dict(s["inputs"])
        if s["type"] == "aws:kms/key:Key":
            props["enableKeyRotation"] = False  # a violation to find
        if s["type"] == "aws:eks/cluster:Cluster":
            props["roleArn"] = UNKNOWN  # an unknown to survive
        resources.append(
            PolicyResource(
                s["type"],
                unknown_checking_proxy(props),
                s["urn"],
                s["urn"].rsplit("::", 1)[1],
                opts,
                providers.get(s.get("provider", "").rsplit("::", 1)[0]),
                None,
                [],
                {},
            )
        )
    args = StackValidationArgs(resources, {})
    reported: list[tuple[str, str | None]] = []
    for pack_policy in crossguard.policies():
        pack_policy.validate(args, lambda message, urn=None: reported.append((message, urn)))  # type: ignore[misc]
    rules_hit = {m.split(":", 1)[0] for m, _ in reported}
    assert ("enableKeyRotation" in rules_hit) and all(urn for _, urn in reported)
    # Every encryption key (KMS rotates those only; the manifest signing key is replaced, not rotated).
    keys = [k for k in plans["prod"].of_type("aws:kms/key:Key") if k["inputs"].get("keyUsage") != "SIGN_VERIFY"]
    assert len([m for m, _ in reported if m.startswith("enableKeyRotation")]) == len(keys) == 7
    assert not any("tags" in m for m, _ in reported), "provider default tags must reach the adapter"


def test_the_pack_entry_point_builds_every_policy() -> None:
    """policies/__main__.py as the pack runtime runs it (from policies/, importing governance), with
    PolicyPack replaced, since the real one starts a gRPC server and never returns."""
    code = (
        "import pulumi_policy, runpy\n"
        "seen = {}\n"
        "pulumi_policy.PolicyPack = lambda **kw: seen.update(kw)\n"
        "runpy.run_path('__main__.py', run_name='__main__')\n"
        "print(seen['name'], len(seen['policies']))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT / "policies",
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(REPO_ROOT / "policies"), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"modelyard {len(rules.RULES)}"


def test_pack_requirements_are_pinned_like_the_project() -> None:
    lines = [
        x for x in (REPO_ROOT / "policies" / "requirements.txt").read_text().splitlines() if x and not x.startswith("#")
    ]
    assert all("==" in x for x in lines)
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    for line in lines:
        assert f'"{line}"' in pyproject, f"{line} differs from pyproject.toml"


def test_every_priced_gpu_type_is_in_the_gpu_table() -> None:
    """One GPU table (policies/governance/gpus.py): a GPU instance the price file prices but the table does
    not know would be counted as a CPU type."""
    from modelyard.policies.governance import fit, gpus
    from modelyard.policies.governance.prices import price_book

    book = price_book()
    # Every priced type is a GPU type of the table or a general-purpose one whose shape the name says
    # (fit.shape): a new GPU family priced before the table knows it fails here, whatever its name.
    for region in book.regions.values():
        for name in region.ec2_hourly_usd:
            assert gpus.instance_type(name) is not None or fit.shape(name) is not None, name
    assert book.gpus("g5.12xlarge") == 4 and book.gpus("m7i.large") == 0 and book.gpus("x9.huge") is None


def _costs_hold(est: Any) -> list[str]:
    broken = [
        f"{i.urn}: baseline {i.baseline} > ceiling {i.ceiling}" for i in est.items if i.baseline > i.ceiling + 1e-6
    ]
    for layer, (baseline, ceiling) in est.by_layer().items():
        if baseline > ceiling:
            broken.append(f"layer {layer}: {baseline} > {ceiling}")
    if est.baseline > est.ceiling:
        broken.append(f"total: {est.baseline} > {est.ceiling}")
    return broken


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
@pytest.mark.parametrize("replicas", [None, 2792])
def test_baseline_never_exceeds_ceiling(plans: dict[str, Plan], env: str, replicas: int | None) -> None:
    """For every resource, layer and the total, whatever the workloads pin: a pool never runs more than
    its GPU limit, so neither does its baseline (the 2,792-GPU case once priced $1.46 billion a month)."""
    resources = from_preview(plans[env].digest)
    if replicas is not None:
        pool = next(r for r in resources if r.type == "kubernetes:karpenter.sh/v1:NodePool")
        name = pool.inputs["spec"]["template"]["metadata"]["labels"]["modelyard.io/gpu-pool"]
        pinned = {
            "spec": {
                "predictor": {
                    "minReplicas": replicas,
                    "nodeSelector": {"modelyard.io/gpu-pool": name},
                    "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                }
            }
        }
        resources.append(
            Resource(
                "urn:pulumi:x::p::kubernetes:serving.kserve.io/v1beta1:InferenceService::big",
                "kubernetes:serving.kserve.io/v1beta1:InferenceService",
                pinned,
            )
        )
    est = cost.estimate(Stack(resources))
    assert _costs_hold(est) == []
    if replicas is not None:
        assert any("stay Pending" in i.basis for i in est.items)


@pytest.mark.parametrize(
    ("typ", "inputs", "kind", "basis"),
    [
        ("kubernetes:core/v1:Service", {"spec": {"type": "LoadBalancer"}}, "fixed", "LoadBalancer Service"),
        ("kubernetes:core/v1:Service", {"spec": {"type": "ClusterIP"}}, "free", "no load balancer"),
        ("kubernetes:core/v1:Service", {"spec": UNKNOWN}, "not priced", "may ask for a load balancer"),
        (
            "kubernetes:core/v1:PersistentVolumeClaim",
            {"spec": {"resources": {"requests": {"storage": "100Gi"}}}},
            "fixed",
            "100 GiB EBS volume",
        ),
        ("kubernetes:core/v1:PersistentVolumeClaim", {"spec": {}}, "not priced", "size is not known"),
        (
            "kubernetes:apps/v1:StatefulSet",
            {
                "spec": {
                    "replicas": 3,
                    "volumeClaimTemplates": [{"spec": {"resources": {"requests": {"storage": "50Gi"}}}}],
                }
            },
            "fixed",
            "3 x 50 GiB EBS volumes",
        ),
        ("kubernetes:helm.sh/v3:Release", {"chart": "loki", "values": "[secret]"}, "not priced", "values are secret"),
        (
            "kubernetes:helm.sh/v3:Release",
            {"chart": "loki", "values": {"singleBinary": {"persistence": {"enabled": True}}}},
            "not priced",
            "cannot size",
        ),
    ],
)
def test_kubernetes_objects_that_create_aws_resources_are_priced_or_listed(
    typ: str, inputs: dict[str, Any], kind: str, basis: str
) -> None:
    resource = Resource(f"urn:pulumi:dev::p::{typ}::x", typ, inputs)
    (item,) = cost.estimate([resource]).items
    assert (item.kind, basis in item.basis) == (kind, True), item
    if kind == "fixed":
        assert item.baseline > 0


def test_the_ci_runner_is_priced_by_its_build_minutes_or_listed() -> None:
    usage = cost.load_usage()
    medium = Resource(
        "urn:pulumi:prod::p::aws:codebuild/project:Project::r",
        "aws:codebuild/project:Project",
        {"environment": {"computeType": "BUILD_GENERAL1_MEDIUM"}},
    )
    (item,) = cost.estimate([medium]).items
    assert item.kind == "usage" and item.baseline == pytest.approx(usage.ci_runner_minutes_per_month * 0.01)
    assert f"{usage.ci_runner_minutes_per_month:g} build minutes a month" in item.basis
    large = Resource(
        "urn:pulumi:prod::p::aws:codebuild/project:Project::r",
        "aws:codebuild/project:Project",
        {"environment": {"computeType": "BUILD_GENERAL1_2XLARGE"}},
    )
    (item,) = cost.estimate([large]).items
    assert item.kind == "not priced" and "codebuild_general1_2xlarge_minute" in item.basis


#: Tier rules (modelyard/config.py TIER_RULES, workloads MIN_REPLICAS) and the policy parameter or rule
#: that enforces the same floor on any preview. A tier rule missing here fails the test below.
TIER_RULE_POLICY: dict[str, Any] = {
    "allow_spot": lambda cfg, t: ("spot" in cfg.params["gpu-instance-allowlist"]["capacityTypes"]) == t,
    "allow_public_endpoint": lambda cfg, t: (not cfg.params["eks-endpoint"]["requirePrivate"]) == t,
    "require_model_versioning": lambda cfg, t: cfg.level("s3-model-versioning") != "disabled" or not t,
    "require_backups": lambda cfg, t: cfg.params["backup-vault-protected"]["requireBackups"] == t,
    "require_model_replica": lambda cfg, t: cfg.params["model-store-replicated"]["requireReplica"] == t,
    # Tier rules no policy can see in a preview, with the reason:
    "min_system_nodes": "a node group's size is capacity, not risk: only the stack file states it",
    "require_nat_per_az": "NAT placement is availability, read from the stack file's network.nat",
    "require_deletion_protection": "`protect` is the engine's resource option, not a resource input",
    "require_watchdog": "the receiver is the stack file's; the route it renders is tested with amtool",
}


@pytest.mark.parametrize("env", ENVS)
def test_every_tier_rule_agrees_with_the_environment_s_policy(env: str) -> None:
    from dataclasses import fields

    from modelyard.config import TIER_RULES
    from modelyard.workloads.catalog import MIN_REPLICAS

    cfg = policy.load_config(env)
    rules_ = TIER_RULES[env]
    assert {f.name for f in fields(rules_)} == set(TIER_RULE_POLICY), "map every tier rule to its policy"
    for name, agrees in TIER_RULE_POLICY.items():
        if callable(agrees):
            assert agrees(cfg, getattr(rules_, name)), f"{env}: tier rule {name}={getattr(rules_, name)} vs policy"
    assert cfg.params["inferenceservice-min-replicas"]["minReplicas"] == MIN_REPLICAS[env]


@pytest.mark.parametrize("env", ENVS)
def test_the_stack_file_fits_its_policy(env: str) -> None:
    """The GPU instance types and capacity the stack asks for are within what its policy allows."""
    from modelyard.stackfile import load_platform_config

    stack = load_platform_config(REPO_ROOT / f"Pulumi.{env}.yaml", stack=env)
    params = policy.load_config(env).params
    allowed = params["gpu-instance-allowlist"]
    for pool in stack.gpu_pools:
        assert set(pool.instance_types) <= set(allowed["instanceTypes"]), pool.name
        assert set(pool.capacity_types) <= set(allowed["capacityTypes"]), pool.name
    assert sum(p.max_gpus for p in stack.gpu_pools) <= params["gpu-capacity-cap"]["maxGpus"]


def test_a_gpu_class_may_be_sold_in_several_families() -> None:
    """H200 comes as p5e and p5en: one class, both families' types, each found by name; a pool may list
    either, and the NodePool's instance-family requirement is derived from the types it lists."""
    from modelyard.policies.governance import gpus

    h200 = gpus.GPU_CLASSES["h200"]
    assert h200.families == ("p5e", "p5en")
    assert {gpus.instance_type(t).gpus for t in h200.instance_types} == {8}  # type: ignore[union-attr]
    assert all(len(spec.families) >= 1 for spec in gpus.GPU_CLASSES.values())


@pytest.mark.parametrize(("service_type", "kind"), [(None, "fixed"), ("LoadBalancer", "fixed"), ("ClusterIP", "free")])
def test_a_gateway_is_priced_by_its_proxies_service(service_type: str | None, kind: str) -> None:
    """Envoy Gateway makes one Service for a Gateway's proxies, of the type its class's EnvoyProxy asks for
    (LoadBalancer when unset)."""
    service = {} if service_type is None else {"envoyService": {"type": service_type}}
    proxy = {"metadata": {"name": "p", "namespace": "eg"}, "spec": {"provider": {"kubernetes": service}}}
    ref = {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": "p", "namespace": "eg"}
    found = [
        Resource(urn=f"urn:pulumi:dev::p::{t}::{n}", type=t, inputs=i)
        for t, n, i in [
            (cost.ENVOY_PROXY, "p", proxy),
            (cost.GATEWAY_CLASS, "c", {"metadata": {"name": "c"}, "spec": {"parametersRef": ref}}),
            ("kubernetes:gateway.networking.k8s.io/v1:Gateway", "g", {"spec": {"gatewayClassName": "c"}}),
        ]
    ]
    [item] = [i for i in cost.estimate(Stack(found)).items if i.type.endswith(":Gateway")]
    assert item.kind == kind
    assert (item.baseline > 0) == (kind == "fixed")
