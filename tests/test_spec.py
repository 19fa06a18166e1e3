"""The pipeline spec: validation messages an agent can act on, canonical hashing, data checks."""

from __future__ import annotations

import pytest

from tandem.tools.spec import (
    CLASSIFICATION,
    FAMILIES,
    SEARCH_SPACES,
    EnsembleSpec,
    PipelineSpec,
    SpecError,
    catalogue,
    check_against_data,
    parse_spec,
    spec_hash,
)
from tandem.tools.tuning import Trial, suggest

COLUMNS = ["age", "fare", "sex", "embarked"]


def pipeline(**overrides):
    data = {
        "columns": {"numeric": ["age", "fare"], "categorical": ["sex"]},
        "model": {"family": "lightgbm", "params": {"n_estimators": 100, "learning_rate": 0.1}},
    }
    data.update(overrides)
    return data


# --------------------------------------------------------------------------------------------
# parse_spec validation
# --------------------------------------------------------------------------------------------


def test_parse_valid_pipeline_infers_kind_and_coerces_params():
    spec = parse_spec(pipeline(model={"family": "lightgbm", "params": {"n_estimators": 100.0, "subsample": 1}}))
    assert isinstance(spec, PipelineSpec)
    assert spec.kind == "pipeline"
    # an int parameter given as a whole float becomes an int, a float one given as int a float
    assert spec.model.params["n_estimators"] == 100
    assert isinstance(spec.model.params["n_estimators"], int)
    assert isinstance(spec.model.params["subsample"], float)


def test_parse_returns_spec_objects_unchanged():
    spec = parse_spec(pipeline())
    assert parse_spec(spec) is spec


def test_unknown_family_suggests_close_name():
    with pytest.raises(SpecError) as info:
        parse_spec(pipeline(model={"family": "lightgbn"}))
    message = str(info.value)
    assert "unknown model family 'lightgbn'" in message
    assert "did you mean 'lightgbm'" in message
    assert "\n" not in message


def test_unknown_family_case_insensitive_match_is_suggested():
    with pytest.raises(SpecError, match="did you mean 'random_forest'"):
        parse_spec(pipeline(model={"family": "Random_Forest"}))


def test_unknown_parameter_lists_allowed_ones():
    with pytest.raises(SpecError) as info:
        parse_spec(pipeline(model={"family": "lightgbm", "params": {"n_estimator": 50}}))
    message = str(info.value)
    assert "no parameter 'n_estimator'" in message
    for allowed in FAMILIES["lightgbm"].params:
        assert allowed in message


@pytest.mark.parametrize(
    ("family", "params", "fragment"),
    [
        ("lightgbm", {"n_estimators": 5}, "must lie in [10, 5000]"),
        ("lightgbm", {"learning_rate": 2.0}, "must lie in"),
        ("logistic", {"C": 0.0}, "must lie in"),
        ("random_forest", {"max_depth": 0}, "must lie in"),
    ],
)
def test_out_of_range_value(family, params, fragment):
    with pytest.raises(SpecError) as info:
        parse_spec(pipeline(model={"family": family, "params": params}))
    assert fragment in str(info.value)
    assert repr(next(iter(params))) in str(info.value)


@pytest.mark.parametrize(
    ("family", "params", "fragment"),
    [
        ("lightgbm", {"n_estimators": "many"}, "must be a number"),
        ("lightgbm", {"n_estimators": True}, "must be a number"),
        ("lightgbm", {"n_estimators": 10.5}, "must be a whole number"),
        ("knn", {"weights": "cosine"}, "must be one of"),
        ("random_forest", {"max_features": "all"}, "must be one of"),
    ],
)
def test_wrong_type(family, params, fragment):
    with pytest.raises(SpecError, match=fragment):
        parse_spec(pipeline(model={"family": family, "params": params}))


def test_unknown_top_level_field_is_rejected():
    with pytest.raises(SpecError, match="learning_rate: Extra inputs"):
        parse_spec(pipeline(learning_rate=0.1))


