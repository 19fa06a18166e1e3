"""No agent ever sees the holdout: what the README promises, checked on whole runs.

The strongest check is behavioural: two runs whose holdouts differ — labels shuffled or
replaced, or every feature value changed — while their development rows are the same must
make exactly the same run: the same ledger (specs, hashes, every fold score, gains, fidelity,
rewards, tokens), the same reward events, the same profile and, for a team of scripted chat
models, the same prompts, tool results included, word for word. Only the holdout scores may
differ (and must, or the holdout change did nothing). Both teams are played: the offline
playbook and LLM agents whose scripted models call every data tool the Scientist has (and the
Executor's dry run) at every step.

Three holdout changes cover the ways a holdout is made:
- the internal split of a classification task, with every feature of the holdout rows changed
  (the split is stratified by the labels, so changing labels would move rows between the parts);
- the internal split of a regression task, with the holdout labels shuffled (its split does not
  look at the labels);
- a separate holdout file (`holdout_csv`), with every holdout label replaced by another class.

Then, directly: the profile is made from the development rows (penguins: 344 rows, 275 for
development with a 20% holdout), every data tool an agent has receives exactly the development
rows and their true labels, and the delivery node is the only one that reads the holdout.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_frame
from fake_chat import ScriptedChatModel, answer, tool_call
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.config import get_config
from scripted_team import experiments_so_far, faithful_spec

import tandem.graph.persistence as persistence
import tandem.nodes.agents.llm_scientist as llm_scientist
import tandem.nodes.evaluator as evaluator
import tandem.nodes.executor as executor
import tandem.nodes.scientist as scientist
from tandem.api import run_task
from tandem.graph.context import RunContext

ITERS = 4
RUN_SPECIFIC = ("run_id", "seconds_spent", "artifacts")


@dataclass(frozen=True)
class Dataset:
    """A CSV (as pandas writes it), its target, and the columns a scripted Scientist plays with."""

    frame: pd.DataFrame
    target: str
    numeric: tuple[str, str]
    metrics: tuple[str, ...]


PENGUINS_COLUMNS = ("bill_length_mm", "bill_depth_mm")


def penguins_data(penguins: Path) -> Dataset:
    return Dataset(pd.read_csv(penguins), "species", PENGUINS_COLUMNS, ("f1_macro", "log_loss"))


def regression_data() -> Dataset:
    return Dataset(synthetic_frame(n=300, seed=3, task="regression"), "price $", ("x 1", "x2 (cm)"), ("rmse", "mae"))


# --------------------------------------------------------------------------------------------
# Scripted chat models that use every data tool and record every prompt.
# --------------------------------------------------------------------------------------------


def plan(data: Dataset) -> list[dict[str, Any]]:
    """Four valid experiments: boosting, a slower schedule for it, a product feature, a blend."""
    a, b = data.numeric
    return [
        {
            "rationale": "boosting",
            "move": "stronger_family",
            "changes": [
                {"change": "set_model", "family": "lightgbm", "params": {"n_estimators": 60, "num_leaves": 7}},
                {"change": "set_preprocessing", "settings": {"numeric_imputer": "none"}},
            ],
        },
        {
            "rationale": "slower",
            "base_experiment": 1,
            "changes": [{"change": "set_params", "params": {"learning_rate": 0.05}}],
        },
        {
            "rationale": "interaction",
            "base_experiment": 0,
            "changes": [{"change": "add_feature", "feature": {"op": "product", "left": a, "right": b}}],
        },
        {"rationale": "blend", "changes": [{"change": "build_ensemble", "experiment_ids": [1, 3]}]},
    ]


def scientist_script(data: Dataset) -> Callable[[list[BaseMessage]], AIMessage]:
    """Calls each data tool once per step (profile, a column, a target relation, correlations), then proposes."""
    a, b = data.numeric
    tools = [
        ("profile_summary", {"offset": 0}),
        ("column_detail", {"column": a}),
        ("target_relation", {"column": b}),
        ("correlations", {}),
    ]
    steps = plan(data)

    def script(messages: list[BaseMessage]) -> AIMessage:
        used = sum(isinstance(m, ToolMessage) for m in messages)
        if used < len(tools):
            name, args = tools[used]
            return tool_call(name, args, call_id=f"call_{used}")
        step = experiments_so_far(messages)  # 1 at the first proposal: only the baseline exists
        if step > len(steps):
            return answer({"action": "deliver", "rationale": "the plan is done"})
        return answer({"action": "experiment", **steps[step - 1]})

    return script


def executor_script(messages: list[BaseMessage]) -> AIMessage:
    """Builds the proposal faithfully, dry-runs it once, then answers with it."""
    spec = faithful_spec(messages)
    if not any(isinstance(m, ToolMessage) for m in messages):
        return tool_call("dry_run", {"spec": spec}, call_id="dry_1")
    return answer({"spec": spec, "repairs": [], "repaired_aspects": []})


def transcript(model: ScriptedChatModel) -> list[list[tuple[str, str, str]]]:
    """Every conversation a model was sent: each message's kind, text and tool calls."""
    return [
        [(m.type, str(m.content), json.dumps(getattr(m, "tool_calls", []), sort_keys=True)) for m in call]
        for call in model.calls
    ]


