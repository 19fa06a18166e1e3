"""The `tandem` command line: run, resume, list, show and predict.

Bad input gets one line and exit code 2, never a traceback; Ctrl-C stops cleanly, keeps the
progress saved and says how to resume (exit 130).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from graph.cli_bench import add_bench_commands, cmd_bench, cmd_leaderboard, cmd_league
from graph.cli_history import COMMANDS as HISTORY_COMMANDS
from graph.cli_history import add_history_commands, add_run_display_options, stored_context
from graph.context import RunContext, default_runs_dir

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_PROVIDER = 3


def _add_budget_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    d = RunContext() if defaults else None
    parser.add_argument(
        "--max-iters", type=int, default=d.max_iters if d else None, help="experiments after the baseline"
    )
    parser.add_argument(
        "--time-budget", type=float, default=d.time_budget if d else None, help="working seconds for the search"
    )
    parser.add_argument(
        "--token-budget", type=int, default=d.token_budget if d else None, help="total tokens of both agents"
    )
    parser.add_argument(
        "--candidate-time-limit",
        type=float,
        default=d.candidate_time_limit if d else None,
        help="seconds one candidate's cross-validation may take",
    )
    parser.add_argument("--n-jobs", type=int, default=d.n_jobs if d else None, help="parallel fold fits")


#: Run-context fields the CLI sets directly from an option of the same name.
CONTEXT_OPTIONS = ("max_iters", "time_budget", "token_budget", "candidate_time_limit", "n_jobs", "approve")
LLM_OPTIONS = (
    "model",
    "scientist_model",
    "executor_model",
    "base_url",
    "temperature",
    "request_timeout",
    "max_tool_calls",
)


def _add_agent_options(parser: argparse.ArgumentParser) -> None:
    """Agent kinds and chat-model settings; unset options keep the run's (or the default) values."""
    kinds = ["heuristic", "llm"]
    group = parser.add_argument_group("agents (the API key is read from $OPENAI_API_KEY only)")
    group.add_argument("--agents", choices=kinds, help="kind of both agents (default heuristic)")
    group.add_argument("--scientist", choices=kinds, help="kind of the Scientist (overrides --agents)")
    group.add_argument("--executor", choices=kinds, help="kind of the Executor (overrides --agents)")
    group.add_argument("--model", help="chat model of the LLM agents (default gpt-4o-mini; alone: --agents llm)")
    group.add_argument("--scientist-model", help="chat model of the Scientist (implies --scientist llm)")
    group.add_argument("--executor-model", help="chat model of the Executor (implies --executor llm)")
    group.add_argument("--base-url", help="OpenAI-compatible server (default $OPENAI_BASE_URL, else OpenAI)")
    group.add_argument("--temperature", type=float, help="sampling temperature (default: the server's)")
    group.add_argument("--request-timeout", type=float, help="seconds per chat request before a retry (default 120)")
    group.add_argument("--max-tool-calls", type=int, help="tool calls an LLM agent may make per step (default 6)")
    group.add_argument("--prices", help='JSON price table: {"model": {"input": $/1M tokens, "output": $/1M tokens}}')


