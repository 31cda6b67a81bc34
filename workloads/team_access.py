"""Each team's view of the model namespace: the IAM roles the workloads stack file names for a team
(`team_access: {<team>: [role ARNs]}`) get an EKS access entry into the Kubernetes group `modelyard:team:<team>`,
and each team's group a RoleBinding, in the model namespace only, to one read-only Role.

What a team changes, it changes through the catalog: a reviewed pull request that the plan, its cost and its policy
verdict come with. In the cluster it reads: its InferenceServices and their pods, logs, events, autoscalers and
disruption budgets, and the routes and policies in front of them. Kubernetes cannot narrow `list` and `watch` to
some names (resourceNames restricts only requests for one named object), so every team reads the whole model
namespace; none writes anything, reads a Secret, or reaches another namespace. Restarts and other operations stay
with the platform's on-call (the cluster-admin entries of the platform stack) and `modelyard ops`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

#: The Kubernetes group a team's roles map to (EKS access entries' kubernetes_groups).
TEAM_GROUP_PREFIX = "modelyard:team:"
VIEWER_ROLE = "modelyard-model-viewer"
READ = ["get", "list", "watch"]
#: What a team reads in the model namespace, by API group: everything about its models but Secrets.
VIEW_RULES: Any = [
    {
        "api_groups": [""],
        "resources": ["pods", "pods/log", "events", "services", "endpoints", "configmaps", "serviceaccounts"],
        "verbs": READ,
    },
    {"api_groups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": READ},
    {"api_groups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": READ},
    {"api_groups": ["keda.sh"], "resources": ["scaledobjects"], "verbs": READ},
    {"api_groups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": READ},
    {"api_groups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": READ},
    {"api_groups": ["monitoring.coreos.com"], "resources": ["podmonitors"], "verbs": READ},
    {"api_groups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": READ},
    {
        "api_groups": ["gateway.envoyproxy.io"],
        "resources": ["securitypolicies", "backendtrafficpolicies", "backends"],
        "verbs": READ,
    },
]


def team_group(team: str) -> str:
    return f"{TEAM_GROUP_PREFIX}{team}"


@dataclass(frozen=True, kw_only=True)
class TeamAccessArgs:
    #: Each team's IAM roles (the workloads stack file's `team_access`).
    teams: Mapping[str, Sequence[str]]
    cluster_name: pulumi.Input[str]
    namespace: pulumi.Input[str]
    labels: Mapping[str, str]


class TeamAccess(pulumi.ComponentResource):
    """The viewer Role in the model namespace, a RoleBinding per team, and an access entry per team role."""

    def __init__(self, name: str, args: TeamAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelyard:workloads:TeamAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = dict(args.labels)
        role_meta: Any = {"name": VIEWER_ROLE, "namespace": args.namespace, "labels": labels}
        role = k8s.rbac.v1.Role(f"{name}-viewer", metadata=role_meta, rules=VIEW_RULES, opts=child)
        for team, arns in sorted(args.teams.items()):
            binding_meta: Any = {"name": f"modelyard-team-{team}", "namespace": args.namespace, "labels": labels}
            role_ref: Any = {"api_group": "rbac.authorization.k8s.io", "kind": "Role", "name": VIEWER_ROLE}
            subjects: Any = [{"api_group": "rbac.authorization.k8s.io", "kind": "Group", "name": team_group(team)}]
            k8s.rbac.v1.RoleBinding(
                f"{name}-{team}",
                metadata=binding_meta,
                role_ref=role_ref,
                subjects=subjects,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role]),
            )
            for i, arn in enumerate(arns):
                aws.eks.AccessEntry(
                    f"{name}-{team}-{i}",
                    cluster_name=args.cluster_name,
                    principal_arn=arn,
                    type="STANDARD",
                    kubernetes_groups=[team_group(team)],
                    opts=child,
                )
        self.register_outputs({})
