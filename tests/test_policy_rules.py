"""Every policy rule, on engine-shaped inputs: one compliant and one violating case each, plus the
shapes real previews contain (JSON-string policies, single statements, unknowns, string booleans)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from modelyard.policies.governance import kserve as kserve_upstream
from modelyard.policies.governance import rules
from modelyard.policies.governance.resources import UNKNOWN, Resource, Stack
from modelyard.policies.governance.rules import RULES, Context, Finding
from modelyard.workloads.models import zone_spread

PROVIDER = "urn:pulumi:prod::p::pulumi:providers:aws::aws"
TAGS = {"env": "prod", "team": "ml", "cost-center": "cc-1", "managed-by": "modelyard"}
LABELS = {
    "modelyard.io/env": "prod",
    "modelyard.io/team": "ml",
    "modelyard.io/cost-center": "cc-1",
    "app.kubernetes.io/managed-by": "modelyard",
}


def res(typ: str, name: str, inputs: dict[str, Any] | None = None, **deps: list[str]) -> Resource:
    return Resource(
        urn=f"urn:pulumi:prod::p::{typ}::{name}",
        type=typ,
        inputs=inputs or {},
        provider=f"{PROVIDER}::0000-id" if typ.startswith("aws:") else None,
        dependencies=tuple(u for v in deps.values() for u in v),
        property_dependencies=dict(deps),
    )


def provider(tags: dict[str, str] | None = None) -> Resource:
    inputs = {"region": "us-east-1"}
    if tags is not None:
        inputs["defaultTags"] = json.dumps({"tags": tags})
    return Resource(PROVIDER, "pulumi:providers:aws", inputs)


def run(rule: str, resources: list[Resource], params: dict[str, Any] | None = None, env: str = "prod") -> list[Finding]:
    stack = Stack([provider(TAGS), *resources])
    return list(RULES[rule].run(Context(env, stack, {rule: {**(RULES[rule].params or {}), **(params or {})}})))


BUCKET = "aws:s3/bucket:Bucket"
MODEL_BUCKET = "modelyard-prod-models-123456789012"


def bucket_set(
    pab: dict[str, Any] | None = None,
    sse: str | None = "aws:kms",
    versioning: str | None = "Enabled",
    tls: bool = True,
    name: str = MODEL_BUCKET,
) -> list[Resource]:
    b = res(BUCKET, "b", {"bucket": name})
    out = [b]
    if pab is not None:
        out.append(res("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "pab", pab, bucket=[b.urn]))
    if sse is not None:
        out.append(
            res(
                "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                "sse",
                {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": sse}}]},
                bucket=[b.urn],
            )
        )
    if versioning is not None:
        out.append(
            res(
                "aws:s3/bucketVersioning:BucketVersioning",
                "v",
                {"versioningConfiguration": {"status": versioning}},
                bucket=[b.urn],
            )
        )
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    # A single statement object, not a list, as some documents have it.
    policy = {
        "Version": "2012-10-17",
        "Statement": statement
        if tls
        else {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::1:root"},
            "Action": "s3:GetObject",
            "Resource": "*",
        },
    }
    out.append(res("aws:s3/bucketPolicy:BucketPolicy", "pol", {"policy": json.dumps(policy)}, bucket=[b.urn]))
    return out


ALL_BLOCKED = dict.fromkeys(("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True)
CLUSTER = "aws:eks/cluster:Cluster"
GOOD_CLUSTER = {
    "version": "1.35",
    "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": "arn:aws:kms:us-east-1:1:key/x"}},
    "enabledClusterLogTypes": ["api", "audit", "authenticator", "controllerManager", "scheduler"],
    "vpcConfig": {"endpointPublicAccess": False, "endpointPrivateAccess": True},
    "accessConfig": {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False},
}
NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"


def nodepool(types: list[str], caps: list[str], limit: int = 4, pool: str = "a10g") -> Resource:
    return res(
        NODEPOOL,
        f"np-{pool}",
        {
            "metadata": {"name": f"gpu-{pool}", "labels": LABELS},
            "spec": {
                "template": {
                    "metadata": {"labels": {"modelyard.io/gpu-pool": pool}},
                    "spec": {
                        "requirements": [
                            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": types},
                            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": caps},
                        ]
                    },
                },
                "limits": {"nvidia.com/gpu": str(limit)},
            },
        },
    )


SECURE = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
}
LIMITS = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


def isvc(
    name: str = "embed",
    *,
    min_replicas: int | None = 2,
    gpus: int = 1,
    pool: str | None = "a10g",
    tolerate: bool = True,
    uri: str = f"s3://{MODEL_BUCKET}/embed/1/",
    image: str = "1.dkr.ecr.us-east-1.amazonaws.com/model-server:1.0.0",
    security: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
    spread: dict[str, Any] | None = None,
) -> Resource:
    limits = {**LIMITS["limits"], **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    predictor: dict[str, Any] = {
        "containers": [
            {
                "name": "kserve-container",
                "image": image,
                "resources": resources if resources is not None else {"requests": limits, "limits": limits},
                "securityContext": SECURE if security is None else security,
            }
        ],
        "storageUri": uri,
    }
    if min_replicas is not None:
        predictor["minReplicas"] = min_replicas
    if spread is not None:
        predictor["topologySpreadConstraints"] = [spread]
    if pool:
        predictor["nodeSelector"] = {"modelyard.io/gpu-pool": pool}
    if tolerate:
        predictor["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return res(
        rules.ISVC,
        name,
        {"metadata": {"name": name, "namespace": "models", "labels": LABELS}, "spec": {"predictor": predictor}},
    )


def pdb(name: str = "embed", **bound: Any) -> Resource:
    return res(
        "kubernetes:policy/v1:PodDisruptionBudget",
        f"{name}-pdb",
        {
            "metadata": {"name": name, "namespace": "models", "labels": LABELS},
            "spec": {"selector": {"matchLabels": {rules.ISVC_LABEL: name}}, **(bound or {"maxUnavailable": 1})},
        },
    )


def immutable_store(lock: str | None = "GOVERNANCE", writers: bool = True) -> list[Resource]:
    """The model bucket as infra/model_store.py builds it: Object Lock, one writer, no deletes."""
    b = res(BUCKET, "b", {"bucket": MODEL_BUCKET})
    out = [b]
    if lock is not None:
        out.append(
            res(
                "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
                "lock",
                {"objectLockEnabled": "Enabled", "rule": {"defaultRetention": {"mode": lock, "days": 90}}},
                bucket=[b.urn],
            )
        )
    statements = [
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": [
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
                "s3:PutObjectRetention",
                "s3:BypassGovernanceRetention",
            ],
            "Resource": "*",
        }
    ]
    if writers:
        statements.append(
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:PutObject"],
                "Resource": "*",
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::1:role/modelyard-prod-model-push"}},
            }
        )
    out.append(
        res("aws:s3/bucketPolicy:BucketPolicy", "p", {"policy": json.dumps({"Statement": statements})}, bucket=[b.urn])
    )
    return out


def role_with_trust(trust: dict[str, Any]) -> Resource:
    return res(
        "aws:iam/role:Role", "r", {"assumeRolePolicy": json.dumps({"Version": "2012-10-17", "Statement": [trust]})}
    )


IRSA_OK = {
    "Effect": "Allow",
    "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/x"},
    "Action": "sts:AssumeRoleWithWebIdentity",
    "Condition": {
        "StringEquals": {
            "oidc.eks/x:sub": "system:serviceaccount:models:model-puller",
            "oidc.eks/x:aud": "sts.amazonaws.com",
        }
    },
}


ONE_MODEL_LISTED = {"StringLike": {"s3:prefix": ["embed/", "embed/*"]}}


def model_pull(actions: list[str], resource: str, listing: dict[str, Any] | None = None) -> list[Resource]:
    """A model's pull role (workloads/models.py's shape): `actions` on `resource`, and where given a ListBucket
    statement with `listing` as its condition."""
    role = role_with_trust(IRSA_OK)
    statements = [{"Effect": "Allow", "Action": actions, "Resource": resource}]
    if listing is not None:
        bucket = f"arn:aws:s3:::{MODEL_BUCKET}"
        statements.append({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket, "Condition": listing})
    doc = {"Version": "2012-10-17", "Statement": statements}
    return [
        *bucket_set(ALL_BLOCKED),
        role,
        res("aws:iam/rolePolicy:RolePolicy", "rp", {"policy": json.dumps(doc)}, role=[role.urn]),
    ]


def kps(grafana: dict[str, Any]) -> Resource:
    return res(
        "kubernetes:helm.sh/v3:Release",
        "kps",
        {"chart": "kube-prometheus-stack", "version": "81.6.2", "values": {"grafana": grafana}},
    )


def budget(amount: str, kinds: tuple[str, ...] = ("ACTUAL", "FORECASTED")) -> Resource:
    return res(
        "aws:budgets/budget:Budget",
        "budget",
        {
            "limitAmount": amount,
            "notifications": [{"notificationType": k, "threshold": 100} for k in kinds],
            "tags": TAGS,
        },
    )


def g5_nodes(n: int) -> list[Resource]:
    """A managed node group of n always-on g5.xlarge: n x 1.006 x 730 = 734.38 USD each."""
    return [
        res(
            "aws:eks/nodeGroup:NodeGroup",
            "gpu-ng",
            {
                "instanceTypes": ["g5.xlarge"],
                "scalingConfig": {"desiredSize": n, "maxSize": n * 2, "minSize": n},
                "diskSize": 0,
            },
        )
    ]


# (rule, compliant resources, violating resources, params, the violating finding's field)
CASES: list[tuple[str, Callable[[], list[Resource]], Callable[[], list[Resource]], dict[str, Any], str]] = [
    (
        "aws-required-tags",
        lambda: [res("aws:sqs/queue:Queue", "q")],
        lambda: [res("aws:sqs/queue:Queue", "q", {"tags": {"env": ""}})],
        {},
        "tags",
    ),
    (
        "k8s-required-labels",
        lambda: [res("kubernetes:core/v1:Namespace", "ns", {"metadata": {"name": "x", "labels": LABELS}})],
        lambda: [res("kubernetes:core/v1:Namespace", "ns", {"metadata": {"name": "x"}})],
        {},
        "metadata.labels",
    ),
    (
        "s3-public-access-blocked",
        lambda: bucket_set(ALL_BLOCKED),
        lambda: bucket_set({**ALL_BLOCKED, "restrictPublicBuckets": False}),
        {},
        "restrictPublicBuckets",
    ),
    (
        "s3-no-public-acl",
        lambda: [res("aws:s3/bucketAcl:BucketAcl", "acl", {"acl": "private"})],
        lambda: [res("aws:s3/bucketAcl:BucketAcl", "acl", {"acl": "public-read"})],
        {},
        "acl",
    ),
    (
        "s3-encryption",
        lambda: bucket_set(ALL_BLOCKED),
        lambda: bucket_set(ALL_BLOCKED, sse="AES256"),
        {},
        "sseAlgorithm",
    ),
    (
        "s3-model-versioning",
        lambda: bucket_set(ALL_BLOCKED),
        lambda: bucket_set(ALL_BLOCKED, versioning="Suspended"),
        {},
        "versioning",
    ),
    ("s3-tls-only", lambda: bucket_set(ALL_BLOCKED), lambda: bucket_set(ALL_BLOCKED, tls=False), {}, "policy"),
    (
        "model-store-immutable",
        lambda: immutable_store(),
        lambda: immutable_store(lock=None),
        {},
        "objectLock",
    ),
    (
        "no-public-principal",
        lambda: [
            res(
                "aws:sns/topicPolicy:TopicPolicy",
                "tp",
                {
                    "policy": json.dumps(
                        {
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Principal": "*",
                                    "Action": "sns:Publish",
                                    "Resource": "*",
                                    "Condition": {"StringEquals": {"aws:SourceAccount": "1"}},
                                }
                            ]
                        }
                    )
                },
            )
        ],
        lambda: [
            res(
                "aws:sns/topicPolicy:TopicPolicy",
                "tp",
                {
                    "policy": {
                        "Statement": {
                            "Effect": "Allow",
                            "Principal": {"AWS": ["*"]},
                            "Action": "sns:Publish",
                            "Resource": "*",
                        }
                    }
                },
            )
        ],
        {},
        "policy.Statement[0]",
    ),
    (
        "eks-version",
        lambda: [res(CLUSTER, "c", GOOD_CLUSTER)],
        lambda: [res(CLUSTER, "c", {**GOOD_CLUSTER, "version": "1.29"})],
        {"supported": ["1.34", "1.35"]},
        "version",
    ),
    (
        "eks-secrets-encryption",
        lambda: [res(CLUSTER, "c", GOOD_CLUSTER)],
        lambda: [res(CLUSTER, "c", {**GOOD_CLUSTER, "encryptionConfig": {"resources": []}})],
        {},
        "encryptionConfig",
    ),
    (
        "eks-logging",
        lambda: [res(CLUSTER, "c", GOOD_CLUSTER)],
        lambda: [res(CLUSTER, "c", {**GOOD_CLUSTER, "enabledClusterLogTypes": ["api"]})],
        {},
        "enabledClusterLogTypes",
    ),
    # No endpointPublicAccess and no publicAccessCidrs: EKS's defaults, a public endpoint open to 0.0.0.0/0.
    (
        "eks-endpoint",
        lambda: [res(CLUSTER, "c", GOOD_CLUSTER)],
        lambda: [res(CLUSTER, "c", {**GOOD_CLUSTER, "vpcConfig": {"subnetIds": ["s"]}})],
        {},
        "vpcConfig.publicAccessCidrs",
    ),
    (
        "eks-access-entries",
        lambda: [res(CLUSTER, "c", GOOD_CLUSTER)],
        lambda: [res(CLUSTER, "c", {k: v for k, v in GOOD_CLUSTER.items() if k != "accessConfig"})],
        {},
        "accessConfig.authenticationMode",
    ),
    (
        "imdsv2-required",
        lambda: [res("aws:ec2/launchTemplate:LaunchTemplate", "lt", {"metadataOptions": {"httpTokens": "required"}})],
        lambda: [res("aws:ec2/launchTemplate:LaunchTemplate", "lt", {"metadataOptions": {"httpTokens": "optional"}})],
        {},
        "metadataOptions.httpTokens",
    ),
    # The launch template schema takes the string "true".
    (
        "ebs-encrypted",
        lambda: [
            res(
                "aws:ec2/launchTemplate:LaunchTemplate", "lt", {"blockDeviceMappings": [{"ebs": {"encrypted": "true"}}]}
            )
        ],
        lambda: [
            res(
                "aws:ec2/launchTemplate:LaunchTemplate",
                "lt",
                {"blockDeviceMappings": [{"ebs": {"encrypted": "false"}}]},
            )
        ],
        {},
        "blockDeviceMappings[0].ebs.encrypted",
    ),
    (
        "gpu-instance-allowlist",
        lambda: [nodepool(["g5.xlarge"], ["on-demand"])],
        lambda: [nodepool(["g5.xlarge", "p5.48xlarge"], ["spot"])],
        {"instanceTypes": ["g5.xlarge"], "capacityTypes": ["on-demand"]},
        "spec.template.spec.requirements[instance-type]",
    ),
    (
        "gpu-capacity-cap",
        lambda: [nodepool(["g5.xlarge"], ["on-demand"], 8)],
        lambda: [nodepool(["g5.xlarge"], ["on-demand"], 8), nodepool(["g6e.xlarge"], ["on-demand"], 8, "l40s")],
        {"maxGpus": 12},
        "spec.limits.nvidia.com/gpu",
    ),
    (
        "gpu-pool-demand-within-limit",
        lambda: [nodepool(["g5.xlarge"], ["on-demand"], 4), isvc(min_replicas=4)],
        lambda: [nodepool(["g5.xlarge"], ["on-demand"], 4), isvc(min_replicas=4), isvc("rerank", min_replicas=1)],
        {},
        "spec.limits.nvidia.com/gpu",
    ),
    (
        "no-open-ingress",
        lambda: [
            res(
                "aws:ec2/securityGroup:SecurityGroup",
                "sg",
                {"ingress": [{"fromPort": 443, "toPort": 443, "protocol": "tcp", "cidrBlocks": ["10.0.0.0/8"]}]},
            )
        ],
        lambda: [
            res(
                "aws:ec2/securityGroup:SecurityGroup",
                "sg",
                {"ingress": [{"fromPort": 22, "toPort": 22, "protocol": "tcp", "cidrBlocks": ["0.0.0.0/0"]}]},
            )
        ],
        {},
        "ingress[0].cidrBlocks",
    ),
    (
        "vpc-flow-logs",
        lambda: [
            v := res("aws:ec2/vpc:Vpc", "vpc"),
            res("aws:ec2/flowLog:FlowLog", "fl", {"trafficType": "ALL"}, vpcId=[v.urn]),
        ],
        lambda: [res("aws:ec2/vpc:Vpc", "vpc")],
        {},
        "flowLogs",
    ),
    (
        "iam-no-wildcards",
        lambda: [
            res(
                "aws:iam/rolePolicy:RolePolicy",
                "p",
                {
                    "policy": json.dumps(
                        {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]}
                    )
                },
            )
        ],
        lambda: [
            res(
                "aws:iam/rolePolicy:RolePolicy",
                "p",
                {
                    "policy": json.dumps(
                        {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::*"}]}
                    )
                },
            )
        ],
        {},
        "policy.Statement[0]",
    ),
    (
        "irsa-trust-scoped",
        lambda: [role_with_trust(IRSA_OK)],
        lambda: [
            role_with_trust(
                {**IRSA_OK, "Condition": {"StringLike": {"oidc.eks/x:sub": "system:serviceaccount:models:*"}}}
            )
        ],
        {},
        "assumeRolePolicy.Statement[0].Condition",
    ),
    (
        "model-pull-role-read-only",
        lambda: model_pull(["s3:GetObject"], f"arn:aws:s3:::{MODEL_BUCKET}/embed/*", ONE_MODEL_LISTED),
        lambda: model_pull(["s3:GetObject", "s3:PutObject"], f"arn:aws:s3:::{MODEL_BUCKET}/embed/*"),
        {},
        "policy.Statement[0].Action",
    ),
    (
        "kms-rotation",
        lambda: [res("aws:kms/key:Key", "k", {"enableKeyRotation": True})],
        lambda: [res("aws:kms/key:Key", "k", {"description": "no rotation set"})],
        {},
        "enableKeyRotation",
    ),
    (
        "ecr-immutable-scanned",
        lambda: [
            res(
                "aws:ecr/repository:Repository",
                "r",
                {"imageTagMutability": "IMMUTABLE", "imageScanningConfiguration": {"scanOnPush": True}},
            )
        ],
        lambda: [res("aws:ecr/repository:Repository", "r", {"imageScanningConfiguration": {"scanOnPush": True}})],
        {},
        "imageTagMutability",
    ),
    (
        "helm-pinned",
        lambda: [res("kubernetes:helm.sh/v3:Release", "h", {"chart": "x", "version": "v1.19.4"})],
        lambda: [res("kubernetes:helm.sh/v3:Release", "h", {"chart": "x", "version": "~1.19"})],
        {},
        "version",
    ),
    (
        "grafana-credentials",
        lambda: [kps({"admin": {"existingSecret": "grafana-admin"}})],
        lambda: [kps({"adminPassword": "prom-operator"})],
        {},
        "values.grafana.adminPassword",
    ),
    (
        "workload-resources",
        lambda: [isvc()],
        lambda: [
            isvc(
                resources={
                    "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"},
                    "requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "2"},
                }
            )
        ],
        {},
        "spec.predictor.containers[0].resources",
    ),
    (
        "workload-images",
        lambda: [isvc()],
        lambda: [isvc(image="docker.io/someone/model:latest")],
        {"registries": ["*.dkr.ecr.*.amazonaws.com/*"]},
        "spec.predictor.containers[0].image",
    ),
    (
        "workload-security",
        lambda: [isvc()],
        lambda: [isvc(security={"privileged": True})],
        {},
        "spec.predictor.containers[0].securityContext",
    ),
    (
        "inferenceservice-min-replicas",
        lambda: [isvc(min_replicas=2)],
        lambda: [isvc(min_replicas=None)],
        {"minReplicas": 2},
        "spec.predictor.minReplicas",
    ),
    (
        "inferenceservice-zone-spread",
        lambda: [isvc(spread=zone_spread("embed"))],
        lambda: [isvc()],
        {},
        "spec.predictor.topologySpreadConstraints",
    ),
    ("inferenceservice-pdb", lambda: [isvc(), pdb()], lambda: [isvc(), pdb("other")], {}, "podDisruptionBudget"),
    (
        "inferenceservice-gpu-placement",
        lambda: [nodepool(["g5.xlarge"], ["on-demand"]), isvc()],
        lambda: [nodepool(["g5.xlarge"], ["on-demand"]), isvc(pool="h100")],
        {},
        "spec.predictor.nodeSelector.modelyard.io/gpu-pool",
    ),
    (
        "storage-uri-in-model-bucket",
        lambda: [*bucket_set(ALL_BLOCKED), isvc()],
        lambda: [*bucket_set(ALL_BLOCKED), isvc(uri="s3://someone-elses-bucket/embed/")],
        {},
        "spec.predictor.storageUri",
    ),
    (
        "budget-exists",
        lambda: [res(CLUSTER, "c", GOOD_CLUSTER), budget("1000.00")],
        lambda: [res(CLUSTER, "c", GOOD_CLUSTER), budget("1000.00", ("ACTUAL",))],
        {},
        "notifications",
    ),
    # 2 always-on g5.xlarge: 2 x 1.006 x 730 = 1,468.76 USD a month.
    (
        "budget-baseline",
        lambda: [budget("1500.00"), *g5_nodes(2)],
        lambda: [budget("1400.00"), *g5_nodes(2)],
        {},
        "limitAmount",
    ),
    (
        "budget-ceiling",
        lambda: [budget("3000.00"), *g5_nodes(2)],
        lambda: [budget("2000.00"), *g5_nodes(2)],
        {},
        "limitAmount",
    ),
]


# -- pod security, IAM and network families: each with a compliant and a violating engine-shaped case -------------

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
NAMESPACE = "kubernetes:core/v1:Namespace"
RESTRICTED_POD = {
    "automountServiceAccountToken": False,
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10.1", "securityContext": SECURE, **LIMITS}],
}


def deployment(pod: dict[str, Any], namespace: str = "models") -> Resource:
    return res(
        DEPLOYMENT,
        "d",
        {"metadata": {"name": "d", "namespace": namespace, "labels": LABELS}, "spec": {"template": {"spec": pod}}},
    )


def with_pod(**changes: Any) -> dict[str, Any]:
    pod = json.loads(json.dumps(RESTRICTED_POD))
    pod.update(changes)
    return pod


def namespace(name: str, enforce: str | None) -> Resource:
    labels = {**LABELS, **({"pod-security.kubernetes.io/enforce": enforce} if enforce else {})}
    return res(NAMESPACE, f"ns-{name}", {"metadata": {"name": name, "labels": labels}})


def netpol(ns: str) -> Resource:
    return res(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"np-{ns}",
        {
            "metadata": {"name": "default-deny", "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
    )


def role_policy(statement: dict[str, Any]) -> Resource:
    return res("aws:iam/rolePolicy:RolePolicy", "rp", {"policy": json.dumps({"Statement": [statement]})})


WORKLOAD_SECURITY_CASES = [
    (
        "pod-security-standard",
        lambda: [deployment(RESTRICTED_POD)],
        lambda: [
            deployment(with_pod(hostNetwork=True, hostPID=True, volumes=[{"name": "h", "hostPath": {"path": "/"}}]))
        ],
        {},
        "spec.template.spec.hostNetwork",
    ),
    (
        "service-account-token",
        lambda: [deployment(RESTRICTED_POD)],
        lambda: [deployment(with_pod(automountServiceAccountToken=None))],
        {},
        "automountServiceAccountToken",
    ),
    (
        "namespace-pod-security",
        lambda: [namespace("models", "restricted"), namespace("nvidia", "privileged")],
        lambda: [namespace("models", "privileged")],
        {},
        "metadata.labels.pod-security.kubernetes.io/enforce",
    ),
    (
        "namespace-network-policy",
        lambda: [namespace("models", "restricted"), netpol("models")],
        lambda: [namespace("models", "restricted")],
        {},
        "metadata.name",
    ),
    (
        "iam-no-not-action",
        lambda: [role_policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})],
        lambda: [role_policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})],
        {},
        "NotAction",
    ),
    (
        "iam-trust-scoped",
        lambda: [
            role_with_trust(
                {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}
            ),
            role_policy(
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::b",
                    "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
                }
            ),
        ],
        lambda: [
            role_with_trust(
                {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": "sts:AssumeRole"}
            ),
            role_policy(
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::b",
                    "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
                }
            ),
        ],
        {},
        "assumeRolePolicy.Statement[0].Principal",
    ),
    (
        "iam-no-admin-attachments",
        lambda: [
            res(
                "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                "a",
                {"policyArn": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"},
            )
        ],
        lambda: [
            res(
                "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                "a",
                {"policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
            )
        ],
        {},
        "policyArn",
    ),
    (
        "iam-no-privilege-escalation",
        lambda: [role_policy({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/node"})],
        lambda: [role_policy({"Effect": "Allow", "Action": ["iam:PassRole", "s3:GetObject"], "Resource": "*"})],
        {},
        "policy.Statement[0]",
    ),
    (
        "helm-values-pod-security",
        lambda: [
            res(
                "kubernetes:helm.sh/v3:Release",
                "kserve",
                {
                    "chart": "kserve",
                    "version": "v0.16.0",
                    "namespace": "kserve",
                    "values": {"kserve": {"controller": {"containerSecurityContext": SECURE}}},
                },
            ),
            res(
                "kubernetes:helm.sh/v3:Release",
                "dcgm",
                {"chart": "dcgm-exporter", "version": "4.8.3", "namespace": "nvidia", "values": {"hostNetwork": True}},
            ),
        ],
        lambda: [
            res(
                "kubernetes:helm.sh/v3:Release",
                "kserve",
                {
                    "chart": "kserve",
                    "version": "v0.16.0",
                    "namespace": "kserve",
                    "values": {
                        "kserve": {
                            "controller": {"containerSecurityContext": {**SECURE, "privileged": True}},
                            "hostNetwork": True,
                        }
                    },
                },
            ),
        ],
        {},
        "values.kserve.controller.containerSecurityContext",
    ),
    (
        "imds-hop-limit",
        lambda: [
            res(
                "aws:ec2/launchTemplate:LaunchTemplate",
                "lt",
                {"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1}},
            )
        ],
        lambda: [
            res(
                "aws:ec2/launchTemplate:LaunchTemplate",
                "lt",
                {"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 2}},
            )
        ],
        {},
        "metadataOptions.httpPutResponseHopLimit",
    ),
    (
        "default-security-group-empty",
        lambda: [res("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "sg", {"ingress": [], "egress": []})],
        lambda: [
            res(
                "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
                "sg",
                {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}]},
            )
        ],
        {},
        "ingress",
    ),
    (
        "log-group-encrypted-retained",
        lambda: [res("aws:cloudwatch/logGroup:LogGroup", "lg", {"kmsKeyId": "arn:aws:kms:x", "retentionInDays": 90})],
        lambda: [res("aws:cloudwatch/logGroup:LogGroup", "lg", {})],
        {},
        "kmsKeyId",
    ),
    (
        "messaging-encrypted",
        lambda: [
            res("aws:sns/topic:Topic", "t", {"kmsMasterKeyId": "arn:aws:kms:x"}),
            res("aws:ecr/repository:Repository", "r", {"encryptionConfigurations": [{"encryptionType": "KMS"}]}),
        ],
        lambda: [
            res("aws:sns/topic:Topic", "t", {}),
            res("aws:ecr/repository:Repository", "r", {"encryptionConfigurations": [{"encryptionType": "AES256"}]}),
        ],
        {},
        "kmsMasterKeyId",
    ),
    (
        "s3-ownership-enforced",
        lambda: [
            *bucket_set(ALL_BLOCKED),
            res(
                "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
                "own",
                {"rule": {"objectOwnership": "BucketOwnerEnforced"}},
                bucket=["urn:pulumi:prod::p::aws:s3/bucket:Bucket::b"],
            ),
        ],
        lambda: [*bucket_set(ALL_BLOCKED)],
        {},
        "ownershipControls",
    ),
]
KSERVE_CHART = "oci://ghcr.io/kserve/charts/kserve"
ECR = "1.dkr.ecr.us-east-1.amazonaws.com/modelyard-prod/mirror"


def kserve_release(values: dict[str, Any]) -> Resource:
    return res(
        "kubernetes:helm.sh/v3:Release",
        "kserve-release",
        {"chart": KSERVE_CHART, "version": "v0.16.0", "values": values},
    )


def mirrored() -> dict[str, Any]:
    runtimes = {
        key: {"image": f"{ECR}/{image}", "tag": tag} for _, key, image, tag in kserve_upstream.RUNTIMES.values()
    }
    return {
        "kserve": {
            "storage": {"image": f"{ECR}/kserve/storage-initializer", "tag": "v0.16.0"},
            "servingruntime": runtimes,
        }
    }


def keda_isvc(target: dict[str, Any]) -> Resource:
    r = isvc()
    r.inputs["metadata"]["annotations"] = {
        "serving.kserve.io/deploymentMode": "Standard",
        "serving.kserve.io/autoscalerClass": "keda",
    }
    metric = {"backend": "prometheus", "query": "sum(modelyard_inflight_texts)"}
    r.inputs["spec"]["predictor"]["autoScaling"] = {
        "metrics": [{"type": "External", "external": {"metric": metric, "target": target}}]
    }
    return r


def keda_release(restrict: bool) -> Resource:
    values = {"permissions": {c: {"restrict": {"secret": restrict}} for c in ("operator", "metricServer")}}
    return res(
        "kubernetes:helm.sh/v3:Release",
        "keda-release",
        {
            "chart": "keda",
            "version": "2.20.2",
            "repositoryOpts": {"repo": "https://kedacore.github.io/charts"},
            "values": values,
        },
    )


POD_IDENTITY_OK = {
    "Effect": "Allow",
    "Principal": {"Service": "pods.eks.amazonaws.com"},
    "Action": ["sts:AssumeRole", "sts:TagSession"],
    "Condition": {
        "StringEquals": {
            "aws:SourceAccount": "123456789012",
            "aws:RequestTag/eks-cluster-arn": "arn:aws:eks:us-east-1:123456789012:cluster/modelyard-prod",
            "aws:RequestTag/kubernetes-namespace": "karpenter",
            "aws:RequestTag/kubernetes-service-account": "karpenter",
        }
    },
}


def model_server_isvc(*args: str) -> Resource:
    r = isvc()
    r.inputs["metadata"]["labels"] = {**LABELS, "modelyard.io/runtime": "modelyard"}
    r.inputs["spec"]["predictor"]["containers"][0]["args"] = ["--model_name", "embed", *args]
    return r


def terminating_isvc(pause: int | None, grace: int | None, *args: str) -> Resource:
    r = model_server_isvc(*args)
    if pause is not None:
        r.inputs["spec"]["predictor"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": pause}}}
    if grace is not None:
        r.inputs["spec"]["predictor"]["terminationGracePeriodSeconds"] = grace
    return r


CASES += [
    (
        "model-pod-termination",
        lambda: [terminating_isvc(15, 40, "--grace_period", "20")],
        # The server's default drain (30 s) after a 15 s pause: the kubelet's default 30 s kills it mid-drain.
        lambda: [terminating_isvc(15, None)],
        {},
        "spec.predictor.terminationGracePeriodSeconds",
    ),
    (
        "model-manifest-verified",
        lambda: [model_server_isvc("--verify_manifest", "--manifest_public_key", "MFkwEwYHKoZIzj0CAQYI")],
        # Files held to the manifest, but not the manifest to its signature.
        lambda: [model_server_isvc("--verify_manifest")],
        {},
        "spec.predictor.containers[0].args",
    ),
    (
        "keda-secret-access",
        lambda: [keda_release(True)],
        lambda: [keda_release(False)],
        {},
        "values.permissions.operator.restrict.secret",
    ),
    (
        "pod-identity-trust-scoped",
        lambda: [role_with_trust(POD_IDENTITY_OK)],
        # Bound to the account only, as the EKS User Guide's first example: any association in it may use it.
        lambda: [
            role_with_trust({**POD_IDENTITY_OK, "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}})
        ],
        {},
        "assumeRolePolicy.Statement[0].Condition",
    ),
    (
        "injected-images",
        lambda: [kserve_release(mirrored())],
        lambda: [kserve_release({})],  # the chart's defaults: Docker Hub
        {"registries": ["*.dkr.ecr.*.amazonaws.com/*"]},
        "values.kserve.storage",
    ),
    (
        "upstream-admission",
        lambda: [keda_isvc({"type": "Value", "value": "256"})],
        lambda: [keda_isvc({"type": "AverageValue", "averageValue": "256"})],
        {},
        "spec",
    ),
]


GITHUB = "token.actions.githubusercontent.com"


def github_role(
    sub: str | list[str], name: str = "r", *, like: bool = False, aud: str = "sts.amazonaws.com"
) -> Resource:
    """A role trusting GitHub's OIDC tokens of `sub` (infra/ci.py's shape)."""
    condition: dict[str, Any] = {"StringEquals": {f"{GITHUB}:aud": aud}}
    condition.setdefault("StringLike" if like else "StringEquals", {})[f"{GITHUB}:sub"] = sub
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{GITHUB}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    }
    return res("aws:iam/role:Role", name, {"assumeRolePolicy": json.dumps({"Statement": [statement]})})


def preview_set(actions: list[str], managed: str | None = None) -> list[Resource]:
    role = github_role("repo:acme/platform:pull_request", "preview")
    out = [
        role,
        res(
            "aws:iam/rolePolicy:RolePolicy",
            "preview-reads",
            {
                "role": "preview",
                "policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}),
            },
            role=[role.urn],
        ),
    ]
    if managed is not None:
        out.append(
            res(
                "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                "preview-m",
                {"policyArn": managed},
                role=[role.urn],
            )
        )
    return out


def deploy_path(runner: bool, env: str = "prod") -> list[Resource]:
    cluster = res(CLUSTER, "eks", {"vpcConfig": {"endpointPublicAccess": False, "endpointPrivateAccess": True}})
    out = [cluster, github_role(f"repo:acme/platform:environment:{env}", "deploy")]
    if runner:
        project = res("aws:codebuild/project:Project", "runner", {"vpcConfig": {"vpcId": "vpc-1", "subnets": ["s-1"]}})
        hook = {"filterGroups": [{"filters": [{"type": "EVENT", "pattern": "WORKFLOW_JOB_QUEUED"}]}]}
        out += [project, res("aws:codebuild/webhook:Webhook", "hook", hook, projectName=[project.urn])]
    return out


CASES += [
    (
        "ci-github-trust-bound",
        lambda: [github_role("repo:acme/platform:environment:prod")],
        # AWS's own example of a wildcard: any branch, pull request or environment of the repository.
        lambda: [github_role("repo:acme/platform:*", like=True)],
        {},
        "assumeRolePolicy.Statement[0].Condition",
    ),
    (
        "ci-preview-read-only",
        lambda: preview_set(["ec2:DescribeAvailabilityZones"]),
        lambda: preview_set(["ec2:DescribeAvailabilityZones", "s3:GetObject"]),
        {},
        "policy.Statement[0].Action",
    ),
    (
        "ci-deploy-reaches-endpoint",
        lambda: deploy_path(runner=True),
        lambda: deploy_path(runner=False),
        {},
        "vpcConfig.endpointPublicAccess",
    ),
]


@pytest.mark.parametrize(
    ("sub", "like", "aud", "allowed"),
    [
        ("repo:acme/platform:pull_request", False, "sts.amazonaws.com", True),
        # GitHub's immutable subjects (repositories created after 2026-07-15) carry the owner's and repository's ids.
        ("repo:acme@1234/platform@5678:environment:prod", False, "sts.amazonaws.com", True),
        # A branch: whoever may push it holds the role, with no review.
        ("repo:acme/platform:ref:refs/heads/main", False, "sts.amazonaws.com", False),
        (["repo:acme/platform:pull_request", "repo:acme/platform:environment:prod"], False, "sts.amazonaws.com", False),
        ("repo:acme/platform:environment:*", False, "sts.amazonaws.com", False),
        ("repo:acme/platform:pull_request", False, "https://github.com/acme", False),
        ("repo:acme/platform:pull_request", True, "sts.amazonaws.com", False),
    ],
)
def test_a_github_trust_names_one_reviewed_subject(sub: Any, like: bool, aud: str, allowed: bool) -> None:
    found = run("ci-github-trust-bound", [github_role(sub, like=like, aud=aud)])
    assert (found == []) is allowed, [f.message for f in found]


def test_a_pull_requests_role_is_read_only_and_stays_out_of_the_cluster() -> None:
    assert run("ci-preview-read-only", preview_set(["ec2:Describe*", "eks:ListClusters", "iam:GetRole"])) == []
    for action in ("s3:Get*", "secretsmanager:GetSecretValue", "ssm:GetParameters", "iam:PassRole", "*"):
        assert run("ci-preview-read-only", preview_set([action])), action
    [managed] = run("ci-preview-read-only", preview_set([], "arn:aws:iam::aws:policy/ReadOnlyAccess"))
    assert managed.field == "policyArn"
    role = preview_set([])[0]
    entry = res("aws:eks/accessEntry:AccessEntry", "e", {"principalArn": "arn"}, principalArn=[role.urn])
    [access] = run("ci-preview-read-only", [role, entry])
    assert access.message == "a pull request's role gets no cluster access"


def test_only_the_stacks_own_deploy_role_may_hold_an_administrator_policy() -> None:
    admin = "arn:aws:iam::aws:policy/AdministratorAccess"

    def attached(sub: str) -> list[Resource]:
        role = github_role(sub, "deploy")
        return [
            role,
            res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "a", {"policyArn": admin}, role=[role.urn]),
        ]

    assert run("iam-no-admin-attachments", attached("repo:acme/platform:environment:prod")) == []
    # Another environment's role, or a pull request's, in this stack: refused.
    assert run("iam-no-admin-attachments", attached("repo:acme/platform:environment:dev"))
    assert run("iam-no-admin-attachments", attached("repo:acme/platform:pull_request"))
    # A deploy role of the environment in another stack's plan is that stack's business.
    assert run("ci-deploy-reaches-endpoint", deploy_path(runner=False, env="staging")) == []


def test_a_model_server_without_either_check_is_named() -> None:
    for args in ((), ("--manifest_public_key", "MFkw"), ("--verify_manifest", "--manifest_public_key")):
        [found] = run("model-manifest-verified", [model_server_isvc(*args)])
        assert "--verify_manifest and --manifest_public_key" in found.message, args


@pytest.mark.parametrize(
    ("resource", "listing", "message"),
    [
        # The whole bucket: every team's every model.
        (f"arn:aws:s3:::{MODEL_BUCKET}/*", ONE_MODEL_LISTED, "reads one model's prefix: <bucket>/<model>/*"),
        (f"arn:aws:s3:::{MODEL_BUCKET}/*/1/*", ONE_MODEL_LISTED, "reads one model's prefix"),
        (f"arn:aws:s3:::{MODEL_BUCKET}/embed/*", None, "lists one model's prefix"),
        (f"arn:aws:s3:::{MODEL_BUCKET}/embed/*", {"StringLike": {"s3:prefix": ["*"]}}, "lists one model's prefix"),
        (
            f"arn:aws:s3:::{MODEL_BUCKET}/embed/*",
            {"StringLike": {"s3:prefix": ["embed/*", "chat/*"]}},
            "lists one model's prefix",
        ),
        ("arn:aws:s3:::another-bucket/embed/*", ONE_MODEL_LISTED, f"only the prod model bucket {MODEL_BUCKET}"),
    ],
)
def test_a_pull_role_wider_than_one_model_is_named(resource: str, listing: Any, message: str) -> None:
    resources = model_pull(["s3:GetObject"], resource, {} if listing is None else listing)
    if listing is None:  # a listing with no prefix condition at all
        policy = resources[-1]
        doc = json.loads(policy.inputs["policy"])
        del doc["Statement"][1]["Condition"]
        policy.inputs["policy"] = json.dumps(doc)
    found = run("model-pull-role-read-only", resources)
    assert any(message in f.message for f in found), [f.message for f in found]


def test_a_model_pod_without_a_long_enough_pause_is_named() -> None:
    [found] = run("model-pod-termination", [terminating_isvc(5, 60, "--grace_period", "20")])
    assert found.field == "spec.predictor.containers[0].lifecycle.preStop" and "more than 10 s" in found.message
    slow = {"propagationSeconds": 30}
    [found] = run("model-pod-termination", [terminating_isvc(20, 60, "--grace_period", "20")], slow)
    assert "more than 30 s" in found.message
    no_pause = run("model-pod-termination", [terminating_isvc(None, 40)])
    assert [f.field for f in no_pause] == ["spec.predictor.containers[0].lifecycle.preStop"]


@pytest.mark.parametrize(
    ("bound", "replicas", "expected"),
    [
        ({"maxUnavailable": 1}, 2, None),
        ({"minAvailable": 1}, 2, None),
        ({"maxUnavailable": "50%"}, 2, None),  # a percentage is not judged
        ({"maxUnavailable": 2}, 2, "lets a drain evict all 2 replicas at once"),
        ({"minAvailable": 0}, 3, "lets a drain evict all 3 replicas at once"),
        ({"maxUnavailable": 0}, 2, "lets no drain evict a replica"),
        ({"minAvailable": 2}, 2, "lets no drain evict a replica"),
        ({"maxUnavailable": 5}, 1, None),  # one replica: nothing to leave
    ],
)
def test_a_pdb_leaves_a_replica_and_lets_a_drain_proceed(
    bound: dict[str, Any], replicas: int, expected: str | None
) -> None:
    found = run("inferenceservice-pdb", [isvc(min_replicas=replicas), pdb(**bound)])
    assert [f.message[: len(expected or "")] for f in found] == ([] if expected is None else [expected])


def test_admission_names_the_webhook_and_its_message() -> None:
    [found] = run("upstream-admission", [keda_isvc({"type": "AverageValue", "averageValue": "256"})])
    assert found.message == "KServe v0.16.0 admission refuses it: the target threshold value should not be empty"
    so = res(
        rules.SCALED_OBJECT,
        "so",
        {"metadata": {"name": "so", "namespace": "models"}, "spec": {"scaleTargetRef": {"name": "d"}, "triggers": []}},
    )
    [found] = run("upstream-admission", [so])
    assert found.message == "KEDA v2.20.2 admission refuses it: no triggers defined in the ScaledObject/ScaledJob"


def test_a_built_in_runtimes_image_is_the_one_its_serving_runtime_runs() -> None:
    """A `model` predictor runs the ClusterServingRuntime's image: Docker Hub by the chart's default, the
    mirror where the KServe release in the same preview sets it."""
    model = isvc()
    model.inputs["spec"]["predictor"] = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/m/"}}
    params = {"registries": ["*.dkr.ecr.*.amazonaws.com/*"]}
    [found] = run("workload-images", [model], params)
    assert found.value == "kserve/sklearnserver:v0.16.0" and "runtime kserve-sklearn" in found.field
    assert run("workload-images", [model, kserve_release(mirrored())], params) == []


def budgeted_pool(budgets: list[dict[str, Any]] | None) -> Resource:
    r = nodepool(["g5.xlarge"], ["on-demand"])
    if budgets is not None:
        r.inputs["spec"]["disruption"] = {"budgets": budgets}
    return r


def cpu_isvc(selector: dict[str, str] | None, tolerate: bool = True) -> Resource:
    r = isvc(gpus=0, pool=None, tolerate=False)
    predictor = r.inputs["spec"]["predictor"]
    if selector is not None:
        predictor["nodeSelector"] = selector
    if tolerate:
        predictor["tolerations"] = [{"key": "modelyard.io/cpu-models", "operator": "Equal", "value": "true"}]
    return r


CASES += [
    (
        "karpenter-disruption-budget",
        lambda: [budgeted_pool([{"nodes": "10%"}]), budgeted_pool(None)],
        # 60 % of a two-node pool rounds up to both nodes.
        lambda: [budgeted_pool([{"nodes": "60%"}])],
        {},
        "spec.disruption.budgets",
    ),
    (
        "inferenceservice-cpu-placement",
        lambda: [cpu_isvc({"modelyard.io/pool": "cpu-models"}), isvc()],
        lambda: [cpu_isvc({"modelyard.io/pool": "system"})],
        {},
        "spec.predictor.nodeSelector.modelyard.io/pool",
    ),
]


def backup_set(
    key: str | None = "arn:aws:kms:us-east-1:1:key/b", lock: bool = True, tag: str = "b=prod"
) -> list[Resource]:
    vault = res("aws:backup/vault:Vault", "vault", {"name": "modelyard-prod", **({"kmsKeyArn": key} if key else {})})
    out = [vault]
    if lock:
        out.append(
            res(
                "aws:backup/vaultLockConfiguration:VaultLockConfiguration",
                "lock",
                {"backupVaultName": "modelyard-prod", "minRetentionDays": 35},
            )
        )
    out.append(
        res(
            "aws:backup/selection:Selection",
            "selection",
            {"conditions": [{"stringEquals": [{"key": "aws:ResourceTag/b", "value": "prod"}]}]},
        )
    )
    out.append(
        res(
            "kubernetes:storage.k8s.io/v1:StorageClass",
            "sc",
            {"provisioner": "ebs.csi.aws.com", "parameters": {"type": "gp3", "tagSpecification_1": tag}},
        )
    )
    return out


CASES += [
    (
        "backup-vault-protected",
        lambda: backup_set(),
        lambda: backup_set(key=None),
        {"requireLock": True, "requireBackups": True},
        "kmsKeyArn",
    ),
]


REPLICA_PROVIDER = "urn:pulumi:prod::p::pulumi:providers:aws::aws-model-replica"
REPLICATION_FAILED = "s3:Replication:OperationFailedReplication"


def replica_set(
    *,
    sse: str | None = "Enabled",
    metrics: str | None = "Enabled",
    key: str | None = "arn:aws:kms:us-west-2:1:key/r",
    status: str = "Enabled",
    replica_region: str = "us-west-2",
    notify: bool = True,
    replicate: bool = True,
) -> list[Resource]:
    source = res(BUCKET, "b", {"bucket": MODEL_BUCKET})
    out = [Resource(REPLICA_PROVIDER, "pulumi:providers:aws", {"region": replica_region}), source]
    if not replicate:
        return out
    replica = Resource(
        urn=f"urn:pulumi:prod::p::{BUCKET}::replica",
        type=BUCKET,
        inputs={"bucket": "modelyard-prod-model-replica-1"},
        provider=f"{REPLICA_PROVIDER}::1111-id",
    )
    destination: dict[str, Any] = {"bucket": "arn:aws:s3:::modelyard-prod-model-replica-1"}
    if key is not None:
        destination["encryptionConfiguration"] = {"replicaKmsKeyId": key}
    if metrics is not None:
        destination["metrics"] = {"status": metrics}
    rule: dict[str, Any] = {"id": "r", "status": status, "destination": destination}
    if sse is not None:
        rule["sourceSelectionCriteria"] = {"sseKmsEncryptedObjects": {"status": sse}}
    config = res(
        "aws:s3/bucketReplicationConfig:BucketReplicationConfig",
        "repl",
        {"bucket": MODEL_BUCKET, "rules": [rule]},
        bucket=[source.urn],
        rules=[replica.urn],
    )
    out += [replica, config]
    if notify:
        out.append(
            res(
                "aws:s3/bucketNotification:BucketNotification",
                "notify",
                {"topics": [{"topicArn": "arn:aws:sns:us-east-1:1:t", "events": [REPLICATION_FAILED]}]},
                bucket=[source.urn],
            )
        )
    return out


CASES += [
    (
        "model-store-replicated",
        lambda: replica_set(),
        lambda: replica_set(sse=None),
        {"requireReplica": True},
        "rules[0].sourceSelectionCriteria.sseKmsEncryptedObjects.status",
    ),
]


def test_a_replica_that_replicates_nothing_or_says_nothing_is_named() -> None:
    required = {"requireReplica": True}

    def fields(resources: list[Resource], params: dict[str, Any] | None = None) -> list[str]:
        return [f.field for f in run("model-store-replicated", resources, params)]

    assert fields(replica_set(replicate=False), required) == ["replication"]
    assert fields(replica_set(replicate=False)) == []  # not required: a store without a replica is allowed
    assert fields(replica_set(status="Disabled")) == ["rules[0].status"]
    assert fields(replica_set(key=None)) == ["rules[0].destination.encryptionConfiguration.replicaKmsKeyId"]
    assert fields(replica_set(metrics=None)) == ["rules[0].destination.metrics.status"]
    assert fields(replica_set(notify=False)) == ["notifications"]
    [found] = run("model-store-replicated", replica_set(replica_region="us-east-1"))
    assert found.field == "rules.destination.bucket" and "own region (us-east-1)" in found.message


def test_backups_unlocked_or_missing_are_named_where_required() -> None:
    required = {"requireLock": True, "requireBackups": True}
    [found] = run("backup-vault-protected", backup_set(lock=False), required)
    assert found.field == "name" and "lock the vault" in found.message
    [found] = run("backup-vault-protected", backup_set(tag="b=staging"), required)
    assert found.field == "parameters" and "nothing backs them up" in found.message
    assert run("backup-vault-protected", backup_set(lock=False, tag="b=staging"), {}) == []


def test_a_disruption_budget_is_read_as_karpenter_reads_it() -> None:
    # Only scheduled budgets bound consolidation: they may be off, so the pool is unbounded between windows.
    scheduled = [{"nodes": "1", "schedule": "0 9 * * mon-fri", "duration": "8h"}]
    [found] = run("karpenter-disruption-budget", [budgeted_pool(scheduled)])
    assert "all 2 nodes" in found.message and "Empty" in found.message
    # A budget of 0 for drift: nothing consolidates too fast, and no node image ever rolls.
    frozen = [{"nodes": "10%"}, {"nodes": "0", "reasons": ["Drifted"]}]
    [found] = run("karpenter-disruption-budget", [budgeted_pool(frozen)])
    assert "no drifted node be replaced" in found.message
    # A count and a reason-scoped budget: every reason stays bounded below the pool.
    assert (
        run("karpenter-disruption-budget", [budgeted_pool([{"nodes": "1"}, {"nodes": "0", "reasons": ["Empty"]}])])
        == []
    )
    # The pool size is a parameter: 75 % of four nodes is three, fewer than four; of two, rounded up, both.
    assert run("karpenter-disruption-budget", [budgeted_pool([{"nodes": "75%"}])], {"nodes": 4}) == []
    [found] = run("karpenter-disruption-budget", [budgeted_pool([{"nodes": "75%"}])], {"nodes": 2})
    assert "all 2 nodes" in found.message


def test_a_cpu_model_without_the_pool_or_its_toleration_is_named() -> None:
    [found] = run("inferenceservice-cpu-placement", [cpu_isvc({"modelyard.io/pool": "system"})])
    assert "system nodes" in found.message
    [found] = run("inferenceservice-cpu-placement", [cpu_isvc({"modelyard.io/pool": "cpu-models"}, tolerate=False)])
    assert found.field == "spec.predictor.tolerations" and "modelyard.io/cpu-models" in found.message
    assert [f.field for f in run("inferenceservice-cpu-placement", [cpu_isvc(None)])] == [
        "spec.predictor.nodeSelector.modelyard.io/pool"
    ]


CASES += WORKLOAD_SECURITY_CASES

# The front door.
HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
SECURITY_POLICY = "kubernetes:gateway.envoyproxy.io/v1alpha1:SecurityPolicy"
ROUTE_ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


def route(*weights: tuple[str, int]) -> Resource:
    refs = [{"kind": "Service", "name": n, "port": 80, "weight": w} for n, w in weights]
    return res(
        HTTP_ROUTE,
        "minilm",
        {"metadata": {"name": "minilm", "namespace": "models"}, "spec": {"rules": [{"backendRefs": refs}]}},
    )


def guard(**spec: Any) -> Resource:
    target = {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "minilm"}
    return res(
        SECURITY_POLICY,
        "minilm",
        {"metadata": {"name": "minilm", "namespace": "models"}, "spec": {"targetRefs": [target], **spec}},
    )


def predictor_isvc(name: str, percent: int | None = None) -> Resource:
    meta: dict[str, Any] = {"name": name, "namespace": "models", "labels": {"modelyard.io/role": "stable"}}
    if percent is not None:
        meta["labels"] = {"modelyard.io/role": "canary"}
        meta["annotations"] = {"modelyard.io/traffic-percent": str(percent)}
    return res(ROUTE_ISVC, name, {"metadata": meta, "spec": {}})


def model_ns_policy(peer: dict[str, Any]) -> list[Resource]:
    ns = res(
        "kubernetes:core/v1:Namespace",
        "models",
        {"metadata": {"name": "models", "labels": {"modelyard.io/serves-models": "true"}}},
    )
    rule = {"from": [peer], "ports": [{"protocol": "TCP", "port": 8080}]}
    spec = {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [rule]}
    policy = res(
        NETPOL_TYPE, "inference", {"metadata": {"name": "allow-inference", "namespace": "models"}, "spec": spec}
    )
    return [ns, policy]


NETPOL_TYPE = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PROXIES = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/component": "proxy"}},
}

CASES += [
    (
        "route-authenticated",
        lambda: [route(("minilm-predictor", 100)), guard(apiKeyAuth={"credentialRefs": [{"name": "k"}]})],
        # A SecurityPolicy with only CORS settings authenticates nobody.
        lambda: [route(("minilm-predictor", 100)), guard(cors={"allowOrigins": ["*"]})],
        {},
        "metadata.name",
    ),
    (
        "model-port-closed-to-cidrs",
        lambda: model_ns_policy(PROXIES),
        lambda: model_ns_policy({"ipBlock": {"cidr": "10.60.0.0/16"}}),
        {},
        "spec.ingress[0].from[0].ipBlock.cidr",
    ),
    # 1 canary replica of 4 would have carried 25 % through a shared Service: the route must carry the 10 % asked.
    (
        "canary-weight-carried",
        lambda: [
            predictor_isvc("minilm"),
            predictor_isvc("minilm-canary", 10),
            route(("minilm-predictor", 90), ("minilm-canary-predictor", 10)),
        ],
        lambda: [
            predictor_isvc("minilm"),
            predictor_isvc("minilm-canary", 10),
            route(("minilm-predictor", 3), ("minilm-canary-predictor", 1)),
        ],
        {},
        "metadata.annotations.modelyard.io/traffic-percent",
    ),
]


BACKEND = "kubernetes:gateway.envoyproxy.io/v1alpha1:Backend"
FALLBACK_HOST = "minilm.models.west.modelyard.internal"


def eg_backend(name: str, endpoint: dict[str, Any], fallback: bool = False) -> Resource:
    spec: dict[str, Any] = {"endpoints": [endpoint]}
    if fallback:
        spec |= {"fallback": True, "tls": {"sni": FALLBACK_HOST, "wellKnownCACertificates": "System"}}
    return res(BACKEND, name, {"metadata": {"name": name, "namespace": "models"}, "spec": spec})


def fallback_route(*, predictors_by_host: bool, filters_on_fallback: bool = False) -> list[Resource]:
    """minilm 90 / minilm-canary 10 and a fallback: the predictors as Services, or as Backends by DNS name."""
    fallback_ref: dict[str, Any] = {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": "minilm-fallback"}
    if filters_on_fallback:
        fallback_ref["filters"] = [{"type": "URLRewrite", "urlRewrite": {"hostname": FALLBACK_HOST}}]
    made = [eg_backend("minilm-fallback", {"fqdn": {"hostname": FALLBACK_HOST, "port": 443}}, fallback=True)]
    refs: list[dict[str, Any]] = []
    for isvc, weight in (("minilm", 90), ("minilm-canary", 10)):
        service = f"{isvc}-predictor"
        if predictors_by_host:
            host = {"fqdn": {"hostname": f"{service}.models.svc.cluster.local", "port": 80}}
            made.append(eg_backend(service, host))
            refs.append({"group": "gateway.envoyproxy.io", "kind": "Backend", "name": service, "weight": weight})
        else:
            refs.append({"kind": "Service", "name": service, "port": 80, "weight": weight})
    spec = {"rules": [{"backendRefs": [*refs, {**fallback_ref, "weight": 1}]}]}
    r = res(HTTP_ROUTE, "minilm", {"metadata": {"name": "minilm", "namespace": "models"}, "spec": spec})
    return [predictor_isvc("minilm"), predictor_isvc("minilm-canary", 10), *made, r]


CASES += [
    # The fallback beside predictor Services with its own filters: Envoy Gateway splits the rule into a cluster
    # per backend, and the fallback answers 1 request in 101 from the start.
    (
        "route-fallback-waits",
        lambda: fallback_route(predictors_by_host=True),
        lambda: fallback_route(predictors_by_host=False, filters_on_fallback=True),
        {},
        "spec.rules[0].backendRefs",
    ),
]


def test_a_fallback_beside_predictor_services_cannot_take_over() -> None:
    """No filters and the fallback by address would share one cluster today, until the predictors' pods are gone:
    then the Services have no endpoints and the rule splits."""
    resources = fallback_route(predictors_by_host=False)
    resources[2] = eg_backend("minilm-fallback", {"ip": {"address": "10.80.1.5", "port": 443}}, fallback=True)
    [found] = run("route-fallback-waits", resources)
    assert found.value == ["backend/0", "backend/1"] and "99.01% of requests fail" in found.message
    [split] = run("route-fallback-waits", fallback_route(predictors_by_host=False))
    assert "0.99% of callers' requests" in split.message and "HasMixedEndpoints" in split.message


def test_a_canary_behind_backends_carries_its_share_and_a_split_rule_does_not() -> None:
    assert run("canary-weight-carried", fallback_route(predictors_by_host=True)) == []
    [short] = run("canary-weight-carried", fallback_route(predictors_by_host=False, filters_on_fallback=True))
    assert "9.90%" in short.message


def telemetry_stack(*, service: bool, port: int = 4317) -> list[Resource]:
    """The platform's EnvoyProxy sending its access log to the gateway log counter, with or without its Service."""
    ref = {"group": "", "kind": "Service", "name": "modelyard-gateway-log", "namespace": "models", "port": port}
    sink = {"type": "OpenTelemetry", "openTelemetry": {"backendRefs": [ref]}}
    proxy = res(
        "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy",
        "modelyard",
        {
            "metadata": {"name": "modelyard", "namespace": "envoy-gateway-system"},
            "spec": {"telemetry": {"accessLog": {"settings": [{"sinks": [sink]}]}}},
        },
    )
    found = [proxy]
    if service:
        meta = {"name": "modelyard-gateway-log", "namespace": "models"}
        spec = {"ports": [{"name": "otlp-grpc", "port": 4317}, {"name": "metrics", "port": 9464}]}
        found.append(res("kubernetes:core/v1:Service", "log", {"metadata": meta, "spec": spec}))
    return found


