"""A real server process on a loopback port, shared by the HTTP tests (start-up loads the model once), and
a transport that records what the front's protocol writes, for driving it in process."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from modelyard_server.tokenizer import bundled_model_dir

SERVING = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def spawn(tmp: Path, *args: str) -> RunningServer:
    """The server process, started and not waited for."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard_server", "--http_port", str(port), "--host", "127.0.0.1", *args],
        cwd=SERVING,
        env={**os.environ, "PYTHONPATH": str(SERVING)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return RunningServer(proc, port, log)


def start(tmp: Path, *args: str) -> RunningServer:
    """The server process, once it answers ready."""
    server = spawn(tmp, *args)
    proc, port, log = server.proc, server.port, server.log
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not become ready in 180 s")


def metrics_with(server: RunningServer, *lines: str, timeout: float = 3.0) -> str:
    """/metrics once it shows every one of `lines`: each process writes its series at most every 50 ms,
    and the scrape may reach a front other than the one that answered."""
    deadline = time.time() + timeout
    while True:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        if all(line in text for line in lines) or time.time() > deadline:
            return text
        time.sleep(0.05)


def metrics_counting(server: RunningServer, series: str, at_least: float, timeout: float = 3.0) -> str:
    """/metrics once `series` (a name with its labels, as rendered) counts at least `at_least`: for a series
    the server exports at 0 from the start, where waiting for the line to appear waits for nothing."""
    deadline = time.time() + timeout
    while True:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series + " ")]
        if (values and values[0] >= at_least) or time.time() > deadline:
            return text
        time.sleep(0.05)


def stop(server: RunningServer) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    return server.proc.wait(timeout=60)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start(tmp_path_factory.mktemp("srv"), "--max_inputs", "8", "--max_chars", "500")
    yield running
    stop(running)


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def pushed(tmp: Path, model: str = "minilm", extra: dict[str, bytes] | None = None) -> Path:
    """The bundled model as the storage initializer leaves a pushed version: its files (and `extra` files, by
    name) and manifest.json in the layout `modelyard model push` writes (modelyard/model_push.py)."""
    target = tmp / "models"
    shutil.copytree(bundled_model_dir(), target)
    for name, data in (extra or {}).items():
        (target / name).write_bytes(data)
    files: list[dict[str, object]] = []
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        data = path.read_bytes()
        files.append(
            {"path": path.relative_to(target).as_posix(), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )
    total = sum(path.stat().st_size for path in target.rglob("*") if path.is_file())
    manifest = {"model": model, "version": "1", "files": files, "totalBytes": total}
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return target


def sign(model_dir: Path, key: ec.EllipticCurvePrivateKey) -> str:
    """Write manifest.sig as `modelyard model push` does (KMS's ECDSA_SHA_256 of the manifest's digest: a DER
    signature, base64), signed with `key`; return the public half as --manifest_public_key takes it."""
    digest = hashlib.sha256((model_dir / "manifest.json").read_bytes()).digest()
    signature = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    document = {
        "keyId": "arn:aws:kms:us-east-1:123456789012:key/test",
        "algorithm": "ECDSA_SHA_256",
        "manifestSha256": digest.hex(),
        "signature": base64.b64encode(signature).decode(),
    }
    (model_dir / "manifest.sig").write_text(json.dumps(document, indent=2))
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def call(
    app: Any, method: str, path: str, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, Any]:
    """One request to an ASGI app, in process: its status and its JSON body (bytes when the body is not JSON)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
    asyncio.run(app(scope, receive, send))
    data = sent[1]["body"]
    return sent[0]["status"], orjson.loads(data) if data.startswith(b"{") else data
