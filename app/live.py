"""What a person sees while a run works: a live view on a terminal, plain lines elsewhere, and
the terminal's approval prompt.

On a terminal (standard output is a TTY) a rich live panel shows the iteration and the budget
left, the node at work, the current proposal in one line, the candidate's score against the
incumbent, the rewards, and a bar for the training folds; the plain step lines scroll above it.
Anywhere else (CI logs, pipes, `--plain`) the run prints exactly the plain `Progress` lines.

Text from the data, the training errors and the chat models (a proposal, its rationale, an
error quoting a cell) reaches the terminal through `shown`: control characters and escape
sequences are printed as visible escapes, never interpreted, and cannot start a fake line.

Approval gates (`--approve`) ask at the terminal. Without an interactive standard input the CLI
refuses `--approve` up front, rather than hang or approve on the user's behalf; from Python or
Studio the gates are answered with `Command(resume=...)`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar
from rich.table import Table
from rich.text import Text

from tandem.graph.context import RunContext
from tandem.graph.messages import proposal_of
from tandem.run_listing import plain_number, shown, tandem_command
from tandem.tools.errors import InputError

Reader = Callable[[str], str]
NODE_WORK = {
    "setup": "fixing the split, profiling, scoring the baseline",
    "scientist": "the Scientist is choosing the next idea",
    "executor": "the Executor is building the spec (dry run)",
    "evaluator": "the environment is cross-validating the candidate",
    "verifier": "checking the implementation against the proposal",
    "reward": "paying the agents",
    "review": "waiting for your approval",
    "deliver": "refitting the incumbent, scoring the holdout, writing the report",
}


@dataclass
class RunMonitor:
    """The numbers the live view shows, kept up to date from the graph's updates and events."""

    context: RunContext
    metric: str = ""
    node: str = ""
    iteration: int = 0
    seconds: float = 0.0
    tokens: int = 0
    proposal: str = ""
    candidate: str = ""
    incumbent: tuple[int, float] | None = None
    rewards: dict[str, float] = field(default_factory=lambda: {"scientist": 0.0, "executor": 0.0})
    last_rewards: dict[str, float] = field(default_factory=dict)
    folds: tuple[int, int] | None = None

    def on_update(self, node: str, update: dict[str, Any]) -> None:
        self.seconds += float(update.get("seconds_spent") or 0.0)
        self.tokens += sum(u["input"] + u["output"] for u in (update.get("tokens") or {}).values())
        if node == "setup":
            self.metric = update["task"]["primary_metric"]
            self.incumbent = (0, update["ledger"][0]["primary"])
        elif node == "scientist" and update.get("proposal"):
            self.proposal = shown(_one_line(update))
            self.candidate = ""
        elif node == "evaluator":
            self.candidate = self._candidate(update.get("evaluation") or {})
        elif node == "reward":
            (record,) = update["ledger"]
            self.iteration = update["iteration"]
            self.last_rewards = dict(record["rewards"])
            for event in update["reward_events"]:
                self.rewards[event["agent"]] += event["total"]
            if record["incumbent_after"] == record["id"]:
                self.incumbent = (record["id"], record["primary"])

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "node":
            self.node = data["node"]
            if self.node != "evaluator":
                self.folds = None
        elif kind == "folds":
            self.folds = (int(data["done"]), int(data["total"]))
        elif kind == "resumed":
            self.metric = data.get("metric") or self.metric
            self.iteration = data.get("iteration", 0)
            self.seconds = data.get("seconds_spent", 0.0)
            self.tokens = data.get("tokens", 0)
            if data.get("incumbent") is not None:
                self.incumbent = (data["incumbent"], data["incumbent_score"])

    def _candidate(self, evaluation: dict[str, Any]) -> str:
        if evaluation.get("status") != "ok":
            return shown(f"{evaluation.get('status', 'failed')}: {evaluation.get('error') or ''}"[:120])
        score = evaluation["cv"].get(self.metric)
        spread = evaluation["cv_std"].get(self.metric)
        text = f"CV {self.metric} {plain_number(score)} ± {plain_number(spread)}"
        if self.incumbent is not None and isinstance(score, float):
            number, best = self.incumbent
            text += f"  vs incumbent #{number} {plain_number(best)} ({score - best:+.4f})"
        return text

    def budget_left(self) -> str:
        parts = [f"{max(self.context.max_iters - self.iteration, 0)} experiments"]
        if self.context.time_budget is not None:
            parts.append(f"{max(self.context.time_budget - self.seconds, 0):.0f} s")
        if self.context.token_budget is not None:
            parts.append(f"{max(self.context.token_budget - self.tokens, 0)} tokens")
        return ", ".join(parts)


