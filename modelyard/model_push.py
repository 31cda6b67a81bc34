"""`modelyard model push`: upload a model directory to the environment's model store.

The layout is the one the workloads stack reads: `s3://<bucket>/<model>/<version>/`, with a
`manifest.json` beside the files listing each file's path, size and sha256. A version is complete once its
manifest is written, and a complete version is never written again (versions are immutable, so a rollback is
a catalog change, never a re-upload); every write is conditional (`If-None-Match: *`), so two pushes of one
version cannot overwrite each other.

Multi-GB files (safetensors shards over S3's 5 GB single-upload limit) go up as multipart uploads, each part
with its own SHA-256 checksum, which S3 checks on receipt. A push that stops part-way (a dropped connection,
Ctrl-C) is resumed by running it again: files already uploaded are verified and kept, an unfinished
multipart upload is continued (a part S3 reports with the same size and SHA-256 is kept, any other sent
again), and objects that differ from the directory are refused, never overwritten. Once every file is up,
each is read back (size and checksum) against the directory before the manifest goes last, so a half-finished
push never looks complete.

The manifest is signed: KMS signs its SHA-256 with the environment's signing key (ECDSA P-256, a key only the
push role may sign with), and `manifest.sig` goes up just before the manifest. A writer who could replace files
and manifest alike still cannot make a signature the model server accepts. The manifest's bytes follow from the
files alone, so a push resumed after the signature went up writes the manifest it signed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
#: The manifest's signature, beside it: KMS's ECDSA signature of the manifest's SHA-256 (workloads/serving/
#: modelyard_server/manifest.py verifies it with the signing key's public half).
SIGNATURE = "manifest.sig"
SIGNING_ALGORITHM = "ECDSA_SHA_256"
NAME = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,62}$")
MIB = 2**20
#: Files from this size go up in parts (S3 takes at most 5 GB in one PUT; parts also make a resume cheap).
MULTIPART_THRESHOLD = 64 * MIB
#: The part size, grown where a file would need more than S3's 10,000 parts (5 MiB is S3's least).
PART_SIZE = 64 * MIB
MAX_PARTS = 10_000
#: S3's largest object.
MAX_OBJECT = 5 * 2**40


class PushError(Exception):
    """The push cannot go ahead or did not verify; the message says why and what to do."""


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    #: For a multipart file: its part size and each part's sha256 (hex), in order.
    part_size: int = 0
    parts: tuple[str, ...] = ()

    @property
    def checksum(self) -> str:
        """What S3 reports as the object's ChecksumSHA256: the file's digest, or for a multipart upload the
        digest of its parts' digests with `-<parts>` (S3's composite checksum)."""
        if not self.parts:
            return _b64(self.sha256)
        composite = hashlib.sha256(b"".join(bytes.fromhex(p) for p in self.parts)).hexdigest()
        return f"{_b64(composite)}-{len(self.parts)}"


def part_size_for(size: int, part_size: int = PART_SIZE) -> int:
    """The part size for a file of `size` bytes: `part_size`, or the least whole MiB that keeps the file
    within S3's 10,000 parts."""
    return max(part_size, math.ceil(size / MAX_PARTS / MIB) * MIB)


def scan(directory: Path, threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE) -> list[FileEntry]:
    """Every file under `directory` with its size and sha256 (and, from `threshold` up, its parts' digests),
    read once."""
    if not directory.is_dir():
        raise PushError(f"{directory}: not a directory")
    entries = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative == MANIFEST:
            raise PushError(f"{path}: {MANIFEST} is written by the push; remove it from the directory")
        size = path.stat().st_size
        if size > MAX_OBJECT:
            raise PushError(f"{path}: {size:,} bytes is over S3's largest object (5 TiB)")
        whole = hashlib.sha256()
        parts: list[str] = []
        step = part_size_for(size, part_size) if size >= threshold else 0
        with path.open("rb") as f:
            while chunk := f.read(step or MIB):
                whole.update(chunk)
                if step:
                    parts.append(hashlib.sha256(chunk).hexdigest())
        entries.append(FileEntry(relative, size, whole.hexdigest(), step, tuple(parts)))
    if not entries:
        raise PushError(f"{directory}: no files to push")
    return entries


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _head(s3: Any, bucket: str, key: str) -> Mapping[str, Any] | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")  # type: ignore[no-any-return]
    except s3.exceptions.ClientError as exc:
        if _code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def matches(head: Mapping[str, Any], entry: FileEntry) -> bool:
    """Whether the stored object is the file: its size, and its SHA-256 checksum where S3 reports one (a
    composite one compares by its digest; some S3 implementations leave off the `-<parts>` suffix)."""
    if head.get("ContentLength") != entry.size:
        return False
    stored = head.get("ChecksumSHA256")
    if stored is None:
        return False
    digest, _, count = str(stored).partition("-")
    want, _, want_count = entry.checksum.partition("-")
    return digest == want and (not count or count == want_count)