def test_duplicate_feature_op_rejected():
    op = {"op": "ratio", "numerator": "fare", "denominator": "age"}
    with pytest.raises(SpecError, match="appears twice"):
        parse_spec(pipeline(features=[op, dict(op)]))
    # the same op on different columns is fine
    other = {"op": "ratio", "numerator": "age", "denominator": "fare"}
    assert len(parse_spec(pipeline(features=[op, other])).features) == 2


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.2, 1])
def test_threshold_must_lie_strictly_inside_unit_interval(threshold):
    with pytest.raises(SpecError, match="strictly between 0 and 1"):
        parse_spec(pipeline(threshold=threshold))


@pytest.mark.parametrize("threshold", [0.3, "tuned", "default"])
def test_valid_thresholds(threshold):
    assert parse_spec(pipeline(threshold=threshold)).threshold == threshold


def test_error_message_has_field_location_for_nested_errors():
    with pytest.raises(SpecError) as info:
        parse_spec(pipeline(preprocessing={"scaler": "zscore"}))
    assert "preprocessing.scaler" in str(info.value)


# --------------------------------------------------------------------------------------------
# spec_hash
# --------------------------------------------------------------------------------------------


def test_hash_ignores_key_order_and_feature_order():
    f1 = {"op": "log", "columns": ["fare"]}
    f2 = {"op": "product", "left": "age", "right": "fare"}
    a = parse_spec(
        {
            "columns": {"numeric": ["age", "fare"], "categorical": ["sex"]},
            "model": {"family": "lightgbm", "params": {"n_estimators": 100, "learning_rate": 0.1}},
            "features": [f1, f2],
        }
    )
    b = parse_spec(
        {
            "features": [f2, f1],
            "model": {"params": {"learning_rate": 0.1, "n_estimators": 100}, "family": "lightgbm"},
            "columns": {"categorical": ["sex"], "numeric": ["age", "fare"]},
        }
    )
    assert spec_hash(a) == spec_hash(b)


def test_hash_includes_defaults():
    explicit = parse_spec(pipeline(preprocessing={"numeric_imputer": "median", "scaler": "standard"}))
    implicit = parse_spec(pipeline())
    assert spec_hash(explicit) == spec_hash(implicit)


def test_hash_differs_when_a_param_changes():
    base = parse_spec(pipeline())
    changed = parse_spec(pipeline(model={"family": "lightgbm", "params": {"n_estimators": 101, "learning_rate": 0.1}}))
    assert spec_hash(base) != spec_hash(changed)
    # a numerically equal int/float param canonicalises to the same hash
    same = parse_spec(pipeline(model={"family": "lightgbm", "params": {"n_estimators": 100.0, "learning_rate": 0.1}}))
    assert spec_hash(base) == spec_hash(same)


def test_hash_differs_for_other_changes():
    base = spec_hash(parse_spec(pipeline()))
    assert spec_hash(parse_spec(pipeline(class_weight="balanced"))) != base
    assert spec_hash(parse_spec(pipeline(preprocessing={"scaler": "none"}))) != base
    assert spec_hash(parse_spec(pipeline(columns={"numeric": ["age"], "categorical": ["sex"]}))) != base


def test_ensemble_hash_ignores_member_ids():
    a = parse_spec({"members": [pipeline(), pipeline(model={"family": "logistic"})], "member_ids": [1, 2]})
    b = parse_spec({"members": [pipeline(), pipeline(model={"family": "logistic"})], "member_ids": [3, 4]})
    assert isinstance(a, EnsembleSpec)
    assert spec_hash(a) == spec_hash(b)
    c = parse_spec({"members": [pipeline(), pipeline(model={"family": "logistic"})], "method": "stacking"})
    assert spec_hash(a) != spec_hash(c)


# --------------------------------------------------------------------------------------------
# check_against_data
# --------------------------------------------------------------------------------------------


