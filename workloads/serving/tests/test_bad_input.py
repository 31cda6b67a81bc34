"""Bad input is the client's error: 4xx with a message that names the field, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from conftest import RunningServer

V2 = "/v2/models/minilm/infer"
V1 = "/v1/models/minilm:predict"
OPENAI = "/v1/embeddings"


def v2_input(**over: object) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"], **over}]}


CASES = [
    # (path, raw body or JSON, status, text the message must contain)
    (V1, b"{not json", 400, "(body): not valid JSON"),
    (V1, {"nope": 1}, 400, "instances: is required"),
    (V1, {"instances": "hello"}, 400, "instances: must be a list of texts (got str)"),
    (V1, {"instances": []}, 400, "instances: must list at least one text"),
    (V1, {"instances": ["ok", 3]}, 400, "instances[1]: must be a string (got int)"),
    (V1, {"instances": ["   "]}, 400, "instances[0]: must not be empty"),
    (V1, {"instances": [{"txt": "x"}]}, 400, 'instances[0]: an object must have a "text" field'),
    (V1, {"instances": ["x"] * 9}, 413, "instances: lists 9 texts; at most 8 per request"),
    (V1, {"instances": ["x" * 501]}, 413, "instances[0]: is 501 characters; at most 500"),
    (V2, b"{not json", 400, "(body): not valid JSON"),
    (V2, v2_input(datatype="FP32", data=[1.0]), 400, "inputs[0].datatype: must be BYTES for text (got 'FP32')"),
    (V2, v2_input(shape=[3]), 400, "inputs[0].shape: says 3 texts but data holds 1"),
    (V2, v2_input(shape=[1, 1]), 400, "inputs[0].shape: must be [n], one dimension"),
    (
        V2,
        {"inputs": [v2_input()["inputs"][0], v2_input()["inputs"][0]]},
        400,
        "inputs: must hold exactly one input (got 2)",
    ),
    (V2, {"inputs": "x"}, 400, "inputs: must be a list of inputs (got str)"),
    (V2, {"inputs": [1]}, 400, "inputs[0]: must be an object"),
    (V2, {"inputs": [v2_input()["inputs"][0]], "outputs": [{"name": "vec"}]}, 400, "outputs[0].name"),  # type: ignore[index]
    (V2, {"inputs": [v2_input()["inputs"][0]], "id": 7}, 400, "id: must be a string"),  # type: ignore[index]
    # A lone surrogate is not text: this request alone gets 400 (json.dumps writes it as \ud800).
    (
        V2,
        json.dumps(v2_input(data=["fine", "\ud800"], shape=[2])).encode(),
        400,
        "inputs[0].data[1]: holds a lone surrogate",
    ),
    (V1, json.dumps({"instances": ["ok", "a\udfffb"]}).encode(), 400, "instances[1]: holds a lone surrogate"),
    (OPENAI, b"{not json", 400, "(body): not valid JSON"),
    (OPENAI, {"input": "x"}, 400, "model: is required"),
    (OPENAI, {"model": "minilm"}, 400, "input: is required"),
    (OPENAI, {"model": "minilm", "input": [1, 2, 3]}, 400, "input: token arrays are not supported"),
    (
        OPENAI,
        {"model": "minilm", "input": "x", "encoding_format": "hex"},
        400,
        "encoding_format: must be float or base64",
    ),
    (
        OPENAI,
        {"model": "minilm", "input": "x", "dimensions": 128},
        400,
        "dimensions: this model produces 384 dimensions",
    ),
    (OPENAI, {"model": "gpt-9", "input": "x"}, 404, "model 'gpt-9' does not exist here"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_4xx_naming_the_field(
    server: RunningServer, path: str, body: object, status: int, message: str
) -> None:
    if isinstance(body, bytes):
        r = httpx.post(f"{server.url}{path}", content=body, headers={"content-type": "application/json"}, timeout=30)
    else:
        r = httpx.post(f"{server.url}{path}", json=body, timeout=30)
    assert r.status_code == status, r.text
    assert message in str(r.json()), r.text
    assert "Traceback" not in r.text


def test_openai_errors_use_openai_s_error_shape(server: RunningServer) -> None:
    error = httpx.post(f"{server.url}{OPENAI}", json={"model": "minilm", "input": ""}, timeout=30).json()["error"]
    assert error == {
        "message": "input: must not be empty",
        "type": "invalid_request_error",
        "param": "input",
        "code": None,
    }


def test_oversized_body_is_refused_before_reading(server: RunningServer) -> None:
    r = httpx.post(
        f"{server.url}{V1}", content=b"x" * 5_000_000, headers={"content-type": "application/json"}, timeout=30
    )
    assert r.status_code == 413 and "(body): 5000000 bytes" in r.text


@pytest.mark.parametrize(
    ("header", "value"),
    [("x-request-timeout", "soon"), ("x-request-timeout", "0"), ("x-stainless-read-timeout", "inf")],
)
def test_a_bad_deadline_header_is_400_naming_it(server: RunningServer, header: str, value: str) -> None:
    r = httpx.post(f"{server.url}{OPENAI}", json={"model": "minilm", "input": "x"}, headers={header: value}, timeout=30)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == header and f"must be a number of seconds more than 0 (got {value!r})" in error["message"]
