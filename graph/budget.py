"""The budget rule: what a run may still spend, and which budget, if any, is spent.

Every node's working time is charged to `seconds_spent` by `timed`; the reward node asks
`budget_exhausted` after each experiment and sets `stop_reason`, which routing reads, so the
loop can never outrun a budget (LangGraph's recursion limit is no safeguard).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from tandem.graph.context import RunContext
from tandem.graph.reward_rules import token_count
from tandem.graph.state import TandemState

NodeFn = Callable[..., dict[str, Any]]


def timed(node: NodeFn) -> NodeFn:
    """Add the node's working time to `seconds_spent`, the clock the time budget is charged on."""

    @functools.wraps(node)
    def wrapper(state: TandemState, runtime: Any) -> dict[str, Any]:
        started = time.perf_counter()
        update = node(state, runtime)
        return {**update, "seconds_spent": round(time.perf_counter() - started, 4)}

    return wrapper


def seconds_left(state: TandemState, context: RunContext) -> float | None:
    if context.time_budget is None:
        return None
    return context.time_budget - state.get("seconds_spent", 0.0)


def candidate_seconds(state: TandemState, context: RunContext) -> float | None:
    """How long the step's candidate may take, its dry run included: the run's candidate time
    limit, and never more than the working time left (at least 1 s; None: no limit at all)."""
    limits = [x for x in (context.candidate_time_limit, seconds_left(state, context)) if x is not None]
    return max(1.0, min(limits)) if limits else None


def tokens_left(state: TandemState, context: RunContext) -> int | None:
    if context.token_budget is None:
        return None
    spent = sum(token_count(u) for u in state.get("tokens", {}).values())
    return context.token_budget - spent


def typical_fit_seconds(state: TandemState) -> float | None:
    """Median cross-validation time of the successful experiments so far."""
    times = sorted(r["fit_seconds"] for r in state.get("ledger", []) if r["status"] == "ok")
    return times[len(times) // 2] if times else None


def budget_exhausted(state: TandemState, context: RunContext) -> str | None:
    """Which budget is spent, if any: the routing reads this, so the loop can never outrun it."""
    if state.get("iteration", 0) >= context.max_iters:
        return f"iteration budget reached ({context.max_iters} experiments)"
    left = seconds_left(state, context)
    if left is not None and left <= 0:
        return f"time budget reached ({context.time_budget:.0f} s)"
    typical = typical_fit_seconds(state)
    if left is not None and typical is not None and left < typical:
        return f"time budget nearly spent ({left:.0f} s left; a candidate takes about {typical:.0f} s)"
    tokens = tokens_left(state, context)
    if tokens is not None and tokens <= 0:
        return f"token budget reached ({context.token_budget} tokens)"
    return None
