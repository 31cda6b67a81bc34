"""Previews read as Pulumi means them, through the CLI as a user's CI runs it.

The previews here are shaped field for field like `pulumi preview --json` output (pulumi/pulumi
`pkg/backend/display/json.go`: previewDigest, previewStep, previewDiagnostic; the files it printed in
dundalek/stratify `test/resources/pulumi/sample-preview-{creates,update,deletes}.json` @ a201650 and
pulumi-labs/pulumi-tool-drift-adopter `cmd/pulumi-drift-adopt/testdata/*.json`): `same` steps only
with --show-sames while `changeSummary.same` always counts them, `oldState`/`newState` with `inputs`,
`detailedDiff` keyed by property path with `kind` (`update`, `add-replace`, ...), `diffReasons`,
`[secret]` for secrets, the engine's unknown sentinel, error diagnostics of a failed preview. Each case
is built from this project's own prod plan, so the expected figures are the plan's.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Plan

from modelyard.cli import main
from modelyard.plan import preview
from modelyard.policies.governance.prices import price_book
from modelyard.policies.governance.resources import SECRET, UNKNOWN

PROVIDER_TYPE = "pulumi:providers:aws"


def real_preview(plan: Plan, *, show_sames: bool, updates: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The prod plan as `pulumi preview --json` prints it for a stack that already exists: every resource
    `same` except `updates` (resource name → new inputs merged in, detailedDiff from their keys)."""
    updates = updates or {}
    steps, summary = [], {"same": 0, "update": 0}
    for state in plan.states:
        name = state["urn"].rsplit("::", 1)[-1]
        old = {**state, "id": f"{name}-id"}
        if name in updates:
            new = copy.deepcopy(state)
            new["inputs"] = {**new["inputs"], **updates[name]}
            diff = {key: {"kind": "update", "inputDiff": True} for key in updates[name]}
            steps.append(
                {
                    "op": "update",
                    "urn": state["urn"],
                    "oldState": old,
                    "newState": new,
                    "detailedDiff": diff,
                    "diffReasons": sorted(updates[name]),
                }
            )
            summary["update"] += 1
        else:
            summary["same"] += 1
            if show_sames:
                steps.append(
                    {"op": "same", "urn": state["urn"], "oldState": old, "newState": state, "detailedDiff": None}
                )
    return {
        "config": {"aws:region": "us-east-1"},
        "steps": steps,
        "duration": 10131445493,
        "changeSummary": {k: v for k, v in summary.items() if v},
    }


def write(tmp_path: Path, document: Any, name: str = "preview.json", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(json.dumps(document).encode(encoding) if encoding else document)
    return path


# -- reading the file -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_every_encoding_a_shell_writes_is_read(tmp_path: Path, plans: dict[str, Plan], encoding: str) -> None:
    """PowerShell's `>` writes UTF-16 with a byte-order mark; Windows tools add a UTF-8 one."""
    document = real_preview(plans["dev"], show_sames=True)
    assert preview.read(write(tmp_path, document, encoding=encoding)).document == document


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"steps": []}\xff', "not UTF-8 text: byte 0xff at offset 13"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"steps": [], "x": NaN}', "NaN is not JSON"),
        (
            b'{"steps": [{"op": "same", "urn": "urn:pulumi:a::b::t::n"},',
            "not JSON: Expecting value at line 1, column 59",
        ),
        (b'{"steps": [1,', "steps[0] must be an object (got 1)"),
        (b"[1, 2]", "the document must be a JSON object with `steps` (got [1, 2])"),
        (b'{"steps": {}}', "`steps` must be a list"),
        (b'{"steps": [{"op": "create", "urn": "x"}]}', "steps[0].urn must be a Pulumi URN"),
        (b'{"steps": [{"op": "explode", "urn": "urn:pulumi:a::b::c:d:e::f"}]}', "steps[0].op must be one of"),
        (
            b'{"steps": [{"op": "create", "urn": "urn:pulumi:a::b::t::n", "newState": "x"}]}',
            "steps[0].newState must be an object",
        ),
        (
            b'{"steps": [{"op": "create", "urn": "urn:pulumi:a::b::t::n", "newState": {"type": "t", "inputs": []}}]}',
            "steps[0].newState.inputs must be an object",
        ),
        (b'{"steps": [], "diagnostics": "boom"}', "`diagnostics` must be a list"),
    ],
)
def test_a_file_that_is_not_a_preview_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = write(tmp_path, content, encoding="")
    with pytest.raises(preview.PreviewError) as caught:
        preview.read(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value), caught.value


