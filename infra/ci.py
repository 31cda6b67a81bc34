"""GitHub Actions' identities for one environment, and its deploy path to a private API endpoint.

Each role is assumed through GitHub's OIDC provider (no long-lived key anywhere) and its trust names exactly one
subject of one repository, as GitHub assembles the token's `sub` (github/docs, content/actions/reference/security/
oidc.md, "Example subject claims"; tests/test_ci.py ports the rules):

- **preview** (`modelyard-<env>-ci-preview`): `repo:<repository>:pull_request`, the subject of a pull request's
  job that names no environment. It may read what a `pulumi preview` of either project reads at AWS, and nothing
  else: a branch pushed by anyone with write access runs its own code under this role before review.
- **deploy** (`modelyard-<env>-ci-deploy`): `repo:<repository>:environment:<env>`, a job in the GitHub environment
  named like the stack, which holds that environment's required reviewers. It is the cluster's deployer.
- **observer** (`modelyard-<env>-ci-observer`): `repo:<repository>:environment:<env>-canary`, the hourly canary
  verdicts. It may describe the cluster, and in the cluster (group `OBSERVER_GROUP`, platform/monitoring.py) only
  port-forward to Prometheus.

Where the API endpoint is private (`ci.runner: codebuild`), a CodeBuild project in the private subnets is the
repository's GitHub Actions runner (CodeBuild-hosted runners: a job whose `runs-on` is
`codebuild-<project>-<run id>-<attempt>` starts a build there); the cluster's security group admits it on 443.
Its service role reaches its log group and the VPC's network interfaces only: the jobs still assume the roles
above through OIDC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from modelyard.config import CiConfig
from modelyard.infra import iam
from modelyard.infra.common import AccountContext, name_tag
from modelyard.policies.governance import conventions as c
from modelyard.versions import IMAGES

GITHUB_OIDC_HOST = c.GITHUB_OIDC_HOST
AUDIENCE = c.GITHUB_AUDIENCE
#: The Kubernetes group of the observer role's access entry: platform/monitoring.py binds it to port-forwarding
#: to Prometheus.
OBSERVER_GROUP = "modelyard:prometheus-readers"
#: The CodeBuild image of the runner (versions.IMAGES): Ubuntu, where actions/setup-python finds its builds; Amazon
#: Linux has none.
RUNNER_IMAGE = IMAGES["ci-runner"]
RUNNER_COMPUTE = "BUILD_GENERAL1_MEDIUM"
#: A deployment's limit in the workflows (pulumi-up.yml's timeout-minutes): the build may run as long.
RUNNER_TIMEOUT_MINUTES = 90

#: What a `pulumi preview` of the platform or workloads project calls at AWS with ci set: the programs' data
#: sources (a resource's diff reads the state, not AWS), and the IAM actions each needs. The preview role's policy
#: is the union; tests/test_ci.py holds this table to the data sources the programs call.
PREVIEW_READS: Mapping[str, tuple[str, ...]] = {
    # sts:GetCallerIdentity needs no permission, and no policy can deny it.
    "aws:index/getCallerIdentity:getCallerIdentity": (),
    # The provider answers it from its own region table.
    "aws:index/getPartition:getPartition": (),
    "aws:index/getAvailabilityZones:getAvailabilityZones": ("ec2:DescribeAvailabilityZones",),
    # The manifest signing key's public half, for the model servers (infra/model_store.py).
    "aws:kms/getPublicKey:getPublicKey": ("kms:GetPublicKey",),
}
#: Of those, the actions AWS's table scopes to a resource: allowed on the signing key alone.
PREVIEW_KEY_READS = frozenset({"kms:GetPublicKey"})

#: What a CodeBuild project in a VPC needs of EC2 to place its builds there (AWS CodeBuild User Guide, "Allow
#: CodeBuild access to AWS services required to create a VPC network interface").
RUNNER_EC2_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeVpcs",
)


def preview_role_name(env: str) -> str:
    return f"modelyard-{env}-ci-preview"


def deploy_role_name(env: str) -> str:
    return f"modelyard-{env}-ci-deploy"


def observer_role_name(env: str) -> str:
    return f"modelyard-{env}-ci-observer"


def canary_environment(env: str) -> str:
    """The GitHub environment the canary verdicts workflow runs its job for `env` in."""
    return f"{env}-canary"


def runner_project_name(env: str) -> str:
    """The CodeBuild project a job names in `runs-on: codebuild-<this>-<run id>-<attempt>`."""
    return f"modelyard-{env}-runner"


def subject(repository: str, environment: str | None = None) -> str:
    """The `sub` GitHub gives a job of `repository`: in `environment`, or triggered by a pull request and naming
    no environment."""
    return f"repo:{repository}:environment:{environment}" if environment else f"repo:{repository}:pull_request"


def repository_url(repository: str) -> str:
    """The clone URL of a repository given as its subject names it (the immutable form carries ids)."""
    owner, name = (part.split("@", 1)[0] for part in repository.split("/", 1))
    return f"https://github.com/{owner}/{name}"


def github_trust(provider_arn: pulumi.Input[str], sub: str) -> iam.Document:
    """Trust policy for GitHub's OIDC tokens of one subject, for the audience of AWS's official action."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {f"{GITHUB_OIDC_HOST}:aud": AUDIENCE, f"{GITHUB_OIDC_HOST}:sub": sub},
                },
            }
        ],
    }


