"""The embedded world's IAM decisions against an evaluator nobody here wrote
(@cloud-copilot/iam-simulate): a seeded sample from every category of
tests/differential/cases.py, each disagreement decided by AWS's documentation
(tests/differential/decided.py). `make iam-differential` runs every case and prints the
figures the README gives."""

from __future__ import annotations

import random

import pytest

from tests.differential.cases import all_cases
from tests.differential.compare import compare, table
from tests.differential.decided import DECIDED, Decided

SEED = 28
PER_CATEGORY = 48


def sample() -> list[dict[str, object]]:
    """PER_CATEGORY cases of each category (all of a smaller one), the same every run."""
    rng = random.Random(SEED)
    by_category: dict[str, list[dict[str, object]]] = {}
    for case in all_cases():
        by_category.setdefault(str(case["category"]), []).append(case)
    chosen = []
    for cases in by_category.values():
        chosen += rng.sample(cases, min(PER_CATEGORY, len(cases)))
    return chosen


def test_every_category_agrees_or_is_decided_by_the_documentation() -> None:
    cases = sample()
    result = compare(cases)
    print(table(result))
    assert set(result.counts) == {"conditions", "wildcards", "layers", "trust"}
    assert result.errors == [], result.errors[:10]
    assert result.undecided == [], "\n".join(result.undecided[:20])


@pytest.mark.parametrize("rule", DECIDED, ids=[r.page.rsplit("#", 1)[-1] for r in DECIDED])
def test_each_decided_disagreement_still_happens(rule: Decided) -> None:
    """A rule that covers no disagreement any more (the oracle was fixed, or the cases
    changed) is dead weight: every rule must still decide something in the full set."""
    cases = [c for c in all_cases() if rule.covers(c)]
    assert cases
    result = compare(cases)
    assert result.decided, f"no disagreement left for: {rule.why}"
