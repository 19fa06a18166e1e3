"""Every reward of a real run, recomputed from the ledger's fold scores and the run's coefficients.

The rules are written here from the README's "Rewards" and "How the environment judges" and
docs/decisions.md ("Significance", "Repeated folds on small data", "Ties on a discrete metric",
"Incumbent rule"), not taken from `graph.reward_rules`: per-fold gains d in reward units (metric
units for bounded metrics, relative to the incumbent's mean for unbounded ones, the sign making
"better" positive) over every fold of every repeat, significance when mean(d) > min_gain and
t ≥ significance_t, where t = mean(d) / (sd(d) / √K) for one repeat of K folds and
t = mean(d) / √(sd(d)² · (1/(R·K) + 1/(K−1))) for R repeats, then each agent's parts. The
token counts come from the scripted models' own usage reports, not from the ledger. The
coefficients are not the defaults, so a rule that ignored the configuration would show.

A scripted LLM team plays a short Titanic run in which every part is earned at least once: a
significant gain built faithfully, a faithful idea that is not significant, a proposal naming a
column that does not exist, an Executor that builds another model than asked, and a spec that
does not run. The run is played twice, with a bounded primary metric (F1 macro) and with an
unbounded, lower-is-better one (log-loss).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_chat import ScriptedChatModel, answer
from langchain_core.messages import AIMessage, BaseMessage
from scripted_team import executor_task, experiments_so_far, faithful_spec

from tandem.api import run_task
from tandem.graph.context import RewardConfig, RunContext

COEFFICIENTS = RewardConfig(
    token_cost=3e-6,
    mismatch_penalty=0.03,
    low_fidelity=0.9,
    failure_penalty=0.05,
    insignificant_penalty=0.004,
    significance_t=1.2,
    min_gain=0.0005,
)
# The README's metric list: direction and whether gains are relative (unbounded metrics).
METRIC_RULES = {"f1_macro": (+1.0, False), "log_loss": (-1.0, True)}

# What the Scientist proposes at each step (step N makes experiment #N); the steps below are played wrong.
PLAN: list[dict[str, Any]] = [
    {
        "rationale": "boosting",
        "changes": [
            {"change": "set_model", "family": "lightgbm", "params": {"n_estimators": 80, "num_leaves": 8}},
            {"change": "set_preprocessing", "settings": {"numeric_imputer": "none"}},
        ],
    },
    {
        "rationale": "a touch more regularisation",
        "base_experiment": 0,
        "changes": [{"change": "set_params", "params": {"C": 0.9}}],
    },
    {
        "rationale": "cabin deck",
        "changes": [{"change": "use_columns", "columns": ["CabinDeck"], "role": "categorical"}],
    },
    {"rationale": "weights", "changes": [{"change": "set_class_weight", "class_weight": "balanced"}]},
    {
        "rationale": "no imputation",
        "base_experiment": 0,
        "changes": [{"change": "set_preprocessing", "settings": {"numeric_imputer": "none"}}],
    },
]
INVALID_STEP, UNFAITHFUL_STEP, FAILING_STEP = 3, 4, 5  # no such column; another model built; NaN into logistic


class Team:
    """A scripted Scientist and Executor that report their usage, and the tokens each step cost."""

    def __init__(self) -> None:
        self.step = 0
        self.tokens: dict[int, dict[str, int]] = defaultdict(lambda: {"scientist": 0, "executor": 0})
        self.scientist = ScriptedChatModel(script=self.propose)
        self.executor = ScriptedChatModel(script=self.implement)

    def _say(self, role: str, payload: dict[str, Any], usage: tuple[int, int]) -> AIMessage:
        self.tokens[self.step][role] += sum(usage)
        return answer(payload, usage=usage)

    def propose(self, messages: list[BaseMessage]) -> AIMessage:
        self.step = experiments_so_far(messages)
        if self.step > len(PLAN):
            return self._say("scientist", {"action": "deliver", "rationale": "done"}, (900, 10))
        return self._say("scientist", {"action": "experiment", **PLAN[self.step - 1]}, (1000 + 37 * self.step, 60))

    def implement(self, messages: list[BaseMessage]) -> AIMessage:
        if self.step == UNFAITHFUL_STEP:  # another model than asked, on the base spec's columns
            _, base = executor_task(messages)
            spec = {**base, "model": {"family": "random_forest", "params": {"n_estimators": 30}}}
        else:
            spec = faithful_spec(messages)
        return self._say("executor", {"spec": spec}, (700 + 11 * self.step, 45))


def paired(metric: str, candidate: dict[str, Any], incumbent: dict[str, Any], folds: int) -> tuple[float, float]:
    """Mean gain in reward units and its t-statistic over every fold of every repeat."""
    sign, relative = METRIC_RULES[metric]
    mine, best = np.array(candidate["fold_scores"][metric]), np.array(incumbent["fold_scores"][metric])
    d = sign * (mine - best) / (abs(best.mean()) if relative else 1.0)
    mean, sd, n = float(d.mean()), float(d.std(ddof=1)), len(d)
    if sd <= 1e-12:
        return mean, (math.inf if mean > 1e-12 else -math.inf if mean < -1e-12 else 0.0)
    if n > folds:  # repeated folds re-use the rows: Nadeau and Bengio's corrected variance
        return mean, mean / math.sqrt(sd**2 * (1 / n + 1 / (folds - 1)))
    return mean, mean / (sd / math.sqrt(n))


def by_hand(
    ledger: list[dict[str, Any]], metric: str, folds: int, tokens: dict[int, dict[str, int]]
) -> list[dict[str, Any]]:
    """Each step's reward events, from the documented rules and this run's coefficients."""
    c = COEFFICIENTS
    events = []
    for record in ledger[1:]:
        step = record["id"]
        incumbent = ledger[ledger[step - 1]["incumbent_after"]]
        valid = step != INVALID_STEP
        ran = record["status"] == "ok"
        mean, significant = 0.0, False
        if ran:
            mean, t = paired(metric, record, incumbent, folds)
            significant = mean > c.min_gain and t >= c.significance_t
        fidelity = record["fidelity"]
        faithful = valid and ran and fidelity >= c.low_fidelity
        scientist = {
            "gain": mean if faithful and significant else 0.0,
            "insignificant": -c.insignificant_penalty if faithful and not significant else 0.0,
            "invalid": 0.0 if valid else -c.failure_penalty,
            "tokens": -c.token_cost * tokens[step]["scientist"],
        }
        executor = {
            "gain": fidelity * max(mean, 0.0) if ran else 0.0,
            "mismatch": -c.mismatch_penalty if valid and fidelity < c.low_fidelity else 0.0,
            "failure": -c.failure_penalty if valid and not ran else 0.0,
            "tokens": -c.token_cost * tokens[step]["executor"],
        }
        for agent, parts in (("scientist", scientist), ("executor", executor)):
            events.append({"experiment_id": step, "agent": agent, "parts": parts, "total": sum(parts.values())})
    return events


def best_so_far(ledger: list[dict[str, Any]], metric: str, folds: int) -> list[int]:
    """The incumbent after each experiment: a candidate with a better mean CV score replaces it, except
    that on a discrete metric (F1 macro) a difference within one standard error (|t| < 1) is a tie
    that the lower mean fold log-loss decides."""
    best, out = 0, []
    for record in ledger:
        if record["status"] == "ok" and record["id"] > 0:
            mean, t = paired(metric, record, ledger[best], folds)
            better = mean > 0
            if metric == "f1_macro" and abs(t) < 1:
                better = np.mean(record["fold_scores"]["log_loss"]) < np.mean(ledger[best]["fold_scores"]["log_loss"])
            if better:
                best = record["id"]
        out.append(best)
    return out


@pytest.mark.parametrize("metric", list(METRIC_RULES))
def test_every_reward_follows_from_the_fold_scores_and_the_coefficients(
    metric: str, titanic: Path, tmp_path: Path
) -> None:
    team = Team()
    summary = run_task(
        titanic,
        "Survived",
        metrics=["f1_macro", "log_loss"],
        primary_metric=metric,
        run_id="r",
        context=RunContext(
            runs_dir=str(tmp_path), max_iters=len(PLAN), time_budget=None, n_jobs=1, rewards=COEFFICIENTS
        ),
        scientist_model=team.scientist,
        executor_model=team.executor,
    )
    folder = tmp_path / "r"
    rows = [json.loads(line) for line in (folder / "experiments.jsonl").read_text().splitlines()]
    ledger = [r for r in rows if r["move"] != "delivery_blend"]  # on small data delivery adds its blend last
    assert rows[: len(ledger)] == ledger and len(rows) <= len(ledger) + 1
    stored = [json.loads(line) for line in (folder / "rewards.jsonl").read_text().splitlines()]
    assert [r["id"] for r in ledger] == list(range(len(PLAN) + 1))

    # the run played out as scripted, so every rule is exercised below
    assert ledger[INVALID_STEP]["status"] == "failed" and ledger[FAILING_STEP]["status"] == "failed"
    assert ledger[UNFAITHFUL_STEP]["fidelity"] < COEFFICIENTS.low_fidelity
    for step in range(1, len(PLAN) + 1):
        assert {a: u["input"] + u["output"] for a, u in ledger[step]["tokens"].items()} == team.tokens[step]
    folds = summary["task"]["folds"]
    assert len(ledger[0]["fold_scores"][metric]) == 3 * folds  # under 2,000 development rows: 3 repeats
    assert [r["incumbent_after"] for r in ledger] == best_so_far(ledger, metric, folds)

    expected = by_hand(ledger, metric, folds, team.tokens)
    assert [(e["experiment_id"], e["agent"]) for e in stored] == [(e["experiment_id"], e["agent"]) for e in expected]
    for mine, theirs in zip(expected, stored, strict=True):
        where = f"experiment {mine['experiment_id']}, {mine['agent']}"
        assert set(theirs["parts"]) == set(mine["parts"]), where
        for part, value in mine["parts"].items():
            assert theirs["parts"][part] == pytest.approx(value, abs=1e-9), f"{where}, {part}"
        assert theirs["total"] == pytest.approx(mine["total"], abs=1e-9), where
        assert ledger[mine["experiment_id"]]["rewards"][mine["agent"]] == pytest.approx(mine["total"], abs=1e-9)
    for agent in ("scientist", "executor"):
        total = sum(e["total"] for e in expected if e["agent"] == agent)
        assert summary["rewards"][agent] == pytest.approx(total, abs=1e-6)

    earned = {(e["agent"], part) for e in expected for part, value in e["parts"].items() if value != 0.0}
    assert earned >= {
        ("scientist", "gain"),
        ("scientist", "insignificant"),
        ("scientist", "invalid"),
        ("scientist", "tokens"),
        ("executor", "gain"),
        ("executor", "mismatch"),
        ("executor", "failure"),
        ("executor", "tokens"),
    }, "the run no longer exercises every rule"
