"""A monthly cost estimate for the resources of a Pulumi preview.

Two figures per resource: **baseline**, what runs at the least (managed node groups at their desired
size; each Karpenter GPU pool sized for the GPU pods pinned to it, bin-packed onto its cheapest allowed
instance type; nothing for a pool that scales to zero with nothing pinned), and **ceiling**, every
pool and node group at its limit. Fixed prices come from `prices.yaml`; usage-priced items (data
processed, storage, log ingestion) from the assumptions in `usage.yaml`, which the estimate lists.
Resource types without a price rule are listed as "not priced", never counted as zero; types known
to cost nothing by themselves (IAM, subnets, Kubernetes objects that run on priced nodes, ...) are
"free".
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from . import fit
from .conventions import BACKUP_TAG_KEY, CPU_POOL_LABEL, GPU_POOL_LABEL, GPU_RESOURCE, WARM_PRIORITY_CLASS, ZONE_LABEL
from .prices import PriceBook, RegionPrices, price_book
from .resources import S3_BUCKET_COMPANIONS, Resource, Stack, as_name, dig, known, sequence
from .sources import data_file

USAGE_FILE = Path(__file__).parent / "usage.yaml"
GPU = GPU_RESOURCE
DEFAULT_REGION = "us-east-1"

Kind = Literal["fixed", "usage", "free", "not priced"]


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    nat_gateway_gb_per_month: float = Field(ge=0)
    interface_endpoint_gb_per_month: float = Field(ge=0)
    model_store_gb: float = Field(ge=0)
    other_bucket_gb: float = Field(ge=0)
    log_ingest_gb_per_month: float = Field(ge=0)
    log_storage_gb: float = Field(ge=0)
    ecr_storage_gb: float = Field(ge=0)
    model_bucket_pattern: str
    model_replica_pattern: str
    model_push_gb_per_month: float = Field(ge=0)
    ci_runner_minutes_per_month: float = Field(ge=0)


def load_usage(path: Path | None = None) -> Usage:
    """`path`, else the checkout's `policies/governance/usage.yaml` (sources.py), else the package's."""
    path = path or data_file(USAGE_FILE.name)
    return Usage.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


@dataclass(frozen=True, slots=True)
class Item:
    urn: str
    type: str
    layer: str
    kind: Kind
    baseline: float = 0.0
    ceiling: float = 0.0
    basis: str = ""


@dataclass
class Estimate:
    region: str
    items: list[Item]
    usage: Usage
    hours_per_month: int
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> float:
        return round(sum(i.baseline for i in self.items), 2)

    @property
    def ceiling(self) -> float:
        return round(sum(i.ceiling for i in self.items), 2)

    def by_layer(self) -> dict[str, tuple[float, float]]:
        out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for item in self.items:
            out[item.layer][0] += item.baseline
            out[item.layer][1] += item.ceiling
        return {layer: (round(b, 2), round(c, 2)) for layer, (b, c) in sorted(out.items())}

    def not_priced(self) -> list[Item]:
        return [i for i in self.items if i.kind == "not priced"]

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "currency": "USD",
            "period": "month",
            "hoursPerMonth": self.hours_per_month,
            "baseline": self.baseline,
            "ceiling": self.ceiling,
            "byLayer": {k: {"baseline": b, "ceiling": c} for k, (b, c) in self.by_layer().items()},
            "resources": [
                {
                    "urn": i.urn,
                    "type": i.type,
                    "layer": i.layer,
                    "kind": i.kind,
                    "baseline": round(i.baseline, 2),
                    "ceiling": round(i.ceiling, 2),
                    "basis": i.basis,
                }
                for i in self.items
                if i.kind != "free"
            ],
            "notPriced": sorted({i.type for i in self.not_priced()}),
            "usageAssumptions": self.usage.model_dump(),
            "notes": self.notes,
        }


#: Types that cost nothing by themselves: their cost is in what they configure or run on.
#: Envoy Gateway: the GatewayClass a Gateway names points at the EnvoyProxy that shapes its proxies.
GATEWAY_CLASS = "kubernetes:gateway.networking.k8s.io/v1:GatewayClass"
ENVOY_PROXY = "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy"
FREE_PREFIXES = ("kubernetes:", "random:", "pulumi:")
FREE_TYPES = S3_BUCKET_COMPANIONS | frozenset(
    {
        "aws:s3/bucketNotification:BucketNotification",
        "aws:iam/role:Role",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/policy:Policy",
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        "aws:ec2/vpc:Vpc",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:ec2/route:Route",
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
        "aws:ec2/flowLog:FlowLog",  # its cost is the log group's ingestion
        "aws:ec2/launchTemplate:LaunchTemplate",  # priced with its node group
        "aws:eks/addon:Addon",
        "aws:eks/accessEntry:AccessEntry",
        "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
        "aws:eks/podIdentityAssociation:PodIdentityAssociation",
        "aws:kms/alias:Alias",
        "aws:ecr/lifecyclePolicy:LifecyclePolicy",
        "aws:sqs/queuePolicy:QueuePolicy",
        "aws:sqs/queue:Queue",  # interruption events: within the SQS free tier
        "aws:cloudwatch/eventRule:EventRule",  # AWS service events are free
        "aws:cloudwatch/eventTarget:EventTarget",
        "aws:sns/topic:Topic",  # alert volumes stay in the SNS free tier
        "aws:backup/vault:Vault",  # its recovery points are priced with the backup plan
        "aws:backup/vaultLockConfiguration:VaultLockConfiguration",
        "aws:backup/selection:Selection",
        "aws:sns/topicPolicy:TopicPolicy",
        "aws:sns/topicSubscription:TopicSubscription",
        "aws:budgets/budget:Budget",  # the first two budgets of an account are free
        "aws:codebuild/webhook:Webhook",  # its builds are priced with the project
        "aws:costexplorer/anomalyMonitor:AnomalyMonitor",
        "aws:costexplorer/anomalySubscription:AnomalySubscription",
        "aws:costexplorer/costAllocationTag:CostAllocationTag",
    }
)


def layer_of(resource: Resource, stack: Stack) -> str:
    """The `<layer>` of the nearest `modelyard:<layer>:*` ancestor, else the project's name (each
    resource's answer is kept on the stack: siblings share their ancestors' walk)."""
    layers: dict[str, str] = stack.derived.setdefault("layers", {})
    if resource.urn in layers:
        return layers[resource.urn]
    path: list[str] = []
    current: Resource | None = resource
    layer = None
    while current is not None and len(path) < 64:
        if current.urn in layers:
            layer = layers[current.urn]
            break
        path.append(current.urn)
        if current.type.startswith("modelyard:"):
            layer = current.type.split(":")[1]
            break
        if current.type.startswith("pulumi:providers:"):
            layer = "providers"
            break
        current = stack.by_urn.get(current.parent or "")
    if layer is None:
        layer = resource.project or "other"
        path = [resource.urn]  # only this resource: an ancestor's own answer may be its project's
    for urn in path:
        layers[urn] = layer
    return layer


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value) if known(value) else default
    except (TypeError, ValueError):
        return default


def _gib(value: Any) -> int:
    """`50`, `"50"` or `"50Gi"` as GiB."""
    if isinstance(value, int | float):
        return int(value)
    match = re.match(r"^(\d+)(Gi|G)?$", str(value)) if known(value) else None
    return int(match.group(1)) if match else 0


@dataclass
class _Pricer:
    stack: Stack
    book: PriceBook
    prices: RegionPrices
    usage: Usage
    notes: list[str]
    _node_classes: dict[str, Resource] | None = None

    @property
    def hours(self) -> int:
        return self.book.hours_per_month

    def node_classes(self) -> dict[str, Resource]:
        """EC2NodeClasses by name, indexed once per estimate."""
        if self._node_classes is None:
            self._node_classes = {
                str(c.get("metadata", "name")): c
                for c in self.stack.of_type("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")
            }
        return self._node_classes

    def svc(self, key: str) -> float:
        return self.prices.services_usd[key].usd

    def ec2(self, instance_type: str, capacity: str = "on-demand") -> float | None:
        price = self.prices.ec2_hourly_usd.get(instance_type)
        if price is None:
            return None
        return price.usd * (1 - self.book.spot_discount) if capacity == "spot" else price.usd

    # -- one function per priced type: (kind, baseline, ceiling, basis) -----------------------

    def eks(self, r: Resource) -> tuple[Kind, float, float, str]:
        cost = self.svc("eks_cluster_hour") * self.hours
        return "fixed", cost, cost, f"control plane {self.svc('eks_cluster_hour')}/h x {self.hours} h"

    def nat(self, r: Resource) -> tuple[Kind, float, float, str]:
        hourly = self.svc("nat_gateway_hour") * self.hours
        data = self.svc("nat_gateway_gb") * self.usage.nat_gateway_gb_per_month
        basis = (
            f"{self.svc('nat_gateway_hour')}/h x {self.hours} h + {self.usage.nat_gateway_gb_per_month:g} GB (usage)"
        )
        return "fixed", hourly + data, hourly + data, basis

    def eip(self, r: Resource) -> tuple[Kind, float, float, str]:
        cost = self.svc("public_ipv4_hour") * self.hours
        return "fixed", cost, cost, f"public IPv4 {self.svc('public_ipv4_hour')}/h"

    def endpoint(self, r: Resource) -> tuple[Kind, float, float, str]:
        if r.get("vpcEndpointType") != "Interface":
            return "free", 0.0, 0.0, "gateway endpoint"
        subnets = r.get("subnetIds")
        azs = len(subnets) if isinstance(subnets, list) else 1
        cost = self.svc("interface_endpoint_az_hour") * self.hours * azs
        cost += self.svc("interface_endpoint_gb") * self.usage.interface_endpoint_gb_per_month
        return "fixed", cost, cost, f"{azs} AZ x {self.svc('interface_endpoint_az_hour')}/h + data (usage)"

    def kms(self, r: Resource) -> tuple[Kind, float, float, str]:
        cost = self.svc("kms_key_month")
        return "fixed", cost, cost, "1 key-month"

    def bucket(self, r: Resource) -> tuple[Kind, float, float, str]:
        name = str(r.get("bucket") or r.name)
        u = self.usage
        model = u.model_bucket_pattern in name or u.model_replica_pattern in name
        gb = u.model_store_gb if model else u.other_bucket_gb
        cost = gb * self.svc("s3_standard_gb_month")
        return "usage", cost, cost, f"{gb:g} GB S3 Standard (usage)"

    #: The metrics S3 Replication publishes per rule with metrics on: bytes and operations pending, latency and
    #: operations failed.
    REPLICATION_METRICS = 4

    def replication(self, r: Resource) -> tuple[Kind, float, float, str]:
        rules = sequence(r.get("rules"))
        metered = sum(1 for rule in rules if dig(rule, "destination", "metrics", "status") == "Enabled")
        metrics = metered * self.REPLICATION_METRICS * self.svc("cloudwatch_metric_month")
        transfer = len(rules) * self.usage.model_push_gb_per_month * self.svc("s3_inter_region_gb")
        return (
            "usage",
            metrics + transfer,
            metrics + transfer,
            f"{metered * self.REPLICATION_METRICS} replication metrics x {self.svc('cloudwatch_metric_month')} + "
            f"{self.usage.model_push_gb_per_month:g} GB pushed a month x {self.svc('s3_inter_region_gb')} (usage)",
        )

    def log_group(self, r: Resource) -> tuple[Kind, float, float, str]:
        cost = self.usage.log_ingest_gb_per_month * self.svc("cloudwatch_logs_ingest_gb")
        cost += self.usage.log_storage_gb * self.svc("cloudwatch_logs_storage_gb_month")
        return (
            "usage",
            cost,
            cost,
            f"{self.usage.log_ingest_gb_per_month:g} GB ingested, {self.usage.log_storage_gb:g} GB kept (usage)",
        )

    def ecr(self, r: Resource) -> tuple[Kind, float, float, str]:
        cost = self.usage.ecr_storage_gb * self.svc("ecr_storage_gb_month")
        return "usage", cost, cost, f"{self.usage.ecr_storage_gb:g} GB stored (usage)"

    def build_project(self, r: Resource) -> tuple[Kind, float, float, str]:
        compute = str(r.get("environment", "computeType") or "")
        key = f"codebuild_{compute.lower().removeprefix('build_')}_minute"
        if not compute or key not in self.prices.services_usd:
            return "not priced", 0.0, 0.0, f"no price for compute type {compute or 'unknown'} ({key})"
        minutes = self.usage.ci_runner_minutes_per_month
        cost = minutes * self.svc(key)
        return "usage", cost, cost, f"{minutes:g} build minutes a month at {self.svc(key)}/min (usage)"

    def load_balancer(self, r: Resource) -> tuple[Kind, float, float, str]:
        cost = self.svc("load_balancer_hour") * self.hours
        return "fixed", cost, cost, f"{self.svc('load_balancer_hour')}/h before capacity units"

    def ebs(self, r: Resource) -> tuple[Kind, float, float, str]:
        gib = _int(r.get("size"))
        cost = gib * self.svc("ebs_gp3_gb_month")
        return "fixed", cost, cost, f"{gib} GiB gp3"

    def node_group(self, r: Resource) -> tuple[Kind, float, float, str] | None:
        types = sequence(r.get("instanceTypes"))
        template = next(
            (self.stack.by_urn[u] for u in r.property_dependencies.get("launchTemplate", ()) if u in self.stack.by_urn),
            None,
        )
        instance = types[0] if types else (template.get("instanceType") if template else None)
        capacity = "spot" if r.get("capacityType") == "SPOT" else "on-demand"
        price = self.ec2(str(instance), capacity) if instance else None
        if price is None:
            return None
        desired, most = _int(r.get("scalingConfig", "desiredSize"), 1), _int(r.get("scalingConfig", "maxSize"), 1)
        desired = min(desired, most)  # EKS refuses a desired size over the maximum
        disk = _gib(template.get("blockDeviceMappings", 0, "ebs", "volumeSize")) if template else 0
        disk = disk or _int(r.get("diskSize"), 20)
        per_node = price * self.hours + disk * self.svc("ebs_gp3_gb_month")
        basis = f"{desired} (max {most}) x {instance} {capacity} {price:.4g}/h + {disk} GiB gp3 each"
        return "fixed", desired * per_node, most * per_node, basis

    def service(self, r: Resource) -> tuple[Kind, float, float, str] | None:
        """A Service of type LoadBalancer makes AWS create a load balancer (the AWS Load Balancer
        Controller or the in-tree cloud provider); other Services cost nothing by themselves."""
        kind = r.get("spec", "type")
        if kind == "LoadBalancer":
            cost = self.svc("load_balancer_hour") * self.hours
            return (
                "fixed",
                cost,
                cost,
                f"a load balancer for a LoadBalancer Service, {self.svc('load_balancer_hour')}/h",
            )
        if kind is None and r.inputs.get("spec") is not None and not isinstance(r.get("spec"), Mapping):
            return "not priced", 0.0, 0.0, "spec is secret or not known yet: it may ask for a load balancer"
        return "free", 0.0, 0.0, "no load balancer"

    def gateway(self, r: Resource) -> tuple[Kind, float, float, str] | None:
        """A Gateway Envoy Gateway serves gets a Service for its proxies, of the type its class's EnvoyProxy asks for
        (`envoyService.type`, LoadBalancer by default: api/v1alpha1/envoyproxy_types.go): a load balancer each."""
        class_name = r.get("spec", "gatewayClassName")
        gateway_class = next(
            (c for c in self.stack.of_type(GATEWAY_CLASS) if c.get("metadata", "name") == class_name), None
        )
        if gateway_class is None:
            return None  # another stack's class, or another controller: nothing known here
        ref = gateway_class.get("spec", "parametersRef")
        proxy = next(
            (
                e
                for e in self.stack.of_type(ENVOY_PROXY)
                if isinstance(ref, Mapping)
                and ref.get("kind") == "EnvoyProxy"
                and e.get("metadata", "name") == ref.get("name")
                and e.get("metadata", "namespace") == ref.get("namespace")
            ),
            None,
        )
        kind = dig(proxy.inputs, "spec", "provider", "kubernetes", "envoyService", "type") if proxy else None
        if (kind or "LoadBalancer") != "LoadBalancer":
            return "free", 0.0, 0.0, f"its proxies' Service is {kind}: no load balancer"
        cost = self.svc("load_balancer_hour") * self.hours
        return "fixed", cost, cost, f"its proxies' load balancer, {self.svc('load_balancer_hour')}/h"

    def backup_plan(self, r: Resource) -> tuple[Kind, float, float, str]:
        """AWS Backup's EBS snapshots of the volumes the backup tag marks (the StorageClasses that put it on every
        volume they provision): one full copy at least (snapshots after the first are incremental), and as
        ceiling a full copy per day kept (a volume rewritten daily)."""
        classes = {
            str(sc.get("metadata", "name"))
            for sc in self.stack.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
            if any(
                str(k).startswith("tagSpecification") and str(v).startswith(f"{BACKUP_TAG_KEY}=")
                for k, v in (sc.get("parameters") if isinstance(sc.get("parameters"), Mapping) else {}).items()
            )
        }
        size = sum(
            gib
            for release in self.stack.of_type("kubernetes:helm.sh/v3:Release")
            for cls, gib in release_volumes(release.get("values"))
            if cls in classes
        )
        kept = max((_int(dig(rule, "lifecycle", "deleteAfter")) for rule in sequence(r.get("rules"))), default=0)
        if not size:
            return "free", 0.0, 0.0, "no volume carries the backup tag"
        price = self.svc("ebs_snapshot_gb_month")
        basis = f"{size} GiB of tagged volumes in EBS snapshots at {price}/GB-month; "
        basis += f"ceiling {max(kept, 1)} daily full copies"
        return "fixed", size * price, size * price * max(kept, 1), basis

    def claim(self, r: Resource) -> tuple[Kind, float, float, str]:
        """A PersistentVolumeClaim makes the EBS CSI driver create a volume (gp3 here)."""
        size = _gib(r.get("spec", "resources", "requests", "storage") or 0)
        if not size:
            return "not priced", 0.0, 0.0, "a persistent volume whose size is not known"
        cost = size * self.svc("ebs_gp3_gb_month")
        return "fixed", cost, cost, f"{size} GiB EBS volume (gp3)"

    def stateful_set(self, r: Resource) -> tuple[Kind, float, float, str]:
        """Each replica of a StatefulSet gets one volume per volumeClaimTemplate."""
        templates = sequence(r.get("spec", "volumeClaimTemplates"))
        size = sum(_gib(dig(t, "spec", "resources", "requests", "storage") or 0) for t in templates)
        if not templates:
            return "free", 0.0, 0.0, "runs on priced nodes"
        if not size:
            return "not priced", 0.0, 0.0, "volume claim templates whose size is not known"
        replicas = max(_int(r.get("spec", "replicas"), 1), 1)
        cost = replicas * size * self.svc("ebs_gp3_gb_month")
        return "fixed", cost, cost, f"{replicas} x {size} GiB EBS volumes (gp3)"

    def release(self, r: Resource) -> tuple[Kind, float, float, str]:
        """Helm releases run on priced nodes; their persistent volumes are priced here (kube-prometheus-stack)."""
        values = r.get("values")
        volumes = sum(size for _, size in release_volumes(values))
        if not volumes:
            if r.inputs.get("values") is not None and not isinstance(values, Mapping):
                return "not priced", 0.0, 0.0, "values are secret or not known yet: its volumes cannot be sized"
            if _asks_for_storage(values):
                return "not priced", 0.0, 0.0, "its values ask for persistent volumes this estimator cannot size"
            return "free", 0.0, 0.0, "runs on priced nodes"
        cost = volumes * self.svc("ebs_gp3_gb_month")
        return "fixed", cost, cost, f"{volumes} GiB of gp3 volumes its values request"


def release_volumes(values: Any) -> list[tuple[str | None, int]]:
    """(StorageClass, GiB) of every persistent volume a kube-prometheus-stack release's values request, one per
    replica: Prometheus', Alertmanager's and Grafana's."""
    volumes: list[tuple[str | None, int]] = []
    for part in (dig(values, "prometheus", "prometheusSpec"), dig(values, "alertmanager", "alertmanagerSpec")):
        storage = dig(part, "storageSpec") or dig(part, "storage")
        spec = dig(storage, "volumeClaimTemplate", "spec")
        size = _gib(dig(spec, "resources", "requests", "storage") or 0)
        if size:
            volumes += [(as_name(dig(spec, "storageClassName")), size)] * max(_int(dig(part, "replicas"), 1), 1)
    grafana = dig(values, "grafana", "persistence")
    if dig(grafana, "enabled") is True and _gib(dig(grafana, "size") or 0):
        volumes.append((as_name(dig(grafana, "storageClassName")), _gib(dig(grafana, "size"))))
    return volumes


