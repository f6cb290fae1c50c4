"""The offline model's diagnosis runbook: what an SRE checks, in order, for a failing Lambda.

Metrics first (errors? throttles?), then the newest error in the logs, then the one system
that error points at: the role's statements for an access denial, the security groups for
a connect timeout, the configuration for a missing resource, the reserved concurrency for
throttles. A run that times out has two usual causes, and its log line is the same for
both: a timeout set too low (the timeout differs from the baseline) or a call that hangs
because the network is blocked (egress differs from the baseline; the run is cut at its
full, unchanged limit). The baseline comparison tells them apart. Every claim quotes the
tool output it rests on. Log lines are matched against known error signatures only:
whatever else they say is never acted on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from incidents.diagnosis import FaultType
from workers.agents.offline_model import Step, ToolResult, Transcript

METRICS_MINUTES = 5
LOG_MINUTES = 5

ACCESS_DENIED = ("accessdenied", "not authorized to perform", "access denied")
NETWORK = ("connecttimeout", "connect timeout", "endpointconnectionerror", "could not connect")
TIMED_OUT = ("task timed out",)
CONFIG = ("nosuchbucket", "nosuchkey", "invalidbucketname", "keyerror", "paramvalidation")


@dataclass
class Finding:
    fault: FaultType
    claim: str
    confidence: float
    evidence: list[dict[str, str]] = field(default_factory=list)


def _quote(result: ToolResult, pattern: str) -> str | None:
    """An exact excerpt of the tool's output matching `pattern`, to cite."""
    match = re.search(pattern, result.text, re.I)
    return match.group(0) if match else None


def _cite(result: ToolResult, claim: str, pattern: str) -> list[dict[str, str]]:
    quote = _quote(result, pattern)
    return [{"claim": claim, "tool_call_id": result.call_id, "quote": quote}] if quote else []


def _since(alert: dict[str, Any]) -> str:
    """Evidence older than this predates the incident (an earlier fault, already fixed)."""
    since = str(alert.get("symptom_since") or "")
    try:
        return datetime.fromisoformat(since).astimezone(UTC).isoformat()
    except ValueError:
        return ""


def _total(metrics: Any, name: str, since: str, statistic: str = "Sum") -> float:
    for series in (metrics or {}).get("series", []):
        if series.get("metric") == name and series.get("statistic") == statistic:
            return float(sum(v for at, v in series.get("datapoints", []) if at >= since[:19]))
    return 0.0


def _metric_pattern(name: str) -> str:
    return rf'"metric":\s*"{name}",\s*"statistic":\s*"Sum",\s*"total":\s*(?:null|[0-9.]+)'


def _error_lines(result: ToolResult, since: str) -> list[str]:
    data = result.data() or {}
    return [e.get("message", "") for e in data.get("events", []) if e.get("timestamp", "") >= since]


def _classifiable(lines: list[str]) -> list[str]:
    """Lines with a known error signature, oldest first; the runtime's JSON error record
    repeats the line before it, so plain lines are preferred."""
    known = [line for line in lines if _signature(line)]
    plain = [line for line in known if not line.lstrip().startswith("{")]
    return plain or known


def _signature(line: str) -> tuple[str, ...] | None:
    low = line.lower()
    for signature in (ACCESS_DENIED, NETWORK, TIMED_OUT, CONFIG):
        if any(s in low for s in signature):
            return signature
    return None


# S3 answers a denial with a bare "Access Denied": the operation names the action.
S3_OPERATIONS = ("GetObject", "PutObject", "HeadObject", "DeleteObject", "ListObjectsV2")


def _denied_action(line: str) -> str | None:
    match = re.search(r"perform:?\s+([a-z0-9-]+:[A-Za-z0-9*]+)", line)
    if match:
        return match.group(1)
    match = re.search(r"calling the (\w+) operation", line)
    if match and match.group(1) in S3_OPERATIONS:
        return f"s3:{match.group(1)}"
    return None


def _covers(statement: dict[str, Any], action: str) -> bool:
    return any(fnmatchcase(action.lower(), a.lower()) for a in statement.get("actions", []))


def _line_excerpt(line: str) -> str:
    """The part of a log line to quote: the stretch around its error signature that JSON
    escaping leaves unchanged (no quotes, no backslashes)."""
    parts = [p for p in re.split(r'["\\]', line.strip()) if p.strip()]
    keyed = [p for p in parts if _signature(p)]
    return max(keyed or parts or [line], key=len)[:160]


def _final(fn: str, findings: list[Finding], summary: str) -> Step:
    faults = sorted({f.fault for f in findings}, key=list(FaultType).index)
    confidence = min((f.confidence for f in findings), default=0.2)
    healthy = faults == [FaultType.NONE]
    draft = {
        "function_name": fn,
        "root_cause": "; ".join(f.claim for f in findings) or summary,
        "fault_types": [f.value for f in faults],
        "severity": "low" if healthy else "high",
        "confidence": confidence,
        "evidence": [e for f in findings for e in f.evidence],
    }
    return Step(summary, "DiagnosisDraft", draft)


