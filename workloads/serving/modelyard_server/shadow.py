"""Shadow comparison: do two versions of a model answer the same texts alike, beyond the noise the stable
version shows against itself? Diffy's idea (twitter/diffy: a primary, a secondary of the same code, and the
candidate; a difference counts only where primary and secondary agree), for embeddings.

Pairs come from the taps (tap.py): a text's sample is keyed by its request's `x-request-id` (the gateway
generates one per request, and its mirrors copy it) and its place in the request, and sampled by that key,
so every pod that answers a copy of the request samples the same texts under the same keys. The worker
(drift_worker.py) joins them:
- the stable version and the shadow answering the same text: a *candidate pair*;
- the stable version answering the same text twice (its route mirrors the shadow's share to the stable
  Service too: workloads/routes.py): a *noise pair*, the floor: two replicas, or one replica in two batches.

For the pairs of a window (at most `window` of each) this module computes:
- the divergence of each pair, 1 - cosine of the two embeddings, and the candidate's cosine percentiles;
- the noise threshold: the noise pairs' 99th percentile divergence (the higher order statistic), at least
  MIN_DIVERGENCE (float32 rounding: identical arithmetic in another order differs by about 1e-7);
- `exceeding`: candidate pairs diverging beyond that threshold. Were the candidate the stable version, about
  1 % would; the verdict allows NOISE_RATE, twice that, for the threshold's own sampling error;
- the overlap of nearest neighbours: within the window's texts, each text's KNN nearest under one version
  and under the other, the share they have in common, averaged (1: the same neighbourhoods), beside the same
  figure for the noise pairs.

The verdict, `verdict()`: `differs` when the exceedances are improbably many at NOISE_RATE (exact binomial,
one-sided, p < ALPHA) or the neighbour overlap falls more than KNN_TOLERANCE below the noise's; `same` when
there are MIN_PAIRS pairs, the exceedance rate's 95 % upper bound is at most ACCEPT_RATE and the overlap is
within KNN_TOLERANCE of the noise's; otherwise `hold`, with what it waits for. The bounds are choices, said
here and in docs/model-quality.md: a candidate that truly answers alike passes them, one that answers
differently for one text in twenty does not.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Nearest neighbours compared per text.
KNN = 10
#: The noise pairs' divergence quantile that sets the threshold.
NOISE_QUANTILE = 0.99
#: The least threshold: below it two answers are the same arithmetic in another order.
MIN_DIVERGENCE = 1e-5
#: The share of candidate pairs allowed beyond the threshold before they count against it.
NOISE_RATE = 0.02
#: The one-sided level of the exceedance test.
ALPHA = 0.01
#: `same` needs the exceedance rate's 95 % upper bound at most this.
ACCEPT_RATE = 0.05
#: How far the candidate's neighbour overlap may fall below the noise's.
KNN_TOLERANCE = 0.05
#: Pairs of each kind (candidate, noise) a `same` verdict needs; the noise floor needs as many.
MIN_PAIRS = 100


@dataclass
class PairRing:
    """The last `size` pairs of embeddings of the same texts by two answerers (a ring)."""

    size: int
    dimensions: int
    first: np.ndarray = field(init=False)
    second: np.ndarray = field(init=False)
    filled: int = 0
    next_row: int = 0
    new: int = 0

    def __post_init__(self) -> None:
        self.first = np.zeros((self.size, self.dimensions), np.float32)
        self.second = np.zeros((self.size, self.dimensions), np.float32)

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.first[self.next_row], self.second[self.next_row] = a, b
        self.next_row = (self.next_row + 1) % self.size
        self.filled = min(self.size, self.filled + 1)
        self.new += 1

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.first[: self.filled].copy(), self.second[: self.filled].copy()


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64, copy=False)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def divergences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cosine of each row of `a` with the same row of `b`."""
    return np.clip(1.0 - np.einsum("ij,ij->i", _unit(a), _unit(b)), 0.0, 2.0)


