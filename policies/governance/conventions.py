"""The names every layer shares, in one place: labels, resource names, tag keys, recorded series and the
SLO windows and burn factors.

Infrastructure, platform, workloads, the policy pack, the cost estimator, the dashboards and `modelyard
ops` import these; none types them again (the way sloth keeps its conventions in one file). This module
is standard-library only and lives inside the policy pack, which CrossGuard loads on its own.
"""

from __future__ import annotations

from typing import Final

# -- Pulumi projects, stacks and config keys -------------------------------------------------------------
#: The Pulumi projects of this repository (modelyard/programs.py), by key.
PROJECT_KEYS: Final = ("platform", "workloads")
#: The config namespace and the one structured key each project's stack files hold.
CONFIG_NAMESPACE: Final = "modelyard"
PLATFORM_CONFIG_KEY: Final = f"{CONFIG_NAMESPACE}:platform"
WORKLOADS_CONFIG_KEY: Final = f"{CONFIG_NAMESPACE}:workloads"
#: A stack (environment) name, and so `env`: a lowercase DNS label of at most 32 characters.
DNS_LABEL: Final = r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$"

# -- Kubernetes labels and names -----------------------------------------------------------------------
#: Extended resource the NVIDIA device plugin advertises; also the GPU taint's key.
GPU_RESOURCE: Final = "nvidia.com/gpu"
#: Label on every GPU node (Karpenter NodePool template) and selector of every GPU pod: the pool name.
GPU_POOL_LABEL: Final = "modelyard.io/gpu-pool"
#: Label on every GPU node: the GPU class (a10g, l40s, ...).
GPU_CLASS_LABEL: Final = "modelyard.io/gpu-class"
#: Label (key, value) on the system node group's nodes; platform services select it.
SYSTEM_POOL_LABEL: Final = ("modelyard.io/pool", "system")
#: Label (key, value) on the nodes of the Karpenter pool for models that need no GPU, and the taint that keeps
#: everything else off them (and them off the system nodes: they select the label).
CPU_POOL_LABEL: Final = ("modelyard.io/pool", "cpu-models")
CPU_POOL_TAINT: Final = {"key": "modelyard.io/cpu-models", "value": "true", "effect": "NoSchedule"}
#: KServe's label on an InferenceService's pods.
ISVC_LABEL: Final = "serving.kserve.io/inferenceservice"
#: The well-known label of a node's availability zone (the kubelet sets it from the cloud provider).
ZONE_LABEL: Final = "topology.kubernetes.io/zone"
#: Labels the workloads stack puts on a model's objects.
MODEL_LABEL: Final = "modelyard.io/model"
VERSION_LABEL: Final = "modelyard.io/model-version"
ROLE_LABEL: Final = "modelyard.io/role"
#: The runtime a model runs on (workloads/runtimes: modelyard, kserve, vllm), on its InferenceServices and pods.
RUNTIME_LABEL: Final = "modelyard.io/runtime"
TEAM_LABEL: Final = "modelyard.io/team"
#: Where placeholder pods hold warm GPU capacity, and the priority class every model preempts.
WARM_CAPACITY_NAMESPACE: Final = "gpu-warm-capacity"
WARM_PRIORITY_CLASS: Final = "modelyard-warm-capacity"

# -- AWS ------------------------------------------------------------------------------------------------
#: Tag keys every AWS resource carries (and, prefixed, every Kubernetes object).
TAG_KEYS: Final = ("env", "team", "cost-center", "managed-by")
#: Kubernetes label form of the tag keys.
LABEL_KEYS: Final = (
    "modelyard.io/env",
    "modelyard.io/team",
    "modelyard.io/cost-center",
    "app.kubernetes.io/managed-by",
)


#: The tag the monitoring StorageClass puts on every EBS volume it provisions (tagSpecification), and the AWS
#: Backup selection selects (infra/backup.py); its value names the environment.
BACKUP_TAG_KEY: Final = "modelyard-backup"


def backup_selection(env: str) -> str:
    """The backup tag's value on an environment's monitoring volumes."""
    return f"{env}-monitoring"


def budget_name(env: str) -> str:
    """The AWS Budget of an environment (infra/alerts.py creates it; `modelyard ops cost` reads it)."""
    return f"modelyard-{env}"


