"""The gateway log counter (gateway_log.py) as the proxies reach it: OTLP/gRPC export requests built the way Envoy's
OpenTelemetry access logger builds them, over a real gRPC channel, to the real process; its counts read back from
its real /metrics.

Envoy's side, read from its source (envoyproxy/envoy, source/extensions/access_loggers/open_telemetry/:
substitution_formatter.cc, each attribute's format string rendered to a string, `-` for a value it does not have;
grpc_access_log_impl.cc, the records batched into one ResourceLogs per logger with one ScopeLogs) and Envoy Gateway
v1.9.0's (internal/xds/translator/accesslog.go: the EnvoyProxy's JSON format fields become the record's attributes;
internal/gatewayapi/route.go, the xDS route name `<irRouteName>/<host with dots as underscores>`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from conftest import SERVING, free_port
from modelyard_server import gateway_log
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

ROUTE = "httproute/models/{model}/rule/0/match/0/{model}_models_dev_modelyard_internal"


def record(**attrs: str) -> logs_pb2.LogRecord:
    values = [common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v)) for k, v in attrs.items()]
    return logs_pb2.LogRecord(time_unix_nano=time.time_ns(), attributes=values)


def access(model: str, status: str, client: str, upstream: str = "10.0.3.7:80", tls: str = "-") -> logs_pb2.LogRecord:
    return record(route=ROUTE.format(model=model), status=status, client=client, upstream=upstream, upstream_tls=tls)


def export(*records: logs_pb2.LogRecord) -> logs_service_pb2.ExportLogsServiceRequest:
    """One export as Envoy's gRPC access logger sends it: its node and log name as resource attributes."""
    resource = resource_pb2.Resource(
        attributes=[
            common_pb2.KeyValue(key="log_name", value=common_pb2.AnyValue(string_value="otel_envoy_accesslog")),
            common_pb2.KeyValue(key="node_name", value=common_pb2.AnyValue(string_value="envoy-models-abc")),
        ]
    )
    scope = logs_pb2.ScopeLogs(log_records=list(records))
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[logs_pb2.ResourceLogs(resource=resource, scope_logs=[scope])]
    )


def counts(text: str) -> dict[tuple[str, ...], float]:
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "modelyard_gateway_responses":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                found[(labels["model"], labels["code"], labels["team"], labels["answered_by"])] = sample.value
    return found


@pytest.fixture
def counter(tmp_path: Path) -> Iterator[tuple[int, int]]:
    port, metrics = free_port(), free_port()
    log = tmp_path / "gateway-log.log"
    argv = ["--host", "127.0.0.1", "--port", str(port), "--metrics_port", str(metrics)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard_server.gateway_log", *argv],
        cwd=SERVING,
        env={**os.environ, "PYTHONPATH": str(SERVING)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=1)
                break
            except httpx.HTTPError:
                assert time.time() < deadline, log.read_text()
                time.sleep(0.1)
        yield port, metrics
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0, log.read_text()


def test_each_answer_is_counted_by_model_code_team_and_who_answered(counter: tuple[int, int]) -> None:
    port, metrics = counter
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        answer = stub.Export(
            export(
                access("minilm", "200", "search.indexer"),
                access("minilm", "200", "search.indexer"),
                access("minilm", "401", "-", upstream="-"),
                access("minilm", "403", "billing.batch", upstream="-"),
                access("minilm", "429", "search.indexer", upstream="-"),
                access("qwen-chat", "200", "assistants", upstream="10.80.1.5:443", tls="TLSv1.3"),
                access("qwen-chat", "200", "assistants"),
                # No route matched (Envoy Gateway's listener log of an NR request).
                record(route="-", status="404", client="-", upstream="-", upstream_tls="-"),
            ),
            timeout=5,
        )
    assert not answer.HasField("partial_success")
    got = counts(httpx.get(f"http://127.0.0.1:{metrics}/metrics").text)
    assert got == {
        ("minilm", "200", "search", "model"): 2,
        ("minilm", "401", "none", "gateway"): 1,
        ("minilm", "403", "billing", "gateway"): 1,
        ("minilm", "429", "search", "gateway"): 1,
        ("qwen-chat", "200", "assistants", "fallback"): 1,
        ("qwen-chat", "200", "assistants", "model"): 1,
        ("none", "404", "none", "gateway"): 1,
    }


def test_a_record_without_the_attributes_is_refused_by_name_and_counted(counter: tuple[int, int]) -> None:
    port, metrics = counter
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            export(record(route=ROUTE.format(model="minilm"), status="200"), access("minilm", "200", "search.a")),
            timeout=5,
        )
    assert answer.partial_success.rejected_log_records == 1
    assert "route, status, client, upstream, upstream_tls" in answer.partial_success.error_message
    text = httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
    assert 'modelyard_gateway_log_records_total{outcome="refused"} 1.0' in text
    assert counts(text) == {("minilm", "200", "search", "model"): 1}


def test_labels_stay_bounded() -> None:
    """Teams past MAX_TEAMS and models past MAX_MODELS are counted as `other`; nonsense stays a few values."""
    registry = CollectorRegistry()
    tally = gateway_log.Tally(registry)
    for i in range(gateway_log.MAX_TEAMS + 10):
        tally.count(gateway_log.Answer("minilm", "200", f"team{i}", "model"))
    for i in range(gateway_log.MAX_MODELS + 10):
        tally.count(gateway_log.Answer(f"m{i}", "200", "none", "model"))
    got = counts(generate_latest(registry).decode())
    teams = {labels[2] for labels in got}
    models = {labels[0] for labels in got}
    assert len(teams) == gateway_log.MAX_TEAMS + 2 and {"other", "none"} <= teams
    assert len(models) == gateway_log.MAX_MODELS + 1 and "other" in models
    assert gateway_log.classify(
        {"route": "junk", "status": "999", "client": "Bad Team.x", "upstream": "-", "upstream_tls": "-"}
    ) == gateway_log.Answer("none", "unknown", "invalid", "gateway")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "x"], "argument --port: must be a port number (got 'x')"),
        (["--port", "70000"], "argument --port: must be between 1 and 65535 (got 70000)"),
        (["--port", "9000", "--metrics_port", "9000"], "argument --metrics_port: must differ from --port (both 9000)"),
    ],
)
def test_bad_arguments_are_named(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        gateway_log.parse_args(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_a_port_in_use_is_one_line_and_exit_1(counter: tuple[int, int]) -> None:
    """A second counter on the first one's ports: no traceback, the ports named."""
    port, metrics = counter
    argv = ["--host", "127.0.0.1", "--port", str(port), "--metrics_port", str(metrics)]
    done = subprocess.run(
        [sys.executable, "-m", "modelyard_server.gateway_log", *argv],
        cwd=SERVING,
        env={**os.environ, "PYTHONPATH": str(SERVING)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"gateway_log: cannot listen (127.0.0.1, ports {port} and {metrics})" in done.stderr
