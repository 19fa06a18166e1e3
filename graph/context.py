"""Run-scoped settings: budgets, agent choices and reward coefficients.

LangGraph does not checkpoint the runtime context, so a run stores its context in its folder
(`run.json`) and passes it again on every resume; a resume may raise a budget.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from tandem.tools.errors import InputError
from tandem.tools.numbers import MEMORY_SIZE, NumberRule, python_number
from tandem.tools.policy_file import PLAYBOOK, policy_hash, policy_path
from tandem.tools.tokens import check_prices

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from tandem.tools.data import LoadedTask

AgentKind = Literal["heuristic", "llm"]
ApprovalMode = Literal["never", "delivery", "proposals"]
Role = Literal["scientist", "executor"]
ROLES: tuple[Role, ...] = ("scientist", "executor")


def default_runs_dir() -> str:
    """`$TANDEM_RUNS_DIR`, else `./runs`."""
    return os.environ.get("TANDEM_RUNS_DIR") or str(Path("runs").resolve())


class HandedOver:
    """A value for one reader, who takes it.

    Why: the context lives as long as the run. `run_task` hands the setup node the table it read
    this way, so once setup has cut the development part from it nothing keeps the table alive
    (157 MB on the 1M-row speed task, through the whole search).
    """

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def take(self) -> Any:
        value, self._value = self._value, None
        return value


@dataclass(frozen=True)
class RewardConfig:
    """The reward rules (README.md, "Rewards"), with every coefficient in one place.

    Gains are in units of the primary metric, divided by the incumbent's score for unbounded
    metrics (RMSE, MAE, log-loss…), so a gain of 0.01 means one point of F1 or 1% of RMSE.
    """

    token_cost: float = 1e-6
    """Reward lost per token an agent spends (input + output)."""
    mismatch_penalty: float = 0.01
    """Executor penalty when fidelity is below `low_fidelity`."""
    low_fidelity: float = 0.8
    """Below this fidelity the implementation counts as unfaithful: the Scientist is not judged."""
    failure_penalty: float = 0.02
    """Executor penalty when its spec does not run (error or time-out)."""
    insignificant_penalty: float = 0.002
    """Scientist penalty for a faithfully implemented idea whose gain is not significant."""
    significance_t: float = 1.5
    """A gain is significant when its paired t-statistic over the folds reaches this value…"""
    min_gain: float = 0.0
    """…and its mean (in reward units) exceeds this."""


@dataclass(frozen=True)
class RunContext:
    """What a run needs besides its state: stored in `run.json`, passed again on every call."""

    runs_dir: str = field(default_factory=default_runs_dir)
    data_dir: str | None = None
    """A folder the task's CSV files must be inside (None: anywhere). The Studio server sets it
    (`tandem.studio`): a request may only name data the user put there."""
    scientist: AgentKind = "heuristic"
    executor: AgentKind = "heuristic"
    max_iters: int = 40
    """Experiments after the baseline."""
    time_budget: float | None = 900.0
    """Working seconds for the search and delivery (`graph/budget.py: delivery_seconds`)."""
    token_budget: int | None = None
    """Total tokens of both agents."""
    candidate_time_limit: float | None = 300.0
    """Seconds one candidate's cross-validation may take."""
    n_jobs: int = 2
    """Parallel fold fits (joblib). Negative counts back from the cores, as in scikit-learn: -1
    means all of them, -2 all but one; the count is resolved when the context is made."""
    memory_limit: int | None = None
    """Bytes the run's process and its fold workers should stay within; None: no limit. When `n_jobs`
    parallel fold fits would pass it (estimated from the data's size, tools/training.py:
    `folds_in_process`), folds are fitted one at a time in the run's process, each with `n_jobs`
    threads. What one fit needs is not cut, so a single large fit can still pass it. A model library's
    multi-threaded sums may then differ in the last digits."""
    patience: int = 8
    """The heuristic Scientist delivers after this many proposals in a row without significant gain."""
    small_data_rows: int = 1000
    """Below this many development rows, deliver Caruana's ensemble selection over the best single
    pipelines instead of the incumbent alone: `graph/reward_rules.py: small_data_blend`."""
    approve: ApprovalMode = "never"
    """Pause for a human (LangGraph `interrupt()`): "delivery" before delivering, "proposals" also
    before each proposal is implemented. Continue with `Command(resume=...)` (see nodes/review.py)."""
    rewards: RewardConfig = field(default_factory=RewardConfig)
    model: str = "gpt-4o-mini"
    """Chat model of the LLM agents (per-role names below override it)."""
    scientist_model: str | None = None
    executor_model: str | None = None
    base_url: str | None = None
    """An OpenAI-compatible server (vLLM, Ollama, LM Studio…); None = `$OPENAI_BASE_URL`, else OpenAI.
    The API key is never stored: it is read from `$OPENAI_API_KEY` when a model is built."""
    temperature: float | None = None
    """None = the server's default (some reasoning models accept no other)."""
    request_timeout: float = 120.0
    """Seconds one chat request may take before it is retried."""
    max_retries: int = 4
    """Retries of a chat request on HTTP 429, 5xx, time-outs and dropped connections (with backoff)."""
    max_tool_calls: int = 6
    """Tool calls an LLM agent may make in one step (analysis tools, dry runs)."""
    max_repairs: int = 1
    """Rounds an LLM agent gets to fix an invalid answer before the step counts as failed."""
    prices: dict[str, dict[str, float]] | None = field(default=None, hash=False)
    """$ per million tokens by model name, `{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}`."""
    policy: str = "playbook"
    """The heuristic Scientist's move policy: `playbook` (the hand-set preferences), `learned` (the
    policy the package ships) or a policy file from `tandem train` (tools/policy_file.py,
    docs/learning.md)."""
    policy_hash: str | None = None
    """The policy file's hash, read when the context is made and stored in run.json: a resume
    refuses a file that changed since, so a run plays one frozen policy."""
    python_models: tuple[str, ...] = ()
    """Roles whose chat model was handed in from Python: a resume must hand it in again."""
    chat_models: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)
    """Chat model objects by role, from Python; never stored (not in run.json, not checkpointed)."""
    run_id: str | None = None
    """The run folder's name under `runs_dir`, set by the Python API from the folder it opened on
    every call, never stored: a folder moved or copied under another name is found where it is now.
    None (a graph driven directly, as Studio does) means the state's `run_id`."""
    task_data: Any = field(default=None, compare=False, hash=False, repr=False)
    """The request's data (a `tools.data.LoadedTask`, in a `HandedOver`) as `run_task` read, hashed
    and validated it, for the setup node to take instead of reading the file again; never stored.
    Typed `Any` so the context's JSON schema (Studio's form) can be made; take it with
    `loaded_task()`."""

    def __post_init__(self) -> None:
        """Check every setting, whoever made the context (the CLI, the Python API, Studio, a
        resume's overrides), and refuse a bad one in one line naming it.

        Why here: a value of the wrong type or out of range was accepted from Python, changed what
        the run did (`max_iters=2.5`, `scientist="LLM"` ran heuristic agents) and was saved to
        run.json, which then failed to load: the run could never be resumed. The rules are the
        ones the CLI parses its options with (`CONTEXT_NUMBERS`)."""
        if isinstance(self.n_jobs, int) and not isinstance(self.n_jobs, bool) and self.n_jobs == 0:
            raise InputError("n_jobs must be a number of parallel fits (1 or more), or -1 for every core")
        if isinstance(self.n_jobs, int) and self.n_jobs < 0:  # scikit-learn's count back from the cores
            object.__setattr__(self, "n_jobs", max(1, (os.cpu_count() or 1) + 1 + self.n_jobs))
        for name, value in _checked_settings(self).items():  # frozen dataclass: set once, here
            object.__setattr__(self, name, value)
        if self.policy != PLAYBOOK and self.policy_hash is None:  # frozen dataclass: set once, here
            object.__setattr__(self, "policy", policy_path(self.policy))
            object.__setattr__(self, "policy_hash", policy_hash(self.policy))

    def model_name(self, role: Role) -> str:
        """The model a role's LLM agent uses."""
        own = self.scientist_model if role == "scientist" else self.executor_model
        return own or self.model

    def kind(self, role: Role) -> AgentKind:
        return self.scientist if role == "scientist" else self.executor

    def loaded_task(self) -> LoadedTask | None:
        """The data `run_task` already read for this run, if any; handed over data is taken, so a
        second call returns None."""
        data = self.task_data.take() if isinstance(self.task_data, HandedOver) else self.task_data
        if data is None:
            return None
        from tandem.tools.data import LoadedTask  # pandas and scikit-learn: not on the CLI's start-up path

        return data if isinstance(data, LoadedTask) else None

    def check_data_paths(self, request: Mapping[str, Any]) -> None:
        """Refuse a task whose CSV files lie outside `data_dir`, before anything reads them.

        The line names the path the request gave and the folder, never the file's contents, and
        is the same whether or not the file exists: a client learns nothing about other files.
        Symbolic links are followed, so a link inside the folder to a file outside is refused too.
        """
        if self.data_dir is None:
            return
        root = Path(self.data_dir).resolve()
        for key in ("csv_path", "holdout_csv"):
            given = request.get(key)
            if given and not Path(str(given)).resolve().is_relative_to(root):
                raise InputError(f"{key} {str(given)!r} is outside the data folder {root} that this server reads")

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in TRANSIENT_FIELDS}
        data["rewards"] = asdict(self.rewards)
        data["python_models"] = list(self.python_models)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunContext:
        """The context `to_dict` stored (run.json), each field's type checked, or an `InputError`
        naming the first field that is wrong: a run folder may come from someone else, and a
        budget stored as text would otherwise fail deep inside a resumed run, far from its cause."""
        known = {f.name for f in fields(cls)} - TRANSIENT_FIELDS
        values = {k: v for k, v in data.items() if k in known}
        from pydantic import ValidationError  # pydantic's import is heavy: not on the CLI's start-up path

        try:
            return _context_adapter().validate_python(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            if isinstance(error := first.get("ctx", {}).get("error"), InputError):  # __post_init__'s own line
                raise InputError(f"its settings are not valid ({error})") from None
            where = ".".join(str(part) for part in first["loc"]) or "context"
            raise InputError(f"its setting {where} is not valid ({first['msg']})") from None


#: The range of every numeric run-context field, however it is set: `tandem run --max-iters` and
#: the other options (app/cli_options.py parses their text with these), a bench player's
#: `tandem:key=value`, the Python API and run.json. `n_jobs` below 0 counts back from the cores
#: before the rule is applied (`RunContext.__post_init__`).
CONTEXT_NUMBERS: dict[str, NumberRule] = {
    "max_iters": NumberRule(int, at_least=1, meaning="experiments after the baseline"),
    "time_budget": NumberRule(float, above=0, meaning="working seconds, or None for no limit"),
    "token_budget": NumberRule(int, at_least=1, meaning="tokens, or None for no limit"),
    "candidate_time_limit": NumberRule(float, above=0, meaning="seconds, or None for no limit"),
    "n_jobs": NumberRule(int, at_least=1, meaning="parallel fold fits, or -1 for every core"),
    "memory_limit": MEMORY_SIZE,
    "patience": NumberRule(int, at_least=1),
    "small_data_rows": NumberRule(int, at_least=0),
    "temperature": NumberRule(float, at_least=0, at_most=2),
    "request_timeout": NumberRule(float, above=0),
    "max_retries": NumberRule(int, at_least=0),
    "max_tool_calls": NumberRule(int, at_least=1),
    "max_repairs": NumberRule(int, at_least=0),
}
#: Numeric fields whose None means "no limit" or "the server's default".
NO_LIMIT = frozenset({"time_budget", "token_budget", "candidate_time_limit", "memory_limit", "temperature"})
#: Fields that take one of a few words.
CONTEXT_CHOICES: dict[str, tuple[str, ...]] = {
    "scientist": get_args(AgentKind),
    "executor": get_args(AgentKind),
    "approve": get_args(ApprovalMode),
}
#: Text fields, and whether None is allowed (a path may be given as a `Path`).
CONTEXT_TEXTS: dict[str, bool] = {
    "runs_dir": False,
    "data_dir": True,
    "model": False,
    "scientist_model": True,
    "executor_model": True,
    "base_url": True,
    "policy": False,
    "policy_hash": True,
    "run_id": True,
}


def _checked_settings(context: RunContext) -> dict[str, Any]:
    """The fields whose value is fine but not in its stored form (a numpy number, a `Path`, a list
    of roles), in that form; an `InputError` naming the first field that is wrong."""
    fixed: dict[str, Any] = {}
    for name, rule in CONTEXT_NUMBERS.items():
        value = getattr(context, name)
        if value is None and name in NO_LIMIT:
            continue
        if problem := rule.problem(name, value):
            raise InputError(problem)
        if python_number(value) is not value:
            fixed[name] = python_number(value)
    for name, choices in CONTEXT_CHOICES.items():
        if getattr(context, name) not in choices:  # Studio and Python pass plain strings
            raise InputError(f"{name} must be one of {', '.join(choices)}, got {getattr(context, name)!r}")
    for name, optional in CONTEXT_TEXTS.items():
        value = getattr(context, name)
        if isinstance(value, os.PathLike) and name.endswith("_dir"):
            fixed[name] = value = os.fspath(value)
        if not (isinstance(value, str) or (optional and value is None)):
            raise InputError(f"{name} must be text{' or None' if optional else ''}, got {value!r}")
    if not isinstance(context.rewards, RewardConfig):
        raise InputError(f"rewards must be a RewardConfig, got {context.rewards!r}")
    for reward in fields(RewardConfig):
        if problem := NumberRule(float).problem(f"rewards.{reward.name}", getattr(context.rewards, reward.name)):
            raise InputError(problem)
    if context.prices is not None:
        try:
            fixed["prices"] = check_prices(context.prices)
        except ValueError as exc:
            raise InputError(f"prices: {exc}") from None
    roles = context.python_models
    if isinstance(roles, str) or not isinstance(roles, tuple | list) or not set(roles) <= set(ROLES):
        raise InputError(f"python_models must be roles among {', '.join(ROLES)}, got {roles!r}")
    if isinstance(roles, list):
        fixed["python_models"] = tuple(roles)
    return fixed


@functools.cache
def _context_adapter() -> TypeAdapter[RunContext]:
    """pydantic's validator of the dataclass, built once (a fraction of a second) when a stored
    context is first read, not when the CLI starts."""
    from pydantic import TypeAdapter

    return TypeAdapter(RunContext)


#: Fields that live only in the process that runs the graph.
TRANSIENT_FIELDS = frozenset({"chat_models", "run_id", "task_data"})


def context_of(runtime: Any) -> RunContext:
    """The runtime's context, or the defaults when the caller passed none (as Studio may)."""
    context = getattr(runtime, "context", None)
    return context if isinstance(context, RunContext) else RunContext()
