"""The resources of a preview, as rules and the cost estimator read them.

A `Resource` is what both adapters can build: from a PreviewDigest step's `newState` (offline plan or
`pulumi preview --json`) or from CrossGuard's `PolicyResource`. Property names are the engine's
camelCase inputs. Values the engine does not know yet (computed outputs in a preview) appear as the
`UNKNOWN` sentinel; `known()` tells them apart, and rules treat an unknown value as "cannot tell",
never as a violation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

#: The engine's placeholder for a value not known until apply (`pulumi preview --json` prints it).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
#: All of the engine's unknown sentinels: string (above), boolean, number, array, asset, archive, object.
UNKNOWNS = frozenset(
    {
        UNKNOWN,
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
        "030794c1-ac77-496b-92df-f27374a8bd58",
        "e48ece36-62e2-4504-bad9-02848725956a",
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
    }
)
#: What secrets look like in a preview document.
SECRET = "[secret]"


#: The resources pulumi-aws 7 splits a bucket's settings into; each names its bucket in `bucket`.
S3_BUCKET_COMPANIONS = frozenset(
    {
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketLogging:BucketLogging",
        "aws:s3/bucketAcl:BucketAcl",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
    }
)


def known(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and value in UNKNOWNS)


def readable(value: Any) -> bool:
    """Known, and not a secret: a value a rule or a price can be judged on."""
    return known(value) and value != SECRET


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is an object, else an empty one (a secret, an unknown, another type)."""
    return value if type(value) is dict or isinstance(value, Mapping) else {}


def sequence(value: Any) -> list[Any]:
    """`value` if it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def dig(value: Any, *path: str | int) -> Any:
    """The value at `path` (keys and list indexes) inside `value`, or None where any step is missing,
    of another type, unknown or secret."""
    for step in path:
        if isinstance(step, str) and (type(value) is dict or isinstance(value, Mapping)):  # dict: no ABC check
            value = value.get(step)
        elif isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(value):
            value = value[step]
        else:
            return None
        if value is None or (isinstance(value, str) and (value in UNKNOWNS or value == SECRET)):
            return None
    return value


@dataclass(frozen=True, slots=True)
class Resource:
    urn: str
    type: str
    inputs: Mapping[str, Any]
    parent: str | None = None
    provider: str | None = None
    dependencies: Sequence[str] = ()
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    @property
    def project(self) -> str:
        parts = self.urn.split("::")
        return parts[1] if len(parts) > 2 else ""

    @property
    def provider_urn(self) -> str:
        """The provider's URN, without the `::<id>` a preview appends to it."""
        parts = (self.provider or "").split("::")
        return "::".join(parts[:4])

    def get(self, *path: str | int) -> Any:
        """The input at `path` (keys and list indexes), or None where any step is missing, unknown or a
        secret: what cannot be read cannot be judged."""
        return dig(self.inputs, *path)

    def depends_on(self, urn: str, prop: str | None = None) -> bool:
        """Whether this resource takes a value from `urn` (through `prop`, when given)."""
        if prop is not None:
            return urn in self.property_dependencies.get(prop, ())
        return urn in self.dependencies or any(urn in deps for deps in self.property_dependencies.values())


def from_state(state: Mapping[str, Any], provider: str | None = None, urn: str | None = None) -> Resource:
    """A step's `newState` (its own `urn` first, else the step's; its `provider`, else the step's). Its
    dependency lists are the state's own, not copies: at 100,000 resources a copy is 40 MB."""
    deps = state.get("dependencies")
    by_property = state.get("propertyDependencies")
    if not isinstance(by_property, Mapping):
        by_property = {}
    elif not all(type(v) is list for v in by_property.values()):
        by_property = {k: v for k, v in by_property.items() if isinstance(v, list)}
    return Resource(
        urn=str(state.get("urn", urn or "")),
        type=str(state.get("type", "")),
        inputs=state.get("inputs") or {},
        parent=state.get("parent"),
        provider=state.get("provider", provider),
        dependencies=deps if isinstance(deps, list) else (),
        property_dependencies=by_property,
    )


#: Steps that leave no resource the stack owns: reads of existing resources (the stack does not own or
#: pay for them), discards, and deletions.
NOT_STANDING = frozenset(
    {"read", "read-replacement", "read-discard", "discard", "discard-replaced", "delete", "delete-replaced"}
)


