"""Two whole documents compared by URN, each read and judged in its own process: the base in a forked
child while this process does the head; only digests, costs, violations and the inputs that differ
cross over, so no process ever holds both documents.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.plan.preview import Preview
from modelyard.policies.governance.cost import layer_of
from modelyard.policies.governance.policy import PolicyConfig
from modelyard.policies.governance.resources import Stack, from_preview
from modelyard.policies.governance.rules import Violation

from .changes import (
    Change,
    Kind,
    Priced,
    Report,
    _forces_replacement,
    _policy_delta,
    _priced,
    _violations,
    changed_properties,
)


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
