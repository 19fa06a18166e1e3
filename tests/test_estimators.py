"""TandemClassifier and TandemRegressor in the scikit-learn contract, and `run_task` on a DataFrame.

Every fit here is a real tandem run in a temporary runs folder. The runs are kept small (one or a
few experiments, two folds, no worker processes) so the file stays within minutes; the contract
itself is checked by scikit-learn's own estimator checks (`parametrize_with_checks`), with the one
check tandem fails on purpose named, with its reason, by `expected_failed_checks`.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_frame
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import tandem
import tandem.nodes.deliver
import tandem.nodes.reward
from tandem.api import resume_run, run_task
from tandem.estimators import TandemClassifier, TandemRegressor, default_runs_dir, expected_failed_checks
from tandem.graph.context import RunContext
from tandem.leaderboard import leaderboard
from tandem.tools.data import InputError

FAST = {"max_iters": 1, "folds": 2, "n_jobs": 1, "candidate_time_limit": None}
"""One experiment after the baseline, two folds, fold fits in this process: a fit of a few seconds."""


@pytest.fixture
def fast_runs(tmp_path: Path) -> dict[str, object]:
    return {**FAST, "runs_dir": str(tmp_path / "runs")}


# ------------------------------------------------------------------------------ the estimators


@pytest.fixture
def no_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """scikit-learn's checks fit about a hundred estimators on tiny data and a cross-validation
    several, and rendering the HTML report after each experiment and at delivery is most of a
    tiny run's time (three quarters of a 30-row fit, measured); the reports have
    their own tests (tests/test_report_html.py), so here they are not written. (`raising=False`:
    a tandem that writes no report after each experiment has nothing to replace there.)"""
    monkeypatch.setattr(tandem.nodes.reward, "write_progress_report", lambda *args, **kwargs: None, raising=False)
    monkeypatch.setattr(tandem.nodes.deliver, "write_reports", lambda *args, **kwargs: None)


def test_a_classifier_fits_a_frame_quietly_and_predicts_the_labels_of_y(
    fast_runs: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    frame = synthetic_frame(150)
    X, y = frame.drop(columns="label"), frame["label"]
    est = TandemClassifier(**fast_runs).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # no live display unless verbose=True

    assert list(est.classes_) == ["no", "yes"]
    assert list(est.feature_names_in_) == ["x 1", "x2 (cm)", "colour"] and est.n_features_in_ == 3
    predicted = est.predict(X)
    assert set(predicted) <= {"no", "yes"} and len(predicted) == len(X)
    proba = est.predict_proba(X)
    assert proba.shape == (150, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert (est.classes_[proba.argmax(axis=1)] == predicted).mean() > 0.95  # the threshold may move a few
    assert est.score(X, y) == pytest.approx(accuracy_score(y, predicted))
    assert est.score(X, y) > 0.8

    folder = Path(est.run_dir_)
    assert folder == Path(fast_runs["runs_dir"]).resolve() / est.run_id_  # type: ignore[arg-type]
    assert (folder / "data.csv").exists() and (folder / "model.joblib").exists()
    assert isinstance(est.ledger_, pd.DataFrame) and list(est.ledger_.index) == [0, 1]
    assert {"proposal", "status", "cv_f1_macro", "cv_std_f1_macro", "fit_seconds"} <= set(est.ledger_.columns)
    assert est.best_experiment_ in est.ledger_.index
    assert est.summary_["best"]["experiment_id"] == est.best_experiment_
    assert est.primary_metric_ == "f1_macro" and 0.5 < est.cv_score_ <= 1.0
    # the model the run delivered, as `tandem predict` would load it
    assert list(est.model_.predict(X.head())) == list(predicted[:5])

    board = est.leaderboard()
    assert list(board.index) == [r["experiment"] for r in leaderboard(est.run_id_, fast_runs["runs_dir"])]
    assert board.loc[est.best_experiment_, "delivered"]
    assert (board["fit_seconds"] > 0).all() and (board["predict_seconds"] > 0).all()


def test_arrays_get_column_names_and_labels_come_back_as_given(fast_runs: dict[str, object]) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3))
    # texts that read back as numbers from a CSV: tandem is given their index and they come back as texts
    y = np.where(X[:, 0] + X[:, 1] > 0, "1", "2")
    est = TandemClassifier(**fast_runs).fit(X, y)
    assert not hasattr(est, "feature_names_in_") and est.n_features_in_ == 3
    assert list(est.classes_) == ["1", "2"]
    assert est.predict(X).dtype == y.dtype and set(est.predict(X)) <= {"1", "2"}
    assert est.score(X, y) > 0.8
    data = pd.read_csv(Path(est.run_dir_) / "data.csv")
    assert list(data.columns) == ["x0", "x1", "x2", "y"] and set(data["y"]) == {0, 1}
    with pytest.raises(ValueError, match="X has 2 features, but TandemClassifier is expecting 3"):
        est.predict(X[:, :2])


def test_a_regressor_on_a_frame_scores_r2_and_refuses_a_bad_value_in_one_line(
    fast_runs: dict[str, object],
) -> None:
    frame = synthetic_frame(150, task="regression")
    X, y = frame.drop(columns="price $"), frame["price $"]
    est = TandemRegressor(**fast_runs, metrics="rmse, mae").fit(X, y)  # a list, or names separated by commas
    predicted = est.predict(X)
    assert predicted.dtype == float and predicted.shape == (150,)
    assert est.score(X, y) == pytest.approx(r2_score(y, predicted)) and est.score(X, y) > 0.8
    assert est.primary_metric_ == "rmse" and est.summary_["task"]["metrics"] == ["rmse", "mae"]
    assert pd.read_csv(Path(est.run_dir_) / "data.csv").columns[-1] == "price $"  # y's own name

    bad = X.head(3).astype({"x 1": object})
    bad.loc[1, "x 1"] = "twelve"
    with pytest.raises(ValueError, match=r"column 'x 1' was numeric at fit but holds 'twelve'") as caught:
        est.predict(bad)
    assert "\n" not in str(caught.value)
    # the same rows in another order and with the columns reordered by position-free names work
    assert np.allclose(est.predict(X.iloc[::-1]), predicted[::-1])


def test_a_failed_refit_leaves_the_estimator_unfitted_not_the_old_model_under_new_labels(
    fast_runs: dict[str, object],
) -> None:
    """The second fit's labels are index-mapped and its rare class is refused; before, `classes_`
    already held the new labels while `model_` was the first fit's, and predict answered with them."""
    frame = synthetic_frame(120, seed=5)
    X, y = frame.drop(columns="label"), frame["label"]
    est = TandemClassifier(**fast_runs).fit(X, y)
    relabelled = np.where(y == "yes", "7", "8")
    relabelled[0] = "9"
    with pytest.raises(ValueError, match=r"too few rows in class '9' \(1 row\)"):  # the label, not its index
        est.fit(X, relabelled)
    with pytest.raises(NotFittedError):
        est.predict(X)


