"""Where the loop goes next: pure functions of the state, so forks and Studio route the same way.

Budgets are enforced through `stop_reason`, which the reward node sets when a budget is spent.
Approval gates work the same way: the scientist and reward nodes read the run context and set
`review_required`, so routing never needs the context (LangGraph's `update_state`, which forks
and reopened runs use, routes without one). With `approve="never"` (the default) the `review`
node is never visited and the loop is setup → scientist → executor → evaluator → verifier →
reward → … → deliver.
"""

from __future__ import annotations

from typing import Literal

from tandem.graph.state import TandemState


def after_scientist(state: TandemState) -> Literal["executor", "deliver", "review"]:
    """The Scientist may decide to deliver instead of proposing; a human may have to approve either."""
    if state.get("review_required"):
        return "review"
    proposal = state.get("proposal")
    return "deliver" if proposal is not None and proposal["action"] == "deliver" else "executor"


def after_reward(state: TandemState) -> Literal["scientist", "deliver", "review"]:
    """Back to the Scientist unless the reward node found a budget (iterations, seconds, tokens) spent."""
    if not state.get("stop_reason"):
        return "scientist"
    return "review" if state.get("review_required") else "deliver"


def after_review(state: TandemState) -> Literal["executor", "deliver", "scientist", "review"]:
    """Approved: carry on. Rejected: back to the Scientist, or ask again when no budget is left."""
    delivering = bool(state.get("stop_reason"))
    review = state.get("review")
    if review is not None and review["approved"]:
        return "deliver" if delivering else "executor"
    return "review" if delivering else "scientist"


def review_required(approve: str, delivering: bool) -> bool:
    """Whether a human must approve this step; nodes store the answer, and routing reads it from the state."""
    return approve == "proposals" or (delivering and approve == "delivery")
