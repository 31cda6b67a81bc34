"""Sentence embeddings with torch: a sentence-transformers model directory, run without the library.

A sentence-transformers directory is a Hugging Face transformer plus a pooling config
(`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`). This encoder reads those, and
`forward` takes token ids that the front processes produced (tokenizer.py: ragged, one call per batch),
lays them out once (`layout`: short texts share a row where the model allows it), runs the transformer
under `torch.inference_mode()`, pools each text's own tokens, and L2-normalises, so every
embedding has unit length whether or not the directory lists a Normalize module. `encode` (texts in)
is the same path in one process, for the tests and the benchmark's raw figure.
`tests/test_encoder.py` checks the result against sentence-transformers itself.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from .tokenizer import ModelDirError, TextTokenizer, Tokens, bundled_model_dir, model_info

__all__ = ["Encoded", "Encoder", "Layout", "ModelDirError", "bundled_model_dir", "layout"]

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


#: Model types whose rows may hold several texts (`Layout` with shared rows): absolute positions from
#: 0 that the model takes as `position_ids`, and an attention that takes a [rows, 1, width, width] mask.
#: RoBERTa-style models count positions from their padding index and others take no `position_ids`,
#: so they get one text a row, padded.
PACKABLE_MODEL_TYPES = frozenset({"bert"})


@dataclass(frozen=True)
class Layout:
    """Where a batch's ragged token ids go in the [rows, width] matrix the model runs on."""

    ids: np.ndarray  # int64 [rows, width], 0 where there is no token
    positions: np.ndarray  # int64 [rows, width]: each token's position within its own text
    texts: np.ndarray  # int64 [rows, width]: the text each token belongs to; a distinct negative number elsewhere
    index: np.ndarray  # int64 [tokens]: each token's place in the flattened matrix, texts in order
    text_of_token: np.ndarray  # int64 [tokens]: each token's text, texts in order


def layout(tokens: Tokens, share_rows: bool) -> Layout:
    """Rows as wide as the batch's longest text. Without `share_rows`, one text a row (padding to the
    longest); with it, short texts share a row (best fit, longest first), each attending only to itself
    (the mask built from `texts`), so the model computes fewer padded tokens and no row attends over more
    tokens than the longest text: on this kind of batch (8 sentences of 8 to 24 words) padding was about
    30 % of a padded matrix. Packing per batch is what the encoders built for throughput do (TEI's
    variable-length batches); here it stays within the model's own attention, so no new kernel."""
    lengths = tokens.lengths.astype(np.int64)
    n = len(lengths)
    width = int(lengths.max())
    row = np.arange(n, dtype=np.int64)
    offset = np.zeros(n, dtype=np.int64)
    rows = n
    if share_rows:  # best fit, longest first: each text goes to the row it fills most closely
        rows = 0
        rooms: list[tuple[int, int]] = []  # (room left, row), sorted; rows too full for any text dropped
        smallest = int(lengths.min())
        for i in np.argsort(-lengths, kind="stable").tolist():
            length = int(lengths[i])
            k = bisect.bisect_left(rooms, (length, -1))
            if k < len(rooms):
                room, r = rooms.pop(k)
            else:
                room, r = width, rows
                rows += 1
            row[i], offset[i] = r, width - room
            if room - length >= smallest:
                bisect.insort(rooms, (room - length, r))
    starts = np.cumsum(lengths) - lengths
    within = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)
    index = np.repeat(row * width + offset, lengths) + within
    text_of_token = np.repeat(np.arange(n, dtype=np.int64), lengths)
    ids = np.zeros(rows * width, dtype=np.int64)
    ids[index] = tokens.ids
    positions = np.zeros(rows * width, dtype=np.int64)
    positions[index] = within
    texts = -1 - np.arange(rows * width, dtype=np.int64)  # padding attends to itself alone: no empty row
    texts[index] = text_of_token
    shape = (rows, width)
    return Layout(ids.reshape(shape), positions.reshape(shape), texts.reshape(shape), index, text_of_token)


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
        config = self.model.config
        #: Several texts to a row (`layout`): models whose positions and attention mask allow it.
        self.packs = config.model_type in PACKABLE_MODEL_TYPES and config._attn_implementation == "sdpa"

    def forward(self, tokens: Tokens) -> np.ndarray:
        """float32 [rows, dimensions] for ragged token ids."""
        n = len(tokens.lengths)
        if not n:
            return np.zeros((0, self.dimensions), np.float32)
        rows = layout(tokens, share_rows=self.packs)
        arrays = [rows.ids, rows.positions, rows.texts, rows.index, rows.text_of_token, tokens.lengths.astype(np.int64)]
        tensors = [torch.from_numpy(a) for a in arrays]
        if self.device.type == "cuda":
            tensors = [t.pin_memory().to(self.device, non_blocking=True) for t in tensors]
        ids, positions, texts, index, text_of_token, lengths = tensors
        with torch.inference_mode():
            if len(rows.ids) < n:  # texts share rows: each attends to its own tokens, positions restart
                mask = texts[:, None, :, None] == texts[:, None, None, :]
                hidden = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
            else:  # one text a row: the model's own padding mask (none at all when nothing is padded)
                hidden = self.model(input_ids=ids, attention_mask=(texts >= 0).long()).last_hidden_state
            # Every text's tokens, in order, without padding: [tokens, dimensions].
            ragged = hidden.reshape(-1, hidden.shape[-1])[index].float()
            if self.pooling == "cls":
                pooled = ragged[torch.cumsum(lengths, 0) - lengths]
            elif self.pooling == "max":
                spread = text_of_token[:, None].expand(-1, ragged.shape[1])
                pooled = ragged.new_zeros((n, ragged.shape[1])).scatter_reduce_(
                    0, spread, ragged, "amax", include_self=False
                )
            else:
                sums = ragged.new_zeros((n, ragged.shape[1])).index_add_(0, text_of_token, ragged)
                pooled = sums / lengths[:, None].float()
            vectors = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return vectors.cpu().numpy()

    def encode(self, texts: list[str]) -> Encoded:
        tokens = self.tokenizer(texts)
        return Encoded(self.forward(tokens), tokens.lengths)
