"""The Pulumi programs of this repository, and the registry the offline plan engine reads.

`pulumi up` runs a program through the project's `__main__.py`; `modelyard plan` runs the very same
function in-process under mocks. A program takes an already validated config, so a bad stack file
fails before a single resource is registered, on both paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from modelyard.config import FULL_KEY, PLATFORM_KEY, GatewayConfig, PlatformConfig
from modelyard.infra.alerts import AlertTopics, AlertTopicsArgs, CostAlerts, CostAlertsArgs
from modelyard.infra.backup import Backups, BackupsArgs, failure_rule_name
from modelyard.infra.ci import OBSERVER_GROUP, CiIdentities, CiIdentitiesArgs, StackReach
from modelyard.infra.common import AccountContext
from modelyard.infra.ecr import ImageRegistry, ImageRegistryArgs
from modelyard.infra.eks import Cluster, ClusterArgs
from modelyard.infra.karpenter import Karpenter, KarpenterArgs
from modelyard.infra.logs import LogEncryption, LogEncryptionArgs
from modelyard.infra.model_store import ModelStore, ModelStoreArgs
from modelyard.infra.network import Network, NetworkArgs
from modelyard.infra.nodes import SystemNodeGroup, SystemNodeGroupArgs
from modelyard.platform.autoscaling import NAMESPACE as KEDA_NAMESPACE
from modelyard.platform.autoscaling import Keda, KedaArgs
from modelyard.platform.cert_manager import NAMESPACE as CERT_MANAGER_NAMESPACE
from modelyard.platform.cert_manager import CertManager, CertManagerArgs
from modelyard.platform.gateway import GATEWAY_NAME, Gateway, GatewayArgs
from modelyard.platform.gateway import NAMESPACE as GATEWAY_NAMESPACE
from modelyard.platform.gpu import NAMESPACE as NVIDIA_NAMESPACE
from modelyard.platform.gpu import NvidiaGpu, NvidiaGpuArgs
from modelyard.platform.kserve import KSERVE_MIRRORS, KServe, KServeArgs
from modelyard.platform.kserve import NAMESPACE as KSERVE_NAMESPACE
from modelyard.platform.monitoring import NAMESPACE as MONITORING_NAMESPACE
from modelyard.platform.monitoring import PROMETHEUS_URL, Monitoring, MonitoringArgs
from modelyard.platform.network_policy import NetworkPolicies, NetworkPoliciesArgs
from modelyard.platform.priority import PlatformPriority, PlatformPriorityArgs
from modelyard.platform.rules import InstancePrice, RuleParams
from modelyard.policies.governance.conventions import CONFIG_NAMESPACE, backup_selection
from modelyard.policies.governance.prices import price_book
from modelyard.stackfile import parse_platform_config
from modelyard.tags import k8s_labels, standard_tags
from modelyard.validation import ConfigError
from modelyard.workloads.catalog import WORKLOADS_KEY, Workloads, parse_workloads, placement_problems
from modelyard.workloads.runtimes import RUNTIME_MIRRORS, runtime_images

REPO_ROOT = Path(__file__).resolve().parent.parent


def cluster_name(env: str) -> str:
    return f"modelyard-{env}"


def rule_params(cfg: PlatformConfig) -> RuleParams:
    """The constants the live cost rules need: the budget, and what each GPU pool's nodes cost an hour
    (on-demand from the price table; spot at its assumed discount)."""
    book = price_book()
    prices = []
    for pool in cfg.gpu_pools:
        for instance_type in pool.instance_types:
            on_demand = book.ec2_hourly(cfg.region, instance_type)
            if on_demand is None:  # config validation already refused unpriced types
                raise ValueError(f"no {cfg.region} price for {instance_type}")
            for capacity in pool.capacity_types:
                usd = on_demand if capacity == "on-demand" else on_demand * (1 - book.spot_discount)
                prices.append(InstancePrice(instance_type, capacity, round(usd, 6)))
    unique = {(p.instance_type, p.capacity_type): p for p in prices}
    return RuleParams(cfg.budget.monthly_usd, book.hours_per_month, list(unique.values()))


def storage_emails(cfg: PlatformConfig) -> list[str]:
    """Who hears of a failed backup or replication: every address of the warning route's sns receivers."""
    routed = set(cfg.monitoring.alerting.routes.get("warning", ()))
    emails: list[str] = []
    for receiver in cfg.monitoring.alerting.receivers:
        if receiver.type == "sns" and receiver.name in routed:
            emails.extend(e for e in receiver.emails if e not in emails)
    return emails


