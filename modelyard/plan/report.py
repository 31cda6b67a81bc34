"""What a reviewer reads: the plan summary, and every Kubernetes object as YAML."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from modelyard.config import PlatformConfig
from modelyard.infra.ci import canary_environment, deploy_role_name
from modelyard.plan.digest import new_states
from modelyard.workloads.catalog import Workloads

#: Kubernetes types that are not objects in the cluster.
_NOT_OBJECTS = ("kubernetes:helm.sh/", "pulumi:providers:kubernetes")


def layer_of(state: Mapping[str, Any], by_urn: Mapping[str, Mapping[str, Any]]) -> str:
    """The layer a resource belongs to: the `<layer>` of its nearest `modelyard:<layer>:*` ancestor
    (itself included); providers and the stack are their own rows."""
    current: Mapping[str, Any] | None = state
    while current is not None:
        typ = str(current.get("type", ""))
        if typ.startswith("modelyard:"):
            return typ.split(":")[1]
        if typ.startswith("pulumi:providers:"):
            return "providers"
        if typ == "pulumi:pulumi:Stack":
            return "stack"
        parent = current.get("parent")
        current = by_urn.get(parent) if parent else None
    return "other"


def counts_by_layer(digest: Mapping[str, Any]) -> dict[str, Counter[str]]:
    """Custom resources (what costs money and carries policy) by layer, then by type."""
    states = list(new_states(digest))
    by_urn = {s["urn"]: s for s in states if "urn" in s}
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for state in states:
        if state.get("custom"):
            table[layer_of(state, by_urn)][state["type"]] += 1
    return dict(table)


def config_lines(cfg: PlatformConfig) -> list[str]:
    """The values that make this environment differ from the others, one line each."""
    net, eks, system = cfg.network, cfg.eks, cfg.system_pool
    endpoint = f"public to {', '.join(eks.endpoint.public_cidrs)} + private" if eks.endpoint.public else "private only"
    deployer = eks.deployer_role_arn or "the role running it"
    if cfg.ci is not None:
        deployer = f"CI's {deploy_role_name(cfg.env)}"
    break_glass = " · break-glass role (MFA)" if eks.break_glass else ""
    lines = [
        f"tier {cfg.tier} · {cfg.region} · {net.az_count} AZs · VPC {net.vpc_cidr} · NAT {net.nat}",
        f"EKS {eks.version} · API endpoint {endpoint}",
        f"cluster-admin entries: deployer ({deployer}) · {len(eks.admin_role_arns)} admin role(s){break_glass}",
        f"system pool {'/'.join(system.instance_types)} on-demand, {system.min_size}..{system.max_size} nodes "
        f"(desired {system.desired_size})",
    ]
    if cfg.ci is not None:
        runner = "CodeBuild runner in the VPC" if cfg.ci.runner == "codebuild" else "GitHub-hosted runners"
        lines.append(
            f"CI: GitHub {cfg.ci.repository} through OIDC · preview role for pull requests (read-only) · deploy role "
            f"for environment {cfg.env} · observer for {canary_environment(cfg.env)} · {runner}"
        )
    for pool in cfg.gpu_pools:
        zero = "scales to zero" if pool.scale_to_zero else f"{pool.min_gpus} warm"
        lines.append(
            f"GPU pool {pool.name}: {pool.gpu_class} on {', '.join(pool.instance_types)} · "
            f"{'+'.join(pool.capacity_types)} · ≤{pool.max_gpus} GPUs · {zero}"
        )
    cpu = cfg.cpu_pool
    lines.append(
        f"CPU model pool: {', '.join(cpu.instance_types)} · {'+'.join(cpu.capacity_types)} · ≤{cpu.max_vcpus} vCPUs"
    )
    store = cfg.model_store
    lines.append(
        f"model store: versioning {'on' if store.versioning else 'off'}, noncurrent kept "
        f"{store.noncurrent_version_retention_days} d, KMS {'existing key' if store.kms_key_arn else 'own key'}, "
        + (f"replicated to {store.replica_region}" if store.replica_region else "no replica")
    )
    backup = cfg.backup
    lines.append(
        f"backups of the monitoring volumes: {backup.schedule}, kept {backup.retention_days} d"
        + (", vault locked" if backup.vault_lock else "")
        if backup.enabled
        else "backups of the monitoring volumes: off"
    )
    mon = cfg.monitoring
    routes = " · ".join(f"{sev} → {', '.join(names)}" for sev, names in mon.alerting.routes.items())
    lines.append(
        f"monitoring: Prometheus {mon.prometheus_retention_days} d on {mon.prometheus_storage_gib} GiB "
        f"x{mon.prometheus_replicas}, Alertmanager x{mon.alertmanager_replicas} ({routes})"
    )
    gw = cfg.serving.gateway
    lines.append(
        f"gateway: https://{gw.hostname} · {gw.load_balancer} NLB from {', '.join(gw.source_cidrs) or 'the VPC'} · "
        f"Envoy proxies x{gw.replicas} · certificate from {gw.issuer or 'the platform CA'}"
    )
    tags_note = "cost-allocation tags activated" if cfg.budget.activate_cost_allocation_tags else "tags not activated"
    lines.append(
        f"budget ${cfg.budget.monthly_usd:,.0f}/month → {len(cfg.budget.alert_emails)} recipient(s), anomaly alert "
        f"≥ ${cfg.budget.anomaly_threshold_usd:,.0f} ({tags_note}) · "
        f"deletion protection {'on' if cfg.deletion_protection else 'off'}"
    )
    return lines


def workloads_lines(w: Workloads) -> list[str]:
    """One line per catalogued model: version, canary split, resources, replicas, SLO."""
    cfg = w.config
    lines = [f"tier {cfg.tier} · reads {cfg.platform_stack} · catalog {cfg.catalog} ({len(w.catalog.models)} models)"]
    for m in w.catalog.models:
        where = f"{m.resources.gpu.count} GPU on pool {m.resources.gpu.pool}" if m.resources.gpu else "CPU"
        rt = m.runtime_module
        line = (
            f"model {m.name} v{m.version} ({m.team}) · {rt.describe(m)} · {where}, "
            f"{m.resources.cpu} CPU {m.resources.memory} · replicas {m.replicas.min}..{m.replicas.max} · "
            f"SLO {rt.slo_text(m)}"
        )
        if m.canary_active and m.canary:
            line += (
                f" · canary v{m.canary.version}: {m.canary.traffic_percent}% of traffic by route weight, "
                f"{m.canary_replicas()} replica(s)"
            )
        elif m.canary is not None:
            state = "promoted" if m.canary.version == m.version else "rolled back (0%)"
            line += f" · canary v{m.canary.version} {state}, not deployed"
        if m.shadow_active and m.shadow:
            line += (
                f" · shadow v{m.shadow.version} on copies of {m.shadow.percent}% of requests, "
                f"{m.shadow_replicas()} replica(s)"
            )
        line += f" · callers {', '.join(m.callers)} at {m.access.requests_per_second:g} req/s each"
        lines.append(line)
    return lines


def summary(digest: Mapping[str, Any], descriptions: Mapping[str, list[str]], *, seconds: float) -> str:
    """The plan summary: what each stack is, and what it creates by layer and type."""
    meta = digest.get("modelyard", {})
    projects = ", ".join(f"{p['project']}/{p['stack']}" for p in meta.get("projects", []))
    states = list(new_states(digest))
    custom = sum(1 for s in states if s.get("custom"))
    out = [f"modelyard plan {meta.get('env', '?')} — {projects} (offline: Pulumi mocks, no cloud calls)", ""]
    for name, lines in descriptions.items():
        out.append(f"{name}:")
        out += [f"  {line}" for line in lines]
        out.append("")
    out.append(
        f"{custom} resources to create ({len(states)} with components and the stack), planned in {seconds:.2f} s"
    )
    for layer, counter in sorted(counts_by_layer(digest).items()):
        out.append(f"  {layer} ({sum(counter.values())})")
        for typ, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"    {n:>4}  {typ}")
    return "\n".join(out) + "\n"


def _project(state: Mapping[str, Any]) -> str:
    """The Pulumi project a resource belongs to, from its URN (urn:pulumi:<stack>::<project>::…)."""
    return str(state.get("urn", "")).split("::")[1]


def is_patch(typ: str) -> bool:
    """A pulumi-kubernetes `<Kind>Patch`: server-side apply of some fields of an object something else (a Helm
    chart) creates, not an object of its own."""
    return typ.startswith("kubernetes:") and typ.endswith("Patch")


def kubernetes_objects(digest: Mapping[str, Any], *, patches: bool = False) -> Iterable[tuple[str, dict[str, Any]]]:
    """(file name, object) for every Kubernetes object in the plan, in URN order; with `patches`, the patches
    instead (under `patches/`, named `.yaml.patch`: partial objects no validator or scanner should take for
    objects)."""
    for state in new_states(digest):
        typ = str(state.get("type", ""))
        if not typ.startswith("kubernetes:") or typ.startswith(_NOT_OBJECTS) or is_patch(typ) != patches:
            continue
        inputs = dict(state.get("inputs", {}))
        head = {key: inputs.pop(key) for key in ("apiVersion", "kind", "metadata") if key in inputs}
        obj = {**head, **inputs}
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "_cluster"
        where = f"{_project(state)}/patches/{namespace}" if patches else f"{_project(state)}/{namespace}"
        suffix = ".yaml.patch" if patches else ".yaml"
        yield f"{where}/{obj.get('kind', 'Object')}-{meta.get('name', 'unnamed')}{suffix}", obj


def helm_releases(digest: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """(file name, release) for every Helm release: chart, version and the values it is given."""
    for state in new_states(digest):
        if str(state.get("type", "")).startswith("kubernetes:helm.sh/"):
            inputs = state.get("inputs", {})
            name = f"{_project(state)}/helm/{inputs.get('namespace', '_')}-{inputs.get('name', 'release')}.yaml"
            yield name, {key: inputs.get(key) for key in ("chart", "version", "namespace", "name", "values")}


def write_manifests(digest: Mapping[str, Any], directory: Path) -> int:
    """Write every Kubernetes object (and each Helm release's chart, version and values) as YAML."""
    count = 0
    for relative, obj in [
        *kubernetes_objects(digest),
        *kubernetes_objects(digest, patches=True),
        *helm_releases(digest),
    ]:
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
        count += 1
    return count
