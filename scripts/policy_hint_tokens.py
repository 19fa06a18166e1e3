"""Tokens an LLM Scientist spends to reach a CV score, with and without a learned policy's hint.

Writes docs/policy-hint-tokens.md (generated; no number typed by hand).

    .venv/bin/python scripts/policy_hint_tokens.py --policy learned|POLICY.json [--seeds 0,1,2] [--max-iters 6]

Whole `tandem run`s with `--agents llm` go through the real `ChatOpenAI` client to the local
OpenAI-compatible test server (tests/openai_stub.py), which plays a scripted Scientist and a
faithful Executor (tests/scripted_models.py). The scripted Scientist knows ten kinds of change
for the Titanic data, one concrete proposal each, and reads only what a real model reads, the
prompt. Without a hint it tries its kinds in an order shuffled per seed (a model with no prior
about this data); with `--policy` the prompt carries the policy's ranking of the moves still
open here (nodes/agents/prompts.py `policy_hint`) and the scripted model tries the ranked kinds
first, best first, then its own order. Everything else is equal: same data, folds, seed and
budget; the server counts every prompt's tokens, so the hint's own cost is included.

Measured per seed: the target is the best CV score the run *without* the hint reaches; the
tokens (Scientist + Executor, input + output) each run spent until its first experiment at or
above that target, or "not reached". What this does and does not show: that the hint reaches the
model, what it costs per step, and how many tokens a model that follows it saves or loses on
this task; not how far a real LLM would follow it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from openai_stub import ChatRequest, OpenAIStub, Reply, Say  # noqa: E402
from scripted_models import LIGHTGBM, SLOWER_BOOSTING, faithful_executor, step_of  # noqa: E402

from tandem.cli import main  # noqa: E402
from tandem.tools.policy_file import LEARNED, policy_path, read_policy  # noqa: E402

API_KEY = "sk-policy-hint-measurement"
SCIENTIST, EXECUTOR = "scripted-scientist", "scripted-executor"
CSV = ROOT / "examples" / "data" / "titanic.csv"
TARGET = "Survived"


def _change(move: str, rationale: str, *changes: dict[str, Any]) -> dict[str, Any]:
    return {"action": "experiment", "rationale": rationale, "move": move, "changes": list(changes)}


#: The scripted Scientist's repertoire on Titanic: one concrete proposal per kind of change.
REPERTOIRE: dict[str, dict[str, Any]] = {
    "stronger_family": LIGHTGBM,
    "boosting_schedule": SLOWER_BOOSTING,
    "class_weight": _change(
        "class_weight", "Balance the classes.", {"change": "set_class_weight", "class_weight": "balanced"}
    ),
    "threshold": _change(
        "threshold", "Tune the decision threshold.", {"change": "set_threshold", "threshold": "tuned"}
    ),
    "missing_indicators": _change(
        "missing_indicators",
        "Age is often missing; say so.",
        {"change": "add_feature", "feature": {"op": "missing_indicator", "columns": ["Age"]}},
    ),
    "interactions": _change(
        "interactions",
        "Class and age interact.",
        {"change": "add_feature", "feature": {"op": "product", "left": "Pclass", "right": "Age"}},
    ),
    "alternative_family": _change(
        "alternative_family",
        "A random forest is a strong low-variance model.",
        {"change": "set_model", "family": "random_forest", "params": {"n_estimators": 300, "min_samples_leaf": 3}},
    ),
    "linear_recipe": _change(
        "linear_recipe",
        "Evenly spread numerics and pooled rare levels for the linear model.",
        {"change": "set_preprocessing", "settings": {"numeric_transform": "power", "onehot_min_frequency": 5}},
    ),
    "text_and_dates": _change(
        "text_and_dates",
        "The length of a name carries the title.",
        {"change": "add_feature", "feature": {"op": "text_length", "column": "Name"}},
    ),
    "boosting_shape": _change(
        "boosting_shape",
        "Fewer leaves and more rows per leaf against overfitting.",
        {"change": "set_params", "params": {"num_leaves": 7, "min_child_samples": 30}},
    ),
}


def ranked_moves(user_text: str) -> list[str]:
    """The moves the prompt's policy hint lists, best first (none when there is no hint)."""
    if "Learned policy" not in user_text:
        return []
    hint = user_text.split("Learned policy", 1)[1].split("\n\nPropose", 1)[0]
    moves = []
    for line in hint.splitlines()[1:]:
        head = line.split(". ", 1)
        if len(head) == 2 and head[0].isdigit():
            moves.append(head[1].split(":", 1)[0])
    return moves