def backup_failure_rule_arn(env: str, account: AccountContext) -> pulumi.Output[str]:
    """The ARN the backup failure rule will have (the storage topic's policy names it before it exists)."""
    return pulumi.Output.concat(
        "arn:",
        account.partition,
        ":events:",
        account.region,
        ":",
        account.account_id,
        ":rule/",
        failure_rule_name(env),
    )


def auth_output(gateway: GatewayConfig) -> dict[str, Any]:
    """The platform's `gateway.auth` output, which the workloads' routes authenticate by."""
    if gateway.oidc is None:
        return {"mode": "api-keys"}
    o = gateway.oidc
    return {
        "mode": "jwt",
        "issuer": o.issuer,
        "jwksUri": o.jwks_uri,
        "audiences": list(o.audiences),
        "teamClaim": o.team_claim,
    }


def platform_program(cfg: PlatformConfig) -> None:
    """The platform stack: the AWS layer, then the in-cluster services."""
    tags = standard_tags(env=cfg.env, team=cfg.tags.team, cost_center=cfg.tags.cost_center)
    name = cluster_name(cfg.env)

    # Providers are created once, here; components inherit them. Default providers are disabled in
    # every stack file, so nothing can escape the default tags.
    aws_provider = aws.Provider("aws", region=cfg.region, default_tags=aws.ProviderDefaultTagsArgs(tags=tags))
    with_aws = pulumi.ResourceOptions(providers=[aws_provider])
    account = AccountContext.lookup(cfg.region, aws_provider)

    logs = LogEncryption(
        "logs",
        LogEncryptionArgs(cluster_name=name, account=account, deletion_protection=cfg.deletion_protection),
        opts=with_aws,
    )
    network = Network(
        "network",
        NetworkArgs(
            config=cfg.network,
            cluster_name=name,
            account=account,
            logs_key_arn=logs.key_arn,
            deletion_protection=cfg.deletion_protection,
        ),
        opts=with_aws,
    )
    # GitHub Actions' roles come first: the deploy role is the cluster's deployer.
    ci = None
    if cfg.ci is not None:
        ci = CiIdentities("ci", CiIdentitiesArgs(config=cfg.ci, env=cfg.env, account=account), opts=with_aws)
    cluster = Cluster(
        "eks",
        ClusterArgs(
            config=cfg.eks,
            cluster_name=name,
            account=account,
            subnet_ids=network.private_subnet_ids,
            logs_key_arn=logs.key_arn,
            deletion_protection=cfg.deletion_protection,
            deployer_role_arn=ci.deploy_role_arn if ci is not None else None,
        ),
        opts=with_aws,
    )
    system = SystemNodeGroup(
        "system",
        SystemNodeGroupArgs(config=cfg.system_pool, cluster=cluster, subnet_ids=network.private_subnet_ids, tags=tags),
        opts=with_aws,
    )
    replica_provider = None
    if cfg.model_store.replica_region is not None:
        replica_provider = aws.Provider(
            "aws-model-replica",
            region=cfg.model_store.replica_region,
            default_tags=aws.ProviderDefaultTagsArgs(tags=tags),
        )
    store = ModelStore(
        "models",
        ModelStoreArgs(
            config=cfg.model_store,
            env=cfg.env,
            account=account,
            deletion_protection=cfg.deletion_protection,
            replica_provider=replica_provider,
        ),
        opts=with_aws,
    )
    if ci is not None:
        ci.reach(
            StackReach(
                cluster_name=cluster.name,
                cluster_arn=cluster.arn,
                cluster_security_group_id=cluster.security_group_id,
                vpc_id=network.vpc_id,
                private_subnet_ids=network.private_subnet_ids,
                logs_key_arn=logs.key_arn,
                log_retention_days=cfg.eks.log_retention_days,
                deletion_protection=cfg.deletion_protection,
                signing_key_arn=store.signing_key_arn,
            )
        )
    registry = ImageRegistry(
        "registry",
        ImageRegistryArgs(
            env=cfg.env,
            account=account,
            deletion_protection=cfg.deletion_protection,
            mirrors={**KSERVE_MIRRORS, **RUNTIME_MIRRORS},
        ),
        opts=with_aws,
    )

    topics = AlertTopics(
        "alerts",
        AlertTopicsArgs(
            env=cfg.env,
            account=account,
            receivers=cfg.monitoring.alerting.receivers,
            cost_emails=cfg.budget.alert_emails,
            oidc_provider_arn=cluster.oidc_provider_arn,
            oidc_issuer_url=cluster.oidc_issuer_url,
            deletion_protection=cfg.deletion_protection,
            storage_emails=storage_emails(cfg),
            storage_publishers=[
                *([("s3.amazonaws.com", store.bucket_arn)] if replica_provider is not None else []),
                *([("events.amazonaws.com", backup_failure_rule_arn(cfg.env, account))] if cfg.backup.enabled else []),
            ],
        ),
        opts=with_aws,
    )
    CostAlerts(
        "cost",
        CostAlertsArgs(env=cfg.env, config=cfg.budget, topic_arn=topics.cost_topic_arn, tag_keys=sorted(tags)),
        opts=with_aws,
    )

    backups = None
    if cfg.backup.enabled:
        backups = Backups(
            "backup",
            BackupsArgs(env=cfg.env, account=account, config=cfg.backup, deletion_protection=cfg.deletion_protection),
            opts=with_aws,
        )
    if topics.storage_topic_arn is not None and topics.storage_topic_policy is not None:
        after = [topics.storage_topic_policy]
        store.report_failures(topics.storage_topic_arn, after)
        if backups is not None:
            backups.report_failures(topics.storage_topic_arn, after)

    k8s_provider = k8s.Provider("k8s", kubeconfig=cluster.kubeconfig, enable_server_side_apply=True)
    # The random provider generates the Grafana admin password (a secret in state, never a default).
    random_provider = random.Provider("random")
    with_both = pulumi.ResourceOptions(providers=[aws_provider, k8s_provider, random_provider])
    karpenter = Karpenter(
        "karpenter",
        KarpenterArgs(
            cluster=cluster,
            pools=cfg.gpu_pools,
            cpu_pool=cfg.cpu_pool,
            tags=tags,
            replicas=cfg.system_pool.controller_replicas,
            depends_on=[system],
        ),
        opts=with_both,
    )

    # In-cluster services, on the system nodes. The monitoring CRDs come first: the others ship
    # ServiceMonitors.
    labels = k8s_labels(tags)
    # Before any chart: a pod naming a PriorityClass that does not exist is refused at admission.
    priority = PlatformPriority("platform-priority", PlatformPriorityArgs(labels=labels), opts=with_both)
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            config=cfg.monitoring,
            env=cfg.env,
            region=cfg.region,
            cluster_name=cluster.name,
            labels=labels,
            model_namespace=cfg.serving.model_namespace,
            topic_arns=topics.topic_arns,
            alertmanager_role_arn=topics.alertmanager_role_arn,
            rule_params=rule_params(cfg),
            retain_volumes=cfg.deletion_protection,
            backup_tag=backup_selection(cfg.env) if cfg.backup.enabled else None,
            readers_group=OBSERVER_GROUP if cfg.ci is not None else None,
            depends_on=[system, priority],
        ),
        opts=with_both,
    )
    cert_manager = CertManager(
        "cert-manager",
        CertManagerArgs(labels=labels, replicas=cfg.system_pool.controller_replicas, depends_on=[monitoring.release]),
        opts=with_both,
    )
    kserve = KServe(
        "kserve",
        KServeArgs(
            labels=labels,
            model_namespace=cfg.serving.model_namespace,
            mirror_urls=registry.mirror_urls,
            deletion_protection=cfg.deletion_protection,
            depends_on=[cert_manager.release],
            replicas=cfg.system_pool.controller_replicas,
        ),
        opts=with_both,
    )
    nvidia = NvidiaGpu("nvidia", NvidiaGpuArgs(labels=labels, depends_on=[monitoring.release]), opts=with_both)
    keda = Keda(
        "keda",
        KedaArgs(labels=labels, replicas=cfg.system_pool.controller_replicas, depends_on=[monitoring.release]),
        opts=with_both,
    )
    gateway = Gateway(
        "gateway",
        GatewayArgs(
            config=cfg.serving.gateway,
            labels=labels,
            vpc_cidr=cfg.network.vpc_cidr,
            model_namespace=cfg.serving.model_namespace,
            model_namespace_made=kserve.model_namespace,
            replicas=cfg.system_pool.controller_replicas,
            depends_on=[cert_manager.release, priority],
        ),
        opts=with_both,
    )
    NetworkPolicies(
        "network-policies",
        NetworkPoliciesArgs(
            labels=labels,
            vpc_cidr=cfg.network.vpc_cidr,
            model_namespace=cfg.serving.model_namespace,
            client_cidrs=cfg.serving.gateway.source_cidrs,
            fallback_cidrs=cfg.serving.gateway.fallback_cidrs,
            identity_provider=cfg.serving.gateway.oidc is not None,
            namespaces=[
                GATEWAY_NAMESPACE,
                *karpenter.namespaces,
                MONITORING_NAMESPACE,
                CERT_MANAGER_NAMESPACE,
                KSERVE_NAMESPACE,
                NVIDIA_NAMESPACE,
                KEDA_NAMESPACE,
                cfg.serving.model_namespace,
            ],
            depends_on=[karpenter, monitoring, cert_manager, kserve, nvidia, keda, gateway],
        ),
        opts=with_both,
    )

    # The contract the workloads stack reads through its StackReference.
    pulumi.export("env", cfg.env)
    pulumi.export("region", cfg.region)
    pulumi.export("clusterName", cluster.name)
    pulumi.export("clusterEndpoint", cluster.endpoint)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("oidcProviderArn", cluster.oidc_provider_arn)
    pulumi.export("oidcIssuerUrl", cluster.oidc_issuer_url)
    pulumi.export("modelBucket", store.bucket_name)
    pulumi.export("modelBucketArn", store.bucket_arn)
    pulumi.export("modelKmsKeyArn", store.kms_key_arn)
    pulumi.export("modelSigningPublicKey", store.signing_public_key)
    pulumi.export("modelNamespace", cfg.serving.model_namespace)
    pulumi.export("ecrRepositoryUrl", registry.repository_url)
    pulumi.export("runtimeImages", runtime_images(registry.mirror_urls))
    pulumi.export("gpuPools", karpenter.node_pools)
    pulumi.export("cpuPool", karpenter.cpu_pool)
    pulumi.export("prometheusUrl", PROMETHEUS_URL)
    pulumi.export(
        "gateway",
        {
            "namespace": GATEWAY_NAMESPACE,
            "name": GATEWAY_NAME,
            "hostname": cfg.serving.gateway.hostname,
            "replicas": cfg.serving.gateway.replicas,
            # Whether the proxies may reach fallbacks elsewhere (Envoy Gateway's Backend API on, egress open).
            "fallbacks": bool(cfg.serving.gateway.fallback_cidrs),
            # How callers authenticate: API keys in per-team Secrets, or JWTs from the configured provider.
            "auth": auth_output(cfg.serving.gateway),
        },
    )
    pulumi.export("monthlyBudgetUsd", cfg.budget.monthly_usd)
    pulumi.export("grafanaAdminSecret", pulumi.Output.concat("monitoring/", monitoring.grafana_admin_secret))
    pulumi.export("costAlertTopicArn", topics.cost_topic_arn)
    if store.replica_bucket_name is not None:
        pulumi.export("modelReplicaBucket", store.replica_bucket_name)
    if topics.storage_topic_arn is not None:
        pulumi.export("storageEventsTopicArn", topics.storage_topic_arn)
    if backups is not None:
        pulumi.export("backupVault", backups.vault_name)


