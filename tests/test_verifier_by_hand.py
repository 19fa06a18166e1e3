"""The verifier against specs written by hand: every change type, faithful and each way of being unfaithful.

The verifier decides what a proposal asked for with `apply_changes`, so a test that builds its
"faithful" implementation with `apply_changes` too can only ever find fidelity 1.0. Here every
expected spec is a literal, written from the meaning each change has in the README ("drop
columns" also drops the features built on them, "set_model" starts from the family's defaults,
an ensemble blends the earlier experiments as they are…), never computed by tandem. The
verifier node itself is driven with the plain JSON the graph's state holds, and the fitted
parameters it checks come from really cross-validating the implementation.

Each change type is checked four ways: built as asked (fidelity 1), not built at all
(fidelity 0, one issue per requested aspect), built with one unrequested change on top
(fidelity requested / (requested + 1)), and, where the spec has parameters, fitted with a
parameter other than the spec says (fidelity scaled by the share of parameters held).
"""

from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from langgraph.runtime import Runtime

from tandem.graph.context import RunContext
from tandem.graph.persistence import run_folder, save_profile
from tandem.graph.state import ProfileRef
from tandem.nodes.verifier import verifier
from tandem.tools.profile import profile_dataset
from tandem.tools.spec import parse_spec
from tandem.tools.training import Problem, evaluate_spec

Spec = dict[str, Any]
COLUMNS = ["age", "fare", "sex", "embarked", "ticket"]

PREPROCESSING: Spec = {
    "numeric_imputer": "median",
    "clip_to_train_range": True,
    "scaler": "standard",
    "numeric_transform": "none",
    "categorical_encoder": "onehot",
    "high_cardinality_encoder": "target",
    "onehot_min_frequency": 1,
}
RATIO: Spec = {"op": "ratio", "numerator": "fare", "denominator": "age"}
LOG_FARE: Spec = {"op": "log", "columns": ["fare"]}
PRODUCT: Spec = {"op": "product", "left": "age", "right": "fare"}
MISSING_AGE: Spec = {"op": "missing_indicator", "columns": ["age"]}

# Experiment #0 of the binary task: a logistic model with two features built on `fare`.
BASE: Spec = {
    "kind": "pipeline",
    "columns": {"numeric": ["age", "fare"], "categorical": ["sex"], "high_cardinality": []},
    "features": [RATIO, LOG_FARE],
    "preprocessing": PREPROCESSING,
    "model": {"family": "logistic", "params": {"C": 1.0}},
    "target_transform": "none",
    "class_weight": "none",
    "threshold": "default",
}
# Experiment #1: boosting on the same columns, without imputation.
BOOSTING: Spec = {
    **BASE,
    "features": [],
    "preprocessing": {**PREPROCESSING, "numeric_imputer": "none"},
    "model": {"family": "lightgbm", "params": {"n_estimators": 40, "learning_rate": 0.1}},
}
# Experiment #0 of the regression task.
RIDGE: Spec = {
    **BASE,
    "columns": {"numeric": ["age", "fare"], "categorical": ["sex"], "high_cardinality": []},
    "features": [],
    "model": {"family": "ridge", "params": {"alpha": 1.0}},
}


def with_(spec: Spec, **fields: Any) -> Spec:
    """A copy of a hand-written spec with some top-level fields replaced (also written by hand)."""
    return {**copy.deepcopy(spec), **copy.deepcopy(fields)}


@dataclass(frozen=True)
class Case:
    """One proposal, the spec it asks for (by hand), and how many spec aspects it changes (by hand)."""

    changes: list[Spec]
    expected: Spec
    requested: int
    task: str = "binary"
    base_experiment: int | None = None
    extra: dict[str, Any] | None = field(default_factory=lambda: {"features": "+missing_age"})
    """An unrequested change to make on top of the faithful spec (None: every aspect is requested)."""