def from_preview(document: Mapping[str, Any]) -> list[Resource]:
    """The resources a preview leaves standing and the stack owns: every step's `newState`, except for
    reads and deletions. A resource appearing in two steps (a replacement) is taken once."""
    seen: dict[str, Resource] = {}
    for step in document.get("steps") or ():
        if not isinstance(step, Mapping) or step.get("op") in NOT_STANDING:
            continue
        state = step.get("newState")
        if isinstance(state, Mapping) and state.get("type"):
            resource = from_state(state, step.get("provider"), step.get("urn"))
            seen[resource.urn] = resource
    return list(seen.values())


def as_name(value: Any) -> str | None:
    """A name as the API server takes it; anything else (a list, a map, a number, an unknown) names nothing."""
    return value if isinstance(value, str) else None


def as_list(value: Any) -> list[Any]:
    """IAM's "a string or a list of strings", and friends."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


@lru_cache(maxsize=8192)
def _json_object(text: str) -> Mapping[str, Any] | None:
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, Mapping) else None


def document(value: Any) -> Mapping[str, Any] | None:
    """A policy document given as a JSON string or an object; None if unknown or unreadable. Rules read
    the same documents many times: each string is parsed once (treat the result as read-only)."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and known(value) and value != SECRET:
        return _json_object(value)
    return None


def statements(policy: Any) -> Iterator[Mapping[str, Any]]:
    """The statements of a policy document (`Statement` as an object or a list)."""
    doc = document(policy)
    for st in as_list(doc.get("Statement") if doc else None):
        if isinstance(st, Mapping):
            yield st


class Stack:
    """Every resource of one preview, indexed for the joins stack rules make."""

    def __init__(self, resources: Iterable[Resource]):
        self.resources = list(resources)
        self.by_urn = {r.urn: r for r in self.resources}
        self._by_type: dict[str, list[Resource]] = {}
        #: urn → the resources that take a value from it (joins stay linear in the size of the stack).
        self._dependents: dict[str, list[Resource]] = {}
        #: What is derived from the whole stack once (its layers, its cost estimate), by consumer.
        self.derived: dict[str, Any] = {}
        for r in self.resources:
            self._by_type.setdefault(r.type, []).append(r)
            targets = set(r.dependencies)
            for deps in r.property_dependencies.values():
                targets.update(deps)
            for urn in targets:
                self._dependents.setdefault(urn, []).append(r)

    def of_type(self, *types: str) -> list[Resource]:
        if len(types) == 1:
            return list(self._by_type.get(types[0], ()))
        return [r for r in self.resources if r.type in types]

    def referencing(self, target: Resource, *types: str, prop: str | None = None) -> list[Resource]:
        """Resources of `types` that take a value from `target` (through `prop`, when given)."""
        wanted = set(types)
        return [r for r in self._dependents.get(target.urn, ()) if r.type in wanted and r.depends_on(target.urn, prop)]

    def provider_region(self, resource: Resource) -> str | None:
        """The region of the AWS provider `resource` uses, when the plan shows it."""
        provider = self.by_urn.get(resource.provider_urn)
        region = provider.get("region") if provider is not None else None
        return region if isinstance(region, str) else None

    def provider_default_tags(self, resource: Resource) -> dict[str, str]:
        """The `defaultTags.tags` of the AWS provider `resource` uses (a JSON string or an object)."""
        provider = self.by_urn.get(resource.provider_urn)
        if provider is None:
            return {}
        tags = document(provider.get("defaultTags"))
        inner = tags.get("tags") if tags else None
        return dict(inner) if isinstance(inner, Mapping) else {}


def selects(selector: Any, labels: Mapping[str, Any]) -> bool:
    """Whether a Kubernetes LabelSelector selects an object with `labels` (k8s.io/apimachinery
    `metav1.LabelSelectorAsSelector`): every matchLabels pair and every matchExpressions requirement (In,
    NotIn, Exists, DoesNotExist) must hold; an empty selector selects everything, a missing one nothing."""
    if not isinstance(selector, Mapping):
        return False
    for key, value in mapping(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for requirement in as_list(selector.get("matchExpressions")):
        req = mapping(requirement)
        name, operator, values = str(req.get("key")), req.get("operator"), as_list(req.get("values"))
        present = name in labels
        if operator == "In" and not (present and labels[name] in values):
            return False
        if operator == "NotIn" and present and labels[name] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True
