"""The load test's verdict is what the platform's burn-rate rules say of the same run: the real model server
under `modelyard loadtest`, scraped every second by a real Prometheus (Debian's) that evaluates the platform's
SLI recording rules, its burn-rate alerts and the model's own objective series as the plan renders them.

Every window of the SLIs covers the whole run and nothing else, so each window's ratio is the run's: the error
ratio Prometheus records must be the one the load test counted (every failure here is an HTTP answer the server
counted), the page alert's condition must hold when the run burned faster than its factor and not otherwise,
and the latency SLI, over the requests the server answered, must meet its objective when the load test's did
and never count more of them slow than the load test did (the server starts its clock when it reads a request,
the load test at its scheduled send)."""

from __future__ import annotations

import ast
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from support import TEST_PARAMS, model_server, prometheus_server

from modelyard import loadtest as lt
from modelyard.cli import main
from modelyard.ops import Prometheus, slo
from modelyard.platform import rules, signals
from modelyard.policies.governance import conventions
from modelyard.programs import REPO_ROOT
from modelyard.workloads import models
from modelyard.workloads.catalog import load_workloads

FRONT = REPO_ROOT / "workloads" / "serving" / "modelyard_server" / "front.py"
MODEL = "minilm"


def _front_constant(name: str) -> tuple[int | str, ...]:
    tree = ast.parse(FRONT.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple)
            return value
    raise AssertionError(f"{FRONT} defines no {name}")


def test_the_server_exports_every_status_the_availability_sli_reads_from_the_start() -> None:
    """Each status the front answers that the SLI counts as an error (signals.ERROR_CODES) is among those it
    exports at 0 before the first request: a series first scraped at some count is undercounted by it."""
    exported = set(_front_constant("SLI_STATUSES"))
    source = FRONT.read_text()
    answered = {int(code) for code in re.findall(r"\b(?:return|_error\(send, |_json\(send, )\s*([1-5]\d\d)\b", source)}
    assert {200, 503, 429, 504} <= answered, answered  # the reading of front.py finds what it answers
    errors = {code for code in answered if re.fullmatch(signals.ERROR_CODES, str(code))}
    assert errors | {200} <= exported, f"front.py answers {sorted(errors - exported)} without exporting them at 0"
    assert all(code == 200 or re.fullmatch(signals.ERROR_CODES, str(code)) for code in exported)
    assert set(_front_constant("PROTOCOLS")) == {"v1", "v2", "openai"}


def _stack_rules(tmp: Path, entry: Any) -> None:
    groups = rules.platform_rule_groups(TEST_PARAMS) + models.slo_rule_groups(entry, "models")
    spec = rules.prometheus_rule_spec(groups, "https://x/runbooks")
    for group in spec["groups"]:
        group.pop("interval", None)  # every second here, not every 30 s or minute
    (tmp / "rules.yaml").write_text(yaml.safe_dump(spec))


def _prometheus_config(tmp: Path, server_url: str) -> None:
    target = server_url.removeprefix("http://")
    (tmp / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["rules.yaml"],
                "scrape_configs": [
                    {
                        "job_name": signals.MODEL_JOB,
                        # What the PodMonitor's relabelling gives a model pod's series.
                        "static_configs": [
                            {
                                "targets": [target],
                                "labels": {"namespace": "models", "model": MODEL, "inferenceservice": MODEL},
                            }
                        ],
                    }
                ],
            }
        )
    )


def _settled(prom_url: str, answered: int) -> None:
    """Waits until Prometheus has scraped every answer of the run and evaluated its rules on that scrape."""
    prom = Prometheus(prom_url)
    deadline = time.time() + 60
    while time.time() < deadline:
        seen = prom.scalar_by(f'sum({signals.REQUESTS_TOTAL}{{model="{MODEL}"}})')
        if seen.get(()) == answered:
            time.sleep(3)  # a scrape and an evaluation after it
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus saw {seen} answers, not {answered}, within 60 s")


