"""The pod KServe makes of an InferenceService predictor, and the images it brings into it.

A plan renders an InferenceService; the cluster runs a pod that KServe's controller and its pod-mutating
webhook build from it: the predictor's own containers (or, for a `model` with a format, the matching
ClusterServingRuntime's container merged with the predictor's fields), KServe's labels, and the storage
initializer init container injected for a storage URI. Policy (the registry allow-list, Pod Security)
and the conformance tests judge that pod, not the object we wrote.

Ported from KServe v0.16.0 (kserve/kserve, commit 5b033a4024429302440b72180472ae2d26b44086):
- `pkg/webhook/admission/pod/storage_initializer_injector.go`: the init container `storage-initializer`
  from the ClusterStorageContainer `default`, the emptyDir `kserve-provision-location` mounted at
  /mnt/models (read-only in the model container, read-write in the init container), a custom container's
  STORAGE_URI replaced by /mnt/models;
- `charts/kserve-resources/templates/clusterstoragecontainer.yaml` and `values.yaml`: the initializer's
  image `kserve.storage.image:kserve.storage.tag`, its resources and securityContext;
- `charts/kserve-resources/templates/clusterservingruntimes.yaml` and `values.yaml`: which runtime serves
  which model format (highest priority among those that auto-select it for protocol v1), and its image
  `kserve.servingruntime.<key>.image:tag`;
- `pkg/controller/v1beta1/inferenceservice/components/predictor.go` and `pkg/constants`: the pod labels
  `serving.kserve.io/inferenceservice`, `component: predictor`, `app: isvc.<name>-predictor`, on top of
  the InferenceService's own labels; the pod's annotations, the InferenceService's with the predictor's
  (`spec.predictor.annotations`) over them (buildObjectMeta; `reconcilers/deployment/deployment_reconciler.go`
  puts that metadata on the Deployment's pod template).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .resources import as_list, dig, mapping

TAG = "v0.16.0"
STORAGE_INITIALIZER = "storage-initializer"
PROVISION_VOLUME = "kserve-provision-location"
MODEL_MOUNT = "/mnt/models"
#: values.yaml `kserve.storage` at the tag.
STORAGE_DEFAULTS: Mapping[str, Any] = {
    "image": "kserve/storage-initializer",
    "tag": TAG,
    "resources": {"requests": {"memory": "100Mi", "cpu": "100m"}, "limits": {"memory": "1Gi", "cpu": "1"}},
    "containerSecurityContext": {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    },
}
#: Model format (protocol v1) -> (ClusterServingRuntime, its values.yaml key, default image, default tag).
RUNTIMES: Mapping[str, tuple[str, str, str, str]] = {
    "huggingface": ("kserve-huggingfaceserver", "huggingfaceserver", "kserve/huggingfaceserver", TAG),
    "sklearn": ("kserve-sklearnserver", "sklearnserver", "kserve/sklearnserver", TAG),
    "xgboost": ("kserve-xgbserver", "xgbserver", "kserve/xgbserver", TAG),
    "lightgbm": ("kserve-lgbserver", "lgbserver", "kserve/lgbserver", TAG),
    "onnx": ("kserve-tritonserver", "tritonserver", "nvcr.io/nvidia/tritonserver", "23.05-py3"),
    "pytorch": ("kserve-torchserve", "torchserve", "pytorch/torchserve-kfs", "0.9.0"),
    "tensorflow": ("kserve-tensorflow-serving", "tensorflow", "tensorflow/serving", "2.6.2"),
}


#: PredictorSpec fields that are not the pod's: ComponentExtensionSpec's (component.go) and the storage and
#: multi-node ones; the rest is the inline PodSpec.
#: The model container's name in every predictor pod (constants.InferenceServiceContainerName).
MODEL_CONTAINER = "kserve-container"
NOT_POD_FIELDS = frozenset(
    {
        "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType", "autoScaling",
        "containerConcurrency", "timeout", "canaryTrafficPercent", "logger", "batcher", "labels", "annotations",
        "deploymentStrategy", "storageUris", "workerSpec",
    }
)  # fmt: skip


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's value merge: maps merge key by key (an empty map keeps the defaults), anything else is replaced
    (null drops a default)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Settings:
    """What the KServe release's values make of the chart's defaults (both at TAG)."""

    storage: Mapping[str, Any] = field(default_factory=lambda: dict(STORAGE_DEFAULTS))
    runtimes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: Any) -> Settings:
        kserve = mapping(mapping(values).get("kserve"))
        return cls(
            storage=_merge(STORAGE_DEFAULTS, mapping(kserve.get("storage"))),
            runtimes=mapping(kserve.get("servingruntime")),
        )

    @property
    def storage_image(self) -> str:
        return f"{self.storage['image']}:{self.storage['tag']}"

    def runtime_image(self, model_format: str) -> str | None:
        if model_format not in RUNTIMES:
            return None
        _, key, image, tag = RUNTIMES[model_format]
        values = mapping(self.runtimes.get(key))
        return f"{values.get('image', image)}:{values.get('tag', tag)}"

    def images(self) -> dict[str, str]:
        """Every image KServe can inject into a model pod: the storage initializer and each runtime."""
        found = {"kserve.storage": self.storage_image}
        for model_format, (_, key, _, _) in RUNTIMES.items():
            image = self.runtime_image(model_format)
            if image is not None and not mapping(self.runtimes.get(key)).get("disabled"):
                found[f"kserve.servingruntime.{key}"] = image
        return found


def storage_uri(predictor: Mapping[str, Any]) -> str | None:
    """The model's storage URI: `model.storageUri`, or the custom container's STORAGE_URI."""
    uri = dig(predictor, "model", "storageUri")
    if isinstance(uri, str):
        return uri
    for container in as_list(predictor.get("containers"))[:1]:
        for env in as_list(mapping(container).get("env")):
            if mapping(env).get("name") == "STORAGE_URI":
                return str(mapping(env).get("value"))
    return None


def model_pod(isvc: Mapping[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """The predictor pod (metadata and spec) KServe runs for `isvc`."""
    settings = settings or Settings()
    meta = mapping(isvc.get("metadata"))
    name = str(meta.get("name"))
    predictor = dict(mapping(dig(isvc, "spec", "predictor")))
    model = mapping(predictor.pop("model", None))
    pod_fields = {k: v for k, v in predictor.items() if k not in NOT_POD_FIELDS}
    containers = [dict(mapping(c)) for c in as_list(pod_fields.pop("containers", []))]
    if model:
        # The runtime's container, with the predictor's fields over it (KServe's MergeRuntimeContainers).
        fmt = str(dig(model, "modelFormat", "name"))
        runtime_container: dict[str, Any] = {"name": MODEL_CONTAINER, "image": settings.runtime_image(fmt)}
        runtime_container.update({k: v for k, v in model.items() if k not in {"modelFormat", "storageUri", "runtime"}})
        containers.insert(0, runtime_container)
    uri = storage_uri({"model": model} if model else {"containers": containers})
    volumes = [dict(mapping(v)) for v in as_list(pod_fields.pop("volumes", []))]
    init = [dict(mapping(c)) for c in as_list(pod_fields.pop("initContainers", []))]
    if uri is not None and not any(c.get("name") == STORAGE_INITIALIZER for c in init):
        init.append(
            {
                "name": STORAGE_INITIALIZER,
                "image": settings.storage_image,
                "args": [uri, MODEL_MOUNT],
                "resources": dict(mapping(settings.storage.get("resources"))),
                "securityContext": dict(mapping(settings.storage.get("containerSecurityContext"))),
                "volumeMounts": [{"name": PROVISION_VOLUME, "mountPath": MODEL_MOUNT}],
            }
        )
        volumes.append({"name": PROVISION_VOLUME, "emptyDir": {}})
        first = containers[0]
        first["volumeMounts"] = [
            *as_list(first.get("volumeMounts")),
            {"name": PROVISION_VOLUME, "mountPath": MODEL_MOUNT, "readOnly": True},
        ]
        first["env"] = [
            {**mapping(e), "value": MODEL_MOUNT} if mapping(e).get("name") == "STORAGE_URI" else e
            for e in as_list(first.get("env"))
        ]
    labels = {
        **mapping(meta.get("labels")),
        "serving.kserve.io/inferenceservice": name,
        "component": "predictor",
        "app": f"isvc.{name}-predictor",
    }
    annotations = {**mapping(meta.get("annotations")), **mapping(predictor.get("annotations"))}
    spec = {**pod_fields, "containers": containers, "initContainers": init, "volumes": volumes}
    return {
        "metadata": {"namespace": meta.get("namespace"), "labels": labels, "annotations": annotations},
        "spec": spec,
    }
