"""Typed per-environment configuration for the platform stack: the schema.

(The validation toolkit these models use is modelyard/validation.py; reading a stack file into them is
modelyard/stackfile.py.)

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

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from modelyard.policies.governance import fit, gpus
from modelyard.policies.governance.conventions import PLATFORM_CONFIG_KEY
from modelyard.policies.governance.prices import PRICES_NAME, price_book
from modelyard.validation import (
    DnsLabel,
    Duration,
    Email,
    FieldProblems,
    Hostname,
    InstanceTypeName,
    KmsKeyArn,
    Model,
    Region,
    RoleArn,
    Seq,
    TagValue,
    pattern,
)
from modelyard.versions import DEFAULT_KUBERNETES_VERSION, SUPPORTED_KUBERNETES_VERSIONS

PLATFORM_KEY = "platform"
FULL_KEY = PLATFORM_CONFIG_KEY

Tier = Literal["dev", "staging", "prod"]
CapacityType = Literal["on-demand", "spot"]
NatStrategy = Literal["single", "per_az"]


class Tags(Model):
    """Ownership tags. Together with env and managed-by they form every resource's tag set."""

    team: TagValue
    cost_center: TagValue


class EndpointAccess(Model):
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


class NetworkConfig(Model):
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


class EksConfig(Model):
    """The EKS control plane."""

    version: str = DEFAULT_KUBERNETES_VERSION
    endpoint: EndpointAccess = EndpointAccess()
    log_retention_days: int = Field(default=90, ge=1, le=3653)
    #: IAM roles granted cluster-admin through EKS access entries (no aws-auth ConfigMap).
    admin_role_arns: Seq[RoleArn] = ()
    #: The role `pulumi up` runs as (CI's deploy role), granted cluster-admin through a declared access entry:
    #: the cluster is created without EKS's implicit admin entry for its creator. Unset: the IAM role of the
    #: identity running the program, as its session context names it (shown in the plan).
    deployer_role_arn: RoleArn | None = None
    #: A break-glass role (`modelyard-<env>-break-glass`): cluster-admin, assumable only by this account's principals
    #: signed in with MFA within the hour, for when the deploy path is down.
    break_glass: bool = True

    @model_validator(mode="after")
    def _one_entry_per_principal(self) -> EksConfig:
        # EKS refuses a second access entry for a principal: the deployer has its own.
        if self.deployer_role_arn is not None and self.deployer_role_arn in self.admin_role_arns:
            raise FieldProblems(
                [
                    (
                        "admin_role_arns",
                        "must not list deployer_role_arn, which has its own access entry (EKS takes one per principal)",
                        self.deployer_role_arn,
                    )
                ]
            )
        return self

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value not in SUPPORTED_KUBERNETES_VERSIONS:
            raise ValueError(
                f"must be one of {', '.join(SUPPORTED_KUBERNETES_VERSIONS)} "
                "(the versions pinned in modelyard/versions.py)"
            )
        return value


def _general_purpose(value: tuple[str, ...]) -> tuple[str, ...]:
    """Instance types for CPU capacity: no GPU type (those belong in gpu_pools), and a shape the pod-fit check
    and the cost estimate can read (policies/governance/fit.py: the m, c and r families)."""
    problems: list[tuple[str, str, Any]] = []
    for i, name in enumerate(value):
        if gpus.instance_type(name) is not None:
            problems.append((f"[{i}]", "is a GPU instance type; GPU capacity belongs in gpu_pools", name))
        elif re.match(r"^[a-z]+\d+[a-z]*g[a-z]*\.", name):
            problems.append((f"[{i}]", "is an Arm (Graviton) type; the nodes run amd64 images", name))
        elif fit.shape(name) is None:
            problems.append(
                (f"[{i}]", "must be a general-purpose type of the m, c or r families (e.g. m7i.xlarge)", name)
            )
    if len(set(value)) != len(value):
        problems.append(("", "lists an instance type twice", list(value)))
    if problems:
        raise FieldProblems(problems)
    return value