def test_labels_and_codes_tandem_reads_as_numbers_come_back_as_given(fast_runs: dict[str, object]) -> None:
    """ "$1,000" is a number to tandem's reader (not to plain pandas), so such labels go to the run
    by their index; a text column of codes "1", "2" keeps predicting a row the same whatever rows
    come with it (a batch of only numbers and gaps was read back as "1.0")."""
    rng = np.random.default_rng(6)
    code = rng.choice(["A", "1", "2"], 200)
    X = pd.DataFrame({"code": code, "b": rng.normal(size=200)})
    y = np.where((code == "1") ^ (rng.random(200) < 0.1), "$1,000", "$2,500")
    est = TandemClassifier(**fast_runs).fit(X, y)
    assert set(est.predict(X)) <= {"$1,000", "$2,500"} and est.score(X, y) > 0.8
    alone = pd.DataFrame({"code": ["1"], "b": [0.0]})
    with_gap = pd.DataFrame({"code": ["1", None], "b": [0.0, 0.0]})
    assert est.predict_proba(with_gap)[0] == pytest.approx(est.predict_proba(alone)[0])


def test_numpy_scalar_parameters_dates_and_durations_fit(fast_runs: dict[str, object]) -> None:
    """What a parameter grid hands out (numpy scalars) and a frame's date and duration columns:
    each made the fit fail deep inside LangGraph's checkpointer or numpy's type promotion."""
    frame = synthetic_frame(120, seed=7).assign(
        when=pd.date_range("2020-01-01", periods=120, freq="D"), took=pd.to_timedelta(np.arange(120), unit="h")
    )
    X, y = frame.drop(columns="label"), frame["label"]
    params = {**fast_runs, "folds": np.int64(2), "seed": np.int64(3), "holdout": np.float64(0.25)}
    est = TandemClassifier(**params).fit(X, y)
    assert est.summary_["task"]["seed"] == 3 and len(est.predict(X)) == 120


