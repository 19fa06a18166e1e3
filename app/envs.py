"""tandem as environments for RL research: a PettingZoo AEC env for both agents, a Gymnasium env for the Scientist.

    import tandem.envs                      # registers the Gymnasium id "tandem/Scientist-v0"
    env = tandem.envs.env(csv_path="data.csv", target="y", max_iters=10, seed=0)   # PettingZoo AEC
    scientist = gymnasium.make("tandem/Scientist-v0", csv_path="data.csv", target="y", max_iters=10)

Both drive the same compiled graph a run uses (graph/assembly.py), paused before the agents'
nodes: an action stands in for that agent's node update, and the environment's own nodes
(evaluator, verifier, reward, deliver) run as in any run. So rewards are the reward node's
per-agent rewards, exactly as the ledger records them; an invalid action (JSON that is not a
Proposal or a PipelineSpec) is recorded as a failed step and penalised by the same rules, never a
crash. The episode terminates when the Scientist delivers and is truncated when the budget is spent.

Keyword arguments besides `csv_path` and `target` are the run context's fields (`max_iters`,
`time_budget`, `seed` — the task's seed — `n_jobs`, `policy`…), as in `tandem.api.run_task`.
Needs the `rl` extra: pip install 'tandem-ml[rl]'.
"""

from __future__ import annotations

import json
import shutil
import string
import tempfile
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from pettingzoo import AECEnv
from pettingzoo.utils import wrappers
from pydantic import ValidationError

from tandem.graph.assembly import build_graph
from tandem.graph.context import RunContext
from tandem.graph.messages import Implementation, Proposal, implementation_data, proposal_data
from tandem.graph.routing import review_required
from tandem.graph.state import TokenUsage
from tandem.nodes.agents.base import ScientistView
from tandem.nodes.agents.heuristic_scientist import MOVE_NAMES, HeuristicScientist
from tandem.nodes.agents.learned_scientist import SHARED_FEATURES, SearchState, shared_features
from tandem.nodes.agents.memory import summarize
from tandem.nodes.scientist import scientist_view
from tandem.tools.spec import parse_spec

AGENTS = ("scientist", "executor")
MAX_TEXT = 8192
CHARSET = frozenset(string.printable)
NO_TOKENS = TokenUsage(input=0, output=0)
_TASK_KEYS = ("metrics", "primary_metric", "holdout", "folds", "holdout_csv", "task_type")


def _printable(text: str) -> str:
    """Text inside the spaces' charset and length (other characters become '?')."""
    return "".join(c if c in CHARSET else "?" for c in text)[:MAX_TEXT]


def _text_space() -> spaces.Text:
    return spaces.Text(max_length=MAX_TEXT, min_length=0, charset="".join(sorted(CHARSET)))


def _feature_space() -> spaces.Box:
    return spaces.Box(low=-10.0, high=10.0, shape=(len(SHARED_FEATURES),), dtype=np.float32)


def _check_render_mode(render_mode: str | None, metadata: dict[str, Any]) -> str | None:
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(f"render_mode={render_mode!r}: this environment renders {metadata['render_modes']} or nothing")
    return render_mode


