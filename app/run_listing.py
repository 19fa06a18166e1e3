"""Run folders read as JSON only, for the commands that look at runs without running anything.

`tandem runs` and `tandem show` start in well under a second because this module reads
`run.json`, `summary.json` and `experiments.jsonl` with the standard library alone: importing
`tandem.api` would load LangGraph, pandas, scikit-learn and LightGBM first (2–4 s, measured in
docs/cli-startup.md). `tandem.api` delegates its own listing and summary reading here, so both
paths say the same thing about a run.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

from tandem.tools.errors import InputError

RUN_ID_RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
"""The run-id rule of `tandem.graph.persistence.RUN_ID_RULE`, repeated so that naming a folder
needs no checkpoint library (tests/test_cli.py checks the two patterns are the same)."""


PREVIOUS_SUMMARY = "summary.previous.json"
"""`RunFolder.previous_summary`'s name, repeated so that reading a folder needs no checkpoint
library (tests/test_cli.py checks the two are the same): a delivered run's summary.json, set aside
while `resume --force` goes on with the search, until the next delivery writes a new one."""


class RunRow(TypedDict):
    """One line of `tandem runs`."""

    run_id: str
    status: str
    """"delivered" (or the summary's own status), "stopped" when no summary was written yet, or
    "damaged" when its run.json or summary.json cannot be read."""
    target: str | None
    csv: str
    primary_metric: str | None
    best_cv: float | None
    best_holdout: float | None
    experiments: int
    """Experiments in the ledger, the baseline included."""
    seconds: float | None
    """Working seconds of a delivered run; for a stopped one the sum of its experiments' fit times."""
    updated: float
    """When the run last wrote its run.json, ledger or summary (POSIX time)."""


def default_runs_dir() -> str:
    """`$TANDEM_RUNS_DIR`, else `./runs` (the rule of `tandem.graph.context.default_runs_dir`)."""
    return os.environ.get("TANDEM_RUNS_DIR") or str(Path("runs").resolve())


def tandem_command(verb: str, run_id: str, runs_dir: str | Path | None, *options: str) -> str:
    """`tandem VERB RUN_ID OPTIONS... [--runs-dir DIR]`, a next step for the user to paste: the runs
    folder is named only when it is not the one the command finds by itself ($TANDEM_RUNS_DIR or
    ./runs), so the usual line stays short and any other still reaches the same run. It goes last,
    after any other argument (`predict RUN new.csv`), where no parser can take it for one."""
    words = ["tandem", verb, str(run_id), *options]
    if runs_dir and Path(runs_dir).expanduser().resolve() != Path(default_runs_dir()).expanduser().resolve():
        words += ["--runs-dir", str(runs_dir)]
    return shlex.join(words)


def run_path(run_id: str, runs_dir: str | Path | None = None) -> Path:
    """The folder of a run id, or an `InputError` saying what a run id may be or which runs exist."""
    root = Path(runs_dir or default_runs_dir()).expanduser().resolve()
    if not isinstance(run_id, str) or not RUN_ID_RULE.fullmatch(run_id):
        raise InputError(
            f"run id {run_id!r} is not allowed: use letters, digits, '-', '_' and '.', "
            "not starting with '.' or '-', at most 128 characters"
        )
    if not (root / run_id / "run.json").exists():
        known = ", ".join(r["run_id"] for r in list_runs(root)[-5:]) or "none"
        raise InputError(f"no run {run_id!r} in {root} (recent runs: {known})")
    return root / run_id


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or damaged (listing never fails on one run).

    This and the readers below take a run folder's files as untrusted: whatever they hold, a
    command that only looks at runs shows what it can and never fails on a wrong type."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def finite_number(value: Any) -> float | None:
    """A finite number from a JSON file, else None (true and false are not numbers here, nor a
    whole number too large for a float: JSON has no limit, so an edited 1e400 written out in digits
    reads as an int that `float` and `math.isfinite` refuse with OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def json_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def json_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def read_ledger(folder: Path) -> list[dict[str, Any]]:
    """A run's experiments (`experiments.jsonl`): the records that are objects with a whole-number id."""
    rows = []
    try:  # bytes, decoded line by line: one row that is not UTF-8 must not hide the others
        lines = (folder / "experiments.jsonl").read_bytes().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:  # UnicodeDecodeError is one
            continue  # a torn last line of a killed run, or an edit
        if isinstance(row, dict) and isinstance(row.get("id"), int):
            rows.append(row)
    return rows


def _row(folder: Path) -> RunRow:
    """A run's line, from whatever of its files can be read: a run whose files are damaged is
    listed as such, never left out and never the reason the whole listing fails."""
    config = read_json(folder / "run.json")
    request = json_object(json_object(config).get("request"))
    summary = read_json(folder / "summary.json")
    times = [p.stat().st_mtime for p in (folder / n for n in ("run.json", "experiments.jsonl", "summary.json"))
             if p.exists()]  # fmt: skip
    metric = _text(request.get("primary_metric"))
    best_cv = best_holdout = seconds = None
    if isinstance(summary, dict) and isinstance(summary.get("task"), dict):
        status = _text(summary.get("status")) or "delivered"
        metric = _text(summary["task"].get("primary_metric"))
        best = json_object(summary.get("best"))
        best_cv = finite_number(json_object(best.get("cv")).get(metric)) if metric else None
        best_holdout = finite_number(json_object(best.get("holdout")).get(metric)) if metric else None
        experiments = summary.get("experiments")
        if not isinstance(experiments, int):
            iterations = summary.get("iterations")
            experiments = iterations + 1 if isinstance(iterations, int) else len(read_ledger(folder))
        seconds = finite_number(summary.get("seconds_spent"))
    else:  # no summary yet, or one that cannot be read
        status = "damaged" if (folder / "summary.json").exists() else "stopped"
        ledger = read_ledger(folder)
        ok = [r for r in ledger if r.get("status") == "ok" and isinstance(r.get("primary"), float)]
        incumbent = ledger[-1].get("incumbent_after") if ledger else None
        best_cv = next((finite_number(r["primary"]) for r in ok if r.get("id") == incumbent), None)
        experiments = len(ledger)
        seconds = sum(finite_number(r.get("fit_seconds")) or 0.0 for r in ledger) if ledger else None
    return RunRow(
        run_id=folder.name,
        status=status if isinstance(config, dict) else "damaged",
        target=_text(request.get("target")),
        csv=Path(_text(request.get("csv_path")) or "").name,
        primary_metric=metric,
        best_cv=best_cv,
        best_holdout=best_holdout,
        experiments=experiments,
        seconds=seconds,
        updated=max(times, default=0.0),
    )


def list_runs(runs_dir: str | Path | None = None) -> list[RunRow]:
    """Every run in a runs folder, oldest first (by name: default names start with the time)."""
    root = Path(runs_dir or default_runs_dir())
    return [_row(run_json.parent) for run_json in sorted(root.glob("*/run.json"))]


def load_summary(run_id: str, runs_dir: str | Path | None = None) -> dict[str, Any]:
    """A delivered run's summary.json, or an `InputError` saying how to get one."""
    folder = run_path(run_id, runs_dir)
    if not (folder / "summary.json").exists():
        again = tandem_command("resume", run_id, runs_dir)
        if (folder / PREVIOUS_SUMMARY).exists():
            raise InputError(
                f"run {run_id!r} is going on after its delivery and has not delivered again; continue it with: "
                f"{again} (until then its previous delivery, {PREVIOUS_SUMMARY}, is the model tandem predict uses)"
            )
        raise InputError(f"run {run_id!r} has not delivered yet; continue it with: {again}")
    return _checked_summary(folder / "summary.json", run_id, runs_dir)


def previous_summary(run_id: str, runs_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The summary of a run's previous delivery while the run goes on after it (None otherwise):
    its model.joblib is still that delivery's until the next one, so `predict` can use it."""
    folder = run_path(run_id, runs_dir)
    if (folder / "summary.json").exists() or not (folder / PREVIOUS_SUMMARY).exists():
        return None
    return _checked_summary(folder / PREVIOUS_SUMMARY, run_id, runs_dir)


def _checked_summary(path: Path, run_id: str, runs_dir: str | Path | None) -> dict[str, Any]:
    """A summary file's content, or an `InputError` naming what is wrong with it."""
    try:
        summary = json.loads(path.read_text())
    except OSError as exc:  # a folder, unreadable
        summary = exc.strerror or type(exc).__name__
    except ValueError:  # not text, not JSON
        summary = None
    if isinstance(summary, str):
        problem: str | None = summary
    else:
        problem = "not a JSON object" if not isinstance(summary, dict) else _summary_damage(summary)
    if problem:
        raise InputError(
            f"run {run_id}: {path.name} is damaged ({problem}); "
            f"rebuild it from the checkpoints with: {tandem_command('repair', run_id, runs_dir)}"
        )
    return summary


#: The fields `summary_text` shows and the JSON type each must have (nested objects as dicts).
_SUMMARY_SHAPE: dict[str, Any] = {
    "status": str,
    "stop_reason": str,
    "iterations": int,
    "task": {"task_type": str, "target": str, "primary_metric": str, "metrics": list},
    "best": {"experiment_id": int, "proposal": str, "cv": dict, "holdout": dict},
    "baseline": {"cv": dict, "holdout": dict},
}
_KINDS = {str: "text", int: "a whole number", list: "a list", dict: "an object"}


def _shape_damage(value: Any, expected: Any, where: str) -> str | None:
    if isinstance(expected, dict):
        if not isinstance(value, dict):
            return f"{where or 'it'} is not an object"
        for key, inner in expected.items():
            if problem := _shape_damage(value.get(key), inner, f"{where}.{key}" if where else key):
                return problem
        return None
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return None
    return f"{where} is missing" if value is None else f"{where} is not {_KINDS[expected]}"


def _summary_damage(summary: dict[str, Any]) -> str | None:
    """The first field of a summary that `summary_text` could not show, or None: a summary.json
    may have been edited, truncated or written by another program, and `tandem show` must then say
    which field is wrong rather than fail on it."""
    if problem := _shape_damage(summary, _SUMMARY_SHAPE, ""):
        return problem
    if not all(isinstance(m, str) for m in summary["task"]["metrics"]):
        return "task.metrics is not a list of metric names"
    if finite_number(summary["iterations"]) is None:  # digits past any float: an edit, not a count
        return "iterations is out of range"
    if not isinstance(summary["task"].get("csv_path") or "", str):  # older summaries have none
        return "task.csv_path is not text"
    if (
        "seconds_spent" in summary
        and summary["seconds_spent"] is not None
        and finite_number(summary["seconds_spent"]) is None
    ):
        return "seconds_spent is not a finite number"
    for name in ("rewards", "tokens", "agents", "artifacts"):
        if not isinstance(summary.get(name) or {}, dict):
            return f"{name} is not an object"
    if not all(finite_number(v) is not None for v in (summary.get("rewards") or {}).values()):
        return "rewards holds a value that is not a number"
    for name in ("tokens", "agents"):
        if not all(isinstance(v, dict) for v in (summary.get(name) or {}).values()):
            return f"{name} holds a value that is not an object"
    if not all(isinstance(v, str) for v in (summary.get("artifacts") or {}).values()):
        return "artifacts holds a value that is not a file name"
    return None


#: The run-context budgets whose raise lets `tandem resume` continue a finished run.
BUDGETS = ("max_iters", "time_budget", "token_budget")


def delivered_iterations(run_id: str, runs_dir: str | Path | None = None) -> int | None:
    """The iterations a delivered run's summary.json records (None when there is no readable count).

    `tandem resume` compares it with the new delivery's to tell whether a raised budget let the
    search go on: the ledger's length cannot tell, since the search drops the old delivery's blend
    row and may add one experiment in its place."""
    summary = json_object(read_json(run_path(run_id, runs_dir) / "summary.json"))
    iterations = summary.get("iterations")
    return iterations if isinstance(iterations, int) and not isinstance(iterations, bool) else None


def finished_hint(run_id: str, runs_dir: str | Path | None = None) -> str | None:
    """For a delivered run, how to continue it (None for a run that is not finished).

    `tandem resume` on a delivered run with no raised budget has nothing to do; printing where it
    stands and stopping would leave the user guessing, so the CLI prints this instead: the budget
    that stopped it, what it used, and the options that continue it (or a fork that keeps it).
    """
    folder = run_path(run_id, runs_dir)
    summary = read_json(folder / "summary.json")
    if not isinstance(summary, dict):
        return None
    context = json_object(json_object(read_json(folder / "run.json")).get("context"))
    iterations = finite_number(summary.get("iterations"))  # an edited summary may hold anything
    done = int(iterations) if iterations is not None else 0
    seconds = finite_number(summary.get("seconds_spent"))
    more_iters = max(int(finite_number(context.get("max_iters")) or done), done) + 5
    more_time = max(finite_number(context.get("time_budget")) or 0.0, seconds or 0.0) * 2 or 600.0
    used = (f"{done}" if iterations is not None else "an unrecorded number of") + " experiments"
    used += f" in {duration(seconds)}" if seconds is not None else ""
    raise_iters = tandem_command("resume", run_id, runs_dir, "--max-iters", str(more_iters), "--force")
    fork = tandem_command("fork", run_id, runs_dir, "--from", "STEP", "--max-iters", str(more_iters))
    return (
        f"run {run_id} is finished: {shown(summary.get('stop_reason') or 'delivered')}, after {used}. "
        f"To continue it, raise its budget: {raise_iters} "
        f"(or --time-budget {more_time:.0f} --force; it replaces this model and report), or keep this model and "
        f"continue in a new run: {tandem_command('history', run_id, runs_dir)}, then {fork}"
    )


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------


def plain_number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "–"


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls (ESC starts every escape sequence; CR and newline rewrite lines) and the
bidirectional marks that reorder what a line appears to say."""


def shown(text: Any) -> str:
    """Untrusted text for the terminal, on one line: unsafe characters as visible `\\x1b`-style escapes."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", str(text))


def duration(seconds: float | None) -> str:
    """Seconds as people read them: 42 s, 3m07s, 1h05m."""
    if seconds is None or not math.isfinite(seconds):  # a sum of huge recorded times overflows to inf
        return "–"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def table(header: list[str], rows: list[list[str]], right: Collection[int] = ()) -> str:
    """Columns as wide as their widest cell, numbers right-aligned, a rule under the header."""
    cells = [[shown(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])])


