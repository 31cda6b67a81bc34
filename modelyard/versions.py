"""Every version the platform deploys, in one place.

Kubernetes, EKS add-ons, Helm charts, node images and container images are pinned here and nowhere
else (a chart's own images are pinned by its chart version); Python dependencies are pinned in
pyproject.toml. tests/test_versions.py checks that every Helm release, add-on and image in a plan
comes from this module, and that no dependency floats.

EKS add-on versions depend on the Kubernetes minor version. Refresh them with
`aws eks describe-addon-versions --kubernetes-version <minor> --addon-name <name>` before an
upgrade: they are not checked against the EKS API here (no AWS account on the build machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True)
class HelmChart:
    """A Helm chart pinned to one exact version."""

    chart: str
    version: str
    #: Classic chart repository URL; None when `chart` is an oci:// reference.
    repository: str | None = None


#: Kubernetes minor versions this blueprint is tested against, oldest first. The last is the default.
SUPPORTED_KUBERNETES_VERSIONS: Final = ("1.34", "1.35")
DEFAULT_KUBERNETES_VERSION: Final = SUPPORTED_KUBERNETES_VERSIONS[-1]

#: Managed EKS add-on versions per Kubernetes minor version.
EKS_ADDONS: Final = MappingProxyType(
    {
        "1.34": MappingProxyType(
            {
                "eks-pod-identity-agent": "v1.3.8-eksbuild.2",
                "vpc-cni": "v1.20.4-eksbuild.1",
                "coredns": "v1.12.4-eksbuild.1",
                "kube-proxy": "v1.34.1-eksbuild.2",
                "aws-ebs-csi-driver": "v1.51.0-eksbuild.1",
            }
        ),
        "1.35": MappingProxyType(
            {
                "eks-pod-identity-agent": "v1.3.10-eksbuild.1",
                "vpc-cni": "v1.21.1-eksbuild.1",
                "coredns": "v1.13.1-eksbuild.1",
                "kube-proxy": "v1.35.0-eksbuild.2",
                "aws-ebs-csi-driver": "v1.53.0-eksbuild.1",
            }
        ),
    }
)

#: Helm charts deployed by the platform stack. Versions were taken from the projects' published
#: release notes; `helm pull` each one when you bump it (no chart registry is reachable here).
HELM_CHARTS: Final = MappingProxyType(
    {
        "karpenter": HelmChart(chart="oci://public.ecr.aws/karpenter/karpenter", version="1.12.1"),
        "cert-manager": HelmChart(chart="cert-manager", version="v1.19.4", repository="https://charts.jetstack.io"),
        # KServe 0.16 renamed the RawDeployment mode to "Standard" (no Knative, no Istio).
        "kserve-crd": HelmChart(chart="oci://ghcr.io/kserve/charts/kserve-crd", version="v0.16.0"),
        "kserve": HelmChart(chart="oci://ghcr.io/kserve/charts/kserve", version="v0.16.0"),
        # Scales GPU predictors on the serving signal through the workloads' own ScaledObjects. 2.20.2 is the
        # newest tag whose source (the ScaledObject webhook, ported in policies/governance/admission.py) and
        # chart values (tests/conformance/keda-v2.20.2/) were read here; bump with both re-read.
        "keda": HelmChart(chart="keda", version="2.20.2", repository="https://kedacore.github.io/charts"),
        "nvidia-device-plugin": HelmChart(
            chart="nvidia-device-plugin", version="0.18.0", repository="https://nvidia.github.io/k8s-device-plugin"
        ),
        # Held below 4.9.0 on purpose: 4.9.0 renames the DCGM_FI_DEV_* metrics and changes their units,
        # and the dashboards and alerts here use the 4.8 names (DCGM_FI_DEV_GPU_UTIL in percent, ...).
        "dcgm-exporter": HelmChart(
            chart="dcgm-exporter", version="4.8.3", repository="https://nvidia.github.io/dcgm-exporter/helm-charts"
        ),
        # The front door (platform/gateway.py): its chart installs Envoy Gateway's CRDs and Gateway API v1.6.1's
        # (the bundle this tag ships); both are held to tests/conformance/envoy-gateway-v1.9.0/, read at this tag.
        "envoy-gateway": HelmChart(chart="oci://docker.io/envoyproxy/gateway-helm", version="v1.9.0"),
        "kube-prometheus-stack": HelmChart(
            chart="kube-prometheus-stack",
            version="81.6.2",
            repository="https://prometheus-community.github.io/helm-charts",
        ),
    }
)

#: The EKS-optimised Amazon Linux 2023 release Karpenter launches GPU nodes from. Karpenter picks
#: the NVIDIA variant of this release for GPU instance types. Pinned so nodes only change on purpose.
KARPENTER_AMI_ALIAS: Final = "al2023@v20261110"

#: SSM parameter for the system node group's AMI release (the EKS-optimised AL2023 image).
SYSTEM_NODE_AMI_TYPE: Final = "AL2023_x86_64_STANDARD"

#: Container images deployed directly (not through a chart), by digest-free immutable tag.
IMAGES: Final = MappingProxyType(
    {
        # Holds warm GPU capacity for pools that do not scale to zero (see infra/karpenter.py).
        "pause": "registry.k8s.io/pause:3.10.1",
        # The LLM engine (workloads/runtimes/vllm.py), mirrored into ECR. Its flags and series are held to
        # tests/conformance/vllm-v0.34.0/ (read from the 0.34.0 source release); bump both together.
        "vllm": "vllm/vllm-openai:v0.34.0",
        # The CI runner's CodeBuild curated image (infra/ci.py): Ubuntu 22.04, where actions/setup-python has its
        # builds. AWS patches a curated image under its tag; the major version is what is pinned.
        "ci-runner": "aws/codebuild/standard:7.0",
    }
)


@dataclass(frozen=True)
class Unverified:
    """A pinned value or AWS behaviour no build machine here can confirm, and the command that does."""

    what: str
    check: str


#: Everything this blueprint pins or relies on that only AWS (or its GPUs) or a chart registry can confirm.
#: docs/verification.md lists each with its command (tests/test_versions.py keeps the two in step); run them
#: before an upgrade.
UNVERIFIED: Final = (
    Unverified(
        "the EBS CSI driver tags each monitoring volume it provisions with the StorageClass's tagSpecification, "
        "and AWS Backup's selection protects those volumes (a recovery point each after the first window)",
        "aws ec2 describe-volumes --filters Name=tag:modelyard-backup,Values=prod-monitoring --query "
        "'Volumes[].VolumeId' && aws backup list-protected-resources --query 'Results[].ResourceArn'",
    ),
    Unverified(
        "S3 replicates a pushed model version (SSE-KMS, under Object Lock) to the replica region with its retention, "
        "through the replication role as planned",
        "aws s3api head-object --bucket modelyard-prod-models-<account> --key <model>/<version>/manifest.json "
        "--query ReplicationStatus && aws s3api head-object --region <replica_region> --bucket "
        "modelyard-prod-model-replica-<account> --key <model>/<version>/manifest.json "
        "--query '[ReplicationStatus,ObjectLockMode,SSEKMSKeyId]'",
    ),
    Unverified(
        "AWS reports a failed backup job (EventBridge) and a version S3 failed to replicate to the storage topic, its "
        "aws:SourceAccount and aws:SourceArn conditions and KMS grant as planned (S3 checks its own at configuration "
        "with an s3:TestEvent)",
        "aws sns list-subscriptions-by-topic --topic-arn <storageEventsTopicArn> && aws backup start-backup-job "
        "--backup-vault-name modelyard-<env> --resource-arn <a volume ARN> --iam-role-arn <a role Backup cannot "
        "use>   # the failed job's event arrives by e-mail within minutes",
    ),
    Unverified(
        "Karpenter launches the cpu-models NodePool's nodes for CPU models, and nothing else schedules there",
        "kubectl get nodes -l modelyard.io/pool=cpu-models && kubectl get pods -A -o wide "
        "--field-selector spec.nodeName=<a cpu-models node>",
    ),
    Unverified(
        f"Karpenter AMI alias {KARPENTER_AMI_ALIAS} (EKS-optimised AL2023, NVIDIA variant for GPU types)",
        "aws ssm get-parameters-by-path --path /aws/service/eks/optimized-ami/<k8s-minor>/amazon-linux-2023/ "
        "--recursive --query 'Parameters[].Name'",
    ),
    Unverified(
        "EKS add-on versions in EKS_ADDONS, per Kubernetes minor version",
        "aws eks describe-addon-versions --kubernetes-version <minor> --addon-name <addon> "
        "--query 'addons[].addonVersions[].addonVersion'",
    ),
    Unverified(
        "the VPC CNI add-on's `enableNetworkPolicy` configuration key (infra/eks.py ADDON_CONFIGURATION)",
        "aws eks describe-addon-configuration --addon-name vpc-cni --addon-version <version> "
        "--query configurationSchema",
    ),
    Unverified(
        "Helm chart versions in HELM_CHARTS (the DCGM exporter's held at 4.8.3 among them)",
        "helm show chart <chart> --repo <repository> --version <version>   # oci:// charts: helm show chart oci://... "
        "--version <version>",
    ),
    Unverified(
        "kubelet probes reach pods behind default-deny NetworkPolicies (the VPC CNI's policy agent admits the "
        "node's own traffic)",
        "kubectl get pods -A -o wide   # after pulumi up: every platform pod Ready",
    ),
    Unverified(
        "KServe 0.16's admission of the InferenceServices and KEDA 2.20's of the ScaledObjects as the ported "
        "webhooks answer (policies/governance/admission.py, run against upstream's own test tables), and the API "
        "server's validation of every custom resource as tests/crd_schema.py runs it",
        "pulumi preview -C workloads -s <env> --diff && kubectl apply --dry-run=server -f out/manifests/<env>/   "
        "# server-side dry run through the real webhooks",
    ),
    Unverified(
        "KServe's `external` autoscaler class leaves the predictor Deployment to the workloads' ScaledObject "
        "(no KServe HPA), and KEDA's fallback holds replicas while Prometheus is down",
        "kubectl -n models get hpa,scaledobject   # one keda-hpa-<isvc>-predictor each; then scale Prometheus to 0 "
        "and watch: kubectl -n models get scaledobject <isvc>-predictor -o jsonpath='{.status.health}'",
    ),
    Unverified(
        "vLLM on a GPU node: the engine starts with the rendered `vllm serve` command line within its startup "
        "probe's budget, streaming its weights from the model store with the pod's IRSA role at 0.25 GiB/s or "
        "more, answers /health only once loaded, and its KV cache holds at least the tokens "
        "workloads/runtimes/vllm.py estimates (visible memory 0.93 of nominal, 2 GiB engine overhead)",
        "kubectl -n models logs deploy/<model>-predictor -c kserve-container --tail=-1 > vllm.log && grep "
        "-e 'Model loading took' -e 'GPU KV cache size' -e 'Maximum concurrency' vllm.log   # and nvidia-smi "
        "--query-gpu=name,memory.total --format=csv",
    ),
    Unverified(
        "the plan's throughput assumption for an LLM (32 sequences of 1,024 tokens decoding at 60 % of the GPU "
        "class's memory bandwidth: Qwen2.5-7B about 336 tokens/s on an L4, 969 on an L40S) and so its cost of a "
        "million tokens, and the load test's verdict against the engine itself",
        "kubectl -n models port-forward svc/qwen-chat-predictor 8080:80 & modelyard loadtest qwen-chat --env "
        "staging --url http://127.0.0.1:8080 --duration 300   # tokens/s generated at the assumed rate",
    ),
    Unverified(
        "the model bucket refuses writes from any principal but the push role and every delete (its bucket "
        "policy), and Object Lock applies its default retention to an existing bucket's new versions",
        "aws s3api put-object --bucket modelyard-<env>-models-<account> --key probe --body /dev/null   # as an "
        "administrator: AccessDenied; then aws s3api get-object-lock-configuration --bucket "
        "modelyard-<env>-models-<account>",
    ),
    Unverified(
        "a dev model with replicas.min 0 scales to zero after its awake window ends and its queue has been empty "
        "for KEDA's cooldown, and back to one replica when the window opens (KServe leaving the Deployment's "
        "replicas to KEDA)",
        "kubectl -n models get scaledobject qwen-small-predictor -o jsonpath='{.status.conditions}' && kubectl -n "
        "models get deploy qwen-small-predictor -w   # outside and then inside the window",
    ),
    Unverified(
        "the image vllm/vllm-openai:v0.34.0 is the 0.34.0 release tests/conformance/vllm-v0.34.0/ was read "
        "from, and its ECR mirror holds it",
        "crane config docker.io/vllm/vllm-openai:v0.34.0   # Entrypoint [vllm serve]; then: aws ecr describe-images "
        "--repository-name modelyard-<env>/mirror/vllm/vllm-openai --image-ids imageTag=v0.34.0",
    ),
    Unverified(
        "the ECR mirrors of KServe's injected images (storage initializer, serving runtimes) hold the pinned "
        "tags before a model pod starts (docs/operations.md: crane copy)",
        "aws ecr describe-images --repository-name modelyard-<env>/mirror/kserve/storage-initializer "
        "--image-ids imageTag=v0.16.0",
    ),
    Unverified(
        "a model pod fits its pool's nodes after the kubelet's reservation, Karpenter's VM overhead and the "
        "daemonsets' requests as policies/governance/fit.py computes them",
        "kubectl get nodes -l modelyard.io/gpu-pool=<pool> -o custom-columns="
        "NAME:.metadata.name,TYPE:.metadata.labels.node\\.kubernetes\\.io/instance-type,"
        "CPU:.status.allocatable.cpu,MEM:.status.allocatable.memory",
    ),
    Unverified(
        "the model server on a GPU (its GPU targets: single-sentence requests from 256 connections >= 40 % of "
        "raw, 32-sentence requests >= 85 %, p99 at 80 % under 50 ms, GPU utilisation; the ragged BERT pass in fp16)",
        "cd workloads/serving && python bench.py --device cuda --server-cpus 0-3   # on a GPU node, e.g. a "
        "g5.xlarge's 4 vCPUs for the server",
    ),
    Unverified(
        "the model server's N front processes on N cores >= 0.8 x N x one front, measured (needs N + 1 CPUs; this "
        "machine has 2, where a proxy from CPU per request gave 0.98 to 1.02 for 2 fronts, 0.89 for 4)",
        "cd workloads/serving && python bench.py --overhead --fronts 4   # on a machine with 5 CPUs or more",
    ),
    Unverified(
        "the scheduler and Karpenter honour the zone spreads: a predictor's replicas, and prod's Prometheus and "
        "Alertmanager replicas, each in a different zone (and a replica waits rather than share one)",
        "kubectl get pods -A -o wide -l 'serving.kserve.io/inferenceservice' && kubectl get nodes -L "
        "topology.kubernetes.io/zone   # then the same for -n monitoring -l app.kubernetes.io/name=prometheus "
        "and =alertmanager",
    ),
    Unverified(
        "the dead man's switch receives Watchdog every minute (the heartbeat service shows a ping and stays quiet)",
        "kubectl -n monitoring port-forward svc/kube-prometheus-stack-alertmanager 9093 & amtool alert query "
        "alertname=Watchdog --alertmanager.url=http://localhost:9093",
    ),
    Unverified(
        "the model pods' drift taps reach the drift worker through its Service and the model namespace's "
        "NetworkPolicies as the VPC CNI enforces them, and Prometheus scrapes the worker (its PodMonitor selected)",
        "kubectl -n models port-forward deploy/modelyard-drift 8090 & curl -s localhost:8090/metrics   # "
        "modelyard_drift_samples_total rising for each tapped model; then modelyard ops drift <model>",
    ),
    Unverified(
        "a model pod's deletion in the cluster loses no request: the endpoints, kube-proxy and the load balancer "
        "drop it within its preStop pause (ENDPOINT_PROPAGATION_S), and it drains within its grace period (the "
        "sequence is replayed here with HAProxy standing in, benchmarks/failover.py)",
        "modelyard loadtest minilm --env staging --url http://127.0.0.1:8081 --duration 120 & sleep 30 && kubectl "
        "-n models delete pod $(kubectl -n models get pods -l serving.kserve.io/inferenceservice=minilm -o "
        "jsonpath='{.items[0].metadata.name}') --wait=false   # the load test's verdict: 0 failed",
    ),
    Unverified(
        "Envoy Gateway v1.9.0 programs the platform's Gateway: its proxies behind an internal NLB admitting only the "
        "configured client ranges (EKS's cloud controller reading the Service annotations), TLS with cert-manager's "
        "certificate, and every model's route, SecurityPolicy and BackendTrafficPolicy Accepted",
        "kubectl -n envoy-gateway-system get gateway models -o jsonpath='{.status.conditions}' && kubectl -n models "
        "get httproute,securitypolicy,backendtrafficpolicy -o custom-columns=NAME:.metadata.name,"
        "STATUS:.status.parents[0].conditions[0].reason && aws elbv2 describe-load-balancers --query "
        "\"LoadBalancers[?Scheme=='internal'].[LoadBalancerName,DNSName]\"",
    ),
    Unverified(
        "the gateway reads a key from 'Authorization: Bearer', answers no key 401, another team's key 403 and a team "
        "over its rate 429, each in OpenAI's error shape (the custom response filter seeing the local replies), and "
        "removes the key before the model",
        "for k in '' $OTHER_TEAMS_KEY $KEY; do curl -s -o /dev/null -w '%{http_code}\\n' --cacert ca.crt "
        'https://minilm.<hostname>/v1/embeddings -H "Authorization: Bearer $k" -d '
        '\'{"model": "minilm", "input": "hi"}\'; done   # 401 403 200; then past the rate: 429',
    ),
    Unverified(
        "a canary's share of requests is its route weight (Envoy's weighted backends), whatever the replica counts",
        "modelyard loadtest minilm --env staging --url https://minilm.<hostname> --duration 120 && modelyard "
        "ops canary minilm --window 5m   # each version's requests in the ratio of traffic_percent",
    ),
    Unverified(
        "a route's mirrored copies of a request carry the x-request-id the gateway made for it (Envoy copies the "
        "request's headers into each mirror), so the stable version answers some texts twice under one key and the "
        "drift worker has a noise floor",
        "modelyard loadtest minilm --env staging --url https://minilm.<hostname> --duration 300 && modelyard ops "
        "shadow minilm   # noise_pairs above 0 (only copies of one request make them)",
    ),
    Unverified(
        "a shadow receives copies of its percent of the model's requests, as the primary receives them, and a stopped "
        "shadow changes nothing for the callers (Envoy's request mirror does not wait for its answer)",
        "kubectl -n models scale deploy minilm-shadow-predictor --replicas=0 && modelyard loadtest minilm --env "
        "staging --url https://minilm.<hostname> --duration 120   # the verdict as before; then scale back and watch "
        "modelyard_requests_total of minilm-shadow rise at about percent of minilm's",
    ),
    Unverified(
        "a model's requests go to its fallback gateway (its key injected, its host set, TLS against its CA) once too "
        "few of its own replicas are healthy, and come back when they recover",
        "kubectl -n models scale deploy <model>-predictor --replicas=0 && curl -s -o /dev/null -w '%{http_code}\\n' "
        '--cacert ca.crt https://<model>.<hostname>/v1/models -H "Authorization: Bearer $KEY"   # 200, from the '
        "fallback's region (its gateway's access log)",
    ),
    Unverified(
        "a team's IAM role reaches the cluster as its group (the access entry) and reads the model namespace, and "
        "nothing else",
        "aws eks update-kubeconfig --name <cluster> --role-arn <a team role> && kubectl auth can-i --list -n models   "
        "# get, list, watch only; kubectl auth can-i get secrets -n models: no",
    ),
    Unverified(
        "inside the VPC, S3's regional names resolve to its interface endpoint's private addresses (private DNS for "
        "every resolver), so the storage initializer and vLLM reach the model store and STS under the model "
        "namespace's egress, which allows nothing beyond the VPC",
        "kubectl -n models run dns --rm -it --restart=Never --image=<a busybox in your ECR> -- nslookup "
        "<bucket>.s3.<region>.amazonaws.com   # addresses in the VPC CIDR; then a model pod starts and loads its "
        "version: kubectl -n models get pods",
    ),
    Unverified(
        "the proxies send every request's access log record to the gateway log counter (Envoy Gateway's OpenTelemetry "
        "sink, the EnvoyProxy's JSON fields as the record's attributes), which counts it by model, status, team and "
        "who answered",
        "curl -s -o /dev/null --cacert ca.crt https://minilm.<hostname>/v1/models -H 'Authorization: Bearer wrong' "
        "&& kubectl -n models port-forward svc/modelyard-gateway-log 9464 & sleep 3; curl -s localhost:9464/metrics   "
        '# modelyard_gateway_responses_total{model="minilm",code="401",team="none",answered_by="gateway"} 1',
    ),
    Unverified(
        "beside a fallback, Envoy Gateway builds the model's rule as one cluster with the predictors at priority 0 and "
        "the fallback at 1 (as its translator reads), and the proxies reach a predictor through its Service's address "
        "under the gateway namespace's NetworkPolicy (the VPC CNI's policy agent resolving the Service)",
        "egctl config envoy-proxy endpoint -n envoy-gateway-system -l gateway.envoyproxy.io/owning-gateway-name=models "
        "-o yaml   # the rule's one clusterName holds <model>-predictor's locality at priority 0 and the fallback's at "
        "1; then curl the model through the gateway: 200",
    ),
    Unverified(
        "the VPC CNI's policy agent refuses the model port to every pod but the gateway's proxies and Prometheus",
        "kubectl -n models run probe --rm -it --restart=Never --image=<a curl image in your ECR> -- curl -m 5 "
        "http://minilm-predictor/v1/models/minilm   # times out",
    ),
    Unverified(
        "the canary verdicts workflow on GitHub: the observer role reaches Prometheus through a port-forward to a "
        "Prometheus pod (its Role allows nothing else), the pull requests it opens get their own review, and a "
        "roll-back merges on its own where auto-merge is on",
        "gh workflow run canary-verdict.yml && gh run watch && gh pr list --search 'canary in:title'",
    ),
    Unverified(
        "each model's pods pull its version as the model's own account, whose role lists and reads that model's "
        "prefix and is refused any other (the storage initializer's and vLLM's listing prefix within the s3:prefix "
        "condition)",
        "kubectl -n models logs -l serving.kserve.io/inferenceservice=<model> -c storage-initializer --tail=5   # "
        "downloaded; then kubectl -n models run probe --rm -it --restart=Never --overrides "
        '\'{"spec":{"serviceAccountName":"<model>-puller"}}\' --image=<the AWS CLI image in your ECR> -- '
        "s3 ls s3://<bucket>/<another model>/   # AccessDenied",
    ),
    Unverified(
        "KMS signs a manifest's SHA-256 as given with MessageType DIGEST (moto hashes it once more), so the model "
        "server's prehashed check accepts what push wrote; a pushed version's pods start",
        "modelyard model push ./my-model --env staging --model minilm --version <new> && aws kms verify --key-id "
        "alias/modelyard-staging-model-signing --message-type DIGEST --signing-algorithm ECDSA_SHA_256 --message "
        "<the manifestSha256 of manifest.sig, as bytes> --signature <its signature, as bytes>   # SignatureValid: "
        "true; then roll the version out: the pods log 'files verified against manifest.json and its signature'",
    ),
    Unverified(
        "a pull request's real preview completes as the preview role (the programs' data sources, the Kubernetes "
        "provider diffing against the state with no cluster access) under a Pulumi Cloud team token of Stack Read",
        "gh pr checks <pull request> && aws iam simulate-principal-policy --policy-source-arn "
        "arn:aws:iam::<account>:role/modelyard-<env>-ci-preview --action-names s3:GetObject eks:DescribeCluster "
        "--query 'EvaluationResults[].EvalDecision'   # the preview (<env>) check passed; implicitDeny twice",
    ),
    Unverified(
        "GitHub's OIDC tokens are exchanged by STS and by Pulumi Cloud for the roles and teams the workflows name, and "
        "a token of another subject is refused",
        "gh run view <a deploy run> --json jobs --jq '.jobs[].conclusion'   # success for each environment; the same "
        "role-to-assume in a pull request's job fails: Not authorized to perform sts:AssumeRoleWithWebIdentity",
    ),
    Unverified(
        "the CodeBuild-hosted runner takes prod's queued jobs (the account's GitHub source credential registers its "
        "webhook) and reaches the private API endpoint through the cluster security group",
        "gh workflow run canary-verdict.yml && gh run watch && aws codebuild list-builds-for-project --project-name "
        "modelyard-prod-runner   # the prod job ran in a build there, and its port-forward answered",
    ),
)
