"""Bagged delivery: the fold models averaged instead of one refit, judged by nested cross-validation.

What is checked: the bag is a plain, picklable scikit-learn estimator whose predictions are the
members' average; on the development part its members are fitted on exactly the run's fold
training parts; cross-validating a bagged spec is nested (every outer fold fits K inner models)
and shows the averaging's effect, which plain CV of the same folds could not; the `bag` change
is a proposal like any other (the verifier sees the flag); and a whole run plays it, records it
in the ledger and delivers a working model.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_frame
from sklearn.datasets import load_breast_cancer, load_diabetes

import tandem.nodes.agents.heuristic_scientist as heuristic_scientist
from tandem.api import run_task
from tandem.graph.context import RunContext
from tandem.graph.messages import Bag, Implementation, Proposal, apply_changes
from tandem.nodes.verifier import verify
from tandem.tools.builder import BaggedClassifier, BaggedRegressor, bag_folds, build_pipeline
from tandem.tools.spec import Bagging, Columns, ModelSpec, PipelineSpec, SpecError, complexity, spec_hash
from tandem.tools.training import Problem, evaluate_spec, fit_final, make_split


def _cancer() -> tuple[pd.DataFrame, pd.Series, Problem, PipelineSpec]:
    data = load_breast_cancer(as_frame=True)
    X, y = data.data.iloc[:, :10], data.target
    problem = Problem("binary", ("accuracy", "log_loss"), "log_loss", classes=(0, 1), positive_class=1)
    spec = PipelineSpec(columns=Columns(numeric=tuple(X.columns)), model=ModelSpec(family="decision_tree"))
    return X, y, problem, spec


def _bagged(spec: PipelineSpec, folds: int = 5, repeats: int = 1) -> PipelineSpec:
    return PipelineSpec.model_validate({**dict(spec), "bagging": Bagging(folds=folds, repeats=repeats)})


def test_the_bag_averages_its_members_and_pickles() -> None:
    X, y, problem, spec = _cancer()
    model = fit_final(_bagged(spec, folds=4, repeats=2), X, y, problem)
    assert isinstance(model, BaggedClassifier) and len(model.estimators_) == 8
    by_hand = np.mean([m.predict_proba(X) for m in model.estimators_], axis=0)
    np.testing.assert_allclose(model.predict_proba(X), by_hand)
    assert (model.predict(X) == model.classes_[np.argmax(by_hand, axis=1)]).all()
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(again.predict_proba(X.iloc[:20]), model.predict_proba(X.iloc[:20]))

    data = load_diabetes(as_frame=True)
    reg = PipelineSpec(columns=Columns(numeric=tuple(data.data.columns)), model=ModelSpec(family="decision_tree"))
    bag = fit_final(_bagged(reg), data.data, data.target, Problem("regression", ("rmse",), "rmse"))
    assert isinstance(bag, BaggedRegressor)
    np.testing.assert_allclose(bag.predict(data.data), np.mean([m.predict(data.data) for m in bag.estimators_], 0))


def test_on_the_development_part_the_members_train_on_the_runs_folds() -> None:
    y = _cancer()[1]
    split = make_split(y, "binary", holdout=0.2, folds=5, seed=3)
    y_dev = y.loc[list(split.dev_rows)].reset_index(drop=True)
    members = bag_folds(y_dev, "binary", folds=5, repeats=split.n_repeats, seed=3)
    matrix = split.fold_matrix()
    expected = [np.flatnonzero(matrix[r] != k) for r in range(split.n_repeats) for k in range(5)]
    assert len(members) == len(expected) == 15
    for got, want in zip(members, expected, strict=True):
        np.testing.assert_array_equal(np.sort(got), want)


def test_cross_validating_a_bag_is_nested_and_shows_the_averaging() -> None:
    X, y, problem, tree = _cancer()
    folds = make_split(y, "binary", holdout=0.2, folds=5, seed=0, repeats=1).fold_matrix()[0]
    dev = list(make_split(y, "binary", holdout=0.2, folds=5, seed=0, repeats=1).dev_rows)
    X_dev, y_dev = X.loc[dev].reset_index(drop=True), y.loc[dev].reset_index(drop=True)
    single = evaluate_spec(tree, X_dev, y_dev, folds, problem, n_jobs=1)
    bag = evaluate_spec(_bagged(tree), X_dev, y_dev, folds, problem, n_jobs=1)
    assert single.status == bag.status == "ok"
    # A lone deep tree's probabilities are 0 or 1; five averaged trees' are not, and its
    # log-loss drops on every outer fold: the averaging's benefit, visible only when nested.
    assert bag.cv["log_loss"] < 0.5 * single.cv["log_loss"]
    assert all(b < s for b, s in zip(bag.fold_scores["log_loss"], single.fold_scores["log_loss"], strict=True))
    model = fit_final(_bagged(tree), X_dev.iloc[np.flatnonzero(folds != 0)], y_dev[folds != 0], problem)
    assert len(model.estimators_) == 5  # each outer fold's model is an average of 5 inner-fold models


def test_the_bag_is_a_change_like_any_other() -> None:
    X, _, _, tree = _cancer()
    no_members = lambda i: (_ for _ in ()).throw(ValueError("no ensembles here"))  # noqa: E731
    bagged = apply_changes(tree, [Bag(folds=5, repeats=2)], no_members)
    assert isinstance(bagged, PipelineSpec) and bagged.bagging == Bagging(folds=5, repeats=2)
    assert apply_changes(bagged, [Bag(repeats=0)], no_members) == tree  # repeats 0 turns it off
    # old ledgers hash as before; the flag makes another candidate, and a more complex one
    assert spec_hash(PipelineSpec.model_validate(tree.model_dump(mode="json") | {"bagging": None})) == spec_hash(tree)
    assert spec_hash(bagged) != spec_hash(tree) and complexity(bagged) == complexity(tree) + 1
    with pytest.raises(SpecError, match="default threshold"):
        apply_changes(tree.model_copy(update={"threshold": "tuned"}), [Bag()], no_members)
    # the verifier judges the flag: an Executor that forgets it is unfaithful
    proposal = Proposal(rationale="bag it", changes=[Bag()])
    columns = list(X.columns)
    honest = verify(
        tree, proposal, Implementation(spec=apply_changes(tree, [Bag()], no_members)), None, no_members,
        columns=columns, task_type="binary",
    )  # fmt: skip
    lazy = verify(tree, proposal, Implementation(spec=tree), None, no_members, columns=columns, task_type="binary")
    assert honest["fidelity"] == 1.0 and lazy["fidelity"] == 0.0
    assert any("bagging" in issue for issue in lazy["issues"])
    assert isinstance(build_pipeline(bagged, "binary", primary_metric="accuracy"), BaggedClassifier)


def test_a_run_plays_the_bag_records_it_and_delivers_a_working_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(heuristic_scientist.DEFAULT_PREFERENCES, "bag", 100.0)  # the bag first, when it applies
    frame = synthetic_frame(n=240, seed=1)
    context = RunContext(runs_dir=str(tmp_path), max_iters=3, time_budget=None, n_jobs=1, patience=10)
    summary = run_task(frame, "label", run_id="bagged", context=context, folds=3)
    assert summary["status"] == "delivered"
    ledger = [json.loads(line) for line in (tmp_path / "bagged" / "experiments.jsonl").read_text().splitlines()]
    bags = [r for r in ledger if r["move"] == "bag"]
    assert bags, [r["move"] for r in ledger]
    record = bags[0]
    assert record["status"] == "ok" and record["spec"]["bagging"] == {"folds": 3, "repeats": 1}
    assert record["changes"] == [{"change": "bag", "folds": 3, "repeats": 1}]
    assert record["fidelity"] == 1.0 and set(record["rewards"]) == {"scientist", "executor"}
    base = ledger[record["base_experiment"]]
    assert base["spec"]["bagging"] is None and len(record["fold_scores"]["accuracy"]) == len(
        base["fold_scores"]["accuracy"]
    )  # paired with its base fold by fold, as the significance rule needs
