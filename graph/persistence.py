"""The run folder: everything a run keeps on disk, and the SQLite checkpointer that saves every step.

State holds references; the folder holds the substance. `<runs-dir>/<run-id>/` contains
`run.json` (the request and context a resume needs), `checkpoints.sqlite`, `split.json`,
`cache/` (fold scores and out-of-fold predictions by spec hash) and, at delivery, the artifacts.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from langgraph.checkpoint.sqlite import SqliteSaver

from tandem.graph.context import RunContext
from tandem.graph.state import TaskInfo
from tandem.tools.data import read_table
from tandem.tools.pause_points import CommitPause
from tandem.tools.training import Problem, Split


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @classmethod
    def of(cls, state: Mapping[str, Any]) -> RunFolder:
        """The run folder a state belongs to."""
        return cls(Path(state["run_dir"]))

    @property
    def run_id(self) -> str:
        return self.path.name

    run_json = property(lambda self: self.path / "run.json")
    checkpoints = property(lambda self: self.path / "checkpoints.sqlite")
    split = property(lambda self: self.path / "split.json")
    cache = property(lambda self: self.path / "cache")
    profile = property(lambda self: self.path / "profile.json")
    experiments = property(lambda self: self.path / "experiments.jsonl")
    rewards = property(lambda self: self.path / "rewards.jsonl")
    summary = property(lambda self: self.path / "summary.json")
    report = property(lambda self: self.path / "report.md")
    report_html = property(lambda self: self.path / "report.html")
    model = property(lambda self: self.path / "model.joblib")
    holdout_rows = property(lambda self: self.path / "holdout_rows.json")


def run_folder(runs_dir: str | Path, run_id: str) -> RunFolder:
    return RunFolder(Path(runs_dir).expanduser().resolve() / run_id)


def save_run_config(folder: RunFolder, request: dict[str, Any], context: RunContext) -> None:
    """Write what a resume needs: the task request and the run context (other keys, such as a
    fork's `forked_from`, are kept)."""
    folder.path.mkdir(parents=True, exist_ok=True)
    kept = json.loads(folder.run_json.read_text()) if folder.run_json.exists() else {}
    write_json(folder.run_json, {**kept, "run_id": folder.run_id, "request": request, "context": context.to_dict()})


def load_run_config(folder: RunFolder) -> tuple[dict[str, Any], RunContext]:
    data = json.loads(folder.run_json.read_text())
    return data["request"], RunContext.from_dict(data["context"])


def open_checkpointer(folder: RunFolder) -> SqliteSaver:
    """A SQLite checkpointer for one run (its own file, so a run folder is self-contained)."""
    folder.path.mkdir(parents=True, exist_ok=True)
    # CommitPause: a commit that a crash test can stop at (tools/pause_points.py); off by default.
    conn = sqlite3.connect(folder.checkpoints, check_same_thread=False, factory=CommitPause)
    return SqliteSaver(conn)


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (a kill mid-write never leaves a half file); NaN becomes null."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(json_clean(data), indent=2, default=str))
    tmp.replace(path)


def write_jsonl(path: Path, rows: list[Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(json_clean(r), default=str) + "\n" for r in rows))
    tmp.replace(path)


def json_clean(value: Any) -> Any:
    """Plain JSON values: NaN and infinities become None, numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@lru_cache(maxsize=4)
def _frame(csv_path: str, sha256: str, target: str) -> pd.DataFrame:
    frame = read_table(csv_path)
    return frame[frame[target].notna()]


def dev_data(task: TaskInfo, split_path: str) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """The development part (features, target) and the fold of every row in every repeat
    (shape (repeats, rows)), as fixed at setup."""
    split = _split(split_path)
    frame = _frame(task["csv_path"], task["csv_sha256"], task["target"]).loc[list(split.dev_rows)]
    return frame.drop(columns=[task["target"]]), frame[task["target"]], split.fold_matrix()


def holdout_data(task: TaskInfo, split_path: str) -> tuple[pd.DataFrame, pd.Series]:
    """The holdout part: only the delivery node calls this."""
    split = _split(split_path)
    if split.holdout_source != "internal":
        frame = _frame(split.holdout_source, "", task["target"])
    else:
        frame = _frame(task["csv_path"], task["csv_sha256"], task["target"]).loc[list(split.holdout_rows)]
    return frame.drop(columns=[task["target"]]), frame[task["target"]]


@lru_cache(maxsize=8)
def _split(split_path: str) -> Split:
    return Split.load(Path(split_path))


def problem_of(task: TaskInfo) -> Problem:
    return Problem(
        task_type=task["task_type"],
        metrics=tuple(task["metrics"]),
        primary_metric=task["primary_metric"],
        classes=tuple(task["classes"]),
        positive_class=task["positive_class"],
        seed=task["seed"],
    )


def new_run_id(target: str) -> str:
    """A sortable, readable run id: time stamp plus the target's name."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", target).strip("-").lower()[:24] or "run"
    return f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{slug}"
