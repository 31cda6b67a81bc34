"""This repository's embedding server (workloads/serving), from the platform's ECR repository.

Its pod: one container on the model port, readiness on the model's own `/v2/models/<name>/ready` (loaded),
liveness on `/v2/health/live`, a writable /tmp under the read-only root. It exports the `modelyard_*` series
(platform/signals.py), scales GPU predictors on the texts it holds (`modelyard_inflight_texts`), and, where the
catalog runs a drift worker, samples its answers to it (`--tap_url`).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import model_validator

from modelyard.platform import signals as series
from modelyard.platform.network_policy import MODEL_PORT
from modelyard.validation import Model

from . import PRESTOP_S, ImageTag, LatencySlo, PodContext, Runtime, Signal, refuse_latest

if TYPE_CHECKING:
    from modelyard.platform.dashboards import Dashboard
    from modelyard.workloads.catalog import ModelEntry


#: Seconds the server drains on SIGTERM (its --grace_period: answering what it holds, accepting nothing new); the
#: pod's grace period covers the preStop pause and this, with room to exit.
DRAIN_S = 20
GRACE_S = PRESTOP_S + DRAIN_S + 5


class ModelyardRuntime(Model):
    """This repository's model server image (workloads/serving), from the platform's ECR repository."""

    kind: Literal["modelyard"]
    image_tag: ImageTag

    @model_validator(mode="after")
    def _immutable(self) -> ModelyardRuntime:
        refuse_latest(self.image_tag)
        return self


class Modelyard(Runtime):
    kind = "modelyard"
    config = ModelyardRuntime
    #: Texts accepted and not yet answered per replica; the default target is one of the server's default
    #: 256-text GPU batches (past it, requests wait for a whole pass; below it, the GPU is not yet busy with
    #: full batches).
    signals = (Signal("inflight", series.IN_FLIGHT, 256, 1, 10_000, "texts in flight per replica"),)
    latency_slos = MappingProxyType(
        {"p99_latency_ms": LatencySlo("request", series.LATENCY_BUCKETS, "the server's latency", percentile=99)}
    )

    #: The server's --max_inputs default, which the pod keeps (held to the server by its tests).
    max_texts_per_request = 64

    def dashboards(self) -> Sequence[Dashboard]:
        from modelyard.platform.dashboards import quality, serving

        return (serving(), quality())

    def pod(self, model: ModelEntry, ctx: PodContext) -> dict[str, Any]:
        from modelyard.workloads.models import hardened_container, resources

        runtime = model.runtime
        assert isinstance(runtime, ModelyardRuntime)
        probe = {"httpGet": {"path": f"/v2/models/{model.name}/ready", "port": MODEL_PORT}}
        container = {
            "name": "kserve-container",
            "image": f"{ctx.registry}:{runtime.image_tag}",
            # --verify_manifest: the server refuses a model directory that differs from the manifest
            # `modelyard model push` wrote beside it (an overwritten or tampered version is never served), and with
            # --manifest_public_key a manifest the environment's signing key did not sign.
            "args": [
                "--model_name",
                model.name,
                "--model_dir",
                "/mnt/models",
                "--verify_manifest",
                *(["--manifest_public_key", ctx.signing_key] if ctx.signing_key else []),
                "--http_port",
                str(MODEL_PORT),
                "--model_version",
                ctx.version,
                # SIGTERM comes after the preStop pause, when no new request is routed here any more.
                "--grace_period",
                str(DRAIN_S),
                # Admission by the objective: the server admits what its measured pace answers within the
                # entry's p99 latency and refuses the rest (503) instead of queueing past it.
                *(["--latency_objective_ms", str(model.slo.p99_latency_ms)] if model.slo.p99_latency_ms else []),
                # The drift tap (workloads/drift.py): a share of answered texts' embeddings and lengths to the
                # environment's drift worker, never on a request's path.
                *(["--tap_url", ctx.tap_url, "--tap_share", f"{ctx.tap_share:g}"] if ctx.tap_url else []),
            ],
            # KServe's storage initializer downloads STORAGE_URI into /mnt/models before start.
            "env": [{"name": "STORAGE_URI", "value": ctx.storage_uri}],
            "ports": [{"name": self.metrics_port, "containerPort": MODEL_PORT, "protocol": "TCP"}],
            "resources": resources(model),
            "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
            "livenessProbe": {
                "httpGet": {"path": "/v2/health/live", "port": MODEL_PORT},
                "periodSeconds": 10,
                "failureThreshold": 3,
            },
            "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
            # Serving on while the endpoints drop the pod (ENDPOINT_PROPAGATION_S), then SIGTERM and the drain.
            "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_S}}},
            "securityContext": hardened_container(),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
        return {
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
            "terminationGracePeriodSeconds": GRACE_S,
        }

    def describe(self, model: ModelEntry) -> str:
        runtime = model.runtime
        assert isinstance(runtime, ModelyardRuntime)
        return f"modelyard:{runtime.image_tag}"


RUNTIME = Modelyard()
