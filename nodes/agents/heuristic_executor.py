"""The offline Executor: implements a proposal exactly, then repairs it until it runs.

Faithful first: the spec is the proposal's changes applied to the base experiment (the same
meaning the verifier checks). Then a dry run on a small sample; known failures get a known
repair (missing values for a family that rejects them, a transform that overflows), each
reported with the spec aspect it touched, so the verifier can tell a repair from a deviation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tandem.graph.messages import Implementation, Level, Regularise, apply_changes
from tandem.nodes.agents.base import AgentReply, ExecutorRequest
from tandem.tools.spec import EnsembleSpec, PipelineSpec, SpecError, check_against_data

Repair = tuple[str, str, Callable[[PipelineSpec], PipelineSpec]]

#: (symptom in the error text, spec aspect, fix) — tried in order, each at most once.
REPAIRS: list[tuple[tuple[str, ...], str, str, Callable[[PipelineSpec], PipelineSpec]]] = [
    (
        ("nan", "missing values", "infinity"),
        "preprocessing.numeric_imputer",
        "impute numeric columns with the median: the family rejects missing values",
        lambda s: s.model_copy(
            update={"preprocessing": s.preprocessing.model_copy(update={"numeric_imputer": "median"})}
        ),
    ),
    (
        ("overflow", "power", "lambda"),
        "preprocessing.numeric_transform",
        "drop the numeric power/quantile transform: it failed on these values",
        lambda s: s.model_copy(
            update={"preprocessing": s.preprocessing.model_copy(update={"numeric_transform": "none"})}
        ),
    ),
    (
        ("targetencoder", "target_type", "unknown categories"),
        "preprocessing.high_cardinality_encoder",
        "use frequency encoding for high-cardinality columns: target encoding failed",
        lambda s: s.model_copy(
            update={"preprocessing": s.preprocessing.model_copy(update={"high_cardinality_encoder": "frequency"})}
        ),
    ),
]


#: Fills an open choice (a `Regularise` without a level) for a request: the Executor's policy.
Filling = Callable[[ExecutorRequest, Regularise], Level]


def medium_filling(request: ExecutorRequest, change: Regularise) -> Level:
    """The fixed filling when no policy is given: the middle level."""
    return "medium"


class HeuristicExecutor:
    def __init__(self, max_repairs: int = 3, filling: Filling = medium_filling) -> None:
        self.max_repairs = max_repairs
        self.filling = filling

    def fill(self, request: ExecutorRequest) -> list[Any]:
        """The proposal's changes with every open choice filled by the Executor's policy."""
        return [
            c.model_copy(update={"level": self.filling(request, c)})
            if isinstance(c, Regularise) and c.level is None
            else c
            for c in request.proposal.changes
        ]

    def implement(self, request: ExecutorRequest) -> AgentReply[Implementation]:
        try:
            spec = apply_changes(request.base_spec, self.fill(request), request.resolve)
            check_against_data(spec, request.columns, request.task["task_type"])
        except (SpecError, ValueError) as exc:
            return AgentReply(Implementation(error=f"cannot implement the proposal: {exc}"))
        repairs: list[str] = []
        aspects: list[str] = []
        error = request.try_spec(spec)
        tried: set[str] = set()
        while error is not None and len(repairs) < self.max_repairs and isinstance(spec, PipelineSpec):
            fix = _matching_repair(error, tried)
            if fix is None:
                break
            aspect, why, apply = fix
            tried.add(aspect)
            spec = apply(spec)
            repairs.append(why)
            aspects.append(aspect)
            error = request.try_spec(spec)
        return AgentReply(Implementation(spec=spec, repairs=repairs, repaired_aspects=aspects, error=error))


def _matching_repair(error: str, tried: set[str]) -> tuple[str, str, Callable[[PipelineSpec], PipelineSpec]] | None:
    text = error.lower()
    for symptoms, aspect, why, apply in REPAIRS:
        if aspect not in tried and any(s in text for s in symptoms):
            return aspect, why, apply
    return None


__all__ = ["EnsembleSpec", "HeuristicExecutor"]
