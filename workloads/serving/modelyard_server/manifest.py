"""The model directory held to its manifest before anything of it is loaded.

`modelyard model push` writes `manifest.json` beside a model version's files: each file's path, size and
sha256. With `--verify_manifest` (what the workloads stack renders) the server reads every file of the
directory KServe's storage initializer filled and refuses to start, in one line naming the file, when a file
differs from the manifest, is missing, or is not in it (an added file could be what a loader picks up), or
when the manifest is for another model. A model version overwritten or tampered with in the store is then
never served.

Push also writes `manifest.sig`: KMS's ECDSA (P-256) signature of the manifest's SHA-256, made with the
environment's signing key, which only the push role may sign with. With `--manifest_public_key` (the key's
public half, which the workloads stack renders) the signature is checked first, so a writer who replaced files
and manifest alike is refused too: the manifest is not one push signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from .tokenizer import ModelDirError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
#: What push asks KMS for (modelyard/model_push.py): ECDSA over the manifest's SHA-256, on a P-256 key.
SIGNING_ALGORITHM = "ECDSA_SHA_256"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
UNPUSHED = "missing; --verify_manifest serves only a model version written by modelyard model push"


def public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The signing key's public half from its base64 DER (as `aws kms get-public-key` answers it); ValueError
    names what is wrong."""
    try:
        key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        raise ValueError("must be a public key, base64 of its DER (aws kms get-public-key --query PublicKey)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("must be a P-256 key (the signing key is ECC_NIST_P256)")
    return key


def verify_signature(model_dir: Path, key: ec.EllipticCurvePublicKey) -> None:
    """Check `manifest.sig` against `manifest.json`'s bytes with `key`; ModelDirError names what is wrong."""
    signature_file, manifest = model_dir / SIGNATURE, model_dir / MANIFEST
    if not signature_file.is_file():
        raise ModelDirError(
            f"{signature_file}: missing; --manifest_public_key serves only a version modelyard model push signed"
        )
    try:
        document = json.loads(signature_file.read_text(encoding="utf-8"))
        algorithm, signature = document["algorithm"], base64.b64decode(document["signature"], validate=True)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, binascii.Error) as exc:
        raise ModelDirError(f"{signature_file}: not a signature as modelyard model push writes it ({exc})") from None
    if algorithm != SIGNING_ALGORITHM:
        raise ModelDirError(f"{signature_file}: algorithm {algorithm!r}, the signing key signs {SIGNING_ALGORITHM}")
    if not manifest.is_file():
        raise ModelDirError(f"{manifest}: {UNPUSHED}")
    digest = hashlib.sha256(manifest.read_bytes()).digest()
    try:
        key.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        raise ModelDirError(
            f"{signature_file}: does not verify {MANIFEST} with the signing key (--manifest_public_key): the manifest "
            "is not one modelyard model push signed"
        ) from None


def _entries(manifest: Path, document: Any) -> list[tuple[str, int, str]]:
    if not isinstance(document, dict) or not isinstance(document.get("files"), list) or not document["files"]:
        raise ModelDirError(
            f"{manifest}: must be an object with a non-empty files list, as modelyard model push writes"
        )
    out = []
    for i, entry in enumerate(document["files"]):
        path, size, digest = (entry.get(k) if isinstance(entry, dict) else None for k in ("path", "size", "sha256"))
        pure = PurePosixPath(path) if isinstance(path, str) else None
        if pure is None or pure.is_absolute() or ".." in pure.parts or path in ("", MANIFEST, SIGNATURE):
            raise ModelDirError(f"{manifest}: files[{i}].path must be a relative path inside the model (got {path!r})")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ModelDirError(f"{manifest}: files[{i}].size must be a byte count (got {size!r})")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ModelDirError(f"{manifest}: files[{i}].sha256 must be 64 lowercase hex digits (got {digest!r})")
        out.append((str(path), size, digest))
    return out


def verify(model_dir: Path, model_name: str, key: ec.EllipticCurvePublicKey | None = None) -> int:
    """Check `model_dir` against its manifest, and the manifest against its signature where `key` is given;
    return the files verified. ModelDirError names what is wrong."""
    if key is not None:
        verify_signature(model_dir, key)
    manifest = model_dir / MANIFEST
    if not manifest.is_file():
        raise ModelDirError(f"{manifest}: {UNPUSHED}")
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{manifest}: not JSON ({exc})") from None
    entries = _entries(manifest, document)
    if document.get("model") != model_name:
        raise ModelDirError(f"{manifest}: is for model {document.get('model')!r}, this server serves {model_name!r}")
    listed = {path for path, _, _ in entries}
    for found in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        relative = found.relative_to(model_dir).as_posix()
        if relative not in (MANIFEST, SIGNATURE) and relative not in listed:
            raise ModelDirError(f"{found}: not in {MANIFEST}; refusing a file the pushed version does not have")
    for path, size, digest in entries:
        file = model_dir / path
        if not file.is_file():
            raise ModelDirError(f"{file}: in {MANIFEST} but missing from the model directory")
        actual_size = file.stat().st_size
        if actual_size != size:
            raise ModelDirError(f"{file}: {actual_size} bytes, {MANIFEST} says {size}")
        h = hashlib.sha256()
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != digest:
            raise ModelDirError(f"{file}: sha256 {h.hexdigest()} differs from {MANIFEST} ({digest})")
    return len(entries)
