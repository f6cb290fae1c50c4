"""What an approver weighs beside a proposed fix: how the live function differs, now, from
the baseline version the fix restores, for each concern the fix restores."""

from __future__ import annotations

from pydantic import BaseModel

from core.aws import Clients
from incidents.baseline_diff import (
    DIFFS,
    Concern,
    ConcurrencyDiff,
    ConfigDiff,
    DeploymentDiff,
    IamDiff,
    NetworkDiff,
)
from incidents.baselines import BaselineStore, read_live
from incidents.context_items import ContextItem
from incidents.store import IncidentStore

ConcernDiff = IamDiff | ConcurrencyDiff | NetworkDiff | ConfigDiff | DeploymentDiff


class ProposalDrift(BaseModel):
    function: str
    baseline_version: int
    diffs: dict[Concern, ConcernDiff] = {}
    missing_baseline: bool = False  # the version the proposal restores is not recorded


def proposal_drift(
    clients: Clients, store: IncidentStore, incident_id: str, resource: str
) -> ProposalDrift:
    """The drift of the function the incident's proposal fixes (`resource` if it names none).

    The stored proposal is read leniently: an approver is shown whatever was proposed, even
    a proposal that would not validate."""
    proposal = store.get_context(incident_id, ContextItem.PROPOSAL) or {}
    function = str(proposal.get("function_name") or resource)
    version = int(proposal.get("baseline_version") or 0)
    want = BaselineStore(clients("dynamodb")).version(function, version)
    if want is None:
        return ProposalDrift(function=function, baseline_version=version, missing_baseline=True)
    now = read_live(clients, function)
    return ProposalDrift(
        function=function,
        baseline_version=version,
        diffs={c: DIFFS[c](want, now) for c in proposal.get("concerns", []) if c in DIFFS},
    )