CASES += [
    # The counter's Service left to another stack: Envoy Gateway would refuse the Gateway until it exists.
    (
        "gateway-telemetry-services-exist",
        lambda: telemetry_stack(service=True),
        lambda: telemetry_stack(service=False),
        {},
        "spec.telemetry.accessLog.settings[0].sinks[0].openTelemetry.backendRefs[0]",
    ),
]


def test_a_telemetry_port_the_service_lacks_is_named() -> None:
    [found] = run("gateway-telemetry-services-exist", telemetry_stack(service=True, port=4318))
    assert found.field.endswith("backendRefs[0].port") and "[4317, 9464]" in found.message


def model_egress(cidr: str, *, vpc: bool = True) -> list[Resource]:
    """The model namespace's AWS egress on 443 to `cidr`, in a stack with (or without) its VPC 10.20.0.0/16."""
    [ns, _] = model_ns_policy(PROXIES)
    spec = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": "TCP", "port": 443}]}],
    }
    policy = res(
        NETPOL_TYPE, "aws", {"metadata": {"name": "allow-aws-apis-egress", "namespace": "models"}, "spec": spec}
    )
    found = [ns, policy]
    if vpc:
        found.append(res("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.20.0.0/16"}))
    return found


CASES += [
    # The storage initializer's S3 and STS through the internet: the whole store reachable from any model pod's path.
    (
        "model-egress-in-vpc",
        lambda: model_egress("10.20.0.0/16"),
        lambda: model_egress("0.0.0.0/0"),
        {},
        "spec.egress[0].to[0].ipBlock.cidr",
    ),
]


