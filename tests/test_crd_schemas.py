"""Every custom resource of every environment, as the API server would take it on create: defaulted,
validated against its CRD's OpenAPI schema and run through the CRD's CEL rules (tests/crd_schema.py), with
each CRD at the tag modelyard/versions.py pins (tests/conformance/<component>-<tag>/, copied unchanged).
The validator is first shown to agree with Karpenter's own CEL test cases, then with the API server's
answers for the schema's other keywords."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ENVS, Plan
from crd_schema import Crd, load_crds, refusals
from support import COUNTS

from modelyard.policies.governance.resources import Stack, from_preview
from modelyard.versions import HELM_CHARTS

CONFORMANCE = Path(__file__).parent / "conformance"
#: The folders whose CRDs the plan's custom resources are held to, by the chart that installs them.
CRD_FOLDERS = {
    "kserve-crd": f"kserve-{HELM_CHARTS['kserve-crd'].version}",
    "keda": f"keda-v{HELM_CHARTS['keda'].version}",
    "karpenter": f"karpenter-{HELM_CHARTS['karpenter'].version}",
    "kube-prometheus-stack": f"kube-prometheus-stack-{HELM_CHARTS['kube-prometheus-stack'].version}",
    "envoy-gateway": f"envoy-gateway-{HELM_CHARTS['envoy-gateway'].version}",
    "cert-manager": f"cert-manager-{HELM_CHARTS['cert-manager'].version}",
}


@pytest.fixture(scope="module")
def crds() -> dict[tuple[str, str], Crd]:
    found: dict[tuple[str, str], Crd] = {}
    for folder in CRD_FOLDERS.values():
        assert (CONFORMANCE / folder).is_dir(), f"no CRDs for {folder}: copy them at that tag (PROVENANCE.md)"
        found |= load_crds(CONFORMANCE / folder)
    return found


def custom_resources(plan: Plan) -> list[dict[str, Any]]:
    """The objects of the plan's Kubernetes resources whose group no built-in API serves."""
    built_in = (
        "core/",
        "apps/",
        "batch/",
        "policy/",
        "rbac.",
        "networking.k8s.io/",
        "storage.k8s.io/",
        "scheduling.k8s.io/",
        "autoscaling/",
        "admissionregistration.",
        "apiextensions.",
        "helm.sh/",
        "yaml/",
    )
    found = []
    for resource in Stack(from_preview(plan.digest)).resources:
        kind = resource.type.removeprefix("kubernetes:")
        if resource.type.startswith("kubernetes:") and not kind.startswith(built_in):
            found.append(resource.inputs)
    return found


@pytest.mark.parametrize("env", ENVS)
def test_every_custom_resource_is_admitted_by_its_crds_schema_and_cel_rules(
    all_plans: dict[str, Plan], env: str, crds: dict[tuple[str, str], Crd]
) -> None:
    objects = custom_resources(all_plans[env])
    kinds = {(o["apiVersion"], o["kind"]) for o in objects}
    assert {"NodePool", "EC2NodeClass", "InferenceService", "PodMonitor", "PrometheusRule"} <= {k for _, k in kinds}
    assert {"Gateway", "HTTPRoute", "SecurityPolicy", "BackendTrafficPolicy", "Certificate"} <= {k for _, k in kinds}
    refused = {f"{o['kind']}/{o['metadata'].get('name')}": found for o in objects if (found := refusals(o, crds))}
    COUNTS["custom resources checked against their CRD's schema and CEL rules"] += len(objects)
    COUNTS["custom resources the API server would refuse"] += len(refused)
    assert not refused, yaml.safe_dump(refused, width=200)


def test_the_crd_folders_follow_the_pinned_charts() -> None:
    """A chart bump fails here until its CRDs are copied again at the new tag."""
    for chart, folder in CRD_FOLDERS.items():
        provenance = (CONFORMANCE / folder / "PROVENANCE.md").read_text()
        assert "commit" in provenance, chart
        for crd in (CONFORMANCE / folder).glob("*.yaml"):
            if "CustomResourceDefinition" in crd.read_text()[:2000]:
                assert f"`{crd.name}`" in provenance, f"{folder}/PROVENANCE.md does not say where {crd.name} is from"


def karpenter_cases() -> list[dict[str, Any]]:
    table = yaml.safe_load((CONFORMANCE / CRD_FOLDERS["karpenter"] / "cel_cases.yaml").read_text())
    found = []
    for case in table["cases"]:
        spec = copy.deepcopy(table["base"])
        spec.update(copy.deepcopy(case.get("set", {})))
        for name in case.get("drop", []):
            spec.pop(name, None)
        obj = {"apiVersion": table["apiVersion"], "kind": table["kind"], "metadata": {"name": "test"}, "spec": spec}
        found.append(pytest.param(obj, case["refused"], id=f"{case['line']}: {case['it']}"))
    return found


