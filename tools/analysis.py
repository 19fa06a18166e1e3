"""Read-only looks at the development data: one column in detail, its relation to the target, correlations.

These back the LLM Scientist's analysis tools. They read the development part only (the holdout
is never passed in), return small JSON-ready dicts with bounded sizes, and clip every text value
taken from the data, so a long or hostile category value cannot flood a prompt.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tandem.tools.data import logical_dtype

TEXT_LIMIT = 40
TOP_VALUES = 10
BINS = 5


def clip(value: Any, limit: int = TEXT_LIMIT) -> str:
    """Data text for a prompt: at most `limit` characters, marked when cut."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return round(out, 6) if np.isfinite(out) else None


def _require(X: pd.DataFrame, column: str) -> pd.Series:
    if column not in X.columns:
        raise KeyError(f"no column {clip(column)!r} in the data")
    return X[column]


def column_detail(X: pd.DataFrame, column: str) -> dict[str, Any]:
    """Missing share, distinct values, and quantiles (numbers) or the most frequent values (text)."""
    series = _require(X, column)
    out: dict[str, Any] = {
        "rows": len(series),
        "missing_share": _num(series.isna().mean()),
        "distinct": int(series.nunique(dropna=True)),
        "dtype": logical_dtype(series),  # as read, not as held compact (tools/data.py)
    }
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.dropna().astype(float)
        if len(values):
            qs = values.quantile([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
            out["quantiles"] = {
                f"q{round(float(q) * 100)}": _num(v) for q, v in zip(qs.index, qs.to_numpy(), strict=True)
            }
            out["mean"], out["std"], out["skew"] = _num(values.mean()), _num(values.std()), _num(values.skew())
            out["zeros_share"] = _num((values == 0).mean())
    else:
        counts = series.astype("string").value_counts(dropna=True)
        out["top_values"] = [[clip(v), int(c)] for v, c in counts.head(TOP_VALUES).items()]
        out["other_values_share"] = _num(counts.iloc[TOP_VALUES:].sum() / max(1, len(series)))
        lengths = series.dropna().astype(str).str.len()
        out["mean_length"] = _num(lengths.mean()) if len(lengths) else None
    return out


def target_relation(X: pd.DataFrame, y: pd.Series, column: str, task_type: str) -> dict[str, Any]:
    """How the target behaves across the column's groups (quantile bins for numbers, top values for text)."""
    series = _require(X, column)
    groups = _groups(series)
    frame = pd.DataFrame({"group": groups.to_numpy(), "y": y.to_numpy()})
    rows = []
    for name, part in frame.groupby("group", sort=False, observed=True):
        row: dict[str, Any] = {"group": clip(name), "rows": len(part)}
        if task_type == "regression":
            row["target_mean"] = _num(part["y"].astype(float).mean())
        else:
            shares = part["y"].astype(str).value_counts(normalize=True).head(3)
            row["class_shares"] = {clip(k, 20): _num(v) for k, v in shares.items()}
        rows.append(row)
    rows.sort(key=lambda r: -r["rows"])
    overall: dict[str, Any] = (
        {"target_mean": _num(y.astype(float).mean())}
        if task_type == "regression"
        else {
            "class_shares": {
                clip(k, 20): _num(v) for k, v in y.astype(str).value_counts(normalize=True).head(5).items()
            }
        }
    )
    return {"column": clip(column, 80), "overall": overall, "groups": rows[: TOP_VALUES + 2]}


def _groups(series: pd.Series) -> pd.Series:
    """Quantile bins for a numeric column, the top values (others lumped) for anything else; missing apart."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series) and series.nunique() > BINS:
        binned = pd.qcut(series.astype(float), BINS, duplicates="drop")
        labels = binned.astype("string")
    else:
        labels = series.astype("string")
        top = set(labels.value_counts().head(TOP_VALUES).index)
        labels = labels.where(labels.isin(top) | labels.isna(), "(other values)")
    return labels.fillna("(missing)")


def correlations(
    X: pd.DataFrame, y: pd.Series, task_type: str, column: str | None = None, top: int = 10
) -> dict[str, Any]:
    """The strongest Spearman correlations between numeric columns (or of one column with the others),
    and with the target when it is numeric."""
    numeric = X.select_dtypes(include="number")
    if column is not None:
        _require(X, column)
        if column not in numeric.columns:
            raise ValueError(f"column {clip(column)!r} is not numeric; use target_relation for it")
    if numeric.shape[1] == 0:
        return {"pairs": [], "with_target": []}
    corr = numeric.corr(method="spearman", min_periods=10)
    pairs: list[tuple[str, str, float]] = []
    names = [str(c) for c in corr.columns]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if column is None or column in (a, b):
                value = _num(corr.loc[a, b])
                if value is not None:
                    pairs.append((a, b, value))
    pairs.sort(key=lambda p: -abs(p[2]))
    out: dict[str, Any] = {"pairs": pairs[:top]}
    if task_type == "regression":
        with_target = numeric.corrwith(y.astype(float), method="spearman")
        ranked = sorted(((c, _num(v)) for c, v in with_target.items()), key=lambda p: -abs(p[1] or 0.0))
        out["with_target"] = [[c, v] for c, v in ranked[:top] if v is not None]
    return out
