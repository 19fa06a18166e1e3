"""Pruning the TPE search across folds: the running mean after each fold, a median pruner, and
pruned trials in the ledger as pruned (not failed), with the time they save."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

import tandem.nodes.agents.heuristic_scientist as heuristic_scientist
from tandem.api import run_task
from tandem.graph.context import RunContext
from tandem.tools.spec import SEARCH_SPACES, Columns, ModelSpec, PipelineSpec
from tandem.tools.training import Problem, evaluate_spec
from tandem.tools.tuning import TUNE_MOVE, Trial, fold_pruner, running_means, suggest, trial_pruner

GOOD = [[0.90, 0.91, 0.89, 0.90, 0.92], [0.88, 0.90, 0.90, 0.89, 0.91], [0.91, 0.90, 0.92, 0.90, 0.90]]


def test_running_means() -> None:
    assert running_means([1.0, 3.0, 2.0]) == [1.0, 2.0, 2.0]
    assert running_means([]) == []


def test_a_trial_below_the_median_is_pruned_after_the_warm_up_and_a_good_one_never() -> None:
    stop = fold_pruner(GOOD, maximize=True)
    assert stop(0, 0.60) is False  # warm-up: one fold is too noisy to stop on
    assert stop(1, 0.61) is True
    keep = fold_pruner(GOOD, maximize=True)
    assert not any(keep(i, m) for i, m in enumerate(running_means([0.93, 0.92, 0.94, 0.93])))
    # lower is better: the same rule in the other direction
    errors = [[1.0 - v for v in scores] for scores in GOOD]
    assert fold_pruner(errors, maximize=False)(1, 0.40) is True
    # too little history: never pruned
    assert fold_pruner(GOOD[:2], maximize=True)(3, 0.1) is False


def test_only_search_trials_get_a_pruner_with_the_anchor_and_earlier_trials_as_history() -> None:
    def record(i: int, move: str | None, base: int | None, scores: list[float], status: str = "ok") -> dict:
        return {"id": i, "move": move, "base_experiment": base, "status": status, "fold_scores": {"auc": scores}}

    ledger = [
        record(0, None, None, [0.7] * 5),
        record(1, "stronger_family", 0, GOOD[0]),
        record(2, TUNE_MOVE, 1, GOOD[1]),
        record(3, TUNE_MOVE, 1, [0.5, 0.5], "pruned"),  # not history: it did not finish
        record(4, TUNE_MOVE, 1, GOOD[2]),
    ]
    assert trial_pruner(ledger, "stronger_family", 1, "auc", maximize=True) is None
    stop = trial_pruner(ledger, TUNE_MOVE, 1, "auc", maximize=True)
    assert stop is not None and stop(1, 0.6) is True
    lone = trial_pruner(ledger[:3], TUNE_MOVE, 1, "auc", maximize=True)  # anchor + one trial: too few
    assert lone is not None and lone(1, 0.6) is False


def test_pruned_trials_replay_into_the_search() -> None:
    space = SEARCH_SPACES["logistic"]
    trials = [
        Trial({"C": 0.01}, 0.80),
        Trial({"C": 1.0}, 0.90),
        Trial({"C": 50.0}, None, fold_means=(0.6, 0.61), pruned=True),
    ]
    first = suggest(space, trials, maximize=True, seed=3)
    assert first is not None and first == suggest(space, trials, maximize=True, seed=3)  # the ledger decides


def _noisy_task() -> tuple[pd.DataFrame, pd.Series, np.ndarray, Problem]:
    X, y = make_classification(n_samples=1500, n_features=20, n_informative=6, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(20)])
    folds = np.tile(np.arange(10), 150)
    problem = Problem("binary", ("roc_auc",), "roc_auc", classes=(0, 1), positive_class=1)
    return frame, pd.Series(y), folds, problem


def test_pruning_stops_a_bad_trial_early_and_saves_its_time() -> None:
    X, y, folds, problem = _noisy_task()
    good = PipelineSpec(columns=Columns(numeric=tuple(X.columns)), model=ModelSpec(family="random_forest"))
    history = [evaluate_spec(good, X, y, folds, problem, n_jobs=1).fold_scores["roc_auc"]] * 3
    bad = PipelineSpec(
        columns=Columns(numeric=tuple(X.columns)),
        model=ModelSpec(family="random_forest", params={"max_depth": 1, "n_estimators": 300}),
    )
    full = evaluate_spec(bad, X, y, folds, problem, n_jobs=1)
    pruned = evaluate_spec(bad, X, y, folds, problem, n_jobs=1, prune=fold_pruner(history, maximize=True))
    assert full.status == "ok" and len(full.fold_scores["roc_auc"]) == 10
    assert pruned.status == "pruned" and len(pruned.fold_scores["roc_auc"]) == 2  # stopped after the warm-up
    assert pruned.fold_scores["roc_auc"] == full.fold_scores["roc_auc"][:2]  # the same folds, in the same order
    assert "pruned after 2 of 10 folds" in (pruned.error or "")
    assert pruned.fit_seconds < 0.5 * full.fit_seconds  # 8 of 10 fits saved


def test_a_run_records_pruned_trials_as_pruned_and_does_not_penalise_the_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No playbook moves but the search: every step after the baseline is a TPE trial.
    monkeypatch.setattr(heuristic_scientist, "_MOVES", {})
    monkeypatch.setattr(heuristic_scientist, "MOVE_NAMES", ())
    X, y, _, _ = _noisy_task()
    frame = X.iloc[:600, :8].assign(label=y.iloc[:600].map({0: "no", 1: "yes"}).to_numpy())
    context = RunContext(runs_dir=str(tmp_path), max_iters=14, time_budget=None, n_jobs=1, patience=100)
    summary = run_task(frame, "label", run_id="pruning", context=context, primary_metric="roc_auc", folds=3)
    assert summary["status"] == "delivered"
    folder = tmp_path / "pruning"
    ledger = [json.loads(line) for line in (folder / "experiments.jsonl").read_text().splitlines()]
    trials = [r for r in ledger if r["move"] == TUNE_MOVE]
    pruned = [r for r in trials if r["status"] == "pruned"]
    assert len(trials) >= 8 and pruned, [(r["status"], r["primary"]) for r in trials]
    assert not [r for r in trials if r["status"] == "failed"]
    events = [json.loads(line) for line in (folder / "rewards.jsonl").read_text().splitlines()]
    for record in pruned:
        assert len(record["fold_scores"]["roc_auc"]) < 9  # 3 repeats x 3 folds when complete
        executor = next(e for e in events if e["experiment_id"] == record["id"] and e["agent"] == "executor")
        assert executor["parts"]["failure"] == 0.0 and executor["parts"]["mismatch"] == 0.0
        assert record["incumbent_after"] != record["id"]
