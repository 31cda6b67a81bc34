"""KMS rotation, ECR, Helm pins, Grafana credentials, log groups, SNS and SQS encryption."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from ..resources import Resource, as_list, dig, mapping
from .base import Context, _true, _unknown, resource_rule

SEMVER = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")


#: Default Grafana credentials that must never be deployed (the charts' and Grafana's own).
DEFAULT_GRAFANA_PASSWORDS = ("prom-operator", "admin", "password", "")


@resource_rule(
    "kms-rotation",
    "Customer-managed encryption keys rotate (KMS rotates symmetric encryption keys only: a signing key is "
    "replaced, not rotated).",
    ("aws:kms/key:Key",),
    basic=True,
)
def _kms(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if r.get("keyUsage") not in (None, "ENCRYPT_DECRYPT") or r.get("customerMasterKeySpec") not in (
        None,
        "SYMMETRIC_DEFAULT",
    ):
        return
    if not _true(r.get("enableKeyRotation")) and not _unknown(r.inputs.get("enableKeyRotation")):
        yield "enableKeyRotation", r.get("enableKeyRotation") or False, "must be true"


@resource_rule(
    "ecr-immutable-scanned",
    "ECR tags are immutable and images are scanned on push.",
    ("aws:ecr/repository:Repository",),
)
def _ecr(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if r.get("imageTagMutability") != "IMMUTABLE":
        yield "imageTagMutability", r.get("imageTagMutability") or "MUTABLE (default)", "must be IMMUTABLE"
    if not _true(r.get("imageScanningConfiguration", "scanOnPush")):
        yield "imageScanningConfiguration.scanOnPush", r.get("imageScanningConfiguration", "scanOnPush"), "must be true"


@resource_rule(
    "helm-pinned",
    "Helm releases pin an exact chart version.",
    ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"),
)
def _helm(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    version = r.inputs.get("version")
    if _unknown(version):
        return
    if not isinstance(version, str) or not SEMVER.match(version):
        yield "version", version, "pin an exact chart version (x.y.z); unset means the latest"


@resource_rule(
    "grafana-credentials",
    "Grafana never runs with a default admin password.",
    ("kubernetes:helm.sh/v3:Release",),
    basic=True,
)
def _grafana(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    chart = str(r.get("chart") or "")
    values = r.get("values") or {}
    if not isinstance(values, Mapping):
        return
    if chart.endswith("kube-prometheus-stack"):
        grafana, path = mapping(values.get("grafana")), "values.grafana"
        if grafana.get("enabled") is False:
            return
    elif chart.endswith("grafana"):
        grafana, path = values, "values"
    else:
        return
    password = grafana.get("adminPassword")
    secret = dig(grafana, "admin", "existingSecret")
    if password is not None and password in DEFAULT_GRAFANA_PASSWORDS:
        yield f"{path}.adminPassword", password, "is a default password; use admin.existingSecret"
    elif password is None and not secret:
        yield (
            f"{path}.admin.existingSecret",
            None,
            "unset means the chart's default password (prom-operator); point it at a generated Secret",
        )


@resource_rule(
    "log-group-encrypted-retained",
    "Log groups are encrypted with a KMS key and keep logs for a set time.",
    ("aws:cloudwatch/logGroup:LogGroup",),
    basic=True,
)
def _log_group(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if not r.get("kmsKeyId") and not _unknown(r.inputs.get("kmsKeyId")):
        yield "kmsKeyId", None, "encrypt with a KMS key"
    if not r.get("retentionInDays") and not _unknown(r.inputs.get("retentionInDays")):
        yield "retentionInDays", None, "set a retention (logs are kept forever otherwise)"


@resource_rule(
    "messaging-encrypted",
    "SNS topics, SQS queues and ECR repositories are encrypted at rest.",
    ("aws:sns/topic:Topic", "aws:sqs/queue:Queue", "aws:ecr/repository:Repository"),
    basic=True,
)
def _messaging(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if r.type == "aws:sns/topic:Topic":
        if not r.get("kmsMasterKeyId") and not _unknown(r.inputs.get("kmsMasterKeyId")):
            yield "kmsMasterKeyId", None, "encrypt the topic with a KMS key"
    elif r.type == "aws:sqs/queue:Queue":
        if (
            not r.get("kmsMasterKeyId")
            and r.get("sqsManagedSseEnabled") is False
            and not _unknown(r.inputs.get("sqsManagedSseEnabled"))
        ):
            yield "sqsManagedSseEnabled", False, "enable SSE (SQS-managed or a KMS key)"
    else:
        kinds = [dig(c, "encryptionType") for c in as_list(r.get("encryptionConfigurations"))]
        if not any(k in ("KMS", "KMS_DSSE") for k in kinds) and not _unknown(r.inputs.get("encryptionConfigurations")):
            yield "encryptionConfigurations", kinds or None, "encrypt with a KMS key (encryptionType: KMS)"
