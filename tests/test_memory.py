"""Bounded memory on one machine (issue 10): compact dtypes at read time, one development frame
per run, and fold tasks that map the shared numeric data instead of receiving copies.

Each test checks a behaviour the memory figures of `docs/benchmarks.md` rest on, on real files,
real runs and a real joblib process pool.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from tandem.api import run_task
from tandem.graph import persistence
from tandem.graph.context import RunContext
from tandem.tools.builder import ColumnBlockStandardScaler, as_categories
from tandem.tools.data import COMPACT_MAX_UNIQUE_RATIO, compact_frame, logical_dtype, read_table, sha256_file
from tandem.tools.delivered_model import DeliveredModel
from tandem.tools.profile import profile_dataset


def _written(tmp_path: Path, n: int = 4000, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "count": rng.poisson(5, size=n),
            "big": rng.integers(-(2**40), 2**40, size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
            "code": [f"id-{i}" for i in range(n)],  # unique: stays a string column
            "target": rng.choice(["yes", "no"], size=n),
        }
    )
    frame.loc[::7, "colour"] = None
    frame.loc[::11, "x"] = np.nan
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _plain(path: Path) -> pd.DataFrame:
    """The file as pandas reads it by default."""
    return pd.read_csv(path)


def test_read_table_holds_compact_dtypes_with_identical_values(tmp_path: Path) -> None:
    path, _ = _written(tmp_path)
    compact = read_table(path, keep=["target"])
    plain = _plain(path)
    assert isinstance(compact["colour"].dtype, pd.CategoricalDtype)
    assert compact["count"].dtype == np.int8  # Poisson(5) fits a byte
    assert compact["big"].dtype == np.int64  # needs all 64 bits: left alone
    assert compact["x"].dtype == np.float64  # never rounded to float32
    assert not isinstance(compact["code"].dtype, pd.CategoricalDtype)  # unique values: no saving
    assert not isinstance(compact["target"].dtype, pd.CategoricalDtype)  # kept as read
    for name in plain.columns:
        a, b = plain[name], compact[name]
        assert a.isna().equals(b.isna()), name
        assert a.astype(object).where(a.notna(), None).tolist() == b.astype(object).where(b.notna(), None).tolist()
        assert logical_dtype(b) == str(a.dtype), name
    assert compact.memory_usage(deep=True).sum() < plain.memory_usage(deep=True).sum()


def test_compaction_changes_neither_the_profile_nor_what_encoders_see(tmp_path: Path) -> None:
    path, _ = _written(tmp_path)
    compact = read_table(path, keep=["target"])
    plain = _plain(path)
    assert profile_dataset(compact, "target", "binary") == profile_dataset(plain, "target", "binary")
    pd.testing.assert_frame_equal(as_categories(compact[["colour"]]), as_categories(plain[["colour"]]))


def test_categorical_cells_share_their_level_strings_and_encode_as_per_cell_strings_do() -> None:
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    levels = rng.choice(["red", "green", None, "blue"], size=20_000)
    plain = pd.DataFrame({"colour": pd.Series(levels, dtype=object), "size": rng.choice([1.5, 2.0, np.nan], 20_000)})
    compact = plain.astype("category")
    cast = as_categories(compact)
    cells = cast["colour"].tolist()  # alive together, so no two cells' objects can share an address by reuse
    assert len({id(v) for v in cells}) == 4  # three levels and the missing marker, shared by every cell
    assert cast.to_numpy().tolist() == as_categories(plain).to_numpy().tolist()
    encoder = OneHotEncoder(sparse_output=False)
    assert np.array_equal(encoder.fit_transform(cast), encoder.fit_transform(as_categories(plain)))
    expected = [["__missing__", "blue", "green", "red"], ["1.5", "2.0", "__missing__"]]
    assert [list(c) for c in encoder.categories_] == expected


def test_compact_frame_leaves_the_callers_frame_and_mixed_columns_alone() -> None:
    frame = pd.DataFrame({"a": ["x", "y"] * 50, "mixed": ["x", 1] * 50, "n": np.arange(100, dtype=np.int64)})
    out = compact_frame(frame)
    assert frame["a"].dtype != "category" and frame["n"].dtype == np.int64
    assert isinstance(out["a"].dtype, pd.CategoricalDtype)
    assert out["mixed"].dtype == object  # Python objects of several types: not a string column
    assert out["n"].dtype == np.int8
    assert 0 < COMPACT_MAX_UNIQUE_RATIO < 1


def test_a_model_trained_on_the_compact_frame_predicts_a_plain_csv(tmp_path: Path, runs_dir: Path) -> None:
    path, _ = _written(tmp_path, n=600)
    run_task(str(path), "target", run_id="m", context=RunContext(runs_dir=str(runs_dir), max_iters=1, n_jobs=1))
    model: DeliveredModel = joblib.load(runs_dir / "m" / "model.joblib")
    assert model.dtypes_["colour"] == "str" and model.dtypes_["count"] == "int64"
    plain = _plain(path).drop(columns=["target"])
    plain.loc[0, "count"] = 100_000  # beyond int8: the schema is the data's, not the storage's
    proba = model.predict_proba(plain)
    assert proba.shape == (len(plain), 2) and np.isfinite(proba).all()


def test_the_development_frame_is_built_once_per_run(tmp_path: Path, runs_dir: Path) -> None:
    path, _ = _written(tmp_path, n=600)
    persistence._DEV.clear()
    summary = run_task(
        str(path), "target", run_id="d", context=RunContext(runs_dir=str(runs_dir), max_iters=2, n_jobs=1)
    )
    assert len(persistence._DEV) == 1  # setup, every step and delivery used one frame
    folder = persistence.run_folder(runs_dir, "d")
    task = {**summary["task"], "csv_sha256": sha256_file(path)}  # the run's TaskInfo (the summary omits the hash)
    X1, y1, _ = persistence.dev_data(task, folder)
    X2, _, _ = persistence.dev_data(task, folder)
    assert len(persistence._DEV) == 1
    assert np.shares_memory(X1["x"].to_numpy(), X2["x"].to_numpy())
    assert _is_mapped(X1["x"].to_numpy()) and _is_mapped(X1["colour"].cat.codes.to_numpy())  # shared with workers
    X1["x"] = 0.0  # a caller that writes to its frame does not change the cached one
    X3, y3, _ = persistence.dev_data(task, folder)
    assert not (X3["x"].fillna(1.0) == 0.0).all()
    assert len(X3) == task["n_dev_rows"] and y3.equals(y1)
    # the whole table is not kept beside the development part; the holdout rows are, as read
    assert not any(key[0] == str(path) for key in persistence._TABLES)
    X_hold, y_hold = persistence.holdout_data(task, folder)
    rows = list(persistence._split(folder).holdout_rows)
    expected = read_table(path, keep=["target"]).loc[rows]  # as a run reads it
    assert X_hold.index.equals(expected.index) and y_hold.equals(expected["target"])
    pd.testing.assert_frame_equal(X_hold, expected.drop(columns=["target"]))


def _is_mapped(values: np.ndarray) -> bool:
    base: object = values
    while base is not None:
        if isinstance(base, np.memmap | mmap.mmap):
            return True
        base = getattr(base, "base", None)
    return False


def _fold_view(X: pd.DataFrame, rows: np.ndarray) -> tuple[bool, bool, float]:
    """What a fold task sees: is the float column mapped, is the categorical's code array mapped."""
    return _is_mapped(X["x"].to_numpy()), _is_mapped(X["colour"].cat.codes.to_numpy()), float(X["x"].iloc[rows].sum())


