"""Tests for tools.profile: column kinds, leakage, duplicates, target strength and JSON safety.

Most behaviour is pinned on small synthetic frames whose truth is known by construction; two real
tables shipped with the project (examples/data) check that the rules hold on messy data too.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tandem.tools import profile as profile_module
from tandem.tools.profile import DatasetProfile, profile_dataset

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"


@cache
def _real(name: str, target: str, task_type: str) -> DatasetProfile:
    return profile_dataset(pd.read_csv(DATA / name), target, task_type)


def _binary_frame(n: int = 1_000, seed: int = 0) -> pd.DataFrame:
    """An honest strong feature, leaked copies of the target, and a few awkward columns."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (signal + rng.normal(size=n) > 0).astype(int)
    return pd.DataFrame(
        {
            "honest": signal,
            "leak_numeric": y * 5.0 + rng.normal(scale=0.01, size=n),
            "leak_label": np.where(y == 1, "approved", "rejected"),
            "noise": rng.normal(size=n),
            "honest_copy": signal.copy(),
            "constant": 3,
            "empty": np.nan,
            "lognormal": rng.lognormal(sigma=1.0, size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
            "y": y,
        }
    )


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


def test_titanic_kinds_missingness_and_target() -> None:
    profile = _real("titanic.csv", "Survived", "binary")
    assert profile.n_rows == 891
    assert profile.n_columns == 11
    assert profile.column("PassengerId").kind == "id"
    assert profile.column("Name").kind == "text"
    assert profile.column("Sex").kind in ("categorical", "boolean")
    assert profile.column("Ticket").kind == "categorical"
    assert profile.column("Fare").kind == "numeric"
    assert profile.column("Age").missing_rate == pytest.approx(177 / 891)
    assert profile.column("Age").missing_rate == pytest.approx(0.199, abs=1e-3)
    assert profile.column("Name").mean_length is not None
    assert profile.target.task_type == "binary"
    assert profile.target.n_classes == 2
    assert profile.target.class_counts == {"0": 549, "1": 342}
    assert profile.target.minority_class == "1"
    assert profile.target.imbalance_ratio == pytest.approx(342 / 549)
    assert not any(col.leaks_target for col in profile.columns)
    assert profile.strongest[0][0] == "Sex"
    assert "PassengerId" not in dict(profile.strongest)
    assert any("PassengerId" in w for w in profile.warnings)
    assert any("Cabin" in w and "missing" in w for w in profile.warnings)


def test_penguins_is_multiclass_without_false_leaks() -> None:
    profile = _real("penguins.csv", "species", "multiclass")
    assert profile.target.task_type == "multiclass"
    assert profile.target.n_classes == 3
    assert profile.target.minority_class == "Chinstrap"
    assert profile.of_kind("numeric") == [
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
    ]
    assert not any(col.leaks_target for col in profile.columns)
    assert profile.column("flipper_length_mm").target_strength > 0.7
    assert profile.column("sex").target_strength < 0.1


# --------------------------------------------------------------------------------------------
# Leakage and target strength
# --------------------------------------------------------------------------------------------


def test_leaked_copies_of_a_binary_target_are_flagged_and_honest_feature_is_not() -> None:
    profile = profile_dataset(_binary_frame(), "y", "binary")
    assert profile.column("leak_numeric").leaks_target
    assert "ROC-AUC" in (profile.column("leak_numeric").leak_reason or "")
    assert profile.column("leak_label").leaks_target
    honest = profile.column("honest")
    assert not honest.leaks_target and honest.leak_reason is None
    assert honest.target_strength > 0.4
    assert profile.column("noise").target_strength < 0.1
    assert profile.strongest[0][0] == "honest"
    assert {"leak_numeric", "leak_label"}.isdisjoint(dict(profile.strongest))
    assert sum("leaks the target" in w for w in profile.warnings) == 2


def test_regression_leak_by_pearson_and_by_spearman() -> None:
    rng = np.random.default_rng(1)
    y = rng.lognormal(mean=10, size=800)
    frame = pd.DataFrame(
        {
            "scaled": 2 * y + 7,
            "log_of_target": np.log(y),  # monotone, so Spearman catches what Pearson misses
            "honest": np.log(y) + rng.normal(scale=0.7, size=800),
            "price": y,
        }
    )
    profile = profile_dataset(frame, "price", "regression")
    assert "Pearson" in (profile.column("scaled").leak_reason or "")
    assert profile.column("log_of_target").leaks_target
    assert not profile.column("honest").leaks_target
    assert 0.5 < profile.column("honest").target_strength < 0.98
    assert profile.target.all_positive is True
    assert profile.target.skew is not None and profile.target.skew > 1


def test_multiclass_leaks_by_value_purity_and_by_sorted_neighbours() -> None:
    rng = np.random.default_rng(2)
    k = rng.integers(0, 3, size=900)
    frame = pd.DataFrame(
        {
            "label_code": k,  # few values, each maps to one class
            "scrambled": np.choose(k, [5.0, 1.0, 9.0]) + rng.normal(scale=0.1, size=900),  # non-monotone
            "honest": k + rng.normal(size=900),
            "species": np.array(["a", "b", "c"])[k],
        }
    )
    profile = profile_dataset(frame, "species", "multiclass")
    assert profile.column("label_code").leaks_target
    assert profile.column("scrambled").leaks_target
    assert not profile.column("honest").leaks_target
    assert profile.column("honest").target_strength > 0.3


def test_imbalanced_target_and_high_cardinality_do_not_look_like_leaks() -> None:
    rng = np.random.default_rng(3)
    n = 2_000
    frame = pd.DataFrame(
        {
            "colour": rng.choice(["red", "green"], size=n),  # 99.6% majority in every colour
            "count": rng.integers(0, 4, size=n),
            "ticket": [f"T{i % 1_500}" for i in range(n)],  # mostly singletons: no evidence
            "y": (rng.random(n) < 0.004).astype(int),
        }
    )
    profile = profile_dataset(frame, "y", "binary")
    assert not any(col.leaks_target for col in profile.columns)
    assert any("imbalanced" in w for w in profile.warnings)


def test_tied_values_do_not_inherit_a_target_sorted_row_order() -> None:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"tied": rng.integers(0, 60, 1_500).astype(float), "y": np.sort(rng.integers(0, 3, 1_500))})
    assert not profile_dataset(frame, "y", "multiclass").column("tied").leaks_target