def runs_table(rows: list[RunRow]) -> str:
    """`tandem runs`: one line per run with its date, status, size, best score and duration."""
    body = [
        [
            datetime.fromtimestamp(r["updated"]).strftime("%Y-%m-%d %H:%M"),
            r["run_id"],
            r["status"],
            str(r["target"] or ""),
            str(r["experiments"]),
            r["primary_metric"] or "",
            plain_number(r["best_cv"]),
            plain_number(r["best_holdout"]),
            duration(r["seconds"]),
        ]
        for r in rows
    ]
    header = ["updated", "run id", "status", "target", "exps", "metric", "best CV", "holdout", "time"]
    return table(header, body, right={4, 6, 7, 8})


def model_text(spec: Any) -> str:
    """A delivered spec as the model it is (family, parameters, what differs from the defaults),
    not as the last change that led to it."""
    if not isinstance(spec, dict):
        return "(no spec recorded)"
    if spec.get("kind") == "ensemble":
        members = [model_text(m).split(" on ", 1)[0] for m in json_list(spec.get("members"))]
        ids = json_list(spec.get("member_ids"))
        named = [f"#{i} {m}" for i, m in zip(ids, members, strict=True)] if len(ids) == len(members) else members
        return f"{spec.get('method', 'voting')} blend of {len(members)} models: " + "; ".join(named)
    model = json_object(spec.get("model"))
    params = json_object(model.get("params"))
    text = str(model.get("family", "?")) + (
        "(" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")" if params else ""
    )
    notes = [
        f"{name.replace('_', ' ')} {spec[name]}"
        for name, plain in (("target_transform", "none"), ("class_weight", "none"), ("threshold", "default"))
        if spec.get(name) not in (None, plain)
    ]
    transform = json_object(spec.get("preprocessing")).get("numeric_transform")
    if transform and transform != "none":
        notes.append(f"{transform} transform of numeric columns")
    if json_list(spec.get("features")):
        count = len(json_list(spec.get("features")))
        notes.append(f"{count} engineered feature{'s' if count > 1 else ''}")
    if spec.get("row_filter"):
        notes.append("outlying training rows filtered")
    if spec.get("bagging"):
        notes.append("bagged fold models")
    columns = sum(len(v) for v in json_object(spec.get("columns")).values() if isinstance(v, list))
    return text + (f", {', '.join(notes)}" if notes else "") + (f" on {columns} columns" if columns else "")


