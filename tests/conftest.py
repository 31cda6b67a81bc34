"""Shared fixtures: plans of the shipped stacks (run once per session) and of edited configs."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.config import FULL_KEY
from modelyard.plan.digest import build_digest
from modelyard.plan.engine import run_program
from modelyard.programs import PROJECTS, REPO_ROOT
from modelyard.stackfile import parse_platform_config
from modelyard.workloads.catalog import WORKLOADS_KEY, parse_workloads

ENVS = ("dev", "staging", "prod")


class Plan:
    """A planned stack, with the lookups tests need: by type token, by name, and the provider's tags."""

    def __init__(self, digest: dict[str, Any]):
        self.digest = digest
        self.states = [s["newState"] for s in digest["steps"] if "newState" in s]
        self.by_urn = {s["urn"]: s for s in self.states}

    def of_type(self, token: str) -> list[dict[str, Any]]:
        return [s for s in self.states if s["type"] == token]

    def one(self, token: str) -> dict[str, Any]:
        found = self.of_type(token)
        assert len(found) == 1, f"expected one {token}, found {[s['urn'] for s in found]}"
        return found[0]

    def named(self, token: str, name: str) -> dict[str, Any]:
        for state in self.of_type(token):
            if state["urn"].endswith(f"::{name}"):
                return state
        raise AssertionError(f"no {token} named {name}; have {[s['urn'].split('::')[-1] for s in self.of_type(token)]}")

    def parent_type(self, state: dict[str, Any]) -> str:
        return str(self.by_urn[state["parent"]]["type"])

    def outputs(self) -> dict[str, Any]:
        return dict(self.digest["modelyard"]["projects"][0]["outputs"])

    def outputs_of(self, project: str) -> dict[str, Any]:
        """The outputs of one project of a plan of both (`plan_all`)."""
        [found] = [p["outputs"] for p in self.digest["modelyard"]["projects"] if p["project"] == project]
        return dict(found)

    def default_tags(self) -> dict[str, str]:
        provider = self.named("pulumi:providers:aws", "aws")  # the stack's (a replica's region has its own)
        return dict(json.loads(provider["inputs"]["defaultTags"])["tags"])


def stack_raw(env: str) -> dict[str, Any]:
    return dict(yaml.safe_load((REPO_ROOT / f"Pulumi.{env}.yaml").read_text())["config"])


def plan_raw(env: str, raw: dict[str, Any]) -> Plan:
    project = PROJECTS["platform"]
    cfg = parse_platform_config(raw[FULL_KEY], stack=env, source=f"Pulumi.{env}.yaml")
    result = run_program(project, env, cfg, raw, region=cfg.region)
    return Plan(build_digest([result], env=env))


@pytest.fixture(scope="session")
def plans() -> dict[str, Plan]:
    """The shipped dev, staging and prod stacks, planned once."""
    return {env: plan_raw(env, stack_raw(env)) for env in ENVS}


@pytest.fixture
def plan_with() -> Callable[..., Plan]:
    """Plan an environment after editing its config: `plan_with("dev", lambda p: p["network"].update(...))`."""

    def run(env: str, edit: Callable[[dict[str, Any]], Any]) -> Plan:
        raw = copy.deepcopy(stack_raw(env))
        edit(raw[FULL_KEY])
        return plan_raw(env, raw)

    return run


def bad_config_files() -> Iterator[Path]:
    yield from sorted((Path(__file__).parent / "fixtures" / "bad_config").glob("*.yaml"))


def plan_all(
    env: str,
    catalog: dict[str, Any] | None = None,
    tmp: Path | None = None,
    platform_edit: Callable[[dict[str, Any]], Any] | None = None,
) -> Plan:
    """Both projects of `env`, the workloads stack reading the platform plan's outputs (the platform's config
    edited first by `platform_edit`, where given)."""
    platform = PROJECTS["platform"]
    raw = yaml.safe_load(platform.stack_file(env).read_text())["config"]
    if platform_edit is not None:
        platform_edit(raw["modelyard:platform"])
    cfg = parse_platform_config(raw["modelyard:platform"], stack=env, source="x")
    first = run_program(platform, env, cfg, raw, region=cfg.region)
    project = PROJECTS["workloads"]
    wraw = yaml.safe_load(project.stack_file(env).read_text())["config"]
    directory = project.directory
    if catalog is not None:
        assert tmp is not None
        (tmp / "catalog.yaml").write_text(yaml.safe_dump(catalog))
        wraw[WORKLOADS_KEY] = {**wraw[WORKLOADS_KEY], "catalog": "catalog.yaml"}
        directory = tmp
    w = parse_workloads(wraw, stack=env, source="x", directory=directory)
    second = run_program(
        project, env, w, wraw, region=cfg.region, stack_outputs={w.config.platform_stack: first.outputs}
    )
    return Plan(build_digest([first, second], env=env))


@pytest.fixture(scope="session")
def all_plans() -> dict[str, Plan]:
    """Both projects of every shipped environment, planned once."""
    return {env: plan_all(env) for env in ENVS}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The conformance figures: how much of the plan was held to upstream's behaviour in this run."""
    from support import COUNTS

    if COUNTS:
        terminalreporter.section("conformance: the plan held to what the cluster will do")
        for what in sorted(COUNTS):
            terminalreporter.write_line(f"{COUNTS[what]:6d}  {what}")
