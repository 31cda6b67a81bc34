"""The validation toolkit every config reader here shares: string types with readable hints, frozen
models, and one error format (`ConfigError`: a line per problem naming the full key path, the bad value
and what is allowed), plus one safe YAML reader. The platform schema (modelyard/config.py), the stack
file loader (modelyard/stackfile.py) and the workloads catalog (workloads/catalog.py) are built on it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints, ValidationError

from modelyard.policies.governance.conventions import DNS_LABEL

T = TypeVar("T")


def as_tuple(value: Any) -> Any:
    # YAML gives lists; the frozen models hold tuples. Anything else stays as it is and fails.
    return tuple(value) if isinstance(value, list) else value


Seq = Annotated[tuple[T, ...], BeforeValidator(as_tuple)]


#: What each string pattern means, for error messages; filled by `_pattern` as the types are declared.
_PATTERN_HINTS: dict[str, str] = {}


def pattern(regex: str, hint: str) -> StringConstraints:
    _PATTERN_HINTS[regex] = hint
    return StringConstraints(pattern=regex)


#: Names that become Kubernetes names and stack names: lowercase DNS labels of at most 32 characters.
DnsLabel = Annotated[str, pattern(DNS_LABEL, "a lowercase DNS label (a-z, 0-9, '-', at most 32 characters)")]
TagValue = Annotated[
    str,
    pattern(
        r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$", "letters, digits, '.', '_' or '-' (at most 63 characters)"
    ),
]
Email = Annotated[str, pattern(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$", "an e-mail address such as ml-platform@example.com")]
RoleArn = Annotated[
    str,
    pattern(
        r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$",
        "an IAM role ARN such as arn:aws:iam::123456789012:role/platform-admin",
    ),
]
KmsKeyArn = Annotated[
    str,
    pattern(
        r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$",
        "a KMS key ARN such as arn:aws:kms:us-east-1:123456789012:key/<uuid>",
    ),
]
Region = Annotated[str, pattern(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", "an AWS region such as us-east-1")]
InstanceTypeName = Annotated[str, pattern(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$", "an EC2 instance type such as g5.xlarge")]
#: A DNS name of two labels or more, lowercase: a gateway's domain, another region's model host.
Hostname = Annotated[
    str,
    pattern(
        r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?){1,8}$",
        "a lowercase DNS name with at least two labels, such as models.example.internal",
    ),
]
Duration = Annotated[str, pattern(r"^\d+(s|m|h)$", "a duration such as 30s, 10m or 1h")]


class FieldProblems(ValueError):
    """Problems found by a cross-field check, each against a sub-path of the model being checked.

    Raised inside a pydantic validator; the error renderer expands it so every problem is reported
    against the field it concerns, not against the model that noticed it.
    """

    def __init__(self, problems: list[tuple[str, str, Any]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg, _ in problems))


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ConfigError(Exception):
    """A stack's configuration is invalid. `str()` is the full, user-facing message."""

    def __init__(self, stack: str, source: str, problems: list[str]):
        self.stack = stack
        self.source = source
        self.problems = problems
        lines = [f"Invalid config for stack '{stack}' ({source}):"]
        lines += [f"  • {p}" for p in problems]
        super().__init__("\n".join(lines))


def fmt_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _join(path: str, sub: str) -> str:
    if not sub:
        return path
    return path + sub if sub.startswith("[") else f"{path}.{sub}"


def _loc_path(loc: Iterable[int | str], prefix: str) -> str:
    path = prefix
    for part in loc:
        path = _join(path, f"[{part}]" if isinstance(part, int) else str(part))
    return path


