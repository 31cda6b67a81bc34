"""KServe in Standard (raw Deployment) mode, and the namespace and service account models run under."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from modelyard.infra.nodes import SYSTEM_POOL_LABEL
from modelyard.platform.common import (
    CONTAINER_SECURITY,
    PLATFORM_PRIORITY_CLASS,
    container_defaults,
    helm_release,
    namespace,
    resources,
    zone_spread,
)
from modelyard.policies.governance import kserve as upstream
from modelyard.policies.governance.conventions import MODELS_NAMESPACE_LABEL

NAMESPACE = "kserve"
#: The controller's Deployment and the labels its pods carry (its selector), as KServe v0.16.0's chart renders
#: them (charts/kserve-resources/templates/deployment.yaml; tests/conformance/kserve-v0.16.0/
#: controller_deployment.yaml). The template sets no replicas (Helm leaves the field to a patch) and runs the
#: manager with --leader-elect (two replicas share the work; both serve the webhook).
CONTROLLER_DEPLOYMENT = "kserve-controller-manager"
CONTROLLER_POD_LABELS = {"control-plane": "kserve-controller-manager", "controller-tools.k8s.io": "1.0"}
#: KServe 0.16 renamed RawDeployment to Standard: plain Deployments, Services and HPAs; no Knative,
#: no Istio. (Scale-to-zero and canaryTrafficPercent need the Knative mode; see workloads/.)
DEPLOYMENT_MODE = "Standard"
#: The storage initializer KServe injects into every model pod (its ClusterStorageContainer takes this
#: securityContext from the chart's `kserve.storage.containerSecurityContext`). Model namespaces enforce
#: Pod Security `restricted`, and an injected container that fails it keeps the whole pod out. The root
#: filesystem stays writable: the initializer downloads through temporary files.
STORAGE_INITIALIZER_SECURITY: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
#: Upstream images KServe injects into model pods, by values key, mirrored into the platform's ECR (infra/ecr.py):
#: the storage initializer and each serving runtime the catalog's model formats select.
KSERVE_MIRRORS: Mapping[str, str] = {
    "kserve.storage": str(upstream.STORAGE_DEFAULTS["image"]),
    **{f"kserve.servingruntime.{key}": image for _, key, image, _ in upstream.RUNTIMES.values()},
}
#: Runtimes of the chart that no catalog model format selects: disabled, so none of their unmirrored images
#: can be chosen (mlserver would be auto-selected for protocol v2; multinode needs the -gpu image).
DISABLED_RUNTIMES = ("mlserver", "pmmlserver", "paddleserver", "huggingfaceserver_multinode")
#: Defaults for model containers that state no resources (a LimitRange in the model namespace).
MODEL_DEFAULT_RESOURCES = resources("500m", "1Gi", "2", "4Gi")


def storage_annotations(region: pulumi.Input[str], role_arn: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
    """Service-account annotations for a model's pull account (the workloads stack makes one per model): IRSA,
    and how KServe's storage initializer reaches S3 (the regional endpoint over HTTPS, with the pod's web
    identity, never anonymous)."""
    return {
        "eks.amazonaws.com/role-arn": role_arn,
        "serving.kserve.io/s3-endpoint": pulumi.Output.concat("s3.", region, ".amazonaws.com"),
        "serving.kserve.io/s3-usehttps": "1",
        "serving.kserve.io/s3-region": region,
        "serving.kserve.io/s3-useanoncredential": "false",
    }


#: KServe creates no Ingress, Gateway or route of its own: the platform's gateway (platform/gateway.py) is the only
#: way in, with a route per model that the workloads stack makes (workloads/routes.py).
GATEWAY_VALUES: Mapping[str, Any] = {
    "disableIngressCreation": True,
    "ingressGateway": {"enableGatewayApi": False},
}


@dataclass(frozen=True, kw_only=True)
class KServeArgs:
    labels: Mapping[str, str]
    model_namespace: str
    #: The ECR mirror of each image in KSERVE_MIRRORS, by the same key.
    mirror_urls: Mapping[str, pulumi.Input[str]]
    #: `protect` the CRDs' release and the model namespace: deleting or replacing either deletes every
    #: InferenceService (a CRD takes its objects with it, a namespace its contents).
    deletion_protection: bool
    #: cert-manager must issue the webhook certificates before KServe starts.
    depends_on: Sequence[pulumi.Resource] = ()
    #: Controller replicas: its pod also serves the webhook that admits every model pod (failurePolicy Fail),
    #: so with one replica a drain or an OOM stops every model rollout and scale-up.
    replicas: int = 1


class KServe(pulumi.ComponentResource):
    """KServe's CRDs and controller (pinned charts, Standard mode, on the system nodes), and the model
    namespace: restricted Pod Security and default container limits (each model's pull account and role are the
    workloads stack's)."""

    model_namespace: pulumi.Output[str]
    release: pulumi.Resource

    def __init__(self, name: str, args: KServeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:platform:KServe", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = namespace(f"{name}-ns", NAMESPACE, args.labels, child)
        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on), protect=args.deletion_protection)
        crds = helm_release(f"{name}-crds", "kserve-crd", namespace=ns.metadata["name"], values={}, opts=after)
        self.release = helm_release(
            f"{name}-release",
            "kserve",
            namespace=ns.metadata["name"],
            values={
                "kserve": {
                    "controller": {
                        "deploymentMode": DEPLOYMENT_MODE,
                        "gateway": dict(GATEWAY_VALUES),
                        "nodeSelector": dict([SYSTEM_POOL_LABEL]),
                        "resources": resources("100m", "300Mi", "1", "1Gi"),
                        "containerSecurityContext": {**CONTAINER_SECURITY, "privileged": False, "runAsNonRoot": True},
                        **(
                            {"topologySpreadConstraints": [zone_spread(CONTROLLER_POD_LABELS)]}
                            if args.replicas > 1
                            else {}
                        ),
                    },
                    "storage": {
                        "image": args.mirror_urls["kserve.storage"],
                        "tag": upstream.STORAGE_DEFAULTS["tag"],
                        "containerSecurityContext": dict(STORAGE_INITIALIZER_SECURITY),
                    },
                    "servingruntime": {
                        **{
                            key: {"image": args.mirror_urls[f"kserve.servingruntime.{key}"], "tag": tag}
                            for _, key, _, tag in upstream.RUNTIMES.values()
                        },
                        **{key: {"disabled": True} for key in DISABLED_RUNTIMES},
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[crds, *args.depends_on]),
        )

        # The chart has no replicas or priorityClassName value and its template sets neither: patch those fields,
        # which Helm leaves alone (server-side apply): the platform's priority class everywhere, and with two or
        # more replicas the count, with one replica kept through a drain.
        patch: Any = {"template": {"spec": {"priorityClassName": PLATFORM_PRIORITY_CLASS}}}
        if args.replicas > 1:
            patch["replicas"] = args.replicas
        k8s.apps.v1.DeploymentPatch(
            f"{name}-controller-patch",
            metadata={
                "name": CONTROLLER_DEPLOYMENT,
                "namespace": ns.metadata["name"],
                "labels": dict(args.labels),
                "annotations": {"pulumi.com/patchForce": "true"},
            },
            spec=patch,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.release],
                aliases=[pulumi.Alias(name=f"{name}-controller-replicas")],
            ),
        )
        if args.replicas > 1:
            pdb_meta: Any = {
                "name": CONTROLLER_DEPLOYMENT,
                "namespace": ns.metadata["name"],
                "labels": dict(args.labels),
            }
            pdb_spec: Any = {"minAvailable": 1, "selector": {"matchLabels": dict(CONTROLLER_POD_LABELS)}}
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-controller-pdb",
                metadata=pdb_meta,
                spec=pdb_spec,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
            )

        kept = pulumi.ResourceOptions(parent=self, protect=args.deletion_protection)
        models = namespace(
            f"{name}-models-ns", args.model_namespace, {**args.labels, MODELS_NAMESPACE_LABEL: "true"}, kept
        )
        container_defaults(
            f"{name}-models-defaults", models.metadata["name"], MODEL_DEFAULT_RESOURCES, args.labels, child
        )
        self.model_namespace = models.metadata["name"]
        self.register_outputs({"model_namespace": self.model_namespace})