class _Session:
    """One tandem run driven step by step: the compiled graph, paused before the acting agents' nodes."""

    def __init__(self, csv_path: str | Path, target: str, pause_before: tuple[str, ...], options: dict[str, Any]):
        known = {f.name for f in fields(RunContext)}
        task_options = {k: options.pop(k) for k in _TASK_KEYS if k in options}
        unknown = sorted(set(options) - known - {"seed"})
        if unknown:
            raise TypeError(f"unknown run option(s) {', '.join(unknown)}; use the run context's fields")
        self.seed = int(options.pop("seed", 0))
        if options.get("approve", "never") != "never":
            # a human gate pauses the graph where no agent acts: the episode could never end
            raise ValueError(
                f"approve={options['approve']!r}: an environment's steps are the agents' actions; use 'never'"
            )
        self.owns_runs_dir = "runs_dir" not in options  # a runs_dir given by the caller keeps every episode's folder
        options.setdefault("time_budget", None)  # steps, not seconds, unless asked: reproducible episodes
        options.setdefault("n_jobs", 1)
        owned = tempfile.mkdtemp(prefix="tandem-env-") if self.owns_runs_dir else None
        try:
            self.context = RunContext(**{"runs_dir": owned, **options})
        except BaseException:  # refused options must not leave a temporary folder behind
            if owned is not None:
                shutil.rmtree(owned, ignore_errors=True)
            raise
        self.workdir = owned or str(self.context.runs_dir)
        self.request: dict[str, Any] = {"csv_path": str(Path(csv_path).expanduser().resolve()), "target": target}
        self.request.update(task_options)
        self.pause_before = list(pause_before)
        self.saver = InMemorySaver()
        self.graph = build_graph(checkpointer=self.saver)
        self.config: RunnableConfig = {}
        self.values: dict[str, Any] = {}
        self.run_id: str | None = None

    def reset(self, seed: int | None) -> None:
        self.forget()
        run_id = self.run_id = f"env-{uuid.uuid4().hex[:10]}"
        self.config = {"configurable": {"thread_id": run_id}, "recursion_limit": 10 * self.context.max_iters + 50}
        request = {**self.request, "seed": self.seed if seed is None else int(seed), "run_id": run_id}
        self._go(request)

    def forget(self) -> None:
        """Drop the last episode: its checkpoints (held in memory) and, unless the caller chose the
        runs folder, its run folder; a training loop resets thousands of times."""
        if self.run_id is None:
            return
        self.saver.delete_thread(self.run_id)
        if self.owns_runs_dir:
            shutil.rmtree(Path(self.workdir) / self.run_id, ignore_errors=True)
        self.run_id, self.values = None, {}

    def close(self) -> None:
        self.forget()
        if self.owns_runs_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _go(self, graph_input: Any) -> None:
        self.graph.invoke(graph_input, self.config, context=self.context, interrupt_before=self.pause_before)
        self.values = dict(self.graph.get_state(self.config).values)

    @property
    def next(self) -> tuple[str, ...]:
        return tuple(self.graph.get_state(self.config).next)

    @property
    def over(self) -> bool:
        return not self.next

    def view(self) -> ScientistView:
        return scientist_view(self.values, self.context)  # type: ignore[arg-type]

    def features(self) -> np.ndarray:
        view = self.view()
        return np.clip(np.asarray(shared_features(SearchState.of(view)), dtype=np.float32), -10.0, 10.0)

    def propose(self, proposal: Proposal) -> None:
        """What the scientist node would write for this proposal, then the graph goes on."""
        update: dict[str, Any] = {
            "proposal": proposal_data(proposal),
            "implementation": None,
            "evaluation": None,
            "verification": None,
            "step_tokens": {"scientist": NO_TOKENS},
            "tokens": {"scientist": NO_TOKENS},
            "review_required": review_required(self.context.approve, delivering=proposal.action == "deliver"),
        }
        if proposal.action == "deliver":
            update["stop_reason"] = f"the Scientist delivered: {proposal.rationale}"
        self.graph.update_state(self.config, update, as_node="scientist")
        self._step_on()

    def implement(self, implementation: Implementation) -> None:
        """What the executor node would write for this implementation, then the graph goes on."""
        update = {
            "implementation": implementation_data(implementation),
            "step_tokens": {**self.values.get("step_tokens", {}), "executor": NO_TOKENS},
            "tokens": {"executor": NO_TOKENS},
        }
        self.graph.update_state(self.config, update, as_node="executor")
        self._step_on()

    def _step_on(self) -> None:
        """Run the environment's nodes up to the next acting agent's node, or to the end.

        After an update the graph already stands before the next node; when that node is an
        agent's, it is that agent's turn now (LangGraph does not pause again before the first
        node of a resumed run, so it must not be resumed)."""
        if self.next and self.next[0] in self.pause_before:
            self.values = dict(self.graph.get_state(self.config).values)
            return
        self._go(None)

    def last_rewards(self, experiment_id: int) -> dict[str, float]:
        events = [e for e in self.values.get("reward_events", []) if e["experiment_id"] == experiment_id]
        return {e["agent"]: float(e["total"]) for e in events}

    def delivered_by_scientist(self) -> bool:
        return str(self.values.get("stop_reason") or "").startswith("the Scientist delivered")


def parse_proposal(text: Any) -> Proposal:
    """A Scientist action: a Proposal as JSON; anything else is a failed proposal (penalised)."""
    try:
        return Proposal.model_validate_json(text if isinstance(text, str | bytes) else json.dumps(text))
    except (ValidationError, ValueError, TypeError, RecursionError) as exc:  # RecursionError: "[[[[…" nested deep
        reason = " ".join(str(exc).split())[:300]
        return Proposal(rationale="invalid action", failure=f"the action is not a Proposal: {reason}")


def parse_implementation(text: Any) -> Implementation:
    """An Executor action: a PipelineSpec (or EnsembleSpec) as JSON; anything else is a failed implementation."""
    try:
        data = json.loads(text) if isinstance(text, str | bytes) else text
        return Implementation(spec=parse_spec(data))
    except (ValidationError, ValueError, TypeError, RecursionError) as exc:  # RecursionError: "[[[[…" nested deep
        return Implementation(error=f"the action is not a spec: {' '.join(str(exc).split())[:300]}")