class SystemPoolConfig(Model):
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
        return _general_purpose(value)

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


class CpuPoolConfig(Model):
    """The Karpenter NodePool for models that need no GPU: tainted so that nothing else lands on it, and apart
    from the system nodes, so a busy model cannot starve Prometheus, Karpenter or KServe's webhook."""

    instance_types: Seq[InstanceTypeName] = Field(default=("m7i.xlarge", "m7i.2xlarge"), min_length=1)
    capacity_types: Seq[CapacityType] = Field(default=("on-demand",), min_length=1)
    #: The pool's CPU limit (Karpenter `limits.cpu`): the most vCPUs its nodes may have together.
    max_vcpus: int = Field(default=32, ge=2, le=4096)
    consolidate_after: Duration = "10m"
    #: Share of the pool's nodes Karpenter may disrupt at once for consolidation or drift.
    disruption_budget_percent: int = Field(default=10, ge=0, le=100)
    disk_gib: int = Field(default=50, ge=20, le=1000)

    @field_validator("instance_types")
    @classmethod
    def _not_gpu(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _general_purpose(value)

    @model_validator(mode="after")
    def _checks(self) -> CpuPoolConfig:
        problems: list[tuple[str, str, Any]] = []
        if len(set(self.capacity_types)) != len(self.capacity_types):
            problems.append(("capacity_types", "lists a capacity type twice", list(self.capacity_types)))
        largest = max((fit.shape(t) or (0, 0, 0))[0] for t in self.instance_types)
        if self.max_vcpus < largest:
            problems.append(
                ("max_vcpus", f"must be ≥ {largest}, the vCPUs of the pool's largest instance type", self.max_vcpus)
            )
        if problems:
            raise FieldProblems(problems)
        return self


class GpuPoolConfig(Model):
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


class ModelStoreConfig(Model):
    """The per-environment S3 bucket that holds model artifacts."""

    versioning: bool = True
    noncurrent_version_retention_days: int = Field(default=30, ge=1, le=3653)
    #: An existing customer-managed KMS key for the bucket; when unset, the stack creates one.
    kms_key_arn: KmsKeyArn | None = None
    access_log_retention_days: int = Field(default=365, ge=1, le=3653)
    #: S3 Object Lock in governance mode: every object version is kept at least this many days (None: off).
    #: Needs versioning; a principal with s3:BypassGovernanceRetention can still remove one, on purpose.
    object_lock_days: int | None = Field(default=None, ge=1, le=36500)
    #: Who may assume the push role (`modelyard model push`): IAM role ARNs of this account. Empty: any
    #: principal of the account whose own policies allow sts:AssumeRole on it.
    pusher_role_arns: Seq[RoleArn] = ()
    #: Another region the bucket is replicated to (S3 Replication, every version, re-encrypted with a key of
    #: that region): the models survive the loss of the stack's region. None: no replica.
    replica_region: Region | None = None

    @model_validator(mode="after")
    def _lock_needs_versions(self) -> ModelStoreConfig:
        problems: list[tuple[str, str, Any]] = []
        if self.object_lock_days is not None and not self.versioning:
            problems.append(
                ("object_lock_days", "needs versioning: true (Object Lock keeps versions)", self.object_lock_days)
            )
        if self.replica_region is not None and not self.versioning:
            problems.append(
                ("replica_region", "needs versioning: true (S3 replicates versions only)", self.replica_region)
            )
        if problems:
            raise FieldProblems(problems)
        return self


HttpsUrl = Annotated[str, pattern(r"^https://[^\s/]+(/[^\s]*)?$", "an https:// URL")]


class OidcConfig(Model):
    """Callers present a JWT from your identity provider instead of an API key (Envoy Gateway's JWT authentication):
    its signature checked against the provider's published keys, its issuer and audience; the team in `team_claim`
    (a string claim) decides what it may call and counts against that team's rate. The proxies then reach the
    provider's keys on 443 anywhere (an identity provider's addresses are not yours to list)."""

    issuer: HttpsUrl
    jwks_uri: HttpsUrl
    audiences: Seq[str] = Field(min_length=1)
    team_claim: Annotated[str, pattern(r"^[A-Za-z0-9_.:/-]{1,253}$", "a claim name; nested ones with dots")] = "team"


class GatewayConfig(Model):
    """The front door every model is reached through (platform/gateway.py): Envoy Gateway's proxies behind a
    load balancer, TLS terminated at them, one HTTPS listener for `hostname`."""

    #: The domain models are called under: each at `<model>.<hostname>` (one wildcard listener and certificate).
    hostname: Hostname = "models.modelyard.internal"
    #: `internal`: an NLB reachable from the VPC (and what is peered or connected to it) only.
    load_balancer: Literal["internal", "internet-facing"] = "internal"
    #: Client ranges the load balancer admits (loadBalancerSourceRanges); empty: the VPC's CIDR.
    source_cidrs: Seq[str] = ()
    #: Envoy proxy replicas: a per-tenant rate limit is enforced by each replica at its share (limit / replicas).
    replicas: int = Field(default=2, ge=1, le=20)
    #: Ranges the proxies may reach on 443 for catalog fallbacks (another region's gateway, over peering or a
    #: transit gateway); empty: no fallback, and Envoy Gateway's Backend API stays off.
    fallback_cidrs: Seq[str] = ()
    #: JWTs from your identity provider instead of API keys; unset: API keys in per-team Secrets (docs/gateway.md).
    oidc: OidcConfig | None = None
    #: A ClusterIssuer of your own for the gateway's certificate (ACM Private CA's issuer, or ACME with DNS-01);
    #: unset: the platform's own CA (`modelyard-ca`, cert-manager), whose certificate clients must trust.
    issuer: DnsLabel | None = None

    @field_validator("source_cidrs", "fallback_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                net = ipaddress.IPv4Network(cidr, strict=True)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an IPv4 network such as 10.0.0.0/16") from None
            if net.prefixlen == 0:
                raise ValueError("0.0.0.0/0 is every address; list the ranges you mean")
        return value


class ServingConfig(Model):
    """Where model pods run (each model pulls as its own service account and read-only role, which the workloads
    stack makes), and the gateway in front of them."""

    model_namespace: DnsLabel = "models"
    gateway: GatewayConfig = GatewayConfig()


Severity = Literal["critical", "warning", "info"]


class WebhookSecret(Model):
    """A Kubernetes Secret in the monitoring namespace holding a webhook URL (URLs carry tokens, so
    they never sit in a stack file). Create it before `pulumi up`:
    `kubectl -n monitoring create secret generic <name> --from-literal=<key>=https://...`."""

    secret_name: DnsLabel
    key: Annotated[str, pattern(r"^[A-Za-z0-9._-]{1,253}$", "a Secret data key such as url")] = "url"


class Receiver(Model):
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


class AlertingConfig(Model):
    """Alertmanager receivers, and which receivers each alert severity goes to.

    `critical` pages (fast SLO burn, GPU XID errors, predictors down); `warning` opens a ticket (slow
    burn, idle GPUs, pool at its limit, spend pace); `info` is for dashboards only unless routed.
    """

    receivers: Seq[Receiver] = Field(min_length=1)
    routes: dict[Severity, Seq[DnsLabel]]
    #: The receiver the always-firing `Watchdog` alert goes to, every minute: a dead man's switch
    #: (Healthchecks.io, PagerDuty's or Opsgenie's heartbeat, Dead Man's Snitch) that pages when the
    #: heartbeats stop, that is when Prometheus, Alertmanager or the path between them has died. Unset,
    #: Watchdog goes nowhere and nobody hears that alerting is down. Required in the prod tier.
    watchdog: DnsLabel | None = None

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
        if self.watchdog is not None and self.watchdog not in names:
            problems.append(("watchdog", f"is not a receiver (defined: {', '.join(names)})", self.watchdog))
        elif self.watchdog is not None and any(self.watchdog in targets for targets in self.routes.values()):
            problems.append(
                (
                    "watchdog",
                    "must be a receiver of its own, in no route: a route's receiver gets every alert of its "
                    "severity, and one that pages would be paged by Watchdog for ever",
                    self.watchdog,
                )
            )
        if problems:
            raise FieldProblems(problems)
        return self


class MonitoringConfig(Model):
    """Prometheus, Alertmanager and Grafana (kube-prometheus-stack), on encrypted gp3 volumes."""

    prometheus_retention_days: int = Field(default=15, ge=1, le=365)
    prometheus_storage_gib: int = Field(default=50, ge=10, le=16000)
    prometheus_replicas: int = Field(default=1, ge=1, le=3)
    alertmanager_replicas: int = Field(default=1, ge=1, le=5)
    alertmanager_storage_gib: int = Field(default=5, ge=1, le=100)
    grafana_storage_gib: int = Field(default=10, ge=1, le=500)
    #: Where each alert's runbook lives: `<runbook_base_url>/<AlertName>.md` (your fork's runbooks/).
    runbook_base_url: Annotated[str, pattern(r"^https://[^\s]+/runbooks$", "an https:// URL ending in /runbooks")] = (
        "https://github.com/modelyard/modelyard/blob/main/runbooks"
    )
    alerting: AlertingConfig


class BackupConfig(Model):
    """AWS Backup of the monitoring volumes (Prometheus, Alertmanager, Grafana): the StorageClass tags every volume
    it provisions, and a backup plan selects the tag. The model store needs none (versioned, replicated where
    `model_store.replica_region` is set); the cluster is code."""

    enabled: bool = False
    #: An AWS Backup schedule (cron in UTC, e.g. daily at 03:00).
    schedule: Annotated[str, pattern(r"^cron\([^()]+\)$", "an AWS cron expression such as cron(0 3 * * ? *)")] = (
        "cron(0 3 * * ? *)"
    )
    #: Recovery points are deleted after this many days.
    retention_days: int = Field(default=14, ge=1, le=3650)
    #: A vault lock in governance mode: no recovery point can be deleted before retention_days, except by a
    #: principal allowed to change the lock.
    vault_lock: bool = False


class BudgetConfig(Model):
    """The environment's monthly AWS budget and who hears about it."""

    monthly_usd: float = Field(gt=0, le=10_000_000)
    alert_emails: Seq[Email] = Field(min_length=1)
    #: Cost Anomaly Detection alerts when an anomaly's total impact reaches this many dollars.
    anomaly_threshold_usd: float = Field(default=100, gt=0, le=1_000_000)
    #: Activate the tag keys as cost-allocation tags. AWS only offers a new key for activation up to
    #: 24 hours after it first appears on a resource, so leave this false on the first `pulumi up`,
    #: then set it true. The budget and anomaly monitor filter on the `env` tag once it is active.
    activate_cost_allocation_tags: bool = False


GithubRepository = Annotated[
    str,
    pattern(
        r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:@[0-9]+)?/[A-Za-z0-9._-]{1,100}(?:@[0-9]+)?$",
        "a GitHub repository as its OIDC subject names it: owner/name, or owner@<owner id>/name@<repository id> "
        "(GitHub's immutable subject, the default for repositories created after 2026-07-15)",
    ),
]
PolicyArn = Annotated[
    str,
    pattern(
        r"^arn:aws[a-z-]*:iam::(aws|\d{12}):policy/[\w+=,.@/-]+$",
        "an IAM policy ARN such as arn:aws:iam::aws:policy/AdministratorAccess",
    ),
]
OidcProviderArn = Annotated[
    str,
    pattern(
        r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com$",
        "the ARN of this account's IAM OIDC provider for token.actions.githubusercontent.com",
    ),
]