def test_check_accepts_a_fitting_spec():
    check_against_data(parse_spec(pipeline()), COLUMNS, "binary")


def test_check_rejects_unknown_columns_with_suggestion():
    spec = parse_spec(pipeline(columns={"numeric": ["agee", "fare"]}))
    with pytest.raises(SpecError) as info:
        check_against_data(spec, COLUMNS, "binary")
    assert "unknown column 'agee'" in str(info.value)
    assert "did you mean 'age'" in str(info.value)


def test_check_rejects_unknown_columns_used_only_in_features():
    spec = parse_spec(pipeline(features=[{"op": "ratio", "numerator": "fare", "denominator": "pclass"}]))
    with pytest.raises(SpecError, match="unknown column 'pclass'"):
        check_against_data(spec, COLUMNS, "binary")


def test_check_rejects_regression_family_on_classification():
    spec = parse_spec(pipeline(model={"family": "ridge"}))
    with pytest.raises(SpecError) as info:
        check_against_data(spec, COLUMNS, "binary")
    message = str(info.value)
    assert "'ridge' does not fit a binary task" in message
    assert "logistic" in message
    assert "'svr'" not in message
    check_against_data(spec, COLUMNS, "regression")


def test_check_rejects_classifier_family_on_regression():
    with pytest.raises(SpecError, match="does not fit a regression task"):
        check_against_data(parse_spec(pipeline(model={"family": "logistic"})), COLUMNS, "regression")


def test_check_rejects_class_weight_on_regression_and_unsupported_family():
    with pytest.raises(SpecError, match="class_weight"):
        check_against_data(parse_spec(pipeline(class_weight="balanced")), COLUMNS, "regression")
    with pytest.raises(SpecError, match="class_weight"):
        check_against_data(parse_spec(pipeline(model={"family": "knn"}, class_weight="balanced")), COLUMNS, "binary")
    check_against_data(parse_spec(pipeline(class_weight="balanced")), COLUMNS, "multiclass")


def test_check_rejects_threshold_outside_binary():
    with pytest.raises(SpecError, match="binary classification only"):
        check_against_data(parse_spec(pipeline(threshold="tuned")), COLUMNS, "multiclass")
    with pytest.raises(SpecError, match="binary classification only"):
        check_against_data(parse_spec(pipeline(threshold=0.3)), COLUMNS, "regression")
    check_against_data(parse_spec(pipeline(threshold=0.3)), COLUMNS, "binary")


def test_check_rejects_target_transform_on_classification():
    with pytest.raises(SpecError, match="regression only"):
        check_against_data(parse_spec(pipeline(target_transform="log")), COLUMNS, "binary")
    check_against_data(parse_spec(pipeline(target_transform="log")), COLUMNS, "regression")


def test_check_looks_inside_ensemble_members():
    ensemble = parse_spec({"members": [pipeline(), pipeline(model={"family": "ridge"})]})
    with pytest.raises(SpecError, match="'ridge' does not fit"):
        check_against_data(ensemble, COLUMNS, "binary")
    bad_col = parse_spec({"members": [pipeline(), pipeline(columns={"numeric": ["nope"]})]})
    with pytest.raises(SpecError, match="unknown column 'nope'"):
        check_against_data(bad_col, COLUMNS, "binary")


# --------------------------------------------------------------------------------------------
# catalogue and ensembles
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_catalogue_lists_only_fitting_families(task):
    cat = catalogue(task)
    expected = {name for name, fam in FAMILIES.items() if task in fam.tasks}
    assert set(cat["families"]) == expected
    if task == "regression":
        assert "logistic" not in cat["families"]
        assert {"ridge", "svr"} <= set(cat["families"])
        assert cat["threshold"] == ["default"]
        assert "log" in cat["target_transform"]
    else:
        assert "ridge" not in cat["families"]
        assert "logistic" in cat["families"]
        assert cat["target_transform"] == ["none"]
    assert (len(cat["threshold"]) > 1) == (task == "binary")
    lgbm = cat["families"]["lightgbm"]
    assert lgbm["handles_missing"] is True
    assert lgbm["params"]["n_estimators"]["low"] == 10


