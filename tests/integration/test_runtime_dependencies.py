"""The image carries only the runtime set: [project].dependencies, no extras, no dev group.

There is no Docker here, so this installs that set the way the image does (from uv.lock) into
a fresh virtualenv, with the project itself on top, and runs what the image's tasks run: a
stage worker and an MCP server. moto (the `embedded` extra) and pulumi (the `infra` extra)
must not be there, and nothing the tasks import may need them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
WHEEL_PACKAGES: list[str] = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
# The Pulumi program imports pulumi throughout, and importing infra/__main__ would run it.
RUNTIME_PACKAGES = [p for p in WHEEL_PACKAGES if p != "infra"]
# The modules outside infra/ that import moto at module level (emulator.py imports it
# lazily); they are only ever loaded by the embedded world.
NEEDS_MOTO = {
    "emulation.moto_patches",
    "emulation.lambda_packages",
    "emulation.cloudwatch_dimensions",
    "emulation.ec2_rule_descriptions",
    "emulation.sqs_costs",
    "emulation.request_costs",
    "emulation.moto_version",
    "emulation.iam_callers",
    "emulation.iam_sessions",
    "emulation.lambda_roles",
    "emulation.s3_access",
    "emulation.resource_policies",
    "emulation.cloudtrail",
}
# The embedded world's preloader, whose forked services take their titles with setproctitle
# (the embedded extra's too): it is only ever run by `fleet up`.
NEEDS_SETPROCTITLE = {"emulation.preloader"}


def _uv() -> str:
    pinned = PROJECT_ROOT / ".tools" / "bin" / "uv"
    found = str(pinned) if pinned.exists() else shutil.which("uv")
    if found is None:
        pytest.fail(
            "uv not found (neither .tools/bin/uv nor `uv` on PATH): run `make deps`, which "
            "installs the pinned uv into .tools/bin, then run this test again"
        )
    return found


def _run(
    args: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode == 0, (
        f"{what} failed (exit {result.returncode}): {' '.join(result.args)}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding the locked runtime set and the project (not editable)."""
    uv = _uv()
    root = tmp_path_factory.mktemp("runtime")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    # The test's own interpreter, never one uv would download.
    env["UV_PYTHON_DOWNLOADS"] = "never"
    requirements = root / "requirements.txt"
    venv = root / "venv"
    install = [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
    export = [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--quiet"]
    steps = [
        ("exporting the runtime set from uv.lock", [*export, "-o", str(requirements)]),
        ("creating the virtualenv", [uv, "venv", "--quiet", "--python", sys.executable, str(venv)]),
        ("installing the runtime set", [*install, "-r", str(requirements)]),
        ("installing the project without its dependencies", [*install, "--no-deps", "."]),
    ]
    for what, args in steps:
        # Minutes only on a cold uv cache (PyPI downloads); seconds otherwise.
        _check(_run(args, cwd=PROJECT_ROOT, env=env, timeout=600), what)
    return venv


def _task_env(venv: Path) -> dict[str, str]:
    """Roughly what an ECS task sees (the Dockerfile's ENV, a region): nothing of this venv."""
    return {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "FLEET_TARGET": "aws",
        "FLEET_STATE_DIR": str(venv.parent / "state"),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.mark.parametrize(
    ("command", "choices"),
    [("worker", "{supervisor,resolver,critic,watchdog}"), ("mcp", "{supervisor,resolver}")],
)
def test_the_image_commands_run_from_the_runtime_set(
    runtime_venv: Path, command: str, choices: str
) -> None:
    result = _run(
        [str(runtime_venv / "bin" / "fleet"), command, "--help"],
        # Outside the checkout, so only the installed project can be imported.
        cwd=runtime_venv.parent,
        env=_task_env(runtime_venv),
        timeout=120,
    )
    _check(result, f"fleet {command} --help")
    assert f"usage: fleet {command}" in result.stdout
    assert choices in result.stdout


@pytest.mark.parametrize("module", ["moto", "pulumi", "pulumi_aws"])
def test_moto_and_pulumi_are_not_in_the_runtime_set(runtime_venv: Path, module: str) -> None:
    result = _run(
        [str(runtime_venv / "bin" / "python"), "-c", f"import {module}"],
        cwd=runtime_venv.parent,
        env=_task_env(runtime_venv),
        timeout=60,
    )
    assert result.returncode != 0, f"`import {module}` worked: the runtime set carries it"
    assert f"No module named '{module}'" in result.stderr


IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys
failed = {}
for package in sys.argv[1:]:
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed[info.name] = repr(exc)
print(json.dumps(failed))
"""


def test_every_module_but_the_embedded_worlds_and_infras_imports_without_extras(
    runtime_venv: Path,
) -> None:
    """--help only parses arguments; the handlers, servers and console load lazily."""
    result = _run(
        [str(runtime_venv / "bin" / "python"), "-c", IMPORT_EVERY_MODULE, *RUNTIME_PACKAGES],
        cwd=runtime_venv.parent,
        env=_task_env(runtime_venv),
        timeout=300,
    )
    _check(result, "importing every module")
    failed = json.loads(result.stdout)
    assert set(failed) == NEEDS_MOTO | NEEDS_SETPROCTITLE, f"failing without the extras: {failed}"
    assert all("No module named 'moto'" in failed[m] for m in NEEDS_MOTO)
    assert all("No module named 'setproctitle'" in failed[m] for m in NEEDS_SETPROCTITLE)


REQUIREMENTS_OF_THE_PROJECT = (
    "import importlib.metadata as m, json; print(json.dumps(m.requires('incident-fleet')))"
)


def test_moto_comes_with_the_embedded_extra_and_pulumi_with_infra(runtime_venv: Path) -> None:
    # What `pip install 'incident-fleet[embedded]'` reads: the installed project's metadata.
    result = _run(
        [str(runtime_venv / "bin" / "python"), "-c", REQUIREMENTS_OF_THE_PROJECT],
        cwd=runtime_venv.parent,
        env=_task_env(runtime_venv),
        timeout=60,
    )
    _check(result, "reading the project's metadata")
    # "name[extras]specifier; extra == 'x'", spaces and quotes as the build backend wrote them.
    requires = {re.sub(r"[\s'\"]", "", r) for r in json.loads(result.stdout)}
    assert "moto[server]==5.2.5;extra==embedded" in requires, requires
    assert any(re.fullmatch(r"pulumi>=[\d.]+;extra==infra", r) for r in requires), requires
    assert any(re.fullmatch(r"pulumi-aws>=[\d.]+;extra==infra", r) for r in requires), requires
    assert not any(r.startswith(("moto", "pulumi")) and ";" not in r for r in requires), requires

    # What `make deps` and the image install: the lock.
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    (project,) = [p for p in lock["package"] if p["name"] == "incident-fleet"]
    runtime = {d["name"] for d in project["dependencies"]}
    extras = {
        name: {d["name"] for d in deps} for name, deps in project["optional-dependencies"].items()
    }
    assert not runtime & {"moto", "pulumi", "pulumi-aws"}, runtime
    # The embedded extra: moto, the preloader's titles, and the emulator's HTTP server.
    assert extras == {
        "embedded": {"moto", "setproctitle", "waitress"},
        "infra": {"pulumi", "pulumi-aws"},
    }


def test_the_image_copies_every_package_of_the_wheel() -> None:
    """A package the Dockerfile leaves out is silently missing from the image's wheel."""
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, flags=re.MULTILINE))
    assert copied == set(WHEEL_PACKAGES), (
        f"Dockerfile copies {sorted(copied)}; the wheel lists {sorted(WHEEL_PACKAGES)}"
    )
