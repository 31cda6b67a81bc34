"""Policy configuration per environment, and evaluation of every rule against a preview.

The configuration is CrossGuard's own format (what `pulumi preview --policy-pack policies
--policy-pack-config policies/config/<env>.json` reads), so both adapters read one file:

    {"all": "advisory",
     "iam-no-wildcards": "mandatory",
     "gpu-instance-allowlist": {"enforcementLevel": "mandatory", "instanceTypes": ["g5.xlarge"]}}

A rule's level is its own entry, else `all`, else mandatory for security basics and advisory for the
rest. `disabled` turns a rule off.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .resources import Resource, Stack
from .rules import RULES, Context, Level, Violation

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
LEVELS: tuple[Level, ...] = ("advisory", "mandatory", "disabled")


class PolicyConfigError(Exception):
    """A policy configuration file is unreadable or names unknown rules, levels or parameters."""


@dataclass(frozen=True)
class PolicyConfig:
    levels: Mapping[str, Level]
    params: Mapping[str, Mapping[str, Any]]

    def level(self, rule: str) -> Level:
        return self.levels[rule]


def parse_config(raw: Any, source: str) -> PolicyConfig:
    if not isinstance(raw, Mapping):
        raise PolicyConfigError(f"{source}: must be a JSON object of rule names (got {type(raw).__name__})")
    problems: list[str] = []
    default = raw.get("all")
    if default is not None and default not in LEVELS:
        problems.append(f"all: must be one of {', '.join(LEVELS)} (got {default!r})")
    levels: dict[str, Level] = {}
    params: dict[str, dict[str, Any]] = {}
    for name, rule in RULES.items():
        entry = raw.get(name)
        level: Any = None
        values: dict[str, Any] = {}
        if isinstance(entry, str):
            level = entry
        elif isinstance(entry, Mapping):
            level = entry.get("enforcementLevel")
            values = {k: v for k, v in entry.items() if k != "enforcementLevel"}
            unknown = sorted(set(values) - set(rule.params or {}))
            if unknown:
                allowed = ", ".join(sorted(rule.params or {})) or "none"
                problems.append(f"{name}: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
        elif entry is not None:
            problems.append(f"{name}: must be a level or an object (got {entry!r})")
        if level is not None and level not in LEVELS:
            problems.append(f"{name}.enforcementLevel: must be one of {', '.join(LEVELS)} (got {level!r})")
            level = None
        levels[name] = cast(
            Level, level or (default if default in LEVELS else None) or ("mandatory" if rule.basic else "advisory")
        )
        params[name] = {**(rule.params or {}), **values}
    unknown_rules = sorted(k for k in raw if k != "all" and k not in RULES)
    for name in unknown_rules:
        problems.append(f"{name}: no such rule (rules: {', '.join(sorted(RULES))})")
    if problems:
        raise PolicyConfigError(f"Invalid policy config {source}:\n" + "\n".join(f"  • {p}" for p in problems))
    return PolicyConfig(levels, params)


def load_config(env: str, path: Path | None = None) -> PolicyConfig:
    """`policies/config/<env>.json`, or `path`."""
    path = path or CONFIG_DIR / f"{env}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        envs = ", ".join(sorted(p.stem for p in path.parent.glob("*.json")))
        raise PolicyConfigError(f"no policy config for {env!r}: {path} does not exist (have: {envs})") from None
    except ValueError as exc:
        raise PolicyConfigError(f"{path}: not valid JSON ({exc})") from None
    return parse_config(raw, str(path))


@dataclass(frozen=True)
class Report:
    env: str
    violations: list[Violation]
    rules_run: int

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "mandatory"]

    @property
    def advisory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "advisory"]

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "rulesRun": self.rules_run,
            "mandatory": len(self.mandatory),
            "advisory": len(self.advisory),
            "violations": [v.to_json() for v in self.violations],
        }


def evaluate(resources: Iterable[Resource], env: str, config: PolicyConfig, stack: Stack | None = None) -> Report:
    """Every enabled rule over the preview's resources; violations sorted by level, rule and resource."""
    stack = stack or Stack(resources)
    ctx = Context(env, stack, config.params)
    out: list[Violation] = []
    run = 0
    for name, rule in RULES.items():
        level = config.level(name)
        if level == "disabled":
            continue
        run += 1
        for f in rule.run(ctx):
            out.append(Violation(name, level, f.urn, f.field, f.value, f.message))
    out.sort(key=lambda v: (v.level != "mandatory", v.rule, v.urn, v.field))
    return Report(env, out, run)
