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


def test_passes_on_several_threads_at_once_match_passes_one_at_a_time(encoder: Encoder) -> None:
    """What the model owner does with --model_instances: threads calling forward on the one model."""
    import threading

    import numpy as np

    batches = [[f"text {i} of batch {b}, " * (1 + (b + i) % 7) for i in range(1 + b % 5)] for b in range(8)]
    tokens = [encoder.tokenizer(texts) for texts in batches]
    alone = [encoder.forward(t) for t in tokens]
    together: dict[int, np.ndarray] = {}

    def run(b: int) -> None:
        for _ in range(3):
            together[b] = encoder.forward(tokens[b])

    threads = [threading.Thread(target=run, args=(b,)) for b in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for b, vectors in enumerate(alone):
        np.testing.assert_allclose(together[b], vectors, atol=1e-6)
