"""The LLM Scientist is told every idea the heuristic playbook can have, in the changes' words.

Why: the two Scientists share one environment and one ledger; an LLM Scientist that has never
heard of bagged delivery, ensemble selection or training-only row filters cannot propose them,
and a move added to the playbook without a line in the prompt would silently widen the gap.
"""

from __future__ import annotations

import re
import typing
from typing import Any, cast

import pytest
from pydantic import TypeAdapter

from tandem.graph.context import RewardConfig
from tandem.graph.messages import Change
from tandem.graph.state import TaskInfo
from tandem.nodes.agents.heuristic_scientist import MOVE_NAMES
from tandem.nodes.agents.prompts import CHANGES_TEXT, MOVE_TEXT, scientist_system
from tandem.tools.tuning import TUNE_MOVE

#: What the heuristic Scientist can name as a proposal's move: its table, and the tuning trials it
#: falls back to when the table is spent (bag and the two ensembles are in the table).
PLAYBOOK_MOVES = (*MOVE_NAMES, TUNE_MOVE)


def _system(task_type: str) -> str:
    return scientist_system(cast(TaskInfo, {"task_type": task_type}), RewardConfig(), 6)


def _change_kinds() -> list[str]:
    union = typing.get_args(Change)[0]
    return [typing.get_args(cls.model_fields["change"].annotation)[0] for cls in typing.get_args(union)]


@pytest.mark.parametrize("task_type", ["binary", "multiclass", "regression"])
def test_every_playbook_move_is_described_in_the_scientist_prompt(task_type: str) -> None:
    system = _system(task_type)
    described = dict(re.findall(r"^- ([a-z_]+): (.+)$", system, flags=re.MULTILINE))
    assert set(PLAYBOOK_MOVES) <= set(described), sorted(set(PLAYBOOK_MOVES) - set(described))
    assert set(MOVE_TEXT) == set(PLAYBOOK_MOVES)  # nothing described that the playbook cannot do
    assert "Caruana" in described["ensemble_selection"] and "weights" in described["ensemble_selection"]
    assert "(bag)" in described["bag"] and "set_row_filter" in described["outlier_rows"]


def test_every_change_a_move_makes_is_spelled_out() -> None:
    kinds = _change_kinds()
    assert {"bag", "set_row_filter", "regularise", "build_ensemble"} <= set(kinds)
    system = _system("regression")
    for kind in kinds:
        assert f'{{"change":"{kind}"' in CHANGES_TEXT, kind
    assert CHANGES_TEXT in system


def test_the_changes_text_examples_parse() -> None:
    """The three changes the prompt used to lack are written as the schema reads them."""
    adapter: TypeAdapter[Any] = TypeAdapter(Change)
    bag = adapter.validate_python({"change": "bag", "folds": 5, "repeats": 1})
    rows = adapter.validate_python(
        {"change": "set_row_filter", "row_filter": {"method": "target_residual", "share": 0.01}}
    )
    more = adapter.validate_python({"change": "regularise", "direction": "more"})
    assert (bag.change, rows.change, more.change) == ("bag", "set_row_filter", "regularise")
    blend = adapter.validate_python({"change": "build_ensemble", "experiment_ids": [1, 2], "weights": [2.0, 1.0]})
    assert blend.weights == (2.0, 1.0)
