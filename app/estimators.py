"""tandem as scikit-learn estimators: `TandemClassifier().fit(X, y).predict(X_new)`.

What FLAML's `AutoML().fit(X, y)` and AutoGluon's `TabularPredictor(label).fit(df)` users expect:
an object that drops into `cross_val_score`, a `Pipeline` or `GridSearchCV`, pickles, and after
`fit` holds the model and what the search found. Each `fit` is a real tandem run (`run_task` on
the frame, in its own run folder): the Scientist and the Executor search, the environment
cross-validates every candidate on fixed folds and keeps a holdout for the delivered model's
honest score. The fitted estimator keeps everything it needs in memory (`model_`, `ledger_`,
`leaderboard()`), so it pickles and predicts without its run folder; the folder stays for
`tandem leaderboard`, `tandem show`, `tandem predict` and `tandem resume`.

The scikit-learn contract, as the rules for estimators state it: `__init__` stores its arguments
unchanged (budgets, metrics, seed, agents, folders are all parameters, so `get_params`,
`set_params` and `clone` work), `fit` validates its input, learns, sets attributes ending in `_`
and returns `self`; `predict` checks the estimator is fitted and the input has the columns of
`fit`. Which of scikit-learn's own estimator checks a search over a cross-validated task cannot
pass, and why, is `expected_failed_checks` (tests/test_estimators.py runs the rest).

How the data reaches tandem: `X` (a DataFrame keeps its columns and dtypes; an array gets the
columns x0, x1, ...) and `y` are written as the run's CSV, so the run trains on what tandem reads
back from that file, exactly as for a CSV from the command line; `predict` passes new rows
through the same write-and-read, so a column is typed at predict time as it was at fit time.
Class labels that would not survive the CSV (such as the text "1", or floats) are given to tandem
as their index in `classes_` and mapped back, so `predict` always returns the labels of `y`.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import tempfile
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import Tags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from tandem.api import find_run, load_model, run_task
from tandem.graph.context import RunContext
from tandem.graph.persistence import new_run_id
from tandem.leaderboard import leaderboard_of_folder
from tandem.live import make_display
from tandem.tools.data import check_classes, read_table

CLASSIFIER_EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_classifiers_train": (
        "its two-class problem (two of make_blobs' clusters) has a column that on its own separates the "
        "classes with ROC-AUC 0.995, which tandem's profile takes for a target leak and leaves out of every "
        "model (as it would a refund flag that gives away churn), so the training accuracy is 0.70, not > 0.83"
    ),
}
"""scikit-learn's checks a `TandemClassifier` fails, each with its reason: what tandem does on
purpose that the check's data runs into. `TandemRegressor` passes them all."""


def expected_failed_checks(estimator: Any) -> dict[str, str]:
    """The checks `estimator` is expected to fail, for `check_estimator(..., expected_failed_checks=)`
    and `parametrize_with_checks` (tests/test_estimators.py)."""
    return dict(CLASSIFIER_EXPECTED_FAILED_CHECKS) if isinstance(estimator, TandemClassifier) else {}


def default_runs_dir() -> Path:
    """Where an estimator's runs go unless `runs_dir` says otherwise: `$TANDEM_RUNS_DIR` when set
    (the folder the `tandem` command uses), else the per-user cache `$XDG_CACHE_HOME/tandem/runs`
    (`~/.cache/tandem/runs`).

    Not `./runs`: `cross_val_score` fits five estimators and a grid search hundreds, and a folder
    of runs appearing in the working directory of a notebook is not what a scikit-learn user
    expects. Not a temporary folder either: the run folder is where `tandem leaderboard`,
    `show`, `predict` and `resume` find the run after `fit` (`run_dir_` names it).
    """
    if os.environ.get("TANDEM_RUNS_DIR"):
        return Path(os.environ["TANDEM_RUNS_DIR"]).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (cache / "tandem" / "runs").resolve()


