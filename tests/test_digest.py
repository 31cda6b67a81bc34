"""The PreviewDigest: shape, determinism and masking (files are read by modelyard.plan.preview)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Plan, plan_raw, stack_raw

from modelyard.plan import digest, preview
from modelyard.plan.engine import SECRET_MASK, UNKNOWN, plain


def test_offline_plans_validate_against_the_schema(plans: dict[str, Plan]) -> None:
    for plan in plans.values():
        assert digest.schema_errors(plan.digest) == []
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
    assert digest.schema_errors(preview) == []
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


def test_round_trip_through_the_preview_reader(tmp_path: Path, plans: dict[str, Plan]) -> None:
    path = tmp_path / "dev.json"
    path.write_text(digest.dumps(plans["dev"].digest))
    read = preview.read(path)
    assert read.document == json.loads(digest.dumps(plans["dev"].digest))
    assert (read.offline, read.omitted_sames, read.errors, read.region, read.env) == (True, 0, (), "us-east-1", "dev")
