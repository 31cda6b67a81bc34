"""The encoder against sentence-transformers itself, on the bundled model."""

from __future__ import annotations

import math

import pytest
from modelyard_server.encoder import Encoder, ModelDirError, bundled_model_dir


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(bundled_model_dir(), device="cpu")


def test_matches_sentence_transformers(encoder: Encoder) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["The cat sat on the mat.", "Embeddings map text to vectors.", "x"]
    reference = SentenceTransformer(str(bundled_model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    ours = encoder.encode(texts)
    for mine, theirs in zip(ours.vectors, reference.tolist(), strict=True):
        assert sum(a * b for a, b in zip(mine, theirs, strict=True)) > 0.9999
    assert ours.tokens[2] == 3  # [CLS] x [SEP]


def test_unit_length_and_truncation(encoder: Encoder) -> None:
    long = "word " * 2000
    out = encoder.encode([long])
    assert out.tokens == [256]  # max_seq_length of the model
    assert math.isclose(math.sqrt(sum(v * v for v in out.vectors[0])), 1.0, abs_tol=1e-5)


def test_a_directory_that_is_not_a_model_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelDirError, match=r"no config\.json"):
        Encoder(tmp_path)