# --------------------------------------------------------------------------------------------
# Running a variant and what it saw.
# --------------------------------------------------------------------------------------------


@dataclass
class Seen:
    """What the agent-facing data tools received, and which nodes read the holdout."""

    rows: dict[str, list[tuple[list[int], list[Any]]]] = field(default_factory=dict)
    holdout_readers: list[str] = field(default_factory=list)

    def add(self, what: str, X: pd.DataFrame, y: pd.Series | None) -> None:
        labels = [] if y is None else y.tolist()
        if y is not None:
            assert list(y.index) == list(X.index), what
        self.rows.setdefault(what, []).append((list(X.index), labels))


def current_node() -> str:
    try:
        return str(get_config()["metadata"]["langgraph_node"])
    except (RuntimeError, KeyError):
        return "outside a graph node"


def spy(monkeypatch: pytest.MonkeyPatch) -> Seen:
    """Record the rows every agent-facing data tool gets and every caller of `holdout_data`."""
    seen = Seen()

    def wrap(module: Any, name: str, x_at: int, y_at: int | None) -> None:
        original = getattr(module, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            seen.add(f"{module.__name__}.{name}", args[x_at], None if y_at is None else args[y_at])
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, recorded)

    wrap(llm_scientist, "column_detail", 0, None)
    wrap(llm_scientist, "target_relation", 0, 1)
    wrap(llm_scientist, "correlations", 0, 1)
    wrap(executor, "dry_run", 1, 2)
    wrap(evaluator, "evaluate_spec", 1, 2)

    make_view = scientist.scientist_view

    def view_with_recorded_data(*args: Any, **kwargs: Any) -> Any:
        view = make_view(*args, **kwargs)
        X, y = view.data()
        seen.add("ScientistView.data", X, y)
        return view

    monkeypatch.setattr(scientist, "scientist_view", view_with_recorded_data)

    original_holdout = persistence.holdout_data

    def holdout_spy(*args: Any, **kwargs: Any) -> Any:
        seen.holdout_readers.append(current_node())
        return original_holdout(*args, **kwargs)

    for module in [m for n, m in sys.modules.items() if n == "tandem" or n.startswith("tandem.")]:
        if getattr(module, "holdout_data", None) is original_holdout:
            monkeypatch.setattr(module, "holdout_data", holdout_spy)
    return seen


@dataclass
class Run:
    folder: Path
    summary: dict[str, Any]
    prompts: dict[str, list[list[tuple[str, str, str]]]]
    seen: Seen

    def read(self, name: str) -> Any:
        path = self.folder / name
        if name.endswith(".jsonl"):
            return [json.loads(line) for line in path.read_text().splitlines()]
        return json.loads(path.read_text())


def play(
    data: Dataset,
    csv: Path,
    runs: Path,
    team: str,
    monkeypatch: pytest.MonkeyPatch,
    holdout_csv: Path | None = None,
) -> Run:
    """One run of `team` on `csv`, with the spies on."""
    with monkeypatch.context() as patch:
        seen = spy(patch)
        models: dict[str, ScriptedChatModel] = {}
        if team == "llm":
            models = {
                "scientist": ScriptedChatModel(script=scientist_script(data)),
                "executor": ScriptedChatModel(script=executor_script),
            }
        summary = run_task(
            csv,
            data.target,
            metrics=list(data.metrics),
            holdout_csv=holdout_csv,
            run_id="run",
            context=RunContext(runs_dir=str(runs), max_iters=ITERS, time_budget=None, n_jobs=1),
            scientist_model=models.get("scientist"),
            executor_model=models.get("executor"),
        )
    return Run(runs / "run", summary, {role: transcript(m) for role, m in models.items()}, seen)


def without_timing(ledger: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in record.items() if k != "fit_seconds"} for record in ledger]


