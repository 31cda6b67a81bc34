"""What the admission webhooks of the controllers we configure answer for the objects we create.

Each function is a port of upstream's own Go, at the tag the platform pins, with the same order of checks
and the same error strings, so that a plan is refused here for what the cluster would refuse it for.
The ported test tables live in tests/conformance/ and run against these functions (tests/test_conformance.py).

- KServe v0.16.0 (kserve/kserve, commit 5b033a4024429302440b72180472ae2d26b44086), the validating
  webhook `inferenceservice.kserve-webhook-server.validator` (failurePolicy: Fail):
  `pkg/apis/serving/v1beta1/inference_service_validation.go` (validateInferenceService and what it calls),
  `pkg/apis/serving/v1beta1/component.go` (ComponentExtensionSpec.Validate, validateExactlyOneImplementation),
  `pkg/apis/serving/v1beta1/predictor.go` (GetImplementations), `predictor_custom.go` (validateCustomProtocol).
  The controller's KEDA reconciler (`pkg/controller/v1beta1/inferenceservice/reconcilers/keda/
  keda_reconciler.go`, createKedaScaledObject/getKedaMetrics) is ported too, since the ScaledObject it
  builds passes KEDA's own webhook.
- KEDA v2.20.2 (kedacore/keda, commit 68a5b5028f35b22d50597c69819ab32c4e92f21a), the ScaledObject webhook:
  `apis/keda/v1alpha1/scaledobject_webhook.go` (validateWorkload: verifyReplicaCount, verifyFallback,
  verifyName, verifyTriggers, verifyScaledObjects, verifyCPUMemoryScalers), `scaledobject_types.go`
  (CheckReplicaCountBoundsAreValid, CheckFallbackValid), `scaletriggers_types.go` (ValidateTriggers).
  The checks that list other objects in the namespace (another ScaledObject or HPA on the same workload)
  run over the objects of the same plan. KEDA runs its checks in a Go map's (random) order, so when an
  object breaks two of them the message may differ from run to run; whether it is refused does not.

- KEDA v2.20.2's cron scaler (`pkg/scalers/cron_scaler.go`, cronMetadata.Validate), which KEDA runs when it
  builds the ScaledObject's scalers, and the schedule parser it calls, robfig/cron v3.0.1 (`parser.go`:
  Parse, getField, getRange, parseIntOrName, mustParseInt; `spec.go`: the fields' bounds).

KServe's defaulting webhook (`inference_service_defaults.go`, DefaultInferenceService) runs first and changes
nothing these checks read in what the workloads stack renders: it sets the deployment-mode annotation from
its config map when absent (ours is set), names a lone custom container kserve-container (ours is named)
and fills missing container resources (ours are set).

Omitted, because nothing this blueprint renders reaches them: KServe's multi-node (workerSpec), logger,
transformer and explainer checks, Knative (KPA) mode; KEDA's scalingModifiers formula compilation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .resources import as_list, mapping

KSERVE_TAG = "v0.16.0"
KEDA_TAG = "v2.20.2"

# -- KServe: pkg/constants/constants.go --------------------------------------------------------------
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
AUTOSCALER_CLASSES = ("hpa", "external", "keda", "none")  # AutoscalerAllowedClassList
HPA_METRICS = ("cpu", "memory")  # AutoscalerAllowedHPAMetricsList
KPA_METRICS = ("concurrency", "rps")  # AutoscalerAllowedKPAMetricsList
INFERENCE_SERVICE_CONTAINER = "kserve-container"  # constants.InferenceServiceContainerName
TRANSFORMER_CONTAINER = "transformer-container"
#: PredictorSpec's implementation fields, in GetImplementations' order, with their Go field names.
PREDICTOR_IMPLEMENTATIONS = (
    ("xgboost", "XGBoost"),
    ("pytorch", "PyTorch"),
    ("triton", "Triton"),
    ("sklearn", "SKLearn"),
    ("tensorflow", "Tensorflow"),
    ("onnx", "ONNX"),
    ("pmml", "PMML"),
    ("lightgbm", "LightGBM"),
    ("paddle", "Paddle"),
    ("huggingface", "HuggingFace"),
    ("model", "Model"),
)
#: PredictorSpec's fields but the last (ComponentExtensionSpec), as ExactlyOneErrorFor lists them (reflect order).
_PREDICTOR_FIELDS = (
    "SKLearn, XGBoost, Tensorflow, PyTorch, Triton, ONNX, HuggingFace, PMML, LightGBM, Paddle, Model, "
    "StorageUris, WorkerSpec, PodSpec"
)
ISVC_NAME_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_ISVC_NAME = re.compile(f"^{ISVC_NAME_FMT}$")
# component.go error strings
MIN_REPLICAS_GREATER_THAN_MAX = "'MinReplicas' cannot be greater than MaxReplicas"
MIN_REPLICAS_BELOW_ZERO = "'MinReplicas' cannot be less than 0"
MAX_REPLICAS_BELOW_ZERO = "'MaxReplicas' cannot be less than 0"
PARALLELISM_BELOW_ZERO = "parallelism cannot be less than 0"
STORAGE_URI_IN_TRANSFORMER = "storage uri should not be specified in transformer container"


class Refused(Exception):
    """The webhook's answer: the object is not admitted, with upstream's message."""


def _quantity(value: Any) -> float:
    """A Kubernetes quantity (MetricQuantity) as a number, for comparisons such as "≥ 1Mi"."""
    text = str(value).strip()
    units = {
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
        "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    }  # fmt: skip
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def _present(spec: Mapping[str, Any], key: str) -> bool:
    return spec.get(key) is not None


# -- KServe: inference_service_validation.go --------------------------------------------------------------


def _validate_replicas(ext: Mapping[str, Any]) -> None:
    low = ext.get("minReplicas")
    low = 1 if low is None else int(low)  # constants.DefaultMinReplicas
    high = int(ext.get("maxReplicas") or 0)
    if low < 0:
        raise Refused(MIN_REPLICAS_BELOW_ZERO)
    if high < 0:
        raise Refused(MAX_REPLICAS_BELOW_ZERO)
    if low > high and high != 0:
        raise Refused(MIN_REPLICAS_GREATER_THAN_MAX)


def _validate_extensions(ext: Mapping[str, Any]) -> None:
    """ComponentExtensionSpec.Validate (the logger check is omitted: no logger is rendered)."""
    concurrency = ext.get("containerConcurrency")
    if concurrency is not None and int(concurrency) < 0:
        raise Refused(PARALLELISM_BELOW_ZERO)
    _validate_replicas(ext)


def _validate_scale_target(target: Mapping[str, Any]) -> None:
    kind = target.get("type")
    if kind == "Utilization":
        if target.get("averageUtilization") is None:
            raise Refused("the AverageUtilization type should be set")
        value = int(target["averageUtilization"])
        if value < 1 or value > 100:
            raise Refused("the target utilization percentage should be a [1-100] integer")
    elif kind == "AverageValue":
        if target.get("averageValue") is None:
            raise Refused("the AverageValue type should be set")
    elif kind == "Value" and target.get("value") is None:
        raise Refused("the Value type should be set")


def _validate_hpa(ext: Mapping[str, Any]) -> None:
    metric = ext.get("scaleMetric") or "cpu"
    if metric not in HPA_METRICS:
        raise Refused(f"[{metric}] is not a supported metric")
    if ext.get("scaleTarget") is not None:
        target = int(ext["scaleTarget"])
        # Go's precedence: `metric == MetricCPU && target < 1 || target > 100`.
        if (metric == "cpu" and target < 1) or target > 100:
            raise Refused("the target utilization percentage should be a [1-100] integer")
        if metric == "memory" and target < 1:
            raise Refused("the target memory should be greater than 1 MiB")
    for spec in as_list(mapping(ext.get("autoScaling")).get("metrics")):
        kind = mapping(spec).get("type")
        if kind == "Resource":
            if mapping(spec).get("resource") is None:
                raise Refused("metricSpec.Resource is not set for resource metric source type")
        else:
            raise Refused(f"invalid HPA metric source type with value [{kind}],valid metric source types are Resource")


def _validate_keda(ext: Mapping[str, Any]) -> None:
    if ext.get("scaleMetric") is not None:
        raise Refused("ScaleMetric is not supported for KEDA")
    for spec in as_list(mapping(ext.get("autoScaling")).get("metrics")):
        spec = mapping(spec)
        kind = spec.get("type")
        if kind == "Resource":
            resource = spec.get("resource")
            if resource is None:
                raise Refused("metricSpec.Resource is not set for resource metric source type")
            target = mapping(mapping(resource).get("target"))
            name = mapping(resource).get("name")
            if name == "cpu":
                if target.get("type") != "Utilization":
                    raise Refused("the cpu target value type should be Utilization")
            elif name == "memory":
                if target.get("type") not in ("AverageValue", "Utilization"):
                    raise Refused("the memory target value type should be AverageValue or Utilization")
                if target.get("type") == "AverageValue" and _quantity(target.get("averageValue") or 0) < 2**20:
                    raise Refused("the memory target value should be greater than 1 MiB")
            else:
                raise Refused(f"resource type {name} is not supported")
            _validate_scale_target(target)
        elif kind in ("External", "PodMetric"):
            key = "external" if kind == "External" else "podmetric"
            source = spec.get(key)
            if source is None:
                label = "External" if kind == "External" else "PodMetric"
                raise Refused(f"metricSpec.{label} is not set for {'external' if key == 'external' else 'pod'} "
                              "metric source type")  # fmt: skip
            if not mapping(mapping(source).get("metric")).get("query"):
                raise Refused("the query should not be empty")
            target = mapping(mapping(source).get("target"))
            if target.get("value") is None:
                raise Refused("the target threshold value should not be empty")
            _validate_scale_target(target)
        else:
            raise Refused(f"unknown KEDA metric type with value [{kind}].Valid types are Resource,External,PodMetric")


def _validate_autoscaling_extension(annotations: Mapping[str, Any], ext: Mapping[str, Any]) -> None:
    if annotations.get(DEPLOYMENT_MODE) == "Standard":
        cls = annotations.get(AUTOSCALER_CLASS)
        if cls == "hpa":
            _validate_hpa(ext)
        elif cls == "keda":
            _validate_keda(ext)
        return
    # Knative (serverless) mode: KServe's KPA checks.
    if annotations.get("autoscaling.knative.dev/class") == "hpa.autoscaling.knative.dev":
        _validate_hpa(ext)
        return
    if ext.get("deploymentStrategy") is not None:
        raise Refused("customizing deploymentStrategy is only supported for raw deployment mode")
    metric = ext.get("scaleMetric") or "concurrency"
    if metric not in KPA_METRICS:
        raise Refused(f"[{metric}] is not a supported metric")
    if metric == "rps" and ext.get("scaleTarget") is not None and int(ext["scaleTarget"]) < 1:
        raise Refused("the target for rps should be greater than 1")


def predictor_implementations(predictor: Mapping[str, Any]) -> list[str]:
    """PredictorSpec.GetImplementations: the model-format fields set, then the custom predictor (a
    container named kserve-container, or any container when no other implementation is set)."""
    found = [key for key, _ in PREDICTOR_IMPLEMENTATIONS if predictor.get(key) is not None]
    containers = [mapping(c) for c in as_list(predictor.get("containers"))]
    if containers:
        found += ["custom" for c in containers if c.get("name") == INFERENCE_SERVICE_CONTAINER]
        if not found:
            found.append("custom")
    return found


def _validate_custom_protocol(predictor: Mapping[str, Any]) -> None:
    containers = as_list(predictor.get("containers"))
    for env in as_list(mapping(containers[0]).get("env")) if containers else []:
        if mapping(env).get("name") == "PROTOCOL":
            if mapping(env).get("value") not in ("v1", "v2"):
                raise Refused(f"invalid protocol {mapping(env).get('value')}. Must be one of [v1, v2]")
            return


def validate_inference_service(isvc: Mapping[str, Any]) -> None:
    """validateInferenceService for a create, predictor only: raises Refused with KServe's message."""
    meta = mapping(isvc.get("metadata"))
    annotations = mapping(meta.get("annotations"))
    name = str(meta.get("name") or "")
    if not _ISVC_NAME.match(name):
        raise Refused(
            f'the InferenceService "{name}" is invalid: a InferenceService name must consist of lower case '
            "alphanumeric characters or '-', and must start with alphabetical character. (e.g. \"my-name\" or "
            f"\"abc-123\", regex used for validation is '{ISVC_NAME_FMT}')"
        )
    if AUTOSCALER_CLASS in annotations and annotations[AUTOSCALER_CLASS] not in AUTOSCALER_CLASSES:
        raise Refused(f"[{annotations[AUTOSCALER_CLASS]}] is not a supported autoscaler class type")
    predictor = mapping(mapping(isvc.get("spec")).get("predictor"))
    # validateCollocationStorageURI
    for container in as_list(predictor.get("containers")):
        if mapping(container).get("name") == TRANSFORMER_CONTAINER:
            if any(mapping(e).get("name") == "STORAGE_URI" for e in as_list(mapping(container).get("env"))):
                raise Refused(STORAGE_URI_IN_TRANSFORMER)
            break
    # validatePredictor: standard predictors take no `name`
    for key, _ in PREDICTOR_IMPLEMENTATIONS:
        if mapping(predictor.get(key)).get("name"):
            raise Refused("the 'name' field is not allowed in standard predictor")
    implementations = predictor_implementations(predictor)
    # validateMultipleStorageURIs (predictor): the first implementation's storage URI and storageUris are
    # exclusive (a custom predictor's storage URI is its STORAGE_URI variable)
    if implementations and _present(predictor, "storageUris"):
        first = implementations[0]
        if first == "custom":
            containers = as_list(predictor.get("containers"))
            envs = as_list(mapping(containers[0]).get("env")) if containers else []
            uri = next((mapping(e).get("value") for e in envs if mapping(e).get("name") == "STORAGE_URI"), None)
        else:
            uri = mapping(predictor.get(first)).get("storageUri")
        if uri is not None:
            raise Refused("Setting both StorageURI and StorageURIs is not supported.")
    # the per-component loop: validateExactlyOneImplementation, then the implementation's and the
    # extensions' Validate and validateAutoScalingCompExtension (PredictorExtensionSpec.Validate is empty
    # at the tag: its storage spec check is commented out upstream)
    if len(implementations) != 1:
        raise Refused(f"exactly one of [{_PREDICTOR_FIELDS}] must be specified in PredictorSpec")
    if implementations[0] == "custom":
        _validate_custom_protocol(predictor)
    _validate_extensions(predictor)
    _validate_autoscaling_extension(annotations, predictor)


