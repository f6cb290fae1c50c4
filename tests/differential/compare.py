"""The world's decisions against the independent evaluator's, case by case, with every
disagreement decided by the documentation (tests/differential/decided.py) or left standing
as undecided."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tests.differential.cases import Case
from tests.differential.decided import verdict
from tests.differential.judges import oracle_decisions, world_decision


@dataclass
class Comparison:
    # Per category: cases, agreed, decided (a documented disagreement the world answers as
    # documented), undecided, oracle errors.
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    undecided: list[str] = field(default_factory=list)
    decided: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, category: str, outcome: str) -> None:
        self.counts.setdefault(category, Counter())[outcome] += 1

    @property
    def clean(self) -> bool:
        return not self.undecided and not self.errors


def compare(cases: list[Case]) -> Comparison:
    theirs = oracle_decisions(cases)
    result = Comparison()
    disputed: list[tuple[Case, str]] = []
    for case in cases:
        result.count(case["category"], "cases")
        answer = theirs.get(case["id"], {})
        if "decision" not in answer:
            result.count(case["category"], "oracle errors")
            result.errors.append(f"{case['id']}: {answer.get('error', 'no answer')}")
            continue
        ours = world_decision(case)
        if ours == answer["decision"]:
            result.count(case["category"], "agreed")
        else:
            disputed.append((case, ours))
    rewritten = {}
    to_ask = [
        rule.rewrite(case)
        for case, _ in disputed
        if (rule := verdict(case)) is not None and rule.rewrite is not None
    ]
    if to_ask:
        rewritten = oracle_decisions(to_ask)
    for case, ours in disputed:
        rule = verdict(case)
        theirs_said = theirs[case["id"]]["decision"]
        documented = None
        if rule is not None and rule.documented is not None:
            documented = rule.documented(case)
        elif rule is not None:
            documented = rewritten.get(case["id"], {}).get("decision")
        line = f"{case['id']}: world {ours}, oracle {theirs_said}"
        if rule is not None and documented == ours:
            result.count(case["category"], "decided")
            result.decided.append(f"{line} (documented: {documented}; {rule.page})")
        else:
            result.count(case["category"], "undecided")
            result.undecided.append(f"{line}, documented {documented or 'unknown'}")
    return result


def table(result: Comparison) -> str:
    """The figures, as the README prints them."""
    rows = ["| category | cases | agreed | decided by the docs | undecided | oracle errors |"]
    rows.append("|---|---|---|---|---|---|")
    for category, n in result.counts.items():
        rows.append(
            f"| {category} | {n['cases']} | {n['agreed']} | {n['decided']} | "
            f"{n['undecided']} | {n['oracle errors']} |"
        )
    return "\n".join(rows)
