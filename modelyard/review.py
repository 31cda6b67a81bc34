"""The pull-request review report: what changes between two PreviewDigests (a base and a head), what it
costs, and which policy violations it adds or fixes.

Both digests may be offline plans (`modelyard plan --out`) or real `pulumi preview --json` output.
Resources are matched by URN: created (only in head), deleted (only in base), updated (inputs differ)
and replaced (a preview that says so, or a change to a property the provider cannot update in place).
Replacements and deletions of stateful resources (buckets, KMS keys, the cluster, registries) lead
the report in bold. Output is sorted and stable: the same inputs give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelyard.policies.governance.cost import Estimate, estimate, layer_of
from modelyard.policies.governance.policy import PolicyConfig, evaluate
from modelyard.policies.governance.resources import SECRET, Resource, Stack, from_preview
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
REPLACE_OPS = ("replace", "create-replacement", "delete-replaced")


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


@dataclass
class Report:
    env: str
    changes: list[Change]
    base_cost: Estimate
    head_cost: Estimate
    new_violations: list[Violation] = field(default_factory=list)
    fixed_violations: list[Violation] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: sum(1 for c in self.changes if c.kind == k) for k in ("create", "update", "replace", "delete")}

    def cost_changes(self) -> list[tuple[str, str, float, float, float, float]]:
        """(urn, type, base baseline, head baseline, base ceiling, head ceiling) for resources whose cost moved."""
        base = {i.urn: i for i in self.base_cost.items}
        head = {i.urn: i for i in self.head_cost.items}
        rows = []
        for urn in sorted(set(base) | set(head)):
            b, h = base.get(urn), head.get(urn)
            bb, bc = (b.baseline, b.ceiling) if b else (0.0, 0.0)
            hb, hc = (h.baseline, h.ceiling) if h else (0.0, 0.0)
            if round(bb, 2) != round(hb, 2) or round(bc, 2) != round(hc, 2):
                rows.append((urn, (h or b).type, bb, hb, bc, hc))  # type: ignore[union-attr]
        return rows


def _by_urn(document: Mapping[str, Any]) -> tuple[dict[str, Resource], dict[str, str]]:
    resources = {r.urn: r for r in from_preview(document) if r.type != "pulumi:pulumi:Stack"}
    ops = {str(s.get("urn")): str(s.get("op")) for s in document.get("steps") or [] if isinstance(s, Mapping)}
    return resources, ops


def _env(document: Mapping[str, Any], resources: Iterable[Resource]) -> str:
    meta = document.get("modelyard")
    if isinstance(meta, Mapping) and meta.get("env"):
        return str(meta["env"])
    for r in resources:
        return r.urn.split(":")[2]
    return ""


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


def compare(base_doc: Mapping[str, Any], head_doc: Mapping[str, Any], config: PolicyConfig | None) -> Report:
    base, _ = _by_urn(base_doc)
    head, head_ops = _by_urn(head_doc)
    env = _env(head_doc, head.values()) or _env(base_doc, base.values())
    base_stack, head_stack = Stack(base.values()), Stack(head.values())
    changes: list[Change] = []
    for urn in sorted(set(base) | set(head)):
        b, h = base.get(urn), head.get(urn)
        if b is None and h is not None:
            kind: Kind = "replace" if head_ops.get(urn) in REPLACE_OPS else "create"
            props = tuple(changed_properties({}, h.inputs)) if kind == "replace" else ()
            changes.append(Change(kind, urn, h.type, layer_of(h, head_stack), props))
        elif h is None and b is not None:
            changes.append(Change("delete", urn, b.type, layer_of(b, base_stack)))
        elif b is not None and h is not None:
            props = tuple(changed_properties(b.inputs, h.inputs))
            replaced = head_ops.get(urn) in REPLACE_OPS or any(
                p == f or p.startswith(f + ".") for p, _, _ in props for f in FORCE_NEW.get(h.type, ())
            )
            if props or replaced:
                changes.append(Change("replace" if replaced else "update", urn, h.type, layer_of(h, head_stack), props))
    report = Report(env, changes, estimate(base_stack), estimate(head_stack))
    if config is not None:
        before = {
            (v.rule, v.urn, v.field): v for v in evaluate(base_stack.resources, env, config, base_stack).violations
        }
        after = {
            (v.rule, v.urn, v.field): v for v in evaluate(head_stack.resources, env, config, head_stack).violations
        }
        report.new_violations = [after[k] for k in sorted(set(after) - set(before))]
        report.fixed_violations = [before[k] for k in sorted(set(before) - set(after))]
    return report


# ---------------------------------------------------------------------------------------------
# Rendering


def _usd(value: float, signed: bool = False) -> str:
    text = f"${abs(value):,.2f}"
    if signed:
        return ("+" if value >= 0 else "\u2212") + text  # a minus sign, not a hyphen
    return text


def _value(value: Any) -> str:
    if value == SECRET or (isinstance(value, str) and SECRET in value):
        return "[secret]"
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def mermaid(report: Report) -> str:
    """One node per layer with its counts, coloured by the most serious change in it."""
    layers: dict[str, dict[str, int]] = {}
    for c in report.changes:
        layers.setdefault(c.layer, {"create": 0, "update": 0, "replace": 0, "delete": 0})[c.kind] += 1
    lines = ["```mermaid", "flowchart LR"]
    for layer, n in sorted(layers.items()):
        label = " ".join(
            f"{sym}{n[k]}" for k, sym in (("create", "+"), ("update", "~"), ("replace", "±"), ("delete", "-")) if n[k]
        )
        style = "danger" if n["delete"] or n["replace"] else "change"
        node = "".join(ch if ch.isalnum() else "_" for ch in layer)
        lines.append(f'  {node}["{layer}: {label}"]:::{style}')
    lines += ["  classDef danger fill:#fdd,stroke:#c00", "  classDef change fill:#eef,stroke:#44a", "```"]
    return "\n".join(lines)


def markdown(report: Report) -> str:
    n = report.counts()
    base, head = report.base_cost, report.head_cost
    out = [f"## modelyard review: {report.env}", ""]
    out.append(
        f"**{n['create']} to create, {n['update']} to update, {n['replace']} to replace, {n['delete']} to delete** · "
        f"monthly cost {_usd(head.baseline)} ({_usd(head.baseline - base.baseline, True)}) "
        f"baseline, {_usd(head.ceiling)} ({_usd(head.ceiling - base.ceiling, True)}) "
        f"ceiling · policy: {len(report.new_violations)} new, {len(report.fixed_violations)} fixed"
    )
    out.append("")
    danger = [c for c in report.changes if c.stateful]
    if danger:
        out.append("### ⚠️ Stateful resources replaced or deleted")
        out += [f"- **{c.kind.upper()} `{c.type}` {c.name}** ({c.layer})" for c in danger]
        out.append("")
    if report.changes:
        out.append(mermaid(report))
        out.append("")
    for kind, title in (("replace", "Replaced"), ("delete", "Deleted"), ("update", "Updated"), ("create", "Created")):
        group = [c for c in report.changes if c.kind == kind]
        if not group:
            continue
        out.append(f"### {title} ({len(group)})")
        for layer in sorted({c.layer for c in group}):
            out.append(f"- **{layer}**")
            for c in sorted((c for c in group if c.layer == layer), key=lambda c: (c.type, c.name)):
                out.append(f"  - `{c.type}` {c.name}")
                if kind in ("update", "replace"):
                    for path, old, new in c.properties[:20]:
                        out.append(f"    - `{path}`: {_value(old)} → {_value(new)}")
                    if len(c.properties) > 20:
                        out.append(f"    - … and {len(c.properties) - 20} more properties")
        out.append("")
    rows = report.cost_changes()
    if rows:
        out += ["### Cost (monthly, USD)", "", "| resource | baseline | ceiling |", "| --- | --- | --- |"]
        for urn, _typ, bb, hb, bc, hc in rows:
            out.append(
                f"| {urn.rsplit('::', 1)[-1]} | {_usd(bb)} → {_usd(hb)} ({_usd(hb - bb, True)}) | "
                f"{_usd(bc)} → {_usd(hc)} ({_usd(hc - bc, True)}) |"
            )
        out.append(
            f"| **total** | {_usd(report.base_cost.baseline)} → {_usd(report.head_cost.baseline)} | "
            f"{_usd(report.base_cost.ceiling)} → {_usd(report.head_cost.ceiling)} |"
        )
        out.append("")
    if report.new_violations or report.fixed_violations:
        out.append("### Policy")
        for v in report.new_violations:
            out.append(f"- 🆕 **{v.level}** `{v.rule}` on {v.urn.rsplit('::', 1)[-1]}: `{v.field}`: {v.message}")
        for v in report.fixed_violations:
            out.append(f"- ✅ fixed `{v.rule}` on {v.urn.rsplit('::', 1)[-1]}: `{v.field}`")
        out.append("")
    if not report.changes:
        out.append("No resource changes.")
        out.append("")
    return "\n".join(out)


def to_json(report: Report) -> dict[str, Any]:
    return {
        "env": report.env,
        "counts": report.counts(),
        "changes": [
            {
                "kind": c.kind,
                "urn": c.urn,
                "type": c.type,
                "layer": c.layer,
                "stateful": c.stateful,
                "properties": [{"path": p, "old": _value(o), "new": _value(n)} for p, o, n in c.properties],
            }
            for c in report.changes
        ],
        "cost": {
            "baseline": {"base": report.base_cost.baseline, "head": report.head_cost.baseline},
            "ceiling": {"base": report.base_cost.ceiling, "head": report.head_cost.ceiling},
            "resources": [
                {"urn": u, "type": t, "baseline": [round(bb, 2), round(hb, 2)], "ceiling": [round(bc, 2), round(hc, 2)]}
                for u, t, bb, hb, bc, hc in report.cost_changes()
            ],
        },
        "policy": {
            "new": [v.to_json() for v in report.new_violations],
            "fixed": [v.to_json() for v in report.fixed_violations],
        },
    }
