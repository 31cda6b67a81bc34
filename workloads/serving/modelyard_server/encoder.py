"""Sentence embeddings with torch: a sentence-transformers model directory, run without the library.

A sentence-transformers directory is a Hugging Face transformer plus a pooling config
(`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`). This encoder reads those, and
`forward` takes token ids that the front processes produced (tokenizer.py: ragged, one call per batch),
pads them once, runs the transformer under `torch.inference_mode()`, pools, and L2-normalises, so every
embedding has unit length whether or not the directory lists a Normalize module. `encode` (texts in)
is the same path in one process, for the tests and the benchmark's raw figure.
`tests/test_encoder.py` checks the result against sentence-transformers itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from .tokenizer import ModelDirError, TextTokenizer, Tokens, bundled_model_dir, model_info

__all__ = ["Encoded", "Encoder", "ModelDirError", "bundled_model_dir", "pad"]

SUPPORTED_MODULES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}
POOLING_MODES = ("mean", "cls", "max")


@dataclass(frozen=True)
class Encoded:
    vectors: np.ndarray  # float32 [n, dimensions], unit rows
    tokens: np.ndarray  # int32 [n]


def _pooling(model_dir: Path) -> str:
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        raise ModelDirError(f"{model_dir}: no modules.json (not a sentence-transformers model directory)")
    modules = json.loads(modules_file.read_text())
    unsupported = [m.get("type") for m in modules if m.get("type") not in SUPPORTED_MODULES]
    if unsupported:
        raise ModelDirError(f"{model_dir}: unsupported modules {unsupported}; supported: {sorted(SUPPORTED_MODULES)}")
    pooling = next((m for m in modules if m.get("type", "").endswith(".Pooling")), None)
    if pooling is None:
        return "mean"
    config = json.loads((model_dir / pooling["path"] / "config.json").read_text())
    for mode in POOLING_MODES:
        if config.get(f"pooling_mode_{mode}_tokens") or (mode == "cls" and config.get("pooling_mode_cls_token")):
            return mode
    raise ModelDirError(f"{model_dir}: pooling config names no mode this encoder supports ({', '.join(POOLING_MODES)})")


def pad(tokens: Tokens) -> tuple[np.ndarray, np.ndarray]:
    """Ragged ids to a [rows, longest] id matrix and its attention mask (zeros after each row's end)."""
    width = int(tokens.lengths.max()) if len(tokens.lengths) else 0
    mask = np.arange(width, dtype=np.int32)[None, :] < tokens.lengths[:, None]
    ids = np.zeros(mask.shape, dtype=np.int64)
    ids[mask] = tokens.ids  # row-major order is the rows' order, one after another
    return ids, mask.astype(np.int64)


class Encoder:
    """Token ids in, unit-length vectors out. `forward` keeps no state between calls (the model in eval
    mode, under inference_mode), so the model owner's instance threads call it at once; `threads` sets
    torch's threads for the whole process."""

    def __init__(self, model_dir: Path, device: str | None = None, threads: int | None = None):
        self.model_dir = Path(model_dir)
        info = model_info(self.model_dir)
        self.pooling = _pooling(self.model_dir)
        self.max_seq_length = info.max_seq_length
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = TextTokenizer(self.model_dir, self.max_seq_length)
        self.model = AutoModel.from_pretrained(str(self.model_dir)).to(self.device).eval()
        if self.device.type == "cuda":
            self.model = self.model.half()
        self.dimensions = int(self.model.config.hidden_size)

    def forward(self, tokens: Tokens) -> np.ndarray:
        """float32 [rows, dimensions] for ragged token ids."""
        if not len(tokens.lengths):
            return np.zeros((0, self.dimensions), np.float32)
        ids, mask = pad(tokens)
        cuda = self.device.type == "cuda"
        input_ids = torch.from_numpy(ids)
        attention = torch.from_numpy(mask)
        if cuda:
            input_ids = input_ids.pin_memory().to(self.device, non_blocking=True)
            attention = attention.pin_memory().to(self.device, non_blocking=True)
        with torch.inference_mode():
            hidden = self.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
            weights = attention.unsqueeze(-1).to(hidden.dtype)
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            elif self.pooling == "max":
                pooled = hidden.masked_fill(weights == 0, float("-inf")).max(dim=1).values
            else:
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            vectors = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
        return vectors.cpu().numpy()

    def encode(self, texts: list[str]) -> Encoded:
        tokens = self.tokenizer(texts)
        return Encoded(self.forward(tokens), tokens.lengths)
