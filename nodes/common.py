"""Small helpers every node shares: timing, the run folder, the data, and the budget left."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from graph.context import RunContext
from graph.persistence import RunFolder
from graph.rewards import token_count
from graph.state import TandemState
from tools.spec import EnsembleSpec, PipelineSpec, parse_spec

NodeFn = Callable[..., dict[str, Any]]


def timed(node: NodeFn) -> NodeFn:
    """Add the node's working time to `seconds_spent`, the clock the time budget is charged on."""

    @functools.wraps(node)
    def wrapper(state: TandemState, runtime: Any) -> dict[str, Any]:
        started = time.perf_counter()
        update = node(state, runtime)
        return {**update, "seconds_spent": round(time.perf_counter() - started, 4)}

    return wrapper


def folder_of(state: TandemState) -> RunFolder:
    from pathlib import Path

    return RunFolder(Path(state["run_dir"]))


def spec_resolver(state: TandemState) -> Callable[[int], PipelineSpec | EnsembleSpec]:
    """Experiment id → its spec, with a message an agent can act on for a bad id."""
    ledger = state.get("ledger", [])

    def resolve(experiment_id: int) -> PipelineSpec | EnsembleSpec:
        if not 0 <= experiment_id < len(ledger) or ledger[experiment_id]["spec"] is None:
            ok = [r["id"] for r in ledger if r["spec"] is not None]
            raise ValueError(f"experiment {experiment_id} has no spec; experiments with one: {ok}")
        return parse_spec(ledger[experiment_id]["spec"])  # type: ignore[arg-type]

    return resolve


def seconds_left(state: TandemState, context: RunContext) -> float | None:
    if context.time_budget is None:
        return None
    return context.time_budget - state.get("seconds_spent", 0.0)


def tokens_left(state: TandemState, context: RunContext) -> int | None:
    if context.token_budget is None:
        return None
    spent = sum(token_count(u) for u in state.get("tokens", {}).values())
    return context.token_budget - spent


def review_required(context: RunContext, delivering: bool) -> bool:
    """Whether a human must approve this step (routing reads the answer from the state)."""
    return context.approve == "proposals" or (delivering and context.approve == "delivery")


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
