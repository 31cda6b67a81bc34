"""What real clients send, over real HTTP: openai-python, tritonclient (JSON and binary tensors), and
the edges of HTTP they reach (chunked and gzip bodies, no Content-Type, model lists)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import tritonclient.http as triton
from conftest import RunningServer, start, stop

TEXTS = ["The cat sat on the mat.", "A feline rested on the rug.", "Quarterly revenue grew by four percent."]
V1 = "/v1/models/minilm:predict"
V2 = "/v2/models/minilm/infer"


def reference(server: RunningServer, texts: list[str]) -> np.ndarray:
    r = httpx.post(f"{server.url}{V1}", json={"instances": texts}, timeout=60)
    return np.array(r.json()["predictions"], dtype=np.float32)


@pytest.fixture
def oai(server: RunningServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    yield client
    client.close()


def test_openai_python_embeddings_match_v1(server: RunningServer, oai: openai.OpenAI) -> None:
    # openai-python asks for base64 by default and decodes it itself.
    response = oai.embeddings.create(model="minilm", input=TEXTS)
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    np.testing.assert_allclose(got, reference(server, TEXTS), atol=1e-6)
    assert response.usage.prompt_tokens == response.usage.total_tokens > len(TEXTS)
    floats = oai.embeddings.create(model="minilm", input="hello", encoding_format="float")
    assert len(floats.data[0].embedding) == 384


def test_openai_python_lists_and_retrieves_the_model(server: RunningServer, oai: openai.OpenAI) -> None:
    assert [m.id for m in oai.models.list()] == ["minilm"]
    model = oai.models.retrieve("minilm")
    assert model.id == "minilm" and model.object == "model" and model.owned_by == "modelyard"
    # KServe's shapes are still there beside OpenAI's.
    assert httpx.get(f"{server.url}/v1/models", timeout=10).json()["models"] == ["minilm"]
    assert httpx.get(f"{server.url}/v1/models/minilm", timeout=10).json()["ready"] is True


def test_openai_python_reads_every_error(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        oai.embeddings.create(model="minilm", input=["ok", ""])
    assert bad.value.param == "input[1]" and bad.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as missing:
        oai.embeddings.create(model="gpt-9", input="x")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.APIStatusError) as big:
        oai.embeddings.create(model="minilm", input=["x"] * 9)
    assert big.value.status_code == 413 and big.value.param == "input"
    assert "at most 8 per request" in big.value.message


def test_tritonclient_json_and_binary(server: RunningServer) -> None:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("minilm")
        meta = client.get_model_metadata("minilm")
        assert meta["inputs"][0]["datatype"] == "BYTES" and meta["outputs"][0]["shape"] == [-1, 384]
        expected = reference(server, TEXTS)
        for binary_in in (False, True):
            for binary_out in (False, True):
                text = triton.InferInput("text", [len(TEXTS)], "BYTES")
                text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=np.object_), binary_data=binary_in)
                wanted = triton.InferRequestedOutput("embedding", binary_data=binary_out)
                result = client.infer("minilm", [text], outputs=[wanted], request_id="r-1")
                got = result.as_numpy("embedding")
                assert got is not None and got.shape == (3, 384) and got.dtype == np.float32
                np.testing.assert_allclose(got, expected, atol=1e-6)
                assert result.get_response()["id"] == "r-1"
    finally:
        client.close()


def test_v2_json_without_a_content_type(server: RunningServer) -> None:
    body = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}).encode()
    r = httpx.post(f"{server.url}{V2}", content=body, headers={"content-type": ""}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"] == [1, 384]


def test_a_gzip_body_is_read_and_the_cap_holds_after_decompression(server: RunningServer) -> None:
    body = gzip.compress(json.dumps({"instances": TEXTS}).encode())
    r = httpx.post(f"{server.url}{V1}", content=body, headers={"content-encoding": "gzip"}, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["predictions"], np.float32), reference(server, TEXTS), atol=1e-6)
    bomb = gzip.compress(b" " * 5_000_000)  # 5 KB on the wire, 5 MB inside
    assert len(bomb) < 20_000
    r = httpx.post(f"{server.url}{V1}", content=bomb, headers={"content-encoding": "gzip"}, timeout=30)
    assert r.status_code == 413 and "after gzip decompression" in r.text
    r = httpx.post(f"{server.url}{V1}", content=b"not gzip", headers={"content-encoding": "gzip"}, timeout=30)
    assert r.status_code == 400 and "not valid gzip" in r.text
    r = httpx.post(f"{server.url}{V1}", content=b"{}", headers={"content-encoding": "br"}, timeout=30)
    assert r.status_code == 415 and "use gzip or identity" in r.text


def test_a_chunked_body_obeys_the_limit(server: RunningServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(50):
            yield b"x" * 100_000

    r = httpx.post(f"{server.url}{V1}", content=chunks(), timeout=30)  # no Content-Length: chunked
    assert r.status_code == 413 and "(body): more than" in r.text
    ok = httpx.post(f"{server.url}{V1}", content=iter([json.dumps({"instances": ["x"]}).encode()]), timeout=30)
    assert ok.status_code == 200


def test_openai_errors_are_openai_shaped_for_overload(tmp_path: Path) -> None:
    server = start(tmp_path, "--max_queue", "4", "--max_batch_size", "2", "--max_inputs", "4", "--workers", "1")
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        import concurrent.futures

        def one(i: int) -> object:
            try:
                return client.embeddings.create(model="minilm", input=[f"text {i} {j}" for j in range(4)])
            except openai.APIStatusError as exc:
                return exc

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            results = list(pool.map(one, range(64)))
        refused = [r for r in results if isinstance(r, openai.APIStatusError)]
        assert refused, "a 4-text queue must refuse some of 64 concurrent requests"
        for exc in refused:
            assert exc.status_code == 503 and exc.response.headers["retry-after"] == "1"
            assert isinstance(exc.body, dict) and exc.body["message"].startswith("queue full (")
            assert {k: v for k, v in exc.body.items() if k != "message"} == {
                "type": "server_error",
                "param": None,
                "code": "overloaded",
            }
        client.close()
    finally:
        assert stop(server) == 0


def test_max_inputs_the_queue_cannot_hold_is_refused_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import SERVING

    done = subprocess.run(
        [sys.executable, "-m", "modelyard_server", "--max_inputs", "64", "--max_queue", "100", "--workers", "2"],
        cwd=SERVING,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--max_inputs 64 is more than a front can queue (--max_queue 100 over 2 workers = 50 texts each)" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
