"""The `tandem bench`, `tandem league` and `tandem elo` subcommands.

`tandem elo` prints the benchmark players' Elo ratings; `tandem leaderboard RUN` is another
thing, a run's own experiments (tandem.leaderboard).

Kept apart from graph/cli.py so the run commands and the benchmark commands can change
independently; `graph.cli.make_parser` calls `add_bench_commands` and its COMMANDS table maps
the names to the `cmd_*` functions here. The work itself lives in tools/ (bench, league,
profiles, results); this module only parses options and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tandem.cli_options import number
from tandem.tools.dask_client import client_for

# The benchmark modules load tandem's whole stack (LangGraph, scikit-learn, LightGBM, matplotlib):
# each command imports what it uses, so that building the `tandem` parser stays light.


def _seeds(text: str) -> list[int]:
    from tandem.benchmarks.tasks import MAX_BENCH_SEEDS  # parsed only for a bench, which loads it anyway

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers separated by commas, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    if any(not 0 <= seed <= MAX_BENCH_SEEDS for seed in seeds):
        raise argparse.ArgumentTypeError(f"seeds are whole numbers from 0 to {MAX_BENCH_SEEDS}, got {text!r}")
    return list(dict.fromkeys(seeds))


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tasks",
        help="comma-separated default-suite task names and/or .toml/.yaml task files (default: the whole suite)",
    )
    parser.add_argument(
        "--players",
        help="comma-separated players: tandem[:key=value...], linear, lightgbm, flaml[:n_jobs=N], "
        "autogluon[:cpus=N] (default: tandem,linear,lightgbm and flaml when installed)",
    )
    parser.add_argument(
        "--budget", type=number(float, above=0), help="seconds per player and task (default: each task's own budget)"
    )
    parser.add_argument(
        "--seeds",
        type=_seeds,
        default=[0],
        help="comma-separated seeds (default: 0); seed s is the players' seed and the task's split seed + s "
        "(a task with a fixed split, e.g. a holdout file, keeps its split)",
    )
    parser.add_argument(
        "--policy", help="the tandem players' Scientist policy: playbook, learned or a file from tandem train"
    )
    parser.add_argument(
        "--results-dir", default=None, help="where the results store goes (default $TANDEM_RESULTS_DIR or ./results)"
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="play the games as tasks on a Dask cluster: tcp://HOST:8786, or local[:N] for N local worker "
        "processes (default $TANDEM_CLUSTER, else here, one after another)",
    )


def add_bench_commands(sub: Any) -> None:
    """Add the three subcommands to the `tandem` parser's subparsers."""
    bench = sub.add_parser("bench", help="run players over tasks: results table, performance profiles and AUP")
    _add_common(bench)
    bench.add_argument(
        "--report", metavar="BENCH_ID", help="re-derive a stored bench's table and profiles; run nothing"
    )
    bench.add_argument("--list", action="store_true", help="list the default suite's tasks and the players, then exit")
    bench.add_argument(
        "--resume",
        metavar="BENCH_ID",
        help="continue a stopped bench with its own settings: play only its missing games",
    )
    bench.add_argument(
        "--reuse",
        metavar="BENCH_ID:PLAYERS[:TASKS]",
        action="append",
        default=[],
        help="copy these players' games (on these tasks; default all) from an earlier bench instead of "
        "playing them again, where it played the same data, split, seed and budget (e.g. after a change "
        "to tandem, --reuse bench-...:flaml,autogluon); the others are played. Give it once per source",
    )

    league = sub.add_parser("league", help="play matchmade head-to-head matches and update Elo ratings")
    _add_common(league)
    league.add_argument(
        "--rounds", type=number(int, at_least=1), default=10, help="matchmaking rounds (each pairs up the players)"
    )
    league.add_argument(
        "--closest", type=number(int, at_least=1), default=3, help="opponent drawn among this many nearest ratings"
    )
    league.add_argument("--k", type=number(float, above=0), default=32.0, help="Elo K factor")
    league.add_argument(
        "--tolerance",
        type=number(float, at_least=0),
        default=0.001,
        help="draw when scores differ by at most this (absolute or relative)",
    )
    league.add_argument(
        "--rng-seed", type=number(int, at_least=0), default=0, help="seed of matchmaking and of the task/seed draws"
    )
    league.add_argument("--fresh", action="store_true", help="play every match again instead of reusing stored results")

    league.add_argument(
        "--players-dir",
        metavar="DIR",
        help="before every round, each policy file (*.json) in DIR joins as learned:<file>@<hash> at the "
        "starting rating; a bad file is one line and skipped",
    )
    league.add_argument(
        "--watch",
        action="store_true",
        help="keep playing rounds until Ctrl-C (instead of --rounds); run the same command again to go on",
    )
    league.add_argument(
        "--interval",
        type=number(float, at_least=1),  # 0 spun through rounds of stored games at full CPU
        default=30.0,
        help="with --watch: seconds to wait between rounds (at least 1)",
    )

    elo = sub.add_parser(
        "elo", help="print the benchmark league's Elo ratings of players and write their PNG (not a run's models)"
    )
    elo.add_argument("--results-dir", default=None)
    elo.add_argument("--png", help="where the PNG goes (default: <results-dir>/elo.png)")


