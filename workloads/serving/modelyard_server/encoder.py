"""Sentence embeddings with torch: a sentence-transformers model directory, run without the library.

A sentence-transformers directory is a Hugging Face transformer plus a pooling config
(`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`). This encoder reads those, and
`forward` takes token ids that the front processes produced (tokenizer.py: ragged, one call per batch),
lays them out once (`layout`), runs the transformer under `torch.inference_mode()`, pools each text's
own tokens, and L2-normalises, so every embedding has unit length whether or not the directory lists a
Normalize module. A BERT model runs on the batch's tokens without padding (`RaggedBert`: only attention
sees rows, and short texts share them); any other model is transformers' own, one padded text a row.
`encode` (texts in) is the same path in one process, for the tests and the benchmark's raw figure.
`tests/test_encoder.py` checks the result against sentence-transformers itself.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel

from .tokenizer import ModelDirError, TextTokenizer, Tokens, bundled_model_dir, model_info

__all__ = ["Encoded", "Encoder", "Layout", "ModelDirError", "RaggedBert", "bundled_model_dir", "layout"]

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


@dataclass(frozen=True)
class Layout:
    """Where a batch's ragged token ids go in the [rows, width] matrix the model runs on."""

    ids: np.ndarray  # int64 [rows, width], 0 where there is no token
    texts: np.ndarray  # int64 [rows, width]: the text each token belongs to; a distinct negative number elsewhere
    index: np.ndarray  # int64 [tokens]: each token's place in the flattened matrix, texts in order
    text_of_token: np.ndarray  # int64 [tokens]: each token's text, texts in order
    positions: np.ndarray  # int64 [tokens]: each token's position within its own text, texts in order


def layout(tokens: Tokens, share_rows: bool) -> Layout:
    """Rows as wide as the batch's longest text. Without `share_rows`, one text a row (padding to the
    longest); with it, short texts share a row (best fit, longest first), each attending only to itself
    (the mask built from `texts`), so the model computes fewer padded tokens and no row attends over more
    tokens than the longest text: on this kind of batch (8 sentences of 8 to 24 words) padding was about
    30 % of a padded matrix. Packing per batch is what the encoders built for throughput do (TEI's
    variable-length batches); attention stays torch's SDPA with a mask, so no new kernel."""
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
    texts = -1 - np.arange(rows * width, dtype=np.int64)  # padding attends to itself alone: no empty row
    texts[index] = text_of_token
    shape = (rows, width)
    return Layout(ids.reshape(shape), texts.reshape(shape), index, text_of_token, within)