def _alerts(prom_url: str) -> set[str]:
    alerts = requests.get(f"{prom_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["labels"].get("model") == MODEL}


def _run(url: str, samples: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[lt.Sample]]:
    args = ["loadtest", MODEL, "--env", "dev", "--url", url, "--arrivals", "constant", "--samples", str(samples)]
    code = main([*args, *extra])
    print(capsys.readouterr().out)
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    return code, [lt.Sample(**row) for row in rows]


def test_the_load_test_verdict_is_what_the_burn_rate_rules_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = load_workloads(REPO_ROOT / "workloads" / "Pulumi.dev.yaml", stack="dev").catalog
    entry = next(m for m in catalog.models if m.name == MODEL)
    objectives = lt.LatencyObjectives(entry.slo.availability, entry.slo.p99_latency_ms, 0.99)
    page = max(factor for _, _, factor in conventions.PAGE_BURNS)
    _stack_rules(tmp_path, entry)
    with model_server(tmp_path, "--workers", "1", "--latency_objective_ms", str(entry.slo.p99_latency_ms)) as url:
        _prometheus_config(tmp_path, url)
        with prometheus_server(tmp_path) as (prom_url, log):
            deadline = time.time() + 60
            while not Prometheus(prom_url).scalar_by(f'{signals.REQUESTS_TOTAL}{{code="503",protocol="openai"}}'):
                assert time.time() < deadline, "Prometheus scraped nothing in 60 s:\n" + log.read_text()[-3000:]
                time.sleep(0.5)

            # The entry's own load, met: no budget burned, no alert, the latency SLI within its objective.
            code, met = _run(url, tmp_path / "met.jsonl", "--duration", "10", capsys=capsys)
            verdict = lt.judge_latency(met, objectives, 10)
            assert code == 0 and verdict.ok and verdict.failed == 0
            _settled(prom_url, len(met))
            [row] = slo(Prometheus(prom_url), MODEL).rows
            assert row["status"] == "ok" and row["alerts"] == []
            assert all(row[f"burn_{w}"] == 0 for w in conventions.SLI_WINDOWS), row
            assert all(row[f"latency_burn_{w}"] <= 1 for w in conventions.SLI_WINDOWS), row
            assert not _alerts(prom_url) & {"ModelErrorBudgetBurnFast", "ModelLatencyBudgetBurnFast"}

            # A flood far past what one front answers: refused with 503, the budget burned past the page factor.
            code, flood = _run(
                url, tmp_path / "flood.jsonl", "--duration", "5", "--rate", "200", "--texts", "64", capsys=capsys
            )
            assert code == 1
            both = lt.judge_latency(met + flood, objectives, 15)
            assert set(both.failures) == {"HTTP 503"}, both.failures  # every failure is an answer the server counted
            assert both.burn_rate > page
            _settled(prom_url, len(met) + len(flood))
            [row] = slo(Prometheus(prom_url), MODEL).rows
            for w in conventions.SLI_WINDOWS:
                assert row[f"burn_{w}"] == pytest.approx(both.burn_rate, abs=0.01), (w, row, both)
            assert row["status"] == "page" and "ModelErrorBudgetBurnFast" in row["alerts"]
            assert "ModelErrorBudgetBurnFast" in _alerts(prom_url)  # pending: its `for` is 2 minutes
            # Latency: the server times a request from when it reads it, the load test from its scheduled send,
            # so the server's share of slow answers is never above the load test's (time in the client and the
            # kernel's accept queue is the load test's alone).
            client_burn = (1 - both.within) / (1 - objectives.share)
            print(
                f"burn: load test {both.burn_rate:.2f}, Prometheus {row['burn_5m']}; latency burn: load test "
                f"{client_burn:.2f}, Prometheus {row['latency_burn_5m']}; status {row['status']}"
            )
            assert row["latency_burn_5m"] <= client_burn + 0.01, (row, both)