def test_model_egress_beyond_the_vpc_is_named_with_or_without_the_vpc_in_the_stack() -> None:
    assert [f.value for f in run("model-egress-in-vpc", model_egress("10.30.0.0/16"))] == ["10.30.0.0/16"]
    assert run("model-egress-in-vpc", model_egress("10.30.0.0/16", vpc=False)) == []
    assert [f.value for f in run("model-egress-in-vpc", model_egress("52.216.0.0/15", vpc=False))] == ["52.216.0.0/15"]
    [ns, policy, _] = model_egress("10.20.0.0/16")
    policy.inputs["spec"]["egress"][0].pop("to")
    assert [f.field for f in run("model-egress-in-vpc", [ns, policy])] == ["spec.egress[0].to"]


def team_view(*verbs: str, resources: tuple[str, ...] = ("pods", "pods/log")) -> list[Resource]:
    """A team's group bound in the model namespace to a Role with `verbs` on `resources`."""
    rbac = "kubernetes:rbac.authorization.k8s.io/v1"
    meta = {"name": "modelyard-model-viewer", "namespace": "models"}
    rules = [{"apiGroups": [""], "resources": list(resources), "verbs": list(verbs)}]
    role = res(f"{rbac}:Role", "viewer", {"metadata": meta, "rules": rules})
    binding = res(
        f"{rbac}:RoleBinding",
        "search",
        {
            "metadata": {"name": "modelyard-team-search", "namespace": "models"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "modelyard-model-viewer"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "modelyard:team:search"}],
        },
    )
    return [role, binding]


