"""The front's HTTP layer: uvicorn's own httptools protocol (the pinned version), with each response
sent in one write and the keep-alive timer armed once per idle period (front._protocol). The first
tests drive the real protocol class in process with a transport that records every write; the last
ones talk to a real server over loopback TCP."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import RecordingTransport, start, stop, turns


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers the request body, after reading it (which is when uvicorn sends 100 Continue)."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def connection(keep_alive: int = 5) -> tuple[asyncio.Protocol, RecordingTransport]:
    import uvicorn
    from modelyard_server.front import _protocol
    from uvicorn.server import ServerState

    config = uvicorn.Config(echo, http=_protocol(), lifespan="off", log_config=None, timeout_keep_alive=keep_alive)
    protocol = _protocol()(config, ServerState(), {})  # type: ignore[call-arg]
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


def request(body: bytes, *extra: bytes) -> bytes:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
    return head + b"".join(h + b"\r\n" for h in extra) + b"\r\n"


def test_a_response_is_sent_in_one_write() -> None:
    async def scenario() -> None:
        protocol, transport = connection()
        protocol.data_received(request(b"hello") + b"hello")
        await turns()
        assert len(transport.writes) == 1, transport.writes
        assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and transport.writes[0].endswith(b"\r\n\r\nhello")
        protocol.data_received(request(b"again") + b"again")  # the same connection, kept alive
        await turns()
        assert len(transport.writes) == 2 and transport.writes[1].endswith(b"again")
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_100_continue_is_not_held_back_until_the_response() -> None:
    async def scenario() -> None:
        protocol, transport = connection()
        protocol.data_received(request(b"body", b"Expect: 100-continue"))
        await turns()
        assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # the client may now send its body
        protocol.data_received(b"body")
        await turns()
        assert len(transport.writes) == 2 and transport.writes[1].endswith(b"\r\n\r\nbody")
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_a_bad_request_is_answered_before_the_connection_closes() -> None:
    async def scenario() -> None:
        protocol, transport = connection()
        protocol.data_received(b"NOT HTTP AT ALL\r\n\r\n")
        await turns()
        assert transport.closed and transport.writes and transport.writes[0].startswith(b"HTTP/1.1 400")

    asyncio.run(scenario())


def _post(sock: socket.socket) -> bytes:
    body = b'{"instances": ["a text"]}'
    sock.sendall(b"POST /v1/models/minilm:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        data += chunk
    return data


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    raise AssertionError(data)


@pytest.mark.parametrize("timeout", [1])
def test_idle_connections_close_after_the_keep_alive_timeout_busy_ones_stay(tmp_path: Path, timeout: int) -> None:
    server = start(tmp_path, "--constant_encoder", "--workers", "1", "--keep_alive_timeout", str(timeout))
    try:
        busy = socket.create_connection(("127.0.0.1", server.port))
        idle = socket.create_connection(("127.0.0.1", server.port))
        for sock in (busy, idle):
            assert _post(sock).startswith(b"HTTP/1.1 200 OK")
            assert b"server:" not in _post(sock).lower()  # no software named in the headers
        started = time.monotonic()
        while time.monotonic() - started < 2.5 * timeout:  # a request every 0.2 s: never idle long enough
            assert _post(busy).startswith(b"HTTP/1.1 200 OK")
            time.sleep(0.2)
        idle.settimeout(5)
        assert idle.recv(1) == b"", "the idle connection is closed by the server"
        assert _post(busy).startswith(b"HTTP/1.1 200 OK")
        busy.close()
        idle.close()
    finally:
        assert stop(server) == 0
