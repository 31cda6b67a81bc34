"""The pull-request review report: what changes, what it costs, and which policy violations it adds or
fixes.

Two ways in:
- one real `pulumi preview --json`: the changes are the engine's own (each step's `op`, and its
  `detailedDiff` or `diffReasons` for the properties); cost and policy compare the steps' old states
  with their new states, when the preview holds the whole stack;
- two whole documents (offline plans, or previews with --show-sames), a base and a head: resources
  matched by URN, created, deleted, updated (inputs differ) or replaced (a known property the provider
  cannot update in place changes). No engine compared these two, so a value the head does not know
  yet is reported as known after apply, never as a replacement. The base is read and judged in a
  forked process while this one does the head (compare_previews); only digests, costs, violations and
  the inputs that differ cross over.

Replacements and deletions of stateful resources (buckets, KMS keys, the cluster, registries) lead
the report in bold. Output is sorted and stable: the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelyard.plan.preview import Preview
from modelyard.policies.governance.cost import Estimate, estimate, layer_of
from modelyard.policies.governance.policy import PolicyConfig, evaluate
from modelyard.policies.governance.resources import SECRET, UNKNOWNS, Resource, Stack, from_preview, known
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


def _digest(inputs: Mapping[str, Any]) -> bytes:
    """Equal digests mean equal inputs (a pickle reads back as the value it was made from, and 128-bit
    BLAKE2b digests of two pickles do not collide in practice); inputs whose digests differ are compared
    value by value, so a digest never invents a change."""
    try:
        return hashlib.blake2b(pickle.dumps(inputs, protocol=5), digest_size=16).digest()
    except RecursionError:  # nested too deeply to pickle: always compared
        return os.urandom(16)


@dataclass
class Side:
    """What a comparison needs of one whole document: small enough to pass between processes."""

    env: str
    #: URN → (type, digest of its inputs).
    resources: dict[str, tuple[str, bytes]]
    cost: Priced
    #: None when policy is not evaluated.
    violations: dict[tuple[str, str, str], Violation] | None


class Document:
    """One whole document of a comparison, in the process that read it: only its resources are kept."""

    def __init__(self, preview: Preview):
        self.env, self.region = preview.env, preview.region
        self.stack = Stack(r for r in from_preview(preview.document) if r.type != "pulumi:pulumi:Stack")

    def side(self, config: PolicyConfig | None, env: str) -> Side:
        stack = self.stack
        violations = None if config is None else _violations(stack, env, config)
        resources = {r.urn: (r.type, _digest(r.inputs)) for r in stack.resources}
        return Side(self.env, resources, _priced(stack, self.region), violations)

    def details(self, urns: Iterable[str]) -> dict[str, tuple[str, Mapping[str, Any]]]:
        """URN → (layer, inputs)."""
        by_urn = self.stack.by_urn
        return {u: (layer_of(by_urn[u], self.stack), by_urn[u].inputs) for u in urns}


Details = Callable[[Iterable[str]], Mapping[str, tuple[str, Mapping[str, Any]]]]


def compare(base: Side, head: Side, base_details: Details, head_details: Details) -> Report:
    """Two whole documents, base and head, matched by URN: created, deleted, updated (inputs differ) or
    replaced (a known property the provider cannot update in place changes)."""
    created = [u for u in head.resources if u not in base.resources]
    deleted = [u for u in base.resources if u not in head.resources]
    differ = [u for u, (_, d) in head.resources.items() if u in base.resources and base.resources[u][1] != d]
    old, new = base_details(deleted + differ), head_details(created + differ)
    changes = [Change("create", u, head.resources[u][0], new[u][0]) for u in created]
    changes += [Change("delete", u, base.resources[u][0], old[u][0]) for u in deleted]
    for urn in differ:
        type_ = head.resources[urn][0]
        props = tuple(changed_properties(old[urn][1], new[urn][1]))
        if props:  # equal values pickled differently (1 and 1.0) are no change
            kind: Kind = "replace" if _forces_replacement(type_, props) else "update"
            changes.append(Change(kind, urn, type_, new[urn][0], props))
    report = Report(head.env or base.env, sorted(changes, key=lambda c: c.urn), base.cost, head.cost)
    if base.violations is not None and head.violations is not None:
        _policy_delta(report, base.violations, head.violations)
    return report


class _Forked:
    """A Document read and summarised in a child process, asked for what the comparison needs.

    A terminal's Ctrl-C reaches both processes. SIGINT is held back across the fork, so that it lands in
    neither while the fork is half done: not in the child while the interpreter is still setting itself
    up there (Python printed that as an "Exception ignored" traceback), and not in the parent before
    anything owns the child (which was then left unreaped). Each side lets it in again (`interruptible`)
    where an interruption is handled: the child in `_serve`, the parent inside the `try` whose `finally`
    closes the child."""

    def __init__(self, read: Callable[[], Preview]):
        self.conn, child = multiprocessing.Pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.pid = os.fork()
        except BaseException:
            self.interruptible()
            raise
        if self.pid == 0:  # pragma: no cover (the child; its work is seen through the parent)
            self.conn.close()
            os._exit(_serve(child, read, self.interruptible))
        child.close()

    def interruptible(self) -> None:
        """SIGINT let in again, as it was before the fork (a Ctrl-C that came meanwhile lands now)."""
        signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)

    def ask(self, message: Any = None) -> Any:
        if message is not None:
            self.conn.send(message)
        try:
            kind, value = self.conn.recv()
        except EOFError:
            _, status = os.waitpid(self.pid, 0)
            self.pid = 0
            if os.WIFSIGNALED(status):
                how = f"killed by signal {os.WTERMSIG(status)}"
            else:
                how = f"exit status {os.WEXITSTATUS(status)}"
            raise ChildProcessError(f"the process reading the base preview ended ({how})") from None
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        self.conn.close()
        if self.pid:
            os.kill(self.pid, signal.SIGTERM)  # gone already when it answered everything; then a no-op
            os.waitpid(self.pid, 0)


def _serve(conn: Any, read: Callable[[], Preview], interruptible: Callable[[], None]) -> int:
    """The child's side of _Forked: read, say the stack's name, summarise, give the details asked for."""
    try:
        interruptible()
        try:
            document = Document(read())
            conn.send(("env", document.env))
            config, env = conn.recv()
            conn.send(("side", document.side(config, env)))
            conn.send(("details", document.details(conn.recv())))
        except Exception as exc:  # raised again by the parent, as if it were its own
            try:
                conn.send(("error", exc))
            except Exception:  # an exception that does not pickle
                conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        return 0
    except BaseException:  # interrupted, or the parent is gone: the parent reports
        return 1


def compare_previews(
    read_base: Callable[[], Preview], read_head: Callable[[], Preview], configure: Callable[[str], PolicyConfig | None]
) -> Report:
    """Two whole previews, base and head. Where the platform can fork, the base is read and judged in a
    child process while this one does the head: twice as fast on two cores, and no process ever holds
    both documents. `configure` gives the policy configuration for the stack's name (None: no policy)."""
    if not hasattr(os, "fork"):
        base, head = Document(read_base()), Document(read_head())
        env = head.env or base.env
        config = configure(env)
        return compare(base.side(config, env), head.side(config, env), base.details, head.details)
    forked = _Forked(read_base)
    try:
        forked.interruptible()
        head = Document(read_head())
        base_env = forked.ask()
        env = head.env or base_env
        config = configure(env)
        forked.conn.send((config, env))
        head_side = head.side(config, env)
        base_side = forked.ask()
        return compare(base_side, head_side, lambda urns: forked.ask(list(urns)), head.details)
    finally:
        forked.close()


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