class _TandemEstimator(BaseEstimator, metaclass=ABCMeta):
    """What the classifier and the regressor share: parameters, input checks, the run, the results."""

    def __init__(
        self,
        *,
        max_iters: int = 20,
        time_budget: float | None = 300.0,
        metrics: Sequence[str] | str | None = None,
        primary_metric: str | None = None,
        folds: int = 5,
        holdout: float = 0.2,
        seed: int = 0,
        scientist: str = "heuristic",
        executor: str = "heuristic",
        policy: str = "playbook",
        n_jobs: int = 2,
        candidate_time_limit: float | None = 300.0,
        runs_dir: str | Path | None = None,
        verbose: bool = False,
    ) -> None:
        self.max_iters = max_iters
        self.time_budget = time_budget
        self.metrics = metrics
        self.primary_metric = primary_metric
        self.folds = folds
        self.holdout = holdout
        self.seed = seed
        self.scientist = scientist
        self.executor = executor
        self.policy = policy
        self.n_jobs = n_jobs
        self.candidate_time_limit = candidate_time_limit
        self.runs_dir = runs_dir
        self.verbose = verbose

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # tandem's pipelines impute (or the model handles gaps)
        tags.input_tags.string = True  # text columns are categories
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        """Fitted once a run delivered a model (`check_is_fitted`); a failed fit leaves it unfitted."""
        return hasattr(self, "model_")

    # ------------------------------------------------------------------------------- fitting

    def fit(self, X: Any, y: Any) -> Any:
        """Run tandem on (X, y) and keep the model it delivers; returns self.

        Raises ValueError when the data cannot make a task (a class too rare for the folds and
        the holdout, too few rows, one class only...) and RuntimeError when the run does not
        deliver (it paused or failed), with the run's id to look at it.
        """
        self._forget_fit()
        frame = self._check_X(X, reset=True)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        target = _target_name(y, list(frame.columns))
        self._check_size(len(frame))
        target_values, task_type = self._check_y(y, len(frame), target)
        self._column_kinds_ = _column_kinds(_through_csv(frame))
        data = frame.assign(**{target: target_values})
        runs_dir = Path(self.runs_dir).expanduser().resolve() if self.runs_dir is not None else default_runs_dir()
        run_id = f"{new_run_id(target)}-{secrets.token_hex(3)}"  # unique when several fit at once
        context = RunContext(
            runs_dir=str(runs_dir),
            max_iters=self.max_iters,
            time_budget=self.time_budget,
            scientist=self.scientist,  # type: ignore[arg-type]  # RunContext and the run check the names
            executor=self.executor,  # type: ignore[arg-type]
            policy=self.policy,
            n_jobs=self.n_jobs,
            candidate_time_limit=self.candidate_time_limit,
        )
        options: dict[str, Any] = {
            "metrics": _metric_names(self.metrics),
            "primary_metric": self.primary_metric,
            "holdout": self.holdout,
            "folds": self.folds,
            "seed": self.seed,
            "task_type": task_type,
            "run_id": run_id,
            "context": context,
        }
        if self.verbose:
            with make_display(context, run_id) as display:
                summary = run_task(
                    data,
                    target,
                    on_update=display.on_update,
                    on_event=display.event_handler,
                    on_approval=display.on_approval,
                    **options,
                )
        else:
            summary = run_task(data, target, **options)
        if summary.get("status") != "delivered":
            raise RuntimeError(
                f"tandem run {run_id} in {runs_dir} did not deliver (status {summary.get('status')!r}); "
                f"look at it with: tandem show {run_id} --runs-dir {runs_dir}"
            )
        folder = find_run(run_id, runs_dir)
        self.model_ = load_model(folder, summary)
        self.run_id_ = run_id
        self.run_dir_ = str(folder.path)
        self.summary_ = summary
        self.best_experiment_ = int(summary["best"]["experiment_id"])
        self.primary_metric_ = str(summary["task"]["primary_metric"])
        self.cv_score_ = summary["best"]["cv"].get(self.primary_metric_)
        self.holdout_score_ = summary["best"]["holdout"].get(self.primary_metric_)
        self.ledger_ = _ledger_frame(folder.experiments)
        self.leaderboard_ = pd.DataFrame(leaderboard_of_folder(folder.path)).set_index("experiment")
        return self

    def _forget_fit(self) -> None:
        """Drop what an earlier fit learnt, so a fit that fails leaves the estimator unfitted
        rather than the earlier model answering under the new data's labels and columns."""
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("__")]:
            delattr(self, name)

    def leaderboard(self) -> pd.DataFrame:
        """The run's experiments, best CV score first: family, key parameters, CV score and fold
        spread, seconds to fit and to predict one fold, and which one was delivered (the same rows
        as `tandem leaderboard RUN`)."""
        check_is_fitted(self)
        return self.leaderboard_.copy()

    def _check_size(self, n_rows: int) -> None:
        """Too few rows for the folds and the holdout: said before a run folder is made (folds and
        holdout out of their ranges are left to tandem's own check, which names the range)."""
        folds, holdout = self.folds, self.holdout
        if not isinstance(folds, int) or folds < 2 or not isinstance(holdout, int | float) or not 0 < holdout <= 0.9:
            return
        need = folds
        while need - math.ceil(need * float(holdout)) < folds:
            need += 1
        if n_rows < need:
            raise ValueError(
                f"{type(self).__name__} needs at least {need} samples for {folds}-fold cross-validation plus a "
                f"{float(holdout):.0%} holdout; got {n_rows} sample(s) (n_samples={n_rows})"
            )

    @abstractmethod
    def _check_y(self, y: Any, n_rows: int, target: str) -> tuple[Any, str]:
        """y checked for this kind of estimator, as the run's target column, and the task type."""

    # ------------------------------------------------------------------------------- input

    def _check_X(self, X: Any, *, reset: bool) -> pd.DataFrame:
        """X as the frame tandem sees: checked as scikit-learn checks it (shape, feature names and
        count, no complex or sparse data, no infinity), with the column names fixed at fit."""
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=reset, skip_check_array=True)
            # dates and durations cannot be stacked with numbers into one array: checked apart
            stackable = X.select_dtypes(exclude=["datetime", "datetimetz", "timedelta"])
            check_array(
                stackable if stackable.shape[1] else X.isna(), dtype=None, ensure_all_finite="allow-nan", estimator=self
            )
            frame = X.copy()
        else:
            values = validate_data(self, X, reset=reset, dtype=None, ensure_all_finite="allow-nan")
            frame = pd.DataFrame(values)
        if reset:
            self._columns_ = _column_names(X, frame.shape[1])
        frame.columns = pd.Index(self._columns_)
        return frame

    def _rows(self, X: Any) -> pd.DataFrame:
        """New rows typed as tandem typed the training data (the CSV written and read back, then
        each column converted to its kind at fit), for the delivered model."""
        check_is_fitted(self)
        frame = _through_csv(self._check_X(X, reset=False))
        for name, kind in self._column_kinds_.items():
            column = frame[name]
            if kind == "number" and not pd.api.types.is_numeric_dtype(column):
                converted = pd.to_numeric(column, errors="coerce")
                bad = column[converted.isna() & column.notna()]
                if len(bad):
                    raise ValueError(
                        f"column {name!r} was numeric at fit but holds {bad.iloc[0]!r} (row {bad.index[0]}); "
                        "give it numbers or leave the cell empty"
                    )
                frame[name] = converted
        return frame  # text columns read as numbers are made text by the model, "1" not "1.0" (DeliveredModel)


