"""The PR review report: golden files over fixture previews (create, update, replace, delete, cost up and
down, violations added and fixed), determinism, bad input, and a review of this repository's previous
commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelyard import review
from modelyard.cli import main
from modelyard.programs import REPO_ROOT

FIXTURES = Path(__file__).parent / "fixtures" / "diff"
ARGS = [str(FIXTURES / "base.json"), str(FIXTURES / "head.json"), "--policy-config", "policies/config/dev.json"]


def run_diff(*extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "diff", *ARGS, *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_markdown_matches_the_golden_file() -> None:
    assert run_diff() == (FIXTURES / "expected.md").read_text()


def test_json_matches_the_golden_file() -> None:
    assert json.loads(run_diff("--json")) == json.loads((FIXTURES / "expected.json").read_text())


def test_same_inputs_same_bytes() -> None:
    assert run_diff("--markdown") == run_diff("--markdown") == run_diff()


def test_the_report_says_what_a_reviewer_needs() -> None:
    report = json.loads((FIXTURES / "expected.json").read_text())
    assert report["counts"] == {"create": 1, "update": 3, "replace": 1, "delete": 2}
    stateful = sorted((c["kind"], c["type"]) for c in report["changes"] if c["stateful"])
    assert stateful == [("delete", "aws:kms/key:Key"), ("replace", "aws:s3/bucket:Bucket")]
    assert [v["rule"] for v in report["policy"]["new"]] == ["kms-rotation"]
    assert [v["rule"] for v in report["policy"]["fixed"]] == ["ecr-immutable-scanned"]
    costs = {r["urn"].rsplit("::", 1)[1]: r for r in report["cost"]["resources"]}
    assert costs["nat-1"]["baseline"] == [37.35, 0.0]  # cost down
    assert costs["system-ng"]["baseline"] == [155.17, 232.75]  # cost up: one more m7i.large node
    markdown = (FIXTURES / "expected.md").read_text()
    assert markdown.index("Stateful resources replaced or deleted") < markdown.index("### Replaced")
    assert "```mermaid\nflowchart LR" in markdown


def test_secrets_stay_masked(tmp_path: Path) -> None:
    """A secret shows as [secret] on either side of a change, never as its value."""
    base = json.loads((FIXTURES / "base.json").read_text())
    head = json.loads((FIXTURES / "head.json").read_text())
    for doc, value in ((base, {"url": "[secret]"}), (head, {"url": "[secret]", "token": "[secret]"})):
        for step in doc["steps"]:
            if step["newState"]["type"] == "kubernetes:core/v1:Secret":
                step["newState"]["inputs"]["data"] = value
    (tmp_path / "b.json").write_text(json.dumps(base))
    (tmp_path / "h.json").write_text(json.dumps(head))
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "diff", str(tmp_path / "b.json"), str(tmp_path / "h.json")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "`data.token`: (none) → [secret]" in result.stdout
    assert "data.url" not in result.stdout  # unchanged (both masked)


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert main(["diff", str(tmp_path / "bad.json"), str(FIXTURES / "head.json")]) == 2
    assert "not a preview: the document must be a JSON object" in capsys.readouterr().err
    assert main(["review", "--base", "no-such-ref-anywhere", "--env", "dev"]) == 2
    assert "cannot check out --base 'no-such-ref-anywhere'" in capsys.readouterr().err


def test_one_process_or_two_the_report_is_the_same(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where the platform forks, the base is read in a child process; where it cannot, in this one."""
    assert hasattr(os, "fork")
    assert main(["diff", *ARGS, "--json"]) == 0
    forked = capsys.readouterr().out
    monkeypatch.delattr(os, "fork")
    assert main(["diff", *ARGS, "--json"]) == 0
    assert capsys.readouterr().out == forked
    assert json.loads(forked) == json.loads((FIXTURES / "expected.json").read_text())


def test_a_bad_head_is_named_and_the_base_reader_does_not_outlive_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.json").write_bytes(b'{"steps": [{"urn": "urn:pulumi:a::b::t::n"} oops')
    assert main(["diff", str(FIXTURES / "base.json"), str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"modelyard diff: {tmp_path / 'bad.json'}: not JSON: Expecting ',' delimiter at line 1, column 45\n"
    with pytest.raises(ChildProcessError):  # no child left behind, running or unreaped
        os.waitpid(-1, os.WNOHANG)


def test_a_base_reader_that_dies_is_reported_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reader killed (out of memory, say) is an error that says so, never a hang or a traceback."""
    parent, side = os.getpid(), review.Document.side

    def dies_in_the_child(self: review.Document, *args: Any) -> Any:
        if os.getpid() != parent:
            os._exit(3)
        return side(self, *args)

    monkeypatch.setattr(review.Document, "side", dies_in_the_child)
    assert main(["diff", *ARGS]) == 2
    assert capsys.readouterr().err == "modelyard diff: the process reading the base preview ended (exit status 3)\n"


def test_review_of_this_repository_s_previous_commit() -> None:
    has_parent = subprocess.run(
        ["git", "rev-parse", "--verify", "HEAD~1"], cwd=REPO_ROOT, capture_output=True, check=False
    )
    base = "HEAD~1" if has_parent.returncode == 0 else "HEAD"
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "review", "--base", base, "--env", "dev"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("## modelyard review: dev\n")
    assert "to create" in result.stdout and "monthly cost" in result.stdout


def test_one_real_preview_is_reported_from_its_own_old_and_new_states(tmp_path: Path) -> None:
    """`pulumi preview --json` carries oldState (now) and newState (after): diff reads both from one file."""
    urn = "urn:pulumi:dev::modelyard-platform::"
    preview = {
        "steps": [
            {
                "op": "update",
                "urn": urn + "aws:kms/key:Key::k",
                "oldState": {"type": "aws:kms/key:Key", "inputs": {"enableKeyRotation": True}},
                "newState": {"type": "aws:kms/key:Key", "inputs": {"enableKeyRotation": False}},
            },
            {
                "op": "delete",
                "urn": urn + "aws:s3/bucket:Bucket::old",
                "oldState": {"type": "aws:s3/bucket:Bucket", "inputs": {}},
            },
            {
                "op": "create",
                "urn": urn + "aws:sqs/queue:Queue::q",
                "newState": {"type": "aws:sqs/queue:Queue", "inputs": {}},
            },
        ],
        "changeSummary": {"update": 1, "delete": 1, "create": 1},
    }
    (tmp_path / "preview.json").write_text(json.dumps(preview))
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "diff", str(tmp_path / "preview.json"), "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"] == {"create": 1, "update": 1, "replace": 0, "delete": 1}
    # The key loses its rotation; the new queue has no tags (no provider in this small preview).
    assert sorted(v["rule"] for v in report["policy"]["new"]) == ["aws-required-tags", "kms-rotation"]
    assert any(c["stateful"] and c["kind"] == "delete" for c in report["changes"])