class raw_env(AECEnv):
    """The two-agent AEC environment: the Scientist proposes, the Executor implements, the environment judges."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "name": "tandem_v0", "is_parallelizable": False}

    def __init__(self, csv_path: str | Path, target: str, render_mode: str | None = None, **run_options: Any):
        super().__init__()
        self.render_mode = _check_render_mode(render_mode, self.metadata)
        self.session = _Session(csv_path, target, ("scientist", "executor"), dict(run_options))
        self.possible_agents = list(AGENTS)
        self.observation_spaces = {
            a: spaces.Dict({"text": _text_space(), "features": _feature_space()}) for a in AGENTS
        }
        self.action_spaces = {a: _text_space() for a in AGENTS}

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        self.session.reset(seed)
        self.agents = list(AGENTS)
        self.rewards = dict.fromkeys(AGENTS, 0.0)
        self._cumulative_rewards = dict.fromkeys(AGENTS, 0.0)
        self.terminations = dict.fromkeys(AGENTS, False)
        self.truncations = dict.fromkeys(AGENTS, False)
        self.infos: dict[str, dict[str, Any]] = {a: {} for a in AGENTS}
        self.agent_selection = "scientist"

    def observe(self, agent: str) -> dict[str, Any]:
        text = summarize(self.session.view())
        if agent == "executor" and self.session.values.get("proposal"):
            proposal = self.session.values["proposal"]
            base_id = proposal.get("base_experiment")
            base_id = self.session.values["incumbent"] if base_id is None else base_id
            ledger = self.session.values["ledger"]
            base = ledger[base_id]["spec"] if 0 <= base_id < len(ledger) else None
            text = f"PROPOSAL {json.dumps(proposal)}\nBASE SPEC {json.dumps(base)}\n{text}"
        return {"text": _printable(text), "features": self.session.features()}

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        self.rewards = dict.fromkeys(self.agents, 0.0)
        if agent == "scientist":
            self.session.propose(parse_proposal(action))
            self.agent_selection = "executor"
        else:
            experiment_id = len(self.session.values.get("ledger", []))
            self.session.implement(parse_implementation(action))
            self.rewards.update(self.session.last_rewards(experiment_id))
            self.agent_selection = "scientist"
        if self.session.over:
            done = self.session.delivered_by_scientist()
            for a in self.agents:
                self.terminations[a] = done
                self.truncations[a] = not done
                self.infos[a] = {"stop_reason": self.session.values.get("stop_reason")}
        self._accumulate_rewards()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return summarize(self.session.view())

    def close(self) -> None:
        self.session.close()


def env(csv_path: str | Path, target: str, **run_options: Any) -> AECEnv:
    """The AEC environment with PettingZoo's standard wrappers (order and assertion checks)."""
    return wrappers.OrderEnforcingWrapper(raw_env(csv_path, target, **run_options))


class _OneMove(HeuristicScientist):
    """The playbook restricted to one move: the Gymnasium action picks the kind of idea."""

    def __init__(self, move: str) -> None:
        super().__init__()
        self.move = move

    def order_moves(self, view: ScientistView) -> list[str]:
        return [self.move]


class ScientistEnv(gymnasium.Env[np.ndarray, np.int64]):
    """The Scientist alone: choose a playbook move (Discrete), the built-in Executor implements it.

    A move with no new idea for this state is submitted as a failed proposal, so it costs an
    iteration and the rules' invalid-proposal penalty, as a Scientist with nothing to say would.
    """

    metadata = {"render_modes": ["ansi"]}  # noqa: RUF012 -- gymnasium declares it an instance variable

    def __init__(self, csv_path: str | Path, target: str, render_mode: str | None = None, **run_options: Any):
        options = dict(run_options)
        options.setdefault("patience", 10_000)  # the agent, not the playbook's patience, decides when to stop
        self.render_mode = _check_render_mode(render_mode, self.metadata)
        self.session = _Session(csv_path, target, ("scientist",), options)
        self.moves = MOVE_NAMES
        self.action_space = spaces.Discrete(len(self.moves))
        self.observation_space = _feature_space()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.session.reset(seed)
        self.episode_over = False
        return self.session.features(), {"moves": list(self.moves)}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.episode_over:  # going on would run past the budget and deliver the episode again
            raise gymnasium.error.ResetNeeded("the episode is over (terminated or truncated): call reset()")
        if not self.action_space.contains(action):
            raise gymnasium.error.InvalidAction(f"action {action!r} is not in {self.action_space}")
        move = self.moves[int(action)]
        proposal = _OneMove(move).propose(self.session.view()).value
        if proposal.action == "deliver":  # nothing new of this kind here (the last step's blend is kept)
            proposal = Proposal(rationale=f"move {move}", move=move, failure=f"move {move!r} has no new idea here")
        experiment_id = len(self.session.values.get("ledger", []))
        self.session.propose(proposal)
        reward = self.session.last_rewards(experiment_id).get("scientist", 0.0)
        over = self.session.over
        terminated = over and self.session.delivered_by_scientist()
        self.episode_over = over
        info = {"move": move, "stop_reason": self.session.values.get("stop_reason")}
        return self.session.features(), reward, terminated, over and not terminated, info

    def render(self) -> str | None:
        return summarize(self.session.view()) if self.render_mode == "ansi" else None

    def close(self) -> None:
        self.session.close()
        super().close()


gymnasium.register(id="tandem/Scientist-v0", entry_point="tandem.envs:ScientistEnv")