CASES: dict[str, Case] = {
    # family, the old family's C gone, the new n_estimators: 3 aspects
    "set_model": Case(
        [{"change": "set_model", "family": "lightgbm", "params": {"n_estimators": 50}}],
        with_(BASE, model={"family": "lightgbm", "params": {"n_estimators": 50}}),
        3,
    ),
    "set_params": Case(
        [{"change": "set_params", "params": {"C": 0.1, "l1_ratio": 0.5}}],
        with_(BASE, model={"family": "logistic", "params": {"C": 0.1, "l1_ratio": 0.5}}),
        2,
    ),
    "set_params on experiment #1": Case(
        [{"change": "set_params", "params": {"learning_rate": 0.05}}],
        with_(BOOSTING, model={"family": "lightgbm", "params": {"n_estimators": 40, "learning_rate": 0.05}}),
        1,
        base_experiment=1,
    ),
    "add_feature": Case(
        [{"change": "add_feature", "feature": PRODUCT}],
        with_(BASE, features=[RATIO, LOG_FARE, PRODUCT]),
        1,
    ),
    "remove_feature": Case(
        [{"change": "remove_feature", "feature": LOG_FARE}],
        with_(BASE, features=[RATIO]),
        1,
    ),
    "set_preprocessing": Case(
        [{"change": "set_preprocessing", "settings": {"scaler": "robust", "numeric_imputer": "mean"}}],
        with_(BASE, preprocessing={**PREPROCESSING, "scaler": "robust", "numeric_imputer": "mean"}),
        2,
    ),
    # dropping fare also drops both features built on it: the column and two features, 3 aspects
    "drop_columns with its features": Case(
        [{"change": "drop_columns", "columns": ["fare"]}],
        with_(BASE, columns={"numeric": ["age"], "categorical": ["sex"], "high_cardinality": []}, features=[]),
        3,
    ),
    "drop_columns": Case(
        [{"change": "drop_columns", "columns": ["sex"]}],
        with_(BASE, columns={"numeric": ["age", "fare"], "categorical": [], "high_cardinality": []}),
        1,
    ),
    "use_columns (a new column)": Case(
        [{"change": "use_columns", "columns": ["embarked"], "role": "categorical"}],
        with_(BASE, columns={"numeric": ["age", "fare"], "categorical": ["sex", "embarked"], "high_cardinality": []}),
        1,
    ),
    "use_columns (another role)": Case(
        [{"change": "use_columns", "columns": ["sex"], "role": "high_cardinality"}],
        with_(BASE, columns={"numeric": ["age", "fare"], "categorical": [], "high_cardinality": ["sex"]}),
        1,
    ),
    "set_target_transform": Case(
        [{"change": "set_target_transform", "transform": "log"}],
        with_(RIDGE, target_transform="log"),
        1,
        task="regression",
    ),
    "set_class_weight": Case(
        [{"change": "set_class_weight", "class_weight": "balanced"}],
        with_(BASE, class_weight="balanced"),
        1,
    ),
    "set_threshold tuned": Case(
        [{"change": "set_threshold", "threshold": "tuned"}],
        with_(BASE, threshold="tuned"),
        1,
    ),
    "set_threshold 0.35": Case(
        [{"change": "set_threshold", "threshold": 0.35}],
        with_(BASE, threshold=0.35),
        1,
    ),
    # applied in order: the family first, then the imputer, then the new family's parameter
    "three changes in order": Case(
        [
            {"change": "set_model", "family": "lightgbm"},
            {"change": "set_preprocessing", "settings": {"numeric_imputer": "none"}},
            {"change": "set_params", "params": {"num_leaves": 7}},
        ],
        with_(
            BASE,
            preprocessing={**PREPROCESSING, "numeric_imputer": "none"},
            model={"family": "lightgbm", "params": {"num_leaves": 7}},
        ),
        4,  # family, C gone, num_leaves, the imputer
    ),
    "build_ensemble stacking": Case(
        [{"change": "build_ensemble", "experiment_ids": [0, 1], "method": "stacking"}],
        {"kind": "ensemble", "method": "stacking", "members": [BASE, BOOSTING], "weights": None, "member_ids": [0, 1]},
        0,  # not counted by hand: the whole pipeline gives way to an ensemble
        extra={"weights": [1.0, 3.0]},
    ),
    "build_ensemble weighted voting": Case(
        [{"change": "build_ensemble", "experiment_ids": [1, 0], "method": "voting", "weights": [3.0, 1.0]}],
        {
            "kind": "ensemble",
            "method": "voting",
            "members": [BOOSTING, BASE],
            "weights": [3.0, 1.0],
            "member_ids": [1, 0],
        },
        0,
        extra=None,  # kind, method, members and weights are all asked for: nothing is left to change unasked
    ),
}


