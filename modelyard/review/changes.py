"""The change model: what a change is (create, update, replace, delete, with the properties that
differ), its cost and policy deltas, and the report of one real preview as the engine gave it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelyard.policies.governance.cost import Estimate, estimate, layer_of
from modelyard.policies.governance.policy import PolicyConfig, evaluate
from modelyard.policies.governance.resources import Resource, Stack, from_preview, known
from modelyard.policies.governance.rules import Violation

Kind = Literal["create", "update", "replace", "delete"]


STATEFUL = frozenset(
    {
        "aws:s3/bucket:Bucket",
        "aws:s3/bucketV2:BucketV2",
        "aws:kms/key:Key",
        "aws:eks/cluster:Cluster",
        "aws:ecr/repository:Repository",
        "aws:ec2/vpc:Vpc",
    }
)


#: Properties whose change makes the provider replace the resource (the ones that matter here).
FORCE_NEW: Mapping[str, tuple[str, ...]] = {
    "aws:s3/bucket:Bucket": ("bucket",),
    "aws:eks/cluster:Cluster": ("name", "vpcConfig.subnetIds", "kubernetesNetworkConfig"),
    "aws:kms/key:Key": ("customerMasterKeySpec", "keyUsage"),
    "aws:ecr/repository:Repository": ("name",),
    "aws:ec2/vpc:Vpc": ("cidrBlock",),
    "aws:ec2/subnet:Subnet": ("cidrBlock", "availabilityZone", "vpcId"),
    "aws:eks/nodeGroup:NodeGroup": ("nodeGroupName", "subnetIds", "amiType", "capacityType", "instanceTypes"),
}


REPLACE_OPS = ("replace", "create-replacement", "delete-replaced", "import-replacement")


#: How each engine operation shows in the report; operations not listed change nothing the stack owns.
ENGINE_KINDS: Mapping[str, Kind] = {
    "create": "create",
    "import": "create",
    "update": "update",
    "delete": "delete",
    **dict.fromkeys(REPLACE_OPS, "replace"),
}


KNOWN_AFTER_APPLY = "(known after apply)"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key in sorted(value):
            out.update(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def changed_properties(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(path, old, new) for every leaf that differs; lists compare whole, secrets stay masked."""
    a, b = _flatten(dict(before)), _flatten(dict(after))
    out = []
    for path in sorted(set(a) | set(b)):
        old, new = a.get(path), b.get(path)
        if old != new:
            out.append((path, old, new))
    return out


@dataclass(frozen=True)
class Change:
    kind: Kind
    urn: str
    type: str
    layer: str
    properties: tuple[tuple[str, Any, Any], ...] = ()

    @property
    def stateful(self) -> bool:
        return self.type in STATEFUL and self.kind in ("replace", "delete")

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


@dataclass(frozen=True)
class Priced:
    """A stack's monthly cost as the review shows it: its totals, and (type, baseline, ceiling) of each
    resource that costs something (a resource left out costs nothing: most of a stack is free)."""

    baseline: float
    ceiling: float
    items: dict[str, tuple[str, float, float]]

    @classmethod
    def of(cls, cost: Estimate) -> Priced:
        items = {i.urn: (i.type, i.baseline, i.ceiling) for i in cost.items if i.baseline or i.ceiling}
        return cls(cost.baseline, cost.ceiling, items)


@dataclass
class Report:
    env: str
    changes: list[Change]
    #: None when the documents cannot support an estimate (a preview without its unchanged resources).
    base_cost: Priced | None
    head_cost: Priced | None
    new_violations: list[Violation] = field(default_factory=list)
    fixed_violations: list[Violation] = field(default_factory=list)
    #: What the report could not judge, and why (policy not evaluated, cost not estimated).
    notes: list[str] = field(default_factory=list)
    #: The error diagnostics of a failed preview: its changes are partial.
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: sum(1 for c in self.changes if c.kind == k) for k in ("create", "update", "replace", "delete")}

    def cost_changes(self) -> list[tuple[str, str, float, float, float, float]]:
        """(urn, type, base baseline, head baseline, base ceiling, head ceiling) for resources whose cost moved."""
        if self.base_cost is None or self.head_cost is None:
            return []
        base, head = self.base_cost.items, self.head_cost.items
        rows = []
        for urn in sorted(base.keys() | head.keys()):
            type_, bb, bc = base.get(urn, ("", 0.0, 0.0))
            type_, hb, hc = head.get(urn, (type_, 0.0, 0.0))
            if round(bb, 2) != round(hb, 2) or round(bc, 2) != round(hc, 2):
                rows.append((urn, type_, bb, hb, bc, hc))
        return rows


