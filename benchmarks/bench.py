"""`tandem bench`: players over tasks and seeds, results appended to the store, profiles and AUP.

Why this shape: a benchmark is only trustworthy when every number in its report can be traced
to a stored row and recomputed. So the bench first materialises every task at every seed (seed s
is split seed `split_seed + s` unless the task's split is fixed: tasks.split_for_seed; a bad user
task fails before any compute is spent), then plays each (task, seed, player), appends each result to
the append-only store as soon as it exists (a crash loses at most the game in progress), and
only then derives the table, the performance profiles and AUP *from the stored rows* of this
bench — the same function `--report BENCH_ID` and the docs generator use.
"""

from __future__ import annotations

import collections
import csv
import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tandem.benchmarks.cluster import Game, play_on_cluster
from tandem.benchmarks.performance_profiles import (
    BASELINE,
    Profiles,
    ScoredProblem,
    compute_profiles,
    is_feasible,
    plot_profiles,
)
from tandem.benchmarks.players import PlainPlayer, Player, PlayResult, play_safely
from tandem.benchmarks.results_store import ResultsStore, code_commit, code_identity
from tandem.benchmarks.tasks import Task, TaskData, materialize
from tandem.tools.data import InputError
from tandem.tools.metrics import METRICS

if TYPE_CHECKING:  # the optional extra `dask`: imported for the type checker only
    from distributed import Client

ResultHandler = Callable[[dict[str, Any]], None]


def new_bench_id(kind: str = "bench") -> str:
    return f"{kind}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def with_baseline(players: Sequence[Player]) -> list[Player]:
    """The players plus the `linear` baseline, which feasibility is judged against (it takes seconds)."""
    if any(p.name == BASELINE for p in players):
        return list(players)
    return [*players, PlainPlayer(BASELINE)]


def play_and_store(
    store: ResultsStore,
    bench_id: str,
    data: TaskData,
    player: Player,
    *,
    budget: float,
    seed: int,
    result: PlayResult | None = None,
) -> dict[str, Any]:
    """Play one game and append its result; returns the stored row. With `result`, the game was
    played elsewhere (a Dask worker, benchmarks/cluster.py) and only its row is written here."""
    if result is None:
        result = play_safely(player, data, budget=budget, seed=seed, workdir=store.dir)
    score = result.scores.get(data.primary_metric) if result.status == "ok" else None
    if result.status == "ok" and score is None:  # a game without a score is lost, not finished
        result.status, result.error = "failed", f"the holdout {data.primary_metric} could not be computed"
    row = {
        "bench_id": bench_id,
        "task": data.task.name,
        "fingerprint": data.fingerprint,
        "task_type": data.problem.task_type,
        "metric": data.primary_metric,
        "greater_is_better": int(data.greater_is_better),
        "player": player.name,
        "seed": int(seed),
        "budget": float(budget),
        "status": result.status,
        "score": score,
        "scores": result.scores,
        "wall_seconds": round(result.wall_seconds, 3),
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "cost_usd": result.cost_usd,
        "error": result.error,
        "details": {**result.details, "commit": code_commit(Path(__file__).resolve().parent), "code": code_identity()},
    }
    row["id"] = store.add_result(row)
    return row