def continue_line(data: dict[str, Any]) -> str:
    """The first line of a resumed or forked run: where it stands."""
    return (
        f"[continue] {data['iteration']} experiments done; incumbent #{data['incumbent']} "
        f"CV {data['metric']} {plain_number(data['incumbent_score'])}"
    )


def _one_line(update: dict[str, Any]) -> str:
    parsed = proposal_of(update)
    label = step_label(0, parsed.base_experiment, None, [c.model_dump(mode="json") for c in parsed.changes])
    origin = label.split(" ", 1)[1] + " " if " ← " in label else ""  # "← #1 " or "← #1+#3 "
    return f"{origin}[{parsed.move}] {parsed.summary()}" if parsed.move else origin + parsed.summary()


def clipped(text: str, width: int = 120) -> str:
    """Text cut to `width` characters at a word boundary, with an ellipsis when it was cut (never mid-word)."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;") + "…"


def step_label(experiment: int, base: int | None, move: str | None, changes: list[dict[str, Any]] | None = None) -> str:
    """`#3 ← #1 move`: the experiment, the one it starts from (its base), and the playbook move.

    A blend starts from its members, not from its base (which it does not use): `#5 ← #1+#3`.
    """
    members = [i for c in changes or [] if c.get("change") == "build_ensemble" for i in c.get("experiment_ids", [])]
    starts = [f"#{i}" for i in members] or ([f"#{base}"] if base is not None else [])
    origin = " ← " + "+".join(starts) if starts else ""
    return f"#{experiment}{origin}{' ' + move if move else ''}"


def terminal_lines(text: str) -> str:
    """Lines tandem composed, printed as they are except that no character in them can act on the terminal."""
    return "\n".join(shown(line) for line in text.split("\n"))


def ask(question: dict[str, Any], read: Reader = input, out: TextIO | None = None) -> Any:
    """Ask a human at the terminal for an approval gate's reply (see nodes/review.py).

    "q" or end of input stops the run (it stays paused at the gate: `tandem resume` asks again).
    """
    out = out or sys.stderr
    kind = question["kind"]
    incumbent = question["incumbent"]
    print(
        f"\n== approval needed: {kind} (after {question['iteration']} experiments) ==\n"
        f"  {shown(question['proposal'])}\n  why: {shown(question['rationale'])}\n"
        f"  incumbent: #{incumbent['id']} CV {incumbent['metric']} {plain_number(incumbent['cv'])}",
        file=out,
        flush=True,
    )
    while True:
        if not question["can_continue"]:
            choice = _read(read, "The budget is spent. Deliver now? [Y]es / [q]uit and raise the budget later: ", out)
            if choice in {"", "y", "yes"}:
                return True
            if choice in {"q", "quit"}:
                raise KeyboardInterrupt
            print("  Raise the budget first: quit, then `tandem resume RUN --max-iters N`.", file=out, flush=True)
            continue
        choice = _read(read, f"Approve this {kind}? [Y]es / [n]o / [q]uit: ", out)
        if choice in {"", "y", "yes"}:
            return True
        if choice in {"n", "no"}:
            reason = _read(read, "Why not? (the Scientist reads this): ", out, lower=False)
            return {"approve": False, "reason": reason}
        if choice in {"q", "quit"}:
            raise KeyboardInterrupt


def _read(read: Reader, prompt: str, out: TextIO, lower: bool = True) -> str:
    """The prompt goes to `out` (stderr), so standard output keeps only the run's lines."""
    print(prompt, end="", file=out, flush=True)
    try:
        text = read("").strip()
    except EOFError:
        raise KeyboardInterrupt from None
    return text.lower() if lower else text