def reusable_parts(listed: list[Mapping[str, Any]], entry: FileEntry) -> dict[int, Mapping[str, Any]]:
    """The parts of an unfinished multipart upload (ListParts' `Parts`) that are this file's: same number,
    size and SHA-256. A part S3 lists without a checksum is sent again."""
    keep = {}
    for part in listed:
        n = int(part["PartNumber"])
        if not 1 <= n <= len(entry.parts):
            continue
        size = min(entry.part_size, entry.size - (n - 1) * entry.part_size)
        if part.get("Size") == size and part.get("ChecksumSHA256") == _b64(entry.parts[n - 1]):
            keep[n] = part
    return keep


def _listed_parts(s3: Any, bucket: str, key: str, upload_id: str) -> Iterator[Mapping[str, Any]]:
    marker = 0
    while True:
        page = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker)
        yield from page.get("Parts", [])
        if not page.get("IsTruncated"):
            return
        marker = int(page["NextPartNumberMarker"])


def _unfinished_uploads(s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    """The newest unfinished multipart upload of each key under `prefix`."""
    found: dict[str, tuple[Any, str]] = {}
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = s3.list_multipart_uploads(**kwargs)
        for upload in page.get("Uploads", []):
            key, started = upload["Key"], upload.get("Initiated")
            if key not in found or (started is not None and started > found[key][0]):
                found[key] = (started, upload["UploadId"])
        if not page.get("IsTruncated"):
            return {k: v[1] for k, v in found.items()}
        kwargs.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page["NextUploadIdMarker"])


class _Upload:
    def __init__(self, s3: Any, bucket: str, prefix: str, directory: Path, say: Callable[[str], None]):
        self.s3, self.bucket, self.prefix, self.directory, self.say = s3, bucket, prefix, directory, say
        self.unfinished = _unfinished_uploads(s3, bucket, prefix)
        self.sent_bytes = 0

    def file(self, entry: FileEntry) -> str:
        """Upload `entry` unless it is already there; what was done, in a word."""
        key = self.prefix + entry.path
        head = _head(self.s3, self.bucket, key)
        if head is not None:
            if not matches(head, entry):
                raise PushError(
                    f"s3://{self.bucket}/{key} exists and is not {self.directory / entry.path} (size or sha256 "
                    "differ): an earlier push of other files stopped here; push as a new version, or delete "
                    f"s3://{self.bucket}/{self.prefix} and push again"
                )
            return "kept"
        if entry.parts:
            self._multipart(key, entry)
        else:
            with (self.directory / entry.path).open("rb") as body:
                self._conditional(
                    lambda: self.s3.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=body,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=_b64(entry.sha256),
                        IfNoneMatch="*",
                    ),
                    key,
                )
            self.sent_bytes += entry.size
        return "sent"

    def _conditional(self, write: Callable[[], Any], key: str) -> Any:
        try:
            return write()
        except self.s3.exceptions.ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise PushError(
                    f"s3://{self.bucket}/{key} was written by someone else during this push: run the push again "
                    "to check what is there (it resumes and verifies)"
                ) from None
            raise

    def _multipart(self, key: str, entry: FileEntry) -> None:
        upload_id = self.unfinished.get(key)
        kept: dict[int, Mapping[str, Any]] = {}
        if upload_id is not None:
            kept = reusable_parts(list(_listed_parts(self.s3, self.bucket, key, upload_id)), entry)
            self.say(f"  {entry.path}: resuming a multipart upload, {len(kept)} of {len(entry.parts)} parts kept")
        else:
            upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256")[
                "UploadId"
            ]
        done = []
        with (self.directory / entry.path).open("rb") as f:
            for n, digest in enumerate(entry.parts, 1):
                if n in kept:
                    done.append({"PartNumber": n, "ETag": kept[n]["ETag"], "ChecksumSHA256": _b64(digest)})
                    continue
                f.seek((n - 1) * entry.part_size)
                body = f.read(entry.part_size)
                if hashlib.sha256(body).hexdigest() != digest:
                    raise PushError(f"{self.directory / entry.path} changed during the push; push again")
                answer = self.s3.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=n,
                    Body=body,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_b64(digest),
                )
                self.sent_bytes += len(body)
                done.append({"PartNumber": n, "ETag": answer["ETag"], "ChecksumSHA256": _b64(digest)})
        self._conditional(
            lambda: self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},
                IfNoneMatch="*",
            ),
            key,
        )


#: The drift reference's name in a model directory (workloads/serving/modelyard_server/reference.py).
REFERENCE = "drift_reference.npz"


def serving_python() -> Path:
    """The serving environment's interpreter (what the model server image runs): $MODELYARD_SERVING_PYTHON, or
    the checkout's .venv-serving (make .venv-serving/.installed)."""
    import os

    from modelyard.programs import REPO_ROOT

    configured = os.environ.get("MODELYARD_SERVING_PYTHON")
    return Path(configured) if configured else REPO_ROOT / ".venv-serving" / "bin" / "python"


