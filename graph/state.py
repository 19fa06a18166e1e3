"""The shared memory of a run: one typed state that both agents read and the environment writes.

Only small, JSON-like values live here (the checkpointer stores every version of it); the data,
the dataset profile, out-of-fold predictions and fitted models stay in the run folder,
referenced by name and hash. The ledger and the reward events only ever grow (their reducer
appends), which is what makes a resumed run end with exactly the entries of an uninterrupted one.

Every payload an agent or a node hands to the next one has a TypedDict here: plain JSON at run
time (what the checkpointer stores and Studio shows), a precise type for mypy and readers. The
payloads that mirror a pydantic model (`ProposalData`, `ImplementationData`) are read back into
the model in one place each, `graph.messages.proposal_of` and `implementation_of`; every ledger
row is built by `new_record`.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired

from typing_extensions import TypedDict  # pydantic (LangGraph Studio's input form) needs it before 3.12

AgentName = Literal["scientist", "executor"]
Status = Literal["running", "delivered", "failed"]
GateKind = Literal["proposal", "delivery"]


class SummaryTask(TypedDict):
    """The task as summary.json shows it (`TaskInfo` without the CSV's hash)."""

    csv_path: str
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


class TaskInfo(SummaryTask):
    """The problem as the environment fixed it at setup; no agent can change it."""

    csv_sha256: str


class ProfileRef(TypedDict):
    """Where the run's dataset profile is: a file of the run folder, by name, and its SHA-256.

    The profile of wide data is megabytes, and the checkpointer stores every version of the
    state, so setup writes it once as `profile.json` and the state carries only this reference.
    Read it with `graph.persistence.profile_of`, which checks the hash (a swapped or damaged file
    is named, never used).
    """

    file: str
    """The file's name inside the run folder (never a path: the folder can move)."""
    sha256: str
    """Hex SHA-256 of the file's bytes as setup wrote them."""


class TokenUsage(TypedDict):
    input: int
    output: int


class ProposalData(TypedDict):
    """The Scientist's proposal as the state holds it: `graph.messages.Proposal` dumped as JSON.

    Read it back with `graph.messages.proposal_of` (the one place that parses it), which also
    gives the changes their types.
    """

    action: Literal["experiment", "deliver"]
    rationale: str
    changes: list[dict[str, Any]]
    base_experiment: int | None
    move: str | None
    failure: str | None


class ImplementationData(TypedDict):
    """The Executor's answer as the state holds it: `graph.messages.Implementation` dumped as JSON."""

    spec: dict[str, Any] | None
    repairs: list[str]
    repaired_aspects: list[str]
    error: str | None


class EvaluationData(TypedDict):
    """The environment's scores of a candidate: `tools.training.CandidateResult` as a plain dict."""

    spec_hash: str
    """Empty when no spec reached training."""
    status: Literal["ok", "failed", "timeout", "pruned"]
    fold_scores: dict[str, list[float]]
    cv: dict[str, float]
    cv_std: dict[str, float]
    fit_seconds: float
    fitted_params: dict[str, Any]
    """The parameters the fitted estimator really holds (the verifier compares them with the spec)."""
    error: str | None
    fold_fit_seconds: NotRequired[float]
    """Mean seconds of one fold's fit; kept with the candidate's cached scores, not in the ledger
    (timings differ between a run and its resumed twin). Absent from older evaluations."""
    fold_predict_seconds: NotRequired[float]
    """Mean seconds of one fold's prediction of its validation rows; likewise."""


class Verification(TypedDict):
    """The verifier's verdict on one candidate (built only by `nodes.verifier.verdict`)."""

    fidelity: float
    """In [0, 1]: the share of the proposal done as asked, times the share of parameters really fitted."""
    proposal_valid: bool
    """False when the proposal itself could not be built: the Scientist's fault, the Executor is not judged."""
    issues: list[str]
    """Every reason fidelity is below 1, one line each."""
    requested: int
    """How many spec aspects the proposal asked to change."""


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


def new_record(
    *,
    id: int,
    iteration: int,
    proposal: str,
    rationale: str,
    spec: dict[str, Any] | None,
    evaluation: EvaluationData,
    primary_metric: str,
    incumbent_after: int,
    base_experiment: int | None = None,
    move: str | None = None,
    changes: list[dict[str, Any]] | None = None,
    repairs: list[str] | None = None,
    error: str | None = None,
    gain: float | None = None,
    significant: bool = False,
    fidelity: float = 1.0,
    verification: list[str] | None = None,
    rewards: dict[str, float] | None = None,
    tokens: dict[str, TokenUsage] | None = None,
) -> ExperimentRecord:
    """The one way to build a ledger row, for the baseline (setup) and every experiment (reward).

    The scores, status, spec hash and fit time come from the candidate's evaluation, so the two
    writers cannot map them differently; the defaults are what the baseline has (no base, no
    changes, full fidelity, no rewards, no tokens). `error` is the Executor's, used only when the
    evaluation has none of its own.
    """
    return ExperimentRecord(
        id=id,
        iteration=iteration,
        base_experiment=base_experiment,
        move=move,
        proposal=proposal,
        rationale=rationale,
        changes=list(changes or []),
        spec=spec,
        spec_hash=evaluation["spec_hash"] or None,
        repairs=list(repairs or []),
        status=evaluation["status"],
        error=evaluation["error"] or error,
        cv=evaluation["cv"],
        cv_std=evaluation["cv_std"],
        fold_scores=evaluation["fold_scores"],
        primary=evaluation["cv"].get(primary_metric),
        gain=gain,
        significant=significant,
        fidelity=fidelity,
        verification=list(verification or []),
        rewards=dict(rewards) if rewards is not None else {"scientist": 0.0, "executor": 0.0},
        tokens=dict(tokens or {}),
        fit_seconds=float(evaluation["fit_seconds"]),
        incumbent_after=incumbent_after,
    )


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
    kind: GateKind
    """What was rejected: a proposal before it was implemented, or the delivery."""
    proposal: str
    """The rejected proposal in one line (for a delivery, the Scientist's or the budget's reason)."""
    move: str | None
    """The kind of idea rejected (the heuristic Scientist stops playing it)."""
    reason: str
    """What the human said; may be empty."""


class ReviewAnswer(TypedDict):
    """A human's answer at an approval gate."""

    kind: GateKind
    approved: bool
    reason: str


class ExperimentSummary(TypedDict):
    """One experiment in the delivered summary: its CV scores and its single holdout score."""

    experiment_id: int
    proposal: str
    spec_hash: str | None
    spec: dict[str, Any] | None
    cv: dict[str, float]
    cv_std: dict[str, float]
    holdout: dict[str, float]


class AgentInfo(TypedDict):
    kind: str
    """heuristic or llm."""
    model: str | None
    """The chat model's name for an LLM agent."""


class PolicyInfo(TypedDict):
    name: str
    """`playbook` (the hand-set preferences) or the policy file's path."""
    hash: str | None
    """SHA-256 of the policy file; None for the playbook."""


class _RunSummaryAlways(TypedDict):
    """The keys every summary has (`RunSummary` adds the optional ones)."""

    run_id: str
    status: Status
    stop_reason: str
    task: SummaryTask
    iterations: int
    incumbent: int
    """The best experiment by mean CV score."""
    selection: str
    """Why the delivered experiment (`best`) was chosen; it may differ from `incumbent` on small data."""
    experiments: int
    seconds_spent: float
    baseline: ExperimentSummary
    best: ExperimentSummary
    rewards: dict[str, float]
    reward_parts: dict[str, dict[str, float]]
    tokens: dict[str, TokenUsage]
    feedback: list[HumanFeedback]
    artifacts: dict[str, str]
    model_sha256: str
    """SHA-256 of model.joblib as delivered; `tandem predict` loads the model only if it matches."""
    agents: dict[str, AgentInfo]
    policy: PolicyInfo
    """The Scientist's move policy: `playbook` or a policy file, with its hash (frozen for the run)."""


class RunSummary(_RunSummaryAlways, total=False):
    """What the deliver node returns and writes as summary.json: the contract `tandem show`, the
    benchmark and users rely on (built by `nodes.deliver.build_summary`)."""

    cost_usd: dict[str, float | None]
    """Dollars per role and in total, only when the run was given a price table."""


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

    task: TaskInfo
    """The problem as fixed at setup."""
    profile: ProfileRef
    """The dataset profile (tools.profile.DatasetProfile), stored once in the run folder: read it
    with graph.persistence.profile_of."""
    proposal: ProposalData | None
    """The Scientist's current proposal (read it with graph.messages.proposal_of)."""
    implementation: ImplementationData | None
    """The Executor's current implementation (read it with graph.messages.implementation_of)."""
    evaluation: EvaluationData | None
    """The environment's scores of the current candidate."""
    verification: Verification | None
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
    delivered: RunSummary | None
    """The delivered result: experiment, holdout scores of it and of the baseline, artifact paths."""
    review_required: bool
    """Set by the scientist and reward nodes from the run context: the next step needs a human's approval."""
    review: ReviewAnswer | None
    """The human's latest answer at an approval gate: kind, approved, reason (nodes/review.py)."""
    feedback: Annotated[list[HumanFeedback], operator.add]
    """Every rejection a human gave at an approval gate, in order; append-only."""