def _asks_for_storage(values: Any) -> bool:
    """Chart values that enable persistence anywhere (`persistence.enabled: true`, a volumeClaimTemplate)."""
    if isinstance(values, Mapping):
        if dig(values, "persistence", "enabled") is True or "volumeClaimTemplate" in values:
            return True
        return any(_asks_for_storage(v) for v in values.values())
    if isinstance(values, list):
        return any(_asks_for_storage(v) for v in values)
    return False


def _pod_gpus(pod_spec: Any) -> int:
    return sum(_int(dig(container, "resources", "limits", GPU)) for container in sequence(dig(pod_spec, "containers")))


# Placeholder pods that hold warm GPUs (infra/karpenter.py) run at WARM_PRIORITY_CLASS; models preempt
# them, so they set a floor under a pool rather than adding to what models use.


def pinned_gpu_pods(stack: Stack) -> dict[str, list[int]]:
    """Per GPU pool, the GPU count of every pod that must run there at minimum: Deployments at their
    replicas and InferenceServices at their minReplicas, selecting the pool by its label. Warm-capacity
    placeholders count only for the GPUs the models leave unused."""
    pods: dict[str, list[int]] = defaultdict(list)
    warm: dict[str, list[int]] = defaultdict(list)
    for r in stack.of_type("kubernetes:apps/v1:Deployment"):
        template = r.get("spec", "template", "spec")
        pool = dig(template, "nodeSelector", GPU_POOL_LABEL)
        gpus = _pod_gpus(template)
        if isinstance(pool, str) and gpus:
            target = warm if dig(template, "priorityClassName") == WARM_PRIORITY_CLASS else pods
            target[pool] += [gpus] * _int(r.get("spec", "replicas"), 1)
    for r in stack.of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService"):
        predictor = r.get("spec", "predictor")
        pool = dig(predictor, "nodeSelector", GPU_POOL_LABEL)
        gpus = _int(dig(predictor, "model", "resources", "limits", GPU)) or _pod_gpus(predictor)
        if isinstance(pool, str) and gpus:
            pods[pool] += [gpus] * max(_int(dig(predictor, "minReplicas"), 1), 0)
    for pool, placeholders in warm.items():
        spare = sum(placeholders) - sum(pods.get(pool, []))
        pods[pool] += [1] * max(spare, 0)
    return dict(pods)


