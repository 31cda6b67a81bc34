"""Request validation: bad input is the client's error, and the message names the field.

Each function takes a decoded request and returns the texts to embed, or raises `BadRequest` with the
JSON path of the offending field and what is allowed. Nothing here touches the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple


class BadRequest(ValueError):
    """A client error: `field` is the JSON path of the problem, `status` the HTTP status to answer."""

    def __init__(self, field: str, message: str, status: int = 400):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_inputs: int = 64
    max_chars: int = 8192


def _text(value: Any, field: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise BadRequest(field, f"must be a string (got {type(value).__name__})")
    if not value.strip():
        raise BadRequest(field, "must not be empty")
    if len(value) > limits.max_chars:
        raise BadRequest(field, f"is {len(value)} characters; at most {limits.max_chars} are allowed", 413)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start : exc.end].encode("unicode_escape").decode()
            raise BadRequest(field, f"holds a lone surrogate ({bad}) at character {exc.start}: not text") from None
    return value


def _count(items: list[Any], field: str, limits: Limits) -> None:
    if not items:
        raise BadRequest(field, "must list at least one text")
    if len(items) > limits.max_inputs:
        raise BadRequest(field, f"lists {len(items)} texts; at most {limits.max_inputs} per request", 413)


def v1_texts(payload: Any, limits: Limits) -> list[str]:
    """KServe v1: `{"instances": ["text", ...]}` or `{"instances": [{"text": "..."}, ...]}`."""
    if not isinstance(payload, Mapping):
        raise BadRequest("(body)", 'must be a JSON object such as {"instances": ["some text"]}')
    if "instances" not in payload:
        raise BadRequest("instances", 'is required: {"instances": ["some text"]}')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise BadRequest("instances", f"must be a list of texts (got {type(instances).__name__})")
    _count(instances, "instances", limits)
    texts = []
    for i, item in enumerate(instances):
        if isinstance(item, Mapping):
            if "text" not in item:
                raise BadRequest(f"instances[{i}]", 'an object must have a "text" field')
            texts.append(_text(item["text"], f"instances[{i}].text", limits))
        else:
            texts.append(_text(item, f"instances[{i}]", limits))
    return texts


def v2_texts(inputs: list[Any], limits: Limits) -> list[str]:
    """Open Inference Protocol v2: one BYTES input of shape [n] whose data are n strings.

    `inputs` are (name, datatype, shape, data) tuples, however the request was decoded."""
    if len(inputs) != 1:
        raise BadRequest("inputs", f"must hold exactly one input (got {len(inputs)})")
    _name, datatype, shape, data = inputs[0]
    if datatype != "BYTES":
        raise BadRequest("inputs[0].datatype", f"must be BYTES for text (got {datatype!r})")
    if not isinstance(shape, list | tuple) or len(shape) != 1 or not all(isinstance(d, int) for d in shape):
        raise BadRequest("inputs[0].shape", f"must be [n], one dimension (got {shape!r})")
    if not isinstance(data, list):
        raise BadRequest("inputs[0].data", "must be a list of strings")
    flat = data
    if shape[0] != len(flat):
        raise BadRequest("inputs[0].shape", f"says {shape[0]} texts but data holds {len(flat)}")
    _count(flat, "inputs[0].data", limits)
    return [_text(t, f"inputs[0].data[{i}]", limits) for i, t in enumerate(flat)]


def _bytes_elements(raw: bytes, field: str) -> list[str]:
    """The v2 binary encoding of BYTES: each element a 4-byte little-endian length, then its bytes."""
    texts: list[str] = []
    at = 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise BadRequest(f"{field}.data", f"binary data ends inside the length of element {len(texts)}")
        size = int.from_bytes(raw[at : at + 4], "little")
        at += 4
        if at + size > len(raw):
            raise BadRequest(f"{field}.data", f"element {len(texts)} claims {size} bytes; {len(raw) - at} remain")
        try:
            texts.append(raw[at : at + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(f"{field}.data[{len(texts)}]", "is not valid UTF-8") from None
        at += size
    return texts


class V2Request(NamedTuple):  # a NamedTuple: built once per request, cheaper than a frozen dataclass
    id: str
    texts: list[str]
    binary_output: bool


def _parameters(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest(field, f"must be an object (got {type(value).__name__})")
    return value


def v2_request(payload: Any, binary: bytes, limits: Limits) -> V2Request:
    """A whole v2 inference request: JSON inputs, or binary tensors after the JSON header (`binary` holds
    the bytes after it), and whether the client asked for a binary output."""
    if not isinstance(payload, Mapping):
        raise BadRequest("(body)", 'must be a JSON object such as {"inputs": [{"name": "text", ...}]}')
    request_id = payload.get("id", "")
    if not isinstance(request_id, str):
        raise BadRequest("id", f"must be a string (got {type(request_id).__name__})")
    inputs = payload.get("inputs")
    if inputs is None:
        raise BadRequest("inputs", 'is required: [{"name": "text", "datatype": "BYTES", "shape": [n], "data": [...]}]')
    if not isinstance(inputs, list):
        raise BadRequest("inputs", f"must be a list of inputs (got {type(inputs).__name__})")
    decoded = []
    offset = 0
    for i, item in enumerate(inputs):
        if not isinstance(item, Mapping):
            raise BadRequest(f"inputs[{i}]", "must be an object with name, datatype, shape and data")
        size = _parameters(item.get("parameters"), f"inputs[{i}].parameters").get("binary_data_size")
        if size is None:
            data = item.get("data")
        else:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise BadRequest(f"inputs[{i}].parameters.binary_data_size", "must be a byte count")
            if offset + size > len(binary):
                raise BadRequest(
                    f"inputs[{i}].parameters.binary_data_size",
                    f"{size} bytes, but {len(binary) - offset} follow the header",
                )
            data = _bytes_elements(binary[offset : offset + size], f"inputs[{i}]")
            offset += size
        decoded.append((item.get("name"), item.get("datatype"), item.get("shape"), data))
    if offset != len(binary):
        raise BadRequest("(body)", f"{len(binary) - offset} bytes after the header that no input claims")
    texts = v2_texts(decoded, limits)
    binary_output = _parameters(payload.get("parameters"), "parameters").get("binary_data_output") is True
    outputs = payload.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise BadRequest("outputs", f"must be a list (got {type(outputs).__name__})")
        for i, output in enumerate(outputs):
            if not isinstance(output, Mapping) or output.get("name") != "embedding":
                raise BadRequest(f"outputs[{i}].name", "this model has one output, 'embedding'")
            wanted = _parameters(output.get("parameters"), f"outputs[{i}].parameters")
            if "binary_data" in wanted:
                binary_output = wanted["binary_data"] is True
    return V2Request(request_id, texts, binary_output)


class EmbeddingsRequest(NamedTuple):
    model: str
    texts: list[str]
    single: bool
    encoding_format: str


def openai_request(payload: Any, dimensions: int, limits: Limits) -> EmbeddingsRequest:
    """OpenAI `POST /v1/embeddings`: `{"model": ..., "input": "text" | ["text", ...]}`."""
    if not isinstance(payload, Mapping):
        raise BadRequest("(body)", 'must be a JSON object such as {"model": "...", "input": "some text"}')
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model", "is required: the name of the model to use")
    if "input" not in payload:
        raise BadRequest("input", "is required: a string or a list of strings")
    raw = payload["input"]
    single = isinstance(raw, str)
    items = [raw] if single else raw
    if not isinstance(items, list):
        raise BadRequest("input", f"must be a string or a list of strings (got {type(raw).__name__})")
    for x in items:
        if not isinstance(x, str):
            if any(isinstance(y, (int, list)) for y in items):
                raise BadRequest("input", "token arrays are not supported; send text")
            break
    _count(items, "input", limits)
    texts = [_text(t, "input" if single else f"input[{i}]", limits) for i, t in enumerate(items)]
    fmt = payload.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest("encoding_format", f"must be float or base64 (got {fmt!r})")
    wanted = payload.get("dimensions")
    if wanted is not None and wanted != dimensions:
        raise BadRequest("dimensions", f"this model produces {dimensions} dimensions (got {wanted!r})")
    return EmbeddingsRequest(model, texts, single, fmt)
