"""The plain baselines a user would try first, as reference points for tandem's results.

They see every column (except the target) with the most common, untuned recipes: a scaled
linear model with one-hot categoricals, and LightGBM with default parameters. The environment's
own baseline (experiment 0) is different: it already leaves out ID-like and leaking columns.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from tandem.tools.builder import as_categories

PlainKind = Literal["linear", "lightgbm"]
PLAIN_KINDS: tuple[PlainKind, ...] = ("linear", "lightgbm")


def _columns(categorical_step: Any) -> ColumnTransformer:
    return ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()),
                make_column_selector(dtype_include=np.number),
            ),
            (
                "categorical",
                make_pipeline(FunctionTransformer(as_categories, feature_names_out="one-to-one"), categorical_step),
                make_column_selector(dtype_exclude=np.number),
            ),
        ],
        sparse_threshold=0.0,
    )


def plain_baseline(kind: PlainKind, task_type: str, seed: int = 0) -> Pipeline:
    """An unfitted plain baseline for the task."""
    if kind == "linear":
        encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=50, sparse_output=False)
        model: Any = Ridge() if task_type == "regression" else LogisticRegression(max_iter=2000)
    else:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        cls = LGBMRegressor if task_type == "regression" else LGBMClassifier
        model = cls(random_state=seed, verbose=-1, n_jobs=2)
    return Pipeline([("columns", _columns(encoder)), ("model", model)])


def fit_plain(kind: PlainKind, X: pd.DataFrame, y: pd.Series, task_type: str, seed: int = 0) -> Pipeline:
    """A plain baseline fitted on (X, y); boolean columns count as categorical."""
    return plain_baseline(kind, task_type, seed).fit(X, y)
