"""The pipeline specification: the whole, declarative description of one candidate model.

A spec is what the Executor hands to the environment and what the verifier compares. It is data,
not code: every field is validated against a catalogue (families, their parameters and ranges,
feature operations), so a bad spec fails with a message an agent can act on instead of a
traceback deep inside scikit-learn. Two specs that describe the same pipeline have the same
canonical hash, which is how the environment never trains the same thing twice.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

TaskType = Literal["binary", "multiclass", "regression"]
CLASSIFICATION: frozenset[str] = frozenset({"binary", "multiclass"})


class SpecError(ValueError):
    """A spec that cannot be built; the message says what to change."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Feature operations: each adds derived columns (named by `output_names`) before preprocessing.
# --------------------------------------------------------------------------------------------


class LogOp(_Frozen):
    """log1p of non-negative numeric columns (values below zero are shifted by the train minimum)."""

    op: Literal["log"] = "log"
    columns: tuple[str, ...]


class PowerOp(_Frozen):
    """Yeo-Johnson power transform, fitted on the training rows, for skewed numerics."""

    op: Literal["power"] = "power"
    columns: tuple[str, ...]


class RatioOp(_Frozen):
    op: Literal["ratio"] = "ratio"
    numerator: str
    denominator: str


class ProductOp(_Frozen):
    op: Literal["product"] = "product"
    left: str
    right: str


class DifferenceOp(_Frozen):
    op: Literal["difference"] = "difference"
    left: str
    right: str


class SumOp(_Frozen):
    op: Literal["sum"] = "sum"
    columns: tuple[str, ...]
    name: str | None = None


class BinningOp(_Frozen):
    """Quantile bins learnt on the training rows; the bin index becomes a numeric column."""

    op: Literal["binning"] = "binning"
    column: str
    n_bins: int = Field(default=5, ge=2, le=100)


class MissingIndicatorOp(_Frozen):
    op: Literal["missing_indicator"] = "missing_indicator"
    columns: tuple[str, ...]


class DatePartsOp(_Frozen):
    """Year, month, day of week and day of year of a date column (the raw column is then unused)."""

    op: Literal["date_parts"] = "date_parts"
    column: str


class GroupAggregateOp(_Frozen):
    """Statistic of a numeric column within groups of a categorical one, learnt on training rows."""

    op: Literal["group_aggregate"] = "group_aggregate"
    group_by: str
    column: str
    agg: Literal["mean", "median", "std", "min", "max", "count"] = "mean"


class TextLengthOp(_Frozen):
    op: Literal["text_length"] = "text_length"
    column: str


class TokenCountOp(_Frozen):
    op: Literal["token_count"] = "token_count"
    column: str


class TextTopicsOp(_Frozen):
    """What a free-text column says, as `n_topics` numbers: TF-IDF of its words and word pairs,
    learnt on the training rows, reduced to its strongest components (latent semantic analysis)."""

    op: Literal["text_topics"] = "text_topics"
    column: str
    n_topics: int = Field(default=20, ge=2, le=100)


FeatureOp = Annotated[
    LogOp
    | PowerOp
    | RatioOp
    | ProductOp
    | DifferenceOp
    | SumOp
    | BinningOp
    | MissingIndicatorOp
    | DatePartsOp
    | GroupAggregateOp
    | TextLengthOp
    | TokenCountOp
    | TextTopicsOp,
    Field(discriminator="op"),
]
FEATURE_OPS: tuple[str, ...] = (
    "log",
    "power",
    "ratio",
    "product",
    "difference",
    "sum",
    "binning",
    "missing_indicator",
    "date_parts",
    "group_aggregate",
    "text_length",
    "token_count",
    "text_topics",
)


def feature_inputs(op: FeatureOp) -> tuple[str, ...]:
    """The raw columns a feature operation reads."""
    match op:
        case RatioOp():
            return (op.numerator, op.denominator)
        case ProductOp() | DifferenceOp():
            return (op.left, op.right)
        case GroupAggregateOp():
            return (op.group_by, op.column)
        case BinningOp() | DatePartsOp() | TextLengthOp() | TokenCountOp() | TextTopicsOp():
            return (op.column,)
        case _:
            return tuple(op.columns)


