"""Every Kubernetes object a plan renders is valid: core kinds against the Kubernetes schemas
(kubernetes-validate, strict: no unknown fields); custom resources have their own tests."""

from __future__ import annotations

import kubernetes_validate
import pytest
from conftest import ENVS, Plan

from modelyard.plan.engine import SECRET_MASK
from modelyard.plan.report import kubernetes_objects
from modelyard.versions import DEFAULT_KUBERNETES_VERSION

#: Custom resources: no schema ships with kubernetes-validate. Where each one is checked instead.
CUSTOM_KINDS = {
    "EC2NodeClass": "tests/test_karpenter.py",
    "NodePool": "tests/test_karpenter.py",
    "PrometheusRule": "tests/test_rules.py (promtool)",
    "PodMonitor": "tests/test_platform.py",
    "ServiceMonitor": "tests/test_platform.py",
    **dict.fromkeys(
        ("Certificate", "ClusterIssuer", "EnvoyProxy", "GatewayClass", "Gateway", "ClientTrafficPolicy"),
        "tests/test_crd_schemas.py (each against its CRD at the pinned tag)",
    ),
}


@pytest.mark.parametrize("env", ENVS)
def test_core_objects_validate_strictly(plans: dict[str, Plan], env: str) -> None:
    validated = set()
    custom = set()
    for name, obj in kubernetes_objects(plans[env].digest):
        if obj["kind"] in CUSTOM_KINDS:
            custom.add(obj["kind"])
            continue
        if obj["kind"] == "Secret":
            # Secret data is masked in a plan; validate the rest of the object.
            assert obj["stringData"] == SECRET_MASK, name
            obj = {**obj, "stringData": {}}
        try:
            kubernetes_validate.validate(obj, DEFAULT_KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {exc}")
        validated.add(obj["kind"])
    assert {"Namespace", "ConfigMap", "Secret", "Role", "RoleBinding", "LimitRange", "StorageClass"} <= validated
    assert custom == set(CUSTOM_KINDS)


@pytest.mark.parametrize("env", ENVS)
def test_each_models_pull_account_validates_strictly(all_plans: dict[str, Plan], env: str) -> None:
    accounts = [obj for _, obj in kubernetes_objects(all_plans[env].digest) if obj["kind"] == "ServiceAccount"]
    assert accounts and all(a["metadata"]["name"].endswith("-puller") for a in accounts)
    for account in accounts:
        kubernetes_validate.validate(account, DEFAULT_KUBERNETES_VERSION, strict=True)


def test_an_invalid_object_is_caught() -> None:
    bad = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automountToken": False}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, DEFAULT_KUBERNETES_VERSION, strict=True)
