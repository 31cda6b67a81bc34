"""The encoder against sentence-transformers itself, on the bundled model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from modelyard_server.encoder import Encoder, ModelDirError, bundled_model_dir, layout
from modelyard_server.tokenizer import Tokens


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


#: Lengths 3 to 256 tokens (the last truncated), so short texts share rows beside long ones.
MIXED = ["x", "The cat sat on the mat.", "word " * 400, "a b", "Embeddings map text to vectors."] + [
    "shard replica " * k for k in (1, 3, 9, 27, 60)
]


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
@pytest.mark.parametrize(
    "bert,packs",
    [(True, True), (True, False), (False, False)],
    ids=["ragged-bert-shared-rows", "ragged-bert-one-text-a-row", "transformers-padded"],
)
def test_a_mixed_batch_matches_sentence_transformers_one_text_at_a_time(
    encoder: Encoder, monkeypatch: pytest.MonkeyPatch, pooling: str, bert: bool, packs: bool
) -> None:
    """sentence-transformers' own Pooling module in each mode, each text encoded alone (no padding, no
    neighbours), against one batch of ours and each text alone through ours: a token attending across
    texts in a shared row, a wrong position, a padded token pooled, or a layer of RaggedBert that is not
    transformers' BertModel would each move a vector far more than 1e-5. Without RaggedBert the encoder
    runs transformers' own model, as it does for every other architecture."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    reference = SentenceTransformer(str(bundled_model_dir()), device="cpu")
    reference._modules["1"] = Pooling(encoder.dimensions, pooling_mode=pooling)
    reference._modules["2"] = Normalize()
    expected = np.stack([reference.encode([t])[0] for t in MIXED])
    monkeypatch.setattr(encoder, "pooling", pooling)
    monkeypatch.setattr(encoder, "packs", packs)
    if not bert:
        monkeypatch.setattr(encoder, "bert", None)
    tokens = encoder.tokenizer(MIXED)
    # Lengths 3, 9, 256, 4, 11, 5, 11, 29, 83, 182 tokens: shared, rows of 256 | 182 + the six shortest + 29 | 83.
    assert len(layout(tokens, share_rows=packs).ids) == (3 if packs else len(MIXED))
    np.testing.assert_allclose(encoder.forward(tokens), expected, atol=1e-5)
    alone = np.concatenate([encoder.forward(encoder.tokenizer([t])) for t in MIXED])  # one row, no mask
    np.testing.assert_allclose(alone, expected, atol=1e-5)


def test_the_bundled_model_runs_ragged_and_shares_rows(encoder: Encoder) -> None:
    assert encoder.bert is not None and encoder.packs


def test_layout_puts_each_token_once_in_rows_no_wider_than_the_longest_text() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        lengths = rng.integers(1, 40, rng.integers(1, 30)).astype(np.int32)
        ids = rng.integers(1, 30000, int(lengths.sum())).astype(np.int32)
        rows = layout(Tokens(ids, lengths), share_rows=True)
        assert rows.ids.shape[1] == lengths.max()
        assert len(rows.ids) <= len(lengths)
        assert len(set(rows.index.tolist())) == len(ids)  # no two tokens in one place
        np.testing.assert_array_equal(rows.ids.reshape(-1)[rows.index], ids)
        starts = np.cumsum(lengths) - lengths
        for text, (start, length) in enumerate(zip(starts, lengths, strict=True)):
            places = rows.index[start : start + length]
            assert np.all(np.diff(places) == 1) and places[0] // rows.ids.shape[1] == places[-1] // rows.ids.shape[1]
            np.testing.assert_array_equal(rows.positions[start : start + length], np.arange(length))
            assert np.all(rows.texts.reshape(-1)[places] == text)
        padding = np.setdiff1d(np.arange(rows.ids.size), rows.index)
        assert np.all(rows.texts.reshape(-1)[padding] < 0) and len(set(rows.texts.reshape(-1)[padding])) == len(padding)
    alone = layout(Tokens(np.ones(10, np.int32), np.array([4, 3, 3], np.int32)), share_rows=False)
    assert alone.ids.shape == (3, 4)
    shared = layout(Tokens(np.ones(10, np.int32), np.array([4, 3, 3], np.int32)), share_rows=True)
    assert shared.ids.shape == (3, 4)  # 3 + 3 does not fit in 4
    shared = layout(Tokens(np.ones(12, np.int32), np.array([6, 3, 3], np.int32)), share_rows=True)
    assert shared.ids.shape == (2, 6)
