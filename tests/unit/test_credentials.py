"""Each process holds one principal's keys; asking for another's is a mistake caught, by name."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.aws import Clients
from core.credentials import (
    WrongPrincipalError,
    as_launcher,
    holding_own_keys,
    write_launcher_store,
    write_own_credentials,
)
from core.principals import Principal
from core.settings import Settings
from emulation.world import child_environment


def _keys(principal: Principal) -> dict[str, str]:
    return {"AccessKeyId": f"AKIA{principal.name:0<16}"[:20], "SecretAccessKey": "s" * 40}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A state directory as `fleet up` leaves it: the launcher's store and every own file."""
    settings = Settings(state_dir=tmp_path)
    write_launcher_store(settings, {p: _keys(p) for p in Principal})
    for principal in Principal:
        if principal != Principal.ADMIN:
            write_own_credentials(settings, principal, _keys(principal))
    return settings


def test_a_process_handed_one_principal_cannot_act_as_another(settings: Settings) -> None:
    own = settings.issued_credentials_file(Principal.SUPERVISOR)
    supervisor = settings.model_copy(update={"credentials_file": own})
    held = Clients(Principal.SUPERVISOR, supervisor).session.get_credentials()
    assert held.access_key == _keys(Principal.SUPERVISOR)["AccessKeyId"]
    with pytest.raises(WrongPrincipalError) as refused:
        Clients(Principal.OPERATOR, supervisor)("sqs")
    message = str(refused.value)
    assert "'supervisor'" in message and "'operator'" in message and str(own) in message


def test_a_command_at_a_shell_holds_the_operators_keys_only(settings: Settings) -> None:
    assert settings.credentials_file is None
    Clients(Principal.OPERATOR, settings)("sqs")
    with pytest.raises(WrongPrincipalError, match=r"'operator' only .* act as 'admin'"):
        Clients(Principal.ADMIN, settings)("iam")


def test_the_launcher_holds_every_principals_keys(settings: Settings) -> None:
    launcher = as_launcher(settings)
    for principal in Principal:
        key = Clients(principal, launcher).session.get_credentials().access_key
        assert key == _keys(principal)["AccessKeyId"]


def test_a_child_is_handed_its_own_file_and_never_the_launchers(settings: Settings) -> None:
    launcher = as_launcher(settings)
    env = child_environment(launcher, Principal.MCP_RESOLVER)
    own = Path(env["FLEET_CREDENTIALS_FILE"])
    assert own == settings.issued_credentials_file(Principal.MCP_RESOLVER).resolve()
    assert stat.S_IMODE(own.stat().st_mode) == 0o600
    assert own.read_text().count("AccessKeyId") == 1
    store = str(settings.launcher_credentials_file.name)
    assert not [k for k, v in env.items() if store in v]
    # The emulator holds no fleet identity: no credentials file at all.
    assert "FLEET_CREDENTIALS_FILE" not in child_environment(launcher, None)


def test_a_service_started_by_hand_takes_its_own_principals_file(settings: Settings) -> None:
    console = holding_own_keys(settings, Principal.CONSOLE)
    assert console.credentials_file == settings.issued_credentials_file(Principal.CONSOLE)
    with pytest.raises(WrongPrincipalError):
        Clients(Principal.OPERATOR, console)("sqs")
    handed = settings.model_copy(update={"credentials_file": Path("/handed/over.json")})
    assert holding_own_keys(handed, Principal.CONSOLE).credentials_file == Path("/handed/over.json")
