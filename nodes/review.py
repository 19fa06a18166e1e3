"""Review node: a human approves or rejects a proposal or the delivery (LangGraph `interrupt()`).

Routing sends the run here only when the run context asks for approval (`approve="delivery"` or
`"proposals"`), so a run without approval never pauses. The node pauses the graph with a
question; the caller continues it with `Command(resume=reply)`:

- `True`, `"approve"`, `"yes"` or `{"approve": True}` approves;
- `False`, `"no"`, `"reject"`, any other text, or `{"approve": False, "reason": "..."}` rejects,
  the text being the reason.

A rejected proposal goes back to the Scientist with the reason in `state["feedback"]`; a
rejected delivery does too, as long as the budget allows another experiment. When a budget is
spent the gate asks again: approve, or raise the budget and resume (`resume_run(...,
max_iters=N)`, `tandem resume RUN --max-iters N`). The node does nothing before `interrupt()`
and is not timed, so re-running it on resume is harmless and waiting for a human costs no budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from typing_extensions import TypedDict

from tandem.graph.budget import budget_exhausted
from tandem.graph.context import RunContext, context_of
from tandem.graph.messages import proposal_of
from tandem.graph.state import GateKind, HumanFeedback, ReviewAnswer, TandemState

APPROVE_WORDS = {"", "y", "yes", "ok", "approve", "approved", "accept", "true"}
REJECT_WORDS = {"n", "no", "reject", "rejected", "false"}


@dataclass(frozen=True)
class Verdict:
    approved: bool
    reason: str = ""


def parse_reply(reply: Any) -> Verdict:
    """Read a human's reply, in any of the forms the module docstring lists."""
    if isinstance(reply, dict):
        reason = str(reply.get("reason") or "").strip()
        approved = reply.get("approve", reply.get("approved"))
        return Verdict(approved=not reason if approved is None else bool(approved), reason=reason)
    if isinstance(reply, bool):
        return Verdict(approved=reply)
    text = str(reply if reply is not None else "").strip()
    if text.lower() in APPROVE_WORDS:
        return Verdict(approved=True)
    return Verdict(approved=False, reason="" if text.lower() in REJECT_WORDS else text)


class IncumbentScore(TypedDict):
    """The experiment the human would keep by rejecting: its id and mean CV score."""

    id: int
    metric: str
    cv: float | None


class ApprovalQuestion(TypedDict):
    """What the human is asked at a gate (the payload of `interrupt()`)."""

    kind: GateKind
    run_id: str | None
    iteration: int
    move: str | None
    """The kind of idea proposed; None for a delivery."""
    changes: list[str]
    """The kinds of change proposed, in order."""
    proposal: str
    """The proposal in one line, or which experiment would be delivered."""
    rationale: str
    stop_reason: str | None
    incumbent: IncumbentScore
    can_continue: bool
    """False when a budget is spent: a rejected delivery then asks again instead of going on."""
    reply: str
    """How to answer."""


def question(state: TandemState, context: RunContext) -> ApprovalQuestion:
    """What the human is asked: plain JSON, shown by the CLI and in LangGraph Studio."""
    task, ledger = state["task"], state["ledger"]
    incumbent = ledger[state["incumbent"]]
    delivering = bool(state.get("stop_reason"))
    blocked = delivering and budget_exhausted(state, context) is not None
    proposal = None if delivering or state.get("proposal") is None else proposal_of(state)
    return ApprovalQuestion(
        kind="delivery" if delivering else "proposal",
        run_id=state.get("run_id"),
        iteration=state.get("iteration", 0),
        move=proposal.move if proposal else None,
        changes=[c.change for c in proposal.changes] if proposal else [],
        proposal=proposal.summary() if proposal else f"deliver experiment #{incumbent['id']}",
        rationale=(proposal.rationale if proposal else "") or state.get("stop_reason") or "",
        stop_reason=state.get("stop_reason"),
        incumbent=IncumbentScore(id=incumbent["id"], metric=task["primary_metric"], cv=incumbent["primary"]),
        can_continue=not blocked,
        reply="True to approve; {'approve': False, 'reason': '...'} (or any text) to reject"
        + ("" if not blocked else "; the budget is spent, so a rejection asks again: raise the budget and resume"),
    )


def review(state: TandemState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Pause for the human's verdict; record a rejection where the Scientist reads it."""
    asked = question(state, context_of(runtime))
    verdict = parse_reply(interrupt(asked))
    answer = ReviewAnswer(kind=asked["kind"], approved=verdict.approved, reason=verdict.reason)
    if verdict.approved:
        return {"review": answer}
    feedback = HumanFeedback(
        iteration=asked["iteration"],
        kind=asked["kind"],
        proposal=asked["proposal"] if asked["kind"] == "proposal" else str(asked["stop_reason"]),
        move=asked["move"],
        reason=verdict.reason,
    )
    update: dict[str, Any] = {"review": answer, "feedback": [feedback]}
    if asked["kind"] == "proposal":
        # a rejected proposal goes back to the Scientist without passing the reward node, where budgets
        # are checked: checked here, so rejections cannot spend tokens or time past the budget
        update["stop_reason"] = budget_exhausted(state, context_of(runtime))
    elif asked["can_continue"]:
        update["stop_reason"] = None
    return update
