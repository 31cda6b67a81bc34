"""Every bad stack file fails with exactly the expected lines, before any resource is registered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest
from conftest import bad_config_files, stack_raw
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from modelyard.config import FULL_KEY
from modelyard.plan.engine import ProjectPlan, RecordingMonitor
from modelyard.plan.mocks import PlanMocks
from modelyard.programs import run_platform
from modelyard.stackfile import load_platform_config, parse_platform_config
from modelyard.validation import ConfigError

CASES = list(bad_config_files())


def header(path: Path) -> tuple[str, list[str]]:
    stack, expected = "", []
    for line in path.read_text().splitlines():
        if line.startswith("# stack: "):
            stack = line.removeprefix("# stack: ")
        elif line.startswith("# expect: "):
            expected.append(line.removeprefix("# expect: "))
    assert stack and expected, f"{path.name} needs '# stack:' and '# expect:' header lines"
    return stack, expected


def test_every_bad_file_tests_something_of_its_own() -> None:
    """No two fixtures expect the same message (they would test the same thing); docs/verification.md
    states their number, which tests/test_docs.py holds to this set."""
    messages = {tuple(header(p)[1]) for p in CASES}
    assert len(messages) == len(CASES), "two fixtures expect the same message: they test the same thing"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_stack_file_gives_exactly_the_expected_problems(path: Path) -> None:
    stack, expected = header(path)
    with pytest.raises(ConfigError) as caught:
        load_platform_config(path, stack=stack)
    assert caught.value.problems == expected, f"{path.name} gave:\n" + "\n".join(caught.value.problems)
    assert str(caught.value).startswith(f"Invalid config for stack '{stack}' ({path.name}):\n  • ")


@pytest.mark.parametrize("path", CASES[:3] + CASES[-3:], ids=lambda p: p.stem)
def test_cli_exits_2_with_the_message_and_no_traceback(path: Path) -> None:
    stack, expected = header(path)
    run = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "plan", stack, "--config-file", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    for line in expected:
        assert f"  • {line}" in run.stderr, run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("config: [1, 2", "not valid YAML at line 1, column 14"),
        ("- just a list\n", "the file must be a mapping with a top-level 'config:' mapping"),
        (
            "config:\n  modelyard:plattform: {}\n",
            "modelyard:plattform: unknown config key; this project reads only modelyard:platform",
        ),
        ("config:\n  aws:region: us-east-1\n", "modelyard:platform: is required but missing"),
        (
            "config:\n  modelyard:platform:\n    secure: AAABAC==\n",
            "modelyard:platform: must be plain config, not a secret",
        ),
        ("config:\n  modelyard:platform: 3\n", "modelyard:platform: must be a mapping of keys (got 3)"),
    ],
)
def test_unreadable_stack_files_are_named(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_platform_config(path, stack="dev")
    assert caught.value.problems[0].startswith(expected), caught.value.problems


def test_missing_stack_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stack file not found"):
        load_platform_config(tmp_path / "Pulumi.nope.yaml", stack="nope")


def test_under_the_pulumi_cli_a_bad_config_registers_nothing() -> None:
    """`pulumi up` runs run_platform(): a bad value must stop it before the first resource."""
    raw = stack_raw("dev")
    raw[FULL_KEY] = {**raw[FULL_KEY], "region": "mars-north-1"}
    plan = ProjectPlan(project="modelyard-platform", stack="dev")
    pulumi.runtime.settings.reset_options(project="modelyard-platform", stack="dev")
    # The Pulumi CLI hands structured config to the program as JSON strings.
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()})
    mocks = PlanMocks(region="us-east-1")
    pulumi.runtime.set_mocks(mocks, project="modelyard-platform", stack="dev", monitor=RecordingMonitor(mocks, plan))
    with pytest.raises(pulumi.RunError, match=r"modelyard:platform\.region: must be an AWS region"):
        run_platform()
    # Let any registration the program may have started reach the monitor before counting.
    _sync_await(wait_for_rpcs())
    assert [r.type for r in plan.registrations if r.type != "pulumi:pulumi:Stack"] == []


def test_shipped_stacks_are_valid_and_differ_on_purpose() -> None:
    cfgs = {env: parse_platform_config(stack_raw(env)[FULL_KEY], stack=env, source=env) for env in ("dev", "prod")}
    dev, prod = cfgs["dev"], cfgs["prod"]
    assert (dev.network.nat, prod.network.nat) == ("single", "per_az")
    assert dev.eks.endpoint.public and not prod.eks.endpoint.public
    assert any("spot" in p.capacity_types for p in dev.gpu_pools)
    assert all(p.capacity_types == ("on-demand",) for p in prod.gpu_pools)
    assert (dev.deletion_protection, prod.deletion_protection) == (False, True)
    assert dev.budget.monthly_usd < prod.budget.monthly_usd


def test_config_models_are_frozen() -> None:
    cfg = parse_platform_config(stack_raw("dev")[FULL_KEY], stack="dev", source="dev")
    with pytest.raises(Exception, match="frozen"):
        cfg.region = "eu-west-1"  # type: ignore[misc]