# -- KServe's KEDA reconciler: the ScaledObject it builds ---------------------------------------------------


def kserve_scaled_object(isvc: Mapping[str, Any]) -> dict[str, Any]:
    """createKedaScaledObject for the predictor of an InferenceService with autoscalerClass keda (the
    predictor's Deployment is `<name>-predictor`, constants.PredictorServiceName)."""
    meta = mapping(isvc.get("metadata"))
    predictor = mapping(mapping(isvc.get("spec")).get("predictor"))
    component = f"{meta.get('name')}-predictor"
    low = predictor.get("minReplicas")
    low = 1 if low is None else int(low)
    high = max(int(predictor.get("maxReplicas") or 0), low)
    triggers: list[dict[str, Any]] = []
    for spec in as_list(mapping(predictor.get("autoScaling")).get("metrics")):
        spec = mapping(spec)
        if spec.get("type") == "Resource":
            resource = mapping(spec.get("resource"))
            target = mapping(resource.get("target"))
            kind = target.get("type")
            value = "0"
            if kind == "Utilization":
                util = target.get("averageUtilization")
                if resource.get("name") == "cpu" and util is None:
                    util = 80  # constants.DefaultCPUUtilization
                value = "0" if util is None else str(int(util))
            elif kind == "AverageValue":
                value = str(target.get("averageValue") or "0")
            elif kind == "Value":
                value = str(target.get("value") or "0")
            triggers.append({"type": resource.get("name"), "metadata": {"value": value}, "metricType": kind})
        elif spec.get("type") == "External":
            external = mapping(spec.get("external"))
            metric = mapping(external.get("metric"))
            trigger: dict[str, Any] = {
                "type": metric.get("backend"),
                "metadata": {
                    "serverAddress": metric.get("serverAddress", ""),
                    "query": metric.get("query", ""),
                    # getOriginalStringMQ(Target.Value, "0"): an AverageValue target is dropped, threshold 0.
                    "threshold": str(mapping(external.get("target")).get("value") or "0"),
                },
            }
            if metric.get("backend") == "prometheus" and metric.get("namespace"):
                trigger["metadata"]["namespace"] = metric["namespace"]
            triggers.append(trigger)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": component,
            "namespace": meta.get("namespace"),
            "labels": dict(mapping(meta.get("labels"))),
        },
        "spec": {
            "scaleTargetRef": {"name": component},
            "triggers": triggers,
            "minReplicaCount": low,
            "maxReplicaCount": high,
        },
    }