CASES += [
    # A team allowed to delete pods: it could delete every team's (list and delete cannot be narrowed by name).
    (
        "team-access-read-only",
        lambda: team_view("get", "list", "watch"),
        lambda: team_view("get", "list", "watch", "delete"),
        {},
        "rules[0].verbs",
    ),
]


def test_a_team_reading_secrets_or_bound_cluster_wide_is_named() -> None:
    [found] = run("team-access-read-only", team_view("get", resources=("secrets",)))
    assert found.field == "rules[0].resources" and found.value == ["secrets"]
    [role, binding] = team_view("get")
    binding.inputs["roleRef"] = {"kind": "ClusterRole", "name": "admin"}
    assert [f.field for f in run("team-access-read-only", [role, binding])] == ["roleRef.kind"]
    cluster_wide = res("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", "x", dict(binding.inputs))
    assert [f.message for f in run("team-access-read-only", [cluster_wide])] == [
        "binds a team across the whole cluster"
    ]


def test_a_route_to_a_predictor_nobody_makes_is_named() -> None:
    """The canary that answered 404: a weighted backend naming a Service no InferenceService makes."""
    [found] = run(
        "canary-weight-carried", [predictor_isvc("minilm"), route(("minilm-predictor", 90), ("minilm-v2", 10))]
    )
    assert found.value == "minilm-v2" and "10%" in found.message