def workloads_program(w: Workloads) -> None:
    """The workloads stack: every catalogued model, on the cluster the platform stack describes."""
    from modelyard.workloads.models import ModelDeployment, ModelDeploymentArgs, ModelPull
    from modelyard.workloads.routes import ModelRoute, ModelRouteArgs

    cfg = w.config
    platform = pulumi.StackReference("platform", stack_name=cfg.platform_stack)
    k8s_provider = k8s.Provider("k8s", kubeconfig=platform.require_output("kubeconfig"), enable_server_side_apply=True)
    tags = standard_tags(env=cfg.env, team=cfg.tags.team, cost_center=cfg.tags.cost_center)
    # Each model's pull role (workloads/models.py), in the platform stack's account and region.
    aws_provider = aws.Provider(
        "aws", region=platform.require_output("region"), default_tags=aws.ProviderDefaultTagsArgs(tags=tags)
    )
    labels = k8s_labels(tags)
    namespace = platform.require_output("modelNamespace")

    def check_placement(pools: Any, cpu_pool: Any) -> None:
        # What `modelyard plan` checks before running the program (cli._check_pools), here against the
        # platform stack's real outputs: every GPU pool exists, and every pool can hold its models' pods.
        problems = placement_problems(w.catalog, pools, cfg.env, cpu_pool)
        if problems:
            raise pulumi.RunError(str(ConfigError(cfg.env, w.catalog_path.name, problems)))

    pulumi.Output.all(platform.require_output("gpuPools"), platform.require_output("cpuPool")).apply(
        lambda pools: check_placement(*pools)
    )
    providers = pulumi.ResourceOptions(providers=[k8s_provider])
    if w.catalog.drift is not None:
        from modelyard.workloads.drift import DriftWorker, DriftWorkerArgs

        DriftWorker(
            "drift",
            DriftWorkerArgs(
                drift=w.catalog.drift,
                namespace=namespace,
                registry=platform.require_output("ecrRepositoryUrl"),
                labels=labels,
            ),
            opts=providers,
        )
    if w.catalog.gateway_log is not None:
        from modelyard.workloads.gateway_log import GatewayLogCounter, GatewayLogCounterArgs

        GatewayLogCounter(
            "gateway-log",
            GatewayLogCounterArgs(
                config=w.catalog.gateway_log,
                namespace=namespace,
                registry=platform.require_output("ecrRepositoryUrl"),
                labels=labels,
            ),
            opts=providers,
        )
    if w.config.team_access:
        from modelyard.workloads.team_access import TeamAccess, TeamAccessArgs

        TeamAccess(
            "team-access",
            TeamAccessArgs(
                teams=w.config.team_access,
                cluster_name=platform.require_output("clusterName"),
                namespace=namespace,
                labels=labels,
            ),
            opts=pulumi.ResourceOptions(providers=[k8s_provider, aws_provider]),
        )
    gateway = platform.require_output("gateway")
    with_fallback = [m.name for m in w.catalog.models if m.fallback is not None]

    def check_fallbacks(g: Any) -> None:
        if with_fallback and not g.get("fallbacks"):
            raise pulumi.RunError(
                f"{', '.join(with_fallback)}: a fallback needs the platform's serving.gateway.fallback_cidrs (where "
                "the gateway's proxies may reach it); the platform stack sets none"
            )

    gateway.apply(check_fallbacks)
    teams = tuple(dict.fromkeys(t for m in w.catalog.models for t in m.callers))
    for model in w.catalog.models:
        ModelRoute(
            model.name,
            ModelRouteArgs(model=model, all_teams=teams, namespace=namespace, gateway=gateway, labels=labels),
            opts=providers,
        )
        ModelDeployment(
            model.name,
            ModelDeploymentArgs(
                model=model,
                namespace=namespace,
                pull=ModelPull(
                    oidc_provider_arn=platform.require_output("oidcProviderArn"),
                    oidc_issuer_url=platform.require_output("oidcIssuerUrl"),
                    bucket_arn=platform.require_output("modelBucketArn"),
                    kms_key_arn=platform.require_output("modelKmsKeyArn"),
                    region=platform.require_output("region"),
                ),
                bucket=platform.require_output("modelBucket"),
                registry=platform.require_output("ecrRepositoryUrl"),
                prometheus_url=platform.require_output("prometheusUrl"),
                images=platform.require_output("runtimeImages"),
                labels=labels,
                drift=w.catalog.drift,
                signing_key=platform.require_output("modelSigningPublicKey"),
            ),
            opts=pulumi.ResourceOptions(providers=[k8s_provider, aws_provider]),
        )
    pulumi.export("env", cfg.env)
    pulumi.export("models", [m.name for m in w.catalog.models])
    pulumi.export(
        "canaries",
        {
            m.name: {"version": m.canary.version, "trafficPercent": m.canary.traffic_percent}
            for m in w.catalog.models
            if m.canary_active and m.canary
        },
    )