# -- KEDA: scaledobject_webhook.go ------------------------------------------------------------------------

#: validation.DNS1123LabelMaxLength: the ScaledObject's name is a label value.
_MAX_LABEL_VALUE = 63
_RESOURCE_TRIGGERS = ("cpu", "memory")


def _target_gvk(so: Mapping[str, Any]) -> str:
    ref = mapping(mapping(so.get("spec")).get("scaleTargetRef"))
    return f"{ref.get('apiVersion') or 'apps/v1'}.{ref.get('kind') or 'Deployment'}/{ref.get('name')}"


def hpa_name(so: Mapping[str, Any]) -> str:
    """getHpaName: advanced.horizontalPodAutoscalerConfig.name, else keda-hpa-<name>."""
    custom = mapping(mapping(mapping(so.get("spec")).get("advanced")).get("horizontalPodAutoscalerConfig"))
    return str(custom.get("name") or f"keda-hpa-{mapping(so.get('metadata')).get('name')}")


def validate_scaled_object(
    so: Mapping[str, Any],
    *,
    others: Iterable[Mapping[str, Any]] = (),
    hpas: Iterable[Mapping[str, Any]] = (),
    target_pod: Mapping[str, Any] | None = None,
    namespace_has_limit_range: Sequence[str] = (),
) -> list[str]:
    """validateWorkload for a create: raises Refused with KEDA's message; returns its warnings.

    `others` are the other ScaledObjects of the namespace, `hpas` its HPAs, `target_pod` the pod spec of
    the scale target (for the cpu/memory trigger check), `namespace_has_limit_range` the resources a
    LimitRange in the namespace defaults (cpu, memory)."""
    spec = mapping(so.get("spec"))
    meta = mapping(so.get("metadata"))
    name = str(meta.get("name") or "")
    triggers = [mapping(t) for t in as_list(spec.get("triggers"))]
    warnings: list[str] = []

    # verifyReplicaCount: CheckReplicaCountBoundsAreValid (GetHPAMinReplicas: an unset or 0 minimum is 1;
    # GetHPAMaxReplicas: unset is 100)
    low = int(spec["minReplicaCount"]) if spec.get("minReplicaCount") is not None else 0
    bound = low if low > 0 else (1 if spec.get("minReplicaCount") is not None else 0)
    high = int(spec["maxReplicaCount"]) if spec.get("maxReplicaCount") is not None else 100
    if bound > high:
        raise Refused(f"MinReplicaCount={bound} must be less than MaxReplicaCount={high}")
    idle = spec.get("idleReplicaCount")
    if idle is not None and int(idle) >= bound:
        raise Refused(f"IdleReplicaCount={int(idle)} must be less than MinReplicaCount={bound}")

    # verifyFallback: CheckFallbackValid
    fallback = spec.get("fallback")
    if fallback is not None:
        fb = mapping(fallback)
        threshold, replicas = int(fb.get("failureThreshold") or 0), int(fb.get("replicas") or 0)
        if threshold < 0 or replicas < 0:
            raise Refused(f"FailureThreshold={threshold} & Replicas={replicas} must both be greater than or equal to 0")
        modifiers = mapping(mapping(spec.get("advanced")).get("scalingModifiers"))
        if not modifiers and not any(t.get("type") not in _RESOURCE_TRIGGERS for t in triggers):
            raise Refused(
                "at least one trigger (that is not cpu or memory) has to have the `AverageValue` type for the "
                "fallback to be enabled"
            )

    # verifyName
    if len(name) > _MAX_LABEL_VALUE:
        raise Refused(
            f'scaledobject name "{name}" is {len(name)} characters long; must be no more than {_MAX_LABEL_VALUE} '
            'characters because it is used as the "scaledobject.keda.sh/name" label value'
        )
    hpa = hpa_name(so)
    if len(hpa) > _MAX_LABEL_VALUE:
        raise Refused(
            f'HPA name "{hpa}" derived from scaledobject is {len(hpa)} characters long; must be no more than '
            f"{_MAX_LABEL_VALUE} characters; set spec.advanced.horizontalPodAutoscalerConfig.name to a shorter name "
            "or shorten the scaledobject name"
        )

    # verifyScaledObjects
    idle_not_zero = idle is None or int(idle) != 0
    cached = any(t.get("useCachedMetrics") for t in triggers)
    if spec.get("pollingInterval") is not None and low > 0 and idle_not_zero and not cached:
        warnings.append(
            "PollingInterval is configured but is not relevant. PollingInterval is only relevant when "
            "minReplicaCount = 0 or idleReplicaCount = 0 or useCachedMetrics is enabled"
        )
    if spec.get("cooldownPeriod") is not None and low > 0 and idle_not_zero:
        warnings.append(
            "CooldownPeriod is configured but is not relevant. CooldownPeriod is only relevant when "
            "minReplicaCount = 0 or idleReplicaCount = 0"
        )
    for other in others:
        other_name = mapping(other.get("metadata")).get("name")
        if other_name == name:
            continue
        if _target_gvk(other) == _target_gvk(so):
            ref = mapping(spec.get("scaleTargetRef"))
            raise Refused(
                f"the workload '{ref.get('name')}' of type '{_target_gvk(so).rsplit('/', 1)[0]}' is already "
                f"managed by the ScaledObject '{other_name}'"
            )
        if hpa_name(other) == hpa:
            raise Refused(f"the HPA '{hpa}' is already managed by the ScaledObject '{other_name}'")

    # verifyHpas: an HPA of someone else's on the same workload
    for h in hpas:
        hmeta = mapping(h.get("metadata"))
        if mapping(hmeta.get("annotations")).get("validations.keda.sh/hpa-ownership") == "false":
            continue
        ref = mapping(mapping(h.get("spec")).get("scaleTargetRef"))
        gvk = f"{ref.get('apiVersion') or 'apps/v1'}.{ref.get('kind') or 'Deployment'}/{ref.get('name')}"
        owned = any(
            mapping(o).get("kind") == "ScaledObject" and mapping(o).get("name") == name
            for o in as_list(hmeta.get("ownerReferences"))
        )
        if gvk == _target_gvk(so) and not owned:
            raise Refused(
                f"the workload '{ref.get('name')}' of type '{gvk.rsplit('/', 1)[0]}' is already managed by the hpa "
                f"'{hmeta.get('name')}'"
            )

    # verifyCPUMemoryScalers
    for trigger in triggers:
        kind = trigger.get("type")
        if kind not in _RESOURCE_TRIGGERS or target_pod is None:
            continue
        wanted = mapping(trigger.get("metadata")).get("containerName")
        for container in as_list(target_pod.get("containers")):
            c = mapping(container)
            if wanted and c.get("name") != wanted:
                continue
            res = mapping(c.get("resources"))
            stated = [mapping(res.get(k)).get(kind) for k in ("requests", "limits")]
            # isWorkloadResourceSet, else isContainerResourceLimitSet (a LimitRange default)
            if not any(v is not None and _quantity(v) > 0 for v in stated) and kind not in namespace_has_limit_range:
                raise Refused(
                    f"the scaledobject has a {kind} trigger but the container {c.get('name')} doesn't have the "
                    f"{kind} request defined"
                )
        if all(t.get("type") in _RESOURCE_TRIGGERS for t in triggers) and low == 0:
            raise Refused(
                "scaledobject has only cpu/memory triggers AND minReplica is 0 "
                "(scale to zero doesn't work in this case)"
            )

    # verifyTriggers: ValidateTriggers
    if not triggers:
        raise Refused("no triggers defined in the ScaledObject/ScaledJob")
    seen: set[str] = set()
    for trigger in triggers:
        if trigger.get("useCachedMetrics") and trigger.get("type") in ("cpu", "memory", "cron"):
            raise Refused(f'property "useCachedMetrics" is not supported for "{trigger.get("type")}" scaler')
        trigger_name = trigger.get("name")
        if trigger_name:
            if trigger_name in seen:
                raise Refused(
                    f'triggerName "{trigger_name}" is defined multiple times in the ScaledObject/ScaledJob, but it '
                    "must be unique"
                )
            seen.add(str(trigger_name))
    return warnings


