"""The EKS control plane, its identity plumbing (OIDC, access entries) and the managed add-ons."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from modelyard.config import EksConfig
from modelyard.infra import iam
from modelyard.infra.common import AccountContext, kms_key
from modelyard.versions import EKS_ADDONS

#: Every control-plane log type EKS offers.
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")

#: The EKS access policy every declared admin entry (deployer, admins, break-glass) is associated with.
CLUSTER_ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"

#: Add-ons that must run before any node can become Ready (networking and credentials).
PRE_COMPUTE_ADDONS = ("eks-pod-identity-agent", "vpc-cni", "kube-proxy")
#: Add-ons that need nodes to schedule on.
POST_COMPUTE_ADDONS = ("coredns", "aws-ebs-csi-driver")

#: Add-ons that call AWS APIs: their service account and the AWS managed policy they need,
#: granted through Pod Identity rather than the node role.
#: Where the managed add-ons run their pods.
ADDON_NAMESPACE = "kube-system"
ADDON_IDENTITIES: Mapping[str, tuple[str, str]] = {
    "vpc-cni": ("aws-node", "AmazonEKS_CNI_Policy"),
    "aws-ebs-csi-driver": ("ebs-csi-controller-sa", "service-role/AmazonEBSCSIDriverPolicy"),
}
#: Add-on configuration (the add-on's own schema: `aws eks describe-addon-configuration`). The VPC CNI
#: enforces Kubernetes NetworkPolicies only when its network policy agent is switched on.
ADDON_CONFIGURATION: Mapping[str, Mapping[str, str]] = {"vpc-cni": {"enableNetworkPolicy": "true"}}


@dataclass(frozen=True, kw_only=True)
class ClusterArgs:
    config: EksConfig
    cluster_name: str
    account: AccountContext
    subnet_ids: pulumi.Input[Sequence[str]]
    logs_key_arn: pulumi.Input[str]
    deletion_protection: bool
    #: The deployer's role when CI deploys (infra/ci.py's deploy role); else the config's, or the running identity's.
    deployer_role_arn: pulumi.Input[str] | None = None


class Cluster(pulumi.ComponentResource):
    """An EKS cluster: pinned version, secrets envelope-encrypted with its own KMS key, every control-plane
    log type on, API access through access entries only, an OIDC provider for IRSA, and the add-ons that
    nodes need before they can join."""

    name: pulumi.Output[str]
    #: The cluster's ARN: what EKS Pod Identity tags a session with (eks-cluster-arn).
    arn: pulumi.Output[str]
    #: The Kubernetes minor version and account context, for the add-ons and components built on it.
    version: str
    account: AccountContext
    endpoint: pulumi.Output[str]
    certificate_authority: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:infra:Cluster", name, None, opts)
        cfg, account = args.config, args.account
        child = pulumi.ResourceOptions(parent=self)

        role = aws.iam.Role(
            f"{name}-role",
            description=f"EKS control plane of {args.cluster_name}",
            assume_role_policy=iam.to_json(
                iam.service_trust("eks.amazonaws.com", source_account=account.account_id, tag_session=True)
            ),
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-role-cluster-policy",
            role=role.name,
            policy_arn=iam.managed_policy_arn(account.partition, "AmazonEKSClusterPolicy"),
            opts=child,
        )
        secrets_key = kms_key(
            f"{name}-secrets-key",
            description=f"Envelope encryption of Kubernetes secrets in {args.cluster_name}",
            account=account,
            alias=f"{args.cluster_name}-eks-secrets",
            parent=self,
            protect=args.deletion_protection,
        )
        # Created before the cluster so EKS writes into a group we own: encrypted, with a retention.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane-logs",
            name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=cfg.log_retention_days,
            kms_key_id=args.logs_key_arn,
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )
        cluster = aws.eks.Cluster(
            f"{name}-cluster",
            name=args.cluster_name,
            version=cfg.version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=cfg.endpoint.public,
                public_access_cidrs=list(cfg.endpoint.public_cidrs) if cfg.endpoint.public else None,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=secrets_key.arn),
                resources=["secrets"],
            ),
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                # No implicit cluster-admin for whoever created the cluster: the deployer's entry is declared below,
                # in the plan and in state, and goes when the config says so.
                bootstrap_cluster_creator_admin_permissions=False,
            ),
            # Managed add-ons below replace the self-managed defaults.
            bootstrap_self_managed_addons=False,
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            deletion_protection=args.deletion_protection,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[attachment, log_group],
                protect=args.deletion_protection,
                # EKS reads this flag only when it creates a cluster, and the provider replaces a cluster whose flag
                # changes: a cluster made with the creator's implicit entry keeps it until `aws eks
                # delete-access-entry` removes it (docs/operations.md), never by a replacement.
                ignore_changes=["accessConfig.bootstrapClusterCreatorAdminPermissions"],
            ),
        )
        issuer: pulumi.Output[str] = cluster.identities.apply(_oidc_issuer)
        oidc = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc",
            url=issuer,
            client_id_lists=["sts.amazonaws.com"],
            opts=child,
        )
        admin_policy = pulumi.Output.concat(
            "arn:", account.partition, ":eks::aws:cluster-access-policy/", CLUSTER_ADMIN_POLICY
        )

        def cluster_admin(label: str, principal_arn: pulumi.Input[str]) -> aws.eks.AccessPolicyAssociation:
            entry = aws.eks.AccessEntry(
                f"{name}-{label}", cluster_name=cluster.name, principal_arn=principal_arn, type="STANDARD", opts=child
            )
            return aws.eks.AccessPolicyAssociation(
                f"{name}-{label}-policy",
                cluster_name=cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=admin_policy,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=child,
            )

        deployer: pulumi.Input[str]
        if args.deployer_role_arn is not None:
            deployer = args.deployer_role_arn
        elif cfg.deployer_role_arn is not None:
            deployer = cfg.deployer_role_arn
        else:
            # The role behind the running identity: an access entry takes a role's ARN, not the session's.
            invoke = pulumi.InvokeOptions(parent=self)
            caller = aws.get_caller_identity_output(opts=invoke)
            deployer = aws.iam.get_session_context_output(arn=caller.arn, opts=invoke).issuer_arn
        # The program's own Kubernetes provider acts as the deployer: nothing in the cluster is created before
        # the deployer may create it.
        deployer_access = cluster_admin("deployer", deployer)
        for i, admin in enumerate(cfg.admin_role_arns):
            cluster_admin(f"admin-{i}", admin)
        self.break_glass_role_arn: pulumi.Output[str] | None = None
        if cfg.break_glass:
            break_glass = aws.iam.Role(
                f"{name}-break-glass",
                name=f"{args.cluster_name}-break-glass",
                description=f"Break-glass cluster-admin of {args.cluster_name}: MFA within the hour, one-hour sessions",
                assume_role_policy=iam.to_json(iam.break_glass_trust(account.account_id, account.partition)),
                max_session_duration=3600,
                opts=child,
            )
            cluster_admin("break-glass", break_glass.arn)
            self.break_glass_role_arn = break_glass.arn

        self.name = cluster.name
        self.arn = cluster.arn
        self.version = cfg.version
        self.account = account
        self.endpoint = cluster.endpoint
        #: The security group EKS made for the control plane's interfaces: what reaches the private endpoint.
        self.security_group_id: pulumi.Output[str] = cluster.vpc_config.apply(
            lambda v: v.cluster_security_group_id or ""
        )
        self.certificate_authority = cluster.certificate_authority.apply(lambda ca: ca.data or "")
        self.oidc_provider_arn = oidc.arn
        self.oidc_issuer_url = issuer
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(cluster.name, cluster.endpoint, self.certificate_authority, deployer_access.id).apply(
                lambda a: kubeconfig(a[0], a[1], a[2], account.region)
            )
        )
        self.addons = add_managed_addons(f"{name}-addon", self, PRE_COMPUTE_ADDONS, parent=self)
        self.register_outputs(
            {"name": self.name, "endpoint": self.endpoint, "oidc_provider_arn": self.oidc_provider_arn}
        )


def add_managed_addons(
    prefix: str,
    cluster: Cluster,
    names: Sequence[str],
    *,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> dict[str, aws.eks.Addon]:
    """Install managed add-ons at the versions pinned for the cluster's Kubernetes version. Add-ons that
    call AWS get a Pod Identity role with exactly their AWS managed policy."""
    versions = EKS_ADDONS[cluster.version]
    account = cluster.account
    addons: dict[str, aws.eks.Addon] = {}
    for addon in names:
        identities = None
        after = list(depends_on)
        if addon in ADDON_IDENTITIES:
            service_account, policy = ADDON_IDENTITIES[addon]
            role = aws.iam.Role(
                f"{prefix}-{addon}-role",
                description=f"Pod Identity role of the {addon} add-on",
                assume_role_policy=iam.to_json(
                    iam.pod_identity_trust(account.account_id, cluster.arn, ADDON_NAMESPACE, service_account)
                ),
                opts=pulumi.ResourceOptions(parent=parent),
            )
            aws.iam.RolePolicyAttachment(
                f"{prefix}-{addon}-role-policy",
                role=role.name,
                policy_arn=iam.managed_policy_arn(account.partition, policy),
                opts=pulumi.ResourceOptions(parent=parent),
            )
            identities = [aws.eks.AddonPodIdentityAssociationArgs(role_arn=role.arn, service_account=service_account)]
            # Pod Identity credentials only work once the agent runs.
            if "eks-pod-identity-agent" in addons:
                after.append(addons["eks-pod-identity-agent"])
        addons[addon] = aws.eks.Addon(
            f"{prefix}-{addon}",
            cluster_name=cluster.name,
            addon_name=addon,
            addon_version=versions[addon],
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            pod_identity_associations=identities,
            configuration_values=json.dumps(dict(ADDON_CONFIGURATION[addon])) if addon in ADDON_CONFIGURATION else None,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=after),
        )
    return addons


def _oidc_issuer(identities: Sequence[aws.eks.outputs.ClusterIdentity]) -> str:
    oidcs = identities[0].oidcs or []
    return oidcs[0].issuer or ""


def kubeconfig(name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token`: no long-lived credential inside."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                name,
                                "--region",
                                region,
                                "--output",
                                "json",
                            ],
                        }
                    },
                }
            ],
        },
        indent=2,
    )
