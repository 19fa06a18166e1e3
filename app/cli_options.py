"""The options the run commands share (run, resume, fork), and the run context they make.

One place for them, so that `tandem.cli` and `tandem.cli_history` both build on it and neither
imports the other. Building the parser must stay light (`tandem --help` starts in well under a
second, docs/cli-startup.md): the modules that run anything are imported inside the functions that
use them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NoReturn

from tandem.graph.context import CONTEXT_NUMBERS as RULES
from tandem.graph.context import RunContext
from tandem.tools.errors import InputError
from tandem.tools.numbers import MEMORY_SIZE, SPLIT_NUMBERS, NumberRule, byte_size
from tandem.tools.tokens import load_prices


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line: what was wrong, and where help is.

    Why: argparse prints the whole usage block (a dozen lines for `tandem run`) before the error,
    which buries the one line that matters; every other bad input gets one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self._refuse(self.prog, message)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """As argparse's, but an unknown option is named with its subcommand (`tandem run: error:
        unrecognized arguments: --bogus`), whose help is the one to read, not the top level's."""
        parsed, extras = super().parse_known_args(args, namespace)
        command = getattr(parsed, "command", None)
        if extras and self._subparsers is not None and isinstance(command, str):
            self._refuse(f"{self.prog} {command}", f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def _refuse(self, prog: str, message: str) -> NoReturn:
        self.exit(2, f"{prog}: error: {message} (see '{prog} --help')\n")


def number(
    kind: type[int] | type[float],
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
) -> Callable[[str], Any]:
    """An argparse `type=` for a numeric option: a finite number of `kind` in range, else argparse's
    one-line usage error (`OneLineParser`, exit status 2) saying what the option takes, never a traceback."""
    return option_type(NumberRule(kind, at_least=at_least, above=above, at_most=at_most, below=below))


def option_type(rule: NumberRule | Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse `type=` from a rule of tools/numbers.py (or a parser such as `byte_size`): the
    option's text is read by the same rule the Python API and the run context check values with."""
    parse = rule.parse if isinstance(rule, NumberRule) else rule

    def parse_option(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse_option


RUNS_DIR_HELP = "the folder of the run folders (default: $TANDEM_RUNS_DIR, else ./runs)"

#: The options that set a numeric run-context field, each read by the field's rule
#: (graph/context.py: `CONTEXT_NUMBERS`); also a bench player's `tandem:key=value`
#: (benchmarks/players.py), so `--max-iters -3` and `--players tandem:max_iters=-3` are refused alike.
CONTEXT_NUMBERS: dict[str, Callable[[str], Any]] = {
    name: option_type(byte_size if rule is MEMORY_SIZE else rule) for name, rule in RULES.items()
}
#: `--holdout`, `--folds` and `--seed`, by the rules `run_task` checks (tools/numbers.py).
SPLIT_OPTIONS: dict[str, Callable[[str], Any]] = {name: option_type(rule) for name, rule in SPLIT_NUMBERS.items()}


def context_number_error(key: str, value: Any) -> str | None:
    """Why `value` (already parsed, e.g. from `tandem:key=value`) is out of range for the numeric
    run-context field `key`, or None when it is fine (or `key` is not numeric). None is accepted
    where the field's default is None (no limit, the server's default)."""
    check = CONTEXT_NUMBERS.get(key)
    if check is None or (value is None and getattr(RunContext(), key) is None):
        return None
    try:
        check(str(value))  # as typed on a command line: True and 2.5 fail a whole-number check
    except argparse.ArgumentTypeError as exc:
        return str(exc)
    return None


def add_budget_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The budgets: run's defaults are RunContext's; resume's and fork's keep the run's own."""
    d = RunContext() if defaults else None
    own = "" if defaults else " (default: the run's own)"
    parser.add_argument(
        "--max-iters",
        type=CONTEXT_NUMBERS["max_iters"],
        default=d.max_iters if d else None,
        help="experiments after the baseline" + own,
    )
    parser.add_argument(
        "--time-budget",
        type=CONTEXT_NUMBERS["time_budget"],
        default=d.time_budget if d else None,
        help="working seconds for the search and delivery" + own,
    )
    parser.add_argument(
        "--token-budget",
        type=CONTEXT_NUMBERS["token_budget"],
        default=d.token_budget if d else None,
        help="total tokens of both agents" + (own or " (default: no limit)"),
    )
    parser.add_argument(
        "--candidate-time-limit",
        type=CONTEXT_NUMBERS["candidate_time_limit"],
        default=d.candidate_time_limit if d else None,
        help="seconds one candidate's cross-validation may take" + own,
    )
    parser.add_argument(
        "--n-jobs", type=CONTEXT_NUMBERS["n_jobs"], default=d.n_jobs if d else None, help="parallel fold fits" + own
    )
    parser.add_argument(
        "--memory-limit",
        type=CONTEXT_NUMBERS["memory_limit"],
        metavar="SIZE",
        help="memory the run and its fold workers should stay within, e.g. 1500M or 2G: when parallel folds "
        "would pass it, they are fitted one at a time in the run's process" + (own or " (default: no limit)"),
    )


#: Run-context fields the CLI sets directly from an option of the same name.
CONTEXT_OPTIONS = (
    "max_iters",
    "time_budget",
    "token_budget",
    "candidate_time_limit",
    "n_jobs",
    "memory_limit",
    "approve",
)
LLM_OPTIONS = (
    "model",
    "scientist_model",
    "executor_model",
    "base_url",
    "temperature",
    "request_timeout",
    "max_tool_calls",
)


def add_agent_options(parser: argparse.ArgumentParser) -> None:
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
    group.add_argument(
        "--temperature", type=CONTEXT_NUMBERS["temperature"], help="sampling temperature (default: the server's)"
    )
    group.add_argument(
        "--request-timeout",
        type=CONTEXT_NUMBERS["request_timeout"],
        help="seconds per chat request before a retry (default 120)",
    )
    group.add_argument(
        "--max-tool-calls",
        type=CONTEXT_NUMBERS["max_tool_calls"],
        help="tool calls an LLM agent may make per step (default 6)",
    )
    group.add_argument("--prices", help='JSON price table: {"model": {"input": $/1M tokens, "output": $/1M tokens}}')
    group.add_argument(
        "--policy",
        help="the heuristic Scientist's move policy: 'playbook' (default), 'learned' (the shipped policy) "
        "or a file from tandem train",
    )


def agent_changes(args: argparse.Namespace) -> dict[str, Any]:
    """Run-context changes from the agent options that were given."""
    changes: dict[str, Any] = {n: getattr(args, n) for n in LLM_OPTIONS if getattr(args, n, None) is not None}
    any_kind = any(getattr(args, name, None) for name in ("agents", "scientist", "executor"))
    for role in ("scientist", "executor"):
        kind = getattr(args, role, None) or getattr(args, "agents", None)
        if kind is None and (changes.get(f"{role}_model") or (changes.get("model") and not any_kind)):
            kind = "llm"  # naming a chat model for a role asks for an LLM agent there
        if kind is not None:
            changes[role] = kind
    if getattr(args, "policy", None):
        changes |= {"policy": args.policy, "policy_hash": None}  # the hash is read from the file anew
    if getattr(args, "prices", None):
        try:
            changes["prices"] = load_prices(args.prices)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the price table {args.prices}: {exc}") from None
    return changes


def context_changes(args: argparse.Namespace) -> dict[str, Any]:
    """Run-context changes from every option given (budgets, approval, agents): what run, resume
    and fork apply on top of the defaults or of the stored run's context."""
    changes = {name: getattr(args, name) for name in CONTEXT_OPTIONS if getattr(args, name, None) is not None}
    return changes | agent_changes(args)


def context_from(args: argparse.Namespace, base: RunContext) -> RunContext:
    return replace(base, **context_changes(args))


CHECKPOINT_DB_HELP = {
    "run": "keep the checkpoints in PostgreSQL, e.g. postgresql://USER@HOST:5432/DB (default $TANDEM_CHECKPOINT_DB, "
    "else SQLite in the run folder); run.json records it without the password",
    "resume": "the PostgreSQL database the run's checkpoints are in now, if it moved (recorded in run.json)",
    "history": "read the checkpoints from this PostgreSQL database instead of the one run.json records",
    "fork": "keep the fork's checkpoints in this PostgreSQL database (default: where the original's are)",
}


def add_checkpoint_db_option(parser: argparse.ArgumentParser, command: str) -> None:
    """--checkpoint-db for run, resume, history and fork (graph/postgres_checkpoints.py). The
    password comes from the string given here, $TANDEM_CHECKPOINT_DB, $PGPASSWORD or ~/.pgpass."""
    parser.add_argument("--checkpoint-db", metavar="URL", help=CHECKPOINT_DB_HELP[command])


def add_cluster_option(parser: argparse.ArgumentParser) -> None:
    """--cluster for run, resume and fork: the run's fold fits on a Dask cluster (tandem.run_cluster)."""
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="fit the cross-validation folds on a Dask cluster: tcp://HOST:8786 or local[:N] "
        "(default $TANDEM_CLUSTER, else local processes)",
    )


def add_running_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Every option of a command that drives a run (run, resume, fork): budgets, agents, display,
    checkpoint database and cluster. Only `run` has defaults for the budgets; the others keep the
    run's own unless told otherwise."""
    add_budget_options(parser, defaults=command == "run")
    add_agent_options(parser)
    add_run_display_options(parser)
    add_checkpoint_db_option(parser, command)
    add_cluster_option(parser)


MLFLOW_DEFAULT = "default"
"""What `--mlflow` without a URI stands for (resolved by `tandem.tracking.resolve_uri`)."""


def add_run_display_options(parser: argparse.ArgumentParser) -> None:
    """--approve, --plain and --mlflow, for run, resume and fork."""
    parser.add_argument(
        "--approve",
        nargs="?",
        const="delivery",
        choices=["delivery", "proposals", "never"],
        help="pause for your approval at the terminal: before delivery (the default of the flag), "
        "also before each proposal ('proposals'), or turn it off ('never')",
    )
    parser.add_argument("--plain", action="store_true", help="plain lines even on a terminal (no live view)")
    parser.add_argument(
        "--mlflow",
        nargs="?",
        const=MLFLOW_DEFAULT,
        metavar="URI",
        help="log the run to MLflow (the extra tandem-ml[mlflow]): a parent run, one nested run per experiment, "
        "the model; URI defaults to $TANDEM_MLFLOW_URI, else MLflow's default (sqlite:///mlflow.db here); "
        "setting $TANDEM_MLFLOW_URI turns it on for every run",
    )


def stored_context(run_id: str, runs_dir: str | None, overrides: dict[str, Any]) -> RunContext:
    """A stored run's context with the command line's changes (what resume and fork will use)."""
    from tandem.api import find_run  # LangGraph and scikit-learn: loaded by the commands that run, for start-up time
    from tandem.graph.persistence import load_run_config  # the checkpoint library, likewise

    _, context = load_run_config(find_run(run_id, runs_dir))
    return replace(context, **overrides)


def metrics_note(metrics: list[str] | None, primary: str | None) -> str | None:
    """One line when `--primary` names a metric `--metrics` leaves out, else None.

    The run does not refuse it: the primary metric is what decides which model is best, so it is
    always computed and reported first. The line says so, so that `--metrics f1 --primary recall`
    does not silently report a metric the user did not list.
    """
    if not metrics or not primary:
        return None
    listed = [m.strip().lower() for m in metrics]
    if primary.strip().lower() in listed:
        return None
    return (
        f"note: --primary {primary.strip()} is not in --metrics {','.join(metrics)}; it decides which model is best, "
        f"so it is reported too, first: {','.join([primary.strip().lower(), *listed])}"
    )


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """argparse's help with each option's default appended, as ArgumentDefaultsHelpFormatter does,
    except where there is nothing to show (no default, a flag) or the help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return action.help
        shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else default
        return f"{text} (default: {shown})".lstrip() if text else f"default: {shown}"


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every command's `--help` shows its options' defaults (the top parser and each subcommand)."""
    parser.formatter_class = DefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                show_defaults(child)