def _command(args: argparse.Namespace, extra: tuple[str, ...] = ()) -> str:
    """The canonical command line that reproduces this invocation, as it was typed in substance
    (--cluster too: it changes where the games run, not their results, but a published command
    should be the one that ran)."""
    parts = ["tandem", args.command]
    for name in ("tasks", "players", "budget", "policy", "results_dir", "cluster", *extra):
        value = getattr(args, name, None)
        for one in value if isinstance(value, list) else [value]:  # a repeatable option, once per value
            if one is not None and one is not False:
                parts += [f"--{name.replace('_', '-')}"] + ([] if one is True else [str(one)])
    parts += ["--seeds", ",".join(map(str, args.seeds))]
    return " ".join(shlex.quote(p) for p in parts)


def _results_dir(args: argparse.Namespace) -> str:
    from tandem.benchmarks.results_store import default_results_dir  # heavy stack: CLI start-up time

    return str(Path(args.results_dir or default_results_dir()).resolve())


def bench_farewell(args: argparse.Namespace) -> tuple[str, str]:
    """What a stopped bench or league is called and what it keeps, for the line a stop prints."""
    results_dir = _results_dir(args)
    store = Path(results_dir) / "results.sqlite"
    if args.command == "league":
        return "the league", f"its finished matches are in {store}. Run the same command to go on."
    bench_id = getattr(args, "bench_id", None) or args.resume
    if not bench_id:
        return "the bench", "it had not started a game"
    where = f" --results-dir {shlex.quote(results_dir)}" if args.results_dir else ""
    return "the bench", f"its finished games are in {store}. Continue with: tandem bench --resume {bench_id}{where}"


def cmd_bench(args: argparse.Namespace) -> int:
    from tandem.benchmarks.bench import (  # heavy stack: CLI start-up time
        Reuse,
        bench_report,
        describe_result,
        run_bench,
        with_baseline,
    )
    from tandem.benchmarks.cluster import cluster_address, dashboard, open_client, progress  # likewise
    from tandem.benchmarks.players import PLAYER_HELP, flaml_available, parse_players, with_policy  # likewise
    from tandem.benchmarks.results_store import ResultsStore  # likewise
    from tandem.benchmarks.tasks import default_suite, select_tasks  # likewise

    if args.list:
        for task in default_suite():
            print(f"{task.name:20} {task.metric or 'default':9} budget {task.budget:>5.0f} s  {task.description}")
        print()
        for name, text in PLAYER_HELP.items():
            note = " [not installed]" if name == "flaml" and not flaml_available() else ""
            print(f"{name:10} {text}{note}")
        return 0
    results_dir = _results_dir(args)
    if args.report:
        report = bench_report(ResultsStore(results_dir), args.report)
        print(report.markdown)
        print(f"report: {Path(results_dir) / args.report / 'report.md'}")
        return 0
    asked = args  # the command line `bench_farewell` reads if the bench is stopped
    if args.resume is not None:  # `--resume ''` too: it names no bench, and must not start a new one
        args = _stored_command(ResultsStore(results_dir), args)
    tasks = select_tasks(args.tasks)
    players = with_policy(parse_players(args.players), args.policy)
    reuse = [Reuse.parse(text) for text in args.reuse]
    if not args.players and not flaml_available():
        print("note: FLAML is not installed, so it does not play; pip install 'tandem-ml[bench]' to add it")
    print(
        f"bench: {len(tasks)} tasks x {len(args.seeds)} seeds x players {', '.join(p.name for p in players)}"
        f"; results appended to {Path(results_dir) / 'results.sqlite'}",
        flush=True,
    )
    address = cluster_address(args.cluster)
    with ExitStack() as stack:
        client = stack.enter_context(open_client(address)) if address else None
        if client is not None:  # a live bar over the games, with the dashboard's link
            total = len(tasks) * len(args.seeds) * len(with_baseline(players))
            done = len(ResultsStore(results_dir).results(args.resume)) if args.resume else 0
            show = stack.enter_context(progress("games", total, done, dashboard(client)))
        else:
            show = _print_line
        bench_id = run_bench(
            tasks,
            players,
            seeds=args.seeds,
            budget=args.budget,
            results_dir=results_dir,
            command=_command(args, ("reuse",)),
            on_result=lambda row: show(describe_result(row)),
            cluster=client,
            resume=args.resume,
            reuse=reuse,
            on_start=lambda bench_id: setattr(asked, "bench_id", bench_id),
        )
    report = bench_report(ResultsStore(results_dir), bench_id)
    print()
    print(report.markdown)
    print(f"bench {bench_id}: report {Path(results_dir) / bench_id / 'report.md'}")
    return 0


