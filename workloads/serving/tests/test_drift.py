"""Drift: the two-sample tests (drift.py), the reference (reference.py), the tap (tap.py) and the worker
(drift_worker.py), the last two as real processes on loopback with the bundled model's real embeddings."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import topics
from conftest import SERVING, RunningServer, call, free_port, metrics_with, pushed, start, stop
from modelyard_server import drift, metrics
from modelyard_server.drift_worker import App, Worker, WorkerSettings
from modelyard_server.reference import MIN_TEXTS, REFERENCE, Reference, ReferenceError, parse
from modelyard_server.tap import Tap, TapSettings, TapUrlError, parse_url, sample_keys

# -- the tests themselves


def unit_rows(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    x = rng.normal(size=(n, d))
    x[:, 0] += shift
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_mmd_permutation_test_holds_its_level_and_finds_a_shift() -> None:
    """Under no drift the p-value is uniform: at alpha = 0.05 about 5 % of 200 windows are flagged (a binomial
    99.9 % bound: at most 12 % here); a shift of the mean is found in every window."""
    rng = np.random.default_rng(7)
    reference = unit_rows(rng, 300, 16)
    flagged = sum(
        drift.mmd_test(unit_rows(rng, 60, 16), reference, rng=rng, permutations=199).p_value < 0.05 for _ in range(200)
    )
    assert flagged <= 24, flagged
    assert flagged >= 1  # a test that never says drift could not fail
    shifted = [drift.mmd_test(unit_rows(rng, 60, 16, 1.5), reference, rng=rng, permutations=199) for _ in range(10)]
    assert all(r.p_value <= 0.01 for r in shifted), [r.p_value for r in shifted]
    assert all(0 < r.p_value <= 1 for r in shifted)


def test_the_mmd_refuses_a_window_it_cannot_test() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="two rows on each side"):
        drift.mmd_test(unit_rows(rng, 1, 4), unit_rows(rng, 10, 4), rng=rng)


def test_length_tests_and_psi() -> None:
    rng = np.random.default_rng(3)
    reference = rng.poisson(40, 1000)
    same = drift.ks_test(rng.poisson(40, 200), reference)
    longer = drift.ks_test(rng.poisson(60, 200), reference)
    assert same.p_value > 0.001 and same.psi < 0.1
    assert longer.p_value < 1e-6 and longer.psi > 0.5
    assert drift.centroid_distance(unit_rows(rng, 50, 8), unit_rows(rng, 50, 8)) < drift.centroid_distance(
        unit_rows(rng, 50, 8, 3.0), unit_rows(rng, 50, 8)
    )


# -- the reference


def reference_of(n: int = MIN_TEXTS, d: int = 8, seed: int = 0) -> Reference:
    rng = np.random.default_rng(seed)
    return Reference(
        unit_rows(rng, n, d), rng.integers(10, 100, n).astype(np.int32), rng.integers(4, 30, n).astype(np.int32)
    )


def test_a_reference_is_read_back_and_a_bad_one_named() -> None:
    ref = reference_of()
    back = parse(ref.to_bytes(), "ref.npz")
    assert np.array_equal(back.embeddings, ref.embeddings) and np.array_equal(back.tokens, ref.tokens)
    with pytest.raises(ReferenceError, match=r"ref.npz: not a readable \.npz"):
        parse(b"not a zip", "ref.npz")
    with pytest.raises(ReferenceError, match="holds 10 texts; a reference needs 200"):
        parse(reference_of(10).to_bytes(), "ref.npz")
    bad = Reference(ref.embeddings, ref.chars[:-1], ref.tokens)
    with pytest.raises(ReferenceError, match="chars must be 200 counts"):
        parse(bad.to_bytes(), "ref.npz")


def test_the_reference_command_encodes_the_texts_with_the_model(tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(topics.mix({"billing": 1, "shipping": 1}, MIN_TEXTS, 1)) + "\n\n")
    out = tmp_path / REFERENCE
    model_dir = pushed(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard_server.reference",
            "--model_dir",
            str(model_dir),
            "--texts",
            str(texts),
            "--out",
            str(out),
        ],
        cwd=SERVING,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"{MIN_TEXTS} texts, 384 dimensions, sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}" in done.stdout
    ref = parse(out.read_bytes(), str(out))
    assert np.allclose(np.linalg.norm(ref.embeddings, axis=1), 1, atol=1e-4)
    assert ref.chars[0] == len(texts.read_text().splitlines()[0])
    few = tmp_path / "few.txt"
    few.write_text("one text\n")
    done = subprocess.run(
        [sys.executable, "-m", "modelyard_server.reference", "--model_dir", str(model_dir), "--texts", str(few)],
        cwd=SERVING,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2 and f"few.txt: 1 texts; a reference needs {MIN_TEXTS}" in done.stderr


# -- the tap, in process


def tap_with(url: str = "http://127.0.0.1:9/v1/samples", **kw: Any) -> Tap:
    settings = TapSettings(url, kw.pop("share", 1.0), "1", kw.pop("reference", None), **kw)
    return Tap(settings, "minilm", 4, metrics.Tally())


def outcome(tap: Tap, name: str) -> float:
    return sum(v for child, v in tap.tally.counts.items() if child is tap._counters.get(name))


def test_the_tap_samples_its_share_and_drops_what_its_buffer_cannot_hold() -> None:
    tap = tap_with(share=0.05, capacity=100_000)
    vectors, tokens = np.ones((10, 4), np.float32), np.full(10, 3, np.int32)
    for _ in range(2000):
        tap.offer(["some text"] * 10, vectors, tokens)
    assert 800 < tap.count < 1200, tap.count  # 5 % of 20,000 texts: 1,000 expected, sd about 31
    full = tap_with(share=1.0, capacity=16)
    for _ in range(5):
        full.offer(["a", "bb", "ccc", "dddd"], vectors[:4], tokens[:4])
    assert full.count == 16 and outcome(full, "sampled") == 20 and outcome(full, "dropped") == 4
    assert full.chars[:4].tolist() == [1, 2, 3, 4]
    before = full.vectors.nbytes + full.chars.nbytes + full.tokens.nbytes
    full.offer(["x"] * 4, vectors[:4], tokens[:4])
    assert full.vectors.nbytes + full.chars.nbytes + full.tokens.nbytes == before  # never grows


def test_the_tap_keeps_its_samples_when_the_worker_is_unreachable() -> None:
    tap = tap_with(url=f"http://127.0.0.1:{free_port()}/v1/samples", capacity=8, timeout=2)
    tap.offer(["a", "b"], np.ones((2, 4), np.float32), np.ones(2, np.int32))
    assert asyncio.run(tap.send_once()) is False
    assert tap.count == 2 and sum(tap.tally.counts.values()) == 2 + 1  # sampled 2, one failure


def test_the_taps_memory_stays_flat_while_the_worker_is_away() -> None:
    """100,000 answered texts, every one sampled, with each send failing: what the tap allocates after its first
    fill (tracemalloc, this process) stays within a few KiB; the rows are dropped and counted."""
    import tracemalloc

    tap = tap_with(url=f"http://127.0.0.1:{free_port()}/v1/samples", capacity=1024, timeout=1)
    vectors, tokens = np.ones((10, 4), np.float32), np.full(10, 3, np.int32)
    texts = ["a text"] * 10

    def run(n: int) -> None:
        for i in range(n):
            tap.offer(texts, vectors, tokens)
            if i % 1000 == 0:
                asyncio.run(tap.send_once())

    run(200)  # the buffer full, the counters and the failure path touched once
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    run(10_000)
    grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown < 64 * 1024, grown
    assert tap.count == 1024 and outcome(tap, "dropped") == 102_000 - 1024


def test_rows_the_worker_refuses_for_what_they_are_are_discarded_not_sent_again() -> None:
    """A 4xx other than 429 (another version's dimensions, a bad payload) would come again: the rows go, counted
    as refused; a 503 keeps them for the next try."""

    async def run(status: int) -> Tap:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}" % status)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tap = tap_with(url=f"http://127.0.0.1:{port}/v1/samples", capacity=8, timeout=5)
        tap.offer(["a", "b", "c"], np.ones((3, 4), np.float32), np.ones(3, np.int32))
        await tap.send_once()
        server.close()
        return tap

    refused = asyncio.run(run(409))
    assert refused.count == 0 and outcome(refused, "refused") == 3 and outcome(refused, "sent") == 0
    busy = asyncio.run(run(503))
    assert busy.count == 3 and outcome(busy, "refused") == 0


def test_the_worker_forgets_a_version_no_tap_sends_any_more() -> None:
    worker = Worker(WorkerSettings(window=20, idle_seconds=60))
    app = App(worker)
    assert call(app, "POST", "/v1/samples", samples_body(4))[0] == 200
    assert call(app, "POST", "/v1/samples", samples_body(4, version="2"))[0] == 200
    worker.streams[("minilm", "1")].last_seen -= 120
    assert worker.forget_idle() == [("minilm", "1")]
    text = call(app, "GET", "/metrics")[1].decode()
    assert 'model_version="1"' not in text and 'model_version="2"' in text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://w:1/v1/samples", "must be an http:// URL"),
        ("http://w:99999/x", "port that is not a number"),
        ("http://w", "http:// URL"),
    ],
)
def test_a_bad_tap_url_is_named(url: str, message: str) -> None:
    with pytest.raises(TapUrlError, match=message):
        parse_url(url)


# -- the worker's intake, in process


def samples_body(n: int, d: int = 8, sha: str | None = None, **over: Any) -> bytes:
    rng = np.random.default_rng(n)
    document = {
        "model": "minilm",
        "version": "1",
        "reference_sha256": sha,
        "dimensions": d,
        "embeddings": base64.b64encode(unit_rows(rng, n, d).astype("<f4").tobytes()).decode(),
        "chars": [20] * n,
        "tokens": [6] * n,
        **over,
    }
    return orjson.dumps(document)


@pytest.mark.parametrize(
    ("over", "status", "message"),
    [
        ({"model": "Not A Label"}, 400, "model: must be a lowercase DNS label"),
        ({"version": ""}, 400, "version: must be letters"),
        ({"dimensions": 0}, 400, "dimensions: must be from 1 to 8192"),
        ({"dimensions": 3}, 400, "is not a whole number of 3-float rows"),
        ({"embeddings": "***"}, 400, "embeddings: not valid base64"),
        ({"chars": [1, 2]}, 400, "chars: must be a list of 4 whole numbers"),
        ({"tokens": [1, 2, 3, -4]}, 400, "tokens: must be a list of 4 whole numbers"),
        ({"reference_sha256": "abc"}, 400, "reference_sha256: must be 64 lowercase hex digits"),
    ],
)
def test_the_worker_refuses_bad_samples_by_name(over: dict[str, Any], status: int, message: str) -> None:
    app = App(Worker(WorkerSettings(window=20)))
    code, answer = call(app, "POST", "/v1/samples", samples_body(4, **over))
    assert code == status and message in answer["error"], answer


def test_the_worker_takes_samples_and_a_reference_and_tests_a_full_window() -> None:
    worker = Worker(WorkerSettings(window=20, permutations=99, seed=1))
    app = App(worker)
    ref = reference_of(d=8)
    data = ref.to_bytes()
    sha = hashlib.sha256(data).hexdigest()
    code, answer = call(app, "POST", "/v1/samples", samples_body(25, sha=sha))
    assert (code, answer) == (200, {"accepted": 25, "reference": "missing"})
    assert worker.evaluate() == 0  # no reference yet
    code, answer = call(app, "PUT", "/v1/references/minilm/1", data, [(b"x-sha256", b"0" * 64)])
    assert code == 400 and "does not match the body's sha256" in answer["error"]
    code, answer = call(app, "PUT", "/v1/references/minilm/2", data, [(b"x-sha256", sha.encode())])
    assert code == 409 and "no samples of minilm version 2" in answer["error"]
    code, answer = call(app, "PUT", "/v1/references/minilm/1", data, [(b"x-sha256", sha.encode())])
    assert code == 200 and answer["reference_samples"] == MIN_TEXTS
    assert call(app, "POST", "/v1/samples", samples_body(2, sha=sha))[1]["reference"] == "known"
    assert worker.evaluate() == 1 and worker.evaluate() == 0  # nothing new since
    _, text = call(app, "GET", "/metrics")
    text = text.decode()
    assert 'modelyard_drift_window_samples{model="minilm",model_version="1"} 20.0' in text
    assert 'modelyard_drift_samples_total{model="minilm",model_version="1"} 27.0' in text
    for signal in ("embedding", "chars", "tokens"):
        assert f'modelyard_drift_p_value{{model="minilm",model_version="1",signal="{signal}"}}' in text
    # Every window's chars are 20 and the reference's 10 to 99: the input test says so.
    assert worker.series.p_value.labels("minilm", "1", "chars")._value.get() < 1e-6
    assert call(app, "POST", "/v1/samples", samples_body(2, d=4))[0] == 409
    assert call(app, "GET", "/v1/samples")[0] == 405 and call(app, "GET", "/nope")[0] == 404


def test_the_worker_holds_at_most_its_versions() -> None:
    app = App(Worker(WorkerSettings(window=20, max_versions=1)))
    assert call(app, "POST", "/v1/samples", samples_body(2))[0] == 200
    code, answer = call(app, "POST", "/v1/samples", samples_body(2, version="2"))
    assert code == 429 and "at most 1 model versions" in answer["error"]


# -- the real server's tap and the real worker, on loopback


def worker_process(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard_server.drift_worker", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=SERVING,
        stdout=(tmp / f"worker-{port}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the drift worker did not start:\n" + (tmp / f"worker-{port}.log").read_text()[-2000:])


def series(url: str, name: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


@pytest.fixture(scope="module")
def tapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str, subprocess.Popen[bytes]]]:
    """A real server (the bundled model, pushed with a reference of billing and shipping texts) whose tap
    samples every text into a real worker (windows of 60, tested every second)."""
    tmp = tmp_path_factory.mktemp("drift")
    texts = tmp / "reference.txt"
    texts.write_text("\n".join(topics.mix({"billing": 1, "shipping": 1}, 400, 11)))
    scratch = tmp / "scratch"
    scratch.mkdir()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard_server.reference",
            "--model_dir",
            str(pushed(scratch)),
            "--texts",
            str(texts),
            "--out",
            str(tmp / REFERENCE),
        ],
        cwd=SERVING,
        check=True,
        capture_output=True,
        timeout=300,
    )
    model_dir = pushed(tmp, extra={REFERENCE: (tmp / REFERENCE).read_bytes()})
    worker, url = worker_process(tmp, "--window", "60", "--interval", "1", "--permutations", "199")
    server = start(
        tmp,
        "--model_dir",
        str(model_dir),
        "--verify_manifest",
        "--workers",
        "1",
        "--model_version",
        "1",
        "--tap_url",
        f"{url}/v1/samples",
        "--tap_share",
        "1",
    )
    yield server, url, worker
    stop(server)
    worker.terminate()
    worker.wait(timeout=30)


def send_texts(server: RunningServer, texts: list[str]) -> None:
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(texts), 8):
            r = client.post(f"{server.url}/v1/embeddings", json={"model": "minilm", "input": texts[i : i + 8]})
            assert r.status_code == 200, r.text


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := check():
            return value
        time.sleep(0.3)
    raise AssertionError("timed out")


def test_the_tap_feeds_the_worker_and_a_topic_shift_is_found(tapped: tuple[RunningServer, str, Any]) -> None:
    server, url, _ = tapped
    key = 'modelyard_drift_p_value{model="minilm",model_version="1",signal="embedding"}'
    send_texts(server, topics.mix({"billing": 1, "shipping": 1}, 64, 12))
    ref = wait_for(
        lambda: series(url, "modelyard_drift_reference_samples").get(
            'modelyard_drift_reference_samples{model="minilm",model_version="1"}'
        )
    )
    assert ref == 400  # the tap sent the verified reference when the worker asked for it
    calm = wait_for(lambda: series(url, "modelyard_drift_p_value").get(key))
    assert calm > 0.01, calm
    evaluations = 'modelyard_drift_evaluations_total{model="minilm",model_version="1"}'
    before = series(url, "modelyard_drift_evaluations_total")[evaluations]
    # 30 % of the next window is about cooking: drifted.
    send_texts(server, topics.mix({"billing": 35, "shipping": 35, "cooking": 30}, 64, 13))
    wait_for(lambda: series(url, "modelyard_drift_evaluations_total")[evaluations] > before)
    shifted = wait_for(lambda: (p := series(url, "modelyard_drift_p_value").get(key)) is not None and p <= 0.01 and p)
    assert shifted <= 0.01
    text = metrics_with(server, 'modelyard_tap_samples_total{model_name="minilm",outcome="sent"} 128.0')
    assert 'modelyard_tap_samples_total{model_name="minilm",outcome="sent"} 128.0' in text
    assert (
        'modelyard_input_tokens_count{model_name="minilm"}' in text and "modelyard_unknown_token_share_bucket" in text
    )


def test_copies_of_a_request_are_joined_by_the_worker(tapped: tuple[RunningServer, str, Any]) -> None:
    """The real server answers each request twice under one x-request-id (the caller's and the copy the route
    mirrors to the stable Service): the worker joins its samples into noise pairs. A candidate version's samples
    of the same texts under the same keys (the answers the server gave, as an identical shadow would; then
    changed) are judged against them: the same, and different."""
    server, url, _ = tapped
    # The shadow's first samples (no keys): from now on the worker joins the model's versions.
    first = orjson.loads(samples_body(1, d=384, version="2"))
    assert httpx.post(f"{url}/v1/samples", content=orjson.dumps(first), timeout=10).status_code == 200
    texts = topics.mix({"billing": 1, "programming": 1}, 104, 21)
    answered: list[list[float]] = []
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(texts), 8):
            for copy in range(2):
                r = client.post(
                    f"{server.url}/v1/embeddings",
                    json={"model": "minilm", "input": texts[i : i + 8]},
                    headers={"x-request-id": f"shadow-test-{i}"},
                )
                assert r.status_code == 200, r.text
                if copy == 0:
                    answered += [d["embedding"] for d in r.json()["data"]]
    noise = 'modelyard_shadow_noise_pairs{model="minilm",model_version="1"}'
    wait_for(lambda: series(url, "modelyard_shadow_noise_pairs").get(noise) == 100)  # the ring's size, full
    keys = [k for i in range(0, len(texts), 8) for k in sample_keys(f"shadow-test-{i}".encode(), 8)]
    vectors = np.asarray(answered, np.float32)
    verdict = 'modelyard_shadow_verdict{{model="minilm",model_version="1",other_version="{}",verdict="{}"}}'
    for version, candidate in (("2", vectors), ("3", vectors[:, ::-1].copy())):
        document = orjson.loads(samples_body(104, d=vectors.shape[1], version=version))
        document["embeddings"] = base64.b64encode(candidate.astype("<f4").tobytes()).decode()
        document["keys"] = keys
        assert httpx.post(f"{url}/v1/samples", content=orjson.dumps(document), timeout=10).status_code == 200
    assert wait_for(lambda: series(url, "modelyard_shadow_verdict").get(verdict.format("2", "same"))) == 1
    assert wait_for(lambda: series(url, "modelyard_shadow_verdict").get(verdict.format("3", "differs"))) == 1
    exceeding = series(url, "modelyard_shadow_exceeding")
    assert exceeding['modelyard_shadow_exceeding{model="minilm",model_version="1",other_version="2"}'] == 0
    assert exceeding['modelyard_shadow_exceeding{model="minilm",model_version="1",other_version="3"}'] == 100


def test_a_dead_worker_costs_the_server_drops_not_answers(tapped: tuple[RunningServer, str, Any]) -> None:
    server, _, worker = tapped
    worker.kill()
    worker.wait(timeout=10)
    send_texts(server, topics.mix({"billing": 1}, 1200, 14))  # 1,200 samples into a 1,024-row buffer
    text = metrics_with(server, 'outcome="dropped"', 'reason="unreachable"', timeout=10)
    dropped = [
        line
        for line in text.splitlines()
        if line.startswith("modelyard_tap_samples_total") and 'outcome="dropped"' in line
    ]
    assert dropped and float(dropped[0].rsplit(" ", 1)[1]) >= 1200 - 1024, dropped
    assert 'modelyard_tap_send_failures_total{model_name="minilm",reason="unreachable"}' in text
