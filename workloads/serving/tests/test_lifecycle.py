"""Overload, drain on SIGTERM, and the contract with the platform (metric names, latency buckets)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SERVING, RunningServer, metrics_with, spawn, start, stop
from modelyard_server.front import PROTOCOLS, SLI_STATUSES

REPO = SERVING.parent.parent


async def burst(url: str, n: int, texts_each: int = 8) -> list[httpx.Response | Exception]:
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=n)) as client:

        async def one(i: int) -> httpx.Response | Exception:
            try:
                return await client.post(
                    f"{url}/v1/models/minilm:predict", json={"instances": [f"text {i} {j}" for j in range(texts_each)]}
                )
            except httpx.HTTPError as exc:
                return exc

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_overload_is_503_with_retry_after_and_everything_accepted_is_answered(tmp_path: Path) -> None:
    server = start(tmp_path, "--max_queue", "16", "--max_batch_size", "8", "--max_inputs", "8", "--workers", "1")
    try:
        # Before any request every answer the availability SLI reads is exported at 0, so Prometheus counts
        # the first 503 as an increase instead of first seeing the series at some count.
        fresh = httpx.get(f"{server.url}/metrics", timeout=10).text
        for protocol in PROTOCOLS:
            for status in SLI_STATUSES:
                zero = f'modelyard_requests_total{{code="{status}",model_name="minilm",protocol="{protocol}"}} 0.0'
                assert zero in fresh, zero
        results = asyncio.run(burst(server.url, 40))
        codes = [r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in results]
        assert set(codes) <= {200, 503}, codes  # nothing else: no 500, no dropped connection
        assert codes.count(200) >= 2 and codes.count(503) >= 1, codes
        for r in results:
            assert isinstance(r, httpx.Response)
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1" and "queue full" in r.json()["error"]
            else:
                assert len(r.json()["predictions"]) == 8
        line = 'modelyard_rejected_requests_total{model_name="minilm",reason="queue_full"}'
        assert line in metrics_with(server, line)
    finally:
        assert stop(server) == 0


def test_sigterm_drains_in_flight_requests_and_exits_0(tmp_path: Path) -> None:
    server = start(tmp_path, "--max_batch_size", "4")

    async def scenario() -> tuple[list[httpx.Response | Exception], float]:
        task = asyncio.create_task(burst(server.url, 12, texts_each=16))
        # Wait until the server holds work: requests queued or a batch running.
        deadline = time.time() + 30
        async with httpx.AsyncClient(timeout=5) as client:
            while time.time() < deadline:
                metrics = (await client.get(f"{server.url}/metrics")).text
                if 'modelyard_queue_depth{model_name="minilm"} 0.0' not in metrics:
                    break
                await asyncio.sleep(0.01)
        sent = time.time()
        server.proc.send_signal(signal.SIGTERM)
        return await task, sent

    results, _ = asyncio.run(scenario())
    code = server.proc.wait(timeout=60)
    assert code == 0, server.log.read_text()[-2000:]
    answered = [r for r in results if isinstance(r, httpx.Response)]
    # Whatever was in flight when the signal came is answered; nothing gets a 5xx other than 503.
    assert all(r.status_code in (200, 503) for r in answered), [r.status_code for r in answered]
    assert sum(r.status_code == 200 for r in answered) >= 1
    log = server.log.read_text()
    assert "draining" in log and "drained, exiting" in log


@pytest.mark.parametrize("children", [2, 3, 4, 5])
def test_sigterm_while_the_server_starts_stops_it_with_0(tmp_path: Path, children: int) -> None:
    """The kubelet may stop a pod at any moment, start-up included: a SIGTERM sent as soon as the
    supervisor has `children` child processes (multiprocessing's resource tracker, then the model owner,
    then three fronts) ends the server, every process, with status 0.
    Before the supervisor held the signal back while it forked, a front that got it before its own
    handler was set lost it, and the server never exited."""
    import psutil

    server = spawn(tmp_path, "--workers", "3", "--constant_encoder")
    proc, log = server.proc, server.log
    supervisor = psutil.Process(proc.pid)
    deadline = time.time() + 60
    while len(supervisor.children()) < children and proc.poll() is None and time.time() < deadline:
        pass
    everyone = supervisor.children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        for p in [supervisor, *supervisor.children(recursive=True)]:
            p.kill()
        raise AssertionError(f"still running 30 s after SIGTERM:\n{log.read_text()[-2000:]}") from None
    assert code == 0, log.read_text()[-2000:]
    _, alive = psutil.wait_procs(everyone, timeout=10)  # multiprocessing's resource tracker ends on its own
    assert not alive


#: The server a queue can be built up in: one front, one pass at a time of two texts.
ONE_PASS_OF_TWO = ("--workers", "1", "--model_instances", "1", "--max_batch_size", "2", "--max_inputs", "128")


def keep_the_model_busy(server: RunningServer) -> tuple[threading.Thread, list[tuple[httpx.Response, float]]]:
    """128 texts of 256 tokens (64 passes of two) sent from a thread; returns once at least 8 of them wait
    in the queue, with the thread and where its (answer, seconds) will be."""
    long_texts = [f"{i} " + "word " * 300 for i in range(128)]
    answer: list[tuple[httpx.Response, float]] = []

    def post() -> None:
        sent = time.monotonic()
        r = httpx.post(f"{server.url}/v1/models/minilm:predict", json={"instances": long_texts}, timeout=120)
        answer.append((r, time.monotonic() - sent))

    thread = threading.Thread(target=post)
    thread.start()
    queued = 'modelyard_queue_depth{model_name="minilm"}'
    deadline = time.time() + 30
    while time.time() < deadline and not any(
        line.startswith(queued) and float(line.split()[-1]) >= 8 for line in metrics_with(server).splitlines()
    ):
        time.sleep(0.05)
    return thread, answer


def test_a_request_whose_client_went_away_is_not_computed(tmp_path: Path) -> None:
    """A client that gives up (a timeout, a retry) while its request waits behind others: its texts are
    dropped from the queue instead of taking the model's time, it is counted as 499, and the requests
    around it are answered."""
    import json
    import socket

    server = start(tmp_path, *ONE_PASS_OF_TWO)
    try:
        thread, blocker = keep_the_model_busy(server)
        body = json.dumps({"instances": ["given up on", "three texts", "never computed"]}).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                b"POST /v1/models/minilm:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.1)  # the request is read and queued behind the long texts
        thread.join(timeout=120)
        assert blocker[0][0].status_code == 200 and len(blocker[0][0].json()["predictions"]) == 128
        after = httpx.post(f"{server.url}/v1/models/minilm:predict", json={"instances": ["one more"]}, timeout=30)
        assert after.status_code == 200
        gone = 'modelyard_requests_total{code="499",model_name="minilm",protocol="v1"} 1.0'
        computed = 'modelyard_batch_size_sum{model_name="minilm"} 129.0'  # 128 + 1, not + 3
        metrics = metrics_with(server, gone, computed)
        assert gone in metrics and computed in metrics, [
            line for line in metrics.splitlines() if "batch_size_sum" in line or "requests_total" in line
        ]
        assert "Traceback" not in server.log.read_text() and "Exception in ASGI" not in server.log.read_text()
    finally:
        assert stop(server) == 0


def test_a_request_past_its_own_deadline_is_answered_504_and_its_texts_dropped(tmp_path: Path) -> None:
    """A request that gives the answer a deadline (x-request-timeout, or the OpenAI client's
    x-stainless-read-timeout) and waits behind others past it: 504 at the deadline, its queued texts
    never computed; a request with a deadline it can meet is answered."""
    server = start(tmp_path, *ONE_PASS_OF_TWO)
    try:
        answers: dict[str, tuple[httpx.Response, float]] = {}

        def post(name: str, path: str, payload: dict[str, Any], headers: dict[str, str]) -> None:
            sent = time.monotonic()
            r = httpx.post(f"{server.url}{path}", json=payload, headers=headers, timeout=120)
            answers[name] = (r, time.monotonic() - sent)

        v1 = "/v1/models/minilm:predict"
        stainless = "x-stainless-read-timeout"  # what the OpenAI Python client sends
        blocker, blocked = keep_the_model_busy(server)
        late = [
            ("v1", v1, {"instances": ["three texts", "given up", "at 0.3 s"]}, {"x-request-timeout": "0.3"}),
            ("openai", "/v1/embeddings", {"model": "minilm", "input": ["two", "texts"]}, {stainless: ".5"}),
            ("patient", v1, {"instances": ["answered"]}, {"x-request-timeout": "120"}),
        ]
        threads = [threading.Thread(target=post, args=case) for case in late]
        for t in [*threads]:
            t.start()
        for t in [blocker, *threads]:
            t.join(timeout=120)
        answers["blocker"] = blocked[0]
        assert answers["blocker"][0].status_code == 200 and len(answers["blocker"][0].json()["predictions"]) == 128
        for name, limit in (("v1", 0.3), ("openai", 0.5)):
            r, took = answers[name]
            assert r.status_code == 504, (name, r.text)
            assert limit <= took < limit + 1.5, (name, took, answers["blocker"][1])
            assert took < answers["blocker"][1], "answered only once the blocker was"
        assert answers["openai"][0].json()["error"]["code"] == "timeout"
        assert f"({0.3:g} s)" in answers["v1"][0].json()["error"]
        assert answers["patient"][0].status_code == 200
        computed = 'modelyard_batch_size_sum{model_name="minilm"} 129.0'  # 128 + the patient one, not + 5
        expired = 'modelyard_rejected_requests_total{model_name="minilm",reason="deadline"} 2.0'
        metrics = metrics_with(server, computed, expired)
        assert computed in metrics and expired in metrics, [
            line for line in metrics.splitlines() if "batch_size_sum" in line or "rejected" in line
        ]
        assert "Traceback" not in server.log.read_text() and "Exception in ASGI" not in server.log.read_text()
    finally:
        assert stop(server) == 0


def test_after_sigterm_no_new_connections(tmp_path: Path) -> None:
    server = start(tmp_path)
    assert stop(server) == 0
    try:
        httpx.get(f"{server.url}/v2/health/ready", timeout=2)
        raise AssertionError("the server still accepts connections")
    except httpx.ConnectError:
        pass


def test_ps_tells_the_model_owner_from_the_fronts(tmp_path: Path) -> None:
    import psutil

    server = start(tmp_path, "--workers", "3", "--constant_encoder")
    try:
        children = psutil.Process(server.proc.pid).children()
        # multiprocessing's resource tracker (it unlinks the shared memory should the supervisor die) aside
        names = sorted(c.name() for c in children if "resource_tracker" not in " ".join(c.cmdline()))
        assert names == ["http-front-0", "http-front-1", "http-front-2", "model-owner"]
    finally:
        assert stop(server) == 0


def test_metric_names_and_buckets_match_the_platform() -> None:
    """The dashboards and alerts (platform/signals.py) read exactly what this server exports."""
    sys.path.insert(0, str(REPO))
    try:
        from modelyard.platform import signals
    finally:
        sys.path.remove(str(REPO))
    from modelyard_server import metrics as server

    assert server.REQUESTS._name + "_total" == signals.REQUESTS_TOTAL
    assert server.CALLER_REQUESTS._name + "_total" == signals.CALLER_REQUESTS_TOTAL
    assert server.DURATION._name == signals.REQUEST_DURATION
    assert server.BATCH_SIZE._name == signals.BATCH_SIZE
    assert server.QUEUE_DEPTH._name == signals.QUEUE_DEPTH
    assert server.REJECTED._name + "_total" == signals.REJECTED_TOTAL
    assert server.CLOSED_CONNECTIONS._name + "_total" == signals.CLOSED_CONNECTIONS_TOTAL
    assert server.IN_FLIGHT._name == signals.IN_FLIGHT
    assert server.INPUT_CHARS._name == signals.INPUT_CHARS
    assert server.INPUT_TOKENS._name == signals.INPUT_TOKENS
    assert server.UNKNOWN_SHARE._name == signals.UNKNOWN_TOKEN_SHARE
    assert server.TRUNCATED._name + "_total" == signals.TRUNCATED_TOTAL
    assert server.TAP_SAMPLES._name + "_total" == signals.TAP_SAMPLES_TOTAL
    assert server.CACHE_TEXTS._name + "_total" == signals.CACHE_TEXTS_TOTAL
    assert server.CACHE_BYTES._name == signals.CACHE_BYTES
    assert server.ADMISSION_BOUND._name == signals.ADMISSION_BOUND
    assert server.DEGRADED._name + "_total" == signals.DEGRADED_TOTAL
    from modelyard_server import drift_worker

    worker = drift_worker.Series()
    assert worker.p_value._name == signals.DRIFT_P_VALUE
    assert worker.psi._name == signals.DRIFT_PSI
    assert worker.centroid._name == signals.DRIFT_CENTROID
    assert worker.window._name == signals.DRIFT_WINDOW
    assert worker.reference._name == signals.DRIFT_REFERENCE
    assert worker.samples._name + "_total" == signals.DRIFT_SAMPLES_TOTAL
    assert worker.p_value._labelnames == ("model", "model_version", "signal")
    assert (signals.DRIFT_OUTPUT_SIGNAL, *signals.DRIFT_INPUT_SIGNALS) == drift_worker.SIGNALS
    rendered = tuple(str(b) for b in server.LATENCY_BUCKETS)
    assert rendered == signals.LATENCY_BUCKETS


def test_batch_defaults_follow_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small passes side by side on a CPU (12 texts, one pass per CPU, one thread each), hundreds of texts a pass on a
    GPU, one at a time; what is set stays."""
    from modelyard_server import server

    monkeypatch.setattr(server, "gpu_present", lambda: False)
    args = server.parse_args([])
    assert server.batching_for_device(args, cpus=4) == ("cpu", 1)
    assert (args.max_batch_size, args.max_batch_tokens) == server.BATCH_DEFAULTS["cpu"] == (12, 8192)
    assert args.model_instances == 4
    args = server.parse_args(["--model_instances", "2"])
    assert server.batching_for_device(args, cpus=4) == ("cpu", 2)
    monkeypatch.setattr(server, "gpu_present", lambda: True)
    args = server.parse_args([])
    assert server.batching_for_device(args, cpus=4) == ("cuda", None)
    assert (args.max_batch_size, args.max_batch_tokens, args.model_instances) == (256, 16384, 1)
    args = server.parse_args(["--device", "cpu", "--max_batch_tokens", "4096"])
    assert server.batching_for_device(args, cpus=2) == ("cpu", 1)
    assert (args.max_batch_size, args.max_batch_tokens, args.model_instances) == (12, 4096, 2)


def test_a_gpu_is_found_from_its_device_file_unless_hidden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from modelyard_server import server

    monkeypatch.setattr(server.Path, "exists", lambda self: str(self) == "/dev/nvidiactl")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert server.gpu_present()
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert not server.gpu_present()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert server.gpu_present()
    monkeypatch.setattr(server.Path, "exists", lambda self: False)
    assert not server.gpu_present()


def test_a_bad_flag_value_names_the_flag_and_what_is_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    from modelyard_server import server

    for argv, message in (
        (["--keep_alive_timeout", "soon"], "--keep_alive_timeout: must be a whole number (got 'soon')"),
        (["--model_instances", "0"], "--model_instances: must be more than 0 (got 0)"),
        (["--read_timeout", "-1"], "--read_timeout: must be more than 0 and finite (got -1)"),
        (["--read_timeout", "nan"], "--read_timeout: must be more than 0 and finite (got nan)"),
        (["--read_timeout", "inf"], "--read_timeout: must be more than 0 and finite (got inf)"),
        (["--max_connections", "many"], "--max_connections: must be a whole number (got 'many')"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            server.parse_args(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