WINDOWED = [
    '{"steps": [{"op": "same", "urn": "urn:pulumi:a::b::t::n", "newState": {"type": "t", "inputs": '
    '{"n": 12345678, "f": -1.5e-3, "s": "\\u00e9t\\u00e9 \u2603 \U0001f600", "t": true, "z": null}}}], '
    '"changeSummary": {"same": 1}, "x": 1234567890}',
    '\n\n  {\n "steps" :\n [\n ] , "config": {"aws:region": "eu-west-1"}\n}\n',
    '{"steps": [], "steps": [{"urn": "urn:pulumi:a::b::t::n"}]}',
    "{}",
]
BROKEN = [
    '{"steps": [{"urn": "urn:pulumi:a::b::t::n"}\n,\n {"urn": "urn:pulumi:a::b::t::n", "x": tru}]}',
    '{"steps": [{"urn": "urn:pulumi:a::b::t::n"}]\n\n  "more": 1}',
    '{"steps": []} [1]',
    '{"steps": [{"urn": "urn:pulumi:a::b::t::n"} {"urn": "urn:pulumi:a::b::t::n"}]}',
    '{"steps" 1}',
    "{'steps': []}",
    '{"steps": [], "x": 12',
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 64])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_file_read_a_window_at_a_time_reads_as_json_loads_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, encoding: str
) -> None:
    """Values cut by a window's end (numbers, escapes, a character of several bytes) are read whole, and
    an error names the line and column json.loads names, whichever window it falls in."""
    monkeypatch.setattr(preview, "CHUNK", chunk)
    for i, text in enumerate(WINDOWED):
        path = write(tmp_path, text.encode(encoding), f"ok{i}.json", encoding="")
        with path.open("rb") as file:
            assert preview.parse(file, str(path)) == json.loads(text)
    for i, text in enumerate(BROKEN):
        path = write(tmp_path, text.encode(encoding), f"bad{i}.json", encoding="")
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            expected = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
        with path.open("rb") as file, pytest.raises(preview.PreviewError) as caught:
            preview.parse(file, str(path))
        assert str(caught.value) == f"{path}: not JSON: {expected}"


def test_an_error_quotes_a_bad_value_cut_short(tmp_path: Path) -> None:
    """A 20 MB value in the wrong place does not come back as a 20 MB message."""
    path = write(tmp_path, {"steps": [{"op": "create", "urn": "u" * 20_000_000}]})
    with pytest.raises(preview.PreviewError) as caught:
        preview.read(path)
    assert len(str(caught.value)) < 400 and "(20,000,002 characters)" in str(caught.value)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preview, "MAX_BYTES", 10)
    with pytest.raises(preview.PreviewError, match="more than the 10 a preview may have"):
        preview.read(write(tmp_path, {"steps": []}))


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_a_path_that_is_no_file_is_named(tmp_path: Path, what: str) -> None:
    path = tmp_path / "nope.json"
    if what == "directory":
        path.mkdir()
    with pytest.raises(preview.PreviewError, match="no such file" if what == "missing" else "a directory"):
        preview.read(path)


# -- whole, partial, failed --------------------------------------------------------------------------