def test_a_regression_target_with_gaps_is_refused_as_scikit_learn_refuses_it(fast_runs: dict[str, object]) -> None:
    frame = synthetic_frame(60, task="regression")
    y = frame["price $"].to_numpy().astype(object)
    y[:5] = None
    with pytest.raises(ValueError, match="Input y contains NaN"):
        TandemRegressor(**fast_runs).fit(frame.drop(columns="price $"), y)
    assert not Path(fast_runs["runs_dir"]).exists()  # type: ignore[arg-type]


def test_parameters_follow_the_scikit_learn_rules(fast_runs: dict[str, object]) -> None:
    metrics = ["accuracy", "f1_macro"]
    est = TandemClassifier(metrics=metrics, max_iters=3, time_budget=60, scientist="heuristic", policy="playbook")
    assert est.metrics is metrics  # stored unchanged
    params = est.get_params()
    for name in ("max_iters", "time_budget", "metrics", "primary_metric", "seed", "scientist", "executor", "policy"):
        assert name in params
    assert params["runs_dir"] is None and params["verbose"] is False
    assert est.set_params(max_iters=2, seed=7) is est and (est.max_iters, est.seed) == (2, 7)
    copy = clone(est)
    assert copy.get_params() == est.get_params() and copy is not est
    assert "max_iters=2" in repr(est)
    with pytest.raises(ValueError, match="needs at least 3 samples for 2-fold cross-validation"):
        TandemClassifier(**fast_runs).fit(np.zeros((2, 2)), [0, 1])
    with pytest.raises(ValueError, match=r"holdout must be a number > 0 and <= 0.9"):
        TandemClassifier(**{**fast_runs, "holdout": 1.0}).fit(np.zeros((40, 2)), [0, 1] * 20)
    assert not Path(fast_runs["runs_dir"]).exists()  # type: ignore[arg-type]  # refused before any run folder


def test_n_jobs_counts_back_from_the_cores_as_in_scikit_learn() -> None:
    """`n_jobs=-1` is every core, as users of scikit-learn's estimators write it: resolved when the
    context is made, so the fold time limits and the memory limit see a real count of workers."""
    cores = os.cpu_count() or 1
    assert RunContext(n_jobs=-1).n_jobs == cores and RunContext(n_jobs=-2).n_jobs == max(1, cores - 1)
    assert RunContext(n_jobs=-100).n_jobs == 1 and RunContext(n_jobs=3).n_jobs == 3
    with pytest.raises(InputError, match="n_jobs must be"):
        RunContext(n_jobs=0)


def test_max_iters_below_one_is_refused_not_run_as_one_experiment() -> None:
    with pytest.raises(InputError, match=r"max_iters must be a whole number >= 1 .*, got 0"):
        RunContext(max_iters=0)


