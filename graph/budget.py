"""The budget rule: what a run may still spend, and which budget, if any, is spent.

Every node's working time is charged to `seconds_spent` by `timed`; the reward node asks
`budget_exhausted` after each experiment and sets `stop_reason`, which routing reads, so the
loop can never outrun a budget (LangGraph's recursion limit is no safeguard). The time budget
covers delivery too: the search stops while the time delivery should need is still left
(`delivery_seconds`), so a 60 s run hands over its model after about 60 s, as the rivals it is
benchmarked against do.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tandem.graph.context import RunContext
from tandem.graph.reward_rules import blend_candidates, blend_pool, token_count
from tandem.graph.state import ExperimentRecord, TandemState

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
    """The time budget's working seconds left, delivery's included (None: no time budget)."""
    if context.time_budget is None:
        return None
    return context.time_budget - state.get("seconds_spent", 0.0)


#: What delivery takes besides refitting models: choosing a small-data blend, the holdout's scores,
#: plots and permutation importance at its least, the reports. On breast cancer at 60 s (455
#: development rows): blend 1.3 s, holdout insight 1.7 s, reports 1.2 s, holdout scores 0.3 s.
DELIVERY_OVERHEAD_SECONDS = 4.0


TUNED_THRESHOLD_REFITS = 3.0
"""A tuned threshold is refit with scikit-learn's TunedThresholdClassifierCV: its model on 3 inner
folds (two thirds of the rows each) and once more on every row, about 3 times the model's refit."""


def refit_seconds(
    record: ExperimentRecord, ledger: Sequence[ExperimentRecord], n_jobs: int, folds: int, *, member: bool = False
) -> float:
    """What refitting an experiment on the whole development part should take, from its
    cross-validation: one fold's fit (its repeats x folds fits ran `n_jobs` at a time) on
    folds / (folds - 1) times the rows. An ensemble refits its members (it trained nothing itself),
    each at the default threshold (`member`: a blend uses their probabilities).

    A tuned threshold is scored without training when its model's out-of-fold predictions are
    cached, so its own cross-validation time can be near 0: its model's is read from the experiment
    it was tuned on, when that is the same spec at the default threshold. Its refit then costs
    `TUNED_THRESHOLD_REFITS` times the model's: the reserve used to count one fit where the
    refit makes four."""
    spec = record["spec"] or {}
    if spec.get("kind") == "ensemble":
        members = [i for i in spec.get("member_ids") or () if 0 <= i < len(ledger)]
        return sum(refit_seconds(ledger[i], ledger, n_jobs, folds, member=True) for i in members)
    seconds, threshold = _model_refit_seconds(record, n_jobs, folds), spec.get("threshold", "default")
    if threshold == "default":
        return seconds
    base_id = record.get("base_experiment")
    if (
        base_id is not None
        and 0 <= base_id < len(ledger)
        and ledger[base_id]["spec"] == {**spec, "threshold": "default"}
    ):
        seconds = max(seconds, _model_refit_seconds(ledger[base_id], n_jobs, folds))
    return seconds if member or threshold != "tuned" else TUNED_THRESHOLD_REFITS * seconds


def _model_refit_seconds(record: ExperimentRecord, n_jobs: int, folds: int) -> float:
    fits = max((len(scores) for scores in record["fold_scores"].values()), default=0)
    if fits == 0:
        return 0.0
    return record["fit_seconds"] * min(n_jobs, fits) / fits * folds / max(folds - 1, 1)


def delivery_seconds(state: TandemState, context: RunContext) -> float:
    """The working time delivery should need if the search stopped now: refitting what it would
    deliver (on small data every pipeline the blend may take, `blend_pool`) and the baseline it is
    compared with on the holdout, plus `DELIVERY_OVERHEAD_SECONDS`."""
    ledger = state.get("ledger", [])
    if not ledger:
        return DELIVERY_OVERHEAD_SECONDS
    task, incumbent = state["task"], state.get("incumbent", 0)
    delivered = {0, incumbent}
    if task["n_dev_rows"] < context.small_data_rows:
        named = np.empty(0)  # the pool's ids, without loading anyone's predictions
        pool = blend_pool(blend_candidates(ledger), lambda _: named, greater_is_better=task["greater_is_better"])
        delivered |= set(pool)
    refits = sum(refit_seconds(ledger[i], ledger, context.n_jobs, task["folds"]) for i in delivered)
    return DELIVERY_OVERHEAD_SECONDS + refits


def search_seconds_left(state: TandemState, context: RunContext) -> float | None:
    """The working seconds the search may still spend: the time budget's, less `delivery_seconds`."""
    left = seconds_left(state, context)
    return None if left is None else left - delivery_seconds(state, context)


def candidate_seconds(state: TandemState, context: RunContext) -> float | None:
    """How long the step's candidate may take, its dry run included: the run's candidate time
    limit, and never more than the search's time left (at least 1 s; None: no limit at all)."""
    limits = [x for x in (context.candidate_time_limit, search_seconds_left(state, context)) if x is not None]
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
        return f"iteration budget reached ({context.max_iters} experiment{'' if context.max_iters == 1 else 's'})"
    if (left := seconds_left(state, context)) is not None:
        reserve = delivery_seconds(state, context)
        kept = f"about {reserve:.0f} s kept for delivery"
        if left - reserve <= 0:
            return f"time budget reached ({context.time_budget:.0f} s; {kept})"
        typical = typical_fit_seconds(state)
        if typical is not None and left - reserve < typical:
            search = f"{left - reserve:.0f} s left, {kept}"
            return f"time budget nearly spent ({search}; a candidate takes about {typical:.0f} s)"
    tokens = tokens_left(state, context)
    if tokens is not None and tokens <= 0:
        return f"token budget reached ({context.token_budget} tokens)"
    return None