def test_the_dry_run_and_the_folds_size_their_memory_decision_on_the_same_rows(
    tmp_path: Path, runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a memory limit the Executor's dry run and the candidate's folds each decide whether
    to fit in a pool or in this process: on the rows a fold fits (about 4/5 of the development
    part), or near the limit the dry run would take the other branch than the folds it checks."""
    from tandem.tools import training

    path, _ = _written(tmp_path, n=600)
    sized: list[int] = []
    decide = training.folds_in_process

    def recorded(n_rows: int, *rest: Any) -> bool:
        sized.append(n_rows)
        return decide(n_rows, *rest)

    monkeypatch.setattr(training, "folds_in_process", recorded)
    context = RunContext(runs_dir=str(runs_dir), max_iters=2, n_jobs=2, memory_limit=64 * 2**30)
    summary = run_task(str(path), "target", run_id="d", context=context)
    n_dev = summary["task"]["n_dev_rows"]
    assert len(sized) >= 4  # the baseline's folds, then each step's dry run and folds
    assert set(sized) == {n_dev - n_dev // 5}, (sized, n_dev)  # 5 folds: one left out, never all the rows


def test_after_setup_nothing_keeps_the_table_a_run_read(
    tmp_path: Path, runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search holds the development part and the holdout rows; the table they were cut from
    (as large again as both) must go when setup is done, not stay until the run ends."""
    import gc
    import weakref

    from tandem.tools import data

    path, _ = _written(tmp_path, n=600)
    tables: list[weakref.ref[pd.DataFrame]] = []
    real = data.read_table_hashed

    def spied(p: Any, **kw: Any) -> Any:
        table, digest = real(p, **kw)
        tables.append(weakref.ref(table))
        return table, digest

    monkeypatch.setattr(data, "read_table_hashed", spied)
    alive: list[tuple[str, bool]] = []

    def on_update(node: str, update: Any) -> None:
        gc.collect()
        alive.append((node, tables[0]() is not None))

    summary = run_task(
        str(path),
        "target",
        run_id="t",
        context=RunContext(runs_dir=str(runs_dir), max_iters=2, n_jobs=1),
        on_update=on_update,
    )
    assert summary["status"] == "delivered" and len(tables) == 1  # read once
    assert alive[0][0] == "setup" and "deliver" in dict(alive)
    assert not any(kept for _, kept in alive), alive


@pytest.mark.parametrize("missing", [0.0, 0.05])
def test_the_column_block_scaler_learns_scikit_learns_statistics_to_the_bit(missing: float) -> None:
    """Fitting a few columns at a time is only worth its lower peak if nothing a model sees changes."""
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    X = rng.normal(size=(20_000, 11)) * rng.uniform(0.1, 1e4, 11) + rng.uniform(-50, 50, 11)
    X[rng.random(X.shape) < missing] = np.nan
    X[:, 4] = np.round(X[:, 4])
    for layout in (np.asfortranarray(X), np.ascontiguousarray(X)):  # blockwise, and scikit-learn's own fit
        ours, theirs = ColumnBlockStandardScaler().fit(layout), StandardScaler().fit(layout)
        for name in ("mean_", "var_", "scale_", "n_samples_seen_"):
            assert np.array_equal(getattr(ours, name), getattr(theirs, name), equal_nan=True), name
        assert np.shape(ours.n_samples_seen_) == np.shape(theirs.n_samples_seen_)
        assert np.array_equal(ours.transform(layout), theirs.transform(layout), equal_nan=True)


def test_fold_tasks_map_the_shared_numeric_data_instead_of_copying_it(tmp_path: Path) -> None:
    """joblib maps a frame's numeric arrays above 1 MB into fold tasks; dev_data's mapped frame
    sends even the small ones (a categorical's codes) as a path."""
    n = 300_000  # columns above joblib's 1 MB: float64 2.4 MB, categorical codes (int16) 0.6 MB
    rng = np.random.default_rng(0)
    X = compact_frame(
        pd.DataFrame({"x": rng.normal(size=n), "colour": pd.Series(rng.integers(0, 300, size=n)).map("c{}".format)})
    )
    assert isinstance(X["colour"].dtype, pd.CategoricalDtype)
    rows = np.arange(0, n, 3)
    with joblib.parallel_config(backend="loky", n_jobs=2):
        results = joblib.Parallel()(joblib.delayed(_fold_view)(X, rows) for _ in range(2))
    expected = float(X["x"].iloc[rows].sum())
    for float_mapped, codes_mapped, total in results:
        assert float_mapped, "the float column reached the worker as a copy"
        assert not codes_mapped  # 0.6 MB of codes: below joblib's threshold, sent as bytes
        assert total == pytest.approx(expected)
    X_mapped, _, path = persistence._mapped(X, pd.Series(np.zeros(n)))
    assert path is not None
    with joblib.parallel_config(backend="loky", n_jobs=2):
        results = joblib.Parallel()(joblib.delayed(_fold_view)(X_mapped, rows) for _ in range(2))
    for float_mapped, codes_mapped, total in results:
        assert float_mapped and codes_mapped and total == pytest.approx(expected)


def test_a_killed_processs_mapped_frames_are_removed_by_the_next_one() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = Path(tempfile.mkdtemp(prefix=f"tandem-dev-{dead.pid}-"))
    (orphan / "dev-0.joblib").write_bytes(b"x")
    alive = Path(tempfile.mkdtemp(prefix=f"tandem-dev-{os.getppid()}-"))  # pytest's parent: running
    try:
        persistence._remove_orphaned_shared_dirs()
        assert not orphan.exists()
        assert alive.exists()
    finally:
        shutil.rmtree(alive, ignore_errors=True)
        shutil.rmtree(orphan, ignore_errors=True)


FREED_HEAP = """
import json, psutil
from tandem.tools.training import _malloc_trim, release_freed_memory
process = psutil.Process()
if _malloc_trim() is None:
    print(json.dumps(None))
    raise SystemExit
# 192 MB of heap chunks below glibc's mmap threshold, each followed by a small one that stays
# alive: the freed chunks cannot merge into the heap's top, which glibc would trim by itself
pairs = [(bytearray(64 * 1024), bytearray(600)) for _ in range(3000)]
held = process.memory_info().rss
keep = [small for _, small in pairs]
del pairs
freed = process.memory_info().rss
release_freed_memory()
print(json.dumps([held, freed, process.memory_info().rss, len(keep)]))
"""


def test_memory_a_fit_freed_goes_back_to_the_system() -> None:
    """glibc keeps freed heap pages for reuse (the resident size stays at the last peak) until
    `release_freed_memory` trims them: what keeps a memory-limited run's next fit from starting
    at the previous one's peak. In a fresh interpreter: how glibc places chunks depends on the
    heap's history, which other tests in this process would have written."""
    done = subprocess.run([sys.executable, "-c", FREED_HEAP], capture_output=True, text=True, timeout=120, check=True)
    numbers = json.loads(done.stdout)
    if numbers is None:
        pytest.skip("no malloc_trim in this C library (not glibc): nothing to release")
    held, freed, released, _ = numbers
    assert freed > held - 50 * 2**20  # freed, still resident
    assert released < held - 120 * 2**20
