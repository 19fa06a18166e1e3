"""Benchmark players: anything that turns a task into a holdout score within a time budget.

Why these players: a user who does not run tandem would fit a scaled linear model, LightGBM with
its defaults, or hand the data to an AutoML tool (FLAML) for the same wall-clock time. The
tandem team is a player like any other, in any agent configuration: a player spec such as
`tandem:scientist=llm:max_iters=40` sets fields of the run context (graph/context.py), so a new
agent kind or option is benchmarkable without touching this module.

Every player is given the task's development CSV only and returns its scores on the task's
holdout, computed with the project's metric registry (never the player's own scorer), its wall
time, tokens and cost.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tandem.api import run_task
from tandem.benchmarks.baselines import fit_plain
from tandem.benchmarks.tasks import TaskData
from tandem.cli_options import CONTEXT_NUMBERS, context_number_error
from tandem.graph.context import RunContext
from tandem.nodes.agents import check_agents
from tandem.tools.data import InputError
from tandem.tools.metrics import METRICS, Predictions, score_all
from tandem.tools.policy_file import LEARNED, PLAYBOOK, policy_hash, policy_path
from tandem.tools.training import score_holdout, short_error

#: Player names and what they are; `tandem` and `flaml` take `:key=value` options.
PLAYER_HELP = {
    "tandem": "the tandem team (heuristic agents by default); options set run-context fields, "
    "e.g. tandem:scientist=llm:max_iters=40; price_in/price_out = USD per million tokens",
    "linear": "scaled linear model (logistic / ridge), one-hot categoricals, every column",
    "lightgbm": "LightGBM with default parameters, every column",
    "flaml": "FLAML AutoML with the same time budget (needs `pip install tandem-ml[bench]`); option n_jobs",
    "autogluon": "AutoGluon best_quality with the same time budget, tree models only, in its own venv "
    "(`make autogluon`); option cpus",
    "learned": "learned[:FILE] = tandem whose Scientist plays a policy file from `tandem train` "
    "(bare: the shipped one)",
}
DEFAULT_PLAYERS = ("tandem", "linear", "lightgbm", "flaml")

#: The tandem player's experiment budget unless its options set one. A bench compares players at
#: equal *time*, and the others have no experiment count, so the run's default (40, sized for an
#: interactive run) would stop tandem early: at 300 s it ended 21 of 39 games with a median game of
#: 204 s. This bound is far above what a game reaches in time (a few hundred experiments at 300 s on
#: the smallest tasks), so the time, or the Scientist's own stop rule, ends every game.
TIME_BOUND_EXPERIMENTS = 1000


@dataclass
class PlayResult:
    """What one player did on one task: holdout scores (registry metrics), time, tokens and cost."""

    status: str  # "ok" | "failed"
    scores: dict[str, float | None] = field(default_factory=dict)
    wall_seconds: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Player(Protocol):
    @property
    def name(self) -> str:
        """The player's spec, e.g. `tandem:max_iters=40`: the key results and ratings are stored under."""
        ...

    def check(self) -> None:
        """Raise `InputError` when the player cannot play at all here (missing package, API key…)."""
        ...

    def play(self, data: TaskData, *, budget: float, seed: int, workdir: Path) -> PlayResult: ...

    def withdrawn(self) -> str | None:
        """Why the player can no longer play as it was named (a policy file gone or changed), or None."""
        ...


class _Fixed:
    """Players that depend on no file of the user's: never withdrawn."""

    def withdrawn(self) -> str | None:
        return None


def _clean(scores: dict[str, float]) -> dict[str, float | None]:
    return {m: (float(v) if v is not None and np.isfinite(v) else None) for m, v in scores.items()}