def summary_text(summary: dict[str, Any], folder: Path, runs_dir: str | Path | None = None) -> str:
    """`tandem show`: the run's outcome as lines and small tables, never raw dictionaries
    (`runs_dir`: the runs folder as the user named it, for the next command; default: the folder's)."""
    task, best, base = summary["task"], summary["best"], summary["baseline"]
    metric = task["primary_metric"]
    lines = [
        f"run {folder.name}: {summary['status']} after {summary['iterations']} experiments"
        + (f" in {duration(summary.get('seconds_spent'))}" if summary.get("seconds_spent") is not None else ""),
        f"stopped: {summary['stop_reason']}",
        f"task: {task['task_type']} on {task['target']!r} ({Path(task.get('csv_path') or '').name}), "
        f"primary metric {metric}",
        f"delivered: #{best['experiment_id']} {model_text(best.get('spec'))}",
        f"  its last change: {best['proposal']}",
    ]
    if summary.get("selection"):
        lines.append(f"chosen by: {summary['selection']}")
    lines.append("")
    score_rows = [
        [f"{part} {m}", plain_number(base[part].get(m)), plain_number(best[part].get(m))]
        for part in ("cv", "holdout")
        for m in task["metrics"]
    ]
    lines += [table(["score", "baseline #0", f"delivered #{best['experiment_id']}"], score_rows, right={1, 2}), ""]
    rewards, tokens = summary.get("rewards") or {}, summary.get("tokens") or {}
    roles = sorted(set(rewards) | set(tokens))
    if roles:
        agents = summary.get("agents") or {}
        agent_rows = [
            [
                role,
                str((agents.get(role) or {}).get("kind") or ""),
                f"{rewards.get(role, 0.0):+.4f}",
                str((tokens.get(role) or {}).get("input", 0)),
                str((tokens.get(role) or {}).get("output", 0)),
            ]
            for role in roles
        ]
        lines += [table(["agent", "kind", "reward", "tokens in", "tokens out"], agent_rows, right={2, 3, 4}), ""]
    artifacts = summary.get("artifacts") or {}
    report = folder / artifacts.get("report_html", artifacts.get("report", "report.html"))
    lines.append(f"report: {report}")
    lines.append(f"next: {tandem_command('predict', folder.name, runs_dir or folder.parent, 'new.csv')}")
    return "\n".join(lines)
