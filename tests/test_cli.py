"""`modelyard plan` end to end, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelyard.cli import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli", *args], capture_output=True, text=True, check=False, cwd="/"
    )


def test_plan_dev_prints_a_summary_and_writes_files(tmp_path: Path) -> None:
    out, manifests = tmp_path / "dev.json", tmp_path / "manifests"
    result = run("plan", "dev", "--out", str(out), "--manifests", str(manifests))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("modelyard plan dev — modelyard-platform/dev (offline")
    assert "GPU pool a10g: a10g on g5.xlarge, g5.2xlarge · spot+on-demand · ≤4 GPUs · scales to zero" in text
    assert "  infra (" in text and "aws:eks/cluster:Cluster" in text
    loaded = json.loads(out.read_text())
    assert loaded["modelyard"]["env"] == "dev"
    files = sorted(p.relative_to(manifests).as_posix() for p in manifests.rglob("*.yaml"))
    assert "modelyard-platform/_cluster/NodePool-gpu-a10g.yaml" in files
    assert "modelyard-platform/helm/karpenter-karpenter.yaml" in files


def test_prod_manifests_are_written_one_object_per_file(tmp_path: Path) -> None:
    assert main(["plan", "prod", "--manifests", str(tmp_path)]) == 0
    kinds = set()
    for path in tmp_path.rglob("*.yaml"):
        obj = yaml.safe_load(path.read_text())
        if "/helm/" in path.as_posix():
            assert set(obj) == {"chart", "version", "namespace", "name", "values"}
            continue
        assert list(obj)[:3] == ["apiVersion", "kind", "metadata"], path
        assert path.name == f"{obj['kind']}-{obj['metadata']['name']}.yaml"
        kinds.add(obj["kind"])
    assert {"Namespace", "NodePool", "PrometheusRule", "PodMonitor", "ServiceAccount", "ConfigMap"} <= kinds


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "qa"], "modelyard plan: no stack file for 'qa' in project modelyard-platform"),
        (["plan", "Dev!"], "modelyard plan: ENV 'Dev!' is not a stack name"),
        (["plan", "dev", "--project", "nope"], "argument --project: invalid choice: 'nope'"),
        (["plan"], "the following arguments are required: ENV"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        (
            ["plan", "dev", "--config-file", "/no/such/Pulumi.dev.yaml"],
            "stack file not found: /no/such/Pulumi.dev.yaml",
        ),
    ],
)
def test_usage_errors_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
