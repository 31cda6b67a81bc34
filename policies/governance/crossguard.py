"""The CrossGuard adapter: every rule as a `StackValidationPolicy` of the pack in `policies/`.

Stack validation sees every resource with its dependencies, which the joins (a bucket and its
public-access block, a role and its policies) need; a resource rule is run over each resource there.
`pulumi_policy` is imported only here, so the rules themselves stay importable without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .resources import UNKNOWN, Resource, Stack
from .rules import RULES, Context, Rule


def _plain(value: Any) -> Any:
    """A props value as plain data, with the engine's unknowns as the UNKNOWN sentinel (CrossGuard's
    proxies raise on access to an unknown instead)."""
    from pulumi_policy.proxy import UnknownValueError

    if isinstance(value, Mapping):
        out = {}
        for key in list(value.keys()):
            try:
                out[key] = _plain(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if isinstance(value, list | tuple):
        items = []
        for i in range(len(value)):
            try:
                items.append(_plain(value[i]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def to_resources(policy_resources: list[Any]) -> list[Resource]:
    """CrossGuard's PolicyResources (and the providers they name) as Resources."""
    out: dict[str, Resource] = {}
    for r in policy_resources:
        provider = r.provider
        if provider is not None and provider.urn not in out:
            out[provider.urn] = Resource(provider.urn, provider.resource_type, _plain(provider.props))
        out[r.urn] = Resource(
            urn=r.urn,
            type=r.resource_type,
            inputs=_plain(r.props),
            parent=r.parent.urn if r.parent is not None else None,
            provider=provider.urn if provider is not None else None,
            dependencies=tuple(d.urn for d in r.dependencies),
            property_dependencies={k: tuple(d.urn for d in v) for k, v in r.property_dependencies.items()},
        )
    return list(out.values())


def env_of(resources: list[Resource]) -> str:
    """The stack (environment) name, from the URNs: urn:pulumi:<stack>::<project>::..."""
    for r in resources:
        if r.urn.startswith("urn:pulumi:"):
            return r.urn.split(":")[2]
    return ""


def _schema(default: Any) -> dict[str, Any]:
    if isinstance(default, bool):
        return {"type": "boolean"}
    if isinstance(default, int | float):
        return {"type": "number"}
    if isinstance(default, list):
        return {"type": "array", "items": {"type": "string"}}
    return {}


def validator(rule: Rule) -> Callable[[Any, Callable[[str, str | None], None]], None]:
    def validate(args: Any, report_violation: Callable[[str, str | None], None]) -> None:
        resources = to_resources(list(args.resources))
        params = {rule.name: {**(rule.params or {}), **dict(args.get_config() or {})}}
        ctx = Context(env_of(resources), Stack(resources), params)
        for finding in rule.run(ctx):
            report_violation(f"{finding.field}: {finding.message} (got {finding.value!r})", finding.urn or None)

    return validate


def policies() -> list[Any]:
    from pulumi_policy import EnforcementLevel, PolicyConfigSchema, StackValidationPolicy

    out = []
    for rule in RULES.values():
        schema = PolicyConfigSchema(properties={k: _schema(v) for k, v in rule.params.items()}) if rule.params else None
        out.append(
            StackValidationPolicy(
                name=rule.name,
                description=rule.description,
                validate=validator(rule),
                enforcement_level=EnforcementLevel.MANDATORY if rule.basic else EnforcementLevel.ADVISORY,
                config_schema=schema,
            )
        )
    return out