@dataclass(frozen=True)
class Reuse:
    """Games an earlier bench already played, copied instead of played again (`--reuse`).

    Why: after a change to tandem, its rivals' games are what they were (same code, same split,
    same seed, same budget), and AutoGluon and FLAML spend the whole budget on every game; and a
    change that touches only some tasks (say, small data) need not replay tandem on the others.
    A game is reused only when the earlier bench played the same player on the same data and
    split (the task's fingerprint), seed and budget; the copy names the row it came from.
    `tasks` (empty: all) limits the copies to those tasks.
    """

    bench_id: str
    players: tuple[str, ...]
    tasks: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Reuse:
        """`BENCH_ID:player,player[:task,task]` (bench ids have no colon; names no comma)."""
        bench_id, players, tasks, *rest = [*text.split(":"), "", ""]

        def names(part: str) -> tuple[str, ...]:
            return tuple(dict.fromkeys(n.strip() for n in part.split(",") if n.strip()))

        if not bench_id.strip() or not names(players) or any(part.strip() for part in rest):
            raise InputError(
                "--reuse takes BENCH_ID:PLAYER[,PLAYER...][:TASK[,TASK...]], e.g. bench-...:flaml,autogluon "
                f"or bench-...:tandem:house_prices,adult_income; got {text!r}"
            )
        return cls(bench_id.strip(), names(players), names(tasks))

    def covers(self, player: str, task: str) -> bool:
        """Whether this reuse copies `player`'s games on `task`."""
        return player in self.players and (not self.tasks or task in self.tasks)


GameKey = tuple[str, str, str, int, float]


def game_key(row: dict[str, Any]) -> GameKey:
    """What makes two stored games the same game: player, data and split (fingerprint), the metric
    it is scored on, seed, budget. The metric is part of it because the fingerprint is of the data
    alone: a task whose metric changed is a new game, and a copy would compare F1 with accuracy."""
    return (row["player"], row["fingerprint"], row["metric"], int(row["seed"]), float(row["budget"]))


def _reuse_source(store: ResultsStore, reuse: Reuse, players: Sequence[str], tasks: Sequence[str]) -> dict[str, Any]:
    """The stored bench a `--reuse` names, once its players and tasks are checked against both benches."""
    source = store.bench(reuse.bench_id)
    if source is None or source["kind"] != "bench":
        known = ", ".join(b["bench_id"] for b in store.benches("bench")[-5:]) or "none"
        raise InputError(f"no bench {reuse.bench_id!r} to reuse games from in {store.path} (recent benches: {known})")
    theirs = source["settings"]["players"]
    for name in reuse.players:
        if name not in players:
            raise InputError(f"--reuse names {name!r}, which is not among this bench's players ({', '.join(players)})")
        if name not in theirs:
            raise InputError(
                f"bench {reuse.bench_id} has no games of {name!r} to reuse (its players: {', '.join(theirs)})"
            )
    for task in reuse.tasks:
        if task not in tasks:
            raise InputError(f"--reuse names task {task!r}, which is not among this bench's tasks ({', '.join(tasks)})")
    return source


def _reusable(
    store: ResultsStore, reuses: Sequence[Reuse], players: Sequence[str], tasks: Sequence[str]
) -> tuple[list[dict[str, Any]], dict[GameKey, dict[str, Any]]]:
    """The earlier benches' records for this bench's settings, and their rows of the reused games by game.

    Two `--reuse` that could copy the same player's game on the same task are refused: which one
    a game came from must not depend on their order."""
    records: list[dict[str, Any]] = []
    rows: dict[GameKey, dict[str, Any]] = {}
    for i, reuse in enumerate(reuses):
        source = _reuse_source(store, reuse, players, tasks)
        for other in reuses[:i]:
            both = [(p, t) for p in reuse.players for t in tasks if reuse.covers(p, t) and other.covers(p, t)]
            if both:
                raise InputError(
                    f"two --reuse would copy the games of {both[0][0]!r} on {both[0][1]!r} "
                    f"({other.bench_id} and {reuse.bench_id}); give each player and task one source"
                )
        commit = source["machine"].get("git_commit")
        records.append(
            {"bench_id": reuse.bench_id, "players": [*reuse.players], "tasks": [*reuse.tasks], "git_commit": commit}
        )
        rows |= {game_key(r): r for r in store.results(reuse.bench_id) if reuse.covers(r["player"], r["task"])}
    return records, rows


