"""The platform's alert and recording rules: promtool checks every group as deployed, and runs the unit
tests in tests/promtool/ (a series that fires each alert and one that must not)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ENVS, Plan
from support import TEST_PARAMS, promtool

from modelyard.platform import rules

PROMTOOL_TESTS = sorted((Path(__file__).parent / "promtool").glob("*.test.yaml"))

RUNBOOKS = "https://github.com/modelyard/modelyard/blob/main/runbooks"


def deployed_groups(plan: Plan) -> dict[str, Any]:
    rule = plan.one("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    return dict(rule["inputs"]["spec"])


@pytest.mark.parametrize("env", ENVS)
def test_promtool_checks_the_rules_each_environment_deploys(plans: dict[str, Plan], env: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(deployed_groups(plans[env])))
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: a rule with a PromQL error does not pass."""
    broken = rules.RuleGroup("broken", (rules.Record("x:y", "sum by (a (up)"),))
    (tmp_path / "rules.yaml").write_text(rules.promtool_rule_file([broken], RUNBOOKS))
    assert promtool("check", "rules", "rules.yaml", cwd=tmp_path).returncode != 0


def unit_test_rules() -> str:
    """The platform groups with TEST_PARAMS, minus annotations: promtool compares annotations exactly, and
    their templates are already checked by `promtool check rules` on the deployed groups."""
    spec = rules.prometheus_rule_spec(rules.platform_rule_groups(TEST_PARAMS), RUNBOOKS)
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return yaml.safe_dump(spec, sort_keys=False)


@pytest.mark.parametrize("path", PROMTOOL_TESTS, ids=[p.stem for p in PROMTOOL_TESTS])
def test_promtool_unit_tests(path: Path, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(unit_test_rules())
    shutil.copy(path, tmp_path / path.name)
    result = promtool("test", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """The unit tests can fail: the same series with a firing expectation removed is a failure."""
    (tmp_path / "rules.yaml").write_text(unit_test_rules())
    doc = yaml.safe_load((Path(__file__).parent / "promtool" / "kserve_gpu.test.yaml").read_text())
    doc["tests"] = [t for t in doc["tests"] if any(a["alertname"] == "GPUXidError" for a in t["alert_rule_test"])]
    for case in doc["tests"][0]["alert_rule_test"]:
        case["exp_alerts"] = []
    (tmp_path / "wrong.test.yaml").write_text(yaml.safe_dump(doc))
    result = promtool("test", "rules", "wrong.test.yaml", cwd=tmp_path)
    assert result.returncode != 0 and "GPUXidError" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in PROMTOOL_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {a.alert for a in rules.alerts(rules.platform_rule_groups(TEST_PARAMS))}
    assert names - fires == set(), "alerts no unit test fires"
    assert names - quiet == set(), "alerts no unit test shows staying quiet"
    assert (fires | quiet) - names == set(), "unit tests for alerts that do not exist"


def test_the_platforms_alerts_are_all_there() -> None:
    names = {a.alert for a in rules.alerts(rules.platform_rule_groups(TEST_PARAMS))}
    assert {
        "ModelErrorBudgetBurnFast",
        "ModelErrorBudgetBurnSlow",
        "ModelLatencyBudgetBurnFast",
        "ModelLatencyBudgetBurnSlow",
        "GPUAllocatedIdle",
        "GPUMemoryNearFull",
        "GPUXidError",
        "KServePredictorNotReady",
        "KServePredictorCrashLooping",
        "GPUPoolAtLimit",
        "ModelMetricsAbsent",
        "PrometheusConfigReloadFailed",
        "AlertmanagerConfigReloadFailed",
        "GPUSpendPaceOverBudget",
    } <= names


@pytest.mark.parametrize("env", ENVS)
def test_every_alert_is_labelled_and_annotated(plans: dict[str, Plan], env: str) -> None:
    for group in deployed_groups(plans[env])["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            notes = rule["annotations"]
            assert notes["summary"] and notes["description"], rule["alert"]
            assert notes["runbook_url"] == f"{RUNBOOKS}/{rule['alert']}.md"


def test_cost_rules_price_every_pool_type_with_the_price_table(plans: dict[str, Plan]) -> None:
    groups = deployed_groups(plans["dev"])["groups"]
    prices = {
        (r["labels"]["instance_type"], r["labels"]["capacity_type"]): r["expr"]
        for g in groups
        for r in g["rules"]
        if r.get("record") == "modelyard:ec2_instance_price_usd_per_hour"
    }
    # dev's a10g pool: g5.xlarge and g5.2xlarge, spot and on-demand; spot at the assumed 60% discount.
    assert prices == {
        ("g5.xlarge", "on-demand"): "vector(1.006)",
        ("g5.xlarge", "spot"): "vector(0.4024)",
        ("g5.2xlarge", "on-demand"): "vector(1.212)",
        ("g5.2xlarge", "spot"): "vector(0.4848)",
    }
    budget = [r for g in groups for r in g["rules"] if r.get("record") == "modelyard:budget_monthly_usd"]
    assert budget[0]["expr"] == "vector(1500)"


def test_slo_windows_and_alert_texts_come_from_the_burn_tables() -> None:
    """One table: the recorded windows are the ones it names, and each burn alert's text spells its pairs."""
    from modelyard.policies.governance import conventions as c

    named = {w for long, short, _ in (*c.PAGE_BURNS, *c.TICKET_BURNS) for w in (long, short)}
    assert set(c.SLI_WINDOWS) == named
    assert [c.window_seconds(w) for w in c.SLI_WINDOWS] == sorted(c.window_seconds(w) for w in c.SLI_WINDOWS)
    by_name = {a.alert: a for a in rules.alerts(rules.slo_groups())}
    for name, pairs in (
        ("ModelErrorBudgetBurnFast", c.PAGE_BURNS),
        ("ModelErrorBudgetBurnSlow", c.TICKET_BURNS),
        ("ModelLatencyBudgetBurnFast", c.PAGE_BURNS),
        ("ModelLatencyBudgetBurnSlow", c.TICKET_BURNS),
    ):
        assert c.burn_text(pairs) in by_name[name].description, name
