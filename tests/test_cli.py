"""`modelyard plan` end to end, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelyard.cli import main
from modelyard.programs import PROJECTS, REPO_ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli", *args], capture_output=True, text=True, check=False, cwd=REPO_ROOT
    )


def test_plan_dev_prints_a_summary_and_writes_files(tmp_path: Path) -> None:
    out, manifests = tmp_path / "dev.json", tmp_path / "manifests"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard.cli",
            "--cwd",
            str(REPO_ROOT),
            "plan",
            "dev",
            "--out",
            str(out),
            "--manifests",
            str(manifests),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
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
    assert {"Namespace", "NodePool", "PrometheusRule", "PodMonitor", "Role", "RoleBinding", "ConfigMap"} <= kinds


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


def test_plan_reads_the_checkout_it_runs_in(tmp_path: Path) -> None:
    """Like the Pulumi CLI: a fork's edited stack file is what gets planned, whichever checkout the
    package was installed from; from the workloads project, the root is found above it."""
    fork = tmp_path / "fork"
    (fork / "workloads" / "catalog").mkdir(parents=True)
    for name in (
        "Pulumi.yaml",
        "Pulumi.dev.yaml",
        "workloads/Pulumi.yaml",
        "workloads/Pulumi.dev.yaml",
        "workloads/catalog/dev.yaml",
    ):
        (fork / name).write_text((REPO_ROOT / name).read_text())
    edited = (fork / "Pulumi.dev.yaml").read_text().replace("monthly_usd: 1500", "monthly_usd: 1234")
    assert edited != (REPO_ROOT / "Pulumi.dev.yaml").read_text()
    (fork / "Pulumi.dev.yaml").write_text(edited)
    for cwd in (fork, fork / "workloads"):
        result = subprocess.run(
            [sys.executable, "-m", "modelyard.cli", "plan", "dev", "--project", "all"],
            capture_output=True,
            text=True,
            check=False,
            cwd=cwd,
        )
        assert "$1,234.00" in result.stdout, (cwd, result.stdout[-800:], result.stderr)
    outside = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "plan", "dev"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert outside.returncode == 2
    assert f"no Pulumi.yaml in {tmp_path} or above" in outside.stderr


def test_help_is_instant_and_projects_agree() -> None:
    """`modelyard --help` imports no SDK: neither Pulumi, pydantic nor boto3."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom modelyard.cli import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in ('pulumi', 'pulumi_aws', 'pydantic', 'boto3', 'yaml') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"
    from modelyard.policies.governance.conventions import PROJECT_KEYS

    assert tuple(PROJECTS) == PROJECT_KEYS


@pytest.mark.skipif(
    not (REPO_ROOT / ".venv-serving" / "bin" / "python").exists(), reason="the model server's environment is not built"
)
def test_serve_listens_on_loopback_and_passes_the_server_flags_through(tmp_path: Path) -> None:
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelyard.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            "--max-batch-size",
            "4",
            "--model-instances",
            "1",
            "--read-timeout",
            "7.5",
            "--max-connections",
            "100",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        text = log.read_text()
        assert f"listening on 127.0.0.1:{port}: 1 fronts" in text and "batches of 4 texts" in text, text
        assert "1 passes at once" in text, text
        assert "requests read within 7.5 s, 100 connections a front" in text, text
        listening = [
            line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:] if line.split()[3] == "0A"
        ]
        assert f"0100007F:{port:04X}" in listening  # bound to 127.0.0.1, not 0.0.0.0
        assert f"00000000:{port:04X}" not in listening
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_serve_refuses_a_bad_flag_with_a_message() -> None:
    result = run("serve", "--max-batch-size", "lots")
    assert result.returncode == 2
    assert "--max-batch-size: invalid int value: 'lots'" in result.stderr


def test_a_fork_is_read_from_itself_policy_configurations_included(tmp_path: Path) -> None:
    """A fork with a fourth environment, planned with this checkout's command: its stack file and its
    policy configuration both come from the fork."""
    fork = tmp_path / "fork"
    fork.mkdir()
    (fork / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    stack = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())
    stack["config"]["modelyard:platform"]["env"] = "perf"
    (fork / "Pulumi.perf.yaml").write_text(yaml.safe_dump(stack))
    (fork / "policies" / "config").mkdir(parents=True)
    config = json.loads((REPO_ROOT / "policies" / "config" / "dev.json").read_text())
    (fork / "policies" / "config" / "perf.json").write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "plan", "perf"], capture_output=True, text=True, check=False, cwd=fork
    )
    assert result.returncode == 0, result.stderr
    assert f"Policy ({fork / 'policies' / 'config' / 'perf.json'})" in result.stdout
    (fork / "policies" / "config" / "perf.json").unlink()
    missing = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "plan", "perf"], capture_output=True, text=True, check=False, cwd=fork
    )
    assert missing.returncode == 2
    assert f"no policy config for 'perf': {fork / 'policies' / 'config' / 'perf.json'} does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_fork_is_priced_from_its_own_price_table_and_usage_assumptions(tmp_path: Path) -> None:
    """The same plan, priced with this checkout's command: from the fork's own prices.yaml and usage.yaml
    when run in the fork, from the installed package's outside any checkout, and from the files the flags
    name when they are given."""
    fork = tmp_path / "fork"
    (fork / "policies" / "governance").mkdir(parents=True)
    (fork / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    prices = yaml.safe_load((REPO_ROOT / "policies" / "governance" / "prices.yaml").read_text())
    prices["regions"]["us-east-1"]["services_usd"]["eks_cluster_hour"]["usd"] = 1.0
    (fork / "policies" / "governance" / "prices.yaml").write_text(yaml.safe_dump(prices))
    usage = yaml.safe_load((REPO_ROOT / "policies" / "governance" / "usage.yaml").read_text())
    usage["model_store_gb"] = 10_000
    (fork / "policies" / "governance" / "usage.yaml").write_text(yaml.safe_dump(usage))
    plan = tmp_path / "dev.json"
    assert run("plan", "dev", "--out", str(plan)).returncode == 0

    def priced(cwd: Path, *flags: str) -> dict[str, float]:
        result = subprocess.run(
            [sys.executable, "-m", "modelyard.cli", "cost", "--json", str(plan), *flags],
            capture_output=True,
            text=True,
            check=False,
            cwd=cwd,
        )
        assert result.returncode == 0, result.stderr
        items = json.loads(result.stdout)["resources"]
        return {
            "eks": sum(i["baseline"] for i in items if i["type"] == "aws:eks/cluster:Cluster"),
            "bucket": sum(i["baseline"] for i in items if i["type"] == "aws:s3/bucket:Bucket"),
        }

    shipped, own = priced(tmp_path), priced(fork)
    assert shipped["eks"] == pytest.approx(0.1 * 730) and own["eks"] == pytest.approx(1.0 * 730)
    assert own["bucket"] > shipped["bucket"] * 10
    flagged = priced(
        tmp_path,
        "--prices",
        str(fork / "policies" / "governance" / "prices.yaml"),
        "--usage",
        str(fork / "policies" / "governance" / "usage.yaml"),
    )
    assert flagged == own
    (tmp_path / "bad.yaml").write_text("regions: 3\n")
    bad = run("cost", str(plan), "--prices", str(tmp_path / "bad.yaml"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"{tmp_path / 'bad.yaml'}: not a price table: " in bad.stderr and "regions" in bad.stderr
    missing = run("cost", str(plan), "--prices", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2 and f"--prices {tmp_path / 'absent.yaml'}: no such file" in missing.stderr
