"""IAM and KMS policy documents as pure functions.

Documents are plain dicts so tests (and, later, policies) can read them; `to_json` turns a document
holding Pulumi outputs into one JSON string output.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi

Document = dict[str, Any]


def to_json(document: Any) -> pulumi.Output[str]:
    """Serialise a document that may contain Outputs, keeping key order for readable diffs."""
    return pulumi.Output.from_input(document).apply(lambda doc: json.dumps(doc, separators=(",", ":")))


def service_trust(*services: str, source_account: Any = None, tag_session: bool = False) -> Document:
    """Trust policy letting AWS services assume a role, optionally only on behalf of one account."""
    statement: Document = {
        "Effect": "Allow",
        "Principal": {"Service": list(services) if len(services) > 1 else services[0]},
        "Action": ["sts:AssumeRole", "sts:TagSession"] if tag_session else "sts:AssumeRole",
    }
    if source_account is not None:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return {"Version": "2012-10-17", "Statement": [statement]}


#: The session tags EKS Pod Identity sets when it assumes a role for a pod (Amazon EKS User Guide, "Create IAM
#: role with trust policy required by EKS Pod Identity" and "Enable or disable session tags"): the trust binds
#: the role to one cluster, namespace and service account with them, so no other association in the account
#: (another cluster's, another namespace's) can use it.
POD_IDENTITY_TAGS = ("eks-cluster-arn", "kubernetes-namespace", "kubernetes-service-account")


def pod_identity_trust(source_account: Any, cluster_arn: Any, namespace: str, service_account: str) -> Document:
    """Trust policy for EKS Pod Identity, for one service account of one cluster."""
    document = service_trust("pods.eks.amazonaws.com", source_account=source_account, tag_session=True)
    document["Statement"][0]["Condition"]["StringEquals"].update(
        {
            f"aws:RequestTag/{tag}": value
            for tag, value in zip(POD_IDENTITY_TAGS, (cluster_arn, namespace, service_account), strict=True)
        }
    )
    return document


#: How recently a break-glass user must have signed in with MFA (seconds): aws:MultiFactorAuthAge.
BREAK_GLASS_MFA_AGE = 3600


def break_glass_trust(account_id: Any, partition: Any) -> Document:
    """Trust policy of a break-glass role: principals of this account only (the account delegates to its own
    IAM policies who may call sts:AssumeRole on it), and only with MFA used within BREAK_GLASS_MFA_AGE (IAM
    User Guide, "Configuring MFA-protected API access": aws:MultiFactorAuthPresent and aws:MultiFactorAuthAge)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": pulumi.Output.concat("arn:", partition, ":iam::", account_id, ":root")},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "Bool": {"aws:MultiFactorAuthPresent": "true"},
                    "NumericLessThan": {"aws:MultiFactorAuthAge": str(BREAK_GLASS_MFA_AGE)},
                },
            }
        ],
    }


def irsa_trust(oidc_provider_arn: Any, issuer_url: Any, namespace: Any, service_account: str) -> pulumi.Output[str]:
    """Trust policy for IRSA scoped to exactly one service account and the STS audience."""

    def build(args: list[str]) -> str:
        arn, url, namespace = args
        host = url.removeprefix("https://")
        return json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Federated": arn},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {
                            "StringEquals": {
                                f"{host}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                                f"{host}:aud": "sts.amazonaws.com",
                            }
                        },
                    }
                ],
            },
            separators=(",", ":"),
        )

    return pulumi.Output.all(oidc_provider_arn, issuer_url, namespace).apply(build)


def managed_policy_arn(partition: Any, name: str) -> pulumi.Output[str]:
    return pulumi.Output.concat("arn:", partition, ":iam::aws:policy/", name)


def kms_key_policy(account_id: Any, partition: Any, extra: list[Document] | None = None) -> Document:
    """Key policy: the account administers the key through IAM, plus any service grants in `extra`."""
    root = pulumi.Output.concat("arn:", partition, ":iam::", account_id, ":root")
    statements: list[Document] = [
        {
            "Sid": "AccountAdministersThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    return {"Version": "2012-10-17", "Statement": statements + list(extra or [])}


def logs_key_statement(region: str, account_id: Any, partition: Any) -> Document:
    """Let CloudWatch Logs in this account and region use a key for its log groups, and nothing else."""
    return {
        "Sid": "CloudWatchLogsEncryptsThisAccountsLogGroups",
        "Effect": "Allow",
        "Principal": {"Service": f"logs.{region}.amazonaws.com"},
        "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        "Resource": "*",
        "Condition": {
            "ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": pulumi.Output.concat(
                    "arn:", partition, ":logs:", region, ":", account_id, ":log-group:*"
                )
            }
        },
    }


def deny_insecure_transport(resource_arns: list[Any]) -> Document:
    """Statement denying any request to these resources that does not use TLS."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "*",
        "Resource": resource_arns,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