def knn_overlap(a: np.ndarray, b: np.ndarray, k: int = KNN) -> float:
    """The mean share of each text's `k` nearest other texts (by cosine) that `a` and `b` have in common."""
    n = len(a)
    if n <= k:
        raise ValueError(f"neighbour overlap needs more than {k} pairs (got {n})")
    neighbours = []
    for rows in (_unit(a), _unit(b)):
        similarity = rows @ rows.T
        np.fill_diagonal(similarity, -np.inf)
        neighbours.append(np.argpartition(-similarity, k, axis=1)[:, :k])
    common = [len(np.intersect1d(x, y, assume_unique=True)) for x, y in zip(*neighbours, strict=True)]
    return float(np.mean(common)) / k


def noise_threshold(noise: np.ndarray) -> float:
    """The divergence the stable version's own pairs stay under 99 % of the time, at least MIN_DIVERGENCE."""
    return max(float(np.quantile(noise, NOISE_QUANTILE, method="higher")), MIN_DIVERGENCE)


@dataclass(frozen=True)
class Noise:
    pairs: int
    threshold: float
    knn_overlap: float | None


@dataclass(frozen=True)
class Comparison:
    pairs: int
    #: Candidate pairs beyond the noise threshold (None: no noise floor yet).
    exceeding: int | None
    #: The candidate pairs' cosine at the 1st, 5th and 50th percentiles.
    cosine: dict[str, float]
    knn_overlap: float | None
    noise: Noise | None
    #: The exceedance test's one-sided p-value and the exceedance rate's 95 % upper bound (None: no floor).
    p_value: float | None
    upper_95: float | None
    verdict: str
    #: Why, in a sentence.
    reason: str


def measure_noise(a: np.ndarray, b: np.ndarray) -> Noise:
    return Noise(len(a), noise_threshold(divergences(a, b)), knn_overlap(a, b) if len(a) > KNN else None)


def verdict(
    pairs: int, exceeding: int | None, knn: float | None, noise: Noise | None
) -> tuple[str, str, float | None, float | None]:
    """(verdict, reason, p_value, upper_95) for `exceeding` of `pairs` beyond the noise threshold."""
    from scipy.stats import beta, binomtest

    if noise is None or exceeding is None or noise.pairs < MIN_PAIRS:
        have = 0 if noise is None else noise.pairs
        return "hold", f"no noise floor yet: {have} of the {MIN_PAIRS} stable pairs it needs", None, None
    p_value = float(binomtest(exceeding, pairs, NOISE_RATE, alternative="greater").pvalue) if pairs else 1.0
    upper = float(beta.ppf(0.95, exceeding + 1, pairs - exceeding)) if exceeding < pairs else 1.0
    knn_short = knn is not None and noise.knn_overlap is not None and knn < noise.knn_overlap - KNN_TOLERANCE
    if pairs and p_value < ALPHA:
        return (
            "differs",
            f"{exceeding} of {pairs} texts answered beyond the stable version's own noise "
            f"(1 - cosine > {noise.threshold:.3g}); at most {NOISE_RATE:.0%} would be",
            p_value,
            upper,
        )
    if knn_short and pairs >= MIN_PAIRS:
        return (
            "differs",
            f"nearest neighbours kept {knn:.1%}; the stable version keeps {noise.knn_overlap:.1%} against itself",
            p_value,
            upper,
        )
    if pairs < MIN_PAIRS:
        return "hold", f"not enough pairs yet: {pairs} of the {MIN_PAIRS} the verdict needs", p_value, upper
    if upper <= ACCEPT_RATE:
        return "same", f"{exceeding} of {pairs} texts beyond the noise; neighbours kept", p_value, upper
    return "hold", f"{exceeding} of {pairs} beyond the noise: neither clearly the same nor different", p_value, upper


def compare(candidate: tuple[np.ndarray, np.ndarray], noise: Noise | None) -> Comparison:
    """A window of candidate pairs (the stable version's answer, the candidate's) against the noise floor."""
    a, b = candidate
    d = divergences(a, b)
    cosines = 1.0 - d
    quantiles = {q: float(np.quantile(cosines, float(q))) for q in ("0.01", "0.05", "0.5")} if len(d) else {}
    knn = knn_overlap(a, b) if len(a) > KNN else None
    exceeding = None if noise is None else int(np.count_nonzero(d > noise.threshold))
    result, reason, p_value, upper = verdict(len(d), exceeding, knn, noise)
    return Comparison(len(d), exceeding, quantiles, knn, noise, p_value, upper, result, reason)


