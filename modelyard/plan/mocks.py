"""What the offline plan answers in place of AWS: computed attributes and invoke results.

Values are realistic in shape (ARNs, IDs, endpoints, an OIDC issuer) and deterministic: the same
program and config give the same plan, byte for byte. The account is a fixed placeholder,
`OFFLINE_ACCOUNT_ID`; nothing here talks to a cloud.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import pulumi

OFFLINE_ACCOUNT_ID = "123456789012"
#: A P-256 public key made once from random bytes for the offline plan; its private half was never kept.
OFFLINE_SIGNING_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENmJO6oeywJuA4BTC6Fs0gLKfBOXc6mBlOgX3knZY7FtlOcRdtjUm52BXaaLyvpx/"
    "2is1yJpTAETNNT9dzKwWlQ=="
)


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


#: How a secret value appears in a plan (the engine masks secrets the same way).
SECRET_MASK = "[secret]"


class UnknownInvokeError(RuntimeError):
    """The program called a data source the offline plan has no answer for."""


def _session_context(args: dict[str, Any]) -> dict[str, Any]:
    """The AWS provider's aws_iam_session_context as terraform-provider-aws reads an ARN (RoleNameSessionFromARN:
    an STS ARN whose resource matches `^assumed-role/.{1,}/.{2,}` names the role and the session in its last two
    parts, and the data source then looks the role up by name): for an assumed role's session the role's ARN
    (without a path: the offline plan has no IAM to look it up in) and the session's name; for any other ARN (a
    user, a role) the ARN itself as issuer, and no session."""
    arn = str(args.get("arn", ""))
    found = re.match(r"^arn:([^:]+):sts::(\d{12}):(assumed-role/.{1,}/.{2,})$", arn)
    if found is None:
        return {"arn": arn, "issuerArn": arn, "issuerId": "", "issuerName": "", "sessionName": "", "id": arn}
    partition, account, resource = found.groups()
    role, session = resource.split("/")[-2:]
    return {
        "arn": arn,
        "issuerArn": f"arn:{partition}:iam::{account}:role/{role}",
        "issuerId": "AROAOFFLINEPLAN",
        "issuerName": role,
        "sessionName": session,
        "id": arn,
    }


class PlanMocks(pulumi.runtime.Mocks):
    """Answers resource registrations and invokes for one stack in one region."""

    def __init__(
        self,
        *,
        region: str,
        account_id: str = OFFLINE_ACCOUNT_ID,
        stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        #: Outputs of other stacks, by stack name, for StackReferences (another project's offline plan).
        self.stack_outputs = dict(stack_outputs or {})
        self.region = region
        self.account_id = account_id
        self.partition = "aws-us-gov" if region.startswith("us-gov-") else "aws"
        #: The region of each AWS provider registered with one other than the stack's, by provider id: what a
        #: resource of that provider (a replica in another region) gets in its ARNs and endpoints.
        self._provider_regions: dict[str, str] = {}
        #: Every data source the program called, by token (what a real preview asks AWS: tests/test_ci.py).
        self.invoked: set[str] = set()
        self._invokes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": self._azs,
            "aws:index/getCallerIdentity:getCallerIdentity": lambda _: {
                "accountId": account_id,
                "arn": f"arn:{self.partition}:iam::{account_id}:user/offline-plan",
                "userId": "AIDAOFFLINEPLAN",
                "id": account_id,
            },
            "aws:iam/getSessionContext:getSessionContext": _session_context,
            "aws:kms/getPublicKey:getPublicKey": lambda a: {
                "keyId": a.get("keyId", ""),
                "id": a.get("keyId", ""),
                "arn": a.get("keyId", ""),
                # A P-256 public key (DER, base64), as KMS answers for an ECC_NIST_P256 signing key.
                "publicKey": OFFLINE_SIGNING_PUBLIC_KEY,
                "customerMasterKeySpec": "ECC_NIST_P256",
                "keyUsage": "SIGN_VERIFY",
                "signingAlgorithms": ["ECDSA_SHA_256"],
            },
            "aws:index/getPartition:getPartition": lambda _: {
                "partition": self.partition,
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
                "id": self.partition,
            },
        }

    # -- invokes ---------------------------------------------------------------------------------

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        answer = self._invokes.get(args.token)
        self.invoked.add(args.token)
        if answer is None:
            raise UnknownInvokeError(
                f"the offline plan has no answer for the data source {args.token!r}; "
                "add one to PlanMocks in modelyard/plan/mocks.py"
            )
        return answer(dict(args.args)), []

    def _azs(self, _: dict[str, Any]) -> dict[str, Any]:
        letters = "abcdef"
        return {
            "names": [f"{self.region}{c}" for c in letters],
            "zoneIds": [f"use1-az{i + 1}" for i in range(len(letters))],
            "state": "available",
            "id": self.region,
        }

    # -- resources -------------------------------------------------------------------------------

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        typ, name = args.typ, args.name
        state = dict(args.inputs)
        seed = f"{typ}::{name}"
        if typ.startswith("pulumi:providers:"):
            rid = _uuid(seed)
            if typ == "pulumi:providers:aws" and isinstance(state.get("region"), str):
                self._provider_regions[rid] = state["region"]
            return rid, state
        if typ == "pulumi:pulumi:StackReference":
            return self._stack_reference(state)
        if typ.startswith("kubernetes:"):
            return self._k8s_id(state, name), state
        computed = _COMPUTED.get(typ)
        if computed is not None:
            rid, extra = computed(self, name, state, seed)
        else:
            rid = f"{name}-{_hex(seed, 8)}"
            extra = {"arn": self._arn(typ, rid)}
        region = self._provider_regions.get(str(args.provider or "").rsplit("::", 1)[-1], self.region)
        if region != self.region:
            extra = {k: self._in_region(v, region) for k, v in extra.items()}
        return rid, {**extra, **state} if computed is None else {**state, **extra}

    def _in_region(self, value: Any, region: str) -> Any:
        """`value` (an ARN or endpoint made for the stack's region) as a resource of `region` has it."""
        if not isinstance(value, str):
            return value
        return value.replace(f":{self.region}:", f":{region}:").replace(f".{self.region}.", f".{region}.")

    def _stack_reference(self, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = str(state.get("name", ""))
        outputs = self.stack_outputs.get(name)
        if outputs is None:
            known = ", ".join(sorted(self.stack_outputs)) or "none"
            raise UnknownInvokeError(
                f"the offline plan has no outputs for the stack reference {name!r} (planned stacks: {known})"
            )
        secrets = sorted(k for k, v in outputs.items() if v == SECRET_MASK)
        return name, {"name": name, "outputs": dict(outputs), "secretOutputNames": secrets}

    @staticmethod
    def _k8s_id(state: dict[str, Any], name: str) -> str:
        meta = state.get("metadata") or {}
        ns, obj = meta.get("namespace"), meta.get("name") or state.get("name") or name
        return f"{ns}/{obj}" if ns else str(obj)

    def _arn(self, typ: str, rid: str) -> str:
        service = typ.split(":")[1].split("/")[0]
        return f"arn:{self.partition}:{service}:{self.region}:{self.account_id}:{rid}"

    def _named(self, name: str, state: dict[str, Any], seed: str, key: str = "name") -> str:
        """Pulumi auto-names resources with a random suffix; the offline plan uses a stable one."""
        return str(state.get(key) or f"{name}-{_hex(seed, 7)}")

    def _role(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        role = self._named(name, state, seed)
        return role, {
            "name": role,
            "arn": f"arn:{self.partition}:iam::{self.account_id}:role/{role}",
            "uniqueId": f"AROA{_hex(seed, 16).upper()}",
        }

    def _key(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        key_id = _uuid(seed)
        return key_id, {
            "keyId": key_id,
            "arn": f"arn:{self.partition}:kms:{self.region}:{self.account_id}:key/{key_id}",
        }

    def _bucket(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        bucket = self._named(name, state, seed, "bucket")
        return bucket, {
            "bucket": bucket,
            "arn": f"arn:{self.partition}:s3:::{bucket}",
            "bucketRegionalDomainName": f"{bucket}.s3.{self.region}.amazonaws.com",
        }

    def _cluster(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        cluster = self._named(name, state, seed)
        oidc = _hex(seed, 32).upper()
        ca = base64.b64encode(f"offline-plan-ca-{cluster}".encode()).decode()
        return cluster, {
            "name": cluster,
            "arn": f"arn:{self.partition}:eks:{self.region}:{self.account_id}:cluster/{cluster}",
            "endpoint": f"https://{oidc}.gr7.{self.region}.eks.amazonaws.com",
            "certificateAuthority": {"data": ca},
            "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{self.region}.amazonaws.com/id/{oidc}"}]}],
            "status": "ACTIVE",
            "vpcConfig": {**(state.get("vpcConfig") or {}), "clusterSecurityGroupId": f"sg-0{_hex(seed + 'sg', 16)}"},
        }

    def _oidc(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        host = str(state.get("url", "")).removeprefix("https://")
        arn = f"arn:{self.partition}:iam::{self.account_id}:oidc-provider/{host}"
        return arn, {"arn": arn}

    def _log_group(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        group = self._named(name, state, seed)
        return group, {
            "name": group,
            "arn": f"arn:{self.partition}:logs:{self.region}:{self.account_id}:log-group:{group}",
        }

    def _queue(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        queue = self._named(name, state, seed)
        url = f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{queue}"
        return url, {
            "name": queue,
            "url": url,
            "arn": f"arn:{self.partition}:sqs:{self.region}:{self.account_id}:{queue}",
        }

    def _topic(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        topic = self._named(name, state, seed)
        arn = f"arn:{self.partition}:sns:{self.region}:{self.account_id}:{topic}"
        return arn, {"name": topic, "arn": arn}

    def _rule(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        rule = self._named(name, state, seed)
        return rule, {"name": rule, "arn": f"arn:{self.partition}:events:{self.region}:{self.account_id}:rule/{rule}"}

    def _repository(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        repo = self._named(name, state, seed)
        return repo, {
            "name": repo,
            "arn": f"arn:{self.partition}:ecr:{self.region}:{self.account_id}:repository/{repo}",
            "repositoryUrl": f"{self.account_id}.dkr.ecr.{self.region}.amazonaws.com/{repo}",
            "registryId": self.account_id,
        }

    def _node_group(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        group = self._named(name, state, seed, "nodeGroupName")
        cluster = state.get("clusterName")
        arn = f"arn:{self.partition}:eks:{self.region}:{self.account_id}:nodegroup/{cluster}/{group}"
        return f"{cluster}:{group}", {"nodeGroupName": group, "arn": arn}

    def _launch_template(self, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        lt = f"lt-0{_hex(seed, 16)}"
        return lt, {
            "latestVersion": 1,
            "defaultVersion": 1,
            "arn": f"arn:{self.partition}:ec2:{self.region}:{self.account_id}:launch-template/{lt}",
        }


def _uuid(seed: str) -> str:
    h = _hex(seed, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ec2(prefix: str) -> Callable[[PlanMocks, str, dict[str, Any], str], tuple[str, dict[str, Any]]]:
    def computed(m: PlanMocks, name: str, state: dict[str, Any], seed: str) -> tuple[str, dict[str, Any]]:
        rid = f"{prefix}-0{_hex(seed, 16)}"
        kind = {
            "vpc": "vpc",
            "subnet": "subnet",
            "sg": "security-group",
            "igw": "internet-gateway",
            "eipalloc": "elastic-ip",
            "nat": "natgateway",
            "rtb": "route-table",
            "vpce": "vpc-endpoint",
            "fl": "vpc-flow-log",
        }[prefix]
        return rid, {"arn": f"arn:{m.partition}:ec2:{m.region}:{m.account_id}:{kind}/{rid}"}

    return computed


_COMPUTED: dict[str, Callable[[PlanMocks, str, dict[str, Any], str], tuple[str, dict[str, Any]]]] = {
    "aws:ec2/vpc:Vpc": _ec2("vpc"),
    "aws:ec2/subnet:Subnet": _ec2("subnet"),
    "aws:ec2/securityGroup:SecurityGroup": _ec2("sg"),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": _ec2("sg"),
    "aws:ec2/internetGateway:InternetGateway": _ec2("igw"),
    "aws:ec2/eip:Eip": _ec2("eipalloc"),
    "aws:ec2/natGateway:NatGateway": _ec2("nat"),
    "aws:ec2/routeTable:RouteTable": _ec2("rtb"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": _ec2("vpce"),
    "aws:ec2/flowLog:FlowLog": _ec2("fl"),
    "aws:ec2/launchTemplate:LaunchTemplate": PlanMocks._launch_template,
    "aws:iam/role:Role": PlanMocks._role,
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": PlanMocks._oidc,
    "aws:kms/key:Key": PlanMocks._key,
    "aws:s3/bucket:Bucket": PlanMocks._bucket,
    "aws:eks/cluster:Cluster": PlanMocks._cluster,
    "aws:eks/nodeGroup:NodeGroup": PlanMocks._node_group,
    "aws:cloudwatch/logGroup:LogGroup": PlanMocks._log_group,
    "aws:cloudwatch/eventRule:EventRule": PlanMocks._rule,
    "aws:sqs/queue:Queue": PlanMocks._queue,
    "aws:sns/topic:Topic": PlanMocks._topic,
    "aws:ecr/repository:Repository": PlanMocks._repository,
}
