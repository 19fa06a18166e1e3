"""The evaluation protocol: one fixed split, the same K folds for every candidate, scores from the registry.

The environment owns every number (README.md, "How the environment judges"). A candidate is trained K times on the
development part and scored on each held-out fold; the holdout part is touched only by
`score_holdout`, once, at delivery. Fold fits go through joblib, so switching joblib's backend
(for example to a dask cluster) scales evaluation out without touching this code. Results are
cached on disk by the spec's canonical hash, so an identical spec is never trained twice, not
even after a crash and a resume.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import json
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import joblib
import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from tandem.tools.builder import build_pipeline, fitted_params, predict, threshold_objective, threshold_scores
from tandem.tools.metrics import METRICS, Predictions, score_all
from tandem.tools.pause_points import pause_point
from tandem.tools.spec import EnsembleSpec, PipelineSpec, TaskType, spec_hash
from tandem.tools.stop_request import stop_requested

# loky ends a fold worker whose memory grew by 300 MB over a task (its guard against leaks; a large
# fit's heap is not all given back), after the task, and starts another that takes the waiting
# folds: nothing is lost and nothing is for the user to do, but it warns on the terminal from its
# manager thread, where a `catch_warnings` around the fit would not reach it.
LOKY_WORKER_RESTARTED = "A worker stopped while some jobs were given to the executor"
warnings.filterwarnings("ignore", message=LOKY_WORKER_RESTARTED, category=UserWarning)


@dataclass(frozen=True)
class Problem:
    """What every evaluation needs to know about the task, independent of any agent."""

    task_type: TaskType
    metrics: tuple[str, ...]
    primary_metric: str
    classes: tuple[Any, ...] = ()
    positive_class: Any = None
    seed: int = 0


#: Below this many development rows the K folds are repeated (docs/decisions.md, "Repeated folds").
SMALL_DEV_ROWS = 2000
SMALL_DATA_REPEATS = 3

#: Primary metrics that are step functions of a few rows' labels: near-ties on them are broken by
#: a proper scoring rule (docs/decisions.md, "Ties on a discrete metric").
DISCRETE_METRICS = frozenset({"accuracy", "balanced_accuracy", "precision", "recall", "f1", "f1_macro", "mcc"})
TIE_BREAK_METRIC = "log_loss"


@dataclass(frozen=True)
class Split:
    """Row numbers (0-based data rows of the CSV) of the holdout and development parts, and the folds.

    `fold_of_dev` is the first assignment of development rows to K folds; on small data
    `repeat_folds` holds further, independently shuffled assignments (repeated K-fold), fixed
    at setup like the first.
    """

    dev_rows: tuple[int, ...]
    fold_of_dev: tuple[int, ...]
    holdout_rows: tuple[int, ...] = ()
    holdout_source: str = "internal"  # or the path of a separate holdout CSV
    repeat_folds: tuple[tuple[int, ...], ...] = ()

    @property
    def n_folds(self) -> int:
        return max(self.fold_of_dev) + 1

    @property
    def n_repeats(self) -> int:
        return 1 + len(self.repeat_folds)

    def fold_matrix(self) -> np.ndarray:
        """The fold of every development row in every repeat: shape (repeats, development rows)."""
        return np.asarray([self.fold_of_dev, *self.repeat_folds], dtype=int)

    def save(self, path: Path) -> None:
        """Written beside `path` and renamed over it: never half a file, and never through a link
        someone left at `path` (a run folder may come from someone else)."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Split:
        data = json.loads(path.read_text())
        return cls(
            dev_rows=tuple(data["dev_rows"]),
            fold_of_dev=tuple(data["fold_of_dev"]),
            holdout_rows=tuple(data["holdout_rows"]),
            holdout_source=data["holdout_source"],
            repeat_folds=tuple(tuple(f) for f in data.get("repeat_folds", ())),
        )


