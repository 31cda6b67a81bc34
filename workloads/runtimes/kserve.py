"""KServe's built-in serving runtimes, chosen by model format (the chart's ClusterServingRuntimes).

The predictor names a `model` with a format and a storage URI; KServe merges its fields over the runtime's
container (policies/governance/kserve.py ports how). The runtimes of KServe v0.16.0 declare no container port
(`charts/kserve-resources/templates/clusterservingruntimes.yaml`), and a PodMonitor selects a port by name or
by a declared number: the `model` here declares the runtime's HTTP port 8080 as `http1`, so the merged
container has it and the pod is scraped. They export no request outcome counter (KServe's python server
records latency histograms per stage only), so the platform's SLO burn-rate alerts have nothing to read for
them: their objectives are recorded, and `ModelMetricsAbsent` and the KServe alerts watch them.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from modelyard.platform import signals as series
from modelyard.validation import Model

from . import LatencySlo, PodContext, Runtime

if TYPE_CHECKING:
    from modelyard.workloads.catalog import ModelEntry

#: The HTTP port of every built-in runtime (`--http_port=8080` in the chart's templates).
RUNTIME_HTTP_PORT = 8080


class KServeRuntime(Model):
    """A KServe built-in serving runtime, chosen by model format."""

    kind: Literal["kserve"]
    model_format: Literal["huggingface", "sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "tensorflow"]


class KServe(Runtime):
    kind = "kserve"
    config = KServeRuntime
    latency_slos = MappingProxyType(
        {"p99_latency_ms": LatencySlo("request", series.LATENCY_BUCKETS, "the request latency", percentile=99)}
    )

    def pod(self, model: ModelEntry, ctx: PodContext) -> dict[str, Any]:
        from modelyard.workloads.models import hardened_container, resources

        runtime = model.runtime
        assert isinstance(runtime, KServeRuntime)
        return {
            "model": {
                "modelFormat": {"name": runtime.model_format},
                "storageUri": ctx.storage_uri,
                "ports": [{"name": self.metrics_port, "containerPort": RUNTIME_HTTP_PORT, "protocol": "TCP"}],
                "resources": resources(model),
                "securityContext": hardened_container(),
            }
        }

    def describe(self, model: ModelEntry) -> str:
        runtime = model.runtime
        assert isinstance(runtime, KServeRuntime)
        return f"kserve {runtime.model_format}"


RUNTIME = KServe()