class CiConfig(Model):
    """The identities GitHub Actions uses for this environment (infra/ci.py), each assumed through GitHub's OIDC
    provider with no long-lived key, each trust bound to one subject of `repository`: a read-only preview role for
    pull requests, a deploy role for the GitHub environment named like the stack, an observer role for the
    `<env>-canary` environment that may reach Prometheus and nothing else, and, where the API endpoint is
    private, a CodeBuild-hosted runner in the VPC for the jobs that need the cluster."""

    #: The repository whose workflows may assume the roles, as GitHub writes it in the token's `sub`.
    repository: GithubRepository
    #: This account's IAM OIDC provider for GitHub (an account has one per URL): unset, this stack creates it.
    #: Stacks sharing an account: one creates it, the others name it here.
    oidc_provider_arn: OidcProviderArn | None = None
    #: Where the jobs that reach the cluster run: GitHub's hosted runners, or a CodeBuild-hosted runner in the
    #: VPC (the only way to a private API endpoint).
    runner: Literal["github-hosted", "codebuild"] = "github-hosted"
    #: The deploy role's permissions. A program that creates IAM roles needs an administrator's reach whatever it
    #: is given; what bounds this role is its trust (one GitHub environment, with that environment's reviewers).
    deploy_policy_arns: Seq[PolicyArn] = Field(min_length=1)