class TandemClassifier(ClassifierMixin, _TandemEstimator):
    """A classifier found by a tandem run: `fit(X, y)`, `predict`, `predict_proba`, `score`.

    Parameters are the run's settings: `max_iters` and `time_budget` (working seconds, delivery's
    included) bound it; `metrics` and `primary_metric` say what is measured and what decides
    (default: tandem's choice for the task, F1 macro first); `folds` and `holdout` fix the
    cross-validation and the share kept for the final score; `seed` makes the run repeatable;
    `scientist`, `executor` (`heuristic` or `llm`) and `policy` (`playbook` or a file from
    `tandem train`) choose the agents; `n_jobs` fold fits run in parallel and each candidate may
    take `candidate_time_limit` seconds; `runs_dir` is where run folders go (`default_runs_dir`);
    `verbose=True` shows the live display (nothing is printed otherwise).

    Fitted attributes: `model_` (the delivered scikit-learn model), `classes_`, `n_features_in_`,
    `feature_names_in_` (for a DataFrame with text column names), `run_id_` and `run_dir_` (the
    run folder), `best_experiment_` (the delivered experiment's id), `ledger_` (every experiment
    as a DataFrame row), `summary_` (summary.json), `primary_metric_`, `cv_score_` and
    `holdout_score_` (the delivered model's scores on that metric); `leaderboard()`.

    `score(X, y)` is scikit-learn's default for a classifier, the accuracy, whatever metric
    the run optimised (`cross_val_score(..., scoring="f1_macro")` scores another).
    """

    def _check_y(self, y: Any, n_rows: int, target: str) -> tuple[Any, str]:
        labels = _target_array(y, n_rows)
        check_classification_targets(labels)
        self.classes_, index = np.unique(labels, return_inverse=True)
        task_type = "binary" if len(self.classes_) == 2 else "multiclass"
        kept = _labels_survive_csv(self.classes_)
        folds, holdout = self.folds, self.holdout
        sensible = isinstance(folds, int | np.integer) and folds >= 2 and isinstance(holdout, float) and 0 < holdout < 1
        if not kept and sensible:
            # the run sees each class by its index: its checks would name "class 2", not the label
            check_classes(pd.Series(labels), target, task_type, int(folds), float(holdout), n_rows)
        self._labels_ = [_plain(c) for c in self.classes_] if kept else list(range(len(self.classes_)))
        return (labels if kept else index), task_type

    def predict(self, X: Any) -> np.ndarray:
        """The class of each row of X (labels as in the y given to fit)."""
        rows = self._rows(X)  # checks the estimator is fitted first
        predicted = self.model_.predict(rows)
        position = {label: i for i, label in enumerate(self._labels_)}
        return self.classes_[[position[_plain(v)] for v in predicted]]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of each row, one column per class in the order of `classes_`."""
        rows = self._rows(X)
        proba = np.asarray(self.model_.predict_proba(rows), dtype=float)
        model_labels = [_plain(c) for c in self.model_.classes_]
        return proba[:, [model_labels.index(label) for label in self._labels_]]


class TandemRegressor(RegressorMixin, _TandemEstimator):
    """A regressor found by a tandem run: `fit(X, y)`, `predict`, `score`.

    The parameters and fitted attributes are `TandemClassifier`'s (without `classes_`); the
    default metrics are tandem's for regression, RMSE first.

    `score(X, y)` is scikit-learn's default for a regressor, R², whatever metric the run
    optimised.
    """

    def _check_y(self, y: Any, n_rows: int, target: str) -> tuple[Any, str]:
        values = _target_array(y, n_rows)
        try:
            numbers = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            name = type(self).__name__
            raise ValueError(f"{name} needs a numeric target y; got values such as {values[0]!r}") from None
        if not np.isfinite(numbers).all():  # None in an object array passed the finiteness check as a value
            raise ValueError("Input y contains NaN.")
        return numbers, "regression"

    def predict(self, X: Any) -> np.ndarray:
        """The predicted value of each row of X."""
        rows = self._rows(X)
        return np.asarray(self.model_.predict(rows), dtype=float)


# ----------------------------------------------------------------------------------- helpers


def _metric_names(metrics: Sequence[str] | str | None) -> list[str] | None:
    """The metrics parameter as run_task takes it: a list, from a list or a comma-separated text."""
    if metrics is None:
        return None
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    return [str(m).strip() for m in names if str(m).strip()] or None


def _target_array(y: Any, n_rows: int) -> np.ndarray:
    """y as a 1-d array without missing or infinite values; a column vector is flattened with
    scikit-learn's DataConversionWarning."""
    checked = check_array(y, ensure_2d=False, dtype=None, ensure_all_finite=True, input_name="y")
    values = column_or_1d(checked, warn=True)
    if len(values) != n_rows:
        raise ValueError(f"X has {n_rows} samples but y has {len(values)}; give one target value per row")
    return values


