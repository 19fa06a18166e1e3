"""Measure what scaling out costs and write docs/scale.md: no number in it is typed by hand.

What it measures, on this machine, in a few minutes:

- **bench throughput**: the same games (tasks x cheap players x seeds) played in this process one
  after another, and as Dask tasks on a `LocalCluster` of 1 and of 2 worker processes (one thread
  each), in games per hour; the speed-up is against 1 worker. The results of every setting are
  checked equal (same seeds, same scores) before any time is reported.
- **scheduler overhead**: many tiny tasks (`client.map` of a no-op), wall time per task.
- **bytes per fold**: what one fold task of a run would carry if the development frame were
  pickled into it (what a process pool carries without the mapped frame) against row indices
  over data every worker already holds, and what a run's fold task sends a cluster's workers
  (the mapped file's path and each row's fold); and the bytes of one task's data sent
  once per bench task on a cluster.
- **results store**: seconds per appended row (the coordinator is its only writer).

From those it projects the default benchmark's and a 200-episode training's wall time on 10 and
100 workers, with the assumptions stated in the page. Usage:

    .venv/bin/python scripts/scale.py [--out docs/scale.md] [--quick]
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, LocalCluster

from tandem.benchmarks.bench import run_bench
from tandem.benchmarks.players import parse_players
from tandem.benchmarks.results_store import ResultsStore
from tandem.benchmarks.tasks import default_suite, materialize, select_tasks
from tandem.tools.training import MappedData, fold_assignment

ROOT = Path(__file__).resolve().parents[1]
TASKS = "california_housing,adult_income,breast_cancer,diabetes"
"""Two tasks of 20-30k rows, so a game costs seconds and the table measures the workers, not the scheduler."""
PLAYERS = "linear,lightgbm"
SEEDS = (0, 1, 2)
WORKERS = (1, 2, 4)
GAME_THREADS = 2
"""Threads one game of the plain players uses (`baselines.py` and FLAML's n_jobs)."""
"""LocalCluster sizes the bench is timed on; sizes above the core count too, and the page says what they mean."""
TINY_TASKS = 2000
FOLD_TASK = "california_housing"  # 20k rows: the largest bundled task that reads offline in seconds


def _noop(x: int) -> int:
    return x


def _warm() -> None:
    for module in ("tandem.benchmarks.players", "tandem.benchmarks.baselines"):
        __import__(module)


def outcomes(store: ResultsStore, bench_id: str) -> list[tuple[Any, ...]]:
    rows = sorted(store.results(bench_id), key=lambda r: (r["task"], r["seed"], r["player"]))
    return [(r["task"], r["seed"], r["player"], r["status"], r["score"]) for r in rows]


def bench_once(workers: int | None, seeds: Sequence[int]) -> tuple[float, int, list[tuple[Any, ...]]]:
    """(wall seconds, games, outcomes) of the bench here (`workers` None) or on a LocalCluster.
    The outcomes of the timed bench only (a warm-up game, if any, is a bench of its own)."""
    with tempfile.TemporaryDirectory() as results:
        tasks, players = select_tasks(TASKS), parse_players(PLAYERS)
        for task in tasks:  # every seed's split materialised before the clock starts, as a bench does
            for seed in seeds:
                materialize(task, Path(results) / "tasks", seed)
        if workers is None:
            # imports and first-call costs paid before the clock starts, as the cluster's workers are warmed
            run_bench(tasks[:1], players[:1], seeds=seeds[:1], budget=30, results_dir=results)
            started = time.perf_counter()
            bench_id = run_bench(tasks, players, seeds=seeds, budget=30, results_dir=results)
            wall = time.perf_counter() - started
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
            try:
                with Client(cluster) as client:
                    client.run(_warm)  # imports done, as on a long-lived cluster
                    started = time.perf_counter()
                    bench_id = run_bench(tasks, players, seeds=seeds, budget=30, results_dir=results, cluster=client)
                    wall = time.perf_counter() - started
            finally:
                cluster.close()
        store = ResultsStore(results)
        found = outcomes(store, bench_id)
        return wall, len(found), found


def scheduler_overhead(n: int) -> dict[str, float]:
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        with Client(cluster) as client:
            client.gather(client.map(_noop, range(100), pure=False))  # warm
            started = time.perf_counter()
            client.gather(client.map(_noop, range(n), pure=False))
            mapped = time.perf_counter() - started
            started = time.perf_counter()
            futures = [client.submit(_noop, i, pure=False) for i in range(n // 4)]
            client.gather(futures)
            submitted = time.perf_counter() - started
    finally:
        cluster.close()
    return {"map_ms": 1000 * mapped / n, "submit_ms": 1000 * submitted / (n // 4)}


def fold_bytes() -> dict[str, Any]:
    """Bytes one fold task carries: the development frame pickled in, or row indices only."""
    with tempfile.TemporaryDirectory() as work:
        (task,) = select_tasks(FOLD_TASK)
        data = materialize(task, Path(work))
        X, y, _, _ = data.load()
        folds = 5
        fold_rows = np.array_split(np.arange(len(X)), folds)
        with_frame = len(pickle.dumps((X, y, fold_rows[0]), protocol=5))
        indices_only = len(pickle.dumps(fold_rows[0], protocol=5))
        # what a run's fold task sends a cluster's workers that can read the mapped file: its path, and
        # the fold of every row, as the run builds it
        assignment = np.empty(len(X), dtype=int)
        for k, rows in enumerate(fold_rows):
            assignment[rows] = k
        named_file = MappedData(str(Path(work) / "dev-0123456789abcdef.joblib"))
        named = len(pickle.dumps((named_file, None, fold_assignment(assignment[None, :], 0), 0), protocol=5))
        task_data = len(pickle.dumps(data, protocol=5))
        return {
            "task": FOLD_TASK,
            "rows": len(X),
            "columns": X.shape[1],
            "with_frame": with_frame,
            "indices_only": indices_only,
            "named": named,
            "task_data": task_data,
        }


def store_write_seconds(n: int = 200) -> float:
    with tempfile.TemporaryDirectory() as results:
        store = ResultsStore(results)
        store.add_bench("b", "bench", "", {})
        row = {"bench_id": "b", "task": "t", "fingerprint": "f", "task_type": "binary", "metric": "accuracy",
               "greater_is_better": 1, "player": "p", "seed": 0, "budget": 1.0, "status": "ok", "score": 0.5,
               "scores": {"accuracy": 0.5}, "wall_seconds": 1.0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0,
               "error": None, "details": {}}  # fmt: skip
        started = time.perf_counter()
        for _ in range(n):
            store.add_result(row)
        return (time.perf_counter() - started) / n


def projection(
    seconds_per_game: float, overhead_s: float, store_s: float, games: int, longest: float, workers: int
) -> float:
    """Wall seconds of `games` independent games on `workers` workers: the work spread evenly,
    never less than the longest game, plus what the coordinator does one game at a time."""
    return max(games * seconds_per_game / workers, longest) + games * (overhead_s + store_s)


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "scale.md"))
    parser.add_argument("--quick", action="store_true", help="one seed and fewer tiny tasks (a smoke run)")
    args = parser.parse_args(argv)
    seeds = SEEDS[:1] if args.quick else SEEDS
    tiny = TINY_TASKS // 4 if args.quick else TINY_TASKS

    print("bench here, one game after another...", flush=True)
    load = {"local": os.getloadavg()[0]}
    local_wall, games, local_out = bench_once(None, seeds)
    walls: dict[int, float] = {}
    for workers in WORKERS:
        print(f"bench on a LocalCluster of {workers} worker(s)...", flush=True)
        load[str(workers)] = os.getloadavg()[0]
        wall, _, found = bench_once(workers, seeds)
        if found != local_out:
            print(f"the cluster's results differ from the local ones on {workers} workers", file=sys.stderr)
            return 1
        walls[workers] = wall
    print("scheduler overhead...", flush=True)
    overhead = scheduler_overhead(tiny)
    print("bytes per fold...", flush=True)
    sizes = fold_bytes()
    store_s = store_write_seconds()

    suite = default_suite()
    suite_players = 3  # tandem, linear, lightgbm: the default bench without FLAML
    suite_games = len(suite) * suite_players
    # A tandem game uses its whole budget; the plain players take seconds (assumed 10% of the budget).
    suite_seconds = sum(t.budget * (1 + 2 * 0.1) for t in suite)
    longest = max(t.budget for t in suite)
    episode_seconds, episodes = 120.0, 200  # `tandem train`'s default time budget per episode
    overhead_s = overhead["submit_ms"] / 1000
    rows_projection = []
    for workers in (1, 10, 100):
        bench_s = projection(suite_seconds / suite_games, overhead_s, store_s, suite_games, longest, workers)
        train_s = projection(episode_seconds, overhead_s, store_s, episodes, episode_seconds, workers)
        rows_projection.append((workers, bench_s, train_s))

    per_hour = {w: 3600 * games / s for w, s in walls.items()}
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Scaling out: measured costs and a projection",
        "",
        f"Generated by `scripts/scale.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, on this machine: "
        f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}. The machine was shared with other work while it ran (the load "
        "average is given with each measurement), so times are upper bounds.",
        "",
        "## Bench throughput",
        "",
        f"The same {games} games ({TASKS.replace(',', ', ')} x {PLAYERS.replace(',', ', ')} x seeds "
        f"{', '.join(map(str, seeds))}; cheap players so the run takes minutes), played in one process one after "
        "another and as Dask tasks on a `LocalCluster` (`processes=True`, one thread per worker). The results "
        "of every setting were checked identical (task, seed, player, status, holdout score) before timing "
        "was reported.",
        "",
        "| where | wall time | games per hour | speed-up vs 1 worker | load average when it started |",
        "|---|---|---|---|---|",
        f"| this process, in turn | {local_wall:.1f} s | {3600 * games / local_wall:,.0f} | – | {load['local']:.1f} |",
    ]
    for w in WORKERS:
        lines.append(f"| LocalCluster, {w} worker{'s' if w > 1 else ''} | {walls[w]:.1f} s | {per_hour[w]:,.0f} | "
                     f"{walls[1] / walls[w]:.2f}x | {load[str(w)]:.1f} |")  # fmt: skip
    lines += [
        "",
        f"A load average above {os.cpu_count()} means other processes were using the cores too: the speed-up "
        "of 2 workers over 1 can only show on cores that are free, so read the throughput of a loaded run as "
        "a lower bound.",
    ]
    cores = os.cpu_count() or 1
    if max(WORKERS) * GAME_THREADS > cores:
        lines += [
            "",
            f"Every game uses {GAME_THREADS} threads (the plain LightGBM player and FLAML are given {GAME_THREADS} "
            f"cores, as on the reference machine), and this machine has {cores} cores: the rows with more workers "
            f"than {max(1, cores // GAME_THREADS)} measure oversubscription, where LightGBM's OpenMP threads wait on "
            "each other, not the speed-up that more machines' cores would give. Give `--cluster local:N` at most "
            "cores ÷ threads per game workers; the projection below uses the measured per-game costs instead.",
        ]
    lines += [
        "",
        "## Costs per task",
        "",
        "| what | measured |",
        "|---|---|",
        f"| scheduler overhead, `client.map` of {tiny} no-op tasks on 2 workers | {overhead['map_ms']:.2f} ms a task |",
        f"| scheduler overhead, `client.submit` one by one ({tiny // 4} tasks) | "
        f"{overhead['submit_ms']:.2f} ms a task |",
        f"| appending one result row to the results store (SQLite, the coordinator only) | {1000 * store_s:.2f} ms |",
        f"| one fold task of {sizes['task']} ({sizes['rows']:,} x {sizes['columns']}) with the development frame "
        f"pickled in | {sizes['with_frame'] / 1e6:.2f} MB |",
        f"| the same fold task with row indices over shared data | {sizes['indices_only'] / 1e3:.1f} kB |",
        "| what `tandem run --cluster` sends a worker per fold when the workers can read the run's mapped "
        "development file (its path, and each row's fold in one byte: `fold_assignment`) | "
        f"{sizes['named'] / 1e3:.1f} kB |",
        f"| what a bench sends a worker per task (`TaskData`: the split's file paths and the problem) | "
        f"{sizes['task_data'] / 1e3:.1f} kB |",
        "",
        f"Pickling the frame into every fold task sends {sizes['with_frame'] / max(sizes['indices_only'], 1):,.0f} "
        "times the bytes that indices over data the worker already holds would. A bench on a cluster sends no "
        "frames at all: a game carries the paths of the task's materialised split, which every worker reads "
        "from the results folder (shared storage, or the same path on every machine).",
        "",
        "## Projection to 10 and 100 workers",
        "",
        "Assumptions: the default suite "
        f"({len(suite)} tasks, budgets adding up to {sum(t.budget for t in suite):,.0f} s) with 3 players "
        "(tandem, linear, lightgbm; FLAML left out), one seed; a tandem game uses its whole budget and a plain "
        "player 10% of it; a `tandem train` episode takes its default time budget (120 s), 200 episodes. Work "
        "spreads evenly over the workers, a bench never ends before its longest game, and the coordinator adds "
        "the measured scheduler overhead and store write per game. Every worker has the cores of this machine; "
        "data transfer is not included (see below).",
        "",
        "| workers | default benchmark | 200-episode training |",
        "|---|---|---|",
    ]
    for workers, bench_s, train_s in rows_projection:
        lines.append(f"| {workers} | {human(bench_s)} | {human(train_s)} |")
    lines += [
        "",
        "Training plays its episodes in batches of `--workers` that share one policy snapshot, so more workers "
        "only help as far as the batch is that wide (a wider batch learns from older snapshots).",
        "",
        "## What breaks first",
        "",
        f"- **The results store** does not: one coordinator appends a row in {1000 * store_s:.1f} ms, "
        f"so it keeps up with {1 / store_s:,.0f} finished games a second, far above any cluster's rate of "
        "minute-long games. It must stay on the coordinator's disk (SQLite on a network file system is unsafe).",
        "- **Checkpoint database connections** come next: every run with `--checkpoint-db` holds one connection "
        "while it runs, and PostgreSQL's default `max_connections` is 100, so 100 workers running tandem games "
        "reach it; raise it or put PgBouncer in front before going past ~90 concurrent runs.",
        "- **Data transfer**: a fold task with the frame pickled in is "
        f"{sizes['with_frame'] / 1e6:.1f} MB for a 20k-row task, about 100 times that for a 1M-row one; spread "
        "over many workers that saturates a 1 Gbit/s link well before the CPUs. Runs on a cluster should keep "
        "the data on a shared path and send fold tasks row indices, which they do: a run's development frame is "
        "mapped from a file, and a fold task carries its path and the fold of every row, through joblib's memory "
        "mapping on one machine (docs/benchmarks.md) and as a named file on a cluster whose workers can read it (each "
        "worker maps it once per run). Only where the workers cannot read the file (`TMPDIR` not shared) does "
        "joblib's dask backend send the frame, once per candidate's batch of folds.",
        "- **The scheduler** itself: at "
        f"{overhead['submit_ms']:.1f} ms a task it is not a limit for games that take seconds to minutes.",
        "",
        "## Why Dask, and what is not done",
        "",
        "`dask.distributed` is the engine because scikit-learn and joblib already speak it (joblib's `dask` "
        "backend), its workers are plain Python processes started with one command, and its scheduler re-runs a "
        "lost worker's tasks by itself; Ray would do the same work with a heavier runtime and no joblib backend "
        "that scikit-learn documents. Across runs, `bench`, `league` and `train` take `--cluster` "
        "(benchmarks/cluster.py); within a run, `--cluster` on `run`, `resume` and `fork` puts the fold fits on "
        "the cluster through joblib's dask backend (tandem.run_cluster), the graph and its checkpoints staying "
        "in the driving process; its fold tasks name the mapped development file when the workers can read it "
        "(the fold bytes above). On one machine, `--memory-limit` bounds a run's memory by "
        "fitting folds in the run's process when parallel workers would pass it (docs/benchmarks.md).",
        "",
        "Reproduce: `.venv/bin/python scripts/scale.py` (about five minutes on 2 cores).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
