"""A minute-by-minute stream of tap samples through the drift worker's own code, and the series it exports each
minute as promtool's input: how the drift alert's timing is measured (bench_drift.py) and tested
(tests/test_drift_alert.py) against the platform's rule, evaluated by Prometheus's own engine (promtool).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from modelyard_server.drift_worker import Worker
from modelyard_server.reference import Reference

LABELS = 'namespace="models", pod="modelyard-drift-1", model="minilm", model_version="1"'


def minute_series(
    worker: Worker, reference: Reference, vectors: np.ndarray, chars: np.ndarray, per_minute: int
) -> tuple[list[float | None], list[float]]:
    """Feeds `vectors` (with `chars`) to `worker` `per_minute` a minute, the reference after the first batch (as a
    tap sends it), one test a minute; returns the output p-value (None before a full window) and the window's
    samples, by minute."""
    data = reference.to_bytes()
    sha = hashlib.sha256(data).hexdigest()
    p_values: list[float | None] = []
    windows: list[float] = []
    for minute in range(len(vectors) // per_minute):
        rows = slice(per_minute * minute, per_minute * (minute + 1))
        body = {
            "model": "minilm",
            "version": "1",
            "reference_sha256": sha,
            "dimensions": int(vectors.shape[1]),
            "embeddings": base64.b64encode(vectors[rows].astype("<f4").tobytes()).decode(),
            "chars": chars[rows].tolist(),
            "tokens": [20] * per_minute,
        }
        worker.take_samples(orjson.dumps(body))
        if minute == 0:
            worker.take_reference("minilm", "1", sha, data)
        worker.evaluate()
        series = worker.series
        window = float(series.window.labels("minilm", "1")._value.get())
        full = window >= worker.settings.window
        p_values.append(float(series.p_value.labels("minilm", "1", "embedding")._value.get()) if full else None)
        windows.append(window)
    return p_values, windows


def promtool_test(
    rule_file: str, p_values: list[float | None], windows: list[float], checks: list[dict[str, Any]]
) -> dict[str, Any]:
    """A `promtool test rules` document: the worker's series by minute (a gap before the first full window) and
    `checks` (alert_rule_test entries)."""
    values_p = " ".join("_" if p is None else f"{p:.6g}" for p in p_values)
    return {
        "rule_files": [rule_file],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'modelyard_drift_p_value{{{LABELS}, signal="embedding"}}', "values": values_p},
                    {
                        "series": f"modelyard_drift_window_samples{{{LABELS}}}",
                        "values": " ".join(f"{w:g}" for w in windows),
                    },
                ],
                "alert_rule_test": checks,
            }
        ],
    }


def platform_drift_rules(repo: Path) -> str:
    """The platform's drift rule group as promtool reads it (platform/rules.py, from the checkout), less the
    annotations (promtool compares them exactly; `promtool check rules` checks their templates in the platform's
    own tests)."""
    import sys

    import yaml

    sys.path.insert(0, str(repo))
    try:
        from modelyard.platform import rules
    finally:
        sys.path.remove(str(repo))
    spec = rules.prometheus_rule_spec([rules.drift_group()], "https://runbooks.example")
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return str(yaml.safe_dump(spec, sort_keys=False))
