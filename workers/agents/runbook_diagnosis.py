"""The offline model's diagnosis runbook: drift first, then what the symptoms say.

An SRE asked why a function broke looks at two things: what changed, and what fails. So:
the metrics (errors? throttles?), the comparison of every concern the baseline records
with the live account (IAM, concurrency, network, configuration, the deployed code), and
the newest error lines in the logs. Every drift that can explain a symptom is a fault to
restore, however many there are (two faults at once are two findings, fixed together), and
a drift is in plain sight even when the fault silences the function's own logs. A symptom
that no drift explains stays open as a finding: with the account at its baseline, runs that
fail on their input or in their own code are called what they are, and nothing is changed.

Every claim quotes the tool output it rests on. Log lines are matched against known error
signatures only: whatever else they say is never acted on.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from incidents.diagnosis import FaultType
from workers.agents.offline_model import Step, ToolResult, Transcript
from workers.agents.runbook_changes import cite_who_changed
from workers.agents.runbook_findings import Account, Finding, cite

METRICS_MINUTES = 5
LOG_MINUTES = 5
CHANGES_MINUTES = 60  # how far back a change may have caused the incident

ACCESS_DENIED = ("accessdenied", "not authorized to perform", "access denied")
NETWORK = ("connecttimeout", "connect timeout", "endpointconnectionerror", "could not connect")
TIMED_OUT = ("task timed out",)
INPUT = ("nosuchkey", "the specified key does not exist")
CONFIG = ("nosuchbucket", "invalidbucketname", "keyerror", "paramvalidation")
# Any other error the runtime records: the function's own code raised it.
CODE = ("error", "exception", "traceback")
SIGNATURES = (ACCESS_DENIED, NETWORK, TIMED_OUT, INPUT, CONFIG, CODE)

# Which drifts can produce which symptom (a bad deploy can produce any error).
EXPLAINS: dict[tuple[str, ...], tuple[str, ...]] = {
    ACCESS_DENIED: ("iam", "configuration", "deployment"),
    NETWORK: ("network", "configuration", "deployment"),
    TIMED_OUT: ("network", "configuration", "deployment"),
    INPUT: ("configuration", "deployment"),
    CONFIG: ("configuration", "deployment"),
    CODE: ("configuration", "deployment"),
}
CONCERNS = ("iam", "concurrency", "network", "configuration", "deployment")


def _since(alert: dict[str, Any]) -> str:
    """Evidence older than this predates the symptom (an earlier fault, already fixed)."""
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


def _signature(line: str) -> tuple[str, ...] | None:
    low = line.lower()
    for signature in SIGNATURES:
        if any(s in low for s in signature):
            return signature
    return None


def _classifiable(lines: list[str]) -> list[str]:
    """Lines with a known error signature, oldest first; the runtime's JSON error record
    repeats the line before it, so plain lines are preferred."""
    known = [line for line in lines if _signature(line)]
    plain = [line for line in known if not line.lstrip().startswith("{")]
    return plain or known


def _line_excerpt(line: str) -> str:
    """The part of a log line to quote: the stretch around its error signature that JSON
    escaping leaves unchanged (no quotes, no backslashes)."""
    parts = [p for p in re.split(r'["\\]', line.strip()) if p.strip()]
    keyed = [p for p in parts if _signature(p)]
    return max(keyed or parts or [line], key=len)[:160]


# ---------------------------------------------------------------- the drifts


def _drift_findings(compared: ToolResult, data: dict[str, Any], account: Account) -> list[Finding]:
    """One finding per drift that can break a run; drifts that only widen (an added Allow,
    an added egress rule, a longer timeout) are reported, not called faults."""
    version = data.get("baseline_version")
    findings: list[Finding] = []
    iam = data.get("iam") or {}
    if not iam.get("at_baseline", True):
        gone = iam.get("missing_policies") or []
        denies = iam.get("explicit_denies") or []
        missing = iam.get("missing_statements") or []
        lost = gone + [str(s.get("Sid") or s.get("Action")) for s in missing]
        if denies:
            sources = ", ".join(sorted({str(s.get("Sid") or "a statement") for s in denies}))
            account.drifts.append(f"iam: an explicit Deny not in baseline v{version} ({sources})")
            findings.append(
                Finding(
                    FaultType.IAM_EXPLICIT_DENY,
                    f"the execution role carries an explicit Deny its baseline does not have "
                    f"({sources})",
                    0.9,
                    cite(
                        compared,
                        "a Deny the baseline does not have",
                        r'"explicit_denies":\s*\[\s*\{',
                    ),
                    "iam",
                )
            )
        if lost:
            account.drifts.append(
                f"iam: {', '.join(lost)} of baseline v{version} missing from the role"
            )
            findings.append(
                Finding(
                    FaultType.IAM_PERMISSION_MISSING,
                    f"the execution role lost permissions its baseline grants ({', '.join(lost)})",
                    0.9,
                    cite(
                        compared,
                        "policies or statements of the baseline are missing",
                        r'"missing_(?:policies|statements)":\s*\[\s*[\{"]',
                    ),
                    "iam",
                )
            )
        if not (denies or lost):
            account.drifts.append(
                "iam: the role has policies or statements beyond its baseline (wider, not a "
                "cause of failure)"
            )
    concurrency = data.get("concurrency") or {}
    if not concurrency.get("at_baseline", True):
        was, now = concurrency.get("baseline"), concurrency.get("current")
        account.drifts.append(f"concurrency: reserved {now} (baseline {was})")
        if now is not None and (was is None or now < was):
            findings.append(
                Finding(
                    FaultType.CONCURRENCY_THROTTLED,
                    f"reserved concurrency is {now}, below its baseline ({was}), so runs are "
                    "throttled",
                    0.9,
                    cite(
                        compared,
                        "reserved concurrency differs from the baseline",
                        r'"current":\s*-?\d+',
                    ),
                    "concurrency",
                )
            )
    network = data.get("network") or {}
    if not network.get("at_baseline", True):
        for group in network.get("groups", []):
            if group.get("egress_missing"):
                name = group.get("group_name")
                account.drifts.append(f"network: {name} lost egress rules of its baseline")
                findings.append(
                    Finding(
                        FaultType.NETWORK_BLOCKED,
                        f"{name} lost egress rules its baseline has, so the function's AWS "
                        "calls cannot get out",
                        0.9,
                        cite(
                            compared,
                            "egress rules of the baseline are missing",
                            r'"egress_missing":\s*\[\s*\{\s*"IpProtocol":\s*"[^"]*"',
                        ),
                        "network",
                    )
                )
            elif (
                group.get("egress_extra")
                or group.get("ingress_changed")
                or group.get("egress_description_changed")
            ):
                account.drifts.append(
                    f"network: {group.get('group_name')} has rules its baseline does not"
                )
    config = data.get("configuration") or {}
    if not config.get("at_baseline", True):
        timeout, memory = config.get("timeout_s"), config.get("memory_mb")
        env = config.get("environment_changed") or []
        if timeout:
            account.drifts.append(f"configuration: timeout {timeout[1]}s (baseline {timeout[0]}s)")
            if timeout[1] < timeout[0]:
                findings.append(
                    Finding(
                        FaultType.TIMEOUT_MISCONFIGURED,
                        f"the timeout was changed from the baseline's {timeout[0]}s to "
                        f"{timeout[1]}s",
                        0.9,
                        cite(
                            compared,
                            "the timeout differs from the baseline",
                            r'"timeout_s":\s*\[\s*\d+,\s*\d+\s*\]',
                        ),
                        "configuration",
                    )
                )
        if env or (memory and memory[1] < memory[0]):
            what = [f"environment {', '.join(env)}"] if env else []
            what += [f"memory {memory[1]} MB (baseline {memory[0]})"] if memory else []
            account.drifts.append(f"configuration: {'; '.join(what)} changed")
            findings.append(
                Finding(
                    FaultType.CONFIG_DRIFT,
                    f"the configuration drifted from its baseline ({'; '.join(what)})",
                    0.9,
                    cite(
                        compared,
                        "the configuration differs from the baseline",
                        r'"environment_changed":\s*\[\s*"[^"]+"'
                        if env
                        else r'"memory_mb":\s*\[\s*\d+,\s*\d+\s*\]',
                    ),
                    "configuration",
                )
            )
        elif memory:
            account.drifts.append(f"configuration: memory {memory[1]} MB (baseline {memory[0]})")
    deployment = data.get("deployment") or {}
    if not deployment.get("at_baseline", True):
        runs = _what_runs(deployment)
        account.drifts.append(f"deployment: {runs}")
        findings.append(
            Finding(
                FaultType.BAD_DEPLOY,
                f"a deploy changed what runs: {runs}",
                0.9,
                cite(
                    compared,
                    "what runs differs from the baseline",
                    r'"(?:live_target|code_sha256)":\s*\[\s*"[^"]*"',
                ),
                "deployment",
            )
        )
    drifted = set(data.get("drifted") or [])
    account.ruled_out += [
        f"{concern} matches baseline v{version}" for concern in CONCERNS if concern not in drifted
    ]
    return findings


def _what_runs(deployment: dict[str, Any]) -> str:
    """What `live` runs now, against the baseline, in a person's words."""
    target = deployment.get("live_target")
    if not target:
        return "alias live runs a package other than the baseline's"
    was, now = target
    newest = deployment.get("baseline_newest")
    if str(now).isdigit() and str(newest or "0").isdigit() and int(now) > int(newest or 0):
        return (
            f"alias live runs version {now}, published since the baseline (which ran {was}; "
            f"its newest version then was {newest or 'none'})"
        )
    return f"alias live runs {now} (baseline {was})"