def _use_checkout() -> None:
    """Prices are read from the checkout the Pulumi CLI runs the program in (sources.py)."""
    from modelyard.policies.governance.sources import use_checkout

    try:
        use_checkout(find_root(Path.cwd()))
    except LookupError:
        use_checkout(None)


def run_workloads() -> None:
    """Entry point of workloads/__main__.py under the Pulumi CLI."""
    _use_checkout()
    stack = pulumi.get_stack()
    raw = {WORKLOADS_KEY: pulumi.Config(CONFIG_NAMESPACE).get_object("workloads")}
    try:
        # The Pulumi CLI runs the program in the project's directory: the catalog is read from there.
        w = parse_workloads(raw, stack=stack, source=f"Pulumi.{stack}.yaml", directory=Path.cwd())
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    workloads_program(w)


def run_platform() -> None:
    """Entry point under the Pulumi CLI: read and validate the stack's config, then run the program."""
    _use_checkout()
    stack = pulumi.get_stack()
    raw = pulumi.Config(CONFIG_NAMESPACE).get_object(PLATFORM_KEY)
    try:
        if raw is None:
            raise ConfigError(stack, f"Pulumi.{stack}.yaml", [f"{FULL_KEY}: is required but missing"])
        cfg = parse_platform_config(raw, stack=stack, source=f"Pulumi.{stack}.yaml")
    except ConfigError as exc:
        # RunError prints the message without a Python traceback.
        raise pulumi.RunError(str(exc)) from None
    platform_program(cfg)