def test_a_canary_no_route_carries_is_named() -> None:
    [found] = run(
        "canary-weight-carried",
        [predictor_isvc("minilm"), predictor_isvc("minilm-canary", 10), route(("minilm-predictor", 100))],
    )
    assert "0.00%" in found.message


def shadow_isvc(percent: int) -> Resource:
    meta = {
        "name": "minilm-shadow",
        "namespace": "models",
        "labels": {"modelyard.io/role": "shadow"},
        "annotations": {"modelyard.io/mirror-percent": str(percent)},
    }
    return res(ROUTE_ISVC, "minilm-shadow", {"metadata": meta, "spec": {}})


def mirrored_route(percent: int | None) -> Resource:
    r = route(("minilm-predictor", 100))
    if percent is not None:
        target = {"kind": "Service", "name": "minilm-shadow-predictor", "port": 80}
        r.inputs["spec"]["rules"][0]["filters"] = [
            {"type": "RequestMirror", "requestMirror": {"backendRef": target, "percent": percent}}
        ]
    return r


def test_a_shadow_is_mirrored_the_share_asked_and_weighed_nothing() -> None:
    assert run("canary-weight-carried", [predictor_isvc("minilm"), shadow_isvc(10), mirrored_route(10)]) == []
    [unmirrored] = run("canary-weight-carried", [predictor_isvc("minilm"), shadow_isvc(10), mirrored_route(None)])
    assert unmirrored.field == "metadata.annotations.modelyard.io/mirror-percent" and "0.00%" in unmirrored.message
    weighted = route(("minilm-predictor", 90), ("minilm-shadow-predictor", 10))
    found = run("canary-weight-carried", [predictor_isvc("minilm"), shadow_isvc(10), weighted])
    assert "a shadow's answers would reach them" in found[0].message


