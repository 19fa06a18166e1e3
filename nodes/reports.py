"""The run's report while it searches, and the delivered model's insight kept beside it.

`report.html` used to appear only at delivery, so a running or killed run had none. The reward
node now calls `write_progress_report` after every experiment (drawn at most `REPORT_SHARE` of
the time, the first page too, and always when the search waits for a person): the page shows what the search
has seen (the incumbent as a pipeline, plots from its cached out-of-fold predictions, the
search curve, the leaderboard), read from the development rows only. The holdout is read by
the deliver node alone (tests/test_holdout_blindness.py).

At delivery the deliver node computes the delivered model's holdout insight
(`tools.model_insight.holdout_insight`) from the holdout it already holds and keeps it in
`model_insight.json` (`save_insight`), so `tandem repair` can draw the same report again
without the holdout or the model (`load_insight`).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from tandem.graph.context import RunContext
from tandem.graph.persistence import RunFolder, dev_data, json_clean, problem_of, write_json, write_text
from tandem.graph.state import ExperimentRecord, RewardEvent, TaskInfo
from tandem.nodes.agents.models import agents_summary
from tandem.tools.model_insight import INSIGHT_FILE, ModelInsight, oof_insight
from tandem.tools.report_html import render_progress_html


def insight_path(folder: RunFolder) -> Path:
    return folder.path / INSIGHT_FILE


def save_insight(folder: RunFolder, insight: ModelInsight) -> None:
    write_json(insight_path(folder), insight)


def load_insight(folder: RunFolder) -> ModelInsight | None:
    """The delivered model's insight as delivery saved it; None for a run delivered before it was kept."""
    path = insight_path(folder)
    if not path.exists():
        return None
    try:
        return cast(ModelInsight, json.loads(path.read_text()))
    except ValueError:  # a damaged file: the report is drawn without the model's plots
        return None


@lru_cache(maxsize=4)
def _cached_oof_insight(
    cache: Path, key: str, mtime_ns: int, folder: RunFolder, task_json: str, experiment_id: int
) -> ModelInsight | None:
    """The incumbent's out-of-fold insight, computed once per incumbent (the cache file's time
    is in the key, so a spec trained again is read again)."""
    task = cast(TaskInfo, json.loads(task_json))
    _, y_dev, _ = dev_data(task, folder)
    return oof_insight(cache, key, y_dev, problem_of(task), experiment_id)


def incumbent_insight(folder: RunFolder, task: TaskInfo, record: ExperimentRecord) -> ModelInsight | None:
    """Plots of an experiment from its cached out-of-fold predictions (development rows only)."""
    key = record.get("spec_hash")
    if not key or record["status"] != "ok":
        return None
    oof = folder.cache / f"{key}.oof.npy"
    if not oof.exists():
        return None
    task_json = json.dumps(task, sort_keys=True, default=str)
    return _cached_oof_insight(folder.cache, key, oof.stat().st_mtime_ns, folder, task_json, record["id"])


REPORT_SHARE = 0.05
"""The most of a search's wall time the progress page may take: after a page that took c seconds
to draw, the next waits 20c. Drawn after every experiment, its plots were 0.7 s of an 8-iteration
run's 3.7 s median iteration on 10,000 rows (21% of the time, against the 5% the environment may
take in all)."""
FIRST_PAGE_SECONDS = 0.5
"""What a page is taken to cost before this process has drawn one (0.5 to 1 s, measured): the first
page of a run waits, like the later ones, until the search has worked 1/`REPORT_SHARE` times that
(10 s of fitting). A search over in seconds, as a scikit-learn estimator's fit on small data or a
cross-validation of it, goes straight to delivery's page instead of drawing one nobody opens."""
_DRAWN: OrderedDict[Path, tuple[float, float]] = OrderedDict()
"""Run folder → (when its page was last drawn, what drawing it cost), for this process's runs."""
_DRAWN_KEPT = 64


def write_progress_report(
    folder: RunFolder,
    context: RunContext,
    task: TaskInfo,
    ledger: list[ExperimentRecord],
    events: list[RewardEvent],
    incumbent: int,
    *,
    now: bool = False,
) -> bool:
    """Write `report.html` as the search stands after its last experiment (never from the holdout),
    unless the page was drawn too recently for `REPORT_SHARE`, or, for the first, the search has
    not yet worked long enough to afford it (`FIRST_PAGE_SECONDS`); `now` draws it anyway (the
    search waits for a person here). Returns whether the page was drawn."""
    last = _DRAWN.get(folder.path)
    if not now and last is not None and folder.report_html.exists():
        drawn_at, cost = last
        if time.monotonic() - drawn_at < cost / REPORT_SHARE:
            return False
    if not now and last is None:  # this process's first page of the run: its share of the work so far
        expected = _DRAWN[next(reversed(_DRAWN))][1] if _DRAWN else FIRST_PAGE_SECONDS
        if sum(float(r.get("fit_seconds") or 0.0) for r in ledger) * REPORT_SHARE < expected:
            return False
    started = time.perf_counter()
    tokens: dict[str, dict[str, int]] = {}
    agents = agents_summary(context, tokens)["agents"]
    experiments = cast(list[dict[str, Any]], json_clean(list(ledger)))
    page = render_progress_html(
        cast(dict[str, Any], json_clean(dict(task))),
        experiments,
        cast(list[dict[str, Any]], json_clean(list(events))),
        run_id=folder.run_id,
        incumbent=incumbent,
        insight=incumbent_insight(folder, task, ledger[incumbent]),
        agents=agents,
    )
    write_text(folder.report_html, page)
    _DRAWN[folder.path] = (time.monotonic(), time.perf_counter() - started)
    _DRAWN.move_to_end(folder.path)
    while len(_DRAWN) > _DRAWN_KEPT:
        _DRAWN.popitem(last=False)
    return True