# -- recorded series (platform/rules.py records them; dashboards and ops read them) -----------------------
GPU_NODE_INFO: Final = "node:modelyard_gpu_node:info"
GPU_NODE_PRICE: Final = "node:modelyard_gpu_price_usd_per_hour"
GPU_NODE_GPUS: Final = "node:modelyard_gpus:sum"
GPU_PRICE_PER_GPU: Final = "node:modelyard_gpu_price_usd_per_gpu_hour"
POOL_GPU_COST: Final = "pool:modelyard_gpu_cost_usd_per_hour:sum"
POOL_GPUS_PROVISIONED: Final = "pool:modelyard_gpus_provisioned:sum"
POOL_GPUS_ALLOCATED: Final = "pool:modelyard_gpus_allocated:sum"
MODEL_GPUS_ALLOCATED: Final = "namespace_model:modelyard_gpus_allocated:sum"
MODEL_GPU_COST: Final = "namespace_model:modelyard_gpu_cost_usd_per_hour:sum"
#: What a million tokens cost an LLM's InferenceService over the last hour, by (namespace, inferenceservice,
#: model, tokens): its GPUs' price over the tokens its engine counted (`tokens`: generation, or all of
#: prompt and generation). Absent while it counts none.
MODEL_TOKEN_COST: Final = "namespace_inferenceservice:modelyard_usd_per_million_tokens"
#: The window MODEL_TOKEN_COST averages over: an hour smooths the batches of a decode loop.
TOKEN_COST_WINDOW: Final = "1h"

# -- SLOs -------------------------------------------------------------------------------------------------
#: Multi-window, multi-burn-rate pairs from the SRE workbook: (long window, short window, burn factor).
#: An alert fires when the ratio over both windows is above factor x (1 - objective).
PAGE_BURNS: Final = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
TICKET_BURNS: Final = (("3d", "6h", 1.0),)
_SECONDS: Final = {"m": 60, "h": 3600, "d": 86400}


def window_seconds(window: str) -> int:
    """A Prometheus duration such as 5m, 6h or 3d in seconds."""
    return int(window[:-1]) * _SECONDS[window[-1]]


#: Every window an SLI ratio is recorded over: those the burn tables name, shortest first.
SLI_WINDOWS: Final = tuple(
    sorted({w for long, short, _ in (*PAGE_BURNS, *TICKET_BURNS) for w in (long, short)}, key=window_seconds)
)


def burn_text(pairs: tuple[tuple[str, str, float], ...]) -> str:
    """A burn table in words, for alert texts: "14.4x the budget rate over 1h (and 5m) or 6x over 6h (and 30m)"."""
    parts = [
        f"{rate:g}x{' the budget rate' if i == 0 else ''} over {long} (and {short})"
        for i, (long, short, rate) in enumerate(pairs)
    ]
    return " or ".join(parts)


#: The period an error budget is counted over.
BUDGET_PERIOD: Final = "30d"
#: The SLIs: (kind in the recorded series name, what a bad request is).
SLI_KINDS: Final = ("errors", "slow")


def sli_ratio(kind: str, window: str) -> str:
    """The recorded share of bad requests per model: `errors`, an error its clients see (platform/signals.py
    ERROR_CODES); `slow`, over the latency threshold."""
    return f"model:modelyard_request_{kind}:ratio_rate{window}"


#: The HTTP port model servers listen on and are scraped on (workloads/runtimes; platform/network_policy.py admits
#: it from the gateway's proxies and Prometheus only; rule model-port-closed-to-cidrs).
MODEL_PORT = 8080
#: On a canary InferenceService: the share of its model's traffic the catalog asks for (the gateway route's weight).
TRAFFIC_PERCENT_ANNOTATION = "modelyard.io/traffic-percent"
#: On the model namespace: the namespace model pods serve from (rule model-port-closed-to-cidrs reads it).
MODELS_NAMESPACE_LABEL = "modelyard.io/serves-models"
#: On a shadow InferenceService: the share of its model's requests the route copies to it (its request mirror).
MIRROR_PERCENT_ANNOTATION = "modelyard.io/mirror-percent"

#: GitHub Actions' OIDC issuer host (the IAM provider's URL, and the prefix of its condition keys) and the audience
#: aws-actions/configure-aws-credentials asks for (infra/ci.py; rules ci-github-trust-bound, ci-preview-read-only).
GITHUB_OIDC_HOST: Final = "token.actions.githubusercontent.com"
GITHUB_AUDIENCE: Final = "sts.amazonaws.com"