def test_a_model_port_opened_by_its_name_to_a_range_is_named() -> None:
    """The model containers name their port `http1`; a policy may open it by that name."""
    [ns, policy] = model_ns_policy({"ipBlock": {"cidr": "10.60.0.0/16"}})
    policy.inputs["spec"]["ingress"][0]["ports"] = [{"protocol": "TCP", "port": "http1"}]
    assert [f.field for f in run("model-port-closed-to-cidrs", [ns, policy])] == [
        "spec.ingress[0].from[0].ipBlock.cidr"
    ]
    policy.inputs["spec"]["ingress"][0]["ports"] = [{"protocol": "TCP", "port": 9090}]
    assert run("model-port-closed-to-cidrs", [ns, policy]) == []


def test_a_model_port_open_to_every_source_is_named() -> None:
    [ns, policy] = model_ns_policy(PROXIES)
    policy.inputs["spec"]["ingress"][0].pop("from")
    assert [f.field for f in run("model-port-closed-to-cidrs", [ns, policy])] == ["spec.ingress[0].from"]


@pytest.mark.parametrize(
    ("mutation", "rule", "field"),
    [
        (with_pod(hostNetwork=True, hostPID=True), "pod-security-standard", "hostPID"),
        (with_pod(volumes=[{"name": "h", "hostPath": {"path": "/var/run"}}]), "pod-security-standard", "hostPath"),
        (
            with_pod(
                containers=[
                    {
                        **RESTRICTED_POD["containers"][0],
                        "securityContext": {**SECURE, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}},
                    }
                ]
            ),
            "pod-security-standard",
            "capabilities.add",
        ),
        (
            with_pod(securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "Unconfined"}}),
            "pod-security-standard",
            "seccompProfile.type",
        ),
        (with_pod(automountServiceAccountToken=True), "service-account-token", "automountServiceAccountToken"),
    ],
)
def test_the_reviewer_s_pod_mutations_are_caught(mutation: dict[str, Any], rule: str, field: str) -> None:
    found = run(rule, [deployment(mutation)])
    assert any(field in f.field for f in found), [f.field for f in found]