def test_runs_go_to_tandem_runs_dir_else_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TANDEM_RUNS_DIR", str(tmp_path / "mine"))
    assert default_runs_dir() == (tmp_path / "mine").resolve()
    monkeypatch.delenv("TANDEM_RUNS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_runs_dir() == (tmp_path / "cache" / "tandem" / "runs").resolve()


def test_the_estimators_are_exported_from_tandem() -> None:
    assert tandem.TandemClassifier is TandemClassifier and tandem.TandemRegressor is TandemRegressor


def test_pickle_pipeline_and_verbose(fast_runs: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(loc=50, scale=10, size=(100, 2))
    y = 3 * X[:, 0] - X[:, 1] + rng.normal(size=100)
    pipe = Pipeline([("scale", StandardScaler()), ("tandem", TandemRegressor(**fast_runs, verbose=True))])
    pipe.set_params(tandem__seed=3)
    pipe.fit(X, y)
    assert capsys.readouterr().out  # verbose=True shows the run's progress (plain lines off a terminal)
    assert pipe.named_steps["tandem"].summary_["task"]["seed"] == 3
    assert pipe.score(X, y) > 0.9

    again = pickle.loads(pickle.dumps(pipe))
    assert np.array_equal(again.predict(X), pipe.predict(X))
    assert again.named_steps["tandem"].leaderboard().equals(pipe.named_steps["tandem"].leaderboard())


def test_cross_val_score_with_three_experiments(tmp_path: Path, no_reports: None) -> None:
    frame = synthetic_frame(120, seed=3)
    X, y = frame.drop(columns="label"), frame["label"]
    est = TandemClassifier(max_iters=3, folds=3, n_jobs=1, candidate_time_limit=None, runs_dir=str(tmp_path))
    scores = cross_val_score(est, X, y, cv=3)
    assert scores.shape == (3,) and (scores > 0.7).all()
    assert len(list(tmp_path.glob("*/summary.json"))) == 3  # one run per fold, each delivered


# ------------------------------------------------------------------------------ run_task on a DataFrame


def test_run_task_takes_a_frame_and_the_run_moves_with_its_data(tmp_path: Path) -> None:
    frame = synthetic_frame(120, seed=4)
    context = RunContext(runs_dir=str(tmp_path / "a"), max_iters=1, n_jobs=1, candidate_time_limit=None)
    summary = run_task(frame, "label", folds=2, run_id="framed", context=context)
    folder = tmp_path / "a" / "framed"
    assert summary["status"] == "delivered" and summary["task"]["csv_path"] == str(folder / "data.csv")
    assert pd.read_csv(folder / "data.csv").shape == frame.shape

    (tmp_path / "b").mkdir()
    (folder).rename(tmp_path / "b" / "moved")  # the data travels with the folder
    resumed = resume_run("moved", runs_dir=tmp_path / "b", force=True, max_iters=2)
    assert resumed["status"] == "delivered" and resumed["iterations"] == 2

    with pytest.raises(InputError, match="target column 'nope' not found"):
        run_task(frame, "nope", context=context, run_id="bad")
    with pytest.raises(InputError, match="the DataFrame has no data rows"):
        run_task(frame.head(0), "label", context=context, run_id="empty")
    assert not (tmp_path / "a" / "bad").exists() and not (tmp_path / "a" / "empty").exists()


# ------------------------------------------------------------------------------ scikit-learn's checks


@parametrize_with_checks(
    [TandemClassifier(**FAST), TandemRegressor(**FAST)],
    expected_failed_checks=expected_failed_checks,
)
def test_scikit_learn_estimator_checks(
    estimator: TandemClassifier | TandemRegressor,
    check: object,
    tmp_path: Path,
    no_reports: None,
) -> None:
    estimator.set_params(runs_dir=str(tmp_path / "runs"))
    check(estimator)  # type: ignore[operator]