class Progress:
    """One plain line per finished step: what was proposed, how it scored, what it earned."""

    def __init__(self, stream: Any = None, folder: Path | None = None) -> None:
        self.stream = stream
        self.folder = folder
        """The run's folder, to say where its files are (the run stores names relative to it)."""
        self.metric = ""

    def _at(self, name: str) -> str:
        return str(self.folder / name) if self.folder else name

    def __call__(self, node: str, update: dict[str, Any]) -> None:
        line = self.describe(node, update)
        if line:
            print(terminal_lines(line), file=self.stream or sys.stdout, flush=True)

    def describe(self, node: str, update: dict[str, Any]) -> str | None:
        if node == "setup":
            task = update["task"]
            self.metric = task["primary_metric"]
            base = update["ledger"][0]
            notes = "".join(f"\n  note: {shown(n)}" for n in task["notes"])
            where = self.folder or update["run_id"]
            return (
                f"[setup] {task['task_type']} task on {task['target']!r}: {task['n_dev_rows']} dev rows "
                f"({task['folds']} folds), {task['n_holdout_rows']} holdout rows; run folder {where}"
                f"{notes}\n[#0 baseline] CV {self.metric} {base['primary']:.4f} ± {base['cv_std'][self.metric]:.4f}"
            )
        if node == "scientist" and update.get("proposal", {}).get("action") == "deliver":
            return f"[scientist] {shown(update['proposal']['rationale'])}"
        if node == "reward":
            (record,) = update["ledger"]
            metric = self.metric or next(iter(record["cv"]), "")
            score = (
                f"CV {metric} {record['primary']:.4f}"
                if record["primary"] is not None
                else f"{record['status']}: {shown(record['error'])}"
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
            label = step_label(record["id"], record.get("base_experiment"), record["move"], record.get("changes"))
            return (
                f"[{shown(label)}] {shown(clipped(record['proposal']))}\n"
                f"    {score}{flag}{best}; fidelity {record['fidelity']:.2f}; "
                f"reward S {rewards['scientist']:+.4f} E {rewards['executor']:+.4f}{tokens}"
            )
        if node == "deliver":
            s = update["delivered"]
            metric = s["task"]["primary_metric"]
            report = s["artifacts"].get("report_html") or s["artifacts"]["report"]
            runs_dir = self.folder.parent if self.folder else None
            return (
                f"[deliver] {s['stop_reason']}\n"
                f"Delivered experiment #{s['best']['experiment_id']}: CV {metric} {s['best']['cv'][metric]:.4f}; "
                f"holdout {metric} {plain_number(s['best']['holdout'].get(metric))} "
                f"(baseline {plain_number(s['baseline']['holdout'].get(metric))})\n"
                f"Report: {self._at(report)}\nModel:  {self._at(s['artifacts']['model'])}\n"
                f"Next:   {tandem_command('predict', s['run_id'], runs_dir, 'new.csv')}  "
                f"(or {tandem_command('show', s['run_id'], runs_dir)})"
            )
        return None


class PlainDisplay:
    """One plain line per step (CI logs, pipes): the `Progress` lines, and prompts on stderr."""

    def __init__(self, context: RunContext, read: Reader = input, folder: Path | None = None) -> None:
        self.context = context
        self.lines = Progress(folder=folder)
        self.read = read

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def on_update(self, node: str, update: dict[str, Any]) -> None:
        self.lines(node, update)

    @property
    def event_handler(self) -> Callable[[str, dict[str, Any]], None] | None:
        """Plain lines need only to know where a resumed or forked run stands."""
        return self.on_resumed

    def on_resumed(self, kind: str, data: dict[str, Any]) -> None:
        if kind != "resumed":
            return
        self.lines.metric = data["metric"]
        print(continue_line(data), flush=True)

    def on_approval(self, question: dict[str, Any]) -> Any:
        return ask(question, self.read)


class LiveDisplay(PlainDisplay):
    """The live panel on a terminal; the step lines scroll above it."""

    def __init__(self, context: RunContext, run_id: str, console: Console | None = None, read: Reader = input) -> None:
        super().__init__(context, read, folder=Path(context.runs_dir) / run_id)
        self.run_id = run_id
        self.console = console or Console()
        self.monitor = RunMonitor(context)
        self.bar = Bar(
            TextColumn("folds"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console
        )
        self.task = self.bar.add_task("folds", total=1, visible=False)
        self.live = Live(console=self.console, get_renderable=self.render, refresh_per_second=8, transient=True)

    def __enter__(self) -> LiveDisplay:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def on_update(self, node: str, update: dict[str, Any]) -> None:
        self.monitor.on_update(node, update)
        line = self.lines.describe(node, update)
        if line:
            self.console.print(terminal_lines(line), markup=False, highlight=False)

    @property
    def event_handler(self) -> Callable[[str, dict[str, Any]], None] | None:
        return self.on_event

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        self.monitor.on_event(kind, data)
        if kind == "resumed":
            self.lines.metric = data["metric"]
            self.console.print(continue_line(data), markup=False, highlight=False)
        elif kind == "folds":
            self.bar.reset(self.task, total=int(data["total"]), completed=int(data["done"]), visible=True)
        elif kind == "node" and data["node"] != "evaluator":
            self.bar.update(self.task, visible=False)

    def on_approval(self, question: dict[str, Any]) -> Any:
        with self.paused():
            return ask(question, self.read)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop drawing while the terminal asks a question."""
        self.live.stop()
        try:
            yield
        finally:
            self.live.start()

    def render(self) -> Panel:
        m = self.monitor
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True, min_width=9)
        grid.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
        incumbent = f"#{m.incumbent[0]} CV {m.metric} {plain_number(m.incumbent[1])}" if m.incumbent else "–"
        last = m.last_rewards
        rewards = (f"last S {last['scientist']:+.4f} E {last['executor']:+.4f}; " if last else "") + (
            f"total S {m.rewards['scientist']:+.4f} E {m.rewards['executor']:+.4f}"
        )
        rows = {
            "iteration": f"{m.iteration} of {self.context.max_iters}; left: {m.budget_left()}",
            "node": f"{m.node or '…'}  {NODE_WORK.get(m.node, '')}",
            "proposal": m.proposal or "–",
            "candidate": m.candidate or "–",
            "incumbent": incumbent,
            "rewards": rewards,
        }
        for name, value in rows.items():
            grid.add_row(name, Text(value))  # Text: a proposal like "[ensemble] …" is not markup
        body = Group(grid, self.bar) if m.folds else grid
        return Panel(body, title=f"tandem · {self.run_id}", title_align="left", border_style="blue")


def make_display(
    context: RunContext, run_id: str, *, plain: bool = False, console: Console | None = None
) -> PlainDisplay:
    """The live view on a terminal, plain lines elsewhere; refuses approval gates nobody can answer."""
    if context.approve != "never" and not sys.stdin.isatty():
        raise InputError(
            f"approval gates (--approve {context.approve}) ask at the terminal, and standard input is not one: "
            "run with --approve never, or answer the gates from Python with Command(resume=...)"
        )
    console = console or Console()
    if plain or not console.is_terminal or not sys.stdout.isatty():
        return PlainDisplay(context, folder=Path(context.runs_dir) / run_id)
    return LiveDisplay(context, run_id, console=console)