def test_sys_admin_on_an_inferenceservice_is_caught() -> None:
    bad = isvc(security={**SECURE, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}})
    found = run("pod-security-standard", [bad])
    assert any("capabilities.add" in f.field for f in found), [f.field for f in found]


def test_a_public_principal_bound_only_by_tls_is_public() -> None:
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "sns:Publish",
        "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "true"}},
    }
    found = run(
        "no-public-principal",
        [res("aws:sns/topicPolicy:TopicPolicy", "tp", {"policy": json.dumps({"Statement": [statement]})})],
    )
    assert found and "aws:SecureTransport alone binds nobody" in found[0].message


def test_storage_uri_env_outside_the_model_bucket_is_caught() -> None:
    bad = isvc(uri=f"s3://{MODEL_BUCKET}/embed/1/")
    bad.inputs["spec"]["predictor"]["containers"][0]["env"] = [{"name": "STORAGE_URI", "value": "s3://elsewhere/m/"}]
    found = run("storage-uri-in-model-bucket", [*bucket_set(ALL_BLOCKED), bad])
    assert [f.field for f in found] == ["spec.predictor.containers[0].env[0].value"]


@pytest.mark.parametrize("flag", [None, True, "true"])
def test_an_implicit_creator_admin_is_caught(flag: object) -> None:
    """The provider's default (the flag unset) gives the cluster's creator an undeclared cluster-admin entry."""
    access = {"authenticationMode": "API"} | ({} if flag is None else {"bootstrapClusterCreatorAdminPermissions": flag})
    found = run("eks-access-entries", [res(CLUSTER, "c", {**GOOD_CLUSTER, "accessConfig": access})])
    assert [f.field for f in found] == ["accessConfig.bootstrapClusterCreatorAdminPermissions"]