def diagnose(t: Transcript) -> Step:
    alert = t.task_data()
    fn = str(alert.get("function_name", ""))
    metrics = t.last("lambda_metrics")
    if metrics is None:
        return Step(
            "Start with the function's invocations, errors and throttles.",
            "lambda_metrics",
            {"function_name": fn, "minutes": METRICS_MINUTES},
        )
    m = metrics.data() if metrics.ok else None
    since = _since(alert)
    errors, throttles = _total(m, "Errors", since), _total(m, "Throttles", since)
    findings: list[Finding] = []

    if throttles > 0:
        config = t.last("function_configuration")
        if config is None:
            return Step(
                "Runs are throttled: read the reserved concurrency.",
                "function_configuration",
                {"function_name": fn},
            )
        reserved = (config.data() or {}).get("reserved_concurrency")
        if reserved == 0:
            findings.append(
                Finding(
                    FaultType.CONCURRENCY_THROTTLED,
                    "reserved concurrency is 0, so every invocation is throttled",
                    0.9,
                    _cite(metrics, "invocations are being throttled", _metric_pattern("Throttles"))
                    + _cite(
                        config,
                        "reserved concurrency is set to 0",
                        r'"reserved_concurrency":\s*0\b',
                    ),
                )
            )

    logs = t.last("recent_log_events", pattern="error")
    if errors > 0 or throttles == 0:
        if logs is None:
            return Step(
                "Read the newest errors in the function's logs.",
                "recent_log_events",
                {"function_name": fn, "minutes": LOG_MINUTES, "pattern": "error", "limit": 20},
            )
        lines = _classifiable(_error_lines(logs, since))
        if not lines and errors > 0:
            timed = t.last("recent_log_events", pattern="timed out")
            if timed is None:
                return Step(
                    "Errors without an error line: look for timeouts.",
                    "recent_log_events",
                    {
                        "function_name": fn,
                        "minutes": LOG_MINUTES,
                        "pattern": "timed out",
                        "limit": 20,
                    },
                )
            logs = timed
            lines = _classifiable(_error_lines(timed, since))
        if lines:
            step = _explain(t, fn, metrics, logs, lines[-1], findings)
            if step is not None:
                return step
        elif errors == 0 and throttles == 0 and m is not None:
            # Healthy only on evidence: the metrics were read (a failed read proves nothing).
            findings.append(
                Finding(
                    FaultType.NONE,
                    "no errors or throttles since the symptom began and no error in the logs",
                    0.8,
                    _cite(metrics, "no invocation failed", _metric_pattern("Errors"))
                    + _cite(
                        logs,
                        "the logs were read: no error line since the symptom began",
                        r'"matched":\s*\d+',
                    ),
                )
            )
    if not findings:
        return _final(fn, [], "The evidence does not point at a known fault: a person should look.")
    return _final(fn, findings, "Diagnosis complete.")


