"""The modelyard CrossGuard pack: `pulumi preview --policy-pack policies --policy-pack-config
policies/config/<env>.json`. The rules live in governance/ (tested there, never here: PolicyPack
starts a gRPC server and does not return)."""

from governance.crossguard import policies  # type: ignore[import-not-found]
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="modelyard",
    description="Governance and budgets for the modelyard platform: tags, encryption, IAM scope, EKS, "
    "GPU capacity, pod security, KServe, Helm pins, budgets.",
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=policies(),
)