def scripted_scientist(seed: int) -> Any:
    """Follows the hint's ranking when there is one, else its own shuffled order; a proposal sent
    back (not applicable here) makes it try the next kind; delivers when its repertoire is spent."""
    own = list(REPERTOIRE)
    random.Random(seed).shuffle(own)
    played: set[str] = set()

    def script(request: ChatRequest) -> Reply:
        step_of(request)  # the step is in the prompt; what is left to try is the script's memory
        order = [m for m in ranked_moves(request.text("user")) if m in REPERTOIRE] + own
        nxt = next((m for m in order if m not in played), None)
        if nxt is None:
            return Say(json.dumps({"action": "deliver", "rationale": "every idea tried"}))
        played.add(nxt)
        return Say(json.dumps(REPERTOIRE[nxt]))

    return script


def one_run(server: OpenAIStub, runs: Path, seed: int, max_iters: int, policy: str | None) -> dict[str, Any]:
    server.script(SCIENTIST, scripted_scientist(seed))
    server.script(EXECUTOR, faithful_executor(dry_run_first=False))
    run_id = f"{'hint' if policy else 'plain'}-s{seed}"
    argv = [
        "run", str(CSV), "--target", TARGET, "--runs-dir", str(runs), "--run-id", run_id,
        "--agents", "llm", "--scientist-model", SCIENTIST, "--executor-model", EXECUTOR,
        "--base-url", server.base_url, "--request-timeout", "30", "--n-jobs", "1",
        "--max-iters", str(max_iters), "--seed", str(seed),
        *(["--policy", policy] if policy else []),
    ]  # fmt: skip
    started = time.perf_counter()
    logged = len(server.state.usage_log)
    code = main(argv)
    if code != 0:
        raise SystemExit(f"run {run_id} exited {code}")
    ledger = [json.loads(line) for line in (runs / run_id / "experiments.jsonl").read_text().splitlines()]
    steps = []
    spent = 0
    for record in ledger[1:]:
        spent += sum(int(t.get("input", 0)) + int(t.get("output", 0)) for t in record.get("tokens", {}).values())
        steps.append({"move": record.get("move"), "cv": record.get("primary"), "tokens": spent})
    # the Scientist's very first prompt: the same baseline state in both arms, so they differ by the hint alone
    first_prompt = next(p for m, p, _ in server.state.usage_log[logged:] if m == SCIENTIST)
    return {
        "baseline": ledger[0]["primary"],
        "steps": steps,
        "first_prompt": first_prompt,
        "seconds": time.perf_counter() - started,
    }


def tokens_to_reach(run: dict[str, Any], target: float) -> tuple[int | None, int | None]:
    """(tokens spent, experiment number) when the run first scored at or above `target`."""
    for i, step in enumerate(run["steps"], 1):
        if step["cv"] is not None and step["cv"] >= target - 1e-12:
            return step["tokens"], i
    return None, None


