"""The draw of a random game day: rounds of faults, from one seed, the same every time.

Each round is a control (no fault), unfixable (one fault in the data that even the
known-good code fails on) or fixable (1 to 3 faults the account can be restored from, on one
function or spread over several), on a world of 1 to 3 protected functions. The faults are
every kind the world can inject: `fleet chaos`'s, and the changes a person makes with the
AWS API directly (chaos/hand_faults.py).

Two faults that change the same setting of one function are never both drawn: the second
would overwrite the first, and the round would test less than it says.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from chaos.faults import DENY_POLICY_NAME
from core.errors import UsageError
from workload.spec import BASELINE_POLICY_NAME, function_name

CONTROL = "control"
MAX_FUNCTIONS = 3
MAX_FAULTS = 3
DRAW_ATTEMPTS = 30


class RoundKind(StrEnum):
    CONTROL = "control"
    FIXABLE = "fixable"
    UNFIXABLE = "unfixable"


# How often each kind of round is drawn (among those the chosen fault kinds allow).
ROUND_WEIGHTS = {RoundKind.CONTROL: 15, RoundKind.UNFIXABLE: 15, RoundKind.FIXABLE: 70}
# How many functions a world has, and how many faults a fixable round injects.
COUNT_WEIGHTS = {1: 5, 2: 3, 3: 2}

# Targets whose loss the workload's next run shows. Revoking sns:Publish alone breaks
# nothing a run does (it is how the function reports failures): a latent drift with no
# symptom, which an alarm-driven responder cannot be asked to find.
SYMPTOM_TARGETS = ("s3", "logs", "metrics", "all")
HAND_DENY_TARGETS = ("s3", "logs", "metrics")
# Inline policy names a person might give a Deny.
HAND_POLICY_NAMES = ("s3-lockdown", "temp-deny-incident-4711", "security-review-hold")
# Environment drift as `fleet chaos env-drift` sets it: each breaks the next run.
ENV_DRIFTS = (
    ("DATA_PREFIX", "drifted/"),
    ("DATA_BUCKET", "no-such-bucket"),
    ("WORK_SECONDS", "30"),
)
TYPO_VARIABLES = ("DATA_BUCKET", "DATA_PREFIX")


class DrawnFault(BaseModel):
    kind: str
    function: str
    # The fault's options (those of its kind only).
    target: str | None = None  # revoke, deny, hand-deny: s3 | logs | metrics | all
    var: str | None = None  # env-drift, hand-env-typo
    value: str | None = None  # env-drift
    typo_at: int | None = None  # hand-env-typo: where the typo is
    policy_name: str | None = None  # hand-deny
    variant: str | None = None  # hand-egress (all | https), input-corrupt

    def describe(self) -> str:
        options = [
            f"{name}={value}"
            for name, value in self.model_dump(exclude={"kind", "function"}).items()
            if value is not None
        ]
        return f"{self.kind}({', '.join(options)}) on {self.function}"


class RoundPlan(BaseModel):
    index: int  # 1-based
    seed: str  # "<seed>/<index>": the round's own draw
    kind: RoundKind
    functions: list[str]
    faults: list[DrawnFault]

    def describe(self) -> str:
        faults = "; ".join(f.describe() for f in self.faults) or "no fault"
        return f"{self.kind.value}, {len(self.functions)} function(s): {faults}"


@dataclass(frozen=True)
class KindSpec:
    """A kind of fault: whether a restore fixes it, its options, what it touches."""

    name: str
    fixable: bool
    options: Callable[[random.Random], dict[str, object]]
    # The settings of the function it changes (fnmatch patterns): two faults on one
    # function that share one are not drawn together.
    touches: Callable[[DrawnFault], set[str]]


def _none(_rng: random.Random) -> dict[str, object]:
    return {}


def _env_drift(rng: random.Random) -> dict[str, object]:
    var, value = rng.choice(ENV_DRIFTS)
    return {"var": var, "value": value}


KINDS: dict[str, KindSpec] = {
    k.name: k
    for k in (
        # `fleet chaos` (chaos/faults.py), as the operator runs it.
        KindSpec(
            "revoke",
            True,
            lambda r: {"target": r.choice(SYMPTOM_TARGETS)},
            lambda _f: {f"iam:policy:{BASELINE_POLICY_NAME}"},
        ),
        KindSpec(
            "deny",
            True,
            lambda r: {"target": r.choice(SYMPTOM_TARGETS)},
            lambda _f: {f"iam:policy:{DENY_POLICY_NAME}"},
        ),
        KindSpec("throttle", True, _none, lambda _f: {"concurrency"}),
        KindSpec("network-block", True, _none, lambda _f: {"egress"}),
        KindSpec("env-drift", True, _env_drift, lambda f: {f"env:{f.var}"}),
        KindSpec("timeout", True, _none, lambda _f: {"timeout"}),
        KindSpec("bad-deploy", True, _none, lambda _f: {"alias", "code"}),
        # A person, with the AWS API (chaos/hand_faults.py).
        KindSpec(
            "hand-deny",
            True,
            lambda r: {
                "policy_name": r.choice(HAND_POLICY_NAMES),
                "target": r.choice(HAND_DENY_TARGETS),
            },
            lambda f: {f"iam:policy:{f.policy_name}"},
        ),
        KindSpec(
            "hand-env-typo",
            True,
            lambda r: {"var": r.choice(TYPO_VARIABLES), "typo_at": r.randrange(0, 24)},
            lambda f: {f"env:{f.var}"},
        ),
        KindSpec("hand-delete-policies", True, _none, lambda _f: {"iam:policy:*"}),
        KindSpec(
            "hand-egress",
            True,
            lambda r: {"variant": r.choice(("all", "https"))},
            lambda _f: {"egress"},
        ),
        KindSpec("hand-zero-concurrency", True, _none, lambda _f: {"concurrency"}),
        KindSpec("hand-bad-deploy", True, _none, lambda _f: {"alias", "code"}),
        # The data: no restore of the account fixes these.
        KindSpec(
            "input-corrupt",
            False,
            lambda r: {"variant": r.choice(("no-records", "not-numbers"))},
            lambda _f: {"input"},
        ),
        KindSpec("input-missing", False, _none, lambda _f: {"input"}),
    )
}
CHOICES = (*KINDS, CONTROL)


def conflict(a: set[str], b: set[str]) -> bool:
    """Whether two faults' settings overlap (patterns either way: "iam:policy:*" overlaps
    every inline policy)."""
    return any(fnmatch.fnmatchcase(x, y) or fnmatch.fnmatchcase(y, x) for x in a for y in b)


def parse_kinds(text: str | None) -> list[str]:
    """`--kinds revoke,env-drift,control`: the fault kinds (and control rounds) to draw
    from; all of them when not given."""
    if not text:
        return list(CHOICES)
    chosen = [k.strip() for k in text.split(",") if k.strip()]
    unknown = sorted(set(chosen) - set(CHOICES))
    if unknown or not chosen:
        raise UsageError(f"unknown kind(s) {unknown or text!r}; choose from: {', '.join(CHOICES)}")
    return chosen


def _overlap(a: DrawnFault, b: DrawnFault) -> bool:
    return a.function == b.function and conflict(KINDS[a.kind].touches(a), KINDS[b.kind].touches(b))


def _count(rng: random.Random, most: int) -> int:
    counts = [n for n in COUNT_WEIGHTS if n <= most]
    return rng.choices(counts, weights=[COUNT_WEIGHTS[n] for n in counts])[0]


def _fault(rng: random.Random, kind: str, function: str) -> DrawnFault:
    return DrawnFault.model_validate(
        {"kind": kind, "function": function, **KINDS[kind].options(rng)}
    )


def draw_round(
    seed: int,
    index: int,
    kinds: list[str],
    max_functions: int = MAX_FUNCTIONS,
    max_faults: int = MAX_FAULTS,
) -> RoundPlan:
    """Round `index` of the game day drawn from `seed`: its own generator, so a round is the
    same whichever rounds are run beside it."""
    round_seed = f"{seed}/{index}"
    rng = random.Random(round_seed)
    fixable = sorted(k for k in kinds if k in KINDS and KINDS[k].fixable)
    unfixable = sorted(k for k in kinds if k in KINDS and not KINDS[k].fixable)
    available = {
        RoundKind.CONTROL: CONTROL in kinds,
        RoundKind.UNFIXABLE: bool(unfixable),
        RoundKind.FIXABLE: bool(fixable),
    }
    round_kinds = [k for k, ok in available.items() if ok]
    if not round_kinds:
        raise UsageError("no kind of round to draw: name a fault kind or control in --kinds")
    kind = rng.choices(round_kinds, weights=[ROUND_WEIGHTS[k] for k in round_kinds])[0]
    functions = [function_name(i) for i in range(1, _count(rng, max_functions) + 1)]
    faults: list[DrawnFault] = []
    if kind == RoundKind.UNFIXABLE:
        faults.append(_fault(rng, rng.choice(unfixable), rng.choice(functions)))
    elif kind == RoundKind.FIXABLE:
        for _ in range(_count(rng, max_faults)):
            # Drawn again while it would change a setting another fault on its function
            # changed; a round that has no room for one more keeps the faults it has.
            for _attempt in range(DRAW_ATTEMPTS):
                fault = _fault(rng, rng.choice(fixable), rng.choice(functions))
                if not any(_overlap(fault, d) for d in faults):
                    faults.append(fault)
                    break
    return RoundPlan(index=index, seed=round_seed, kind=kind, functions=functions, faults=faults)


def draw_plan(
    seed: int,
    rounds: int,
    kinds: list[str] | None = None,
    max_functions: int = MAX_FUNCTIONS,
    max_faults: int = MAX_FAULTS,
) -> list[RoundPlan]:
    if rounds < 1:
        raise UsageError(f"--random wants 1 round or more, not {rounds}")
    if not 1 <= max_functions <= MAX_FUNCTIONS or not 1 <= max_faults <= MAX_FAULTS:
        raise UsageError(f"--max-functions and --max-faults are between 1 and {MAX_FUNCTIONS}")
    chosen = kinds if kinds is not None else list(CHOICES)
    return [draw_round(seed, i, chosen, max_functions, max_faults) for i in range(1, rounds + 1)]