# ---------------------------------------------------------------- the symptoms


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
    compared = t.last("compare_with_baseline")
    if compared is None:
        return Step(
            "Compare every concern of the function with its known-good baseline: what changed?",
            "compare_with_baseline",
            {"function_name": fn},
        )
    logs = t.last("recent_log_events", pattern="error")
    if logs is None:
        return Step(
            "Read the newest errors in the function's logs.",
            "recent_log_events",
            {"function_name": fn, "minutes": LOG_MINUTES, "pattern": "error", "limit": 20},
        )
    drifted = (compared.data() or {}).get("drifted") if compared.ok else None
    changes = t.last("recent_changes")
    if drifted and changes is None:
        return Step(
            "Something changed: who changed it, and when?",
            "recent_changes",
            {"function_name": fn, "minutes": CHANGES_MINUTES},
        )
    since = _since(alert)
    m = metrics.data() if metrics.ok else None
    errors, throttles = _total(m, "Errors", since), _total(m, "Throttles", since)
    lines = _classifiable(_error_lines(logs, since)) if logs.ok else []
    if not lines and errors > 0 and logs.ok:
        timed = t.last("recent_log_events", pattern="timed out")
        if timed is None:
            return Step(
                "Errors without an error line: look for runs cut off at their timeout.",
                "recent_log_events",
                {"function_name": fn, "minutes": LOG_MINUTES, "pattern": "timed out", "limit": 20},
            )
        if timed.ok and (found := _classifiable(_error_lines(timed, since))):
            logs, lines = timed, found
    return _conclude(fn, alert, metrics, m, compared, logs, lines, errors, throttles, changes)


