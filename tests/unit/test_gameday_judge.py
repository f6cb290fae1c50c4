"""The random game day's judge and its draw, on snapshots built here: what counts as
restored (exactly, rule descriptions included), what counts as granted wider, what each
kind of round requires, and that a seed always draws the same rounds."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.account_snapshot import (
    AccountSnapshot,
    FunctionState,
    Rule,
    _rules,
    differences,
    wider_grants,
)
from chaos.gameday_draw import (
    CHOICES,
    KINDS,
    DrawnFault,
    RoundKind,
    RoundPlan,
    conflict,
    draw_plan,
    draw_round,
    parse_kinds,
)
from chaos.gameday_judge import Observation, RunsSeen, judge
from chaos.hand_faults import misspell
from chaos.random_gameday import RoundResult, summarize, unsettled
from core.errors import UsageError
from workload.spec import FunctionSpec

SPEC = FunctionSpec(
    name="data-processor",
    account_id="123456789012",
    bucket="data-processor-data-123456789012",
    prefix="data-processor/",
    region="eu-west-1",
    alerts_topic_arn="arn:aws:sns:eu-west-1:123456789012:incident-alerts",
    work_seconds=1.2,
    timeout_s=10,
)
HTTPS = Rule(
    group_id="sg-1",
    direction="egress",
    protocol="tcp",
    from_port=443,
    to_port=443,
    peer="0.0.0.0/0",
    description="AWS APIs over HTTPS",
)


def healthy(**changes: Any) -> FunctionState:
    """The function as deployed, with `changes`."""
    state = FunctionState(
        function=SPEC.name,
        role_name=SPEC.role_name,
        trust_policy=SPEC.trust_policy(),
        inline_policies={"data-processor-baseline": SPEC.baseline_policy()},
        attached_policy_arns=[],
        reserved_concurrency=None,
        environment=SPEC.environment(),
        timeout_s=10,
        memory_mb=256,
        subnet_ids=["subnet-1"],
        security_group_ids=["sg-1"],
        rules=[HTTPS],
        live_target="$LATEST",
        live_code_sha256="good=",
        latest_code_sha256="good=",
        input_key=f"s3://{SPEC.bucket}/{SPEC.input_key}",
        input_etag='"etag-1"',
    )
    return state.model_copy(update=changes)


def snapshot(state: FunctionState) -> AccountSnapshot:
    return AccountSnapshot(taken_at="2026-01-01T00:00:00+00:00", functions={state.function: state})


def plan(kind: RoundKind, faults: list[DrawnFault] | None = None) -> RoundPlan:
    return RoundPlan(index=1, seed="1/1", kind=kind, functions=[SPEC.name], faults=faults or [])


CLEAN = RunsSeen(finished=3, errors=[])
FAILING = RunsSeen(finished=2, errors=["KeyError: 'records'", "KeyError: 'records'"])


def observe(
    before: FunctionState,
    after: FunctionState,
    after_fault: FunctionState | None = None,
    runs: RunsSeen = CLEAN,
    escalated: list[str] | None = None,
    done: bool = True,
) -> Observation:
    return Observation(
        before=snapshot(before),
        after_fault=snapshot(after_fault or after),
        after=snapshot(after),
        runs={SPEC.name: runs},
        escalated={SPEC.name: escalated} if escalated else {},
        done=done,
        still_open=[] if done else ["inc-1 (data-processor) in VERIFYING"],
    )


# --- what is "wider" ---------------------------------------------------------------------


def with_statement(statement: dict[str, Any]) -> FunctionState:
    policy = SPEC.baseline_policy()
    policy["Statement"].append(statement)
    return healthy(inline_policies={"data-processor-baseline": policy})


def test_an_allow_that_was_not_there_is_wider_however_it_is_named() -> None:
    wildcard = with_statement({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    assert any("Allow s3:* on *" in w for w in wider_grants(healthy(), wildcard))
    # The same grants in a policy of another name are not wider.
    same = healthy(inline_policies={"restored-by-hand": SPEC.baseline_policy()})
    assert wider_grants(healthy(), same) == []


def test_an_attached_policy_a_new_trust_or_a_deny_taken_away_is_wider() -> None:
    admin = healthy(attached_policy_arns=["arn:aws:iam::aws:policy/AdministratorAccess"])
    assert wider_grants(healthy(), admin) == [
        "role data-processor-role has managed policy "
        "arn:aws:iam::aws:policy/AdministratorAccess attached (not before)"
    ]
    another_account = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}}
    widened = SPEC.trust_policy()
    widened["Statement"].append({**another_account, "Action": "sts:AssumeRole"})
    trusting = healthy(trust_policy=widened)
    assert any("trusts" in w for w in wider_grants(healthy(), trusting))
    deny = {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}
    assert any(
        "no longer has Deny s3:deleteobject" in w
        for w in wider_grants(with_statement(deny), healthy())
    )


def test_a_rule_that_reaches_further_is_wider_a_description_is_not() -> None:
    everything = HTTPS.model_copy(update={"protocol": "-1", "from_port": None, "to_port": None})
    assert wider_grants(healthy(), healthy(rules=[HTTPS, everything])) != []
    assert wider_grants(healthy(), healthy(rules=[], security_group_ids=[], subnet_ids=[])) == [
        "data-processor taken out of its VPC (reaches anywhere)"
    ]
    undescribed = HTTPS.model_copy(update={"description": None})
    assert wider_grants(healthy(), healthy(rules=[undescribed])) == []


def test_more_concurrency_time_or_memory_is_not_a_wider_grant() -> None:
    bigger = healthy(reserved_concurrency=100, timeout_s=900, memory_mb=10240)
    assert wider_grants(healthy(), bigger) == []
    assert differences(healthy(), bigger) != []  # but it is not the state before either


def test_less_is_not_wider() -> None:
    policy = SPEC.baseline_policy()
    policy["Statement"] = policy["Statement"][1:]
    fewer = healthy(inline_policies={"data-processor-baseline": policy}, rules=[])
    assert wider_grants(healthy(), fewer) == []


# --- exactly as before ---------------------------------------------------------------------


def test_a_rule_put_back_without_its_description_is_not_the_state_before() -> None:
    undescribed = healthy(rules=[HTTPS.model_copy(update={"description": None})])
    found = differences(healthy(), undescribed)
    assert any("rule missing" in d and "'AWS APIs over HTTPS'" in d for d in found)
    assert any("rule added" in d and "(no description)" in d for d in found)
    verdict = judge(plan(RoundKind.FIXABLE), observe(healthy(), undescribed))
    assert not verdict.passed and verdict.wider == []


def test_ec2_rules_are_read_one_peer_at_a_time_with_their_descriptions() -> None:
    group = {
        "GroupId": "sg-1",
        "IpPermissionsEgress": [
            {
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "IpRanges": [
                    {"CidrIp": "0.0.0.0/0", "Description": "AWS APIs over HTTPS"},
                    {"CidrIp": "10.0.0.0/8"},
                ],
                "Ipv6Ranges": [],
                "PrefixListIds": [],
                "UserIdGroupPairs": [],
            }
        ],
        "IpPermissions": [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-2"}]}],
    }
    rules = _rules(group)
    assert HTTPS in rules
    assert any(r.peer == "10.0.0.0/8" and r.description is None for r in rules)
    assert any(r.direction == "ingress" and r.peer == "sg-2" and r.from_port is None for r in rules)


def test_what_differs_is_named() -> None:
    policy = SPEC.baseline_policy()
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != "WriteOwnLogs"]
    broken = healthy(
        inline_policies={"data-processor-baseline": policy, "s3-lockdown": {"Statement": []}},
        environment={**SPEC.environment(), "DATA_BUCKET": "data-procesor"},
        live_target="3",
        live_code_sha256="bad=",
        input_etag=None,
    )
    found = "\n".join(differences(healthy(), broken))
    assert "inline policy data-processor-baseline differs: lost Allow logs:createlogstream" in found
    assert "inline policy s3-lockdown added" in found
    assert "environment DATA_BUCKET='data-procesor' (was 'data-processor-data-" in found
    assert "alias live '3' (was '$LATEST')" in found
    assert "deleted" in found


def test_a_deploy_rolled_back_by_the_alias_is_the_function_as_it_was() -> None:
    # A person overwrote $LATEST and moved live to it; the fleet points live at version 1,
    # which holds the code live ran: the same code runs. Not when live runs other code.
    rolled_back = healthy(live_target="1", latest_code_sha256="bad=")
    assert differences(healthy(), rolled_back) == []
    still_bad = healthy(live_target="3", live_code_sha256="bad=", latest_code_sha256="bad=")
    assert len(differences(healthy(), still_bad)) == 3


# --- what each round requires -------------------------------------------------------------


def test_a_fixable_round_passes_only_restored_exactly_and_running_cleanly() -> None:
    fault = DrawnFault(kind="timeout", function=SPEC.name)
    assert judge(plan(RoundKind.FIXABLE, [fault]), observe(healthy(), healthy())).passed
    still = judge(plan(RoundKind.FIXABLE, [fault]), observe(healthy(), healthy(timeout_s=1)))
    assert not still.passed and "timeout 1 (was 10)" in still.reasons[0]
    silent = judge(
        plan(RoundKind.FIXABLE, [fault]),
        observe(healthy(), healthy(), runs=RunsSeen(finished=0, errors=[])),
    )
    assert not silent.passed and "no run since has finished" in silent.reasons[0]


def test_a_control_round_in_which_anything_changed_fails() -> None:
    assert judge(plan(RoundKind.CONTROL), observe(healthy(), healthy())).passed
    changed = judge(plan(RoundKind.CONTROL), observe(healthy(), healthy(memory_mb=512)))
    assert not changed.passed
    assert changed.reasons == ["data-processor: changed in a control round: memory 512 (was 256)"]
    failing = judge(plan(RoundKind.CONTROL), observe(healthy(), healthy(), runs=FAILING))
    assert not failing.passed


def test_an_unfixable_round_wants_nothing_changed_since_the_fault_and_an_escalation() -> None:
    fault = DrawnFault(kind="input-corrupt", function=SPEC.name, variant="no-records")
    broken = healthy(input_etag='"etag-2"')
    rnd = plan(RoundKind.UNFIXABLE, [fault])
    left = observe(healthy(), broken, after_fault=broken, runs=FAILING, escalated=["inc-1"])
    assert judge(rnd, left).passed
    quiet = observe(healthy(), broken, after_fault=broken, runs=FAILING)
    assert judge(rnd, quiet).reasons == ["data-processor: no incident escalated for it"]
    meddled = observe(
        healthy(),
        broken.model_copy(update={"timeout_s": 30}),
        after_fault=broken,
        runs=FAILING,
        escalated=["inc-1"],
    )
    verdict = judge(rnd, meddled)
    assert not verdict.passed and "changed by the fleet" in verdict.reasons[0]


def test_a_fleet_still_at_work_at_the_deadline_fails_the_round() -> None:
    verdict = judge(plan(RoundKind.CONTROL), observe(healthy(), healthy(), done=False))
    assert not verdict.passed and "still at work" in verdict.reasons[0]


def test_a_wider_grant_fails_any_round_and_is_counted_apart() -> None:
    wider = healthy(attached_policy_arns=["arn:aws:iam::aws:policy/AdministratorAccess"])
    fault = DrawnFault(kind="input-missing", function=SPEC.name)
    verdict = judge(
        plan(RoundKind.UNFIXABLE, [fault]),
        observe(healthy(), wider, after_fault=healthy(input_etag=None), escalated=["inc-1"]),
    )
    assert not verdict.passed and len(verdict.wider) == 1


# --- the draw ------------------------------------------------------------------------------


def test_a_seed_draws_the_same_rounds_every_time_and_another_seed_others() -> None:
    assert draw_plan(7, 20) == draw_plan(7, 20)
    assert draw_plan(7, 20) != draw_plan(8, 20)
    # A round is the same whichever rounds are drawn beside it (so it can be replayed).
    assert draw_plan(7, 20)[12] == draw_round(7, 13, list(CHOICES))


def test_the_draw_covers_every_kind_of_round_and_fault() -> None:
    rounds = [r for seed in range(1, 6) for r in draw_plan(seed, 20)]
    assert {r.kind for r in rounds} == set(RoundKind)
    assert {f.kind for r in rounds for f in r.faults} == set(KINDS)
    assert {len(r.functions) for r in rounds} == {1, 2, 3}
    fixable = [r for r in rounds if r.kind == RoundKind.FIXABLE]
    assert {len(r.faults) for r in fixable} == {1, 2, 3}
    assert any(len({f.function for f in r.faults}) < len(r.faults) for r in fixable)  # compound
    assert any(len({f.function for f in r.faults}) > 1 for r in fixable)  # spread
    for r in rounds:
        if r.kind == RoundKind.UNFIXABLE:
            assert len(r.faults) == 1 and not KINDS[r.faults[0].kind].fixable
        if r.kind == RoundKind.CONTROL:
            assert r.faults == []


def test_no_two_faults_on_one_function_change_the_same_setting() -> None:
    for seed in range(1, 30):
        for r in draw_plan(seed, 20):
            for i, a in enumerate(r.faults):
                for b in r.faults[i + 1 :]:
                    if a.function == b.function:
                        touches_a = KINDS[a.kind].touches(a)
                        assert not conflict(touches_a, KINDS[b.kind].touches(b)), r.describe()
    # Deleting every inline policy overlaps any one of them.
    assert conflict({"iam:policy:*"}, {"iam:policy:s3-lockdown"})
    assert not conflict({"env:DATA_BUCKET"}, {"env:DATA_PREFIX"})


def test_the_kinds_chosen_are_the_only_ones_drawn() -> None:
    chosen = parse_kinds("revoke,control")
    rounds = draw_plan(3, 20, chosen, max_functions=1, max_faults=1)
    assert {r.kind for r in rounds} <= {RoundKind.CONTROL, RoundKind.FIXABLE}
    assert {f.kind for r in rounds for f in r.faults} == {"revoke"}
    assert all(len(r.functions) == 1 and len(r.faults) <= 1 for r in rounds)
    with pytest.raises(UsageError, match="choose from"):
        parse_kinds("revoke,rm-rf")


def test_a_typo_is_never_the_value_itself() -> None:
    for value in ("data-processor-data-123456789012", "data-processor/", "aa", "a"):
        for at in range(30):
            assert misspell(value, at) != value


# --- when the fleet is done, and the tally ---------------------------------------------------


def incident(status: str, resource: str = SPEC.name) -> dict[str, Any]:
    return {"incident_id": "inc-1", "resource": resource, "signature": "errors", "status": status}


def test_the_fleet_is_done_when_its_incidents_ended_and_no_alarm_waits_for_one() -> None:
    fault = DrawnFault(kind="timeout", function=SPEC.name)
    fixable = plan(RoundKind.FIXABLE, [fault])
    assert unsettled(plan(RoundKind.CONTROL), [], set()) == []
    assert unsettled(fixable, [], set()) == ["no incident opened"]
    assert unsettled(fixable, [incident("VERIFYING")], set()) == [
        "inc-1 (data-processor) in VERIFYING"
    ]
    # A state this harness does not know yet (RECOVERED) is not an end.
    assert unsettled(fixable, [incident("RECOVERED")], set()) != []
    assert unsettled(fixable, [incident("RESOLVED")], set()) == []
    # Resolved with its alarm still in ALARM: a relapse may be on its way.
    assert unsettled(fixable, [incident("RESOLVED")], {SPEC.name}) != []
    # Given up on: the alarm will stay, and the fleet will not act again.
    assert unsettled(fixable, [incident("ESCALATED")], {SPEC.name}) == []
    # A control round's false alarm waits for the fleet's incident.
    assert unsettled(plan(RoundKind.CONTROL), [], {SPEC.name}) != []


def test_an_unfixable_round_waits_for_its_escalation() -> None:
    rnd = plan(RoundKind.UNFIXABLE, [DrawnFault(kind="input-missing", function=SPEC.name)])
    assert unsettled(rnd, [incident("ROLLED_BACK")], {SPEC.name}) == [
        "data-processor: no incident escalated"
    ]
    assert unsettled(rnd, [incident("ESCALATED")], {SPEC.name}) == []


def test_the_summary_counts_each_kind_of_round_and_wider_grants_apart() -> None:
    def result(kind: RoundKind, passed: bool, wider: list[str] | None = None) -> RoundResult:
        return RoundResult(
            round=1,
            seed="1/1",
            kind=kind,
            functions=[SPEC.name],
            faults=[],
            applied=[],
            passed=passed,
            reasons=[] if passed else ["x"],
            wider=wider or [],
            incidents=[],
            approvals=[],
            fleet_done_s=None,
        )

    summary = summarize(
        [
            result(RoundKind.CONTROL, True),
            result(RoundKind.FIXABLE, False),
            result(RoundKind.FIXABLE, True),
            result(RoundKind.UNFIXABLE, False, ["granted"]),
        ]
    )
    assert (summary.rounds, summary.passed, summary.pass_rate) == (4, 2, 0.5)
    assert summary.by_kind["fixable"].model_dump() == {"rounds": 2, "passed": 1}
    assert summary.rounds_granted_wider == 1
