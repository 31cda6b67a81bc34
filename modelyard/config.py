"""Typed per-environment configuration for the platform stack.

A stack's whole configuration lives under one structured key, `modelyard:platform`, in
`Pulumi.<env>.yaml`. It is parsed into frozen pydantic models (no extra keys, literals, bounds) and
then checked across fields and against the environment's tier. A bad value fails before a single
resource is registered, as one `ConfigError` with one line per problem naming the full key path,
the bad value and what is allowed.

Defaults live in these models and nowhere else. Every difference between dev, staging and prod is
a value in the stack file; the tier only decides which of those values are *allowed*
(see `TIER_RULES`), it never changes behaviour by itself.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from modelyard.policies.governance import gpus
from modelyard.policies.governance.conventions import CONFIG_NAMESPACE, DNS_LABEL, PLATFORM_CONFIG_KEY
from modelyard.policies.governance.prices import PRICES_NAME, price_book
from modelyard.versions import DEFAULT_KUBERNETES_VERSION, SUPPORTED_KUBERNETES_VERSIONS

PLATFORM_KEY = "platform"
FULL_KEY = PLATFORM_CONFIG_KEY

T = TypeVar("T")


def _as_tuple(value: Any) -> Any:
    # YAML gives lists; the frozen models hold tuples. Anything else stays as it is and fails.
    return tuple(value) if isinstance(value, list) else value


Seq = Annotated[tuple[T, ...], BeforeValidator(_as_tuple)]

Tier = Literal["dev", "staging", "prod"]
CapacityType = Literal["on-demand", "spot"]
NatStrategy = Literal["single", "per_az"]

#: What each string pattern means, for error messages; filled by `_pattern` as the types are declared.
_PATTERN_HINTS: dict[str, str] = {}


def _pattern(regex: str, hint: str) -> StringConstraints:
    _PATTERN_HINTS[regex] = hint
    return StringConstraints(pattern=regex)


#: Names that become Kubernetes names and stack names: lowercase DNS labels of at most 32 characters.
DnsLabel = Annotated[str, _pattern(DNS_LABEL, "a lowercase DNS label (a-z, 0-9, '-', at most 32 characters)")]
TagValue = Annotated[
    str,
    _pattern(
        r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$", "letters, digits, '.', '_' or '-' (at most 63 characters)"
    ),
]
Email = Annotated[
    str, _pattern(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$", "an e-mail address such as ml-platform@example.com")
]
RoleArn = Annotated[
    str,
    _pattern(
        r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$",
        "an IAM role ARN such as arn:aws:iam::123456789012:role/platform-admin",
    ),
]
KmsKeyArn = Annotated[
    str,
    _pattern(
        r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$",
        "a KMS key ARN such as arn:aws:kms:us-east-1:123456789012:key/<uuid>",
    ),
]
Region = Annotated[str, _pattern(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", "an AWS region such as us-east-1")]
InstanceTypeName = Annotated[str, _pattern(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$", "an EC2 instance type such as g5.xlarge")]
Duration = Annotated[str, _pattern(r"^\d+(s|m|h)$", "a duration such as 30s, 10m or 1h")]


class FieldProblems(ValueError):
    """Problems found by a cross-field check, each against a sub-path of the model being checked.

    Raised inside a pydantic validator; the error renderer expands it so every problem is reported
    against the field it concerns, not against the model that noticed it.
    """

    def __init__(self, problems: list[tuple[str, str, Any]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg, _ in problems))


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Tags(_Model):
    """Ownership tags. Together with env and managed-by they form every resource's tag set."""

    team: TagValue
    cost_center: TagValue


