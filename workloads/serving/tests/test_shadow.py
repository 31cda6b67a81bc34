"""Shadow comparison: the tap's keyed sampling (tap.py), the worker's join of two versions' answers to the same
texts and its series (drift_worker.py), and the verdict (shadow.py). On the bundled model's real embeddings:
bench_shadow.py (int8, truncation and another pooling rejected, an identical candidate accepted)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from conftest import call
from modelyard_server import metrics, shadow
from modelyard_server.drift_worker import App, Worker, WorkerSettings
from modelyard_server.tap import KEY_RANGE, Tap, TapSettings, sample_keys, samples_body


def tap(share: float) -> Tap:
    return Tap(TapSettings("http://127.0.0.1:9/v1/samples", share, "1", capacity=100_000), "minilm", 4, metrics.Tally())


def test_copies_of_a_request_are_sampled_alike_and_keyed_alike() -> None:
    primary, shadow_tap = tap(0.1), tap(0.1)
    vectors, tokens = np.ones((10, 4), np.float32), np.full(10, 3, np.int32)
    for i in range(1000):
        rid = f"7f5c{i:04x}-0c4e-4c1d-9a55-3f1d2c1b{i:04x}".encode()
        primary.offer([f"text {j}" for j in range(10)], vectors, tokens, rid)
        shadow_tap.offer([f"text {j}" for j in range(10)], vectors, tokens, rid)
    assert primary.count == shadow_tap.count and 850 < primary.count < 1150, primary.count  # 10 % of 10,000
    assert np.array_equal(primary.keys[: primary.count], shadow_tap.keys[: shadow_tap.count])
    assert (primary.keys[: primary.count] < 0.1 * KEY_RANGE).all()
    # A text sent in every request (the same words, another request) is sampled at the share, not always or never.
    same = tap(0.1)
    for i in range(2000):
        same.offer(["ping"], vectors[:1], tokens[:1], b"request-%d" % i)
    assert 150 < same.count < 250, same.count
    document = orjson.loads(primary.payload(3))
    assert document["keys"] == primary.keys[:3].tolist()


def test_a_request_without_an_id_is_sampled_by_gaps_and_sent_without_keys() -> None:
    t = tap(1.0)
    t.offer(["a", "b"], np.ones((2, 4), np.float32), np.ones(2, np.int32))
    t.offer(["c"], np.ones((1, 4), np.float32), np.ones(1, np.int32), b"req-1")
    assert orjson.loads(t.payload(3))["keys"] == [None, None, sample_keys(b"req-1", 1)[0]]


def body(version: str, vectors: np.ndarray, keys: list[Any]) -> bytes:
    n = len(vectors)
    return samples_body("minilm", version, vectors, np.full(n, 10), np.full(n, 3), keys)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def answers(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=(n, d))).astype(np.float32)


def judged(candidate: np.ndarray, n: int = 150) -> shadow.Comparison:
    """Stable answers n texts twice (the second time off by float rounding), the candidate once; the worker's join."""
    worker = Worker(WorkerSettings(window=200))
    stable = answers(n, d=candidate.shape[1])
    keys = sample_keys(b"request", n)
    worker.take_samples(body("2", candidate[:1], [None]))  # the shadow's first sample: the model has two versions
    rounding = np.random.default_rng(1).normal(scale=1e-8, size=stable.shape).astype(np.float32)
    for version, vectors in (("1", stable), ("1", stable + rounding), ("2", candidate[:n])):
        assert worker.take_samples(body(version, vectors, keys))["accepted"] == n
    return worker.compare_versions()[("minilm", "1", "2")]


def test_an_identical_candidate_is_the_same_and_a_changed_one_differs() -> None:
    stable = answers(150)
    same = judged(stable.copy())
    assert (same.verdict, same.exceeding, same.pairs) == ("same", 0, 150), same
    assert same.knn_overlap == 1.0 and same.cosine["0.01"] > 0.9999
    # One text in ten answered differently: beyond the noise for 15 of 150, at most 2 % allowed.
    changed = stable.copy()
    changed[::10] = answers(15, seed=9)
    differs = judged(changed)
    assert differs.verdict == "differs" and differs.exceeding == 15, differs
    assert "15 of 150 texts answered beyond the stable version's own noise" in differs.reason
    # Too few pairs to say "same": held, with what it waits for.
    few = judged(stable.copy(), n=40)
    assert few.verdict == "hold" and "40 of the 100" in few.reason


