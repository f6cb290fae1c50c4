"""`--json` output: what every read command prints for scripts instead of its table."""

from __future__ import annotations

import json
from typing import Any


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
