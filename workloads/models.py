"""One catalogued model in the cluster: its InferenceService (and canary), PodDisruptionBudget, KEDA
ScaledObject, PodMonitor and SLO objective series."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from modelyard.infra import iam
from modelyard.infra.karpenter import GPU_POOL_LABEL, GPU_TAINT
from modelyard.infra.model_store import model_pull_policy, model_pull_service_account
from modelyard.platform import signals
from modelyard.platform.common import CONTAINER_SECURITY
from modelyard.platform.common import zone_spread as common_zone_spread
from modelyard.platform.kserve import storage_annotations
from modelyard.platform.monitoring import model_pod_monitor
from modelyard.platform.rules import Record, RuleGroup, prometheus_rule_spec
from modelyard.policies.governance.admission import IRSA_SKIP_CONTAINERS
from modelyard.policies.governance.conventions import (
    CPU_POOL_LABEL,
    CPU_POOL_TAINT,
    GPU_RESOURCE,
    ISVC_LABEL,
    MIRROR_PERCENT_ANNOTATION,
    MODEL_LABEL,
    ROLE_LABEL,
    RUNTIME_LABEL,
    TEAM_LABEL,
    TRAFFIC_PERCENT_ANNOTATION,
    VERSION_LABEL,
)
from modelyard.policies.governance.kserve import MODEL_CONTAINER
from modelyard.workloads.catalog import Drift, ModelEntry
from modelyard.workloads.drift import tap_url as drift_tap_url
from modelyard.workloads.runtimes import PodContext

# ROLE_LABEL is `stable`, `canary` or `shadow`: a canary or shadow is small on purpose, and policy holds only stable
# ones to the tier's replica floor.


@dataclass(frozen=True, kw_only=True)
class ModelPull:
    """What a model's own pull identity needs of the platform stack's outputs: the cluster's IRSA provider, the
    model bucket and its key, the region."""

    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    region: pulumi.Input[str]


@dataclass(frozen=True, kw_only=True)
class ModelDeploymentArgs:
    model: ModelEntry
    namespace: pulumi.Input[str]
    #: The model's pull role and service account are made from these (one per model: it reads its own prefix).
    pull: ModelPull
    bucket: pulumi.Input[str]
    registry: pulumi.Input[str]
    #: The platform's `prometheusUrl` output: where KEDA reads the serving signal.
    prometheus_url: pulumi.Input[str]
    #: The platform's `runtimeImages` output: the ECR mirror of each runtime image, by versions.IMAGES key.
    images: pulumi.Input[Mapping[str, str]]
    labels: Mapping[str, str]
    #: The catalog's drift worker, whose Service the model's taps send to; None: no tap.
    drift: Drift | None = None
    #: The platform's `modelSigningPublicKey` output: the key the model servers verify each manifest's signature
    #: with (base64 DER).
    signing_key: pulumi.Input[str] = ""


def slo_rule_groups(model: ModelEntry, namespace: str) -> list[RuleGroup]:
    """The model's objectives as series; the platform's burn-rate alerts join on them (platform/rules.py):
    availability, and each latency indicator its runtime reads with the share within its threshold bucket
    ("p99 under X ms" is "99% of requests within the X ms bucket"); and, for an engine that reserves GPU
    memory up front, that reservation per InferenceService (the platform's GPU memory alerts read it)."""
    labels = {"namespace": namespace, "model": model.name}
    records = [Record(signals.SLO_AVAILABILITY, f"vector({model.slo.availability:g})", labels)]
    for o in model.runtime_module.objectives(model):
        indicator = {**labels, "indicator": o.indicator}
        records.append(Record(signals.SLO_LATENCY, f"vector({o.share:g})", indicator))
        records.append(Record(signals.SLO_LATENCY_THRESHOLD, "vector(1)", {**indicator, "le": o.le}))
    groups = [RuleGroup(f"slo-{model.name}", tuple(records))]
    reservation = model.runtime_module.gpu_memory_reservation(model)
    if reservation is not None and model.resources.gpu:
        names = [model.name] + ([f"{model.name}-canary"] if model.canary_active else [])
        groups.append(
            RuleGroup(
                f"gpu-{model.name}",
                tuple(
                    Record(
                        signals.GPU_MEMORY_RESERVATION,
                        f"vector({reservation:g})",
                        {"namespace": namespace, "inferenceservice": name},
                    )
                    for name in names
                ),
            )
        )
    return groups


def hardened_container() -> dict[str, Any]:
    """Every model container's securityContext: the platform's hardening, never root."""
    return {**CONTAINER_SECURITY, "runAsNonRoot": True}


def resources(model: ModelEntry) -> dict[str, dict[str, str]]:
    r = model.resources
    requests = {"cpu": r.cpu, "memory": r.memory}
    if r.gpu:
        requests[GPU_RESOURCE] = str(r.gpu.count)
    # Limits equal requests: guaranteed QoS, and GPU requests must equal limits anyway.
    return {"requests": requests, "limits": dict(requests)}


#: The InferenceService annotation that says who scales a predictor (KServe Standard mode): KServe's HPA by
#: default, or `external` for a GPU predictor, which KEDA scales through the ScaledObject of our own below.
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
#: Consecutive failed reads of the serving signal (KEDA polls every 30 s) before KEDA falls back.
FALLBACK_FAILURES = 3


def predictor_deployment(isvc_name: str) -> str:
    """The Deployment KServe's Standard mode makes of a predictor (constants.PredictorServiceName)."""
    return f"{isvc_name}-predictor"


def fallback_replicas(min_replicas: int, max_replicas: int) -> int:
    """Replicas KEDA holds, at the least, while the serving signal cannot be read: half the way to the
    maximum, never below the minimum. With `currentReplicasIfHigher` a loaded predictor keeps what it has."""
    return max(min_replicas, math.ceil(max_replicas / 2))


def autoscaling(model: ModelEntry) -> dict[str, Any]:
    """The predictor's scaling fields: KServe's HPA on cpu or memory; nothing for a serving signal, which
    our own ScaledObject scales."""
    r = model.replicas
    if model.scaling_signal is not None:
        return {}
    return {"scaleMetric": r.scale_metric, "scaleTarget": r.scale_target}


def scaled_object_spec(
    model: ModelEntry, *, isvc_name: str, namespace: str, prometheus_url: str, min_replicas: int
) -> dict[str, Any]:
    """KEDA's ScaledObject for a predictor on its runtime's serving signal, failing safe.

    KServe's own KEDA reconciler (v0.16.0) builds a ScaledObject with no fallback and KEDA's Prometheus
    default `ignoreNullValues: true`: with Prometheus down the HPA freezes, and with an empty result (no pod
    scraped) KEDA reads 0 and scales a loaded predictor to its minimum. Here an empty result is an error
    (`ignoreNullValues: "false"`), and after FALLBACK_FAILURES failed reads KEDA holds the larger of the
    current replicas and `fallback_replicas` until the signal returns."""
    high = max(model.replicas.max, min_replicas)
    sig = model.scaling_signal
    assert sig is not None
    triggers: list[dict[str, Any]] = [
        {
            "type": "prometheus",
            "name": sig.name.replace("_", "-"),
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": prometheus_url,
                "query": sig.query(namespace, isvc_name, absent_is_zero=min_replicas == 0),
                "threshold": str(model.replicas.scale_target),
                "ignoreNullValues": "false",
            },
        }
    ]
    awake = model.replicas.awake
    if min_replicas == 0 and awake is not None:
        # One replica while awake; after `end`, KEDA scales to zero once the queue has been empty for its
        # cooldown period (300 s by default).
        triggers.append(
            {
                "type": "cron",
                "name": "awake",
                "metadata": {
                    "timezone": awake.timezone,
                    "start": awake.start,
                    "end": awake.end,
                    "desiredReplicas": "1",
                },
            }
        )
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": predictor_deployment(isvc_name)},
        "minReplicaCount": min_replicas,
        "maxReplicaCount": high,
        "fallback": {
            "failureThreshold": FALLBACK_FAILURES,
            "replicas": fallback_replicas(min_replicas, high),
            "behavior": "currentReplicasIfHigher",
        },
        "triggers": triggers,
    }


