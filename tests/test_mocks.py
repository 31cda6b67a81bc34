"""The offline plan's answers for data sources: realistic, deterministic, and loud when missing."""

from __future__ import annotations

import pulumi
import pytest

from modelyard.plan.mocks import OFFLINE_ACCOUNT_ID, PlanMocks, UnknownInvokeError


def call(mocks: PlanMocks, token: str, **args: object) -> dict[str, object]:
    result, failures = mocks.call(pulumi.runtime.MockCallArgs(token=token, args=dict(args), provider=""))
    assert failures == []
    return result


def test_invoke_answers() -> None:
    mocks = PlanMocks(region="eu-west-1")
    assert call(mocks, "aws:index/getCallerIdentity:getCallerIdentity")["accountId"] == OFFLINE_ACCOUNT_ID
    assert call(mocks, "aws:index/getPartition:getPartition")["partition"] == "aws"
    assert PlanMocks(region="us-gov-west-1").partition == "aws-us-gov"
    assert call(mocks, "aws:index/getAvailabilityZones:getAvailabilityZones")["names"][:2] == [
        "eu-west-1a",
        "eu-west-1b",
    ]


@pytest.mark.parametrize(
    ("arn", "issuer", "session"),
    [
        # CI's deploy role, as GitHub's OIDC session shows it to STS.
        (
            "arn:aws:sts::123456789012:assumed-role/modelyard-deploy/GitHubActions",
            "arn:aws:iam::123456789012:role/modelyard-deploy",
            "GitHubActions",
        ),
        # An SSO user's session: the session name carries the e-mail address (RoleNameSessionFromARN's last part).
        (
            "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0123/jane@example.com",
            "arn:aws:iam::123456789012:role/AWSReservedSSO_Admin_0123",
            "jane@example.com",
        ),
        # A one-character session name does not match `^assumed-role/.{1,}/.{2,}`: the ARN is its own issuer.
        ("arn:aws:sts::123456789012:assumed-role/r/s", "arn:aws:sts::123456789012:assumed-role/r/s", ""),
        ("arn:aws:iam::123456789012:user/offline-plan", "arn:aws:iam::123456789012:user/offline-plan", ""),
        ("arn:aws:iam::123456789012:role/deployer", "arn:aws:iam::123456789012:role/deployer", ""),
    ],
)
def test_session_context_names_the_role_behind_a_session(arn: str, issuer: str, session: str) -> None:
    context = call(PlanMocks(region="us-east-1"), "aws:iam/getSessionContext:getSessionContext", arn=arn)
    assert (context["issuerArn"], context["sessionName"]) == (issuer, session)


def test_unknown_invoke_is_named() -> None:
    with pytest.raises(UnknownInvokeError, match=r"'aws:ec2/getVpc:getVpc'.*modelyard/plan/mocks.py"):
        call(PlanMocks(region="us-east-1"), "aws:ec2/getVpc:getVpc")


def test_resources_get_stable_realistic_ids() -> None:
    mocks = PlanMocks(region="us-east-1")
    args = pulumi.runtime.MockResourceArgs(
        typ="aws:ec2/vpc:Vpc", name="network-vpc", inputs={"cidrBlock": "10.0.0.0/16"}
    )
    rid, state = mocks.new_resource(args)
    assert rid.startswith("vpc-0") and (rid, state) == mocks.new_resource(args)
    assert state["arn"] == f"arn:aws:ec2:us-east-1:{OFFLINE_ACCOUNT_ID}:vpc/{rid}"
    rid, state = mocks.new_resource(pulumi.runtime.MockResourceArgs(typ="aws:iam/role:Role", name="r", inputs={}))
    assert state["arn"] == f"arn:aws:iam::{OFFLINE_ACCOUNT_ID}:role/{rid}" and rid.startswith("r-")