def _requirement(pool: Resource, key: str) -> list[str]:
    for req in sequence(pool.get("spec", "template", "spec", "requirements")):
        if dig(req, "key") == key and dig(req, "operator") == "In":
            return [str(v) for v in sequence(dig(req, "values"))]
    return []


def pack(pods: list[int], per_node: int) -> int:
    """Nodes needed for `pods` (GPUs each) on nodes of `per_node` GPUs: first fit, largest first."""
    free: list[int] = []
    for need in sorted(pods, reverse=True):
        for i, room in enumerate(free):
            if room >= need:
                free[i] -= need
                break
        else:
            free.append(per_node - need)
    return len(free)


def _within(pods: list[int], limit: int) -> tuple[list[int], int]:
    """The pods Karpenter can place under a pool's GPU limit (largest first, as they fit), and the GPUs of
    those it cannot: a pool never runs more than its limit, so neither does the baseline."""
    if not limit:
        return list(pods), 0
    placed, used = [], 0
    for need in sorted(pods, reverse=True):
        if used + need <= limit:
            placed.append(need)
            used += need
    return placed, sum(pods) - used


def _karpenter_pool(p: _Pricer, r: Resource, pinned: Mapping[str, list[int]]) -> tuple[Kind, float, float, str] | None:
    name = str(r.get("spec", "template", "metadata", "labels", GPU_POOL_LABEL) or r.get("metadata", "name") or r.name)
    types = [t for t in _requirement(r, "node.kubernetes.io/instance-type") if t in p.prices.ec2_hourly_usd]
    capacities = _requirement(r, "karpenter.sh/capacity-type") or ["on-demand"]
    if not types:
        return None
    limit = _int(r.get("spec", "limits", GPU))
    # Karpenter launches spot first when a pool allows it; the ceiling assumes on-demand (spot can run out).
    cheap = "spot" if "spot" in capacities else "on-demand"
    worst = "on-demand" if "on-demand" in capacities else "spot"
    gpus = {t: p.book.gpus(t) or 1 for t in types}
    node_class = p.node_classes().get(str(r.get("spec", "template", "spec", "nodeClassRef", "name")))
    disk = _gib(node_class.get("spec", "blockDeviceMappings", 0, "ebs", "volumeSize")) if node_class else 0
    disk_month = disk * p.svc("ebs_gp3_gb_month")
    # A pod asking for more GPUs than any type of the pool has never runs: it costs nothing, is said, and
    # does not take the pods that do fit down with it (the plan refuses such a catalog before this).
    largest = max(gpus.values())
    wanted = pinned.get(name, [])
    unschedulable = [g for g in wanted if g > largest]
    pods, pending = _within([g for g in wanted if g <= largest], limit)
    baseline, base_basis = 0.0, "scales to zero, nothing pinned"
    if pods:
        options = []
        for t in types:
            if gpus[t] >= max(pods):
                nodes = pack(pods, gpus[t])
                options.append((nodes * ((p.ec2(t, cheap) or 0) * p.hours + disk_month), nodes, t))
        baseline, nodes, best = min(options)
        base_basis = f"{sum(pods)} pinned GPUs on {nodes} x {best} {cheap}"
    if unschedulable:
        base_basis += (
            f" ({len(unschedulable)} pinned pods of {max(unschedulable)} GPUs fit no node of the pool, at most "
            f"{largest} GPUs: never scheduled, not priced)"
        )
    if pending:
        base_basis += f" ({pending} more pinned GPUs over the pool's limit of {limit} stay Pending)"
    per_gpu = min(types, key=lambda t: (p.ec2(t, worst) or 0) / gpus[t])
    nodes = math.ceil(limit / gpus[per_gpu]) if limit else 0
    ceiling = nodes * ((p.ec2(per_gpu, worst) or 0) * p.hours + disk_month)
    if not limit:
        # No GPU limit: nothing bounds the pool; the ceiling is at least what is pinned to it.
        ceiling = max(ceiling, baseline)
        base_basis += "; no GPU limit, so no ceiling beyond the pinned GPUs"
    return (
        "fixed",
        baseline,
        ceiling,
        f"{base_basis}; ceiling {limit} GPUs = {nodes} x {per_gpu} {worst}; {disk} GiB gp3 per node",
    )


