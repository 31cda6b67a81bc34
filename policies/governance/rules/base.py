"""The rule machinery every domain module shares: findings and violations, the context a rule sees,
the registry and its two decorators, the resource types several domains name, and the readers of the
loose shapes previews carry (counts and booleans as numbers or strings, unknown values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..conventions import GPU_POOL_LABEL
from ..cost import Estimate, estimate
from ..resources import Resource, Stack, known

Level = Literal["advisory", "mandatory", "disabled"]


ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"


OPEN_CIDRS = ("0.0.0.0/0", "::/0")


#: Resources holding policy documents, and the property each keeps it in.
POLICY_FIELDS = {
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
    "aws:kms/key:Key": "policy",
    "aws:ecr/repositoryPolicy:RepositoryPolicy": "policy",
    "aws:iam/role:Role": "assumeRolePolicy",
}


@dataclass(frozen=True)
class Finding:
    urn: str
    field: str
    value: Any
    message: str


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    level: Level
    urn: str
    field: str
    value: Any
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "level": self.level,
            "urn": self.urn,
            "field": self.field,
            "value": self.value,
            "message": self.message,
        }


class Context:
    """What a rule may look at: the environment, the whole preview, the rule's parameters."""

    def __init__(self, env: str, stack: Stack, params: Mapping[str, Mapping[str, Any]]):
        self.env = env
        self.stack = stack
        self._params = params
        self._estimate: Estimate | None = None

    def param(self, rule: str, key: str, default: Any = None) -> Any:
        return self._params.get(rule, {}).get(key, default)

    @property
    def estimate(self) -> Estimate:
        if self._estimate is None:
            self._estimate = estimate(self.stack)
        return self._estimate

    def model_bucket(self) -> str | None:
        """The model store's bucket name: from config, else the preview's bucket matching the pattern."""
        configured = self.param("storage-uri-in-model-bucket", "modelBucket")
        if configured:
            return str(configured)
        pattern = self.estimate.usage.model_bucket_pattern
        for bucket in self.stack.of_type("aws:s3/bucket:Bucket"):
            name = bucket.get("bucket")
            if isinstance(name, str) and pattern in name:
                return name
        return None

    def gpu_pools(self) -> set[str] | None:
        pools = {
            str(labels[GPU_POOL_LABEL])
            for r in self.stack.of_type("kubernetes:karpenter.sh/v1:NodePool")
            if isinstance(labels := r.get("spec", "template", "metadata", "labels"), Mapping)
            and GPU_POOL_LABEL in labels
        }
        configured = self.param("inferenceservice-gpu-placement", "knownPools")
        if configured:
            pools |= set(configured)
        return pools or None


ResourceCheck = Callable[[Resource, Context], Iterable[tuple[str, Any, str]]]


StackCheck = Callable[[Context], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    #: A security basic: mandatory even where the environment is otherwise advisory.
    basic: bool
    types: tuple[str, ...] | None  # resource rules: the types it applies to (None: by prefix check inside)
    check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    #: Parameters the rule reads from policy config, with their defaults.
    params: Mapping[str, Any] | None = None

    def run(self, ctx: Context) -> Iterator[Finding]:
        if self.stack_check is not None:
            yield from self.stack_check(ctx)
            return
        assert self.check is not None
        # By type, not one pass over the stack per rule (evaluate sorts what is found).
        resources = ctx.stack.resources if self.types is None else (r for t in self.types for r in ctx.stack.of_type(t))
        for r in resources:
            for field_, value, message in self.check(r, ctx):
                yield Finding(r.urn, field_, value, message)


RULES: dict[str, Rule] = {}


def resource_rule(
    name: str,
    description: str,
    types: Iterable[str] | None,
    *,
    basic: bool = False,
    params: Mapping[str, Any] | None = None,
) -> Callable[[ResourceCheck], ResourceCheck]:
    def register(fn: ResourceCheck) -> ResourceCheck:
        RULES[name] = Rule(
            name, description, basic, tuple(types) if types is not None else None, check=fn, params=params
        )
        return fn

    return register


def stack_rule(
    name: str, description: str, *, basic: bool = False, params: Mapping[str, Any] | None = None
) -> Callable[[StackCheck], StackCheck]:
    def register(fn: StackCheck) -> StackCheck:
        RULES[name] = Rule(name, description, basic, None, stack_check=fn, params=params)
        return fn

    return register


def _count(value: Any) -> int | None:
    """A whole number given as a number or a string (`16`, `"16"`); None for anything else."""
    if isinstance(value, bool) or not known(value):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _true(value: Any) -> bool:
    """A boolean the way schemas give it: `true` or `"true"` (launch templates use strings)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _unknown(value: Any) -> bool:
    return value is not None and not known(value)


CLUSTER = ("aws:eks/cluster:Cluster",)


NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"


NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


NAMESPACE = "kubernetes:core/v1:Namespace"


NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


ENFORCE = "pod-security.kubernetes.io/enforce"


def no_managed_policies(ctx: Context, role: Resource, message: str) -> Iterator[Finding]:
    """A finding, with `message`, for each managed policy attached to `role`: for roles whose whole reach is their
    inline policy (a model's pull role, a pull request's preview role)."""
    for attachment in ctx.stack.referencing(role, "aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        yield Finding(attachment.urn, "policyArn", attachment.get("policyArn"), message)
