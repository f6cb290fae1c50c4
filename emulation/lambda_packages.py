"""Lambda's function packages as AWS keeps them: per version, and downloadable from GetFunction.

moto 5.2.5 keeps a function's package bytes in its own memory only, and:

1. PublishVersion makes a shallow copy of `$LATEST`, so the version shares `$LATEST`'s code
   record (the dict UpdateFunctionCode writes into). Here a published version is a
   snapshot of `$LATEST`'s code and configuration; it never changes afterwards. As on AWS,
   nothing is published when neither code nor configuration changed since the last
   version (moto publishes again after any earlier change), and a `CodeSha256` that is not
   `$LATEST`'s refuses the call.
2. UpdateFunctionCode and UpdateFunctionConfiguration change `$LATEST` only: published
   versions are immutable on AWS, and with `Publish` moto would write the new code into
   the version it just published a second time.
3. GetFunction answers no `Code.Location`. Here it returns a URL on the emulator, like
   AWS's presigned S3 URL: it carries an unguessable token issued by this (IAM-authorized)
   GetFunction call, serves exactly that version's zip, and expires after ten minutes, as
   on AWS. :func:`serve_packages` wraps the emulator's WSGI app to answer it.

The patch checks the moto version, so an upgrade fails loudly instead of silently.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import ParseResult, parse_qs, quote, unquote

from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.models import LambdaBackend, LambdaFunction, LambdaStorage
from moto.awslambda.responses import LambdaResponse

from emulation.moto_version import require_patched_moto

# AWS: "a presigned URL that you can use to download the deployment package; valid for 10
# minutes".
PACKAGE_URL_TTL_S = 600
PACKAGE_PATH = "/_lambda-packages/"
TOKEN_PARAMETER = "X-Amz-Signature"
# What a version's identity is, not its content: left out when deciding whether anything
# changed since the last published version.
IDENTITY_FIELDS = frozenset(
    {"Version", "FunctionArn", "LastModified", "Description", "LastUpdateStatus", "State"}
)
# The containers in a function record that UpdateFunctionCode/Configuration write into.
MUTABLE_FIELDS = ("code", "environment_vars", "layers", "_vpc_config", "tracing_config")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class IssuedLink:
    package: bytes
    expires_at: float


class PackageLinks:
    """The download links GetFunction has issued and not yet seen expire."""

    def __init__(self, ttl_s: float = PACKAGE_URL_TTL_S, clock: Callable[[], float] = time.time):
        self.ttl_s = ttl_s
        self.clock = clock
        self._links: dict[str, IssuedLink] = {}
        self._lock = threading.Lock()

    def issue(self, package: bytes) -> str:
        now = self.clock()
        token = secrets.token_urlsafe(32)
        with self._lock:
            # The runtime asks every few seconds: forget what has expired as we go.
            for old in [t for t, link in self._links.items() if link.expires_at <= now]:
                del self._links[old]
            self._links[token] = IssuedLink(package, now + self.ttl_s)
        return token

    def redeem(self, token: str) -> bytes | None:
        """The package the token was issued for, or None if unknown or expired."""
        with self._lock:
            link = self._links.get(token)
        if link is None or link.expires_at <= self.clock():
            return None
        return link.package


LINKS = PackageLinks()
_applied = False


def package_location(request_url: ParseResult, fn: LambdaFunction) -> str:
    token = LINKS.issue(fn.code_bytes)
    name = quote(f"{fn.function_name}-{fn.version}.zip")
    return (
        f"{request_url.scheme}://{request_url.netloc}{PACKAGE_PATH}{fn.account_id}/{name}"
        f"?X-Amz-Expires={PACKAGE_URL_TTL_S}&{TOKEN_PARAMETER}={token}"
    )


def _published_state(fn: LambdaFunction) -> dict[str, Any]:
    config = fn.get_configuration()
    return {k: v for k, v in config.items() if k not in IDENTITY_FIELDS}


def _snapshot(latest: LambdaFunction, version: int) -> LambdaFunction:
    published = copy.copy(latest)
    for field in MUTABLE_FIELDS:
        setattr(published, field, copy.deepcopy(getattr(latest, field)))
    published.set_version(version)
    published.code_or_config_updated = False
    return published


def _publish_version(
    self: LambdaStorage, name_or_arn: str, description: str = "", code_sha256: str | None = None
) -> LambdaFunction | None:
    latest = self.get_function_by_name_or_arn_forbid_qualifier(name_or_arn)
    name = latest.function_name
    if code_sha256 is not None and code_sha256 != latest.code_sha_256:
        raise InvalidParameterValueException(
            f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST "
            f"({latest.code_sha_256}). Please try again with the CodeSHA256 in $LATEST."
        )
    versions: list[LambdaFunction] = self._functions[name]["versions"]
    if versions and _published_state(versions[-1]) == _published_state(latest):
        return versions[-1]
    number = max((int(v.version) for v in versions), default=0) + 1
    published = _snapshot(latest, number)
    if description:
        published.description = description
    versions.append(published)
    self._arns[published.function_arn] = published
    return published


def _backend_publish_version(
    self: LambdaBackend, function_name: str, description: str = "", code_sha256: str | None = None
) -> LambdaFunction | None:
    return _publish_version(self._lambdas, function_name, description, code_sha256)


def _update_function_code(
    self: LambdaBackend, function_name: str, qualifier: str | None, body: dict[str, Any]
) -> dict[str, Any] | None:
    if qualifier:
        raise InvalidParameterValueException("Cannot provide qualifier")
    latest = self._lambdas.get_function_by_name_or_arn_forbid_qualifier(function_name)
    config: dict[str, Any] = latest.update_function_code(body)
    if body.get("Publish") and not body.get("DryRun"):
        published = _publish_version(self._lambdas, latest.function_name)
        assert published is not None
        config = published.get_configuration()
    return config


def _update_function_configuration(
    self: LambdaBackend, function_name: str, qualifier: str | None, body: dict[str, Any]
) -> dict[str, Any] | None:
    if qualifier:
        raise InvalidParameterValueException("Cannot provide qualifier")
    latest = self._lambdas.get_function_by_name_or_arn_forbid_qualifier(function_name)
    result: dict[str, Any] = latest.update_configuration(body)
    return result


def _response_publish_version(self: LambdaResponse) -> tuple[int, dict[str, Any], str]:
    function_name = unquote(self.path.split("/")[-2])
    fn = _backend_publish_version(
        self.backend,
        function_name,
        self._get_param("Description") or "",
        self._get_param("CodeSha256"),
    )
    assert fn is not None
    return 201, {"status": 201}, json.dumps(fn.get_configuration())


def _response_get_function(self: LambdaResponse) -> str:
    function_name = unquote(self.path.rsplit("/", 1)[-1])
    qualifier = self._get_param("Qualifier", None)
    fn = self.backend.get_function(function_name, qualifier)
    answer = fn.get_code()
    answer["Configuration"] = self._set_configuration_qualifier(
        answer["Configuration"], function_name, qualifier
    )
    if fn.package_type == "Zip":
        answer["Code"] = {
            "RepositoryType": "S3",
            "Location": package_location(self.parsed_url, fn),
        }
    return json.dumps(answer)


def _answer(
    start_response: Callable[..., Any], status: str, body: bytes, content_type: str
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def serve_packages(app: WsgiApp) -> WsgiApp:
    """The emulator's WSGI app, answering the package links GetFunction hands out."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not str(environ.get("PATH_INFO", "")).startswith(PACKAGE_PATH):
            return app(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", b"", "text/plain")
        token = parse_qs(str(environ.get("QUERY_STRING", ""))).get(TOKEN_PARAMETER, [""])[0]
        package = LINKS.redeem(token) if token else None
        if package is None:
            # S3's answer to a presigned URL that is wrong or past its expiry.
            error = (
                b"<Error><Code>AccessDenied</Code>"
                b"<Message>Request has expired or the signature does not match</Message></Error>"
            )
            return _answer(start_response, "403 Forbidden", error, "application/xml")
        return _answer(start_response, "200 OK", package, "application/zip")

    return wsgi


def apply() -> None:
    global _applied
    if _applied:
        return
    require_patched_moto(__name__, "re-check the Lambda version patches")
    LambdaStorage.publish_version = _publish_version  # type: ignore[method-assign]
    LambdaBackend.publish_version = _backend_publish_version  # type: ignore[method-assign]
    LambdaBackend.update_function_code = _update_function_code  # type: ignore[method-assign]
    LambdaBackend.update_function_configuration = _update_function_configuration  # type: ignore[method-assign]
    LambdaResponse.publish_version = _response_publish_version  # type: ignore[method-assign]
    LambdaResponse.get_function = _response_get_function  # type: ignore[method-assign]
    _applied = True
