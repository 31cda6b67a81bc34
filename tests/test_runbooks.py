"""Every alert has its runbook page (the file its runbook_url names) with every section (the commands the
pages show are checked with every other document's in tests/test_documented_commands.py)."""

from __future__ import annotations

import re

import pytest
from support import TEST_PARAMS

from modelyard.platform import rules
from modelyard.programs import REPO_ROOT

RUNBOOKS = REPO_ROOT / "runbooks"
SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation", "Escalation", "Verify recovery")
ALERTS = sorted(a.alert for a in rules.alerts(rules.platform_rule_groups(TEST_PARAMS)))
PAGES = sorted(RUNBOOKS.glob("*.md"))


PROCEDURES = (
    "new-environment",
    "canary-rollout",
    "gpu-pool",
    "budget-alert",
    "restore-model-version",
    "restore",
    "upgrade-eks",
    "rotate-grafana-secret",
    "dead-mans-switch",
    "api-keys",
)


def test_pages_are_exactly_the_alerts_plus_procedures() -> None:
    alert_pages = {p.stem for p in PAGES if p.stem[:1].isupper() and p.name != "README.md"}
    assert alert_pages == set(ALERTS)
    procedures = {p.stem for p in PAGES if p.stem[:1].islower()}
    assert procedures == set(PROCEDURES)
    index = (RUNBOOKS / "README.md").read_text()
    assert all(f"({name}.md)" in index for name in PROCEDURES)


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_page_has_every_section(alert: str) -> None:
    text = (RUNBOOKS / f"{alert}.md").read_text()
    assert text.startswith(f"# {alert}\n")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings == list(SECTIONS), headings
    for section in SECTIONS:
        body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        assert len(body.strip()) > 10, f"{alert}: {section} is empty"
    severity = next(a.severity for a in rules.alerts(rules.platform_rule_groups(TEST_PARAMS)) if a.alert == alert)
    assert f"Severity: **{severity}**" in text