@dataclass(frozen=True)
class PlainPlayer(_Fixed):
    """A plain baseline from tools/baselines.py, fitted on the development part."""

    kind: str  # "linear" | "lightgbm"

    @property
    def name(self) -> str:
        return self.kind

    def check(self) -> None:
        return None

    def play(self, data: TaskData, *, budget: float, seed: int, workdir: Path) -> PlayResult:
        started = time.perf_counter()
        X, y, X_hold, y_hold = data.load()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = fit_plain(self.kind, X, y, data.problem.task_type, seed=seed)  # type: ignore[arg-type]
        scores = score_holdout(model, X_hold, y_hold, data.problem)
        return PlayResult("ok", _clean(scores), wall_seconds=time.perf_counter() - started)


def _literal(text: str) -> Any:
    low = text.strip().lower()
    if low in {"none", "null"}:
        return None
    if low in {"true", "false"}:
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


@dataclass(frozen=True)
class TandemPlayer:
    """The tandem team; `options` are run-context fields (plus token prices for the cost)."""

    options: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        """The options as given, a policy file's pinned hash shortened: a policy file retrained under
        the same name is another player, whose games are neither reused for it nor mixed with its own."""
        return "tandem" + "".join(f":{k}={str(v)[:12] if k == 'policy_hash' else v}" for k, v in self.options)

    def context_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.options if k not in {"price_in", "price_out"}}

    def context(self, runs_dir: str, budget: float) -> Any:
        """The run context of a game: the defaults, this player's options, the bench's budget and
        folder, and `TIME_BOUND_EXPERIMENTS` as the experiment budget unless the options set one."""
        options = {"max_iters": TIME_BOUND_EXPERIMENTS} | self.context_options()
        base = RunContext(runs_dir=runs_dir, time_budget=budget)
        limit = base.candidate_time_limit
        if "candidate_time_limit" not in options and limit is not None:
            options["candidate_time_limit"] = min(limit, budget)
        return RunContext.from_dict(base.to_dict() | options)

    def check(self) -> None:
        check_agents(self.context("runs", 60.0))

    def withdrawn(self) -> str | None:
        """Why this player can no longer play as named (its pinned policy file went away or changed),
        or None: a league then leaves its matches unplayed rather than store a lost game for it."""
        given = dict(self.options)
        if "policy_hash" not in given:
            return None
        try:
            now = policy_hash(policy_path(str(given["policy"])))
        except InputError as exc:
            return str(exc)
        return None if now == given["policy_hash"] else f"policy file {given['policy']} changed since it joined"

    def play(self, data: TaskData, *, budget: float, seed: int, workdir: Path) -> PlayResult:
        context = self.context(str(Path(workdir) / "runs"), budget)
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.name).strip("-")[:40]
        run_id = f"{data.task.name}-{slug}-s{seed}-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        summary = run_task(
            data.dev_csv,
            data.task.target,
            metrics=list(data.problem.metrics),
            primary_metric=data.problem.primary_metric,
            folds=data.task.folds,
            seed=seed,
            holdout_csv=data.holdout_csv,
            task_type=data.problem.task_type,
            run_id=run_id,
            context=context,
        )
        wall = time.perf_counter() - started
        if summary.get("status") != "delivered":
            return PlayResult("failed", wall_seconds=wall, error=f"run {run_id} ended {summary.get('status')!r}")
        tokens = summary.get("tokens", {})
        tokens_in = sum(int(t.get("input", 0)) for t in tokens.values())
        tokens_out = sum(int(t.get("output", 0)) for t in tokens.values())
        prices = dict(self.options)
        cost: float | None
        if "price_in" not in prices and "price_out" not in prices and "cost_usd" in summary:
            stated = summary["cost_usd"]  # the run's own price table (context.prices): per role and total
            cost = stated.get("total") if isinstance(stated, dict) else stated
        elif "price_in" in prices or "price_out" in prices:
            cost = (tokens_in * float(prices.get("price_in", 0)) + tokens_out * float(prices.get("price_out", 0))) / 1e6
        else:
            cost = 0.0 if tokens_in + tokens_out == 0 else None  # tokens spent at an unknown price
        best = summary["best"]
        return PlayResult(
            "ok",
            _clean(best["holdout"]),
            wall_seconds=wall,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost,
            details={
                "run_dir": str(Path(context.runs_dir) / run_id),
                "iterations": summary.get("iterations"),
                "max_iters": context.max_iters,
                "seconds_spent": summary.get("seconds_spent"),
                "stop_reason": summary.get("stop_reason"),
                "delivered": best.get("proposal"),
                "selection": summary.get("selection"),
                "cv": best.get("cv", {}).get(data.problem.primary_metric),
            },
        )