def reuse_records(settings: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A bench's `--reuse` sources as stored (a single record, before a bench could name several)."""
    reuse = (settings or {}).get("reuse") or []
    return [reuse] if isinstance(reuse, dict) else list(reuse)


def _copy_row(store: ResultsStore, bench_id: str, row: dict[str, Any], *, task: str) -> dict[str, Any]:
    """Store an earlier game's row as this bench's, under this bench's name for its task (the same
    data may have had another name there), saying where it came from."""
    copy = {k: v for k, v in row.items() if k not in ("id", "created_at", "bench_id")}
    copy["bench_id"], copy["task"] = bench_id, task
    source = {"bench_id": row["bench_id"], "result_id": row["id"]}
    copy["details"] = {**(row.get("details") or {}), "reused_from": source}
    copy["id"] = store.add_result(copy)
    return copy


def run_bench(
    tasks: Sequence[Task],
    players: Sequence[Player],
    *,
    seeds: Sequence[int] = (0,),
    budget: float | None = None,
    results_dir: str | Path,
    command: str = "",
    on_result: ResultHandler | None = None,
    cluster: Client | None = None,
    resume: str | None = None,
    reuse: Sequence[Reuse] = (),
    on_start: Callable[[str], None] | None = None,
) -> str:
    """Play every player on every task and seed; returns the bench id (its rows are in the store).
    `on_start(bench_id)` is called once the bench is in the store, before its first game, so a
    bench stopped midway can be named to `resume`.

    With `cluster` the games are Dask tasks, gathered as they finish; only this process writes
    the store. `resume` continues a stored bench (a coordinator that was killed): the same tasks,
    players, seeds and budget, and only the games the store does not hold yet are played.
    `reuse` copies the games earlier benches played of some players (Reuse) instead of playing them.
    """
    if budget is not None and not budget > 0:
        raise InputError(f"--budget must be a positive number of seconds, got {budget!r}")
    if not seeds:
        raise InputError("give at least one seed")
    for player in players:  # fail fast: a player that cannot play, or a bad task, stops us before any game
        player.check()
    store = ResultsStore(results_dir)
    # one split per (task, seed): bench seed s holds out split seed split_seed + s (tasks.split_for_seed)
    data = {(t.name, seed): materialize(t, store.dir / "tasks", seed) for t in tasks for seed in seeds}
    players = with_baseline(players)
    settings = {
        "tasks": [asdict(t) | {"fingerprints": [data[(t.name, seed)].fingerprint for seed in seeds]} for t in tasks],
        "players": [p.name for p in players],
        "seeds": list(seeds),
        "budget": budget,
    }
    reusable: dict[GameKey, dict[str, Any]] = {}
    if reuse:
        settings["reuse"], reusable = _reusable(store, reuse, [p.name for p in players], [t.name for t in tasks])
    if resume is not None:
        bench_id = resume
        _check_resumable(store, bench_id, settings)
    else:
        bench_id = new_bench_id("bench")
        store.add_bench(bench_id, "bench", command, settings)
    if on_start is not None:
        on_start(bench_id)
    done = _played(store, bench_id)
    games = [
        Game(data[(t.name, seed)], player, budget or t.budget, seed)
        for t in tasks
        for seed in seeds
        for player in players
        if (t.name, seed, player.name) not in done
    ]
    to_play = []
    for game in games:
        key = (game.player.name, game.data.fingerprint, game.data.primary_metric, game.seed, float(game.budget))
        earlier = reusable.get(key)
        if earlier is None:
            to_play.append(game)
            continue
        row = _copy_row(store, bench_id, earlier, task=game.data.task.name)
        if on_result is not None:
            on_result(row)

    def store_row(game: Game, result: PlayResult | None = None) -> None:
        row = play_and_store(store, bench_id, game.data, game.player, budget=game.budget, seed=game.seed, result=result)
        if on_result is not None:
            on_result(row)

    if cluster is not None:
        play_on_cluster(cluster, to_play, store.dir, store_row, label=bench_id)
    else:
        for game in to_play:
            store_row(game)
    return bench_id


def games_left(store: ResultsStore, bench: dict[str, Any]) -> int:
    """How many of the games a bench's settings name it has no row for (0: it finished, with a
    score or a failure for each): a bench stopped midway, to be resumed, must not stand in for a
    finished one on a results page."""
    settings = bench["settings"]
    wanted = {
        (t["name"], int(seed), player)
        for t in settings.get("tasks", [])
        for seed in settings.get("seeds", [0])
        for player in settings.get("players", [])
    }
    return len(wanted - _played(store, bench["bench_id"]))


def complete_tasks(store: ResultsStore, bench: dict[str, Any]) -> set[str]:
    """The tasks of a bench whose every game (each seed, each player) has a row: what a stopped
    bench can already report in full."""
    settings, played = bench["settings"], _played(store, bench["bench_id"])
    seeds, players = settings.get("seeds", [0]), settings.get("players", [])
    return {
        t["name"]
        for t in settings.get("tasks", [])
        if all((t["name"], int(seed), player) in played for seed in seeds for player in players)
    }


def _played(store: ResultsStore, bench_id: str) -> set[tuple[str, int, str]]:
    """(task, seed, player) of the games a bench has a row for, a score or a failure."""
    return {(r["task"], int(r["seed"]), r["player"]) for r in store.results(bench_id)}


#: Where a task's files were read from: another checkout or machine resuming the bench reads the
#: same data from another path, which its fingerprints (data and split) check instead.
_PATH_FIELDS = ("csv", "holdout_csv")


def _comparable(key: str, value: Any) -> Any:
    """A stored setting as resuming compares it: tasks without the paths of their files, since the
    fingerprints stored with them say whether the data and splits are the same."""
    if key != "tasks" or not isinstance(value, list):
        return value
    return [
        {k: v for k, v in task.items() if not (k in _PATH_FIELDS and task.get("fingerprints") and v)} for task in value
    ]


def _check_resumable(store: ResultsStore, bench_id: str, settings: dict[str, Any]) -> None:
    """A bench is continued only with what it was started with, so its rows stay one experiment."""
    stored = store.bench(bench_id)
    if stored is None or stored["kind"] != "bench":
        known = ", ".join(b["bench_id"] for b in store.benches("bench")[-5:]) or "none"
        raise InputError(f"no bench {bench_id!r} to resume in {store.path} (recent benches: {known})")
    given = json.loads(json.dumps(settings, default=str))  # as stored: tuples become lists
    for key in ("tasks", "players", "seeds", "budget"):
        if _comparable(key, stored["settings"].get(key)) != _comparable(key, given[key]):
            raise InputError(
                f"bench {bench_id} was started with other {key}; resume it with its own command: {stored['command']}"
            )


def in_play_order(rows: Sequence[dict[str, Any]], settings: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rows in the order a local bench plays them (task, then seed, then player, as the bench's
    settings list them), whatever order they finished in on a cluster; unknown keys keep theirs."""
    if not settings:
        return list(rows)
    tasks = {t["name"]: i for i, t in enumerate(settings.get("tasks", []))}
    seeds = {int(s): i for i, s in enumerate(settings.get("seeds", []))}
    players = {p: i for i, p in enumerate(settings.get("players", []))}
    far = len(rows) + 1
    return sorted(
        rows,
        key=lambda r: (tasks.get(r["task"], far), seeds.get(int(r["seed"]), far), players.get(r["player"], far)),
    )


# ------------------------------------------------------------------------------------------
# Reports: everything below reads stored rows only
# ------------------------------------------------------------------------------------------


def scored_problems(rows: Sequence[dict[str, Any]]) -> tuple[list[ScoredProblem], list[str]]:
    """Stored result rows → problems (task × seed, in play order) and players (in play order)."""
    players: list[str] = []
    problems: dict[tuple[str, int], ScoredProblem] = {}
    for row in rows:
        if row["player"] not in players:
            players.append(row["player"])
        key = (row["task"], int(row["seed"]))
        if key not in problems:
            problems[key] = ScoredProblem(
                row["task"], int(row["seed"]), row["metric"], bool(row["greater_is_better"]), {}
            )
        problems[key].scores[row["player"]] = row["score"] if row["status"] == "ok" else None
    return list(problems.values()), players


@dataclass(frozen=True)
class BenchReport:
    bench_id: str
    rows: list[dict[str, Any]]
    profiles: Profiles
    markdown: str


def fmt(value: float | None) -> str:
    """A score as a table shows it: enough digits to compare, no more."""
    if value is None or not math.isfinite(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.2f}"
    return f"{value:.4f}"


def _best_players(problem: ScoredProblem, ratios: dict[str, float]) -> set[str]:
    return {m for m, r in ratios.items() if r == 1.0 and problem.scores.get(m) is not None}


def results_markdown(rows: Sequence[dict[str, Any]], profiles: Profiles, image: str | None = None) -> str:
    """The results table, the ratios, the AUP table and the players' cost, as Markdown."""
    players = profiles.players
    by_key = {(r["task"], int(r["seed"]), r["player"]): r for r in rows}
    lines = [
        "| task | seed | metric | " + " | ".join(players) + " |",
        "|---|---|---|" + "---|" * len(players),
    ]
    for problem, ratios in zip(profiles.problems, profiles.ratios, strict=True):
        best = _best_players(problem, ratios)
        cells = []
        for m in players:
            row = by_key.get((problem.task, problem.seed, m))
            text = fmt(problem.scores.get(m)) if row and row["status"] == "ok" else "failed" if row else "–"
            cells.append(f"**{text}**" if m in best else text)
        arrow = "↑" if problem.greater_is_better else "↓"
        lines.append(f"| {problem.task} | {problem.seed} | {problem.metric} {arrow} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Performance ratios r(p, m) (1 = best; infeasible players get the (1 + ε) penalty):",
        "",
        "| task | seed | " + " | ".join(players) + " |",
        "|---|---|" + "---|" * len(players),
    ]
    for problem, ratios in zip(profiles.problems, profiles.ratios, strict=True):
        lines.append(f"| {problem.task} | {problem.seed} | " + " | ".join(f"{ratios[m]:.4f}" for m in players) + " |")
    lines += [
        "",
        f"| player | AUP (τ ≤ {profiles.tau_max:g}) | best on | feasible on | mean wall time | tokens | cost (USD) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in sorted(players, key=lambda p: -profiles.aup[p]):
        mine = [r for r in rows if r["player"] == m]
        best_on = sum(m in _best_players(p, r) for p, r in zip(profiles.problems, profiles.ratios, strict=True))
        feasible_on = sum(
            is_feasible(p.scores.get(m), p.scores.get(BASELINE), p.greater_is_better) for p in profiles.problems
        )
        wall = sum(r["wall_seconds"] for r in mine) / max(len(mine), 1)
        tokens = sum(r["tokens_in"] + r["tokens_out"] for r in mine)
        costs = [r["cost_usd"] for r in mine]
        cost = "unknown" if any(c is None for c in costs) else f"{sum(costs):.4f}"
        n = len(profiles.problems)
        lines.append(
            f"| {m} | {profiles.aup[m]:.4f} | {best_on}/{n} | {feasible_on}/{n} | {wall:.1f} s | {tokens} | {cost} |"
        )
    if image:
        lines += ["", f"![performance profiles]({image})"]
    return "\n".join(lines) + "\n"


def bench_report(store: ResultsStore, bench_id: str, out_dir: str | Path | None = None) -> BenchReport:
    """Derive the table, profiles, AUP and the profile PNG of a stored bench; write them beside the store."""
    stored = store.bench(bench_id)
    rows = in_play_order(store.results(bench_id), stored["settings"] if stored else None)
    if not rows:
        known = ", ".join(b["bench_id"] for b in store.benches("bench")[-5:]) or "none"
        raise InputError(f"no results for bench {bench_id!r} in {store.path} (recent benches: {known})")
    problems, players = scored_problems(rows)
    profiles = compute_profiles(problems, players)
    folder = Path(out_dir) if out_dir else store.dir / bench_id
    folder.mkdir(parents=True, exist_ok=True)
    plot_profiles(profiles, folder / "profiles.png", title=f"tandem bench {bench_id}")
    markdown = results_markdown(rows, profiles, image="profiles.png")
    note = reuse_note(store, stored, rows)
    (folder / "report.md").write_text(f"# {bench_id}\n\n" + (note + "\n\n" if note else "") + markdown)
    with (folder / "results.csv").open("w", newline="") as fh:
        fields = ["id", "task", "seed", "player", "metric", "status", "score", "wall_seconds", "tokens_in",
                  "tokens_out", "cost_usd", "budget", "fingerprint", "error"]  # fmt: skip
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return BenchReport(bench_id, rows, profiles, markdown)


def played_as(store: ResultsStore, row: dict[str, Any]) -> dict[str, Any]:
    """The row of the game as it was played: a copied row's source, through copies of copies."""
    seen: set[int] = set()
    while (source := (row.get("details") or {}).get("reused_from")) and source.get("result_id") not in seen:
        seen.add(source["result_id"])
        earlier = store.result(int(source["result_id"]))
        if earlier is None:
            break
        row = earlier
    return row


def played_at(store: ResultsStore, row: dict[str, Any]) -> str:
    """The tandem commit a game was played at: its own record, or (rows stored before games
    recorded it) the commit its bench was started at."""
    origin = played_as(store, row)
    commit = (origin.get("details") or {}).get("commit")
    if commit is None:
        bench = store.bench(origin["bench_id"]) or {}
        commit = (bench.get("machine") or {}).get("git_commit")
    return str(commit or "unknown")


def reuse_note(store: ResultsStore, bench: dict[str, Any] | None, rows: Sequence[dict[str, Any]]) -> str:
    """A paragraph naming the games a bench copied from earlier ones (nothing when it played all):
    which benches the copies were taken from, and the commits at which those games were played,
    following copies of copies to the game itself."""
    sources = reuse_records((bench or {}).get("settings"))
    if not sources:
        return ""
    copied = [r for r in rows if "reused_from" in (r.get("details") or {})]

    def taken(source: dict[str, Any]) -> int:
        return sum(
            r["details"]["reused_from"]["bench_id"] == source["bench_id"]
            and r["player"] in source["players"]
            and (not source.get("tasks") or r["task"] in source["tasks"])
            for r in copied
        )

    where = "; ".join(
        f"of {', '.join(s['players'])}{' on ' + ', '.join(s['tasks']) if s.get('tasks') else ''} from bench "
        f"`{s['bench_id']}` ({taken(s)} games)"
        for s in sources
    )
    commits = collections.Counter(played_at(store, r) for r in copied)
    at = ", ".join(f"{commit} ({n})" for commit, n in commits.most_common())
    return (
        f"{len(copied)} of this bench's {len(rows)} games were not played again: the games {where}, played on the "
        "same data, split, metric, seed and budget, are copied (`tandem bench --reuse`), and each copy names its "
        f"row there (`details.reused_from`). The copied games were played at tandem commit {at}."
    )


def describe_result(row: dict[str, Any]) -> str:
    """One line per game, as `tandem bench` prints it."""
    head = f"[{row['task']} seed {row['seed']}] {row['player']:<24}"
    source = (row.get("details") or {}).get("reused_from")
    tail = f"  (reused from {source['bench_id']})" if source else ""
    if row["status"] != "ok" or row["score"] is None:
        return f"{head} FAILED: {row['error']}{tail}"
    metric = METRICS[row["metric"]]
    tokens = row["tokens_in"] + row["tokens_out"]
    return (
        f"{head} {row['metric']} {fmt(row['score'])} ({'higher' if metric.greater_is_better else 'lower'} is better)"
        f"  wall {row['wall_seconds']:.1f} s  tokens {tokens}{tail}"
    )
