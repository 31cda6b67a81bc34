"""CI identities: GitHub Actions' roles bound to one subject each, a pull request's role read-only, and a deploy
path that reaches a private API endpoint.

The subjects are GitHub's (github/docs, content/actions/reference/security/oidc.md, "Example subject claims"):
`repo:<owner>/<name>:pull_request` for a pull request's job that names no environment, and
`repo:<owner>/<name>:environment:<env>` for a job in an environment, whose required reviewers gate it; the
owner and name may carry their ids (`owner@123/name@456`, GitHub's immutable subjects). A branch subject
(`ref:refs/heads/...`) is refused: anyone who may push that branch holds the role, with no review.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping
from typing import Any

from ..conventions import GITHUB_AUDIENCE, GITHUB_OIDC_HOST
from ..resources import Resource, as_list, dig, known, statements
from .base import Context, Finding, no_managed_policies, resource_rule, stack_rule

SUB = f"{GITHUB_OIDC_HOST}:sub"
AUD = f"{GITHUB_OIDC_HOST}:aud"
_REPO = r"repo:[A-Za-z0-9][A-Za-z0-9-]*(?:@\d+)?/[A-Za-z0-9._-]+(?:@\d+)?"
PULL_REQUEST_SUBJECT = re.compile(rf"^{_REPO}:pull_request$")
ENVIRONMENT_SUBJECT = re.compile(rf"^{_REPO}:environment:(?P<env>[^:*?\[\]]+)$")

#: What a pull request's role may call: reads of configuration (Describe, Get, List) ...
READ_VERBS = ("Describe", "Get", "List")
#: ... but not the reads that return data or secrets (an object's bytes, a secret's value, a parameter's
#: decrypted value, an image's layers, a function's code).
DATA_READS = (
    "s3:GetObject*",
    "secretsmanager:GetSecretValue",
    "ssm:GetParameter*",
    "kms:Decrypt",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "ecr:GetAuthorizationToken",
    "lambda:GetFunction",
    "sts:GetFederationToken",
    "sts:GetSessionToken",
    "iam:GetCredentialReport",
    "eks:DescribeCluster",
)


def github_statements(role: Resource) -> list[tuple[int, Mapping[str, Any]]]:
    """The trust statements of `role` that GitHub's OIDC tokens answer: its provider as the principal, or its
    condition keys."""
    out = []
    for i, st in enumerate(statements(role.get("assumeRolePolicy"))):
        federated = [str(p) for p in as_list(dig(st, "Principal", "Federated"))]
        keys = [str(k) for inner in (st.get("Condition") or {}).values() if isinstance(inner, Mapping) for k in inner]
        if any(p.endswith(f"oidc-provider/{GITHUB_OIDC_HOST}") for p in federated) or any(
            k.startswith(f"{GITHUB_OIDC_HOST}:") for k in keys
        ):
            out.append((i, st))
    return out


def subjects(role: Resource) -> list[str]:
    """The GitHub subjects `role` admits by StringEquals."""
    return [
        str(v)
        for _, st in github_statements(role)
        if st.get("Effect") == "Allow"
        for v in as_list(dig(st, "Condition", "StringEquals", SUB))
    ]


@resource_rule(
    "ci-github-trust-bound",
    "A role GitHub's OIDC tokens may assume names the STS audience and one subject of one repository: a pull "
    "request's job, or a job in one GitHub environment (no branch, no wildcard).",
    ("aws:iam/role:Role",),
    basic=True,
)
def _github_trust(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    for i, st in github_statements(r):
        if st.get("Effect") != "Allow":
            continue
        condition = st.get("Condition") or {}
        equals = condition.get("StringEquals") or {}
        field_ = f"assumeRolePolicy.Statement[{i}].Condition"
        if as_list(equals.get(AUD)) != [GITHUB_AUDIENCE]:
            yield field_, condition, f"StringEquals {AUD} must be {GITHUB_AUDIENCE}"
        others = [
            f"{block} {k}"
            for block, inner in condition.items()
            if block != "StringEquals" and isinstance(inner, Mapping)
            for k in inner
            if str(k) == SUB
        ]
        subs = as_list(equals.get(SUB))
        if not all(known(s) for s in subs):
            continue
        if (
            others
            or len(subs) != 1
            or not (PULL_REQUEST_SUBJECT.match(str(subs[0])) or ENVIRONMENT_SUBJECT.match(str(subs[0])))
        ):
            yield (
                field_,
                condition,
                f"StringEquals {SUB} must name one subject: repo:<owner>/<name>:pull_request or "
                "repo:<owner>/<name>:environment:<env> (no StringLike, no wildcard, no branch)",
            )


def _is_data_read(action: str) -> bool:
    a = action.lower()
    return any(fnmatch.fnmatchcase(a, d.lower()) or fnmatch.fnmatchcase(d.lower(), a) for d in DATA_READS)


@stack_rule(
    "ci-preview-read-only",
    "A role a pull request's job may assume reads configuration and nothing else: no managed policy, no write, "
    "no read of data or secrets, no cluster access (its code runs before any review).",
    basic=True,
)
def _preview(ctx: Context) -> Iterator[Finding]:
    for role in ctx.stack.of_type("aws:iam/role:Role"):
        if not any(PULL_REQUEST_SUBJECT.match(s) for s in subjects(role)):
            continue
        yield from no_managed_policies(ctx, role, "a pull request's role takes no managed policy")
        for entry in ctx.stack.referencing(role, "aws:eks/accessEntry:AccessEntry"):
            yield Finding(
                entry.urn, "principalArn", entry.get("principalArn"), "a pull request's role gets no cluster access"
            )
        for policy in ctx.stack.referencing(role, "aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"):
            for i, st in enumerate(statements(policy.get("policy"))):
                if st.get("Effect") != "Allow":
                    continue
                bad = [
                    str(a)
                    for a in as_list(st.get("Action"))
                    if known(a) and (not str(a).partition(":")[2].startswith(READ_VERBS) or _is_data_read(str(a)))
                ]
                if bad:
                    yield Finding(
                        policy.urn,
                        f"policy.Statement[{i}].Action",
                        bad,
                        "a pull request's role may only Describe, Get or List configuration (no write, no data "
                        "or secret reads)",
                    )


def deploy_environment(role: Resource) -> str | None:
    """The GitHub environment whose jobs may assume `role`, when that is all it admits."""
    subs = subjects(role)
    envs = [m.group("env") for m in map(ENVIRONMENT_SUBJECT.match, subs) if m]
    return envs[0] if subs and len(envs) == len(subs) and len(set(envs)) == 1 else None


@stack_rule(
    "ci-deploy-reaches-endpoint",
    "Where GitHub deploys a stack whose API endpoint is private, a runner inside the VPC exists for it (a "
    "CodeBuild project in the VPC taking GitHub's queued jobs).",
)
def _deploy_path(ctx: Context) -> Iterator[Finding]:
    deploys = [r for r in ctx.stack.of_type("aws:iam/role:Role") if deploy_environment(r) == ctx.env]
    if not deploys:
        return
    runners = [
        p
        for p in ctx.stack.of_type("aws:codebuild/project:Project")
        if p.get("vpcConfig", "vpcId")
        and any(
            f.get("pattern") == "WORKFLOW_JOB_QUEUED"
            for w in ctx.stack.referencing(p, "aws:codebuild/webhook:Webhook")
            for group in as_list(w.get("filterGroups"))
            for f in as_list(group.get("filters") if isinstance(group, Mapping) else None)
            if isinstance(f, Mapping)
        )
    ]
    for cluster in ctx.stack.of_type("aws:eks/cluster:Cluster"):
        public = cluster.get("vpcConfig", "endpointPublicAccess")
        if known(public) and public in (False, "false") and not runners:
            yield Finding(
                cluster.urn,
                "vpcConfig.endpointPublicAccess",
                public,
                f"the API endpoint is private and GitHub's environment {ctx.env} deploys it: add a runner in the "
                "VPC (ci.runner: codebuild)",
            )