def pinned_cpu_pods(stack: Stack) -> list[tuple[int, int, str | None]]:
    """(CPU millicores, memory MiB, spread group) of every pod that must run on the CPU pool at minimum: each
    InferenceService selecting the pool's label, at its minReplicas, with the requests of all its containers;
    replicas spread across zones (a topology spread that refuses to schedule otherwise) share the group, its
    name, and never a node."""
    key, value = CPU_POOL_LABEL
    pods = []
    for r in stack.of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService"):
        predictor = r.get("spec", "predictor")
        if dig(predictor, "nodeSelector", key) != value:
            continue
        cpu = memory = 0
        for container in sequence(dig(predictor, "containers")):
            requests = dig(container, "resources", "requests")
            cpu_q, memory_q = dig(requests, "cpu"), dig(requests, "memory")
            if isinstance(cpu_q, str | int | float) and known(cpu_q):
                cpu += fit.quantity_m(str(cpu_q))
            if isinstance(memory_q, str) and known(memory_q):
                memory += fit.quantity_mi(memory_q)
        spread = any(
            dig(c, "topologyKey") == ZONE_LABEL and dig(c, "whenUnsatisfiable") == "DoNotSchedule"
            for c in sequence(dig(predictor, "topologySpreadConstraints"))
        )
        group = str(r.get("metadata", "name") or r.name) if spread else None
        pods += [(cpu, memory, group)] * max(_int(dig(predictor, "minReplicas"), 1), 0)
    return pods


