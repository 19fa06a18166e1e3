"""A model that travels: the delivered model takes the user's raw frame, and `tandem predict` keeps
IDs, scores a file that holds the target, predicts with any experiment and never prints a traceback.

One short real run on a CSV whose header is padded with spaces (as spreadsheets export it), with
an integer ID, text and numeric columns, is shared by the tests (issue 12, "A model that travels").
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from io import StringIO
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.base import clone, is_classifier
from sklearn.linear_model import LogisticRegression

from tandem.cli import main
from tandem.tools.data import InputError, read_table
from tandem.tools.delivered_model import DeliveredModel, FrameError, coerce_column, deliverable, predict_frame
from tandem.tools.spec import Columns, ModelSpec, PipelineSpec
from tandem.tools.training import Problem, fit_final

N_ROWS = 400


def _padded_frame(n: int = N_ROWS, seed: int = 7) -> pd.DataFrame:
    """Customers with a padded header: an integer ID, two text columns, numbers with gaps."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, size=n).astype(float)
    income = rng.lognormal(10, 0.5, size=n).round(2)
    plan = rng.choice(["basic", "plus", "pro"], size=n)
    city = rng.choice(["Oslo", "Lima", "Pune", "Kyiv"], size=n)
    signal = (age - 50) / 15 + (plan == "basic") * 1.2 - (income - income.mean()) / income.std()
    churned = np.where(signal + rng.normal(scale=0.7, size=n) > 0.8, "yes", "no")
    frame = pd.DataFrame(
        {
            " customer_id ": np.arange(10_001, 10_001 + n),
            " age": age,
            "plan ": plan,
            " monthly income": income,
            "city": city,
            " churned ": churned,
        }
    )
    frame.loc[rng.choice(n, size=n // 12, replace=False), " age"] = np.nan
    return frame


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "customers.csv"
    _padded_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, data_csv: Path) -> Path:
    """A short delivered run on the padded CSV (run id "c1")."""
    runs = tmp_path_factory.mktemp("runs")
    argv = ["run", str(data_csv), "--target", "churned", "--max-iters", "2", "--folds", "3"]
    argv += ["--metrics", "f1,accuracy,roc_auc", "--runs-dir", str(runs), "--run-id", "c1", "--plain"]
    assert main(argv) == 0
    return runs / "c1"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------
# The model file, in plain Python
# --------------------------------------------------------------------------------------------


def test_raw_frame_round_trip_with_padded_names_any_order_and_extra_columns(run: Path, data_csv: Path) -> None:
    model = joblib.load(run / "model.joblib")
    raw = pd.read_csv(data_csv)  # the padded names, exactly as pandas reads them
    assert " age" in raw.columns and "age" not in raw.columns
    tandem_view = read_table(data_csv).drop(columns=["churned"])  # the cleaned names a run trains on
    expected = model.predict(tandem_view)
    np.testing.assert_array_equal(model.predict(raw), expected)
    shuffled = raw[list(reversed(raw.columns))].assign(notes="extra column, ignored")
    np.testing.assert_array_equal(model.predict(shuffled), expected)
    proba = model.predict_proba(raw)
    assert proba.shape == (N_ROWS, 2) and list(model.classes_) == ["no", "yes"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert is_classifier(model)
    # the integer ID is profiled as an ID and never read: a frame without it predicts the same
    profile = json.loads((run / "profile.json").read_text())
    assert next(c for c in profile["columns"] if c["name"] == "customer_id")["kind"] == "id"
    np.testing.assert_array_equal(model.predict(raw.drop(columns=[" customer_id "])), expected)


def test_model_pickles_and_clones_as_a_plain_estimator(run: Path, data_csv: Path) -> None:
    model = joblib.load(run / "model.joblib")
    assert isinstance(model, DeliveredModel)
    again = pickle.loads(pickle.dumps(model))
    raw = pd.read_csv(data_csv)
    np.testing.assert_array_equal(again.predict(raw), model.predict(raw))
    assert all(isinstance(v, str) for v in model.dtypes_.values())  # simple attributes (skops can describe them)
    dev = read_table(data_csv).loc[json.loads((run / "split.json").read_text())["dev_rows"]]
    refit = clone(model).fit(dev.drop(columns=["churned"]), dev["churned"])  # as delivery fitted it
    np.testing.assert_array_equal(refit.predict(raw), model.predict(raw))


def test_a_missing_or_wrongly_typed_column_is_one_line_naming_it(run: Path, data_csv: Path) -> None:
    model = joblib.load(run / "model.joblib")
    raw = pd.read_csv(data_csv)
    read = set(model.required_)
    assert read and "customer_id" not in read
    column = "age" if "age" in read else sorted(read)[0]
    padded = next(c for c in raw.columns if c.strip() == column)
    with pytest.raises(FrameError) as missing:
        model.predict(raw.drop(columns=[padded]))
    assert isinstance(missing.value, ValueError) and repr(column) in str(missing.value)
    assert "\n" not in str(missing.value)
    numeric = next(n for n in sorted(read) if model.dtypes_[n].startswith("float"))
    padded = next(c for c in raw.columns if c.strip() == numeric)
    bad = raw.astype({padded: object})
    bad.loc[5, padded] = "twelve"
    with pytest.raises(FrameError, match=rf"column '{numeric}' must hold numbers.*row 5 holds 'twelve'"):
        model.predict(bad)


def test_columns_are_coerced_the_way_the_reader_reads_them() -> None:
    as_text = pd.Series([" 3 ", "NA", "", "4.5", None], dtype=object)
    np.testing.assert_array_equal(coerce_column(as_text, "float64", "x").to_numpy(), [3.0, np.nan, np.nan, 4.5, np.nan])
    codes = coerce_column(pd.Series([12.0, np.nan, 7.0]), "str", "code")  # numbers where training saw text
    assert codes.iloc[0] == "12" and pd.isna(codes.iloc[1]) and codes.iloc[2] == "7"
    flags = coerce_column(pd.Series(["True", "false", " TRUE "]), "bool", "flag")
    assert flags.tolist() == [True, False, True] and flags.dtype == bool
    with pytest.raises(FrameError, match="'flag' must hold True/False values"):
        coerce_column(pd.Series(["True", "maybe"]), "bool", "flag")
    money = coerce_column(pd.Series(["$1,234.50", None, "-$3", "?"], dtype=object), "float64", "income")
    np.testing.assert_array_equal(money.to_numpy(), [1234.5, np.nan, -3.0, np.nan])  # as the reader reads a CSV


def test_infinite_cells_train_and_predict_as_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ratio column with "inf" cells (a division by zero upstream) once stopped the run at its
    baseline ("Input X contains infinity"); the run and a prediction now read them as missing,
    and setup says so, with the columns the models leave out."""
    frame = _padded_frame(120)
    income = frame[" monthly income"].astype(object)
    income[::10] = "inf"
    frame[" monthly income"] = income
    frame["copy of age"] = frame[" age"]
    path = tmp_path / "ratios.csv"
    frame.to_csv(path, index=False)
    code, out, err = _cli(
        capsys, "run", str(path), "--target", "churned", "--max-iters", "1", "--folds", "3",
        "--runs-dir", str(tmp_path / "runs"), "--run-id", "r", "--plain",
    )  # fmt: skip
    assert code == 0, err
    assert "note: read 12 infinite values as missing: 'monthly income' (12)" in out
    left_out = "'customer_id' (a row ID: 96 distinct values), 'copy of age' (a copy of 'age')"
    assert f"note: the baseline and the offline agents leave out {left_out}" in out
    new = frame.drop(columns=[" churned "]).head(3).assign(**{" monthly income": ["inf", "-inf", "2500"]})
    new.to_csv(tmp_path / "new.csv", index=False)
    code, out, err = _cli(capsys, "predict", "r", str(tmp_path / "new.csv"), "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, err
    predictions = pd.read_csv(StringIO(out))
    assert len(predictions) == 3 and predictions["proba_yes"].between(0, 1).all()
    np.testing.assert_array_equal(
        coerce_column(pd.Series([np.inf, -np.inf, 2.5]), "float64", "x").to_numpy(), [np.nan, np.nan, 2.5]
    )


def test_a_model_fitted_through_the_door_accepts_padded_names() -> None:
    frame = pd.DataFrame({" a ": [0.0, 1.0, 2.0, 3.0] * 10, "b": ["x", "y"] * 20})
    y = (frame[" a "] > 1).astype(int)
    model = DeliveredModel(LogisticRegression(), required=["a"]).fit(frame[[" a "]], y)
    assert list(model.feature_names_in_) == ["a"]
    np.testing.assert_array_equal(model.predict(frame), y)
    np.testing.assert_array_equal(model.predict(frame.rename(columns={" a ": "a"})), y)
    np.testing.assert_array_equal(model.predict(frame[[" a "]].to_numpy()), y)  # an array in training order


def test_predict_frame_scores_regression_and_reads_an_older_bare_pipeline() -> None:
    """Scores of a regression file are the registry's metrics on the rows with a target; a model an
    older tandem saved bare (a Pipeline, no door) still gets its columns matched by cleaned name."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=60), "kind": rng.choice(["a", "b"], size=60)})
    frame["price"] = 3 * frame["x"] + (frame["kind"] == "a") + rng.normal(scale=0.1, size=60)
    spec = PipelineSpec(columns=Columns(numeric=("x",), categorical=("kind",)), model=ModelSpec(family="ridge"))
    problem = Problem("regression", ("rmse", "r2"), "rmse")
    bare = fit_final(spec, frame[["x", "kind"]], frame["price"], problem)
    raw = frame.rename(columns={"x": " x ", "kind": "kind  ", "price": " price"}).assign(id=range(60))
    raw.loc[[4, 9], " price"] = np.nan  # rows without a target are predicted, not scored
    task = {"task_type": "regression", "target": "price", "metrics": ["rmse", "r2"], "classes": []}
    result = predict_frame(bare, raw, task, keep=["id"])
    assert list(result.predictions.columns) == ["id", "prediction"]
    expected = bare.predict(frame[["x", "kind"]])
    np.testing.assert_allclose(result.predictions["prediction"], expected)
    known = raw[" price"].notna()
    assert result.n_scored == 58 and result.notes == ("2 rows have no target value and are not scored",)
    rmse = float(np.sqrt(skm.mean_squared_error(frame["price"][known], expected[known])))
    assert result.scores["rmse"] == pytest.approx(rmse) and result.scores["r2"] == pytest.approx(
        skm.r2_score(frame["price"][known], expected[known])
    )
    wrapped = deliverable(bare, frame[["x", "kind"]], spec, target="price")
    np.testing.assert_allclose(wrapped.predict(raw), expected)
    assert not hasattr(wrapped, "predict_proba")  # a regressor's door has no probabilities


# --------------------------------------------------------------------------------------------
# tandem predict
# --------------------------------------------------------------------------------------------


def test_predict_with_a_bad_value_exits_2_with_one_line(
    run: Path, data_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = data_csv.read_text().splitlines()
    header = [c.strip() for c in text[0].split(",")]
    model = joblib.load(run / "model.joblib")
    numeric = next(n for n in sorted(model.required_) if model.dtypes_[n].startswith("float"))
    cells = text[3].split(",")
    cells[header.index(numeric)] = "n/a?"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*text[:3], ",".join(cells), *text[4:]]) + "\n")
    code, out, err = _cli(capsys, "predict", "c1", str(bad), "--runs-dir", str(run.parent))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"column '{numeric}'" in err and "'n/a?'" in err and "row 2" in err


