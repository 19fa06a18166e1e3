"""Tests for tools.data: every bad input is a one-line InputError that names the fix; good files read.

Each bad-input test checks three things, because each is what the user relies on: the exception
type (the CLI catches InputError and exits 2), a single-line message (no traceback-like output),
and the useful detail (closest column, class and count, missing columns…).
"""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tandem.tools.data import (
    InputError,
    PreparedTask,
    infer_task_type,
    load_task,
    positive_class,
    prepare_task,
    read_table,
    sha256_file,
)

# UCI Adult as the benchmark suite ships it (benchmarks/data/README.md gives its provenance).
ADULT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "adult_income.csv.gz"


def raises_one_line(fn: Callable[[], Any], *fragments: str) -> str:
    """Run `fn`, expect an InputError with a one-line message containing every fragment."""
    with pytest.raises(InputError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    assert "\r" not in message, message
    assert message.strip(), "empty message"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def write(tmp_path: Path, name: str, content: bytes | str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def frame(n: int = 40, seed: int = 0, **columns: Any) -> pd.DataFrame:
    """A small synthetic frame with two features plus any given columns."""
    rng = np.random.default_rng(seed)
    base = {"x1": rng.normal(size=n), "x2": rng.choice(["a", "b", "c"], size=n)}
    return pd.DataFrame({**base, **columns})


def titanic_like(n: int = 60) -> pd.DataFrame:
    survived = np.array([0, 1] * (n // 2))
    survived[: n // 5] = 0  # 0 is the majority, 1 the minority
    return frame(n, Survived=survived, Age=np.linspace(1, 80, n))


# --------------------------------------------------------------------------------------------
# read_table: bad inputs
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    raises_one_line(lambda: read_table(tmp_path / "nope.csv"), "no such file", "nope.csv")


def test_directory(tmp_path: Path) -> None:
    raises_one_line(lambda: read_table(tmp_path), "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.csv", b"")
    raises_one_line(lambda: read_table(path), "empty")


def test_blank_lines_only(tmp_path: Path) -> None:
    path = write(tmp_path, "blank.csv", b"  \n\n\n")
    raises_one_line(lambda: read_table(path), "empty")


def test_header_only(tmp_path: Path) -> None:
    path = write(tmp_path, "header.csv", "a,b,target\n")
    raises_one_line(lambda: read_table(path), "has no data rows")


def test_png_is_not_a_csv(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    path = write(tmp_path, "picture.csv", png)
    raises_one_line(lambda: read_table(path), "is not a readable CSV", "PNG")


def test_parquet_is_not_a_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", b"PAR1\x15\x04\x15\x00\x00\x00" + b"\x00" * 100)
    raises_one_line(lambda: read_table(path), "is not a readable CSV", "Parquet")


def test_unknown_binary_is_not_a_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "blob.csv", b"abc\x00\x01\x02" * 50)
    raises_one_line(lambda: read_table(path), "is not a readable CSV", "binary")


def test_excel_workbook_is_not_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "book.csv"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.xml", "<workbook/>")
    raises_one_line(lambda: read_table(path), "Excel", "save the sheet as CSV")


def test_damaged_gzip(tmp_path: Path) -> None:
    good = gzip.compress(b"a,b\n" + b"1,2\n" * 1000)
    path = write(tmp_path, "cut.csv.gz", good[: len(good) // 2])
    raises_one_line(lambda: read_table(path), "is not a readable CSV", "damaged or truncated")


def test_row_with_too_many_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "ragged.csv", "a,b\n1,2\n3,4,5\n6,7\n")
    raises_one_line(lambda: read_table(path), "is not a readable CSV", "line 3 has 3 fields", "header has 2")


def test_unclosed_quote(tmp_path: Path) -> None:
    path = write(tmp_path, "quote.csv", 'a,b\n1,"2\n3,4\n')
    raises_one_line(lambda: read_table(path), "is not a readable CSV", "never closed")


def test_every_row_has_an_extra_field(tmp_path: Path) -> None:
    # pandas would silently make the first column the index; we refuse instead of losing data
    path = write(tmp_path, "extra.csv", "a,b\n1,2,3\n4,5,6\n")
    raises_one_line(lambda: read_table(path), "more fields than the header")


def test_duplicate_column_names(tmp_path: Path) -> None:
    path = write(tmp_path, "dups.csv", "a,b, a,c,b,a\n1,2,3,4,5,6\n")
    raises_one_line(lambda: read_table(path), "duplicate column names", "'a' (x3)", "'b' (x2)")


# --------------------------------------------------------------------------------------------
# read_table: good inputs
# --------------------------------------------------------------------------------------------


def test_bom_is_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.csv", b"\xef\xbb\xbfid,target\n1,0\n2,1\n")
    df = read_table(path)
    assert list(df.columns) == ["id", "target"]
    assert df["id"].tolist() == [1, 2]


def test_cp1252_file(tmp_path: Path) -> None:
    path = write(tmp_path, "excel.csv", "catégorie,prix €\nété,1\nhiver,2\n", encoding="cp1252")
    df = read_table(path)
    assert list(df.columns) == ["catégorie", "prix €"]
    assert df["catégorie"].tolist() == ["été", "hiver"]


def test_cp1252_after_a_long_utf8_looking_head(tmp_path: Path) -> None:
    # the first 64 KiB are plain ASCII; the first non-UTF-8 byte only comes later
    rows = "".join(f"{i},plain\n" for i in range(20_000))
    path = write(tmp_path, "late.csv", "n,word\n" + rows + "20000,café\n", encoding="cp1252")
    df = read_table(path)
    assert df["word"].iloc[-1] == "café"


def test_utf16_file(tmp_path: Path) -> None:
    path = write(tmp_path, "unicode.csv", "nom,valeur\nélan,1\nzèbre,2\n", encoding="utf-16")
    df = read_table(path)
    assert list(df.columns) == ["nom", "valeur"]
    assert df["nom"].tolist() == ["élan", "zèbre"]


def test_semicolon_file_with_decimal_commas(tmp_path: Path) -> None:
    path = write(tmp_path, "semi.csv", "name;price;label\nx;1,5;a\ny;2,25;b\n")
    df = read_table(path)
    assert list(df.columns) == ["name", "price", "label"]
    assert df["price"].tolist() == [1.5, 2.25]


def test_spreadsheet_formatted_numbers_are_read_as_numbers(tmp_path: Path) -> None:
    text = (
        "income,share,balance,code,ratio,label\n"
        '"$1,234.50",45%,-€12,"1,5",0.5,a\n'
        '"$12,000",12.5 %,"£1,000,000","2,25",0.25,b\n'
        ",,£3,x,0.125,a\n"
    )
    df = read_table(write(tmp_path, "money.csv", text))
    assert df["income"].tolist()[:2] == [1234.5, 12000.0] and np.isnan(df["income"].iloc[2])
    assert df["share"].tolist()[:2] == [0.45, 0.125]  # a percentage is a fraction, as in a spreadsheet
    assert df["balance"].tolist() == [-12.0, 1_000_000.0, 3.0]
    assert df["code"].tolist() == ["1,5", "2,25", "x"]  # not groups of three digits: text, as written
    assert df["label"].tolist() == ["a", "b", "a"]


def test_a_column_mixing_percentages_and_plain_numbers_stays_text(tmp_path: Path) -> None:
    df = read_table(write(tmp_path, "mixed.csv", "rate,y\n45%,0\n12,1\n"))
    assert df["rate"].tolist() == ["45%", "12"]


def test_missing_value_markers_leave_a_column_of_numbers_numeric(tmp_path: Path) -> None:
    text = "width,grade,y\n1.5,A,0\n?,?,1\n2,B,0\n - ,A,1\nunknown,B,0\n"
    df = read_table(write(tmp_path, "uci.csv", text))
    np.testing.assert_array_equal(df["width"].to_numpy(), [1.5, np.nan, 2.0, np.nan, np.nan])
    assert df["grade"].tolist() == ["A", "?", "B", "A", "B"]  # a column of labels keeps "?" as written


def test_the_user_is_told_which_text_columns_were_read_as_numbers(tmp_path: Path) -> None:
    text = 'income,width,grade,y\n"$1,234.50",1.5,A,0\n"$12,000",?,B,1\n$7,2,A,0\n$9,3,B,1\n$5,4,A,0\n$6,5,B,1\n'
    notes = prepare_task(read_table(write(tmp_path, "sheet.csv", text)), "y", folds=2).notes
    said = [n for n in notes if n.startswith("read text columns as numbers")]
    assert said == ["read text columns as numbers: 'income' ('$1,234.50'), 'width' ('?' as missing)"]
    plain = prepare_task(read_table(write(tmp_path, "plain.csv", "w,y\n1,0\n2,1\n3,0\n4,1\n5,0\n6,1\n")), "y", folds=2)
    assert not any(n.startswith("read text columns") for n in plain.notes)  # numbers written plainly: nothing to say


def test_infinite_numbers_are_read_as_missing_and_the_user_is_told(tmp_path: Path) -> None:
    # "inf" is what a division by zero upstream writes; no scikit-learn model trains on it
    text = "ratio,size,y\n" + "".join(f"{v},{i},{i % 3 + 0.5}\n" for i, v in enumerate(["inf", "-inf", "1.5"] * 4))
    text += "2.5,99,inf\n"  # an infinite target: a row nobody measured
    df = read_table(write(tmp_path, "ratios.csv", text))
    assert df["ratio"].isna().sum() == 8 and not np.isinf(df["ratio"]).any()
    task = prepare_task(df, "y", folds=2)
    assert "read 9 infinite values as missing: 'ratio' (8), 'y' (1)" in task.notes
    assert "dropped 1 rows with a missing target 'y'" in task.notes and len(task.frame) == 12
    plain = prepare_task(read_table(write(tmp_path, "plain.csv", "w,y\n1,0\n2,1\n3,0\n4,1\n5,0\n6,1\n")), "y", folds=2)
    assert not any("infinite" in n for n in plain.notes)


def test_european_formatted_numbers_in_a_semicolon_file(tmp_path: Path) -> None:
    path = write(tmp_path, "eu.csv", "name;price;total\nx;1,5;1.234,50 €\ny;2,25;-7\n")
    df = read_table(path)
    assert df["price"].tolist() == [1.5, 2.25]
    assert df["total"].tolist() == [1234.5, -7.0]


@pytest.mark.parametrize("sep", ["\t", "|", ";"])
def test_other_delimiters(tmp_path: Path, sep: str) -> None:
    text = "\n".join(sep.join(row) for row in [["a b", "c,d", "y"], ["1", "x,1", "0"], ["2", "x,2", "1"]])
    df = read_table(write(tmp_path, "other.csv", text + "\n"))
    assert list(df.columns) == ["a b", "c,d", "y"]
    assert df["c,d"].tolist() == ["x,1", "x,2"]


def test_names_with_spaces_and_symbols_kept_values_not_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, "names.csv", " age , income >50K,rate (%)\n39, yes ,1.5\n50,no,2.5\n")
    df = read_table(path)
    assert list(df.columns) == ["age", "income >50K", "rate (%)"]
    assert df["income >50K"].tolist() == [" yes ", "no"]


def test_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "data.csv.gz"
    frame(30, y=[0, 1] * 15).to_csv(path, index=False)  # pandas gzips by extension
    df = read_table(path)
    assert df.shape == (30, 3)


def test_gzip_named_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "secretly.csv", gzip.compress(b"a,b\n1,2\n3,4\n"))
    assert read_table(path)["b"].tolist() == [2, 4]


def test_trailing_delimiters_and_row_index(tmp_path: Path) -> None:
    path = write(tmp_path, "trailing.csv", "a,b,\n1,2,\n3,4,\n5,6,\n")
    df = read_table(path)
    assert list(df.columns) == ["a", "b"]
    assert df.index.tolist() == [0, 1, 2]  # 0-based data rows, header excluded


def test_sha256_file(tmp_path: Path) -> None:
    data = b"a,b\n" + b"1,2\n" * 500_000  # more than one 1 MiB chunk
    path = write(tmp_path, "h.csv", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# prepare_task: bad inputs
# --------------------------------------------------------------------------------------------


def test_target_absent_suggests_closest() -> None:
    df = titanic_like()
    raises_one_line(lambda: prepare_task(df, "survived"), "'survived' not found", "closest: 'Survived'")


def test_target_absent_lists_columns_when_nothing_is_close() -> None:
    df = titanic_like()
    raises_one_line(lambda: prepare_task(df, "zzz"), "'zzz' not found", "'x1'", "'Survived'")


def test_target_all_missing() -> None:
    df = frame(20, y=[np.nan] * 20)
    raises_one_line(lambda: prepare_task(df, "y"), "'y' has no values", "choose another target")


def test_fewer_rows_than_folds() -> None:
    df = frame(4, y=[1.5, 2.5, 3.5, 4.5])
    raises_one_line(lambda: prepare_task(df, "y", folds=5), "needs at least", "5-fold", "got 4")


def test_forced_regression_on_text_target() -> None:
    df = frame(40, y=["a", "b"] * 20)
    raises_one_line(lambda: prepare_task(df, "y", task_type="regression"), "regression needs a numeric target", "'a'")


def test_one_class_only() -> None:
    df = frame(40, y=["yes"] * 40)
    raises_one_line(lambda: prepare_task(df, "y"), "only one class", "'yes'")


def test_rare_class_is_named_with_its_count() -> None:
    df = frame(43, y=["a"] * 20 + ["b"] * 20 + ["c"] * 3)
    raises_one_line(lambda: prepare_task(df, "y", folds=5, holdout=0.2), "'c' (3 rows)", "at least 7", "folds to 2")
    # 6 pigs among 52,519 pets: the folds that would fit them are named, and they do fit
    pets = frame(206, y=["dog"] * 100 + ["cat"] * 100 + ["pig"] * 6)
    raises_one_line(lambda: prepare_task(pets, "y"), "'pig' (6 rows)", "or lower folds to 4")
    assert prepare_task(pets, "y", folds=4).classes == ("cat", "dog", "pig")
    lone = frame(41, y=["a"] * 20 + ["b"] * 20 + ["c"])
    assert "lower folds" not in raises_one_line(lambda: prepare_task(lone, "y"), "'c' (1 row)")  # no folds fit one row


def test_a_rare_class_of_integer_codes_suggests_regression() -> None:
    # years of experience, 0 to 18: integer codes look like classes, but it is a quantity
    df = frame(400, y=[i % 12 for i in range(396)] + [17, 17, 18, 18])
    message = raises_one_line(lambda: prepare_task(df, "y"), "too few rows in class", "use task type 'regression'")
    labels = frame(43, y=["a"] * 20 + ["b"] * 20 + ["c"] * 3)
    assert "'regression'" not in raises_one_line(lambda: prepare_task(labels, "y"))  # text labels are no quantity
    assert message.count("regression") == 1


def test_rare_class_with_a_holdout_file_needs_folds_members_only() -> None:
    df = frame(45, y=["a"] * 20 + ["b"] * 20 + ["c"] * 5)
    task = prepare_task(df, "y", folds=5, holdout_frame=df.iloc[:10])
    assert task.classes == ("a", "b", "c")
    raises_one_line(lambda: prepare_task(df, "y", folds=5), "'c' (5 rows)")


def test_a_target_that_numbers_the_rows_is_pointed_out() -> None:
    df = frame(40, rownames=np.arange(1, 41))
    assert (
        "target 'rownames' numbers the rows (1 to 40, one up each row): a model of it learns the file's order, "
        "not the rows' contents; check that it is the column to predict"
    ) in prepare_task(df, "rownames").notes
    shuffled = frame(40, count=np.random.default_rng(0).permutation(40))  # unique integers, but not in file order
    assert not any("numbers the rows" in n for n in prepare_task(shuffled, "count").notes)


def test_identifier_target() -> None:
    df = frame(40, name=[f"person {i}" for i in range(40)])
    raises_one_line(lambda: prepare_task(df, "name"), "40 distinct values in 40 rows", "identifier")


def test_labels_that_differ_only_by_spaces_are_refused_with_the_fix() -> None:
    labels = np.array(["Yes", "No"] * 30, dtype=object)
    labels[::7] = [f"{v} " for v in labels[::7]]  # a stray space typed into some cells
    raises_one_line(lambda: prepare_task(frame(60, y=labels), "y"), "'No' and 'No '", "remove the spaces")
    spaced = np.array([f" {v}" for v in ["Yes", "No"] * 30], dtype=object)  # written with spaces throughout
    assert prepare_task(frame(60, y=spaced), "y").classes == (" No", " Yes")
    clean = np.array(["Yes", "No"] * 30, dtype=object)
    holdout = frame(10, seed=1, y=np.array(["Yes ", "No"] * 5, dtype=object))
    raises_one_line(lambda: prepare_task(frame(60, y=clean), "y", holdout_frame=holdout), "only by spaces")


def test_labels_that_differ_only_in_case_stay_classes_and_the_user_is_told() -> None:
    df = frame(60, y=["Yes"] * 20 + ["yes"] * 20 + ["no"] * 20)
    task = prepare_task(df, "y")
    assert task.classes == ("Yes", "no", "yes") and task.task_type == "multiclass"
    said = [n for n in task.notes if "differ only in case" in n]
    assert said == [
        "labels of 'y' that differ only in case are kept as separate classes ('Yes' and 'yes'); "
        "if they are one class, write them alike in the file"
    ]
    assert not any("case" in n for n in prepare_task(frame(60, y=["Yes", "No"] * 30), "y").notes)


def test_holdout_too_small_for_the_classes() -> None:
    df = frame(9, y=["a", "b", "c"] * 3)
    raises_one_line(lambda: prepare_task(df, "y", folds=2, holdout=0.05), "fewer than the 3 classes")


def test_unknown_metric() -> None:
    df = titanic_like()
    raises_one_line(lambda: prepare_task(df, "Survived", metrics=["acuracy"]), "unknown metric 'acuracy'")


def test_metric_that_does_not_fit_the_task() -> None:
    df = frame(40, y=np.linspace(0, 1, 40) + 0.01)
    raises_one_line(lambda: prepare_task(df, "y", primary="f1"), "'f1' does not fit a regression task")


def test_rmsle_with_negative_target() -> None:
    df = frame(40, y=np.linspace(-3.5, 10.5, 40))
    raises_one_line(lambda: prepare_task(df, "y", metrics=["rmsle"]), "rmsle", "negative", "'y'")


@pytest.mark.parametrize("holdout", [0.0, -0.1, 0.95, 1.0])
def test_holdout_out_of_range(holdout: float) -> None:
    df = titanic_like()
    raises_one_line(lambda: prepare_task(df, "Survived", holdout=holdout), "holdout must be a number > 0 and <= 0.9")


@pytest.mark.parametrize("folds", [1, 0, -3])
def test_too_few_folds(folds: int) -> None:
    df = titanic_like()
    raises_one_line(lambda: prepare_task(df, "Survived", folds=folds), "folds must be a whole number >= 2")


def test_forced_binary_with_three_classes() -> None:
    df = frame(60, y=["a", "b", "c"] * 20)
    raises_one_line(lambda: prepare_task(df, "y", task_type="binary"), "exactly 2 classes", "'multiclass'")


def test_unknown_task_type() -> None:
    df = titanic_like()
    raises_one_line(lambda: prepare_task(df, "Survived", task_type="classification"), "unknown task type")


def test_holdout_frame_missing_columns() -> None:
    df = titanic_like()
    other = df.drop(columns=["x2", "Age"])
    raises_one_line(lambda: prepare_task(df, "Survived", holdout_frame=other), "holdout file lacks", "'x2'", "'Age'")


def test_holdout_text_in_a_column_of_numbers_is_refused_before_the_search() -> None:
    """Found only when the delivered model scored the holdout, the text stopped the run there with a
    traceback after the whole search, and at every resume."""
    df = titanic_like()
    other = df.head(20).astype({"Age": object})
    other.loc[other.index[3], "Age"] = "old"
    raises_one_line(
        lambda: prepare_task(df, "Survived", holdout_frame=other),
        "holdout file's column 'Age' must hold numbers",
        "row 3 holds 'old'",
    )
    assert prepare_task(df, "Survived", holdout_frame=df.head(20).assign(Age=np.nan)).holdout is not None  # gaps


def test_the_data_file_given_as_its_own_holdout_is_refused(tmp_path: Path) -> None:
    data = write(tmp_path, "data.csv", "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(60)))
    copy = write(tmp_path, "copy.csv", data.read_text())
    raises_one_line(
        lambda: load_task({"csv_path": str(data), "target": "y", "holdout_csv": str(copy)}),
        "is the data file itself",
        "trained on",
    )


def test_holdout_frame_without_target() -> None:
    df = titanic_like()
    raises_one_line(lambda: prepare_task(df, "Survived", holdout_frame=df.drop(columns=["Survived"])), "'Survived'")


def test_holdout_frame_unseen_labels() -> None:
    df = frame(60, y=["a", "b", "c"] * 20)
    other = frame(6, y=["a", "b", "d", "d", "c", "a"])
    raises_one_line(lambda: prepare_task(df, "y", holdout_frame=other), "never seen", "'d' (2 rows)")


def test_holdout_frame_all_targets_missing() -> None:
    df = titanic_like()
    other = df.head(5).assign(Survived=np.nan)
    raises_one_line(lambda: prepare_task(df, "Survived", holdout_frame=other), "holdout file")


# --------------------------------------------------------------------------------------------
# prepare_task and inference: good inputs
# --------------------------------------------------------------------------------------------


def test_missing_target_rows_are_dropped_with_a_note(tmp_path: Path) -> None:
    df = titanic_like()
    df.loc[[3, 10, 17], "Survived"] = np.nan
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    task = prepare_task(read_table(path), "Survived")
    assert len(task.frame) == len(df) - 3
    assert not {3, 10, 17} & set(task.frame.index)
    assert task.frame.index[3] == 4  # original row numbers kept
    assert any("dropped 3 rows" in note for note in task.notes)
    assert task.classes == (0, 1)  # float 0.0/1.0 (because of NaN) back to the file's 0/1
    assert all(type(c) is int for c in task.classes)


def test_titanic_like_binary_target() -> None:
    task = prepare_task(titanic_like(), "Survived")
    assert isinstance(task, PreparedTask)
    assert task.task_type == "binary"
    assert task.classes == (0, 1)
    assert task.positive_class == 1
    assert type(task.positive_class) is int
    assert task.metrics[0] == task.primary_metric == "f1_macro"


def test_string_three_class_target() -> None:
    task = prepare_task(frame(60, y=["setosa", "virginica", "versicolor"] * 20), "y")
    assert task.task_type == "multiclass"
    assert task.classes == ("setosa", "versicolor", "virginica")
    assert task.positive_class is None


def test_labels_are_kept_exactly() -> None:
    task = prepare_task(frame(40, y=["yes", "no "] * 20), "y")
    assert task.classes == ("no ", "yes")


def test_float_target_is_regression() -> None:
    task = prepare_task(frame(40, y=np.linspace(0.5, 99.5, 40)), "y", metrics=["mae", "rmse"])
    assert task.task_type == "regression"
    assert task.classes == ()
    assert task.positive_class is None
    assert task.metrics == ("mae", "rmse")
    assert task.primary_metric == "mae"


def test_integer_target_with_many_values_is_regression() -> None:
    task = prepare_task(frame(200, y=np.arange(200) * 3), "y")
    assert task.task_type == "regression"


def test_forced_task_type() -> None:
    df = frame(300, y=[1, 2, 3] * 100)
    assert prepare_task(df, "y").task_type == "multiclass"
    task = prepare_task(df, "y", task_type="regression")
    assert task.task_type == "regression"
    assert task.classes == ()


def test_metrics_as_comma_string_with_primary() -> None:
    task = prepare_task(titanic_like(), "Survived", metrics="accuracy, f1", primary="f1")
    assert task.metrics == ("f1", "accuracy")


def test_holdout_frame_drops_missing_targets() -> None:
    df = titanic_like()
    other = df.head(10).copy()
    other.loc[[0, 1], "Survived"] = np.nan
    task = prepare_task(df, "Survived", holdout=0.0, holdout_frame=other)  # holdout is ignored here
    assert task.holdout is not None
    assert len(task.holdout) == 8
    assert list(task.holdout.columns) == list(df.columns)
    assert any("dropped 2 holdout rows" in note for note in task.notes)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pd.Series([True, False] * 10), "binary"),
        (pd.Series(["a", "b", "c"] * 10, dtype="category"), "multiclass"),
        (pd.Series(["no", "yes"] * 10), "binary"),
        (pd.Series([0, 1] * 10 + [None]), "binary"),
        (pd.Series([1.0, 2.0, 3.0] * 100), "multiclass"),
        (pd.Series([1, 2, 3] * 10), "regression"),  # 3 values in 30 rows: 10% > 5%
        (pd.Series([0.5, 1.0, 1.5] * 10), "regression"),
    ],
)
def test_infer_task_type(values: pd.Series, expected: str) -> None:
    assert infer_task_type(values) == expected


def test_positive_class_minority_then_larger_on_tie() -> None:
    assert positive_class(pd.Series(["no"] * 7 + ["yes"] * 3)) == "yes"
    assert positive_class(pd.Series([1] * 7 + [0] * 3)) == 0
    tied = positive_class(pd.Series(np.array([0, 1] * 5)))
    assert tied == 1
    assert type(tied) is int


def test_adult_income_target_is_binary() -> None:
    # the bundled copy is the published file, byte for byte (SHA-256 of the uncompressed CSV)
    with gzip.open(ADULT) as f:
        assert hashlib.sha256(f.read()).hexdigest() == (
            "dbcdedc85eb3e7c8b9c344ba00faef33bc86d10946e11baac9fb468cae06101a"
        )
    frame = read_table(ADULT)
    assert frame.shape == (32561, 14)
    task = prepare_task(frame, "income >50K")
    assert task.task_type == "binary"
    assert task.classes == (0, 1)
    assert task.positive_class == 1  # the minority class: 24% of the rows earn above 50K
    assert round(float((frame["income >50K"] == 1).mean()), 2) == 0.24


def test_a_constant_regression_target_is_refused_like_a_one_class_target() -> None:
    df = pd.DataFrame({"a": np.arange(60.0), "y": 2.5})
    raises_one_line(lambda: prepare_task(df, "y"), "'y' has one value (2.5)", "choose another target")
    raises_one_line(lambda: prepare_task(df.assign(y=7), "y", task_type="regression"), "one value (7)")


def test_holdout_labels_read_as_numbers_match_the_datas_text_labels(tmp_path: Path) -> None:
    """The data's labels "1", "2", "a" are text; a holdout holding only "1" and "2" reads as numbers."""
    data = write(tmp_path, "data.csv", "x,y\n" + "".join(f"{i},{'12a'[i % 3]}\n" for i in range(60)))
    hold = write(tmp_path, "hold.csv", "x,y\n" + "".join(f"{i},{'12'[i % 2]}\n" for i in range(20)))
    task = prepare_task(read_table(data), "y", holdout_frame=read_table(hold))
    assert task.classes == ("1", "2", "a") and task.holdout is not None
    assert task.holdout["y"].tolist() == ["1", "2"] * 10


def test_a_header_in_decomposed_unicode_matches_the_target_as_typed(tmp_path: Path) -> None:
    """macOS may write "café" as "cafe" + a combining accent: the same name to the eye and to the user."""
    path = write(tmp_path, "data.csv", "x,cafe\u0301\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    assert read_table(path).columns.tolist() == ["x", "caf\u00e9"]
    for typed in ("caf\u00e9", "cafe\u0301"):
        assert prepare_task(read_table(path), typed).target == "caf\u00e9"


def test_a_huge_fold_count_is_refused_at_once() -> None:
    df = pd.DataFrame({"a": np.arange(60.0), "y": np.arange(60.0) % 7})
    raises_one_line(lambda: prepare_task(df, "y", folds=10**9), "needs at least 1250000000 rows")


def test_a_class_pandas_reads_as_missing_is_named_in_the_note(tmp_path: Path) -> None:
    """ "None" is a severity and "NA" a region here, but pandas reads both as missing."""
    path = write(
        tmp_path, "s.csv", "a,severity\n" + "".join(f"{i},{('Low', 'High', 'None')[i % 3]}\n" for i in range(60))
    )
    task = prepare_task(read_table(path), "severity")
    assert task.classes == ("High", "Low")
    (note,) = [n for n in task.notes if n.startswith("dropped 20 rows with a missing target")]
    assert "None" in note and "if one is a class, write it another way" in note


def test_repeated_names_past_the_sniffed_head_of_a_very_wide_header_are_refused(tmp_path: Path) -> None:
    names = [f"column_{i:05d}" for i in range(7000)] + ["column_06999", "y"]  # about 91 KB of header
    rows = "".join(",".join(["1"] * 7001 + [str(i % 2)]) + "\n" for i in range(20))
    path = write(tmp_path, "wide.csv", ",".join(names) + "\n" + rows)
    raises_one_line(lambda: read_table(path), "duplicate column names", "'column_06999' (x2)")


def test_a_header_cut_by_the_sniffed_head_is_not_taken_for_a_repeat(tmp_path: Path) -> None:
    """The head ended inside a name ("c1094" of "c10945"), which then looked like the real "c1094"."""
    names = [f"c{i}" for i in range(20_000)] + ["y"]  # about 129 KB of header
    rows = "".join(",".join(["1"] * 20_000 + [str(i % 2)]) + "\n" for i in range(4))
    df = read_table(write(tmp_path, "wide.csv", ",".join(names) + "\n" + rows))
    assert df.columns.tolist() == names and len(df) == 4


@pytest.mark.parametrize("first_line", ["sep=;", '"sep=;"', "\ufeffsep=;"])
def test_excels_sep_line_names_the_delimiter_and_is_not_the_header(tmp_path: Path, first_line: str) -> None:
    rows = "".join(f"{i};{i},5;{i % 2}\n" for i in range(12))
    df = read_table(write(tmp_path, "excel.csv", f"{first_line}\nid;w;y\n{rows}"))
    assert df.columns.tolist() == ["id", "w", "y"] and len(df) == 12
    assert df["w"].tolist()[:2] == [0.5, 1.5]  # the decimal comma still sniffed on the rows after it


def test_a_semicolon_file_with_decimal_commas_reads_points_between_digit_groups_as_thousands(tmp_path: Path) -> None:
    """One "1.001" (a thousand and one, grouped) made the whole file's "1,5" text, and itself 1.001."""
    rows = "".join(f"{i + 1}.00{i % 10};{i},5;{i % 2}\n" for i in range(12))
    df = read_table(write(tmp_path, "eu.csv", "pop;w;y\n" + rows))
    assert df["pop"].tolist()[:3] == [1000.0, 2001.0, 3002.0] and df["w"].tolist()[:2] == [0.5, 1.5]
    # without a decimal comma anywhere, a point is a decimal point, as before
    plain = read_table(
        write(tmp_path, "pt.csv", "pop;w;y\n" + "".join(f"{i + 1}.00{i % 10};{i};1\n" for i in range(12)))
    )
    assert plain["pop"].tolist()[:2] == [1.0, 2.001]
