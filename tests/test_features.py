"""Tests for `tools.features.FeatureEngineer`: exact values per operation, fit-only learning, sklearn fit."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from pydantic import ValidationError
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, PowerTransformer

from tandem.tools.data import guess_date_format, parse_dates
from tandem.tools.features import FeatureEngineer
from tandem.tools.spec import (
    BinningOp,
    DatePartsOp,
    DifferenceOp,
    FeatureOp,
    GroupAggregateOp,
    LogOp,
    MissingIndicatorOp,
    PowerOp,
    ProductOp,
    RatioOp,
    SumOp,
    TextLengthOp,
    TextTopicsOp,
    TokenCountOp,
    feature_outputs,
)

NAN = np.nan


def _added(ops: tuple[FeatureOp, ...], fit: pd.DataFrame, apply: pd.DataFrame | None = None) -> pd.DataFrame:
    """Fit on `fit`, transform `apply` (default: `fit`), and return only the added columns."""
    target = fit if apply is None else apply
    out = FeatureEngineer(ops).fit(fit).transform(target)
    return out.iloc[:, target.shape[1] :]


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": [1.0, -2.0, 3.0, NAN],
            "b": [2.0, 0.0, NAN, 4.0],
            "Lot Area": [10, 20, 30, 40],
            "city": ["x", "y", "x", None],
            "when": ["2024-02-29", "2021-12-31", "junk", None],
            "text": ["a b  c", "", None, "one"],
        },
        index=[10, 11, 12, 13],
    )


ALL_OPS: tuple[FeatureOp, ...] = (
    LogOp(columns=("Lot Area",)),
    PowerOp(columns=("a",)),
    RatioOp(numerator="a", denominator="b"),
    ProductOp(left="a", right="b"),
    DifferenceOp(left="a", right="b"),
    SumOp(columns=("a", "b")),
    BinningOp(column="Lot Area", n_bins=2),
    MissingIndicatorOp(columns=("a", "city")),
    DatePartsOp(column="when"),
    GroupAggregateOp(group_by="city", column="a"),
    TextLengthOp(column="text"),
    TokenCountOp(column="text"),
    TextTopicsOp(column="text", n_topics=2),
)


# --------------------------------------------------------------------------------------------
# Shape of the output.
# --------------------------------------------------------------------------------------------


def test_output_keeps_originals_then_adds_named_float_columns_in_op_order(frame: pd.DataFrame) -> None:
    before = frame.copy()
    fe = FeatureEngineer(ALL_OPS).fit(frame)
    out = fe.transform(frame)

    expected = [*frame.columns, *(name for op in ALL_OPS for name in feature_outputs(op))]
    assert list(out.columns) == expected
    assert list(fe.get_feature_names_out()) == expected
    assert out.index.equals(frame.index)
    pd.testing.assert_frame_equal(out[list(frame.columns)], frame)
    assert (out.dtypes.iloc[frame.shape[1] :] == np.float64).all()
    pd.testing.assert_frame_equal(frame, before)  # the input is not mutated


def test_no_operations_is_the_identity(frame: pd.DataFrame) -> None:
    assert FeatureEngineer().fit(frame).transform(frame) is frame


# --------------------------------------------------------------------------------------------
# Each operation's values.
# --------------------------------------------------------------------------------------------


def test_log_without_negatives_is_log1p(frame: pd.DataFrame) -> None:
    out = _added((LogOp(columns=("Lot Area",)),), frame)
    assert_allclose(out["log__Lot Area"], np.log1p([10.0, 20.0, 30.0, 40.0]))


def test_log_shift_is_learnt_on_fit_rows_and_clips_below_their_minimum() -> None:
    fit = pd.DataFrame({"v": [-1.0, 0.0, 3.0]})
    apply = pd.DataFrame({"v": [-1.0, 0.0, 3.0, -5.0, NAN]})
    fe = FeatureEngineer((LogOp(columns=("v",)),)).fit(fit)
    assert fe.learnt_ == ((1.0,),)
    assert_allclose(fe.transform(apply)["log__v"], [0.0, np.log(2), np.log(5), 0.0, NAN])


def test_power_uses_yeo_johnson_lambda_from_fit_rows() -> None:
    fit = pd.DataFrame({"v": [1.0, 2.0, NAN, 5.0, 40.0]})
    apply = pd.DataFrame({"v": [0.5, NAN, 100.0]})
    reference = PowerTransformer(standardize=False).fit(np.array([[1.0], [2.0], [5.0], [40.0]]))
    out = _added((PowerOp(columns=("v",)),), fit, apply)
    assert_allclose(out["power__v"], reference.transform(apply[["v"]].to_numpy()).ravel())
    assert np.isnan(out["power__v"].iloc[1])


def test_ratio_is_nan_for_zero_or_missing_denominator(frame: pd.DataFrame) -> None:
    out = _added((RatioOp(numerator="a", denominator="b"),), frame)
    assert_allclose(out["ratio__a__b"], [0.5, NAN, NAN, NAN])


def test_product_difference_and_sum_propagate_nan(frame: pd.DataFrame) -> None:
    ops = (
        ProductOp(left="a", right="Lot Area"),
        DifferenceOp(left="Lot Area", right="a"),
        SumOp(columns=("a", "b", "Lot Area")),
        SumOp(columns=("b", "Lot Area"), name="total"),
    )
    out = _added(ops, frame)
    assert_allclose(out["product__a__Lot Area"], [10.0, -40.0, 90.0, NAN])
    assert_allclose(out["difference__Lot Area__a"], [9.0, 22.0, 27.0, NAN])
    assert_allclose(out["sum__a__b__Lot Area"], [13.0, 18.0, NAN, NAN])
    assert_allclose(out["total"], [12.0, 20.0, NAN, 44.0])


def test_binning_edges_come_from_fit_rows_and_clamp_outside_values() -> None:
    fit = pd.DataFrame({"v": np.arange(10.0)})  # quantile edges 0, 4.5, 9
    apply = pd.DataFrame({"v": [-100.0, 0.0, 4.4, 4.5, 9.0, 100.0, NAN]})
    fe = FeatureEngineer((BinningOp(column="v", n_bins=2),)).fit(fit)
    assert_array_equal(fe.learnt_[0], [0.0, 4.5, 9.0])
    assert_allclose(fe.transform(apply)["bin2__v"], [0, 0, 0, 1, 1, 1, NAN])


def test_binning_drops_duplicate_edges() -> None:
    fit = pd.DataFrame({"v": [1.0, 1.0, 1.0, 1.0, 2.0]})
    fe = FeatureEngineer((BinningOp(column="v", n_bins=4),)).fit(fit)
    assert_array_equal(fe.learnt_[0], [1.0, 2.0])
    assert_allclose(fe.transform(fit)["bin4__v"], [0, 0, 0, 0, 0])


def test_missing_indicator(frame: pd.DataFrame) -> None:
    out = _added((MissingIndicatorOp(columns=("a", "city", "text")),), frame)
    assert_array_equal(out.to_numpy(), [[0, 0, 0], [0, 0, 0], [0, 0, 1], [1, 1, 0]])


def test_date_parts_with_unparseable_values_and_no_warnings(frame: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _added((DatePartsOp(column="when"),), frame)
    assert list(out.columns) == ["year__when", "month__when", "dayofweek__when", "dayofyear__when"]
    # 2024-02-29 is a Thursday (Monday = 0), day 60 of a leap year.
    expected = np.array([[2024, 2, 3, 60], [2021, 12, 4, 365], [NAN] * 4, [NAN] * 4], dtype=np.float64)
    assert_allclose(out.to_numpy(), expected)


def test_date_parts_falls_back_to_mixed_formats() -> None:
    fit = pd.DataFrame({"d": ["2020-01-05", "03/01/2020", "Jan 3 2021"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _added((DatePartsOp(column="d"),), fit)
    assert_allclose(out["year__d"], [2020, 2020, 2021])
    assert_allclose(out["month__d"], [1, 3, 1])


def test_dates_written_another_way_than_in_training_are_read_not_missing() -> None:
    """A new file's "12/25/2020" where training had "2020-12-25" became a missing date, silently,
    unless training itself had needed the mixed-format retry."""
    fit = pd.DataFrame({"d": pd.date_range("2020-01-01", periods=40, freq="D").strftime("%Y-%m-%d")})
    apply = pd.DataFrame({"d": ["12/25/2020", "Dec 24 2019", "unknown", "unknown", None, "2021-03-01"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _added((DatePartsOp(column="d"),), fit, apply)
    assert_allclose(out["year__d"], [2020, 2019, NAN, NAN, NAN, 2021])
    assert_allclose(out["month__d"], [12, 12, NAN, NAN, NAN, 3])


@pytest.mark.parametrize("written", ["%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y"])
def test_date_parts_read_day_first_and_month_first_columns_alike(written: str) -> None:
    days = pd.date_range("2020-01-01", periods=60, freq="D")  # starts with days that read either way
    fit = pd.DataFrame({"d": days.strftime(written)})
    apply = pd.DataFrame({"d": ["05/02/2021".replace("/", "." if "." in written else "/")]})
    out = _added((DatePartsOp(column="d"),), fit, apply)
    assert_allclose(out["month__d"], [2 if written.startswith("%d") else 5])
    fitted = _added((DatePartsOp(column="d"),), fit)
    assert_allclose(fitted["month__d"], days.month.to_numpy(dtype=float))
    assert_allclose(fitted["dayofyear__d"], days.day_of_year.to_numpy(dtype=float))


def test_local_times_across_a_daylight_saving_change_are_read_not_refused() -> None:
    """ "+01:00" then "+02:00" in one column made pandas refuse it even with errors="coerce", and
    the run stopped in setup with its traceback; the stamps are read in UTC instead."""
    stamps = pd.date_range("2020-03-20 12:00", periods=20, freq="D", tz="Europe/Paris").astype(str)
    fit = pd.DataFrame({"d": stamps})
    assert guess_date_format(fit["d"]) is not None
    assert parse_dates(fit["d"], guess_date_format(fit["d"])).notna().all()
    out = _added((DatePartsOp(column="d"),), fit)
    assert_allclose(out["month__d"], [3] * 12 + [4] * 8)


def test_date_parts_of_a_datetime_column() -> None:
    fit = pd.DataFrame({"d": pd.to_datetime(pd.Series(["2024-02-29", None]))})
    assert_allclose(_added((DatePartsOp(column="d"),), fit).to_numpy(), [[2024.0, 2, 3, 60], [NAN, NAN, NAN, NAN]])


def test_group_mean_is_learnt_on_fit_rows_with_global_mean_for_unseen_and_missing_groups() -> None:
    fit = pd.DataFrame({"g": ["a", "a", "b", None], "v": [1.0, 3.0, 10.0, 6.0]})
    apply = pd.DataFrame({"g": ["b", "a", "zzz", None], "v": [0.0, 0.0, 0.0, 0.0]})
    out = _added((GroupAggregateOp(group_by="g", column="v"),), fit, apply)
    assert_allclose(out["mean__v__by__g"], [10.0, 2.0, 5.0, 5.0])  # global mean of 1, 3, 10, 6


def test_group_statistics_other_than_mean() -> None:
    fit = pd.DataFrame({"g": [1, 1, 1, 2, 2], "v": [1.0, 2.0, 6.0, 4.0, NAN]})
    apply = pd.DataFrame({"g": [1, 2, 3], "v": [0.0, 0.0, 0.0]})
    ops = tuple(GroupAggregateOp(group_by="g", column="v", agg=agg) for agg in ("median", "max", "count", "std"))
    out = _added(ops, fit, apply)
    assert_allclose(out["median__v__by__g"], [2.0, 4.0, 3.0])
    assert_allclose(out["max__v__by__g"], [6.0, 4.0, 6.0])
    assert_allclose(out["count__v__by__g"], [3.0, 1.0, 0.0])  # an unseen group has no rows
    global_std = np.std([1.0, 2.0, 6.0, 4.0], ddof=1)  # group 2 has one value: its std is undefined
    assert_allclose(out["std__v__by__g"], [np.std([1.0, 2.0, 6.0], ddof=1), global_std, global_std])


def test_group_aggregate_matches_categories_by_value() -> None:
    fit = pd.DataFrame({"g": pd.Categorical(["a", "b", "a"]), "v": [1.0, 5.0, 3.0]})
    apply = pd.DataFrame({"g": pd.Categorical(["b", "c"]), "v": [0.0, 0.0]})
    assert_allclose(_added((GroupAggregateOp(group_by="g", column="v"),), fit, apply).iloc[:, 0], [5.0, 3.0])


def test_text_length_and_token_count_count_missing_as_zero(frame: pd.DataFrame) -> None:
    out = _added((TextLengthOp(column="text"), TokenCountOp(column="text")), frame)
    assert_allclose(out["length__text"], [6, 0, 0, 3])
    assert_allclose(out["tokens__text"], [3, 0, 0, 1])


def test_text_topics_read_what_the_training_rows_say_and_nothing_else() -> None:
    reviews = ["great food great staff", "awful food", "great staff", "awful awful service", "service was great", None]
    fit = pd.DataFrame({"review": reviews * 5})
    op = TextTopicsOp(column="review", n_topics=3)
    fe = FeatureEngineer((op,)).fit(fit)
    assert list(fe.get_feature_names_out())[-3:] == ["topic0__review", "topic1__review", "topic2__review"]
    out = _added((op,), fit, pd.DataFrame({"review": ["great food", "quantum chromodynamics", None]}))
    assert np.abs(out.iloc[0]).sum() > 0.1  # words seen in training place a new row among the topics
    assert_allclose(out.iloc[1:], 0.0)  # words never seen in training, or no text, say nothing
    assert_allclose(fe.transform(fit).iloc[:, -3:], FeatureEngineer((op,)).fit(fit).transform(fit).iloc[:, -3:])
    # a vocabulary too small for the topics asked: the components it has, then zeros; none: all zeros
    three_terms = pd.DataFrame({"review": ["red blue", "red blue", "red green"]})  # red, blue, "red blue"
    small = _added((TextTopicsOp(column="review", n_topics=10),), three_terms)
    assert small.shape == (3, 10) and np.all(small.iloc[:, 2:] == 0.0) and np.abs(small.iloc[:, :2]).sum().sum() > 0
    assert_allclose(_added((op,), pd.DataFrame({"review": ["one", "two", "three"]})), 0.0)


def test_numeric_ops_coerce_text_columns() -> None:
    fit = pd.DataFrame({"n": ["1", "2.5", "n/a", None], "d": [2.0, 2.0, 2.0, 2.0]})
    assert_allclose(_added((RatioOp(numerator="n", denominator="d"),), fit).iloc[:, 0], [0.5, 1.25, NAN, NAN])


# --------------------------------------------------------------------------------------------
# Construction, errors and scikit-learn integration.
# --------------------------------------------------------------------------------------------


def test_plain_dict_operations_are_validated_in_fit(frame: pd.DataFrame) -> None:
    fe = FeatureEngineer(({"op": "ratio", "numerator": "a", "denominator": "b"}, {"op": "log", "columns": ["b"]}))
    assert list(fe.fit(frame).transform(frame).columns[-2:]) == ["ratio__a__b", "log__b"]
    with pytest.raises(ValidationError):
        FeatureEngineer(({"op": "binning", "column": "a", "n_bins": 1},)).fit(frame)


def test_missing_column_is_named_in_the_error(frame: pd.DataFrame) -> None:
    fe = FeatureEngineer((RatioOp(numerator="a", denominator="Lot Area"),)).fit(frame)
    with pytest.raises(ValueError, match="Lot Area"):
        fe.transform(frame.drop(columns="Lot Area"))
    with pytest.raises(ValueError, match="nope"):
        FeatureEngineer((LogOp(columns=("nope",)),)).fit(frame)


def test_outputs_must_not_clash(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="more than once"):
        FeatureEngineer((SumOp(columns=("a",), name="s"), SumOp(columns=("b",), name="s"))).fit(frame)
    fe = FeatureEngineer((LogOp(columns=("Lot Area",)),)).fit(frame)
    with pytest.raises(ValueError, match="already has"):
        fe.transform(fe.transform(frame))


def test_transform_before_fit_raises_not_fitted(frame: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError):
        FeatureEngineer(ALL_OPS).transform(frame)


def test_clone_and_pickle_round_trip(frame: pd.DataFrame) -> None:
    fe = FeatureEngineer(ALL_OPS).fit(frame)
    cloned = clone(fe)
    assert cloned.get_params() == fe.get_params()
    assert not hasattr(cloned, "learnt_")
    restored = pickle.loads(pickle.dumps(fe))
    pd.testing.assert_frame_equal(restored.transform(frame), fe.transform(frame))
    pd.testing.assert_frame_equal(cloned.fit(frame).transform(frame), fe.transform(frame))


def test_pipeline_with_column_transformer_and_odd_column_names() -> None:
    rng = np.random.default_rng(0)
    n = 200
    X = pd.DataFrame(
        {
            "Lot Area": rng.uniform(1, 100, n),
            "income >50K": rng.choice(["yes", "no"], n),
            "rooms (#)": rng.integers(1, 6, n).astype(float),
        }
    )
    y = 2 * X["Lot Area"] + 3 * X["rooms (#)"] + (X["income >50K"] == "yes") * 5
    ops = (
        LogOp(columns=("Lot Area",)),
        RatioOp(numerator="Lot Area", denominator="rooms (#)"),
        GroupAggregateOp(group_by="income >50K", column="Lot Area"),
        BinningOp(column="rooms (#)", n_bins=3),
    )
    numeric = ["Lot Area", "rooms (#)", *(name for op in ops for name in feature_outputs(op))]
    columns = ColumnTransformer(
        [
            ("num", SimpleImputer(), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["income >50K"]),
        ]
    )
    model = Pipeline([("fe", FeatureEngineer(ops)), ("ct", columns), ("lr", LinearRegression())])
    model.fit(X.iloc[:150], y.iloc[:150])
    predictions = model.predict(X.iloc[150:])
    assert predictions.shape == (50,)
    assert_allclose(predictions, y.iloc[150:], atol=1e-6)  # y is linear in the kept raw columns
    assert clone(make_pipeline(FeatureEngineer(ops))).fit(X).transform(X).shape == (n, 3 + 4)
