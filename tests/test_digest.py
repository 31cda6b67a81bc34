"""The PreviewDigest: shape, determinism, masking, and clear errors for files that are not one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Plan, plan_raw, stack_raw

from modelyard.plan import digest
from modelyard.plan.engine import SECRET_MASK, UNKNOWN, plain


def test_offline_plans_validate_against_the_schema(plans: dict[str, Plan]) -> None:
    for plan in plans.values():
        digest.validate(plan.digest)
        assert plan.digest["changeSummary"] == {"create": len(plan.digest["steps"])}


def test_a_real_preview_shape_validates() -> None:
    """What `pulumi preview --json` prints: no `modelyard` key, updates with oldState, deletes without newState."""
    preview = {
        "steps": [
            {
                "op": "update",
                "urn": "urn:pulumi:dev::p::aws:s3/bucket:Bucket::b",
                "oldState": {"type": "aws:s3/bucket:Bucket", "inputs": {}},
                "newState": {"type": "aws:s3/bucket:Bucket", "inputs": {"bucket": UNKNOWN}},
                "diffReasons": ["bucket"],
            },
            {"op": "delete", "urn": "urn:pulumi:dev::p::aws:kms/key:Key::k", "oldState": {"type": "aws:kms/key:Key"}},
        ],
        "changeSummary": {"update": 1, "delete": 1},
    }
    digest.validate(preview)
    assert [s["type"] for s in digest.new_states(preview)] == ["aws:s3/bucket:Bucket"]


def test_same_config_same_bytes() -> None:
    first = digest.dumps(plan_raw("staging", stack_raw("staging")).digest)
    second = digest.dumps(plan_raw("staging", stack_raw("staging")).digest)
    assert first == second


def test_dependencies_and_parents_are_recorded(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    subnet = plan.named("aws:ec2/subnet:Subnet", "network-private-0")
    vpc = plan.one("aws:ec2/vpc:Vpc")
    assert subnet["propertyDependencies"]["vpcId"] == [vpc["urn"]]
    assert vpc["urn"] in subnet["dependencies"]
    assert subnet["parent"] == "urn:pulumi:dev::modelyard-platform::modelyard:infra:Network::network"
    assert subnet["urn"] == (
        "urn:pulumi:dev::modelyard-platform::modelyard:infra:Network$aws:ec2/subnet:Subnet::network-private-0"
    )


def test_plain_masks_secrets_and_keeps_unknowns() -> None:
    wire = {
        "a": {digest_sig(): "1b47061264138c4ac30d75fd1eb44270", "value": "hunter2"},
        "b": UNKNOWN,
        "c": [1.0, 2.5],
        "d": {digest_sig(): "5cf8f73096256a8f31e491e813e4eb8e", "urn": "urn:x", "id": "i"},
    }
    assert plain(wire) == {"a": SECRET_MASK, "b": UNKNOWN, "c": [1, 2.5], "d": "urn:x"}


def digest_sig() -> str:
    from modelyard.plan.engine import SIG_KEY

    return SIG_KEY


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON: Expecting property name enclosed in double quotes at line 1, column 2"),
        ("[]", "not a PreviewDigest: at (top level): [] is not of type 'object'"),
        (
            '{"steps": [{"op": "explode", "urn": "urn:pulumi:a::b::c:d:e::f"}]}',
            "at .steps[0].op: 'explode' is not one of",
        ),
        ('{"steps": [{"op": "create"}]}', "at .steps[0]: 'urn' is a required property"),
        ('{"steps": [{"op": "create", "urn": "x"}]}', "at .steps[0].urn: 'x' does not match"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "preview.json"
    path.write_text(content)
    with pytest.raises(digest.DigestError) as caught:
        digest.load(path)
    assert str(caught.value).startswith(str(path)), caught.value
    assert message in str(caught.value), caught.value


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(digest.DigestError, match="no such file"):
        digest.load(tmp_path / "nope.json")


def test_round_trip(tmp_path: Path, plans: dict[str, Plan]) -> None:
    path = tmp_path / "dev.json"
    path.write_text(digest.dumps(plans["dev"].digest))
    assert digest.load(path) == json.loads(digest.dumps(plans["dev"].digest))