class EndpointAccess(_Model):
    """EKS API endpoint access. The private endpoint is always on.

    `public` opens the endpoint to the internet, and then only to `public_cidrs`, which must be
    listed explicitly: EKS's default of 0.0.0.0/0 is never allowed.
    """

    public: bool = False
    public_cidrs: Seq[str] = ()

    @field_validator("public_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        problems: list[tuple[str, str, Any]] = []
        for i, cidr in enumerate(value):
            try:
                net = ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                problems.append((f"[{i}]", "must be a CIDR block such as 203.0.113.0/24", cidr))
                continue
            if net.prefixlen == 0:
                problems.append(
                    (
                        f"[{i}]",
                        "must not open the API endpoint to the whole internet; list your office or VPN ranges",
                        cidr,
                    )
                )
        if problems:
            raise FieldProblems(problems)
        return value

    @model_validator(mode="after")
    def _public_needs_cidrs(self) -> EndpointAccess:
        if self.public and not self.public_cidrs:
            raise FieldProblems(
                [("public_cidrs", "must list at least one CIDR when public is true (or set public: false)", [])]
            )
        if not self.public and self.public_cidrs:
            raise FieldProblems([("public_cidrs", "must be empty when public is false", list(self.public_cidrs))])
        return self


class NetworkConfig(_Model):
    """The VPC: one public and one private subnet per availability zone."""

    az_count: int = Field(default=3, ge=2, le=6)
    vpc_cidr: str
    public_subnets: Seq[str]
    private_subnets: Seq[str]
    nat: NatStrategy = "per_az"
    flow_logs_retention_days: int = Field(default=90, ge=1, le=3653)

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            raise ValueError("must be an IPv4 CIDR block such as 10.40.0.0/16") from None
        if not 16 <= net.prefixlen <= 24:
            raise ValueError("must have a prefix between /16 and /24")
        if not net.is_private:
            raise ValueError("must be a private (RFC 1918) range")
        return value

    @model_validator(mode="after")
    def _subnets(self) -> NetworkConfig:
        problems: list[tuple[str, str, Any]] = []
        vpc = ipaddress.IPv4Network(self.vpc_cidr)
        seen: list[tuple[str, ipaddress.IPv4Network]] = []
        for key in ("public_subnets", "private_subnets"):
            cidrs: tuple[str, ...] = getattr(self, key)
            if len(cidrs) != self.az_count:
                problems.append((key, f"must list one subnet per AZ, {self.az_count} in all (az_count)", list(cidrs)))
            for i, cidr in enumerate(cidrs):
                path = f"{key}[{i}]"
                try:
                    net = ipaddress.IPv4Network(cidr, strict=True)
                except ValueError:
                    problems.append((path, "must be an IPv4 CIDR block such as 10.40.0.0/20", cidr))
                    continue
                if not net.subnet_of(vpc):
                    problems.append((path, f"must lie inside vpc_cidr {self.vpc_cidr}", cidr))
                    continue
                if net.prefixlen > 27:
                    problems.append((path, "must be /27 or larger (EKS needs room for nodes and pods)", cidr))
                for other_path, other in seen:
                    if net.overlaps(other):
                        problems.append((path, f"overlaps {other_path} ({other})", cidr))
                seen.append((path, net))
        if problems:
            raise FieldProblems(problems)
        return self


class EksConfig(_Model):
    """The EKS control plane."""

    version: str = DEFAULT_KUBERNETES_VERSION
    endpoint: EndpointAccess = EndpointAccess()
    log_retention_days: int = Field(default=90, ge=1, le=3653)
    #: IAM roles granted cluster-admin through EKS access entries (no aws-auth ConfigMap).
    admin_role_arns: Seq[RoleArn] = ()

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value not in SUPPORTED_KUBERNETES_VERSIONS:
            raise ValueError(
                f"must be one of {', '.join(SUPPORTED_KUBERNETES_VERSIONS)} "
                "(the versions pinned in modelyard/versions.py)"
            )
        return value


class SystemPoolConfig(_Model):
    """The managed, on-demand node group that runs platform services (Karpenter, KServe, monitoring)."""

    instance_types: Seq[InstanceTypeName] = Field(default=("m7i.large",), min_length=1)
    min_size: int = Field(default=2, ge=1, le=20)
    desired_size: int = Field(default=2, ge=1, le=20)
    max_size: int = Field(default=4, ge=1, le=20)
    disk_gib: int = Field(default=50, ge=20, le=1000)
    #: Replicas of the platform controllers that run on these nodes (Karpenter).
    controller_replicas: int = Field(default=2, ge=1, le=5)

    @field_validator("instance_types")
    @classmethod
    def _not_gpu(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        problems = [
            (f"[{i}]", "is a GPU instance type; GPU capacity belongs in gpu_pools", name)
            for i, name in enumerate(value)
            if gpus.instance_type(name) is not None
        ]
        if problems:
            raise FieldProblems(problems)
        return value

    @model_validator(mode="after")
    def _sizes(self) -> SystemPoolConfig:
        problems: list[tuple[str, str, Any]] = []
        if self.min_size > self.max_size:
            problems.append(("max_size", f"must be ≥ min_size ({self.min_size})", self.max_size))
        elif not self.min_size <= self.desired_size <= self.max_size:
            problems.append(
                (
                    "desired_size",
                    f"must lie between min_size and max_size ({self.min_size}..{self.max_size})",
                    self.desired_size,
                )
            )
        if problems:
            raise FieldProblems(problems)
        return self


class GpuPoolConfig(_Model):
    """One Karpenter NodePool for one GPU class."""

    name: DnsLabel
    gpu_class: gpus.GpuClass
    #: EC2 instance types Karpenter may launch; all must carry `gpu_class`.
    instance_types: Seq[InstanceTypeName] = Field(min_length=1)
    capacity_types: Seq[CapacityType] = Field(default=("on-demand",), min_length=1)
    #: Warm GPUs kept even with no model scheduled. Must be 0 when scale_to_zero is true.
    min_gpus: int = Field(default=0, ge=0, le=512)
    #: The pool's GPU limit (Karpenter `limits.nvidia.com/gpu`).
    max_gpus: int = Field(ge=1, le=512)
    scale_to_zero: bool = True
    consolidate_after: Duration = "10m"
    #: Share of the pool's nodes Karpenter may disrupt at once for consolidation or drift.
    disruption_budget_percent: int = Field(default=10, ge=0, le=100)
    disk_gib: int = Field(default=200, ge=50, le=4000)

    @model_validator(mode="after")
    def _checks(self) -> GpuPoolConfig:
        problems: list[tuple[str, str, Any]] = []
        spec = gpus.GPU_CLASSES[self.gpu_class]
        for i, name in enumerate(self.instance_types):
            if name not in spec.instance_types:
                allowed = ", ".join(spec.instance_types)
                problems.append(
                    (f"instance_types[{i}]", f"does not carry {self.gpu_class} GPUs (allowed: {allowed})", name)
                )
        if len(set(self.instance_types)) != len(self.instance_types):
            problems.append(("instance_types", "lists an instance type twice", list(self.instance_types)))
        if len(set(self.capacity_types)) != len(self.capacity_types):
            problems.append(("capacity_types", "lists a capacity type twice", list(self.capacity_types)))
        if self.min_gpus > self.max_gpus:
            problems.append(("max_gpus", f"must be ≥ min_gpus ({self.min_gpus})", self.max_gpus))
        if self.scale_to_zero and self.min_gpus:
            problems.append(
                (
                    "min_gpus",
                    "must be 0 when scale_to_zero is true (or set scale_to_zero: false to keep warm GPUs)",
                    self.min_gpus,
                )
            )
        if not self.scale_to_zero and not self.min_gpus:
            problems.append(("min_gpus", "must be ≥ 1 when scale_to_zero is false", self.min_gpus))
        smallest = min(
            (spec.instance_types[n].gpus for n in self.instance_types if n in spec.instance_types), default=1
        )
        if self.max_gpus < smallest:
            problems.append(
                ("max_gpus", f"must be ≥ {smallest}, the GPUs on the smallest listed instance type", self.max_gpus)
            )
        if problems:
            raise FieldProblems(problems)
        return self


class ModelStoreConfig(_Model):
    """The per-environment S3 bucket that holds model artifacts."""

    versioning: bool = True
    noncurrent_version_retention_days: int = Field(default=30, ge=1, le=3653)
    #: An existing customer-managed KMS key for the bucket; when unset, the stack creates one.
    kms_key_arn: KmsKeyArn | None = None
    access_log_retention_days: int = Field(default=365, ge=1, le=3653)


class IngressConfig(_Model):
    """How KServe exposes InferenceServices outside the cluster.

    `cluster-local` (the default) creates no Ingress: models are reached through their cluster
    Service, behind whatever edge you run. `ingress` creates an Ingress of `class_name` (for example
    `alb`, served by the AWS Load Balancer Controller, which this blueprint does not install).
    `gateway-api` creates HTTPRoutes attached to `gateway` (`namespace/name`).
    """

    mode: Literal["cluster-local", "ingress", "gateway-api"] = "cluster-local"
    class_name: DnsLabel | None = None
    gateway: Annotated[str, _pattern(r"^[a-z0-9-]+/[a-z0-9-]+$", "a Gateway as namespace/name")] | None = None

    @model_validator(mode="after")
    def _fields_for_mode(self) -> IngressConfig:
        problems: list[tuple[str, str, Any]] = []
        if self.mode == "ingress" and not self.class_name:
            problems.append(("class_name", "is required when mode is ingress (for example alb)", None))
        if self.mode != "ingress" and self.class_name:
            problems.append(("class_name", "is only allowed when mode is ingress", self.class_name))
        if self.mode == "gateway-api" and not self.gateway:
            problems.append(("gateway", "is required when mode is gateway-api (namespace/name)", None))
        if self.mode != "gateway-api" and self.gateway:
            problems.append(("gateway", "is only allowed when mode is gateway-api", self.gateway))
        if problems:
            raise FieldProblems(problems)
        return self


class ServingConfig(_Model):
    """Where model pods run and which service account pulls models (bound to the read-only role)."""

    model_namespace: DnsLabel = "models"
    model_pull_service_account: DnsLabel = "model-puller"
    ingress: IngressConfig = IngressConfig()


Severity = Literal["critical", "warning", "info"]


class WebhookSecret(_Model):
    """A Kubernetes Secret in the monitoring namespace holding a webhook URL (URLs carry tokens, so
    they never sit in a stack file). Create it before `pulumi up`:
    `kubectl -n monitoring create secret generic <name> --from-literal=<key>=https://...`."""

    secret_name: DnsLabel
    key: Annotated[str, _pattern(r"^[A-Za-z0-9._-]{1,253}$", "a Secret data key such as url")] = "url"


class Receiver(_Model):
    """Where Alertmanager sends alerts.

    `sns`: an SNS topic this stack creates (KMS-encrypted), with `emails` subscribed to it; Alertmanager
    publishes with its own IAM role, scoped to that topic. `webhook`: an HTTPS endpoint whose URL is
    read from a Kubernetes Secret (PagerDuty Events, Opsgenie, Slack through a relay, ...).
    """

    name: DnsLabel
    type: Literal["sns", "webhook"]
    emails: Seq[Email] = ()
    webhook: WebhookSecret | None = None
    send_resolved: bool = True

    @model_validator(mode="after")
    def _fields_for_type(self) -> Receiver:
        problems: list[tuple[str, str, Any]] = []
        if self.type == "sns" and not self.emails:
            problems.append(("emails", "must list at least one address for an sns receiver", []))
        if self.type == "sns" and self.webhook:
            problems.append(("webhook", "is only allowed when type is webhook", self.webhook.model_dump()))
        if self.type == "webhook" and not self.webhook:
            problems.append(("webhook", "is required when type is webhook (secret_name, key)", None))
        if self.type == "webhook" and self.emails:
            problems.append(("emails", "are only allowed when type is sns", list(self.emails)))
        if problems:
            raise FieldProblems(problems)
        return self


class AlertingConfig(_Model):
    """Alertmanager receivers, and which receivers each alert severity goes to.

    `critical` pages (fast SLO burn, GPU XID errors, predictors down); `warning` opens a ticket (slow
    burn, idle GPUs, pool at its limit, spend pace); `info` is for dashboards only unless routed.
    """

    receivers: Seq[Receiver] = Field(min_length=1)
    routes: dict[Severity, Seq[DnsLabel]]

    @model_validator(mode="after")
    def _routes(self) -> AlertingConfig:
        problems: list[tuple[str, str, Any]] = []
        names = [r.name for r in self.receivers]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append((f"receivers[{i}].name", "is used by another receiver; names must be unique", name))
        required: tuple[Severity, ...] = ("critical", "warning")
        for severity in required:
            if not self.routes.get(severity):
                problems.append((f"routes.{severity}", "must list at least one receiver", []))
        for severity, targets in self.routes.items():
            for i, target in enumerate(targets):
                if target not in names:
                    problems.append(
                        (f"routes.{severity}[{i}]", f"is not a receiver (defined: {', '.join(names)})", target)
                    )
        if problems:
            raise FieldProblems(problems)
        return self


class MonitoringConfig(_Model):
    """Prometheus, Alertmanager and Grafana (kube-prometheus-stack), on encrypted gp3 volumes."""

    prometheus_retention_days: int = Field(default=15, ge=1, le=365)
    prometheus_storage_gib: int = Field(default=50, ge=10, le=16000)
    prometheus_replicas: int = Field(default=1, ge=1, le=3)
    alertmanager_replicas: int = Field(default=1, ge=1, le=5)
    alertmanager_storage_gib: int = Field(default=5, ge=1, le=100)
    grafana_storage_gib: int = Field(default=10, ge=1, le=500)
    #: Where each alert's runbook lives: `<runbook_base_url>/<AlertName>.md` (your fork's runbooks/).
    runbook_base_url: Annotated[str, _pattern(r"^https://[^\s]+/runbooks$", "an https:// URL ending in /runbooks")] = (
        "https://github.com/modelyard/modelyard/blob/main/runbooks"
    )
    alerting: AlertingConfig


class BudgetConfig(_Model):
    """The environment's monthly AWS budget and who hears about it."""

    monthly_usd: float = Field(gt=0, le=10_000_000)
    alert_emails: Seq[Email] = Field(min_length=1)
    #: Cost Anomaly Detection alerts when an anomaly's total impact reaches this many dollars.
    anomaly_threshold_usd: float = Field(default=100, gt=0, le=1_000_000)
    #: Activate the tag keys as cost-allocation tags. AWS only offers a new key for activation up to
    #: 24 hours after it first appears on a resource, so leave this false on the first `pulumi up`,
    #: then set it true. The budget and anomaly monitor filter on the `env` tag once it is active.
    activate_cost_allocation_tags: bool = False


@dataclass(frozen=True)
class TierRules:
    """What a tier allows. The stack file still states each value; these only bound it."""

    allow_spot_gpus: bool
    allow_public_endpoint: bool
    require_nat_per_az: bool
    require_deletion_protection: bool
    require_model_versioning: bool
    min_system_nodes: int


TIER_RULES: Mapping[str, TierRules] = {
    "dev": TierRules(
        allow_spot_gpus=True,
        allow_public_endpoint=True,
        require_nat_per_az=False,
        require_deletion_protection=False,
        require_model_versioning=False,
        min_system_nodes=1,
    ),
    "staging": TierRules(
        allow_spot_gpus=True,
        allow_public_endpoint=True,
        require_nat_per_az=False,
        require_deletion_protection=False,
        require_model_versioning=True,
        min_system_nodes=2,
    ),
    "prod": TierRules(
        allow_spot_gpus=False,
        allow_public_endpoint=False,
        require_nat_per_az=True,
        require_deletion_protection=True,
        require_model_versioning=True,
        min_system_nodes=2,
    ),
}


class PlatformConfig(_Model):
    """Everything under `modelyard:platform` in a stack file."""

    env: DnsLabel
    tier: Tier
    region: Region
    tags: Tags
    network: NetworkConfig
    eks: EksConfig = EksConfig()
    system_pool: SystemPoolConfig = SystemPoolConfig()
    gpu_pools: Seq[GpuPoolConfig] = Field(min_length=1)
    model_store: ModelStoreConfig = ModelStoreConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig
    budget: BudgetConfig
    deletion_protection: bool = True

    @model_validator(mode="after")
    def _tier(self) -> PlatformConfig:
        rules = TIER_RULES[self.tier]
        problems: list[tuple[str, str, Any]] = []
        names = [p.name for p in self.gpu_pools]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append((f"gpu_pools[{i}].name", "is used by another GPU pool; names must be unique", name))
        tier = f"in the {self.tier} tier (TIER_RULES in modelyard/config.py)"
        if not rules.allow_spot_gpus:
            for i, pool in enumerate(self.gpu_pools):
                if "spot" in pool.capacity_types:
                    problems.append(
                        (
                            f"gpu_pools[{i}].capacity_types",
                            f"must not include spot {tier}; use on-demand",
                            list(pool.capacity_types),
                        )
                    )
        if not rules.allow_public_endpoint and self.eks.endpoint.public:
            problems.append(("eks.endpoint.public", f"must be false {tier}; reach the API from inside the VPC", True))
        if rules.require_nat_per_az and self.network.nat != "per_az":
            problems.append(
                (
                    "network.nat",
                    f"must be per_az {tier}: one NAT gateway is a single point of failure",
                    self.network.nat,
                )
            )
        if rules.require_deletion_protection and not self.deletion_protection:
            problems.append(("deletion_protection", f"must be true {tier}", False))
        if rules.require_model_versioning and not self.model_store.versioning:
            problems.append(("model_store.versioning", f"must be true {tier}", False))
        book = price_book()
        if self.region not in book.regions:
            problems.append(
                ("region", f"has no prices in {PRICES_NAME}; priced: {', '.join(book.regions)}", self.region)
            )
        else:
            for i, pool in enumerate(self.gpu_pools):
                for j, name in enumerate(pool.instance_types):
                    if book.ec2_hourly(self.region, name) is None:
                        problems.append(
                            (
                                f"gpu_pools[{i}].instance_types[{j}]",
                                f"has no {self.region} price in {PRICES_NAME}; add it there first",
                                name,
                            )
                        )
        if self.system_pool.min_size < rules.min_system_nodes:
            problems.append(
                ("system_pool.min_size", f"must be ≥ {rules.min_system_nodes} {tier}", self.system_pool.min_size)
            )
        if problems:
            raise FieldProblems(problems)
        return self


class ConfigError(Exception):
    """A stack's configuration is invalid. `str()` is the full, user-facing message."""

    def __init__(self, stack: str, source: str, problems: list[str]):
        self.stack = stack
        self.source = source
        self.problems = problems
        lines = [f"Invalid config for stack '{stack}' ({source}):"]
        lines += [f"  • {p}" for p in problems]
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Loading and error rendering


def _fmt_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _join(path: str, sub: str) -> str:
    if not sub:
        return path
    return path + sub if sub.startswith("[") else f"{path}.{sub}"


def _loc_path(loc: Iterable[int | str], prefix: str = FULL_KEY) -> str:
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
        return [f"{_join(base, sub)}: {msg} (got {_fmt_value(val)})" for sub, msg, val in error.problems]
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
        return [f"{path}: must list at least {least} item{'s' if least != 1 else ''} (got {_fmt_value(value)})"]
    if kind == "string_pattern_mismatch":
        return [f"{path}: must be {_pattern_hint(ctx.get('pattern', ''))} (got {_fmt_value(value)})"]
    if kind in _TYPE_MESSAGES:
        return [f"{path}: {_TYPE_MESSAGES[kind]} (got {_fmt_value(value)})"]
    message = str(err["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    elif message.startswith("Input should be"):
        message = "must be" + message[len("Input should be") :]
    return [f"{path}: {message} (got {_fmt_value(value)})"]


M = TypeVar("M", bound=BaseModel)


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


def parse_platform_config(raw: Any, *, stack: str, source: str) -> PlatformConfig:
    """Validate the value of `modelyard:platform` for `stack`; raise ConfigError listing every problem."""
    if not isinstance(raw, Mapping):
        raise ConfigError(stack, source, [f"{FULL_KEY}: must be a mapping of keys (got {_fmt_value(raw)})"])
    config, problems = validate_model(PlatformConfig, raw, FULL_KEY)
    if config is None:
        raise ConfigError(stack, source, problems)
    if config.env != stack:
        raise ConfigError(
            stack,
            source,
            [
                f"{FULL_KEY}.env: must match the stack name '{stack}' (got {config.env!r}); "
                "one stack per environment keeps state and config from crossing"
            ],
        )
    return config


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


def read_stack_config(path: Path, *, stack: str, key: str = FULL_KEY) -> dict[str, Any]:
    """The `config:` mapping of a Pulumi stack file, with clear errors for unreadable files; `key` is the
    one `modelyard:` key the project reads."""
    source = path.name
    document = read_yaml(path, stack=stack, missing=f"stack file not found: {path}")
    if not isinstance(document, Mapping) or not isinstance(document.get("config"), Mapping):
        raise ConfigError(stack, source, ["the file must be a mapping with a top-level 'config:' mapping"])
    config = dict(document["config"])
    disabled = config.get(DISABLE_DEFAULT_PROVIDERS)
    if disabled is not None and not (isinstance(disabled, list) and all(isinstance(p, str) for p in disabled)):
        raise ConfigError(
            stack,
            source,
            [f'{DISABLE_DEFAULT_PROVIDERS}: must be a list of provider names, e.g. ["*"] (got {_fmt_value(disabled)})'],
        )
    ours = [k for k in config if isinstance(k, str) and k.startswith(f"{CONFIG_NAMESPACE}:")]
    unknown = [k for k in ours if k != key]
    if unknown:
        raise ConfigError(
            stack, source, [f"{k}: unknown config key; this project reads only {key}" for k in sorted(unknown)]
        )
    if key not in config:
        raise ConfigError(stack, source, [f"{key}: is required but missing"])
    value = config[key]
    if isinstance(value, Mapping) and "secure" in value and len(value) == 1:
        raise ConfigError(stack, source, [f"{key}: must be plain config, not a secret"])
    return config


#: Pulumi's setting that turns off default providers (a list of package names, or "*").
DISABLE_DEFAULT_PROVIDERS = "pulumi:disable-default-providers"


def load_platform_config(path: Path, *, stack: str) -> PlatformConfig:
    """Read and validate a stack file's platform config."""
    config = read_stack_config(path, stack=stack)
    return parse_platform_config(config[FULL_KEY], stack=stack, source=path.name)


#: A stack (environment) name: the same rule as `env`, which must equal it.
STACK_NAME = re.compile(DNS_LABEL)