def make_split(
    y: pd.Series,
    task_type: str,
    *,
    holdout: float,
    folds: int,
    seed: int,
    external_holdout: str | None = None,
    repeats: int | None = None,
) -> Split:
    """Fix the holdout (stratified for classification) and K development folds, once per run.

    `repeats` (None: `SMALL_DATA_REPEATS` below `SMALL_DEV_ROWS` development rows, else 1) is how
    many seeded K-fold assignments every candidate is scored on; the first is the same whatever
    the number of repeats.
    """
    rows = np.asarray(y.index)
    stratify = y.to_numpy() if task_type != "regression" else None
    if external_holdout:
        dev_rows, holdout_rows = rows, np.array([], dtype=int)
    else:
        dev_rows, holdout_rows = train_test_split(rows, test_size=holdout, random_state=seed, stratify=stratify)
        dev_rows = np.sort(dev_rows)
        holdout_rows = np.sort(holdout_rows)
    y_dev = y.loc[dev_rows].to_numpy()
    if repeats is None:
        repeats = SMALL_DATA_REPEATS if len(dev_rows) < SMALL_DEV_ROWS else 1
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    assignments = []
    for r in range(repeats):
        state = seed if r == 0 else seed + 7919 * r  # repeat 0 is the split a single repeat makes
        splitter = (
            StratifiedKFold(folds, shuffle=True, random_state=state)
            if task_type != "regression"
            else KFold(folds, shuffle=True, random_state=state)
        )
        fold_of_dev = np.empty(len(dev_rows), dtype=int)
        for k, (_, val) in enumerate(splitter.split(np.zeros(len(dev_rows)), y_dev)):
            fold_of_dev[val] = k
        assignments.append(tuple(int(f) for f in fold_of_dev))
    return Split(
        dev_rows=tuple(int(r) for r in dev_rows),
        fold_of_dev=assignments[0],
        holdout_rows=tuple(int(r) for r in holdout_rows),
        holdout_source=external_holdout or "internal",
        repeat_folds=tuple(assignments[1:]),
    )


