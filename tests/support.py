"""Helpers the tests share: a free loopback port, a real Prometheus server on it, the real model server on
it, promtool, the rule parameters the promtool unit tests are written against, and the conformance counts
`make test` prints at the end (conftest.py's terminal summary)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from modelyard.platform import rules
from modelyard.programs import REPO_ROOT

#: The model server's own environment (make test builds it).
SERVING_PYTHON = REPO_ROOT / ".venv-serving" / "bin" / "python"

#: The parameters the unit tests in tests/promtool/ are written against (see cost.test.yaml).
TEST_PARAMS = rules.RuleParams(
    monthly_budget_usd=1500,
    hours_per_month=730,
    prices=[
        rules.InstancePrice("g5.xlarge", "on-demand", 1.006),
        rules.InstancePrice("g5.xlarge", "spot", 0.4024),
        rules.InstancePrice("g5.12xlarge", "on-demand", 5.672),
    ],
)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: install Debian's prometheus package (make test and .ci/run do)"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=300)


#: What the conformance tests checked, by what: each test adds to it as it asserts.
COUNTS: Counter[str] = Counter()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def prometheus_server(directory: Path) -> Iterator[tuple[str, Path]]:
    """Debian's Prometheus on loopback, run in `directory` (which holds prometheus.yml and, if any, a `data`
    TSDB): yields its URL and log file, stops it afterwards. The caller waits for what it needs."""
    for tool in ("prometheus", "promtool"):
        assert shutil.which(tool), f"{tool} is missing: install Debian's prometheus package (make test does)"
    port = free_port()
    log_path = directory / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                "prometheus",
                "--config.file=prometheus.yml",
                "--storage.tsdb.path=data",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}", log_path
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@contextmanager
def model_server(
    directory: Path, *args: str, env: Mapping[str, str] | None = None, ready: str = "/v2/health/ready"
) -> Iterator[str]:
    """The platform's model server (workloads/serving) on loopback with `args` (the bundled model unless they name
    one) and `env` added to this process's, once `ready` answers 200: yields its URL, stops it (SIGTERM)
    afterwards."""
    assert SERVING_PYTHON.exists(), f"{SERVING_PYTHON} is missing: make test builds the model server's environment"
    port = free_port()
    log_path = directory / f"model-server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(SERVING_PYTHON), "-m", "modelyard_server", "--http_port", str(port), "--host", "127.0.0.1", *args],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "workloads" / "serving"), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 180
            while True:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    with urllib.request.urlopen(f"{url}{ready}", timeout=1) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                assert time.time() < deadline, "not ready in 180 s:\n" + log_path.read_text()[-3000:]
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=60)
