"""`tandem league`: head-to-head matches between players, Elo ratings, matchmaking among close ratings.

Why a league next to the profiles: AUP says how close to the best each player gets over a fixed
suite; a ladder (as in Hugging Face's "AI vs AI") keeps ranking players as they are added, from
pairwise matches, and its history is a public record anyone can replay. The rules:

- **Match.** Two players, one task, the same budget and seed (so the same split: a seed picks the
  task's split as in the bench, `tasks.split_for_seed`). The better primary holdout score
  wins; the match is a draw when the scores differ by at most `tolerance` in the reward's units
  (absolute for bounded metrics such as accuracy, F1 or R²; relative to the larger score for
  unbounded ones such as RMSE), default 0.001. A failed player loses to one that scored; two
  failures draw. A match reuses the stored result of the same player, task, budget and seed when
  the code that runs now played it (the same commit and uncommitted changes, or the same installed
  version; `--fresh` plays again), so a league after a bench costs nothing, and a game of an
  earlier tandem is played again rather than counted for this one.
- **Elo.** Every player starts at 1200. With E_A = 1 / (1 + 10^((R_B − R_A) / 400)) and S_A = 1,
  0.5 or 0, R_A' = R_A + K (S_A − E_A) and R_B' = R_B + K ((1 − S_A) − (1 − E_A)); K = 32 by
  default and stored with every match. Ratings are never stored as state: they are the replay of
  the match history in the order played, so the ladder always agrees with its history. A match
  on two stored games already matched repeats their outcome and is not counted again.
- **Matchmaking.** Each round shuffles the players into a queue; the first player in the queue
  meets a random opponent among the `closest` (default 3) players still queued with the nearest
  ratings that it has not yet met on every task and seed (with none, it sits the round out); both
  leave the queue; repeat until fewer than two remain. The task and the seed of a match are drawn
  at random from those on which the two have not met.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tandem.benchmarks.bench import fmt, new_bench_id, play_and_store
from tandem.benchmarks.cluster import Game, play_on_cluster
from tandem.benchmarks.players import Player, PlayResult
from tandem.benchmarks.results_store import ResultsStore
from tandem.benchmarks.tasks import Task, TaskData, materialize
from tandem.tools.data import InputError
from tandem.tools.metrics import METRICS, gain

if TYPE_CHECKING:  # the optional extra `dask`: imported for the type checker only
    from distributed import Client

START_RATING = 1200.0
K_FACTOR = 32.0
DRAW_TOLERANCE = 0.001
CLOSEST = 3


def expected_score(rating_a: float, rating_b: float) -> float:
    """E_A: the score Elo expects of A against B."""
    return 1.0 / (1.0 + 10.0 ** ((rating_b - rating_a) / 400.0))


def elo_update(rating_a: float, rating_b: float, outcome_a: float, k: float = K_FACTOR) -> tuple[float, float]:
    """Both ratings after a match A scored `outcome_a` in (1 win, 0.5 draw, 0 loss)."""
    e_a = expected_score(rating_a, rating_b)
    return rating_a + k * (outcome_a - e_a), rating_b + k * ((1.0 - outcome_a) - (1.0 - e_a))


def match_outcome(
    metric: str, score_a: float | None, score_b: float | None, tolerance: float = DRAW_TOLERANCE
) -> float:
    """S_A: 1 when A's holdout score is better beyond the tolerance, 0.5 for a draw, 0 when worse."""
    if score_a is None or score_b is None:
        return 0.5 if score_a is None and score_b is None else (0.0 if score_a is None else 1.0)
    scale = 1.0 if METRICS[metric].bounded else max(abs(score_a), abs(score_b), 1e-12)
    diff = gain(metric, score_a, score_b) / scale
    if abs(diff) <= tolerance:
        return 0.5
    return 1.0 if diff > 0 else 0.0


@dataclass
class Standing:
    """A player's place on the ladder."""

    player: str
    rating: float = START_RATING
    games: int = 0
    wins: int = 0
    draws: int = 0
    losses: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)
    """(match id, rating after it) for the rating plot."""

    @property
    def win_rate(self) -> float:
        return self.wins / self.games if self.games else 0.0