@dataclass
class CandidateResult:
    """The environment's verdict on one spec: fold scores for every metric, or why it failed."""

    spec_hash: str
    status: str  # "ok" | "failed" | "timeout" | "pruned" (a search trial stopped early by its pruner)
    fold_scores: dict[str, list[float]] = field(default_factory=dict)
    cv: dict[str, float] = field(default_factory=dict)
    cv_std: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    fitted_params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    fold_fit_seconds: float = 0.0
    """Mean seconds one fold's model took to fit (`fit_seconds` is the whole cross-validation's wall time)."""
    fold_predict_seconds: float = 0.0
    """Mean seconds one fold's model took to predict its validation rows (`tandem leaderboard` shows both)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FoldOutput = tuple[dict[str, float], np.ndarray, dict[str, Any], float, float]
"""One fold's scores, out-of-fold predictions, fitted parameters, and fit and predict seconds:
what a trained fold and a fold scored from the cache both give `_collect`."""


#: From this many training cells (rows x columns) a fit gives its freed memory back around it
#: (`release_freed_memory`); below it a fit's copies are tens of megabytes, not worth a pass of
#: the garbage collector (a third of a second in a run's process, which holds the graph's objects).
TRIM_FROM_CELLS = 1_000_000


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:  # glibc's soname, loaded by name: ctypes.util.find_library would start ldconfig in every worker
        return ctypes.CDLL("libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim with
        return None


def release_after_large_fit(cells: int) -> None:
    """`release_freed_memory` when a fit on this many cells (rows x columns) is large enough to matter."""
    if cells >= TRIM_FROM_CELLS:
        release_freed_memory()


def release_freed_memory() -> None:
    """Give the pages a finished fit freed back to the operating system (glibc's `malloc_trim`).

    Why: glibc keeps freed heap memory for reuse, so after a large fit the process stays near its
    peak and the next large fit starts from there. On the 1M-row task a process that fitted one
    fold stayed 220 to 360 MB above where it started, and 110 MB after a trim; Dask's workers
    trim the same way. A no-op where the C library has no `malloc_trim`.
    """
    gc.collect()
    if (trim := _malloc_trim()) is not None:
        trim(0)


@dataclass(frozen=True)
class MappedData:
    """The development part named by the file it is memory-mapped from (graph/persistence.py).

    What a fold task sends a Dask worker instead of the frame: a path, not megabytes. The worker
    maps the file on the first fold that names it and keeps the mapping for the run's later folds,
    so the data reach each worker once per run rather than once per candidate's batch of folds
    (joblib's dask backend scatters a large argument once per batch). Only used when every worker
    can read the path (`_workers_read`).
    """

    path: str

    def load(self) -> tuple[pd.DataFrame, pd.Series]:
        return _mapped_file(self.path)


@functools.lru_cache(maxsize=2)
def _mapped_file(path: str) -> tuple[pd.DataFrame, pd.Series]:
    X, y = joblib.load(path, mmap_mode="r")
    return X, y


def _workers_read(path: Path) -> bool:
    """Whether joblib's backend in force is a Dask cluster every worker of which can read `path`
    (workers on other machines see it only through storage they share with this one)."""
    backend, _ = joblib.parallel.get_active_backend()
    client = getattr(backend, "client", None)  # joblib's DaskDistributedBackend keeps its client here
    if client is None:
        return False
    readable = client.run(os.access, str(path), os.R_OK)
    return bool(readable) and all(readable.values())


def fold_assignment(folds: np.ndarray, repeat: int) -> np.ndarray:
    """One repeat's fold of every development row, in the smallest integer type that holds it: what a
    fold task carries to name its rows (a byte a row, where row indices would take eight)."""
    assignment = folds[repeat]
    return assignment.astype(np.min_scalar_type(int(assignment.max())), copy=False)


def _fit_fold(
    spec: PipelineSpec | EnsembleSpec,
    problem: Problem,
    X: pd.DataFrame | MappedData,
    y: pd.Series | None,
    assignment: np.ndarray,
    fold: int,
    n_threads: int = 1,
) -> FoldOutput:
    """One fold: its scores, out-of-fold predictions, fitted parameters, and fit and predict seconds.

    `fold` of `assignment` (`fold_assignment`) is validated on, the other rows trained on."""
    if isinstance(X, MappedData):
        X, y = X.load()
    assert y is not None
    train, val = np.flatnonzero(assignment != fold), np.flatnonzero(assignment == fold)
    started = time.perf_counter()
    model = fit_final(spec, X.iloc[train], y.iloc[train], problem, n_threads=n_threads)
    fitted = time.perf_counter()
    pause_point("fold_fit")  # a test hook, off by default (tools/pause_points.py)
    predicting = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = predict(model, X.iloc[val], problem.task_type, problem.classes, problem.positive_class)
    predicted = time.perf_counter()
    scores = score_all(scored_metrics(problem), y.iloc[val].to_numpy(), pred)
    oof = np.asarray(pred.proba if pred.proba is not None else pred.y_pred.reshape(-1, 1), dtype=float)
    params = fitted_params(model, spec)
    del model, pred
    release_after_large_fit(len(train) * X.shape[1])  # the process's next fold should not start from this one's peak
    return scores, oof, params, fitted - started, predicted - predicting


def _within_threads(fits: Iterator[Any], n_threads: int) -> Generator[Any, None, None]:
    """The fold fits, run with at most `n_threads` BLAS and OpenMP threads.

    Why: in a joblib worker the numerical libraries get the worker's share of the cores, but in
    the run's own process (`--n-jobs 1`, or `folds_in_process`) OpenBLAS and OpenMP start a thread
    per core beside each fit, and on a busy machine they wait by spinning: a 4-step penguins run at
    `--n-jobs 1`, beside another job on two cores, took 15.0 to 15.6 s of CPU without this bound
    and 11.9 to 12.1 s with it. LightGBM, the forests and CatBoost get `n_threads` in their own
    parameters (`make_estimator`); this is the same bound for everything else.
    """
    with threadpool_limits(limits=n_threads):  # found anew for each candidate (2 ms): a family may load its own
        yield from fits


def scored_metrics(problem: Problem) -> tuple[str, ...]:
    """The task's metrics, plus log-loss when it breaks ties on a discrete primary metric."""
    if (
        problem.task_type != "regression"
        and problem.primary_metric in DISCRETE_METRICS
        and TIE_BREAK_METRIC not in problem.metrics
    ):
        return (*problem.metrics, TIE_BREAK_METRIC)
    return problem.metrics


def fold_plan(folds: np.ndarray) -> list[tuple[int, int]]:
    """(repeat, fold) of every fit, repeat-major: the order of every fold-score list."""
    matrix = np.atleast_2d(folds)
    return [(r, k) for r in range(matrix.shape[0]) for k in range(int(matrix[r].max()) + 1)]


def short_error(exc: BaseException) -> str:
    """One line an agent (or a user) can act on, without the traceback."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:400]}"


#: Peak bytes one fold fit adds per cell (training row x column) of the development frame: the
#: fold's copy of its rows, the preprocessors' outputs and the design matrix. Measured as the
#: growth of the resident memory of a process fitting one fold of the 1M x 30 speed task
#: (640,000 rows x 29 columns): about 40 for LightGBM and for the linear recipe (imputer,
#: clipper, power transform and scaler copies, then the sparse stack; 58 before the stack went by
#: blocks of rows); set higher, so the estimate errs towards fitting in this process.
FOLD_BYTES_PER_CELL = 60

#: Memory of one joblib worker before it holds any data: an interpreter that imported this module
#: (pandas, scikit-learn, the model libraries). Measured on Linux: 206 MiB resident, 161 MiB
#: proportional (the libraries' pages are shared with the run's process).
WORKER_BYTES = 200 * 2**20


def fold_fit_bytes(n_rows: int, n_columns: int) -> int:
    """Estimated peak memory of one fold fit on `n_rows` x `n_columns` of development data."""
    return FOLD_BYTES_PER_CELL * n_rows * max(1, n_columns)


def folds_in_process(n_rows: int, n_columns: int, n_jobs: int, memory_limit: int | None) -> bool:
    """Whether a candidate's folds must be fitted one at a time in this process to stay within
    `memory_limit` (bytes for this process and its fold workers; None: no limit).

    Why two modes and nothing between: `n_jobs` workers each hold a fold's design matrix at once,
    plus an interpreter of their own; one worker would still hold both while this process waits.
    Fitting in this process holds one design matrix and no extra interpreter, and the model
    libraries' own threads (LightGBM, XGBoost, CatBoost, forests) keep the cores busy. The price:
    a fold fit cannot be stopped midway by the candidate's time limit (the limit is checked after
    each fold, as it always is), and families that fit on one thread run one fold at a time.
    """
    if memory_limit is None or n_jobs <= 1:
        return False
    import psutil  # imported here: the CLI's start-up does not need it

    in_use = int(psutil.Process().memory_info().rss)
    return in_use + n_jobs * (fold_fit_bytes(n_rows, n_columns) + WORKER_BYTES) > memory_limit


def fold_training_rows(folds: np.ndarray) -> int:
    """The rows one fold's model is fitted on (the first repeat's fold 0 left out): what a fold's
    memory is sized on (`folds_in_process`), by cross-validation and the dry run alike."""
    return int((np.atleast_2d(folds)[0] != 0).sum())


def evaluate_spec(
    spec: PipelineSpec | EnsembleSpec,
    X: pd.DataFrame,
    y: pd.Series,
    folds: np.ndarray,
    problem: Problem,
    *,
    cache_dir: Path | None = None,
    time_limit: float | None = None,
    n_jobs: int = 2,
    memory_limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    prune: Callable[[int, float], bool] | None = None,
    mapped_from: Path | None = None,
) -> CandidateResult:
    """Cross-validate a spec on the development part; identical specs come from the cache.

    `folds` gives each development row's fold, either one assignment (shape (n,)) or one per
    repeat (shape (repeats, n)); fold scores are listed repeat by repeat.
    `time_limit` bounds the candidate: each fold fit may take limit × n_jobs / K seconds (joblib's
    per-task timeout: its share of one repeat of K folds), and the candidate stops when the
    limit has passed after any fit, so it ends within about the limit plus one fit; it stops
    sooner, after any fit, when the folds done show the rest cannot end within the limit
    (`projected_seconds`).
    `progress(done, total)` is called before the first fold and after each one (live views use
    it); folds still run through joblib, whose results arrive in order as a generator.
    `prune(fold, running_mean)` (a search trial's pruner, tools/tuning.py) is asked after each fold
    but the last with the running mean of the primary metric; when it says stop, the remaining
    folds are cancelled and the result is "pruned", with the scores of the folds that ran (never
    cached: the same spec may be asked for in full later).
    `memory_limit` (bytes, None: none) fits the folds one at a time in this process, each with
    `n_jobs` threads, when `n_jobs` parallel workers would not fit in it (`folds_in_process`).
    `mapped_from` is the file `X` and `y` are mapped from, if they are: on a Dask cluster whose
    workers can all read it, fold tasks carry its path instead of the data (`MappedData`).
    """
    key = spec_hash(spec)
    cached = cache_dir / f"{key}.json" if cache_dir else None
    if cached is not None and cached.exists():
        return CandidateResult(**json.loads(cached.read_text()))
    folds = np.atleast_2d(folds)
    plan = fold_plan(folds)
    n_folds = len(plan)
    if cache_dir is not None:
        started = time.perf_counter()
        from_cache = (
            _vote_from_cache(spec, y, folds, problem, cache_dir, progress)
            if isinstance(spec, EnsembleSpec)
            else _threshold_from_cache(spec, y, folds, problem, cache_dir, progress)
        )
        if from_cache is not None:
            result = _collect(key, from_cache, folds, problem, time.perf_counter() - started, cache_dir)
            _save_result(cached, result)
            return result
        if _tunes_threshold(spec, problem):  # its model first, at the default threshold, with no pruner
            model = evaluate_spec(
                spec.model_copy(update={"threshold": "default"}),
                X,
                y,
                folds,
                problem,
                cache_dir=cache_dir,
                time_limit=time_limit,
                n_jobs=n_jobs,
                memory_limit=memory_limit,
                progress=progress,
                mapped_from=mapped_from,
            )
            return _threshold_on_its_model(spec, model, y, folds, problem, cache_dir, started)
    n_threads = 1
    if folds_in_process(fold_training_rows(folds), X.shape[1], n_jobs, memory_limit):
        n_jobs, n_threads = 1, n_jobs  # joblib runs n_jobs=1 in this process, without a pool
    fold_timeout = None
    if time_limit is not None and n_jobs != 1:  # a fit may take its share of one repeat; the whole is checked below
        per_repeat = int(folds[0].max()) + 1
        fold_timeout = max(1.0, time_limit * max(1, min(n_jobs, per_repeat)) / per_repeat)
    started = time.perf_counter()
    allowed = f"{round(time_limit, 2):g} s" if time_limit is not None else "its time limit"
    width: int | None = None  # how many folds run at once
    overrun: str | None = None  # why the candidate was stopped before its time was up
    report = progress or (lambda done, total: None)
    try:
        report(0, n_folds)
        outputs: list[Any] = []
        data: tuple[pd.DataFrame | MappedData, pd.Series | None] = (X, y)
        if mapped_from is not None and n_jobs != 1 and _workers_read(mapped_from):
            data = (MappedData(str(mapped_from)), None)
        parallel = joblib.Parallel(n_jobs=n_jobs, timeout=fold_timeout, return_as="generator")
        assignments = {r: fold_assignment(folds, r) for r in {r for r, _ in plan}}
        fits = parallel(joblib.delayed(_fit_fold)(spec, problem, *data, assignments[r], k, n_threads) for r, k in plan)
        if n_jobs == 1:  # fitted in this process, which joblib's worker limits do not reach
            fits = _within_threads(fits, n_threads)
        for output in fits:
            if stop_requested():  # the command is being stopped (tools/stop_request.py): no outcome to record
                _cancel(fits)
                raise KeyboardInterrupt
            outputs.append(output)
            report(len(outputs), n_folds)
            if prune is not None and len(outputs) < n_folds:
                done = [out[0][problem.primary_metric] for out in outputs]
                if prune(len(outputs) - 1, float(np.mean(done))):
                    _cancel(fits)
                    raise _Pruned
            if time_limit is not None and len(outputs) < n_folds:
                elapsed = time.perf_counter() - started
                if width is None:  # asked once, of the backend in use: a Dask cluster runs more than n_jobs
                    width = 1 if n_jobs == 1 else max(1, min(joblib.effective_n_jobs(n_jobs), n_folds))
                fold_seconds = [out[3] + out[4] for out in outputs]
                projected = projected_seconds(elapsed, fold_seconds, n_folds, width)
                if elapsed > time_limit or projected > time_limit:
                    if elapsed <= time_limit:
                        overrun = (
                            f"stopped after {len(outputs)} of {n_folds} folds: at {np.median(fold_seconds):.2g} s a "
                            f"fold, they would end after about {projected:.0f} s, past the {allowed} allowed"
                        )
                    _cancel(fits)
                    raise TimeoutError
    except (TimeoutError, multiprocessing.TimeoutError):  # joblib raises the multiprocessing one
        result = CandidateResult(
            key,
            "timeout",
            fit_seconds=time.perf_counter() - started,
            error=overrun or f"training exceeded {allowed}",
        )
    except _Pruned:
        partial = _collect(key, outputs, folds, problem, time.perf_counter() - started, None)
        partial.status = "pruned"
        mean = partial.cv.get(problem.primary_metric, float("nan"))
        partial.error = (
            f"pruned after {len(outputs)} of {n_folds} folds: running mean {problem.primary_metric} {mean:.4g} "
            "is worse than the median of the search's earlier trials"
        )
        return partial
    except Exception as exc:  # a spec that does not run is an outcome, not a crash…
        if stop_requested():  # …but a fold whose worker was stopped with the command is not
            raise KeyboardInterrupt from exc
        result = CandidateResult(key, "failed", fit_seconds=time.perf_counter() - started, error=short_error(exc))
    else:
        result = _collect(key, outputs, folds, problem, time.perf_counter() - started, cache_dir)
    if result.status != "timeout":  # a later run may allow more time
        _save_result(cached, result)
    return result


def _cancel(fits: Generator[Any, None, None]) -> None:
    """Cancel the fold fits not yet done, without joblib's warning that it cancelled them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(cancelled|not used)", category=UserWarning)
        fits.close()


def projected_seconds(elapsed: float, fold_seconds: list[float], n_folds: int, width: int) -> float:
    """When a candidate's folds would end at the earliest, from the folds done so far.

    A candidate that cannot finish in the time it may take is stopped as soon as its first folds
    say so, not when the time is up: a CatBoost proposal late in a 60 s run on a small table could
    take the rest of the run to time out, leaving nothing for ideas that would have fitted
    (docs/decisions.md, "Stopping a candidate that cannot finish"). The projection errs towards
    letting a candidate run: the `width - 1` folds running beside the newest are taken as about
    to end, and the rest as taking the median fold's time, `width` at a time.
    """
    waiting = max(0, n_folds - len(fold_seconds) - (width - 1))
    return elapsed + waiting * float(np.median(fold_seconds)) / width


def _save_result(path: Path | None, result: CandidateResult) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result.to_dict()))
        tmp.replace(path)