def split_preview(document: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A real `pulumi preview --json` as (before, after): each step's `oldState` is what the stack has
    now, its `newState` what it will have; a delete step has only the first, a create only the second."""
    before, after = [], []
    for step in document.get("steps") or []:
        if not isinstance(step, Mapping):
            continue
        if isinstance(step.get("oldState"), Mapping):
            before.append({"op": "same", "urn": step.get("urn"), "newState": step["oldState"]})
        if isinstance(step.get("newState"), Mapping):
            after.append({"op": step.get("op"), "urn": step.get("urn"), "newState": step["newState"]})
    return {"steps": before}, {"steps": after}


def _forces_replacement(type_: str, props: Iterable[tuple[str, Any, Any]]) -> bool:
    """A known property the provider cannot update in place takes a new known value."""
    return any(
        (p == f or p.startswith(f + ".")) and known(old) and known(new)
        for p, old, new in props
        for f in FORCE_NEW.get(type_, ())
    )


def _violations(stack: Stack, env: str, config: PolicyConfig) -> dict[tuple[str, str, str], Violation]:
    return {(v.rule, v.urn, v.field): v for v in evaluate(stack.resources, env, config, stack).violations}


def _policy_delta(
    report: Report, before: Mapping[tuple[str, str, str], Violation], after: Mapping[tuple[str, str, str], Violation]
) -> None:
    report.new_violations = [after[k] for k in sorted(set(after) - set(before))]
    report.fixed_violations = [before[k] for k in sorted(set(before) - set(after))]


def _priced(stack: Stack, region: str | None) -> Priced:
    """The stack's cost in the preview's region (its `aws:region` config), else its AWS provider's."""
    cost = estimate(stack)  # the estimate the policy rules price the stack with, computed once
    if region and region != cost.region:
        cost = estimate(stack, region=region)
    return Priced.of(cost)


def property_at(inputs: Any, path: str) -> Any:
    """The value at a Pulumi property path (`tags.env`, `ingress[0].cidrBlocks`, `tags["a.b"]`), or None.
    Raises ValueError on a path it cannot follow."""
    value = inputs
    i = 0
    while i < len(path) and value is not None:
        if path[i] == ".":
            i += 1
        key: str | int
        if path.startswith('["', i):
            end = path.index('"]', i + 2)
            key, i = path[i + 2 : end], end + 2
        elif path.startswith("[", i):
            end = path.index("]", i)
            inner = path[i + 1 : end]
            key, i = (int(inner) if inner.isdigit() else inner), end + 1
        else:
            stops = [j for j in (path.find(".", i), path.find("[", i)) if j != -1]
            end = min(stops, default=len(path))
            key, i = path[i:end], end
        if isinstance(key, int) and isinstance(value, list):
            value = value[key] if key < len(value) else None
        elif isinstance(key, str) and isinstance(value, Mapping):
            value = value.get(key)
        else:
            value = None
    return value


def _engine_properties(step: Mapping[str, Any]) -> tuple[tuple[str, Any, Any], ...]:
    """What the engine said changed: `detailedDiff` paths (a `-replace` kind forces the replacement), or
    the top-level `diffReasons`."""
    old = (step.get("oldState") or {}).get("inputs") or {}
    new = (step.get("newState") or {}).get("inputs") or {}
    detailed = step.get("detailedDiff") or {}
    if detailed:
        rows = []
        for path in sorted(detailed):
            diff = detailed[path] if isinstance(detailed[path], Mapping) else {}
            label = f"{path} (forces replacement)" if str(diff.get("kind", "")).endswith("-replace") else path
            try:
                rows.append((label, property_at(old, path), property_at(new, path)))
            except ValueError:  # a path this reader cannot follow: named, values not shown
                rows.append((label, None, None))
        return tuple(rows)
    reasons = sorted(str(r) for r in step.get("diffReasons") or [])
    if reasons:
        return tuple((r, old.get(r), new.get(r)) for r in reasons)
    # The engine named nothing (an older CLI, or a hand-made preview): compare the states.
    return tuple(changed_properties(old if isinstance(old, Mapping) else {}, new if isinstance(new, Mapping) else {}))


def engine_report(
    document: Mapping[str, Any], config: PolicyConfig | None, *, whole: bool, env: str, region: str | None = None
) -> Report:
    """One real preview, as the engine reported it: its operations and its diffs. Cost and policy compare
    old states with new states only when the preview is whole."""
    before_doc, after_doc = split_preview(document)
    base_stack = Stack(r for r in from_preview(before_doc) if r.type != "pulumi:pulumi:Stack")
    head_stack = Stack(r for r in from_preview(after_doc) if r.type != "pulumi:pulumi:Stack")
    changes: dict[str, Change] = {}
    for step in document.get("steps") or []:
        kind = ENGINE_KINDS.get(str(step.get("op")))
        urn = str(step.get("urn"))
        state = step.get("newState") or step.get("oldState") or {}
        type_ = str(state.get("type", ""))
        if kind is None or type_ == "pulumi:pulumi:Stack" or urn in changes:
            continue
        stack = head_stack if urn in head_stack.by_urn else base_stack
        resource = stack.by_urn.get(urn) or Resource(urn, type_, {})
        props = _engine_properties(step) if kind in ("update", "replace") else ()
        changes[urn] = Change(kind, urn, type_, layer_of(resource, stack), props)
    report = Report(env, [changes[u] for u in sorted(changes)], None, None)
    if not whole:
        report.notes.append(
            "Cost and policy not evaluated: the preview leaves out unchanged resources or failed; "
            "run `pulumi preview --json --show-sames` for the whole stack."
        )
        return report
    report.base_cost, report.head_cost = _priced(base_stack, region), _priced(head_stack, region)
    if config is not None:
        _policy_delta(report, _violations(base_stack, env, config), _violations(head_stack, env, config))
    return report
