"""The names of what an incident's context holds, beside its state: one per kind of record,
so a reader and a writer cannot disagree on a spelling."""

from __future__ import annotations

from enum import StrEnum
from typing import NewType

# A context item of a family (one per call, per stage): made only by the functions below.
ContextKey = NewType("ContextKey", str)


class ContextItem(StrEnum):
    DIAGNOSIS = "diagnosis"
    PROPOSAL = "proposal"
    # The proposal as the resolver drafted it, kept when an approval narrowed it.
    PROPOSAL_ORIGINAL = "proposal#original"
    REVIEW = "review"
    APPROVAL = "approval"
    # The function's live state before the first remediation call: what a rollback restores.
    SNAPSHOT = "snapshot"
    VERIFICATION = "verification"
    # The watch after recovery: what it saw when it ended (resolved, or a relapse).
    WATCH = "watch"


def transcript(stage: str) -> ContextKey:
    """An agent run's tool calls and token counts (stage: diagnosis, proposal or review)."""
    return ContextKey(f"transcript#{stage}")


def executed(call_number: int) -> ContextKey:
    """That remediation call `call_number` ran (so a redelivery never runs it twice)."""
    return ContextKey(f"executed#{call_number}")


def archived(round_number: int, item: ContextItem | ContextKey) -> ContextKey:
    """A finished round's record (its diagnosis, proposal, verification...), kept under its
    round number when the incident starts another round: the current round's items keep
    their plain names, so every stage reads the round it is in."""
    return ContextKey(f"round{round_number}#{item}")


def of_a_round(item: str) -> bool:
    """Whether a context item is a round's record (moved under `archived` when the next
    round starts): the named records, the agents' transcripts and the executed-call marks.
    Alert markers, the outbox and archived rounds stay where they are."""
    return item in set(ContextItem) or item.startswith(("transcript#", "executed#"))