@pytest.mark.parametrize(("obj", "refused"), karpenter_cases())
def test_the_validator_agrees_with_karpenters_own_cel_tests(
    obj: dict[str, Any], refused: bool, crds: dict[tuple[str, str], Crd]
) -> None:
    found = refusals(obj, crds)
    COUNTS["upstream CEL test cases the validator agrees with"] += 1
    assert bool(found) == refused, found or "admitted"
    assert not any("could not be evaluated" in f for f in found), found


NODEPOOL = {
    "apiVersion": "karpenter.sh/v1",
    "kind": "NodePool",
    "metadata": {"name": "gpu"},
    "spec": {
        "template": {
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"},
                "requirements": [{"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g5"]}],
            }
        }
    },
}


def nodepool(**spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(NODEPOOL)
    obj["spec"].update(spec)
    return obj


def template_spec(**fields: Any) -> dict[str, Any]:
    obj = copy.deepcopy(NODEPOOL)
    obj["spec"]["template"]["spec"].update(fields)
    return obj


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(NODEPOOL, None, id="a minimal NodePool is admitted (its disruption defaults filled in)"),
        pytest.param(nodepool(weigth=10), 'spec.weigth: unknown field "weigth"', id="unknown field"),
        pytest.param(nodepool(weight="10"), "spec.weight: must be integer", id="wrong type"),
        pytest.param(nodepool(weight=101), "spec.weight: 101 is above the maximum 100", id="maximum"),
        pytest.param(
            nodepool(disruption={"consolidationPolicy": "Sometimes"}),
            "spec.disruption.consolidationPolicy: 'Sometimes' is not one of",
            id="enum",
        ),
        pytest.param(
            template_spec(requirements=[{"key": "karpenter.sh/nodepool", "operator": "In", "values": ["x"]}]),
            'label "karpenter.sh/nodepool" is restricted',
            id="CEL on a list item's field (restricted requirement key)",
        ),
        pytest.param(
            template_spec(requirements=[{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": []}]),
            "requirements with operator 'In' must have a value defined",
            id="CEL over a list",
        ),
        pytest.param(
            template_spec(nodeClassRef={"group": "karpenter.k8s.aws", "kind": "EC2NodeClass"}),
            "spec.template.spec.nodeClassRef.name: Required value",
            id="required",
        ),
        pytest.param(nodepool(limits={"cpu": "lots"}), "does not match", id="pattern (a quantity)"),
    ],
)
def test_the_validator_answers_as_the_api_server(
    obj: dict[str, Any], expected: str | None, crds: dict[tuple[str, str], Crd]
) -> None:
    found = refusals(obj, crds)
    if expected is None:
        assert found == []
    else:
        assert any(expected in f for f in found), found


def test_defaults_are_applied_before_the_rules_and_nulls_pruned(crds: dict[tuple[str, str], Crd]) -> None:
    from crd_schema import apply_defaults

    crd = crds[("karpenter.sh/v1", "NodePool")]
    defaulted = apply_defaults(copy.deepcopy(NODEPOOL) | {"status": None}, crd.schema)
    assert "status" not in defaulted
    assert defaulted["spec"]["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    assert defaulted["spec"]["disruption"]["budgets"] == [{"nodes": "10%"}]


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node: Any = changed
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return changed


@pytest.mark.parametrize(
    ("kind", "path", "value", "expected"),
    [
        ("InferenceService", "spec.predictor.minReplicas", "2", "spec.predictor.minReplicas: must be integer"),
        ("InferenceService", "spec.predictor.replicas", 2, 'spec.predictor.replicas: unknown field "replicas"'),
        ("ScaledObject", "spec.minReplicaCount", 99, "minReplicaCount must be less than or equal to maxReplicaCount"),
        ("PrometheusRule", "spec.groups.0.interval", "often", "spec.groups[0].interval: 'often' does not match"),
        ("PodMonitor", "spec.podMetricsEndpoints.0.scheme", "gopher", "scheme: 'gopher' is not one of"),
    ],
    ids=["ISVC wrong type", "ISVC unknown field", "KEDA CEL rule", "PrometheusRule pattern", "PodMonitor enum"],
)
def test_the_plans_own_objects_changed_by_one_field_are_refused(
    all_plans: dict[str, Plan], kind: str, path: str, value: Any, expected: str, crds: dict[tuple[str, str], Crd]
) -> None:
    """The checks above bite on the plan's real objects, through the big schemas (KServe's is 1 MB)."""
    obj = next(o for o in custom_resources(all_plans["prod"]) if o["kind"] == kind)
    assert refusals(obj, crds) == []
    found = refusals(_set(obj, path, value), crds)
    assert any(expected in f for f in found), found
