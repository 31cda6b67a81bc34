"""The series the platform's dashboards, alerts and recording rules are written against, in one place.

Model pods are scraped through one PodMonitor (see `monitoring.py`) that sets `job="modelyard-models"`
and copies two pod labels onto every series: `inferenceservice` and `model_version`. The model
server (workloads/serving) exports the `modelyard_*` series below; its tests check the names.
Per-model SLO objectives arrive as recording rules from the workloads stack (one series per model),
so the burn-rate alerts here are generic and need no edit when a model is added.
"""

from __future__ import annotations

from typing import Final

from modelyard.policies.governance import conventions as c

#: `job` label of every model-server target.
MODEL_JOB: Final = "modelyard-models"

# -- model server (labels: model, plus the PodMonitor's namespace, pod, inferenceservice, model_version)
#: Counter of answered requests, by `protocol` (v1, v2, openai) and HTTP `code`.
REQUESTS_TOTAL: Final = "modelyard_requests_total"
#: Histogram of the latency in seconds of answered (200) requests, by `protocol`: the latency SLI's; a
#: refusal or an error is counted by REQUESTS_TOTAL and charged to availability, never made a fast answer.
REQUEST_DURATION: Final = "modelyard_request_duration_seconds"
#: Histogram of items per forward pass.
BATCH_SIZE: Final = "modelyard_batch_size"
#: Gauge of items waiting for a batch.
QUEUE_DEPTH: Final = "modelyard_queue_depth"
#: Gauge of items accepted and not yet answered (queued or in a forward pass): the autoscaling signal
#: of GPU predictors (workloads/models.py) and the dashboards' load per replica.
IN_FLIGHT: Final = "modelyard_inflight_texts"
#: The `code` values that count against a model's availability (a regex for `code=~`): what its clients see
#: as the model failing them. Every 5xx (503 for a full queue or a draining pod among them), 429 (refused
#: for load), and 404: the server answers 404 only for a model name it does not serve, and what reaches a
#: model's pods is addressed to the catalog's name, so a 404 there is a route or a canary answering for
#: another name. A client's own bad input (400, 405, 413, 415, 422) stays out.
ERROR_CODES: Final = "5..|429|404"
#: Counter of requests refused before work started, by `reason` (queue_full, draining, model_unavailable,
#: objective: not answerable within the latency objective at the measured pace, shed: low priority past its
#: share, answered 429), or given up at their own deadline (deadline: x-request-timeout or
#: x-stainless-read-timeout; answered 504).
REJECTED_TOTAL: Final = "modelyard_rejected_requests_total"
#: Counter of texts looked up in the model owner's embedding cache, by `outcome` (hit, miss), and a gauge of the
#: bytes its entries hold (bounded by the server's --cache_mb).
CACHE_TEXTS_TOTAL: Final = "modelyard_cache_texts_total"
CACHE_BYTES: Final = "modelyard_cache_bytes"
#: Gauge of the texts the fronts admit in flight before refusing: with --latency_objective_ms, what the measured
#: pace answers within the objective; else the fixed --max_queue.
ADMISSION_BOUND: Final = "modelyard_admission_bound_texts"
#: Counter of answers marked degraded (x-modelyard-degraded), by `reason`: truncated (a text reached the
#: model's max_seq_length).
DEGRADED_TOTAL: Final = "modelyard_degraded_responses_total"
#: Counter of connections the server's own guard closed, by `reason`: read_timeout (a request's headers
#: and body not in by the read deadline), evicted (the quietest connection, closed for a new one beyond
#: the per-front cap), refused (a new one beyond the cap with every connection busy).
CLOSED_CONNECTIONS_TOTAL: Final = "modelyard_closed_connections_total"
#: Latency buckets of REQUEST_DURATION, as the Python client renders `le` (a latency SLO threshold
#: must be one of these so the SLI can read it straight from a bucket).
LATENCY_BUCKETS: Final = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0")

#: Histograms of what a model receives, per text: characters, tokens (after truncation), and the share of a
#: text's tokens that are the vocabulary's unknown token; a counter of texts at the model's max_seq_length.
INPUT_CHARS: Final = "modelyard_input_chars"
INPUT_TOKENS: Final = "modelyard_input_tokens"
UNKNOWN_TOKEN_SHARE: Final = "modelyard_unknown_token_share"
TRUNCATED_TOTAL: Final = "modelyard_truncated_texts_total"
#: Counter of the drift tap's samples by `outcome` (sampled, dropped: its buffer full, sent, refused: discarded
#: after a 4xx the worker would give again).
TAP_SAMPLES_TOTAL: Final = "modelyard_tap_samples_total"