def test_a_preview_without_its_unchanged_resources_gets_no_verdict(
    tmp_path: Path, plans: dict[str, Plan], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --show-sames a tag change on the model bucket would price only the bucket and report its
    absent companions as mandatory violations; instead both commands say what to run."""
    partial = write(
        tmp_path, real_preview(plans["prod"], show_sames=False, updates={"models-bucket": {"tags": {"a": "b"}}})
    )
    assert main(["cost", str(partial)]) == 2
    assert main(["policy", str(partial), "--env", "prod"]) == 2
    err = capsys.readouterr().err
    n = len(plans["prod"].states) - 1
    assert err.count(f"leaves out {n} unchanged resources") == 2
    assert "run `pulumi preview --json --show-sames`" in err


def test_the_same_preview_with_show_sames_is_judged_as_the_plan_is(
    tmp_path: Path, plans: dict[str, Plan], capsys: pytest.CaptureFixture[str]
) -> None:
    whole = write(
        tmp_path, real_preview(plans["prod"], show_sames=True, updates={"models-bucket": {"tags": {"a": "b"}}})
    )
    offline = write(tmp_path, plans["prod"].digest, "offline.json")
    assert main(["cost", str(whole), "--json"]) == 0
    cost_whole = json.loads(capsys.readouterr().out)
    assert main(["cost", str(offline), "--json"]) == 0
    cost_offline = json.loads(capsys.readouterr().out)
    assert (cost_whole["baseline"], cost_whole["ceiling"]) == (cost_offline["baseline"], cost_offline["ceiling"])
    assert main(["policy", str(whole), "--env", "prod", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["violations"] == []


def test_a_preview_with_no_change_summary_cannot_be_judged(
    tmp_path: Path, plans: dict[str, Plan], capsys: pytest.CaptureFixture[str]
) -> None:
    document = real_preview(plans["dev"], show_sames=True)
    del document["changeSummary"]
    assert main(["cost", str(write(tmp_path, document))]) == 2
    assert "it has no changeSummary" in capsys.readouterr().err


def test_a_failed_preview_is_reported_as_failed(
    tmp_path: Path, plans: dict[str, Plan], capsys: pytest.CaptureFixture[str]
) -> None:
    document = real_preview(plans["dev"], show_sames=True)
    document["steps"] = document["steps"][:10]
    document["diagnostics"] = [
        {
            "urn": document["steps"][3]["urn"],
            "message": "error: creating EKS Cluster: AccessDeniedException",
            "severity": "error",
        },
        {"message": "a warning", "severity": "warning"},
    ]
    path = write(tmp_path, document)
    assert main(["cost", str(path)]) == 2
    assert "the preview failed (1 error diagnostics: 'error: creating EKS Cluster: AccessDeniedException')" in (
        capsys.readouterr().err
    )
    assert main(["diff", str(path)]) == 2
    out = capsys.readouterr().out
    assert "### ❌ The preview failed (1 errors): the changes below are partial" in out
    assert "monthly cost not estimated" in out


# -- what the engine said ------------------------------------------------------------------------------


def _diff(path: Path, capsys: pytest.CaptureFixture[str], *more: str) -> dict[str, Any]:
    code = main(["diff", str(path), *more, "--json"])
    assert code == 0, capsys.readouterr().err
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_diff_reports_the_engine_s_operations_and_properties(
    tmp_path: Path, plans: dict[str, Plan], capsys: pytest.CaptureFixture[str]
) -> None:
    updates = {
        "models-bucket": {"tags": {"team": "ml"}},
        "eks-secrets-key": {"description": SECRET},
        "logs-key": {"description": "logs"},
        "registry": {"imageTagMutability": UNKNOWN},
    }
    path = write(tmp_path, real_preview(plans["prod"], show_sames=True, updates=updates))
    report = _diff(path, capsys)
    assert report["counts"] == {"create": 0, "update": 4, "replace": 0, "delete": 0}
    by_name = {c["urn"].rsplit("::", 1)[-1]: c for c in report["changes"]}
    assert set(by_name) == set(updates)
    # A secret-only update is still an update, its values masked; an unknown is known after apply.
    assert by_name["eks-secrets-key"]["properties"][0]["new"] == "[secret]"
    assert by_name["registry"]["properties"][0]["new"] == "(known after apply)"
    assert report["cost"] is not None and report["notes"] == []


def test_a_preview_diffed_against_itself_changes_nothing(
    tmp_path: Path, plans: dict[str, Plan], capsys: pytest.CaptureFixture[str]
) -> None:
    document = real_preview(plans["prod"], show_sames=True, updates={"models-bucket": {"tags": {"team": "ml"}}})
    update = next(s for s in document["steps"] if s["op"] == "update")
    update["op"] = "replace"  # what the engine said of head vs the stack, not of head vs base
    document["changeSummary"] = {**document["changeSummary"], "replace": 1}
    path = write(tmp_path, document)
    report = _diff(path, capsys, str(path))
    assert report["counts"] == {"create": 0, "update": 0, "replace": 0, "delete": 0}


def test_a_value_that_becomes_unknown_is_not_a_replacement(
    tmp_path: Path, plans: dict[str, Plan], capsys: pytest.CaptureFixture[str]
) -> None:
    """An offline prod plan against a first real preview, where the cluster's name is not known yet."""
    head = copy.deepcopy(plans["prod"].digest)
    cluster = next(s for s in head["steps"] if s["newState"]["type"] == "aws:eks/cluster:Cluster")
    cluster["newState"]["inputs"]["name"] = UNKNOWN
    report = _diff(write(tmp_path, plans["prod"].digest, "base.json"), capsys, str(write(tmp_path, head, "head.json")))
    assert report["counts"] == {"create": 0, "update": 1, "replace": 0, "delete": 0}
    assert report["changes"][0]["properties"] == [
        {"path": "name", "old": "modelyard-prod", "new": "(known after apply)"}
    ]


def test_a_read_is_neither_priced_nor_policed(
    tmp_path: Path, plans: dict[str, Plan], capsys: pytest.CaptureFixture[str]
) -> None:
    """A resource the stack reads (`aws.s3.Bucket.get`) is someone else's: no cost, no verdict."""
    document = real_preview(plans["prod"], show_sames=True)
    urn = "urn:pulumi:prod::modelyard-platform::aws:s3/bucket:Bucket::someone-elses"
    document["steps"].append(
        {"op": "read", "urn": urn, "newState": {"type": "aws:s3/bucket:Bucket", "custom": True, "inputs": {}}}
    )
    path = write(tmp_path, document)
    assert main(["policy", str(path), "--env", "prod", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["violations"] == []
    assert main(["cost", str(path), "--json"]) == 0
    assert urn not in {r["urn"] for r in json.loads(capsys.readouterr().out)["resources"]}


def test_the_region_is_the_preview_s(
    tmp_path: Path, plans: dict[str, Plan], capsys: pytest.CaptureFixture[str]
) -> None:
    document = real_preview(plans["prod"], show_sames=True)
    document["config"]["aws:region"] = "us-west-2"
    assert main(["cost", str(write(tmp_path, document)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["region"] == "us-west-2"


def test_diff_says_when_no_policy_applies(
    tmp_path: Path, plans: dict[str, Plan], capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(
        json.dumps(real_preview(plans["prod"], show_sames=True)).replace("urn:pulumi:prod::", "urn:pulumi:qa::")
    )
    report = _diff(write(tmp_path, document), capsys)
    assert report["notes"] == [
        "Policy not evaluated: no policy configuration for stack 'qa' (policies/config/qa.json); pass --policy-config."
    ]


def test_diff_of_one_preview_prices_it_in_its_region_as_cost_does(
    tmp_path: Path, plans: dict[str, Plan], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preview's `aws:region` config, not the provider's region alone, prices both commands. The two
    regions priced here cost the same for this stack; the EKS control plane is made dearer in one so the
    region used shows."""
    west = price_book().regions["us-west-2"].services_usd
    monkeypatch.setitem(west, "eks_cluster_hour", west["eks_cluster_hour"].model_copy(update={"usd": 0.6}))
    document = real_preview(plans["prod"], show_sames=True, updates={"models-bucket": {"tags": {"a": "b"}}})
    baselines = {}
    for region in ("us-east-1", "us-west-2"):
        document["config"] = {"aws:region": region}
        path = write(tmp_path, document, f"{region}.json")
        assert main(["cost", str(path), "--json"]) == 0
        cost = json.loads(capsys.readouterr().out)["baseline"]
        main(["diff", str(path), "--json"])
        diff = json.loads(capsys.readouterr().out)["cost"]["baseline"]
        assert diff == {"base": cost, "head": cost}
        baselines[region] = cost
    assert baselines["us-east-1"] != baselines["us-west-2"]
