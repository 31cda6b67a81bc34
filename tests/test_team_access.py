"""Each team's view of the model namespace (workloads/team_access.py): its IAM roles mapped to its group by EKS access
entries, the group bound to a read-only Role there, judged by Kubernetes RBAC's own decision (tests/rbac.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import Plan
from rbac import Request, allowed

from modelyard.policies.governance import policy
from modelyard.policies.governance.resources import from_preview
from modelyard.programs import PROJECTS
from modelyard.validation import ConfigError
from modelyard.workloads.catalog import parse_workloads

RBAC = "kubernetes:rbac.authorization.k8s.io/v1"


def test_each_team_reads_the_model_namespace_and_changes_nothing(all_plans: dict[str, Plan]) -> None:
    for env in ("staging", "prod"):
        plan = all_plans[env]
        stack = yaml.safe_load(PROJECTS["workloads"].stack_file(env).read_text())["config"]["modelyard:workloads"]
        entries = [e["inputs"] for e in plan.of_type("aws:eks/accessEntry:AccessEntry") if "team" in e["urn"]]
        assert sorted((e["principalArn"], tuple(e["kubernetesGroups"])) for e in entries) == sorted(
            (arn, (f"modelyard:team:{team}",)) for team, arns in stack["team_access"].items() for arn in arns
        )
        assert all(e["type"] == "STANDARD" for e in entries)
        roles = [r["inputs"] for r in plan.of_type(f"{RBAC}:Role")]
        bindings = [b["inputs"] for b in plan.of_type(f"{RBAC}:RoleBinding")]
        assert not [b for b in plan.of_type(f"{RBAC}:ClusterRoleBinding") if "team" in b["urn"]]
        ns = plan.outputs()["modelNamespace"]
        for team in stack["team_access"]:
            group = f"modelyard:team:{team}"
            for request in (
                Request("list", "serving.kserve.io", "inferenceservices", ns),
                Request("get", "", "pods", ns, "log", name="minilm-predictor-abc"),
                Request("watch", "", "events", ns),
                Request("get", "gateway.networking.k8s.io", "httproutes", ns, name="minilm"),
            ):
                assert allowed(group, request, roles, bindings), (env, team, request)
            for request in (
                Request("get", "", "secrets", ns, name="modelyard-api-keys-search"),
                Request("delete", "", "pods", ns, name="minilm-predictor-abc"),
                Request("patch", "serving.kserve.io", "inferenceservices", ns, name="minilm"),
                Request("create", "", "pods", ns, "exec", name="minilm-predictor-abc"),
                Request("create", "", "pods", ns, "portforward", name="minilm-predictor-abc"),
                Request("list", "", "pods", "kube-system"),
                Request("list", "", "pods", "monitoring"),
            ):
                assert not allowed(group, request, roles, bindings), (env, team, request)
        report = policy.evaluate(from_preview(plan.digest), env, policy.load_config(env))
        assert [v for v in report.violations if v.rule == "team-access-read-only"] == []


def test_the_port_reads_rules_as_kubernetes_does() -> None:
    """RBAC's own semantics on hand-made rules: `*` verbs and resources, `*/subresource`, and names."""
    from rbac import rule_allows

    assert rule_allows({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}, Request("delete", "", "pods", "x"))
    assert rule_allows(
        {"verbs": ["get"], "apiGroups": [""], "resources": ["*/log"]}, Request("get", "", "pods", "x", "log")
    )
    assert not rule_allows(
        {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, Request("get", "", "pods", "x", "log")
    )
    named = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]}
    assert rule_allows(named, Request("get", "", "pods", "x", name="a"))
    assert not rule_allows(named, Request("get", "", "pods", "x", name="b"))


def test_a_team_the_catalog_does_not_name_is_refused(tmp_path: Path) -> None:
    project = PROJECTS["workloads"]
    raw = yaml.safe_load(project.stack_file("prod").read_text())["config"]
    raw["modelyard:workloads"]["team_access"] = {"billing": ["arn:aws:iam::123456789012:role/billing"]}
    with pytest.raises(ConfigError, match=r"team_access\.billing: names no team of catalog/prod\.yaml \(its teams: "):
        parse_workloads(raw, stack="prod", source="Pulumi.prod.yaml", directory=project.directory)
    raw["modelyard:workloads"]["team_access"] = {"search": ["arn:aws:iam::123456789012:user/alice"]}
    with pytest.raises(ConfigError, match=r"team_access\.search\[0\]: .*an IAM role ARN"):
        parse_workloads(raw, stack="prod", source="Pulumi.prod.yaml", directory=project.directory)