# -- the drift worker (workloads/serving/modelyard_server/drift_worker.py; labels model, model_version and,
#    for the tests, `signal`: embedding (the model's output), chars and tokens (its input))
#: `job` label of the drift worker's target.
DRIFT_JOB: Final = "modelyard-drift"
#: The model server's answers by calling team (the gateway's forwarded client id; `none` past no gateway).
CALLER_REQUESTS_TOTAL: Final = "modelyard_caller_requests_total"
#: Gauge: p-value of the latest full window against the version's reference.
DRIFT_P_VALUE: Final = "modelyard_drift_p_value"
#: Gauge: population stability index of a length signal (chars, tokens).
DRIFT_PSI: Final = "modelyard_drift_psi"
#: Gauge: 1 - cosine of the window's and the reference's mean embeddings.
DRIFT_CENTROID: Final = "modelyard_drift_centroid_distance"
#: Gauge: samples in the window tested (the drift alerts' minimum-sample guard).
DRIFT_WINDOW: Final = "modelyard_drift_window_samples"
#: Gauge: rows of the version's reference (0: none received yet).
DRIFT_REFERENCE: Final = "modelyard_drift_reference_samples"
#: Counter: tap samples the worker received.
DRIFT_SAMPLES_TOTAL: Final = "modelyard_drift_samples_total"
#: The signals of a model's input and its output.
DRIFT_INPUT_SIGNALS: Final = ("chars", "tokens")
DRIFT_OUTPUT_SIGNAL: Final = "embedding"
#: The least window a drift alert reads (the catalog's `drift.window` cannot be smaller), and the level of each
#: test (the input alert splits it over its signals, Bonferroni).
DRIFT_MIN_WINDOW: Final = 200
DRIFT_ALPHA: Final = 0.01

# -- the drift worker's shadow comparison (modelyard_server/shadow.py; labels model, model_version and, comparing
#    two versions, other_version: each comparison under both orders of its two versions)
#: Gauges of a version against itself (its answers to copies of a request): pairs, the 99th percentile
#: 1 - cosine (the threshold a candidate is judged by), the nearest neighbours kept.
SHADOW_NOISE_PAIRS: Final = "modelyard_shadow_noise_pairs"
SHADOW_NOISE_THRESHOLD: Final = "modelyard_shadow_noise_threshold"
SHADOW_NOISE_KNN: Final = "modelyard_shadow_noise_knn_overlap"
#: Gauges of two versions answering the same texts: pairs in the window, pairs beyond the noise threshold, cosine
#: by `quantile` (0.01, 0.05, 0.5), nearest neighbours shared, the exceedance test's p-value.
SHADOW_PAIRS: Final = "modelyard_shadow_pairs"
SHADOW_EXCEEDING: Final = "modelyard_shadow_exceeding"
SHADOW_COSINE: Final = "modelyard_shadow_cosine"
SHADOW_KNN: Final = "modelyard_shadow_knn_overlap"
SHADOW_P_VALUE: Final = "modelyard_shadow_p_value"
#: Gauge: 1 for the comparison's `verdict` (same, differs, hold), 0 for the others.
SHADOW_VERDICT: Final = "modelyard_shadow_verdict"

