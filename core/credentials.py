"""The AWS keys a process of the embedded world holds, and the files they travel in.

`fleet up` (the launcher) keeps every principal's keys, the bootstrap admin's among them, in
its own store in the state directory. It hands each child a file of its own, named by
FLEET_CREDENTIALS_FILE, that holds that child's principal's keys and nothing else. A command
at a shell (the CLI) holds the operator's. A harness that starts its own world acts as its
launcher: it points its settings at the store (:func:`as_launcher`), and nothing else does.

All of this runs as one Unix user, so it keeps a process from acting as another identity by
mistake; it does not stop a process that reads another's file on purpose.
On AWS none of it applies: each task has its role, through the standard credential chain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from core.errors import FleetError
from core.principals import Principal
from core.settings import Settings

AccessKeys = dict[str, str]


class WorldNotRunningError(FleetError):
    pass


class WrongPrincipalError(FleetError):
    """A process asked for the clients of a principal whose keys it was not handed."""


class OwnCredentials(BaseModel):
    """The file a process is handed: one principal and its keys."""

    principal: Principal
    keys: AccessKeys


class LauncherCredentials(BaseModel):
    """The launcher's store: every principal's keys."""

    principals: dict[Principal, AccessKeys]


class HeldCredentials(BaseModel):
    """What one process holds, and where it read it from."""

    path: Path
    keys: dict[Principal, AccessKeys]
    launcher: bool

    def keys_for(self, principal: Principal) -> AccessKeys:
        if principal in self.keys:
            return self.keys[principal]
        if self.launcher:
            raise WorldNotRunningError(
                f"the embedded world issued no credentials for {principal.value!r} "
                f"(in {self.path}); restart it with `fleet down && fleet up`"
            )
        held = ", ".join(repr(p.value) for p in self.keys)
        raise WrongPrincipalError(
            f"this process holds the credentials of {held} only (from {self.path}), and asked "
            f"to act as {principal.value!r}: each process of the embedded world is handed "
            f"its own principal's keys (FLEET_CREDENTIALS_FILE), and a command at a shell "
            f"acts as the operator"
        )


def held_credentials_file(settings: Settings) -> Path:
    """FLEET_CREDENTIALS_FILE (a child's own file, or a harness's launcher store); unset, the
    operator's: a command run at a shell acts for the person at it."""
    return settings.credentials_file or settings.issued_credentials_file(Principal.OPERATOR)


def load_held_credentials(settings: Settings) -> HeldCredentials:
    path = held_credentials_file(settings)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise WorldNotRunningError(
            f"no embedded world credentials at {path}: start the world with `fleet up`"
        ) from None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and "principals" in data:
            store = LauncherCredentials.model_validate(data)
            return HeldCredentials(path=path, keys=store.principals, launcher=True)
        own = OwnCredentials.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise FleetError(f"{path} is not a credentials file of the embedded world: {exc}") from None
    return HeldCredentials(path=path, keys={own.principal: own.keys}, launcher=False)


def as_launcher(settings: Settings) -> Settings:
    """These settings, holding every principal's keys: for `fleet up` itself and for a harness
    that started the world (tests, game days, the survival suite, bench). Never a child's."""
    return settings.model_copy(update={"credentials_file": settings.launcher_credentials_file})


def read_launcher_store(settings: Settings) -> dict[Principal, AccessKeys]:
    """Every key the world issued, from the launcher's store."""
    try:
        text = settings.launcher_credentials_file.read_text()
    except FileNotFoundError:
        raise WorldNotRunningError(
            f"no launcher credentials at {settings.launcher_credentials_file}: "
            "start the world with `fleet up`"
        ) from None
    return LauncherCredentials.model_validate_json(text).principals


def write_launcher_store(settings: Settings, issued: dict[Principal, AccessKeys]) -> None:
    _write_private(
        settings.launcher_credentials_file,
        LauncherCredentials(principals=issued).model_dump(mode="json"),
    )


def write_own_credentials(settings: Settings, principal: Principal, keys: AccessKeys) -> Path:
    """The file handed to the processes of one principal: its keys only (mode 0600)."""
    path = settings.issued_credentials_file(principal)
    _write_private(path, OwnCredentials(principal=principal, keys=keys).model_dump(mode="json"))
    return path


def remove_issued_credentials(settings: Settings) -> None:
    settings.launcher_credentials_file.unlink(missing_ok=True)
    for principal in Principal:
        settings.issued_credentials_file(principal).unlink(missing_ok=True)
    directory = settings.issued_credentials_file(Principal.OPERATOR).parent
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def _write_private(path: Path, data: object) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    tmp.replace(path)


def holding_own_keys(settings: Settings, principal: Principal) -> Settings:
    """A service started by `fleet up` is handed its own credentials file; started by hand,
    it takes its own principal's file from the state directory (never the operator's, which
    a command at a shell holds)."""
    if settings.credentials_file is not None:
        return settings
    own = settings.issued_credentials_file(principal)
    return settings.model_copy(update={"credentials_file": own})
