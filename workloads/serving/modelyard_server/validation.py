"""Request validation: bad input is the client's error, and the message names the field.

Each function takes a decoded request and returns the texts to embed, or raises `BadRequest` with the
JSON path of the offending field and what is allowed. Nothing here touches the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
    flat = [d.decode("utf-8", "replace") if isinstance(d, bytes) else d for d in data]
    if shape[0] != len(flat):
        raise BadRequest("inputs[0].shape", f"says {shape[0]} texts but data holds {len(flat)}")
    _count(flat, "inputs[0].data", limits)
    return [_text(t, f"inputs[0].data[{i}]", limits) for i, t in enumerate(flat)]


@dataclass(frozen=True)
class EmbeddingsRequest:
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
    if any(isinstance(x, int | list) for x in items):
        raise BadRequest("input", "token arrays are not supported; send text")
    _count(items, "input", limits)
    texts = [_text(t, "input" if single else f"input[{i}]", limits) for i, t in enumerate(items)]
    fmt = payload.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest("encoding_format", f"must be float or base64 (got {fmt!r})")
    wanted = payload.get("dimensions")
    if wanted is not None and wanted != dimensions:
        raise BadRequest("dimensions", f"this model produces {dimensions} dimensions (got {wanted!r})")
    return EmbeddingsRequest(model, texts, single, fmt)
