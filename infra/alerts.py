"""Where alerts leave the cluster and the bill: KMS-encrypted SNS topics, AWS Budgets, Cost Anomaly
Detection, and the IAM role Alertmanager publishes with.

One topic per `sns` receiver of the monitoring config, plus a `cost` topic that AWS Budgets and Cost
Anomaly Detection publish to. Every topic is encrypted with one stack key, refuses plain HTTP, and
e-mails its subscribers (each address confirms its subscription once, from the message AWS sends).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from modelyard.config import BudgetConfig, Receiver
from modelyard.infra import iam
from modelyard.infra.common import AccountContext, kms_key
from modelyard.policies.governance.conventions import budget_name

#: Budget notifications: (notification type, percent of the monthly amount).
BUDGET_NOTIFICATIONS = (("ACTUAL", 50), ("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100))
#: The AWS services that publish cost alerts.
COST_PUBLISHERS = ("budgets.amazonaws.com", "costalerts.amazonaws.com")
#: Where Alertmanager runs (kube-prometheus-stack, platform/monitoring.py) and under which account.
ALERTMANAGER_NAMESPACE = "monitoring"
ALERTMANAGER_SERVICE_ACCOUNT = "alertmanager"


def publisher_statement(
    service: str,
    topic_arn: pulumi.Input[str],
    account: AccountContext,
    *,
    sid: str,
    source_arn: pulumi.Input[str] | None = None,
) -> iam.Document:
    """Let one AWS service publish to a topic, only on this account's behalf and, with `source_arn`, only for
    that resource of it. Its Sid is the service's name and `sid` (BudgetsPublish, S3ReportsFailures)."""
    condition: iam.Document = {"StringEquals": {"aws:SourceAccount": account.account_id}}
    if source_arn is not None:
        condition["ArnLike"] = {"aws:SourceArn": source_arn}
    return {
        "Sid": f"{service.split('.')[0].capitalize()}{sid}",
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sns:Publish",
        "Resource": topic_arn,
        "Condition": condition,
    }


def cost_publisher_statement(service: str, topic_arn: pulumi.Input[str], account: AccountContext) -> iam.Document:
    """Let one AWS cost service publish to a topic, only on this account's behalf. For AWS Budgets that is
    the statement its user guide gives (source account and the account's budgets as source ARN)."""
    budgets = pulumi.Output.concat("arn:", account.partition, ":budgets::", account.account_id, ":*")
    return publisher_statement(
        service, topic_arn, account, sid="Publish", source_arn=budgets if service == "budgets.amazonaws.com" else None
    )