def _cached_folds(
    cache_dir: Path, spec: PipelineSpec, shape: tuple[int, ...]
) -> tuple[np.ndarray, CandidateResult] | None:
    """A cross-validated spec's out-of-fold predictions (of this shape, all finite) and its cached
    result, or None when either is missing or does not fit the folds."""
    key = spec_hash(spec)
    oof, record = load_oof(cache_dir, key), cache_dir / f"{key}.json"
    if oof is None or oof.shape != shape or not np.isfinite(oof).all() or not record.exists():
        return None
    return oof, CandidateResult(**json.loads(record.read_text()))


def _vote_from_cache(
    spec: EnsembleSpec,
    y: pd.Series,
    folds: np.ndarray,
    problem: Problem,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> list[FoldOutput] | None:
    """The folds of a soft vote from its members' cached out-of-fold predictions, or None when a
    member's are missing (then the blend is trained like any candidate).

    Why this is the blend's cross-validation, not an estimate of it: a member's out-of-fold
    predictions on a fold come from a model that never saw that fold, and a soft vote predicts the
    weighted mean of its members' probabilities (values, for a regressor), which is what
    VotingClassifier and VotingRegressor compute. Ensemble selection over the whole ledger then
    costs no training at all, so it is never the move a spent budget cuts off. Stacking trains
    a meta-model on inner folds and is always trained.
    """
    if spec.method != "voting":
        return None
    width = 1 if problem.task_type == "regression" else len(problem.classes)
    members = []
    for member in spec.members:
        cached = _cached_folds(cache_dir, member, (*folds.shape, width))
        if cached is None:
            return None
        members.append(cached)
    blend = np.average(np.stack([oof for oof, _ in members]), axis=0, weights=spec.weights)
    fit_seconds = sum(result.fold_fit_seconds for _, result in members)  # what the blend's fold fit would take
    predict_seconds = sum(result.fold_predict_seconds for _, result in members)
    plan = fold_plan(folds)
    report = progress or (lambda done, total: None)
    report(0, len(plan))
    outputs = []
    for r, k in plan:
        rows = np.flatnonzero(folds[r] == k)
        block = blend[r, rows]
        if problem.task_type == "regression":
            pred = Predictions(y_pred=block[:, 0])
        else:
            pred = Predictions.from_proba(block, problem.classes, problem.positive_class)
        scores = score_all(scored_metrics(problem), y.iloc[rows].to_numpy(), pred)
        outputs.append((scores, block, {"n_members": len(spec.members)}, fit_seconds, predict_seconds))
        report(len(outputs), len(plan))  # live views show the folds scored, as for a trained candidate
    return outputs


THRESHOLD_GRID = 100
"""Thresholds tried between the lowest and highest score, as TunedThresholdClassifierCV's default."""


def _tunes_threshold(spec: PipelineSpec | EnsembleSpec, problem: Problem) -> TypeGuard[PipelineSpec]:
    return isinstance(spec, PipelineSpec) and spec.threshold == "tuned" and problem.task_type == "binary"


def _threshold_on_its_model(
    spec: PipelineSpec,
    model: CandidateResult,
    y: pd.Series,
    folds: np.ndarray,
    problem: Problem,
    cache_dir: Path,
    started: float,
) -> CandidateResult:
    """A tuned threshold whose model had not been cross-validated: `evaluate_spec` has just
    evaluated the model at the default threshold (`model`, cached like any candidate), and the
    threshold comes from its out-of-fold predictions (`_threshold_from_cache`), so the spec costs
    one fit per fold, not four. `started`: when the spec's evaluation began.

    Why: a tuned threshold that became the incumbent is inherited by every change made to it, a
    new family included, and scikit-learn's inner tuning (3 more fits per fold) made each of those
    candidates four times as costly. On swiss_labor a threshold that had won by 0.0005 of CV cost
    a 60 s run half its experiments, and the random forest and extra trees their time limits.
    The search's pruner is not passed on: it compares running means of tuned thresholds, which the
    model's default-threshold folds are not.
    """
    key = spec_hash(spec)
    outputs = _threshold_from_cache(spec, y, folds, problem, cache_dir) if model.status == "ok" else None
    if outputs is None:
        why = model.error or "its out-of-fold predictions are not finite"
        status = model.status if model.status != "ok" else "failed"
        result = CandidateResult(key, status, fit_seconds=time.perf_counter() - started, error=why)
    else:
        result = _collect(key, outputs, folds, problem, time.perf_counter() - started, cache_dir)
    if result.status != "timeout":  # a later run may allow more time
        _save_result(cache_dir / f"{key}.json", result)
    return result


def _threshold_from_cache(
    spec: PipelineSpec,
    y: pd.Series,
    folds: np.ndarray,
    problem: Problem,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> list[FoldOutput] | None:
    """The folds of a tuned decision threshold from its base model's cached out-of-fold
    predictions, or None when they are missing (then `evaluate_spec` evaluates the model first).

    A tuned threshold leaves the model as it is and moves only the cut between the classes, so
    it needs no training once the model's out-of-fold probabilities are known. For each fold the
    threshold is the one that maximises the threshold objective (`threshold_scorer`) on the
    out-of-fold predictions of the *other* folds of the same repeat, over a grid of
    `THRESHOLD_GRID` thresholds, and it is scored on the fold itself: the fold's labels never
    choose its threshold. It differs from TunedThresholdClassifierCV inside each fold (3 inner
    fits, 4 fits in all) in one way: the other folds' predictions come from models whose training
    rows included this fold, so its labels reach the choice only through those models. Delivery
    refits the spec as it is, with scikit-learn's inner tuning on the whole development part.
    """
    if not _tunes_threshold(spec, problem):
        return None
    cached = _cached_folds(cache_dir, spec.model_copy(update={"threshold": "default"}), (*folds.shape, 2))
    if cached is None:
        return None
    oof, base_result = cached
    classes = np.asarray(problem.classes)
    positive = problem.positive_class if problem.positive_class is not None else classes[1]
    pos = int(np.flatnonzero(classes == positive)[0])
    negative = classes[1 - pos]
    objective = threshold_objective(problem.primary_metric)
    y_positive = y.to_numpy() == positive
    report = progress or (lambda done, total: None)
    plan = fold_plan(folds)
    report(0, len(plan))
    outputs = []
    for r, k in plan:
        rows, others = np.flatnonzero(folds[r] == k), np.flatnonzero(folds[r] != k)
        chosen_on = oof[r, others, pos]
        grid = np.linspace(chosen_on.min(), chosen_on.max(), THRESHOLD_GRID)
        threshold = float(grid[int(np.argmax(threshold_scores(objective, y_positive[others], chosen_on, grid)))])
        block = oof[r, rows]
        labels = np.where(block[:, pos] >= threshold, positive, negative)
        pred = Predictions(labels, block, problem.classes, problem.positive_class)
        scores = score_all(scored_metrics(problem), y.iloc[rows].to_numpy(), pred)
        params = {**base_result.fitted_params, "threshold": threshold}  # the model's own, for the verifier
        outputs.append((scores, block, params, base_result.fold_fit_seconds, base_result.fold_predict_seconds))
        report(len(outputs), len(plan))
    return outputs


class _Pruned(Exception):
    """A search trial's pruner stopped its cross-validation (not an error: a verdict)."""


def _collect(
    key: str, outputs: list[FoldOutput], folds: np.ndarray, problem: Problem, seconds: float, cache_dir: Path | None
) -> CandidateResult:
    fold_scores = {m: [_finite(out[0][m]) for out in outputs] for m in scored_metrics(problem)}
    if cache_dir is not None:
        oof = np.full((folds.shape[0], folds.shape[1], outputs[0][1].shape[1]), np.nan)
        for (r, k), out in zip(fold_plan(folds), outputs, strict=True):
            oof[r, folds[r] == k] = out[1]
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(cache_dir / f"{key}.oof.npy", oof)
    return CandidateResult(
        spec_hash=key,
        status="ok",
        fold_scores=fold_scores,
        cv={m: _finite(float(np.mean(v))) for m, v in fold_scores.items()},
        cv_std={m: _finite(float(np.std(v))) for m, v in fold_scores.items()},
        fit_seconds=round(seconds, 3),
        fitted_params=_json_safe(outputs[0][2]),
        fold_fit_seconds=round(float(np.mean([out[3] for out in outputs])), 4),
        fold_predict_seconds=round(float(np.mean([out[4] for out in outputs])), 4),
    )


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else float("nan")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def fit_final(
    spec: PipelineSpec | EnsembleSpec, X: pd.DataFrame, y: pd.Series, problem: Problem, n_threads: int = 1
) -> Any:
    """Refit a spec on the whole development part: this is the model a run delivers.
    `n_threads` is the model's own threads (one, unless folds are fitted in this process)."""
    model = build_pipeline(
        spec,
        problem.task_type,
        primary_metric=problem.primary_metric,
        pos_label=problem.positive_class,
        seed=problem.seed,
        n_rows=len(X),
        n_threads=n_threads,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    return model


def score_holdout(model: Any, X: pd.DataFrame, y: pd.Series, problem: Problem) -> dict[str, float]:
    """Scores on the holdout part; called once per delivered model, never during the search."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred: Predictions = predict(model, X, problem.task_type, problem.classes, problem.positive_class)
    return {m: _finite(v) for m, v in score_all(problem.metrics, y.to_numpy(), pred).items()}


def load_oof(cache_dir: Path, key: str) -> np.ndarray | None:
    """A candidate's out-of-fold predictions, shape (repeats, development rows, columns): class
    probabilities in the task's class order, or one column of predicted values."""
    path = cache_dir / f"{key}.oof.npy"
    if not path.exists():
        return None
    oof = np.load(path)
    return oof[None] if oof.ndim == 2 else oof  # a cache written before folds were repeated


__all__ = [
    "METRICS",
    "CandidateResult",
    "Problem",
    "Split",
    "evaluate_spec",
    "fit_final",
    "fold_plan",
    "load_oof",
    "make_split",
    "score_holdout",
]


def dry_run(
    spec: PipelineSpec | EnsembleSpec,
    X: pd.DataFrame,
    y: pd.Series,
    problem: Problem,
    n_rows: int = 400,
    *,
    time_limit: float | None = None,
    n_jobs: int = 2,
    memory_limit: int | None = None,
    fold_rows: int | None = None,
) -> str | None:
    """Fit a spec on a small sample of every class and predict; return the error, or None if it runs.

    This is the Executor's tool for checking its work before the environment spends a full
    cross-validation on it. With `time_limit` (the run's candidate time limit) the fit runs in a
    joblib worker process that is stopped when the limit passes, as a candidate's folds are: an
    agent's spec (a chat model may ask for 5,000 boosting rounds) cannot hold a step forever.
    The pool has `n_jobs` workers, so it is the one cross-validation reuses. When the run's folds
    are fitted in this process (`n_jobs` = 1, or `folds_in_process` for `memory_limit`), so is
    the dry run: its limit could not be kept by the folds that follow it, and a pool started only
    for it costs each run two interpreters' start-up (3 s of a 6-step penguins run at `n_jobs` = 1).
    `fold_rows` (`fold_training_rows` of the run's folds; default all of `X`) makes that decision
    on the rows the folds will fit, so the two agree.
    """
    shuffled = y.iloc[np.random.default_rng(problem.seed).permutation(len(y))]
    if problem.task_type == "regression":
        sample = shuffled.index[:n_rows]
    else:
        per_class = max(10, n_rows // max(1, len(problem.classes)))
        sample = shuffled.groupby(shuffled, observed=True).head(per_class).index
    in_process = folds_in_process(len(X) if fold_rows is None else fold_rows, X.shape[1], n_jobs, memory_limit)
    if time_limit is None or n_jobs == 1 or in_process:
        with threadpool_limits(limits=max(1, n_jobs)):  # the threads the folds here get (`_within_threads`)
            return _dry_fit(spec, X.loc[sample], y.loc[sample], problem)
    try:
        parallel = joblib.Parallel(n_jobs=n_jobs, timeout=max(1.0, time_limit))
        (error,) = parallel([joblib.delayed(_dry_fit)(spec, X.loc[sample], y.loc[sample], problem)])
    except (TimeoutError, multiprocessing.TimeoutError):
        return f"TimeoutError: the dry run on {len(sample)} rows exceeded the candidate time limit ({time_limit:g} s)"
    except Exception as exc:  # the worker could not start or died: still an answer, not a crash
        return short_error(exc)
    return None if error is None else str(error)


def _dry_fit(spec: PipelineSpec | EnsembleSpec, X: pd.DataFrame, y: pd.Series, problem: Problem) -> str | None:
    try:
        model = fit_final(spec, X, y, problem)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predict(model, X.iloc[:50], problem.task_type, problem.classes, problem.positive_class)
    except Exception as exc:  # the point is to report any failure as text
        return short_error(exc)
    return None
