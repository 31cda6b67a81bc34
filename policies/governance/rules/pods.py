"""Pods and InferenceServices: resources, images (those KServe injects included), upstream admission,
security contexts and the Pod Security Standard over the pod as its controller builds it, replicas,
PDBs, GPU placement, storage URIs, and the pod settings Helm charts are given.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from typing import Any

from .. import admission, kserve, pod_security
from ..conventions import (
    CPU_POOL_LABEL,
    CPU_POOL_TAINT,
    GPU_POOL_LABEL,
    GPU_RESOURCE,
    ISVC_LABEL,
    ROLE_LABEL,
    RUNTIME_LABEL,
    SYSTEM_POOL_LABEL,
    ZONE_LABEL,
)
from ..cost import GPU
from ..resources import Resource, Stack, as_list, dig, known, mapping, selects
from .base import ISVC, SCALED_OBJECT, Context, Finding, _true, _unknown, resource_rule, stack_rule

GPU_TAINT_KEY = GPU_RESOURCE


WORKLOADS = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
    ISVC: ("spec", "predictor"),
}


def _containers(r: Resource) -> list[tuple[str, Mapping[str, Any]]]:
    spec = r.get(*WORKLOADS[r.type])
    if not isinstance(spec, Mapping):
        return []
    prefix = ".".join(WORKLOADS[r.type])
    out = [
        (f"{prefix}.containers[{i}]", c)
        for i, c in enumerate(as_list(spec.get("containers")))
        if isinstance(c, Mapping)
    ]
    if r.type == ISVC and isinstance(spec.get("model"), Mapping):
        out.append((f"{prefix}.model", spec["model"]))
    return out


def _pod_spec(r: Resource) -> Mapping[str, Any]:
    spec = r.get(*WORKLOADS[r.type])
    return spec if isinstance(spec, Mapping) else {}


@resource_rule(
    "workload-resources",
    "Every container sets requests and limits; GPU requests equal limits.",
    tuple(WORKLOADS),
    basic=True,
)
def _resources(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    for path, c in _containers(r):
        res = mapping(c.get("resources"))
        requests, limits = mapping(res.get("requests")), mapping(res.get("limits"))
        missing = [
            f"{kind}.{k}"
            for kind, d in (("requests", requests), ("limits", limits))
            for k in ("cpu", "memory")
            if k not in d
        ]
        if missing:
            yield f"{path}.resources", res, f"set {', '.join(missing)}"
        if GPU in requests and str(requests[GPU]) != str(limits.get(GPU)):
            yield f"{path}.resources", res, "GPU requests must equal GPU limits"


def _image_problems(
    path: str, image: Any, ctx: Context, rule: str = "workload-images"
) -> Iterator[tuple[str, Any, str]]:
    if not isinstance(image, str) or not known(image):
        return
    # injected-images uses workload-images' allow-list unless its own config names one.
    listed = ctx.param(rule, "registries") or ctx.param("workload-images", "registries", [])
    allowed = [str(x) for x in listed]
    name = image.split("@", 1)[0]
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else None
    if "@sha256:" not in image and (tag is None or tag == "latest"):
        yield path, image, "pin an immutable tag or a digest (never latest or untagged)"
    if allowed and not any(fnmatch.fnmatchcase(image, pattern) for pattern in allowed):
        yield path, image, f"registry not allowed in {ctx.env}; allowed: {', '.join(allowed)}"


def _is_kserve_chart(release: Resource) -> bool:
    chart = release.get("chart")
    return isinstance(chart, str) and chart.rstrip("/").endswith("/kserve")


def kserve_settings(stack: Stack) -> kserve.Settings:
    """KServe's chart defaults with the values of the KServe release in this preview (if it has one); once
    per preview."""
    cached: kserve.Settings | None = stack.derived.get("kserve-settings")
    if cached is None:
        releases = [r for r in stack.of_type("kubernetes:helm.sh/v3:Release") if _is_kserve_chart(r)]
        cached = kserve.Settings.from_values(releases[0].get("values")) if releases else kserve.Settings()
        stack.derived["kserve-settings"] = cached
    return cached


@resource_rule(
    "workload-images",
    "Images are pinned (no latest) and come from allowed registries.",
    tuple(WORKLOADS),
    params={"registries": []},
)
def _images(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    for path, c in _containers(r):
        if r.type == ISVC and path.endswith(".model"):
            # A built-in runtime's container: the image comes from the ClusterServingRuntime.
            fmt = str(dig(c, "modelFormat", "name"))
            image = kserve_settings(ctx.stack).runtime_image(fmt)
            yield from _image_problems(f"{path} (runtime kserve-{fmt}: its image)", image, ctx)
            continue
        yield from _image_problems(f"{path}.image", c.get("image"), ctx)


@resource_rule(
    "injected-images",
    "The images KServe injects into model pods (storage initializer, serving runtimes) are pinned and come "
    "from the allowed registries.",
    ("kubernetes:helm.sh/v3:Release",),
    params={"registries": None},
)
def _injected_images(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if not _is_kserve_chart(r) or _unknown(r.inputs.get("values")):
        return
    for key, image in kserve.Settings.from_values(r.get("values")).images().items():
        # The same allow-list and pinning as the workloads' own images.
        for field_, value, message in _image_problems(f"values.{key}", image, ctx, "injected-images"):
            yield field_, value, f"{message} (KServe injects it into every model pod)"


#: The runtime label's value for this repository's model server (workloads/runtimes/modelyard.py).
MODEL_SERVER_RUNTIME = "modelyard"
#: The model server's flag that holds the model directory to the manifest `modelyard model push` wrote, and the one
#: that holds the manifest to its signature (the signing key's public half as its value).
VERIFY_MANIFEST = "--verify_manifest"
MANIFEST_KEY = "--manifest_public_key"


@resource_rule(
    "model-manifest-verified",
    "The model server verifies the model directory against its pushed manifest (every file's size and "
    "sha256), and the manifest against the environment's signing key, before it loads anything, so an "
    "overwritten or tampered version is refused, not served.",
    (ISVC,),
)
def _manifest_verified(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if (r.get("metadata", "labels") or {}).get(RUNTIME_LABEL) != MODEL_SERVER_RUNTIME or _unknown(r.inputs.get("spec")):
        return
    for i, container in enumerate(as_list(r.get("spec", "predictor", "containers"))):
        container = mapping(container)
        if container.get("name") != kserve.MODEL_CONTAINER:
            continue
        args = [str(a) for a in as_list(container.get("args"))]
        key = args[args.index(MANIFEST_KEY) + 1] if MANIFEST_KEY in args[:-1] else ""
        if VERIFY_MANIFEST not in args or not key or key.startswith("--"):
            yield (
                f"spec.predictor.containers[{i}].args",
                container.get("args"),
                f"the model server must run with {VERIFY_MANIFEST} and {MANIFEST_KEY} <the signing key's public half>",
            )


#: The model servers' drain flags (what a server answers after SIGTERM, in seconds) and, for this repository's
#: server, its default when the flag is absent (workloads/serving/modelyard_server/server.py, held to it by
#: tests/test_conformance.py); vLLM's --shutdown-timeout defaults to 0.
DRAIN_FLAGS = ("--grace_period", "--shutdown-timeout")
MODEL_SERVER_DEFAULT_DRAIN_S = 30
#: Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_S = 30


def drain_seconds(args: list[Any], runtime: str | None) -> int | None:
    """The drain a model container's args set (None: a flag's value not a number)."""
    for i, arg in enumerate(args):
        if arg in DRAIN_FLAGS and i + 1 < len(args):
            value = str(args[i + 1])
            return int(value) if value.isdigit() else None
    return MODEL_SERVER_DEFAULT_DRAIN_S if runtime == MODEL_SERVER_RUNTIME else 0


@resource_rule(
    "model-pod-termination",
    "A model pod keeps serving while the endpoints drop it and drains before it is killed: its model "
    "container pauses in preStop longer than endpoint propagation (the endpoint controllers, kube-proxy and "
    "load balancers act in parallel with preStop), and the pod's grace period is longer than that pause plus "
    "the server's drain (the model server's --grace_period, vLLM's --shutdown-timeout).",
    (ISVC,),
    params={"propagationSeconds": 10},
)
def _termination(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    predictor = r.get("spec", "predictor")
    if _unknown(r.inputs.get("spec")) or not isinstance(predictor, Mapping):
        return
    propagation = ctx.param("model-pod-termination", "propagationSeconds", 10)
    runtime = (r.get("metadata", "labels") or {}).get(RUNTIME_LABEL)
    for i, container in enumerate(as_list(predictor.get("containers"))):
        container = mapping(container)
        if container.get("name") != kserve.MODEL_CONTAINER:
            continue
        path = f"spec.predictor.containers[{i}]"
        pause = dig(container, "lifecycle", "preStop", "sleep", "seconds")
        if pause is not None and not known(pause):
            continue
        if not isinstance(pause, int) or pause <= propagation:
            yield (
                f"{path}.lifecycle.preStop",
                dig(container, "lifecycle", "preStop"),
                f"pause (preStop sleep) for more than {propagation} s, the endpoints' propagation, so that no new "
                "request is routed to the pod once it is told to stop",
            )
            pause = pause if isinstance(pause, int) else 0
        drain = drain_seconds(as_list(container.get("args")), runtime)
        grace = predictor.get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
        if not known(grace) or drain is None:
            continue
        if not isinstance(grace, int) or grace <= pause + drain:
            yield (
                "spec.predictor.terminationGracePeriodSeconds",
                grace,
                f"must be more than the preStop pause ({pause} s) plus the server's drain ({drain} s), or the "
                "kubelet kills requests the server is still answering",
            )


def _is_keda_chart(release: Resource) -> bool:
    chart = release.get("chart")
    return isinstance(chart, str) and chart.rstrip("/").split("/")[-1] == "keda"


@resource_rule(
    "keda-secret-access",
    "KEDA's operator and metrics server read Secrets only in their own namespace (the chart's "
    "permissions.*.restrict.secret), not every Secret of the cluster.",
    ("kubernetes:helm.sh/v3:Release",),
)
def _keda_secrets(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if not _is_keda_chart(r) or _unknown(r.inputs.get("values")):
        return
    for component in ("operator", "metricServer"):
        path = f"values.permissions.{component}.restrict.secret"
        value = dig(r.get("values"), "permissions", component, "restrict", "secret")
        if not _true(value):
            yield path, value, "must be true: the chart's default lets it list and watch every Secret in the cluster"


@resource_rule(
    "upstream-admission",
    "KServe's and KEDA's admission webhooks (ported at the pinned tags) admit every InferenceService and "
    "ScaledObject, including the ScaledObject KServe builds for autoscalerClass keda.",
    (ISVC, SCALED_OBJECT),
    basic=True,
)
def _admission(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    if _unknown(r.inputs.get("spec")):
        return
    obj = {"metadata": r.get("metadata") or {}, "spec": r.get("spec") or {}}
    namespace = dig(obj, "metadata", "namespace")
    peers = [
        {"metadata": o.get("metadata") or {}, "spec": o.get("spec") or {}}
        for o in ctx.stack.of_type(SCALED_OBJECT)
        if o.urn != r.urn and o.get("metadata", "namespace") == namespace
    ]
    try:
        if r.type == ISVC:
            admission.validate_inference_service(obj)
            if dig(obj, "metadata", "annotations", admission.AUTOSCALER_CLASS) == "keda":
                built = admission.kserve_scaled_object(obj)
                try:
                    admission.validate_scaled_object(built, others=peers)
                except admission.Refused as exc:
                    raise admission.Refused(f"the ScaledObject KServe builds from it: {exc}") from None
        else:
            admission.validate_scaled_object(obj, others=peers)
    except admission.Refused as exc:
        webhook = "KServe " + admission.KSERVE_TAG if r.type == ISVC else "KEDA " + admission.KEDA_TAG
        yield "spec", None, f"{webhook} admission refuses it: {exc}"
        return
    if r.type == SCALED_OBJECT:
        try:
            admission.validate_scalers(obj)
        except admission.Refused as exc:
            yield "spec.triggers", None, f"KEDA {admission.KEDA_TAG} admits it but cannot build its scalers: {exc}"


@resource_rule(
    "workload-security",
    "Pods run non-root, unprivileged, without escalation, capabilities dropped, read-only root.",
    tuple(WORKLOADS),
    basic=True,
)
def _security(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    pod = _pod_spec(r)
    pod_nonroot = _true(dig(pod, "securityContext", "runAsNonRoot"))
    for path, c in _containers(r):
        sc = mapping(c.get("securityContext"))
        problems = []
        if not (pod_nonroot or _true(sc.get("runAsNonRoot"))):
            problems.append("runAsNonRoot: true")
        if _true(sc.get("privileged")):
            problems.append("privileged: false")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation: false")
        if "ALL" not in as_list(dig(sc, "capabilities", "drop")):
            problems.append("capabilities.drop: [ALL]")
        if not _true(sc.get("readOnlyRootFilesystem")):
            problems.append("readOnlyRootFilesystem: true")
        if problems:
            yield f"{path}.securityContext", sc, f"set {', '.join(problems)}"


@resource_rule(
    "inferenceservice-min-replicas",
    "InferenceServices keep enough replicas for the environment.",
    (ISVC,),
    params={"minReplicas": 1},
)
def _min_replicas(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    least = int(ctx.param("inferenceservice-min-replicas", "minReplicas", 1))
    if (r.get("metadata", "labels") or {}).get(ROLE_LABEL) in ("canary", "shadow"):
        return  # a canary or shadow is small on purpose; its stable InferenceService carries the floor
    value = r.get("spec", "predictor", "minReplicas")
    if _unknown(r.inputs.get("spec")):
        return
    replicas = 1 if value is None else int(value)  # KServe's default is 1
    if replicas < least:
        yield "spec.predictor.minReplicas", value, f"must be ≥ {least} in {ctx.env}"


@resource_rule(
    "inferenceservice-zone-spread",
    "InferenceServices of two or more replicas spread them across zones, as the pods KServe builds carry it.",
    (ISVC,),
)
def _zone_spread(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    value = r.get("spec", "predictor", "minReplicas")
    if _unknown(r.inputs.get("spec")) or value is None or int(value) < 2:
        return
    pod = kserve.model_pod(
        {"metadata": r.get("metadata") or {}, "spec": r.get("spec") or {}}, kserve_settings(ctx.stack)
    )
    for constraint in as_list(pod["spec"].get("topologySpreadConstraints")):
        c = mapping(constraint)
        if (
            c.get("topologyKey") == ZONE_LABEL
            and c.get("whenUnsatisfiable") == "DoNotSchedule"
            and c.get("maxSkew") == 1
            and selects(c.get("labelSelector"), pod["metadata"]["labels"])
        ):
            return
    yield (
        "spec.predictor.topologySpreadConstraints",
        r.get("spec", "predictor", "topologySpreadConstraints"),
        f"spread its {value} replicas across zones: maxSkew 1 on {ZONE_LABEL}, whenUnsatisfiable DoNotSchedule, "
        f"a labelSelector its pods match ({ISVC_LABEL}: {r.get('metadata', 'name')})",
    )


def _pdb_problem(spec: Mapping[str, Any], replicas: Any) -> str | None:
    """What is wrong with a PodDisruptionBudget's bound for a predictor of `replicas` minimum replicas: one that
    lets a drain take every replica, or one that lets no drain take any (the node could never be emptied). A
    percentage, or a bound not yet known, is not judged."""
    if not isinstance(replicas, int) or replicas < 2:
        return None
    unavailable, available = spec.get("maxUnavailable"), spec.get("minAvailable")
    if isinstance(unavailable, int):
        allowed = unavailable
    elif isinstance(available, int):
        allowed = replicas - available
    else:
        return None
    if allowed >= replicas:
        return f"lets a drain evict all {replicas} replicas at once: leave one (maxUnavailable below {replicas})"
    if allowed < 1:
        return "lets no drain evict a replica, so its node can never be emptied: allow one (maxUnavailable: 1)"
    return None


@stack_rule(
    "inferenceservice-pdb",
    "Every InferenceService has a PodDisruptionBudget, and with two or more replicas it leaves one through a "
    "drain while still letting the drain proceed.",
)
def _pdb(ctx: Context) -> Iterator[Finding]:
    pdbs = ctx.stack.of_type("kubernetes:policy/v1:PodDisruptionBudget")
    for isvc in ctx.stack.of_type(ISVC):
        name, ns = isvc.get("metadata", "name"), isvc.get("metadata", "namespace")
        covering = [
            p
            for p in pdbs
            if p.get("metadata", "namespace") == ns
            and (p.get("spec", "selector", "matchLabels") or {}).get(ISVC_LABEL) == name
        ]
        if not covering:
            yield Finding(
                isvc.urn, "podDisruptionBudget", None, f"no PodDisruptionBudget selecting {ISVC_LABEL}={name}"
            )
        for p in covering:
            spec = mapping(p.get("spec"))
            problem = _pdb_problem(spec, isvc.get("spec", "predictor", "minReplicas"))
            if problem is not None:
                yield Finding(p.urn, "spec", dict(spec), problem)


@resource_rule(
    "inferenceservice-gpu-placement",
    "GPU predictors tolerate the GPU taint and select a pool that exists.",
    (ISVC,),
    params={"knownPools": []},
)
def _placement(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    predictor = r.get("spec", "predictor") or {}
    gpus = any(GPU in ((c.get("resources") or {}).get("limits") or {}) for _, c in _containers(r))
    if not gpus:
        return
    tolerations = [t for t in as_list(predictor.get("tolerations")) if isinstance(t, Mapping)]
    if not any(t.get("key") == GPU_TAINT_KEY for t in tolerations):
        yield "spec.predictor.tolerations", tolerations, f"GPU predictors must tolerate {GPU_TAINT_KEY}"
    pool = (predictor.get("nodeSelector") or {}).get(GPU_POOL_LABEL)
    pools = ctx.gpu_pools()
    if pool is None:
        yield "spec.predictor.nodeSelector", predictor.get("nodeSelector"), f"select a GPU pool with {GPU_POOL_LABEL}"
    elif pools is not None and pool not in pools:
        yield (
            f"spec.predictor.nodeSelector.{GPU_POOL_LABEL}",
            pool,
            f"no such GPU pool; pools: {', '.join(sorted(pools))}",
        )


@resource_rule(
    "inferenceservice-cpu-placement",
    "Predictors without a GPU run on the CPU model pool (its label selected, its taint tolerated), never on the "
    "system nodes beside Prometheus, Karpenter and KServe's webhook, which a busy model would starve.",
    (ISVC,),
)
def _cpu_placement(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    predictor = r.get("spec", "predictor")
    if _unknown(r.inputs.get("spec")) or not isinstance(predictor, Mapping):
        return
    if any(GPU in ((c.get("resources") or {}).get("limits") or {}) for _, c in _containers(r)):
        return
    selector = predictor.get("nodeSelector")
    if _unknown(selector):
        return
    key, value = CPU_POOL_LABEL
    selected = mapping(selector).get(key)
    if selected != value:
        system = " (it selects the system nodes, which run the platform)" if selected == SYSTEM_POOL_LABEL[1] else ""
        yield (
            f"spec.predictor.nodeSelector.{key}",
            selected,
            f"must be {value}: a model without a GPU runs on the CPU pool{system}",
        )
    tolerations = [t for t in as_list(predictor.get("tolerations")) if isinstance(t, Mapping)]
    if not any(t.get("key") == CPU_POOL_TAINT["key"] for t in tolerations):
        yield "spec.predictor.tolerations", tolerations, f"must tolerate {CPU_POOL_TAINT['key']} (the CPU pool's taint)"


def _model_sources(r: Resource) -> Iterator[tuple[str, Any]]:
    """Every form a model source takes in an InferenceService: `storageUri` (on the predictor or its
    `model`), the `storage` spec's bucket parameter, and a container's STORAGE_URI environment variable."""
    for path in (("spec", "predictor", "model", "storageUri"), ("spec", "predictor", "storageUri")):
        yield ".".join(path), r.get(*path)
    for path in (("spec", "predictor", "model", "storage"), ("spec", "predictor", "storage")):
        bucket = dig(r.get(*path), "parameters", "bucket")
        if bucket is not None:
            yield ".".join((*path, "parameters", "bucket")), f"s3://{bucket}/"
    for i, container in enumerate(as_list(r.get("spec", "predictor", "containers"))):
        for j, env in enumerate(as_list(dig(container, "env"))):
            if dig(env, "name") == "STORAGE_URI":
                yield f"spec.predictor.containers[{i}].env[{j}].value", dig(env, "value")


@resource_rule(
    "storage-uri-in-model-bucket",
    "Models load from the environment's model bucket.",
    (ISVC,),
    params={"modelBucket": None},
)
def _storage_uri(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    bucket = ctx.model_bucket()
    if bucket is None:
        return
    for path, uri in _model_sources(r):
        if isinstance(uri, str) and known(uri) and not uri.startswith(f"s3://{bucket}/"):
            yield path, uri, f"must be inside s3://{bucket}/"


def _pod_of(r: Resource, ctx: Context) -> Mapping[str, Any]:
    """The pod spec an object runs, as Pod Security Admission sees it: for an InferenceService, the pod
    KServe builds of it (the runtime's container for a `model`, the storage initializer it injects with
    the KServe release's values; policies/governance/kserve.py)."""
    if r.type == ISVC:
        obj = {"metadata": r.get("metadata") or {}, "spec": r.get("spec") or {}}
        return kserve.model_pod(obj, kserve_settings(ctx.stack))["spec"]
    return _pod_spec(r)


@resource_rule(
    "pod-security-standard",
    "Every pod passes Pod Security restricted; pods in allow-listed privileged namespaces pass baseline.",
    tuple(WORKLOADS),
    basic=True,
    params={"privilegedNamespaces": ["nvidia", "monitoring"]},
)
def _pod_security(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    namespace = r.get("metadata", "namespace")
    allowed = [str(n) for n in ctx.param("pod-security-standard", "privilegedNamespaces", [])]
    level = "baseline" if namespace in allowed else "restricted"
    prefix = ".".join(WORKLOADS[r.type])
    for field_, value, allowed_values in pod_security.violations(_pod_of(r, ctx), level):  # type: ignore[arg-type]
        yield f"{prefix}.{field_}", value, f"Pod Security {level}: {allowed_values}"


@resource_rule(
    "service-account-token",
    "Pods mount no Kubernetes API token unless they ask for one (automountServiceAccountToken: false).",
    tuple(WORKLOADS),
    basic=True,
)
def _token(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    pod = _pod_of(r, ctx)
    if pod.get("automountServiceAccountToken") is False:
        return
    account = pod.get("serviceAccountName") or "default"
    namespace = r.get("metadata", "namespace")
    accounts = [
        sa
        for sa in ctx.stack.of_type("kubernetes:core/v1:ServiceAccount")
        if sa.get("metadata", "name") == account and sa.get("metadata", "namespace") in (namespace, None)
    ]
    if any(sa.inputs.get("automountServiceAccountToken") is False for sa in accounts):
        return
    if account != "default" and not accounts:
        return  # an account another stack owns: cannot tell
    prefix = ".".join(WORKLOADS[r.type])
    yield (
        f"{prefix}.automountServiceAccountToken",
        pod.get("automountServiceAccountToken"),
        f"the {account!r} service account's token is mounted; set automountServiceAccountToken: false",
    )


#: Keys under which charts take a securityContext, and the host settings that need the privileged level.
_SECURITY_KEYS = ("securityContext", "containerSecurityContext", "podSecurityContext")


_HOST_KEYS = ("hostNetwork", "hostPID", "hostIPC")


def _helm_security_settings(values: Any, path: str = "values") -> Iterator[tuple[str, str, Any]]:
    """(kind, path, value) for every securityContext and host setting a chart's values set, at any depth."""
    if isinstance(values, Mapping):
        for key, value in values.items():
            where = f"{path}.{key}"
            if key in _SECURITY_KEYS and isinstance(value, Mapping):
                yield "context", where, value
            elif key in _HOST_KEYS and value is True:
                yield "host", where, value
            else:
                yield from _helm_security_settings(value, where)
    elif isinstance(values, list):
        for i, value in enumerate(values):
            yield from _helm_security_settings(value, f"{path}[{i}]")


@resource_rule(
    "helm-values-pod-security",
    "The pod settings Helm values set keep the release's pods within their namespace's Pod Security level.",
    ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"),
    basic=True,
    params={"privilegedNamespaces": ["nvidia", "monitoring"]},
)
def _helm_pod_security(r: Resource, ctx: Context) -> Iterator[tuple[str, Any, str]]:
    namespace = r.get("namespace")
    if not isinstance(namespace, str):
        # The namespace is often an output of the Namespace resource: find it by the dependency.
        named = [
            ctx.stack.by_urn[u].get("metadata", "name")
            for u in r.property_dependencies.get("namespace", ())
            if u in ctx.stack.by_urn
        ]
        namespace = next((n for n in named if isinstance(n, str)), None)
    allowed = [str(n) for n in ctx.param("helm-values-pod-security", "privilegedNamespaces", [])]
    level = "baseline" if namespace in allowed else "restricted"
    for kind, path, value in _helm_security_settings(r.get("values")):
        if kind == "host":
            if level == "restricted" or namespace is None:
                yield (
                    path,
                    value,
                    f"host namespaces are refused by Pod Security {level} in {namespace or 'its namespace'}",
                )
            continue
        # A context set in values is checked as the container (and pod) it configures.
        pod = {"securityContext": value, "containers": [{"name": "chart", "securityContext": value}]}
        for field_, got, wanted in pod_security.violations(pod, "baseline"):
            yield f"{path} ({field_.split('.', 1)[-1]})", got, f"Pod Security baseline: {wanted}"
        if level == "restricted":
            weakened = [
                (field_, got)
                for field_, got, _ in pod_security.violations(pod, "restricted")
                if got not in (None, [], {}) and field_.startswith("containers")
            ]
            for field_, got in weakened:
                yield f"{path} ({field_.split('.', 2)[-1]})", got, "weakens Pod Security restricted in this namespace"