# --------------------------------------------------------------------------------------------
# The environment around the node: data, a ledger, real fitted parameters.
# --------------------------------------------------------------------------------------------


@cache
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 160
    age = rng.uniform(1, 80, n)
    age[rng.choice(n, 12, replace=False)] = np.nan
    fare = rng.exponential(30, n) + 1
    sex = rng.choice(["male", "female"], n)
    score = 0.03 * np.nan_to_num(age, nan=30) - 0.02 * fare + (sex == "female") + rng.normal(0, 0.5, n)
    return pd.DataFrame(
        {
            "age": age,
            "fare": fare,
            "sex": sex,
            "embarked": rng.choice(["S", "C", "Q"], n),
            "ticket": [f"T{i % 37}" for i in range(n)],
            "y": np.where(score > np.median(score), "yes", "no"),
            "price": np.exp(1 + 0.2 * score + rng.normal(0, 0.1, n)),
        }
    )


def problem(task: str) -> Problem:
    if task == "regression":
        return Problem(task_type="regression", metrics=("rmse",), primary_metric="rmse")
    return Problem(
        task_type="binary",
        metrics=("f1_macro",),
        primary_metric="f1_macro",
        classes=("no", "yes"),
        positive_class="yes",
    )


@cache
def _fitted(spec_json: str, task: str) -> str:
    data = frame()
    X, y = data[COLUMNS], data["price" if task == "regression" else "y"]
    result = evaluate_spec(parse_spec(json.loads(spec_json)), X, y, np.arange(len(X)) % 2, problem(task), n_jobs=1)
    assert result.status == "ok", result.error
    return json.dumps(result.fitted_params)


def fitted_params(spec: Spec, task: str) -> dict[str, Any]:
    """The parameters the estimator fitted from `spec` really holds, as the evaluator reports them."""
    return json.loads(_fitted(json.dumps(spec, sort_keys=True), task))


RUNS = tempfile.TemporaryDirectory(prefix="verifier-by-hand-")
"""A runs folder for the one run folder the verifier node reads the profile from (removed at exit)."""


@cache
def profile_ref() -> ProfileRef:
    """The test data's profile, written into a run folder as setup writes it (the verifier reads its columns)."""
    folder = run_folder(RUNS.name, "by-hand")
    folder.path.mkdir(exist_ok=True)
    return save_profile(folder, profile_dataset(frame()[[*COLUMNS, "y"]], "y", "binary"))


def verify_node(
    case: Case, built: Spec | None, *, fitted: dict[str, Any] | None = None, repaired: list[str] | None = None
) -> dict[str, Any]:
    """Run the verifier node on a state holding the ledger, the proposal and the Executor's spec."""
    base = RIDGE if case.task == "regression" else BASE
    ledger = [{"id": 0, "spec": base}, {"id": 1, "spec": BOOSTING if case.task == "binary" else RIDGE}]
    state = {
        "task": {"task_type": case.task},
        "profile": profile_ref(),
        "ledger": ledger,
        "incumbent": 0,
        "proposal": {
            "action": "experiment",
            "rationale": "by hand",
            "changes": case.changes,
            "base_experiment": case.base_experiment,
            "move": None,
            "failure": None,
        },
        "implementation": {"spec": built, "repairs": [], "repaired_aspects": repaired or [], "error": None},
        "evaluation": None if fitted is None else {"status": "ok", "fitted_params": fitted},
    }
    update = verifier(state, Runtime(context=RunContext(runs_dir=RUNS.name, run_id="by-hand")))  # type: ignore[arg-type]
    return dict(update["verification"])