def _print_line(text: str) -> None:
    print(text, flush=True)


def _stored_command(store: Any, args: argparse.Namespace) -> argparse.Namespace:
    """A stopped bench's own options, parsed from the command line it stored, with this
    invocation's --cluster, --resume and --results-dir (a killed coordinator goes on where it was)."""
    from tandem.tools.data import InputError  # pandas behind it: CLI start-up time

    stored = store.bench(args.resume)
    if stored is None or stored["kind"] != "bench":
        known = ", ".join(b["bench_id"] for b in store.benches("bench")[-5:]) or "none"
        raise InputError(f"no bench {args.resume!r} to resume in {store.path} (recent benches: {known})")
    parser = argparse.ArgumentParser(prog="tandem", exit_on_error=False)
    add_bench_commands(parser.add_subparsers(dest="command"))
    try:  # argparse prints a subcommand's usage before it raises: the one line below says it all
        with contextlib.redirect_stderr(io.StringIO()):
            again = parser.parse_args(shlex.split(stored["command"])[1:])
    except (argparse.ArgumentError, SystemExit, ValueError):
        raise InputError(f"bench {args.resume} cannot be resumed: its stored command {stored['command']!r}") from None
    again.cluster, again.resume, again.results_dir = args.cluster, args.resume, args.results_dir
    return again


def cmd_league(args: argparse.Namespace) -> int:
    from tandem.benchmarks.league import describe_match, leaderboard_markdown, run_league, standings  # heavy stack
    from tandem.benchmarks.league_watch import league_rounds, write_leaderboard_html  # likewise
    from tandem.benchmarks.players import parse_players, with_policy  # likewise, for CLI start-up time
    from tandem.benchmarks.results_store import ResultsStore  # likewise
    from tandem.benchmarks.tasks import select_tasks  # likewise

    results_dir = _results_dir(args)
    tasks = select_tasks(args.tasks)
    players = with_policy(parse_players(args.players), args.policy)

    def on_match(match: dict[str, Any]) -> None:
        print(describe_match(match), flush=True)
        write_leaderboard_html(ResultsStore(results_dir))  # league.html follows the league as it plays

    try:
        with client_for(args.cluster) as client:
            league_id = run_league(
                tasks,
                players,
                results_dir=results_dir,
                seeds=args.seeds,
                budget=args.budget,
                rounds=None if args.watch else args.rounds,
                closest=args.closest,
                k=args.k,
                tolerance=args.tolerance,
                rng_seed=args.rng_seed,
                fresh=args.fresh,
                command=_command(
                    args,
                    ("rounds", "closest", "k", "tolerance", "rng_seed", "fresh", "players_dir", "watch", "interval"),
                ),
                on_match=on_match,
                cluster=client,
                roster=league_rounds(players, args.players_dir, args.interval if args.watch else 0.0),
            )
    except KeyboardInterrupt:  # --watch ends this way; any league may: the standings so far, then the stop's line
        print()
        print(leaderboard_markdown(standings(ResultsStore(results_dir))))
        print(f"leaderboard page: {write_leaderboard_html(ResultsStore(results_dir))}")
        raise
    print()
    print(leaderboard_markdown(standings(ResultsStore(results_dir))))
    print(f"leaderboard page: {write_leaderboard_html(ResultsStore(results_dir))}")
    print(f"league {league_id}: matches appended to {Path(results_dir) / 'results.sqlite'}")
    return 0


def cmd_elo(args: argparse.Namespace) -> int:
    """The league's Elo table (`tandem elo`); called `tandem leaderboard` before runs had one."""
    from tandem.benchmarks.league import leaderboard_markdown, plot_leaderboard, standings  # heavy: start-up time
    from tandem.benchmarks.league_watch import write_leaderboard_html  # likewise
    from tandem.benchmarks.results_store import ResultsStore  # likewise

    results_dir = Path(_results_dir(args))
    if not (results_dir / "results.sqlite").exists():
        print(f"no results store in {results_dir}; play some matches with: tandem league")
        return 0
    table = standings(ResultsStore(results_dir))
    if not table:
        print(f"no matches yet in {results_dir / 'results.sqlite'}; play some with: tandem league")
        return 0
    print(leaderboard_markdown(table))
    png = plot_leaderboard(table, args.png or results_dir / "elo.png")
    print(f"plot: {png}")
    print(f"page: {write_leaderboard_html(ResultsStore(results_dir))}")
    return 0
