"""The front's guard (front._protocol): a read deadline for each request's headers and body, counted from
the connection's opening, and a cap on connections per front. Real sockets against a real server for
the four ways a client can hold a front (a silent connection, a header sent a byte a second, a body
trickled, 1,000 idle sockets); the cap's choice between evicting and refusing driven in process through
the real protocol class, where a request can be held busy at will."""

from __future__ import annotations

import asyncio
import json
import resource
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from conftest import RecordingTransport, RunningServer, metrics_with, start, stop, turns

READ_TIMEOUT = 2.0
CAP = 64
#: How late past its deadline a connection may be closed (the timer's own lateness on a busy machine).
SLACK = 1.5


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start(
        tmp_path_factory.mktemp("guard"),
        "--constant_encoder",
        "--workers",
        "1",
        "--read_timeout",
        str(READ_TIMEOUT),
        "--max_connections",
        str(CAP),
    )
    yield server
    assert stop(server) == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


def front(server: RunningServer) -> psutil.Process:
    (only,) = [c for c in psutil.Process(server.proc.pid).children() if c.name() == "http-front-0"]
    return only


def until_closed(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def response(data: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def trickle(sock: socket.socket, data: bytes, every: float) -> tuple[bytes, int]:
    """Sends `data` a byte at a time, `every` seconds apart, until the server answers or closes; returns
    what it sent back (read to the end) and how many bytes were left unsent."""
    for i in range(len(data)):
        try:
            sock.sendall(data[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return until_closed(sock), len(data) - i
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            return until_closed(sock), len(data) - i - 1
    return until_closed(sock), 0


def test_a_silent_connection_gets_408_and_is_closed_at_its_deadline(guarded: RunningServer) -> None:
    opened = time.monotonic()
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        data = until_closed(sock)
    took = time.monotonic() - opened
    assert READ_TIMEOUT - 0.1 <= took <= READ_TIMEOUT + SLACK, took
    status, headers, body = response(data)
    assert status == 408 and headers["connection"] == "close"
    assert f"within {READ_TIMEOUT:g} s" in body["error"]


def test_a_header_sent_a_byte_a_second_is_cut_off_at_the_deadline(guarded: RunningServer) -> None:
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    opened = time.monotonic()
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        data, unsent = trickle(sock, request, every=1.0)
    took = time.monotonic() - opened
    assert unsent > 0, "the whole header went out: the test proves nothing"
    assert READ_TIMEOUT - 0.1 <= took <= READ_TIMEOUT + SLACK, took
    assert response(data)[0] == 408


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/embeddings", {"model": "minilm", "input": ["a text that arrives too slowly"]}),
        ("/v1/models/minilm:predict", {"instances": ["a text that arrives too slowly"]}),
    ],
    ids=["openai", "v1"],
)
def test_a_trickled_body_gets_408_in_its_protocols_error_shape(
    guarded: RunningServer, path: str, payload: dict[str, Any]
) -> None:
    body = json.dumps(payload).encode()
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    opened = time.monotonic()
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(head % (path.encode(), len(body)))
        data, unsent = trickle(sock, body, every=0.2)
    took = time.monotonic() - opened
    assert unsent > 0 and READ_TIMEOUT - 0.1 <= took <= READ_TIMEOUT + SLACK, (unsent, took)
    status, headers, answer = response(data)
    assert status == 408 and headers["connection"] == "close"
    protocol = "openai" if path == "/v1/embeddings" else "v1"
    if protocol == "openai":  # OpenAI's error object
        error = answer["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "timeout", error
        assert f"within {READ_TIMEOUT:g} s" in error["message"]
    else:  # KServe's
        assert f"within {READ_TIMEOUT:g} s" in answer["error"]
    counted = f'modelyard_requests_total{{code="408",model_name="minilm",protocol="{protocol}"}}'
    assert counted in metrics_with(guarded, counted)


def test_a_later_requests_deadline_counts_from_its_own_first_byte(guarded: RunningServer) -> None:
    """Idle time between requests is the keep-alive timeout's, not the read deadline's: a request sent
    in 1.2 s after 1.5 s of quiet is answered, although it is complete 2.7 s after the connection opened."""
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(request)
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        time.sleep(1.5)
        for i in range(len(request)):
            sock.sendall(request[i : i + 1])
            time.sleep(1.2 / len(request))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_a_thousand_idle_sockets_hold_at_most_the_cap_and_lock_no_client_out(guarded: RunningServer) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    process = front(guarded)
    httpx.get(f"{guarded.url}/v2/health/live", timeout=5)
    time.sleep(0.3)  # that connection closed
    before = process.num_fds()
    opened = time.monotonic()
    idle = [socket.create_connection(("127.0.0.1", guarded.port)) for _ in range(1000)]
    try:
        time.sleep(0.3)  # accepted
        held = process.num_fds() - before
        assert held <= CAP + 2, f"the front holds {held} descriptors for 1,000 idle sockets; its cap is {CAP}"
        # A client with something to say is served while the idle sockets are still open.
        assert (
            httpx.post(
                f"{guarded.url}/v1/models/minilm:predict", json={"instances": ["still served"]}, timeout=5
            ).status_code
            == 200
        )
        assert time.monotonic() - opened < READ_TIMEOUT, "too slow to show anything before the deadline"
        for sock in idle:  # evicted, or closed at their deadline with a 408
            data = until_closed(sock, timeout=READ_TIMEOUT + SLACK + 5)
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:80]
        assert time.monotonic() - opened <= READ_TIMEOUT + SLACK + 1
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    time.sleep(0.5)
    assert process.num_fds() <= before + 1
    text = metrics_with(guarded, 'reason="evicted"')
    evicted = [line for line in text.splitlines() if line.startswith("modelyard_closed_connections_total")]
    counts = {line.split('reason="')[1].split('"')[0]: float(line.split()[-1]) for line in evicted}
    assert counts.get("evicted", 0) >= 1000 - CAP, counts
    assert counts.get("read_timeout", 0) >= 1, counts


# -- the cap's choice, in process


class Front:
    """One front's connections, through the real protocol class, with an app that answers a request only
    once `release` is set: a connection can be held busy at will."""

    def __init__(self, cap: int):
        import uvicorn
        from modelyard_server.front import Guard, _protocol
        from uvicorn.server import ServerState

        self.release = asyncio.Event()
        self.closed: list[str] = []
        self.protocol_class = _protocol(Guard(read_timeout=60, max_connections=cap), self.closed.append)
        self.config = uvicorn.Config(
            self.app, http=self.protocol_class, interface="asgi3", lifespan="off", log_config=None
        )
        self.state = ServerState()

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def connect(self) -> tuple[Any, RecordingTransport]:
        protocol = self.protocol_class(self.config, self.state, {})  # type: ignore[call-arg]
        transport = RecordingTransport()
        protocol.connection_made(transport)
        return protocol, transport


REQUEST = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"


def test_beyond_the_cap_the_quietest_idle_connection_goes_and_busy_ones_stay() -> None:
    async def scenario() -> None:
        front = Front(cap=3)
        busy, busy_t = front.connect()
        busy.data_received(REQUEST)  # being answered
        _, older_t = front.connect()  # silent
        await asyncio.sleep(0.01)
        _, newer_t = front.connect()  # silent, opened later
        await turns()
        assert front.closed == []
        _, newest_t = front.connect()  # the fourth, beyond the cap
        assert front.closed == ["evicted"] and older_t.closed
        assert not (busy_t.closed or newer_t.closed or newest_t.closed) and not newest_t.writes
        front.release.set()
        await turns()
        assert busy_t.writes and busy_t.writes[0].startswith(b"HTTP/1.1 200 OK")

    asyncio.run(scenario())


def test_beyond_the_cap_with_every_connection_busy_the_new_one_gets_503() -> None:
    async def scenario() -> None:
        front = Front(cap=1)
        busy, busy_t = front.connect()
        busy.data_received(REQUEST)
        await turns()
        _, extra_t = front.connect()
        assert extra_t.closed and not busy_t.closed and front.closed == ["refused"]
        status, headers, body = response(extra_t.writes[0])
        assert status == 503 and headers["retry-after"] == "1" and "at most 1 connections" in body["error"]
        front.release.set()
        await turns()
        assert busy_t.writes[0].startswith(b"HTTP/1.1 200 OK")

    asyncio.run(scenario())
