"""One interface for each role, whatever drives it (a playbook or a chat model).

A Scientist turns a `ScientistView` (a read-only picture of the shared memory) into a
`Proposal`; an Executor turns an `ExecutorRequest` into an `Implementation`. Both report the
tokens they spent, which the environment charges to them. The nodes only see these protocols,
so a team can mix kinds freely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np
import pandas as pd

from tandem.graph.context import RewardConfig, RunContext
from tandem.graph.messages import Implementation, Proposal, SpecResolver
from tandem.graph.state import ExperimentRecord, HumanFeedback, TaskInfo, TokenUsage
from tandem.tools.profile import DatasetProfile
from tandem.tools.spec import EnsembleSpec, PipelineSpec, parse_spec

T = TypeVar("T")


@dataclass(frozen=True)
class AgentReply(Generic[T]):
    value: T
    usage: TokenUsage = field(default_factory=lambda: TokenUsage(input=0, output=0))


@dataclass(frozen=True)
class ScientistView:
    """What the Scientist may know: the task, the profile, the ledger and the budget left.

    Never holdout scores: those do not exist until delivery.
    """

    task: TaskInfo
    profile: DatasetProfile
    ledger: list[ExperimentRecord]
    incumbent: int
    iterations_left: int
    seconds_left: float | None
    tokens_left: int | None
    rewards: RewardConfig
    patience: int
    time_budget: float | None = None
    """The run's time budget in seconds (None: bounded by experiments only)."""
    data: Callable[[], tuple[pd.DataFrame, pd.Series]] | None = None
    """The development rows (features, target), loaded on demand for analysis; never the holdout."""
    feedback: tuple[HumanFeedback, ...] = ()
    """What humans said when they rejected a proposal or a delivery (approval gates), oldest first."""
    small_data_rows: int = RunContext.small_data_rows
    """Below this many development rows the run delivers a blend chosen on the out-of-fold
    predictions (`RunContext.small_data_rows`), and its search stops sooner (`expected_value`)."""
    oof: Callable[[str], np.ndarray | None] | None = None
    """A candidate's out-of-fold predictions by spec hash, shape (repeats, development rows,
    columns), in the row order of `data`; None when not saved (ensemble selection reads them)."""

    def record(self, experiment_id: int) -> ExperimentRecord:
        return self.ledger[experiment_id]

    def spec_of(self, experiment_id: int) -> PipelineSpec | EnsembleSpec:
        """The spec of an experiment by its id; ids are never counted from the end, as the Executor's
        resolver does not (`graph.messages.spec_resolver`), so a check here agrees with it."""
        if not 0 <= experiment_id < len(self.ledger):
            raise KeyError(f"no experiment {experiment_id}; ids run from 0 to {len(self.ledger) - 1}")
        spec = self.ledger[experiment_id]["spec"]
        if spec is None:
            raise KeyError(f"experiment {experiment_id} has no spec")
        return parse_spec(spec)

    @property
    def tried_hashes(self) -> set[str]:
        return {r["spec_hash"] for r in self.ledger if r["spec_hash"]}


@dataclass(frozen=True)
class ExecutorRequest:
    """What the Executor gets: the proposal, the spec it changes, and a dry-run tool."""

    task: TaskInfo
    profile: DatasetProfile
    proposal: Proposal
    base_spec: PipelineSpec | EnsembleSpec
    resolve: SpecResolver
    columns: list[str]
    try_spec: Callable[[PipelineSpec | EnsembleSpec], str | None]
    """Fits the spec on a small sample; returns the error, or None when it runs."""
    rewards: RewardConfig = field(default_factory=RewardConfig)
    """The run's reward rules (an LLM Executor is told what it is paid for)."""


class ScientistAgent(Protocol):
    def propose(self, view: ScientistView) -> AgentReply[Proposal]: ...


class ExecutorAgent(Protocol):
    def implement(self, request: ExecutorRequest) -> AgentReply[Implementation]: ...
