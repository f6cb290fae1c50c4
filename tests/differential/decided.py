"""Where the world and the independent evaluator disagree, and which one AWS's documentation
says is right. A disagreement no rule here decides fails the differential test.

Each rule names the cases it covers, the answer the documentation gives (the world must
give it), and the page. The world is wrong on none of them today; a rule that said it was
would be a bug to fix in emulation/, not a rule to write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tests.differential.cases import Case


@dataclass(frozen=True)
class Decided:
    """A disagreement decided by the documentation: the cases it covers, and how the
    documented answer is found, either directly from the case, or as the independent
    evaluator's own answer to the same case written in a form it reads as AWS does."""

    covers: Callable[[Case], bool]
    why: str
    page: str
    documented: Callable[[Case], str] | None = None
    rewrite: Callable[[Case], Case] | None = None


def _effect(case: Case) -> str:
    return str(case["id"].rsplit("/", 1)[-1])


def _condition_true(case: Case) -> str:
    """The decision when the case's condition holds: its Allow grants, its Deny refuses."""
    return "allow" if _effect(case) == "Allow" else "explicit deny"


EPOCH_POLICY_VALUE = "1765000000"  # cases.py's DateGreaterThan value, in seconds
AS_ISO = datetime.fromtimestamp(int(EPOCH_POLICY_VALUE), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch_as_iso(case: Case) -> Case:
    return json.loads(json.dumps(case).replace(f'"{EPOCH_POLICY_VALUE}"', f'"{AS_ISO}"'))


DECIDED: tuple[Decided, ...] = (
    Decided(
        covers=lambda c: (
            c["category"] == "conditions"
            and c["operator"].startswith("ForAnyValue:")
            and c["operator"].endswith("IfExists")
            and c["key_state"] == "missing"
        ),
        documented=_condition_true,
        why=(
            "...IfExists: 'If the key is not present, evaluate the condition element as true', "
            "with a set operator too; the oracle returns false for ForAnyValue on a missing "
            "key and does not read IfExists there."
        ),
        page="https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_IfExists",
    ),
    Decided(
        covers=lambda c: (
            c["category"] == "conditions" and EPOCH_POLICY_VALUE in json.dumps(c["identity"])
        ),
        rewrite=_epoch_as_iso,
        why=(
            "A date condition's value in epoch form is UNIX time, in seconds (aws:EpochTime's "
            "own values are seconds); the oracle reads an integer as milliseconds, so "
            f"{EPOCH_POLICY_VALUE} is a day in January 1970 to it. Its answer to the same "
            f"case with the value written {AS_ISO} is the documented one."
        ),
        page="https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_Date",
    ),
)


def _session_named_by_the_bucket(case: Case) -> bool:
    parts = case["id"].split("/")
    return (
        case["category"] == "layers"
        and "bucket-allow-session" in parts
        and "session-other-action" in parts
        and "identity-deny" not in parts
        and "boundary-deny" not in parts
    )


DECIDED += (
    Decided(
        covers=_session_named_by_the_bucket,
        documented=lambda c: "allow",
        why=(
            "A resource-based policy that names the role session's ARN is added after the "
            "session policy: 'The resource-based policy permissions are not limited by the "
            "session policy.' The oracle limits them by it."
        ),
        page="https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session",
    ),
)


DECIDED += (
    Decided(
        covers=lambda c: c["category"] == "layers" and "bucket-deny-all-but-role" in c["id"],
        documented=lambda c: "explicit deny",
        why=(
            "A Deny with NotPrincipal spares a role session only if it names the session "
            "itself (with its role and account): 'When you specify an assumed-role session in "
            "a NotPrincipal element, you cannot use a wildcard (*) to mean all sessions. "
            "Principals must always name a specific session.' Naming only the role spares "
            "none of its sessions; the oracle spares them."
        ),
        page="https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notprincipal.html",
    ),
)


def verdict(case: Case) -> Decided | None:
    found = [rule for rule in DECIDED if rule.covers(case)]
    return found[0] if found else None