def replay(matches: Sequence[dict[str, Any]], start: float = START_RATING) -> dict[str, Standing]:
    """The ladder after playing `matches` in order, each with its own stored K.

    A match between two stored games already matched counts once: leagues reuse stored results,
    and the same two games drawn again give the same outcome, which is not new evidence (an
    earlier schedule drew with replacement, and 160 matches held 119 distinct pairs of games)."""
    table: dict[str, Standing] = {}
    counted: set[frozenset[int]] = set()
    for m in matches:
        if m.get("result_a") is not None and m.get("result_b") is not None:
            games = frozenset((int(m["result_a"]), int(m["result_b"])))
            if games in counted:
                continue
            counted.add(games)
        a = table.setdefault(m["player_a"], Standing(m["player_a"], start))
        b = table.setdefault(m["player_b"], Standing(m["player_b"], start))
        a.rating, b.rating = elo_update(a.rating, b.rating, float(m["outcome"]), float(m["k"]))
        for me, s in ((a, float(m["outcome"])), (b, 1.0 - float(m["outcome"]))):
            me.games += 1
            me.wins += s == 1.0
            me.draws += s == 0.5
            me.losses += s == 0.0
            me.history.append((int(m["id"]), me.rating))
    return table


def pair_up(
    players: Sequence[str],
    ratings: dict[str, float],
    rng: random.Random,
    closest: int = CLOSEST,
    can_meet: Callable[[str, str], bool] = lambda a, b: True,
) -> list[tuple[str, str]]:
    """One round of matchmaking: first in the queue vs a random one of the `closest` nearest ratings
    among those it `can_meet` (a player who can meet none left in the queue sits the round out)."""
    if closest < 1:
        raise InputError("--closest must be at least 1")
    queue = list(players)
    rng.shuffle(queue)
    pairs = []
    while len(queue) >= 2:
        first = queue.pop(0)
        options = [p for p in queue if can_meet(first, p)]
        if not options:
            continue
        nearest = sorted(options, key=lambda p: abs(ratings.get(p, START_RATING) - ratings.get(first, START_RATING)))
        opponent = rng.choice(nearest[:closest])
        queue.remove(opponent)
        pairs.append((first, opponent))
    return pairs


class _Unmet:
    """The games (task data, seed, budget) on which two players have not met yet: a second match on
    the same two stored games would repeat an outcome already counted (`replay`)."""

    def __init__(self, history: Sequence[dict[str, Any]], games: list[tuple[TaskData, int, float]]) -> None:
        self.met = {
            (frozenset((m["player_a"], m["player_b"])), m["fingerprint"], m["seed"], m["budget"]) for m in history
        }
        self.games = games

    def __call__(self, a: str, b: str) -> list[tuple[TaskData, int]]:
        pair = frozenset((a, b))
        return [(d, seed) for d, seed, budget in self.games if (pair, d.fingerprint, seed, budget) not in self.met]

    def any(self, a: str, b: str) -> bool:
        return bool(self(a, b))


MatchHandler = Callable[[dict[str, Any]], None]


def _result_for(
    store: ResultsStore, league_id: str, data: TaskData, player: Player, budget: float, seed: int, fresh: bool
) -> dict[str, Any]:
    if not fresh:
        row = store.find_result(player.name, data.fingerprint, data.primary_metric, budget, seed)
        if row is not None:
            return row
    return play_and_store(store, league_id, data, player, budget=budget, seed=seed)


