"""checkov, the scanner a security reviewer brings, on the rendered Kubernetes manifests of every
environment (`modelyard plan ENV --project all --manifests DIR`): every finding is listed with its reason
in tests/checkov-skips.yaml, and every listed finding still occurs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ENVS

from modelyard.programs import REPO_ROOT

CHECKOV = REPO_ROOT / "tools" / "checkov" / ".venv" / "bin" / "checkov"
SKIPS = Path(__file__).parent / "checkov-skips.yaml"


def findings(env: str, tmp: Path) -> set[tuple[str, str]]:
    assert CHECKOV.exists(), "checkov is missing: make tools/checkov/.venv/.installed (make test does)"
    manifests = tmp / env
    plan = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "plan", env, "--project", "all", "--manifests", str(manifests)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert plan.returncode in (0, 1), plan.stderr
    scan = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(manifests),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), "BC_SKIP_MAPPING": "TRUE"},
    )
    assert scan.returncode in (0, 1), scan.stderr[-2000:]
    reports = json.loads(scan.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    # dev has no pod-bearing object checkov knows (its InferenceServices are custom resources): count objects.
    assert sum(r.get("summary", {}).get("resource_count", 0) for r in reports) >= 30, "checkov read almost nothing"
    return {(c["check_id"], c["resource"]) for r in reports for c in r["results"]["failed_checks"]}


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[str, str]]]:
    tmp = tmp_path_factory.mktemp("checkov")
    return {env: findings(env, tmp) for env in ENVS}


def listed() -> set[tuple[str, str]]:
    skips = yaml.safe_load(SKIPS.read_text())
    out = set()
    for check, resources in skips.items():
        for resource, reason in resources.items():
            assert isinstance(reason, str) and len(reason) > 20, f"{check} {resource}: give the reason"
            out.add((check, resource))
    return out


@pytest.mark.parametrize("env", ENVS)
def test_checkov_finds_nothing_unexplained(found: dict[str, set[tuple[str, str]]], env: str) -> None:
    unexplained = sorted(found[env] - listed())
    assert not unexplained, f"{env}: checkov findings with no reason in {SKIPS.name}: {unexplained}"


def test_every_listed_finding_still_occurs(found: dict[str, set[tuple[str, str]]]) -> None:
    stale = sorted(listed() - set().union(*found.values()))
    assert not stale, f"remove from {SKIPS.name}, checkov no longer finds: {stale}"
