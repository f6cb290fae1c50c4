"""The real `fleet` CLI, as the tests run it: the worlds it starts itself (`fleet gameday`)
take reserved ports (tests/ports.py) instead of ephemeral ones, so worlds started side by
side never race for a port."""

from __future__ import annotations

import chaos.gameday
from fleet.cli import main
from tests.ports import reserve_port

chaos.gameday.free_port = reserve_port  # type: ignore[attr-defined]

if __name__ == "__main__":
    raise SystemExit(main())
