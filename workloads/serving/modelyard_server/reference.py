"""A model version's drift reference: what the drift worker compares live traffic with.

    python -m modelyard_server.reference --model_dir DIR --texts FILE [--out PATH]

reads FILE (UTF-8, one text a line, blank lines skipped), encodes every text with the model in DIR (the
server's own encoder, so the reference is what this very version answers) and writes
`DIR/drift_reference.npz` (or PATH): `embeddings` (float32, one unit row per text), `chars` and `tokens`
(int32, per text, as the tap counts them). `modelyard model push --reference-texts FILE` runs this in the
serving environment before uploading, so the reference travels with the version and is listed, with its
sha256, in its manifest; the server verifies it with the rest (--verify_manifest) and the tap hands it to
the worker.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The file the server looks for in its model directory.
REFERENCE = "drift_reference.npz"
#: At least a drift window's worth of texts (the worker's default window), at most what the worker holds.
MIN_TEXTS = 200
MAX_TEXTS = 20_000


class ReferenceError(Exception):
    """A reference that cannot be built or read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Reference:
    embeddings: np.ndarray  # float32 [n, d]
    chars: np.ndarray  # int32 [n]
    tokens: np.ndarray  # int32 [n]

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, embeddings=self.embeddings, chars=self.chars, tokens=self.tokens)
        return buffer.getvalue()


def parse(data: bytes, source: str) -> Reference:
    """A reference from npz bytes, every array checked (no pickles: np.load refuses them by default)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("embeddings", "chars", "tokens") if k in npz.files}
    except (ValueError, OSError, EOFError) as exc:
        raise ReferenceError(f"{source}: not a readable .npz file ({exc})") from None
    missing = [k for k in ("embeddings", "chars", "tokens") if k not in arrays]
    if missing:
        raise ReferenceError(f"{source}: no {', '.join(missing)} array (it must hold embeddings, chars and tokens)")
    emb, chars, tokens = arrays["embeddings"], arrays["chars"], arrays["tokens"]
    if emb.dtype != np.float32 or emb.ndim != 2 or emb.shape[1] < 1:
        raise ReferenceError(f"{source}: embeddings must be float32 [texts, dimensions] (got {emb.dtype} {emb.shape})")
    n = emb.shape[0]
    if not MIN_TEXTS <= n <= MAX_TEXTS:
        raise ReferenceError(f"{source}: holds {n} texts; a reference needs {MIN_TEXTS} to {MAX_TEXTS}")
    for name, values in (("chars", chars), ("tokens", tokens)):
        if values.shape != (n,) or values.dtype.kind not in "iu" or (values < 0).any():
            raise ReferenceError(
                f"{source}: {name} must be {n} counts, one per embedding (got {values.dtype} {values.shape})"
            )
    if not np.isfinite(emb).all():
        raise ReferenceError(f"{source}: embeddings hold NaN or infinite values")
    return Reference(emb, chars.astype(np.int32), tokens.astype(np.int32))


def read_texts(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReferenceError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReferenceError(f"{path}: not UTF-8 (byte {exc.start})") from None
    texts = [line.strip() for line in text.splitlines() if line.strip()]
    if not MIN_TEXTS <= len(texts) <= MAX_TEXTS:
        raise ReferenceError(
            f"{path}: {len(texts)} texts; a reference needs {MIN_TEXTS} to {MAX_TEXTS}, one per line, "
            "drawn from the traffic this version is meant for"
        )
    return texts


def build(model_dir: Path, texts: list[str], batch: int = 64) -> Reference:
    from .encoder import Encoder

    encoder = Encoder(model_dir, device="cpu")
    vectors, tokens = [], []
    for start in range(0, len(texts), batch):
        encoded = encoder.encode(texts[start : start + batch])
        vectors.append(encoded.vectors)
        tokens.append(encoded.tokens)
    chars = np.fromiter((len(t) for t in texts), np.int32, len(texts))
    return Reference(np.concatenate(vectors).astype(np.float32), chars, np.concatenate(tokens).astype(np.int32))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelyard_server.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="the sentence-transformers directory of the version")
    parser.add_argument("--texts", required=True, help="UTF-8 text file, one text a line")
    parser.add_argument("--out", default=None, help=f"where to write (default: MODEL_DIR/{REFERENCE})")
    args = parser.parse_args(argv)
    model_dir = Path(args.model_dir)
    out = Path(args.out) if args.out else model_dir / REFERENCE
    from .tokenizer import ModelDirError

    try:
        texts = read_texts(Path(args.texts))
        reference = build(model_dir, texts)
        data = reference.to_bytes()
        out.write_bytes(data)
    except (ReferenceError, ModelDirError) as exc:
        print(f"reference: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"reference: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 2
    digest = hashlib.sha256(data).hexdigest()
    print(f"{out}: {len(texts)} texts, {reference.embeddings.shape[1]} dimensions, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