@dataclass(frozen=True)
class Project:
    """A Pulumi project in this repository, as the offline plan engine sees it."""

    key: str
    #: The `name:` in its Pulumi.yaml; URNs carry it.
    pulumi_name: str
    #: The one `modelyard:` key its stack files hold.
    config_key: str
    #: Where it lives in a checkout: "" for the platform project (the root), "workloads".
    subdir: str
    #: Validates a stack file's `config:` mapping (config, stack, file name, project directory); raises
    #: ConfigError.
    parse_config: Callable[[Mapping[str, Any], str, str, Path], Any]
    program: Callable[[Any], None]

    def directory_in(self, root: Path) -> Path:
        return root / self.subdir if self.subdir else root

    @property
    def directory(self) -> Path:
        """In the checkout this package is installed from."""
        return self.directory_in(REPO_ROOT)

    def stack_file(self, env: str, root: Path = REPO_ROOT) -> Path:
        return self.directory_in(root) / f"Pulumi.{env}.yaml"


PROJECTS: dict[str, Project] = {
    "platform": Project(
        key="platform",
        pulumi_name="modelyard-platform",
        config_key=FULL_KEY,
        subdir="",
        parse_config=lambda raw, env, source, _: parse_platform_config(raw[FULL_KEY], stack=env, source=source),
        program=platform_program,
    ),
    "workloads": Project(
        key="workloads",
        pulumi_name="modelyard-workloads",
        config_key=WORKLOADS_KEY,
        subdir="workloads",
        parse_config=lambda raw, env, source, directory: parse_workloads(
            raw, stack=env, source=source, directory=directory
        ),
        program=workloads_program,
    ),
}


