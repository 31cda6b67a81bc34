"""The VPC: public and private subnets per AZ, NAT per config, private endpoints and flow logs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from modelyard.config import NetworkConfig
from modelyard.infra import iam
from modelyard.infra.common import AccountContext, name_tag

#: Interface endpoints that keep image pulls and credential exchange inside the VPC.
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "sts")


@dataclass(frozen=True, kw_only=True)
class NetworkArgs:
    config: NetworkConfig
    #: Prefix for Name tags and the Karpenter discovery tag on private subnets.
    cluster_name: str
    account: AccountContext
    #: KMS key (with a CloudWatch Logs grant) that encrypts the flow-log group.
    logs_key_arn: pulumi.Input[str]
    #: `protect` the flow-log group (the record of what crossed the VPC).
    deletion_protection: bool


class Network(pulumi.ComponentResource):
    """A VPC across `az_count` AZs. Nodes live in private subnets; public subnets hold only NAT and load
    balancers. S3 traffic goes through a gateway endpoint and, for every client in the VPC that resolves its names,
    an interface endpoint; ECR and STS through interface endpoints; every flow is logged to an encrypted
    CloudWatch log group."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:infra:Network", name, None, opts)
        cfg, cluster = args.config, args.cluster_name
        child = pulumi.ResourceOptions(parent=self)

        azs = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOptions(parent=self))
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=name_tag(f"{cluster}-vpc"),
            opts=child,
        )
        # Strip every rule from the default security group so nothing can use it by accident.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags=name_tag(f"{cluster}-default-deny"),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=name_tag(f"{cluster}-igw"), opts=child)

        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags=name_tag(f"{cluster}-public"),
            opts=child,
        )
        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        for i in range(cfg.az_count):
            az = azs.names[i]
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=cfg.public_subnets[i],
                availability_zone=az,
                map_public_ip_on_launch=False,
                tags={**name_tag(f"{cluster}-public-{i}"), "kubernetes.io/role/elb": "1"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}-rta", subnet_id=public.id, route_table_id=public_rt.id, opts=child
            )
            public_subnets.append(public)
            private_subnets.append(
                aws.ec2.Subnet(
                    f"{name}-private-{i}",
                    vpc_id=vpc.id,
                    cidr_block=cfg.private_subnets[i],
                    availability_zone=az,
                    map_public_ip_on_launch=False,
                    tags={
                        **name_tag(f"{cluster}-private-{i}"),
                        "kubernetes.io/role/internal-elb": "1",
                        # Karpenter launches GPU nodes into subnets carrying this tag.
                        "karpenter.sh/discovery": cluster,
                    },
                    opts=child,
                )
            )

        nat_count = cfg.az_count if cfg.nat == "per_az" else 1
        nats = []
        for i in range(nat_count):
            eip = aws.ec2.Eip(f"{name}-nat-{i}-eip", domain="vpc", tags=name_tag(f"{cluster}-nat-{i}"), opts=child)
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=public_subnets[i].id,
                    tags=name_tag(f"{cluster}-nat-{i}"),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
            )
        private_rts = []
        for i, subnet in enumerate(private_subnets):
            nat = nats[i if cfg.nat == "per_az" else 0]
            rt = aws.ec2.RouteTable(
                f"{name}-private-{i}-rt",
                vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
                tags=name_tag(f"{cluster}-private-{i}"),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}-rta", subnet_id=subnet.id, route_table_id=rt.id, opts=child
            )
            private_rts.append(rt)

        region = args.account.region
        s3_gateway = aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_rts],
            tags=name_tag(f"{cluster}-s3"),
            opts=child,
        )
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints-sg",
            vpc_id=vpc.id,
            description="HTTPS from inside the VPC to interface endpoints",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp",
                    from_port=443,
                    to_port=443,
                    cidr_blocks=[cfg.vpc_cidr],
                    description="HTTPS from the VPC",
                )
            ],
            egress=[],
            tags=name_tag(f"{cluster}-endpoints"),
            opts=child,
        )
        for service in INTERFACE_ENDPOINTS:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in private_subnets],
                security_group_ids=[endpoint_sg.id],
                tags=name_tag(f"{cluster}-{service}"),
                opts=child,
            )

        # S3 also as an interface endpoint whose private DNS answers every resolver in the VPC: S3's regional names
        # (`s3.<region>.amazonaws.com`, `<bucket>.s3.<region>.amazonaws.com`) resolve to its addresses in the private
        # subnets, so the model pods reach the model store inside the VPC CIDR and their NetworkPolicy needs no
        # egress to the internet (the gateway endpoint alone answers with S3's public addresses). With the gateway
        # endpoint present, AWS's default for this option sends VPC traffic to the gateway endpoint
        # (PrivateDnsOnlyForInboundResolverEndpoint); false gives it to the interface endpoint.
        aws.ec2.VpcEndpoint(
            f"{name}-s3-interface",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Interface",
            private_dns_enabled=True,
            dns_options=aws.ec2.VpcEndpointDnsOptionsArgs(private_dns_only_for_inbound_resolver_endpoint=False),
            subnet_ids=[s.id for s in private_subnets],
            security_group_ids=[endpoint_sg.id],
            tags=name_tag(f"{cluster}-s3-interface"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[s3_gateway]),
        )

        self._flow_logs(name, vpc, args)

        self.vpc_id = vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets])
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )

    def _flow_logs(self, name: str, vpc: aws.ec2.Vpc, args: NetworkArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/modelyard/{args.cluster_name}/vpc-flow-logs",
            retention_in_days=args.config.flow_logs_retention_days,
            kms_key_id=args.logs_key_arn,
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )
        role = aws.iam.Role(
            f"{name}-flow-logs-role",
            description="Delivers this VPC's flow logs to its log group",
            assume_role_policy=iam.to_json(
                iam.service_trust("vpc-flow-logs.amazonaws.com", source_account=args.account.account_id)
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs-policy",
            role=role.id,
            policy=iam.to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "WriteThisLogGroupOnly",
                            "Effect": "Allow",
                            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                            "Resource": [group.arn, pulumi.Output.concat(group.arn, ":*")],
                        }
                    ],
                }
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=name_tag(f"{args.cluster_name}-flow-log"),
            opts=child,
        )
