"""Promotion as a reviewed change: each running canary's verdict (`modelyard ops canary`) turned into the one-line
edit of its catalog that acts on it, for a pull request (`modelyard canary decide`, the scheduled workflow
.github/workflows/canary-verdict.yml).

- promote: the model's `version:` becomes the canary's (the canary, now the stable version, is no longer
  deployed: workloads/catalog.py);
- rollback: the canary's `traffic_percent:` becomes 0;
- hold (too little traffic, or in between): nothing.

The edit replaces one scalar where the YAML parser found it (its marks) and keeps every other byte of the file:
comments, order, quoting, flow or block style. The edited catalog is validated again before it is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelyard.validation import ConfigError


class EditError(Exception):
    """The catalog cannot be edited as asked; the message says why."""


def _child(node: yaml.Node, key: str | int, where: str) -> yaml.Node:
    if isinstance(key, int):
        if not isinstance(node, yaml.SequenceNode) or key >= len(node.value):
            raise EditError(f"{where}: no item {key}")
        return node.value[key]  # type: ignore[no-any-return]
    if not isinstance(node, yaml.MappingNode):
        raise EditError(f"{where}: not a mapping")
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v  # type: ignore[no-any-return]
    raise EditError(f"{where}: no key {key!r}")


def _render(old: yaml.ScalarNode, value: str | int) -> str:
    """`value` as the old scalar was written: quoted the same way, or plain."""
    if isinstance(value, int):
        return str(value)
    if old.style == '"':
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if old.style == "'":
        return "'" + value.replace("'", "''") + "'"
    # A plain version that YAML would read as a number (2, 1.5) is quoted, so it stays a string.
    return value if isinstance(yaml.safe_load(value), str) else f'"{value}"'


def set_scalar(text: str, path: Sequence[str | int], value: str | int) -> str:
    """`text` with the scalar at `path` (such as ("models", 0, "version")) replaced by `value`."""
    node = yaml.compose(text)
    where = ""
    for key in path:
        if node is None:
            raise EditError("the catalog is empty")
        node = _child(node, key, where or "(the catalog)")
        where = f"{where}.{key}" if where else str(key)
    if not isinstance(node, yaml.ScalarNode):
        raise EditError(f"{where}: not a single value")
    start, end = node.start_mark.index, node.end_mark.index
    return text[:start] + _render(node, value) + text[end:]


@dataclass(frozen=True)
class Decision:
    model: str
    verdict: str
    title: str
    #: The path of the scalar edited and its new value, or None (hold).
    path: tuple[str | int, ...] | None = None
    value: str | int | None = None
    #: "version: 1 -> 2", or "canary.traffic_percent: 25 -> 0".
    change: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "verdict": self.verdict, "title": self.title, "change": self.change}


def decide(catalog: Any, verdicts: dict[str, Any]) -> list[Decision]:
    """The edit each model's verdict asks for. `verdicts`: model name -> ops.Result of ops.canary."""
    out = []
    for i, m in enumerate(catalog.models):
        if not m.canary_active or m.name not in verdicts:
            continue
        result = verdicts[m.name]
        verdict = result.extra["verdict"]
        if verdict == "promote":
            out.append(
                Decision(m.name, verdict, result.title, ("models", i, "version"), m.canary.version,
                         f"version: {m.version} -> {m.canary.version}")
            )  # fmt: skip
        elif verdict == "rollback":
            out.append(
                Decision(m.name, verdict, result.title, ("models", i, "canary", "traffic_percent"), 0,
                         f"canary.traffic_percent: {m.canary.traffic_percent} -> 0")
            )  # fmt: skip
        else:
            out.append(Decision(m.name, verdict, result.title))
    return out


def apply(path: Path, decision: Decision, *, stack: str, tier: str) -> str:
    """Writes `decision`'s one-line edit into the catalog at `path` once the edited catalog validates; returns the
    new text."""
    from modelyard.workloads.catalog import parse_catalog

    assert decision.path is not None and decision.value is not None
    text = path.read_text(encoding="utf-8")
    edited = set_scalar(text, decision.path, decision.value)
    changed = [(a, b) for a, b in zip(text.splitlines(), edited.splitlines(), strict=True) if a != b]
    if len(changed) != 1:
        raise EditError(f"{path.name}: the edit would change {len(changed)} lines, not one")
    try:
        parse_catalog(yaml.safe_load(edited), stack=stack, source=path.name, tier=tier)
    except ConfigError as exc:
        raise EditError(f"{path.name}: the edited catalog does not validate: {'; '.join(exc.problems)}") from None
    path.write_text(edited, encoding="utf-8")
    return edited
