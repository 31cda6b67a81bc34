"""What the Kubernetes API server does with a custom resource on create, against its CRD at the pinned tag:
prune the nulls the schema does not allow, default, validate against the structural OpenAPI schema
(unknown fields refused, as `kubectl apply` and Pulumi's server-side apply ask with strict field
validation), then run the `x-kubernetes-validations` CEL rules with a real CEL implementation
(cel-python, with RE2 regular expressions as Go's), and the CEL extension functions the API server adds.

Read from kubernetes/kubernetes (the commits the search index holds):
- `staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting/algorithm.go` (94341df):
  `Default`, ported as `apply_defaults`: an absent property, or a null one that is not nullable, takes a
  deep copy of its default; then every child is defaulted, a defaulted one included;
- `staging/src/k8s.io/apiextensions-apiserver/pkg/registry/customresource/strategy.go` (0304c56): schema
  validation first, then the CEL rules unless the schema found a blocking error. Here CEL is skipped after
  any schema error, so for an object the schema refuses the API server may list more errors than this
  does; whether the object is refused is the same;
- transition rules (those reading `oldSelf`) are evaluated on update only, as the API server does.
The CEL functions beyond cel-python's standard set are Kubernetes' regex library (`find`, `findAll`) and
cel-go's strings extension (`split`, `join`, `indexOf`, `lowerAscii`, `upperAscii`, `trim`), the ones
the pinned CRDs call. A rule calling anything else fails to evaluate, and that is reported, never passed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import re2
import yaml
from celpy import celtypes

#: Properties the API server fills and validates itself at the root of every object (ObjectMeta).
ROOT_META = ("apiVersion", "kind", "metadata")


@dataclass(frozen=True)
class Crd:
    group: str
    kind: str
    version: str
    schema: dict[str, Any]
    source: str


def load_crds(folder: Path) -> dict[tuple[str, str], Crd]:
    """Every served version of every CRD in the folder's YAML files, by (apiVersion, kind)."""
    found: dict[tuple[str, str], Crd] = {}
    for path in sorted(folder.glob("*.yaml")):
        text = path.read_text()
        if "kind: CustomResourceDefinition" not in text:
            continue  # chart values, test cases
        for doc in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served", True):
                    api_version = f"{spec['group']}/{version['name']}"
                    schema = version["schema"]["openAPIV3Schema"]
                    found[(api_version, spec["names"]["kind"])] = Crd(
                        spec["group"], spec["names"]["kind"], version["name"], schema, path.name
                    )
    return found


# -- defaulting (defaulting/algorithm.go)