def _column_names(X: Any, n_columns: int) -> list[str]:
    """The names tandem sees: a DataFrame's text names without surrounding spaces (as tandem
    reads a CSV header), x0, x1, ... for an array (or a column without a usable name)."""
    if isinstance(X, pd.DataFrame):
        names = [str(c).strip() if isinstance(c, str) and str(c).strip() else f"x{i}" for i, c in enumerate(X.columns)]
    else:
        names = [f"x{i}" for i in range(n_columns)]
    if len(set(names)) != len(names):
        raise ValueError(f"X has column names that are the same once stripped of spaces: {names}")
    return names


def _target_name(y: Any, columns: list[str]) -> str:
    """The target column's name in the run's CSV: y's own name when it has one that is free."""
    name = getattr(y, "name", None)
    base = name.strip() if isinstance(name, str) and name.strip() else "y"
    candidate = base
    while candidate in columns:
        candidate += "_"
    return candidate


def _through_csv(frame: pd.DataFrame, keep: Sequence[str] = ()) -> pd.DataFrame:
    """A frame written as CSV and read back by tandem's own reader, as a run reads its data.

    Not `pd.read_csv`: tandem's reader also reads formatted numbers ("$1,000", "10%") as
    numbers, so a check through plain pandas took such labels and columns for text."""
    with tempfile.TemporaryDirectory(prefix="tandem-rows-") as folder:
        path = Path(folder) / "rows.csv"
        frame.to_csv(path, index=False)
        return read_table(path, keep=keep)