@dataclass(frozen=True, kw_only=True)
class CiIdentitiesArgs:
    config: CiConfig
    env: str
    account: AccountContext


@dataclass(frozen=True, kw_only=True)
class StackReach:
    """What the preview's reads, the observer's access and the runner need of the stack around them."""

    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    cluster_security_group_id: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    logs_key_arn: pulumi.Input[str]
    log_retention_days: int
    deletion_protection: bool
    #: The model manifests' signing key (infra/model_store.py): the preview reads its public half.
    signing_key_arn: pulumi.Input[str]


class CiIdentities(pulumi.ComponentResource):
    """The preview, deploy and observer roles of one environment (made before the cluster: the deploy role is its
    deployer), then `reach` gives the observer its access entry and, where the endpoint is private, makes the
    runner."""

    deploy_role_arn: pulumi.Output[str]
    observer_role_arn: pulumi.Output[str]
    preview_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: CiIdentitiesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:infra:CiIdentities", name, None, opts)
        cfg, env = args.config, args.env
        child = pulumi.ResourceOptions(parent=self)
        provider_arn: pulumi.Input[str]
        if cfg.oidc_provider_arn is not None:
            provider_arn = cfg.oidc_provider_arn
        else:
            # No thumbprints: IAM trusts GitHub's certificate through its own library of root CAs.
            provider_arn = aws.iam.OpenIdConnectProvider(
                f"{name}-github",
                url=f"https://{GITHUB_OIDC_HOST}",
                client_id_lists=[AUDIENCE],
                opts=child,
            ).arn

        def role(label: str, role_name: str, sub: str, description: str) -> aws.iam.Role:
            return aws.iam.Role(
                f"{name}-{label}",
                name=role_name,
                description=description,
                assume_role_policy=iam.to_json(github_trust(provider_arn, sub)),
                max_session_duration=3600,
                opts=child,
            )

        preview = role(
            "preview",
            preview_role_name(env),
            subject(cfg.repository),
            f"Pull requests of {cfg.repository}: what a pulumi preview of {env} reads, nothing else",
        )
        deploy = role(
            "deploy",
            deploy_role_name(env),
            subject(cfg.repository, env),
            f"Deployments of {env} from the GitHub environment {env} of {cfg.repository}",
        )
        for i, policy_arn in enumerate(cfg.deploy_policy_arns):
            aws.iam.RolePolicyAttachment(f"{name}-deploy-{i}", role=deploy.name, policy_arn=policy_arn, opts=child)

        observer = role(
            "observer",
            observer_role_name(env),
            subject(cfg.repository, canary_environment(env)),
            f"Canary verdicts of {env} (GitHub environment {canary_environment(env)}): Prometheus through a "
            "port-forward",
        )
        self.preview_role_arn = preview.arn
        self.deploy_role_arn = deploy.arn
        self.observer_role_arn = observer.arn
        self.register_outputs(
            {
                "preview_role_arn": self.preview_role_arn,
                "deploy_role_arn": self.deploy_role_arn,
                "observer_role_arn": self.observer_role_arn,
            }
        )
        self._name, self._args, self._observer, self._preview = name, args, observer, preview

    def reach(self, cluster: StackReach) -> None:
        """The preview's reads, the observer's reach into the cluster, and the runner in its VPC where ci.runner
        is codebuild."""
        name, args, observer = self._name, self._args, self._observer
        child = pulumi.ResourceOptions(parent=self)
        reads = sorted({a for actions in PREVIEW_READS.values() for a in actions} - PREVIEW_KEY_READS)
        aws.iam.RolePolicy(
            f"{name}-preview-reads",
            role=self._preview.name,
            policy=iam.to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        # These actions take no resource ARN (Service Authorization Reference).
                        {"Sid": "PreviewDataSources", "Effect": "Allow", "Action": reads, "Resource": "*"},
                        {
                            "Sid": "TheSigningKeysPublicHalf",
                            "Effect": "Allow",
                            "Action": sorted(PREVIEW_KEY_READS),
                            "Resource": cluster.signing_key_arn,
                        },
                    ],
                }
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-observer-cluster",
            role=observer.name,
            policy=iam.to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        # `aws eks update-kubeconfig` reads the endpoint and CA; the token needs no permission.
                        {
                            "Sid": "ReadTheCluster",
                            "Effect": "Allow",
                            "Action": "eks:DescribeCluster",
                            "Resource": cluster.cluster_arn,
                        }
                    ],
                }
            ),
            opts=child,
        )
        aws.eks.AccessEntry(
            f"{name}-observer-entry",
            cluster_name=cluster.cluster_name,
            principal_arn=observer.arn,
            type="STANDARD",
            kubernetes_groups=[OBSERVER_GROUP],
            opts=child,
        )

        if args.config.runner == "codebuild":
            self._runner(name, args, cluster)

    def _runner(self, name: str, args: CiIdentitiesArgs, cluster: StackReach) -> None:
        """A CodeBuild-hosted GitHub Actions runner in the private subnets, admitted to the API endpoint."""
        env, account = args.env, args.account
        child = pulumi.ResourceOptions(parent=self)
        project = runner_project_name(env)
        project_arn = pulumi.Output.concat(
            "arn:", account.partition, ":codebuild:", account.region, ":", account.account_id, ":project/", project
        )
        group = aws.cloudwatch.LogGroup(
            f"{name}-runner-logs",
            name=f"/aws/codebuild/{project}",
            retention_in_days=cluster.log_retention_days,
            kms_key_id=cluster.logs_key_arn,
            opts=pulumi.ResourceOptions(parent=self, protect=cluster.deletion_protection),
        )
        security_group = aws.ec2.SecurityGroup(
            f"{name}-runner-sg",
            vpc_id=cluster.vpc_id,
            description=f"The CI runner of {env}: no inbound; HTTPS out (GitHub, PyPI, Pulumi Cloud, AWS, the API)",
            ingress=[],
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    protocol="tcp", from_port=443, to_port=443, cidr_blocks=["0.0.0.0/0"], description="HTTPS"
                )
            ],
            tags=name_tag(project),
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-runner-to-api",
            security_group_id=cluster.cluster_security_group_id,
            referenced_security_group_id=security_group.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description=f"The CI runner of {env} to the Kubernetes API",
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-runner-role",
            name=f"{project}-codebuild",
            description=f"The CodeBuild project {project}: its logs and its network interfaces, nothing else",
            assume_role_policy=iam.to_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "codebuild.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": account.account_id, "aws:SourceArn": project_arn}
                            },
                        }
                    ],
                }
            ),
            opts=child,
        )
        region = account.region
        policy = pulumi.Output.all(account.partition, account.account_id, cluster.private_subnet_ids, group.arn).apply(
            lambda a: _runner_policy(a[0], a[1], [f"arn:{a[0]}:ec2:{region}:{a[1]}:subnet/{i}" for i in a[2]], a[3])
        )
        role_policy = aws.iam.RolePolicy(f"{name}-runner-policy", role=role.name, policy=policy, opts=child)
        runner = aws.codebuild.Project(
            f"{name}-runner",
            name=project,
            description=f"GitHub Actions runner of {env} inside its VPC (jobs with runs-on codebuild-{project}-...)",
            service_role=role.arn,
            source=aws.codebuild.ProjectSourceArgs(type="GITHUB", location=repository_url(args.config.repository)),
            artifacts=aws.codebuild.ProjectArtifactsArgs(type="NO_ARTIFACTS"),
            environment=aws.codebuild.ProjectEnvironmentArgs(
                type="LINUX_CONTAINER",
                image=RUNNER_IMAGE,
                compute_type=RUNNER_COMPUTE,
                image_pull_credentials_type="CODEBUILD",
                privileged_mode=False,
            ),
            vpc_config=aws.codebuild.ProjectVpcConfigArgs(
                vpc_id=cluster.vpc_id, subnets=cluster.private_subnet_ids, security_group_ids=[security_group.id]
            ),
            logs_config=aws.codebuild.ProjectLogsConfigArgs(
                cloudwatch_logs=aws.codebuild.ProjectLogsConfigCloudwatchLogsArgs(
                    status="ENABLED", group_name=group.name
                ),
                s3_logs=aws.codebuild.ProjectLogsConfigS3LogsArgs(status="DISABLED"),
            ),
            build_timeout=RUNNER_TIMEOUT_MINUTES,
            concurrent_build_limit=2,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
        )
        # A build per queued workflow job; CodeBuild registers the webhook with GitHub through the account's
        # source credential for GitHub (docs/operations.md, set once per account and region).
        aws.codebuild.Webhook(
            f"{name}-runner-webhook",
            project_name=runner.name,
            build_type="BUILD",
            filter_groups=[
                aws.codebuild.WebhookFilterGroupArgs(
                    filters=[aws.codebuild.WebhookFilterGroupFilterArgs(type="EVENT", pattern="WORKFLOW_JOB_QUEUED")]
                )
            ],
            opts=child,
        )


def _runner_policy(partition: str, account_id: str, subnet_arns: list[str], log_group_arn: str) -> str:
    """The runner's service role: write its own log streams, and place its builds' network interfaces in the
    private subnets (CodeBuild User Guide's VPC statement, the interface permission bound to those subnets)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "OwnLogs",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": f"{log_group_arn}:log-stream:*",
                },
                {
                    "Sid": "BuildNetworkInterfaces",
                    "Effect": "Allow",
                    "Action": list(RUNNER_EC2_ACTIONS),
                    # These EC2 actions take no resource ARN (Service Authorization Reference).
                    "Resource": "*",
                },
                {
                    "Sid": "InterfacesInThePrivateSubnetsOnly",
                    "Effect": "Allow",
                    "Action": "ec2:CreateNetworkInterfacePermission",
                    "Resource": f"arn:{partition}:ec2:*:{account_id}:network-interface/*",
                    "Condition": {
                        "StringEquals": {"ec2:AuthorizedService": "codebuild.amazonaws.com"},
                        "ArnEquals": {"ec2:Subnet": subnet_arns},
                    },
                },
            ],
        },
        separators=(",", ":"),
    )