def base_of(case: Case) -> Spec:
    if case.task == "regression":
        return RIDGE
    return BOOSTING if case.base_experiment == 1 else BASE


def with_extra(case: Case) -> tuple[Spec, str]:
    """The faithful spec plus one unrequested change, and the aspect the verifier should name."""
    spec = copy.deepcopy(case.expected)
    assert case.extra is not None
    if case.extra == {"features": "+missing_age"}:
        spec["features"] = [*spec["features"], MISSING_AGE]
        return spec, "feature."
    ((key, value),) = case.extra.items()
    spec[key] = value
    return spec, f"ensemble.{key}"


# --------------------------------------------------------------------------------------------
# Every change type, four ways.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_the_spec_written_by_hand_is_faithful(name: str) -> None:
    case = CASES[name]
    verdict = verify_node(case, case.expected, fitted=fitted_params(case.expected, case.task))
    assert verdict["issues"] == []
    assert verdict["fidelity"] == 1.0
    assert verdict["proposal_valid"] is True
    if case.requested:
        assert verdict["requested"] == case.requested


@pytest.mark.parametrize("name", list(CASES))
def test_a_requested_change_not_made_gives_zero_fidelity(name: str) -> None:
    case = CASES[name]
    untouched = base_of(case)
    verdict = verify_node(case, untouched, fitted=fitted_params(untouched, case.task))
    assert verdict["fidelity"] == 0.0
    assert verdict["proposal_valid"] is True
    assert len(verdict["issues"]) == verdict["requested"] > 0
    assert all(issue.startswith("asked ") for issue in verdict["issues"])
    if case.requested:
        assert verdict["requested"] == case.requested


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.extra is not None])
def test_an_unrequested_change_on_top_lowers_fidelity_by_one_aspect(name: str) -> None:
    case = CASES[name]
    spec, aspect = with_extra(case)
    verdict = verify_node(case, spec, fitted=fitted_params(spec, case.task))
    requested = verdict["requested"]
    assert verdict["fidelity"] == pytest.approx(requested / (requested + 1), abs=1e-6)
    assert [i for i in verdict["issues"] if i.startswith(f"unrequested change {aspect}")], verdict["issues"]
    assert len(verdict["issues"]) == 1


PARAMETER_CASES = {
    # case: (a spec the estimator was really fitted from, params held / params in the spec)
    "set_model": (with_(BASE, model={"family": "lightgbm", "params": {"n_estimators": 80}}), 0 / 1),
    "set_params": (with_(BASE, model={"family": "logistic", "params": {"C": 0.1, "l1_ratio": 0.9}}), 1 / 2),
    "set_params on experiment #1": (
        with_(BOOSTING, model={"family": "lightgbm", "params": {"n_estimators": 40, "learning_rate": 0.1}}),
        1 / 2,
    ),
    "set_class_weight": (with_(BASE, class_weight="balanced", model={"family": "logistic", "params": {"C": 5.0}}), 0),
    "set_target_transform": (
        with_(RIDGE, target_transform="log", model={"family": "ridge", "params": {"alpha": 3}}),
        0,
    ),
    "three changes in order": (
        with_(CASES["three changes in order"].expected, model={"family": "lightgbm", "params": {"num_leaves": 31}}),
        0,
    ),
}


@pytest.mark.parametrize("name", list(PARAMETER_CASES))
def test_a_parameter_the_fitted_estimator_does_not_hold_lowers_fidelity(name: str) -> None:
    case = CASES[name]
    really_fitted, held = PARAMETER_CASES[name]
    verdict = verify_node(case, case.expected, fitted=fitted_params(really_fitted, case.task))
    assert verdict["fidelity"] == pytest.approx(held, abs=1e-6)
    assert verdict["issues"] and all(i.startswith("fitted estimator holds ") for i in verdict["issues"])