def _explain(
    t: Transcript,
    fn: str,
    metrics: ToolResult,
    logs: ToolResult,
    line: str,
    findings: list[Finding],
) -> Step | None:
    """Follow the newest known error to the system it points at. A Step when a tool must
    be read first; None once the finding is recorded."""
    signature = _signature(line)
    error_cite = _cite(
        logs, "the function's runs fail with this error", re.escape(_line_excerpt(line))
    )
    failing = _cite(metrics, "invocations are failing", _metric_pattern("Errors"))
    if signature == ACCESS_DENIED:
        statements = t.last("role_statements")
        if statements is None:
            return Step(
                "An access denial: read the execution role's statements.",
                "role_statements",
                {"function_name": fn},
            )
        data = statements.data() or {}
        action = _denied_action(line)
        denies = [s for s in data.get("explicit_denies", []) if action and _covers(s, action)]
        allows = [
            s
            for s in data.get("statements", [])
            if s.get("effect") == "Allow" and action and _covers(s, action)
        ]
        if denies:
            source = denies[0]["source"]
            findings.append(
                Finding(
                    FaultType.IAM_EXPLICIT_DENY,
                    f"an explicit Deny ({source}) on the execution role blocks {action}",
                    0.9,
                    error_cite
                    + _cite(
                        statements,
                        f"the role carries a Deny covering {action}",
                        rf'"source":\s*"{re.escape(source)}"',
                    ),
                )
            )
        elif allows:
            # Allowed by the role and denied all the same: the request names a resource
            # the statement does not cover. What changed is what names the resource.
            config = t.last("function_configuration")
            if config is None:
                return Step(
                    f"The role allows {action}, yet it is denied: read the configuration "
                    "that names the resources.",
                    "function_configuration",
                    {"function_name": fn},
                )
            findings.append(
                Finding(
                    FaultType.CONFIG_DRIFT,
                    f"the role allows {action} on its own resources, yet runs are denied: "
                    "the configuration names a resource outside them",
                    0.7,
                    error_cite
                    + _cite(
                        statements,
                        f"a statement allows {action}",
                        rf'"sid":\s*"{re.escape(str(allows[0].get("sid")))}"',
                    )
                    + _cite(
                        config, "the configuration was modified", r'"last_modified":\s*"[^"]*"'
                    ),
                )
            )
        else:
            findings.append(
                Finding(
                    FaultType.IAM_PERMISSION_MISSING,
                    f"the execution role no longer allows {action or 'the denied action'}",
                    0.85 if action else 0.5,
                    error_cite
                    + _cite(
                        statements,
                        f"no statement of the role allows {action}",
                        r'"inline_policy_names":\s*\[[^\]]*\]',
                    ),
                )
            )
    elif signature == NETWORK:
        groups = t.last("security_group_rules")
        if groups is None:
            return Step(
                "A connect timeout: read the security groups' egress.",
                "security_group_rules",
                {"function_name": fn},
            )
        if (groups.data() or {}).get("https_egress_to_anywhere") is False:
            findings.append(
                Finding(
                    FaultType.NETWORK_BLOCKED,
                    "the function's security groups allow no HTTPS egress, so AWS APIs are "
                    "unreachable",
                    0.9,
                    error_cite
                    + _cite(
                        groups,
                        "no egress rule allows HTTPS out",
                        r'"https_egress_to_anywhere":\s*false',
                    ),
                )
            )
        else:
            findings.append(
                Finding(
                    FaultType.NETWORK_BLOCKED, "connect timeouts with egress open", 0.4, error_cite
                )
            )
    elif signature in (TIMED_OUT, CONFIG):
        config = t.last("function_configuration")
        if config is None:
            return Step(
                "Read the function's configuration.",
                "function_configuration",
                {"function_name": fn},
            )
        data = config.data() or {}
        if signature == TIMED_OUT:
            compared = t.last("compare_with_baseline")
            if compared is None:
                return Step(
                    "Runs time out: compare the timeout and the network with the baseline.",
                    "compare_with_baseline",
                    {"function_name": fn},
                )
            findings += _timed_out(line, data.get("timeout_s"), config, compared, error_cite)
        else:
            findings.append(
                Finding(
                    FaultType.CONFIG_DRIFT,
                    "runs fail on a resource named by the function's configuration, which "
                    "changed recently",
                    0.7,
                    error_cite
                    + _cite(
                        config, "the configuration was modified", r'"last_modified":\s*"[^"]*"'
                    ),
                )
            )
    findings[-1].evidence[:0] = failing if findings and findings[-1].fault != FaultType.NONE else []
    return None


def _timed_out(
    line: str,
    timeout_s: Any,
    config: ToolResult,
    compared: ToolResult,
    error_cite: list[dict[str, str]],
) -> list[Finding]:
    """Why runs hit their timeout, from how the function differs from its baseline."""
    data = (compared.data() if compared.ok else None) or {}
    changed = (data.get("configuration") or {}).get("timeout_s")
    blocked = [g for g in (data.get("network") or {}).get("groups", []) if g.get("egress_missing")]
    match = re.search(r"timed out after ([0-9.]+) seconds", line)
    at_limit = bool(match and timeout_s is not None and float(match.group(1)) >= float(timeout_s))
    configured = _cite(config, "the configured timeout", r'"timeout_s":\s*\d+')
    findings = []
    if blocked:
        findings.append(
            Finding(
                FaultType.NETWORK_BLOCKED,
                f"{blocked[0].get('group_name')} lost egress rules its baseline has, so the "
                "function's AWS calls hang until its timeout"
                + (f" of {timeout_s}s cuts every run off at its limit" if at_limit else ""),
                0.85 if at_limit else 0.7,
                error_cite
                + _cite(
                    compared,
                    "egress rules of the baseline are missing",
                    r'"egress_missing":\s*\[\s*\{\s*"IpProtocol":\s*"[^"]*"',
                )
                + configured,
            )
        )
    if changed:
        findings.append(
            Finding(
                FaultType.TIMEOUT_MISCONFIGURED,
                f"the timeout was changed from the baseline's {changed[0]}s to {changed[1]}s, "
                "and runs are cut off by it",
                0.9,
                error_cite
                + _cite(
                    compared,
                    "the timeout differs from the baseline",
                    r'"timeout_s":\s*\[\s*\d+,\s*\d+\s*\]',
                ),
            )
        )
    if not findings:
        # Neither changed: the work itself got slower, or something else hangs. Not a fault
        # the fleet can restore; too weak to act on alone.
        findings.append(
            Finding(
                FaultType.TIMEOUT_MISCONFIGURED,
                f"runs are cut off by the function's timeout of {timeout_s}s, which matches the "
                "baseline, as does the network",
                0.4,
                error_cite + configured,
            )
        )
    return findings