@dataclass(frozen=True)
class TierRules:
    """What a tier allows. The stack file still states each value; these only bound it."""

    allow_spot: bool
    allow_public_endpoint: bool
    require_nat_per_az: bool
    require_deletion_protection: bool
    require_model_versioning: bool
    require_watchdog: bool
    require_backups: bool
    require_model_replica: bool
    min_system_nodes: int


TIER_RULES: Mapping[str, TierRules] = {
    "dev": TierRules(
        allow_spot=True,
        allow_public_endpoint=True,
        require_nat_per_az=False,
        require_deletion_protection=False,
        require_model_versioning=False,
        require_watchdog=False,
        require_backups=False,
        require_model_replica=False,
        min_system_nodes=1,
    ),
    "staging": TierRules(
        allow_spot=True,
        allow_public_endpoint=True,
        require_nat_per_az=False,
        require_deletion_protection=False,
        require_model_versioning=True,
        require_watchdog=False,
        require_backups=False,
        require_model_replica=False,
        min_system_nodes=2,
    ),
    "prod": TierRules(
        allow_spot=False,
        allow_public_endpoint=False,
        require_nat_per_az=True,
        require_deletion_protection=True,
        require_model_versioning=True,
        require_watchdog=True,
        require_backups=True,
        require_model_replica=True,
        min_system_nodes=2,
    ),
}


