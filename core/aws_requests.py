"""Every AWS request this process sends, counted by service and operation, and the DynamoDB
request units they are billed.

Each attempt counts, retries included: that is what AWS meters, bills and throttles, and
what no machine's speed changes (`make bench` reports it per message and per alert beside
the seconds). botocore emits `request-created.<service>.<Operation>` once per attempt; every
client made by `core.aws.client` is registered here.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter, defaultdict
from typing import Any

# A process's counter reporting itself (the runtime's metrics flush) is not its work.
SELF_REPORTING = frozenset({("cloudwatch", "PutMetricData")})


class RequestCounter:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def on_request_created(self, event_name: str, **_kwargs: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        with self._lock:
            self._counts[(service, operation)] += 1

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self._counts)


def sent_between(before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]) -> int:
    """Requests sent between two snapshots, the self-reporting ones left out."""
    return sum(after[key] - before.get(key, 0) for key in after if key not in SELF_REPORTING)


def sent_to(service: str, before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]) -> int:
    """Requests sent to one service (botocore's name: "sqs", "dynamodb") between two
    snapshots, the self-reporting ones included (what the service bills)."""
    return sum(n - before.get(key, 0) for key, n in after.items() if key[0] == service)


REQUESTS = RequestCounter()

# DynamoDB on demand bills request units, not requests: a write unit per item written, per KB
# rounded up, and two per item in a transaction; a read unit per strongly consistent read of
# up to 4 KB, half for an eventually consistent one, and two per item in a transaction
# ("Read/write capacity mode", https://docs.aws.amazon.com/amazondynamodb/latest/
# developerguide/HowItWorks.ReadWriteCapacityMode.html). Counted from what each request
# asks, before it is sent (so retries are not counted twice, and refused conditional writes
# are: a failed condition still consumes its write). An update or delete is counted as one
# unit, and a query or scan as one read of 4 KB: the item's stored size is not in the
# request, so for items over 1 KB (4 KB) these are lower bounds.
WRITE_UNITS = "DynamoDBWriteUnits"
READ_UNITS = "DynamoDBReadUnits"
_SINGLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_SINGLE_READS = frozenset({"GetItem", "Query", "Scan"})


def _kb(item: Any, per: int) -> int:
    """Units of `per` bytes an item takes (names and values, as the request carries them)."""
    return max(1, math.ceil(len(json.dumps(item, default=str)) / per))


def request_units(operation: str, params: dict[str, Any]) -> dict[str, float]:
    """The DynamoDB request units a request with these parameters is billed (see above)."""
    units: dict[str, float] = defaultdict(float)
    if operation in _SINGLE_WRITES:
        units[WRITE_UNITS] += _kb(params.get("Item", {}), 1024) if operation == "PutItem" else 1
    elif operation == "BatchWriteItem":
        for requests in params.get("RequestItems", {}).values():
            for r in requests:
                units[WRITE_UNITS] += _kb(r["PutRequest"]["Item"], 1024) if "PutRequest" in r else 1
    elif operation == "TransactWriteItems":
        for entry in params.get("TransactItems", []):
            units[WRITE_UNITS] += 2 * (_kb(entry["Put"]["Item"], 1024) if "Put" in entry else 1)
    elif operation in _SINGLE_READS:
        units[READ_UNITS] += 1 if params.get("ConsistentRead") else 0.5
    elif operation == "BatchGetItem":
        for table in params.get("RequestItems", {}).values():
            each = 1 if table.get("ConsistentRead") else 0.5
            units[READ_UNITS] += each * len(table.get("Keys", []))
    elif operation == "TransactGetItems":
        units[READ_UNITS] += 2 * len(params.get("TransactItems", []))
    return dict(units)


class UnitCounter:
    def __init__(self) -> None:
        self._units: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def on_parameters(self, params: dict[str, Any], model: Any, **_kwargs: Any) -> None:
        units = request_units(model.name, params)
        with self._lock:
            for name, n in units.items():
                self._units[name] += n

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._units)


UNITS = UnitCounter()


def count_requests(client: Any) -> Any:
    client.meta.events.register("request-created", REQUESTS.on_request_created)
    if client.meta.service_model.service_name == "dynamodb":
        client.meta.events.register("before-parameter-build.dynamodb", UNITS.on_parameters)
    return client
