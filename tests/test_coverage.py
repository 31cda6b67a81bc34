"""The coverage matrix (policies/coverage.yaml) is true against checkov as installed: every checkov check
that applies to what the plans create is mapped to one rule here or to a written reason, and nothing else
is listed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ENVS, Plan

from modelyard.policies.governance.rules import RULES
from modelyard.programs import REPO_ROOT

MATRIX = yaml.safe_load((REPO_ROOT / "policies" / "coverage.yaml").read_text())
CHECKOV_PYTHON = REPO_ROOT / "tools" / "checkov" / ".venv" / "bin" / "python"
LIST_CHECKS = """
import json
from checkov.kubernetes.checks.resource.registry import registry as k8s
from checkov.terraform.checks.resource.registry import resource_registry as tf
def entities(registry):
    out = {}
    for entity, checks in registry.checks.items():
        for check in checks:
            out.setdefault(check.id, set()).add(entity)
    for entity, checks in getattr(registry, "wildcard_checks", {}).items():
        for check in checks:
            out.setdefault(check.id, set()).add("*")
    return {k: sorted(v) for k, v in out.items()}
print(json.dumps({"terraform": entities(tf), "kubernetes": entities(k8s)}))
"""


@pytest.fixture(scope="module")
def installed() -> dict[str, dict[str, list[str]]]:
    assert CHECKOV_PYTHON.exists(), "checkov is missing: make tools/checkov/.venv/.installed (make test does)"
    version = subprocess.run(
        [str(CHECKOV_PYTHON), "-c", "from checkov.version import version; print(version)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == MATRIX["checkov"], f"checkov {version} is installed, the matrix was made for {MATRIX['checkov']}"
    out = subprocess.run([str(CHECKOV_PYTHON), "-c", LIST_CHECKS], capture_output=True, text=True, check=True)
    result: dict[str, dict[str, list[str]]] = json.loads(out.stdout)
    return result


def listed(section: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for entry in MATRIX[section]:
        assert ("rule" in entry) != ("reason" in entry), f"{entry['checks']}: a rule or a reason, not both"
        if "rule" in entry:
            assert entry["rule"] in RULES, f"{entry['rule']} is not a rule"
        else:
            assert len(entry["reason"]) > 30, f"{entry['checks']}: say why"
        for check in entry["checks"]:
            assert check not in out, f"{check} is listed twice"
            out[check] = entry
    return out


@pytest.fixture(scope="module")
def plans(all_plans: dict[str, Plan]) -> dict[str, Plan]:
    """Both projects of every environment: what the blueprint creates."""
    return all_plans


def test_every_aws_type_the_plans_create_has_its_terraform_type(plans: dict[str, Plan]) -> None:
    created = {s["type"] for env in ENVS for s in plans[env].states if s["type"].startswith("aws:")}
    assert created <= set(MATRIX["terraform_types"]), sorted(created - set(MATRIX["terraform_types"]))


def test_every_relevant_aws_check_is_mapped(installed: dict[str, dict[str, list[str]]]) -> None:
    ours = set(MATRIX["terraform_types"].values())
    relevant = {check for check, entities in installed["terraform"].items() if set(entities) & ours}
    mapped = set(listed("checkov_aws"))
    assert relevant - mapped == set(), f"checkov checks with no rule or reason: {sorted(relevant - mapped)}"
    assert mapped - relevant == set(), f"listed but not relevant (or gone from checkov): {sorted(mapped - relevant)}"


def test_every_relevant_kubernetes_check_is_mapped(
    installed: dict[str, dict[str, list[str]]], plans: dict[str, Plan], tmp_path: Path
) -> None:
    kinds = {
        s["type"].rsplit(":", 1)[-1] for env in ENVS for s in plans[env].states if s["type"].startswith("kubernetes:")
    }
    kinds |= {"Pod"}  # every pod-bearing kind is checked as the pods it makes
    relevant = {
        check for check, entities in installed["kubernetes"].items() if "*" in entities or set(entities) & kinds
    }
    mapped = set(listed("checkov_kubernetes"))
    assert relevant - mapped == set(), f"checkov checks with no rule or reason: {sorted(relevant - mapped)}"
    assert mapped - relevant == set(), f"listed but not relevant (or gone from checkov): {sorted(mapped - relevant)}"


def test_kyverno_policies_are_mapped() -> None:
    entries = listed("kyverno")
    pod_security = [c for c in entries if c.startswith("pod-security/")]
    assert len(pod_security) == 17  # kyverno/policies: 11 baseline and 6 restricted policies