def render(rows: list[dict[str, Any]], policy: dict[str, Any], args: argparse.Namespace, wall: float) -> str:
    shown = args.policy if args.policy == LEARNED else "POLICY.json"
    lines = [
        "# Tokens to the same CV score, with and without the policy hint (generated)",
        "",
        "Generated by `scripts/policy_hint_tokens.py`; do not edit. Reproduce with:",
        "",
        "```",
        f".venv/bin/python scripts/policy_hint_tokens.py --policy {shown} --seeds {args.seeds} "
        f"--max-iters {args.max_iters}",
        "```",
        "",
        f"Policy: hash `{policy['hash'][:16]}`, trained on {len(policy['provenance'].get('tasks', []))} pool tasks "
        f"over {policy['provenance'].get('episodes')} episodes (none of them Titanic). Data: "
        f"`examples/data/titanic.csv`, target `{TARGET}`, {args.max_iters} iterations, 5-fold CV (F1 macro). "
        f"Models: the scripted Scientist and faithful Executor of the local test server (see the script's "
        f"docstring for what they do). Wall time {wall:.0f} s.",
        "",
        "| seed | target CV (best without hint) | tokens without hint | tokens with hint | "
        "experiments without / with | best CV without / with | kinds tried with the hint |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        plain_tokens, plain_at = r["plain_reach"]
        hint_tokens, hint_at = r["hint_reach"]
        moves = ", ".join(s["move"] or "?" for s in r["hint"]["steps"])
        hint_cell = hint_tokens if hint_tokens is not None else "not reached"
        at_cell = f"{plain_at} / {hint_at if hint_at is not None else '–'}"
        lines.append(
            f"| {r['seed']} | {r['target']:.4f} | {plain_tokens} | {hint_cell} | {at_cell} | "
            f"{r['plain_best']:.4f} / {r['hint_best']:.4f} | {moves} |"
        )
    reached = [r for r in rows if r["hint_reach"][0] is not None]
    if reached:
        plain_sum = sum(r["plain_reach"][0] for r in reached)
        hint_sum = sum(r["hint_reach"][0] for r in reached)
        lines += [
            "",
            f"Over the {len(reached)} of {len(rows)} seeds where the hinted run reached the target: "
            f"{plain_sum} tokens without the hint, {hint_sum} with it ({(hint_sum - plain_sum) / plain_sum:+.0%}).",
        ]
    cost = [r["hint"]["first_prompt"] - r["plain"]["first_prompt"] for r in rows]
    lines.append(
        f"The hint's own cost: the Scientist's first prompt (the same baseline state in both runs) is {min(cost)} to "
        f"{max(cost)} tokens longer with it (the server counts a request's JSON length / 4; the hint is bounded "
        "to 5 moves and 900 characters), paid at every step."
    )
    return "\n".join(lines) + "\n"


def main_script() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--policy", required=True, help="'learned' (the shipped policy) or a file from tandem train")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-iters", type=int, default=6)
    parser.add_argument("--out", default=str(ROOT / "docs" / "policy-hint-tokens.md"))
    args = parser.parse_args()
    policy_file = policy_path(args.policy)  # `learned` is the shipped policy
    policy = read_policy(policy_file)
    os.environ["OPENAI_API_KEY"] = API_KEY
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        os.environ.pop(name, None)
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work, OpenAIStub(API_KEY) as server:
        runs = Path(work) / "runs"
        for seed in (int(s) for s in args.seeds.split(",")):
            plain = one_run(server, runs, seed, args.max_iters, None)
            hint = one_run(server, runs, seed, args.max_iters, policy_file)
            cvs = [s["cv"] for s in plain["steps"] if s["cv"] is not None] or [plain["baseline"]]
            target = max(cvs)
            row = {
                "seed": seed,
                "target": target,
                "plain": plain,
                "hint": hint,
                "plain_reach": tokens_to_reach(plain, target),
                "hint_reach": tokens_to_reach(hint, target),
                "plain_best": target,
                "hint_best": max([s["cv"] for s in hint["steps"] if s["cv"] is not None] or [hint["baseline"]]),
            }
            rows.append(row)
            print(
                f"seed {seed}: target {target:.4f}; tokens without {row['plain_reach']}, with {row['hint_reach']}",
                flush=True,
            )
    wall = time.perf_counter() - started
    Path(args.out).write_text(render(rows, policy, args, wall))
    Path(args.out).with_suffix(".json").write_text(
        json.dumps({"policy": policy["hash"], "rows": rows}, indent=1, default=str) + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_script())
