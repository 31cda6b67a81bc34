"""`--verify_manifest`: the real server refuses a model directory that is not what `modelyard model push`
wrote, in one line naming the file, before loading anything; and serves one that is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SERVING, pushed, start, stop


def refusal(model_dir: Path, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "modelyard_server", "--model_dir", str(model_dir), "--verify_manifest", *extra],
        cwd=SERVING,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pushed(tmp_path_factory.mktemp("pushed"))


def test_a_pushed_version_is_verified_and_served(model: Path, tmp_path: Path) -> None:
    server = start(tmp_path, "--model_dir", str(model), "--verify_manifest", "--workers", "1")
    try:
        assert "files verified against manifest.json" in server.log.read_text()
    finally:
        assert stop(server) == 0


def test_a_tampered_file_is_refused_naming_it(model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "copy"
    shutil.copytree(model, bad)
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    line = refusal(bad)
    assert line.startswith(f"modelyard-server: {weights}: sha256 ") and "differs from manifest.json" in line


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("extra", "pytorch_model.bin: not in manifest.json; refusing a file the pushed version does not have"),
        ("missing", "config.json: in manifest.json but missing from the model directory"),
        ("truncated", "tokenizer.json: "),
        ("no-manifest", "manifest.json: missing; --verify_manifest serves only a model version written by"),
        ("other-model", "manifest.json: is for model 'other', this server serves 'minilm'"),
        ("escape", "manifest.json: files[0].path must be a relative path inside the model (got '../etc/passwd')"),
        ("not-json", "manifest.json: not JSON"),
    ],
)
def test_each_way_a_directory_differs_is_one_line(model: Path, tmp_path: Path, change: str, expected: str) -> None:
    bad = tmp_path / "copy"
    shutil.copytree(model, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    if change == "extra":
        (bad / "pytorch_model.bin").write_bytes(b"\x80\x02")  # a pickle a loader could prefer
    elif change == "missing":
        (bad / "config.json").unlink()
    elif change == "truncated":
        (bad / "tokenizer.json").write_bytes((bad / "tokenizer.json").read_bytes()[:100])
    elif change == "no-manifest":
        (bad / "manifest.json").unlink()
    elif change == "other-model":
        (bad / "manifest.json").write_text(json.dumps({**manifest, "model": "other"}))
    elif change == "escape":
        manifest["files"][0]["path"] = "../etc/passwd"
        (bad / "manifest.json").write_text(json.dumps(manifest))
    elif change == "not-json":
        (bad / "manifest.json").write_text("{")
    assert expected in refusal(bad)
