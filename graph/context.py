"""Run-scoped settings: budgets, agent choices and reward coefficients.

LangGraph does not checkpoint the runtime context, so a run stores its context in its folder
(`run.json`) and passes it again on every resume; a resume may raise a budget.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

AgentKind = Literal["heuristic", "llm"]


def default_runs_dir() -> str:
    """`$TANDEM_RUNS_DIR`, else `./runs`."""
    return os.environ.get("TANDEM_RUNS_DIR") or str(Path("runs").resolve())


@dataclass(frozen=True)
class RewardConfig:
    """The reward rules of DESIGN.md section 5, with every coefficient in one place.

    Gains are in units of the primary metric, divided by the incumbent's score for unbounded
    metrics (RMSE, MAE, log-loss…), so a gain of 0.01 means one point of F1 or 1% of RMSE.
    """

    token_cost: float = 1e-6
    """Reward lost per token an agent spends (input + output)."""
    mismatch_penalty: float = 0.01
    """Executor penalty when fidelity is below `low_fidelity`."""
    low_fidelity: float = 0.8
    """Below this fidelity the implementation counts as unfaithful: the Scientist is not judged."""
    failure_penalty: float = 0.02
    """Executor penalty when its spec does not run (error or time-out)."""
    insignificant_penalty: float = 0.002
    """Scientist penalty for a faithfully implemented idea whose gain is not significant."""
    significance_t: float = 1.5
    """A gain is significant when its paired t-statistic over the folds reaches this value…"""
    min_gain: float = 0.0
    """…and its mean (in reward units) exceeds this."""


@dataclass(frozen=True)
class RunContext:
    """What a run needs besides its state: stored in `run.json`, passed again on every call."""

    runs_dir: str = field(default_factory=default_runs_dir)
    scientist: AgentKind = "heuristic"
    executor: AgentKind = "heuristic"
    max_iters: int = 20
    """Experiments after the baseline."""
    time_budget: float | None = 900.0
    """Working seconds for the search (delivery is not counted)."""
    token_budget: int | None = None
    """Total tokens of both agents."""
    candidate_time_limit: float | None = 300.0
    """Seconds one candidate's cross-validation may take."""
    n_jobs: int = 2
    """Parallel fold fits (joblib)."""
    patience: int = 8
    """The heuristic Scientist delivers after this many proposals in a row without significant gain."""
    rewards: RewardConfig = field(default_factory=RewardConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunContext:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("rewards"), dict):
            values["rewards"] = RewardConfig(**values["rewards"])
        return cls(**values)


def context_of(runtime: Any) -> RunContext:
    """The runtime's context, or the defaults when the caller passed none (as Studio may)."""
    context = getattr(runtime, "context", None)
    return context if isinstance(context, RunContext) else RunContext()