@dataclass(frozen=True)
class FlamlPlayer(_Fixed):
    """FLAML AutoML, searching on the task's own primary metric (from our registry) for `budget` seconds."""

    n_jobs: int = 2

    @property
    def name(self) -> str:
        return "flaml" if self.n_jobs == 2 else f"flaml:n_jobs={self.n_jobs}"

    def check(self) -> None:
        if not flaml_available():
            raise InputError("player 'flaml' needs FLAML: pip install 'tandem-ml[bench]' (or leave flaml out)")

    def play(self, data: TaskData, *, budget: float, seed: int, workdir: Path) -> PlayResult:
        from flaml import AutoML

        started = time.perf_counter()
        X, y, X_hold, y_hold = data.load()
        problem = data.problem
        classify = problem.task_type != "regression"
        classes = problem.classes
        codes = {c: i for i, c in enumerate(classes)}
        y_fit = y.map(codes).astype(int) if classify else y.astype(float)
        spec = METRICS[problem.primary_metric]
        positive = codes.get(problem.positive_class) if classify else None

        def predictions(model: Any, frame: pd.DataFrame) -> Predictions:
            if not classify:
                return Predictions(y_pred=np.asarray(model.predict(frame), dtype=float))
            proba = np.asarray(model.predict_proba(frame), dtype=float)
            return Predictions(
                y_pred=np.asarray(model.predict(frame)).astype(int),
                proba=proba,
                classes=tuple(range(len(classes))),
                pos_label=positive,
            )

        def objective(
            X_val: Any, y_val: Any, estimator: Any, *args: Any, **kwargs: Any
        ) -> tuple[float, dict[str, float]]:
            value = spec(np.asarray(y_val), predictions(estimator, X_val))
            if not np.isfinite(value):
                return float("inf"), {problem.primary_metric: value}
            return (-value if spec.greater_is_better else value), {problem.primary_metric: value}

        automl = AutoML()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            automl.fit(
                X,
                y_fit,
                task="classification" if classify else "regression",
                metric=objective,
                time_budget=budget,
                seed=seed,
                n_jobs=self.n_jobs,
                verbose=0,
                log_file_name="",
                # FLAML gives CatBoost a `catboost_<time>` folder in the working directory and removes
                # it only when the fit ends normally; a fit cut by the time budget left it behind.
                custom_hp={"catboost": {"allow_writing_files": {"domain": False}}},
            )
            pred = predictions(automl, X_hold)
        if classify:  # back to the task's labels, with the dtype a scikit-learn classifier would return
            labels = pd.Series(pred.y_pred).map(dict(enumerate(classes))).to_numpy()
            pred = Predictions(y_pred=labels, proba=pred.proba, classes=classes, pos_label=problem.positive_class)
        scores = score_all(problem.metrics, y_hold.to_numpy(), pred)
        return PlayResult(
            "ok",
            _clean(scores),
            wall_seconds=time.perf_counter() - started,
            details={"best_estimator": automl.best_estimator, "best_config": _plain(automl.best_config)},
        )


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, int | float | str | bool | type(None)) else repr(value)


