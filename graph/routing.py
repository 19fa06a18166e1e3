"""Where the loop goes next: pure functions of the state, so forks and Studio route the same way.

Budgets are enforced through `stop_reason`, which the reward node sets when a budget is spent.
"""

from __future__ import annotations

from typing import Literal

from graph.state import TandemState


def after_scientist(state: TandemState) -> Literal["executor", "deliver"]:
    """The Scientist may decide to deliver instead of proposing."""
    return "deliver" if (state.get("proposal") or {}).get("action") == "deliver" else "executor"


def after_reward(state: TandemState) -> Literal["scientist", "deliver"]:
    """Back to the Scientist unless the reward node found a budget (iterations, seconds, tokens) spent."""
    return "deliver" if state.get("stop_reason") else "scientist"
