"""The system node group: a small managed, on-demand pool for platform services."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from modelyard.config import SystemPoolConfig
from modelyard.infra import iam
from modelyard.infra.eks import POST_COMPUTE_ADDONS, Cluster, add_managed_addons
from modelyard.policies.governance.conventions import SYSTEM_POOL_LABEL
from modelyard.versions import SYSTEM_NODE_AMI_TYPE

#: AWS managed policies every EKS node needs (networking credentials come through Pod Identity).
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonSSMManagedInstanceCore")


def node_role(
    name: str, *, description: str, account_id: pulumi.Input[str], partition: pulumi.Input[str], parent: pulumi.Resource
) -> aws.iam.Role:
    """An EC2 node role with exactly the AWS managed policies in NODE_POLICIES."""
    role = aws.iam.Role(
        name,
        description=description,
        assume_role_policy=iam.to_json(iam.service_trust("ec2.amazonaws.com", source_account=account_id)),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    for policy in NODE_POLICIES:
        aws.iam.RolePolicyAttachment(
            f"{name}-{policy}",
            role=role.name,
            policy_arn=iam.managed_policy_arn(partition, policy),
            opts=pulumi.ResourceOptions(parent=parent),
        )
    return role


def launch_template_metadata() -> aws.ec2.LaunchTemplateMetadataOptionsArgs:
    """IMDSv2 only, one hop: pods cannot reach node credentials; they use IRSA or Pod Identity."""
    return aws.ec2.LaunchTemplateMetadataOptionsArgs(
        http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
    )


@dataclass(frozen=True, kw_only=True)
class SystemNodeGroupArgs:
    config: SystemPoolConfig
    cluster: Cluster
    subnet_ids: pulumi.Input[Sequence[str]]
    #: The stack's tag set. Default tags do not reach instances a node group launches, so the launch
    #: template's tag specifications carry it explicitly.
    tags: Mapping[str, str]


class SystemNodeGroup(pulumi.ComponentResource):
    """A managed, on-demand node group with encrypted gp3 root volumes and IMDSv2 required. After it is
    up, the add-ons that need nodes (CoreDNS, EBS CSI) are installed."""

    node_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: SystemNodeGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:infra:SystemNodeGroup", name, None, opts)
        cfg, cluster = args.config, args.cluster
        child = pulumi.ResourceOptions(parent=self)
        role = node_role(
            f"{name}-role",
            description="Nodes of the system node group",
            account_id=cluster.account.account_id,
            partition=cluster.account.partition,
            parent=self,
        )
        instance_tags = {**args.tags, "Name": f"{name}-node"}
        template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            description="System nodes: encrypted gp3 root volume, IMDSv2 only",
            update_default_version=True,
            metadata_options=launch_template_metadata(),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=cfg.disk_gib, volume_type="gp3", encrypted="true", delete_on_termination="true"
                    ),
                )
            ],
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=instance_tags)
                for kind in ("instance", "volume", "network-interface")
            ],
            opts=child,
        )
        group = aws.eks.NodeGroup(
            f"{name}-ng",
            cluster_name=cluster.name,
            node_role_arn=role.arn,
            subnet_ids=args.subnet_ids,
            instance_types=list(cfg.instance_types),
            capacity_type="ON_DEMAND",
            ami_type=SYSTEM_NODE_AMI_TYPE,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=cfg.min_size, desired_size=cfg.desired_size, max_size=cfg.max_size
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            labels=dict([SYSTEM_POOL_LABEL]),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(cluster.addons.values())),
        )
        self.addons = add_managed_addons(f"{name}-addon", cluster, POST_COMPUTE_ADDONS, parent=self, depends_on=[group])
        self.node_group_name = group.node_group_name
        self.register_outputs({"node_group_name": self.node_group_name})
