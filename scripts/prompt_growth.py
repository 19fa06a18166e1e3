"""Measure whether the LLM Scientist's prompt grows with the number of iterations (docs/llm-agents.md).

A real search runs on a CSV with the offline playbook making the decisions (so no API is needed
and the ledger fills with real experiments: successes, failures, blends). At every Scientist step
the script builds the prompt the LLM Scientist would be sent for that very state — the system
message, the situation with its bounded memory, and the tool definitions — and counts its tokens
with tiktoken (o200k_base, seeded offline). It prints the count per iteration and the ratio of
iteration 30 to iteration 5; the acceptance bound is 1.25.

    .venv/bin/python scripts/prompt_growth.py                      # titanic, 30 iterations
    .venv/bin/python scripts/prompt_growth.py data.csv target --iters 40
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tandem.api import run_task  # noqa: E402
from tandem.graph.context import RunContext  # noqa: E402
from tandem.graph.messages import Proposal, SetParams, apply_changes  # noqa: E402
from tandem.nodes import scientist as scientist_node  # noqa: E402
from tandem.nodes.agents.base import AgentReply, ScientistView  # noqa: E402
from tandem.nodes.agents.heuristic_scientist import HeuristicScientist  # noqa: E402
from tandem.nodes.agents.llm_scientist import AnalysisTools, LLMScientist  # noqa: E402
from tandem.nodes.agents.prompts import ColumnNames  # noqa: E402
from tandem.tools.spec import FAMILIES, Param, PipelineSpec, spec_hash  # noqa: E402
from tandem.tools.tokens import count_prompt_tokens  # noqa: E402


class MeasuringScientist:
    """Counts the LLM Scientist's opening prompt for each view, then lets the playbook decide.

    When the playbook has no idea left before the last iteration, a random hyperparameter of the
    incumbent's family is tuned instead, so the ledger keeps growing to the iteration measured.
    """

    def __init__(self, model: str, seed: int = 0, show: int | None = None) -> None:
        self.model = model
        self.show = show
        self.playbook = HeuristicScientist()
        self.rng = random.Random(seed)
        self.tokens: dict[int, int] = {}

    def propose(self, view: ScientistView) -> AgentReply:  # type: ignore[type-arg]
        names = ColumnNames(c.name for c in view.profile.columns)
        llm = LLMScientist(model=None)
        tools = [t.schema() for t in AnalysisTools(view, names).tools()]
        messages = llm.messages(view, names)
        self.tokens[len(view.ledger)] = count_prompt_tokens(messages, tools, self.model)
        if self.show == len(view.ledger):
            print(f"----- the Scientist's situation at iteration {self.show} -----\n{messages[1].content}\n-----")
        reply = self.playbook.propose(view)
        if reply.value.action == "deliver":
            return AgentReply(self.explore(view) or reply.value)
        return reply

    def explore(self, view: ScientistView) -> Proposal | None:
        """An untried random setting of one hyperparameter of the best single pipeline."""
        singles = [r for r in view.ledger if r["status"] == "ok" and (r["spec"] or {}).get("kind") == "pipeline"]
        sign = 1 if view.task["greater_is_better"] else -1
        base = max(singles, key=lambda r: sign * (r["primary"] or 0.0))
        spec = view.spec_of(base["id"])
        assert isinstance(spec, PipelineSpec)
        family = FAMILIES[spec.model.family]
        for _ in range(50):
            name, param = self.rng.choice(sorted(family.params.items()))
            change = SetParams(params={name: self._value(param)})
            if spec_hash(apply_changes(spec, [change], view.spec_of)) not in view.tried_hashes:
                return Proposal(rationale="explore", changes=[change], base_experiment=base["id"], move="explore")
        return None

    def _value(self, param: Param) -> object:
        if param.kind == "choice":
            return self.rng.choice(param.choices)
        if param.kind == "bool":
            return self.rng.random() < 0.5
        low, high = float(param.low or 0.0), float(param.high or 1.0)
        if param.kind == "int":
            return self.rng.randint(int(low), int(min(high, low + 300)))
        if param.log and low > 0:
            return round(math.exp(self.rng.uniform(math.log(low), math.log(high))), 6)
        return round(self.rng.uniform(low, high), 6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=str(ROOT / "examples" / "data" / "titanic.csv"))
    parser.add_argument("target", nargs="?", default="Survived")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--model", default="gpt-4o-mini", help="whose tokenizer counts (default o200k_base)")
    parser.add_argument("--json", help="also write the counts here")
    parser.add_argument("--show", type=int, help="print the Scientist's situation message at this iteration")
    args = parser.parse_args()

    measuring = MeasuringScientist(args.model, show=args.show)
    scientist_node.make_scientist = lambda context: measuring  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as runs:
        context = RunContext(runs_dir=runs, max_iters=args.iters, patience=10_000, time_budget=None, n_jobs=1)
        summary = run_task(args.csv, args.target, run_id="prompt-growth", context=context)
    counts = dict(sorted(measuring.tokens.items()))
    print(f"{Path(args.csv).name}: {summary['iterations']} iterations, stopped because {summary['stop_reason']}")
    print("iteration  prompt tokens (system + situation + tool definitions)")
    for iteration, tokens in counts.items():
        print(f"{iteration:9d}  {tokens}")
    if 5 in counts and args.iters in counts:
        ratio = counts[args.iters] / counts[5]
        print(f"iteration {args.iters} / iteration 5 = {counts[args.iters]} / {counts[5]} = {ratio:.3f} (bound 1.25)")
    if args.json:
        Path(args.json).write_text(json.dumps(counts, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