#: Where AutoGluon's own venv lives: a checkout's `.venv-autogluon` (made by `make autogluon`), or
#: the interpreter named by this variable.
AUTOGLUON_PYTHON_ENV = "TANDEM_AUTOGLUON_PYTHON"
AUTOGLUON_RUNNER = Path(__file__).resolve().with_name("autogluon_runner.py")
AUTOGLUON_SETUP = (
    "player 'autogluon' needs AutoGluon in its own venv (AutoGluon 1.6 pins pandas<2.4, tandem runs "
    "pandas 3): run `make autogluon` in the checkout (about {minutes} minutes, {size} on disk), or set "
    f"{AUTOGLUON_PYTHON_ENV} to a Python that has autogluon.tabular"
)


def autogluon_python() -> Path | None:
    """The interpreter of AutoGluon's venv, or None when there is none that imports it: the one
    `TANDEM_AUTOGLUON_PYTHON` names (only that one, when set), else `.venv-autogluon` in the
    checkout or the current folder."""
    named = os.environ.get(AUTOGLUON_PYTHON_ENV)
    if named:
        candidates = [Path(named).expanduser()]
    else:
        candidates = [root / ".venv-autogluon" / "bin" / "python" for root in (AUTOGLUON_RUNNER.parents[1], Path.cwd())]
    for python in candidates:
        if python.is_file() and _imports_autogluon(str(python)):
            return python
    return None


_AUTOGLUON_CHECKED: dict[str, bool] = {}


def _imports_autogluon(python: str) -> bool:
    if python not in _AUTOGLUON_CHECKED:
        probe = subprocess.run(
            [python, "-c", "import autogluon.tabular"], capture_output=True, timeout=300, check=False
        )
        _AUTOGLUON_CHECKED[python] = probe.returncode == 0
    return _AUTOGLUON_CHECKED[python]


@dataclass(frozen=True)
class AutoGluonPlayer(_Fixed):
    """AutoGluon `best_quality` for `budget` seconds, run in its own venv on the task's files.

    The development rows go to AutoGluon as a CSV (labels as tandem reads them), the holdout's
    features as another; AutoGluon writes its predictions (labels and class probabilities) and
    tandem scores them with its own metric registry, on the same split as every other player.
    """

    cpus: int = 2

    @property
    def name(self) -> str:
        return "autogluon" if self.cpus == 2 else f"autogluon:cpus={self.cpus}"

    def check(self) -> None:
        if autogluon_python() is None:
            raise InputError(AUTOGLUON_SETUP.format(minutes=AUTOGLUON_INSTALL_MINUTES, size=AUTOGLUON_SIZE))

    def play(self, data: TaskData, *, budget: float, seed: int, workdir: Path) -> PlayResult:
        python = autogluon_python()
        if python is None:
            raise InputError(AUTOGLUON_SETUP.format(minutes=AUTOGLUON_INSTALL_MINUTES, size=AUTOGLUON_SIZE))
        started = time.perf_counter()
        folder = Path(workdir) / f"autogluon-{data.task.name}-s{seed}-{uuid.uuid4().hex[:8]}"
        try:
            result = self._play_in(folder, python, data, budget=budget, seed=seed)
        finally:  # its models take 0.2 to 0.5 GB a game: a 24-game bench left 3.4 GB beside the results
            shutil.rmtree(folder, ignore_errors=True)
        return replace(result, wall_seconds=time.perf_counter() - started)

    def _play_in(self, folder: Path, python: Path, data: TaskData, *, budget: float, seed: int) -> PlayResult:
        """One game in `folder` (which the caller removes); wall seconds are the caller's to set."""
        X, y, X_hold, y_hold = data.load()
        problem = data.problem
        classify = problem.task_type != "regression"
        target = data.task.target
        folder.mkdir(parents=True, exist_ok=True)
        train_csv, test_csv, out_csv = folder / "dev.csv", folder / "holdout_X.csv", folder / "predictions.csv"
        labels = y.map(str) if classify else y.astype(float)
        X.assign(**{target: labels.to_numpy()}).to_csv(train_csv, index=False)
        X_hold.to_csv(test_csv, index=False)
        command = [
            str(python),
            str(AUTOGLUON_RUNNER),
            *("--train", str(train_csv), "--test", str(test_csv), "--target", target),
            *("--problem-type", problem.task_type, "--eval-metric", problem.primary_metric),
            *("--time-limit", f"{budget:g}", "--seed", str(seed), "--cpus", str(self.cpus)),
            *("--out", str(out_csv), "--path", str(folder / "model")),
        ]
        if problem.task_type == "binary" and problem.positive_class is not None:
            command += ["--positive-class", str(problem.positive_class)]
        # AutoGluon overruns its limit by the final refit and prediction; far beyond it is a hang
        done = subprocess.run(command, capture_output=True, text=True, timeout=3 * budget + 300, check=False)
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            raised = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b", line)]
            last = (raised or lines or [f"exit status {done.returncode}"])[-1]
            return PlayResult("failed", error=f"AutoGluon: {last[:400]}")
        out = pd.read_csv(out_csv, dtype={"prediction": str} if classify else None)
        if classify:
            by_text = {str(c): c for c in problem.classes}
            proba = np.column_stack([out[f"proba::{c}"].to_numpy(dtype=float) for c in by_text])
            proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)  # float32 rows off by 1e-7
            pred = Predictions(
                y_pred=out["prediction"].map(by_text).to_numpy(),
                proba=proba,
                classes=problem.classes,
                pos_label=problem.positive_class,
            )
        else:
            pred = Predictions(y_pred=out["prediction"].to_numpy(dtype=float))
        scores = score_all(problem.metrics, y_hold.to_numpy(), pred)
        info = json.loads((folder / "predictions.csv.json").read_text())
        return PlayResult("ok", _clean(scores), details=info)


