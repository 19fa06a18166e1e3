"""What the agents say to each other and what the environment pays them: typed, never free text.

The Scientist's `Proposal` is a rationale plus a list of typed changes relative to a base
experiment; `apply_changes` is their one meaning, shared by the heuristic Executor (which
implements them) and the verifier (which checks that the Executor did). The Executor answers
with an `Implementation`: a complete `PipelineSpec` and the repairs it made to get it to run.

In the shared state both travel as plain JSON (`graph.state.ProposalData`, `ImplementationData`),
which the checkpointer stores as is: `proposal_data`/`implementation_data` write them, and
`proposal_of`/`implementation_of` are the only places that read them back into the models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from tandem.graph.state import ImplementationData, ProposalData
from tandem.tools.spec import (
    FAMILIES,
    AnySpec,
    Bagging,
    BlendWeights,
    Columns,
    EnsembleSpec,
    FeatureOp,
    ModelSpec,
    PipelineSpec,
    Preprocessing,
    RowFilter,
    SpecError,
    feature_inputs,
    feature_key,
    parse_spec,
)

ColumnRole = Literal["numeric", "categorical", "high_cardinality"]
SpecResolver = Callable[[int], PipelineSpec | EnsembleSpec]


def spec_resolver(ledger: Sequence[Mapping[str, Any]]) -> SpecResolver:
    """Experiment id → its spec, with a message an agent can act on for a bad id."""

    def resolve(experiment_id: int) -> PipelineSpec | EnsembleSpec:
        if not 0 <= experiment_id < len(ledger) or ledger[experiment_id]["spec"] is None:
            ok = [r["id"] for r in ledger if r["spec"] is not None]
            raise ValueError(f"experiment {experiment_id} has no spec; experiments with one: {ok}")
        return parse_spec(ledger[experiment_id]["spec"])

    return resolve


class _Change(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def describe(self) -> str:
        fields = self.model_dump(mode="json", exclude={"change"})
        return f"{self.change}({', '.join(f'{k}={v}' for k, v in fields.items())})"  # type: ignore[attr-defined]


class SetModel(_Change):
    """Switch estimator family (its parameters start from the family's defaults plus `params`)."""

    change: Literal["set_model"] = "set_model"
    family: str
    params: dict[str, Any] = Field(default_factory=dict)

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        return _rebuild(spec, model=ModelSpec(family=self.family, params=dict(self.params)))


class SetParams(_Change):
    """Set some hyperparameters of the current family, keeping the others."""

    change: Literal["set_params"] = "set_params"
    params: dict[str, Any]

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        return _rebuild(spec, model=ModelSpec(family=spec.model.family, params={**spec.model.params, **self.params}))


class AddFeature(_Change):
    change: Literal["add_feature"] = "add_feature"
    feature: FeatureOp

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        if any(feature_key(f) == feature_key(self.feature) for f in spec.features):
            return spec
        return _rebuild(spec, features=(*spec.features, self.feature))


class RemoveFeature(_Change):
    change: Literal["remove_feature"] = "remove_feature"
    feature: FeatureOp

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        key = feature_key(self.feature)
        return _rebuild(spec, features=tuple(f for f in spec.features if feature_key(f) != key))


class SetPreprocessing(_Change):
    """Change preprocessing options (imputation, scaling, numeric transform, encoders)."""

    change: Literal["set_preprocessing"] = "set_preprocessing"
    settings: dict[str, Any]

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        unknown = set(self.settings) - set(Preprocessing.model_fields)
        if unknown:
            raise SpecError(
                f"unknown preprocessing options {sorted(unknown)}; known: {sorted(Preprocessing.model_fields)}"
            )
        merged = Preprocessing.model_validate({**spec.preprocessing.model_dump(), **self.settings})
        return _rebuild(spec, preprocessing=merged)


class DropColumns(_Change):
    """Stop reading columns (and any feature operation built on them)."""

    change: Literal["drop_columns"] = "drop_columns"
    columns: tuple[str, ...]

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        gone = set(self.columns)
        cols = spec.columns
        return _rebuild(
            spec,
            columns=Columns(
                numeric=tuple(c for c in cols.numeric if c not in gone),
                categorical=tuple(c for c in cols.categorical if c not in gone),
                high_cardinality=tuple(c for c in cols.high_cardinality if c not in gone),
            ),
            features=tuple(f for f in spec.features if not gone & set(feature_inputs(f))),
        )


class UseColumns(_Change):
    """Read columns in a given role (adding them, or moving them from another role)."""

    change: Literal["use_columns"] = "use_columns"
    columns: tuple[str, ...]
    role: ColumnRole = "numeric"

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        moved = set(self.columns)
        roles = {
            role: tuple(c for c in getattr(spec.columns, role) if c not in moved)
            for role in ("numeric", "categorical", "high_cardinality")
        }
        roles[self.role] = (*roles[self.role], *self.columns)
        return _rebuild(spec, columns=Columns(**roles))


class SetTargetTransform(_Change):
    change: Literal["set_target_transform"] = "set_target_transform"
    transform: Literal["none", "log", "sqrt"]

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        return _rebuild(spec, target_transform=self.transform)


class SetClassWeight(_Change):
    change: Literal["set_class_weight"] = "set_class_weight"
    class_weight: Literal["none", "balanced"]

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        return _rebuild(spec, class_weight=self.class_weight)


class SetThreshold(_Change):
    change: Literal["set_threshold"] = "set_threshold"
    threshold: Literal["default", "tuned"] | float

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        return _rebuild(spec, threshold=self.threshold)


class SetRowFilter(_Change):
    """Leave outlying rows out of the training rows (never at predict), or use every row again (None)."""

    change: Literal["set_row_filter"] = "set_row_filter"
    row_filter: RowFilter | None

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        return _rebuild(spec, row_filter=self.row_filter)


class Bag(_Change):
    """Deliver the average of fold models instead of one refit (docs/decisions.md, "Bagged delivery").

    The bagged spec is cross-validated like any candidate, which makes its evidence nested: each
    outer fold's model is an average of inner-fold models, so the averaging's benefit (or its
    cost: every member sees fewer rows) shows in its fold scores. `repeats` = 0 turns bagging off.
    A base with a tuned or fixed decision threshold cannot be bagged (the bag averages probabilities).
    """

    change: Literal["bag"] = "bag"
    folds: int = Field(default=5, ge=2, le=10)
    repeats: int = Field(default=1, ge=0, le=5)

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        bagging = Bagging(folds=self.folds, repeats=self.repeats) if self.repeats else None
        if bagging is not None and spec.threshold != "default":
            raise SpecError(
                "a bagged model averages probabilities at the default threshold: set_threshold 'default' first"
            )
        return _rebuild(spec, bagging=bagging)


class BuildEnsemble(_Change):
    """Blend earlier experiments (soft voting or stacking); the base spec is not used."""

    change: Literal["build_ensemble"] = "build_ensemble"
    experiment_ids: tuple[int, ...] = Field(min_length=2, max_length=8)
    method: Literal["voting", "stacking"] = "voting"
    weights: BlendWeights = None

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> EnsembleSpec:
        members: list[PipelineSpec] = []
        for exp_id in self.experiment_ids:
            member = resolve(exp_id)
            if isinstance(member, EnsembleSpec):
                raise SpecError(f"experiment {exp_id} is itself an ensemble; blend single pipelines only")
            members.append(member)
        return EnsembleSpec(
            method=self.method, members=tuple(members), weights=self.weights, member_ids=self.experiment_ids
        )


#: The knobs of "more regularisation" per family: parameter -> (+1 if more means higher, -1 if
#: lower; the family's default when the spec does not set it).
REGULARISATION: dict[str, dict[str, tuple[int, float]]] = {
    "logistic": {"C": (-1, 1.0)},
    "ridge": {"alpha": (+1, 1.0)},
    "lasso": {"alpha": (+1, 1.0)},
    "elastic_net": {"alpha": (+1, 1.0)},
    "svr": {"C": (-1, 1.0)},
    "svc": {"C": (-1, 1.0)},
    "knn": {"n_neighbors": (+1, 5)},
    "decision_tree": {"min_samples_leaf": (+1, 1)},
    "random_forest": {"min_samples_leaf": (+1, 1)},
    "extra_trees": {"min_samples_leaf": (+1, 1)},
    "hist_gradient_boosting": {"l2_regularization": (+1, 0.0), "min_samples_leaf": (+1, 20)},
    "lightgbm": {"reg_lambda": (+1, 0.0), "min_child_samples": (+1, 20)},
}
#: How far a filling moves every knob: the factor it multiplies (more) or divides (less) it by.
LEVELS: dict[str, float] = {"mild": 2.0, "medium": 5.0, "strong": 20.0}
Level = Literal["mild", "medium", "strong"]


def regularised(model: ModelSpec, direction: str, level: str) -> dict[str, Any]:
    """The parameters a filling sets: each knob of the family moved by the level's factor, kept
    inside the family's range (a knob at zero starts from factor / 4)."""
    knobs = REGULARISATION.get(model.family)
    if not knobs:
        raise SpecError(f"family {model.family!r} has no regularisation knob to turn")
    factor = LEVELS[level]
    out: dict[str, Any] = {}
    for name, (sign, default) in knobs.items():
        value = float(model.params.get(name, default))
        up = (sign > 0) == (direction == "more")
        new = (value * factor if value > 0 else factor / 4) if up else value / factor
        param = FAMILIES[model.family].params[name]
        new = min(max(new, param.low if param.low is not None else new), param.high if param.high is not None else new)
        out[name] = max(round(new), 1) if param.kind == "int" else round(new, 6)
    return out


class Regularise(_Change):
    """More (or less) regularisation of the base's family, with the amount an *open choice*.

    The Scientist says what kind of change; the Executor fills `level` (its learnt policy), and
    the verifier accepts any filling that only turns this family's regularisation knobs, each in
    the asked direction. Applied while still open, the medium level stands in for the filling.
    """

    change: Literal["regularise"] = "regularise"
    direction: Literal["more", "less"] = "more"
    level: Level | None = None

    def apply(self, spec: PipelineSpec, resolve: SpecResolver) -> PipelineSpec:
        params = regularised(spec.model, self.direction, self.level or "medium")
        return _rebuild(spec, model=ModelSpec(family=spec.model.family, params={**spec.model.params, **params}))


def open_knobs(base: PipelineSpec | EnsembleSpec, changes: Sequence[Any]) -> dict[str, int]:
    """The parameters an open choice lets the Executor turn, with the sign "as asked" means:
    {"reg_lambda": +1} for more regularisation of LightGBM."""
    if not isinstance(base, PipelineSpec):
        return {}
    out: dict[str, int] = {}
    for change in changes:
        if isinstance(change, Regularise) and change.level is None:
            for name, (sign, _) in REGULARISATION.get(base.model.family, {}).items():
                out[name] = sign if change.direction == "more" else -sign
    return out


Change = Annotated[
    SetModel
    | SetParams
    | Regularise
    | AddFeature
    | RemoveFeature
    | SetPreprocessing
    | DropColumns
    | UseColumns
    | SetTargetTransform
    | SetClassWeight
    | SetThreshold
    | SetRowFilter
    | Bag
    | BuildEnsemble,
    Field(discriminator="change"),
]


class Proposal(BaseModel):
    """One step of the Scientist: experiment with these changes to a base experiment, or deliver."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["experiment", "deliver"] = "experiment"
    rationale: str = Field(max_length=2000)
    changes: list[Change] = Field(default_factory=list)
    base_experiment: int | None = Field(default=None, ge=0, description="experiment to change; None = the incumbent")
    move: str | None = Field(default=None, description="the kind of idea, for learning which kinds pay")
    failure: str | None = Field(
        default=None, description="set by the agent, not the model: why no valid proposal could be produced"
    )

    def summary(self) -> str:
        if self.failure is not None:
            return f"no valid proposal: {self.failure}"[:300]
        if self.action == "deliver":
            return f"deliver: {self.rationale}"
        return "; ".join(c.describe() for c in self.changes) or "(no change)"


class Implementation(BaseModel):
    """The Executor's answer: the complete candidate spec, or why none could be produced."""

    model_config = ConfigDict(extra="forbid")

    spec: AnySpec | None = None
    repairs: list[str] = Field(default_factory=list, description="what was changed beyond the proposal, and why")
    repaired_aspects: list[str] = Field(default_factory=list, description="spec aspects touched by repairs")
    error: str | None = None


def proposal_data(proposal: Proposal) -> ProposalData:
    """A proposal as the state stores it (plain JSON)."""
    return cast(ProposalData, proposal.model_dump(mode="json"))


def proposal_of(values: Mapping[str, Any]) -> Proposal:
    """The proposal in the state (or in a node's update), typed: the one place it is parsed.

    Raises `ValueError` when there is none (only the setup node runs before the first proposal).
    """
    data = values.get("proposal")
    if data is None:
        raise ValueError("the state holds no proposal: the Scientist has not proposed yet")
    return Proposal.model_validate(data)


def implementation_data(implementation: Implementation) -> ImplementationData:
    """An implementation as the state stores it (plain JSON)."""
    return cast(ImplementationData, implementation.model_dump(mode="json"))


def implementation_of(values: Mapping[str, Any]) -> Implementation:
    """The Executor's implementation in the state, typed: the one place it is parsed.

    None (no Executor step yet) reads as an empty implementation: no spec, no repairs, no error.
    """
    data = values.get("implementation")
    return Implementation() if data is None else Implementation.model_validate(data)


def apply_changes(
    base: PipelineSpec | EnsembleSpec, changes: list[Any], resolve: SpecResolver
) -> PipelineSpec | EnsembleSpec:
    """The spec a proposal asks for: its changes applied in order to the base experiment's spec."""
    spec: PipelineSpec | EnsembleSpec = base
    for change in changes:
        if isinstance(spec, EnsembleSpec) and not isinstance(change, BuildEnsemble):
            raise SpecError(f"{change.change} cannot change an ensemble; base the proposal on a single pipeline")
        spec = change.apply(spec, resolve)
    return spec


def _rebuild(spec: PipelineSpec, **update: Any) -> PipelineSpec:
    """A changed copy that is validated again (model_copy alone would skip validation)."""
    data = {**dict(spec), **update}
    return PipelineSpec.model_validate({k: v for k, v in data.items()})
