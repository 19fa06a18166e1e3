"""Verifier node: did the Executor do what the Scientist asked, no more and no less?

Deterministic, no LLM judge. The requested spec is the proposal's changes applied to the base
(`apply_changes`, the same meaning the heuristic Executor uses). Each spec is flattened into
aspects (a column's role, a feature, a preprocessing option, the family, each parameter…);
the aspects the proposal changes must come out as asked, aspects it does not touch must stay
as they were (unless the Executor declared them as repairs of preprocessing), and the fitted
estimator's actual parameters must equal the spec's.
"""

from __future__ import annotations

import math
from typing import Any

from langgraph.runtime import Runtime

from tandem.graph.budget import timed
from tandem.graph.context import RunContext, context_of
from tandem.graph.messages import (
    REGULARISATION,
    Implementation,
    Proposal,
    SpecResolver,
    apply_changes,
    implementation_of,
    open_knobs,
    proposal_of,
    spec_resolver,
)
from tandem.graph.persistence import RunFolder, profile_of
from tandem.graph.state import TandemState, Verification
from tandem.tools.spec import (
    EnsembleSpec,
    PipelineSpec,
    SpecError,
    check_against_data,
    feature_key,
    parse_spec,
    spec_hash,
)

REPAIRABLE = ("preprocessing.",)


def verdict(fidelity: float, issues: list[str], *, proposal_valid: bool = True, requested: int = 0) -> Verification:
    """The one way a verification is built: every outcome of `verify` and of the node goes through here."""
    return Verification(
        fidelity=round(fidelity, 6),
        proposal_valid=proposal_valid,
        issues=issues,
        requested=requested,
    )


def invalid_proposal(reason: str) -> Verification:
    """The verdict on a proposal that cannot be built (unknown column, family, experiment…).

    That is the Scientist's fault, so the Executor is not judged on it: full fidelity.
    """
    return verdict(1.0, [reason], proposal_valid=False)


def aspects(spec: PipelineSpec | EnsembleSpec) -> dict[str, Any]:
    """A flat view of a spec: one entry per independently checkable decision."""
    if isinstance(spec, EnsembleSpec):
        return {
            "kind": "ensemble",
            "ensemble.method": spec.method,
            "ensemble.members": sorted(spec_hash(m) for m in spec.members),
            # each weight with the member it weighs: equal weights on swapped members are another blend
            "ensemble.weights": (
                sorted(zip((spec_hash(m) for m in spec.members), spec.weights, strict=True)) if spec.weights else None
            ),
        }
    out: dict[str, Any] = {"kind": "pipeline", "model.family": spec.model.family}
    for role in ("numeric", "categorical", "high_cardinality"):
        for column in getattr(spec.columns, role):
            out[f"column.{column}"] = role
    for op in spec.features:
        out[f"feature.{feature_key(op)}"] = True
    for name, value in spec.preprocessing.model_dump().items():
        out[f"preprocessing.{name}"] = value
    for name, value in spec.model.params.items():
        out[f"param.{name}"] = value
    out["target_transform"] = spec.target_transform
    out["class_weight"] = spec.class_weight
    out["threshold"] = spec.threshold
    out["row_filter"] = spec.row_filter.model_dump(mode="json") if spec.row_filter else None
    out["bagging"] = spec.bagging.model_dump(mode="json") if spec.bagging else None
    return out


