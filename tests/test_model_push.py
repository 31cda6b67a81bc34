"""`modelyard model push` against moto: layout, manifest, checksums, immutability, clear errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from modelyard.cli import main
from modelyard.model_push import PushError, push

BUCKET = "modelyard-dev-models-123456789012"


@pytest.fixture
def s3() -> Iterator[object]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "minilm"
    (d / "1_Pooling").mkdir(parents=True)
    (d / "config.json").write_text('{"hidden_size": 384}')
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (d / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    return d


def test_push_writes_files_and_a_manifest_and_verifies(s3: object, model_dir: Path) -> None:
    manifest = push(s3, model_dir, bucket=BUCKET, model="minilm", version="1", say=lambda _: None)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])  # type: ignore[attr-defined]
    assert keys == [
        "minilm/1/1_Pooling/config.json",
        "minilm/1/config.json",
        "minilm/1/manifest.json",
        "minilm/1/model.safetensors",
    ]
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key="minilm/1/manifest.json")["Body"].read())  # type: ignore[attr-defined]
    assert stored == manifest
    weights = next(f for f in stored["files"] if f["path"] == "model.safetensors")
    assert weights == {
        "path": "model.safetensors",
        "size": 10240,
        "sha256": hashlib.sha256(bytes(range(256)) * 40).hexdigest(),
    }
    assert stored["totalBytes"] == sum(f["size"] for f in stored["files"])


def test_an_existing_version_is_never_overwritten(s3: object, model_dir: Path) -> None:
    push(s3, model_dir, bucket=BUCKET, model="minilm", version="1", say=lambda _: None)
    (model_dir / "config.json").write_text('{"hidden_size": 768}')
    with pytest.raises(PushError, match="already exists: versions are immutable"):
        push(s3, model_dir, bucket=BUCKET, model="minilm", version="1", say=lambda _: None)
    body = s3.get_object(Bucket=BUCKET, Key="minilm/1/config.json")["Body"].read()  # type: ignore[attr-defined]
    assert body == b'{"hidden_size": 384}'
    push(s3, model_dir, bucket=BUCKET, model="minilm", version="2", say=lambda _: None)


@pytest.mark.parametrize(
    ("model", "version", "message"),
    [("MiniLM", "1", "--model 'MiniLM': must be a lowercase DNS label"), ("minilm", "../1", "--version '../1'")],
)
def test_bad_names_are_refused(s3: object, model_dir: Path, model: str, version: str, message: str) -> None:
    with pytest.raises(PushError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        push(s3, model_dir, bucket=BUCKET, model=model, version=version, say=lambda _: None)


def test_missing_bucket_and_empty_directory(s3: object, tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(PushError, match="bucket nope does not exist"):
        push(s3, model_dir, bucket="nope", model="minilm", version="1", say=lambda _: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PushError, match="no files to push"):
        push(s3, tmp_path / "empty", bucket=BUCKET, model="minilm", version="1", say=lambda _: None)


def test_cli_finds_the_bucket_from_the_account_and_exits_2_on_errors(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)  # moto's account is 123456789012
        argv = ["model", "push", str(model_dir), "--env", "dev", "--model", "minilm", "--version", "7"]
        assert main(argv) == 0
        assert "verified 3 files" in capsys.readouterr().out
        assert main(argv) == 2
        assert "already exists" in capsys.readouterr().err
        assert main(["model", "push", "/no/such/dir", "--env", "dev", "--model", "m", "--version", "1"]) == 2
        assert "/no/such/dir: not a directory" in capsys.readouterr().err
