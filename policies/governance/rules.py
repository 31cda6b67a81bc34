"""The policy rules: plain functions over the resources of a preview.

A resource rule looks at one resource (its type, camelCase inputs, and the stack around it for joins);
a stack rule looks at the whole preview. Each returns `Finding`s naming the field, the bad value and
the fix; `evaluate` turns them into `Violation`s with the rule's enforcement level for the environment.

Absent fields mean the AWS or Kubernetes default (an EKS endpoint with no `endpointPublicAccess` is
public to 0.0.0.0/0; a KMS key without `enableKeyRotation` does not rotate). Values the engine does not
know yet are skipped, never reported. Shapes vary the way real previews do: policy documents as JSON
strings or objects, `Statement` and `Action` as a value or a list, booleans as `true` or `"true"`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import admission, kserve, pod_security
from .conventions import GPU_POOL_LABEL, GPU_RESOURCE, ISVC_LABEL, LABEL_KEYS, ROLE_LABEL, TAG_KEYS
from .cost import GPU, Estimate, estimate, pinned_gpu_pods
from .prices import price_book
from .resources import S3_BUCKET_COMPANIONS, Resource, Stack, as_list, dig, document, known, mapping, statements

Level = Literal["advisory", "mandatory", "disabled"]

REQUIRED_TAGS = TAG_KEYS
REQUIRED_LABELS = LABEL_KEYS
GPU_TAINT_KEY = GPU_RESOURCE
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")
OPEN_CIDRS = ("0.0.0.0/0", "::/0")
READ_ONLY_MODEL_ACTIONS = frozenset(
    {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:GetBucketLocation", "kms:Decrypt"}
)
SEMVER = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
#: Default Grafana credentials that must never be deployed (the charts' and Grafana's own).
DEFAULT_GRAFANA_PASSWORDS = ("prom-operator", "admin", "password", "")

#: AWS types that cannot carry tags (their parent resource does).
UNTAGGABLE = S3_BUCKET_COMPANIONS | frozenset(
    {
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:ec2/route:Route",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        "aws:kms/alias:Alias",
        "aws:ecr/lifecyclePolicy:LifecyclePolicy",
        "aws:ecr/repositoryPolicy:RepositoryPolicy",
        "aws:sqs/queuePolicy:QueuePolicy",
        "aws:cloudwatch/eventTarget:EventTarget",
        "aws:sns/topicPolicy:TopicPolicy",
        "aws:sns/topicSubscription:TopicSubscription",
        "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
        "aws:costexplorer/costAllocationTag:CostAllocationTag",
    }
)
#: Resources holding policy documents, and the property each keeps it in.
POLICY_FIELDS = {
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
    "aws:kms/key:Key": "policy",
    "aws:ecr/repositoryPolicy:RepositoryPolicy": "policy",
    "aws:iam/role:Role": "assumeRolePolicy",
}
IDENTITY_POLICIES = (
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/policy:Policy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
)
WORKLOADS = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
    ISVC: ("spec", "predictor"),
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


@stack_rule(
    "gpu-pool-demand-within-limit",
    "The GPUs that workloads pin to a pool fit within its GPU limit (the rest would stay Pending).",
)
def _gpu_pool_demand(ctx: Context) -> Iterator[Finding]:
    demand = pinned_gpu_pods(ctx.stack)
    for pool in ctx.stack.of_type(NODE_POOL):
        name = str(pool.get("spec", "template", "metadata", "labels", GPU_POOL_LABEL) or pool.get("metadata", "name"))
        limit = _count(pool.get("spec", "limits", GPU))
        wanted = sum(demand.get(name, ()))
        if limit is not None and wanted > limit:
            yield Finding(
                pool.urn,
                f"spec.limits.{GPU}",
                limit,
                f"workloads pin {wanted} GPUs to pool {name!r}, over its limit of {limit}: {wanted - limit} would "
                "stay Pending; raise the pool's max_gpus or lower the models' replicas",
            )


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


# ---------------------------------------------------------------------------------------------
# Tags and labels


@resource_rule("aws-required-tags", "Every taggable AWS resource carries env, team, cost-center and managed-by.", None)
def _aws_tags(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if not r.type.startswith("aws:") or r.type in UNTAGGABLE:
        return
    own = r.inputs.get("tags")
    if _unknown(own):
        return
    tags = {**ctx.stack.provider_default_tags(r), **(own if isinstance(own, Mapping) else {})}
    missing = [k for k in REQUIRED_TAGS if not tags.get(k)]
    if missing:
        yield (
            "tags",
            sorted(tags),
            f"missing tag(s) {', '.join(missing)}; set them in the AWS provider's defaultTags (modelyard/tags.py)"
            " or on the resource",
        )


@resource_rule("k8s-required-labels", "Kubernetes objects carry the matching modelyard.io labels.", None)
def _k8s_labels(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if not r.type.startswith("kubernetes:") or r.type.startswith(("kubernetes:helm.sh/", "pulumi:")):
        return
    labels = r.get("metadata", "labels")
    if _unknown(r.inputs.get("metadata")):
        return
    labels = labels if isinstance(labels, Mapping) else {}
    missing = [k for k in REQUIRED_LABELS if not labels.get(k)]
    if missing:
        yield (
            "metadata.labels",
            sorted(labels),
            f"missing label(s) {', '.join(missing)}; use k8s_labels() (modelyard/tags.py)",
        )


# ---------------------------------------------------------------------------------------------
# S3


def _bucket_companions(ctx: Context, bucket: Resource, typ: str) -> list[Resource]:
    return ctx.stack.referencing(bucket, typ, prop="bucket") or ctx.stack.referencing(bucket, typ)


def _is_model_bucket(ctx: Context, bucket: Resource) -> bool:
    name = bucket.get("bucket")
    return isinstance(name, str) and name == ctx.model_bucket()


@stack_rule("s3-public-access-blocked", "Every bucket blocks public access (all four settings).", basic=True)
def _s3_pab(ctx: Context) -> Iterator[Finding]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    for bucket in ctx.stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        blocks = _bucket_companions(ctx, bucket, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        if not blocks:
            yield Finding(
                bucket.urn, "publicAccessBlock", None, "no BucketPublicAccessBlock; add one with all four flags true"
            )
            continue
        off = [f for f in flags if not _true(blocks[0].get(f)) and not _unknown(blocks[0].inputs.get(f))]
        if off:
            yield Finding(blocks[0].urn, ", ".join(off), False, "must be true: public access stays possible otherwise")


@resource_rule(
    "s3-no-public-acl",
    "No bucket ACL grants public or any-AWS-user access.",
    ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucket:Bucket"),
    basic=True,
)
def _s3_acl(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    acl = r.get("acl")
    if acl in PUBLIC_ACLS:
        yield "acl", acl, "is a public canned ACL; use private and BucketOwnerEnforced ownership"
    for i, grant in enumerate(as_list(r.get("accessControlPolicy", "grants"))):
        uri = (grant.get("grantee") or {}).get("uri", "") if isinstance(grant, Mapping) else ""
        if uri.endswith(("/AllUsers", "/AuthenticatedUsers")):
            yield f"accessControlPolicy.grants[{i}]", uri, "grants access to everyone; remove the grant"


@stack_rule("s3-encryption", "Every bucket has default encryption; the model store uses SSE-KMS.", basic=True)
def _s3_sse(ctx: Context) -> Iterator[Finding]:
    for bucket in ctx.stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        configs = _bucket_companions(
            ctx, bucket, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        )
        if not configs:
            yield Finding(bucket.urn, "serverSideEncryption", None, "no encryption configuration; add SSE-KMS")
            continue
        algo = configs[0].get("rules", 0, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        if _is_model_bucket(ctx, bucket) and algo is not None and algo != "aws:kms":
            yield Finding(
                configs[0].urn,
                "rules[0].applyServerSideEncryptionByDefault.sseAlgorithm",
                algo,
                "the model store must use aws:kms",
            )


@stack_rule("s3-model-versioning", "The model store keeps versions (restores deleted models).")
def _s3_versioning(ctx: Context) -> Iterator[Finding]:
    for bucket in ctx.stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        if not _is_model_bucket(ctx, bucket):
            continue
        versioning = _bucket_companions(ctx, bucket, "aws:s3/bucketVersioning:BucketVersioning")
        status = versioning[0].get("versioningConfiguration", "status") if versioning else None
        if status != "Enabled" and not (
            versioning and status is None and _unknown(versioning[0].inputs.get("versioningConfiguration"))
        ):
            yield Finding(bucket.urn, "versioning", status, "the model bucket must have versioning Enabled")


@stack_rule("s3-tls-only", "Every bucket policy denies requests without TLS.", basic=True)
def _s3_tls(ctx: Context) -> Iterator[Finding]:
    for bucket in ctx.stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        policies = _bucket_companions(ctx, bucket, "aws:s3/bucketPolicy:BucketPolicy")
        if policies and _unknown(policies[0].inputs.get("policy")):
            continue
        denies = any(
            st.get("Effect") == "Deny"
            and str((st.get("Condition") or {}).get("Bool", {}).get("aws:SecureTransport")).lower() == "false"
            for p in policies
            for st in statements(p.get("policy"))
        )
        if not denies:
            yield Finding(bucket.urn, "policy", None, "no bucket policy statement denies aws:SecureTransport false")


@resource_rule(
    "no-public-principal",
    'No resource policy allows Principal "*" without a condition.',
    tuple(POLICY_FIELDS),
    basic=True,
)
def _public_principal(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    field_ = POLICY_FIELDS[r.type]
    for i, st in enumerate(statements(r.get(field_))):
        principal = st.get("Principal")
        values = as_list(principal.get("AWS")) if isinstance(principal, Mapping) else as_list(principal)
        if st.get("Effect") == "Allow" and "*" in values and not _binds(st):
            yield (
                f"{field_}.Statement[{i}]",
                principal,
                "allows anyone: name the principals, or bind them with a condition on the source account, ARN, "
                "VPC or organization (aws:SecureTransport alone binds nobody)",
            )


# ---------------------------------------------------------------------------------------------
# EKS

CLUSTER = ("aws:eks/cluster:Cluster",)


@resource_rule("eks-version", "The cluster runs a supported Kubernetes version.", CLUSTER, params={"supported": []})
def _eks_version(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    supported = [str(v) for v in ctx.param("eks-version", "supported", [])]
    version = r.inputs.get("version")
    if _unknown(version) or not supported:
        return
    if version not in supported:
        yield "version", version, f"must be one of {', '.join(supported)} (unset means whatever EKS defaults to)"


@resource_rule("eks-secrets-encryption", "Kubernetes secrets are envelope-encrypted with KMS.", CLUSTER, basic=True)
def _eks_secrets(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    config = r.inputs.get("encryptionConfig")
    if _unknown(config):
        return
    resources = as_list(r.get("encryptionConfig", "resources"))
    if "secrets" not in resources or not r.inputs.get("encryptionConfig", {}).get("provider"):
        yield "encryptionConfig", config, "set encryptionConfig {resources: [secrets], provider: {keyArn}}"


@resource_rule("eks-logging", "Control-plane logs api, audit and authenticator are on.", CLUSTER, basic=True)
def _eks_logging(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    types = r.inputs.get("enabledClusterLogTypes")
    if _unknown(types):
        return
    missing = [t for t in ("api", "audit", "authenticator") if t not in as_list(types)]
    if missing:
        yield "enabledClusterLogTypes", as_list(types), f"add {', '.join(missing)}"


@resource_rule(
    "eks-endpoint",
    "The API endpoint is never open to 0.0.0.0/0, and private where required.",
    CLUSTER,
    basic=True,
    params={"requirePrivate": False},
)
def _eks_endpoint(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    vpc = r.inputs.get("vpcConfig")
    if _unknown(vpc):
        return
    public = r.get("vpcConfig", "endpointPublicAccess")
    public = True if public is None else _true(public)  # the EKS default is a public endpoint
    cidrs = r.get("vpcConfig", "publicAccessCidrs")
    cidrs = ["0.0.0.0/0"] if cidrs is None else as_list(cidrs)  # ... open to everyone by default
    if public and ctx.param("eks-endpoint", "requirePrivate", False):
        yield "vpcConfig.endpointPublicAccess", True, f"must be false in {ctx.env}: reach the API from inside the VPC"
    if public and any(c in OPEN_CIDRS for c in cidrs):
        yield "vpcConfig.publicAccessCidrs", cidrs, "opens the API endpoint to the internet; list your own ranges"


@resource_rule("eks-access-entries", "Cluster access is managed by access entries (authentication mode API).", CLUSTER)
def _eks_access(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    mode = r.get("accessConfig", "authenticationMode")
    if _unknown(r.inputs.get("accessConfig")):
        return
    if mode != "API":
        yield (
            "accessConfig.authenticationMode",
            mode or "CONFIG_MAP (default)",
            "set API: access entries, no aws-auth ConfigMap",
        )


# ---------------------------------------------------------------------------------------------
# Compute

NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


@resource_rule(
    "imdsv2-required",
    "Instances require IMDSv2 tokens.",
    ("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance", NODE_CLASS),
    basic=True,
)
def _imdsv2(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if r.type == NODE_CLASS:
        tokens = r.get("spec", "metadataOptions", "httpTokens")
        if tokens not in (None, "required"):  # Karpenter defaults to required
            yield "spec.metadataOptions.httpTokens", tokens, "must be required"
        return
    if _unknown(r.inputs.get("metadataOptions")):
        return
    tokens = r.get("metadataOptions", "httpTokens")
    if tokens != "required":
        yield "metadataOptions.httpTokens", tokens or "optional (default)", "must be required (IMDSv2)"


@resource_rule(
    "ebs-encrypted",
    "Every EBS volume and block-device mapping is encrypted.",
    (
        "aws:ec2/launchTemplate:LaunchTemplate",
        "aws:ebs/volume:Volume",
        "aws:ec2/instance:Instance",
        NODE_CLASS,
        "kubernetes:storage.k8s.io/v1:StorageClass",
    ),
    basic=True,
)
def _ebs(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if r.type == "aws:ebs/volume:Volume":
        if not _true(r.get("encrypted")) and not _unknown(r.inputs.get("encrypted")):
            yield "encrypted", r.get("encrypted"), "must be true"
    elif r.type == "aws:ec2/instance:Instance":
        if r.get("rootBlockDevice") is not None and not _true(r.get("rootBlockDevice", "encrypted")):
            yield "rootBlockDevice.encrypted", r.get("rootBlockDevice", "encrypted"), "must be true"
    elif r.type == "kubernetes:storage.k8s.io/v1:StorageClass":
        if r.get("provisioner") == "ebs.csi.aws.com" and r.get("parameters", "encrypted") != "true":
            yield "parameters.encrypted", r.get("parameters", "encrypted"), 'must be "true"'
    else:
        mappings = r.get("spec", "blockDeviceMappings") if r.type == NODE_CLASS else r.get("blockDeviceMappings")
        prefix = "spec.blockDeviceMappings" if r.type == NODE_CLASS else "blockDeviceMappings"
        for i, mapping in enumerate(as_list(mappings)):
            ebs = mapping.get("ebs") if isinstance(mapping, Mapping) else None
            if isinstance(ebs, Mapping) and not _true(ebs.get("encrypted")) and not _unknown(ebs.get("encrypted")):
                yield (
                    f"{prefix}[{i}].ebs.encrypted",
                    ebs.get("encrypted"),
                    'must be true (the schema takes the string "true")',
                )


def _nodepool_values(r: Resource, key: str) -> list[str]:
    for req in as_list(r.get("spec", "template", "spec", "requirements")):
        if isinstance(req, Mapping) and req.get("key") == key and req.get("operator") == "In":
            return [str(v) for v in as_list(req.get("values"))]
    return []


@resource_rule(
    "gpu-instance-allowlist",
    "GPU instance and capacity types are allow-listed per environment.",
    (NODE_POOL, "aws:eks/nodeGroup:NodeGroup"),
    params={"instanceTypes": [], "capacityTypes": ["on-demand", "spot"]},
)
def _gpu_allowlist(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    allowed_types = set(ctx.param("gpu-instance-allowlist", "instanceTypes", []))
    allowed_caps = set(ctx.param("gpu-instance-allowlist", "capacityTypes", ["on-demand", "spot"]))
    if r.type == NODE_POOL:
        types = _nodepool_values(r, "node.kubernetes.io/instance-type")
        caps = _nodepool_values(r, "karpenter.sh/capacity-type")
        field_types, field_caps = (
            "spec.template.spec.requirements[instance-type]",
            "spec.template.spec.requirements[capacity-type]",
        )
    else:
        types = [str(t) for t in as_list(r.get("instanceTypes"))]
        cap = r.get("capacityType")
        caps = ["spot" if cap == "SPOT" else "on-demand"]
        field_types, field_caps = "instanceTypes", "capacityType"
        if not any(_is_gpu_type(t) for t in types):
            return
    bad = [t for t in types if _is_gpu_type(t) and allowed_types and t not in allowed_types]
    if bad:
        yield field_types, bad, f"not allowed in {ctx.env}; allowed: {', '.join(sorted(allowed_types))}"
    bad_caps = [c for c in caps if c not in allowed_caps]
    if bad_caps:
        yield field_caps, bad_caps, f"not allowed in {ctx.env}; allowed: {', '.join(sorted(allowed_caps))}"


def _is_gpu_type(instance_type: str) -> bool:
    gpus = price_book().gpus(instance_type)
    if gpus is not None:
        return gpus > 0
    # Unpriced: judge by family (EC2's accelerated-computing g* and p* families), never let it pass unseen.
    return bool(re.match(r"^[gp]\d", instance_type))


@stack_rule(
    "gpu-capacity-cap", "All GPU pools together stay under the environment's GPU cap.", params={"maxGpus": None}
)
def _gpu_cap(ctx: Context) -> Iterator[Finding]:
    cap = ctx.param("gpu-capacity-cap", "maxGpus")
    if cap is None:
        return
    total, parts = 0, []
    for pool in ctx.stack.of_type(NODE_POOL):
        limit = _count(pool.get("spec", "limits", GPU))
        if limit is not None:
            total += limit
            parts.append(f"{pool.name} {limit}")
    for group in ctx.stack.of_type("aws:eks/nodeGroup:NodeGroup"):
        types = as_list(group.get("instanceTypes"))
        most = _count(group.get("scalingConfig", "maxSize"))
        gpus = max((price_book().gpus(str(t)) or 0 for t in types), default=0)
        if gpus and most is not None:
            total += most * gpus
            parts.append(f"{group.name} {most * gpus}")
    if total > int(cap):
        urn = ctx.stack.of_type(NODE_POOL)[0].urn if ctx.stack.of_type(NODE_POOL) else ""
        yield Finding(
            urn,
            "spec.limits.nvidia.com/gpu",
            total,
            f"GPU pools add up to {total} GPUs ({', '.join(parts)}), over the {ctx.env} cap of {cap}",
        )


# ---------------------------------------------------------------------------------------------
# Network


def _sg_is_load_balancers(ctx: Context, sg_urn: str) -> bool:
    return any(
        lb.depends_on(sg_urn, "securityGroups")
        for lb in ctx.stack.of_type("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
    )


@resource_rule(
    "no-open-ingress",
    "No ingress from 0.0.0.0/0 or ::/0, except 80/443 on load balancers.",
    (
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    ),
    basic=True,
)
def _open_ingress(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    rules: list[tuple[str, Mapping[str, Any], str | None]] = []
    if r.type == "aws:ec2/securityGroup:SecurityGroup":
        rules = [
            (f"ingress[{i}]", rule, r.urn)
            for i, rule in enumerate(as_list(r.get("ingress")))
            if isinstance(rule, Mapping)
        ]
    elif r.type == "aws:ec2/securityGroupRule:SecurityGroupRule":
        if r.get("type") == "ingress":
            deps = r.property_dependencies.get("securityGroupId", ())
            rules = [("", r.inputs, deps[0] if deps else None)]
    else:
        deps = r.property_dependencies.get("securityGroupId", ())
        single: dict[str, Any] = dict(r.inputs)
        single["cidrBlocks"] = [single.get("cidrIpv4")] if single.get("cidrIpv4") else []
        single["ipv6CidrBlocks"] = [single.get("cidrIpv6")] if single.get("cidrIpv6") else []
        rules = [("", single, deps[0] if deps else None)]
    for path, rule, sg in rules:
        cidrs = [c for c in [*as_list(rule.get("cidrBlocks")), *as_list(rule.get("ipv6CidrBlocks"))] if c in OPEN_CIDRS]
        if not cidrs:
            continue
        ports = (rule.get("fromPort"), rule.get("toPort"))
        web = ports[0] == ports[1] and ports[0] in (80, 443)
        if web and sg and _sg_is_load_balancers(ctx, sg):
            continue
        prefix = f"{path}." if path else ""
        yield (
            f"{prefix}cidrBlocks",
            cidrs,
            f"opens ports {ports[0]}-{ports[1]} to the internet; only 80/443 on a load balancer may be",
        )


@stack_rule("vpc-flow-logs", "Every VPC has flow logs.", basic=True)
def _flow_logs(ctx: Context) -> Iterator[Finding]:
    for vpc in ctx.stack.of_type("aws:ec2/vpc:Vpc"):
        if not ctx.stack.referencing(vpc, "aws:ec2/flowLog:FlowLog"):
            yield Finding(
                vpc.urn, "flowLogs", None, "no aws:ec2/flowLog for this VPC; add one to an encrypted log group"
            )


# ---------------------------------------------------------------------------------------------
# IAM


@resource_rule(
    "iam-no-wildcards", 'No Action "*", and no service-wide wildcard on all resources.', IDENTITY_POLICIES, basic=True
)
def _iam_wildcards(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    for i, st in enumerate(statements(r.get("policy"))):
        if st.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in as_list(st.get("Action"))]
        resources = [str(x) for x in as_list(st.get("Resource"))]
        everything = any(x == "*" or re.match(r"^arn:[^:]+:s3:::\*$", x) for x in resources)
        if "*" in actions or "*:*" in actions:
            yield f"policy.Statement[{i}].Action", actions, "allows every action; list the actions needed"
        elif everything and any(a.endswith(":*") for a in actions):
            wild = [a for a in actions if a.endswith(":*")]
            yield (
                f"policy.Statement[{i}]",
                {"Action": wild, "Resource": resources},
                "a service-wide wildcard on all resources; scope actions and resources",
            )


def _web_identity_subjects(role: Resource) -> list[tuple[int, Mapping[str, Any]]]:
    out = []
    for i, st in enumerate(statements(role.get("assumeRolePolicy"))):
        if "sts:AssumeRoleWithWebIdentity" in as_list(st.get("Action")):
            out.append((i, st))
    return out


@resource_rule(
    "irsa-trust-scoped", "IRSA trust is scoped to exactly one service account.", ("aws:iam/role:Role",), basic=True
)
def _irsa(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    for i, st in _web_identity_subjects(r):
        condition = st.get("Condition") or {}
        equals = condition.get("StringEquals") or {}
        subs = [v for k, v in equals.items() if str(k).endswith(":sub")]
        values = [x for v in subs for x in as_list(v)]
        like = [k for k in (condition.get("StringLike") or {}) if str(k).endswith(":sub")]
        if like or len(values) != 1 or "*" in str(values[0]) or not str(values[0]).startswith("system:serviceaccount:"):
            yield (
                f"assumeRolePolicy.Statement[{i}].Condition",
                condition,
                "StringEquals <issuer>:sub must name one system:serviceaccount:<ns>:<name>",
            )


@stack_rule(
    "model-pull-role-read-only",
    "The model-pull role only reads its environment's model bucket.",
    basic=True,
    params={"namespace": "models", "serviceAccount": "model-puller"},
)
def _model_pull(ctx: Context) -> Iterator[Finding]:
    namespace = ctx.param("model-pull-role-read-only", "namespace", "models")
    account = ctx.param("model-pull-role-read-only", "serviceAccount", "model-puller")
    subject = f"system:serviceaccount:{namespace}:{account}"
    bucket = ctx.model_bucket()
    for role in ctx.stack.of_type("aws:iam/role:Role"):
        trusted = any(subject in str(st.get("Condition")) for _, st in _web_identity_subjects(role))
        if not trusted:
            continue
        for attachment in ctx.stack.referencing(role, "aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
            yield Finding(
                attachment.urn,
                "policyArn",
                attachment.get("policyArn"),
                "the model-pull role takes no managed policies",
            )
        for policy in ctx.stack.referencing(role, "aws:iam/rolePolicy:RolePolicy"):
            for i, st in enumerate(statements(policy.get("policy"))):
                if st.get("Effect") != "Allow":
                    continue
                extra = [a for a in as_list(st.get("Action")) if a not in READ_ONLY_MODEL_ACTIONS]
                if extra:
                    yield Finding(
                        policy.urn,
                        f"policy.Statement[{i}].Action",
                        extra,
                        f"the model-pull role may only {', '.join(sorted(READ_ONLY_MODEL_ACTIONS))}",
                    )
                for res in as_list(st.get("Resource")):
                    s3 = str(res).startswith("arn:aws") and ":s3:::" in str(res)
                    if s3 and bucket and str(res).split(":::", 1)[1].split("/", 1)[0] != bucket:
                        yield Finding(
                            policy.urn,
                            f"policy.Statement[{i}].Resource",
                            res,
                            f"only the {ctx.env} model bucket {bucket} may be read",
                        )
                    elif res == "*" and any(str(a).startswith("s3:") for a in as_list(st.get("Action"))):
                        yield Finding(
                            policy.urn, f"policy.Statement[{i}].Resource", res, "scope S3 reads to the model bucket"
                        )


# ---------------------------------------------------------------------------------------------
# KMS, ECR, Helm


@resource_rule("kms-rotation", "Customer-managed KMS keys rotate.", ("aws:kms/key:Key",), basic=True)
def _kms(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if not _true(r.get("enableKeyRotation")) and not _unknown(r.inputs.get("enableKeyRotation")):
        yield "enableKeyRotation", r.get("enableKeyRotation") or False, "must be true"


@resource_rule(
    "ecr-immutable-scanned",
    "ECR tags are immutable and images are scanned on push.",
    ("aws:ecr/repository:Repository",),
)
def _ecr(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if r.get("imageTagMutability") != "IMMUTABLE":
        yield "imageTagMutability", r.get("imageTagMutability") or "MUTABLE (default)", "must be IMMUTABLE"
    if not _true(r.get("imageScanningConfiguration", "scanOnPush")):
        yield "imageScanningConfiguration.scanOnPush", r.get("imageScanningConfiguration", "scanOnPush"), "must be true"


@resource_rule(
    "helm-pinned",
    "Helm releases pin an exact chart version.",
    ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"),
)
def _helm(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    version = r.inputs.get("version")
    if _unknown(version):
        return
    if not isinstance(version, str) or not SEMVER.match(version):
        yield "version", version, "pin an exact chart version (x.y.z); unset means the latest"


@resource_rule(
    "grafana-credentials",
    "Grafana never runs with a default admin password.",
    ("kubernetes:helm.sh/v3:Release",),
    basic=True,
)
def _grafana(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    chart = str(r.get("chart") or "")
    values = r.get("values") or {}
    if not isinstance(values, Mapping):
        return
    if chart.endswith("kube-prometheus-stack"):
        grafana, path = mapping(values.get("grafana")), "values.grafana"
        if grafana.get("enabled") is False:
            return
    elif chart.endswith("grafana"):
        grafana, path = values, "values"
    else:
        return
    password = grafana.get("adminPassword")
    secret = dig(grafana, "admin", "existingSecret")
    if password is not None and password in DEFAULT_GRAFANA_PASSWORDS:
        yield f"{path}.adminPassword", password, "is a default password; use admin.existingSecret"
    elif password is None and not secret:
        yield (
            f"{path}.admin.existingSecret",
            None,
            "unset means the chart's default password (prom-operator); point it at a generated Secret",
        )


# ---------------------------------------------------------------------------------------------
# Pods and InferenceServices


def _containers(r: Resource) -> list[tuple[str, Mapping[str, Any]]]:
    spec = r.get(*WORKLOADS[r.type])
    if not isinstance(spec, Mapping):
        return []
    prefix = ".".join(WORKLOADS[r.type])
    out = [
        (f"{prefix}.containers[{i}]", c)
        for i, c in enumerate(as_list(spec.get("containers")))
        if isinstance(c, Mapping)
    ]
    if r.type == ISVC and isinstance(spec.get("model"), Mapping):
        out.append((f"{prefix}.model", spec["model"]))
    return out


def _pod_spec(r: Resource) -> Mapping[str, Any]:
    spec = r.get(*WORKLOADS[r.type])
    return spec if isinstance(spec, Mapping) else {}


@resource_rule(
    "workload-resources",
    "Every container sets requests and limits; GPU requests equal limits.",
    tuple(WORKLOADS),
    basic=True,
)
def _resources(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    for path, c in _containers(r):
        res = mapping(c.get("resources"))
        requests, limits = mapping(res.get("requests")), mapping(res.get("limits"))
        missing = [
            f"{kind}.{k}"
            for kind, d in (("requests", requests), ("limits", limits))
            for k in ("cpu", "memory")
            if k not in d
        ]
        if missing:
            yield f"{path}.resources", res, f"set {', '.join(missing)}"
        if GPU in requests and str(requests[GPU]) != str(limits.get(GPU)):
            yield f"{path}.resources", res, "GPU requests must equal GPU limits"


def _image_problems(
    path: str, image: Any, ctx: Context, rule: str = "workload-images"
) -> Iterator[tuple[str, Any, str]]:
    if not isinstance(image, str) or not known(image):
        return
    # injected-images uses workload-images' allow-list unless its own config names one.
    listed = ctx.param(rule, "registries") or ctx.param("workload-images", "registries", [])
    allowed = [str(x) for x in listed]
    name = image.split("@", 1)[0]
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else None
    if "@sha256:" not in image and (tag is None or tag == "latest"):
        yield path, image, "pin an immutable tag or a digest (never latest or untagged)"
    if allowed and not any(fnmatch.fnmatchcase(image, pattern) for pattern in allowed):
        yield path, image, f"registry not allowed in {ctx.env}; allowed: {', '.join(allowed)}"


def _is_kserve_chart(release: Resource) -> bool:
    chart = release.get("chart")
    return isinstance(chart, str) and chart.rstrip("/").endswith("/kserve")


def kserve_settings(stack: Stack) -> kserve.Settings:
    """KServe's chart defaults with the values of the KServe release in this preview (if it has one); once
    per preview."""
    cached: kserve.Settings | None = stack.derived.get("kserve-settings")
    if cached is None:
        releases = [r for r in stack.of_type("kubernetes:helm.sh/v3:Release") if _is_kserve_chart(r)]
        cached = kserve.Settings.from_values(releases[0].get("values")) if releases else kserve.Settings()
        stack.derived["kserve-settings"] = cached
    return cached


@resource_rule(
    "workload-images",
    "Images are pinned (no latest) and come from allowed registries.",
    tuple(WORKLOADS),
    params={"registries": []},
)
def _images(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    for path, c in _containers(r):
        if r.type == ISVC and path.endswith(".model"):
            # A built-in runtime's container: the image comes from the ClusterServingRuntime.
            fmt = str(dig(c, "modelFormat", "name"))
            image = kserve_settings(ctx.stack).runtime_image(fmt)
            yield from _image_problems(f"{path} (runtime kserve-{fmt}: its image)", image, ctx)
            continue
        yield from _image_problems(f"{path}.image", c.get("image"), ctx)


@resource_rule(
    "injected-images",
    "The images KServe injects into model pods (storage initializer, serving runtimes) are pinned and come "
    "from the allowed registries.",
    ("kubernetes:helm.sh/v3:Release",),
    params={"registries": None},
)
def _injected_images(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if not _is_kserve_chart(r) or _unknown(r.inputs.get("values")):
        return
    for key, image in kserve.Settings.from_values(r.get("values")).images().items():
        # The same allow-list and pinning as the workloads' own images.
        for field_, value, message in _image_problems(f"values.{key}", image, ctx, "injected-images"):
            yield field_, value, f"{message} (KServe injects it into every model pod)"


@resource_rule(
    "upstream-admission",
    "KServe's and KEDA's admission webhooks (ported at the pinned tags) admit every InferenceService and "
    "ScaledObject, including the ScaledObject KServe builds for autoscalerClass keda.",
    (ISVC, SCALED_OBJECT),
    basic=True,
)
def _admission(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if _unknown(r.inputs.get("spec")):
        return
    obj = {"metadata": r.get("metadata") or {}, "spec": r.get("spec") or {}}
    namespace = dig(obj, "metadata", "namespace")
    peers = [
        {"metadata": o.get("metadata") or {}, "spec": o.get("spec") or {}}
        for o in ctx.stack.of_type(SCALED_OBJECT)
        if o.urn != r.urn and o.get("metadata", "namespace") == namespace
    ]
    try:
        if r.type == ISVC:
            admission.validate_inference_service(obj)
            if dig(obj, "metadata", "annotations", admission.AUTOSCALER_CLASS) == "keda":
                built = admission.kserve_scaled_object(obj)
                try:
                    admission.validate_scaled_object(built, others=peers)
                except admission.Refused as exc:
                    raise admission.Refused(f"the ScaledObject KServe builds from it: {exc}") from None
        else:
            admission.validate_scaled_object(obj, others=peers)
    except admission.Refused as exc:
        webhook = "KServe " + admission.KSERVE_TAG if r.type == ISVC else "KEDA " + admission.KEDA_TAG
        yield "spec", None, f"{webhook} admission refuses it: {exc}"


@resource_rule(
    "workload-security",
    "Pods run non-root, unprivileged, without escalation, capabilities dropped, read-only root.",
    tuple(WORKLOADS),
    basic=True,
)
def _security(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    pod = _pod_spec(r)
    pod_nonroot = _true(dig(pod, "securityContext", "runAsNonRoot"))
    for path, c in _containers(r):
        sc = mapping(c.get("securityContext"))
        problems = []
        if not (pod_nonroot or _true(sc.get("runAsNonRoot"))):
            problems.append("runAsNonRoot: true")
        if _true(sc.get("privileged")):
            problems.append("privileged: false")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation: false")
        if "ALL" not in as_list(dig(sc, "capabilities", "drop")):
            problems.append("capabilities.drop: [ALL]")
        if not _true(sc.get("readOnlyRootFilesystem")):
            problems.append("readOnlyRootFilesystem: true")
        if problems:
            yield f"{path}.securityContext", sc, f"set {', '.join(problems)}"


@resource_rule(
    "inferenceservice-min-replicas",
    "InferenceServices keep enough replicas for the environment.",
    (ISVC,),
    params={"minReplicas": 1},
)
def _min_replicas(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    least = int(ctx.param("inferenceservice-min-replicas", "minReplicas", 1))
    if (r.get("metadata", "labels") or {}).get(ROLE_LABEL) == "canary":
        return  # a canary is small on purpose; its stable InferenceService carries the floor
    value = r.get("spec", "predictor", "minReplicas")
    if _unknown(r.inputs.get("spec")):
        return
    replicas = 1 if value is None else int(value)  # KServe's default is 1
    if replicas < least:
        yield "spec.predictor.minReplicas", value, f"must be ≥ {least} in {ctx.env}"


@stack_rule("inferenceservice-pdb", "Every InferenceService has a PodDisruptionBudget.")
def _pdb(ctx: Context) -> Iterator[Finding]:
    pdbs = ctx.stack.of_type("kubernetes:policy/v1:PodDisruptionBudget")
    for isvc in ctx.stack.of_type(ISVC):
        name, ns = isvc.get("metadata", "name"), isvc.get("metadata", "namespace")
        covered = any(
            p.get("metadata", "namespace") == ns
            and (p.get("spec", "selector", "matchLabels") or {}).get(ISVC_LABEL) == name
            for p in pdbs
        )
        if not covered:
            yield Finding(
                isvc.urn, "podDisruptionBudget", None, f"no PodDisruptionBudget selecting {ISVC_LABEL}={name}"
            )


@resource_rule(
    "inferenceservice-gpu-placement",
    "GPU predictors tolerate the GPU taint and select a pool that exists.",
    (ISVC,),
    params={"knownPools": []},
)
def _placement(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    predictor = r.get("spec", "predictor") or {}
    gpus = any(GPU in ((c.get("resources") or {}).get("limits") or {}) for _, c in _containers(r))
    if not gpus:
        return
    tolerations = [t for t in as_list(predictor.get("tolerations")) if isinstance(t, Mapping)]
    if not any(t.get("key") == GPU_TAINT_KEY for t in tolerations):
        yield "spec.predictor.tolerations", tolerations, f"GPU predictors must tolerate {GPU_TAINT_KEY}"
    pool = (predictor.get("nodeSelector") or {}).get(GPU_POOL_LABEL)
    pools = ctx.gpu_pools()
    if pool is None:
        yield "spec.predictor.nodeSelector", predictor.get("nodeSelector"), f"select a GPU pool with {GPU_POOL_LABEL}"
    elif pools is not None and pool not in pools:
        yield (
            f"spec.predictor.nodeSelector.{GPU_POOL_LABEL}",
            pool,
            f"no such GPU pool; pools: {', '.join(sorted(pools))}",
        )


def _model_sources(r: Resource) -> Iterator[tuple[str, Any]]:
    """Every form a model source takes in an InferenceService: `storageUri` (on the predictor or its
    `model`), the `storage` spec's bucket parameter, and a container's STORAGE_URI environment variable."""
    for path in (("spec", "predictor", "model", "storageUri"), ("spec", "predictor", "storageUri")):
        yield ".".join(path), r.get(*path)
    for path in (("spec", "predictor", "model", "storage"), ("spec", "predictor", "storage")):
        bucket = dig(r.get(*path), "parameters", "bucket")
        if bucket is not None:
            yield ".".join((*path, "parameters", "bucket")), f"s3://{bucket}/"
    for i, container in enumerate(as_list(r.get("spec", "predictor", "containers"))):
        for j, env in enumerate(as_list(dig(container, "env"))):
            if dig(env, "name") == "STORAGE_URI":
                yield f"spec.predictor.containers[{i}].env[{j}].value", dig(env, "value")


@resource_rule(
    "storage-uri-in-model-bucket",
    "Models load from the environment's model bucket.",
    (ISVC,),
    params={"modelBucket": None},
)
def _storage_uri(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    bucket = ctx.model_bucket()
    if bucket is None:
        return
    for path, uri in _model_sources(r):
        if isinstance(uri, str) and known(uri) and not uri.startswith(f"s3://{bucket}/"):
            yield path, uri, f"must be inside s3://{bucket}/"


# ---------------------------------------------------------------------------------------------
# Budgets


def _budget(ctx: Context) -> Resource | None:
    budgets = ctx.stack.of_type("aws:budgets/budget:Budget")
    return budgets[0] if budgets else None


@stack_rule("budget-exists", "The environment has an AWS Budget with actual and forecast notifications.")
def _budget_exists(ctx: Context) -> Iterator[Finding]:
    clusters = ctx.stack.of_type(*CLUSTER)
    if not clusters:
        return  # a workloads-only preview: the platform stack owns the budget
    budget = _budget(ctx)
    if budget is None:
        yield Finding(
            clusters[0].urn, "budget", None, f"no aws:budgets/budget for {ctx.env}; add one (infra/alerts.py)"
        )
        return
    kinds = {
        str(n.get("notificationType"))
        for n in as_list(budget.get("notifications"))
        if isinstance(n, Mapping) and isinstance(n.get("notificationType"), str)
    }
    missing = [k for k in ("ACTUAL", "FORECASTED") if k not in kinds]
    if missing:
        yield Finding(
            budget.urn, "notifications", sorted(k for k in kinds if k), f"add {' and '.join(missing)} notifications"
        )


def _budget_amount(ctx: Context) -> tuple[float, str] | None:
    budget = _budget(ctx)
    amount = budget.get("limitAmount") if budget else None
    if amount is not None:
        try:
            return float(amount), budget.urn if budget else ""
        except (TypeError, ValueError):
            return None
    configured = ctx.param("budget-baseline", "monthlyBudgetUsd")
    return (float(configured), "") if configured else None


def _over_budget(ctx: Context, figure: float, what: str) -> Iterator[Finding]:
    found = _budget_amount(ctx)
    if found is None:
        return
    amount, urn = found
    if figure > amount:
        yield Finding(urn, "limitAmount", amount, f"{what} ${figure:,.2f}/month, over the ${amount:,.2f} budget")


@stack_rule(
    "budget-baseline",
    "The estimated monthly cost at minimum stays under the budget.",
    params={"monthlyBudgetUsd": None},
)
def _budget_baseline(ctx: Context) -> Iterator[Finding]:
    yield from _over_budget(ctx, ctx.estimate.baseline, "the estimated baseline is")


@stack_rule("budget-ceiling", "With every pool at its limit, the estimate stays under the budget.")
def _budget_ceiling(ctx: Context) -> Iterator[Finding]:
    yield from _over_budget(ctx, ctx.estimate.ceiling, "with every pool at its limit the estimate is")


# ---------------------------------------------------------------------------------------------
# Pod Security Standards over every pod-bearing object, namespaces, network policy

NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
ENFORCE = "pod-security.kubernetes.io/enforce"


def _pod_of(r: Resource, ctx: Context) -> Mapping[str, Any]:
    """The pod spec an object runs, as Pod Security Admission sees it: for an InferenceService, the pod
    KServe builds of it (the runtime's container for a `model`, the storage initializer it injects with
    the KServe release's values; policies/governance/kserve.py)."""
    if r.type == ISVC:
        obj = {"metadata": r.get("metadata") or {}, "spec": r.get("spec") or {}}
        return kserve.model_pod(obj, kserve_settings(ctx.stack))["spec"]
    return _pod_spec(r)


@resource_rule(
    "pod-security-standard",
    "Every pod passes Pod Security restricted; pods in allow-listed privileged namespaces pass baseline.",
    tuple(WORKLOADS),
    basic=True,
    params={"privilegedNamespaces": ["nvidia", "monitoring"]},
)
def _pod_security(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    namespace = r.get("metadata", "namespace")
    allowed = [str(n) for n in ctx.param("pod-security-standard", "privilegedNamespaces", [])]
    level = "baseline" if namespace in allowed else "restricted"
    prefix = ".".join(WORKLOADS[r.type])
    for field_, value, allowed_values in pod_security.violations(_pod_of(r, ctx), level):  # type: ignore[arg-type]
        yield f"{prefix}.{field_}", value, f"Pod Security {level}: {allowed_values}"


@resource_rule(
    "service-account-token",
    "Pods mount no Kubernetes API token unless they ask for one (automountServiceAccountToken: false).",
    tuple(WORKLOADS),
    basic=True,
)
def _token(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    pod = _pod_of(r, ctx)
    if pod.get("automountServiceAccountToken") is False:
        return
    account = pod.get("serviceAccountName") or "default"
    namespace = r.get("metadata", "namespace")
    accounts = [
        sa
        for sa in ctx.stack.of_type("kubernetes:core/v1:ServiceAccount")
        if sa.get("metadata", "name") == account and sa.get("metadata", "namespace") in (namespace, None)
    ]
    if any(sa.inputs.get("automountServiceAccountToken") is False for sa in accounts):
        return
    if account != "default" and not accounts:
        return  # an account another stack owns: cannot tell
    prefix = ".".join(WORKLOADS[r.type])
    yield (
        f"{prefix}.automountServiceAccountToken",
        pod.get("automountServiceAccountToken"),
        f"the {account!r} service account's token is mounted; set automountServiceAccountToken: false",
    )


@resource_rule(
    "namespace-pod-security",
    "Every namespace enforces a Pod Security level; privileged only where allow-listed.",
    (NAMESPACE,),
    basic=True,
    params={"privilegedNamespaces": ["nvidia", "monitoring"]},
)
def _namespace_pss(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    labels = r.get("metadata", "labels")
    if labels is None and _unknown(r.inputs.get("metadata")):
        return
    level = dig(labels, ENFORCE)
    name = r.get("metadata", "name")
    allowed = [str(n) for n in ctx.param("namespace-pod-security", "privilegedNamespaces", [])]
    if level not in ("baseline", "restricted", "privileged"):
        yield f"metadata.labels.{ENFORCE}", level, "set restricted (or baseline)"
    elif level == "privileged" and name not in allowed:
        yield f"metadata.labels.{ENFORCE}", level, f"privileged only in {', '.join(allowed) or 'no namespace'}"


@stack_rule("namespace-network-policy", "Every namespace denies traffic by default, and the CNI enforces it.")
def _namespace_network(ctx: Context) -> Iterator[Finding]:
    denied = {
        dig(p.inputs, "metadata", "namespace")
        for p in ctx.stack.of_type(NETWORK_POLICY)
        if dig(p.inputs, "spec", "podSelector") == {}
        and {"Ingress", "Egress"} <= {t for t in as_list(dig(p.inputs, "spec", "policyTypes")) if isinstance(t, str)}
        and not dig(p.inputs, "spec", "ingress")
        and not dig(p.inputs, "spec", "egress")
    }
    for ns in ctx.stack.of_type(NAMESPACE):
        name = ns.get("metadata", "name")
        if isinstance(name, str) and name not in denied:
            yield Finding(ns.urn, "metadata.name", name, "no default-deny NetworkPolicy (podSelector: {}) here")
    for addon in ctx.stack.of_type("aws:eks/addon:Addon"):
        if addon.get("addonName") != "vpc-cni" or _unknown(addon.inputs.get("configurationValues")):
            continue
        values = document(addon.get("configurationValues")) or {}
        if str(values.get("enableNetworkPolicy")).lower() != "true":
            yield Finding(
                addon.urn,
                "configurationValues",
                addon.get("configurationValues"),
                'set {"enableNetworkPolicy": "true"}',
            )


# ---------------------------------------------------------------------------------------------
# IAM semantics

#: Conditions that bind a broad principal to a caller: the source account, resource, VPC or organization.
BINDING_CONDITION_KEYS = frozenset(
    {
        "aws:sourceaccount",
        "aws:sourcearn",
        "aws:sourceowner",
        "aws:sourcevpc",
        "aws:sourcevpce",
        "aws:principalorgid",
        "aws:principalaccount",
        "aws:principalarn",
        "aws:sourceorgid",
    }
)
POLICY_DOCUMENTS = {
    **POLICY_FIELDS,
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/role:Role": "assumeRolePolicy",
}


def _binds(statement: Mapping[str, Any]) -> bool:
    keys = {
        str(k).lower()
        for block in as_list(statement.get("Condition"))
        if isinstance(block, Mapping)
        for inner in block.values()
        if isinstance(inner, Mapping)
        for k in inner
    }
    return bool(keys & BINDING_CONDITION_KEYS)


@resource_rule(
    "iam-no-not-action",
    "No Allow statement uses NotAction or NotResource (they grant everything not named).",
    tuple(POLICY_DOCUMENTS),
    basic=True,
)
def _not_action(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    field_ = POLICY_DOCUMENTS[r.type]
    for i, st in enumerate(statements(r.get(field_))):
        if st.get("Effect") == "Allow":
            for key in ("NotAction", "NotResource"):
                if key in st:
                    yield (
                        f"{field_}.Statement[{i}].{key}",
                        st[key],
                        f"an Allow with {key} grants all else; list what is allowed",
                    )


def _accounts_of(ctx: Context) -> frozenset[str]:
    """The accounts this stack's own ARNs name (roles, keys, buckets it references), and those the rule's
    config trusts: found once per stack."""
    extra = frozenset(str(a) for a in ctx.param("iam-trust-scoped", "trustedAccounts", []))
    key = "accounts " + " ".join(sorted(extra))
    found = ctx.stack.derived.get(key)
    if found is None:
        found = set()
        for r in ctx.stack.resources:
            for value in (r.inputs.get("arn"), r.inputs.get("principalArn"), r.inputs.get("roleArn")):
                if isinstance(value, str) and value.startswith("arn:") and len(value.split(":")) > 4:
                    found.add(value.split(":")[4])
            for field_ in ("assumeRolePolicy", "policy"):
                for st in statements(r.inputs.get(field_)):
                    for v in as_list(dig(st, "Condition", "StringEquals", "aws:SourceAccount")):
                        found.add(str(v))
        found.discard("")
        found = ctx.stack.derived[key] = frozenset(found | extra)
    return found


@resource_rule(
    "iam-trust-scoped",
    "Trust policies admit this stack's accounts and AWS services only, and a broad principal only when a "
    "condition binds it.",
    ("aws:iam/role:Role",),
    basic=True,
    params={"trustedAccounts": []},
)
def _trust(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    trusted = _accounts_of(ctx)
    for i, st in enumerate(statements(r.get("assumeRolePolicy"))):
        if st.get("Effect") != "Allow":
            continue
        principal = st.get("Principal")
        aws_principals = as_list(principal.get("AWS")) if isinstance(principal, Mapping) else as_list(principal)
        for who in aws_principals:
            if not isinstance(who, str) or not known(who):
                continue
            if who == "*":
                if not _binds(st):
                    yield f"assumeRolePolicy.Statement[{i}].Principal", who, "anyone may assume this role"
                continue
            account = who.split(":")[4] if who.startswith("arn:") and len(who.split(":")) > 4 else who
            if account.isdigit() and trusted and account not in trusted:
                yield (
                    f"assumeRolePolicy.Statement[{i}].Principal",
                    who,
                    f"account {account} is not this stack's ({', '.join(sorted(trusted))}); add it to trustedAccounts "
                    "on purpose, or remove it",
                )


@resource_rule(
    "iam-no-admin-attachments",
    "No role gets AdministratorAccess, IAMFullAccess or PowerUserAccess.",
    ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "aws:iam/role:Role"),
    basic=True,
)
def _admin(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    arns = (
        as_list(r.get("policyArn")) if r.type.endswith("RolePolicyAttachment") else as_list(r.get("managedPolicyArns"))
    )
    for arn in arns:
        if isinstance(arn, str) and arn.rsplit("/", 1)[-1] in (
            "AdministratorAccess",
            "IAMFullAccess",
            "PowerUserAccess",
        ):
            field_ = "policyArn" if r.type.endswith("RolePolicyAttachment") else "managedPolicyArns"
            yield field_, arn, "an administrator policy; grant the actions the role needs"


# ---------------------------------------------------------------------------------------------
# Guards for what is right today


@resource_rule(
    "imds-hop-limit",
    "Instance metadata answers the node only (hop limit 1): pods cannot reach node credentials.",
    ("aws:ec2/launchTemplate:LaunchTemplate", NODE_CLASS),
    basic=True,
)
def _hop_limit(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    path = ("spec", "metadataOptions") if r.type == NODE_CLASS else ("metadataOptions",)
    if _unknown(r.inputs.get(path[0])):
        return
    hops = _count(r.get(*path, "httpPutResponseHopLimit"))
    if hops is None and r.type == NODE_CLASS:
        return  # Karpenter's default is 1
    if hops != 1:
        yield ".".join((*path, "httpPutResponseHopLimit")), hops, "must be 1"


@resource_rule(
    "default-security-group-empty",
    "The VPC's default security group has no rules.",
    ("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",),
    basic=True,
)
def _default_sg(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    for key in ("ingress", "egress"):
        rules_ = r.get(key)
        if rules_:
            yield key, rules_, "must be empty: nothing should use the default group"


@resource_rule(
    "log-group-encrypted-retained",
    "Log groups are encrypted with a KMS key and keep logs for a set time.",
    ("aws:cloudwatch/logGroup:LogGroup",),
    basic=True,
)
def _log_group(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if not r.get("kmsKeyId") and not _unknown(r.inputs.get("kmsKeyId")):
        yield "kmsKeyId", None, "encrypt with a KMS key"
    if not r.get("retentionInDays") and not _unknown(r.inputs.get("retentionInDays")):
        yield "retentionInDays", None, "set a retention (logs are kept forever otherwise)"


@resource_rule(
    "messaging-encrypted",
    "SNS topics, SQS queues and ECR repositories are encrypted at rest.",
    ("aws:sns/topic:Topic", "aws:sqs/queue:Queue", "aws:ecr/repository:Repository"),
    basic=True,
)
def _messaging(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if r.type == "aws:sns/topic:Topic":
        if not r.get("kmsMasterKeyId") and not _unknown(r.inputs.get("kmsMasterKeyId")):
            yield "kmsMasterKeyId", None, "encrypt the topic with a KMS key"
    elif r.type == "aws:sqs/queue:Queue":
        if (
            not r.get("kmsMasterKeyId")
            and r.get("sqsManagedSseEnabled") is False
            and not _unknown(r.inputs.get("sqsManagedSseEnabled"))
        ):
            yield "sqsManagedSseEnabled", False, "enable SSE (SQS-managed or a KMS key)"
    else:
        kinds = [dig(c, "encryptionType") for c in as_list(r.get("encryptionConfigurations"))]
        if not any(k in ("KMS", "KMS_DSSE") for k in kinds) and not _unknown(r.inputs.get("encryptionConfigurations")):
            yield "encryptionConfigurations", kinds or None, "encrypt with a KMS key (encryptionType: KMS)"


@stack_rule("s3-ownership-enforced", "Every bucket enforces object ownership (ACLs disabled).")
def _s3_ownership(ctx: Context) -> Iterator[Finding]:
    for bucket in ctx.stack.of_type("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        controls = _bucket_companions(ctx, bucket, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
        if not any(c.get("rule", "objectOwnership") == "BucketOwnerEnforced" for c in controls):
            yield Finding(bucket.urn, "ownershipControls", None, "add BucketOwnershipControls: BucketOwnerEnforced")


#: Actions that let a principal raise its own privileges when allowed on any resource: the published
#: escalation paths (Rhino Security Labs, "AWS IAM Privilege Escalation - Methods and Mitigation").
ESCALATION_ACTIONS = frozenset(
    a.lower()
    for a in (
        "iam:CreatePolicyVersion",
        "iam:SetDefaultPolicyVersion",
        "iam:CreateAccessKey",
        "iam:CreateLoginProfile",
        "iam:UpdateLoginProfile",
        "iam:AttachUserPolicy",
        "iam:AttachGroupPolicy",
        "iam:AttachRolePolicy",
        "iam:PutUserPolicy",
        "iam:PutGroupPolicy",
        "iam:PutRolePolicy",
        "iam:AddUserToGroup",
        "iam:UpdateAssumeRolePolicy",
        "iam:PassRole",
        "lambda:UpdateFunctionCode",
        "glue:UpdateDevEndpoint",
        "cloudformation:CreateStack",
        "datapipeline:CreatePipeline",
    )
)


@resource_rule(
    "iam-no-privilege-escalation",
    "No identity policy allows an action that raises privileges (PassRole, policy writes, ...) on any resource.",
    IDENTITY_POLICIES,
    basic=True,
)
def _escalation(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    for i, st in enumerate(statements(r.get("policy"))):
        if st.get("Effect") != "Allow":
            continue
        resources = [str(x) for x in as_list(st.get("Resource"))]
        if "*" not in resources:
            continue  # scoped to named resources: the escalation reaches only those
        risky = sorted(
            str(a)
            for a in as_list(st.get("Action"))
            if isinstance(a, str)
            and (a.lower() in ESCALATION_ACTIONS or a.lower() in ("iam:*", "iam:put*", "iam:attach*"))
        )
        if risky:
            yield (
                f"policy.Statement[{i}]",
                {"Action": risky, "Resource": resources},
                "raises privileges on any resource: scope Resource to the roles or policies it must touch",
            )


#: Keys under which charts take a securityContext, and the host settings that need the privileged level.
_SECURITY_KEYS = ("securityContext", "containerSecurityContext", "podSecurityContext")
_HOST_KEYS = ("hostNetwork", "hostPID", "hostIPC")


def _helm_security_settings(values: Any, path: str = "values") -> Iterator[tuple[str, str, Any]]:
    """(kind, path, value) for every securityContext and host setting a chart's values set, at any depth."""
    if isinstance(values, Mapping):
        for key, value in values.items():
            where = f"{path}.{key}"
            if key in _SECURITY_KEYS and isinstance(value, Mapping):
                yield "context", where, value
            elif key in _HOST_KEYS and value is True:
                yield "host", where, value
            else:
                yield from _helm_security_settings(value, where)
    elif isinstance(values, list):
        for i, value in enumerate(values):
            yield from _helm_security_settings(value, f"{path}[{i}]")


@resource_rule(
    "helm-values-pod-security",
    "The pod settings Helm values set keep the release's pods within their namespace's Pod Security level.",
    ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"),
    basic=True,
    params={"privilegedNamespaces": ["nvidia", "monitoring"]},
)
def _helm_pod_security(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    namespace = r.get("namespace")
    if not isinstance(namespace, str):
        # The namespace is often an output of the Namespace resource: find it by the dependency.
        named = [
            ctx.stack.by_urn[u].get("metadata", "name")
            for u in r.property_dependencies.get("namespace", ())
            if u in ctx.stack.by_urn
        ]
        namespace = next((n for n in named if isinstance(n, str)), None)
    allowed = [str(n) for n in ctx.param("helm-values-pod-security", "privilegedNamespaces", [])]
    level = "baseline" if namespace in allowed else "restricted"
    for kind, path, value in _helm_security_settings(r.get("values")):
        if kind == "host":
            if level == "restricted" or namespace is None:
                yield (
                    path,
                    value,
                    f"host namespaces are refused by Pod Security {level} in {namespace or 'its namespace'}",
                )
            continue
        # A context set in values is checked as the container (and pod) it configures.
        pod = {"securityContext": value, "containers": [{"name": "chart", "securityContext": value}]}
        for field_, got, wanted in pod_security.violations(pod, "baseline"):
            yield f"{path} ({field_.split('.', 1)[-1]})", got, f"Pod Security baseline: {wanted}"
        if level == "restricted":
            weakened = [
                (field_, got)
                for field_, got, _ in pod_security.violations(pod, "restricted")
                if got not in (None, [], {}) and field_.startswith("containers")
            ]
            for field_, got in weakened:
                yield f"{path} ({field_.split('.', 2)[-1]})", got, "weakens Pod Security restricted in this namespace"