def _agent_changes(args: argparse.Namespace) -> dict[str, Any]:
    """Run-context changes from the agent options that were given."""
    from tools.data import InputError
    from tools.tokens import load_prices

    changes: dict[str, Any] = {n: getattr(args, n) for n in LLM_OPTIONS if getattr(args, n, None) is not None}
    any_kind = any(getattr(args, name, None) for name in ("agents", "scientist", "executor"))
    for role in ("scientist", "executor"):
        kind = getattr(args, role, None) or getattr(args, "agents", None)
        if kind is None and (changes.get(f"{role}_model") or (changes.get("model") and not any_kind)):
            kind = "llm"  # naming a chat model for a role asks for an LLM agent there
        if kind is not None:
            changes[role] = kind
    if getattr(args, "prices", None):
        try:
            changes["prices"] = load_prices(args.prices)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the price table {args.prices}: {exc}") from None
    return changes


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem", description="Two cooperating agents improve a model for your CSV.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start an improvement run on a CSV")
    run.add_argument("csv", help="the data file (.csv or .csv.gz)")
    run.add_argument("--target", required=True, help="the column to predict")
    run.add_argument("--metrics", help="comma-separated metrics to report, e.g. f1,recall,log_loss")
    run.add_argument("--primary", help="the metric that decides which model is best (default: the first)")
    run.add_argument("--task-type", choices=["binary", "multiclass", "regression"], help="override the inferred task")
    run.add_argument("--holdout", type=float, default=0.2, help="share of rows kept for the final, honest score")
    run.add_argument("--holdout-csv", help="a separate labelled CSV to use as the holdout instead")
    run.add_argument("--folds", type=int, default=5, help="cross-validation folds on the development part")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--runs-dir", default=None, help="where run folders go (default $TANDEM_RUNS_DIR or ./runs)")
    run.add_argument("--run-id", help="name of the run folder (default: time stamp and target)")
    _add_budget_options(run, defaults=True)
    _add_agent_options(run)
    add_run_display_options(run)

    resume = sub.add_parser("resume", help="continue a stopped run from its last checkpoint")
    resume.add_argument("run_id")
    resume.add_argument("--runs-dir", default=None)
    _add_budget_options(resume, defaults=False)
    _add_agent_options(resume)
    add_run_display_options(resume)

    runs = sub.add_parser("runs", help="list runs")
    runs.add_argument("--runs-dir", default=None)

    show = sub.add_parser("show", help="print a run's summary")
    show.add_argument("run_id")
    show.add_argument("--runs-dir", default=None)
    show.add_argument("--json", action="store_true", help="print summary.json as is")

    predict = sub.add_parser("predict", help="predict a CSV with a run's delivered model")
    predict.add_argument("run_id")
    predict.add_argument("csv")
    predict.add_argument("-o", "--output", help="write predictions here (default: standard output)")
    predict.add_argument("--runs-dir", default=None)
    add_bench_commands(sub)
    add_history_commands(sub)
    return parser


