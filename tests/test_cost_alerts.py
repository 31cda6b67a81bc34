"""Cost alerts in AWS: the budget, its notifications, the encrypted SNS topics, anomaly detection, and
the role Alertmanager publishes with."""

from __future__ import annotations

import json

import pytest
from conftest import ENVS, Plan

from modelyard.tags import REQUIRED_KEYS


@pytest.mark.parametrize(("env", "amount"), [("dev", "1500.00"), ("staging", "6000.00"), ("prod", "30000.00")])
def test_budget_per_environment_filtered_on_its_tag(plans: dict[str, Plan], env: str, amount: str) -> None:
    budget = plans[env].one("aws:budgets/budget:Budget")["inputs"]
    assert budget["limitAmount"] == amount  # a string, as the Budgets API wants
    assert (budget["budgetType"], budget["timeUnit"], budget["limitUnit"]) == ("COST", "MONTHLY", "USD")
    assert budget["costFilters"] == [{"name": "TagKeyValue", "values": [f"user:env${env}"]}]
    kinds = sorted((n["notificationType"], n["threshold"]) for n in budget["notifications"])
    assert kinds == [("ACTUAL", 50), ("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100)]
    for notification in budget["notifications"]:
        [topic] = notification["subscriberSnsTopicArns"]
        assert topic == f"arn:aws:sns:us-east-1:123456789012:modelyard-{env}-cost"
        assert notification["subscriberEmailAddresses"]


def test_budget_amount_is_the_configured_value(plan_with: object) -> None:
    plan = plan_with("dev", lambda p: p["budget"].update(monthly_usd=1234.5))  # type: ignore[operator]
    assert plan.one("aws:budgets/budget:Budget")["inputs"]["limitAmount"] == "1234.50"
    assert plan.outputs()["monthlyBudgetUsd"] == 1234.5


@pytest.mark.parametrize("env", ENVS)
def test_topics_are_encrypted_tls_only_and_cost_services_may_publish(plans: dict[str, Plan], env: str) -> None:
    plan = plans[env]
    topics = plan.of_type("aws:sns/topic:Topic")
    assert topics and all("kmsMasterKeyId" in t["inputs"] for t in topics)
    policies = {
        p["urn"].rsplit("::", 1)[1]: json.loads(p["inputs"]["policy"])
        for p in plan.of_type("aws:sns/topicPolicy:TopicPolicy")
    }
    cost = policies["alerts-cost-policy"]["Statement"]
    # One statement per publisher, each bound to this account (test_iam_references.py compares Budgets'
    # with its user guide).
    assert [st["Principal"] for st in cost[:2]] == [
        {"Service": "budgets.amazonaws.com"},
        {"Service": "costalerts.amazonaws.com"},
    ]
    assert all(st["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"} for st in cost[:2])
    for statements in policies.values():
        assert statements["Statement"][-1]["Sid"] == "DenyInsecureTransport"
    key = plan.named("aws:kms/key:Key", "alerts-key")["inputs"]
    grants = json.loads(key["policy"])["Statement"]
    assert grants[1]["Principal"] == {"Service": ["budgets.amazonaws.com", "costalerts.amazonaws.com"]}
    assert key["enableKeyRotation"] is True


@pytest.mark.parametrize(("env", "threshold"), [("dev", "50"), ("prod", "500")])
def test_anomaly_monitor_is_custom_on_the_env_tag(plans: dict[str, Plan], env: str, threshold: str) -> None:
    monitor = plans[env].one("aws:costexplorer/anomalyMonitor:AnomalyMonitor")["inputs"]
    assert monitor["monitorType"] == "CUSTOM"
    assert json.loads(monitor["monitorSpecification"]) == {
        "Tags": {"Key": "env", "Values": [env], "MatchOptions": ["EQUALS"]}
    }
    sub = plans[env].one("aws:costexplorer/anomalySubscription:AnomalySubscription")["inputs"]
    assert sub["frequency"] == "IMMEDIATE" and sub["subscribers"][0]["type"] == "SNS"
    assert sub["subscribers"][0]["address"] == f"arn:aws:sns:us-east-1:123456789012:modelyard-{env}-cost"
    assert sub["thresholdExpression"]["dimension"] == {
        "key": "ANOMALY_TOTAL_IMPACT_ABSOLUTE",
        "matchOptions": ["GREATER_THAN_OR_EQUAL"],
        "values": [threshold],
    }


def test_cost_allocation_tags_are_activated_only_when_switched_on(plans: dict[str, Plan], plan_with: object) -> None:
    assert plans["dev"].of_type("aws:costexplorer/costAllocationTag:CostAllocationTag") == []
    on = plan_with("dev", lambda p: p["budget"].update(activate_cost_allocation_tags=True))  # type: ignore[operator]
    tags = on.of_type("aws:costexplorer/costAllocationTag:CostAllocationTag")
    assert sorted(t["inputs"]["tagKey"] for t in tags) == sorted(REQUIRED_KEYS)
    assert all(t["inputs"]["status"] == "Active" for t in tags)
    budget = on.one("aws:budgets/budget:Budget")
    assert {t["urn"] for t in tags} <= set(budget["dependencies"])


@pytest.mark.parametrize("env", ENVS)
def test_email_subscriptions_for_receivers_and_budget(plans: dict[str, Plan], env: str) -> None:
    subs = plans[env].of_type("aws:sns/topicSubscription:TopicSubscription")
    assert subs and all(s["inputs"]["protocol"] == "email" for s in subs)
    assert {s["urn"].rsplit("::", 1)[1] for s in subs} >= {"alerts-cost-email-0", "alerts-ml-platform-email-0"}


def test_alertmanager_may_only_publish_to_its_receiver_topics(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    role = plan.named("aws:iam/role:Role", "alerts-alertmanager-role")["inputs"]
    trust = json.loads(role["assumeRolePolicy"])["Statement"][0]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert "system:serviceaccount:monitoring:alertmanager" in trust["Condition"]["StringEquals"].values()
    policy = json.loads(plan.named("aws:iam/rolePolicy:RolePolicy", "alerts-alertmanager-policy")["inputs"]["policy"])
    publish, kms = policy["Statement"]
    assert publish["Action"] == "sns:Publish" and len(publish["Resource"]) == 1  # ml-platform only, not cost
    assert publish["Resource"] == ["arn:aws:sns:us-east-1:123456789012:modelyard-prod-ml-platform"]
    assert kms["Action"] == ["kms:GenerateDataKey*", "kms:Decrypt"]
    assert kms["Resource"].startswith("arn:aws:kms:")
