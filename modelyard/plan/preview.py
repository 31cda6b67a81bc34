"""Reading a preview file the way Pulumi means it: one reader for `cost`, `policy` and `diff`.

A preview is an offline plan (`modelyard plan --out`) or what `pulumi preview --json` printed
(pulumi/pulumi `pkg/backend/display/json.go`: `steps[]` with `op`, `urn`, `oldState`, `newState`,
`diffReasons`, `detailedDiff`; `diagnostics[]`; `changeSummary`; `config`). What the reader
establishes before any verdict:

- the text: UTF-8, or UTF-16/32 with a byte-order mark (PowerShell's `>` writes UTF-16), at most
  MAX_BYTES; JSON nested no deeper than Python can parse; no NaN or Infinity;
- the shape: the fields every consumer reads have the types they need, each error naming where;
- whether it is whole: `pulumi preview --json` leaves unchanged resources out unless `--show-sames`
  is given (`shouldShow` in json.go), while `changeSummary.same` still counts them. Cost and policy of
  a stack need every resource, so a preview without its unchanged resources gets no verdict;
- whether it failed: error diagnostics mean the steps are partial;
- the region (the preview's `aws:region` config, or its AWS provider's) and the stack name.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The largest preview read (a 100,000-resource stack prints about 170 MB).
MAX_BYTES = 768 * 2**20
#: How much of a bad value an error message quotes.
QUOTE = 80
#: The step operations the engine prints (pulumi/pulumi sdk/go/common/display: StepOp).
OPS = frozenset(
    {
        "same",
        "create",
        "update",
        "delete",
        "replace",
        "create-replacement",
        "delete-replaced",
        "read",
        "read-replacement",
        "refresh",
        "discard",
        "discard-replaced",
        "remove-pending-replace",
        "import",
        "import-replacement",
    }
)
SHOW_SAMES = "pulumi preview --json --show-sames"


class PreviewError(Exception):
    """A file that cannot be read as a preview, or one that cannot support the verdict asked of it.
    `str()` names the file, what is wrong and what to do."""


def quote(value: Any, limit: int = QUOTE) -> str:
    """A value for an error message, cut short: a message never prints a whole document."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text):,} characters)"


