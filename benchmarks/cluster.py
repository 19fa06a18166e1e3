"""Independent games on a Dask cluster: `--cluster ADDRESS` on `tandem bench` and `tandem league`.

A benchmark is many games (player x task x seed) that share nothing while they play, so they
are Dask tasks: `Client.submit` one per game, `as_completed` to gather them in the order they
finish. Why Dask (`dask.distributed`) and not a scheduler of our own or Ray: scikit-learn and
joblib already speak it (joblib's `dask` backend), its workers are plain Python processes
started with one command (`dask worker tcp://HOST:8786`), and a scheduler that loses a worker
re-runs that worker's tasks elsewhere by itself. Ray would do the same work with a heavier
runtime and no joblib backend that scikit-learn documents.

The rules that keep the results trustworthy:

- **One writer.** Workers only play and return a `PlayResult`; the coordinating process (the one
  that ran `tandem bench`) appends every row to the results store as it arrives. A worker that
  dies loses at most the game it was playing, which the scheduler gives to another worker; a
  game that raises on the way (a worker's import error, not a player's failure, which is already
  a "failed" result) is retried `RETRIES` times.
- **No frames on the wire.** A game carries its task's `TaskData`: the paths of the split that
  `materialize` wrote under the results folder, and the problem; the worker reads the files, as
  a local game does. It goes to the cluster once per task (a task of its own the games depend
  on), not once per game.
- **Same seeds, same results.** A game's outcome depends on its player, task, budget and seed,
  not on where it ran; the report orders rows by the bench's own task, seed and player order, so
  the table is the local one whatever order games finish in.
- **A killed coordinator loses nothing finished.** `tandem bench --resume BENCH_ID` plays only
  the games the store does not hold yet (benchmarks/bench.py).

`ADDRESS` is read by `tools/dask_client.py` (a scheduler `tcp://HOST:8786`, or `local[:N]`).
Workers must be able to import tandem (the same version) and write to the results folder's path (tandem
players keep their run folders there): a shared file system, or the same path on every machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tandem.benchmarks.players import Player, PlayResult, play_safely
from tandem.benchmarks.tasks import TaskData
from tandem.tools.dask_client import CLUSTER_ENV, client_for, cluster_address, dashboard, open_client

__all__ = [
    "CLUSTER_ENV",
    "RETRIES",
    "Game",
    "client_for",
    "cluster_address",
    "dashboard",
    "open_client",
    "play_on_cluster",
    "progress",
]

if TYPE_CHECKING:  # the optional extra `dask`: imported for the type checker only
    from distributed import Client

RETRIES = 2
"""Times a game that raised on its worker (not a player's own failure) is submitted again."""


@dataclass(frozen=True)
class Game:
    """One game to play: a player on a task's data with a budget and a seed."""

    data: TaskData
    player: Player
    budget: float
    seed: int


def play_game(player: Player, data: TaskData, budget: float, seed: int, workdir: str) -> PlayResult:
    """What a worker runs: the game, as `play_safely` plays it locally (a crash is a failed result)."""
    return play_safely(player, data, budget=budget, seed=seed, workdir=Path(workdir))


def _hold(data: TaskData) -> TaskData:
    """A task whose result is its argument: the data, recomputable from the scheduler's copy."""
    return data


def play_on_cluster(
    client: Client,
    games: Sequence[Game],
    workdir: Path,
    on_done: Callable[[Game, PlayResult], None],
    *,
    label: str = "game",
) -> None:
    """Submit every game, and hand each result to `on_done` (in this process) as it completes.

    Each distinct `TaskData` goes to the cluster once, as a task of its own that returns it: the
    games depend on it, and a worker that dies holding it costs a recomputation, not the bench (data
    scattered with `Client.scatter` has no lineage and is lost with its worker). Keys name the game
    (`label`, its position), so the dashboard shows which game a task is; the data's key holds its
    fingerprint (the data and the split), because the scheduler hands a finished task's result to
    any task submitted under the same key while it still holds it, and a league calls this once a
    round with new seeds. A game whose task keeps failing after `RETRIES` raises here, after the
    games that finished were handed over.
    """
    from distributed import as_completed  # the optional extra `dask`

    shared: dict[int, Any] = {}
    for game in games:
        if id(game.data) not in shared:
            shared[id(game.data)] = client.submit(
                _hold, game.data, pure=False, retries=RETRIES, key=f"{label}-data-{game.data.fingerprint}"
            )
    futures = {
        client.submit(
            play_game,
            game.player,
            shared[id(game.data)],
            game.budget,
            game.seed,
            str(workdir),
            retries=RETRIES,
            pure=False,
            key=f"{label}-{i}-{game.data.task.name}-{game.player.name}-seed{game.seed}-{game.data.fingerprint[:12]}",
        ): game
        for i, game in enumerate(games)
    }
    for future in as_completed(futures):
        on_done(futures[future], future.result())


@contextmanager
def progress(what: str, total: int, done: int, link: str | None) -> Iterator[Callable[[str], None]]:
    """A live bar of finished games (rich), and a function that prints one line above it and
    moves it on; the dashboard's link is printed first. On a pipe the lines come out plain."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    ) as bar:
        if link:
            bar.console.print(f"Dask dashboard: {link}", markup=False, highlight=False)
        task = bar.add_task(what, total=total, completed=done)

        def show(line: str) -> None:
            bar.console.print(line, markup=False, highlight=False)
            bar.advance(task)

        yield show
