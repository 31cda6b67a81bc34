"""The gateway's answers counted from its access log: who called which model, who answered, and with what.

    python -m modelyard_server.gateway_log [--port 4317] [--metrics_port 9464]

Envoy's statistics cannot say this: the gateway's own refusals (401 no or a bad key, 403 a team the model does not
admit, 429 over the team's rate, 503 past the breaker) are answered before any route statistic counts, and a
fallback answers inside the same cluster as the model's own replicas. So the proxies send every request's access
log record here (Envoy Gateway's OpenTelemetry access-log sink: OTLP/gRPC, `LogsService/Export`, one record per
request, each attribute a string, `-` where Envoy has no value), with the attributes the platform's EnvoyProxy sets
(platform/gateway.py, ACCESS_LOG_ATTRIBUTES): `route` (%ROUTE_NAME%,
`httproute/<namespace>/<model>/rule/<i>/match/<j>/<host>`),
`status` (%RESPONSE_CODE%), `client` (the client id the gateway set after authenticating the caller, `<team>.<name>`
or a JWT's team), `upstream` (%UPSTREAM_HOST%: `-` when the gateway answered itself) and `upstream_tls`
(%UPSTREAM_TLS_VERSION%: only a fallback, another region's gateway, is reached over TLS).

Series on `--metrics_port` (`GET /metrics`):
- `modelyard_gateway_responses_total{model, code, team, answered_by}`: `answered_by` is `model` (its own replicas),
  `fallback`, or `gateway` (a refusal or an error of the gateway's own); `team` is `none` for a caller with no valid
  credential, `invalid` for a client id that names no team, `other` past MAX_TEAMS teams; `model` is `none` for a
  request that matched no route, `other` past MAX_MODELS;
- `modelyard_gateway_log_records_total{outcome}`: `counted`, or `refused` for a record without the attributes above
  (each refused record is also named in the export's partial success, so the sender can see why).
Memory is bounded by those caps: nothing else is kept.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from collections.abc import Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, start_http_server

log = logging.getLogger("modelyard_server.gateway_log")

#: The attributes each record must carry (platform/gateway.py ACCESS_LOG_ATTRIBUTES names the same keys).
ATTRIBUTES = ("route", "status", "client", "upstream", "upstream_tls")
#: What Envoy writes for a value it does not have (its OpenTelemetry formatter's DefaultUnspecifiedValueString).
UNSET = "-"
MAX_MODELS = 256
MAX_TEAMS = 64
#: A route name as Envoy Gateway v1.9.0 makes it (internal/gatewayapi/helpers.go, irRouteName; route.go appends
#: the host with its dots as underscores): `httproute/<namespace>/<name>/rule/<i>/match/<j>/<host>`.
_ROUTE = re.compile(r"^httproute/(?P<namespace>[a-z0-9-]+)/(?P<name>[a-z0-9-]+)/rule/")
_TEAM = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Answer:
    model: str
    code: str
    team: str
    answered_by: str


def _team(client: str) -> str:
    if client == UNSET or not client:
        return "none"
    team = client.split(".", 1)[0]
    return team if _TEAM.match(team) else "invalid"


def _code(status: str) -> str:
    """An HTTP status as Envoy logs it; `0` when no answer was sent (the caller went away first)."""
    return status if status.isdigit() and (status == "0" or 100 <= int(status) <= 599) else "unknown"


def classify(attributes: Mapping[str, str]) -> Answer | None:
    """One record's labels, or None when it lacks the attributes the platform configures."""
    if any(key not in attributes for key in ATTRIBUTES):
        return None
    route = _ROUTE.match(attributes["route"])
    model = route.group("name") if route else "none"
    if attributes["upstream"] == UNSET:
        answered_by = "gateway"
    elif attributes["upstream_tls"] != UNSET:
        answered_by = "fallback"
    else:
        answered_by = "model"
    return Answer(model, _code(attributes["status"]), _team(attributes["client"]), answered_by)


def string_attributes(values: Iterable[common_pb2.KeyValue]) -> dict[str, str]:
    """A record's string attributes (Envoy sends every attribute of a format string as a string)."""
    return {kv.key: kv.value.string_value for kv in values if kv.value.WhichOneof("value") == "string_value"}


class Tally:
    """The counters, with their label sets bounded."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.responses = Counter(
            "modelyard_gateway_responses",
            "Requests the gateway answered, by model, status, calling team and who answered",
            ["model", "code", "team", "answered_by"],
            registry=registry,
        )
        self.records = Counter(
            "modelyard_gateway_log_records", "Access log records received, by outcome", ["outcome"], registry=registry
        )
        self._models: set[str] = set()
        self._teams: set[str] = set()
        self._lock = threading.Lock()

    def _bounded(self, seen: set[str], value: str, cap: int, reserved: tuple[str, ...]) -> str:
        if value in reserved or value in seen:
            return value
        if len(seen) >= cap:
            return "other"
        seen.add(value)
        return value

    def count(self, answer: Answer) -> None:
        with self._lock:
            model = self._bounded(self._models, answer.model, MAX_MODELS, ("none",))
            team = self._bounded(self._teams, answer.team, MAX_TEAMS, ("none", "invalid"))
        self.responses.labels(model, answer.code, team, answer.answered_by).inc()
        self.records.labels("counted").inc()

    def refuse(self) -> None:
        self.records.labels("refused").inc()


class LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    """OTLP's logs service: every record counted, or refused in the answer's partial success."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def Export(
        self, request: logs_service_pb2.ExportLogsServiceRequest, context: Any
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        refused = 0
        for resource_logs in request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    answer = classify(string_attributes(record.attributes))
                    if answer is None:
                        refused += 1
                        self.tally.refuse()
                    else:
                        self.tally.count(answer)
        response = logs_service_pb2.ExportLogsServiceResponse()
        if refused:
            response.partial_success.rejected_log_records = refused
            response.partial_success.error_message = (
                f"{refused} record(s) without the attributes {', '.join(ATTRIBUTES)}: "
                "the EnvoyProxy's access log format sets them (platform/gateway.py)"
            )
        return response


def serve(host: str, port: int, tally: Tally, workers: int = 4) -> grpc.Server:
    """The OTLP/gRPC server on `host:port`, started."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlp"))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(LogsService(tally), server)
    if not server.add_insecure_port(f"{host}:{port}"):
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    return server


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number (got {text!r})") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535 (got {value})")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m modelyard_server.gateway_log", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=_port, default=4317, help="OTLP/gRPC (default 4317)")
    parser.add_argument("--metrics_port", type=_port, default=9464, help="GET /metrics (default 9464)")
    args = parser.parse_args(argv)
    if args.port == args.metrics_port:
        parser.error(f"argument --metrics_port: must differ from --port (both {args.port})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    disable_created_metrics()
    registry = CollectorRegistry()
    tally = Tally(registry)
    try:
        start_http_server(args.metrics_port, addr=args.host, registry=registry)
        server = serve(args.host, args.port, tally)
    except (OSError, RuntimeError) as exc:
        where = f"{args.host}, ports {args.port} and {args.metrics_port}"
        print(f"gateway_log: cannot listen ({where}): {exc}", file=sys.stderr)
        return 1
    log.info("gateway log counter: OTLP/gRPC on %s:%d, metrics on %d", args.host, args.port, args.metrics_port)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    server.stop(grace=5).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
