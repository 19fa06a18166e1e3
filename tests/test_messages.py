"""The payloads of the shared state: typed, plain JSON as stored, each read back in one place."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import TypeAdapter, ValidationError

from tandem.api import run_task
from tandem.graph.context import RunContext
from tandem.graph.messages import (
    AddFeature,
    BuildEnsemble,
    Implementation,
    Proposal,
    SetModel,
    implementation_data,
    implementation_of,
    proposal_data,
    proposal_of,
)
from tandem.graph.state import (
    EvaluationData,
    ExperimentRecord,
    ImplementationData,
    ProposalData,
    RunSummary,
    TandemState,
    new_record,
)
from tandem.nodes.evaluator import evaluation_data
from tandem.nodes.verifier import invalid_proposal, verdict, verifier
from tandem.tools.spec import LogOp, parse_spec
from tandem.tools.training import CandidateResult

SPEC = {"columns": {"numeric": ["age", "fare"], "categorical": ["sex"]}, "model": {"family": "logistic"}}


def stored(value: Any) -> Any:
    """What the checkpointer gives back after storing a value (and proof that it is plain JSON)."""
    assert json.loads(json.dumps(value)) == value
    serde = JsonPlusSerializer()
    return serde.loads_typed(serde.dumps_typed(value))


def test_state_payloads_mirror_the_models_they_store() -> None:
    assert list(ProposalData.__annotations__) == list(Proposal.model_fields)
    assert list(ImplementationData.__annotations__) == list(Implementation.model_fields)
    assert list(EvaluationData.__annotations__) == [f.name for f in fields(CandidateResult)]


def test_a_proposal_survives_the_checkpointer_and_is_read_back_typed() -> None:
    proposal = Proposal(
        rationale="boost and log the fare",
        changes=[
            SetModel(family="lightgbm", params={"n_estimators": 300}),
            AddFeature(feature=LogOp(columns=("fare",))),
        ],
        base_experiment=0,
        move="stronger_family",
    )
    data = stored(proposal_data(proposal))
    TypeAdapter(ProposalData).validate_python(data)
    assert proposal_of({"proposal": data}) == proposal


def test_an_implementation_survives_the_checkpointer_and_is_read_back_typed() -> None:
    implementation = Implementation(spec=parse_spec(SPEC), repairs=["median imputer: NaN in age"])
    data = stored(implementation_data(implementation))
    TypeAdapter(ImplementationData).validate_python(data)
    assert implementation_of({"implementation": data}) == implementation


@pytest.mark.parametrize("weights", [(0.0, 0.0), (1.0, -1.0)])
def test_a_blend_proposal_whose_weights_average_to_nothing_is_invalid(weights: tuple[float, ...]) -> None:
    """An LLM's `build_ensemble` is read through the same rule as the spec it becomes
    (tools/spec.py: BlendWeights): refused as an invalid answer, never handed to the evaluator."""
    with pytest.raises(ValidationError, match="non-negative, with a positive sum"):
        BuildEnsemble(experiment_ids=(1, 2), weights=weights)
    assert BuildEnsemble(experiment_ids=(1, 2), weights=(0.0, 1.0)).weights == (0.0, 1.0)


def test_without_a_proposal_the_reader_says_so() -> None:
    with pytest.raises(ValueError, match="no proposal"):
        proposal_of({"proposal": None})


def test_without_an_implementation_the_reader_gives_an_empty_one() -> None:
    assert implementation_of({}) == Implementation()
    assert implementation_of({"implementation": None}).spec is None


def test_a_record_takes_scores_status_and_hash_from_the_evaluation() -> None:
    result = CandidateResult(
        spec_hash="abc", status="ok", fold_scores={"f1": [0.5, 0.7]}, cv={"f1": 0.6}, cv_std={"f1": 0.1}, fit_seconds=2
    )
    record = new_record(
        id=0,
        iteration=0,
        proposal="baseline",
        rationale="a reference",
        spec=SPEC,
        evaluation=stored(evaluation_data(result)),
        primary_metric="f1",
        incumbent_after=0,
    )
    assert list(record) == list(ExperimentRecord.__annotations__)  # every field, in ledger order
    TypeAdapter(ExperimentRecord).validate_python(stored(record))
    assert (record["spec_hash"], record["status"], record["primary"]) == ("abc", "ok", 0.6)
    assert record["fold_scores"] == {"f1": [0.5, 0.7]} and record["cv_std"] == {"f1": 0.1}
    assert isinstance(record["fit_seconds"], float) and record["fit_seconds"] == 2.0
    # what a baseline has: no base, no change, full fidelity, nothing paid, no tokens
    assert record["base_experiment"] is None and record["changes"] == [] and record["fidelity"] == 1.0
    assert record["rewards"] == {"scientist": 0.0, "executor": 0.0} and record["tokens"] == {}


def test_a_failed_evaluation_has_no_hash_no_score_and_its_own_error_first() -> None:
    def record(evaluation: EvaluationData) -> ExperimentRecord:
        return new_record(
            id=3,
            iteration=3,
            proposal="p",
            rationale="r",
            spec=None,
            evaluation=evaluation,
            primary_metric="f1",
            error="the Executor's error",
            incumbent_after=1,
        )

    timed_out = record(evaluation_data(CandidateResult("", "timeout", error="training exceeded 5 s")))
    assert timed_out["spec_hash"] is None and timed_out["primary"] is None
    assert timed_out["status"] == "timeout" and timed_out["error"] == "training exceeded 5 s"
    assert record(evaluation_data(CandidateResult("", "failed")))["error"] == "the Executor's error"


def test_verdicts_have_one_shape() -> None:
    assert verdict(2 / 3, ["asked x, got y"], requested=3) == {
        "fidelity": 0.666667,
        "proposal_valid": True,
        "issues": ["asked x, got y"],
        "requested": 3,
    }
    assert invalid_proposal("invalid proposal: no column 'nope'") == {
        "fidelity": 1.0,
        "proposal_valid": False,
        "issues": ["invalid proposal: no column 'nope'"],
        "requested": 0,
    }


def test_the_verifier_node_finds_a_proposal_on_a_missing_experiment_invalid() -> None:
    baseline = new_record(
        id=0,
        iteration=0,
        proposal="baseline",
        rationale="",
        spec=SPEC,
        evaluation=evaluation_data(CandidateResult("abc", "ok", cv={"f1": 0.5})),
        primary_metric="f1",
        incumbent_after=0,
    )
    state = {
        "proposal": proposal_data(Proposal(rationale="tune #5", base_experiment=5)),
        "implementation": None,
        "ledger": [baseline],
        "incumbent": 0,
    }
    update = verifier(state, None)
    assert update["verification"] == invalid_proposal("experiment 5 has no spec; experiments with one: [0]")


def test_every_update_of_a_real_run_fits_the_typed_state(penguins: Path, tmp_path: Path) -> None:
    updates: list[tuple[str, dict[str, Any]]] = []
    summary = run_task(
        penguins,
        "species",
        run_id="typed",
        context=RunContext(runs_dir=str(tmp_path), n_jobs=1, max_iters=2, approve="delivery"),
        on_update=lambda node, update: updates.append((node, update)),
        on_approval=lambda question: True,
    )
    state = TypeAdapter(TandemState)
    for node, update in updates:
        assert set(update) <= set(TandemState.__annotations__), node
        assert state.validate_python(stored(update)) == update, node
    nodes = [node for node, _ in updates]
    assert {"setup", "scientist", "executor", "evaluator", "verifier", "reward", "review", "deliver"} <= set(nodes)
    assert RunSummary.__required_keys__ <= set(summary) <= set(RunSummary.__annotations__)
    TypeAdapter(RunSummary).validate_python(summary)
    (review,) = [update["review"] for node, update in updates if node == "review"]
    assert review == {"kind": "delivery", "approved": True, "reason": ""}
