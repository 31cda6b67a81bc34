"""Helpers the tests share: a free loopback port, a real Prometheus server on it, promtool, the rule
parameters the promtool unit tests are written against, and the conformance counts `make test` prints
at the end (conftest.py's terminal summary)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelyard.platform import rules

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
