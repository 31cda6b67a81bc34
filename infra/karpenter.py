"""Node capacity with Karpenter: the controller and its AWS plumbing, one NodePool per GPU pool and one for the
models that need no GPU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from modelyard.config import CpuPoolConfig, GpuPoolConfig
from modelyard.infra import iam
from modelyard.infra.eks import Cluster
from modelyard.infra.nodes import SYSTEM_POOL_LABEL, node_role
from modelyard.platform.common import helm_release, namespace
from modelyard.policies.governance import gpus
from modelyard.policies.governance.conventions import (
    CPU_POOL_LABEL,
    CPU_POOL_TAINT,
    GPU_CLASS_LABEL,
    GPU_POOL_LABEL,
    GPU_RESOURCE,
    WARM_CAPACITY_NAMESPACE,
    WARM_PRIORITY_CLASS,
)
from modelyard.tags import k8s_labels
from modelyard.versions import IMAGES, KARPENTER_AMI_ALIAS

NAMESPACE = "karpenter"
SERVICE_ACCOUNT = "karpenter"

GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}

#: EC2 events Karpenter handles gracefully (drain before the instance goes away).
INTERRUPTION_EVENTS: Mapping[str, dict[str, Any]] = {
    "health": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    "capacity-reservation": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"],
    },
}


def controller_policy(
    *, cluster_name: pulumi.Input[str], account: Any, queue_arn: pulumi.Input[str], node_role_arn: pulumi.Input[str]
) -> iam.Document:
    """Karpenter v1.12's controller policy, statement for statement as its reference CloudFormation has it
    (tests/references/karpenter-1.12.json, compared by tests/test_iam_references.py): scoped to this
    cluster by tags, to the region, and to this account's ARNs.

    Creating an instance profile is allowed on the tags the request carries (`aws:RequestTag`): a
    profile being created has no tags yet, so an `aws:ResourceTag` condition could never match it."""
    region = account.region
    partition = account.partition
    ec2 = pulumi.Output.concat("arn:", partition, ":ec2:", region, ":*:")
    owned = pulumi.Output.concat("kubernetes.io/cluster/", cluster_name)
    instance_profiles = pulumi.Output.concat("arn:", partition, ":iam::", account.account_id, ":instance-profile/*")
    cluster_arn = pulumi.Output.concat(
        "arn:", partition, ":eks:", region, ":", account.account_id, ":cluster/", cluster_name
    )
    # What RunInstances/CreateFleet create, and so what Karpenter tags at creation.
    launched = [
        pulumi.Output.concat(ec2, kind)
        for kind in (
            "fleet/*",
            "instance/*",
            "volume/*",
            "network-interface/*",
            "launch-template/*",
            "spot-instances-request/*",
        )
    ]
    # Condition blocks keyed by Outputs (the cluster's tag key) and by plain strings.
    owned_now: dict[Any, Any] = {pulumi.Output.concat("aws:ResourceTag/", owned): "owned"}
    owned_on_create: dict[Any, Any] = {
        pulumi.Output.concat("aws:RequestTag/", owned): "owned",
        "aws:RequestTag/eks:eks-cluster-name": cluster_name,
    }
    profile_owned_now = {**owned_now, "aws:ResourceTag/topology.kubernetes.io/region": region}
    profile_owned_on_create = {**owned_on_create, "aws:RequestTag/topology.kubernetes.io/region": region}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowScopedEC2InstanceAccessActions",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                "Resource": [
                    pulumi.Output.concat("arn:", partition, ":ec2:", region, "::", kind)
                    for kind in ("image/*", "snapshot/*")
                ]
                + [
                    pulumi.Output.concat(ec2, kind)
                    for kind in ("security-group/*", "subnet/*", "capacity-reservation/*", "placement-group/*")
                ],
            },
            {
                "Sid": "AllowScopedEC2LaunchTemplateAccessActions",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                "Resource": pulumi.Output.concat(ec2, "launch-template/*"),
                "Condition": {
                    "StringEquals": owned_now,
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedEC2InstanceActionsWithTags",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
                "Resource": launched,
                "Condition": {
                    "StringEquals": owned_on_create,
                    "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedResourceCreationTagging",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": launched,
                "Condition": {
                    "StringEquals": {
                        **owned_on_create,
                        "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                    },
                    "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedResourceTagging",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": pulumi.Output.concat(ec2, "instance/*"),
                "Condition": {
                    "StringEquals": owned_now,
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                    "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                    "ForAllValues:StringEquals": {
                        "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                    },
                },
            },
            {
                "Sid": "AllowScopedDeletion",
                "Effect": "Allow",
                "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
                "Resource": [pulumi.Output.concat(ec2, kind) for kind in ("instance/*", "launch-template/*")],
                "Condition": {
                    "StringEquals": owned_now,
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowPassingInstanceRole",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": node_role_arn,
                "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}},
            },
            {
                "Sid": "AllowScopedInstanceProfileCreationActions",
                "Effect": "Allow",
                "Action": ["iam:CreateInstanceProfile"],
                "Resource": instance_profiles,
                "Condition": {
                    "StringEquals": profile_owned_on_create,
                    "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            },
            {
                "Sid": "AllowScopedInstanceProfileTagActions",
                "Effect": "Allow",
                "Action": ["iam:TagInstanceProfile"],
                "Resource": instance_profiles,
                "Condition": {
                    "StringEquals": {**profile_owned_now, **profile_owned_on_create},
                    "StringLike": {
                        "aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                        "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*",
                    },
                },
            },
            {
                "Sid": "AllowScopedInstanceProfileActions",
                "Effect": "Allow",
                "Action": [
                    "iam:AddRoleToInstanceProfile",
                    "iam:RemoveRoleFromInstanceProfile",
                    "iam:DeleteInstanceProfile",
                ],
                "Resource": instance_profiles,
                "Condition": {
                    "StringEquals": profile_owned_now,
                    "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            },
            {
                "Sid": "AllowAPIServerEndpointDiscovery",
                "Effect": "Allow",
                "Action": "eks:DescribeCluster",
                "Resource": cluster_arn,
            },
            {
                "Sid": "AllowInterruptionQueueActions",
                "Effect": "Allow",
                "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
                "Resource": queue_arn,
            },
            {
                "Sid": "AllowZonalShiftStatusReadOnly",
                "Effect": "Allow",
                "Action": ["arc-zonal-shift:GetManagedResource"],
                "Resource": cluster_arn,
            },
            {
                "Sid": "AllowRegionalReadActions",
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeCapacityReservations",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstances",
                    "ec2:DescribeInstanceTypeOfferings",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplates",
                    "ec2:DescribePlacementGroups",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSpotPriceHistory",
                    "ec2:DescribeSubnets",
                ],
                # Describe calls do not support resource-level permissions; the region condition bounds them.
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
            },
            {
                "Sid": "AllowSSMReadActions",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": pulumi.Output.concat("arn:", partition, ":ssm:", region, "::parameter/aws/service/*"),
            },
            {
                "Sid": "AllowPricingReadActions",
                "Effect": "Allow",
                "Action": "pricing:GetProducts",
                # The Pricing API has no resources to scope to.
                "Resource": "*",
            },
            {
                "Sid": "AllowUnscopedInstanceProfileListAction",
                "Effect": "Allow",
                # ListInstanceProfiles has no resource-level permissions.
                "Action": "iam:ListInstanceProfiles",
                "Resource": "*",
            },
            {
                "Sid": "AllowInstanceProfileReadActions",
                "Effect": "Allow",
                "Action": "iam:GetInstanceProfile",
                "Resource": instance_profiles,
            },
            {
                "Sid": "AllowUnscopedEC2DescribeInstanceStatus",
                "Effect": "Allow",
                # DescribeInstanceStatus has no resource-level permissions.
                "Action": "ec2:DescribeInstanceStatus",
                "Resource": "*",
            },
        ],
    }


def interruption_queue_policy(
    *, queue_arn: pulumi.Input[str], account_id: pulumi.Input[str], rule_arns: list[pulumi.Input[str]]
) -> iam.Document:
    """Only this account's interruption rules may send to the queue, over TLS.

    Tighter than Karpenter's reference, which lets any EventBridge rule (any account's) and the SQS
    service send: a forged interruption message would make Karpenter drain and replace GPU nodes."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EventBridgeDeliversInterruptions",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnEquals": {"aws:SourceArn": rule_arns},
                },
            },
            iam.deny_insecure_transport([queue_arn]),
        ],
    }


