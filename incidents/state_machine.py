"""Which status may follow which (ARCHITECTURE.md, the life of an alert). The store refuses
anything else."""

from __future__ import annotations

from incidents.lifecycle import IncidentStatus as S

ALLOWED: dict[S, frozenset[S]] = {
    S.RECEIVED: frozenset({S.INVESTIGATING, S.ESCALATED, S.RESOLVED}),
    S.INVESTIGATING: frozenset({S.DIAGNOSED, S.ESCALATED}),
    # RESOLVED straight from DIAGNOSED: nothing differs from the baseline and the workload
    # runs cleanly (a false alarm, or a fault that cleared): no action to take.
    S.DIAGNOSED: frozenset({S.PROPOSED, S.RESOLVED, S.ESCALATED}),
    S.PROPOSED: frozenset({S.APPROVED, S.AWAITING_APPROVAL, S.REJECTED, S.ESCALATED}),
    S.AWAITING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.ESCALATED}),
    S.APPROVED: frozenset({S.EXECUTING, S.ESCALATED}),
    S.REJECTED: frozenset({S.ESCALATED}),
    S.EXECUTING: frozenset({S.VERIFYING, S.ROLLED_BACK, S.FAILED}),
    # Back to INVESTIGATING: another round in the same incident (the fix did its part and
    # the function still fails, or it relapsed while watched, or a fix that made things
    # worse was undone and the next candidate is sought); at most max_rounds.
    S.VERIFYING: frozenset({S.RECOVERED, S.INVESTIGATING, S.ROLLED_BACK, S.FAILED, S.ESCALATED}),
    S.RECOVERED: frozenset({S.RESOLVED, S.INVESTIGATING, S.ESCALATED, S.FAILED}),
    S.ROLLED_BACK: frozenset({S.ESCALATED}),
    S.FAILED: frozenset({S.ESCALATED}),
    S.RESOLVED: frozenset(),
    S.ESCALATED: frozenset(),
}

# Where an incident's story ends (a rollback or failure may still be escalated to a person).
TERMINAL = frozenset({S.RESOLVED, S.ROLLED_BACK, S.FAILED, S.ESCALATED})


def can_move(current: S, new: S) -> bool:
    return new in ALLOWED[current]
