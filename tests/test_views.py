"""What a run shows: the live terminal view, the self-contained HTML report, the graph picture."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from tandem.api import run_task
from tandem.cli import main
from tandem.graph.context import RunContext
from tandem.live import LiveDisplay, PlainDisplay, RunMonitor, clipped, make_display
from tandem.tools.report_html import render_html
from tandem.tools.spec import Columns, ModelSpec, PipelineSpec
from tandem.tools.training import Problem, evaluate_spec

Event = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, penguins: Path) -> tuple[Path, list[Event]]:
    """A delivered two-iteration run, with every update and event the graph streamed."""
    runs = tmp_path_factory.mktemp("runs")
    events: list[Event] = []
    run_task(
        penguins,
        "species",
        run_id="v",
        context=RunContext(runs_dir=str(runs), max_iters=2, n_jobs=1),
        on_update=lambda node, update: events.append(("update", node, update)),
        on_event=lambda kind, data: events.append(("event", kind, data)),
    )
    return runs / "v", events


def live(width: int = 140) -> tuple[LiveDisplay, Console]:
    console = Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None, record=True)
    return LiveDisplay(RunContext(max_iters=2), "v", console=console), console


def feed(display: LiveDisplay, events: list[Event]) -> None:
    for kind, name, data in events:
        if kind == "update":
            display.on_update(name, data)
        else:
            display.on_event(name, data)


def screen(display: LiveDisplay, console: Console) -> str:
    console.print(display.render())
    return console.export_text()


def test_the_graph_reports_node_starts_and_fold_progress(recorded: tuple[Path, list[Event]]) -> None:
    _, events = recorded
    starts = [d["node"] for k, n, d in events if k == "event" and n == "node"]
    assert starts[:3] == ["setup", "scientist", "executor"] and starts[-1] == "deliver"
    folds = [(d["done"], d["total"]) for k, n, d in events if k == "event" and n == "folds"]
    # 275 development rows are small data: 5 folds repeated 3 times, reported fit by fit
    assert folds[:16] == [(i, 15) for i in range(16)]  # the baseline, fold by fold
    assert len(folds) % 16 == 0 and len(folds) >= 32  # and each new candidate


def test_live_view_shows_budget_node_proposal_scores_rewards_and_a_fold_bar(
    recorded: tuple[Path, list[Event]],
) -> None:
    run_dir, events = recorded
    baseline = json.loads((run_dir / "experiments.jsonl").read_text().splitlines()[0])
    # Stop the replay in the middle of the first candidate's training.
    mid = next(
        i
        for i, (k, n, d) in enumerate(events)
        if k == "event" and n == "folds" and d["done"] == 3 and any(e[1] == "scientist" for e in events[:i])
    )
    display, console = live()
    feed(display, events[: mid + 1])
    text = screen(display, console)
    assert "iteration 0 of 2; left: 2 experiments" in text
    assert "evaluator" in text and "cross-validating" in text
    assert "[stronger_family] set_model(family=lightgbm" in text  # markup-like text shown as is
    assert "3/15" in text  # the fold bar
    assert f"incumbent #0 CV f1_macro {baseline['cv']['f1_macro']:.4f}" in text  # the baseline leads so far
    assert "[#0 baseline]" in text and "[#1 " not in text  # a step's line is printed when its reward is paid

    display, console = live()
    feed(display, events)
    text = screen(display, console)
    assert "iteration 2 of 2; left: 0 experiments" in text
    assert re.search(r"candidate CV f1_macro 0\.\d{4} ± 0\.\d{4}\s+vs incumbent #\d 0\.\d{4} \([+-]0\.\d{4}\)", text)
    assert re.search(r"rewards\s+last S [+-]0\.\d{4} E [+-]0\.\d{4}; total S [+-]0\.\d{4}", text)
    assert "3/15" not in text  # no bar once training is over
    panel = text.index("tandem · v")
    assert -1 < text.find("[#1 ← #0 stronger_family]") < text.find("[#2 ← #") < panel  # the lines scroll above


def test_monitor_counts_budget_from_updates_and_resumes_where_the_run_stands() -> None:
    monitor = RunMonitor(RunContext(max_iters=5, time_budget=100.0, token_budget=1000))
    monitor.on_event(
        "resumed",
        {
            "metric": "rmse",
            "iteration": 2,
            "seconds_spent": 30.0,
            "tokens": 400,
            "incumbent": 1,
            "incumbent_score": 3.5,
        },
    )
    monitor.on_update("scientist", {"seconds_spent": 5.0, "tokens": {"scientist": {"input": 90, "output": 10}}})
    assert monitor.budget_left() == "3 experiments, 65 s, 500 tokens"
    assert monitor.incumbent == (1, 3.5)


# The plain step lines, as the README's quickstart shows them (checked against the README below).
STEP_LINE = re.compile(r"\[#\d+ ← #\d+(\+#\d+)* \w+\] \S.*")
SCORE_LINE = re.compile(
    r"    (CV \w+ -?\d+\.\d{4}|failed: .+|timeout: .+)( \*significant\*)?( -> new incumbent| \(incumbent #\d+\)); "
    r"fidelity \d\.\d\d; reward S [+-]\d+\.\d{4} E [+-]\d+\.\d{4}(; tokens S \d+ E \d+)?"
)
DELIVERED_LINE = re.compile(
    r"Delivered experiment #\d+: CV (\w+) -?\d+\.\d{4}; holdout \1 -?\d+\.\d{4} \(baseline -?\d+\.\d{4}\)"
)
FILE_LINES = re.compile(r"Report: \S+/report\.html|Model:  \S+/model\.joblib|Next:   tandem predict \S+ new\.csv .*")
README_PATTERNS = (STEP_LINE, SCORE_LINE, DELIVERED_LINE, FILE_LINES)


def starts(record: dict[str, Any]) -> str:
    """What a step line names as the experiment's origin: a blend's members, else its base."""
    members = [i for c in record["changes"] if c["change"] == "build_ensemble" for i in c["experiment_ids"]]
    return "+".join(f"#{i}" for i in members) or f"#{record['base_experiment']}"


def test_plain_lines_off_a_terminal(recorded: tuple[Path, list[Event]], capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, events = recorded
    display = make_display(RunContext(runs_dir=str(run_dir.parent)), "v")  # pytest captures stdout: not a terminal
    assert type(display) is PlainDisplay
    for kind, name, data in events:
        if kind == "update":
            display.on_update(name, data)
    printed = capsys.readouterr().out.splitlines()

    # The lines written out by hand from what the run stored, independently of `Progress`.
    ledger = [json.loads(line) for line in (run_dir / "experiments.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    task, best, m = summary["task"], summary["best"], summary["task"]["primary_metric"]
    expected = [
        f"[setup] {task['task_type']} task on {task['target']!r}: {task['n_dev_rows']} dev rows "
        f"({task['folds']} folds), {task['n_holdout_rows']} holdout rows; run folder {run_dir}",
        *(f"  note: {note}" for note in task["notes"]),
        f"[#0 baseline] CV {m} {ledger[0]['cv'][m]:.4f} ± {ledger[0]['cv_std'][m]:.4f}",
    ]
    for r in ledger[1:]:
        score = f"CV {m} {r['cv'][m]:.4f}" if r["status"] == "ok" else f"{r['status']}: {r['error']}"
        verdict = " -> new incumbent" if r["incumbent_after"] == r["id"] else f" (incumbent #{r['incumbent_after']})"
        expected += [
            f"[#{r['id']} ← {starts(r)} {r['move']}] {clipped(r['proposal'])}",
            f"    {score}{' *significant*' if r['significant'] else ''}{verdict}; fidelity {r['fidelity']:.2f}; "
            f"reward S {r['rewards']['scientist']:+.4f} E {r['rewards']['executor']:+.4f}",
        ]
    expected += [
        f"[deliver] {summary['stop_reason']}",
        f"Delivered experiment #{best['experiment_id']}: CV {m} {best['cv'][m]:.4f}; "
        f"holdout {m} {best['holdout'][m]:.4f} (baseline {summary['baseline']['holdout'][m]:.4f})",
        f"Report: {run_dir / 'report.html'}",
        f"Model:  {run_dir / 'model.joblib'}",
        f"Next:   tandem predict {summary['run_id']} new.csv --runs-dir {run_dir.parent}  "
        f"(or tandem show {summary['run_id']} --runs-dir {run_dir.parent})",  # not ./runs: named, to be pasted
    ]
    assert printed == expected
    assert len(ledger) == 3 and printed[1].startswith("[#0 baseline] CV f1_macro 0.")

    # The README's quickstart shows the same format: each of its lines is one of these kinds, and so
    # is the run's line of the same kind.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("`make demo` prints one line per experiment", 1)[1].split("```")[1].splitlines()[1:]
    shown = [line for line in block if line.strip() != "..."]
    assert len(shown) == 6, shown
    for pattern, line in zip(README_PATTERNS, shown[:4], strict=True):
        assert pattern.fullmatch(line), (pattern.pattern, line)
        assert any(pattern.fullmatch(out) for out in printed), (pattern.pattern, printed)
    assert all(FILE_LINES.fullmatch(line) for line in shown[4:]), shown[4:]


def test_evaluate_spec_reports_fold_progress_and_not_for_cached_specs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = pd.Series(X["a"] * 2 + rng.normal(size=60))
    spec = PipelineSpec(columns=Columns(numeric=("a", "b")), model=ModelSpec(family="ridge"))
    problem = Problem(task_type="regression", metrics=("rmse",), primary_metric="rmse")
    calls: list[tuple[int, int]] = []
    folds = np.arange(60) % 3
    evaluate_spec(spec, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    evaluate_spec(spec, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) == 4  # identical spec: from the cache, nothing trained


def test_html_report_is_one_self_contained_file(recorded: tuple[Path, list[Event]]) -> None:
    run_dir, _ = recorded
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["artifacts"]["report_html"] == "report.html"  # relative to the run folder
    page = (run_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for outside in ("<script", "<link", "<img", "src=", "<iframe", "@import"):
        assert outside not in page, outside  # nothing to fetch: it opens offline, anywhere
    assert not re.findall(r"url\((?!#)", page)  # SVG clip paths point inside the page only
    assert set(re.findall(r'href="(.)', page)) <= {"#"}
    # the delivered model's confusion matrix, calibration, ROC/PR and importance, the search, the rewards
    # (heuristic agents: no token plot)
    assert page.count("<svg") == 6
    assert "Heuristic agents call no API" in page
    metric = summary["task"]["primary_metric"]
    assert (
        f"{summary['best']['holdout'][metric]:.4f}" in page and f"{summary['baseline']['holdout'][metric]:.4f}" in page
    )
    assert "incumbent" in page and "fold std" in page
    for part in ("gain", "mismatch", "insignificant", "tokens"):
        assert f"<th>{part}</th>" in page
    rows = re.findall(r"<tr(?: class=\"best\")?><td>(\d+)</td>", page.split("<h2>Experiments</h2>")[1])
    assert [int(r) for r in rows] == list(range(summary["experiments"]))


def test_html_report_plots_tokens_when_agents_spend_them(recorded: tuple[Path, list[Event]]) -> None:
    run_dir, _ = recorded
    summary = json.loads((run_dir / "summary.json").read_text())
    experiments = [json.loads(line) for line in (run_dir / "experiments.jsonl").read_text().splitlines()]
    for e in experiments[1:]:
        e["tokens"] = {"scientist": {"input": 1200, "output": 300}, "executor": {"input": 800, "output": 100}}
    summary["tokens"] = {"scientist": {"input": 2400, "output": 600}, "executor": {"input": 1600, "output": 200}}
    events = [json.loads(line) for line in (run_dir / "rewards.jsonl").read_text().splitlines()]
    page = render_html(summary, experiments, events)
    assert page.count("<svg") == 3 and '<td class="num">2400</td>' in page


def test_graph_command_prints_mermaid_and_writes_a_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["graph", "-o", str(tmp_path / "g.png")]) == 0
    out = capsys.readouterr().out
    assert out.lstrip().startswith("---") and "graph TD;" in out
    for edge in ("setup --> scientist", "scientist -.-> executor", "reward -.-> scientist", "review -.-> deliver"):
        assert edge in out
    monkeypatch.setitem(sys.modules, "pygraphviz", None)  # as on a machine without Graphviz
    assert main(["graph", "-o", str(tmp_path / "fallback.png")]) == 0
    for name in ("g.png", "fallback.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