def feature_outputs(op: FeatureOp) -> tuple[str, ...]:
    """The names of the numeric columns a feature operation adds (stable, so specs can refer to them)."""
    match op:
        case LogOp():
            return tuple(f"log__{c}" for c in op.columns)
        case PowerOp():
            return tuple(f"power__{c}" for c in op.columns)
        case RatioOp():
            return (f"ratio__{op.numerator}__{op.denominator}",)
        case ProductOp():
            return (f"product__{op.left}__{op.right}",)
        case DifferenceOp():
            return (f"difference__{op.left}__{op.right}",)
        case SumOp():
            return (op.name or "sum__" + "__".join(op.columns),)
        case BinningOp():
            return (f"bin{op.n_bins}__{op.column}",)
        case MissingIndicatorOp():
            return tuple(f"missing__{c}" for c in op.columns)
        case DatePartsOp():
            return tuple(f"{part}__{op.column}" for part in ("year", "month", "dayofweek", "dayofyear"))
        case GroupAggregateOp():
            return (f"{op.agg}__{op.column}__by__{op.group_by}",)
        case TextLengthOp():
            return (f"length__{op.column}",)
        case TokenCountOp():
            return (f"tokens__{op.column}",)
        case TextTopicsOp():
            return tuple(f"topic{i}__{op.column}" for i in range(op.n_topics))
    raise AssertionError(op)  # pragma: no cover - the union is exhaustive


def feature_key(op: FeatureOp) -> str:
    """A canonical identity for a feature operation, used to add, remove and compare them."""
    return json.dumps(op.model_dump(mode="json"), sort_keys=True)


# --------------------------------------------------------------------------------------------
# Columns, preprocessing, estimator.
# --------------------------------------------------------------------------------------------


