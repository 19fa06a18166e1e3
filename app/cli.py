"""The `tandem` command line: run, resume, list, show and predict.

Bad input gets one line and exit code 2, never a traceback; Ctrl-C stops cleanly, keeps the
progress saved and says how to resume (exit 130).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import shutil
import sqlite3
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from tandem.benchmarks.cli import add_bench_commands, bench_farewell, cmd_bench, cmd_elo, cmd_league
from tandem.cli_history import COMMANDS as HISTORY_COMMANDS
from tandem.cli_history import add_history_commands
from tandem.cli_learning import COMMANDS as LEARNING_COMMANDS
from tandem.cli_learning import add_learning_commands, kept_by_training
from tandem.cli_options import (
    RUNS_DIR_HELP,
    SPLIT_OPTIONS,
    OneLineParser,
    add_running_options,
    context_changes,
    context_from,
    metrics_note,
    number,
    show_defaults,
    stored_context,
)
from tandem.graph.context import RunContext, default_runs_dir
from tandem.leaderboard import leaderboard, leaderboard_text
from tandem.run_listing import (
    BUDGETS,
    RUN_ID_RULE,
    delivered_iterations,
    finished_hint,
    list_runs,
    load_summary,
    run_path,
    runs_table,
    summary_text,
    tandem_command,
)
from tandem.stopping import exit_code_of, signals_stop_the_command
from tandem.tools.errors import InputError, ProviderStop, without_password

# `tandem --help`, `runs` and `show` start in well under a second (docs/cli-startup.md, measured by
# scripts/cli_startup.py) because nothing above loads LangGraph, pandas or scikit-learn: the
# commands that run a graph or a model import `tandem.api` and `tandem.live` themselves.

EXIT_BAD_INPUT = 2
EXIT_PROVIDER = 3
EXIT_OS = 3
EXIT_BROKEN_PIPE = 1
"""A reader that went away (`tandem history RUN | head -1`): Python's documentation (the signal
module's "Note on SIGPIPE") ends such a program with exit code 1, which is also what Python itself
reports for a failed write, and nothing on standard error: the reader asked for no more."""


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tandem", description="Two cooperating agents improve a model for your CSV.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start an improvement run on a CSV")
    run.add_argument("csv", help="the data file (.csv or .csv.gz)")
    run.add_argument("--target", required=True, help="the column to predict")
    run.add_argument("--metrics", help="comma-separated metrics to report, e.g. f1,recall,log_loss")
    run.add_argument("--primary", help="the metric that decides which model is best (default: the first)")
    run.add_argument("--task-type", choices=["binary", "multiclass", "regression"], help="override the inferred task")
    run.add_argument(
        "--holdout",
        type=SPLIT_OPTIONS["holdout"],
        default=0.2,
        help="share of rows kept for the final, honest score",
    )
    run.add_argument("--holdout-csv", help="a separate labelled CSV to use as the holdout instead")
    run.add_argument(
        "--folds", type=SPLIT_OPTIONS["folds"], default=5, help="cross-validation folds on the development part"
    )
    run.add_argument(
        "--seed",
        type=SPLIT_OPTIONS["seed"],
        default=0,
        help="seeds the split, the folds and the models",
    )
    run.add_argument("--runs-dir", default=None, help="where run folders go (default $TANDEM_RUNS_DIR or ./runs)")
    run.add_argument("--run-id", help="name of the run folder (default: time stamp and target)")
    add_running_options(run, "run")

    resume = sub.add_parser("resume", help="continue a stopped run from its last checkpoint")
    resume.add_argument("run_id")
    resume.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)
    resume.add_argument(
        "--force",
        action="store_true",
        help="continue a delivered run (with a raised budget), replacing its model and report",
    )
    add_running_options(resume, "resume")

    runs = sub.add_parser("runs", help="list runs")
    runs.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)

    show = sub.add_parser("show", help="print a run's summary")
    show.add_argument("run_id")
    show.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)
    show.add_argument("--json", action="store_true", help="print summary.json as is")

    predict = sub.add_parser("predict", help="predict a CSV with a run's delivered model")
    predict.add_argument("run_id")
    predict.add_argument("csv")
    predict.add_argument("-o", "--output", help="write predictions here (default: standard output)")
    predict.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="COL",
        help="copy this column (an ID) into the output, before the predictions; repeatable",
    )
    predict.add_argument(
        "--experiment",
        type=number(int, at_least=0),
        metavar="N",
        help="predict with experiment N instead of the delivered model (refitted once, cached in the run's models/)",
    )
    predict.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)

    board = sub.add_parser("leaderboard", help="a run's experiments, best CV score first, with fit and predict times")
    board.add_argument("run_id")
    board.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)
    board.add_argument("--json", action="store_true", help="print the rows as JSON")

    repair = sub.add_parser("repair", help="rebuild a run's ledger, rewards, summary and reports from its checkpoints")
    repair.add_argument("run_id")
    repair.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)
    repair.add_argument(
        "--salvage",
        action="store_true",
        help="the checkpoint database is damaged: copy every checkpoint that can still be read into a NEW run "
        "(RUN-salvaged, or --to) that continues from the last good one; the damaged folder is left as it is",
    )
    repair.add_argument("--to", metavar="NEW_RUN_ID", default=None, help="the salvaged run's id (with --salvage)")
    add_bench_commands(sub)
    add_history_commands(sub)
    add_learning_commands(sub)
    show_defaults(parser)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from tandem.api import run_task  # LangGraph, pandas, scikit-learn: only where used, for CLI start-up time
    from tandem.graph.persistence import new_run_id  # the checkpoint library, likewise
    from tandem.live import make_display  # rich and the graph's messages, likewise
    from tandem.run_cluster import fold_fits_on  # joblib, and Dask (an optional extra) with --cluster: likewise
    from tandem.tracking import track_run  # MLflow, an optional extra, only with --mlflow: likewise

    args.run_id = args.run_id or new_run_id(args.target)  # known up front, so Ctrl-C can name it
    context = context_from(args, RunContext(runs_dir=str(Path(args.runs_dir or default_runs_dir()).resolve())))
    metrics = [m for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    with (
        fold_fits_on(args.cluster),
        track_run(args.mlflow, args.run_id, context.runs_dir, new=True) as tracker,
        make_display(context, args.run_id, plain=args.plain) as display,
    ):
        summary = run_task(
            args.csv,
            args.target,
            metrics=metrics,
            primary_metric=args.primary,
            holdout=args.holdout,
            folds=args.folds,
            seed=args.seed,
            holdout_csv=args.holdout_csv,
            task_type=args.task_type,
            run_id=args.run_id,
            context=context,
            on_update=_after_note(metrics_note(metrics, args.primary), tracker.watch(display.on_update)),
            on_event=display.event_handler,
            on_approval=display.on_approval,
            checkpoint_db=args.checkpoint_db,
        )
    return 0 if summary.get("status") == "delivered" else 1


def _after_note(
    note: str | None, on_update: Callable[[str, dict[str, Any]], None] | None
) -> Callable[[str, dict[str, Any]], None] | None:
    """`on_update`, which first prints `note` (if any) on standard error, once.

    Why: the note about `--primary` and `--metrics` is true only of metrics that fit the task, which
    the run checks when it reads the data. Printed before, it announced "reported too, first: rmse"
    just before the run refused rmse for a binary task. The first update comes once setup is done."""
    if not note:
        return on_update
    pending = [note]

    def forward(node: str, update: dict[str, Any]) -> None:
        while pending:
            print(pending.pop(), file=sys.stderr)
        if on_update is not None:
            on_update(node, update)

    return forward


def _cmd_resume(args: argparse.Namespace) -> int:
    from tandem.api import resume_run  # LangGraph, pandas, scikit-learn: only where used, for CLI start-up time
    from tandem.live import make_display  # rich and the graph's messages, likewise
    from tandem.run_cluster import fold_fits_on  # joblib, and Dask (an optional extra) with --cluster: likewise
    from tandem.tracking import log_finished, track_run  # MLflow, an optional extra, only with --mlflow: likewise

    overrides = context_changes(args)
    raised = any(name in overrides for name in BUDGETS)
    hint = finished_hint(args.run_id, args.runs_dir)
    if hint and not raised and not args.force:
        print(hint)  # nothing would run: say how to continue instead of replaying where it stands
        log_finished(args.mlflow, args.run_id, args.runs_dir)  # with --mlflow: logged as it stands
        return 0
    before = delivered_iterations(args.run_id, args.runs_dir)
    with (
        fold_fits_on(args.cluster),
        track_run(args.mlflow, args.run_id, args.runs_dir) as tracker,
        make_display(stored_context(args.run_id, args.runs_dir, overrides), args.run_id, plain=args.plain) as display,
    ):
        summary = resume_run(
            args.run_id,
            runs_dir=args.runs_dir,
            on_update=tracker.watch(display.on_update),
            on_event=display.event_handler,
            on_approval=display.on_approval,
            force=args.force,
            checkpoint_db=args.checkpoint_db,
            **overrides,
        )
    if hint and raised and summary.get("status") == "delivered" and summary.get("iterations") == before:
        print(hint)  # the raised budget was still not above what the run had used (--force alone delivers again)
    return 0 if summary.get("status") == "delivered" else 1


def _cmd_runs(args: argparse.Namespace) -> int:
    rows = list_runs(args.runs_dir)
    if not rows:
        print(f"no runs in {args.runs_dir or default_runs_dir()}; start one with: tandem run DATA.csv --target COLUMN")
        return 0
    print(runs_table(rows))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    summary = load_summary(args.run_id, args.runs_dir)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(summary_text(summary, run_path(args.run_id, args.runs_dir), args.runs_dir))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from tandem.api import check_output_path, predict_file, write_predictions  # pandas and the model: start-up time

    if args.output:
        check_output_path(args.output, csv_path=args.csv, run_id=args.run_id, runs_dir=args.runs_dir)
    result = predict_file(args.run_id, args.csv, args.runs_dir, keep=args.keep, experiment=args.experiment)
    predictions = result.predictions
    if args.output:
        try:
            write_predictions(predictions, args.output)
        except OSError as exc:  # a full disk, no permission: about the output, not a run file
            raise InputError(f"cannot write the predictions to {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {len(predictions)} predictions to {args.output}")
    else:
        write_predictions(predictions, sys.stdout)
    said = sys.stdout if args.output else sys.stderr  # the CSV on standard output stays a CSV
    if result.scores:
        shown_scores = ", ".join(f"{name} {value:.4f}" for name, value in result.scores.items())
        print(f"scores on the {result.n_scored} rows with a target: {shown_scores}", file=said)
    for note in result.notes:
        print(f"note: {note}", file=said)
    return 0


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    rows = leaderboard(args.run_id, args.runs_dir)
    print(json.dumps(rows, indent=2) if args.json else leaderboard_text(rows, args.run_id))
    return 0


def _cmd_repair(args: argparse.Namespace) -> int:
    if args.salvage:
        from tandem.salvage import salvage_run, salvaged_text  # LangGraph and the checkpoints: CLI start-up time

        print(salvaged_text(salvage_run(args.run_id, new_run_id=args.to, runs_dir=args.runs_dir), args.runs_dir))
        return 0
    if args.to is not None:
        raise InputError("--to names the run --salvage makes; add --salvage, or leave --to out")
    from tandem.api import repair_run  # LangGraph and the checkpoints: CLI start-up time

    written = repair_run(args.run_id, args.runs_dir)
    print(f"repaired run {args.run_id}: rewrote {', '.join(written)} from its checkpoints")
    return 0


COMMANDS = {"run": _cmd_run, "resume": _cmd_resume, "runs": _cmd_runs, "show": _cmd_show, "predict": _cmd_predict}
COMMANDS.update({"bench": cmd_bench, "league": cmd_league, "elo": cmd_elo, "leaderboard": _cmd_leaderboard})
COMMANDS.update(HISTORY_COMMANDS)
COMMANDS["repair"] = _cmd_repair
COMMANDS.update(LEARNING_COMMANDS)


def os_error_line(
    exc: OSError | sqlite3.OperationalError, resume: str, runs_dir: Path, database: str = "checkpoints.sqlite"
) -> str:
    """One line for a failed write or read: what, where, and how to go on (`resume`: the command
    that continues the run, or for a command that only reads, itself; `database`: the SQLite file
    the command writes, which SQLite's errors do not name).

    Every file of a run is written atomically (`graph.persistence.atomic_file`) and every
    checkpoint in a SQLite transaction, so a full disk or another OS error mid-run leaves the last
    checkpoint intact and no partial file: freeing space and resuming continues where it stopped.
    SQLite often reports a full disk as a "disk I/O error", so the free space is looked at too.
    """
    if isinstance(exc, sqlite3.OperationalError):
        where, full = database, "full" in str(exc) or _nearly_full(runs_dir)
        reason = str(exc)
    else:
        where = Path(str(exc.filename)).name if exc.filename else "a run file"
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT) or (exc.errno == errno.EIO and _nearly_full(runs_dir))
        reason = exc.strerror or str(exc)
    if full:
        return f"disk full while writing {where}; free space and run `{resume}`"
    return f"{reason} ({where}); fix the cause and run `{resume}`"


def _nearly_full(path: Path) -> bool:
    """Whether the disk a path is on has less than 64 KiB free (False when that cannot be told)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free < 64 * 1024
    return False


def resume_command(args: argparse.Namespace) -> str:
    """The command that continues the run this command worked on, with the runs folder it was given."""
    return tandem_command("resume", getattr(args, "run_id", None) or "RUN_ID", getattr(args, "runs_dir", None))


def run_was_created(args: argparse.Namespace) -> bool:
    """Whether the run a run, resume or fork command worked on has a folder with its run.json, so
    `tandem resume` can find it: a run that failed or stopped before that (its runs folder is a file,
    a fork's checkpoints could not be opened) has nothing to resume, only the command to repeat."""
    run_id = getattr(args, "run_id", None)
    if args.command not in ("run", "resume", "fork") or not isinstance(run_id, str):
        return False
    if not RUN_ID_RULE.fullmatch(run_id):
        return False
    try:
        return (Path(getattr(args, "runs_dir", None) or default_runs_dir()) / run_id / "run.json").is_file()
    except OSError:
        return False


def again_command(args: argparse.Namespace, given: str) -> str:
    """The command that goes on from where this one failed or stopped: resuming the run it created,
    else `given`, the command as typed (which for a read-only command is the thing to retry)."""
    return resume_command(args) if run_was_created(args) else given


def stop_farewell(args: argparse.Namespace, given: str) -> tuple[str, str]:
    """What a stopped command is called and what it keeps, for the line a stop prints: read when
    the stop comes, so it names what the command knew by then (a new run's id, a bench's)."""
    if args.command in ("run", "resume", "fork"):
        if not run_was_created(args):
            return "the run", f"it had not started, nothing is saved. Run it again with: {given}"
        return "the run", f"progress is saved. Continue with: {resume_command(args)}"
    if args.command == "train":
        return "training", kept_by_training(args)
    if args.command in ("bench", "league"):
        return bench_farewell(args)
    return f"tandem {args.command}", "run the same command again"


def _silence_stdout(*, owns_process: bool) -> None:
    """Point standard output at /dev/null after its reader went away, as Python's documentation
    advises: the interpreter flushes it again at exit, which would otherwise fail a second time and
    print "Exception ignored ... BrokenPipeError". Only a process that is the command does this
    (a caller of `main` from Python keeps its own standard output)."""
    if not owns_process:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    with suppress(OSError, ValueError):  # standard output is not a file descriptor: nothing to redirect
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tandem` console script (`argv` None: this process is the command)."""
    os.environ.setdefault("LANGSMITH_TRACING", "false")
    args = make_parser().parse_args(argv)
    # repeated in messages: without a connection string's password (libpq finds it in PGPASSWORD or ~/.pgpass)
    given = shlex.join(["tandem", *(without_password(a) for a in (sys.argv[1:] if argv is None else argv))])
    try:
        with signals_stop_the_command(lambda: stop_farewell(args, given), owns_process=argv is None):
            code = COMMANDS[args.command](args)
            sys.stdout.flush()  # a reader gone away is found here, not at exit after this handler
            return code
    except BrokenPipeError:  # an OSError: before that branch, which would blame a run file
        _silence_stdout(owns_process=argv is None)
        return EXIT_BROKEN_PIPE
    except InputError as exc:
        print(f"tandem: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ProviderStop as exc:
        if run_was_created(args):
            print(f"tandem: {exc}; progress is saved, continue with: {resume_command(args)}", file=sys.stderr)
        else:
            print(f"tandem: {exc}; nothing was saved, run again with: {given}", file=sys.stderr)
        return EXIT_PROVIDER
    except (OSError, sqlite3.OperationalError) as exc:
        runs_dir = Path(getattr(args, "runs_dir", None) or default_runs_dir())
        again = again_command(args, given)
        database = "results.sqlite" if args.command in ("bench", "league", "elo") else "checkpoints.sqlite"
        print(f"tandem: {os_error_line(exc, again, runs_dir, database)}", file=sys.stderr)
        return EXIT_OS
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGINT or SIGTERM sent to this process (tandem.stopping)
        what, kept = stop_farewell(args, given)
        print(f"\ntandem: {what} stopped; {kept}", file=sys.stderr)
        return exit_code_of(stop)
    except Exception as exc:
        if type(exc).__module__.partition(".")[0] != "psycopg":  # the PostgreSQL checkpoints' driver (optional extra)
            raise
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        print(
            f"tandem: the checkpoint database failed ({reason}); every step up to the last checkpoint is saved there: "
            f"continue with `{again_command(args, given)}` once it is back",
            file=sys.stderr,
        )
        return EXIT_OS


if __name__ == "__main__":
    raise SystemExit(main())