@dataclass(frozen=True, kw_only=True)
class AlertTopicsArgs:
    env: str
    account: AccountContext
    receivers: Sequence[Receiver]
    cost_emails: Sequence[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    deletion_protection: bool
    #: Who hears of a failed AWS-side storage job (a backup, a replication): the sns receivers of the warning route.
    storage_emails: Sequence[str] = ()
    #: The AWS services that report those failures, each bound to the one resource it reports for (service,
    #: source ARN): S3 for the model bucket, EventBridge for the backup failure rule. None: no storage topic.
    storage_publishers: Sequence[tuple[str, pulumi.Input[str]]] = ()


def storage_publisher_statement(
    service: str, source_arn: pulumi.Input[str], topic_arn: pulumi.Input[str], account: AccountContext
) -> iam.Document:
    """Let an AWS service publish to the storage topic for one resource of this account: S3's event
    notifications ("Granting permissions to publish event notification messages to a destination": source
    bucket and account), an EventBridge rule (its SNS target permissions: the rule's ARN)."""
    return publisher_statement(service, topic_arn, account, sid="ReportsFailures", source_arn=source_arn)


class AlertTopics(pulumi.ComponentResource):
    """The stack's SNS topics (one per sns receiver, one for cost), their KMS key, e-mail subscriptions,
    and an IRSA role that lets Alertmanager publish to its receiver topics and nothing else."""

    topic_arns: Mapping[str, pulumi.Output[str]]
    cost_topic_arn: pulumi.Output[str]
    alertmanager_role_arn: pulumi.Output[str]
    #: Where AWS reports a failed backup or replication, and the policy that lets it (None: nothing reports).
    storage_topic_arn: pulumi.Output[str] | None
    storage_topic_policy: aws.sns.TopicPolicy | None

    def __init__(self, name: str, args: AlertTopicsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:infra:AlertTopics", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = args.account
        key = kms_key(
            f"{name}-key",
            description=f"SNS alert topics of modelyard-{args.env}",
            account=account,
            alias=f"modelyard-{args.env}-alerts",
            parent=self,
            protect=args.deletion_protection,
            extra_statements=[
                {
                    "Sid": "CostServicesPublishEncrypted",
                    "Effect": "Allow",
                    "Principal": {"Service": list(COST_PUBLISHERS)},
                    "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account.account_id}},
                },
                *(
                    [
                        {
                            "Sid": "StorageServicesPublishEncrypted",
                            "Effect": "Allow",
                            "Principal": {"Service": sorted({service for service, _ in args.storage_publishers})},
                            "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                            "Resource": "*",
                            "Condition": {"StringEquals": {"aws:SourceAccount": account.account_id}},
                        }
                    ]
                    if args.storage_publishers
                    else []
                ),
            ],
        )

        def topic(
            suffix: str,
            emails: Sequence[str],
            publishers: Sequence[str],
            bound: Sequence[tuple[str, pulumi.Input[str]]] = (),
        ) -> tuple[aws.sns.Topic, aws.sns.TopicPolicy]:
            sns = aws.sns.Topic(
                f"{name}-{suffix}",
                name=f"modelyard-{args.env}-{suffix}",
                kms_master_key_id=key.arn,
                opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
            )
            statements: list[iam.Document] = [
                *(cost_publisher_statement(service, sns.arn, account) for service in publishers),
                *(storage_publisher_statement(service, source, sns.arn, account) for service, source in bound),
                iam.deny_insecure_transport([sns.arn]),
            ]
            policy = aws.sns.TopicPolicy(
                f"{name}-{suffix}-policy",
                arn=sns.arn,
                policy=iam.to_json({"Version": "2012-10-17", "Statement": statements}),
                opts=child,
            )
            for i, email in enumerate(emails):
                aws.sns.TopicSubscription(
                    f"{name}-{suffix}-email-{i}", topic=sns.arn, protocol="email", endpoint=email, opts=child
                )
            return sns, policy

        topics = {r.name: topic(r.name, r.emails, ())[0] for r in args.receivers if r.type == "sns"}
        cost, _ = topic("cost", args.cost_emails, COST_PUBLISHERS)
        self.storage_topic_arn = None
        self.storage_topic_policy = None
        if args.storage_publishers:
            # Each publisher is bound to its own resource: nothing else of the account can publish here.
            storage, self.storage_topic_policy = topic("storage", args.storage_emails, (), args.storage_publishers)
            self.storage_topic_arn = storage.arn

        role = aws.iam.Role(
            f"{name}-alertmanager-role",
            description="Alertmanager publishes to the stack's alert topics (IRSA, one service account)",
            assume_role_policy=iam.irsa_trust(
                args.oidc_provider_arn, args.oidc_issuer_url, ALERTMANAGER_NAMESPACE, ALERTMANAGER_SERVICE_ACCOUNT
            ),
            opts=child,
        )
        if topics:
            aws.iam.RolePolicy(
                f"{name}-alertmanager-policy",
                role=role.id,
                policy=iam.to_json(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "PublishToReceiverTopics",
                                "Effect": "Allow",
                                "Action": "sns:Publish",
                                "Resource": [t.arn for t in topics.values()],
                            },
                            {
                                "Sid": "EncryptForTheTopics",
                                "Effect": "Allow",
                                "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                                "Resource": key.arn,
                            },
                        ],
                    }
                ),
                opts=child,
            )

        self.topic_arns = {n: t.arn for n, t in topics.items()}
        self.cost_topic_arn = cost.arn
        self.alertmanager_role_arn = role.arn
        self.register_outputs(
            {"topic_arns": self.topic_arns, "cost_topic_arn": cost.arn, "alertmanager_role_arn": role.arn}
        )


