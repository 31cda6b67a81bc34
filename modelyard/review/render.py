"""The report rendered: Markdown for the pull request (with a Mermaid chart of the changes) and JSON."""

from __future__ import annotations

import json
from typing import Any

from modelyard.policies.governance.resources import SECRET, UNKNOWNS

from .changes import KNOWN_AFTER_APPLY, Report


def _usd(value: float, signed: bool = False) -> str:
    text = f"${abs(value):,.2f}"
    if signed:
        return ("+" if value >= 0 else "\u2212") + text  # a minus sign, not a hyphen
    return text


def _value(value: Any) -> str:
    if value == SECRET or (isinstance(value, str) and SECRET in value):
        return "[secret]"
    if isinstance(value, str) and value in UNKNOWNS:
        return KNOWN_AFTER_APPLY
    if value is None:
        return "(none)"
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
    if report.errors:
        out.append(f"### ❌ The preview failed ({len(report.errors)} errors): the changes below are partial")
        out += [f"- {_value(e) if len(e) > 300 else e}" for e in report.errors[:10]]
        out.append("")
    if base is not None and head is not None:
        cost = (
            f"monthly cost {_usd(head.baseline)} ({_usd(head.baseline - base.baseline, True)}) "
            f"baseline, {_usd(head.ceiling)} ({_usd(head.ceiling - base.ceiling, True)}) ceiling"
        )
        policy = f"policy: {len(report.new_violations)} new, {len(report.fixed_violations)} fixed"
    else:
        cost, policy = "monthly cost not estimated", "policy not evaluated"
    out.append(
        f"**{n['create']} to create, {n['update']} to update, {n['replace']} to replace, {n['delete']} to delete** · "
        f"{cost} · {policy}"
    )
    out.append("")
    for note in report.notes:
        out.append(f"> {note}")
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
        assert base is not None and head is not None  # cost rows exist only with both estimates
        out.append(
            f"| **total** | {_usd(base.baseline)} → {_usd(head.baseline)} | "
            f"{_usd(base.ceiling)} → {_usd(head.ceiling)} |"
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
        "cost": None
        if report.base_cost is None or report.head_cost is None
        else {
            "baseline": {"base": report.base_cost.baseline, "head": report.head_cost.baseline},
            "ceiling": {"base": report.base_cost.ceiling, "head": report.head_cost.ceiling},
            "resources": [
                {"urn": u, "type": t, "baseline": [round(bb, 2), round(hb, 2)], "ceiling": [round(bc, 2), round(hc, 2)]}
                for u, t, bb, hb, bc, hc in report.cost_changes()
            ],
        },
        "notes": list(report.notes),
        "errors": list(report.errors),
        "policy": {
            "new": [v.to_json() for v in report.new_violations],
            "fixed": [v.to_json() for v in report.fixed_violations],
        },
    }