def build_reference(directory: Path, texts: Path, python: Path | None = None) -> str:
    """Writes `directory`/drift_reference.npz: every text of `texts` (one a line) encoded by the model in
    `directory` with the model server's own encoder, run in the serving environment. Returns its summary line."""
    import subprocess

    from modelyard.programs import REPO_ROOT

    python = python or serving_python()
    if not python.exists():
        raise PushError(
            f"--reference-texts needs the model server's environment to encode the texts, and {python} is missing: "
            "run make .venv-serving/.installed, or set MODELYARD_SERVING_PYTHON to its python"
        )
    if not directory.is_dir():
        raise PushError(f"{directory}: not a directory")
    done = subprocess.run(
        [str(python), "-m", "modelyard_server.reference", "--model_dir", str(directory), "--texts", str(texts)],
        cwd=REPO_ROOT / "workloads" / "serving",
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise PushError(f"--reference-texts: {lines[-1] if lines else f'the encoder exited {done.returncode}'}")
    return done.stdout.strip()


def manifest_of(model: str, version: str, files: list[FileEntry]) -> dict[str, Any]:
    """The manifest a version's files are held to (the model server's --verify_manifest reads it)."""
    return {
        "model": model,
        "version": version,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files],
        "totalBytes": sum(f.size for f in files),
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The manifest as stored: what is signed and what the server hashes."""
    return json.dumps(manifest, indent=2).encode()


def sign_manifest(kms: Any, key_id: str, body: bytes) -> dict[str, str]:
    """`manifest.sig`'s content: KMS's signature of the manifest's SHA-256 with `key_id` (an alias or ARN), the
    key that signed (KMS answers its ARN) and the algorithm."""
    digest = hashlib.sha256(body).digest()
    try:
        answer = kms.sign(KeyId=key_id, Message=digest, MessageType="DIGEST", SigningAlgorithm=SIGNING_ALGORITHM)
    except kms.exceptions.ClientError as exc:
        raise PushError(
            f"KMS refused to sign the manifest with {key_id} ({_code(exc)}): is this environment's platform stack "
            "up to date (it makes the signing key), and is this the push role?"
        ) from None
    return {
        "keyId": str(answer["KeyId"]),
        "algorithm": SIGNING_ALGORITHM,
        "manifestSha256": digest.hex(),
        "signature": base64.b64encode(answer["Signature"]).decode(),
    }


def push(
    s3: Any,
    directory: Path,
    *,
    bucket: str,
    model: str,
    version: str,
    kms: Any,
    signing_key: str,
    say: Callable[[str], None] = print,
    threshold: int = MULTIPART_THRESHOLD,
    part_size: int = PART_SIZE,
) -> dict[str, Any]:
    """Upload `directory` as `model`/`version` (or finish an upload of it that stopped); return the manifest
    written."""
    if not NAME.match(model):
        raise PushError(f"--model {model!r}: must be a lowercase DNS label of at most 40 characters")
    if not VERSION.match(version):
        raise PushError(f"--version {version!r}: must be letters, digits, '.', '_' or '-' (such as 1 or 2026-11-01)")
    prefix = f"{model}/{version}/"
    files = scan(directory, threshold, part_size)
    try:
        existing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except s3.exceptions.NoSuchBucket:
        raise PushError(f"bucket {bucket} does not exist (is the platform stack of this environment up?)") from None
    if existing.get("KeyCount", 0) and _head(s3, bucket, prefix + MANIFEST) is not None:
        raise PushError(
            f"s3://{bucket}/{prefix} already exists: versions are immutable; push as a new version "
            "(and point the catalog at it)"
        )
    total = sum(f.size for f in files)
    multipart = sum(1 for f in files if f.parts)
    say(
        f"pushing {len(files)} files ({total / 1e6:.1f} MB, {multipart} in parts of "
        f"{max((f.part_size for f in files), default=part_size) // MIB} MiB) to s3://{bucket}/{prefix}"
    )
    upload = _Upload(s3, bucket, prefix, directory, say)
    done = [upload.file(f) for f in files]
    if "kept" in done:
        say(f"resumed: {done.count('kept')} files already there and verified, {done.count('sent')} sent")
    for f in files:
        head = _head(s3, bucket, prefix + f.path)
        if head is None or not matches(head, f):
            raise PushError(f"s3://{bucket}/{prefix}{f.path} did not verify after upload; push again to resume")
    manifest = manifest_of(model, version, files)
    body = manifest_bytes(manifest)
    if _head(s3, bucket, prefix + SIGNATURE) is None:
        signature = sign_manifest(kms, signing_key, body)
        upload._conditional(
            lambda: s3.put_object(
                Bucket=bucket,
                Key=prefix + SIGNATURE,
                Body=json.dumps(signature, indent=2).encode(),
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
                IfNoneMatch="*",
            ),
            prefix + SIGNATURE,
        )
    upload._conditional(
        lambda: s3.put_object(
            Bucket=bucket,
            Key=prefix + MANIFEST,
            Body=body,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
            IfNoneMatch="*",
        ),
        prefix + MANIFEST,
    )
    say(
        f"verified {len(files)} files ({upload.sent_bytes / 1e6:.1f} MB sent); manifest at s3://{bucket}/{prefix}{MANIFEST}"
    )
    return manifest