@dataclass(frozen=True, kw_only=True)
class KarpenterArgs:
    cluster: Cluster
    pools: Sequence[GpuPoolConfig]
    cpu_pool: CpuPoolConfig
    #: Tags for instances and volumes Karpenter launches (default tags do not reach them).
    tags: Mapping[str, str]
    replicas: int
    #: Resources the controller must wait for (the system node group it runs on).
    depends_on: Sequence[pulumi.Resource] = ()


class Karpenter(pulumi.ComponentResource):
    """Karpenter (pinned chart) with Pod Identity credentials, an interruption queue fed by EventBridge,
    a node role with an EKS access entry, and per GPU pool an EC2NodeClass (encrypted gp3, IMDSv2,
    explicit tags) and a NodePool (instance types, capacity types, GPU taint and labels, GPU limit,
    consolidation and disruption budget), and the same pair for CPU models (tainted, apart from the system
    nodes). Pools that do not scale to zero keep warm GPUs with
    low-priority placeholder pods that real models preempt."""

    node_pools: pulumi.Output[list[dict[str, Any]]]
    cpu_pool: pulumi.Output[dict[str, Any]]
    #: The namespaces this component created.
    namespaces: list[str]

    def __init__(self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:infra:Karpenter", name, None, opts)
        cluster, account = args.cluster, args.cluster.account
        child = pulumi.ResourceOptions(parent=self)
        labels = k8s_labels(args.tags)

        nodes = node_role(
            f"{name}-node-role",
            description="Nodes launched by Karpenter",
            account_id=account.account_id,
            partition=account.partition,
            parent=self,
        )
        aws.eks.AccessEntry(
            f"{name}-node-access", cluster_name=cluster.name, principal_arn=nodes.arn, type="EC2_LINUX", opts=child
        )

        queue = aws.sqs.Queue(
            f"{name}-interruptions",
            name=cluster.name,
            message_retention_seconds=300,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        rules = []
        for event, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{event}",
                description=f"Karpenter interruption handling: {pattern['detail-type'][0]}",
                event_pattern=iam.to_json(pattern),
                opts=child,
            )
            aws.cloudwatch.EventTarget(f"{name}-{event}-target", rule=rule.name, arn=queue.arn, opts=child)
            rules.append(rule)
        aws.sqs.QueuePolicy(
            f"{name}-interruptions-policy",
            queue_url=queue.url,
            policy=iam.to_json(
                interruption_queue_policy(
                    queue_arn=queue.arn, account_id=account.account_id, rule_arns=[r.arn for r in rules]
                )
            ),
            opts=child,
        )

        controller = aws.iam.Role(
            f"{name}-controller-role",
            description="Karpenter controller (Pod Identity, karpenter/karpenter only)",
            assume_role_policy=iam.to_json(
                iam.pod_identity_trust(account.account_id, cluster.arn, NAMESPACE, SERVICE_ACCOUNT)
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-controller-policy",
            role=controller.id,
            policy=iam.to_json(
                controller_policy(
                    cluster_name=cluster.name, account=account, queue_arn=queue.arn, node_role_arn=nodes.arn
                )
            ),
            opts=child,
        )
        association = aws.eks.PodIdentityAssociation(
            f"{name}-controller-identity",
            cluster_name=cluster.name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            role_arn=controller.arn,
            opts=child,
        )

        ns = namespace(f"{name}-ns", NAMESPACE, labels, child)
        release = helm_release(
            f"{name}-release",
            "karpenter",
            namespace=ns.metadata["name"],
            values={
                "settings": {"clusterName": cluster.name, "interruptionQueue": queue.name},
                "serviceAccount": {"name": SERVICE_ACCOUNT},
                "replicas": args.replicas,
                "nodeSelector": dict([SYSTEM_POOL_LABEL]),
                "additionalLabels": labels,
                "controller": {
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "512Mi"},
                        "limits": {"cpu": "1", "memory": "1Gi"},
                    }
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[association, *args.depends_on]),
        )

        pools = []
        for pool in args.pools:
            pools.append(self._pool(name, pool, cluster, nodes, release, args.tags, labels))
        cpu_pool = self._cpu_pool(name, args.cpu_pool, cluster, nodes, release, args.tags, labels)
        self.namespaces = [NAMESPACE]
        if any(not p.scale_to_zero for p in args.pools):
            self._warm_capacity(name, [p for p in args.pools if not p.scale_to_zero], release, labels)
            self.namespaces.append(WARM_CAPACITY_NAMESPACE)

        self.node_pools = pulumi.Output.from_input(pools)
        self.cpu_pool = pulumi.Output.from_input(cpu_pool)
        self.register_outputs({"node_pools": self.node_pools, "cpu_pool": self.cpu_pool})

    def _node_pool(
        self,
        name: str,
        pool_name: str,
        *,
        labels: Mapping[str, str],
        requirements: list[dict[str, Any]],
        taint: Mapping[str, str],
        limits: Mapping[str, str],
        consolidate_after: str,
        disruption_budget_percent: int,
        disk_gib: int,
        nodes: aws.iam.Role,
        cluster: Cluster,
        release: k8s.helm.v3.Release,
        tags: Mapping[str, str],
    ) -> None:
        """An EC2NodeClass (encrypted gp3, IMDSv2 with one hop, explicit tags) and its NodePool (the
        requirements, a taint, a limit, consolidation and a disruption budget)."""
        opts = pulumi.ResourceOptions(parent=self, depends_on=[release])
        k8s.apiextensions.CustomResource(
            f"{name}-nodeclass",
            api_version="karpenter.k8s.aws/v1",
            kind="EC2NodeClass",
            metadata={"name": pool_name, "labels": dict(labels)},
            spec={
                "role": nodes.name,
                "amiSelectorTerms": [{"alias": KARPENTER_AMI_ALIAS}],
                "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": cluster.name}}],
                "securityGroupSelectorTerms": [{"tags": {"aws:eks:cluster-name": cluster.name}}],
                "metadataOptions": {
                    "httpEndpoint": "enabled",
                    "httpProtocolIPv6": "disabled",
                    "httpPutResponseHopLimit": 1,
                    "httpTokens": "required",
                },
                "blockDeviceMappings": [
                    {
                        "deviceName": "/dev/xvda",
                        "ebs": {
                            "volumeSize": f"{disk_gib}Gi",
                            "volumeType": "gp3",
                            "encrypted": True,
                            "deleteOnTermination": True,
                        },
                    }
                ],
                "tags": dict(tags),
            },
            opts=opts,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-nodepool",
            api_version="karpenter.sh/v1",
            kind="NodePool",
            metadata={"name": pool_name, "labels": dict(labels)},
            spec={
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": pool_name},
                        "requirements": requirements,
                        "taints": [dict(taint)],
                        "expireAfter": "720h",
                    },
                },
                "limits": dict(limits),
                "disruption": {
                    "consolidationPolicy": "WhenEmptyOrUnderutilized",
                    "consolidateAfter": consolidate_after,
                    "budgets": [{"nodes": f"{disruption_budget_percent}%"}],
                },
            },
            opts=opts,
        )

    @staticmethod
    def _requirements(families: list[str], pool: GpuPoolConfig | CpuPoolConfig) -> list[dict[str, Any]]:
        return [
            {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": families},
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(pool.instance_types)},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(pool.capacity_types)},
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        ]

    def _pool(
        self,
        name: str,
        pool: GpuPoolConfig,
        cluster: Cluster,
        nodes: aws.iam.Role,
        release: k8s.helm.v3.Release,
        tags: Mapping[str, str],
        labels: Mapping[str, str],
    ) -> dict[str, Any]:
        pool_name = f"gpu-{pool.name}"
        pool_labels = {GPU_POOL_LABEL: pool.name, GPU_CLASS_LABEL: pool.gpu_class}
        self._node_pool(
            f"{name}-{pool.name}",
            pool_name,
            labels={**labels, **pool_labels},
            requirements=self._requirements(sorted({gpus.family_of(t) for t in pool.instance_types}), pool),
            taint=GPU_TAINT,
            limits={GPU_RESOURCE: str(pool.max_gpus)},
            consolidate_after=pool.consolidate_after,
            disruption_budget_percent=pool.disruption_budget_percent,
            disk_gib=pool.disk_gib,
            nodes=nodes,
            cluster=cluster,
            release=release,
            tags={**tags, GPU_POOL_LABEL: pool.name},
        )
        return {
            "name": pool.name,
            "gpuClass": pool.gpu_class,
            "nodePool": pool_name,
            "nodeSelector": pool_labels,
            "toleration": {
                "key": GPU_TAINT["key"],
                "operator": "Equal",
                "value": GPU_TAINT["value"],
                "effect": GPU_TAINT["effect"],
            },
            "instanceTypes": list(pool.instance_types),
            "capacityTypes": list(pool.capacity_types),
            "minGpus": pool.min_gpus,
            "maxGpus": pool.max_gpus,
        }

    def _cpu_pool(
        self,
        name: str,
        pool: CpuPoolConfig,
        cluster: Cluster,
        nodes: aws.iam.Role,
        release: k8s.helm.v3.Release,
        tags: Mapping[str, str],
        labels: Mapping[str, str],
    ) -> dict[str, Any]:
        """The pool for models that need no GPU: its label is their node selector, its taint keeps every other
        pod off (the system node group runs the platform; a busy model must not starve it)."""
        key, value = CPU_POOL_LABEL
        self._node_pool(
            f"{name}-{value}",
            value,
            labels={**labels, key: value},
            requirements=self._requirements(sorted({t.split(".")[0] for t in pool.instance_types}), pool),
            taint=CPU_POOL_TAINT,
            limits={"cpu": str(pool.max_vcpus)},
            consolidate_after=pool.consolidate_after,
            disruption_budget_percent=pool.disruption_budget_percent,
            disk_gib=pool.disk_gib,
            nodes=nodes,
            cluster=cluster,
            release=release,
            tags={**tags, key: value},
        )
        return {
            "nodePool": value,
            "nodeSelector": {key: value},
            "toleration": {**CPU_POOL_TAINT, "operator": "Equal"},
            "instanceTypes": list(pool.instance_types),
            "capacityTypes": list(pool.capacity_types),
            "maxVcpus": pool.max_vcpus,
        }

    def _warm_capacity(
        self, name: str, pools: Sequence[GpuPoolConfig], release: k8s.helm.v3.Release, labels: Mapping[str, str]
    ) -> None:
        """Placeholder pods holding `min_gpus` GPUs per pool at a negative priority: Karpenter keeps nodes
        for them, and any model pod preempts them at once."""
        opts = pulumi.ResourceOptions(parent=self, depends_on=[release])
        warm_ns = namespace(f"{name}-warm-ns", WARM_CAPACITY_NAMESPACE, labels, opts)
        priority = k8s.scheduling.v1.PriorityClass(
            f"{name}-warm-priority",
            metadata={"name": WARM_PRIORITY_CLASS, "labels": dict(labels)},
            value=-10,
            preemption_policy="Never",
            global_default=False,
            description="Placeholder pods that keep warm GPU capacity; every workload preempts them.",
            opts=opts,
        )
        for pool in pools:
            app = {"app.kubernetes.io/name": "warm-capacity", GPU_POOL_LABEL: pool.name}
            # Plain dicts, as in the manifests; the SDK's TypedDicts add nothing a test would not catch.
            metadata: Any = {
                "name": f"warm-{pool.name}",
                "namespace": warm_ns.metadata["name"],
                "labels": {**labels, **app},
            }
            spec: Any = {
                "replicas": pool.min_gpus,
                "selector": {"matchLabels": app},
                "template": {
                    "metadata": {"labels": {**labels, **app}},
                    "spec": {
                        "priorityClassName": priority.metadata["name"],
                        "terminationGracePeriodSeconds": 0,
                        "automountServiceAccountToken": False,
                        "nodeSelector": {GPU_POOL_LABEL: pool.name},
                        "tolerations": [{"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}],
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65535,
                            "runAsGroup": 65535,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "pause",
                                "image": IMAGES["pause"],
                                "resources": {
                                    "requests": {"cpu": "10m", "memory": "16Mi", GPU_RESOURCE: "1"},
                                    "limits": {"cpu": "10m", "memory": "16Mi", GPU_RESOURCE: "1"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    },
                },
            }
            k8s.apps.v1.Deployment(f"{name}-{pool.name}-warm", metadata=metadata, spec=spec, opts=opts)
