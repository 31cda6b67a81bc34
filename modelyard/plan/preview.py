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
import contextlib
import gc
import io
import json
import re
from collections.abc import Iterator, Mapping
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


#: Byte-order marks, and the codec that reads what follows each.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
#: How much of the file is read at a time (a 100,000-resource preview is never held whole as text).
CHUNK = 4 * 2**20
_SPACE = re.compile(r"[ \t\n\r]*")


def encoding_of(head: bytes) -> tuple[str, int]:
    """The codec of a file starting with `head`, and the length of its byte-order mark: by the mark (UTF-8,
    UTF-16, UTF-32), else UTF-16 recognised by its zero bytes, else UTF-8."""
    for bom, name in BOMS:
        if head.startswith(bom):
            return name, len(bom)
    if len(head) >= 2 and head[0] == 0 and head[1] != 0:
        return "utf-16-be", 0
    if len(head) >= 2 and head[1] == 0 and head[0] != 0:
        return "utf-16-le", 0
    return "utf-8", 0


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _Text:
    """A JSON text read a window at a time: values are decoded by the standard library's scanner, so
    what is accepted (and each error's wording, line and column) is exactly `json.loads`'s."""

    def __init__(self, file: io.BufferedIOBase, source: str):
        self.file, self.source = file, source
        head = file.read(4)
        encoding, bom = encoding_of(head)
        self.label = {"utf-8": "UTF-8", "utf-16-le": "UTF-16", "utf-16-be": "UTF-16"}.get(encoding, "UTF-32")
        self.decoder = codecs.getincrementaldecoder(encoding)("strict")
        self.scan = json.JSONDecoder(parse_constant=_reject_constant).raw_decode
        self.buf, self.pos, self.eof = "", 0, False
        self.chunk = bytearray()  # read into, again and again
        #: Bytes handed to the decoder so far (byte-order mark included), and where the window starts.
        self.consumed = bom
        self.line, self.column = 1, 1
        self._feed(head[bom:], final=False)

    def _feed(self, data: bytes | memoryview, final: bool) -> None:
        pending = len(self.decoder.getstate()[0])
        try:
            text = self.decoder.decode(data, final=final)
        except UnicodeDecodeError as exc:
            offset = self.consumed - pending + exc.start
            raise PreviewError(
                f"{self.source}: not {self.label} text: byte 0x{exc.object[exc.start : exc.start + 1].hex()} at "
                f"offset {offset:,} (write the preview as UTF-8: `pulumi preview --json > preview.json` in a "
                "POSIX shell, `| Out-File -Encoding utf8` in PowerShell)"
            ) from None
        self.consumed += len(data)
        self.eof = final
        newlines = self.buf.count("\n", 0, self.pos)
        if newlines:
            self.line += newlines
            self.column = self.pos - self.buf.rfind("\n", 0, self.pos)
        else:
            self.column += self.pos
        self.buf, self.pos = self.buf[self.pos :] + text, 0

    def more(self) -> bool:
        """Read more into the window: a chunk, or as much as the window holds past `pos` (a value longer
        than a chunk is read again after each read, so the reads grow: a 100 MB value is scanned a few
        times, not 25); False at the end of the file."""
        if self.eof:
            return False
        want = max(CHUNK, len(self.buf) - self.pos)
        if len(self.chunk) != want:
            self.chunk = bytearray(want)
        size = self.file.readinto(self.chunk)
        self._feed(memoryview(self.chunk)[:size], final=not size)
        return True

    def peek(self) -> str:
        """The next character that is not white space ("" at the end), the window moved to it."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos : self.pos + 1]

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = self.scan(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.more():  # a value cut by the end of the window
                    continue
                raise self.error(exc.msg, exc.pos) from None
            except ValueError as exc:  # NaN, Infinity
                raise PreviewError(f"{self.source}: not JSON: {exc}") from None
            except RecursionError:
                raise PreviewError(
                    f"{self.source}: not a preview: JSON nested too deeply to read (a preview is a few levels)"
                ) from None
            if end == len(self.buf) and self.more():  # a number may go on past the window
                continue
            self.pos = end
            return value

    def expect(self, char: str, message: str) -> None:
        if self.peek() != char:
            raise self.error(message, self.pos)
        self.pos += 1

    def error(self, message: str, pos: int) -> PreviewError:
        before = self.buf[:pos]
        line = self.line + before.count("\n")
        column = pos - before.rfind("\n") if "\n" in before else self.column + pos
        return PreviewError(f"{self.source}: not JSON: {message} at line {line}, column {column}")


#: Strings longer than this are rarely repeated (policy documents, scripts): they are not looked up. URNs
#: (up to about 180 characters in the prod plan, and repeated in every dependency list) are shorter.
SHARED_LENGTH = 256


class _Compactor:
    """One string object for each key and short value, however often a preview repeats it (URNs in every
    dependency list, tag values, property names): repeats are most of a preview's bytes, and a string
    object costs 50 bytes before its text. The prod plan repeated to 100,000 resources takes 261 MiB of
    RSS read this way, 584 MiB read by `json.loads`."""

    def __init__(self, old_states: bool):
        self.old_states = old_states
        self.memo: dict[str, str] = {}

    def dict(self, value: dict[str, Any]) -> dict[str, Any]:
        shared, out = self.memo.setdefault, {}
        for key, item in value.items():
            kind = type(item)
            if kind is str:
                if len(item) <= SHARED_LENGTH:
                    item = shared(item, item)
            elif kind is dict:
                item = self.dict(item)
            elif kind is list:
                item = self.list(item)
            out[shared(key, key)] = item
        return out

    def list(self, value: list[Any]) -> list[Any]:
        shared = self.memo.setdefault
        for i, item in enumerate(value):
            kind = type(item)
            if kind is str:
                if len(item) <= SHARED_LENGTH:
                    value[i] = shared(item, item)
            elif kind is dict:
                value[i] = self.dict(item)
            elif kind is list:
                self.list(item)
        return value

    def step(self, step: Any) -> Any:
        if not self.old_states and isinstance(step, dict):
            step.pop("oldState", None)
        try:
            return self.dict(step) if type(step) is dict else step
        except RecursionError:  # nested deeper than this walk can go: kept as read
            return step


def parse(file: io.BufferedIOBase, source: str, old_states: bool = True) -> Any:
    """The JSON document in `file`; the steps of a preview are read one at a time and checked as they
    come, so a bad step is named without reading further and the text is never held whole."""
    text = _Text(file, source)
    compact = _Compactor(old_states)
    if text.peek() != "{":
        document = text.value()
    else:
        text.pos += 1
        document = {}
        if text.peek() == "}":
            text.pos += 1
        else:
            while True:
                text.expect('"', "Expecting property name enclosed in double quotes")
                text.pos -= 1
                key = text.value()
                text.expect(":", "Expecting ':' delimiter")
                if key == "steps" and text.peek() == "[":
                    text.pos += 1
                    steps: list[Any] = []
                    document[key] = steps
                    if text.peek() == "]":
                        text.pos += 1
                    else:
                        while True:
                            step = text.value()
                            check_step(step, len(steps), source)
                            steps.append(compact.step(step))
                            if text.peek() == "]":
                                text.pos += 1
                                break
                            text.expect(",", "Expecting ',' delimiter")
                else:
                    document[key] = text.value()
                if text.peek() == "}":
                    text.pos += 1
                    break
                text.expect(",", "Expecting ',' delimiter")
    if text.peek():
        raise text.error("Extra data", text.pos)
    return document


def _problem(source: str, where: str, want: str, got: Any) -> PreviewError:
    return PreviewError(f"{source}: not a preview: {where} must be {want} (got {quote(got)})")


def check_document(document: Any, source: str) -> None:
    """The fields consumers read have the types they need; the first that does not is named (each step is
    checked as it is read: check_step)."""
    if not isinstance(document, Mapping):
        raise _problem(source, "the document", "a JSON object with `steps`", document)
    steps = document.get("steps")
    if not isinstance(steps, list):
        expected = "a list (the output of `pulumi preview --json` or `modelyard plan --out`)"
        raise _problem(source, "`steps`", expected, steps)
    for key, want in (("diagnostics", list), ("changeSummary", dict), ("config", dict)):
        if key in document and document[key] is not None and not isinstance(document[key], want):
            raise _problem(source, f"`{key}`", f"a {want.__name__.replace('dict', 'object')}", document[key])


def check_step(step: Any, i: int, source: str) -> None:
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
        if state.get("dependencies") is not None and not isinstance(state["dependencies"], list):
            raise _problem(source, f"{where}.{state_key}.dependencies", "a list", state["dependencies"])
    if step.get("detailedDiff") is not None and not isinstance(step["detailedDiff"], Mapping):
        raise _problem(source, f"{where}.detailedDiff", "an object", step["detailedDiff"])
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
    check_document(document, source)
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


@contextlib.contextmanager
def uncollected() -> Iterator[None]:
    """The cyclic garbage collector off, then back as it was. A preview is a tree of fresh objects without
    cycles: a collection frees none of them, and at 100,000 resources the collector walking them again
    and again was half the time of reading and judging one."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def read(path: Path, *, old_states: bool = True) -> Preview:
    """The preview at `path`, read and checked. Without `old_states`, what the stack has now is forgotten as
    it is read: cost and policy judge what it will have (half the memory of a --show-sames preview)."""
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise PreviewError(f"{source}: {size:,} bytes, more than the {MAX_BYTES:,} a preview may have")
        file = path.open("rb")
    except FileNotFoundError:
        raise PreviewError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise PreviewError(f"{source}: a directory, not a preview file") from None
    except OSError as exc:
        raise PreviewError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        with file, uncollected():
            document = parse(file, source, old_states)
    except OSError as exc:
        raise PreviewError(f"{source}: cannot read: {exc.strerror}") from None
    return from_document(document, source)
