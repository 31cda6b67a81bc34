"""The repository's own documents: the figures they state are the code's, and what they point to exists."""

from __future__ import annotations

import re
from pathlib import Path

from support import TEST_PARAMS

from modelyard.platform import rules
from modelyard.policies.governance.rules import RULES
from modelyard.programs import REPO_ROOT

FIXTURES = Path(__file__).parent / "fixtures"
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))


def text(path: str) -> str:
    return (REPO_ROOT / path).read_text()


def test_the_figures_the_documents_state_are_the_codes() -> None:
    verification = text("docs/verification.md")
    alerts = rules.alerts(rules.platform_rule_groups(TEST_PARAMS))
    figures = {
        f"{len(list((FIXTURES / 'bad_config').glob('*.yaml')))} bad stack files": verification,
        f"{len(list((FIXTURES / 'bad_catalog').glob('*.yaml')))} bad catalogs": verification,
        f"{len(RULES)} policy rules": verification,
        f"each of the {len(alerts)} alerts": verification,
        f"{len(RULES)} rules, 0 mandatory": text("README.md"),
    }
    for figure, where in figures.items():
        assert figure in where, f"the documents no longer say: {figure}"


def test_the_readme_is_a_newcomers_page_and_points_to_documents_that_exist() -> None:
    readme = text("README.md")
    assert len(readme.splitlines()) <= 200
    assert "make plan" in readme and "make test" in readme
    named = set(re.findall(r"\bdocs/[a-z-]+\.md\b", readme))
    assert named == {f"docs/{p.name}" for p in DOCS}, "every document is listed, and every one listed exists"
    for document in [readme, *(p.read_text() for p in DOCS)]:
        for path in re.findall(
            r"`((?:infra|platform|workloads|policies|modelyard|tests|runbooks)/[\w./-]+\.\w+)`", document
        ):
            # docs/serving.md names the model server's own files from workloads/serving.
            assert (REPO_ROOT / path).exists() or (REPO_ROOT / "workloads" / "serving" / path).exists(), path
    assert not re.search(r"\bissue \d+", readme + "".join(p.read_text() for p in DOCS), re.IGNORECASE)
