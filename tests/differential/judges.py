"""The two judges of a case: the embedded world's evaluator, in-process, and the independent
one (@cloud-copilot/iam-simulate, run by Node from tests/iam_oracle)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from emulation.iam_policy import AccessRequest, CallerPolicies, Decision, decide, evaluate
from emulation.role_trust import Caller, may_assume
from tests.differential.cases import ACCOUNT, ROLE, SESSION, Case

ORACLE = Path(__file__).resolve().parent.parent / "iam_oracle"


class OracleMissing(RuntimeError):
    """Node or the oracle's packages are not installed (`make deps-oracle` installs them)."""


def world_decision(case: Case) -> str:
    context = dict(case["context"])
    request = AccessRequest(case["action"], case["resource"], context)
    if case["category"] == "layers":
        caller = CallerPolicies(
            arns=(SESSION,),
            account=ACCOUNT,
            identity=tuple(case["identity"]),
            boundary=case["boundary"],
            session=(case["session"],) if case["session"] else None,
            role_arn=ROLE,
        )
        return decide(caller, request, case["resource_policy"], case["resource_account"]).value
    if case["category"] == "trust":
        identity = evaluate(case["identity"], request)
        caller = Caller((case["principal"],), case["caller_account"])
        return may_assume(case["resource_policy"], identity, caller, ROLE, context).value
    return evaluate(case["identity"], request).value


def _oracle_context(context: dict[str, list[str]]) -> dict[str, Any]:
    # A key with one value is single-valued to the oracle (a list would be read as a set).
    return {k: v[0] if len(v) == 1 else v for k, v in context.items()}


def oracle_decisions(cases: list[Case]) -> dict[str, dict[str, str]]:
    """Each case's {decision} or {error} from the independent evaluator, by id."""
    node = shutil.which("node")
    if node is None or not (ORACLE / "node_modules" / "@cloud-copilot" / "iam-simulate").exists():
        raise OracleMissing(f"the IAM oracle is not installed: run `make deps-oracle` ({ORACLE})")
    payload = [{**c, "context": _oracle_context(c["context"])} for c in cases]
    done = subprocess.run(
        [node, str(ORACLE / "decide.mjs")],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ORACLE,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the IAM oracle failed ({done.returncode}): {done.stderr[-2000:]}")
    return {a["id"]: a for a in json.loads(done.stdout)}


DECISIONS = {d.value for d in Decision}