# -- vLLM 0.34.0's OpenAI server (workloads/runtimes/vllm.py; labels model_name and engine, plus the
#    PodMonitor's). Names as vllm/v1/metrics/loggers.py creates them at the pinned version (a counter's series
#    gains `_total`); tests/test_runtimes.py holds each to tests/conformance/vllm-v0.34.0/metrics.json.
#: Histogram of the time from a request's arrival to its first output token, in seconds.
VLLM_TTFT: Final = "vllm:time_to_first_token_seconds"
#: Histogram of the gaps between consecutive output tokens of a request, in seconds.
VLLM_ITL: Final = "vllm:inter_token_latency_seconds"
#: Counter of finished requests by `finished_reason` (stop, length, abort, error, repetition); `error` is the
#: engine failing a request (answered 500, or an error event in a stream already answered 200).
VLLM_REQUEST_SUCCESS: Final = "vllm:request_success_total"
#: Counter of requests refused by the engine's queue bounds (`--max-num-queued-reqs`), by `reason`.
VLLM_ADMISSION_REJECTIONS: Final = "vllm:admission_rejections_total"
#: Gauges of requests waiting for the scheduler and in the running batch: the LLM's load signal.
VLLM_WAITING: Final = "vllm:num_requests_waiting"
VLLM_RUNNING: Final = "vllm:num_requests_running"
#: Gauge of the KV cache in use, 0 to 1.
VLLM_KV_CACHE: Final = "vllm:kv_cache_usage_perc"
#: Counters of prompt (prefill) and generated tokens.
VLLM_PROMPT_TOKENS: Final = "vllm:prompt_tokens_total"
VLLM_GENERATION_TOKENS: Final = "vllm:generation_tokens_total"
#: Histogram of the tokens each finished request generated.
VLLM_REQUEST_GENERATION_TOKENS: Final = "vllm:request_generation_tokens"
#: Default buckets of VLLM_TTFT and VLLM_ITL (vllm/v1/metrics/buckets.py), as the Python client renders `le`.
VLLM_TTFT_BUCKETS: Final = (
    "0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0",
    "7.5", "10.0", "20.0", "40.0", "80.0", "160.0", "640.0", "2560.0",
)  # fmt: skip
VLLM_ITL_BUCKETS: Final = (
    "0.01", "0.025", "0.05", "0.075", "0.1", "0.15", "0.2", "0.3", "0.4", "0.5", "0.75", "1.0", "2.5", "5.0", "7.5",
    "10.0", "20.0", "40.0", "80.0",
)  # fmt: skip

#: Latency indicators an SLO can name (the `indicator` label of the objective and SLI series), each with the
#: histogram it is read from: a whole request (the model server), or, for a streamed LLM answer, the time to
#: its first token and the gaps between its tokens.
LATENCY_INDICATORS: Final = {"request": REQUEST_DURATION, "ttft": VLLM_TTFT, "itl": VLLM_ITL}

# -- SLO objectives, recorded per model by the workloads stack (labels: namespace, model; the latency ones
#    also `indicator`, one of LATENCY_INDICATORS)
#: Target share of requests answered without a 5xx, e.g. 0.999.
SLO_AVAILABILITY: Final = "modelyard:slo_availability_objective"
#: Target share of requests (or, for `itl`, of token gaps) within the latency threshold, e.g. 0.99.
SLO_LATENCY: Final = "modelyard:slo_latency_objective"
#: The share of each GPU's memory an engine takes up front by design (vLLM's --gpu-memory-utilization), by
#: (namespace, inferenceservice): recorded by the workloads stack for models whose runtime reserves memory.
GPU_MEMORY_RESERVATION: Final = "modelyard:gpu_memory_reservation_ratio"
#: Value 1, with `le` naming the latency threshold bucket (one of the indicator's histogram buckets).
SLO_LATENCY_THRESHOLD: Final = "modelyard:slo_latency_threshold"

# -- NVIDIA DCGM exporter 4.8 (labels: gpu, UUID, modelName, hostname, and namespace/pod/container
#    of the pod the GPU is allocated to)
GPU_UTIL: Final = "DCGM_FI_DEV_GPU_UTIL"
GPU_FB_USED: Final = "DCGM_FI_DEV_FB_USED"
GPU_FB_FREE: Final = "DCGM_FI_DEV_FB_FREE"
GPU_POWER: Final = "DCGM_FI_DEV_POWER_USAGE"
GPU_XID: Final = "DCGM_FI_DEV_XID_ERRORS"

#: kube-state-metrics: the replicas a Deployment asks for (labels namespace, deployment); a model's predictor
#: Deployment is `<inferenceservice>-predictor`.
KSM_DEPLOYMENT_REPLICAS: Final = "kube_deployment_spec_replicas"
#: kube-state-metrics pod and node labels the rules join on (allow-listed in the chart values).
KSM_POD_LABELS: Final = (c.ISVC_LABEL,)
KSM_NODE_LABELS: Final = ("node.kubernetes.io/instance-type", "karpenter.sh/capacity-type", c.GPU_POOL_LABEL)


def ksm_label(kubernetes_label: str) -> str:
    """The label kube-state-metrics gives a Kubernetes label: `label_` + the name with non-alphanumerics as `_`."""
    return "label_" + "".join(c if c.isalnum() else "_" for c in kubernetes_label)


# ---------------------------------------------------------------------------------------------
# The gateway: Envoy's own statistics, as its proxies export them on /stats/prometheus (Envoy Gateway v1.9.0
# proxies, port 19001). The names are Envoy's (cluster, listener and HTTP connection manager statistics); Envoy
# Gateway's own dashboards (charts/gateway-addons-helm/dashboards at v1.9.0) read the same. Envoy Gateway names a
# route's cluster `httproute/<namespace>/<name>/rule/<index>` (internal/gatewayapi/helpers.go,
# irRouteDestinationName).

