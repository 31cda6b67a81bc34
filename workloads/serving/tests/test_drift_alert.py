"""The drift alert's timing on real embeddings, through the drift worker's own code and the platform's rule as
Prometheus's engine evaluates it (promtool): one sampled text a second, the worker testing a window a minute;
15 drift-free minutes raise nothing, a 20 % topic shift fires ModelOutputDrift within 10 minutes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import drift_stream
import numpy as np
import topics
from conftest import SERVING
from modelyard_server.drift_worker import Worker, WorkerSettings
from modelyard_server.encoder import Encoder
from modelyard_server.reference import Reference
from modelyard_server.tokenizer import bundled_model_dir

BASE = {"billing": 1.0, "shipping": 1.0, "programming": 1.0, "medicine": 1.0}
CALM, SHIFTED = 15, 12


def test_a_topic_shift_fires_model_output_drift_within_ten_minutes_and_calm_traffic_never(tmp_path: Path) -> None:
    assert shutil.which("promtool"), "promtool is missing: install Debian's prometheus package (make test does)"
    reference_texts = topics.mix(BASE, 600, 31)
    stream = topics.mix(BASE, 60 * CALM, 32) + topics.mix({**BASE, "cooking": 1.0}, 60 * SHIFTED, 33)
    encoder = Encoder(bundled_model_dir(), device="cpu")
    texts = reference_texts + stream
    vectors = np.concatenate([encoder.encode(texts[i : i + 64]).vectors for i in range(0, len(texts), 64)])
    chars = np.array([len(t) for t in texts], np.int32)
    reference = Reference(vectors[:600], chars[:600], np.full(600, 20, np.int32))
    worker = Worker(WorkerSettings(window=200, seed=7))
    p_values, windows = drift_stream.minute_series(worker, reference, vectors[600:], chars[600:], 60)
    (tmp_path / "rules.yaml").write_text(drift_stream.platform_drift_rules(SERVING.parent.parent))
    fired = {"severity": "warning", "namespace": "models", "model": "minilm", "model_version": "1"}
    checks: list[dict[str, object]] = [
        {"eval_time": f"{m}m", "alertname": "ModelOutputDrift", "exp_alerts": []} for m in range(CALM)
    ]
    checks.append(
        {"eval_time": f"{CALM + 10}m", "alertname": "ModelOutputDrift", "exp_alerts": [{"exp_labels": fired}]}
    )
    (tmp_path / "timing.test.yaml").write_text(
        json.dumps(drift_stream.promtool_test("rules.yaml", p_values, windows, checks))
    )
    done = subprocess.run(
        ["promtool", "test", "rules", "timing.test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:] + f"\np-values by minute: {p_values}"
    # And the check can fail: the same stream with no shift raises nothing by then.
    calm_only = [p if i < CALM else p_values[i - SHIFTED] for i, p in enumerate(p_values)]
    (tmp_path / "timing.test.yaml").write_text(
        json.dumps(drift_stream.promtool_test("rules.yaml", calm_only, windows, checks))
    )
    assert (
        subprocess.run(["promtool", "test", "rules", "timing.test.yaml"], cwd=tmp_path, capture_output=True).returncode
        != 0
    )