#: Answers to one key kept (a request's primary, its copy to the stable Service, its copy to the shadow).
ANSWERS_PER_KEY = 4


class Pairing:
    """Joins the tap samples of each model's versions by key (the worker's, under its lock): each key's
    answers are held until `4 x window` newer keys of the model push them out, long enough for the copies
    of a request, answered within a second of each other, to arrive from their taps."""

    def __init__(self, window: int, max_rings: int):
        #: Pairs per comparison: the drift window, at least what a verdict needs.
        self.window = max(window, MIN_PAIRS)
        self.capacity = 4 * self.window
        self.max_rings = max_rings
        self.answers: dict[str, OrderedDict[int, list[tuple[str, np.ndarray]]]] = {}
        #: (model, version): the version against itself.
        self.noise: dict[tuple[str, str], PairRing] = {}
        #: (model, a, b), a < b: one version against another.
        self.candidates: dict[tuple[str, str, str], PairRing] = {}

    def add(self, model: str, version: str, keys: list[int | None], vectors: np.ndarray) -> None:
        answers = self.answers.setdefault(model, OrderedDict())
        for key, vector in zip(keys, vectors, strict=True):
            if key is None:
                continue
            seen = answers.get(key)
            if seen is None:
                seen = answers[key] = []
                if len(answers) > self.capacity:
                    answers.popitem(last=False)
            paired = set()
            for other, earlier in seen:
                if other in paired:  # one pair per version a text was answered by: no text twice in a window
                    continue
                paired.add(other)
                if other == version:
                    self._ring(self.noise, (model, version), len(vector)).add(earlier, vector)
                elif len(earlier) == len(vector):  # a version of other dimensions answers in another space
                    a, b = sorted((other, version))
                    first, second = (earlier, vector) if a == other else (vector, earlier)
                    self._ring(self.candidates, (model, a, b), len(vector)).add(first, second)
            if len(seen) < ANSWERS_PER_KEY:
                seen.append((version, vector.copy()))

    def _ring(self, rings: dict[Any, PairRing], key: Any, dimensions: int) -> PairRing:
        ring = rings.get(key)
        if ring is None or ring.dimensions != dimensions:
            if ring is None and len(self.noise) + len(self.candidates) >= self.max_rings:
                return PairRing(1, dimensions)  # beyond the bound: counted nowhere
            ring = rings[key] = PairRing(self.window, dimensions)
        return ring

    def forget(self, model: str, version: str) -> list[tuple[str, str]]:
        """Drops `version` of `model` from every join; returns the (version, other) comparisons dropped."""
        self.noise.pop((model, version), None)
        dropped = [k for k in self.candidates if k[0] == model and version in k[1:]]
        for key in dropped:
            del self.candidates[key]
        answers = self.answers.get(model, OrderedDict())
        for text in list(answers):
            kept = [(v, e) for v, e in answers[text] if v != version]
            if kept:
                answers[text] = kept
            else:
                del answers[text]
        if not answers:
            self.answers.pop(model, None)
        return [(a, b) for _, a, b in dropped]

    def evaluate(self) -> tuple[dict[tuple[str, str], Noise], dict[tuple[str, str, str], Comparison]]:
        """The noise floor of each version with pairs of its own, and each comparison of two versions."""
        floors = {key: measure_noise(*ring.pairs()) for key, ring in self.noise.items() if ring.filled >= 2}
        comparisons = {}
        for (model, a, b), ring in self.candidates.items():
            if ring.filled < 2:
                continue
            known = [floors[k] for k in ((model, a), (model, b)) if k in floors]
            noise = max(known, key=lambda n: n.pairs) if known else None
            comparisons[(model, a, b)] = compare(ring.pairs(), noise)
        return floors, comparisons