def verify(
    base: PipelineSpec | EnsembleSpec,
    proposal: Proposal,
    implementation: Implementation,
    fitted: dict[str, Any] | None,
    resolve: SpecResolver,
    *,
    columns: list[str],
    task_type: str,
) -> Verification:
    """Fidelity in [0, 1] = aspects done as asked / (aspects asked + unasked changes), times the
    share of spec parameters the fitted estimator really holds; with every reason listed.

    A proposal that cannot be built at all (unknown column or family…) is the Scientist's fault:
    `proposal_valid` is False and the Executor is not judged.
    """
    if proposal.failure is not None:
        return invalid_proposal(f"invalid proposal: {proposal.failure}")
    try:
        expected = apply_changes(base, proposal.changes, resolve)
        check_against_data(expected, columns, task_type)
    except (SpecError, ValueError) as exc:
        return invalid_proposal(f"invalid proposal: {exc}")
    if implementation.spec is None:
        return verdict(0.0, [implementation.error or "no spec was produced"])
    actual = parse_spec(implementation.spec)
    before, want, got = aspects(base), aspects(expected), aspects(actual)
    knobs = {f"param.{name}": sign for name, sign in open_knobs(base, proposal.changes).items()}
    requested = {k for k in want.keys() | before.keys() if want.get(k) != before.get(k)} - knobs.keys()
    changed = {k for k in got.keys() | before.keys() if got.get(k) != before.get(k)} - knobs.keys()
    issues = [
        f"asked {k} = {want.get(k)!r}, got {got.get(k)!r}" for k in sorted(requested) if got.get(k) != want.get(k)
    ]
    excused = set(implementation.repaired_aspects)
    unasked = sorted(k for k in changed - requested if not (k in excused and k.startswith(REPAIRABLE)))
    issues += [f"unrequested change {k}: {before.get(k)!r} -> {got.get(k)!r}" for k in unasked]
    done = len(requested) - sum(1 for k in requested if got.get(k) != want.get(k))
    denominator = len(requested) + len(unasked)
    if knobs:  # an open choice counts as one aspect: done when its filling is inside what was asked
        denominator += 1
        done += _filled_as_asked(base, before, got, knobs, issues)
    fidelity = done / denominator if denominator else 1.0
    fidelity *= _params_held(actual, fitted, issues)
    return verdict(fidelity, issues, requested=len(requested))


def _filled_as_asked(
    base: PipelineSpec | EnsembleSpec,
    before: dict[str, Any],
    got: dict[str, Any],
    knobs: dict[str, int],
    issues: list[str],
) -> bool:
    """An open choice is filled faithfully when at least one of its knobs turned and every knob
    that turned moved the asked way (any amount: the amount was the Executor's to choose)."""
    assert isinstance(base, PipelineSpec)  # open_knobs finds none on an ensemble
    defaults = {f"param.{k}": d for k, (_, d) in REGULARISATION.get(base.model.family, {}).items()}
    moved = [k for k in sorted(knobs) if got.get(k) != before.get(k)]
    if not moved:
        issues.append(f"asked to turn {', '.join(sorted(knobs))}, none was changed")
        return False
    wrong = []
    for k in moved:
        old, new = before.get(k, defaults.get(k)), got.get(k)
        if not isinstance(new, int | float) or not isinstance(old, int | float) or knobs[k] * (new - old) <= 0:
            wrong.append(f"{k}: {old!r} -> {new!r}")
    if wrong:
        issues.append(f"open choice filled the wrong way: {'; '.join(wrong)}")
    return not wrong


def _params_held(spec: PipelineSpec | EnsembleSpec, fitted: dict[str, Any] | None, issues: list[str]) -> float:
    if not fitted or not isinstance(spec, PipelineSpec) or not spec.model.params:
        return 1.0
    held = 0
    for name, value in spec.model.params.items():
        actual = fitted.get(name)
        same = actual == value or (
            isinstance(actual, int | float)
            and isinstance(value, int | float)
            and math.isclose(actual, value, rel_tol=1e-9)
        )
        held += same
        if not same:
            issues.append(f"fitted estimator holds {name}={actual!r}, spec says {value!r}")
    return held / len(spec.model.params)


@timed
def verifier(state: TandemState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Score the Executor's fidelity to the proposal."""
    proposal, implementation = proposal_of(state), implementation_of(state)
    resolve = spec_resolver(state.get("ledger", []))
    base_id = state["incumbent"] if proposal.base_experiment is None else proposal.base_experiment
    try:
        base = resolve(base_id)
    except ValueError as exc:
        return {"verification": invalid_proposal(str(exc))}
    evaluation = state.get("evaluation")
    fitted = evaluation["fitted_params"] if evaluation else None
    columns = [c.name for c in profile_of(state, RunFolder.of(state, context_of(runtime))).columns]
    result = verify(
        base, proposal, implementation, fitted, resolve, columns=columns, task_type=state["task"]["task_type"]
    )
    return {"verification": result}
