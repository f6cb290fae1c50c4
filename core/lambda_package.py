"""A function's deployment package: built reproducibly, fetched from GetFunction, checked.

GetFunction's `Code.Location` is a short-lived download link (a presigned S3 URL on AWS,
the emulator's own link in the embedded world); `CodeSha256` is the base64 SHA-256 of the
zip. A package whose bytes do not hash to it is refused: it is not what was deployed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import urllib.request
import zipfile
from typing import Any
from urllib.parse import urlsplit

from core.errors import FleetError

DOWNLOAD_TIMEOUT_S = 30.0
# Zip entries carry a timestamp; a fixed one makes the same files the same package (and
# so the same CodeSha256) whenever and wherever it is built.
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackageIntegrityError(FleetError):
    """The downloaded package is not the one the function's CodeSha256 names."""


def code_sha256(package: bytes) -> str:
    """Lambda's CodeSha256: the base64 of the zip's SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(package).digest()).decode()


def build_zip(files: dict[str, bytes]) -> bytes:
    """A zip of these files (name -> content), byte-for-byte reproducible."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[name])
    return buf.getvalue()


def read_zip(package: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(package)) as zf:
        return {name: zf.read(name) for name in zf.namelist() if not name.endswith("/")}


def download(location: str, expected_sha256: str, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    """The package at `location`, refused unless it hashes to `expected_sha256`."""
    if urlsplit(location).scheme not in ("http", "https"):
        raise PackageIntegrityError(f"package location is not an HTTP(S) URL: {location[:80]}")
    with urllib.request.urlopen(location, timeout=timeout_s) as answer:  # scheme checked above
        package: bytes = answer.read()
    actual = code_sha256(package)
    if actual != expected_sha256:
        raise PackageIntegrityError(
            f"downloaded package hashes to {actual}, not the deployed CodeSha256 "
            f"{expected_sha256}: refusing to run it"
        )
    return package


def deployed_package(lam: Any, function_name: str, qualifier: str | None = None) -> bytes:
    """The package a version (or alias) of the function holds, checked against its hash."""
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    answer = lam.get_function(FunctionName=function_name, **kwargs)
    return download(answer["Code"]["Location"], answer["Configuration"]["CodeSha256"])
