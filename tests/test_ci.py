"""GitHub Actions' identities (infra/ci.py), held to how GitHub names a job's token, to AWS's action tables, to the
data sources the programs call, and to the workflows that assume them.

GitHub's subject rules are ported from github/docs at 2bd66de8cea336061c9ea060c9b37385136e6ab3,
content/actions/reference/security/oidc.md ("Example subject claims", "Immutable subject claims"), with its
examples as the port's test table.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from conftest import ENVS, Plan, plan_all, stack_raw
from iam_lint import privilege
from workflows import WORKFLOWS, load

from modelyard.config import FULL_KEY
from modelyard.infra.ci import (
    AUDIENCE,
    GITHUB_OIDC_HOST,
    OBSERVER_GROUP,
    PREVIEW_READS,
    canary_environment,
    deploy_role_name,
    observer_role_name,
    preview_role_name,
    repository_url,
    runner_project_name,
)
from modelyard.plan.mocks import OFFLINE_ACCOUNT_ID
from modelyard.platform.monitoring import prometheus_pods

ROLE = "aws:iam/role:Role"


def github_subject(repository: str, *, event: str, environment: str | None = None, ref: str = "") -> str:
    """The `sub` GitHub gives a job: its environment when it names one (a `:` in the name written `%3A`), else
    `pull_request` for a job a pull request triggered, else the ref it runs on."""
    if environment is not None:
        return f"repo:{repository}:environment:{environment.replace(':', '%3A')}"
    if event == "pull_request":
        return f"repo:{repository}:pull_request"
    return f"repo:{repository}:ref:{ref}"


@pytest.mark.parametrize(
    ("job", "documented"),
    [
        ({"event": "push", "environment": "Production"}, "repo:octo-org/octo-repo:environment:Production"),
        ({"event": "pull_request"}, "repo:octo-org/octo-repo:pull_request"),
        ({"event": "push", "ref": "refs/heads/demo-branch"}, "repo:octo-org/octo-repo:ref:refs/heads/demo-branch"),
        ({"event": "push", "ref": "refs/tags/demo-tag"}, "repo:octo-org/octo-repo:ref:refs/tags/demo-tag"),
        ({"event": "push", "environment": "Production:V1"}, "repo:octo-org/octo-repo:environment:Production%3AV1"),
        # The environment wins over the event: a pull request's job that names one gets the environment's subject.
        ({"event": "pull_request", "environment": "Production"}, "repo:octo-org/octo-repo:environment:Production"),
    ],
)
def test_the_port_gives_githubs_documented_subjects(job: dict[str, str], documented: str) -> None:
    assert github_subject("octo-org/octo-repo", **job) == documented


def test_the_immutable_subject_is_what_the_config_takes() -> None:
    documented = "repo:octo-org@123456/octo-repo@456789:ref:refs/heads/main"
    assert github_subject("octo-org@123456/octo-repo@456789", event="push", ref="refs/heads/main") == documented
    assert repository_url("octo-org@123456/octo-repo@456789") == "https://github.com/octo-org/octo-repo"


def admits(trust: dict[str, Any], sub: str, aud: str = AUDIENCE) -> bool:
    """Whether IAM lets a GitHub token of `sub` and `aud` assume a role with this trust: an Allow statement for
    sts:AssumeRoleWithWebIdentity from GitHub's provider whose every condition holds (StringEquals: the key's value
    is one of those listed). Any other operator fails the test: the port does not read it."""
    for st in trust["Statement"]:
        federated = str(st.get("Principal", {}).get("Federated", ""))
        if st["Effect"] != "Allow" or not federated.endswith(f"oidc-provider/{GITHUB_OIDC_HOST}"):
            continue
        assert st["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert set(st["Condition"]) == {"StringEquals"}, st["Condition"]
        claims = {f"{GITHUB_OIDC_HOST}:sub": sub, f"{GITHUB_OIDC_HOST}:aud": aud}
        if all(
            claims.get(k) in (v if isinstance(v, list) else [v]) for k, v in st["Condition"]["StringEquals"].items()
        ):
            return True
    return False


def trust_of(plan: Plan, role_name: str) -> dict[str, Any]:
    [role] = [r for r in plan.of_type(ROLE) if r["inputs"].get("name") == role_name]
    return dict(json.loads(role["inputs"]["assumeRolePolicy"]))


@pytest.mark.parametrize("env", ENVS)
def test_each_role_admits_its_own_job_and_no_other(plans: dict[str, Plan], env: str) -> None:
    repository = stack_raw(env)[FULL_KEY]["ci"]["repository"]
    jobs = {
        "a pull request's preview": github_subject(repository, event="pull_request"),
        "the deployment": github_subject(repository, event="push", environment=env),
        "the canary verdicts": github_subject(repository, event="schedule", environment=canary_environment(env)),
        "a push to main": github_subject(repository, event="push", ref="refs/heads/main"),
        "another environment's deployment": github_subject(repository, event="push", environment="sandbox"),
        "a fork's copy": github_subject("someone/modelyard", event="pull_request"),
    }
    roles = {
        preview_role_name(env): "a pull request's preview",
        deploy_role_name(env): "the deployment",
        observer_role_name(env): "the canary verdicts",
    }
    for role_name, own in roles.items():
        trust = trust_of(plans[env], role_name)
        assert [job for job, sub in jobs.items() if admits(trust, sub)] == [own], role_name
        # Only the audience aws-actions/configure-aws-credentials asks for.
        assert not admits(trust, jobs[own], aud=f"https://github.com/{repository.split('/')[0]}")


def _statements(plan: Plan, token: str, role_name: str) -> list[dict[str, Any]]:
    role = next(r for r in plan.of_type(ROLE) if r["inputs"].get("name") == role_name)
    found = [
        st
        for p in plan.of_type(token)
        if p["inputs"].get("role") == role["inputs"]["name"]
        for st in json.loads(p["inputs"]["policy"])["Statement"]
    ]
    return found


@pytest.mark.parametrize("env", ENVS)
def test_the_preview_role_reads_exactly_what_both_programs_previews_call(env: str) -> None:
    """A real preview calls the programs' data sources at AWS (a resource's diff reads the state); the offline plan
    records each one the programs call, and the preview role must allow what they need and nothing more."""
    plan = plan_all(env)
    called = {s for p in plan.digest["modelyard"]["projects"] for s in p["dataSources"]}
    assert called and called <= set(PREVIEW_READS), f"a data source with no entry in PREVIEW_READS: {called}"
    needed = sorted({a for token in called for a in PREVIEW_READS[token]})
    statements = _statements(plan, "aws:iam/rolePolicy:RolePolicy", preview_role_name(env))
    assert sorted(a for st in statements for a in st["Action"]) == needed
    for st in statements:
        for action in st["Action"]:
            table = privilege(action)
            assert table is not None and table["access_level"] in ("List", "Read"), action
            # "*" only for an action AWS's table gives no resource type; the rest on the one key they read.
            scoped = [r["resource_type"] for r in table["resource_types"]] != [""]
            assert (st["Resource"] != "*") is scoped, (action, st["Resource"])
            if scoped:
                assert st["Resource"].startswith(f"arn:aws:kms:{_region(env)}:{OFFLINE_ACCOUNT_ID}:key/")
    store_key = next(k for k in plan.of_type("aws:kms/key:Key") if k["inputs"].get("keyUsage") == "SIGN_VERIFY")
    policy = next(p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy") if p["urn"].endswith("::ci-preview-reads"))
    assert store_key["urn"] in policy["propertyDependencies"]["policy"]
    role = next(r for r in plan.of_type(ROLE) if r["inputs"].get("name") == preview_role_name(env))
    attached = [
        a
        for a in plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a["inputs"]["role"] == role["inputs"]["name"]
    ]
    assert attached == []


def test_the_observer_may_port_forward_to_prometheus_and_do_nothing_else(plans: dict[str, Plan]) -> None:
    for env, plan in plans.items():
        replicas = stack_raw(env)[FULL_KEY]["monitoring"].get("prometheus_replicas", 1)
        [entry] = [e for e in plan.of_type("aws:eks/accessEntry:AccessEntry") if e["inputs"].get("kubernetesGroups")]
        assert entry["inputs"]["kubernetesGroups"] == [OBSERVER_GROUP]
        assert not [
            a
            for a in plan.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
            if a["inputs"]["principalArn"] == entry["inputs"]["principalArn"]
        ]
        [statement] = _statements(plan, "aws:iam/rolePolicy:RolePolicy", observer_role_name(env))
        assert statement["Action"] == "eks:DescribeCluster"
        cluster = plan.one("aws:eks/cluster:Cluster")
        assert statement["Resource"] == f"arn:aws:eks:{_region(env)}:{OFFLINE_ACCOUNT_ID}:cluster/modelyard-{env}"
        assert (
            cluster["urn"]
            in next(p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy") if "observer" in p["urn"])[
                "propertyDependencies"
            ]["policy"]
        )
        [role] = plan.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
        [binding] = plan.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
        pods = prometheus_pods(replicas)
        assert role["inputs"]["rules"] == [
            {"apiGroups": [""], "resources": ["pods"], "resourceNames": pods, "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods/portforward"], "resourceNames": pods, "verbs": ["create"]},
        ]
        assert binding["inputs"]["subjects"] == [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": OBSERVER_GROUP}
        ]
        assert binding["inputs"]["roleRef"]["name"] == role["inputs"]["metadata"]["name"]
    # The workflow forwards to those pods, by name, the most replicas any stack runs.
    most = max(stack_raw(env)[FULL_KEY]["monitoring"].get("prometheus_replicas", 1) for env in ENVS)
    text = (WORKFLOWS / "canary-verdict.yml").read_text()
    assert re.search(r"for pod in ([^;]+);", text).group(1).split() == prometheus_pods(most)  # type: ignore[union-attr]


def test_prods_runner_reaches_the_private_endpoint_and_nothing_more(plans: dict[str, Plan]) -> None:
    for env in ("dev", "staging"):
        assert plans[env].of_type("aws:codebuild/project:Project") == []
    plan = plans["prod"]
    project = plan.one("aws:codebuild/project:Project")["inputs"]
    assert project["name"] == runner_project_name("prod")
    assert project["environment"]["privilegedMode"] is False
    assert project["source"]["location"] == repository_url(stack_raw("prod")[FULL_KEY]["ci"]["repository"])
    cluster = plan.one("aws:eks/cluster:Cluster")
    subnets = cluster["inputs"]["vpcConfig"]["subnetIds"]
    assert sorted(project["vpcConfig"]["subnets"]) == sorted(subnets)
    hook = plan.one("aws:codebuild/webhook:Webhook")["inputs"]
    assert hook["filterGroups"] == [{"filters": [{"type": "EVENT", "pattern": "WORKFLOW_JOB_QUEUED"}]}]
    [ingress] = plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    # The cluster's own security group (EKS makes it for the endpoint's interfaces): read from the cluster.
    assert ingress["propertyDependencies"]["securityGroupId"] == [cluster["urn"]]
    assert (ingress["inputs"]["fromPort"], ingress["inputs"]["toPort"]) == (443, 443)
    assert ingress["inputs"]["referencedSecurityGroupId"] in project["vpcConfig"]["securityGroupIds"]
    statements = _statements(plan, "aws:iam/rolePolicy:RolePolicy", project["serviceRole"].rsplit("/", 1)[1])
    assert [s["Sid"] for s in statements] == ["OwnLogs", "BuildNetworkInterfaces", "InterfacesInThePrivateSubnetsOnly"]
    assert statements[0]["Resource"].endswith(f":log-group:/aws/codebuild/{runner_project_name('prod')}:log-stream:*")
    bound = statements[2]["Condition"]["ArnEquals"]["ec2:Subnet"]
    assert sorted(a.rsplit("/", 1)[1] for a in bound) == sorted(subnets)


def _region(env: str) -> str:
    return str(stack_raw(env)[FULL_KEY]["region"])


def _roles_in(text: str) -> list[str]:
    return [line.strip() for line in re.findall(r"role-to-assume: (.+)", text)]


def test_the_workflows_assume_the_roles_the_stack_makes_with_no_long_lived_secret() -> None:
    texts = {p.name: p.read_text() for p in WORKFLOWS.glob("*.yml")}
    for name, text in texts.items():
        for secret in ("AWS_ROLE_ARN", "PULUMI_ACCESS_TOKEN", "OBSERVER_ROLE_ARN", "self-hosted"):
            assert secret not in text, (name, secret)
    account = "arn:aws:iam::${{ secrets.AWS_ACCOUNT_ID }}:role/"
    for env in ENVS:
        # The preview names each environment's account (AWS_ACCOUNTS, or the one AWS_ACCOUNT_ID): no environment's
        # secrets reach a pull request's job.
        [preview] = _roles_in(texts["pull-request.yml"])
        preview_account = "arn:aws:iam::${{ steps.aws.outputs.account }}:role/"
        assert preview.replace("${{ matrix.env }}", env) == preview_account + preview_role_name(env)
        [deploy] = _roles_in(texts["pulumi-up.yml"])
        assert deploy.replace("${{ inputs.environment }}", env) == account + deploy_role_name(env)
        [observer] = _roles_in(texts["canary-verdict.yml"])
        assert observer.replace("${{ matrix.env }}", env) == account + observer_role_name(env)
    # Each job's environment gives its token the subject its role trusts.
    preview_job = load(WORKFLOWS / "pull-request.yml")["jobs"]["preview"]
    assert "environment" not in preview_job and load(WORKFLOWS / "pull-request.yml")["on"] == {
        "pull_request": {"branches": ["main"]}
    }
    assert load(WORKFLOWS / "pulumi-up.yml")["jobs"]["up"]["environment"] == "${{ inputs.environment }}"
    decide = load(WORKFLOWS / "canary-verdict.yml")["jobs"]["decide"]
    assert decide["environment"].replace("${{ matrix.env }}", "prod") == canary_environment("prod")
    # Pulumi Cloud tokens from the same OIDC token: the preview's team, the deployment's team.
    for name, team in (("pull-request.yml", "preview"), ("pulumi-up.yml", "deploy")):
        steps = [s for job in load(WORKFLOWS / name)["jobs"].values() for s in job.get("steps", [])]
        [auth] = [s for s in steps if str(s.get("uses", "")).startswith("pulumi/auth-actions@")]
        assert auth["with"]["requested-token-type"] == "urn:pulumi:token-type:access_token:team"
        assert auth["with"]["scope"].startswith("team:modelyard-") and auth["with"]["scope"].endswith(f"-{team}")


def test_jobs_that_reach_the_cluster_run_where_each_stack_says() -> None:
    label = "codebuild-modelyard-{0}-runner-{1}-{2}"
    assert label.format("prod", "", "").startswith(f"codebuild-{runner_project_name('prod')}-")
    for name in ("deploy-platform.yml", "deploy-workloads.yml"):
        for env, job in load(WORKFLOWS / name)["jobs"].items():
            assert job["with"]["runner"] == stack_raw(env)[FULL_KEY]["ci"].get("runner", "github-hosted"), (name, env)
    assert label in load(WORKFLOWS / "pulumi-up.yml")["jobs"]["up"]["runs-on"]
    decide = load(WORKFLOWS / "canary-verdict.yml")["jobs"]["decide"]
    assert label in decide["runs-on"]
    for row in decide["strategy"]["matrix"]["include"]:
        assert row["runner"] == stack_raw(row["env"])[FULL_KEY]["ci"].get("runner", "github-hosted"), row
    # Every stack file says where its jobs run; yaml keeps the stack files' own words.
    assert all(
        "ci" in yaml.safe_load((WORKFLOWS.parent.parent / f"Pulumi.{env}.yaml").read_text())["config"][FULL_KEY]
        for env in ENVS
    )