def test_every_rule_has_a_case() -> None:
    assert sorted(c[0] for c in CASES) == sorted(RULES)


@pytest.mark.parametrize(("rule", "good", "bad", "params", "field"), CASES, ids=[c[0] for c in CASES])
def test_rule_passes_the_compliant_case_and_names_the_violation(
    rule: str, good: Callable[[], list[Resource]], bad: Callable[[], list[Resource]], params: dict[str, Any], field: str
) -> None:
    assert run(rule, good(), params) == [], f"{rule} flagged its compliant case"
    found = run(rule, bad(), params)
    assert found, f"{rule} missed its violating case"
    assert any(field in f.field for f in found), [f.field for f in found]
    assert all(f.message and f.urn for f in found)


def test_storage_uri_fix_names_the_bucket() -> None:
    found = run("storage-uri-in-model-bucket", [*bucket_set(ALL_BLOCKED), isvc(uri="s3://elsewhere/m/")])
    assert found[0].message == f"must be inside s3://{MODEL_BUCKET}/" and found[0].value == "s3://elsewhere/m/"


def test_budget_figures_are_in_the_message() -> None:
    [finding] = run("budget-baseline", [budget("1400.00"), *g5_nodes(2)])
    assert "$1,468.76/month" in finding.message and "$1,400.00" in finding.message


def test_unknown_values_are_never_violations() -> None:
    unknown = [
        res(
            CLUSTER,
            "c",
            {**GOOD_CLUSTER, "vpcConfig": UNKNOWN, "encryptionConfig": UNKNOWN, "enabledClusterLogTypes": UNKNOWN},
        ),
        res("aws:kms/key:Key", "k", {"enableKeyRotation": "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7"}),
        res("aws:iam/rolePolicy:RolePolicy", "p", {"policy": UNKNOWN}),
        res("aws:sqs/queue:Queue", "q", {"tags": UNKNOWN}),
        res("kubernetes:helm.sh/v3:Release", "h", {"chart": "x", "version": UNKNOWN}),
        budget(UNKNOWN),
    ]
    for name in RULES:
        assert run(name, unknown) == [], name


def test_deleted_resources_and_odd_shapes_do_not_crash() -> None:
    from modelyard.policies.governance.policy import evaluate, load_config
    from modelyard.policies.governance.resources import from_preview

    doc = {
        "steps": [
            {"op": "delete", "urn": "urn:pulumi:prod::p::aws:s3/bucket:Bucket::gone", "oldState": {"type": BUCKET}},
            {
                "op": "create",
                "urn": "urn:pulumi:prod::p::aws:iam/rolePolicy:RolePolicy::p",
                "newState": {"type": "aws:iam/rolePolicy:RolePolicy", "inputs": {"policy": "not json"}},
            },
            {
                "op": "create",
                "urn": "urn:pulumi:prod::p::aws:iam/role:Role::r",
                "newState": {"type": "aws:iam/role:Role", "inputs": {"assumeRolePolicy": {"Statement": "odd"}}},
            },
            {
                "op": "create",
                "urn": "urn:pulumi:prod::p::kubernetes:apps/v1:Deployment::d",
                "newState": {"type": "kubernetes:apps/v1:Deployment", "inputs": {"spec": [1, 2]}},
            },
        ]
    }
    resources = from_preview(doc)
    assert [r.name for r in resources] == ["p", "r", "d"]
    report = evaluate(resources, "prod", load_config("prod"))
    assert report.rules_run == len(RULES)


def test_gpu_demand_over_a_pool_limit_names_the_pool_the_demand_and_the_limit() -> None:
    findings = run(
        "gpu-pool-demand-within-limit", [nodepool(["g5.xlarge"], ["on-demand"], 16), isvc(min_replicas=2792)]
    )
    assert [f.message for f in findings] == [
        "workloads pin 2792 GPUs to pool 'a10g', over its limit of 16: 2776 would stay Pending; raise the pool's "
        "max_gpus or lower the models' replicas"
    ]


def _through_crossguard(rule: str, resources: list[Resource], params: dict[str, Any]) -> list[str]:
    """The same resources as the Pulumi engine hands them to the pack: PolicyResources with their provider,
    through the CrossGuard policy of `rule`."""
    from pulumi_policy import PolicyProviderResource, PolicyResource, PolicyResourceOptions, StackValidationArgs

    from modelyard.policies.governance import crossguard

    aws = provider(TAGS)
    provider_resource = PolicyProviderResource(aws.type, dict(aws.inputs), aws.urn, "aws")
    # A case's own providers (a replica's region) are the providers of the resources that name them.
    providers = {
        r.urn: PolicyProviderResource(r.type, dict(r.inputs), r.urn, r.name)
        for r in resources
        if r.type == "pulumi:providers:aws"
    }
    opts = PolicyResourceOptions(False, [], None, [], None, [])  # type: ignore[arg-type]
    by_urn = {r.urn: r for r in resources}
    policy_resources: dict[str, Any] = {}
    for r in resources:
        policy_resources[r.urn] = PolicyResource(
            r.type,
            dict(r.inputs),
            r.urn,
            r.name,
            opts,
            providers.get(r.provider_urn or "", provider_resource) if r.type.startswith("aws:") else None,
            None,
            [],
            {},
        )
    for r in resources:  # dependencies point at the PolicyResources themselves
        policy_resources[r.urn].dependencies = [policy_resources[u] for u in r.dependencies if u in by_urn]
        policy_resources[r.urn].property_dependencies = {
            k: [policy_resources[u] for u in v if u in by_urn] for k, v in r.property_dependencies.items()
        }
    config = {**(RULES[rule].params or {}), **params}
    args = StackValidationArgs(list(policy_resources.values()), config)
    [pack_policy] = [p for p in crossguard.policies() if p.name == rule]
    reported: list[str] = []
    pack_policy.validate(args, lambda message, urn=None: reported.append(message))  # type: ignore[misc]
    return reported


@pytest.mark.parametrize(("rule", "good", "bad", "params", "field"), CASES, ids=[c[0] for c in CASES])
def test_the_crossguard_pack_judges_each_case_as_the_offline_path_does(
    rule: str, good: Callable[[], list[Resource]], bad: Callable[[], list[Resource]], params: dict[str, Any], field: str
) -> None:
    assert _through_crossguard(rule, good(), params) == [], f"{rule}: the pack flagged the compliant case"
    reported = _through_crossguard(rule, bad(), params)
    assert any(message.startswith(field) or field in message for message in reported), reported


def test_a_cronjob_s_pods_are_held_to_pod_security() -> None:
    cron = res(
        "kubernetes:batch/v1:CronJob",
        "cj",
        {
            "metadata": {"name": "cj", "namespace": "models", "labels": LABELS},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": with_pod(hostPID=True)}}}},
        },
    )
    found = run("pod-security-standard", [cron])
    assert any(f.field.endswith("hostPID") for f in found), [f.field for f in found]


def test_pod_security_judges_the_pod_kserve_builds_with_the_injected_initializer() -> None:
    def model() -> Resource:
        r = isvc()
        predictor = r.inputs["spec"]["predictor"]
        predictor["containers"][0]["env"] = [{"name": "STORAGE_URI", "value": f"s3://{MODEL_BUCKET}/embed/1/"}]
        predictor["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        return r

    bare = mirrored()
    bare["kserve"]["storage"]["containerSecurityContext"] = None  # Helm: null drops the chart's default
    found = run("pod-security-standard", [model(), kserve_release(bare)])
    assert {f.field for f in found} == {
        "spec.predictor.initContainers[0].securityContext.allowPrivilegeEscalation",
        "spec.predictor.initContainers[0].securityContext.capabilities.drop",
    }
    secured = mirrored()
    secured["kserve"]["storage"]["containerSecurityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert run("pod-security-standard", [model(), kserve_release(secured)]) == []


@pytest.mark.parametrize(
    "spread",
    [
        {
            **zone_spread("embed"),
            "labelSelector": {"matchLabels": {"app": "embed"}},
        },  # KServe labels app isvc.embed-predictor
        {**zone_spread("embed"), "whenUnsatisfiable": "ScheduleAnyway"},
        {**zone_spread("embed"), "topologyKey": "kubernetes.io/hostname"},
        {**zone_spread("embed"), "labelSelector": None},
    ],
    ids=["a selector the pods KServe builds do not match", "soft", "by node, not zone", "no selector"],
)
def test_a_zone_spread_that_would_not_spread_the_pods_kserve_builds_is_caught(spread: dict[str, Any]) -> None:
    found = run("inferenceservice-zone-spread", [isvc(spread=spread)])
    assert [f.field for f in found] == ["spec.predictor.topologySpreadConstraints"], found


def test_a_single_replica_needs_no_zone_spread() -> None:
    assert run("inferenceservice-zone-spread", [isvc(min_replicas=1)]) == []


def test_the_model_store_rule_names_each_missing_guard() -> None:
    found = run("model-store-immutable", immutable_store(writers=False))
    assert [f.message for f in found] == ["no statement denies s3:PutObject to all but the push role"]
    assert run("model-store-immutable", immutable_store(lock="NONE"))[0].field == "objectLock"
    bare = bucket_set(ALL_BLOCKED)  # TLS only: every writer, every delete
    messages = [f.message for f in run("model-store-immutable", bare)]
    assert "the bucket policy must deny these to every principal" in messages and len(messages) == 3
