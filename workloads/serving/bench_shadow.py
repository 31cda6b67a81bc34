"""Shadow benchmark: the shadow comparison (modelyard_server/shadow.py) on the bundled model's real embeddings,
through the drift worker's own intake and join (tap payloads with keys, as the taps send them). Prints figures;
the target: a changed candidate rejected (`differs`) and an identical one accepted (`same`), in every window.

Traffic is texts of one to eight sentences (topics.py), so that some are longer than a truncated candidate
reads. The stable version answers each window twice, in batches of different companions (the primary, and
the copy the route mirrors to the stable Service): its noise floor. Each candidate answers the same texts in
batches of yet other companions:
- identical: the same model, another encoder instance;
- int8: the same model with torch's dynamic int8 quantisation of its linear layers (the usual CPU recipe);
- truncated: the same model reading at most 64 tokens of a text (the model's own limit is 256);
- cls-pooling: the same model pooled by its first token instead of the mean of its tokens.

Run it with the serving environment's python:

    python bench_shadow.py [--windows 5] [--window 200]
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from collections.abc import Callable

import numpy as np
import topics
from modelyard_server import shadow
from modelyard_server.drift_worker import Worker, WorkerSettings
from modelyard_server.encoder import Encoder
from modelyard_server.tap import sample_keys, samples_body
from modelyard_server.tokenizer import TextTokenizer, bundled_model_dir

BASE = {"billing": 1.0, "shipping": 1.0, "programming": 1.0, "medicine": 1.0}
BATCH = 32


def documents(n: int, seed: int) -> list[str]:
    """`n` texts of one to eight sentences of one topic each."""
    rng = random.Random(seed)
    pool = topics.mix(BASE, n * 8, seed)
    out = []
    for _ in range(n):
        k = rng.choice([1, 1, 2, 3, 4, 6, 8])
        out.append(" ".join(pool.pop() for _ in range(k)))
    return out


def answer(encoder: Encoder, texts: list[str], seed: int, companions: list[str]) -> np.ndarray:
    """`encoder`'s embeddings of `texts`, each batch of BATCH mixed with other traffic (`companions`) in an order
    drawn from `seed`, as a server batches concurrent requests: the numbers of a text's batch differ."""
    rng = random.Random(seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    out = np.zeros((len(texts), encoder.dimensions), np.float32)
    for start in range(0, len(order), BATCH):
        rows = order[start : start + BATCH]
        extra = rng.sample(companions, rng.randrange(0, BATCH))
        vectors = encoder.encode([texts[i] for i in rows] + extra).vectors
        out[rows] = vectors[: len(rows)]
    return out


def candidates() -> dict[str, Callable[[], Encoder]]:
    import torch

    def identical() -> Encoder:
        return Encoder(bundled_model_dir(), device="cpu")

    def int8() -> Encoder:
        encoder = Encoder(bundled_model_dir(), device="cpu")
        encoder.model = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(encoder.model), {torch.nn.Linear}, dtype=torch.qint8
        )
        encoder.bert, encoder.packs = None, False  # transformers' own forward, through the quantised modules
        return encoder

    def truncated() -> Encoder:
        encoder = Encoder(bundled_model_dir(), device="cpu")
        encoder.tokenizer = TextTokenizer(bundled_model_dir(), 64)
        return encoder

    def cls_pooling() -> Encoder:
        encoder = Encoder(bundled_model_dir(), device="cpu")
        encoder.pooling = "cls"
        return encoder

    return {"identical": identical, "int8": int8, "truncated": truncated, "cls-pooling": cls_pooling}


def payload(version: str, vectors: np.ndarray, keys: list[int | None]) -> bytes:
    ones = np.ones(len(vectors), np.int32)
    return samples_body("minilm", version, vectors, ones, ones, keys)