#: Measured when the venv was made on this project's 2-core machine (docs/decisions.md).
AUTOGLUON_INSTALL_MINUTES = "2"
AUTOGLUON_SIZE = "1 GB"


def parse_player(spec: str) -> Player:
    """A player from its spec: `linear`, `lightgbm`, `flaml[:n_jobs=N]`, `autogluon[:cpus=N]`,
    `tandem[:key=value]...`."""
    head, *rest = [part.strip() for part in spec.strip().split(":")]
    if head == "learned":  # learned:FILE is tandem playing that policy file (tandem train); bare, the shipped one
        return _tandem_player(spec, [("policy", policy_path(":".join(rest) if rest else LEARNED))])
    options: list[tuple[str, Any]] = []
    for part in rest:
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise InputError(f"player {spec!r}: options are key=value, separated by ':'")
        options.append((key.strip(), _literal(value)))
    if head in {"linear", "lightgbm"}:
        if options:
            raise InputError(f"player {head!r} takes no options")
        return PlainPlayer(head)
    if head == "flaml":
        extra = [k for k, _ in options if k != "n_jobs"]
        if extra:
            raise InputError(f"player 'flaml' takes only n_jobs, not {', '.join(extra)}")
        n_jobs = dict(options).get("n_jobs", 2)
        if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs < 1:
            raise InputError("player 'flaml': n_jobs must be a whole number of at least 1")
        return FlamlPlayer(n_jobs)
    if head == "autogluon":
        extra = [k for k, _ in options if k != "cpus"]
        if extra:
            raise InputError(f"player 'autogluon' takes only cpus, not {', '.join(extra)}")
        cpus = dict(options).get("cpus", 2)
        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
            raise InputError("player 'autogluon': cpus must be a whole number of at least 1")
        return AutoGluonPlayer(cpus)
    if head == "tandem":
        return _tandem_player(spec, options)
    raise InputError(f"unknown player {head!r}; players: {', '.join(PLAYER_HELP)}")