#: Environments in promotion order: a stack's tier first, then its name.
TIER_ORDER = ("dev", "staging", "prod")


def stack_envs(directory: Path = REPO_ROOT) -> list[str]:
    """The stacks of a project directory (the checkout's root for the platform, its workloads/), found
    from its `Pulumi.<env>.yaml` files and ordered as changes are promoted (by tier, then name): what
    `modelyard review`, the CI matrices and the deploy chains cover. A stack file with no readable tier
    sorts last; planning it reports why."""
    import yaml

    found = []
    for path in sorted(directory.glob("Pulumi.*.yaml")):
        env = path.name[len("Pulumi.") : -len(".yaml")]
        try:
            config = (yaml.safe_load(path.read_text(encoding="utf-8")) or {})["config"]
            keys = [v for k, v in config.items() if k.startswith(f"{CONFIG_NAMESPACE}:") and isinstance(v, dict)]
            tier = keys[0].get("tier") if keys else None
        except (yaml.YAMLError, KeyError, TypeError, AttributeError):
            tier = None
        rank = TIER_ORDER.index(tier) if tier in TIER_ORDER else len(TIER_ORDER)
        found.append((rank, env))
    return [env for _, env in sorted(found)]


def find_root(start: Path) -> Path:
    """The checkout `start` is in, found the way the Pulumi CLI finds a project: the nearest Pulumi.yaml
    at or above `start`. From the workloads project, its parent is the root. Raises LookupError."""
    names = {p.pulumi_name: p for p in PROJECTS.values()}
    for directory in (start.resolve(), *start.resolve().parents):
        manifest = directory / "Pulumi.yaml"
        if manifest.is_file():
            name = _project_name(manifest)
            project = names.get(name or "")
            if project is None:
                raise LookupError(
                    f"{manifest} is project {name!r}, not one of {', '.join(sorted(names))}: run modelyard from "
                    "a modelyard checkout, or pass --cwd"
                )
            return directory.parents[len(Path(project.subdir).parts) - 1] if project.subdir else directory
    raise LookupError(
        f"no Pulumi.yaml in {start.resolve()} or above: run modelyard from a modelyard checkout, or pass --cwd"
    )


def _project_name(manifest: Path) -> str | None:
    for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("name:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    return None