# --------------------------------------------------------------------------------------------
# Partly faithful, declared repairs, ensembles, invalid proposals.
# --------------------------------------------------------------------------------------------


def test_dropping_a_column_but_keeping_the_features_built_on_it_is_one_third_faithful() -> None:
    case = CASES["drop_columns with its features"]
    kept = with_(BASE, columns={"numeric": ["age"], "categorical": ["sex"], "high_cardinality": []})
    verdict = verify_node(case, kept, fitted=fitted_params(kept, "binary"))
    assert verdict["fidelity"] == pytest.approx(1 / 3, abs=1e-6)
    assert len(verdict["issues"]) == 2 and all("feature." in i for i in verdict["issues"])


def test_a_new_family_without_its_requested_parameter_is_two_thirds_faithful() -> None:
    case = CASES["set_model"]
    defaults = with_(BASE, model={"family": "lightgbm", "params": {}})
    verdict = verify_node(case, defaults, fitted=fitted_params(defaults, "binary"))
    assert verdict["fidelity"] == pytest.approx(2 / 3, abs=1e-6)
    assert len(verdict["issues"]) == 1 and "param.n_estimators" in verdict["issues"][0]


def test_a_declared_preprocessing_repair_is_excused_and_an_undeclared_one_is_not() -> None:
    case = CASES["set_model"]
    repaired = with_(CASES["set_model"].expected, preprocessing={**PREPROCESSING, "scaler": "none"})
    fitted = fitted_params(repaired, "binary")
    excused = verify_node(case, repaired, fitted=fitted, repaired=["preprocessing.scaler"])
    assert excused["fidelity"] == 1.0 and excused["issues"] == []
    undeclared = verify_node(case, repaired, fitted=fitted)
    assert undeclared["fidelity"] == pytest.approx(3 / 4, abs=1e-6)
    declared_family = verify_node(
        case, with_(repaired, model={"family": "random_forest", "params": {}}), repaired=["model.family"]
    )
    assert declared_family["fidelity"] < 1.0  # only preprocessing may be repaired


def test_an_ensemble_of_other_members_is_unfaithful() -> None:
    case = CASES["build_ensemble stacking"]
    ridge_like = with_(BASE, model={"family": "logistic", "params": {"C": 0.01}})
    wrong = {**case.expected, "members": [BASE, ridge_like], "member_ids": [0, 2]}
    verdict = verify_node(case, wrong)
    assert 0.0 < verdict["fidelity"] < 1.0
    assert any(i.startswith("asked ensemble.members") for i in verdict["issues"])


def test_an_ensemble_whose_weights_go_to_the_wrong_members_is_unfaithful() -> None:
    case = CASES["build_ensemble weighted voting"]  # 3 × boosting, 1 × logistic
    swapped = {**case.expected, "members": [BASE, BOOSTING], "member_ids": [0, 1]}  # 3 × logistic
    verdict = verify_node(case, swapped)
    assert verdict["fidelity"] < 1.0, "the weights were given to the other member"


@pytest.mark.parametrize(
    ("change", "task"),
    [
        ({"change": "use_columns", "columns": ["cabin"], "role": "categorical"}, "binary"),
        ({"change": "set_model", "family": "ridge"}, "binary"),
        ({"change": "set_target_transform", "transform": "log"}, "binary"),
        ({"change": "set_threshold", "threshold": "tuned"}, "regression"),
        ({"change": "build_ensemble", "experiment_ids": [0, 7]}, "binary"),
    ],
)
def test_a_proposal_that_cannot_be_built_is_the_scientists_fault(change: Spec, task: str) -> None:
    case = Case([change], {}, 0, task=task)
    verdict = verify_node(case, RIDGE if task == "regression" else BASE)
    assert verdict["proposal_valid"] is False
    assert verdict["fidelity"] == 1.0  # the Executor is not judged on it
    assert verdict["issues"]