#: The job label the proxies' PodMonitor gives their targets.
GATEWAY_JOB = "modelyard-gateway"
#: The gateway log counter (workloads/serving/modelyard_server/gateway_log.py), from the proxies' access log: every
#: request the gateway answered, by `model`, `code`, calling `team` (`none`: no valid credential) and `answered_by`
#: (`model`, `fallback`, or `gateway`: the gateway's own 401, 403, 429 and 503). Envoy's statistics cannot give
#: these: its own refusals come before any route statistic, and a fallback answers inside the model's cluster.
GATEWAY_LOG_JOB = "modelyard-gateway-log"
GATEWAY_RESPONSES = "modelyard_gateway_responses_total"
#: Records the counter received (`outcome`: counted, refused): GatewayLogMissing when none arrive.
GATEWAY_LOG_RECORDS = "modelyard_gateway_log_records_total"
#: Requests a route's cluster sent upstream, by response class (`envoy_response_code_class`).
GATEWAY_UPSTREAM_RQ_XX = "envoy_cluster_upstream_rq_xx"
GATEWAY_UPSTREAM_RQ_TIME = "envoy_cluster_upstream_rq_time"
GATEWAY_RETRIES = "envoy_cluster_upstream_rq_retry"
#: 1 while a cluster's request circuit breaker is at its limit (Envoy's circuit_breakers.default.rq_open gauge).
GATEWAY_BREAKER_OPEN = "envoy_cluster_circuit_breakers_default_rq_open"
#: Requests refused by the breaker's pending limit.
GATEWAY_BREAKER_OVERFLOW = "envoy_cluster_upstream_rq_pending_overflow"
#: Replicas outlier detection has taken out of a route's cluster, and those healthy.
GATEWAY_EJECTED = "envoy_cluster_outlier_detection_ejections_active"
GATEWAY_HEALTHY = "envoy_cluster_membership_healthy"
#: When each certificate a listener serves expires (label envoy_tls_certificate).
GATEWAY_CERT_EXPIRY = "envoy_listener_ssl_certificate_expiration_unix_time_seconds"
#: A route's clusters: the model routes of the workloads stack.
GATEWAY_ROUTE_CLUSTERS = 'envoy_cluster_name=~"httproute/.+"'


#: Days before expiry GatewayCertificateExpiring fires: cert-manager renews 15 days before (platform/gateway.py).
GATEWAY_CERT_DAYS = 7

# -- What an LLM answers (platform/rules.py: llm_drift_group): vLLM has no tap, so its own series are read. An
#    InferenceService's answers over LLM_DRIFT_WINDOW against its model's over the LLM_DRIFT_BASELINE before it
#    (every version of the model: a canary is held to what the stable version answered): the share cut off at
#    max_tokens (finished_reason length), by a two-proportion z test, and the mean tokens an answer has.
LLM_DRIFT_WINDOW: Final = "1h"
LLM_DRIFT_BASELINE: Final = "1d"
#: The least finished requests on each side before the test speaks (the alert's guard).
LLM_DRIFT_MIN_REQUESTS: Final = 200
#: |z| beyond this is drift: two-sided p about 6e-5 per evaluation.
LLM_DRIFT_Z: Final = 4.0
#: Per (namespace, model, inferenceservice), over the window: finished requests, those cut off, their share.
LLM_REQUESTS: Final = "inferenceservice:modelyard_llm_requests:increase1h"
LLM_CUT_OFF: Final = "inferenceservice:modelyard_llm_cut_off:increase1h"
#: Per (namespace, model), over the baseline ending where the window starts.
LLM_REQUESTS_BASELINE: Final = "model:modelyard_llm_requests:increase1d_before1h"
LLM_CUT_OFF_BASELINE: Final = "model:modelyard_llm_cut_off:increase1d_before1h"
#: The two-proportion z statistic of the window's cut-off share against the baseline's (pooled variance).
LLM_CUT_OFF_Z: Final = "inferenceservice:modelyard_llm_cut_off:z"
#: Mean generated tokens per finished request, over the window (per inferenceservice) and the baseline (per model).
LLM_ANSWER_TOKENS: Final = "inferenceservice:modelyard_llm_answer_tokens:mean1h"
LLM_ANSWER_TOKENS_BASELINE: Final = "model:modelyard_llm_answer_tokens:mean1d_before1h"
