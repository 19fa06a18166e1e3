"""Scientist node: show the agent the shared memory, record its proposal and the tokens it spent."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from tandem.graph.budget import search_seconds_left, timed, tokens_left
from tandem.graph.context import RunContext, context_of
from tandem.graph.messages import proposal_data
from tandem.graph.persistence import RunFolder, dev_data, profile_of
from tandem.graph.routing import review_required
from tandem.graph.state import TandemState
from tandem.nodes.agents import ScientistView, make_scientist
from tandem.tools.training import load_oof


def scientist_view(state: TandemState, context: RunContext) -> ScientistView:
    """The read-only picture of the shared memory the Scientist decides from."""
    return ScientistView(
        task=state["task"],
        profile=profile_of(state, RunFolder.of(state, context)),
        ledger=state["ledger"],
        incumbent=state["incumbent"],
        iterations_left=context.max_iters - state.get("iteration", 0),
        seconds_left=search_seconds_left(state, context),
        tokens_left=tokens_left(state, context),
        rewards=context.rewards,
        patience=context.patience,
        time_budget=context.time_budget,
        small_data_rows=context.small_data_rows,
        feedback=tuple(state.get("feedback", [])),
        data=lambda: dev_data(state["task"], RunFolder.of(state, context))[:2],
        oof=lambda key: load_oof(RunFolder.of(state, context).cache, key),
    )


@timed
def scientist(state: TandemState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Propose the next experiment, or decide to deliver."""
    context = context_of(runtime)
    reply = make_scientist(context).propose(scientist_view(state, context))
    proposal = reply.value
    update: dict[str, Any] = {
        "proposal": proposal_data(proposal),
        "implementation": None,
        "evaluation": None,
        "verification": None,
        "step_tokens": {"scientist": reply.usage},
        "tokens": {"scientist": reply.usage},
        "review_required": review_required(context.approve, delivering=proposal.action == "deliver"),
    }
    if proposal.action == "deliver":
        update["stop_reason"] = f"the Scientist delivered: {proposal.rationale}"
    return update
