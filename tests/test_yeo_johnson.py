"""The vectorised Yeo-Johnson scaler keeps scikit-learn's `PowerTransformer` contract and results.

scikit-learn's own estimator checks are its API contract; the comparisons use real tables
(scikit-learn's bundled sets, with missing cells added), where every column's likelihood has one
maximum in its bounds.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import PowerTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from tandem.tools.yeo_johnson import YeoJohnsonScaler, fit_lambdas, yeo_johnson

HOUSE_PRICES = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "house_prices.csv.gz"


@parametrize_with_checks([YeoJohnsonScaler()])
def test_scikit_learn_estimator_contract(estimator: Any, check: Any) -> None:
    check(estimator)


def _with_missing(X: np.ndarray, share: float, seed: int) -> np.ndarray:
    out = X.copy()
    out[np.random.default_rng(seed).random(X.shape) < share] = np.nan
    return out


@pytest.mark.parametrize(
    "X",
    [
        load_breast_cancer().data,
        load_diabetes().data,
        _with_missing(load_breast_cancer().data, 0.1, seed=0),
        np.random.default_rng(0).lognormal(sigma=1.5, size=(300, 40)) - 2.0,  # skewed, both signs
    ],
    ids=["breast_cancer", "diabetes", "breast_cancer_with_missing", "lognormal_shifted"],
)
def test_same_lambdas_and_output_as_scikit_learns_power_transformer(X: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = PowerTransformer(method="yeo-johnson", standardize=True).fit(X)
    ours = YeoJohnsonScaler().fit(X)
    np.testing.assert_allclose(ours.lambdas_, reference.lambdas_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.transform(X), reference.transform(X), atol=1e-5)  # NaN where theirs is


def test_constant_and_empty_columns_are_left_as_the_identity_then_centred() -> None:
    X = np.column_stack([np.full(20, 3.0), np.full(20, np.nan), np.arange(20.0)])
    scaler = YeoJohnsonScaler().fit(X)
    assert scaler.lambdas_[:2].tolist() == [1.0, 1.0]
    out = scaler.transform(X)
    assert (out[:, 0] == 0).all() and np.isnan(out[:, 1]).all()


def test_fit_never_changes_its_input_and_copy_false_transforms_in_place() -> None:
    X = np.random.default_rng(1).lognormal(size=(50, 3))
    before = X.copy()
    scaler = YeoJohnsonScaler(copy=False).fit(X)
    np.testing.assert_array_equal(X, before)
    out = scaler.transform(X)
    assert out is X or np.shares_memory(out, X)
    np.testing.assert_allclose(out, YeoJohnsonScaler().fit(before).transform(before))


def test_the_year_a_house_was_sold_keeps_its_five_years() -> None:
    """House Prices' `YrSold` (2006-2010) pushes λ to about -3, where the transformed values
    differ only in their tenth digit; scikit-learn's search settles where its standardising
    cannot tell them apart, and the column comes out within 1e-13 of 0: a linear model cannot use
    it. Here the five years stay five ordered, standardised values."""
    table = pd.read_csv(HOUSE_PRICES, usecols=["YrSold"])
    years = table.to_numpy(dtype=float)
    out = YeoJohnsonScaler().fit_transform(years)[:, 0]
    order = np.argsort(years[:, 0], kind="stable")
    assert len(np.unique(out)) == 5 and np.all(np.diff(out[order]) >= 0)
    assert np.std(out) == pytest.approx(1.0)


def _yeo_johnson_of(v: float, lam: float) -> float:
    if v >= 0:
        return float(np.log1p(v)) if lam == 0 else ((1 + v) ** lam - 1) / lam
    return float(-np.log1p(-v)) if lam == 2 else -((1 - v) ** (2 - lam) - 1) / (2 - lam)


def test_the_transform_is_yeo_johnson_s_formula() -> None:
    x = np.array([[-3.0], [-0.5], [0.0], [0.5], [4.0]])
    for lam in (-1.5, 0.0, 0.7, 2.0, 3.1):
        expected = [_yeo_johnson_of(v, lam) for v in x[:, 0]]
        np.testing.assert_allclose(yeo_johnson(x, np.array([lam]))[:, 0], expected, rtol=1e-12)


def test_lambdas_maximise_the_likelihood_of_a_skewed_column() -> None:
    from scipy import stats

    x = np.random.default_rng(2).exponential(scale=5.0, size=400)
    lam = fit_lambdas(x[:, None])[0]
    assert stats.yeojohnson_llf(lam, x) >= max(stats.yeojohnson_llf(lam + d, x) for d in (-1e-3, 1e-3))
