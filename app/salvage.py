"""`tandem repair RUN --salvage`: a new run made of what a damaged checkpoint database still holds.

A checkpoint database that fails SQLite's `quick_check` (cut short by a full disk or a bad copy,
overwritten in part) cannot be resumed, forked or repaired as it is. Most of it can usually still
be read, and every LangGraph checkpoint is a whole state, so the newest one that can be read is a
point the run can go on from. `salvage_run` copies every readable checkpoint into a fresh
database in a NEW run folder (with the split, profile, holdout rows and the fold-score cache, as
a fork gets them) and rebuilds that run's ledger and reward files from its newest checkpoint; the
damaged folder is only read, so nothing that could still be rescued by other means is lost.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict

from tandem.api import copy_run_files, find_run, repair_run
from tandem.graph.persistence import (
    DamagedRun,
    load_run_config,
    new_run_folder,
    remove_run_folder,
    run_folder,
    run_lock,
    salvage_checkpoints,
    save_run_config,
)
from tandem.run_listing import tandem_command


class SalvageResult(TypedDict):
    """What `salvage_run` made: the new run, and how much of the old one it holds."""

    run_id: str
    salvaged_from: str
    checkpoints: int
    """Checkpoints copied into the new run."""
    unreadable: int
    """Checkpoint rows found damaged or missing (at least this many were lost)."""
    step: int | None
    """The step of the newest checkpoint copied: where the new run goes on from."""
    written: list[str]
    """The files rebuilt from that checkpoint (ledger, rewards; summary and reports if it is the end)."""


def salvage_run(run_id: str, *, new_run_id: str | None = None, runs_dir: str | Path | None = None) -> SalvageResult:
    """Copy every checkpoint of a run that can still be read into a new run `new_run_id`
    (default `RUN-salvaged`), next to it; continue it with `tandem resume NEW_RUN_ID`.

    The original folder is only read. The new run continues from the newest checkpoint that
    could be read; a step that was lost is done again (the cache, copied, spares retraining the
    experiments it had scored). If that checkpoint is the end of a delivered run, the model file
    is copied too and the summary and reports are rebuilt from it.
    """
    source = find_run(run_id, runs_dir)
    request, context = load_run_config(source)
    if not source.checkpoints.exists() or source.checkpoints.stat().st_size == 0:
        raise DamagedRun(f"run {source.run_id}: {source.checkpoints.name} is missing or empty: nothing to salvage")
    target = run_folder(source.path.parent, new_run_id or f"{source.run_id}-salvaged")
    with run_lock(source), new_run_folder(target, exists=f"{target.path} already exists; pick another --to"):
        target.fork_partial.touch()  # until run.json exists, the folder is a run being made (as for a fork)
        try:
            copy_run_files(source, target)
            salvaged = salvage_checkpoints(source, target)
            if not isinstance(salvaged.head.get("step"), int) or salvaged.head["step"] < 0:
                raise DamagedRun(
                    f"run {source.run_id}: the only checkpoint of it that can be read is its input, from before "
                    "it started: nothing to salvage, start a new run"
                )
        except BaseException:
            remove_run_folder(target)  # no half-made run left behind: the name is free again
            raise
        if source.model.exists():  # used only if the newest checkpoint is the delivered end (its hash says if it fits)
            shutil.copy2(source.model, target.model)
        origin: dict[str, Any] = {
            "run_id": source.run_id,
            "step": salvaged.head.get("step"),
            "checkpoints": salvaged.kept,
            "unreadable": salvaged.unreadable,
        }
        context = replace(context, runs_dir=str(target.path.parent), run_id=target.run_id)
        save_run_config(target, {**request, "run_id": target.run_id}, context, salvaged_from=origin)
        target.fork_partial.unlink()
    written = repair_run(target.run_id, target.path.parent)  # the ledger and rewards (and a delivery's files) from it
    if target.model.exists() and "summary.json" not in written:
        target.model.unlink()  # the new run has not delivered yet: its own delivery will write one
    return SalvageResult(
        run_id=target.run_id,
        salvaged_from=source.run_id,
        checkpoints=salvaged.kept,
        unreadable=salvaged.unreadable,
        step=salvaged.head.get("step"),
        written=written,
    )


def salvaged_text(result: SalvageResult, runs_dir: str | Path | None = None) -> str:
    """What `tandem repair RUN --salvage` prints: what was kept, what was lost, what to run next
    (naming `runs_dir`, the runs folder the command was given, when it is not the default one)."""
    lost = f" ({result['unreadable']} more could not be read)" if result["unreadable"] else ""
    then = (
        "it is the delivered end of the run, so the new run is delivered as well: "
        f"{tandem_command('show', result['run_id'], runs_dir)}"
        if "summary.json" in result["written"]
        else f"it goes on from there with: {tandem_command('resume', result['run_id'], runs_dir)}"
    )
    return (
        f"salvaged run {result['salvaged_from']} into run {result['run_id']}: {result['checkpoints']} checkpoints "
        f"copied{lost}, the newest readable one at step {result['step']} (any after it were lost); {then}; "
        f"run {result['salvaged_from']} is left as it was"
    )