def test_neighbourhoods_that_move_differ_even_when_no_answer_passes_the_threshold() -> None:
    """A noisy stable version (a wide threshold) and a candidate whose answers stay under it but whose texts'
    neighbours are others: the overlap decides."""
    noise = shadow.Noise(pairs=150, threshold=0.05, knn_overlap=0.97)
    result, reason, p_value, _ = shadow.verdict(150, 0, 0.80, noise)
    assert result == "differs" and p_value == 1.0
    assert reason == "nearest neighbours kept 80.0%; the stable version keeps 97.0% against itself"
    assert shadow.verdict(150, 0, 0.93, noise)[0] == "same"  # within KNN_TOLERANCE of the floor
    assert shadow.verdict(150, 8, 0.97, noise)[0] == "hold"  # 8 of 150: neither clearly


def test_without_a_noise_floor_there_is_no_verdict() -> None:
    worker = Worker(WorkerSettings(window=200))
    stable = answers(120)
    keys = sample_keys(b"r", 120)
    worker.take_samples(body("2", stable[:1], [None]))
    worker.take_samples(body("1", stable, keys))
    worker.take_samples(body("2", stable, keys))
    c = worker.compare_versions()[("minilm", "1", "2")]
    assert c.verdict == "hold" and c.noise is None and "no noise floor yet" in c.reason


def test_the_series_name_both_orders_and_leave_with_the_version() -> None:
    worker = Worker(WorkerSettings(window=200, idle_seconds=60))
    stable = answers(120)
    keys = sample_keys(b"r", 120)
    # A model alone keeps no answers: version 1's copies are not joined until version 2 has samples.
    worker.take_samples(body("1", stable, keys))
    worker.take_samples(body("1", stable, keys))
    assert not worker.pairing.answers and not worker.pairing.noise
    worker.take_samples(body("2", stable[:1], [None]))
    for version in ("1", "1", "2"):
        worker.take_samples(body(version, stable, keys))
    worker.compare_versions()
    text = App(worker)
    code, exposition = call(text, "GET", "/metrics")
    lines = exposition.decode()
    assert code == 200
    for version, other in (("1", "2"), ("2", "1")):
        labels = f'model="minilm",model_version="{version}",other_version="{other}"'
        assert f"modelyard_shadow_pairs{{{labels}}} 120.0" in lines
        assert f'modelyard_shadow_verdict{{{labels},verdict="same"}} 1.0' in lines
        assert f'modelyard_shadow_verdict{{{labels},verdict="differs"}} 0.0' in lines
    assert 'modelyard_shadow_noise_pairs{model="minilm",model_version="1"} 120.0' in lines
    worker.streams[("minilm", "2")].last_seen -= 3600
    assert worker.forget_idle() == [("minilm", "2")]
    _, after = call(text, "GET", "/metrics")
    assert "other_version" not in after.decode() and "modelyard_shadow_noise_pairs" in after.decode()
    worker.streams[("minilm", "1")].last_seen -= 3600
    assert worker.forget_idle() == [("minilm", "1")] and not worker.pairing.answers  # nothing of the model held


def test_each_text_makes_one_pair_per_version_and_another_space_none() -> None:
    """A text answered by stable twice and the candidate once is one candidate pair, not two (a window holds each
    text once); a version of other dimensions is never compared."""
    pairing = shadow.Pairing(window=10, max_rings=8)
    v = answers(1)
    for version in ("1", "1", "2"):
        pairing.add("m", version, [7], v)
    pairing.add("m", "3", [7], answers(1, d=8))
    assert pairing.candidates[("m", "1", "2")].filled == 1 and pairing.noise[("m", "1")].filled == 1
    assert not [k for k in pairing.candidates if "3" in k]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([1, 2], "keys: must be a list of 4 entries"),
        ([1, 2, 3, -1], "each null or a whole number from 0 to 2^63 - 1"),
        ([1, 2, 3, 1 << 63], "each null or a whole number from 0 to 2^63 - 1"),
        ([1, 2, 3, "4"], "each null or a whole number"),
        ("1,2,3,4", "keys: must be a list of 4 entries"),
    ],
)
def test_the_worker_refuses_bad_keys_by_name(keys: Any, message: str) -> None:
    code, answer = call(App(Worker(WorkerSettings(window=20))), "POST", "/v1/samples", body("1", answers(4), keys))
    assert code == 400 and message in answer["error"], answer
