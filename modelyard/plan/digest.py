"""The PreviewDigest: the one document cost, policy, PR review and manifests read.

Its shape is that of `pulumi preview --json` (`steps[].op`, `steps[].urn`, `steps[].newState.{type,
inputs, parent, provider, dependencies, propertyDependencies}`), so every consumer works the same on
an offline plan and on a real preview from a user's CI. An offline plan adds one extra top-level
key, `modelyard`, with what it knows beyond a preview (env, projects, stack outputs); consumers must
not require it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from modelyard.plan.engine import ProjectPlan, Registration

DIGEST_FORMAT = 1


def _step(reg: Registration) -> dict[str, Any]:
    state: dict[str, Any] = {
        "urn": reg.urn,
        "custom": reg.custom,
        "type": reg.type,
        "inputs": reg.inputs,
    }
    if reg.parent:
        state["parent"] = reg.parent
    if reg.provider:
        state["provider"] = reg.provider
    if reg.protect:
        state["protect"] = True
    state["dependencies"] = reg.dependencies
    state["propertyDependencies"] = reg.property_dependencies
    step: dict[str, Any] = {"op": "create", "urn": reg.urn, "newState": state}
    if reg.provider:
        step["provider"] = reg.provider
    return step


def build_digest(plans: Iterable[ProjectPlan], *, env: str) -> dict[str, Any]:
    """One PreviewDigest for the given project plans (one stack each), steps sorted by URN."""
    plans = list(plans)
    steps = []
    for plan in plans:
        for reg in plan.registrations:
            step = _step(reg)
            if reg.type == "pulumi:pulumi:Stack":
                step["newState"]["outputs"] = plan.outputs
            steps.append(step)
    steps.sort(key=lambda s: s["urn"])
    return {
        "modelyard": {
            "format": DIGEST_FORMAT,
            "source": "offline-plan",
            "env": env,
            "projects": [
                {"project": p.project, "stack": p.stack, "outputs": p.outputs, "dataSources": p.data_sources}
                for p in plans
            ],
        },
        "steps": steps,
        "changeSummary": {"create": len(steps)},
    }


def dumps(digest: Mapping[str, Any]) -> str:
    """Stable JSON: the same plan gives the same bytes."""
    return json.dumps(digest, indent=2, sort_keys=True) + "\n"


@cache
def schema() -> dict[str, Any]:
    text = resources.files("modelyard").joinpath("schemas/preview-digest.schema.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


def schema_errors(document: Any) -> list[str]:
    """Where `document` departs from the PreviewDigest schema (the offline plan's contract; files are read
    by modelyard.plan.preview, which checks what consumers need of any preview)."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [
        "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path) + f": {e.message}" for e in errors
    ]


def new_states(digest: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """The desired state of every resource that will exist after the change (delete steps have none)."""
    for step in digest.get("steps", []):
        state = step.get("newState")
        if state:
            yield state
