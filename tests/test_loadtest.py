"""`modelyard loadtest` against a local OpenAI-compatible streaming endpoint (tests/openai_stream.py, its stream
held to the real `openai` client's parser): what it measures matches the pace the endpoint was given, latency
counts from the schedule (a server that falls behind is charged for it), every kind of failure is counted,
and the verdict and exit code follow the catalog entry's objectives."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import model_server

from modelyard import loadtest as lt
from modelyard.cli import main

STUB = Path(__file__).parent / "openai_stream.py"
#: The staging catalog's LLM and its objectives (workloads/catalog/staging.yaml).
MODEL = "qwen-chat"
OBJECTIVES = lt.Objectives(availability=0.995, ttft_ms=1000, itl_ms=100, share=0.95)


@contextmanager
def endpoint(*flags: str, model: str = MODEL) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, str(STUB), "--model", model, *flags], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def body(max_tokens: int = 20) -> bytes:
    return lt.request_body(MODEL, 20, max_tokens)


def test_the_endpoints_stream_is_what_the_openai_client_reads() -> None:
    import openai

    with endpoint("--ttft", "0.01", "--itl", "0.001", "--tokens", "7") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_it_measures_the_pace_the_server_streams_at() -> None:
    with endpoint("--ttft", "0.05", "--itl", "0.02", "--tokens", "10") as url:
        samples = lt.run(lt.Target.parse(url), body(), lt.schedule(20, 1.0), timeout=10)
    verdict = lt.judge(samples, OBJECTIVES, 1.0)
    assert verdict.requests == 20 and verdict.failed == 0
    assert all(s.tokens == 10 and len(s.gaps) == 9 and s.finish_reason == "length" for s in samples)
    assert 45 <= verdict.ttft_ms["p50"] <= 150, verdict.ttft_ms
    assert 15 <= verdict.itl_ms["p50"] <= 60, verdict.itl_ms
    assert verdict.ok and verdict.ttft_within == verdict.itl_within == 1.0
    assert verdict.goodput == pytest.approx(20.0) and verdict.tokens_per_second == pytest.approx(200.0)


def test_latency_counts_from_the_schedule_so_a_server_behind_is_charged_for_the_wait() -> None:
    """One stream at a time of 0.2 s each, asked for 10 a second: request k (from 0) is scheduled at 0.1 k s
    and served from 0.2 k s, so its first token comes 0.1 (k + 1) s after its scheduled time, 1.0 s for the
    10th. Counted from when it got a turn (as a closed loop would), every first token would take 0.1 s; counted
    from the schedule, the wait is charged, and the verdict misses."""
    with endpoint("--ttft", "0.1", "--itl", "0.01", "--tokens", "11", "--slots", "1") as url:
        times = lt.schedule(10, 1.0, "constant")
        samples = lt.run(lt.Target.parse(url), body(), times, timeout=30)
    ttfts = [s.ttft for s in sorted(samples, key=lambda s: s.scheduled)]
    assert all(t is not None for t in ttfts)
    assert ttfts[-1] > 0.95 and ttfts[0] < 0.3, ttfts
    assert all(b > a for a, b in itertools.pairwise(ttfts[1:])), ttfts
    # The client kept its schedule: every request left on time, whatever the server did.
    assert max(s.sent - s.scheduled for s in samples) < 0.1
    verdict = lt.judge(samples, lt.Objectives(0.995, 500, 100, 0.95), 1.0)
    assert verdict.missed == ("ttft",) and verdict.ttft_ms["p99"] > 950


def test_every_kind_of_failure_is_counted_and_costs_availability() -> None:
    with endpoint(
        "--ttft", "0.01", "--itl", "0.005", "--fail-every", "5", "--error-every", "7", "--cut-every", "9"
    ) as url:
        samples = lt.run(lt.Target.parse(url), body(), lt.schedule(40, 1.0), timeout=10)
    verdict = lt.judge(samples, OBJECTIVES, 1.0)
    # Requests are numbered in arrival order: 5, 10, ..., 40 fail (8), 7, 14, 21, 28 error mid-stream (35 is a
    # 5), 9, 18, 27, 36 are cut.
    assert verdict.requests == 40 and verdict.failed == 16, verdict.failures
    assert verdict.failures["HTTP 500"] == 8 and verdict.failures["error event"] == 4
    assert sum(verdict.failures.values()) == 16
    assert verdict.missed == ("availability",) and verdict.burn_rate == pytest.approx(0.4 / 0.005)
    assert verdict.goodput == pytest.approx(24.0)


def test_the_schedule_is_fixed_before_the_run() -> None:
    assert lt.schedule(4, 2.0, "constant") == [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    poisson = lt.schedule(50, 200.0, "poisson", seed=3)
    assert poisson == lt.schedule(50, 200.0, "poisson", seed=3) != lt.schedule(50, 200.0, "poisson", seed=4)
    assert len(poisson) == pytest.approx(10_000, rel=0.05) and max(poisson) < 200
    assert lt.percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0 and lt.percentile([], 0.5) is None


def test_the_command_judges_the_catalog_entry_and_exits_by_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "samples.jsonl"
    with endpoint("--ttft", "0.02", "--itl", "0.005", "--tokens", "16") as url:
        args = ["loadtest", MODEL, "--env", "staging", "--url", url, "--duration", "1", "--max-tokens", "16"]
        assert main([*args, "--rate", "10", "--samples", str(samples)]) == 0
        out = capsys.readouterr().out
        assert "verdict: met" in out and "within 1000 ms (objective 95%)  ok" in out
        assert len(samples.read_text().splitlines()) == 10
        assert json.loads(samples.read_text().splitlines()[0])["tokens"] == 16
        # Without --rate: 80 % of what the plan assumes one replica serves, in answers of --max-tokens.
        assert main([*args, "--duration", "2", "--arrivals", "constant"]) == 0
        out = capsys.readouterr().out
        assert "80% of what the plan assumes 1 replica(s) serve: 336 tokens/s each on l4 / 16 tokens" in out
        assert "33 requests" in out  # 0.8 x 336.3 / 16 = 16.8 a second for 2 s
    with endpoint("--ttft", "0.01", "--itl", "0.001", "--fail-every", "2") as url:
        assert main(["loadtest", MODEL, "--env", "staging", "--url", url, "--rate", "10", "--duration", "1"]) == 1
        assert "verdict: MISSED (availability)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nope", "--url", "http://127.0.0.1:1"], "MODEL 'nope' is not in the staging catalog (models: "),
        (["minilm", "--url", "http://h", "--texts", "65"], "--texts 65: must be from 1 to 64, the texts the server"),
        (["minilm", "--url", "http://h", "--max-tokens", "5"], "--max-tokens is for an LLM; 'minilm' is an embedding"),
        ([MODEL, "--url", "http://h", "--texts", "4"], "--texts is for an embedding model; 'qwen-chat' is an LLM"),
        (["minilm-gpu", "--url", "http://h"], "'minilm-gpu' has no load in the staging catalog: pass --rate"),
        ([MODEL, "--url", "ftp://x"], "--url 'ftp://x': must be http:// or https://"),
        ([MODEL, "--url", "http://h:99999"], "the port must be a number from 1 to 65535"),
        ([MODEL, "--url", "http://h", "--max-tokens", "0"], "--max-tokens 0: must be from 1 to 16384"),
        ([MODEL, "--url", "http://h", "--max-tokens", "16384"], "must fit the entry's max_model_len (16384)"),
        ([MODEL, "--url", "http://h", "--rate", "-1"], "--rate -1: must be above 0"),
        ([MODEL, "--url", "http://h", "--duration", "0"], "--duration 0.0: must be from 1 to 86400"),
        ([MODEL, "--url", "http://h", "--samples", "/no/such/dir/s.jsonl"], "its directory does not exist"),
    ],
)
def test_bad_arguments_are_named(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest", *args[:1], "--env", "staging", *args[1:]]) == 2
    assert expected in capsys.readouterr().err


def test_an_unreachable_endpoint_fails_every_request_without_a_traceback() -> None:
    samples = lt.run(lt.Target.parse("http://127.0.0.1:1"), body(), lt.schedule(5, 1.0), timeout=5)
    verdict = lt.judge(samples, OBJECTIVES, 1.0)
    assert verdict.failed == 5 and list(verdict.failures) == ["ConnectionRefusedError"]
    assert verdict.missed == ("ttft", "availability")
    lines: list[str] = []
    lt.report(verdict, OBJECTIVES, lines.append)
    # No gap was measured: the ITL line says so rather than pass.
    assert next(line for line in lines if line.startswith("  itl")).endswith("no data")


def test_an_embedding_model_is_load_tested_at_its_catalog_load_against_the_real_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real model server: the dev entry's load (10 requests a second of 8 texts) for 2 s meets its 500 ms p99;
    a flood far past what one front answers misses its availability, its refusals counted, exit 1."""
    samples = tmp_path / "samples.jsonl"
    with model_server(tmp_path, "--workers", "1", "--latency_objective_ms", "500") as url:
        args = ["loadtest", "minilm", "--env", "dev", "--url", url, "--duration", "2", "--arrivals", "constant"]
        assert main([*args, "--samples", str(samples)]) == 0, capsys.readouterr().out
        out = capsys.readouterr().out
        assert "20 requests, constant arrivals at 10.00/s for 2 s (the catalog entry's load.requests_per_second)" in out
        assert "8 texts a request, none repeated" in out and "verdict: met" in out
        assert "of answered requests within 500 ms (objective 99%)  ok" in out
        rows = [json.loads(line) for line in samples.read_text().splitlines()]
        assert len(rows) == 20 and all(r["status"] == 200 and r["tokens"] == 8 for r in rows)
        assert main([*args, "--rate", "200", "--texts", "64"]) == 1
        out = capsys.readouterr().out
        # Refused far past the objective; what the admission bound let in may still be within the threshold.
        verdict = next(line for line in out.splitlines() if line.startswith("verdict: "))
        assert verdict.startswith("verdict: MISSED (") and "availability" in verdict and "HTTP 503" in out, out


def test_embeddings_bodies_never_repeat_a_text() -> None:
    bodies = lt.embeddings_bodies("minilm", 50, 8, seed=1)
    texts = [t for b in bodies for t in json.loads(b)["input"]]
    assert len(texts) == 400 == len(set(texts))
    assert json.loads(bodies[0])["model"] == "minilm"