class PlatformConfig(Model):
    """Everything under `modelyard:platform` in a stack file."""

    env: DnsLabel
    tier: Tier
    region: Region
    tags: Tags
    network: NetworkConfig
    eks: EksConfig = EksConfig()
    system_pool: SystemPoolConfig = SystemPoolConfig()
    gpu_pools: Seq[GpuPoolConfig] = Field(min_length=1)
    cpu_pool: CpuPoolConfig = CpuPoolConfig()
    model_store: ModelStoreConfig = ModelStoreConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig
    backup: BackupConfig = BackupConfig()
    budget: BudgetConfig
    #: GitHub Actions' identities and deploy path (None: the stack creates none; deploy as you like).
    ci: CiConfig | None = None
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
        if not rules.allow_spot:
            for i, pool in enumerate(self.gpu_pools):
                if "spot" in pool.capacity_types:
                    problems.append(
                        (
                            f"gpu_pools[{i}].capacity_types",
                            f"must not include spot {tier}; use on-demand",
                            list(pool.capacity_types),
                        )
                    )
            if "spot" in self.cpu_pool.capacity_types:
                problems.append(
                    (
                        "cpu_pool.capacity_types",
                        f"must not include spot {tier}; use on-demand",
                        list(self.cpu_pool.capacity_types),
                    )
                )
        if not rules.allow_public_endpoint and self.eks.endpoint.public:
            problems.append(("eks.endpoint.public", f"must be false {tier}; reach the API from inside the VPC", True))
        if not rules.allow_public_endpoint and self.serving.gateway.load_balancer != "internal":
            problems.append(
                (
                    "serving.gateway.load_balancer",
                    f"must be internal {tier}; put a public edge you control in front of it",
                    self.serving.gateway.load_balancer,
                )
            )
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
        if rules.require_watchdog and self.monitoring.alerting.watchdog is None:
            problems.append(
                (
                    "monitoring.alerting.watchdog",
                    f"must name a dead man's switch receiver {tier}: without one nobody hears that alerting is down",
                    None,
                )
            )
        if rules.require_backups and not self.backup.enabled:
            problems.append(
                (
                    "backup.enabled",
                    f"must be true {tier}: the monitoring volumes hold the history alerts are read from",
                    False,
                )
            )
        replica = self.model_store.replica_region
        if rules.require_model_replica and replica is None:
            problems.append(
                (
                    "model_store.replica_region",
                    f"must name another region {tier}: the models must survive the loss of {self.region}",
                    None,
                )
            )
        if replica is not None and replica == self.region:
            problems.append(
                (
                    "model_store.replica_region",
                    f"must differ from region ({self.region}): a replica there survives nothing the bucket does not",
                    replica,
                )
            )
        if self.backup.enabled or replica is not None:
            routed = set(self.monitoring.alerting.routes.get("warning", ()))
            if not any(r.type == "sns" and r.name in routed for r in self.monitoring.alerting.receivers):
                problems.append(
                    (
                        "monitoring.alerting.routes.warning",
                        "must include an sns receiver: AWS Backup and S3 Replication report a failed job through "
                        "SNS only, to the sns receivers of the warning route",
                        list(routed),
                    )
                )
        book = price_book()
        if replica is not None and replica != self.region and replica not in book.regions:
            problems.append(
                (
                    "model_store.replica_region",
                    f"has no prices in {PRICES_NAME}; priced: {', '.join(book.regions)}",
                    replica,
                )
            )
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
            for j, name in enumerate(self.cpu_pool.instance_types):
                if book.ec2_hourly(self.region, name) is None:
                    problems.append(
                        (
                            f"cpu_pool.instance_types[{j}]",
                            f"has no {self.region} price in {PRICES_NAME}; add it there first",
                            name,
                        )
                    )
        if self.system_pool.min_size < rules.min_system_nodes:
            problems.append(
                ("system_pool.min_size", f"must be ≥ {rules.min_system_nodes} {tier}", self.system_pool.min_size)
            )
        problems.extend(self._ci_problems())
        if problems:
            raise FieldProblems(problems)
        return self

    def _ci_problems(self) -> list[tuple[str, str, Any]]:
        ci, eks = self.ci, self.eks
        if ci is None:
            return []
        problems: list[tuple[str, str, Any]] = []
        if eks.deployer_role_arn is not None:
            problems.append(
                (
                    "eks.deployer_role_arn",
                    "must be unset when ci is set: the deployer is ci's deploy role (modelyard-<env>-ci-deploy)",
                    eks.deployer_role_arn,
                )
            )
        if not eks.admin_role_arns:
            problems.append(
                (
                    "eks.admin_role_arns",
                    "must list the role that runs the first `pulumi up` when ci is set: ci's deploy role is the "
                    "deployer, and it exists only after that run",
                    [],
                )
            )
        if not eks.endpoint.public and ci.runner != "codebuild":
            problems.append(
                (
                    "ci.runner",
                    "must be codebuild while eks.endpoint.public is false: GitHub-hosted runners cannot reach a "
                    "private API endpoint",
                    ci.runner,
                )
            )
        return problems
