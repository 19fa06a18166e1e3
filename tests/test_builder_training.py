"""Builder and evaluation protocol: every family runs, wrappers work, folds, cache, failures, time-outs."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn import metrics as skm
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import StackingClassifier, StackingRegressor, VotingClassifier, VotingRegressor
from sklearn.model_selection import FixedThresholdClassifier, TunedThresholdClassifierCV
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_info, threadpool_limits

from tandem.tools import training
from tandem.tools.builder import build_pipeline, final_estimator, fitted_params, predict, training_rows_kept
from tandem.tools.spec import FAMILIES, PipelineSpec, RowFilter, SpecError, check_against_data, parse_spec, spec_hash
from tandem.tools.training import Problem, dry_run, evaluate_spec, make_split, projected_seconds

NUMERIC = ["a", "b", "c", "d"]
CATEGORICAL = ["color", "size"]

#: Small settings so every family fits in a fraction of a second.
FAST_PARAMS = {
    "random_forest": {"n_estimators": 15},
    "extra_trees": {"n_estimators": 15},
    "hist_gradient_boosting": {"max_iter": 15},
    "lightgbm": {"n_estimators": 15},
    "knn": {"n_neighbors": 7},
    "catboost": {"iterations": 15},
}


@pytest.fixture(autouse=True, scope="module")
def _single_openmp_thread():
    """HistGradientBoosting's OpenMP threads crawl when other processes share the CPUs; one is plenty here."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def make_frame(task: str, n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Numeric columns with NaNs plus two string categoricals (one with missing values)."""
    if task == "regression":
        X, y = make_regression(n_samples=n, n_features=4, n_informative=3, noise=5.0, random_state=seed)
        target = pd.Series(y, name="y")
    else:
        X, y = make_classification(
            n_samples=n,
            n_features=4,
            n_informative=3,
            n_redundant=0,
            n_classes=2 if task == "binary" else 3,
            random_state=seed,
        )
        labels = np.array(["no", "yes"]) if task == "binary" else np.array(["ant", "bee", "cat"])
        target = pd.Series(labels[y], name="y")
    frame = pd.DataFrame(X, columns=NUMERIC)
    rng = np.random.default_rng(seed)
    frame["color"] = rng.choice(["red", "green", "blue"], n)
    frame["size"] = rng.choice(np.array(["S", "M", "L", None], dtype=object), n)
    frame.loc[rng.choice(n, n // 8, replace=False), "a"] = np.nan
    frame.loc[rng.choice(n, n // 10, replace=False), "c"] = np.nan
    return frame, target


def spec_for(family: str, **overrides) -> PipelineSpec:
    data = {
        "columns": {"numeric": NUMERIC, "categorical": CATEGORICAL},
        "model": {"family": family, "params": FAST_PARAMS.get(family, {})},
        # heuristic-executor style: impute only for families that reject missing values
        "preprocessing": {"numeric_imputer": "none" if FAMILIES[family].handles_missing else "median"},
    }
    data.update(overrides)
    spec = parse_spec(data)
    assert isinstance(spec, PipelineSpec)
    return spec


def classes_of(y: pd.Series, task: str) -> tuple:
    return tuple(sorted(y.unique())) if task != "regression" else ()


def primary_of(task: str) -> str:
    return "rmse" if task == "regression" else "f1_macro"


FAMILY_CASES = [
    (task, name) for task in ("binary", "multiclass", "regression") for name in FAMILIES if task in FAMILIES[name].tasks
]

# The scikit-learn / LightGBM class each family is built as (classifier, regressor), written out here.
ESTIMATOR_NAMES = {
    "logistic": ("LogisticRegression", None),
    "ridge": (None, "Ridge"),
    "lasso": (None, "Lasso"),
    "elastic_net": (None, "ElasticNet"),
    "svr": (None, "SVR"),
    "svc": ("SVC", None),
    "knn": ("KNeighborsClassifier", "KNeighborsRegressor"),
    "decision_tree": ("DecisionTreeClassifier", "DecisionTreeRegressor"),
    "random_forest": ("RandomForestClassifier", "RandomForestRegressor"),
    "extra_trees": ("ExtraTreesClassifier", "ExtraTreesRegressor"),
    "hist_gradient_boosting": ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"),
    "lightgbm": ("LGBMClassifier", "LGBMRegressor"),
    "catboost": ("CatBoostClassifier", "CatBoostRegressor"),
}


# --------------------------------------------------------------------------------------------
# build_pipeline
# --------------------------------------------------------------------------------------------


def wide_frame(task: str, n: int = 300) -> tuple[pd.DataFrame, pd.Series]:
    """`make_frame` plus a 60-level categorical: a one-hot design matrix that is mostly zeros."""
    X, y = make_frame(task, n)
    X["zip"] = [f"z{i % 60}" for i in range(n)]
    return X, y


@pytest.mark.parametrize(("task", "family"), FAMILY_CASES, ids=[f"{t}-{f}" for t, f in FAMILY_CASES])
def test_large_data_keep_a_wide_one_hot_sparse_for_every_family_that_takes_it(task, family, monkeypatch):
    from tandem.tools import builder

    monkeypatch.setattr(builder, "SPARSE_FROM_ROWS", 200)  # "large" without a test of 100,000 rows
    X, y = wide_frame(task)
    spec = spec_for(family, columns={"numeric": NUMERIC, "categorical": [*CATEGORICAL, "zip"]})
    pos = "yes" if task == "binary" else None
    model = build_pipeline(spec, task, primary_metric=primary_of(task), pos_label=pos, n_rows=240)
    model.fit(X.iloc[:240], y.iloc[:240])
    design = model.named_steps["preprocess"].transform(X.iloc[240:])
    assert sp.issparse(design) == FAMILIES[family].sparse_input  # HistGradientBoosting rejects sparse input
    pred = predict(model, X.iloc[240:], task, classes_of(y, task), pos)
    assert len(pred.y_pred) == 60
    small = build_pipeline(spec, task, primary_metric=primary_of(task), pos_label=pos, n_rows=199)
    assert not sp.issparse(small.fit(X.iloc[:240], y.iloc[:240]).named_steps["preprocess"].transform(X.iloc[240:]))


@pytest.mark.parametrize("rows_per_chunk", [1, 7, 50, 10_000])
def test_stacking_a_block_of_rows_at_a_time_gives_scipys_matrix(rows_per_chunk: int) -> None:
    from tandem.tools.builder import stack_sparse

    rng = np.random.default_rng(0)
    dense = rng.normal(size=(50, 4))
    dense[rng.random((50, 4)) < 0.3] = 0.0  # zeros are dropped…
    dense[3, 1] = np.nan  # …NaN is kept
    one_hot = sp.random(50, 9, density=0.2, format="csr", random_state=0, dtype=np.float32)
    one_hot.data[:3] = 0.0  # stored zeros stay stored
    blocks = [dense, one_hot, sp.csr_matrix(rng.normal(size=(50, 2)))]
    expected = sp.hstack(blocks).tocsr()  # what ColumnTransformer stacks
    stacked = stack_sparse(blocks, rows_per_chunk=rows_per_chunk)
    assert stacked.shape == expected.shape and stacked.dtype == expected.dtype
    np.testing.assert_array_equal(stacked.indptr, expected.indptr)
    np.testing.assert_array_equal(stacked.indices, expected.indices)
    np.testing.assert_array_equal(stacked.data, expected.data)  # NaN in the same place


def test_the_median_imputer_is_scikit_learns_and_follows_its_contract() -> None:
    import warnings

    from sklearn.impute import SimpleImputer
    from sklearn.utils.estimator_checks import check_estimator

    from tandem.tools.builder import MedianImputer

    rng = np.random.default_rng(0)
    values = rng.normal(size=(301, 6))
    values[rng.random(values.shape) < 0.2] = np.nan
    values[:, 2] = np.round(values[:, 2])  # ties, and an even count of values in some columns
    values[:, 4] = np.nan  # a column without any value: filled with 0, as keep_empty_features does
    frame = pd.DataFrame(values, columns=[f"x {i}" for i in range(6)])
    ours = MedianImputer().fit(frame.iloc[:200])
    theirs = SimpleImputer(strategy="median", keep_empty_features=True).fit(frame.iloc[:200])
    np.testing.assert_array_equal(ours.statistics_, theirs.statistics_)  # to the last bit
    np.testing.assert_array_equal(ours.transform(frame.iloc[200:]), theirs.transform(frame.iloc[200:]))
    assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())
    assert frame.isna().to_numpy().sum() == np.isnan(values).sum()  # the input is not changed
    array = values.copy()
    ours.transform(array)
    ours.transform(frame)  # a frame of float64 columns alone: a view of its data, copied before filling
    np.testing.assert_array_equal(np.isnan(array), np.isnan(values))
    assert frame.isna().to_numpy().sum() == np.isnan(values).sum()
    pipeline = build_pipeline(spec_for("logistic"), "binary", primary_metric="f1_macro")  # imputes the median
    assert any(isinstance(step, MedianImputer) for step in pipeline.get_params(deep=True).values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(MedianImputer())


def test_the_sparse_design_is_the_one_column_transformer_builds(monkeypatch) -> None:
    from sklearn.compose import ColumnTransformer

    from tandem.tools import builder

    monkeypatch.setattr(builder, "SPARSE_FROM_ROWS", 200)
    monkeypatch.setattr(builder, "STACK_ROWS", 16)  # many blocks of rows on 240 rows
    X, y = wide_frame("binary")
    spec = spec_for("logistic", columns={"numeric": NUMERIC, "categorical": [*CATEGORICAL, "zip"]})
    ours = builder._preprocessor(spec, "binary", 0, sparse=True)
    theirs = ColumnTransformer(ours.transformers, remainder="drop", sparse_threshold=ours.sparse_threshold)
    a, b = ours.fit_transform(X, y), theirs.fit_transform(X, y)
    assert sp.issparse(a) and (a != b).nnz == 0 and np.array_equal(a.indices, b.indices)
    assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())


@pytest.mark.parametrize(("task", "family"), [("regression", "ridge"), ("binary", "logistic")])
def test_a_sparse_design_gives_a_linear_model_the_dense_one_s_predictions(task, family, monkeypatch):
    from tandem.tools import builder

    X, y = wide_frame(task)
    spec = spec_for(family, columns={"numeric": NUMERIC, "categorical": [*CATEGORICAL, "zip"]})
    pos = "yes" if task == "binary" else None

    def fitted_predictions(n_rows: int) -> np.ndarray:
        model = build_pipeline(spec, task, primary_metric=primary_of(task), pos_label=pos, n_rows=n_rows)
        pred = predict(model.fit(X.iloc[:240], y.iloc[:240]), X.iloc[240:], task, classes_of(y, task), pos)
        return pred.y_pred if pred.proba is None else pred.proba

    dense = fitted_predictions(240)
    monkeypatch.setattr(builder, "SPARSE_FROM_ROWS", 200)
    # the same model up to the solver: Ridge solves a sparse system iteratively (sparse_cg, tol 1e-4)
    np.testing.assert_allclose(fitted_predictions(240), dense, rtol=0, atol=1e-3 * np.ptp(dense))


@pytest.mark.parametrize(("task", "family"), FAMILY_CASES, ids=[f"{t}-{f}" for t, f in FAMILY_CASES])
def test_every_family_fits_and_predicts_with_nans_and_strings(task, family):
    X, y = make_frame(task)
    classes = classes_of(y, task)
    pos = "yes" if task == "binary" else None
    model = build_pipeline(spec_for(family), task, primary_metric=primary_of(task), pos_label=pos, seed=0)
    model.fit(X.iloc[:180], y.iloc[:180])
    pred = predict(model, X.iloc[180:], task, classes, pos)
    assert len(pred.y_pred) == 60
    np.testing.assert_array_equal(pred.y_pred, np.ravel(model.predict(X.iloc[180:])))  # rows transformed once: same
    if task != "regression":
        order = [list(model.classes_).index(c) for c in classes]
        np.testing.assert_array_equal(pred.proba, model.predict_proba(X.iloc[180:])[:, order])
    estimator = final_estimator(model)  # the end of the pipeline, through any wrapper: the family's own class
    assert type(estimator).__name__ == ESTIMATOR_NAMES[family][task == "regression"]
    check_is_fitted(estimator)
    if task == "regression":
        assert pred.y_pred.dtype == float
        assert np.isfinite(pred.y_pred).all()
        assert skm.r2_score(y.iloc[180:], pred.y_pred) > -1.0  # not wildly off
    else:
        assert set(pred.y_pred) <= set(classes)
        assert pred.proba is not None
        assert pred.proba.shape == (60, len(classes))
        np.testing.assert_allclose(pred.proba.sum(axis=1), 1.0, atol=1e-6)


def test_family_without_missing_support_fails_on_nan_without_imputer():
    X, y = make_frame("binary")
    spec = spec_for("logistic", preprocessing={"numeric_imputer": "none"})
    model = build_pipeline(spec, "binary", primary_metric="f1_macro", pos_label="yes")
    with pytest.raises(ValueError, match="NaN"):
        model.fit(X, y)


def test_spec_with_no_columns_is_rejected_by_builder():
    spec = parse_spec({"columns": {}, "model": {"family": "logistic"}})
    with pytest.raises(ValueError, match="no columns"):
        build_pipeline(spec, "binary", primary_metric="f1_macro", pos_label="yes")


def _positive_regression(n: int = 240):
    X, _ = make_frame("regression", n)
    rng = np.random.default_rng(1)
    b = X["b"].to_numpy()
    y = pd.Series(np.exp(1.0 + 0.8 * b + rng.normal(0, 0.2, n)), name="y")
    return X, y


@pytest.mark.parametrize(
    ("transform", "forward", "inverse"), [("log", np.log1p, np.expm1), ("sqrt", np.sqrt, np.square)]
)
def test_target_transform_fits_the_inner_model_on_the_transformed_target(transform, forward, inverse):
    X, y = _positive_regression()
    spec = spec_for("ridge", target_transform=transform, model={"family": "ridge", "params": {"alpha": 1e-4}})
    model = build_pipeline(spec, "regression", primary_metric="rmse")
    assert isinstance(model, TransformedTargetRegressor)
    model.fit(X, y)
    inner = model.regressor_.predict(X)
    # a ridge with intercept reproduces the mean of the target it was trained on
    assert inner.mean() == pytest.approx(forward(y).mean(), rel=1e-3)
    assert inner.mean() != pytest.approx(y.mean(), rel=0.1)
    pred = predict(model, X, "regression", (), None).y_pred
    np.testing.assert_allclose(pred, inverse(inner), rtol=1e-9)
    # the transformed model fits an exponential target better than a plain ridge
    plain = build_pipeline(spec_for("ridge"), "regression", primary_metric="rmse").fit(X, y)
    assert skm.r2_score(y, pred) > skm.r2_score(y, plain.predict(X))


@pytest.mark.parametrize("primary", ["f1", "f1_macro"])
def test_tuned_threshold_on_binary_with_string_labels(primary):
    X, y = make_frame("binary", 300)
    spec = spec_for("logistic", threshold="tuned")
    model = build_pipeline(spec, "binary", primary_metric=primary, pos_label="yes", seed=0)
    assert isinstance(model, TunedThresholdClassifierCV)
    model.fit(X, y)
    assert 0.0 < model.best_threshold_ < 1.0
    pred = predict(model, X, "binary", ("no", "yes"), "yes")
    expected = np.where(pred.proba[:, 1] >= model.best_threshold_, "yes", "no")
    assert (pred.y_pred == expected).mean() > 0.99


@pytest.mark.parametrize("threshold", [0.2, 0.8])
def test_fixed_threshold_on_binary_uses_the_positive_class(threshold):
    X, y = make_frame("binary", 300)
    spec = spec_for("logistic", threshold=threshold)
    model = build_pipeline(spec, "binary", primary_metric="f1_macro", pos_label="yes")
    assert isinstance(model, FixedThresholdClassifier)
    model.fit(X, y)
    pred = predict(model, X, "binary", ("no", "yes"), "yes")
    expected = np.where(pred.proba[:, 1] >= threshold, "yes", "no")
    assert (pred.y_pred == expected).all()


def test_fixed_threshold_moves_predictions_towards_the_positive_class():
    X, y = make_frame("binary", 300)
    share = {}
    for t in (0.2, 0.8):
        model = build_pipeline(spec_for("logistic", threshold=t), "binary", primary_metric="f1", pos_label="no").fit(
            X, y
        )
        share[t] = (model.predict(X) == "no").mean()
    assert share[0.2] > share[0.8]


@pytest.mark.parametrize("method", ["voting", "stacking"])
def test_classification_ensembles_of_two_members(method):
    X, y = make_frame("binary", 240)
    ensemble = parse_spec(
        {
            "method": method,
            "members": [
                spec_for("logistic", threshold=0.3).model_dump(),  # member thresholds are dropped in a blend
                spec_for("lightgbm").model_dump(),
            ],
        }
    )
    model = build_pipeline(ensemble, "binary", primary_metric="f1_macro", pos_label="yes")
    assert isinstance(model, VotingClassifier if method == "voting" else StackingClassifier)
    model.fit(X, y)
    assert len(model.estimators_) == 2
    pred = predict(model, X, "binary", ("no", "yes"), "yes")
    assert pred.proba is not None and pred.proba.shape == (240, 2)
    assert set(pred.y_pred) <= {"no", "yes"}
    assert fitted_params(model, ensemble) == {"n_members": 2}


@pytest.mark.parametrize("method", ["voting", "stacking"])
def test_regression_ensembles_of_two_members(method):
    X, y = make_frame("regression", 240)
    ensemble = parse_spec(
        {"method": method, "members": [spec_for("ridge").model_dump(), spec_for("decision_tree").model_dump()]}
    )
    model = build_pipeline(ensemble, "regression", primary_metric="rmse")
    assert isinstance(model, VotingRegressor if method == "voting" else StackingRegressor)
    model.fit(X, y)
    pred = predict(model, X, "regression", (), None).y_pred
    assert np.isfinite(pred).all()
    assert len(model.estimators_) == 2


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_soft_vote_of_cached_members_is_scored_without_training_and_as_if_trained(tmp_path, monkeypatch, task):
    X, y = make_frame(task, 240)
    if task == "regression":
        problem = Problem("regression", ("rmse", "r2"), "rmse")
        families = ("ridge", "lightgbm")
    else:
        classes = tuple(sorted(y.unique()))
        metrics = ("f1_macro", "log_loss", "accuracy")
        positive = "yes" if task == "binary" else None
        problem = Problem(task, metrics, "f1_macro", classes=classes, positive_class=positive)
        families = ("logistic", "lightgbm")
    folds = np.stack([np.arange(240) % 3, (np.arange(240) // 3) % 3])  # two repeats of three folds
    members = [spec_for(f, threshold=0.3) if task == "binary" and f == "logistic" else spec_for(f) for f in families]
    for member in members:
        assert evaluate_spec(member, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1).status == "ok"
    vote = parse_spec({"members": [m.model_dump() for m in members], "weights": [0.25, 0.75]})
    fits = []
    original = training._fit_fold
    monkeypatch.setattr(training, "_fit_fold", lambda *args: fits.append(args) or original(*args))  # counts, runs
    from_cache = evaluate_spec(vote, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1)
    assert fits == []  # no member was trained again
    trained = evaluate_spec(vote, X, y, folds, problem, cache_dir=None, n_jobs=1)
    assert len(fits) == 6
    assert from_cache.status == trained.status == "ok"
    assert from_cache.fold_scores.keys() == trained.fold_scores.keys()
    for metric, scores in trained.fold_scores.items():
        np.testing.assert_allclose(from_cache.fold_scores[metric], scores, rtol=1e-9, atol=1e-12, err_msg=metric)
    assert from_cache.fitted_params == trained.fitted_params == {"n_members": 2}
    assert from_cache.fold_fit_seconds > 0  # the members' fit time, not the blend's milliseconds
    assert (tmp_path / f"{spec_hash(vote)}.oof.npy").exists()  # a blend can itself join a later blend
    stacking = parse_spec({"method": "stacking", "members": [m.model_dump() for m in members]})
    assert training._vote_from_cache(stacking, y, folds, problem, tmp_path) is None  # a meta-model is trained


@pytest.mark.parametrize("objective", ["f1", "f1_macro", "accuracy", "mcc", "balanced_accuracy"])
def test_threshold_scores_from_counts_equal_scikit_learns_at_every_threshold(objective):
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.metrics import check_scoring

    from tandem.tools.builder import threshold_scorer, threshold_scores

    rng = np.random.default_rng(3)
    y = np.where(rng.random(300) < 0.3, "yes", "no")
    score = np.clip(0.35 * (y == "yes") + rng.normal(0.3, 0.2, 300), 0, 1)
    grid = np.linspace(score.min(), score.max(), 40)
    fast = threshold_scores(objective, y == "yes", score, grid)  # type: ignore[arg-type]
    scorer = check_scoring(None, scoring=threshold_scorer(objective, "yes"))

    class Cut(ClassifierMixin, BaseEstimator):  # predicts one threshold's labels, for the scikit-learn scorer
        classes_ = np.array(["no", "yes"])

        def __init__(self, threshold: float) -> None:
            self.threshold = threshold

        def predict(self, rows: np.ndarray) -> np.ndarray:
            return np.where(score[rows.ravel()] >= self.threshold, "yes", "no")

    rows = np.arange(300).reshape(-1, 1)
    expected = [scorer(Cut(t), rows, y) for t in grid]
    np.testing.assert_allclose(fast, expected, rtol=1e-12, atol=1e-12)


def test_a_tuned_threshold_on_a_cached_model_is_scored_without_training(tmp_path, monkeypatch):
    X, y = make_frame("binary", 240)
    problem = Problem("binary", ("f1", "f1_macro", "log_loss"), "f1", classes=("no", "yes"), positive_class="yes")
    folds = np.stack([np.arange(240) % 3, (np.arange(240) // 3) % 3])
    base = spec_for("logistic", class_weight="none")
    base_result = evaluate_spec(base, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1)
    tuned = base.model_copy(update={"threshold": "tuned"})
    fits = []
    original = training._fit_fold
    monkeypatch.setattr(training, "_fit_fold", lambda *args: fits.append(args) or original(*args))
    result = evaluate_spec(tuned, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1)
    assert fits == [] and result.status == "ok"
    # the model is the base's: its probabilities, its log-loss, its fitted parameters (the verifier's)
    np.testing.assert_allclose(result.fold_scores["log_loss"], base_result.fold_scores["log_loss"], rtol=1e-12)
    assert {k: v for k, v in result.fitted_params.items() if k != "threshold"} == base_result.fitted_params
    assert 0.0 < result.fitted_params["threshold"] < 1.0
    # the cut moves toward F1, chosen on the other folds only: a fold's own labels never choose it
    assert result.cv["f1"] >= base_result.cv["f1"] - 0.02
    flipped = y.copy()
    first_fold = np.flatnonzero(folds[0] == 0)
    flipped.iloc[first_fold] = np.where(y.iloc[first_fold] == "yes", "no", "yes")
    outputs = training._threshold_from_cache(tuned, flipped, folds, problem, tmp_path)
    assert outputs is not None and outputs[0][2]["threshold"] == result.fitted_params["threshold"]
    # without the base's cached predictions there is nothing to choose the threshold from
    assert training._threshold_from_cache(tuned, y, folds, problem, tmp_path / "empty") is None
    assert training._threshold_from_cache(base, y, folds, problem, tmp_path) is None


def test_a_tuned_threshold_on_a_new_model_costs_one_fit_per_fold(tmp_path, monkeypatch):
    """A change to an incumbent with a tuned threshold (a new family, a feature) keeps the threshold:
    its model is cross-validated once at the default threshold and the threshold is chosen from that
    model's out-of-fold predictions, as for a threshold proposed on an evaluated experiment; no
    scikit-learn inner tuning (3 more fits per fold) while searching."""
    X, y = make_frame("binary", 240)
    problem = Problem("binary", ("f1", "log_loss"), "f1", classes=("no", "yes"), positive_class="yes")
    folds = np.stack([np.arange(240) % 3, (np.arange(240) // 3) % 3])
    tuned = spec_for("logistic", class_weight="none").model_copy(update={"threshold": "tuned"})
    fits = []
    original = training._fit_fold
    monkeypatch.setattr(training, "_fit_fold", lambda *args: fits.append(args[0]) or original(*args))
    direct = evaluate_spec(tuned, X, y, folds, problem, cache_dir=tmp_path / "direct", n_jobs=1)
    assert direct.status == "ok" and len(fits) == 6 and {f.threshold for f in fits} == {"default"}
    # the model at the default threshold is a cached candidate of its own, ready for the next change
    model = tuned.model_copy(update={"threshold": "default"})
    assert (tmp_path / "direct" / f"{spec_hash(model)}.json").exists()
    # the same verdict as scoring the model first and proposing the threshold on it
    evaluate_spec(model, X, y, folds, problem, cache_dir=tmp_path / "stepwise", n_jobs=1)
    stepwise = evaluate_spec(tuned, X, y, folds, problem, cache_dir=tmp_path / "stepwise", n_jobs=1)
    assert stepwise.fold_scores == direct.fold_scores and stepwise.fitted_params == direct.fitted_params
    # a model that cannot be trained makes the tuned spec fail with the model's reason, not crash
    broken = tuned.model_copy(update={"columns": tuned.columns.model_copy(update={"numeric": ("no_such_column",)})})
    failed = evaluate_spec(broken, X, y, folds, problem, cache_dir=tmp_path / "broken", n_jobs=1)
    assert failed.status == "failed" and "no_such_column" in (failed.error or "")


def test_voting_weights_are_applied():
    X, y = make_frame("regression", 200)
    members = [spec_for("ridge").model_dump(), spec_for("decision_tree").model_dump()]
    model = build_pipeline(parse_spec({"members": members, "weights": [1.0, 0.0]}), "regression", primary_metric="rmse")
    model.fit(X, y)
    ridge_only = build_pipeline(spec_for("ridge"), "regression", primary_metric="rmse").fit(X, y)
    np.testing.assert_allclose(model.predict(X), ridge_only.predict(X), rtol=1e-9)


# --------------------------------------------------------------------------------------------
# fitted_params
# --------------------------------------------------------------------------------------------


def test_fitted_params_reports_the_fitted_estimators_values():
    X, y = make_frame("binary")
    params = {"n_estimators": 20, "learning_rate": 0.2, "num_leaves": 7, "subsample": 0.8}
    spec = spec_for("lightgbm", model={"family": "lightgbm", "params": params}, class_weight="balanced", threshold=0.4)
    model = build_pipeline(spec, "binary", primary_metric="f1_macro", pos_label="yes").fit(X, y)
    got = fitted_params(model, spec)
    assert got == {"family": "lightgbm", **params, "class_weight": "balanced"}
    assert isinstance(got["n_estimators"], int)
    # it reads the estimator, not the spec: a changed estimator shows up
    final_estimator(model).set_params(num_leaves=31)
    assert fitted_params(model, spec)["num_leaves"] == 31


def test_fitted_params_read_the_svc_inside_its_calibration():
    """The verifier must see the C the Scientist asked for, not the calibration wrapper's knobs."""
    X, y = make_frame("multiclass")
    spec = spec_for("svc", model={"family": "svc", "params": {"C": 3.0}}, class_weight="balanced")
    model = build_pipeline(spec, "multiclass", primary_metric="f1_macro").fit(X, y)
    assert fitted_params(model, spec) == {"family": "svc", "C": 3.0, "class_weight": "balanced"}
    assert type(final_estimator(model)).__name__ == "SVC"


def test_fitted_params_through_target_transform():
    X, y = _positive_regression()
    spec = spec_for(
        "random_forest",
        target_transform="log",
        model={"family": "random_forest", "params": {"n_estimators": 12, "max_depth": 4}},
    )
    model = build_pipeline(spec, "regression", primary_metric="rmse").fit(X, y)
    assert fitted_params(model, spec) == {"family": "random_forest", "n_estimators": 12, "max_depth": 4}


def test_fitted_params_for_logistic_elastic_net():
    X, y = make_frame("multiclass")
    spec = spec_for("logistic", model={"family": "logistic", "params": {"C": 0.5, "l1_ratio": 0.5}})
    model = build_pipeline(spec, "multiclass", primary_metric="f1_macro").fit(X, y)
    assert fitted_params(model, spec) == {"family": "logistic", "C": 0.5, "l1_ratio": 0.5}


# --------------------------------------------------------------------------------------------
# make_split
# --------------------------------------------------------------------------------------------


def _imbalanced_labels(n: int = 400) -> pd.Series:
    rng = np.random.default_rng(3)
    y = pd.Series(np.where(rng.random(n) < 0.2, "pos", "neg"), index=np.arange(100, 100 + n))
    return y


def test_make_split_covers_every_row_once():
    y = _imbalanced_labels()
    split = make_split(y, "binary", holdout=0.25, folds=4, seed=0)
    dev, hold = set(split.dev_rows), set(split.holdout_rows)
    assert dev.isdisjoint(hold)
    assert dev | hold == set(y.index)  # rows are the series' index labels
    assert len(hold) == 100
    assert len(split.fold_of_dev) == len(split.dev_rows)
    assert split.n_folds == 4
    counts = np.bincount(split.fold_of_dev)
    assert counts.sum() == len(split.dev_rows)
    assert counts.min() >= 70 and counts.max() <= 80


def test_make_split_is_stratified():
    y = _imbalanced_labels()
    split = make_split(y, "binary", holdout=0.25, folds=4, seed=0)
    overall = (y == "pos").mean()
    assert (y.loc[list(split.holdout_rows)] == "pos").mean() == pytest.approx(overall, abs=0.02)
    dev_y = y.loc[list(split.dev_rows)].to_numpy()
    folds = np.asarray(split.fold_of_dev)
    for k in range(4):
        assert (dev_y[folds == k] == "pos").mean() == pytest.approx(overall, abs=0.03)


def test_make_split_is_deterministic_for_a_seed():
    y = _imbalanced_labels()
    a = make_split(y, "binary", holdout=0.2, folds=5, seed=7)
    b = make_split(y, "binary", holdout=0.2, folds=5, seed=7)
    c = make_split(y, "binary", holdout=0.2, folds=5, seed=8)
    assert a == b
    assert a != c


def test_make_split_regression_and_external_holdout(tmp_path):
    y = pd.Series(np.linspace(0, 1, 50))
    split = make_split(y, "regression", holdout=0.2, folds=5, seed=0)
    assert len(split.holdout_rows) == 10
    assert sorted(np.bincount(split.fold_of_dev)) == [8] * 5
    external = make_split(y, "regression", holdout=0.2, folds=5, seed=0, external_holdout="other.csv")
    assert external.dev_rows == tuple(range(50))
    assert external.holdout_rows == ()
    assert external.holdout_source == "other.csv"
    path = tmp_path / "split.json"
    split.save(path)
    assert training.Split.load(path) == split


# --------------------------------------------------------------------------------------------
# evaluate_spec
# --------------------------------------------------------------------------------------------

BINARY_METRICS = ("f1_macro", "accuracy", "roc_auc", "log_loss")


@pytest.fixture(scope="module")
def binary_task():
    X, y = make_frame("binary", 240)
    split = make_split(y, "binary", holdout=0.2, folds=3, seed=0)
    dev = list(split.dev_rows)
    problem = Problem("binary", BINARY_METRICS, "f1_macro", classes=("no", "yes"), positive_class="yes")
    return X.loc[dev], y.loc[dev], np.asarray(split.fold_of_dev), problem


@pytest.mark.parametrize(("n_jobs", "memory_limit", "threads"), [(1, None, 1), (2, 2**20, 2)])
def test_folds_fitted_here_run_their_native_libraries_on_the_runs_threads_only(
    binary_task, monkeypatch, n_jobs, memory_limit, threads
):
    """In this process (one job, or a memory limit) OpenBLAS and OpenMP get the fit's threads, as
    joblib's workers would, in the folds and in the dry run, and their own number again afterwards."""
    X, y, folds, problem = binary_task
    during: list[set[int]] = []

    def recorded(original):
        def fit(*args):
            during.append({pool["num_threads"] for pool in threadpool_info()})
            return original(*args)

        return fit

    monkeypatch.setattr(training, "_fit_fold", recorded(training._fit_fold))
    monkeypatch.setattr(training, "_dry_fit", recorded(training._dry_fit))
    spec = spec_for("logistic")
    with threadpool_limits(limits=3):  # more than any fit here may use, whatever the machine
        evaluate_spec(spec, X, y, folds, problem, n_jobs=n_jobs, memory_limit=memory_limit)
        assert dry_run(spec, X, y, problem, time_limit=60, n_jobs=n_jobs, memory_limit=memory_limit) is None
        after = {pool["num_threads"] for pool in threadpool_info()}
    assert len(during) == 3 + 1 and all(seen == {threads} for seen in during)
    assert after == {3}


@pytest.mark.parametrize("family", ["logistic", "random_forest"])
def test_a_memory_limit_fits_the_folds_here_one_at_a_time_with_the_same_scores(binary_task, family, monkeypatch):
    """Past the limit the folds leave the worker pool for this process, each fit on n_jobs
    threads; the scores are those of the pool (these families' fits do not depend on threads)."""
    X, y, folds, problem = binary_task
    spec = spec_for(family)
    pooled = evaluate_spec(spec, X, y, folds, problem, n_jobs=2)
    fits: list[tuple[int, int]] = []
    original = training._fit_fold

    def recorded(*args):
        fits.append((os.getpid(), args[-1]))  # the process and the model's threads
        return original(*args)

    monkeypatch.setattr(training, "_fit_fold", recorded)
    roomy = evaluate_spec(spec, X, y, folds, problem, n_jobs=2, memory_limit=64 * 2**30)
    assert fits == [] and roomy.fold_scores == pooled.fold_scores  # in the workers (their own copy of `fits`)
    assert not training.folds_in_process(len(y), X.shape[1], 2, None)  # no limit: always the pool
    assert training.folds_in_process(len(y), X.shape[1], 2, 2**20)  # this process alone holds more than 1 MiB
    tight = evaluate_spec(spec, X, y, folds, problem, n_jobs=2, memory_limit=2**20, time_limit=60)
    assert tight.status == "ok" and fits == [(os.getpid(), 2)] * 3
    assert tight.fold_scores == pooled.fold_scores
    dry_fits: list[int] = []
    original_dry = training._dry_fit
    monkeypatch.setattr(training, "_dry_fit", lambda *args: dry_fits.append(os.getpid()) or original_dry(*args))
    assert dry_run(spec, X, y, problem, time_limit=60, n_jobs=2, memory_limit=64 * 2**30) is None and dry_fits == []
    assert dry_run(spec, X, y, problem, time_limit=60, n_jobs=2, memory_limit=2**20) is None
    assert dry_fits == [os.getpid()]  # the dry run too: no pool started only to hold idle interpreters


def test_evaluate_spec_scores_every_metric_on_the_same_folds(binary_task, tmp_path):
    X, y, folds, problem = binary_task
    spec = spec_for("logistic", model={"family": "logistic", "params": {"C": 0.5}})
    result = evaluate_spec(spec, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1)
    assert result.status == "ok", result.error
    assert result.spec_hash == spec_hash(spec)
    assert set(result.fold_scores) == set(BINARY_METRICS)
    for name, scores in result.fold_scores.items():
        assert len(scores) == 3
        assert result.cv[name] == pytest.approx(np.mean(scores))
        assert result.cv_std[name] == pytest.approx(np.std(scores))
    assert result.fitted_params == {"family": "logistic", "C": 0.5}
    # fold k is scored by a model trained on the other folds
    for k in range(3):
        train, val = folds != k, folds == k
        model = build_pipeline(spec, "binary", primary_metric="f1_macro", pos_label="yes").fit(X[train], y[train])
        pred = predict(model, X[val], "binary", ("no", "yes"), "yes")
        assert result.fold_scores["accuracy"][k] == pytest.approx(skm.accuracy_score(y[val], pred.y_pred))
        assert result.fold_scores["roc_auc"][k] == pytest.approx(skm.roc_auc_score(y[val] == "yes", pred.proba[:, 1]))
    oof = training.load_oof(tmp_path, result.spec_hash)
    assert oof is not None and oof.shape == (1, len(y), 2)  # (repeats, rows, classes)
    assert np.isfinite(oof).all()


def test_small_development_parts_get_repeated_folds_fixed_by_the_seed(tmp_path):
    y = _imbalanced_labels()  # 300 development rows: repeated
    split = make_split(y, "binary", holdout=0.25, folds=4, seed=0)
    assert split.n_repeats == training.SMALL_DATA_REPEATS == 3
    single = make_split(y, "binary", holdout=0.25, folds=4, seed=0, repeats=1)
    assert split.fold_of_dev == single.fold_of_dev  # the first repeat is the split one repeat makes
    matrix = split.fold_matrix()
    assert matrix.shape == (3, len(split.dev_rows))
    for row in matrix:  # every repeat puts every row in exactly one of the K folds, stratified
        assert sorted(set(row)) == [0, 1, 2, 3]
    assert not (matrix[0] == matrix[1]).all() and not (matrix[1] == matrix[2]).all()
    assert make_split(y, "binary", holdout=0.25, folds=4, seed=0) == split  # fixed by the seed
    path = tmp_path / "split.json"
    split.save(path)
    assert training.Split.load(path) == split
    big = pd.Series(np.arange(3000) % 2, index=np.arange(3000))
    assert make_split(big, "binary", holdout=0.2, folds=5, seed=0).n_repeats == 1
    with pytest.raises(ValueError, match="repeats"):
        make_split(y, "binary", holdout=0.25, folds=4, seed=0, repeats=0)


def test_evaluate_spec_scores_every_repeat_and_adds_log_loss_for_ties(tmp_path):
    X, y = make_frame("binary", 150)
    split = make_split(y, "binary", holdout=0.2, folds=3, seed=0, repeats=2)
    dev = list(split.dev_rows)
    X, y, folds = X.loc[dev], y.loc[dev], split.fold_matrix()
    problem = Problem("binary", ("accuracy",), "accuracy", classes=("no", "yes"), positive_class="yes")
    spec = spec_for("logistic")
    result = evaluate_spec(spec, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1)
    assert result.status == "ok", result.error
    # accuracy is discrete: log-loss is scored too, to break near-ties (docs/decisions.md)
    assert set(result.fold_scores) == {"accuracy", "log_loss"}
    assert len(result.fold_scores["accuracy"]) == 6  # 2 repeats x 3 folds, repeat by repeat
    for i, (r, k) in enumerate(training.fold_plan(folds)):
        train, val = folds[r] != k, folds[r] == k
        model = build_pipeline(spec, "binary", primary_metric="accuracy", pos_label="yes").fit(X[train], y[train])
        pred = predict(model, X[val], "binary", ("no", "yes"), "yes")
        assert result.fold_scores["accuracy"][i] == pytest.approx(skm.accuracy_score(y[val], pred.y_pred))
        expected_log_loss = skm.log_loss(y[val], pred.proba, labels=["no", "yes"])
        assert result.fold_scores["log_loss"][i] == pytest.approx(expected_log_loss)
    oof = training.load_oof(tmp_path, result.spec_hash)
    assert oof is not None and oof.shape == (2, len(y), 2) and np.isfinite(oof).all()
    # a continuous primary metric needs no tie-break
    smooth = Problem("binary", ("roc_auc",), "roc_auc", classes=("no", "yes"), positive_class="yes")
    assert set(evaluate_spec(spec, X, y, folds, smooth, n_jobs=1).fold_scores) == {"roc_auc"}


def test_evaluate_spec_caches_by_spec_hash(binary_task, tmp_path, monkeypatch):
    X, y, folds, problem = binary_task
    spec = spec_for("decision_tree", model={"family": "decision_tree", "params": {"max_depth": 3}})
    first = evaluate_spec(spec, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1)
    assert first.status == "ok"
    cache_file = tmp_path / f"{spec_hash(spec)}.json"
    assert cache_file.exists()
    assert json.loads(cache_file.read_text())["fold_scores"] == first.fold_scores

    def no_refit(*args, **kwargs):
        raise AssertionError("the cached spec was trained again")

    monkeypatch.setattr(training, "_fit_fold", no_refit)
    # an equal spec written differently (key order) hits the same cache entry
    again = parse_spec(json.loads(json.dumps(spec.model_dump(mode="json"), sort_keys=True)))
    second = evaluate_spec(again, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1)
    assert second == first
    # the patch is effective: an uncached spec does reach it
    other = spec_for("decision_tree", model={"family": "decision_tree", "params": {"max_depth": 4}})
    third = evaluate_spec(other, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1)
    assert third.status == "failed"
    assert "trained again" in third.error


def test_evaluate_spec_reports_a_failure_as_one_line(binary_task, tmp_path):
    X, y, folds, problem = binary_task
    assert X[NUMERIC].isna().any().any()
    spec = spec_for("logistic", preprocessing={"numeric_imputer": "none"})
    result = evaluate_spec(spec, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1)
    assert result.status == "failed"
    assert result.error.startswith("ValueError: ")
    assert "NaN" in result.error
    assert "\n" not in result.error
    assert len(result.error) < 450
    assert result.fold_scores == {} and result.cv == {}


def test_evaluate_spec_times_out_a_slow_model(tmp_path):
    X, y = make_classification(n_samples=5000, n_features=20, random_state=0)
    X = pd.DataFrame(X, columns=[f"f{i}" for i in range(20)])
    y = pd.Series(y)
    folds = np.arange(5000) % 3
    problem = Problem("binary", ("f1_macro",), "f1_macro", classes=(0, 1), positive_class=1)
    spec = parse_spec(
        {
            "columns": {"numeric": list(X.columns)},
            "model": {"family": "random_forest", "params": {"n_estimators": 2000}},
        }
    )
    started = time.perf_counter()
    result = evaluate_spec(spec, X, y, folds, problem, time_limit=0.5, n_jobs=2)
    elapsed = time.perf_counter() - started
    assert result.status == "timeout", result.error
    assert "exceeded" in result.error
    assert result.fold_scores == {}
    assert elapsed < 8.0  # it gave up instead of training 3 × 2000 trees


def test_the_time_limit_bounds_the_whole_candidate_across_repeats(tmp_path):
    X, y = make_classification(n_samples=3000, n_features=20, random_state=0)
    X = pd.DataFrame(X, columns=[f"f{i}" for i in range(20)])
    y = pd.Series(y)
    folds = np.stack([np.arange(3000) % 3, (np.arange(3000) // 7) % 3, (np.arange(3000) // 11) % 3])
    problem = Problem("binary", ("roc_auc",), "roc_auc", classes=(0, 1), positive_class=1)
    spec = parse_spec(
        {"columns": {"numeric": list(X.columns)}, "model": {"family": "random_forest", "params": {"n_estimators": 60}}}
    )
    fits: list[int] = []
    result = evaluate_spec(
        spec, X, y, folds, problem, time_limit=0.05, n_jobs=1, progress=lambda done, total: fits.append(done)
    )
    assert result.status == "timeout" and "exceeded" in (result.error or "")
    assert fits[-1] == 1 and max(fits) < 9  # stopped after the first fit, not after 3 x 3


def test_a_candidate_that_cannot_finish_in_its_time_is_stopped_after_its_first_folds():
    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    X = pd.DataFrame(X, columns=[f"f{i}" for i in range(20)])
    y = pd.Series(y)
    # 60 repeats of 2 folds: 120 fits of 0.5 s to 3 s (idle or loaded), 2 at a time, so 30 s to 3 min;
    # each fit alone may take the whole limit (joblib's per-fit timeout is the limit's share of one
    # repeat), so only the projection can stop the candidate before the limit. The limit leaves room
    # for the first fold on a loaded machine: idle it ends after 4 s (workers start, then fit), with
    # three busy processes beside it on two cores after 9 s; 6 s was too tight under `make test`
    folds = np.stack([np.random.default_rng(r).permutation(2000) % 2 for r in range(60)])
    problem = Problem("binary", ("roc_auc",), "roc_auc", classes=(0, 1), positive_class=1)
    spec = parse_spec(
        {"columns": {"numeric": list(X.columns)}, "model": {"family": "random_forest", "params": {"n_estimators": 300}}}
    )
    fits: list[int] = []
    started = time.perf_counter()
    result = evaluate_spec(
        spec, X, y, folds, problem, time_limit=20.0, n_jobs=2, progress=lambda done, total: fits.append(done)
    )
    elapsed = time.perf_counter() - started
    assert result.status == "timeout"
    assert (result.error or "").startswith(f"stopped after {fits[-1]} of 120 folds"), result.error
    assert elapsed < 20.0 and fits[-1] < 10  # it gave up early, not when the 20 s were spent
    # the same candidate, given time enough for its folds, is not stopped by the projection
    enough = evaluate_spec(spec, X, y, folds[:1], problem, time_limit=60.0, n_jobs=2)
    assert enough.status == "ok" and len(enough.fold_scores["roc_auc"]) == 2


def test_the_projection_never_counts_a_fold_already_running_as_waiting():
    # 15 folds, 2 at a time, the first done after 2 s: the second is running, 13 wait, 2 s each
    assert projected_seconds(2.0, [2.0], 15, width=2) == pytest.approx(2.0 + 13 * 2.0 / 2)
    assert projected_seconds(2.0, [1.0, 9.0, 2.0], 15, width=1) == pytest.approx(2.0 + 12 * 2.0)  # the median fold
    assert projected_seconds(3.0, [1.0], 5, width=8) == 3.0  # a cluster wider than the folds: all are running


# --------------------------------------------------------------------------------------------
# dry_run
# --------------------------------------------------------------------------------------------


def test_dry_run_accepts_a_good_spec_and_reports_a_broken_one(binary_task):
    X, y, _, problem = binary_task
    assert dry_run(spec_for("logistic"), X, y, problem) is None
    assert dry_run(spec_for("lightgbm"), X, y, problem) is None
    error = dry_run(spec_for("logistic", preprocessing={"numeric_imputer": "none"}), X, y, problem)
    assert isinstance(error, str)
    assert "NaN" in error
    assert "\n" not in error


def test_dry_run_multiclass_and_regression():
    X, y = make_frame("multiclass", 300)
    problem = Problem("multiclass", ("f1_macro",), "f1_macro", classes=("ant", "bee", "cat"))
    assert dry_run(spec_for("knn"), X, y, problem, n_rows=60) is None
    Xr, yr = make_frame("regression", 300)
    reg = Problem("regression", ("rmse",), "rmse")
    assert dry_run(spec_for("svr"), Xr, yr, reg) is None
    broken = spec_for("ridge", columns={"numeric": [], "categorical": []})
    assert "no columns" in dry_run(broken, Xr, yr, reg)


# --------------------------------------------------------------------------------------------
# Training-only row filters
# --------------------------------------------------------------------------------------------


def _with_outliers() -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = pd.Series(3 * X["a"] - X["b"] + rng.normal(scale=0.1, size=300))
    planted = np.array([5, 50, 150])
    y.iloc[planted] += 40.0  # three rows whose target the features do not explain
    return X, y, planted


def test_target_residual_filter_drops_the_planted_rows_in_fit_only():
    X, y, planted = _with_outliers()
    keep = training_rows_kept(X, y, RowFilter(method="target_residual", share=0.01), ("a", "b"), 0)
    assert sorted(np.flatnonzero(~keep)) == sorted(planted)
    spec = parse_spec(
        {
            "columns": {"numeric": ["a", "b"]},
            "model": {"family": "ridge"},
            "row_filter": {"method": "target_residual", "share": 0.01},
        }
    )
    filtered = build_pipeline(spec, "regression", primary_metric="rmse").fit(X, y)
    plain = build_pipeline(spec.model_copy(update={"row_filter": None}), "regression", primary_metric="rmse").fit(X, y)
    assert filtered.kept_.sum() == 297
    assert filtered.predict(X).shape == (300,)  # every row is predicted
    clean = np.setdiff1d(np.arange(300), planted)
    err = lambda m: np.abs(m.predict(X.iloc[clean]) - y.iloc[clean]).mean()  # noqa: E731
    assert err(filtered) < err(plain) / 2  # the outliers no longer pull the intercept
    assert type(final_estimator(filtered)).__name__ == "Ridge"
    assert fitted_params(filtered, spec)["family"] == "ridge"


def test_row_filters_with_a_target_transform_and_on_classifiers():
    X, y, _ = _with_outliers()
    spec = parse_spec(
        {
            "columns": {"numeric": ["a", "b"]},
            "model": {"family": "ridge"},
            "target_transform": "log",
            "row_filter": {"method": "isolation_forest", "share": 0.05},
        }
    )
    model = build_pipeline(spec, "regression", primary_metric="rmse").fit(X, y - y.min() + 1)
    assert isinstance(model, TransformedTargetRegressor) and model.regressor_.kept_.sum() == 285
    labels = pd.Series(np.where(X["a"] > 0, "yes", "no"))
    for threshold in ("default", "tuned"):
        cls = parse_spec(
            {
                "columns": {"numeric": ["a", "b"]},
                "model": {"family": "logistic"},
                "threshold": threshold,
                "row_filter": {"method": "isolation_forest", "share": 0.02},
            }
        )
        fitted = build_pipeline(cls, "binary", primary_metric="f1", pos_label="yes").fit(X, labels)
        pred = predict(fitted, X, "binary", ("no", "yes"), "yes")
        assert pred.proba is not None and pred.proba.shape == (300, 2)
        assert (pred.y_pred == labels).mean() > 0.9


def test_a_row_filter_never_drops_every_row_of_a_class():
    """Outlying rows are often a rare class's: the filter keeps a class it would empty, so the
    model still gives every class of the task a probability."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(100, 2)), columns=["a", "b"])
    labels = pd.Series(["x"] * 49 + ["y"] * 49 + ["z"] * 2)
    X.loc[98:, ["a", "b"]] = 40.0  # the rare class's rows are the most outlying ones
    spec = parse_spec(
        {
            "columns": {"numeric": ["a", "b"]},
            "model": {"family": "logistic"},
            "row_filter": {"method": "isolation_forest", "share": 0.02},
        }
    )
    assert not training_rows_kept(X, labels, spec.row_filter, ("a", "b"), 0)[98:].any()  # what the filter finds
    fitted = build_pipeline(spec, "multiclass", primary_metric="f1_macro").fit(X, labels)
    assert list(fitted.classes_) == ["x", "y", "z"]
    pred = predict(fitted, X, "multiclass", ("x", "y", "z"), None)
    assert pred.proba is not None and pred.proba.shape == (100, 3)


def test_row_filter_spec_rules_and_hash():
    base = {"columns": {"numeric": ["a", "b"]}, "model": {"family": "logistic"}}
    # a spec without a filter hashes as before the field existed (run caches stay valid)
    assert spec_hash(parse_spec(base)) == spec_hash(parse_spec({**base, "row_filter": None}))
    filtered = parse_spec({**base, "row_filter": {"method": "target_residual"}})
    assert spec_hash(filtered) != spec_hash(parse_spec(base))
    with pytest.raises(SpecError, match="regression only"):
        check_against_data(filtered, ["a", "b"], "binary")
    with pytest.raises(SpecError, match="share"):
        parse_spec({**base, "row_filter": {"method": "isolation_forest", "share": 0.5}})


def test_catboost_is_seeded_quiet_and_balances_classes_its_own_way(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # CatBoost writes catboost_info/ into the working directory unless told not to
    X, y = make_frame("multiclass", 150)
    spec = spec_for("catboost", class_weight="balanced")
    model = build_pipeline(spec, "multiclass", primary_metric="f1_macro", seed=3).fit(X, y)
    estimator = final_estimator(model)
    assert estimator.get_params()["random_seed"] == 3 and estimator.get_params()["auto_class_weights"] == "Balanced"
    assert estimator.get_params()["iterations"] == 15  # the spec's value, not the builder's default
    pred = predict(model, X, "multiclass", classes_of(y, "multiclass"), None)
    assert pred.y_pred.shape == (150,)  # CatBoost's one-column labels are flattened
    assert fitted_params(model, spec) == {"family": "catboost", "iterations": 15, "class_weight": "Balanced"}
    assert list(tmp_path.iterdir()) == []
    default = build_pipeline(spec_for("catboost", model={"family": "catboost"}), "regression", primary_metric="rmse")
    assert final_estimator(default).get_params()["iterations"] == 300


def test_settings_that_reach_no_column_do_not_make_a_new_experiment():
    """Specs differing only in settings the builder never reads build the same model, so they
    hash the same (a Scientist would otherwise score one model twice); a setting that does reach
    a column keeps them apart."""
    X, y = make_frame("binary")
    numeric_only = {"columns": {"numeric": NUMERIC}, "model": {"family": "logistic"}}
    power = {"numeric_transform": "power"}
    idle = {
        **power,
        "onehot_min_frequency": 5,
        "categorical_encoder": "ordinal",
        "high_cardinality_encoder": "frequency",
        "scaler": "robust",  # the Yeo-Johnson step standardises; no scaler runs after it
    }
    plain, padded = (parse_spec({**numeric_only, "preprocessing": p}) for p in (power, idle))
    assert spec_hash(plain) == spec_hash(padded)
    probas = [
        build_pipeline(spec, "binary", primary_metric="f1_macro").fit(X, y).predict_proba(X) for spec in (plain, padded)
    ]
    np.testing.assert_allclose(probas[0], probas[1])

    with_categories = {**numeric_only, "columns": {"numeric": NUMERIC, "categorical": CATEGORICAL}}
    pooled = parse_spec({**with_categories, "preprocessing": {"onehot_min_frequency": 5}})
    assert spec_hash(pooled) != spec_hash(parse_spec(with_categories))
    ordinal = {"categorical_encoder": "ordinal"}
    assert spec_hash(parse_spec({**with_categories, "preprocessing": {**ordinal, "onehot_min_frequency": 5}})) == (
        spec_hash(parse_spec({**with_categories, "preprocessing": ordinal}))
    )
    assert spec_hash(parse_spec({**numeric_only, "preprocessing": {"scaler": "robust"}})) != spec_hash(
        parse_spec(numeric_only)
    )