def test_classification_set():
    assert {"binary", "multiclass"} == CLASSIFICATION


def test_ensemble_needs_two_members():
    with pytest.raises(SpecError, match="at least 2"):
        parse_spec({"members": [pipeline()]})
    assert isinstance(parse_spec({"members": [pipeline(), pipeline()]}), EnsembleSpec)


def test_ensemble_weights_must_match_members():
    with pytest.raises(SpecError, match="3 weights for 2 members"):
        parse_spec({"members": [pipeline(), pipeline()], "weights": [1, 1, 1]})
    ok = parse_spec({"members": [pipeline(), pipeline()], "weights": [0.7, 0.3]})
    assert ok.weights == (0.7, 0.3)
    assert parse_spec({"members": [pipeline(), pipeline()], "weights": [0, 2]}).weights == (0.0, 2.0)


@pytest.mark.parametrize("weights", [[0, 0], [1, -1], [1, float("nan")]])
def test_blend_weights_that_average_to_nothing_are_refused(weights: list[float]) -> None:
    """A weighted average whose weights sum to zero has no value: refused when the spec is read,
    not found by the evaluator dividing by zero (tests/test_messages.py: the proposal too)."""
    with pytest.raises(SpecError, match="non-negative, with a positive sum"):
        parse_spec({"members": [pipeline(), pipeline()], "weights": weights})


def test_ensemble_members_are_validated():
    with pytest.raises(SpecError, match="did you mean 'lightgbm'"):
        parse_spec({"members": [pipeline(), pipeline(model={"family": "lightgbn"})]})


# --------------------------------------------------------------------------------------------
# Search spaces and the seeded TPE search over them
# --------------------------------------------------------------------------------------------


def test_every_search_space_lies_inside_its_familys_catalogue_ranges():
    assert set(SEARCH_SPACES) == set(FAMILIES)  # every family can be tuned
    for family, space in SEARCH_SPACES.items():
        for name, param in space.items():
            allowed = FAMILIES[family].params[name]
            if param.kind == "choice":
                assert all(allowed.check(name, c) == c for c in param.choices), (family, name)
            else:
                assert allowed.low <= param.low < param.high <= allowed.high, (family, name)


def test_tpe_suggestions_are_valid_specs_seeded_and_replayed():
    space = SEARCH_SPACES["lightgbm"]
    trials: list[Trial] = []
    for k in range(8):
        params = suggest(space, trials, maximize=True, seed=k)
        assert params is not None and set(params) == set(space)
        assert suggest(space, trials, maximize=True, seed=k) == params  # the same history and seed: the same point
        spec = parse_spec({"columns": {"numeric": ["a"]}, "model": {"family": "lightgbm", "params": params}})
        assert spec.model.params == params  # inside the catalogue's ranges
        trials.append(Trial(params=params, value=-abs(params["learning_rate"] - 0.05) if k != 3 else None))
    # after the random start-up points, TPE reads the history: other values, another point
    flipped = [Trial(params=t.params, value=None if t.value is None else -t.value) for t in trials]
    assert suggest(space, trials, maximize=True, seed=99) != suggest(space, flipped, maximize=True, seed=99)
    # a point `avoid` rejects is never returned; when all are rejected there is none
    first = suggest(space, trials, maximize=True, seed=5)
    other = suggest(space, trials, maximize=True, seed=5, avoid=lambda p: p == first)
    assert other is not None and other != first
    assert suggest(space, trials, maximize=True, seed=5, avoid=lambda p: True) is None
    # trials outside the space (an LLM's hand-set value) are left out, not a crash
    wild = [*trials, Trial(params={"n_estimators": 5000}, value=1.0)]
    assert suggest(space, wild, maximize=True, seed=1) == suggest(space, trials, maximize=True, seed=1)