def _tandem_player(spec: str, options: list[tuple[str, Any]]) -> TandemPlayer:
    #: Not settable here: the bench owns the budget and folder, a bench never waits for a human, and
    #: structured or in-process fields cannot be written as key=value.
    fixed = {"runs_dir", "time_budget", "rewards", "approve", "prices", "python_models", "chat_models"}
    allowed = {f.name for f in fields(RunContext)} - fixed
    for key, value in options:
        if key in {"price_in", "price_out"}:
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise InputError(f"player {spec!r}: {key} must be a non-negative number (USD per million tokens)")
        elif key in fixed:
            raise InputError(f"player {spec!r}: {key} cannot be set per player (the bench sets the budget and folder)")
        elif key not in allowed:
            raise InputError(f"player {spec!r}: unknown option {key!r}; options: {', '.join(sorted(allowed))}")
        elif problem := context_number_error(key, value):  # the range `tandem run --max-iters` etc. checks
            raise InputError(f"player {spec!r}: {key} {problem}")
    # as the command line parses them (memory_limit=2G is bytes), checked just above
    options = [(k, CONTEXT_NUMBERS[k](str(v)) if k in CONTEXT_NUMBERS and v is not None else v) for k, v in options]
    defaults = RunContext().to_dict()
    try:
        RunContext.from_dict(defaults | {k: v for k, v in options if k not in {"price_in", "price_out"}})
    except (TypeError, ValueError) as exc:
        raise InputError(f"player {spec!r}: {short_error(exc)}") from None
    return TandemPlayer(pinned(options))


def pinned(options: Sequence[tuple[str, Any]], digest: str | None = None) -> tuple[tuple[str, Any], ...]:
    """Options whose policy file is pinned to its hash (`digest`, else the file's hash now): each
    game's run then refuses a file changed in between (`frozen_policy`) instead of playing it
    under the player's old name."""
    given = dict(options)
    policy = given.get("policy")
    if policy is None or policy == PLAYBOOK or "policy_hash" in given:
        return tuple(options)
    return (*options, ("policy_hash", digest or policy_hash(policy_path(str(policy)))))


def with_policy(players: list[Player], policy: str | None) -> list[Player]:
    """`--policy`: every tandem player that names no policy of its own plays this one."""
    if not policy:
        return players
    value = policy if policy == PLAYBOOK else policy_path(policy)
    return [
        TandemPlayer(pinned((*p.options, ("policy", value))))
        if isinstance(p, TandemPlayer) and "policy" not in dict(p.options)
        else p
        for p in players
    ]


def parse_players(spec: str | None) -> list[Player]:
    """Comma-separated player specs; None means the default players (FLAML only when installed)."""
    if not spec:
        names = [n for n in DEFAULT_PLAYERS if n != "flaml" or flaml_available()]
    else:
        names = [s.strip() for s in spec.split(",") if s.strip()]
    players = [parse_player(n) for n in names]
    seen: set[str] = set()
    for p in players:
        if p.name in seen:
            raise InputError(f"player {p.name!r} is listed twice")
        seen.add(p.name)
    if not players:
        raise InputError("no players selected")
    return players


def flaml_available() -> bool:
    try:
        import flaml  # noqa: F401
    except ImportError:
        return False
    return True


def play_safely(player: Player, data: TaskData, *, budget: float, seed: int, workdir: Path) -> PlayResult:
    """Run a player; a crash is a failed result (scored as infeasible), never the end of the bench."""
    started = time.perf_counter()
    try:
        # Libraries' warnings would drown the one line per game. Ignoring them is not enough:
        # scikit-learn's threaded fits (inside FLAML) reset the process's warning filters from
        # several threads at once, and then print thousands of lines per game; recording them
        # keeps even those off the terminal.
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("ignore")
            return player.play(data, budget=budget, seed=seed, workdir=workdir)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        return PlayResult("failed", wall_seconds=time.perf_counter() - started, error=short_error(exc))
