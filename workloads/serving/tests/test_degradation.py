"""Degradation on the real server: the embedding cache (a repeated text answered byte for byte from the model
owner, counted), the priority classes (the low class shed with 429 and Retry-After while the high class is
answered), admission by the latency objective (refusing what would miss it, the bound on /metrics), and the
degraded header on an answer with a truncated text."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from conftest import RunningServer, metrics_counting, metrics_with, start, stop


def _counter(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_repeated_text_is_answered_from_the_cache_byte_for_byte(server: RunningServer) -> None:
    texts = ["the cache keeps this sentence", "and this one, CACHED   too"]
    body = {"model": "minilm", "input": texts}
    before = httpx.get(f"{server.url}/metrics").text
    first = httpx.post(f"{server.url}/v1/embeddings", json=body)
    # The tokenizer lower-cases and folds whitespace: the same token ids, the same entry.
    again = httpx.post(f"{server.url}/v1/embeddings", json={"model": "minilm", "input": [t.upper() for t in texts]})
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    hits = _counter(before, "modelyard_cache_texts_total", outcome="hit") + 2
    after = metrics_with(server, f'modelyard_cache_texts_total{{model_name="minilm",outcome="hit"}} {hits}')
    assert _counter(after, "modelyard_cache_texts_total", outcome="hit") == hits
    assert _counter(after, "modelyard_cache_texts_total", outcome="miss") >= 2
    assert _counter(after, "modelyard_cache_bytes") > 0


def test_a_priority_the_server_does_not_know_is_400_naming_the_header(server: RunningServer) -> None:
    answer = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"model": "minilm", "input": "x"},
        headers={"x-modelyard-priority": "urgent"},
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "x-modelyard-priority" and "must be high or low (got 'urgent')" in error["message"]


def test_an_answer_with_a_truncated_text_says_so(server: RunningServer) -> None:
    long_text = "a," * 200  # 400 tokens: past all-MiniLM-L6-v2's 256
    answer = httpx.post(f"{server.url}/v1/models/minilm:predict", json={"instances": [long_text, "short"]})
    assert answer.status_code == 200 and answer.headers["x-modelyard-degraded"] == "truncated"
    plain = httpx.post(f"{server.url}/v1/models/minilm:predict", json={"instances": ["short"]})
    assert "x-modelyard-degraded" not in plain.headers
    text = metrics_counting(server, 'modelyard_degraded_responses_total{model_name="minilm",reason="truncated"}', 1)
    assert _counter(text, "modelyard_degraded_responses_total", reason="truncated") >= 1


async def _flood(url: str, requests: list[tuple[str, list[str]]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{url}/v1/embeddings",
                    json={"model": "minilm", "input": texts},
                    headers={"x-modelyard-priority": priority},
                )
                for priority, texts in requests
            )
        )


def test_the_low_class_is_shed_with_429_while_the_high_class_is_answered(tmp_path: Path) -> None:
    # One front, 64 texts of queue: the low class may fill 16 of them.
    running = start(tmp_path, "--workers", "1", "--max_queue", "64", "--low_priority_share", "0.25", "--cache_mb", "0")
    try:
        texts = [f"sentence number {i} about load shedding" for i in range(8)]
        flood = [("low", texts)] * 24 + [("high", texts)] * 4
        answers = asyncio.run(_flood(running.url, flood))
        low, high = answers[:24], answers[24:]
        assert [a.status_code for a in high] == [200] * 4
        shed = [a for a in low if a.status_code == 429]
        assert shed and all(a.status_code in (200, 429) for a in low)
        for a in shed:
            assert a.headers["retry-after"] == "1"
            error = a.json()["error"]
            assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
            assert "low-priority request shed" in error["message"]
        text = metrics_with(running, 'reason="shed"')
        assert _counter(text, "modelyard_rejected_requests_total", reason="shed") == len(shed)
    finally:
        assert stop(running) == 0


def test_admission_by_the_objective_refuses_what_would_miss_it(tmp_path: Path) -> None:
    """A flood far past what one front answers in 50 ms: once the pace is measured, requests beyond it get 503
    (reason objective), and the bound on /metrics is the measured one, below the ceiling."""
    running = start(tmp_path, "--workers", "1", "--latency_objective_ms", "50", "--cache_mb", "0")
    try:
        texts = [f"text {i} for the objective" for i in range(32)]
        answers: list[httpx.Response] = []
        # The first waves are bounded by the count default while they give the model owner its half-second spans
        # of busy time; once its pace is measured, what is refused is refused by the objective.
        for _ in range(12):
            answers += asyncio.run(_flood(running.url, [("high", texts)] * 24))
            if any("latency objective (50 ms at" in a.text for a in answers if a.status_code == 503):
                break
        refused = [a for a in answers if a.status_code == 503]
        assert refused and all(a.status_code in (200, 503) for a in answers)
        assert any("latency objective (50 ms at" in a.json()["error"]["message"] for a in refused)
        text = metrics_with(running, 'reason="objective"')
        assert _counter(text, "modelyard_rejected_requests_total", reason="objective") >= 1
        bound = _counter(text, "modelyard_admission_bound_texts")
        ceiling = int(re.search(r"at most (\d+) texts", running.log.read_text()).group(1))  # type: ignore[union-attr]
        from modelyard_server.server import BATCH_DEFAULTS

        assert BATCH_DEFAULTS["cpu"][0] <= bound < ceiling  # never below one full pass
    finally:
        assert stop(running) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cache_mb", "0.0001"], "--cache_mb 0.0001 cannot hold one vector"),
        (["--low_priority_share", "0"], "--low_priority_share: must be more than 0 and at most 1"),
        (["--latency_objective_ms", "-5"], "--latency_objective_ms"),
    ],
)
def test_bad_degradation_settings_are_refused_with_what_is_allowed(
    tmp_path: Path, args: list[str], message: str
) -> None:
    import subprocess
    import sys

    from conftest import SERVING

    done = subprocess.run(
        [sys.executable, "-m", "modelyard_server", *args],
        cwd=SERVING,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(SERVING), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