def _round_results(
    store: ResultsStore,
    league_id: str,
    draws: Sequence[tuple[str, str, TaskData, int, float]],
    by_name: dict[str, Player],
    fresh: bool,
    cluster: Client | None,
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The stored result of every game a round's matches need, by (player, task, seed).

    A player meets one opponent per round, so a round's games are independent: on a cluster
    they are played at once (benchmarks/cluster.py) and this process stores each row as it comes;
    here they are played in the order the matches list them. The matches themselves are then
    recorded in draw order either way, so the Elo history is the same.
    """
    found: dict[tuple[str, str, int], dict[str, Any]] = {}
    games: list[Game] = []
    gone = {name for name in {n for draw in draws for n in draw[:2]} if by_name[name].withdrawn()}
    for name_a, name_b, data, seed, budget in draws:
        if gone & {name_a, name_b}:
            continue  # its policy file went away or changed: no game is stored for it, no match counted
        for name in (name_a, name_b):
            key = (name, data.task.name, seed)
            if cluster is None:
                found[key] = _result_for(store, league_id, data, by_name[name], budget, seed, fresh)
                continue
            row = None if fresh else store.find_result(name, data.fingerprint, data.primary_metric, budget, seed)
            if row is not None:
                found[key] = row
            else:
                games.append(Game(data, by_name[name], budget, seed))
    if cluster is not None and games:

        def store_row(game: Game, result: PlayResult) -> None:
            row = play_and_store(
                store, league_id, game.data, game.player, budget=game.budget, seed=game.seed, result=result
            )
            found[(game.player.name, game.data.task.name, game.seed)] = row

        play_on_cluster(cluster, games, store.dir, store_row, label=league_id)
    return found


def run_league(
    tasks: Sequence[Task],
    players: Sequence[Player],
    *,
    results_dir: str | Path,
    seeds: Sequence[int] = (0,),
    budget: float | None = None,
    rounds: int | None = 10,
    closest: int = CLOSEST,
    k: float = K_FACTOR,
    tolerance: float = DRAW_TOLERANCE,
    rng_seed: int = 0,
    fresh: bool = False,
    command: str = "",
    on_match: MatchHandler | None = None,
    cluster: Client | None = None,
    roster: Callable[[], Sequence[Player]] | None = None,
) -> str:
    """Play `rounds` rounds of matchmade matches; every match is appended to the store. Returns the league id.
    With `cluster`, each round's games are Dask tasks (`_round_results`); the matches are the same.

    `rounds=None` plays until interrupted (`--watch`). `roster`, when given, is asked for the
    players before every round (`--players-dir`: benchmarks/league_watch.py), so a player can join
    between rounds; one never seen starts at the starting rating. Each round's draws are seeded by
    `rng_seed` and the number of matches already in the store, so a stopped league run again
    with the same command goes on with new draws instead of replaying the ones it made."""
    if roster is not None:
        players = list(roster())
    if len(players) < 2 and (roster is None or rounds is not None):
        raise InputError("a league needs at least two players")
    if (rounds is not None and rounds < 1) or k <= 0 or tolerance < 0 or not seeds:
        raise InputError("--rounds must be ≥ 1, --k > 0, --tolerance ≥ 0, and at least one seed given")
    if budget is not None and not budget > 0:
        raise InputError(f"--budget must be a positive number of seconds, got {budget!r}")
    for player in players:
        player.check()
    store = ResultsStore(results_dir)
    # one split per (task, seed), as in the bench (tasks.split_for_seed), so a stored bench game is reused
    data = {(t.name, seed): materialize(t, store.dir / "tasks", seed) for t in tasks for seed in seeds}
    by_name = {p.name: p for p in players}
    league_id = new_bench_id("league")
    store.add_bench(
        league_id,
        "league",
        command,
        {
            "tasks": [t.name for t in tasks],
            "players": list(by_name),
            "seeds": list(seeds),
            "budget": budget,
            "rounds": rounds,
            "closest": closest,
            "k": k,
            "tolerance": tolerance,
            "rng_seed": rng_seed,
        },
    )
    for round_no in itertools.count():
        if rounds is not None and round_no >= rounds:
            break
        if roster is not None and round_no > 0:
            by_name = {p.name: p for p in roster()}
        history = store.matches()
        rng = random.Random(f"{rng_seed}/{len(history)}")
        ratings = {name: s.rating for name, s in replay(history).items()}
        unmet = _Unmet(history, [(data[(t.name, s)], s, float(budget or t.budget)) for t in tasks for s in seeds])
        draws = []
        for name_a, name_b in pair_up(list(by_name), ratings, rng, closest, unmet.any):
            d, seed = rng.choice(unmet(name_a, name_b))
            draws.append((name_a, name_b, d, seed, budget or d.task.budget))
        results = _round_results(store, league_id, draws, by_name, fresh, cluster)
        for name_a, name_b, d, seed, match_budget in draws:
            if (name_a, d.task.name, seed) not in results or (name_b, d.task.name, seed) not in results:
                continue  # a player withdrawn (`withdrawn`)
            row_a = results[(name_a, d.task.name, seed)]
            row_b = results[(name_b, d.task.name, seed)]
            score_a = row_a["score"] if row_a["status"] == "ok" else None
            score_b = row_b["score"] if row_b["status"] == "ok" else None
            outcome = match_outcome(d.primary_metric, score_a, score_b, tolerance)
            ladder = replay(store.matches())
            before_a = ladder[name_a].rating if name_a in ladder else START_RATING
            before_b = ladder[name_b].rating if name_b in ladder else START_RATING
            after_a, after_b = elo_update(before_a, before_b, outcome, k)
            match = {
                "league_id": league_id,
                "task": d.task.name,
                "fingerprint": d.fingerprint,
                "metric": d.primary_metric,
                "greater_is_better": int(d.greater_is_better),
                "seed": int(seed),
                "budget": float(match_budget),
                "player_a": name_a,
                "player_b": name_b,
                "result_a": int(row_a["id"]),
                "result_b": int(row_b["id"]),
                "score_a": score_a,
                "score_b": score_b,
                "outcome": outcome,
                "tolerance": tolerance,
                "k": k,
                "rating_a_before": before_a,
                "rating_b_before": before_b,
                "rating_a_after": after_a,
                "rating_b_after": after_b,
            }
            match["id"] = store.add_match(match)
            if on_match is not None:
                on_match(match)
    return league_id


def describe_match(m: dict[str, Any]) -> str:
    verdict = {1.0: f"{m['player_a']} wins", 0.5: "draw", 0.0: f"{m['player_b']} wins"}[float(m["outcome"])]
    return (
        f"match #{m['id']} {m['task']} seed {m['seed']}: {m['player_a']} {fmt(m['score_a'])} vs "
        f"{m['player_b']} {fmt(m['score_b'])} ({m['metric']}) -> {verdict}; Elo "
        f"{m['rating_a_before']:.1f}->{m['rating_a_after']:.1f} / {m['rating_b_before']:.1f}->{m['rating_b_after']:.1f}"
    )


def standings(store: ResultsStore) -> list[Standing]:
    """The ladder of a results store, best rating first."""
    return sorted(replay(store.matches()).values(), key=lambda s: (-s.rating, s.player))


def leaderboard_markdown(table: Sequence[Standing]) -> str:
    lines = [
        "| rank | player | Elo | games | wins | draws | losses | win rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, s in enumerate(table, 1):
        lines.append(
            f"| {i} | {s.player} | {s.rating:.1f} | {s.games} | {s.wins} | {s.draws} | {s.losses} | {s.win_rate:.0%} |"
        )
    return "\n".join(lines) + "\n"


def plot_leaderboard(table: Sequence[Standing], path: str | Path) -> Path:
    """PNG: each player's rating after every match it played, and the final ratings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for s in table:
        xs = [0, *(mid for mid, _ in s.history)]
        ys = [START_RATING, *(r for _, r in s.history)]
        left.step(xs, ys, where="post", label=s.player, linewidth=1.8)
    left.axhline(START_RATING, color="grey", linewidth=0.8, linestyle=":")
    left.set_xlabel("match number")
    left.set_ylabel("Elo rating")
    left.set_title("rating after each match", fontsize=10)
    left.grid(True, linestyle="--", alpha=0.5)
    left.legend(fontsize=8)
    names = [s.player for s in table][::-1]
    ratings = [s.rating for s in table][::-1]
    right.barh(names, ratings, color="tab:blue")
    low = min([*ratings, START_RATING]) - 50
    right.set_xlim(low, max([*ratings, START_RATING]) + 50)
    for y, (r, s) in enumerate(zip(ratings, table[::-1], strict=True)):
        right.text(r + 2, y, f"{r:.0f}  ({s.wins}-{s.draws}-{s.losses})", va="center", fontsize=8)
    right.set_title("final rating (wins-draws-losses)", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
