"""What becomes of a fix that did not verify: undone only if it made things worse (more of
the runs failing than before it, or a concern it restored left off its baseline);
otherwise it stays, and another round looks for what else is wrong."""

from __future__ import annotations

from core.lambda_runs import Run
from incidents.verification import worse_than_before
from tests.unit.test_remediation_plan import baseline, drifted

FIXED_MS = 1_000_000


def _runs(before: list[bool], after: list[bool]) -> list[Run]:
    """Finished runs a second apart, before and after the fix: True for a clean one."""
    runs = []
    for i, clean in enumerate(before):
        start = FIXED_MS - (len(before) - i) * 1000
        runs.append(_run(f"b{i}", start, clean))
    for i, clean in enumerate(after):
        runs.append(_run(f"a{i}", FIXED_MS + i * 1000, clean))
    return runs


def _run(request_id: str, start: int, clean: bool) -> Run:
    return Run(
        request_id=request_id,
        stream="s",
        started_ms=start,
        ended_ms=start + 500,
        duration_ms=500.0,
        error=None if clean else "AccessDenied",
    )


def test_a_fix_that_restored_its_part_is_kept_while_the_function_still_fails() -> None:
    # The fix restored IAM; the network drift it did not touch is still there.
    want, now = baseline(), drifted("network")
    runs = _runs(before=[False] * 4, after=[False] * 4)
    assert worse_than_before(want, now, ["iam"], runs, FIXED_MS) is None


def test_more_failures_after_the_fix_than_before_it_is_worse() -> None:
    want = baseline()
    runs = _runs(before=[True, False, True, True], after=[False, False, True, False])
    why = worse_than_before(want, want, ["iam"], runs, FIXED_MS)
    assert why == "75% of runs fail since the fix, 25% before it"


def test_a_concern_the_fix_restored_and_left_off_its_baseline_is_worse() -> None:
    want, now = baseline(), drifted("iam")  # the calls did not bring IAM back
    runs = _runs(before=[False] * 3, after=[False] * 3)
    assert worse_than_before(want, now, ["iam"], runs, FIXED_MS) == (
        "iam is not at its baseline after the fix meant to restore it"
    )


def test_a_concern_that_drifted_meanwhile_is_not_the_fixs_doing() -> None:
    # Throttled by someone while the environment fix was verified: not the fix's doing.
    want, now = baseline(), drifted("concurrency")
    assert worse_than_before(want, now, ["configuration"], _runs([False], []), FIXED_MS) is None


def test_no_runs_to_compare_is_not_taken_for_worse() -> None:
    # Throttled before the fix (no run started) and failing after: nothing to compare with.
    want = baseline()
    assert worse_than_before(want, want, ["iam"], _runs([], [False, False]), FIXED_MS) is None