def zone_spread(isvc_name: str) -> dict[str, Any]:
    """A predictor's replicas across zones (platform.common.zone_spread), selected by the label KServe
    puts on the predictor's pods."""
    return common_zone_spread({ISVC_LABEL: isvc_name})


def predictor(
    model: ModelEntry,
    *,
    isvc_name: str,
    version: str,
    min_replicas: int,
    bucket: str,
    registry: str,
    service_account: str,
    images: Mapping[str, str] | None = None,
    tap_url: str | None = None,
    tap_share: float = 0.01,
    signing_key: str = "",
) -> dict[str, Any]:
    """The InferenceService predictor for `version` of `model`: the fields every runtime shares (replicas,
    autoscaling, identity, pod hardening, zone spread, GPU placement) and the runtime's own pod
    (workloads/runtimes). Every version answers to the catalog's model name (a canary is the same model to
    its clients: a Service or route sends them either)."""
    spec: dict[str, Any] = {
        "minReplicas": min_replicas,
        "maxReplicas": max(model.replicas.max, min_replicas),
        **autoscaling(model),
        "serviceAccountName": service_account,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if not model.runtime_module.reads_model_store:
        # The pod's IRSA credentials (the model-pull role) go to the storage initializer only: EKS's pod identity
        # webhook skips the containers this annotation names, and KServe puts the predictor's annotations on
        # the pod. A model container that never reads the store cannot copy it out.
        spec["annotations"] = {IRSA_SKIP_CONTAINERS: MODEL_CONTAINER}
    if min_replicas >= 2:
        spec["topologySpreadConstraints"] = [zone_spread(isvc_name)]
    if model.resources.gpu:
        spec["nodeSelector"] = {GPU_POOL_LABEL: model.resources.gpu.pool}
        spec["tolerations"] = [{"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}]
    else:
        # The platform's CPU pool (infra/karpenter.py): off the system nodes, which run the platform itself.
        spec["nodeSelector"] = dict([CPU_POOL_LABEL])
        spec["tolerations"] = [{**CPU_POOL_TAINT, "operator": "Equal"}]
    ctx = PodContext(
        storage_uri=f"s3://{bucket}/{model.name}/{version}/",
        registry=registry,
        images=dict(images or {}),
        version=version,
        tap_url=tap_url,
        tap_share=tap_share,
        signing_key=signing_key,
    )
    spec.update(model.runtime_module.pod(model, ctx))
    return spec


class ModelDeployment(pulumi.ComponentResource):
    """A catalogued model: InferenceService (Standard mode) for its version and, while a canary runs,
    one for the canary version; for each a PodDisruptionBudget and, on the serving signal, a KEDA
    ScaledObject; a PodMonitor; SLO objective series. Traffic reaches it through its gateway route
    (workloads/routes.py), which splits it between the versions by weight."""

    def __init__(self, name: str, args: ModelDeploymentArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:workloads:ModelDeployment", name, None, opts)
        m = args.model
        child = pulumi.ResourceOptions(parent=self)
        puller = self._pull_identity(name, args)
        versions = [(m.name, m.version, m.replicas.min, "stable")]
        if m.canary_active:
            assert m.canary is not None
            versions.append((f"{m.name}-canary", m.canary.version, m.canary_replicas(), "canary"))
        if m.shadow_active:
            assert m.shadow is not None
            versions.append((f"{m.name}-shadow", m.shadow.version, m.shadow_replicas(), "shadow"))
        for isvc_name, version, replicas, role in versions:
            labels = {
                **args.labels,
                TEAM_LABEL: m.team,
                MODEL_LABEL: m.name,
                VERSION_LABEL: version,
                ROLE_LABEL: role,
                RUNTIME_LABEL: m.runtime.kind,
            }

            def spec_for(v: list[Any], n: str = isvc_name, ver: str = version, r: int = replicas) -> dict[str, Any]:
                drift = args.drift
                return {
                    "predictor": predictor(
                        m,
                        isvc_name=n,
                        version=ver,
                        min_replicas=r,
                        bucket=v[0],
                        registry=v[1],
                        service_account=v[2],
                        images=v[3],
                        tap_url=None if drift is None else drift_tap_url(v[4]),
                        tap_share=0.01 if drift is None else drift.sample_percent / 100,
                        signing_key=v[5],
                    )
                }

            spec = pulumi.Output.all(
                args.bucket, args.registry, puller.metadata["name"], args.images, args.namespace, args.signing_key
            ).apply(spec_for)
            annotations = {"serving.kserve.io/deploymentMode": "Standard"}
            if role == "canary" and m.canary is not None:
                # The share the catalog asks of the route: rule canary-weight-carried holds the route to it.
                annotations[TRAFFIC_PERCENT_ANNOTATION] = str(m.canary.traffic_percent)
            if role == "shadow" and m.shadow is not None:
                # The share of requests the route copies to it (rule canary-weight-carried: mirrored, never weighted).
                annotations[MIRROR_PERCENT_ANNOTATION] = str(m.shadow.percent)
            if m.scaling_signal is not None:
                annotations[AUTOSCALER_CLASS] = "external"
            isvc = k8s.apiextensions.CustomResource(
                f"{isvc_name}-isvc",
                api_version="serving.kserve.io/v1beta1",
                kind="InferenceService",
                metadata={
                    "name": isvc_name,
                    "namespace": args.namespace,
                    "labels": labels,
                    "annotations": annotations,
                },
                spec=spec,
                opts=child,
            )
            if m.scaling_signal is not None:

                def scaler_for(v: list[Any], n: str = isvc_name, r: int = replicas) -> dict[str, Any]:
                    return scaled_object_spec(m, isvc_name=n, namespace=v[0], prometheus_url=v[1], min_replicas=r)

                k8s.apiextensions.CustomResource(
                    f"{isvc_name}-scaler",
                    api_version="keda.sh/v1alpha1",
                    kind="ScaledObject",
                    metadata={
                        "name": predictor_deployment(isvc_name),
                        "namespace": args.namespace,
                        "labels": labels,
                    },
                    spec=pulumi.Output.all(args.namespace, args.prometheus_url).apply(scaler_for),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[isvc]),
                )
            pdb_meta: Any = {"name": isvc_name, "namespace": args.namespace, "labels": labels}
            pdb_spec: Any = {"maxUnavailable": 1, "selector": {"matchLabels": {ISVC_LABEL: isvc_name}}}
            k8s.policy.v1.PodDisruptionBudget(f"{isvc_name}-pdb", metadata=pdb_meta, spec=pdb_spec, opts=child)
        labels = {**args.labels, TEAM_LABEL: m.team, MODEL_LABEL: m.name}
        monitor = pulumi.Output.from_input(args.namespace).apply(
            lambda ns: model_pod_monitor(ns, {MODEL_LABEL: m.name}, port=m.runtime_module.metrics_port)
        )
        k8s.apiextensions.CustomResource(
            f"{m.name}-podmonitor",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": m.name, "namespace": args.namespace, "labels": labels},
            spec=monitor,
            opts=child,
        )
        rules = pulumi.Output.from_input(args.namespace).apply(lambda ns: prometheus_rule_spec(slo_rule_groups(m, ns)))
        k8s.apiextensions.CustomResource(
            f"{m.name}-slo",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": f"{m.name}-slo", "namespace": args.namespace, "labels": labels},
            spec=rules,
            opts=child,
        )
        self.register_outputs({})

    def _pull_identity(self, name: str, args: ModelDeploymentArgs) -> k8s.core.v1.ServiceAccount:
        """The model's own pull identity: an IRSA role that reads this model's prefix of the bucket and nothing
        else (infra/model_store.py model_pull_policy), trusted by this model's service account alone, which every
        version of the model (stable, canary, shadow) runs as. One team's catalog entry cannot pull another's
        model."""
        m, pull = args.model, args.pull
        account = model_pull_service_account(m.name)
        role = aws.iam.Role(
            f"{name}-pull-role",
            description=f"Model pulls of {m.name}: read-only on its prefix of the model bucket ({account} only)",
            assume_role_policy=iam.irsa_trust(pull.oidc_provider_arn, pull.oidc_issuer_url, args.namespace, account),
            opts=pulumi.ResourceOptions(parent=self),
        )
        policy = aws.iam.RolePolicy(
            f"{name}-pull-policy",
            role=role.id,
            policy=pulumi.Output.from_input(pull.region).apply(
                lambda region: iam.to_json(model_pull_policy(pull.bucket_arn, pull.kms_key_arn, region, m.name))
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return k8s.core.v1.ServiceAccount(
            f"{name}-puller",
            metadata={
                "name": account,
                "namespace": args.namespace,
                "labels": {**args.labels, TEAM_LABEL: m.team, MODEL_LABEL: m.name},
                "annotations": storage_annotations(pull.region, role.arn),
            },
            # The IRSA token is projected by EKS's webhook; the Kubernetes API token is not needed.
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
