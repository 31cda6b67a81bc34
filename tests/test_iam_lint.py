"""Every IAM document of every environment, read by parliament (a maintained IAM linter with AWS's action
tables) and by the condition-key semantics in iam_lint.py.

Each parliament finding the shipped plans have is listed below with the reason it stands; a new finding
fails, and so does a listed one that no longer occurs (the list must stay true).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import parliament
import pytest
from conftest import ENVS, Plan
from iam_docs import documents
from iam_lint import findings

ROLE = "aws:iam/role:Role"
KEY = "aws:kms/key:Key"
KARPENTER = "karpenter-controller-policy"
RUNNER = "ci-runner-policy"

#: (parliament issue, resource name or type token) → why it stands.
ACCEPTED: Mapping[tuple[str, str], str] = {
    ("MALFORMED", ROLE): "a trust policy has no Resource; parliament reads every document as an identity policy",
    ("UNKNOWN_FEDERATION_SOURCE", ROLE): "parliament's table of identity providers has no EKS OIDC issuer "
    "(oidc.eks.<region>.amazonaws.com/id/...), which IRSA trusts by design",
    ("RESOURCE_STAR", KEY): "in a key policy, Resource '*' is the key the policy is attached to",
    ("PERMISSIONS_MANAGEMENT_ACTIONS", KEY): "AWS's default key policy: the account administers the key "
    "through IAM (kms:* for the account root), so no key can become unmanageable",
    ("UNKNOWN_CONDITION_FOR_ACTION", "logs-key"): "the CloudWatch Logs key statement is AWS's documented one "
    "(kms:Describe* with the aws:logs:arn encryption context); DescribeKey carries no context, so Logs may "
    "describe nothing, which it does not need",
    ("MISMATCHED_TYPE", "logs-key"): "AWS documents ArnLike on kms:EncryptionContext:aws:logs:arn (a string "
    "key holding an ARN); parliament expects an ARN-typed key",
    ("PERMISSIONS_MANAGEMENT_ACTIONS", KARPENTER): "Karpenter manages instance profiles and passes the node "
    "role; upstream's reference grants the same, scoped by tags and PassedToService (test_iam_references.py)",
    ("PRIVILEGE_ESCALATION", KARPENTER): "PassRole + RunInstances is what launching nodes is; PassRole is "
    "limited to the node role and to ec2.amazonaws.com",
    ("RESOURCE_MISMATCH", KARPENTER): "upstream splits RunInstances/CreateFleet across statements by resource "
    "type (parliament judges each statement alone); the SSM public parameters have no account in their ARN; "
    "parliament's table lists only load balancers for arc-zonal-shift:GetManagedResource, Karpenter reads "
    "the cluster's zonal shift",
    ("RESOURCE_STAR", RUNNER): "the CI runner's network-interface statement is the CodeBuild User Guide's VPC "
    "statement: EC2's Describe actions take no resource, and CodeBuild creates and deletes interfaces it names "
    "only at build time",
    ("PERMISSIONS_MANAGEMENT_ACTIONS", RUNNER): "ec2:CreateNetworkInterfacePermission is how CodeBuild attaches "
    "a build's interface; bound, as the guide's statement, to codebuild.amazonaws.com and here to the private "
    "subnets",
}


def _parliament_findings(plan: Plan) -> set[tuple[str, str, str]]:
    found = set()
    for token, name, doc in documents(plan):
        policy = parliament.analyze_policy_string(json.dumps(doc), include_community_auditors=True)
        for finding in policy.findings:
            found.add((finding.issue, token, name))
    return found


def _accepted(issue: str, token: str, name: str) -> bool:
    return (issue, name) in ACCEPTED or (issue, token) in ACCEPTED


@pytest.fixture(scope="module")
def parliament_findings(plans: dict[str, Plan]) -> dict[str, set[tuple[str, str, str]]]:
    return {env: _parliament_findings(plans[env]) for env in ENVS}


@pytest.mark.parametrize("env", ENVS)
def test_parliament_finds_nothing_new(parliament_findings: dict[str, set[tuple[str, str, str]]], env: str) -> None:
    new = sorted(f for f in parliament_findings[env] if not _accepted(*f))
    assert not new, f"{env}: parliament findings with no accepted reason: {new}"


def test_every_accepted_finding_still_occurs(parliament_findings: dict[str, set[tuple[str, str, str]]]) -> None:
    seen = {
        (issue, key) for found in parliament_findings.values() for issue, token, name in found for key in (token, name)
    }
    stale = sorted(set(ACCEPTED) - seen)
    assert not stale, f"accepted findings that no longer occur (remove them): {stale}"


@pytest.mark.parametrize("env", ENVS)
def test_every_document_means_what_it_says(plans: dict[str, Plan], env: str) -> None:
    problems = [f"{name}: {line}" for _, name, doc in documents(plans[env]) for line in findings(doc)]
    assert not problems, "\n".join(problems)


def test_the_lint_catches_a_condition_that_can_never_match() -> None:
    """The controller statement this project shipped before: CreateInstanceProfile on ResourceTag. No GPU
    node could have launched, and neither the engine nor mocks would have said so."""
    shipped_before = {
        "Statement": [
            {
                "Sid": "AllowScopedInstanceProfileActions",
                "Effect": "Allow",
                "Action": ["iam:CreateInstanceProfile", "iam:TagInstanceProfile", "iam:DeleteInstanceProfile"],
                "Resource": "arn:aws:iam::123456789012:instance-profile/*",
                "Condition": {
                    "StringEquals": {"aws:ResourceTag/kubernetes.io/cluster/modelyard-dev": "owned"},
                    "StringLikeIfExists": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            }
        ]
    }
    assert list(findings(shipped_before)) == [
        "AllowScopedInstanceProfileActions: StringEquals aws:ResourceTag/kubernetes.io/cluster/modelyard-dev can "
        "never match iam:CreateInstanceProfile: it creates instance-profile, which has no tags yet "
        "(use aws:RequestTag)"
    ]


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            {
                "Action": "ec2:RunInstances",
                "Resource": "arn:aws:ec2:us-east-1:*:instance/*",
                "Condition": {"StringEquals": {"aws:ResourceTag/team": "a"}},
            },
            "it creates instance",
        ),
        (
            {
                "Action": "iam:AddRoleToInstanceProfile",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestTag/team": "a"}},
            },
            "iam:AddRoleToInstanceProfile: it takes no tags",
        ),
        ({"Action": "s3:GetObjects", "Resource": "*"}, "s3:GetObjects is not an AWS action"),
        ({"Action": "nosuchservice:Get", "Resource": "*"}, "nosuchservice:Get is not an AWS action"),
    ],
)
def test_the_lint_names_each_kind_of_problem(statement: dict[str, object], expected: str) -> None:
    lines = list(findings({"Statement": [{"Sid": "Case", "Effect": "Allow", **statement}]}))
    assert len(lines) == 1 and expected in lines[0], lines


def test_the_lint_accepts_tags_on_resources_that_exist() -> None:
    """Upstream's launch-template statement: RunInstances reads the tags of an existing launch template."""
    statement = {
        "Sid": "LaunchTemplate",
        "Effect": "Allow",
        "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
        "Resource": "arn:aws:ec2:us-east-1:*:launch-template/*",
        "Condition": {"StringEquals": {"aws:ResourceTag/kubernetes.io/cluster/x": "owned"}},
    }
    assert list(findings({"Statement": [statement]})) == []