def _conclude(
    fn: str,
    alert: dict[str, Any],
    metrics: ToolResult,
    m: Any,
    compared: ToolResult,
    logs: ToolResult,
    lines: list[str],
    errors: float,
    throttles: float,
    changes: ToolResult | None = None,
) -> Step:
    account = Account()
    invocations = _total(m, "Invocations", _since(alert))
    if m is None:
        account.unseen.append(f"the metrics could not be read: {metrics.text[:200]}")
    else:
        account.symptoms.append(
            f"{errors:g} errors and {throttles:g} throttles in {invocations:g} invocations "
            "since the symptom began"
        )
    if not logs.ok:
        account.unseen.append(f"the logs could not be read: {logs.text[:200]}")
    newest = lines[-1] if lines else None
    if newest:
        account.symptoms.append(f"newest error line: {_line_excerpt(newest)}")
    elif errors > 0 and logs.ok:
        account.unseen.append(
            "the failing runs left no error line in the logs (the function may have lost its "
            "permission to write them)"
        )
    data = (compared.data() if compared.ok else None) or {}
    if not compared.ok:
        account.unseen.append(f"the baseline comparison failed: {compared.text[:200]}")
    findings = _drift_findings(compared, data, account) if data else []
    failing = cite(metrics, "invocations are failing", _metric_pattern("Errors"))
    throttled = cite(metrics, "invocations are being throttled", _metric_pattern("Throttles"))
    error_cite = (
        cite(logs, "the function's runs fail with this error", re.escape(_line_excerpt(newest)))
        if newest
        else []
    )
    fixable = {f.concern for f in findings}
    cite_who_changed(changes, findings, account)
    if findings:
        for f in findings:  # each drift, with the symptom it explains
            if f.fault == FaultType.CONCURRENCY_THROTTLED:
                f.evidence[:0] = throttled if throttles else []
            else:
                f.evidence[:0] = failing if errors else []
        signature = _signature(newest) if newest else None
        if signature and error_cite:
            explaining = [f for f in findings if f.concern in EXPLAINS[signature]]
            for f in explaining[:1]:
                f.evidence += error_cite
    # What no drift explains stays open.
    if throttles > 0 and "concurrency" not in fixable:
        account.unexplained.append(
            "runs are throttled while reserved concurrency matches the baseline (the account's "
            "concurrency, or a burst)"
        )
    if errors > 0 or newest:
        # A run that fails without a line: any drift but concurrency can silence it.
        signature = _signature(newest) if newest else None
        causes = set(EXPLAINS[signature]) if signature else set(CONCERNS) - {"concurrency"}
        if not fixable & causes:
            account.unexplained.append(
                f"runs fail with {_line_excerpt(newest)!r}" if newest else "runs fail silently"
            )
    if not findings:
        return _unexplained(fn, account, metrics, m, logs, newest, error_cite, failing, errors)
    if account.unexplained:
        account.next_step = (
            "the fleet restores the drifts first; if the function still fails, the next round "
            "looks at what they do not explain"
        )
    return _final(fn, findings, account, "Diagnosis complete.")


