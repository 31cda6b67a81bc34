"""Dashboards as code: every panel's PromQL parses (promtool), and each ships as a sidecar ConfigMap."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import Plan
from support import promtool

from modelyard.platform import dashboards, signals
from modelyard.platform.rules import Record, RuleGroup, promtool_rule_file

BOARDS = dashboards.platform_dashboards(730)


def test_every_panel_expression_parses_with_promtool(tmp_path: Path) -> None:
    records = [
        Record(f"dashboard:check_{i}", dashboards.checkable(expr))
        for i, expr in enumerate(e for board in BOARDS for e in board.expressions())
    ]
    assert len(records) >= 25
    (tmp_path / "panels.yaml").write_text(
        promtool_rule_file([RuleGroup("panels", tuple(records))], "https://x/runbooks")
    )
    result = promtool("check", "rules", "panels.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(records)} rules found" in result.stdout


def test_no_grafana_variable_is_left_unsubstituted() -> None:
    for board in BOARDS:
        for expr in board.expressions():
            assert "$" not in re.sub(r'"\$1"', "", dashboards.checkable(expr)), expr


def test_the_three_dashboards_cover_serving_the_fleet_and_cost() -> None:
    serving, fleet, cost = BOARDS
    text = {b.uid: " ".join(b.expressions()) for b in BOARDS}
    assert signals.REQUESTS_TOTAL in text[serving.uid] and "histogram_quantile(0.99" in text[serving.uid]
    assert f'code=~"{signals.ERROR_CODES}"' in text[serving.uid] and "model_version" in text[serving.uid]
    for metric in (signals.GPU_UTIL, signals.GPU_FB_USED, signals.GPU_POWER, "pool:modelyard_gpus_allocated:sum"):
        assert metric in text[fleet.uid], metric
    for series in ("pool:modelyard_gpu_cost_usd_per_hour:sum", "namespace_model:", "modelyard:budget_monthly_usd"):
        assert series in text[cost.uid], series
    assert len({b.uid for b in BOARDS}) == 3


def test_dashboards_ship_as_labelled_configmaps(plans: dict[str, Plan]) -> None:
    maps = plans["prod"].of_type("kubernetes:core/v1:ConfigMap")
    shipped = {m["inputs"]["metadata"]["name"]: m["inputs"] for m in maps}
    assert set(shipped) == {f"dashboard-{b.uid}" for b in BOARDS}
    for board in BOARDS:
        cm = shipped[f"dashboard-{board.uid}"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "monitoring"
        model = json.loads(cm["data"][board.file_name])
        assert model["uid"] == board.uid and model["panels"] and model["editable"] is False
        assert all(t["expr"] for p in model["panels"] for t in p["targets"])


def test_the_sidecar_is_configured_for_that_label(plans: dict[str, Plan]) -> None:
    release = plans["prod"].named("kubernetes:helm.sh/v3:Release", "monitoring-release")["inputs"]
    sidecar = release["values"]["grafana"]["sidecar"]["dashboards"]
    assert (sidecar["label"], sidecar["labelValue"]) == dashboards.DASHBOARD_LABEL
