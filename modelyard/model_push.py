"""`modelyard model push`: upload a model directory to the environment's model store.

The layout is the one the workloads stack reads: `s3://<bucket>/<model>/<version>/`, with a
`manifest.json` beside the files listing each file's path, size and sha256. A version is written once:
pushing to a version that already has objects is refused (versions are immutable, so a rollback is a
catalog change, never a re-upload). Every file is sent with an S3 SHA-256 checksum and, once all are
up, read back (size and checksum) against the manifest before the push counts as done; the manifest
goes last, so a half-finished push never looks complete.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
NAME = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,62}$")


class PushError(Exception):
    """The push cannot go ahead or did not verify; the message says why and what to do."""


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


def scan(directory: Path) -> list[FileEntry]:
    if not directory.is_dir():
        raise PushError(f"{directory}: not a directory")
    entries = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative == MANIFEST:
            raise PushError(f"{path}: {MANIFEST} is written by the push; remove it from the directory")
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        entries.append(FileEntry(relative, path.stat().st_size, digest.hexdigest()))
    if not entries:
        raise PushError(f"{directory}: no files to push")
    return entries


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def push(
    s3: Any,
    directory: Path,
    *,
    bucket: str,
    model: str,
    version: str,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Upload `directory` as `model`/`version`; return the manifest written."""
    if not NAME.match(model):
        raise PushError(f"--model {model!r}: must be a lowercase DNS label of at most 40 characters")
    if not VERSION.match(version):
        raise PushError(f"--version {version!r}: must be letters, digits, '.', '_' or '-' (such as 1 or 2026-11-01)")
    prefix = f"{model}/{version}/"
    files = scan(directory)
    try:
        existing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except s3.exceptions.NoSuchBucket:
        raise PushError(f"bucket {bucket} does not exist (is the platform stack of this environment up?)") from None
    if existing.get("KeyCount", 0):
        raise PushError(
            f"s3://{bucket}/{prefix} already exists: versions are immutable; push as a new version "
            "(and point the catalog at it)"
        )
    total = sum(f.size for f in files)
    say(f"pushing {len(files)} files ({total / 1e6:.1f} MB) to s3://{bucket}/{prefix}")
    for f in files:
        with (directory / f.path).open("rb") as body:
            s3.put_object(
                Bucket=bucket,
                Key=prefix + f.path,
                Body=body,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64(f.sha256),
            )
    for f in files:
        head = s3.head_object(Bucket=bucket, Key=prefix + f.path, ChecksumMode="ENABLED")
        if head["ContentLength"] != f.size or head.get("ChecksumSHA256", _b64(f.sha256)) != _b64(f.sha256):
            raise PushError(f"s3://{bucket}/{prefix}{f.path} did not verify after upload; push again as a new version")
    manifest = {
        "model": model,
        "version": version,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files],
        "totalBytes": total,
    }
    s3.put_object(
        Bucket=bucket,
        Key=prefix + MANIFEST,
        Body=json.dumps(manifest, indent=2).encode(),
        ContentType="application/json",
        ChecksumAlgorithm="SHA256",
    )
    say(f"verified {len(files)} files; manifest at s3://{bucket}/{prefix}{MANIFEST}")
    return manifest
