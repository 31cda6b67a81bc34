"""Exact binomial tests for a canary's verdict (modelyard ops canary), in the standard library: the tail of a
binomial distribution through the regularised incomplete beta function (its continued fraction, Numerical
Recipes 6.4), and the Clopper-Pearson bound found by bisection on it. tests/test_binomial.py holds both to
scipy.stats on a table of cases.
"""

from __future__ import annotations

import math


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return betainc(n - k, k + 1, 1.0 - p)


def sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the one-sided p-value of k or more events."""
    return 1.0 - cdf(k - 1, n, p) if k > 0 else 1.0


def upper_bound(k: int, n: int, alpha: float) -> float:
    """The one-sided Clopper-Pearson upper confidence bound, at 1 - alpha, on the rate of an event seen k times in
    n: the rate p at which k or fewer events would happen with probability alpha."""
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    low, high = k / n, 1.0
    for _ in range(100):
        mid = (low + high) / 2
        if cdf(k, n, mid) > alpha:
            low = mid
        else:
            high = mid
    return high


def requests_needed(tolerance: float, alpha: float) -> int:
    """The fewest requests in which zero events put the upper bound at `tolerance` or below: (1 - t)^n <= alpha."""
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be between 0 and 1 (got {tolerance})")
    return math.ceil(math.log(alpha) / math.log1p(-tolerance))
