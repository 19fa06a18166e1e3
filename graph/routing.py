"""Where the loop goes next. Budgets are enforced here, so no run can outlive them."""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from graph.context import RunContext, context_of
from graph.state import TandemState
from nodes.common import budget_exhausted


def after_scientist(state: TandemState) -> Literal["executor", "deliver"]:
    """The Scientist may decide to deliver instead of proposing."""
    return "deliver" if (state.get("proposal") or {}).get("action") == "deliver" else "executor"


def after_reward(state: TandemState, runtime: Runtime[RunContext]) -> Literal["scientist", "deliver"]:
    """Back to the Scientist unless a budget (iterations, seconds, tokens) is spent."""
    return "deliver" if budget_exhausted(state, context_of(runtime)) else "scientist"