def _unexplained(
    fn: str,
    account: Account,
    metrics: ToolResult,
    m: Any,
    logs: ToolResult,
    newest: str | None,
    error_cite: list[dict[str, str]],
    failing: list[dict[str, str]],
    errors: float,
) -> Step:
    """No drift: healthy, or failing for a reason no restore can fix."""
    signature = _signature(newest) if newest else None
    if newest is None and errors == 0 and not account.unexplained:
        if m is None:
            return _final(fn, [], account, "The metrics could not be read: a person should look.")
        account.next_step = "nothing to do: the function runs cleanly and matches its baseline"
        return _final(
            fn,
            [
                Finding(
                    FaultType.NONE,
                    "no errors or throttles since the symptom began, no error in the logs, "
                    "and the function matches its baseline",
                    0.8,
                    cite(metrics, "no invocation failed", _metric_pattern("Errors"))
                    + cite(
                        logs,
                        "the logs were read: no error line since the symptom began",
                        r'"matched":\s*\d+',
                    ),
                )
            ],
            account,
            "Healthy.",
        )
    if signature == INPUT:
        account.next_step = (
            "put back the input the function reads (its key is named in the error), or fix "
            "whatever should have written it; nothing in the function's configuration changed"
        )
        finding = Finding(
            FaultType.INPUT_MISSING,
            "runs fail because the input they read does not exist, and every concern matches "
            "the baseline: missing data, not a change to the function",
            0.8,
            failing + error_cite,
        )
    elif signature in (CONFIG, CODE):
        account.next_step = (
            "read the traceback: the function's own code fails on what it reads while the "
            "account matches its baseline; fix the code or its input, deploy, and capture the "
            "baseline"
        )
        finding = Finding(
            FaultType.CODE_BUG,
            "runs fail in the function's own code while every concern matches the baseline: "
            "a code bug or bad input, not something a restore fixes",
            0.8,
            failing + error_cite,
        )
    else:
        account.next_step = (
            "look at what the fleet cannot see: the account's concurrency, the services the "
            "function calls, and who changed what (CloudTrail)"
        )
        return _final(
            fn,
            [],
            account,
            "The symptoms match no drift from the baseline and no known error: a person should "
            "look.",
        )
    return _final(fn, [finding], account, "Diagnosis complete.")


def _final(fn: str, findings: list[Finding], account: Account, summary: str) -> Step:
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
        "symptoms": account.symptoms,
        "drifts": account.drifts,
        "ruled_out": account.ruled_out,
        "unexplained": account.unexplained,
        "unseen": account.unseen,
        "next_step": account.next_step,
    }
    return Step(summary, "DiagnosisDraft", draft)
