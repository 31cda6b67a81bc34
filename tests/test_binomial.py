"""The canary's exact binomial tests (modelyard/binomial.py) against scipy.stats, run in the serving environment
(which carries scipy), on a table of cases from a handful of requests to millions."""

from __future__ import annotations

import json
import subprocess

import pytest

from modelyard import binomial
from modelyard.model_push import serving_python

CASES = [(0, 10, 0.1), (3, 10, 0.001), (8, 10, 0.5), (1, 1497, 0.002), (0, 6000, 0.001), (40, 3000, 0.01),
         (240, 840, 0.038), (5, 2_000_000, 0.000001), (1999, 2000, 0.99)]  # fmt: skip


@pytest.fixture(scope="module")
def scipy_values() -> dict[str, list[float]]:
    python = serving_python()
    assert python.exists(), f"{python} is missing: make .venv-serving/.installed (make test does)"
    script = (
        "import json, sys; from scipy.stats import binom, beta\n"
        "cases = json.loads(sys.argv[1])\n"
        "print(json.dumps({'sf': [float(binom.sf(k - 1, n, p)) for k, n, p in cases],"
        " 'cdf': [float(binom.cdf(k, n, p)) for k, n, p in cases],"
        " 'upper': [float(beta.ppf(0.95, k + 1, n - k)) if k < n else 1.0 for k, n, _ in cases]}))"
    )
    done = subprocess.run([str(python), "-c", script, json.dumps(CASES)], capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 + 1e-7 * abs(b)


def test_the_tails_and_bounds_are_scipys(scipy_values: dict[str, list[float]]) -> None:
    for i, (k, n, p) in enumerate(CASES):
        assert close(binomial.sf(k, n, p), scipy_values["sf"][i]), (
            k,
            n,
            p,
            binomial.sf(k, n, p),
            scipy_values["sf"][i],
        )
        assert close(binomial.cdf(k, n, p), scipy_values["cdf"][i]), (k, n, p)
        assert close(binomial.upper_bound(k, n, 0.05), scipy_values["upper"][i]), (k, n)


def test_the_requests_an_objective_needs() -> None:
    """Zero errors in n requests bound the rate below t at 95 % once 0.95^... : (1 - t)^n <= 0.05, about 3/t."""
    assert binomial.requests_needed(0.002, 0.05) == 1497
    assert binomial.upper_bound(0, 1497, 0.05) <= 0.002 < binomial.upper_bound(0, 1496, 0.05)
    with pytest.raises(ValueError, match="between 0 and 1"):
        binomial.requests_needed(0, 0.05)