@dataclass(frozen=True, kw_only=True)
class CostAlertsArgs:
    env: str
    config: BudgetConfig
    topic_arn: pulumi.Input[str]
    #: The tag keys every resource carries (tags.py); activated as cost-allocation tags on request.
    tag_keys: Sequence[str]


class CostAlerts(pulumi.ComponentResource):
    """A monthly AWS Budget for this environment (filtered on its `env` cost-allocation tag) with actual
    and forecast notifications, a tag-based Cost Anomaly Detection monitor with a subscription, and,
    when switched on, the activation of the tag keys as cost-allocation tags."""

    budget_name: pulumi.Output[str]

    def __init__(self, name: str, args: CostAlertsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:infra:CostAlerts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config
        activations = []
        if cfg.activate_cost_allocation_tags:
            # Cost-allocation tags belong to the payer account: in an AWS Organization only the
            # management account can activate them (docs/operations.md, first-day steps).
            activations = [
                aws.costexplorer.CostAllocationTag(f"{name}-tag-{key}", tag_key=key, status="Active", opts=child)
                for key in args.tag_keys
            ]
        after_tags = pulumi.ResourceOptions(parent=self, depends_on=activations)
        budget = aws.budgets.Budget(
            f"{name}-budget",
            name=budget_name(args.env),
            budget_type="COST",
            # The Budgets API takes the amount as a decimal string.
            limit_amount=f"{cfg.monthly_usd:.2f}",
            limit_unit="USD",
            time_unit="MONTHLY",
            cost_filters=[aws.budgets.BudgetCostFilterArgs(name="TagKeyValue", values=[f"user:env${args.env}"])],
            notifications=[
                aws.budgets.BudgetNotificationArgs(
                    comparison_operator="GREATER_THAN",
                    notification_type=kind,
                    threshold=percent,
                    threshold_type="PERCENTAGE",
                    subscriber_sns_topic_arns=[args.topic_arn],
                    subscriber_email_addresses=list(cfg.alert_emails),
                )
                for kind, percent in BUDGET_NOTIFICATIONS
            ],
            opts=after_tags,
        )
        # One DIMENSIONAL monitor per dimension per account is allowed, so per-environment monitors in a
        # shared account are CUSTOM monitors over the env tag.
        monitor = aws.costexplorer.AnomalyMonitor(
            f"{name}-anomaly-monitor",
            name=f"modelyard-{args.env}",
            monitor_type="CUSTOM",
            monitor_specification=json.dumps(
                {"Tags": {"Key": "env", "Values": [args.env], "MatchOptions": ["EQUALS"]}}, separators=(",", ":")
            ),
            opts=after_tags,
        )
        aws.costexplorer.AnomalySubscription(
            f"{name}-anomaly-subscription",
            name=f"modelyard-{args.env}",
            frequency="IMMEDIATE",
            monitor_arn_lists=[monitor.arn],
            subscribers=[aws.costexplorer.AnomalySubscriptionSubscriberArgs(type="SNS", address=args.topic_arn)],
            threshold_expression=aws.costexplorer.AnomalySubscriptionThresholdExpressionArgs(
                dimension=aws.costexplorer.AnomalySubscriptionThresholdExpressionDimensionArgs(
                    key="ANOMALY_TOTAL_IMPACT_ABSOLUTE",
                    match_options=["GREATER_THAN_OR_EQUAL"],
                    values=[f"{cfg.anomaly_threshold_usd:g}"],
                )
            ),
            opts=child,
        )
        self.budget_name = budget.name
        self.register_outputs({"budget_name": budget.name})
