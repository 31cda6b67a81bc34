"""`--verify_manifest`: the real server refuses a model directory that is not what `modelyard model push`
wrote, in one line naming the file, before loading anything; and serves one that is. With
`--manifest_public_key`, the manifest must also carry the signing key's signature."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SERVING, pushed, sign, start, stop
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


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


# -- the manifest's signature (--manifest_public_key)


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def signed(
    model: Path, tmp_path_factory: pytest.TempPathFactory, signing_key: ec.EllipticCurvePrivateKey
) -> tuple[Path, str]:
    target = tmp_path_factory.mktemp("signed") / "models"
    shutil.copytree(model, target)
    return target, sign(target, signing_key)


def test_a_signed_version_is_verified_with_its_signature_and_served(signed: tuple[Path, str], tmp_path: Path) -> None:
    model_dir, public = signed
    server = start(
        tmp_path, "--model_dir", str(model_dir), "--verify_manifest", "--manifest_public_key", public, "--workers", "1"
    )
    try:
        assert "files verified against manifest.json and its signature" in server.log.read_text()
    finally:
        assert stop(server) == 0


def test_files_and_manifest_replaced_together_are_refused_by_the_signature(
    signed: tuple[Path, str], tmp_path: Path
) -> None:
    """What the manifest alone cannot catch: a writer who changes a file and rewrites the manifest to match it."""
    model_dir, public = signed
    bad = tmp_path / "copy"
    shutil.copytree(model_dir, bad)
    data = json.dumps({**json.loads((bad / "config.json").read_text()), "extra": 1}).encode()
    (bad / "config.json").write_bytes(data)
    manifest = json.loads((bad / "manifest.json").read_text())
    entry = next(e for e in manifest["files"] if e["path"] == "config.json")
    manifest["totalBytes"] += len(data) - entry["size"]
    entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (bad / "manifest.json").write_text(json.dumps(manifest, indent=2))
    line = refusal(bad, "--manifest_public_key", public)
    assert line == (
        f"modelyard-server: {bad / 'manifest.sig'}: does not verify manifest.json with the signing key "
        "(--manifest_public_key): the manifest is not one modelyard model push signed"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("unsigned", "manifest.sig: missing; --manifest_public_key serves only a version modelyard model push signed"),
        ("another-signer", "manifest.sig: does not verify manifest.json with the signing key"),
        ("other-algorithm", "manifest.sig: algorithm 'RSASSA_PSS_SHA_256', the signing key signs ECDSA_SHA_256"),
        ("garbled", "manifest.sig: not a signature as modelyard model push writes it"),
    ],
)
def test_each_way_a_signature_fails_is_one_line(
    signed: tuple[Path, str], tmp_path: Path, change: str, expected: str
) -> None:
    model_dir, public = signed
    bad = tmp_path / "copy"
    shutil.copytree(model_dir, bad)
    signature = json.loads((bad / "manifest.sig").read_text())
    if change == "unsigned":
        (bad / "manifest.sig").unlink()
    elif change == "another-signer":
        sign(bad, ec.generate_private_key(ec.SECP256R1()))
    elif change == "other-algorithm":
        (bad / "manifest.sig").write_text(json.dumps({**signature, "algorithm": "RSASSA_PSS_SHA_256"}))
    elif change == "garbled":
        (bad / "manifest.sig").write_text(json.dumps({**signature, "signature": "not base64!"}))
    assert expected in refusal(bad, "--manifest_public_key", public)


def _der(key: object) -> str:
    public = key.public_key()  # type: ignore[attr-defined]
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not-a-key", "--manifest_public_key must be a public key, base64 of its DER"),
        (_der(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "must be a P-256 key"),
        (_der(ec.generate_private_key(ec.SECP384R1())), "must be a P-256 key"),
    ],
)
def test_a_key_that_is_not_the_signing_keys_kind_is_refused(
    signed: tuple[Path, str], value: str, expected: str
) -> None:
    assert expected in refusal(signed[0], "--manifest_public_key", value)


def test_a_public_key_without_verify_manifest_is_refused(signed: tuple[Path, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelyard_server", "--model_dir", str(signed[0]), "--manifest_public_key", signed[1]],
        cwd=SERVING,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "modelyard-server: --manifest_public_key needs --verify_manifest (the signature is of the manifest)"
    )