def decode(data: bytes, source: str) -> str:
    """Text by byte-order mark (UTF-8, UTF-16, UTF-32), else UTF-16 recognised by its zero bytes, else
    strict UTF-8."""
    boms = (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    )
    encoding = next((name for bom, name in boms if data.startswith(bom)), None)
    if encoding is None:
        if len(data) >= 2 and data[0] == 0 and data[1] != 0:
            encoding = "utf-16-be"
        elif len(data) >= 2 and data[1] == 0 and data[0] != 0:
            encoding = "utf-16-le"
        else:
            encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        raise PreviewError(
            f"{source}: not {encoding.upper().replace('-SIG', '')} text: byte 0x{bad} at offset {exc.start:,} "
            "(write the preview as UTF-8: `pulumi preview --json > preview.json` in a POSIX shell, "
            "`| Out-File -Encoding utf8` in PowerShell)"
        ) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse(text: str, source: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise PreviewError(f"{source}: not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except ValueError as exc:  # NaN, Infinity
        raise PreviewError(f"{source}: not JSON: {exc}") from None
    except RecursionError:
        raise PreviewError(
            f"{source}: not a preview: JSON nested too deeply to read (a preview is a few levels)"
        ) from (None)


def _problem(source: str, where: str, want: str, got: Any) -> PreviewError:
    return PreviewError(f"{source}: not a preview: {where} must be {want} (got {quote(got)})")


def check_shape(document: Any, source: str) -> None:
    """The fields consumers read have the types they need; the first that does not is named."""
    if not isinstance(document, Mapping):
        raise _problem(source, "the document", "a JSON object with `steps`", document)
    steps = document.get("steps")
    if not isinstance(steps, list):
        expected = "a list (the output of `pulumi preview --json` or `modelyard plan --out`)"
        raise _problem(source, "`steps`", expected, steps)
    for key, want in (("diagnostics", list), ("changeSummary", dict), ("config", dict)):
        if key in document and document[key] is not None and not isinstance(document[key], want):
            raise _problem(source, f"`{key}`", f"a {want.__name__.replace('dict', 'object')}", document[key])
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        if not isinstance(step, Mapping):
            raise _problem(source, where, "an object", step)
        if not isinstance(step.get("urn"), str) or not step["urn"].startswith("urn:pulumi:"):
            raise _problem(source, f"{where}.urn", "a Pulumi URN (urn:pulumi:<stack>::<project>::...)", step.get("urn"))
        if "op" in step and step["op"] not in OPS:
            raise _problem(source, f"{where}.op", f"one of {', '.join(sorted(OPS))}", step["op"])
        for state_key in ("oldState", "newState"):
            state = step.get(state_key)
            if state is None:
                continue
            if not isinstance(state, Mapping):
                raise _problem(source, f"{where}.{state_key}", "an object", state)
            if not isinstance(state.get("type"), str):
                raise _problem(source, f"{where}.{state_key}.type", "a string", state.get("type"))
            for field in ("inputs", "propertyDependencies"):
                if state.get(field) is not None and not isinstance(state[field], Mapping):
                    raise _problem(source, f"{where}.{state_key}.{field}", "an object", state[field])
            for field in ("dependencies",):
                if state.get(field) is not None and not isinstance(state[field], list):
                    raise _problem(source, f"{where}.{state_key}.{field}", "a list", state[field])
        for field in ("detailedDiff",):
            if step.get(field) is not None and not isinstance(step[field], Mapping):
                raise _problem(source, f"{where}.{field}", "an object", step[field])
        if step.get("diffReasons") is not None and not isinstance(step["diffReasons"], list):
            raise _problem(source, f"{where}.diffReasons", "a list", step["diffReasons"])


@dataclass(frozen=True)
class Preview:
    """A preview file, read and checked."""

    source: str
    document: Mapping[str, Any]
    #: True for `modelyard plan --out` (every resource, as a create).
    offline: bool
    #: Unchanged resources the engine counted but left out (no --show-sames); None when it cannot be told.
    omitted_sames: int | None
    #: The messages of error diagnostics: the preview failed, and its steps are partial.
    errors: tuple[str, ...]
    region: str | None
    env: str

    def drop_old_states(self) -> None:
        """Forget what the stack has now: cost and policy judge what it will have (halves the memory of a
        --show-sames preview, which carries both)."""
        for step in self.document["steps"]:
            step.pop("oldState", None)

    def require_whole(self, verdict: str) -> None:
        """Raise PreviewError unless the preview holds every resource of the stack and did not fail."""
        if self.errors:
            shown = "; ".join(quote(e, 200) for e in self.errors[:3])
            more = f" (and {len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
            raise PreviewError(
                f"{self.source}: the preview failed ({len(self.errors)} error diagnostics: {shown}{more}); its steps "
                f"are partial, so no {verdict} is given on it. Fix the errors and preview again"
            )
        if self.omitted_sames is None:
            raise PreviewError(
                f"{self.source}: whether this preview holds every resource cannot be told (it has no "
                f"changeSummary); {verdict} needs the whole stack: run `{SHOW_SAMES}`"
            )
        if self.omitted_sames:
            raise PreviewError(
                f"{self.source}: this preview leaves out {self.omitted_sames} unchanged resources "
                f"(`pulumi preview --json` without --show-sames), and {verdict} needs the whole stack: "
                f"run `{SHOW_SAMES}`"
            )


def _region(document: Mapping[str, Any]) -> str | None:
    config = document.get("config") or {}
    region = config.get("aws:region")
    if isinstance(region, str) and region:
        return region
    for step in document["steps"]:
        state = step.get("newState") or step.get("oldState") or {}
        if state.get("type") == "pulumi:providers:aws":
            value = (state.get("inputs") or {}).get("region")
            if isinstance(value, str) and value and "-" in value:
                return value
    return None


def _env(document: Mapping[str, Any]) -> str:
    meta = document.get("modelyard")
    if isinstance(meta, Mapping) and isinstance(meta.get("env"), str):
        return str(meta["env"])
    for step in document["steps"]:
        parts = step["urn"].split(":")
        if len(parts) > 2:
            return parts[2]
    return ""


def from_document(document: Any, source: str) -> Preview:
    check_shape(document, source)
    offline = isinstance(document.get("modelyard"), Mapping)
    summary = document.get("changeSummary")
    if offline:
        omitted: int | None = 0
    elif isinstance(summary, Mapping):
        counted = summary.get("same", 0)
        present = sum(1 for s in document["steps"] if s.get("op") == "same")
        omitted = max(int(counted) - present, 0) if isinstance(counted, int) else None
    else:
        omitted = None
    errors = tuple(
        str(d.get("message", "")).strip()
        for d in document.get("diagnostics") or []
        if isinstance(d, Mapping) and d.get("severity") == "error"
    )
    return Preview(source, document, offline, omitted, errors, _region(document), _env(document))


def read(path: Path) -> Preview:
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise PreviewError(f"{source}: {size:,} bytes, more than the {MAX_BYTES:,} a preview may have")
        data = path.read_bytes()
    except FileNotFoundError:
        raise PreviewError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise PreviewError(f"{source}: a directory, not a preview file") from None
    except OSError as exc:
        raise PreviewError(f"{source}: cannot read: {exc.strerror}") from None
    text = decode(data, source)
    del data  # the bytes and the text and the parsed document are never all held at once
    document = parse(text, source)
    del text
    return from_document(document, source)