class RaggedBert:
    """A BERT encoder (transformers' `BertModel`: absolute positions, post-LayerNorm, erf GELU) run on the
    batch's own tokens. Embeddings, projections, LayerNorms and the feed-forward take every text's tokens
    as one [tokens, hidden] matrix, with no padding; only attention sees rows (`Layout`: texts sharing a
    row, each attending to its own tokens through the mask). Padding was still 16 to 19 % of the rows on
    the benchmark's batches with rows shared, and about 80 % of a pass here is those matrix products (a
    16-text pass took 99 ms instead of 117 in transformers' own BertModel on one thread). TEI's FlashBert
    runs BERT this way on a GPU (backends/candle/src/models/flash_bert.rs, with flash attention over
    variable lengths); the weights are the model's own tensors, query, key and value joined into one
    projection. `tests/test_encoder.py` holds it to sentence-transformers, pooling mode by mode."""

    def __init__(self, model: Any):  # transformers' BertModel: submodules are attributes mypy cannot see
        config = model.config
        self.heads = int(config.num_attention_heads)
        self.hidden = int(config.hidden_size)
        self.eps = float(config.layer_norm_eps)
        e = model.embeddings
        self.words, self.places = e.word_embeddings.weight, e.position_embeddings.weight
        self.token_type = e.token_type_embeddings.weight[0]  # every token is of type 0, as transformers sets
        self.norm: tuple[torch.Tensor, torch.Tensor] = (e.LayerNorm.weight, e.LayerNorm.bias)
        self.layers: list[tuple[torch.Tensor, ...]] = []
        for layer in model.encoder.layer:
            projections = (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value)
            qkv_w = torch.cat([p.weight for p in projections])
            qkv_b = torch.cat([p.bias for p in projections])
            for i, p in enumerate(projections):  # the model's own become views of the joined: one copy in memory
                p.weight = torch.nn.Parameter(qkv_w[i * self.hidden : (i + 1) * self.hidden], requires_grad=False)
                p.bias = torch.nn.Parameter(qkv_b[i * self.hidden : (i + 1) * self.hidden], requires_grad=False)
            self.layers.append(
                (
                    qkv_w,
                    qkv_b,
                    layer.attention.output.dense.weight,
                    layer.attention.output.dense.bias,
                    layer.attention.output.LayerNorm.weight,
                    layer.attention.output.LayerNorm.bias,
                    layer.intermediate.dense.weight,
                    layer.intermediate.dense.bias,
                    layer.output.dense.weight,
                    layer.output.dense.bias,
                    layer.output.LayerNorm.weight,
                    layer.output.LayerNorm.bias,
                )
            )

    @staticmethod
    def runs(model: Any) -> bool:
        """Whether `model` is the architecture this class implements, and nothing more."""
        config = model.config
        return (
            type(model).__name__ == "BertModel"
            and config.model_type == "bert"
            and config.hidden_act == "gelu"
            and getattr(config, "position_embedding_type", "absolute") == "absolute"
            and not config.is_decoder
            and not getattr(config, "add_cross_attention", False)
        )

    def __call__(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        index: torch.Tensor,
        shape: tuple[int, int],
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """[tokens, hidden] for ragged `ids` and `positions`; `index` places each token in the [rows,
        width] `shape` attention runs on, under `mask` ([rows, 1, width, width], True where a token may
        attend; None when every row is one whole text)."""
        f = torch.nn.functional
        rows, width = shape
        heads, hidden = self.heads, self.hidden
        x = f.layer_norm(self.words[ids] + self.places[positions] + self.token_type, (hidden,), *self.norm, self.eps)
        for qkv_w, qkv_b, out_w, out_b, norm1_w, norm1_b, in_w, in_b, down_w, down_b, norm2_w, norm2_b in self.layers:
            qkv = f.linear(x, qkv_w, qkv_b)
            grid = qkv.new_zeros((rows * width, 3 * hidden))
            grid[index] = qkv
            q, k, v = grid.view(rows, width, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)
            attended = f.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
            attended = attended.reshape(rows * width, hidden)[index]
            x = f.layer_norm(x + f.linear(attended, out_w, out_b), (hidden,), norm1_w, norm1_b, self.eps)
            x = f.layer_norm(
                x + f.linear(f.gelu(f.linear(x, in_w, in_b)), down_w, down_b), (hidden,), norm2_w, norm2_b, self.eps
            )
        return x


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
        #: BERT runs on its tokens alone, short texts sharing rows (`RaggedBert`); other models padded.
        self.bert = RaggedBert(self.model) if RaggedBert.runs(self.model) else None
        self.packs = self.bert is not None

    def forward(self, tokens: Tokens) -> np.ndarray:
        """float32 [rows, dimensions] for ragged token ids."""
        n = len(tokens.lengths)
        if not n:
            return np.zeros((0, self.dimensions), np.float32)
        rows = layout(tokens, share_rows=self.packs)
        index, text_of_token, lengths = self._tensors(rows.index, rows.text_of_token, tokens.lengths.astype(np.int64))
        with torch.inference_mode():
            if self.bert is not None:
                ids, positions = self._tensors(tokens.ids.astype(np.int64), rows.positions)
                mask = None
                if len(rows.ids) < n or len(rows.index) < rows.ids.size:  # rows shared or padded
                    (texts,) = self._tensors(rows.texts)
                    mask = texts[:, None, :, None] == texts[:, None, None, :]
                ragged = self.bert(ids, positions, index, rows.ids.shape, mask).float()
            else:  # transformers' own model, one text a row, its padding mask
                grid, present = self._tensors(rows.ids, (rows.texts >= 0).astype(np.int64))
                hidden = self.model(input_ids=grid, attention_mask=present).last_hidden_state
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

    def _tensors(self, *arrays: np.ndarray) -> list[torch.Tensor]:
        """The arrays as tensors on the model's device (on a CPU, views of the same memory)."""
        tensors = [torch.from_numpy(a) for a in arrays]
        if self.device.type == "cuda":
            tensors = [t.pin_memory().to(self.device, non_blocking=True) for t in tensors]
        return tensors

    def encode(self, texts: list[str]) -> Encoded:
        tokens = self.tokenizer(texts)
        return Encoded(self.forward(tokens), tokens.lengths)
