"""The verdict on a random game-day round, from the account alone.

What it is given is what the account showed: snapshots before the faults, right after
them, and once the fleet was done; each function's runs since then (their START/END/REPORT
log lines); and, for rounds no restore can fix, whether the fleet escalated. It never
reads what the fleet says it did.

- fixable rounds: every function exactly as before the faults, and running cleanly;
- unfixable rounds: nothing changed by the fleet since the fault, the faulted function
  escalated, every other function as before and running cleanly;
- control rounds: nothing changed at all, every function running cleanly;
- every round: nothing granted wider than before (counted on its own).

A round whose fleet was still at work when the deadline came fails: its account could
still change, so no verdict from it would hold.
"""

from __future__ import annotations

from pydantic import BaseModel

from chaos.account_snapshot import AccountSnapshot, differences, wider_grants
from chaos.gameday_draw import RoundKind, RoundPlan

# Clean runs a function must show after the fleet is done (the fleet's own verification
# asks for as many by default).
CLEAN_RUNS = 2


class RunsSeen(BaseModel):
    """A function's runs that started after the fleet was done, as its log lines tell."""

    finished: int
    errors: list[str]  # the failed runs' errors, oldest first

    @property
    def clean(self) -> bool:
        return self.finished >= CLEAN_RUNS and not self.errors

    def why_not_clean(self) -> str:
        if self.errors:
            shown = "; ".join(sorted(set(self.errors))[:2])
            return f"{len(self.errors)} of its {self.finished} run(s) since failed ({shown})"
        if self.finished == 0:
            return "no run since has finished (throttled, or its logs are silent)"
        return f"only {self.finished} run(s) since, {CLEAN_RUNS} clean ones needed"


class Observation(BaseModel):
    before: AccountSnapshot
    after_fault: AccountSnapshot
    after: AccountSnapshot
    runs: dict[str, RunsSeen]
    escalated: dict[str, list[str]]  # function -> its incidents that reached ESCALATED
    done: bool  # every incident ended and the round was quiet before the deadline
    still_open: list[str]  # what was still going on at the deadline


class Verdict(BaseModel):
    passed: bool
    reasons: list[str]
    wider: list[str]


def _restored(obs: Observation, function: str, reasons: list[str], label: str) -> None:
    changed = differences(obs.before.functions[function], obs.after.functions[function])
    if changed:
        reasons.append(f"{function}: {label}: " + "; ".join(changed))


def _running(obs: Observation, function: str, reasons: list[str]) -> None:
    seen = obs.runs.get(function)
    if seen is None or not seen.clean:
        why = seen.why_not_clean() if seen else "its runs were not read"
        reasons.append(f"{function}: not running cleanly: {why}")


def judge(plan: RoundPlan, obs: Observation) -> Verdict:
    reasons: list[str] = []
    if not obs.done:
        reasons.append("the fleet was still at work at the deadline: " + "; ".join(obs.still_open))
    wider = [
        f"{name}: {grant}"
        for name in plan.functions
        for grant in wider_grants(obs.before.functions[name], obs.after.functions[name])
    ]
    reasons += [f"granted wider: {w}" for w in wider]
    faulted = {f.function for f in plan.faults}
    for name in plan.functions:
        if plan.kind == RoundKind.CONTROL:
            _restored(obs, name, reasons, "changed in a control round")
            _running(obs, name, reasons)
        elif plan.kind == RoundKind.FIXABLE:
            _restored(obs, name, reasons, "not back to its state before the faults")
            _running(obs, name, reasons)
        elif name in faulted:  # unfixable: the fleet must leave it as the fault left it
            changed = differences(obs.after_fault.functions[name], obs.after.functions[name])
            if changed:
                reasons.append(
                    f"{name}: changed by the fleet, no restore fixes: " + "; ".join(changed)
                )
            if not obs.escalated.get(name):
                reasons.append(f"{name}: no incident escalated for it")
        else:
            _restored(obs, name, reasons, "changed although no fault touched it")
            _running(obs, name, reasons)
    return Verdict(passed=not reasons, reasons=reasons, wider=wider)