def _model_at(loc: tuple[int | str, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that owns the last key of `loc`, for listing the keys it allows."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model if isinstance(model, type) else None


_TYPE_MESSAGES = {
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "model_type": "must be a mapping of keys",
    "dict_type": "must be a mapping of keys",
}


def _pattern_hint(pattern: str) -> str:
    return _PATTERN_HINTS.get(pattern, f"a string matching {pattern}")


def _render(err: Mapping[str, Any], root: type[BaseModel], prefix: str) -> list[str]:
    loc: tuple[int | str, ...] = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    error = ctx.get("error")
    if isinstance(error, FieldProblems):
        base = _loc_path(loc, prefix)
        return [f"{_join(base, sub)}: {msg} (got {fmt_value(val)})" for sub, msg, val in error.problems]
    path = _loc_path(loc, prefix)
    if kind == "extra_forbidden":
        model = _model_at(loc, root)
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return [f"{path}: unknown key; {hint}allowed keys: {', '.join(allowed)}"]
    if kind == "missing":
        return [f"{path}: is required but missing"]
    if kind == "union_tag_invalid":
        field = str(ctx.get("discriminator", "kind")).strip("'")
        return [f"{path}.{field}: must be one of {ctx.get('expected_tags')} (got {ctx.get('tag')!r})"]
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return [f"{path}: must list at least {least} item{'s' if least != 1 else ''} (got {fmt_value(value)})"]
    if kind == "string_pattern_mismatch":
        return [f"{path}: must be {_pattern_hint(ctx.get('pattern', ''))} (got {fmt_value(value)})"]
    if kind in _TYPE_MESSAGES:
        return [f"{path}: {_TYPE_MESSAGES[kind]} (got {fmt_value(value)})"]
    message = str(err["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    elif message.startswith("Input should be"):
        message = "must be" + message[len("Input should be") :]
    return [f"{path}: {message} (got {fmt_value(value)})"]


M = TypeVar("M", bound=BaseModel)


def validate_stack_key(model: type[M], value: Any, *, key: str, stack: str, source: str) -> M:
    """The value of a stack file's structured `key` validated as `model`, whose `env` must be the stack's
    name; ConfigError lists every problem."""
    if not isinstance(value, Mapping):
        raise ConfigError(stack, source, [f"{key}: must be a mapping of keys (got {fmt_value(value)})"])
    config, problems = validate_model(model, value, key)
    if config is None:
        raise ConfigError(stack, source, problems)
    env = getattr(config, "env", stack)
    if env != stack:
        raise ConfigError(
            stack,
            source,
            [
                f"{key}.env: must match the stack name '{stack}' (got {env!r}); "
                "one stack per environment keeps state and config from crossing"
            ],
        )
    return config


def validate_model(model: type[M], raw: Mapping[str, Any], prefix: str) -> tuple[M | None, list[str]]:
    """`raw` validated as `model`; on failure, one line per problem, each path starting at `prefix`."""
    try:
        return model.model_validate(dict(raw)), []
    except ValidationError as exc:
        errors = exc.errors()
        locs = [tuple(e["loc"]) for e in errors]
        problems: list[str] = []
        for err in errors:
            loc = tuple(err["loc"])
            # A list whose item failed also reports itself "too short"; the item's error says it all.
            if err["type"] == "too_short" and any(o[: len(loc)] == loc and len(o) > len(loc) for o in locs):
                continue
            problems += _render(err, model, prefix)
        return None, problems


#: The largest YAML file read (stack files and catalogs are a few kilobytes).
MAX_YAML_BYTES = 4 * 2**20


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: `*name` can expand a few hundred bytes into gigabytes (a "billion laughs"),
    and no stack file or catalog needs one."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed: write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


def read_yaml(path: Path, *, stack: str, missing: str) -> Any:
    """A YAML file as data, or a ConfigError naming the file and what is wrong with it: missing (the
    `missing` message), unreadable, too large, not UTF-8, not YAML, or using aliases."""
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(stack, path.name, [f"{path.stat().st_size:,} bytes: more than {MAX_YAML_BYTES:,}"])
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(stack, str(path), [missing]) from None
    except OSError as exc:
        raise ConfigError(stack, str(path), [f"cannot read {path}: {exc.strerror}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            stack, path.name, [f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start:,}"]
        ) from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(stack, path.name, [f"not valid YAML{where}: {problem}"]) from None
