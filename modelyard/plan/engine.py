"""The offline plan: run a real Pulumi program in-process under Pulumi's mocks, and record what the
engine would be asked to register.

A subclass of Pulumi's `MockMonitor` sees every `RegisterResourceRequest` exactly as the engine would:
type, name, parent, provider reference, serialized inputs, `dependencies` and `propertyDependencies`.
Those become a PreviewDigest (see `digest.py`), the same document shape as `pulumi preview --json`.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from modelyard.plan.mocks import SECRET_MASK, PlanMocks
from modelyard.programs import Project

#: Special values in Pulumi's wire format (sdk/go/common/resource/plugin/rpc.go).
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
RESOURCE_REF_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
OUTPUT_VALUE_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def plain(value: Any) -> Any:
    """Wire-format properties as plain JSON: secrets masked, resource references as their URN,
    unknowns kept as the engine's sentinel, whole floats back to ints."""
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            return SECRET_MASK
        if sig == RESOURCE_REF_SIG:
            return value.get("urn")
        if sig == OUTPUT_VALUE_SIG:
            return SECRET_MASK if value.get("secret") else plain(value.get("value", UNKNOWN))
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class Registration:
    urn: str
    type: str
    custom: bool
    parent: str
    provider: str
    inputs: dict[str, Any]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    protect: bool
    #: Resource options the engine reads but a preview's newState does not carry (the digest leaves them out).
    ignore_changes: list[str] = field(default_factory=list)


@dataclass
class ProjectPlan:
    """What one project's program registered for one stack."""

    project: str
    stack: str
    registrations: list[Registration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    #: The data sources the program called (what its real preview asks AWS, with the preview role's rights).
    data_sources: list[str] = field(default_factory=list)
    seconds: float = 0.0


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Pulumi's mock monitor, recording each registration request as the engine would receive it."""

    def __init__(self, mocks: pulumi.runtime.Mocks, plan: ProjectPlan):
        super().__init__(mocks)
        self.plan = plan

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # Like the engine: children of the root stack carry no parent type in their URN.
        if parent and parent.split("::")[2].split("$")[-1] == "pulumi:pulumi:Stack":
            parent = ""
        return super().make_urn(parent, type_, name)

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        registration = Registration(
            urn=response.urn,
            type=request.type,
            custom=bool(request.custom),
            parent=request.parent,
            provider=request.provider,
            inputs=plain(json_format.MessageToDict(request.object)),
            dependencies=sorted(set(request.dependencies)),
            property_dependencies={
                key: sorted(set(deps.urns)) for key, deps in sorted(request.propertyDependencies.items())
            },
            protect=bool(request.protect),
            ignore_changes=list(request.ignoreChanges),
        )
        self.plan.registrations.append(registration)
        return response


class PlanError(Exception):
    """The program failed under the offline plan. `str()` says which resource or step, and why."""


def run_program(
    project: Project,
    stack: str,
    config: Any,
    raw_config: Mapping[str, Any],
    *,
    region: str,
    stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
) -> ProjectPlan:
    """Run `project.program(config)` for `stack` under mocks and return what it registered.

    `raw_config` is the stack file's `config:` mapping; it is handed to the Pulumi runtime so the
    program's own `pulumi.Config` reads behave as under the CLI. `stack_outputs` answers the program's
    StackReferences: stack name → that stack's outputs (another project's plan). The run happens in a copied context
    so repeated plans in one process (tests, `--project all`) never share runtime state.
    """
    plan = ProjectPlan(project=project.pulumi_name, stack=stack)
    started = time.perf_counter()
    context = contextvars.copy_context()
    context.run(_run, project, stack, config, raw_config, region, plan, dict(stack_outputs or {}))
    plan.seconds = time.perf_counter() - started
    return plan


def _run(
    project: Project,
    stack: str,
    config: Any,
    raw_config: Mapping[str, Any],
    region: str,
    plan: ProjectPlan,
    stack_outputs: Mapping[str, Mapping[str, Any]],
) -> None:
    pulumi_settings.reset_options(project=project.pulumi_name, stack=stack)
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in raw_config.items()})
    mocks = PlanMocks(region=region, stack_outputs=stack_outputs)
    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.SETTINGS.outputs.clear()
    pulumi.runtime.set_mocks(
        mocks, project=project.pulumi_name, stack=stack, preview=False, monitor=RecordingMonitor(mocks, plan)
    )
    try:
        _sync_await(run_pulumi_func(lambda: project.program(config)))
        # Under mocks the root stack registers its outputs before the program runs, so the exports
        # are read from the stack resource itself once every resource has resolved.
        root = pulumi_settings.get_root_resource()
        exports = dict(getattr(root, "outputs", {}) or {})
        plan.outputs = {key: _sync_await(_resolve(value)) for key, value in sorted(exports.items())}
        plan.data_sources = sorted(mocks.invoked)
    except Exception as exc:  # a program bug: name it, keep it short
        raise PlanError(f"{project.pulumi_name}/{stack}: the program failed: {type(exc).__name__}: {exc}") from exc


async def _resolve(value: Any) -> Any:
    output = pulumi.Output.from_input(value)
    if await output.is_secret():
        return SECRET_MASK
    if not await output.is_known():
        return UNKNOWN
    return plain(await output.future())
