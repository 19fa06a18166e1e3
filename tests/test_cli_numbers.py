"""Every numeric option of the CLI is checked before anything runs: one line, exit status 2."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from tandem.benchmarks.players import TandemPlayer, parse_player
from tandem.cli import main, make_parser
from tandem.cli_options import DefaultsHelpFormatter, context_from, context_number_error, metrics_note, number
from tandem.graph.context import RunContext
from tandem.tools.errors import InputError

BAD = [
    ("--max-iters", "-3"),
    ("--max-iters", "0"),
    ("--max-iters", "2.5"),
    ("--time-budget", "0"),
    ("--time-budget", "-1"),
    ("--time-budget", "nan"),
    ("--time-budget", "inf"),
    ("--token-budget", "-5"),
    ("--candidate-time-limit", "0"),
    ("--n-jobs", "0"),
    ("--holdout", "0"),
    ("--holdout", "1"),
    ("--holdout", "1.5"),
    ("--folds", "1"),
    ("--seed", "-1"),
    ("--seed", "x"),
    ("--seed", "4294967296"),  # past what scikit-learn's splitters take
    ("--temperature", "-0.1"),
    ("--temperature", "3"),
    ("--request-timeout", "0"),
    ("--max-tool-calls", "0"),
    ("--memory-limit", "lots"),
    ("--memory-limit", "512K"),
    ("--memory-limit", "0"),
]


@pytest.mark.parametrize(("option", "value"), BAD, ids=[f"{o}={v}" for o, v in BAD])
def test_a_bad_number_is_refused_in_one_line(option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        make_parser().parse_args(["run", "data.csv", "--target", "y", option, value])
    assert stop.value.code == 2
    [err] = capsys.readouterr().err.strip().splitlines()  # one line, no usage block before it
    assert err.startswith("tandem run: error: argument ") and option in err and repr(value) in err
    assert "expected a" in err and err.endswith("(see 'tandem run --help')")


def test_good_numbers_are_parsed_to_their_type() -> None:
    budget = ["--max-iters", "3", "--time-budget", "60", "--n-jobs", "1"]
    split = ["--holdout", "0.25", "--folds", "3", "--seed", "0"]
    agents = ["--temperature", "0", "--max-tool-calls", "2"]
    args = make_parser().parse_args(["run", "d.csv", "--target", "y", *budget, *split, *agents])
    assert (args.max_iters, args.time_budget, args.holdout, args.folds, args.seed) == (3, 60.0, 0.25, 3, 0)
    assert isinstance(args.max_iters, int) and isinstance(args.time_budget, float)
    assert (args.n_jobs, args.temperature, args.max_tool_calls) == (1, 0.0, 2)
    resume = make_parser().parse_args(["resume", "r1", "--max-iters", "10"])
    assert resume.max_iters == 10


@pytest.mark.parametrize(
    ("text", "size"),
    [("1500M", 1500 * 2**20), ("1.5G", 3 * 2**29), ("2GiB", 2 * 2**30), ("1gb", 2**30), ("3000000", 3_000_000)],
)
def test_a_memory_limit_is_read_in_powers_of_1024(text: str, size: int) -> None:
    args = make_parser().parse_args(["run", "d.csv", "--target", "y", "--memory-limit", text])
    assert args.memory_limit == size and context_from(args, RunContext()).memory_limit == size


def test_the_helper_states_the_range() -> None:
    parse = number(float, above=0, below=1)
    assert parse("0.5") == 0.5
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected a number > 0 and < 1, got '1'"):
        parse("1")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a whole number >= 1"):
        number(int, at_least=1)("1.0")


def test_the_console_script_refuses_a_negative_iteration_budget() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "run", "missing.csv", "--target", "y", "--max-iters", "-3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "argument --max-iters: expected a whole number >= 1, got '-3'" in done.stderr


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_no_command_takes_an_unchecked_number() -> None:
    """Every numeric option of every command goes through a checking type, not bare int or float."""
    bare = [
        f"tandem {name} {'/'.join(a.option_strings)}"
        for name, sub in _subparsers(make_parser()).items()
        for a in sub._actions
        if a.type in (int, float)
    ]
    assert not bare, bare


OTHER_COMMANDS = [
    ["resume", "r1", "--max-iters", "-3"],
    ["fork", "r1", "--from", "3", "--time-budget", "0"],
    ["train", "--out", "p.json", "--episodes", "0"],
    ["train", "--episodes", "5", "--out", "p.json", "--workers", "0"],
    ["train", "--episodes", "5", "--out", "p.json", "--seed", "-2"],
    ["league", "--rounds", "0"],
    ["league", "--k", "-1"],
    ["league", "--tolerance", "nan"],
    ["bench", "--seeds", "1,-4"],
    ["bench", "--seeds", "0,4294967296"],
    ["bench", "--budget", "0"],
]


@pytest.mark.parametrize("argv", OTHER_COMMANDS, ids=[" ".join(a) for a in OTHER_COMMANDS])
def test_other_commands_refuse_a_bad_number_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        make_parser().parse_args(argv)
    assert stop.value.code == 2
    [err] = capsys.readouterr().err.strip().splitlines()  # one line, no usage block before it
    assert err.startswith(f"tandem {argv[0]}: error: argument ") and argv[-1] in err


USAGE_MISTAKES = [
    (["run", "data.csv", "--target", "y", "--iters", "3"], "tandem run", "unrecognized arguments: --iters 3"),
    (["bench", "--budget", "60", "extra"], "tandem bench", "unrecognized arguments: extra"),
    (["run", "data.csv"], "tandem run", "the following arguments are required: --target"),
    (["frobnicate"], "tandem", "argument command: invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize(("argv", "prog", "said"), USAGE_MISTAKES, ids=[" ".join(a) for a, _, _ in USAGE_MISTAKES])
def test_a_usage_mistake_is_one_line_naming_the_command_whose_help_to_read(
    argv: list[str], prog: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        make_parser().parse_args(argv)
    assert stop.value.code == 2
    [err] = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"{prog}: error: {said}") and err.endswith(f"(see '{prog} --help')")


def test_every_help_shows_the_defaults() -> None:
    commands = _subparsers(make_parser())
    assert all(sub.formatter_class is DefaultsHelpFormatter for sub in commands.values())
    run_help = " ".join(commands["run"].format_help().split())  # argparse wraps lines
    assert "(default: 5)" in run_help and "(default: 0.2)" in run_help and "(default: 0)" in run_help
    assert "(default: no limit)" in run_help  # a budget whose default is None says what None means
    assert "(default: the run's own)" in " ".join(commands["resume"].format_help().split())
    assert "(default: 10)" in " ".join(commands["league"].format_help().split())
    assert "(default: heuristic)" not in run_help  # a help that states its default is not told twice


def test_a_primary_metric_outside_metrics_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert metrics_note(["f1"], "f1") is None and metrics_note(None, "recall") is None
    assert metrics_note(["f1"], "recall") == (
        "note: --primary recall is not in --metrics f1; it decides which model is best, "
        "so it is reported too, first: recall,f1"
    )
    code = main(["run", str(tmp_path / "none.csv"), "--target", "y", "--metrics", "f1", "--primary", "recall"])
    [error] = capsys.readouterr().err.strip().splitlines()  # the note waits until the metrics are known to fit
    assert code == 2 and error.startswith("tandem: ")  # the missing file is still refused as before


IN_PROCESS = [
    ["run", "data.csv", "--target", "y", "--max-iters", "-3"],
    ["resume", "r1", "--n-jobs", "0"],
    ["fork", "r1", "--from", "2", "--max-iters", "-3"],
    ["predict", "r1", "x.csv", "--experiment", "-1"],
    ["train", "--out", "p.json", "--time-budget", "0"],
    ["bench", "--budget", "inf"],
    ["bench", "--seeds", "0,x"],
    ["bench", "--players", "tandem:max_iters=-3"],
    ["bench", "--players", "tandem:n_jobs=0"],
    ["bench", "--players", "tandem:small_data_rows=-1"],
    ["bench", "--players", "tandem:temperature=3"],
    ["bench", "--players", "flaml:n_jobs=0"],
    ["league", "--players", "linear,tandem:patience=0"],
    ["league", "--closest", "0"],
    ["league", "--interval", "-1"],
    ["league", "--interval", "0"],  # with --watch, rounds of stored games at full CPU
]


@pytest.mark.parametrize("argv", IN_PROCESS, ids=[" ".join(a) for a in IN_PROCESS])
def test_main_refuses_a_bad_number_in_one_line_before_any_work(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the entry point itself, options and bench players alike (`tandem:max_iters=-3` has
    the range of `--max-iters`): exit status 2, one line, no traceback, and nothing written."""
    where = ["--results-dir", str(tmp_path / "results")] if argv[0] in {"bench", "league"} else []
    try:
        code = main([*argv, *where])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    [message] = err.strip().splitlines()
    assert message.startswith(("tandem: player ", f"tandem {argv[0]}: error: argument "))
    assert "got '" in message or "must be" in message
    assert not (tmp_path / "results").exists()


def test_a_players_number_has_the_range_of_its_option() -> None:
    assert context_number_error("max_iters", 3) is None and context_number_error("token_budget", None) is None
    assert context_number_error("max_iters", -3) == "expected a whole number >= 1, got '-3'"
    assert context_number_error("max_iters", 2.5) == "expected a whole number >= 1, got '2.5'"
    assert context_number_error("n_jobs", True) is not None and context_number_error("n_jobs", None) is not None
    assert context_number_error("model", "gpt-4o") is None  # not a number: checked elsewhere


def test_a_players_memory_limit_is_read_as_the_option_reads_it() -> None:
    player = parse_player("tandem:memory_limit=2G")
    assert isinstance(player, TandemPlayer) and dict(player.options)["memory_limit"] == 2 * 2**30
    with pytest.raises(InputError, match="memory_limit expected a memory size"):
        parse_player("tandem:memory_limit=tiny")
