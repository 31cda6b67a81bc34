"""IAM: wildcards, IRSA subjects, the model-pull role, NotAction, trust policies, administrator
access and privilege escalation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from ..resources import Resource, as_list, dig, known, statements
from .base import POLICY_FIELDS, Context, Finding, no_managed_policies, resource_rule, stack_rule
from .ci import deploy_environment, github_statements

READ_ONLY_MODEL_ACTIONS = frozenset(
    {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:GetBucketLocation", "kms:Decrypt"}
)


IDENTITY_POLICIES = (
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/policy:Policy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
)


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
    """The trust statements of `role` for the cluster's service accounts (IRSA); GitHub's are ci.py's."""
    github = {i for i, _ in github_statements(role)}
    out = []
    for i, st in enumerate(statements(role.get("assumeRolePolicy"))):
        if "sts:AssumeRoleWithWebIdentity" in as_list(st.get("Action")) and i not in github:
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


#: The session tags EKS Pod Identity sets (Amazon EKS User Guide, "Enable or disable session tags"): a trust
#: names a namespace and a service account, and a cluster by its ARN or name.
POD_IDENTITY_SCOPE = ("aws:RequestTag/kubernetes-namespace", "aws:RequestTag/kubernetes-service-account")
POD_IDENTITY_CLUSTER = ("aws:RequestTag/eks-cluster-arn", "aws:RequestTag/eks-cluster-name")


@resource_rule(
    "pod-identity-trust-scoped",
    "A Pod Identity trust names one cluster, namespace and service account (the session tags EKS sets), so "
    "no other association in the account can use the role.",
    ("aws:iam/role:Role",),
)
def _pod_identity(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    for i, st in enumerate(statements(r.get("assumeRolePolicy"))):
        services = as_list(dig(st, "Principal", "Service"))
        if st.get("Effect") != "Allow" or "pods.eks.amazonaws.com" not in services:
            continue
        equals = dig(st, "Condition", "StringEquals") or {}
        single = {k: v for k, v in equals.items() if len(as_list(v)) == 1 and "*" not in str(as_list(v)[0])}
        missing = [k for k in POD_IDENTITY_SCOPE if k not in single]
        if not any(k in single for k in POD_IDENTITY_CLUSTER):
            missing.append(" or ".join(POD_IDENTITY_CLUSTER))
        if missing:
            yield (
                f"assumeRolePolicy.Statement[{i}].Condition",
                st.get("Condition"),
                f"StringEquals must name one value each for {', '.join(missing)}",
            )


@stack_rule(
    "model-pull-role-read-only",
    "A model's pull role (IRSA, a service account of the model namespace) reads one model's prefix of its "
    "environment's model bucket and nothing else: no write, no managed policy, no other model's versions.",
    basic=True,
    params={"namespace": "models"},
)
def _model_pull(ctx: Context) -> Iterator[Finding]:
    namespace = ctx.param("model-pull-role-read-only", "namespace", "models")
    bucket = ctx.model_bucket()
    for role in ctx.stack.of_type("aws:iam/role:Role"):
        trusted = any(
            f"system:serviceaccount:{namespace}:" in str(st.get("Condition")) for _, st in _web_identity_subjects(role)
        )
        if not trusted:
            continue
        yield from no_managed_policies(ctx, role, "a model-pull role takes no managed policies")
        for policy in ctx.stack.referencing(role, "aws:iam/rolePolicy:RolePolicy"):
            yield from _model_pull_statements(policy, bucket, ctx.env)


def _model_pull_statements(policy: Resource, bucket: str | None, env: str) -> Iterator[Finding]:
    for i, st in enumerate(statements(policy.get("policy"))):
        if st.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in as_list(st.get("Action"))]
        extra = [a for a in actions if a not in READ_ONLY_MODEL_ACTIONS]
        if extra:
            yield Finding(
                policy.urn,
                f"policy.Statement[{i}].Action",
                extra,
                f"a model-pull role may only {', '.join(sorted(READ_ONLY_MODEL_ACTIONS))}",
            )
        for res in as_list(st.get("Resource")):
            if not known(res):
                continue
            text = str(res)
            if res == "*" and any(a.startswith("s3:") for a in actions):
                yield Finding(policy.urn, f"policy.Statement[{i}].Resource", res, "scope S3 reads to the model bucket")
                continue
            if not (text.startswith("arn:aws") and ":s3:::" in text):
                continue
            name, _, key = text.split(":::", 1)[1].partition("/")
            if bucket and name != bucket:
                yield Finding(
                    policy.urn,
                    f"policy.Statement[{i}].Resource",
                    res,
                    f"only the {env} model bucket {bucket} may be read",
                )
            elif key and not re.fullmatch(r"[a-z0-9][a-z0-9-]*/\*", key):
                yield Finding(
                    policy.urn,
                    f"policy.Statement[{i}].Resource",
                    res,
                    "a model-pull role reads one model's prefix: <bucket>/<model>/*",
                )
        if "s3:ListBucket" in actions:
            prefixes = as_list(dig(st, "Condition", "StringLike", "s3:prefix")) + as_list(
                dig(st, "Condition", "StringEquals", "s3:prefix")
            )
            models = {str(p).split("/", 1)[0] for p in prefixes if known(p)}
            if not prefixes or len(models) != 1 or any("*" in m for m in models):
                yield Finding(
                    policy.urn,
                    f"policy.Statement[{i}].Condition",
                    st.get("Condition"),
                    "a model-pull role lists one model's prefix: s3:prefix <model>/ and <model>/*",
                )


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


def _deploy_role(attachment: Resource, ctx: Context) -> bool:
    """Whether `attachment` is of this environment's CI deploy role: a role only jobs in the GitHub environment
    named like the stack may assume (rule ci-github-trust-bound holds its trust)."""
    return any(
        deploy_environment(role) == ctx.env
        and attachment in ctx.stack.referencing(role, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        for role in ctx.stack.of_type("aws:iam/role:Role")
    )


@resource_rule(
    "iam-no-admin-attachments",
    "No role gets AdministratorAccess, IAMFullAccess or PowerUserAccess, but the CI deploy role of the stack's own "
    "GitHub environment: a program that creates IAM roles has an administrator's reach whatever it is given, and "
    "that role's trust (one environment, behind its required reviewers) is what bounds it.",
    ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "aws:iam/role:Role"),
    basic=True,
)
def _admin(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if r.type.endswith("RolePolicyAttachment") and _deploy_role(r, ctx):
        return
    if not r.type.endswith("RolePolicyAttachment") and deploy_environment(r) == ctx.env:
        return
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
