"""The `data-processor` Lambda: the workload the fleet protects.

A real Lambda handler (the same file is deployed to AWS by infra/): it reads a batch from
its S3 bucket, writes the result back, puts a custom metric, keeps an audit record of the
batch in its log group, and reports its own failures to the `incident-alerts` topic.
Configuration comes from its environment, as on Lambda; boto3 finds the endpoint and the
execution role's credentials there too.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from typing import Any

import boto3

s3 = boto3.client("s3")
cloudwatch = boto3.client("cloudwatch")
logs = boto3.client("logs")
sns = boto3.client("sns")

AUDIT_STREAM = "batch-audit"


class ReportLimit:
    """When a failed run is worth a report. The first failure of an error type after a
    clean run is always reported (a new fault is news, the earliest honest signal there
    is); while the function keeps failing the same way, once per interval (it runs every
    second, and its own alerts must not become a storm)."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def due(self, error_type: str, now: float, interval_s: float) -> bool:
        last = self.last.get(error_type)
        return last is None or now - last >= interval_s

    def reported(self, error_type: str, now: float) -> None:
        self.last[error_type] = now

    def clean_run(self) -> None:
        self.last.clear()


# Per execution environment, as any module state on Lambda.
_reports = ReportLimit()


def _process(function_name: str) -> dict[str, Any]:
    bucket = os.environ["DATA_BUCKET"]
    prefix = os.environ.get("DATA_PREFIX", "")
    batch = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}input/batch.json")["Body"].read())
    records = batch["records"]
    # Stands for the real work of a run; long enough that a 1 s timeout cuts it short.
    time.sleep(float(os.environ.get("WORK_SECONDS", "0")))
    result = {"batch": batch.get("batch_id"), "count": len(records), "total": sum(records)}
    s3.put_object(
        Bucket=bucket, Key=f"{prefix}output/latest.json", Body=json.dumps(result).encode()
    )
    cloudwatch.put_metric_data(
        # The only namespace its role lets it write to (workload/spec.py, METRICS_NAMESPACE).
        Namespace="DataProcessor",
        MetricData=[
            {
                "MetricName": "RecordsProcessed",
                "Dimensions": [{"Name": "FunctionName", "Value": function_name}],
                "Value": float(len(records)),
                "Unit": "Count",
            }
        ],
    )
    log_group = f"/aws/lambda/{function_name}"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_stream(logGroupName=log_group, logStreamName=AUDIT_STREAM)
    logs.put_log_events(
        logGroupName=log_group,
        logStreamName=AUDIT_STREAM,
        logEvents=[{"timestamp": int(time.time() * 1000), "message": json.dumps(result)}],
    )
    return result


def _report_failure(function_name: str, request_id: str, exc: BaseException) -> None:
    topic = os.environ.get("ALERTS_TOPIC_ARN")
    error_type = type(exc).__name__
    now = time.monotonic()
    interval = float(os.environ.get("FAILURE_REPORT_INTERVAL_S", "60"))
    if not topic or not _reports.due(error_type, now, interval):
        return
    report = {
        "report_type": "lambda.failure",
        "function_name": function_name,
        "request_id": request_id,
        "error_type": error_type,
        "error_message": str(exc)[:2000],
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        sns.publish(
            TopicArn=topic,
            Subject=f"FAILURE: {function_name}",
            Message=json.dumps(report),
            MessageAttributes={
                "report_type": {"DataType": "String", "StringValue": "lambda.failure"}
            },
        )
        _reports.reported(error_type, now)
    except Exception as report_exc:  # the report is best effort; the run's error stands
        print(f"could not report the failure: {type(report_exc).__name__}: {report_exc}")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "data-processor")
    request_id = getattr(context, "aws_request_id", "unknown")
    try:
        result = _process(function_name)
    except Exception as exc:
        print(f"[ERROR] {type(exc).__name__}: {exc}")
        traceback.print_exc()
        _report_failure(function_name, request_id, exc)
        raise
    _reports.clean_run()
    print(f"processed batch {result['batch']}: {result['count']} records")
    return result
