"""Where an execution environment's code comes from: the deployed package, nothing else.

As Lambda does, the local runtime fetches the package of the version it invokes (from
GetFunction's `Code.Location`), checks it against `CodeSha256`, and unpacks it into a task
directory, one per code hash (its `/var/task`). The bootstrap (emulation/lambda_environment.py)
is copied into a runtime directory of its own (its `/var/runtime`) and run as a script
without `site`, so the project's source - on `sys.path` through the virtualenv's editable
install - is not importable: the handler sees its task directory, the bootstrap, and the
installed libraries (boto3, as Lambda's Python runtime provides it).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import sys
import sysconfig
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.lambda_package import download

BOOTSTRAP_SOURCE = Path(__file__).with_name("lambda_environment.py")


class TaskCache:
    """Task directories per code hash, and the runtime directory, under the state dir."""

    def __init__(self, root: Path):
        self.root = root
        self.tasks = root / "tasks"
        self.runtime = root / "runtime"

    def task_dir(self, function: Mapping[str, Any]) -> Path:
        """The unpacked package of this GetFunction answer, fetched if not yet cached."""
        sha256 = function["Configuration"]["CodeSha256"]
        # base64 has "/" and "+": the hex digest names the directory.
        name = base64.b64decode(sha256, validate=True).hex()
        target = self.tasks / name
        if target.is_dir():
            return target
        package = download(function["Code"]["Location"], sha256)
        self.tasks.mkdir(parents=True, exist_ok=True)
        unpacking = self.tasks / f".{name}.{uuid.uuid4().hex}"
        with zipfile.ZipFile(io.BytesIO(package)) as zf:
            zf.extractall(unpacking)  # zipfile drops absolute paths and ".." parts
        try:
            unpacking.rename(target)
        except OSError:  # another function with the same code unpacked it first
            shutil.rmtree(unpacking, ignore_errors=True)
        return target

    def bootstrap(self) -> Path:
        """The bootstrap, copied apart from the project's source (refreshed if it changed)."""
        self.runtime.mkdir(parents=True, exist_ok=True)
        target = self.runtime / "bootstrap.py"
        source = BOOTSTRAP_SOURCE.read_bytes()
        if not target.exists() or target.read_bytes() != source:
            staging = self.runtime / f".bootstrap.{uuid.uuid4().hex}"
            staging.write_bytes(source)
            staging.replace(target)
        return target


def bootstrap_command(bootstrap: Path) -> list[str]:
    # -S: no site, so no .pth file (the editable install's puts the project on sys.path).
    return [sys.executable, "-S", str(bootstrap)]


def python_path(task_dir: Path) -> str:
    """The task directory first, then the installed libraries, as on Lambda."""
    paths = sysconfig.get_paths()
    libraries = dict.fromkeys([paths["purelib"], paths["platlib"]])
    return os.pathsep.join([str(task_dir), *libraries])