def _null_not_allowed(value: Any, schema: dict[str, Any] | None) -> bool:
    return value is None and schema is not None and not schema.get("nullable", False)


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """algorithm.go's Default, after PruneNonNullableNullsWithoutDefaults: a null the schema does not
    allow takes the default if there is one, else goes."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None
        for name, sub in properties.items():
            if "default" in sub and (name not in value or _null_not_allowed(value[name], sub)):
                value[name] = copy.deepcopy(sub["default"])
        for name in list(value):
            sub = properties.get(name, extra)
            if _null_not_allowed(value[name], sub):
                if sub is not None and "default" in sub:
                    value[name] = copy.deepcopy(sub["default"])
                else:
                    del value[name]
                    continue
            if sub is not None:
                apply_defaults(value[name], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        for i, child in enumerate(value):
            if _null_not_allowed(child, items) and "default" in items:
                value[i] = copy.deepcopy(items["default"])
            apply_defaults(value[i], items)
    return value


# -- the OpenAPI schema (validation.go, kube-openapi validate)


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return True


def schema_errors(value: Any, schema: dict[str, Any], path: str = "", root: bool = True) -> Iterator[str]:
    """Each way `value` breaks `schema`, as `path: what` (the API server's field paths)."""
    where = path or "<root>"
    if value is None:
        if not schema.get("nullable"):
            yield f"{where}: must not be null"
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _type_ok(value, "integer")):
            yield f"{where}: must be an integer or a string, got {type(value).__name__}"
            return
    elif "type" in schema and not _type_ok(value, schema["type"]):
        yield f"{where}: must be {schema['type']}, got {type(value).__name__} {value!r:.60}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}: {value!r} is not one of {schema['enum']}"
    for sub_key in ("allOf",):
        for sub in schema.get(sub_key, []):
            yield from schema_errors(value, sub, path, root=False)
    if "anyOf" in schema and not any(not list(schema_errors(value, s, path, False)) for s in schema["anyOf"]):
        yield f"{where}: matches none of anyOf"
    if "oneOf" in schema and sum(not list(schema_errors(value, s, path, False)) for s in schema["oneOf"]) != 1:
        yield f"{where}: must match exactly one of oneOf"
    if "not" in schema and not list(schema_errors(value, schema["not"], path, False)):
        yield f"{where}: must not match its `not` schema"
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield f"{where}: longer than {schema['maxLength']} characters"
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield f"{where}: shorter than {schema['minLength']} characters"
        if "pattern" in schema and not re2.search(schema["pattern"], value):
            yield f"{where}: {value!r} does not match {schema['pattern']!r}"
    if _type_ok(value, "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and (value < low or (schema.get("exclusiveMinimum") is True and value == low)):
            yield f"{where}: {value} is below the minimum {low}"
        if high is not None and (value > high or (schema.get("exclusiveMaximum") is True and value == high)):
            yield f"{where}: {value} is above the maximum {high}"
    if isinstance(value, list):
        yield from _array_errors(value, schema, path)
    if isinstance(value, dict):
        yield from _object_errors(value, schema, path, root)


def _array_errors(value: list[Any], schema: dict[str, Any], path: str) -> Iterator[str]:
    where = path or "<root>"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        yield f"{where}: more than {schema['maxItems']} items"
    if "minItems" in schema and len(value) < schema["minItems"]:
        yield f"{where}: fewer than {schema['minItems']} items"
    list_type = schema.get("x-kubernetes-list-type")
    if schema.get("uniqueItems") or list_type == "set":
        seen = [repr(v) for v in value]
        if len(set(seen)) != len(seen):
            yield f"{where}: duplicate items in a set"
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen_keys = [tuple(repr(item.get(k)) for k in keys) for item in value if isinstance(item, dict)]
        if len(set(seen_keys)) != len(seen_keys):
            yield f"{where}: duplicate entries for the map keys {keys}"
    if isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from schema_errors(item, schema["items"], f"{path}[{i}]", root=False)


def _object_errors(value: dict[str, Any], schema: dict[str, Any], path: str, root: bool) -> Iterator[str]:
    where = path or "<root>"
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if value.get(name) is None:
            yield f"{path + '.' if path else ''}{name}: Required value"
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        yield f"{where}: more than {schema['maxProperties']} properties"
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        yield f"{where}: fewer than {schema['minProperties']} properties"
    embedded = schema.get("x-kubernetes-embedded-resource")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    extra = schema.get("additionalProperties")
    for name, child in value.items():
        child_path = f"{path}.{name}" if path else name
        if name in properties:
            if root and name == "metadata":
                continue  # ObjectMeta: the API server's own validation, not the CRD's
            yield from schema_errors(child, properties[name], child_path, root=False)
        elif isinstance(extra, dict):
            yield from schema_errors(child, extra, child_path, root=False)
        elif (root or embedded) and name in ROOT_META:
            continue
        elif not preserve and extra is not True:
            yield f'{child_path}: unknown field "{name}"'


# -- CEL (cel/validation.go, library/regex.go, cel-go ext/strings.go)


def _find(text: celtypes.StringType, pattern: celtypes.StringType) -> celtypes.StringType:
    match = re2.search(str(pattern), str(text))
    return celtypes.StringType(match.group(0) if match else "")


def _find_all(text: celtypes.StringType, pattern: celtypes.StringType, limit: Any = -1) -> celtypes.ListType:
    found = [celtypes.StringType(m.group(0)) for m in re2.finditer(str(pattern), str(text))]
    return celtypes.ListType(found if int(limit) < 0 else found[: int(limit)])


def _split(text: celtypes.StringType, separator: celtypes.StringType, limit: Any = -1) -> celtypes.ListType:
    n = int(limit)
    if n == 0:
        return celtypes.ListType([])
    parts = str(text).split(str(separator), n - 1) if n > 0 else str(text).split(str(separator))
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _join(items: celtypes.ListType, separator: Any = "") -> celtypes.StringType:
    return celtypes.StringType(str(separator).join(str(i) for i in items))


def _index_of(text: Any, sub: Any) -> celtypes.IntType:
    return celtypes.IntType(str(text).find(str(sub)))


FUNCTIONS = {
    "find": _find,
    "findAll": _find_all,
    "split": _split,
    "join": _join,
    "indexOf": _index_of,
    "lowerAscii": lambda s: celtypes.StringType(str(s).lower()),
    "upperAscii": lambda s: celtypes.StringType(str(s).upper()),
    "trim": lambda s: celtypes.StringType(str(s).strip()),
}
_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def _program(rule: str) -> Any:
    program = _PROGRAMS.get(rule)
    if program is None:
        program = _PROGRAMS[rule] = _ENV.program(_ENV.compile(rule), functions=FUNCTIONS)
    return program


def _is_transition(rule: str) -> bool:
    return re.search(r"\boldSelf\b", rule) is not None


def cel_errors(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Each `x-kubernetes-validations` rule the value breaks, deepest first, with the rule's message."""
    where = path or "<root>"
    if value is None:
        return
    properties = schema.get("properties", {})
    if isinstance(value, dict):
        for name, child in value.items():
            sub = properties.get(name)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None and not (path == "" and name == "metadata"):
                yield from cel_errors(child, sub, f"{path}.{name}" if path else name)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from cel_errors(item, schema["items"], f"{path}[{i}]")
    for validation in schema.get("x-kubernetes-validations", []):
        rule = validation["rule"]
        if _is_transition(rule) and not validation.get("optionalOldSelf"):
            continue  # a transition rule: the API server evaluates it on update only
        try:
            result = _program(rule).evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as exc:
            yield f"{where}: rule {rule!r} could not be evaluated ({exc.args[0]})"
            continue
        if isinstance(result, celpy.CELEvalError):
            yield f"{where}: rule {rule!r} could not be evaluated ({result.args[0]})"
        elif result is not True and result != celtypes.BoolType(True):
            yield f"{where}: {validation.get('message') or 'failed rule: ' + rule}"


def refusals(obj: dict[str, Any], crds: dict[tuple[str, str], Crd]) -> list[str]:
    """What the API server would answer a create of `obj` with (empty: it is admitted by the schema)."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    crd = crds.get(key)
    if crd is None:
        return [f"no CRD here serves {key[0]} {key[1]}"]
    defaulted = apply_defaults(copy.deepcopy(obj), crd.schema)
    found = list(schema_errors(defaulted, crd.schema))
    if found:
        return found  # the API server reports schema errors and does not run CEL on a malformed object
    return list(cel_errors(defaulted, crd.schema))
