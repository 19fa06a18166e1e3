"""The shared memory of a run: one typed state that both agents read and the environment writes.

Only small, JSON-like values live here (the checkpointer stores every version of it); the data,
out-of-fold predictions and fitted models stay in the run folder, referenced by path and hash.
The ledger and the reward events only ever grow (their reducer appends), which is what makes a
resumed run end with exactly the entries of an uninterrupted one.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from typing_extensions import TypedDict  # pydantic (LangGraph Studio's input form) needs it before 3.12

AgentName = Literal["scientist", "executor"]
Status = Literal["running", "delivered", "failed"]


class TaskInfo(TypedDict):
    """The problem as the environment fixed it at setup; no agent can change it."""

    csv_path: str
    csv_sha256: str
    target: str
    task_type: Literal["binary", "multiclass", "regression"]
    metrics: list[str]
    primary_metric: str
    greater_is_better: bool
    classes: list[Any]
    positive_class: Any
    n_rows: int
    n_dev_rows: int
    n_holdout_rows: int
    folds: int
    seed: int
    holdout_source: str
    notes: list[str]


class TokenUsage(TypedDict):
    input: int
    output: int


class ExperimentRecord(TypedDict):
    """One row of the experiment ledger: a candidate, how it was asked for, and what it earned."""

    id: int
    iteration: int
    base_experiment: int | None
    move: str | None
    proposal: str
    rationale: str
    changes: list[dict[str, Any]]
    spec: dict[str, Any] | None
    spec_hash: str | None
    repairs: list[str]
    status: str
    error: str | None
    cv: dict[str, float]
    cv_std: dict[str, float]
    fold_scores: dict[str, list[float]]
    primary: float | None
    gain: float | None
    significant: bool
    fidelity: float
    verification: list[str]
    rewards: dict[str, float]
    tokens: dict[str, TokenUsage]
    fit_seconds: float
    incumbent_after: int


class RewardEvent(TypedDict):
    """What one agent earned for one experiment, with every part, so the total can be explained."""

    experiment_id: int
    agent: AgentName
    total: float
    parts: dict[str, float]


class HumanFeedback(TypedDict):
    """A human's rejection at an approval gate, kept so the Scientist can read it and move on."""

    iteration: int
    """Experiments done when the human answered."""
    kind: Literal["proposal", "delivery"]
    """What was rejected: a proposal before it was implemented, or the delivery."""
    proposal: str
    """The rejected proposal in one line (for a delivery, the Scientist's or the budget's reason)."""
    move: str | None
    """The kind of idea rejected (the heuristic Scientist stops playing it)."""
    reason: str
    """What the human said; may be empty."""


def add_usage(left: dict[str, TokenUsage] | None, right: dict[str, TokenUsage] | None) -> dict[str, TokenUsage]:
    """Reducer: token usage per agent accumulates over the run."""
    out = {k: TokenUsage(input=v["input"], output=v["output"]) for k, v in (left or {}).items()}
    for agent, usage in (right or {}).items():
        seen = out.setdefault(agent, TokenUsage(input=0, output=0))
        seen["input"] += usage["input"]
        seen["output"] += usage["output"]
    return out


class TaskRequest(TypedDict, total=False):
    """What a user gives to start a run (the input form in LangGraph Studio)."""

    csv_path: str
    """Path of the CSV to learn from (readable by the server)."""
    target: str
    """Name of the column to predict."""
    metrics: list[str] | None
    """Metrics to report (default: f1_macro for classification, rmse for regression, plus a few)."""
    primary_metric: str | None
    """The metric that decides which model is best (default: the first metric)."""
    holdout: float
    """Share of rows kept aside and scored once at delivery (default 0.2)."""
    folds: int
    """Cross-validation folds on the development part (default 5)."""
    seed: int
    """Seed of the split, the folds and every estimator (default 0)."""
    holdout_csv: str | None
    """A separate labelled CSV to use as the holdout instead of a random split."""
    task_type: Literal["binary", "multiclass", "regression"] | None
    """Force the task type (otherwise inferred from the target)."""
    run_id: str | None
    """Name of the run folder (default: generated)."""


class TandemState(TaskRequest, total=False):
    """Everything both agents and the environment know about a run."""

    run_dir: str
    """Folder holding the data references, cache, checkpoints and artifacts of this run."""
    task: TaskInfo
    """The problem as fixed at setup."""
    profile: dict[str, Any]
    """The dataset profile (tools.profile.DatasetProfile as JSON)."""
    split_path: str
    """Where the holdout rows and the fold of every development row are stored."""
    proposal: dict[str, Any] | None
    """The Scientist's current proposal (graph.messages.Proposal as JSON)."""
    implementation: dict[str, Any] | None
    """The Executor's current implementation (graph.messages.Implementation as JSON)."""
    evaluation: dict[str, Any] | None
    """The environment's scores of the current candidate (tools.training.CandidateResult as JSON)."""
    verification: dict[str, Any] | None
    """The verifier's verdict on the current candidate: fidelity and the reasons for it."""
    step_tokens: dict[str, TokenUsage]
    """Tokens each agent spent on the current step (reset by each proposal)."""
    ledger: Annotated[list[ExperimentRecord], operator.add]
    """Every experiment, in order; append-only."""
    reward_events: Annotated[list[RewardEvent], operator.add]
    """Every reward paid, with its parts; append-only."""
    tokens: Annotated[dict[str, TokenUsage], add_usage]
    """Tokens spent per agent over the whole run."""
    incumbent: int
    """Id of the best experiment so far (by mean CV score on the primary metric)."""
    iteration: int
    """Experiments proposed after the baseline."""
    seconds_spent: Annotated[float, operator.add]
    """Working seconds spent by the nodes (time while stopped does not count)."""
    stop_reason: str | None
    """Why the search stopped: the Scientist delivered, or which budget ran out."""
    status: Status
    """running, delivered or failed."""
    delivered: dict[str, Any] | None
    """The delivered result: experiment, holdout scores of it and of the baseline, artifact paths."""
    review_required: bool
    """Set by the scientist and reward nodes from the run context: the next step needs a human's approval."""
    review: dict[str, Any] | None
    """The human's latest answer at an approval gate: kind, approved, reason (nodes/review.py)."""
    feedback: Annotated[list[HumanFeedback], operator.add]
    """Every rejection a human gave at an approval gate, in order; append-only."""