# -- KEDA: the cron scaler (pkg/scalers/cron_scaler.go, cronMetadata.Validate), built when KEDA reads the
#    ScaledObject (after admission: a trigger that fails leaves the ScaledObject not Ready), and the schedule
#    parser it uses: github.com/robfig/cron/v3 v3.0.1 (KEDA's go.mod), parser.go, with
#    cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow).

ROBFIG_CRON_TAG = "v3.0.1"
#: spec.go's bounds of the five fields, in order, with their names.
CRON_BOUNDS: tuple[tuple[int, int, Mapping[str, int]], ...] = (
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (
        1,
        12,
        {
            m: i
            for i, m in enumerate(
                ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
            )
        },
    ),
    (0, 6, {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}),
)
STAR_BIT = 1 << 63


def _must_parse_int(expr: str) -> int:
    """mustParseInt: strconv.Atoi (an optional sign, then decimal digits), never negative."""
    if not re.fullmatch(r"[+-]?[0-9]+", expr):
        raise Refused(f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax')
    num = int(expr)
    if num < 0:
        raise Refused(f"negative number ({num}) not allowed: {expr}")
    return num


def _parse_int_or_name(expr: str, names: Mapping[str, int]) -> int:
    if names and expr.lower() in names:
        return names[expr.lower()]
    return _must_parse_int(expr)


def cron_bits(low: int, high: int, step: int) -> int:
    """getBits: the bits from low to high, every step."""
    return sum(1 << i for i in range(low, high + 1, step))


def cron_range(expr: str, low: int, high: int, names: Mapping[str, int] | None = None) -> int:
    """getRange: `number | number "-" number [ "/" number ]`, or `*`/`?`, as bits."""
    names = names or {}
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    single = len(low_and_high) == 1
    extra = 0
    if low_and_high[0] in ("*", "?"):
        start, end, extra = low, high, STAR_BIT
    else:
        start = _parse_int_or_name(low_and_high[0], names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _parse_int_or_name(low_and_high[1], names)
        else:
            raise Refused(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _must_parse_int(range_and_step[1])
        if single:  # "N/step" means "N-max/step"
            end = high
        if step > 1:
            extra = 0
    else:
        raise Refused(f"too many slashes: {expr}")
    if start < low:
        raise Refused(f"beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise Refused(f"end of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise Refused(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise Refused(f"step of range should be a positive number: {expr}")
    return cron_bits(start, end, step) | extra


def cron_field(field: str, low: int, high: int, names: Mapping[str, int] | None = None) -> int:
    """getField: a comma-separated list of ranges (empty items skipped, as strings.FieldsFunc does)."""
    bits = 0
    for expr in (e for e in field.split(",") if e):
        bits |= cron_range(expr, low, high, names)
    return bits


def parse_cron(spec: str) -> None:
    """Parser.Parse for the five standard fields: an optional TZ=/CRON_TZ= prefix, no descriptors."""
    if not spec:
        raise Refused("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        import zoneinfo

        space, eq = spec.find(" "), spec.find("=")
        zone = spec[eq + 1 : space] if space > 0 else spec[eq + 1 :]
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise Refused(f"provided bad location {zone}: unknown time zone {zone}") from None
        spec = spec[space:].strip() if space > 0 else ""
    if spec.startswith("@"):
        raise Refused(f"parser does not accept descriptors: {spec}")
    fields = spec.split()
    if len(fields) != len(CRON_BOUNDS):
        raise Refused(f"expected exactly {len(CRON_BOUNDS)} fields, found {len(fields)}: [{' '.join(fields)}]")
    for field, (low, high, names) in zip(fields, CRON_BOUNDS, strict=True):
        cron_field(field, low, high, names)


def validate_cron_metadata(metadata: Mapping[str, Any]) -> None:
    """parseCronMetadata: TypedConfig (every field required, desiredReplicas an integer), then Validate."""
    for key in ("start", "end", "timezone", "desiredReplicas"):
        if key not in metadata:
            raise Refused(f'missing required parameter "{key}" in [triggerMetadata]')
    raw = str(metadata["desiredReplicas"])
    if not re.fullmatch(r"[+-]?[0-9]+", raw):
        raise Refused(f'unable to set param "desiredReplicas" value "{raw}"')
    for key in ("start", "end"):
        try:
            parse_cron(str(metadata[key]))
        except Refused as exc:
            raise Refused(f"error parsing {key} schedule: {exc}") from None
    if metadata["start"] == metadata["end"]:
        raise Refused("start and end can not have exactly same time input")
    if int(raw) == 0:
        raise Refused("no desiredReplicas specified")


def validate_scalers(so: Mapping[str, Any]) -> None:
    """What KEDA checks when it builds the ScaledObject's scalers, for the trigger types ported here (cron)."""
    for i, trigger in enumerate(as_list(mapping(so.get("spec")).get("triggers"))):
        trigger = mapping(trigger)
        if trigger.get("type") == "cron":
            try:
                validate_cron_metadata(mapping(trigger.get("metadata")))
            except Refused as exc:
                raise Refused(f"trigger {i} (cron): error parsing cron metadata: {exc}") from None


# -- EKS's pod identity webhook (aws/amazon-eks-pod-identity-webhook v0.6.17, pkg/handler/handler.go:
#    getContainersToSkip and getPodSpecPatch): for a pod whose service account carries an IRSA role, every
#    init container and container gets the web identity token and AWS_ROLE_ARN, except those the pod's
#    `eks.amazonaws.com/skip-containers` annotation names (one CSV record of container names).

IRSA_SKIP_CONTAINERS = "eks.amazonaws.com/skip-containers"


def irsa_credentialed(pod: Mapping[str, Any]) -> list[str]:
    """The containers (init containers first) the webhook gives the pod's IRSA credentials."""
    import csv

    value = mapping(mapping(pod.get("metadata")).get("annotations")).get(IRSA_SKIP_CONTAINERS)
    skipped: set[str] = set()
    if isinstance(value, str):
        try:
            fields = next(csv.reader([value], strict=True), [])
        except csv.Error:  # an unreadable annotation skips nothing
            fields = []
        # Go's encoding/csv also refuses a bare quote in an unquoted field (ErrBareQuote), which Python keeps.
        skipped = set() if any('"' in f for f in fields) else set(fields)
    spec = mapping(pod.get("spec"))
    names = [mapping(c).get("name") for c in [*as_list(spec.get("initContainers")), *as_list(spec.get("containers"))]]
    return [str(n) for n in names if n not in skipped]