def _column_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """number, bool or text: what each column was once read from the run's CSV."""
    kinds = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column):
            kinds[str(name)] = "bool"
        elif pd.api.types.is_numeric_dtype(column):
            kinds[str(name)] = "number"
        else:
            kinds[str(name)] = "text"
    return kinds


def _labels_survive_csv(classes: np.ndarray) -> bool:
    """Whether tandem, reading the labels back from the CSV, sees them unchanged (same values,
    same types): integers, booleans and most texts do; floats and texts like "1" or "NA" do not."""
    if classes.dtype.kind == "f":
        return False  # tandem reads whole-number floats back as integers
    back = _through_csv(pd.DataFrame({"y": classes}), keep=["y"])["y"]  # read as a run reads its target
    return len(back) == len(classes) and all(
        type(_plain(a)) is type(_plain(b)) and _plain(a) == _plain(b) for a, b in zip(back, classes, strict=True)
    )


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so labels from tandem and from y compare and hash alike."""
    return value.item() if isinstance(value, np.generic) else value


def _ledger_frame(path: Path) -> pd.DataFrame:
    """The run's ledger as a DataFrame, one row per experiment (index: its id), with each CV
    metric and its fold spread also as columns of their own (`cv_<metric>`, `cv_std_<metric>`)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    frame = pd.DataFrame(rows).set_index("id")
    for part in ("cv", "cv_std"):
        scores = pd.DataFrame([r.get(part) or {} for r in rows], index=frame.index)
        for metric in scores.columns:
            frame[f"{part}_{metric}"] = scores[metric]
    return frame


__all__ = [
    "CLASSIFIER_EXPECTED_FAILED_CHECKS",
    "TandemClassifier",
    "TandemRegressor",
    "default_runs_dir",
    "expected_failed_checks",
]