def pack_2d(pods: list[tuple[int, int, str | None]], node: fit.Node) -> int | None:
    """Nodes of `node`'s shape that hold `pods` (CPU, memory, spread group): first fit, largest first, no two
    pods of a group on one node; None if a pod fits no node."""
    free: list[tuple[list[int], set[str]]] = []
    for cpu, memory, group in sorted(pods, key=lambda pod: (pod[0], pod[1]), reverse=True):
        if cpu > node.cpu_m or memory > node.memory_mi:
            return None
        for room, groups in free:
            if room[0] >= cpu and room[1] >= memory and (group is None or group not in groups):
                room[0] -= cpu
                room[1] -= memory
                groups.update({group} if group else set())
                break
        else:
            free.append(([node.cpu_m - cpu, node.memory_mi - memory], {group} if group else set()))
    return len(free)


def _karpenter_cpu_pool(
    p: _Pricer, r: Resource, pods: list[tuple[int, int, str | None]]
) -> tuple[Kind, float, float, str] | None:
    """The CPU model pool: the nodes its pinned pods need on the cheapest type that holds them, and as ceiling
    its CPU limit bought at the dearest price per vCPU."""
    types = [t for t in _requirement(r, "node.kubernetes.io/instance-type") if t in p.prices.ec2_hourly_usd]
    shapes = {t: fit.shape(t) for t in types}
    types = [t for t in types if shapes[t] is not None]
    if not types:
        return None
    capacities = _requirement(r, "karpenter.sh/capacity-type") or ["on-demand"]
    cheap = "spot" if "spot" in capacities else "on-demand"
    worst = "on-demand" if "on-demand" in capacities else "spot"
    node_class = p.node_classes().get(str(r.get("spec", "template", "spec", "nodeClassRef", "name")))
    disk = _gib(node_class.get("spec", "blockDeviceMappings", 0, "ebs", "volumeSize")) if node_class else 0
    disk_month = disk * p.svc("ebs_gp3_gb_month")
    baseline, basis = 0.0, "scales to zero, nothing pinned"
    if pods:
        options = []
        for t in types:
            node = fit.allocatable(t, fit.CPU_NODE_DAEMONSETS)
            nodes = pack_2d(pods, node) if node is not None else None
            if nodes is not None:
                options.append((nodes * ((p.ec2(t, cheap) or 0) * p.hours + disk_month), nodes, t))
        if options:
            baseline, nodes, best = min(options)
            basis = f"{len(pods)} pinned pods on {nodes} x {best} {cheap}"
        else:
            basis = f"{len(pods)} pinned pods fit no node of the pool: never scheduled, not priced"
    limit = _int(r.get("spec", "limits", "cpu"))
    per_vcpu = max(types, key=lambda t: (p.ec2(t, worst) or 0) / shapes[t][0])  # type: ignore[index]
    vcpus = shapes[per_vcpu][0]  # type: ignore[index]
    nodes = limit // vcpus if limit else 0
    ceiling = max(nodes * ((p.ec2(per_vcpu, worst) or 0) * p.hours + disk_month), baseline)
    bound = f"ceiling {limit} vCPUs = {nodes} x {per_vcpu} {worst}" if limit else "no CPU limit, no ceiling"
    return "fixed", baseline, ceiling, f"{basis}; {bound}; {disk} GiB gp3 per node"


