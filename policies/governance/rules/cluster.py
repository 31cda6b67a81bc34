"""EKS: the Kubernetes version, secrets encryption, control-plane logs, the endpoint, access entries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..resources import Resource, as_list
from .base import CLUSTER, OPEN_CIDRS, Context, _true, _unknown, resource_rule


@resource_rule("eks-version", "The cluster runs a supported Kubernetes version.", CLUSTER, params={"supported": []})
def _eks_version(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    supported = [str(v) for v in ctx.param("eks-version", "supported", [])]
    version = r.inputs.get("version")
    if _unknown(version) or not supported:
        return
    if version not in supported:
        yield "version", version, f"must be one of {', '.join(supported)} (unset means whatever EKS defaults to)"


@resource_rule("eks-secrets-encryption", "Kubernetes secrets are envelope-encrypted with KMS.", CLUSTER, basic=True)
def _eks_secrets(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    config = r.inputs.get("encryptionConfig")
    if _unknown(config):
        return
    resources = as_list(r.get("encryptionConfig", "resources"))
    if "secrets" not in resources or not r.inputs.get("encryptionConfig", {}).get("provider"):
        yield "encryptionConfig", config, "set encryptionConfig {resources: [secrets], provider: {keyArn}}"


@resource_rule("eks-logging", "Control-plane logs api, audit and authenticator are on.", CLUSTER, basic=True)
def _eks_logging(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    types = r.inputs.get("enabledClusterLogTypes")
    if _unknown(types):
        return
    missing = [t for t in ("api", "audit", "authenticator") if t not in as_list(types)]
    if missing:
        yield "enabledClusterLogTypes", as_list(types), f"add {', '.join(missing)}"


@resource_rule(
    "eks-endpoint",
    "The API endpoint is never open to 0.0.0.0/0, and private where required.",
    CLUSTER,
    basic=True,
    params={"requirePrivate": False},
)
def _eks_endpoint(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    vpc = r.inputs.get("vpcConfig")
    if _unknown(vpc):
        return
    public = r.get("vpcConfig", "endpointPublicAccess")
    public = True if public is None else _true(public)  # the EKS default is a public endpoint
    cidrs = r.get("vpcConfig", "publicAccessCidrs")
    cidrs = ["0.0.0.0/0"] if cidrs is None else as_list(cidrs)  # ... open to everyone by default
    if public and ctx.param("eks-endpoint", "requirePrivate", False):
        yield "vpcConfig.endpointPublicAccess", True, f"must be false in {ctx.env}: reach the API from inside the VPC"
    if public and any(c in OPEN_CIDRS for c in cidrs):
        yield "vpcConfig.publicAccessCidrs", cidrs, "opens the API endpoint to the internet; list your own ranges"


@resource_rule(
    "eks-access-entries",
    "Cluster access is managed by declared access entries (authentication mode API), with no implicit admin entry "
    "for the cluster's creator.",
    CLUSTER,
)
def _eks_access(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if _unknown(r.inputs.get("accessConfig")):
        return
    mode = r.get("accessConfig", "authenticationMode")
    if mode != "API":
        yield (
            "accessConfig.authenticationMode",
            mode or "CONFIG_MAP (default)",
            "set API: access entries, no aws-auth ConfigMap",
        )
    bootstrap = r.get("accessConfig", "bootstrapClusterCreatorAdminPermissions")
    if _unknown(bootstrap):
        return
    # The AWS provider's default is true: EKS then gives whoever created the cluster a cluster-admin access entry
    # that no stack declares and no review sees.
    if bootstrap is None or _true(bootstrap):
        yield (
            "accessConfig.bootstrapClusterCreatorAdminPermissions",
            True if bootstrap is None else bootstrap,
            "set false and declare the deployer's access entry (an undeclared cluster-admin outlives every review)",
        )