class Columns(_Frozen):
    """Which raw columns the model reads, and how each kind is encoded.

    Text and date columns enter only through feature operations; columns in no list are unused.
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    high_cardinality: tuple[str, ...] = ()


class Preprocessing(_Frozen):
    numeric_imputer: Literal["median", "mean", "constant", "none"] = "median"
    clip_to_train_range: bool = True
    """Clip numeric inputs to the range seen in training, so no model extrapolates wildly."""
    scaler: Literal["standard", "robust", "minmax", "none"] = "standard"
    numeric_transform: Literal["none", "power", "quantile"] = "none"
    categorical_encoder: Literal["onehot", "ordinal", "target", "frequency"] = "onehot"
    high_cardinality_encoder: Literal["target", "frequency", "ordinal"] = "target"
    onehot_min_frequency: int = Field(default=1, ge=1, le=10_000)


@dataclass(frozen=True)
class Param:
    """One tunable parameter of a family: its type, range and default."""

    kind: Literal["int", "float", "choice", "bool"]
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    log: bool = False

    def check(self, name: str, value: Any) -> Any:
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise SpecError(f"parameter {name!r} must be true or false, got {value!r}")
            return value
        if self.kind == "choice":
            # by type too: 1 and True equal 1.0, but scikit-learn reads max_features=1 as one feature
            same = [c for c in self.choices if type(c) is type(value) and c == value]
            if not same:
                raise SpecError(f"parameter {name!r} must be one of {list(self.choices)}, got {value!r}")
            return same[0]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"parameter {name!r} must be a number, got {value!r}")
        if not math.isfinite(value):  # 1e999 and NaN are JSON Python reads; int(inf) raises OverflowError
            raise SpecError(f"parameter {name!r} must be a finite number, got {value!r}")
        if self.kind == "int":
            if float(value) != int(value):
                raise SpecError(f"parameter {name!r} must be a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise SpecError(f"parameter {name!r} must lie in [{self.low}, {self.high}], got {value!r}")
        return value


@dataclass(frozen=True)
class Family:
    """An estimator family in the catalogue: where it applies and what may be tuned."""

    name: str
    tasks: frozenset[str]
    params: dict[str, Param] = field(default_factory=dict)
    handles_missing: bool = False
    class_weight: bool = False
    linear: bool = False
    description: str = ""
    complexity: int = 1
    """Rank for "prefer the simpler model": 0 linear, 1 k-NN/SVR/tree, 2 forests, 3 boosting."""
    sparse_input: bool = True
    """Whether the estimator takes a scipy sparse design matrix (large data keep one-hot columns sparse)."""


_ALL = frozenset({"binary", "multiclass", "regression"})
_CLS = CLASSIFICATION
_REG = frozenset({"regression"})
_TREE_PARAMS = {
    "max_depth": Param("int", 1, 64),
    "min_samples_leaf": Param("int", 1, 1000),
    "max_features": Param("choice", choices=("sqrt", "log2", 0.3, 0.5, 0.7, 1.0)),
}
_BOOSTING_PARAMS = {
    "n_estimators": Param("int", 10, 5000),
    "learning_rate": Param("float", 0.001, 1.0, log=True),
    "num_leaves": Param("int", 2, 1024),
    "max_depth": Param("int", -1, 64),
    "min_child_samples": Param("int", 1, 1000),
    "subsample": Param("float", 0.1, 1.0),
    "subsample_freq": Param("int", 0, 10),
    "colsample_bytree": Param("float", 0.1, 1.0),
    "reg_alpha": Param("float", 0.0, 100.0),
    "reg_lambda": Param("float", 0.0, 100.0),
}

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "logistic",
            _CLS,
            {"C": Param("float", 1e-4, 1e4, log=True), "l1_ratio": Param("float", 0.0, 1.0)},
            class_weight=True,
            linear=True,
            description="L2 / elastic-net logistic regression",
            complexity=0,
        ),
        Family("ridge", _REG, {"alpha": Param("float", 1e-4, 1e4, log=True)}, linear=True, complexity=0),
        Family("lasso", _REG, {"alpha": Param("float", 1e-5, 1e3, log=True)}, linear=True, complexity=0),
        Family(
            "elastic_net",
            _REG,
            {"alpha": Param("float", 1e-5, 1e3, log=True), "l1_ratio": Param("float", 0.0, 1.0)},
            linear=True,
            complexity=0,
        ),
        Family(
            "svr",
            _REG,
            {"C": Param("float", 1e-3, 1e4, log=True), "epsilon": Param("float", 0.0, 10.0)},
            description="RBF support-vector regression (scale the inputs)",
        ),
        Family(
            "svc",
            _CLS,
            {"C": Param("float", 1e-3, 1e4, log=True)},
            class_weight=True,
            description="RBF support-vector classifier with Platt-scaled probabilities (scale the inputs; "
            "its fit time grows with the square of the rows)",
        ),
        Family(
            "knn",
            _ALL,
            {"n_neighbors": Param("int", 1, 200), "weights": Param("choice", choices=("uniform", "distance"))},
        ),
        Family("decision_tree", _ALL, dict(_TREE_PARAMS), class_weight=True),
        Family(
            "random_forest",
            _ALL,
            {"n_estimators": Param("int", 10, 2000), **_TREE_PARAMS},
            class_weight=True,
            complexity=2,
        ),
        Family(
            "extra_trees",
            _ALL,
            {"n_estimators": Param("int", 10, 2000), **_TREE_PARAMS},
            class_weight=True,
            complexity=2,
        ),
        Family(
            "hist_gradient_boosting",
            _ALL,
            {
                "max_iter": Param("int", 10, 5000),
                "learning_rate": Param("float", 0.001, 1.0, log=True),
                "max_leaf_nodes": Param("int", 2, 1024),
                "min_samples_leaf": Param("int", 1, 1000),
                "l2_regularization": Param("float", 0.0, 100.0),
            },
            handles_missing=True,
            class_weight=True,
            complexity=3,
            sparse_input=False,
        ),
        Family("lightgbm", _ALL, dict(_BOOSTING_PARAMS), handles_missing=True, class_weight=True, complexity=3),
        Family(
            "catboost",
            _ALL,
            {
                "iterations": Param("int", 10, 5000),
                "learning_rate": Param("float", 0.001, 1.0, log=True),
                "depth": Param("int", 1, 16),
                "l2_leaf_reg": Param("float", 0.0, 100.0),
                "random_strength": Param("float", 0.0, 100.0),
                "bagging_temperature": Param("float", 0.0, 100.0),
                "border_count": Param("int", 1, 255),
            },
            handles_missing=True,
            class_weight=True,
            description="CatBoost: symmetric trees with ordered boosting, strong on small data (300 "
            "iterations unless set)",
            complexity=3,
        ),
    )
}


def _search(**params: Param) -> dict[str, Param]:
    return params


#: Where a search over a family's parameters looks (the Scientist's seeded TPE search once the
#: playbook's ideas are spent): the region where good settings of each family usually lie, each
#: range inside the catalogue's own (a test checks it), so every trial is a valid spec.
SEARCH_SPACES: dict[str, dict[str, Param]] = {
    "logistic": _search(C=Param("float", 1e-3, 1e2, log=True)),
    "ridge": _search(alpha=Param("float", 1e-3, 1e3, log=True)),
    "lasso": _search(alpha=Param("float", 1e-5, 1e1, log=True)),
    "elastic_net": _search(alpha=Param("float", 1e-4, 1e1, log=True), l1_ratio=Param("float", 0.05, 0.95)),
    "svr": _search(C=Param("float", 1e-1, 1e3, log=True)),
    "svc": _search(C=Param("float", 1e-1, 1e3, log=True)),
    "knn": _search(
        n_neighbors=Param("int", 2, 100, log=True), weights=Param("choice", choices=("uniform", "distance"))
    ),
    "decision_tree": _search(max_depth=Param("int", 2, 20), min_samples_leaf=Param("int", 1, 50, log=True)),
    "random_forest": _search(
        n_estimators=Param("int", 100, 600, log=True),
        min_samples_leaf=Param("int", 1, 20, log=True),
        max_features=Param("choice", choices=("sqrt", 0.3, 0.5, 0.7, 1.0)),
    ),
    "extra_trees": _search(
        n_estimators=Param("int", 100, 600, log=True),
        min_samples_leaf=Param("int", 1, 20, log=True),
        max_features=Param("choice", choices=("sqrt", 0.3, 0.5, 0.7, 1.0)),
    ),
    "hist_gradient_boosting": _search(
        max_iter=Param("int", 50, 800, log=True),
        learning_rate=Param("float", 0.01, 0.3, log=True),
        max_leaf_nodes=Param("int", 4, 128, log=True),
        min_samples_leaf=Param("int", 3, 100, log=True),
        l2_regularization=Param("float", 1e-3, 10.0, log=True),
    ),
    "lightgbm": _search(
        n_estimators=Param("int", 50, 1000, log=True),
        learning_rate=Param("float", 0.01, 0.3, log=True),
        num_leaves=Param("int", 4, 128, log=True),
        min_child_samples=Param("int", 3, 100, log=True),
        subsample=Param("float", 0.5, 1.0),
        subsample_freq=Param("choice", choices=(0, 1)),
        colsample_bytree=Param("float", 0.4, 1.0),
        reg_alpha=Param("float", 1e-3, 10.0, log=True),
        reg_lambda=Param("float", 1e-3, 10.0, log=True),
    ),
    "catboost": _search(
        iterations=Param("int", 100, 1000, log=True),
        learning_rate=Param("float", 0.01, 0.3, log=True),
        depth=Param("int", 3, 10),
        l2_leaf_reg=Param("float", 0.1, 30.0, log=True),
    ),
}


class ModelSpec(_Frozen):
    family: str
    params: dict[str, Any] = Field(default_factory=dict)


class RowFilter(_Frozen):
    """Training rows to leave out: outliers dropped from the rows a model is fitted on, never at predict.

    `isolation_forest` drops the `share` of training rows an isolation forest on the numeric
    columns finds most anomalous; `target_residual` (regression) drops the `share` with the
    largest residuals of a ridge fit of the target (as the model sees it, after a target
    transform) on the numeric columns: the few extreme-leverage rows that pull a linear model.
    """

    method: Literal["isolation_forest", "target_residual"] = "target_residual"
    share: float = Field(default=0.01, gt=0.0, le=0.2)


class Bagging(_Frozen):
    """Deliver the average of fold models instead of one refit (docs/decisions.md, "Bagged delivery").

    Fitting a bagged spec on some rows splits them into `folds` seeded folds, `repeats` times
    (stratified for a classifier), fits the pipeline on each fold's training part and averages
    the models' predictions (class probabilities for a classifier). Cross-validating it is
    therefore nested: each outer fold's model is itself the average of inner-fold models.
    """

    folds: int = Field(default=5, ge=2, le=10)
    repeats: int = Field(default=1, ge=1, le=5)


class PipelineSpec(_Frozen):
    """One candidate: columns, feature operations, preprocessing and a single estimator."""

    kind: Literal["pipeline"] = "pipeline"
    columns: Columns
    features: tuple[FeatureOp, ...] = ()
    preprocessing: Preprocessing = Preprocessing()
    model: ModelSpec
    target_transform: Literal["none", "log", "sqrt"] = "none"
    class_weight: Literal["none", "balanced"] = "none"
    threshold: Literal["default", "tuned"] | float = "default"
    row_filter: RowFilter | None = None
    """Training-only outlier removal (None: every training row is used)."""
    bagging: Bagging | None = None
    """Average fold models instead of one refit (None: one model on every training row)."""

    @model_validator(mode="after")
    def _known_family_and_params(self) -> PipelineSpec:
        family = FAMILIES.get(self.model.family)
        if family is None:
            raise ValueError(_unknown("model family", self.model.family, list(FAMILIES)))
        checked = {}
        for name, value in self.model.params.items():
            if name not in family.params:
                raise ValueError(f"family {family.name!r} has no parameter {name!r}; it takes {sorted(family.params)}")
            checked[name] = family.params[name].check(name, value)
        object.__setattr__(self, "model", ModelSpec(family=self.model.family, params=checked))
        if isinstance(self.threshold, float) and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"a decision threshold must lie strictly between 0 and 1, got {self.threshold}")
        if len({feature_key(op) for op in self.features}) != len(self.features):
            raise ValueError("the same feature operation appears twice")
        if self.bagging is not None and self.threshold != "default":
            raise ValueError("a bagged model averages probabilities at the default threshold; set threshold 'default'")
        return self


def _blend_weights(weights: tuple[float, ...] | None) -> tuple[float, ...] | None:
    if weights is not None and (not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0):
        raise ValueError("blend weights must be finite and non-negative, with a positive sum")
    return weights


BlendWeights = Annotated[tuple[float, ...] | None, AfterValidator(_blend_weights)]
"""A blend's member weights (None: equal). Checked where a proposal or spec is read, since a
weighted average with weights that sum to zero has no value to score."""


class EnsembleSpec(_Frozen):
    """A soft-voting or stacking blend of complete member pipelines (earlier experiments)."""

    kind: Literal["ensemble"] = "ensemble"
    method: Literal["voting", "stacking"] = "voting"
    members: tuple[PipelineSpec, ...] = Field(min_length=2, max_length=8)
    weights: BlendWeights = None
    member_ids: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _weights_match(self) -> EnsembleSpec:
        if self.weights is not None and len(self.weights) != len(self.members):
            raise ValueError(f"{len(self.weights)} weights for {len(self.members)} members")
        return self


AnySpec = Annotated[PipelineSpec | EnsembleSpec, Field(discriminator="kind")]


class _SpecEnvelope(BaseModel):
    spec: AnySpec


def parse_spec(data: dict[str, Any] | PipelineSpec | EnsembleSpec) -> PipelineSpec | EnsembleSpec:
    """Validate a spec from plain data; raise `SpecError` with every problem on one line each."""
    if isinstance(data, PipelineSpec | EnsembleSpec):
        return data
    if isinstance(data, dict) and "kind" not in data:
        data = {**data, "kind": "ensemble" if "members" in data else "pipeline"}
    try:
        return _SpecEnvelope(spec=data).spec  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SpecError(_explain(exc)) from None


_PREPROCESSING_DEFAULTS = Preprocessing().model_dump(mode="json")


def _without_idle_settings(pipeline: dict[str, Any]) -> None:
    """Reset, in a dumped pipeline, the preprocessing settings the builder never reads for it.

    Why: a setting that reaches no column changes no model, so two specs differing only in it
    must be one experiment; otherwise a Scientist re-runs a model it has scored (a linear recipe
    pooling rare levels on data with no categorical column repeated the power-transformed model)."""
    prep, columns = pipeline["preprocessing"], pipeline["columns"]
    idle = set()
    if not columns["categorical"]:
        idle |= {"categorical_encoder", "onehot_min_frequency"}
    elif prep["categorical_encoder"] != "onehot":
        idle.add("onehot_min_frequency")
    if not columns["high_cardinality"]:
        idle.add("high_cardinality_encoder")
    if prep["numeric_transform"] == "power":  # the Yeo-Johnson step standardises; no scaler follows it
        idle.add("scaler")
    for name in idle:
        prep[name] = _PREPROCESSING_DEFAULTS[name]


def spec_hash(spec: PipelineSpec | EnsembleSpec) -> str:
    """Canonical hash: pipelines that build the same model (defaults included, key order and
    settings that reach no column ignored) hash the same."""
    payload = spec.model_dump(mode="json", exclude={"member_ids"} if spec.kind == "ensemble" else None)
    for pipeline in payload["members"] if spec.kind == "ensemble" else [payload]:
        for optional in ("row_filter", "bagging"):  # specs without one hash as before the field existed
            if pipeline.get(optional) is None:
                pipeline.pop(optional, None)
        _without_idle_settings(pipeline)
    if spec.kind == "pipeline":
        payload["features"] = sorted(payload["features"], key=lambda f: json.dumps(f, sort_keys=True))
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def complexity(spec: PipelineSpec | EnsembleSpec) -> int:
    """How complex a candidate is, for preferring the simpler of two models within noise."""
    if isinstance(spec, EnsembleSpec):
        return 1 + max(complexity(m) for m in spec.members)
    return FAMILIES[spec.model.family].complexity + (1 if spec.bagging is not None else 0)


def referenced_columns(spec: PipelineSpec | EnsembleSpec) -> set[str]:
    """Every raw column the spec reads (for checking it against the data)."""
    if spec.kind == "ensemble":
        return set().union(*(referenced_columns(m) for m in spec.members))
    cols = set(spec.columns.numeric) | set(spec.columns.categorical) | set(spec.columns.high_cardinality)
    for op in spec.features:
        cols |= set(feature_inputs(op))
    return cols


def check_against_data(spec: PipelineSpec | EnsembleSpec, columns: list[str], task_type: str) -> None:
    """Reject a spec that names unknown columns or a family that does not fit the task."""
    unknown = sorted(referenced_columns(spec) - set(columns))
    if unknown:
        raise SpecError("; ".join(_unknown("column", c, columns) for c in unknown))
    specs = spec.members if spec.kind == "ensemble" else (spec,)
    for member in specs:
        family = FAMILIES[member.model.family]
        if task_type not in family.tasks:
            fitting = sorted(n for n, f in FAMILIES.items() if task_type in f.tasks)
            raise SpecError(f"family {family.name!r} does not fit a {task_type} task; use one of {fitting}")
        if member.target_transform != "none" and task_type != "regression":
            raise SpecError("target_transform applies to regression only; set it to 'none'")
        if member.threshold != "default" and task_type != "binary":
            raise SpecError("a decision threshold applies to binary classification only; set 'default'")
        residual = member.row_filter is not None and member.row_filter.method == "target_residual"
        if residual and task_type != "regression":
            raise SpecError("the target_residual row filter applies to regression only; use isolation_forest")
        if member.row_filter is not None and not member.columns.numeric:
            raise SpecError("a row filter reads the numeric columns: the spec uses none")
        if member.class_weight != "none" and not (task_type in CLASSIFICATION and family.class_weight):
            raise SpecError(f"class_weight is not available for {family.name!r} on a {task_type} task")


def catalogue(task_type: str) -> dict[str, Any]:
    """What an agent may use for this task: families with parameter ranges, feature ops, options."""
    return {
        "families": {
            name: {
                "params": {
                    p: {k: v for k, v in vars(spec).items() if v not in (None, (), False)}
                    for p, spec in f.params.items()
                },
                "handles_missing": f.handles_missing,
                "class_weight": f.class_weight,
            }
            for name, f in FAMILIES.items()
            if task_type in f.tasks
        },
        "feature_ops": list(FEATURE_OPS),
        "preprocessing": Preprocessing.model_json_schema()["properties"],
        "target_transform": ["none", "log", "sqrt"] if task_type == "regression" else ["none"],
        "threshold": ["default", "tuned", "a float in (0, 1)"] if task_type == "binary" else ["default"],
        "row_filter": {
            "method": ["isolation_forest", "target_residual"] if task_type == "regression" else ["isolation_forest"],
            "share": "share of training rows dropped, in (0, 0.2]",
        },
        "ensembles": ["voting", "stacking"],
        "bagging": {"folds": "2 to 10 fold models averaged", "repeats": "1 to 5 seeded fold assignments"},
    }


def _unknown(what: str, name: str, known: list[str] | list[Any]) -> str:
    known = [str(k) for k in known]
    close = [k for k in known if k.lower() == name.lower()]
    close = close or difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return f"unknown {what} {name!r}{hint}"


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"][1:] if not str(p).startswith(("pipeline", "ensemble")))
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)