def region_of(stack: Stack) -> str:
    for r in stack.of_type("pulumi:providers:aws"):
        region = r.get("region")
        if isinstance(region, str) and known(region):
            return region
    return DEFAULT_REGION


def estimate(
    resources: Iterable[Resource] | Stack,
    usage: Usage | None = None,
    region: str | None = None,
    prices: PriceBook | None = None,
) -> Estimate:
    stack = resources if isinstance(resources, Stack) else Stack(resources)
    if usage is None and region is None and prices is None:
        # The default estimate of a stack is asked for by several consumers (policy rules, the review).
        cached: Estimate | None = stack.derived.get("estimate")
        if cached is None:
            cached = stack.derived["estimate"] = _estimate(stack, None, None)
        return cached
    return _estimate(stack, usage, region, prices)


def _estimate(stack: Stack, usage: Usage | None, region: str | None, prices: PriceBook | None = None) -> Estimate:
    book = prices or price_book()
    region = region or region_of(stack)
    notes: list[str] = []
    if region not in book.regions:
        notes.append(f"no prices for {region}; priced with {DEFAULT_REGION}")
        region = DEFAULT_REGION
    p = _Pricer(stack, book, book.region(region), usage or load_usage(), notes)
    pinned = pinned_gpu_pods(stack)
    pinned_cpu = pinned_cpu_pods(stack)
    rules: dict[str, Callable[[Resource], tuple[Kind, float, float, str] | None]] = {
        "aws:eks/cluster:Cluster": p.eks,
        "aws:ec2/natGateway:NatGateway": p.nat,
        "aws:ec2/eip:Eip": p.eip,
        "aws:ec2/vpcEndpoint:VpcEndpoint": p.endpoint,
        "aws:kms/key:Key": p.kms,
        "aws:s3/bucket:Bucket": p.bucket,
        "aws:s3/bucketV2:BucketV2": p.bucket,
        "aws:cloudwatch/logGroup:LogGroup": p.log_group,
        "aws:ecr/repository:Repository": p.ecr,
        "aws:codebuild/project:Project": p.build_project,
        "aws:lb/loadBalancer:LoadBalancer": p.load_balancer,
        "aws:alb/loadBalancer:LoadBalancer": p.load_balancer,
        "aws:ebs/volume:Volume": p.ebs,
        "aws:eks/nodeGroup:NodeGroup": p.node_group,
        "kubernetes:helm.sh/v3:Release": p.release,
        "kubernetes:helm.sh/v4:Chart": p.release,
        "kubernetes:core/v1:Service": p.service,
        "kubernetes:gateway.networking.k8s.io/v1:Gateway": p.gateway,
        "kubernetes:core/v1:PersistentVolumeClaim": p.claim,
        "kubernetes:apps/v1:StatefulSet": p.stateful_set,
        "aws:backup/plan:Plan": p.backup_plan,
        "aws:s3/bucketReplicationConfig:BucketReplicationConfig": p.replication,
        "kubernetes:karpenter.sh/v1:NodePool": lambda r: (
            _karpenter_cpu_pool(p, r, pinned_cpu)
            if r.get("spec", "template", "metadata", "labels", CPU_POOL_LABEL[0]) == CPU_POOL_LABEL[1]
            else _karpenter_pool(p, r, pinned)
        ),
    }
    items = []
    for r in stack.resources:
        if not r.type or r.type.startswith("modelyard:") or r.type == "pulumi:pulumi:Stack":
            continue
        layer = layer_of(r, stack)
        rule = rules.get(r.type)
        priced = rule(r) if rule else None
        if priced is not None:
            kind, baseline, ceiling, basis = priced
            items.append(Item(r.urn, r.type, layer, kind, round(baseline, 4), round(ceiling, 4), basis))
        elif r.type in FREE_TYPES or r.type.startswith(FREE_PREFIXES):
            items.append(Item(r.urn, r.type, layer, "free"))
        else:
            items.append(Item(r.urn, r.type, layer, "not priced", basis="no price rule for this type"))
    if any(" spot" in i.basis for i in items):
        notes.append(f"spot capacity at {book.spot_discount:.0%} off on-demand (an assumption, prices.yaml)")
    return Estimate(region, items, p.usage, book.hours_per_month, notes)