class Progress:
    """One plain line per finished step: what was proposed, how it scored, what it earned."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.metric = ""

    def __call__(self, node: str, update: dict[str, Any]) -> None:
        line = self.describe(node, update)
        if line:
            print(line, file=self.stream or sys.stdout, flush=True)

    def describe(self, node: str, update: dict[str, Any]) -> str | None:
        if node == "setup":
            task = update["task"]
            self.metric = task["primary_metric"]
            base = update["ledger"][0]
            notes = "".join(f"\n  note: {n}" for n in task["notes"])
            return (
                f"[setup] {task['task_type']} task on {task['target']!r}: {task['n_dev_rows']} dev rows "
                f"({task['folds']} folds), {task['n_holdout_rows']} holdout rows; run folder {update['run_dir']}"
                f"{notes}\n[#0 baseline] CV {self.metric} {base['primary']:.4f} ± {base['cv_std'][self.metric]:.4f}"
            )
        if node == "scientist" and update.get("proposal", {}).get("action") == "deliver":
            return f"[scientist] {update['proposal']['rationale']}"
        if node == "reward":
            (record,) = update["ledger"]
            metric = self.metric or next(iter(record["cv"]), "")
            score = (
                f"CV {metric} {record['primary']:.4f}"
                if record["primary"] is not None
                else f"{record['status']}: {record['error']}"
            )
            flag = " *significant*" if record["significant"] else ""
            best = (
                " -> new incumbent"
                if record["incumbent_after"] == record["id"]
                else f" (incumbent #{record['incumbent_after']})"
            )
            rewards = record["rewards"]
            used = {a: u["input"] + u["output"] for a, u in record.get("tokens", {}).items()}
            tokens = f"; tokens S {used.get('scientist', 0)} E {used.get('executor', 0)}" if any(used.values()) else ""
            return (
                f"[#{record['id']} {record['move'] or ''}] {record['proposal'][:100]}\n"
                f"    {score}{flag}{best}; fidelity {record['fidelity']:.2f}; "
                f"reward S {rewards['scientist']:+.4f} E {rewards['executor']:+.4f}{tokens}"
            )
        if node == "deliver":
            s = update["delivered"]
            metric = s["task"]["primary_metric"]
            return (
                f"[deliver] {s['stop_reason']}\n"
                f"Delivered experiment #{s['best']['experiment_id']}: CV {metric} {s['best']['cv'][metric]:.4f}; "
                f"holdout {metric} {_num(s['best']['holdout'].get(metric))} "
                f"(baseline {_num(s['baseline']['holdout'].get(metric))})\n"
                f"Report: {s['artifacts']['report']}\nModel:  {s['artifacts']['model']}"
            )
        return None


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "–"


def _context_from(args: argparse.Namespace, base: RunContext) -> RunContext:
    changes = {name: getattr(args, name) for name in CONTEXT_OPTIONS if getattr(args, name, None) is not None}
    return replace(base, **changes, **_agent_changes(args))


def _cmd_run(args: argparse.Namespace) -> int:
    from graph.api import run_task
    from graph.live import make_display
    from nodes.setup import new_run_id

    args.run_id = args.run_id or new_run_id(args.target)  # known up front, so Ctrl-C can name it
    context = _context_from(args, RunContext(runs_dir=str(Path(args.runs_dir or default_runs_dir()).resolve())))
    metrics = [m for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    with make_display(context, args.run_id, plain=args.plain) as display:
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
            on_update=display.on_update,
            on_event=display.event_handler,
            on_approval=display.on_approval,
        )
    return 0 if summary.get("status") == "delivered" else 1


def _cmd_resume(args: argparse.Namespace) -> int:
    from graph.api import resume_run

    overrides = {name: getattr(args, name) for name in CONTEXT_OPTIONS if getattr(args, name) is not None}
    overrides.update(_agent_changes(args))
    from graph.live import make_display

    with make_display(stored_context(args.run_id, args.runs_dir, overrides), args.run_id, plain=args.plain) as display:
        summary = resume_run(
            args.run_id,
            runs_dir=args.runs_dir,
            on_update=display.on_update,
            on_event=display.event_handler,
            on_approval=display.on_approval,
            **overrides,
        )
    return 0 if summary.get("status") == "delivered" else 1


def _cmd_runs(args: argparse.Namespace) -> int:
    from graph.api import list_runs

    rows = list_runs(args.runs_dir)
    if not rows:
        print(f"no runs in {args.runs_dir or default_runs_dir()}")
        return 0
    print(f"{'run id':40} {'status':10} {'target':20} {'metric':10} {'best CV':>9} {'holdout':>9}")
    for r in rows:
        print(
            f"{r['run_id']:40} {r['status']:10} {str(r['target'])[:20]:20} {r['primary_metric'] or ''!s:10} "
            f"{_num(r['best_cv']):>9} {_num(r['best_holdout']):>9}"
        )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from graph.api import load_summary

    summary = load_summary(args.run_id, args.runs_dir)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    task, metric = summary["task"], summary["task"]["primary_metric"]
    base, best = summary["baseline"], summary["best"]
    print(f"run {summary['run_id']}: {summary['status']} after {summary['iterations']} experiments")
    print(f"stopped: {summary['stop_reason']}")
    print(f"task: {task['task_type']} on {task['target']!r}, primary metric {metric}")
    print(f"{'':22}{'baseline #0':>14}{'delivered #' + str(best['experiment_id']):>14}")
    for part in ("cv", "holdout"):
        for m in task["metrics"]:
            print(f"{part + ' ' + m:22}{_num(base[part].get(m)):>14}{_num(best[part].get(m)):>14}")
    print(f"delivered: {best['proposal']}")
    print(f"rewards: {summary['rewards']}; tokens: {summary['tokens']}")
    print(f"report: {summary['artifacts']['report']}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from graph.api import predict_csv

    predictions = predict_csv(args.run_id, args.csv, args.runs_dir)
    if args.output:
        predictions.to_csv(args.output, index=False)
        print(f"wrote {len(predictions)} predictions to {args.output}")
    else:
        predictions.to_csv(sys.stdout, index=False)
    return 0


COMMANDS = {"run": _cmd_run, "resume": _cmd_resume, "runs": _cmd_runs, "show": _cmd_show, "predict": _cmd_predict}
COMMANDS.update({"bench": cmd_bench, "league": cmd_league, "leaderboard": cmd_leaderboard})
COMMANDS.update(HISTORY_COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tandem` console script."""
    os.environ.setdefault("LANGSMITH_TRACING", "false")
    args = make_parser().parse_args(argv)
    from tools.chat import ProviderStop
    from tools.data import InputError

    try:
        return COMMANDS[args.command](args)
    except InputError as exc:
        print(f"tandem: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ProviderStop as exc:
        run_id = getattr(args, "run_id", None) or "RUN_ID"
        print(f"tandem: {exc}; progress is saved, continue with: tandem resume {run_id}", file=sys.stderr)
        return EXIT_PROVIDER
    except KeyboardInterrupt:
        run_id = getattr(args, "run_id", None) or "RUN_ID"
        print(f"\ntandem: interrupted; progress is saved. Continue with: tandem resume {run_id}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
