"""Two-sample drift tests: is a window of what a model received and answered drawn from the same
distribution as its version's reference (drift_reference.npz, built by `python -m modelyard_server.reference`)?

- Embeddings (the model's answers): the maximum mean discrepancy (Gretton et al., "A Kernel Two-Sample
  Test", JMLR 2012) with a Gaussian kernel whose width is the median squared distance between reference
  embeddings, and a permutation null: the window and the reference pooled, relabelled at random
  `permutations` times, the p-value the share of relabellings whose MMD is at least the observed one. The
  threshold then follows the window's own size and the reference's spread; nothing is a constant tuned to
  one model. Beside it the centroid distance (1 - cosine of the two means), which says how far, not whether.
- Input lengths (characters and tokens per text): the two-sample Kolmogorov-Smirnov test (scipy), and the
  population stability index over the reference's deciles, the figure dashboards show.

numpy and scipy only: the drift libraries weighed (Alibi Detect, Evidently) are either under the Business
Source License or use a fixed embedding-drift threshold (docs/model-quality.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Relabellings of the pooled samples per MMD test: the p-value's resolution is 1/(PERMUTATIONS + 1).
PERMUTATIONS = 500
#: At most this many reference rows enter a test (a seeded subsample of a larger reference): the kernel
#: matrix is (window + reference)^2.
MAX_REFERENCE = 1000


@dataclass(frozen=True)
class MmdResult:
    mmd2: float
    p_value: float
    #: The kernel's width (squared distance) the test used.
    bandwidth: float


@dataclass(frozen=True)
class KsResult:
    statistic: float
    p_value: float
    psi: float


def median_bandwidth(reference: np.ndarray, rng: np.random.Generator, sample: int = 500) -> float:
    """The median squared Euclidean distance between distinct reference rows (a seeded subsample of
    `sample` rows): the median heuristic for the Gaussian kernel's width."""
    rows = reference if len(reference) <= sample else reference[rng.choice(len(reference), sample, replace=False)]
    d2 = _squared_distances(rows, rows)
    upper = d2[np.triu_indices(len(rows), k=1)]
    width = float(np.median(upper)) if upper.size else 0.0
    return width if width > 0 else 1.0


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    d2 = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2.0 * (a64 @ b64.T)
    return np.maximum(d2, 0.0)


def reference_rows(reference: np.ndarray, rng: np.random.Generator, limit: int = MAX_REFERENCE) -> np.ndarray:
    return (
        reference if len(reference) <= limit else reference[np.sort(rng.choice(len(reference), limit, replace=False))]
    )


def mmd_test(
    window: np.ndarray,
    reference: np.ndarray,
    *,
    rng: np.random.Generator,
    permutations: int = PERMUTATIONS,
    bandwidth: float | None = None,
) -> MmdResult:
    """The biased (V-statistic) MMD^2 between `window` and `reference` (rows are embeddings) and its
    permutation p-value. Every relabelling is scored from one kernel matrix K of the pooled rows: with `a`
    the 0/1 indicator of the rows labelled "window" (n of N), sum K over window pairs is a'Ka, over
    reference pairs S - 2a'r + a'Ka (S the total, r the row sums), across 2(a'r - a'Ka); one matrix product
    K @ A scores all of them."""
    n, m = len(window), len(reference)
    if n < 2 or m < 2:
        raise ValueError(f"an MMD test needs two rows on each side (window {n}, reference {m})")
    width = bandwidth if bandwidth is not None else median_bandwidth(reference, rng)
    pooled = np.concatenate([window, reference]).astype(np.float64, copy=False)
    kernel = np.exp(-_squared_distances(pooled, pooled) / width)
    big_n = n + m
    row_sums = kernel.sum(1)
    total = float(row_sums.sum())

    def scores(indicators: np.ndarray) -> np.ndarray:
        a_k_a = np.einsum("ib,ib->b", indicators, kernel @ indicators)
        a_r = indicators.T @ row_sums
        within_x = a_k_a / (n * n)
        within_y = (total - 2.0 * a_r + a_k_a) / (m * m)
        across = (a_r - a_k_a) / (n * m)
        return np.asarray(within_x + within_y - 2.0 * across)

    observed = np.zeros((big_n, 1))
    observed[:n, 0] = 1.0
    stat = float(scores(observed)[0])
    indicators = np.zeros((big_n, permutations))
    for b in range(permutations):
        indicators[rng.permutation(big_n)[:n], b] = 1.0
    null = scores(indicators)
    # A relabelling that scores the observed value within rounding counts as at least as extreme.
    p_value = (1.0 + float(np.count_nonzero(null >= stat - 1e-12))) / (1.0 + permutations)
    return MmdResult(stat, p_value, width)


def centroid_distance(window: np.ndarray, reference: np.ndarray) -> float:
    """1 - cosine similarity of the two samples' mean embeddings (0: same direction)."""
    a, b = window.mean(0), reference.mean(0)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 - float(a @ b) / norms if norms > 0 else 0.0


def psi(window: np.ndarray, reference: np.ndarray, bins: int = 10) -> float:
    """Population stability index over the reference's quantile bins (deciles by default), each share
    floored at 1e-4 so that an empty bin counts as very different, not infinite."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    win_share = np.bincount(np.searchsorted(edges, window, side="right"), minlength=len(edges) + 1) / len(window)
    ref_share, win_share = np.maximum(ref_share, 1e-4), np.maximum(win_share, 1e-4)
    return float(np.sum((win_share - ref_share) * np.log(win_share / ref_share)))


def ks_test(window: np.ndarray, reference: np.ndarray) -> KsResult:
    """Two-sample Kolmogorov-Smirnov (scipy.stats.ks_2samp, two-sided) and the PSI of a length signal."""
    from scipy.stats import ks_2samp

    result = ks_2samp(window, reference)
    return KsResult(float(result.statistic), float(result.pvalue), psi(window, reference))