def search_part(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without what legitimately differs: holdout scores, the files' paths, the clock."""
    out = {k: v for k, v in summary.items() if k not in RUN_SPECIFIC}
    out["task"] = {k: v for k, v in summary["task"].items() if k not in ("csv_path", "holdout_source")}
    out["best"] = {k: v for k, v in summary["best"].items() if k != "holdout"}
    out["baseline"] = {k: v for k, v in summary["baseline"].items() if k != "holdout"}
    return out


def assert_blind(first: Run, second: Run, team: str) -> None:
    """The two runs decided everything the same way; only their holdout scores differ."""
    ledgers = without_timing(first.read("experiments.jsonl")), without_timing(second.read("experiments.jsonl"))
    assert len(ledgers[0]) == len(ledgers[1])
    for mine, theirs in zip(*ledgers, strict=True):
        differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        assert not differ, f"experiment #{mine['id']}: " + "; ".join(
            f"{k}: {mine.get(k)} / {theirs.get(k)}" for k in differ
        )
    assert first.read("rewards.jsonl") == second.read("rewards.jsonl")
    assert first.read("profile.json") == second.read("profile.json")
    assert search_part(first.summary) == search_part(second.summary)
    assert first.summary["best"]["holdout"] != second.summary["best"]["holdout"]  # the holdouts did differ
    if team == "llm":
        for role in ("scientist", "executor"):
            assert first.prompts[role] == second.prompts[role], f"the {role}'s prompts differ"
        # not vacuous: every data tool answered, at every step, and the plan ran to the blend
        tool_results = [m for call in first.prompts["scientist"] for m in call if m[0] == "tool"]
        assert len(tool_results) >= 4 * ITERS
        assert not any(text.startswith("error") for _, text, _ in tool_results), tool_results
        searched = [r for r in first.read("experiments.jsonl") if r["move"] != "delivery_blend"]
        assert [r["status"] for r in searched] == ["ok"] * (ITERS + 1)
        assert searched[-1]["spec"]["kind"] == "ensemble"


# --------------------------------------------------------------------------------------------
# The variants.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def penguins_holdout_rows(penguins: Path, tmp_path_factory: pytest.TempPathFactory) -> list[int]:
    """The holdout rows of penguins' internal split (seed 0, 20%), as a run records them."""
    runs = tmp_path_factory.mktemp("split")
    run_task(penguins, "species", run_id="s", context=RunContext(runs_dir=str(runs), max_iters=1, n_jobs=1))
    rows: list[int] = json.loads((runs / "s" / "holdout_rows.json").read_text())["rows"]
    return rows


def changed_features(frame: pd.DataFrame, rows: list[int], target: str) -> pd.DataFrame:
    """Every feature value of the holdout rows changed (numbers scaled and shifted, categories rotated)."""
    out = frame.copy()
    for column in out.columns.drop(target):
        if pd.api.types.is_numeric_dtype(out[column]):
            out.loc[rows, column] = out.loc[rows, column] * 3 + 100
        else:
            levels = sorted(out[column].dropna().unique())
            rotate = {level: levels[(i + 1) % len(levels)] for i, level in enumerate(levels)}
            out.loc[rows, column] = out.loc[rows, column].map(rotate)  # missing values stay missing
    return out


def write(frame: pd.DataFrame, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("team", ["heuristic", "llm"])
def test_changing_every_holdout_feature_changes_nothing_but_the_holdout_score(
    team: str, penguins: Path, penguins_holdout_rows: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = penguins_data(penguins)
    original = write(data.frame, tmp_path / "a", "penguins.csv")
    changed = write(changed_features(data.frame, penguins_holdout_rows, "species"), tmp_path / "b", "penguins.csv")
    first = play(data, original, tmp_path / "runs-a", team, monkeypatch)
    second = play(data, changed, tmp_path / "runs-b", team, monkeypatch)
    assert first.read("holdout_rows.json")["rows"] == second.read("holdout_rows.json")["rows"] == penguins_holdout_rows
    assert_blind(first, second, team)


@pytest.mark.parametrize("team", ["heuristic", "llm"])
def test_shuffling_the_holdout_labels_changes_nothing_but_the_holdout_score(
    team: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = regression_data()
    original = write(data.frame, tmp_path / "a", "prices.csv")
    first = play(data, original, tmp_path / "runs-a", team, monkeypatch)
    rows = first.read("holdout_rows.json")["rows"]
    shuffled = data.frame.copy()
    shuffled.loc[rows, data.target] = np.random.default_rng(1).permutation(shuffled.loc[rows, data.target].to_numpy())
    assert (shuffled.loc[rows, data.target] != data.frame.loc[rows, data.target]).mean() > 0.9
    second = play(data, write(shuffled, tmp_path / "b", "prices.csv"), tmp_path / "runs-b", team, monkeypatch)
    assert second.read("holdout_rows.json")["rows"] == rows  # a regression split does not look at labels
    assert_blind(first, second, team)


def test_replacing_the_labels_of_a_separate_holdout_file_changes_nothing_but_its_score(
    penguins: Path, penguins_holdout_rows: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = penguins_data(penguins)
    dev = data.frame.drop(index=penguins_holdout_rows)
    holdout = data.frame.loc[penguins_holdout_rows]
    other = {"Adelie": "Gentoo", "Chinstrap": "Adelie", "Gentoo": "Chinstrap"}
    replaced = holdout.assign(species=holdout["species"].map(other))
    runs = []
    for name, labels in (("a", holdout), ("b", replaced)):
        dev_csv = write(dev, tmp_path / name, "penguins.csv")
        hold_csv = write(labels, tmp_path / name, "holdout.csv")
        runs.append(play(data, dev_csv, tmp_path / f"runs-{name}", "heuristic", monkeypatch, holdout_csv=hold_csv))
    assert runs[0].summary["task"]["holdout_source"] == str(tmp_path / "a" / "holdout.csv")
    assert runs[0].summary["task"]["n_holdout_rows"] == len(penguins_holdout_rows)  # what reports and the live view say
    assert_blind(runs[0], runs[1], "heuristic")
    assert runs[1].summary["best"]["holdout"]["f1_macro"] < 0.2  # every label is wrong now


# --------------------------------------------------------------------------------------------
# What the profile, the tools and the nodes see.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm_penguins_run(penguins: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, pd.DataFrame, list[int]]:
    """A scripted LLM team on penguins with the spies on, and the development rows the run fixed."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        data = penguins_data(penguins)
        run = play(data, penguins, tmp_path_factory.mktemp("runs"), "llm", monkeypatch)
    split = run.read("split.json")
    return run, data.frame, split["dev_rows"]


PenguinsRun = tuple[Run, pd.DataFrame, list[int]]


def test_the_profile_is_made_of_the_development_rows_only(
    llm_penguins_run: PenguinsRun,
) -> None:
    run, frame, dev_rows = llm_penguins_run
    holdout = run.read("holdout_rows.json")["rows"]
    assert len(frame) == 344 and len(dev_rows) == 275 and len(holdout) == 69
    assert sorted(set(dev_rows) | set(holdout)) == list(range(344)) and not set(dev_rows) & set(holdout)
    profile = run.read("profile.json")
    assert profile["n_rows"] == 275 == run.summary["task"]["n_dev_rows"]
    assert profile["target"]["class_counts"] == frame.loc[dev_rows, "species"].value_counts().to_dict()
    for column in profile["columns"]:  # numbers from the development rows, not from all 344
        values = frame.loc[dev_rows, column["name"]]
        assert column["missing_rate"] == pytest.approx(values.isna().mean())
        if column["min"] is not None:
            assert (column["min"], column["max"]) == pytest.approx((values.min(), values.max()))
    tool_texts = [text for call in run.prompts["scientist"] for kind, text, _ in call if kind == "tool"]
    shown = [int(m.group(1)) for text in tool_texts if (m := re.match(r'\{"rows":\s*(\d+)', text))]
    assert shown and set(shown) == {275}  # what profile_summary told the model
    assert all("275 development rows" in call[1][1] for call in run.prompts["scientist"])


def test_every_agent_facing_data_tool_gets_exactly_the_development_rows(
    llm_penguins_run: PenguinsRun,
) -> None:
    run, frame, dev_rows = llm_penguins_run
    tools = {
        "ScientistView.data",
        "tandem.nodes.agents.llm_scientist.column_detail",
        "tandem.nodes.agents.llm_scientist.target_relation",
        "tandem.nodes.agents.llm_scientist.correlations",
        "tandem.nodes.executor.dry_run",
        "tandem.nodes.evaluator.evaluate_spec",
    }
    assert set(run.seen.rows) == tools, "a tool was never called: the check would be empty"
    true_labels = frame.loc[dev_rows, "species"].tolist()
    for tool, calls in run.seen.rows.items():
        for rows, labels in calls:
            assert sorted(rows) == dev_rows, f"{tool} got {len(rows)} rows, not the {len(dev_rows)} development rows"
            if labels:
                assert labels == frame.loc[rows, "species"].tolist(), f"{tool} got labels that are not the data's"
    assert run.seen.rows["ScientistView.data"][0][1] == true_labels


def test_only_the_delivery_node_reads_the_holdout(llm_penguins_run: PenguinsRun) -> None:
    run, _, _ = llm_penguins_run
    assert run.seen.holdout_readers, "the holdout was never read: the spy is not where the code reads it"
    assert set(run.seen.holdout_readers) == {"deliver"}
    delivered = run.summary["best"]["experiment_id"]
    assert len(run.seen.holdout_readers) == (1 if delivered == 0 else 2)  # the delivered model and the baseline
