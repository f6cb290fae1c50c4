from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def alarm_fixture() -> dict[str, Any]:
    return dict(json.loads((FIXTURES / "cloudwatch-alarm-message.json").read_text()))


@pytest.fixture(scope="session")
def envelope_fixture() -> dict[str, Any]:
    return dict(json.loads((FIXTURES / "sqs-body-sns-envelope-alarm.json").read_text()))