def test_an_output_path_that_would_destroy_data_or_cannot_be_written_is_refused_before_predicting(
    run: Path, data_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o` the file being predicted replaced the user's data with predictions (exit 0)."""
    copy = tmp_path / "copy.csv"
    copy.write_bytes(data_csv.read_bytes())
    cases = {
        str(copy): "is the file being predicted",
        str(data_csv): "is the run's data file",  # and the file being predicted
        str(run / "summary.json"): "inside run folder",
        str(tmp_path): "is a folder",
        str(tmp_path / "nope" / "x.csv"): "does not exist",
    }
    for output, fragment in cases.items():
        predicted = copy if output != str(data_csv) else data_csv
        code, out, err = _cli(capsys, "predict", "c1", str(predicted), "-o", output, "--runs-dir", str(run.parent))
        assert code == 2 and out == "" and err.count("\n") == 1 and fragment in err, (output, err)
    assert copy.read_bytes() == data_csv.read_bytes() and json.loads((run / "summary.json").read_text())
    other = tmp_path / "other.csv"  # the run's data file as the output of another file's predictions
    other.write_bytes(data_csv.read_bytes())
    code, _, err = _cli(capsys, "predict", "c1", str(other), "-o", str(data_csv), "--runs-dir", str(run.parent))
    assert code == 2 and "the run's data file" in err


def test_predictions_never_write_into_another_run_a_hard_link_or_a_pipe(
    run: Path, data_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o` another run's summary.json replaced it (exit 0), a hard link to a run's file or to the
    data file wrote through to it, and a FIFO as input or output waited forever."""
    neighbour = tmp_path / "runs" / "other"  # any folder holding a run.json is a run's
    neighbour.mkdir(parents=True)
    (neighbour / "run.json").write_text("{}")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused = {str(neighbour / "summary.json"): "inside run folder", str(fifo): "not a regular file"}
    for output, fragment in refused.items():
        code, out, err = _cli(capsys, "predict", "c1", str(data_csv), "-o", output, "--runs-dir", str(run.parent))
        assert code == 2 and out == "" and err.count("\n") == 1 and fragment in err, (output, err)
    code, _, err = _cli(capsys, "predict", "c1", str(fifo), "--runs-dir", str(run.parent))
    assert code == 2 and err.count("\n") == 1 and "is not a regular file" in err, err
    summary, data = (run / "summary.json").read_bytes(), data_csv.read_bytes()
    os.link(run / "summary.json", tmp_path / "linked-summary.json")
    os.link(data_csv, tmp_path / "linked-data.csv")
    for linked in ("linked-summary.json", "linked-data.csv"):
        code, _, err = _cli(capsys, "predict", "c1", str(data_csv), "-o", str(tmp_path / linked), "--runs-dir",
                            str(run.parent))  # fmt: skip
        assert code == 0, err
        assert pd.read_csv(tmp_path / linked).columns[0] == "prediction"
    assert (run / "summary.json").read_bytes() == summary and data_csv.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging file left


def test_a_row_is_predicted_the_same_whatever_the_other_rows_of_its_file_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Codes learnt as text ("007") were read as numbers (7, "7" to the model: a code it never saw)
    when no other row of the new file had a letter, so one row's prediction depended on the others;
    a kept ID ("00123") lost its zeros the same way."""
    rng = np.random.default_rng(3)
    code = rng.choice(["007", "012", "A1", "B2"], size=240)
    x = rng.normal(size=240)
    y = np.where((code == "007") ^ (x > 1.2), "pos", "neg")
    pd.DataFrame({"x": x, "code": code, "y": y}).to_csv(tmp_path / "train.csv", index=False)
    runs = str(tmp_path / "runs")
    argv = ["run", str(tmp_path / "train.csv"), "--target", "y", "--max-iters", "1", "--folds", "2", "--n-jobs", "1"]
    assert main([*argv, "--runs-dir", runs, "--run-id", "codes", "--plain"]) == 0
    capsys.readouterr()
    (tmp_path / "alone.csv").write_text("id,x,code\n00123,0.5,007\n")
    (tmp_path / "mixed.csv").write_text("id,x,code\n00123,0.5,007\n00124,0.5,A1\n")
    predicted = {}
    for name in ("alone", "mixed"):
        out = tmp_path / f"{name}-predictions.csv"
        code_, _, err = _cli(capsys, "predict", "codes", str(tmp_path / f"{name}.csv"), "-o", str(out), "--keep", "id",
                             "--runs-dir", runs)  # fmt: skip
        assert code_ == 0, err
        predicted[name] = pd.read_csv(out, dtype={"id": str})
    assert predicted["alone"].iloc[0].to_dict() == predicted["mixed"].iloc[0].to_dict()
    assert predicted["alone"]["prediction"].iloc[0] == "pos" and predicted["alone"]["id"].iloc[0] == "00123"


def test_a_metric_one_row_cannot_define_is_a_note_not_a_warning_and_nan(run: Path, data_csv: Path) -> None:
    """One scored row has one class: ROC-AUC printed scikit-learn's UndefinedMetricWarning and nan."""
    model = joblib.load(run / "model.joblib")
    task = json.loads((run / "summary.json").read_text())["task"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        result = predict_frame(model, read_table(data_csv).iloc[:1], task)
    assert set(result.scores) == {"f1", "accuracy"} and result.n_scored == 1
    assert any(note.startswith("roc_auc cannot be computed on these rows") for note in result.notes), result.notes


def test_a_kept_column_named_like_an_output_column_is_refused_not_overwritten(run: Path, data_csv: Path) -> None:
    model = joblib.load(run / "model.joblib")
    task = json.loads((run / "summary.json").read_text())["task"]
    frame = read_table(data_csv).assign(proba_yes="an ID the user keeps")
    with pytest.raises(InputError, match="'proba_yes', which the output uses"):
        predict_frame(model, frame, task, keep=["proba_yes"])


def test_rows_with_no_values_at_all_are_predicted_with_a_note(run: Path, data_csv: Path) -> None:
    model = joblib.load(run / "model.joblib")
    task = json.loads((run / "summary.json").read_text())["task"]
    frame = read_table(data_csv).iloc[:5]
    blank = pd.concat([frame, frame.iloc[:2].map(lambda _: np.nan)], ignore_index=True)
    result = predict_frame(model, blank, task)
    assert len(result.predictions) == 7
    assert any(note.startswith("2 rows have no values at all") for note in result.notes)
    assert not any("no values" in note for note in predict_frame(model, frame, task).notes)


def test_a_date_where_training_had_numbers_is_refused_like_text() -> None:
    dates = pd.Series(pd.to_datetime(["2020-01-01", "2021-06-30"]), index=[0, 0])  # a repeated index, too
    with pytest.raises(FrameError, match=r"column 'x' must hold numbers.*row 0 holds '2020-01-01"):
        coerce_column(dates, "float64", "x")
    assert coerce_column(pd.Series(pd.to_datetime([None, None])), "float64", "x").isna().all()


def test_predict_keeps_id_columns_and_scores_a_file_with_the_target(
    run: Path, data_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "pred.csv"
    code, out, err = _cli(
        capsys, "predict", "c1", str(data_csv), "-o", str(out_csv), "--keep", " customer_id ", "--keep", "city",
        "--runs-dir", str(run.parent),
    )  # fmt: skip
    assert code == 0, err
    predictions = pd.read_csv(out_csv)
    assert list(predictions.columns) == ["customer_id", "city", "prediction", "proba_no", "proba_yes"]
    raw = pd.read_csv(data_csv)
    np.testing.assert_array_equal(predictions["customer_id"], raw[" customer_id "])
    # the scores printed are the run's metrics on these very predictions
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"]["positive_class"] == "yes"
    truth = raw[" churned "]
    by_hand = {
        "f1": skm.f1_score(truth, predictions["prediction"], pos_label="yes"),
        "accuracy": skm.accuracy_score(truth, predictions["prediction"]),
        "roc_auc": skm.roc_auc_score(truth == "yes", predictions["proba_yes"]),
    }
    assert "note: this is the run's own data file" in out  # scores on training rows are called optimistic
    line = next(x for x in out.splitlines() if x.startswith("scores on the"))
    assert line == f"scores on the {N_ROWS} rows with a target: " + ", ".join(
        f"{k} {v:.4f}" for k, v in by_hand.items()
    )


def test_predict_to_standard_output_keeps_the_csv_clean_and_skips_scores_without_a_target(
    run: Path, data_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, "predict", "c1", str(data_csv), "--runs-dir", str(run.parent))
    assert code == 0 and out.splitlines()[0] == '"prediction","proba_no","proba_yes"'
    assert err.startswith("scores on the 400 rows")  # said on stderr, so the CSV stays a CSV
    no_target = tmp_path / "new.csv"
    pd.read_csv(data_csv).drop(columns=[" churned "]).head(20).to_csv(no_target, index=False)
    code, out, err = _cli(capsys, "predict", "c1", str(no_target), "--runs-dir", str(run.parent))
    assert code == 0 and len(out.splitlines()) == 21 and err == ""
    code, _, err = _cli(capsys, "predict", "c1", str(no_target), "--keep", "customerid", "--runs-dir", str(run.parent))
    assert code == 2 and "closest: 'customer_id'" in err and err.count("\n") == 1


def test_predict_with_any_experiment_refits_it_once_and_caches_it(
    run: Path, data_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = str(run.parent)
    summary = json.loads((run / "summary.json").read_text())
    delivered = summary["best"]["experiment_id"]
    out0 = tmp_path / "e0.csv"
    assert main(["predict", "c1", str(data_csv), "--experiment", "0", "-o", str(out0), "--runs-dir", runs]) == 0
    cached, record = run / "models" / "experiment-0.joblib", run / "models" / "experiment-0.json"
    meta = json.loads(record.read_text())
    assert meta["spec_hash"] == summary["baseline"]["spec_hash"] and len(meta["sha256"]) == 64
    stamp = cached.stat().st_mtime_ns
    again = tmp_path / "e0b.csv"
    assert main(["predict", "c1", str(data_csv), "--experiment", "0", "-o", str(again), "--runs-dir", runs]) == 0
    assert cached.stat().st_mtime_ns == stamp  # loaded from the cache, not refitted
    pd.testing.assert_frame_equal(pd.read_csv(out0), pd.read_csv(again))
    # the baseline refit is the same model delivery would have saved for experiment 0
    baseline = joblib.load(cached)
    assert isinstance(baseline, DeliveredModel)
    # the delivered experiment through --experiment predicts what model.joblib predicts
    out_d, out_m = tmp_path / "ed.csv", tmp_path / "m.csv"
    argv = ["predict", "c1", str(data_csv), "--experiment", str(delivered), "-o", str(out_d), "--runs-dir", runs]
    assert main(argv) == 0
    assert main(["predict", "c1", str(data_csv), "-o", str(out_m), "--runs-dir", runs]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out_d), pd.read_csv(out_m))
    # a cache whose bytes no longer match its record is refitted, never loaded
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")
    assert main(["predict", "c1", str(data_csv), "--experiment", "0", "-o", str(again), "--runs-dir", runs]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out0), pd.read_csv(again))
    capsys.readouterr()
    code, _, err = _cli(capsys, "predict", "c1", str(data_csv), "--experiment", "99", "--runs-dir", runs)
    assert code == 2 and "has no experiment #99; successful experiments: #0" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as negative:  # argparse's usage and one error line, status 2
        main(["predict", "c1", str(data_csv), "--experiment", "-1", "--runs-dir", runs])
    assert negative.value.code == 2 and "--experiment: expected a whole number >= 0" in capsys.readouterr().err


def test_input_error_is_the_cli_contract() -> None:
    assert issubclass(FrameError, InputError) and issubclass(FrameError, ValueError)