def offer_cost(rounds: int = 20_000) -> None:
    """What the tap's sampling costs a request of 8 texts on its path, keyed by a request id and by gaps."""
    from modelyard_server import metrics
    from modelyard_server.tap import Tap, TapSettings

    texts, vectors, lengths = ["a text"] * 8, np.ones((8, 384), np.float32), np.full(8, 3, np.int32)
    cost = {}
    for keyed in (False, True):
        tap = Tap(TapSettings("http://127.0.0.1:9/v1/samples", 0.01, "1"), "minilm", 384, metrics.Tally())
        ids = [b"7f5c0d2e-0c4e-4c1d-9a55-%012d" % i for i in range(rounds)]
        started = time.perf_counter()
        for i in range(rounds):
            tap.offer(texts, vectors, lengths, ids[i] if keyed else None)
            tap.count = 0  # the sender's part: the buffer emptied
        cost[keyed] = (time.perf_counter() - started) / rounds * 1e6
    print(f"the tap's offer, 8 texts at 1 %: {cost[False]:.1f} us by gaps, {cost[True]:.1f} us keyed by request id")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=5, help="windows of traffic judged per candidate")
    parser.add_argument("--window", type=int, default=200, help="texts per window (the worker's --window)")
    args = parser.parse_args()
    started = time.perf_counter()
    stable = Encoder(bundled_model_dir(), device="cpu")
    companions = documents(400, 99)
    windows = [documents(args.window, 1000 + w) for w in range(args.windows)]
    primary = [answer(stable, texts, 1, companions) for texts in windows]
    secondary = [answer(stable, texts, 2, companions) for texts in windows]
    tokens = [stable.tokenizer(texts).lengths for texts in windows]
    longer = float(np.mean(np.concatenate(tokens) > 64))
    print(
        f"{args.windows} windows of {args.window} texts ({longer:.0%} longer than 64 tokens), "
        f"stable answered twice in {time.perf_counter() - started:.0f} s"
    )
    print(
        f"verdict bounds: threshold = the stable pairs' {shadow.NOISE_QUANTILE:.0%} divergence (>= "
        f"{shadow.MIN_DIVERGENCE:g}); differs when p < {shadow.ALPHA:g} at {shadow.NOISE_RATE:.0%} or "
        f"neighbours kept {shadow.KNN_TOLERANCE:.0%} below the floor's; same at >= {shadow.MIN_PAIRS} pairs "
        f"with upper_95 <= {shadow.ACCEPT_RATE:.0%}"
    )
    header = f"{'candidate':<12} {'window':>6} {'pairs':>5} {'beyond':>6} {'cos p1':>8} {'cos p5':>8} {'cos p50':>8}"
    print(f"{header} {'knn':>6} {'noise knn':>9} {'threshold':>10} {'verdict':>8}")
    tally: dict[str, list[str]] = {}
    for name, make in candidates().items():
        encoder = make()
        for w, texts in enumerate(windows):
            worker = Worker(WorkerSettings(window=args.window, seed=w))
            keys = [sample_keys(b"request-%d-%d" % (w, i), 1)[0] for i in range(len(texts))]
            candidate = answer(encoder, texts, 3 + w, companions)
            worker.take_samples(payload("2", candidate[:1], [None]))  # the shadow's first sample, unkeyed
            worker.take_samples(payload("1", primary[w], keys))
            worker.take_samples(payload("1", secondary[w], keys))
            worker.take_samples(payload("2", candidate, keys))
            c = worker.compare_versions()[("minilm", "1", "2")]
            assert c.noise is not None
            tally.setdefault(name, []).append(c.verdict)
            print(
                f"{name:<12} {w:>6} {c.pairs:>5} {c.exceeding:>6} {c.cosine['0.01']:>8.4f} {c.cosine['0.05']:>8.4f} "
                f"{c.cosine['0.5']:>8.4f} {c.knn_overlap:>6.3f} {c.noise.knn_overlap:>9.3f} {c.noise.threshold:>10.2e} "
                f"{c.verdict:>8}"
            )
    for name, verdicts in tally.items():
        expected = "same" if name == "identical" else "differs"
        hits = sum(v == expected for v in verdicts)
        print(f"{name}: {hits} of {len(verdicts)} windows {expected} (target: all)")
    offer_cost()
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