# --------------------------------------------------------------------------------------------
# Column kinds and per-column facts
# --------------------------------------------------------------------------------------------


def test_kinds_are_decided_from_values() -> None:
    rng = np.random.default_rng(5)
    n = 500
    frame = pd.DataFrame(
        {
            "when": pd.date_range("2021-03-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "when_uk": pd.date_range("2021-03-01", periods=n, freq="h").strftime("%d/%m/%Y %H:%M"),
            "stamp": pd.date_range("2021-03-01", periods=n, freq="min", tz="UTC"),
            "yes_no": rng.choice(["Yes", "no"], size=n),
            "zero_one": rng.integers(0, 2, size=n),
            "flag": rng.choice([True, False], size=n),
            "code": [f"K-{i:06d}" for i in rng.permutation(n)],
            "note": [f"customer {i} asked about the delivery window" for i in range(n)],
            "row": np.arange(1, n + 1),
            "shuffled_int": rng.permutation(n),
            "measure": rng.normal(size=n),
            "grade": rng.integers(1, 4, size=n),
            "city": rng.choice(["Oslo", "Lima", "Pune"], size=n),
            "target": rng.normal(size=n),
        }
    )
    profile = profile_dataset(frame, "target", "regression")
    assert profile.of_kind("datetime") == ["when", "when_uk", "stamp"]
    assert profile.of_kind("boolean") == ["yes_no", "zero_one", "flag"]
    assert profile.of_kind("id") == ["code", "row", "shuffled_int"]  # a counter in shuffled rows is still an ID
    assert profile.of_kind("text") == ["note"]
    assert profile.of_kind("numeric") == ["measure", "grade"]  # all-unique floats are no IDs
    assert profile.of_kind("categorical") == ["city"]
    assert profile.of_kind("boolean", "text") == ["yes_no", "zero_one", "flag", "note"]


def test_integer_ids_are_caught_in_any_row_order_but_ranks_and_amounts_are_kept() -> None:
    """Unique integers are an ID when they count up with the rows (a few out of turn allowed), or
    fill their range in shuffled rows without saying anything about the target; a rank that
    predicts the target and sparse unique amounts are features."""
    rng = np.random.default_rng(11)
    n = 800
    signal = rng.normal(size=n)
    y = (signal + rng.normal(scale=0.5, size=n) > 0).astype(int)
    # sparse IDs (every 10th) with rows out of turn within blocks of 100: rank correlation ~0.98
    near = np.concatenate([rng.permutation(block) for block in np.split(np.arange(n) * 10 + 5_000, 8)])
    frame = pd.DataFrame(
        {
            "counter_shuffled": rng.permutation(n) + 1,
            "counter_near_monotone": near,
            "rank_of_signal": pd.Series(signal).rank(method="first").astype(int).to_numpy(),
            "amount": rng.choice(10_000_000, size=n, replace=False),
            "signal": signal,
            "y": y,
        }
    )
    profile = profile_dataset(frame, "y", "binary")
    assert profile.of_kind("id") == ["counter_shuffled", "counter_near_monotone"]
    assert profile.column("rank_of_signal").kind == "numeric"
    assert profile.column("amount").kind == "numeric"
    assert [w for w in profile.warnings if "row ID" in w] == [
        "counter_shuffled looks like a row ID (800 distinct values); drop it.",
        "counter_near_monotone looks like a row ID (800 distinct values); drop it.",
    ]


def test_titanic_passenger_id_is_an_id_however_the_rows_are_ordered() -> None:
    """A shuffled file, or a frame a user split with scikit-learn (its index keeps the original
    row numbers), still has PassengerId flagged and left out of the usable columns."""
    titanic = pd.read_csv(DATA / "titanic.csv")
    shuffled = titanic.sample(frac=1.0, random_state=3).reset_index(drop=True)
    split_off = titanic.sample(frac=0.7, random_state=4)  # index = original row numbers, in random order
    for frame in (shuffled, split_off):
        profile = profile_dataset(frame, "Survived", "binary")
        assert profile.column("PassengerId").kind == "id"
        assert "PassengerId" not in [c.name for c in profile.usable()]


def test_numeric_facts_constant_and_duplicate_columns() -> None:
    frame = _binary_frame()
    frame["rounded"] = (frame["honest"] * 10).round().astype(int)
    frame["rounded_float"] = (frame["honest"] * 10).round()  # same values, other dtype
    profile = profile_dataset(frame, "y", "binary")
    lognormal = profile.column("lognormal")
    assert lognormal.skew is not None and lognormal.skew > 1
    assert lognormal.min is not None and lognormal.min > 0
    assert profile.column("colour").skew is None and profile.column("colour").mean_length == pytest.approx(
        np.mean([len(c) for c in frame["colour"]])
    )
    assert profile.column("honest_copy").duplicate_of == "honest"
    assert profile.column("rounded_float").duplicate_of == "rounded"
    assert profile.column("honest").duplicate_of is None
    assert profile.column("constant").is_constant and profile.column("constant").n_unique == 1
    assert profile.column("empty").is_constant and profile.column("empty").missing_rate == 1.0
    usable = [col.name for col in profile.usable()]
    assert usable == ["honest", "noise", "lognormal", "colour", "rounded"]
    assert any("honest_copy duplicates honest" in w for w in profile.warnings)
    assert any("constant is constant" in w for w in profile.warnings)
    assert profile.left_out() == [  # what the user is told at setup: every column usable() leaves out, with why
        "'leak_numeric' (it leaks the target: on its own it separates the classes with ROC-AUC 1.000)",
        "'leak_label' (it leaks the target: each of its 2 values maps to a single class for 100.0% of rows)",
        "'honest_copy' (a copy of 'honest')",
        "'constant' (constant)",
        "'empty' (empty)",
        "'rounded_float' (a copy of 'rounded')",
    ]


def test_duplicate_rows_are_counted_exactly() -> None:
    frame = pd.DataFrame({"a": [1, 1, 2, 2, 2, 3], "b": ["x", "x", "y", "y", "z", None], "y": [0, 0, 1, 1, 1, 0]})
    assert profile_dataset(frame, "y", "binary").n_duplicate_rows == 2


def test_large_frames_are_sampled_for_statistics_but_counted_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_module, "SAMPLE_ROWS", 300)
    frame = _binary_frame(n=3_000)
    frame.loc[frame.index[::7], "noise"] = np.nan
    profile = profile_dataset(frame, "y", "binary")
    assert profile.column("noise").missing_rate == pytest.approx(frame["noise"].isna().mean())
    assert profile.column("honest").n_unique == 3_000
    assert profile.column("leak_numeric").leaks_target
    assert not profile.column("honest").leaks_target
    assert profile.column("honest_copy").duplicate_of == "honest"


