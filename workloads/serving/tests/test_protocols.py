"""Every protocol over real HTTP: KServe v1 and v2 through the kserve SDK's REST client, OpenAI with plain
HTTP. Embeddings are unit length, deterministic, and the same whichever protocol asked."""

from __future__ import annotations

import asyncio
import base64
import math
import struct

import httpx
import pytest
from conftest import RunningServer, metrics_counting, metrics_with
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

TEXTS = ["The cat sat on the mat.", "A feline rested on the rug.", "Quarterly revenue grew by four percent."]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def v1(server: RunningServer, texts: list[str]) -> list[list[float]]:
    client = InferenceRESTClient(RESTConfig(protocol="v1", timeout=60))
    try:
        response = await client.infer(server.url, {"instances": texts}, model_name="minilm")
    finally:
        await client.close()
    return response["predictions"]


async def v2(server: RunningServer, texts: list[str]) -> list[list[float]]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    text = InferInput("text", [len(texts)], "BYTES", data=texts)
    try:
        response = await client.infer(
            server.url, InferRequest(model_name="minilm", infer_inputs=[text]), model_name="minilm"
        )
    finally:
        await client.close()
    output = response.outputs[0]
    assert output.name == "embedding" and output.datatype == "FP32" and list(output.shape) == [len(texts), 384]
    flat = list(output.data)
    return [flat[i * 384 : (i + 1) * 384] for i in range(len(texts))]


def test_v1_embeddings_are_normalised_and_meaningful(server: RunningServer) -> None:
    vectors = asyncio.run(v1(server, TEXTS))
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-4) for v in vectors)
    # Paraphrases sit closer than unrelated sentences.
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2


def test_every_protocol_gives_the_same_deterministic_embedding(server: RunningServer) -> None:
    first = asyncio.run(v1(server, TEXTS))
    again = asyncio.run(v1(server, TEXTS))
    by_v2 = asyncio.run(v2(server, TEXTS))
    openai = httpx.post(f"{server.url}/v1/embeddings", json={"model": "minilm", "input": TEXTS}, timeout=60).json()
    by_openai = [d["embedding"] for d in sorted(openai["data"], key=lambda d: d["index"])]
    for a, b, c, d in zip(first, again, by_v2, by_openai, strict=True):
        assert a == b  # same input, same bytes out
        assert cosine(a, c) > 0.99999 and cosine(a, d) > 0.99999


def test_batched_and_alone_agree(server: RunningServer) -> None:
    """A text embedded alone and inside a padded batch gets the same vector."""
    alone = asyncio.run(v1(server, [TEXTS[0]]))[0]
    batched = asyncio.run(v1(server, [TEXTS[0], "a much longer sentence " * 20]))[0]
    assert cosine(alone, batched) > 0.99999


def test_openai_shape_usage_and_base64(server: RunningServer) -> None:
    r = httpx.post(f"{server.url}/v1/embeddings", json={"model": "minilm", "input": "hello"}, timeout=60)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list" and body["model"] == "minilm"
    assert body["data"][0]["object"] == "embedding" and body["data"][0]["index"] == 0
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == 3  # [CLS] hello [SEP]
    packed = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"model": "minilm", "input": "hello", "encoding_format": "base64"},
        timeout=60,
    ).json()["data"][0]["embedding"]
    decoded = list(struct.unpack("<384f", base64.b64decode(packed)))
    assert cosine(decoded, body["data"][0]["embedding"]) > 0.99999


def test_v2_metadata_and_health(server: RunningServer) -> None:
    meta = httpx.get(f"{server.url}/v2/models/minilm", timeout=10).json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]
    assert httpx.get(f"{server.url}/v2/models/minilm/ready", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/v1/models/minilm", timeout=10).json()["ready"] is True


def test_metrics_count_by_protocol_and_code(server: RunningServer) -> None:
    httpx.post(f"{server.url}/v1/models/minilm:predict", json={"instances": ["x"]}, timeout=60)
    httpx.post(f"{server.url}/v1/models/minilm:predict", json={"instances": []}, timeout=60)
    expected = (
        'modelyard_requests_total{code="200",model_name="minilm",protocol="v1"}',
        'modelyard_requests_total{code="400",model_name="minilm",protocol="v1"}',
        'modelyard_request_duration_seconds_bucket{le="0.25",model_name="minilm",protocol="v1"}',
        "modelyard_batch_size_bucket",
        'modelyard_queue_depth{model_name="minilm"}',
    )
    text = metrics_with(server, *expected)
    for line in expected:
        assert line in text
    # Code 200 is exported at 0 from the start (the availability SLI's statuses): it must have counted.
    answered = 'modelyard_requests_total{code="200",model_name="minilm",protocol="v1"}'
    assert any(
        line.startswith(answered + " ") and float(line.split()[-1]) >= 1
        for line in metrics_counting(server, answered, 1).splitlines()
    )
    assert 'modelyard_forward_seconds_bucket{le="10.0",model_name="minilm"}' in text
    assert 'modelyard_inflight_texts{model_name="minilm"}' in text


@pytest.mark.parametrize("path", ["/v1/models/other:predict", "/v2/models/other/infer"])
def test_unknown_model_is_404(server: RunningServer, path: str) -> None:
    body = (
        {"instances": ["x"]}
        if "v1" in path
        else {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
    )
    assert httpx.post(f"{server.url}{path}", json=body, timeout=30).status_code == 404


def test_answers_are_counted_by_the_calling_team_the_gateway_names(server: RunningServer) -> None:
    """The gateway forwards the authenticated client id (`<team>.<client>`); the server counts each answer under the
    team, `none` without the header (a call that came past no gateway), `invalid` for an id that names no team."""
    url = f"{server.url}/v1/embeddings"
    body = {"model": "minilm", "input": "a sentence"}
    assert httpx.post(url, json=body, headers={"x-modelyard-client": "search.ci"}, timeout=60).status_code == 200
    bad = {"model": "minilm", "input": []}
    assert httpx.post(url, json=bad, headers={"x-modelyard-client": "assistants.bot"}, timeout=60).status_code == 400
    assert httpx.post(url, json=body, headers={"x-modelyard-client": "Not A Team"}, timeout=60).status_code == 200
    assert httpx.post(url, json=body, timeout=60).status_code == 200
    for caller, code in (("search", 200), ("assistants", 400), ("invalid", 200), ("none", 200)):
        series = f'modelyard_caller_requests_total{{caller="{caller}",code="{code}",model_name="minilm"}}'
        text = metrics_counting(server, series, 1)
        assert any(line.startswith(series + " ") and float(line.split()[-1]) >= 1 for line in text.splitlines()), series


def test_the_callers_a_front_names_are_bounded() -> None:
    """Past MAX_CALLERS distinct teams a front counts the rest as `other`: a flood of made-up ids makes no series."""
    import types

    from modelyard_server import front

    state = types.SimpleNamespace(name="minilm", _caller_counts={}, _callers=set())
    state._count_caller = lambda caller, status: front.App._count_caller(state, caller, status)  # type: ignore[arg-type]
    for i in range(front.MAX_CALLERS + 10):
        state._count_caller(f"team-{i}", 200)
    assert len(state._callers) == front.MAX_CALLERS
    assert ("other", 200) in state._caller_counts and ("team-70", 200) not in state._caller_counts
    assert front.request_caller([(b"x-modelyard-client", b"search.ci")]) == "search"
    assert front.request_caller([(b"x-modelyard-client", b"../etc")]) == "invalid"
    assert front.request_caller([]) == "none"
