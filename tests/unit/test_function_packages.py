"""Function packages: reproducible, refused when they are not what CodeSha256 names, served
only with a live token; and the bad release chaos publishes fails on every run."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.faults import MISSING_SETTING, failing_release
from core.errors import FleetError
from core.lambda_package import PackageIntegrityError, build_zip, code_sha256, download, read_zip
from emulation.lambda_packages import LINKS, PACKAGE_PATH, PackageLinks, serve_packages
from emulation.lambda_task import TaskCache
from workload.deploy import HANDLER_SOURCE, handler_zip

PACKAGE = build_zip({"m.py": b"def handler(event, context):\n    return 'ran'\n"})


@pytest.fixture
def served() -> Iterator[dict[str, Any]]:
    """A real HTTP server on localhost that answers every GET with `body`."""
    state: dict[str, Any] = {"body": b""}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/package.zip"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_same_files_are_the_same_package() -> None:
    assert handler_zip() == handler_zip()
    assert read_zip(handler_zip()) == {"data_processor.py": HANDLER_SOURCE.read_bytes()}


def test_a_package_that_is_not_the_deployed_code_is_refused(served: dict[str, Any]) -> None:
    served["body"] = PACKAGE
    assert download(served["url"], code_sha256(PACKAGE)) == PACKAGE
    tampered = build_zip({"m.py": b"def handler(event, context):\n    return 'other'\n"})
    served["body"] = tampered
    with pytest.raises(PackageIntegrityError, match="refusing to run it"):
        download(served["url"], code_sha256(PACKAGE))


def test_the_runtime_unpacks_nothing_it_could_not_verify(
    served: dict[str, Any], tmp_path: Path
) -> None:
    cache = TaskCache(tmp_path)
    served["body"] = PACKAGE + b"tampered"
    function = {"Configuration": {"CodeSha256": code_sha256(PACKAGE)}, "Code": {}}
    function["Code"]["Location"] = served["url"]
    with pytest.raises(PackageIntegrityError):
        cache.task_dir(function)
    assert not cache.tasks.exists() or not any(cache.tasks.iterdir())
    served["body"] = PACKAGE
    task = cache.task_dir(function)
    assert (task / "m.py").read_bytes() == read_zip(PACKAGE)["m.py"]


def test_a_link_serves_its_package_until_it_expires() -> None:
    clock = [1000.0]
    links = PackageLinks(ttl_s=600, clock=lambda: clock[0])
    token = links.issue(PACKAGE)
    assert links.redeem(token) == PACKAGE
    assert links.redeem(token[:-1] + "x") is None
    clock[0] += 601
    assert links.redeem(token) is None


def _get(app: Any, path: str, query: str) -> tuple[str, bytes]:
    answer: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"] = status

    body = b"".join(
        app({"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": "GET"}, start_response)
    )
    return answer["status"], body


def test_the_emulator_answers_package_links_and_passes_everything_else_on() -> None:
    def moto(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"moto"]

    app = serve_packages(moto)
    token = LINKS.issue(PACKAGE)
    path = f"{PACKAGE_PATH}123456789012/fn-1.zip"
    assert _get(app, path, f"X-Amz-Expires=600&X-Amz-Signature={token}") == ("200 OK", PACKAGE)
    status, _ = _get(app, path, "X-Amz-Expires=600&X-Amz-Signature=guessed")
    assert status == "403 Forbidden"
    assert _get(app, "/2015-03-31/functions/fn", "") == ("200 OK", b"moto")


def test_the_bad_release_fails_every_run_on_the_setting_it_needs() -> None:
    bad = failing_release(PACKAGE, "m.handler")
    module: dict[str, Any] = {}
    exec(compile(read_zip(bad)["m.py"], "m.py", "exec"), module)
    with pytest.raises(KeyError, match=MISSING_SETTING):
        module["handler"]({}, None)
    assert failing_release(PACKAGE, "m.handler") == bad  # the same release each time
    with pytest.raises(FleetError, match=r"no other\.py"):
        failing_release(PACKAGE, "other.handler")