# --------------------------------------------------------------------------------------------
# Serialisation and API edges
# --------------------------------------------------------------------------------------------


def _floats(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list | tuple):
        return [f for v in value for f in _floats(v)]
    return [value] if isinstance(value, float | np.floating) else []


def test_profile_is_plain_finite_json_that_round_trips() -> None:
    frame = _binary_frame()
    frame["spiky"] = frame["noise"]
    frame.loc[frame.index[:5], "spiky"] = np.inf
    frame["nullable"] = pd.array([None if i % 9 == 0 else i % 4 for i in range(len(frame))], dtype="Int64")
    profile = profile_dataset(frame, "y", "binary")
    floats = _floats(profile.model_dump())
    assert floats and all(type(f) is float and math.isfinite(f) for f in floats)
    dumped = json.loads(json.dumps(profile.model_dump(mode="json"), allow_nan=False))
    assert DatasetProfile.model_validate(dumped) == profile


def test_column_lookup_and_input_errors() -> None:
    frame = _binary_frame(n=200)
    profile = profile_dataset(frame, "y", "binary")
    with pytest.raises(KeyError, match="no feature column 'nope'"):
        profile.column("nope")
    with pytest.raises(KeyError, match="target"):
        profile.column("y")
    with pytest.raises(ValueError, match="not a column"):
        profile_dataset(frame, "missing", "binary")
    with pytest.raises(ValueError, match="task_type"):
        profile_dataset(frame, "y", "ranking")
    with pytest.raises(ValueError, match="numeric"):
        profile_dataset(frame, "colour", "regression")
    with pytest.raises(ValueError, match="no rows"):
        profile_dataset(frame.iloc[:0], "y", "binary")


def test_shared_scale_needs_many_columns_of_one_kind_on_one_range() -> None:
    """Pixels (or fingerprints) share a scale; a handful of columns whose ranges happen to agree,
    columns of very different ranges, or a mix with text-like categories do not."""
    rng = np.random.default_rng(0)
    n = 300
    y = rng.choice(["a", "b"], n)

    def shared(columns: dict[str, Any]) -> bool:
        return profile_dataset(pd.DataFrame({**columns, "y": y}), "y", "binary").shared_scale()

    pixels = {f"p{i}": rng.integers(0, 17, n) for i in range(24)}
    assert shared(pixels)
    assert shared({f"f{i}": rng.integers(0, 2, n) for i in range(24)})  # yes/no fingerprint bits
    assert not shared({f"p{i}": rng.integers(0, 17, n) for i in range(8)})  # too few to be one kind
    assert not shared({f"x{i}": rng.normal(0, 10.0 ** (i % 5), n) for i in range(24)})  # ranges 1 to 10^4
    assert not shared({**pixels, "town": rng.choice(["north", "south", "east"], n)})
