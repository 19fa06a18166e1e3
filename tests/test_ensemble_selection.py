"""Ensemble selection (Caruana et al. 2004) on out-of-fold predictions: members, weights, no training."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from tandem.tools.ensemble_selection import blend_score, select_ensemble
from tandem.tools.training import Problem

REG = Problem("regression", ("rmse",), "rmse")
BIN = Problem("binary", ("accuracy", "log_loss"), "accuracy", classes=("no", "yes"), positive_class="yes")


def _regression_case() -> tuple[np.ndarray, dict[int, np.ndarray]]:
    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    # two models with independent errors of the same size, one much worse model
    a = y + rng.normal(scale=0.5, size=400)
    b = y + rng.normal(scale=0.5, size=400)
    bad = y + rng.normal(scale=3.0, size=400)
    as_oof = lambda v: v.reshape(1, -1, 1)  # noqa: E731 - (repeats, rows, columns)
    return y, {0: as_oof(bad), 3: as_oof(a), 5: as_oof(b)}


def test_blend_score_pools_the_repeats() -> None:
    y = np.array([1.0, 2.0, 3.0])
    oof = np.array([[[1.0], [2.0], [3.0]], [[2.0], [2.0], [3.0]]])  # two repeats
    expected = skm.root_mean_squared_error(np.tile(y, 2), oof.reshape(-1))
    assert blend_score(oof, y, REG) == pytest.approx(expected)


def test_selection_blends_models_with_independent_errors_and_drops_a_bad_one() -> None:
    y, oofs = _regression_case()
    selection = select_ensemble(oofs, y, REG)
    assert selection is not None
    assert set(selection.weights) == {3, 5}  # the noisy model never helps
    assert selection.weights[3] == pytest.approx(selection.weights[5], abs=2)
    assert sum(selection.weights.values()) == selection.rounds
    best_single = min(blend_score(oofs[i], y, REG) for i in oofs)
    assert selection.score < best_single * 0.8  # averaging two independent errors: about 1/sqrt(2)
    blend = (oofs[3] * selection.weights[3] + oofs[5] * selection.weights[5]) / selection.rounds
    assert selection.score == pytest.approx(blend_score(blend, y, REG))
    assert select_ensemble(oofs, y, REG) == selection  # deterministic


def test_no_ensemble_when_one_model_is_best_alone_or_too_few_models() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    perfect = y.reshape(1, -1, 1)
    noisy = (y + rng.normal(size=300)).reshape(1, -1, 1)
    assert select_ensemble({1: perfect, 2: noisy}, y, REG) is None  # adding anything to a perfect model hurts
    assert select_ensemble({1: noisy}, y, REG) is None
    assert select_ensemble({1: noisy, 2: np.full_like(noisy, np.nan)}, y, REG) is None  # unusable predictions


def test_classification_selection_on_probabilities() -> None:
    rng = np.random.default_rng(2)
    n = 600
    truth = rng.random(n) < 0.5
    y = np.where(truth, "yes", "no")
    signal = truth.astype(float)

    def model(noise: float) -> np.ndarray:
        p = np.clip(0.5 + 0.35 * (signal - 0.5) * 2 + rng.normal(scale=noise, size=n), 0.01, 0.99)
        return np.stack([1 - p, p], axis=1)[None]

    oofs = {1: model(0.4), 2: model(0.4), 4: model(0.4)}
    selection = select_ensemble(oofs, y, BIN)
    assert selection is not None and len(selection.weights) >= 2
    assert selection.score > max(blend_score(o, y, BIN) for o in oofs.values())


@pytest.mark.parametrize(
    ("labels", "primary"),
    [((0, 1), "f1_macro"), ((1, 2, 3), "f1_macro"), ((False, True), "accuracy"), (("no", "yes"), "f1_macro")],
)
def test_blend_scores_labels_of_every_dtype_as_scikit_learn_does(labels: tuple, primary: str) -> None:
    """Integer (and boolean) class labels once came out of the blend as an object array, which
    scikit-learn's metrics reject, so every blend of a 0/1 task scored NaN and the greedy picks
    fell to log-loss alone."""
    rng = np.random.default_rng(3)
    n, k = 300, len(labels)
    y = np.asarray(labels)[rng.integers(0, k, size=n)]
    proba = rng.dirichlet(np.ones(k), size=n)
    problem = Problem(
        "binary" if k == 2 else "multiclass", (primary, "log_loss"), primary, classes=labels, positive_class=labels[-1]
    )
    expected = (skm.f1_score if primary == "f1_macro" else skm.accuracy_score)(
        y, np.asarray(labels)[proba.argmax(axis=1)], **({"average": "macro"} if primary == "f1_macro" else {})
    )
    assert blend_score(proba[None], y, problem) == pytest.approx(expected)


def test_large_data_choose_on_a_seeded_sample_and_score_on_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    from tandem.tools import ensemble_selection

    y, oofs = _regression_case()
    monkeypatch.setattr(ensemble_selection, "SELECTION_ROWS", 150)
    scored_rows: list[int] = []

    def counting(oof: np.ndarray, y: np.ndarray, problem: Problem, metric: str | None = None) -> float:
        scored_rows.append(len(y))
        return blend_score(oof, y, problem, metric)

    monkeypatch.setattr(ensemble_selection, "blend_score", counting)
    selection = select_ensemble(oofs, y, REG)
    assert scored_rows[:-1] == [150] * (len(scored_rows) - 1) and scored_rows[-1] == 400  # rounds on the sample
    monkeypatch.setattr(ensemble_selection, "blend_score", blend_score)
    assert selection is not None and set(selection.weights) == {3, 5}  # the sample still drops the bad model
    blend = sum(oofs[i] * w for i, w in selection.weights.items()) / selection.rounds
    assert selection.score == pytest.approx(blend_score(np.asarray(blend), y, REG))  # every row, not the sample
    assert select_ensemble(oofs, y, REG) == selection  # the sample is seeded
