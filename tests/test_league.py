"""League: Elo on a small history, matchmaking, outcomes, and `tandem bench/league/elo` end to end."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tandem.benchmarks.bench import scored_problems
from tandem.benchmarks.league import elo_update, expected_score, match_outcome, pair_up, replay, run_league
from tandem.benchmarks.league_watch import PlayersFolder, leaderboard_html, rating_svg
from tandem.benchmarks.performance_profiles import compute_profiles
from tandem.benchmarks.players import parse_player
from tandem.benchmarks.results_store import ResultsStore, code_identity
from tandem.benchmarks.tasks import select_tasks
from tandem.cli import main
from tandem.nodes.agents.learned_scientist import new_policy
from tandem.tools.data import InputError
from tandem.tools.policy_file import read_policy, write_policy


def test_elo_on_a_small_history_by_hand() -> None:
    history = [
        {"id": 1, "player_a": "A", "player_b": "B", "outcome": 1.0, "k": 32},  # A beats B at 1200 each
        {"id": 2, "player_a": "B", "player_b": "C", "outcome": 0.5, "k": 32},  # B (1184) draws C (1200)
        {"id": 3, "player_a": "C", "player_b": "A", "outcome": 0.0, "k": 16},  # A beats C, with K = 16
    ]
    table = replay(history)
    e_b = 1 / (1 + 10 ** (16 / 400))  # B expected against C after match 1
    b2, c2 = 1184 + 32 * (0.5 - e_b), 1200 - 32 * (0.5 - e_b)
    e_c = 1 / (1 + 10 ** ((1216 - c2) / 400))
    assert table["B"].rating == pytest.approx(b2)
    assert table["C"].rating == pytest.approx(c2 + 16 * (0 - e_c))
    assert table["A"].rating == pytest.approx(1216 + 16 * (1 - (1 - e_c)))
    assert sum(s.rating for s in table.values()) == pytest.approx(3 * 1200)  # Elo is zero-sum
    assert (table["A"].wins, table["A"].games, table["B"].draws, table["B"].losses) == (2, 2, 1, 1)
    assert table["A"].win_rate == 1.0 and table["C"].win_rate == 0.0


def test_a_match_on_two_games_already_matched_counts_once() -> None:
    """Leagues reuse stored games: the same two games drawn again repeat an outcome, not evidence."""
    once = [{"id": 1, "player_a": "A", "player_b": "B", "outcome": 1.0, "k": 32, "result_a": 10, "result_b": 11}]
    again = {**once[0], "id": 2, "player_a": "B", "player_b": "A", "outcome": 0.0, "result_a": 11, "result_b": 10}
    other = {**once[0], "id": 3, "result_b": 12}  # B's game on another task or seed: a match of its own
    assert replay([*once, again])["A"].rating == replay(once)["A"].rating == 1216.0
    assert replay([*once, again])["A"].games == 1 and replay([*once, again, other])["A"].games == 2


def test_a_league_reuses_only_the_games_the_code_that_runs_now_played(tmp_path: Path) -> None:
    """A stored game of an earlier tandem (another commit, other uncommitted changes) says nothing
    of this one: the league plays it again instead of counting it."""
    store = ResultsStore(tmp_path)
    store.add_bench("b1", "bench", "tandem bench --tasks wine", {})
    game = {
        "bench_id": "b1", "task": "wine", "fingerprint": "f", "task_type": "multiclass", "metric": "f1_macro",
        "greater_is_better": 1, "player": "tandem", "seed": 0, "budget": 60.0, "status": "ok", "score": 0.9,
        "scores": {"f1_macro": 0.9}, "wall_seconds": 1.0, "tokens_in": 0, "tokens_out": 0,
    }  # fmt: skip
    store.add_result({**game, "details": {"code": "0123abc"}})
    store.add_result({**game, "details": {}})  # stored before games recorded their code
    assert store.find_result("tandem", "f", "f1_macro", 60.0, 0) is None
    played_now = store.add_result({**game, "score": 0.8, "details": {"code": code_identity()}})
    store.add_result({**game, "details": {"code": code_identity() + " with other changes"}})
    found = store.find_result("tandem", "f", "f1_macro", 60.0, 0)
    assert found is not None and (found["id"], found["score"]) == (played_now, 0.8)


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("outcome", 5.0, "holds the outcome 5.0 (1, 0.5 or 0)"),
        ("k", -500.0, "holds K -500.0"),
        ("outcome", "abc", "holds 'abc' in outcome (a finite number expected)"),
        ("result_a", "x", "holds 'x' in result_a (a whole number expected)"),
        ("rating_a_after", float("inf"), "holds inf in rating_a_after (a finite number expected)"),
    ],
)
def test_a_match_row_edited_by_hand_is_one_line_not_other_ratings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], column: str, value: object, problem: str
) -> None:
    store = ResultsStore(tmp_path)
    store.add_bench("l1", "league", "tandem league", {})
    match = {
        "league_id": "l1", "task": "wine", "fingerprint": "f", "metric": "accuracy", "greater_is_better": 1,
        "seed": 0, "budget": 60.0, "player_a": "linear", "player_b": "lightgbm", "result_a": 1, "result_b": 2,
        "score_a": 0.9, "score_b": 0.8, "outcome": 1.0, "tolerance": 0.001, "k": 32.0, "rating_a_before": 1200.0,
        "rating_b_before": 1200.0, "rating_a_after": 1216.0, "rating_b_after": 1184.0,
    }  # fmt: skip
    store.add_match(match)
    assert main(["elo", "--results-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    store.add_match({**match, column: value})  # as a hand edit would leave it: SQLite takes any type
    assert main(["elo", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"matches row 2 {problem}" in err[0], err


def test_expected_score_and_update() -> None:
    assert expected_score(1200, 1200) == 0.5
    assert expected_score(1600, 1200) == pytest.approx(1 / (1 + 10**-1))
    assert elo_update(1200, 1200, 1.0) == (1216.0, 1184.0)
    assert elo_update(1200, 1200, 0.5, k=10) == (1200.0, 1200.0)


def test_match_outcomes_with_tolerance_and_failures() -> None:
    assert match_outcome("accuracy", 0.80, 0.79) == 1.0
    assert match_outcome("accuracy", 0.8000, 0.8009) == 0.5  # within 0.001 absolute
    assert match_outcome("rmse", 100.0, 100.05) == 0.5  # within 0.1% relative
    assert match_outcome("rmse", 100.0, 101.0) == 1.0  # lower RMSE wins
    assert match_outcome("rmse", 101.0, 100.0) == 0.0
    assert match_outcome("r2", None, 0.5) == 0.0 and match_outcome("r2", 0.5, None) == 1.0
    assert match_outcome("r2", None, None) == 0.5


def test_matchmaking_pairs_close_ratings() -> None:
    ratings = {"a": 1500.0, "b": 1490.0, "c": 1000.0, "d": 990.0}
    for seed in range(20):
        pairs = pair_up(list(ratings), ratings, random.Random(seed), closest=1)
        assert {frozenset(p) for p in pairs} == {frozenset("ab"), frozenset("cd")}
    opponents_of_a: Counter[str] = Counter()
    for seed in range(200):
        for first, second in pair_up(list(ratings), ratings, random.Random(seed), closest=3):
            if first == "a":
                opponents_of_a[second] += 1
    assert set(opponents_of_a) == {"b", "c", "d"}  # any of the 3 closest, chosen at random
    five = pair_up(["p1", "p2", "p3", "p4", "p5"], {}, random.Random(0))
    assert len(five) == 2 and len({p for pair in five for p in pair}) == 4  # one sits out


def test_bench_league_and_leaderboard_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        f"tasks:\n  - name: peng\n    csv: {Path(__file__).resolve().parents[1] / 'examples/data/penguins.csv'}\n"
        "    target: species\n    metric: accuracy\n"
        "  - {name: dia, csv: 'sklearn:diabetes', target: target, metric: mae}\n"
    )
    results = tmp_path / "results"
    players = "tandem:max_iters=1,lightgbm"
    common = ["--tasks", str(tasks), "--players", players, "--budget", "20", "--results-dir", str(results)]
    assert main(["bench", *common]) == 0
    out = capsys.readouterr().out
    assert "[peng seed 0] tandem:max_iters=1" in out and "| player | AUP" in out
    store = ResultsStore(results)
    (bench,) = store.benches("bench")
    assert bench["command"].startswith("tandem bench --tasks") and bench["machine"]["cpus"]
    rows = store.results(bench["bench_id"])
    assert {(r["task"], r["player"]) for r in rows} == {
        (t, p) for t in ("peng", "dia") for p in ("tandem:max_iters=1", "lightgbm", "linear")
    }
    assert all(r["status"] == "ok" and r["score"] is not None for r in rows)
    folder = results / bench["bench_id"]
    assert (folder / "profiles.png").stat().st_size > 10_000 and (folder / "results.csv").exists()
    assert main(["bench", "--report", bench["bench_id"], "--results-dir", str(results)]) == 0
    assert "| player | AUP" in capsys.readouterr().out

    assert main(["league", *common, "--rounds", "3", "--rng-seed", "1"]) == 0
    out = capsys.readouterr().out
    # two tasks, one seed: the third round would repeat a match the stored games already decided
    assert out.count("match #") == 2 and "| rank | player | Elo |" in out
    assert len(store.results()) == len(rows)  # every match reused the bench's stored results
    matches = store.matches()
    rating = {"tandem:max_iters=1": 1200.0, "lightgbm": 1200.0}
    for m in matches:  # each stored rating follows the Elo formula from the one before
        a, b = m["player_a"], m["player_b"]
        assert (m["rating_a_before"], m["rating_b_before"]) == pytest.approx((rating[a], rating[b]))
        e_a = 1 / (1 + 10 ** ((rating[b] - rating[a]) / 400))
        rating[a] += 32 * (m["outcome"] - e_a)
        rating[b] -= 32 * (m["outcome"] - e_a)
        assert (m["rating_a_after"], m["rating_b_after"]) == pytest.approx((rating[a], rating[b]))
        score = {r["id"]: r["score"] for r in store.results()}
        assert (m["score_a"], m["score_b"]) == (score[m["result_a"]], score[m["result_b"]])
    with sqlite3.connect(store.path) as conn, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE matches SET outcome = 1")

    assert main(["elo", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    for name, value in rating.items():
        assert f"| {name} | {value:.1f} |" in out
    assert (results / "elo.png").stat().st_size > 10_000

    problems, names = scored_problems(store.results(bench["bench_id"]))
    assert all(0 < v <= 1.5 for v in compute_profiles(problems, names).aup.values())


def test_cli_rejects_bad_bench_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["bench", "--tasks", "nope", "--results-dir", str(tmp_path)]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = ["bench", "--tasks", "wine", "--players", "tandem:scientist=llm,linear", "--results-dir", str(tmp_path)]
    assert main(llm) == 2  # refused before any game is played
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    assert not (tmp_path / "results.sqlite").exists()
    assert main(["league", "--tasks", "wine", "--players", "linear", "--results-dir", str(tmp_path)]) == 2
    assert "at least two players" in capsys.readouterr().err
    assert main(["elo", "--results-dir", str(tmp_path / "empty")]) == 0
    assert "no results store" in capsys.readouterr().out


def _penguins(tmp_path: Path) -> Path:
    """One small task, so that a league of tandem players stays cheap (every game is stored and reused)."""
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        f"tasks:\n  - name: peng\n    csv: {Path(__file__).resolve().parents[1] / 'examples/data/penguins.csv'}\n"
        "    target: species\n    metric: accuracy\n"
    )
    return tasks


def test_a_player_whose_policy_file_went_away_plays_no_more_games_instead_of_losing_them(tmp_path: Path) -> None:
    """Removed (or changed) between rounds, the file made every later game a stored failure: an Elo
    loss for the player, reused by every later league."""
    policy = tmp_path / "mine.json"
    write_policy(policy, new_policy())
    players = [parse_player(f"tandem:policy={policy}:max_iters=1"), parse_player("linear")]
    assert players[0].withdrawn() is None and players[1].withdrawn() is None
    results = tmp_path / "results"
    tasks = select_tasks(str(_penguins(tmp_path)))
    gone = lambda _: policy.unlink()  # noqa: E731  # after the first match, before the second round
    run_league(tasks, players, results_dir=results, seeds=(0, 1), budget=20, rounds=2, on_match=gone)
    store = ResultsStore(results)
    assert len(store.matches()) == 1  # the first round's; the second's would have been a loss
    assert [r["player"] for r in store.results() if r["status"] == "failed"] == []
    assert "no such policy file" in str(players[0].withdrawn())
    write_policy(policy, new_policy(ridge=3.0))  # back, but another policy under the same name
    assert "changed since it joined" in str(players[0].withdrawn())


def test_players_folder_admits_policy_files_and_skips_bad_ones_once(tmp_path: Path) -> None:
    folder = tmp_path / "players"
    folder.mkdir()
    write_policy(folder / "a.json", new_policy())
    (folder / "broken.json").write_text("{not json")
    (folder / "foreign.json").write_text('{"format": "something-else"}')
    (folder / "notes.txt").write_text("not a policy file name")
    write_policy(folder / "\x1b[2Jwiped.json", new_policy())  # its name would be printed and stored
    (folder / "sub.json").mkdir()
    (folder / "zero.json").symlink_to("/dev/zero")  # read whole, it never ends
    with open(folder / "huge.json", "wb") as huge:
        huge.truncate(17 << 20)
    lines: list[str] = []
    fixed = [parse_player("tandem:max_iters=1"), parse_player("linear")]
    room = PlayersFolder(folder, fixed, lines.append)
    names = [p.name for p in room.roster()]
    digest = read_policy(folder / "a.json")["hash"][:8]
    assert names == ["tandem:max_iters=1", "linear", f"learned:a.json@{digest}:max_iters=1"]
    skipped = [line for line in lines if "skipped" in line]
    assert len(skipped) == 6 and any("broken.json: " in s and "not JSON" in s for s in skipped)
    assert any("\\x1b[2Jwiped.json: a player's name is the file's name" in s for s in skipped), skipped
    assert sum("not a regular file" in s for s in skipped) == 2 and any("huge.json: 17 MB" in s for s in skipped)
    assert all("\n" not in line and "\x1b" not in line for line in lines)
    lines.clear()
    assert [p.name for p in room.roster()] == names and lines == []  # nothing new, nothing said again
    retrained = new_policy(ridge=3.0)  # a new version of a.json is a new player, from the start rating
    write_policy(folder / "a.json", retrained)
    write_policy(folder / "b.json", new_policy())
    now = [p.name for p in room.roster()]
    assert len(now) == 4 and f"learned:a.json@{digest}:max_iters=1" not in now
    assert sum("joins at 1200" in line for line in lines) == 2
    (folder / "b.json").unlink()
    assert len(room.roster()) == 3
    with pytest.raises(InputError, match="no such folder"):
        PlayersFolder(tmp_path / "nowhere", fixed).roster()


def test_league_html_has_every_players_rating_line_and_no_script() -> None:
    history = [
        {"id": 1, "player_a": "A", "player_b": "B<&>", "outcome": 1.0, "k": 32},
        {"id": 2, "player_a": "B<&>", "player_b": "C", "outcome": 0.5, "k": 32},
        {"id": 3, "player_a": "C", "player_b": "A", "outcome": 0.0, "k": 32},
    ]
    table = sorted(replay(history).values(), key=lambda s: -s.rating)
    page = leaderboard_html(table)
    assert "<script" not in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count("<polyline") == 3 and "B&lt;&amp;&gt;" in page and "B<&>" not in page
    assert f"<td>{table[0].rating:.1f}</td>" in page and table[0].player == "A"
    svg = rating_svg(table)
    top_line = svg.split("<polyline")[1]  # A: two wins, its line ends at the top of the plot
    last_y = float(top_line.split('points="')[1].split('"')[0].split()[-1].split(",")[1])
    assert last_y == pytest.approx(12 + 10 * (300 - 12 - 30) / (table[0].rating + 10 - table[-1].rating + 10), abs=0.2)


def test_league_players_dir_joins_between_rounds_and_watch_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "players"
    folder.mkdir()
    (folder / "bad.json").write_text("[]")
    results = tmp_path / "results"
    common = ["--tasks", str(_penguins(tmp_path)), "--players", "tandem:max_iters=1,linear", "--budget", "20"]
    common += ["--results-dir", str(results), "--players-dir", str(folder), "--seeds", "0,1,2"]
    assert main(["league", *common, "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped bad.json") == 1 and out.count("match #") == 2
    write_policy(folder / "mine.json", new_policy())  # dropped in: it plays from the next league round on
    digest = read_policy(folder / "mine.json")["hash"][:8]
    store = ResultsStore(results)
    before = len(store.matches())

    stop_after = 2  # a real SIGINT (Ctrl-C) once the watching league has played this many more matches

    def interrupt_when_done() -> None:
        deadline = time.monotonic() + 300
        while len(store.matches()) < before + stop_after and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_done, daemon=True).start()
    assert main(["league", *common, "--watch", "--interval", "1", "--closest", "2"]) == 130
    captured = capsys.readouterr()
    assert "Run the same command to go on" in captured.err and "| rank | player | Elo |" in captured.out
    newcomer = f"learned:mine.json@{digest}:max_iters=1"  # with the league tandem's options
    watched = store.matches()[before:]
    assert len(watched) >= stop_after
    # the draws are seeded by the history: the newcomer plays in the first watched round
    assert any(newcomer in (m["player_a"], m["player_b"]) for m in watched)
    first = next(m for m in watched if newcomer in (m["player_a"], m["player_b"]))
    assert (first["rating_a_before"] if first["player_a"] == newcomer else first["rating_b_before"]) == 1200.0
    page = (results / "league.html").read_text()
    assert newcomer in page and page.count("<polyline") == 3

    again = len(store.matches())  # the same command goes on: ratings from the stored history, new draws
    assert main(["league", *common, "--rounds", "1"]) == 0
    capsys.readouterr()
    later = store.matches()[again:]
    table = replay(store.matches()[:again])
    m = later[0]
    assert (m["rating_a_before"], m["rating_b_before"]) == pytest.approx(
        (table[m["player_a"]].rating, table[m["player_b"]].rating)
    )
    assert main(["league", *common[:-4], "--players-dir", str(tmp_path / "nowhere"), "--rounds", "1"]) == 2
    assert "no such folder" in capsys.readouterr().err
