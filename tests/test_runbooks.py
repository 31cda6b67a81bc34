"""Every alert has its runbook page (the file its runbook_url names) with every section, and every
`modelyard` command a runbook shows exists with the options it uses."""

from __future__ import annotations

import re
import shlex

import pytest
from test_rules import TEST_PARAMS

from modelyard.cli import build_parser
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
    "upgrade-eks",
    "rotate-grafana-secret",
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


def commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        spans = re.findall(r"`(modelyard [^`]+)`", text)
        for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
            spans += [line.strip() for line in block.splitlines() if line.strip().startswith("modelyard ")]
        found += [(page.name, span.split("#", 1)[0].strip()) for span in spans]
    return found


def test_runbooks_name_modelyard_commands() -> None:
    assert len(commands()) >= 5


@pytest.mark.parametrize(("page", "command"), commands(), ids=[f"{p}:{c}" for p, c in commands()])
def test_every_modelyard_command_in_a_runbook_parses(page: str, command: str) -> None:
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(command)[1:])
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"{page}: `{command}` is not a valid modelyard command (exit {exc.code})")
