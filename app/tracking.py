"""MLflow tracking of a run: `--mlflow [URI]` on run, resume and fork, or `$TANDEM_MLFLOW_URI`.

A tandem run becomes one parent MLflow run (named after the run id) and each experiment of its
ledger one nested run under it: the experiment's spec as flattened parameters (`model.family`,
`preprocessing.scaler`, ...), its fold scores (one point per fold, so MLflow draws them) and mean
CV scores as metrics, and its rewards and tokens. At delivery the parent gets the holdout scores,
the report and the delivered model, logged with `mlflow.sklearn.log_model` and an input signature
inferred from a few development rows.

Why logged from the run folder, after every experiment: the folder is what a run is (the ledger,
the summary, the model), so the same `sync` serves a live run, a resumed one, a fork and a run
tracked only after it finished (`log_run`). Every sync logs only what MLflow does not hold yet:
the parent is found again through `mlflow.json` in the run folder (which names it per tracking
URI), each nested run through its tags (`tandem.run_id`, `tandem.experiment_id`), and the model
through the SHA-256 the summary records. A resumed run therefore never duplicates a nested run,
and a run killed while logging one (left RUNNING) has it logged again.

MLflow is an optional extra (`pip install 'tandem-ml[mlflow]'`) and heavy (seconds to import):
it is imported here only when tracking is asked for, and this module itself is imported by the
command line only in the commands that run. MLflow's usage telemetry is turned off unless
`MLFLOW_DISABLE_TELEMETRY` says otherwise, because tandem needs no network.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from tandem.api import load_model
from tandem.cli_options import MLFLOW_DEFAULT
from tandem.graph.context import default_runs_dir
from tandem.graph.persistence import RunFolder, run_folder, write_json
from tandem.run_listing import read_json, read_ledger, tandem_command
from tandem.tools.data import read_table
from tandem.tools.errors import InputError, without_password

ENV_URI = "TANDEM_MLFLOW_URI"
DEFAULT_URI = MLFLOW_DEFAULT
"""What `--mlflow` without a value stands for: `$TANDEM_MLFLOW_URI`, else MLflow's own default
(`$MLFLOW_TRACKING_URI`, else the SQLite file `mlflow.db` in the working directory, MLflow 3)."""
EXPERIMENT = "tandem"
"""The MLflow experiment the runs go to, unless `$MLFLOW_EXPERIMENT_NAME` names another."""
MISSING = "--mlflow needs MLflow, an optional extra: pip install 'tandem-ml[mlflow]'"
STATE_FILE = "mlflow.json"
SIGNATURE_ROWS = 5
MAX_PARAM = 6000  # MLflow's limit on a parameter value
MAX_TAG = 5000  # below MLflow's 8000-character limit on a tag value
BATCH = 100  # parameters per log_batch call (MLflow's limit)
REQUIREMENTS = ("tandem-ml", "scikit-learn", "numpy", "pandas", "scipy", "lightgbm", "catboost", "skops")
"""What the logged model's environment pins (installed versions): tandem's own classes are in
the pipeline, so MLflow's guess (importing the model in a subprocess) is slower and no better."""

RunStatus = Literal["RUNNING", "FINISHED", "FAILED", "KILLED"]
SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
"""Run ids this module puts in a search filter as they are."""
UpdateHandler = Callable[[str, dict[str, Any]], None]
LIVE_NODES = ("setup", "reward", "deliver")
"""Nodes after which the run folder holds something new to log: the baseline, an experiment, the delivery."""


def resolve_uri(option: str | None) -> str | None:
    """The tracking URI asked for, `DEFAULT_URI` for MLflow's default, or None when not tracking.

    `--mlflow URI` wins; `--mlflow` alone or no option at all use `$TANDEM_MLFLOW_URI` when set
    (so setting it turns tracking on for every run); `--mlflow` alone without it uses MLflow's default.
    """
    env = os.environ.get(ENV_URI, "").strip()
    if option is not None and option != DEFAULT_URI:
        if not option.strip():
            raise InputError("--mlflow takes a tracking URI (e.g. sqlite:///mlflow.db or http://HOST:5000) or none")
        return option.strip()
    if env:
        return env
    return DEFAULT_URI if option == DEFAULT_URI else None


def import_mlflow() -> Any:
    """MLflow, quiet and offline, or one line saying how to install it."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # usage pings would need the network
    try:
        import mlflow  # the optional extra, heavy: imported only when tracking is asked for
        import mlflow.sklearn
    except ImportError:
        raise InputError(MISSING) from None
    for name in ("mlflow", "alembic"):  # their INFO lines (database migrations, run links) would break the live view
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def _clean_key(key: str) -> str:
    """A key MLflow accepts: letters, digits, and _ - . / space; at most 250 characters."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)[:250]


def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A spec as MLflow parameters: nested keys joined by dots, leaves as text (lists as JSON).

    `{"model": {"family": "lightgbm", "params": {"n_estimators": 300}}}` becomes
    `model.family = lightgbm` and `model.params.n_estimators = 300`, so runs can be filtered and
    compared by any setting; an empty mapping stays one parameter (`model.params = {}`), and a
    list of mappings is numbered (`members.0.model.family`).
    """
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for key, item in value.items():
            out |= flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return flatten({str(i): item for i, item in enumerate(value)}, prefix)  # an ensemble's members
    return {_clean_key(prefix or "value"): _text(value, MAX_PARAM)}


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class Tracker:
    """Logs one run folder to one MLflow tracking store; see the module docstring.

    Made by `track_run` (the command line) or `log_run` (Python). With `uri` None it does nothing,
    so the commands call it the same way whether or not tracking was asked for.
    """

    uri: str | None
    folder: RunFolder | None
    quiet_failures: bool = False
    """Live syncs report a failure once and carry on; the final sync raises it."""
    parent_id: str | None = None
    experiment_id: str | None = None
    _client: Any = None
    _mlflow: Any = None
    _warned: bool = False
    ran: bool = False
    """Whether the graph reported any step: a run refused before it started keeps its MLflow status."""
    _logged: set[tuple[int, str]] = field(default_factory=set)

    # ------------------------------------------------------------------ connecting

    def connect(self) -> None:
        """Import MLflow, resolve the URI and get (or make) the experiment: a bad URI or an
        unreachable server fails here, in one line, before the run does any work."""
        if self.uri is None:
            return
        mlflow = self._mlflow = import_mlflow()
        if self.uri == DEFAULT_URI:
            self.uri = mlflow.get_tracking_uri()  # $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        try:
            # the client sets up its store here: a file path MLflow no longer takes, an unknown scheme,
            # a file that is not a database all fail in this call, not in the first request
            self._client = mlflow.MlflowClient(tracking_uri=self.uri)
            with _few_retries():
                experiment = self._client.get_experiment_by_name(name)
                if experiment is None:
                    location = _artifacts_for(self.uri, name)
                    self.experiment_id = self._client.create_experiment(name, artifact_location=location)
                else:
                    if experiment.lifecycle_stage == "deleted":
                        self._client.restore_experiment(experiment.experiment_id)
                    self.experiment_id = experiment.experiment_id
        except Exception as exc:
            raise InputError(f"cannot log to MLflow at {self.uri}: {_one_line(exc)}") from None

    # ------------------------------------------------------------------ the parent run

    def _parent(self, folder: RunFolder, run_json: dict[str, Any]) -> str:
        """The parent run of this folder in this store: the one `mlflow.json` names if it is still
        there and still this run's, else the one the store holds for this folder (`_parent_in_store`),
        else a new one; recorded in `mlflow.json` at once."""
        if self.parent_id is not None:
            return self.parent_id
        # the folder's name, not run.json's id: a copied folder still holds its original's id (and
        # mlflow.json) until its first resume adopts it, and must never log into the original's run
        tandem_id = folder.run_id
        state = read_json(folder.path / STATE_FILE)
        entry = state.get(self.uri) if isinstance(state, dict) else None
        if isinstance(entry, dict) and entry.get("tandem_run_id") == tandem_id:
            with contextlib.suppress(Exception):  # gone from the store: make a new one
                run = self._client.get_run(entry["parent_run_id"])
                if run.info.lifecycle_stage == "active":
                    self.parent_id = run.info.run_id
                    return run.info.run_id
        state = state if isinstance(state, dict) else {}
        found = self._parent_in_store(folder, tandem_id)
        if found is not None:  # the same store named another way (a relative path, a trailing slash…)
            return self._remember(folder, state, found)
        request = run_json.get("request") or {}
        tags = {
            "tandem.kind": "run",
            "tandem.run_id": tandem_id,
            "tandem.folder": str(folder.path),
            "tandem.target": str(request.get("target")),
            "tandem.csv": Path(str(request.get("csv_path") or "")).name,
        }
        for source in ("forked_from", "copied_from"):
            origin = run_json.get(source)
            if isinstance(origin, dict):  # a fork's origin: {"run_id", "step", "checkpoint_id"}
                tags[f"tandem.{source}"] = f"{origin.get('run_id')} step {origin.get('step')}"
            elif origin:
                tags[f"tandem.{source}"] = str(origin)
        run = self._client.create_run(self.experiment_id, run_name=tandem_id, tags=tags)
        parent = self._remember(folder, state, run.info.run_id)
        params = {k: v for k, v in request.items() if k not in ("run_id", "csv_path", "holdout_csv") and v is not None}
        params["csv"] = tags["tandem.csv"]
        if request.get("holdout_csv"):
            params["holdout_csv"] = Path(str(request["holdout_csv"])).name
        self._log_batch(parent, params=flatten(params))
        return parent

    def _remember(self, folder: RunFolder, state: dict[str, Any], parent: str) -> str:
        """Make `parent` this folder's parent run, and say so in `mlflow.json` under this URI."""
        self.parent_id = parent
        entry = {"tandem_run_id": folder.run_id, "experiment_id": self.experiment_id, "parent_run_id": parent}
        state[str(self.uri)] = entry
        write_json(folder.path / STATE_FILE, state)
        return parent

    def _parent_in_store(self, folder: RunFolder, tandem_id: str) -> str | None:
        """The active parent run this store already holds for this folder, found by its tags.

        Why: `mlflow.json` remembers a parent by the URI as typed, and one store has many
        spellings (`sqlite:///db` from two working directories, `http://host:5000/` and without
        the slash); a spelling never seen before must not give the run a second parent."""
        if not SAFE_ID.fullmatch(tandem_id):  # the filter's quoting is not worth trusting with odd names
            return None
        runs = self._client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`tandem.run_id` = '{tandem_id}' and tags.`tandem.kind` = 'run'",
            max_results=100,
        )
        for run in runs:
            tags = run.data.tags
            if "mlflow.parentRunId" not in tags and tags.get("tandem.folder") == str(folder.path):
                return str(run.info.run_id)
        return None

    # ------------------------------------------------------------------ syncing

    def sync(self, *, live: bool = False) -> str | None:
        """Log what the run folder holds and MLflow does not; return the parent run id (None when
        there is nothing to log yet). Failures of a live sync are reported once and ignored, and
        the live syncs stop until the run's end: with MLflow's own retries a server that went away
        held every step of the run for minutes."""
        if self.uri is None or self.folder is None or not self.folder.run_json.exists():
            return None
        if live and self._warned:
            return None  # the store failed once: the run goes on, and its end syncs everything
        try:
            with _store_calls():
                return self._sync(self.folder)
        except Exception as exc:  # InputError too: a damaged model that `resume --force` is delivering again
            if not self.quiet_failures:
                if isinstance(exc, InputError):
                    raise
                raise InputError(f"MLflow logging to {self.uri} failed: {_one_line(exc)}") from None
            if not self._warned:
                self._warned = True
                print(
                    f"tandem: MLflow logging failed ({_one_line(exc)}); the run goes on and logs again at its end",
                    file=sys.stderr,
                )
            return None

    def _sync(self, folder: RunFolder) -> str:
        run_json = read_json(folder.run_json) or {}
        parent = self._parent(folder, run_json)
        ledger = read_ledger(folder.path)
        summary = read_json(folder.summary)
        summary = summary if isinstance(summary, dict) else None
        self._set_tags(parent, _context_tags(run_json.get("context") or {}))
        if any(_key(row) not in self._logged for row in ledger):
            existing = self._nested_runs(parent)
            metric = (
                (summary or {}).get("task", {}).get("primary_metric")
                or (run_json.get("request") or {}).get("primary_metric")
                or _primary_of(ledger)
            )
            by_id = {row["id"]: row for row in ledger}
            for row in ledger:
                if _key(row) in self._logged:
                    continue
                run = existing.get(row["id"])
                if run is not None and _complete(run, row):
                    self._logged.add(_key(row))
                    continue
                if run is not None:
                    self._client.delete_run(run.info.run_id)  # half-logged, or an older result for this id
                self._log_experiment(parent, row, metric, by_id)
                self._logged.add(_key(row))
        if summary is not None:
            self._log_delivery(folder, parent, summary)
        else:
            report = folder.path / "report.html"
            if report.exists():  # refreshed while the run goes on, where tandem writes one
                self._client.log_artifact(parent, str(report))
        return parent

    def _nested_runs(self, parent: str) -> dict[int, Any]:
        """This parent's nested runs by experiment id (all pages)."""
        found: dict[int, Any] = {}
        token = None
        while True:
            page = self._client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
                max_results=1000,
                page_token=token,
            )
            for run in page:
                with contextlib.suppress(KeyError, ValueError):
                    found[int(run.data.tags["tandem.experiment_id"])] = run
            token = page.token
            if not token:
                return found

    def _log_experiment(self, parent: str, row: dict[str, Any], metric: str | None, ledger: dict[int, Any]) -> None:
        """One experiment as a nested run: created, filled, then marked finished (or failed), so
        a run left RUNNING is known to be incomplete and is logged again."""
        from mlflow.entities import Metric  # the optional extra: see import_mlflow

        ok = row.get("status") == "ok"
        base = row.get("base_experiment")
        tags = {
            "mlflow.parentRunId": parent,
            "mlflow.note.content": _text(f"{row.get('proposal', '')}\n\n{row.get('rationale', '')}".strip(), MAX_TAG),
            "tandem.kind": "experiment",
            "tandem.run_id": self.folder.run_id if self.folder else "",
            "tandem.experiment_id": str(row["id"]),
            "tandem.spec_hash": str(row.get("spec_hash")),
            "tandem.move": str(row.get("move") or "baseline"),
            "tandem.status": str(row.get("status")),
            "tandem.base_experiment": "" if base is None else str(base),
            "tandem.proposal": _text(row.get("proposal", ""), MAX_TAG),
        }
        if row.get("error"):
            tags["tandem.error"] = _text(row["error"], MAX_TAG)
        name = f"#{row['id']} {row.get('move') or 'baseline'}"
        run_id = self._client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        values: dict[str, Any] = {"fidelity": row.get("fidelity"), "fit_seconds": row.get("fit_seconds")}
        values["gain"] = row.get("gain")
        values["significant"] = 1.0 if row.get("significant") else 0.0
        for m, v in (row.get("cv") or {}).items():
            values[f"cv_{m}"] = v
        for m, v in (row.get("cv_std") or {}).items():
            values[f"cv_std_{m}"] = v
        for agent, v in (row.get("rewards") or {}).items():
            values[f"reward_{agent}"] = v
        for agent, usage in (row.get("tokens") or {}).items():
            for part, v in (usage or {}).items():
                values[f"tokens_{agent}_{part}"] = v
        metrics = [Metric(_clean_key(k), x, 0, 0) for k, v in values.items() if (x := _finite(v)) is not None]
        for m, scores in (row.get("fold_scores") or {}).items():
            metrics += [
                Metric(_clean_key(f"fold_{m}"), x, 0, step)
                for step, v in enumerate(scores)
                if (x := _finite(v)) is not None
            ]
        self._log_batch(run_id, params=flatten(row.get("spec") or {}), metrics=metrics)
        # The parent's search curve: this experiment's score and the incumbent's after it.
        incumbent = ledger.get(row.get("incumbent_after", -1), {})
        curve = {f"cv_{metric}": row.get("primary"), f"best_cv_{metric}": incumbent.get("primary")} if metric else {}
        self._log_batch(
            parent,
            metrics=[Metric(_clean_key(k), x, 0, row["id"]) for k, v in curve.items() if (x := _finite(v)) is not None],
        )
        self._client.set_terminated(run_id, "FINISHED" if ok else "FAILED")

    def _log_delivery(self, folder: RunFolder, parent: str, summary: dict[str, Any]) -> None:
        """The delivered run: holdout scores, totals, the reports and the model, once per delivered
        model (a delivery replaced by `resume --force` is logged again)."""
        from mlflow.entities import Metric  # the optional extra: see import_mlflow

        sha = str(summary.get("model_sha256") or "")
        run = self._client.get_run(parent)
        best, baseline = summary.get("best") or {}, summary.get("baseline") or {}
        tags = {
            "tandem.status": str(summary.get("status")),
            "tandem.stop_reason": _text(summary.get("stop_reason") or "", MAX_TAG),
            "tandem.delivered_experiment": str(best.get("experiment_id")),
            "tandem.selection": _text(summary.get("selection") or "", MAX_TAG),
            "tandem.task_type": str((summary.get("task") or {}).get("task_type")),
            "tandem.primary_metric": str((summary.get("task") or {}).get("primary_metric")),
        }
        self._set_tags(parent, tags)
        self._mark_delivered(parent, best.get("experiment_id"))
        for name in ("report.html", "report.md", "summary.json", "cv_scores.png", "rewards.png"):
            if (folder.path / name).exists():
                self._client.log_artifact(parent, str(folder.path / name))
        if sha and run.data.tags.get("tandem.model_sha256") == sha:
            return
        step = int(summary.get("experiments") or 0)
        values: dict[str, Any] = {"seconds_spent": summary.get("seconds_spent"), "experiments": step}
        for m, v in (best.get("holdout") or {}).items():
            values[f"holdout_{m}"] = v
        for m, v in (baseline.get("holdout") or {}).items():
            values[f"baseline_holdout_{m}"] = v
        for m, v in (best.get("cv") or {}).items():
            values[f"delivered_cv_{m}"] = v
        for agent, v in (summary.get("rewards") or {}).items():
            values[f"reward_{agent}"] = v
        for agent, usage in (summary.get("tokens") or {}).items():
            for part, v in (usage or {}).items():
                values[f"tokens_{agent}_{part}"] = v
        metrics = [Metric(_clean_key(k), x, 0, step) for k, v in values.items() if (x := _finite(v)) is not None]
        self._log_batch(parent, metrics=metrics)
        model_uri = self._log_model(folder, parent, summary)
        self._set_tags(parent, {"tandem.model_sha256": sha, "tandem.model_uri": model_uri})

    def _mark_delivered(self, parent: str, experiment: Any) -> None:
        for exp_id, run in self._nested_runs(parent).items():
            self._client.set_tag(run.info.run_id, "tandem.delivered", "true" if exp_id == experiment else "false")

    def _log_model(self, folder: RunFolder, parent: str, summary: dict[str, Any]) -> str:
        """The delivered model through `mlflow.sklearn.log_model`, with its input signature."""
        import skops.io  # comes with MLflow (its default sklearn format); see import_mlflow
        from mlflow.models import infer_signature  # the optional extra: see import_mlflow

        mlflow = self._mlflow
        model = load_model(folder, summary)  # the folder's own model file, checked against its SHA-256
        rows = _example_rows(folder, summary)
        signature = infer_signature(rows, model.predict(rows)) if rows is not None else None
        # skops refuses types it has not been told to trust; tandem's own pipeline steps are ours.
        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
        previous = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(self.uri)  # log_model works on the active run, which lives in the fluent API
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with mlflow.start_run(run_id=parent):
                    info = mlflow.sklearn.log_model(
                        model,
                        name="model",
                        signature=signature,
                        input_example=rows,
                        pip_requirements=_requirements(),
                        skops_trusted_types=trusted,
                    )
        finally:
            mlflow.set_tracking_uri(previous)
        return str(info.model_uri)

    # ------------------------------------------------------------------ finishing

    def finish(self, status: RunStatus) -> None:
        """The parent's final status; RUNNING leaves it open (a run paused at an approval gate)."""
        if self.uri is None or self.parent_id is None or status == "RUNNING":
            return
        with _store_calls():
            self._client.set_terminated(self.parent_id, status)

    def _reopen(self) -> None:
        """A resumed run is running again in MLflow too, from its first step on."""
        self.ran = True
        if self.parent_id is not None:
            with _store_calls(), contextlib.suppress(Exception):  # the next sync reports a store that fails
                self._client.update_run(self.parent_id, status="RUNNING")

    def watch(self, handler: UpdateHandler | None) -> UpdateHandler | None:
        """`handler` (a run's `on_update`), followed by a sync after each node that wrote to the
        ledger or delivered: the live part of the tracking."""
        if self.uri is None:
            return handler

        def on_update(node: str, update: dict[str, Any]) -> None:
            if handler is not None:
                handler(node, update)
            if not self.ran:
                self._reopen()
            if node in LIVE_NODES:
                self.sync(live=True)

        return on_update

    def _set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag  # the optional extra: see import_mlflow

        self._client.log_batch(run_id, tags=[RunTag(_clean_key(k), _text(v, MAX_TAG)) for k, v in tags.items()])

    def _log_batch(self, run_id: str, params: dict[str, str] | None = None, metrics: list[Any] | None = None) -> None:
        from mlflow.entities import Param  # the optional extra: see import_mlflow

        items = [Param(k, v) for k, v in (params or {}).items()]
        for start in range(0, len(items), BATCH):
            self._client.log_batch(run_id, params=items[start : start + BATCH])
        metrics = metrics or []
        for start in range(0, len(metrics), 1000):
            self._client.log_batch(run_id, metrics=metrics[start : start + 1000])


def _key(row: dict[str, Any]) -> tuple[int, str]:
    """What a nested run stands for: an experiment id and its spec. An id alone is not enough: a
    delivered run continued with more budget resumes from before its delivery, so the id of the
    blend small-data delivery added is given to the next experiment."""
    return row["id"], str(row.get("spec_hash"))


def _complete(run: Any, row: dict[str, Any]) -> bool:
    """Whether a nested run already holds this ledger row: finished logging, same spec."""
    return run.info.status in ("FINISHED", "FAILED") and run.data.tags.get("tandem.spec_hash") == str(
        row.get("spec_hash")
    )


def _primary_of(ledger: list[dict[str, Any]]) -> str | None:
    """The primary metric before the summary exists: the metric whose CV mean is `primary`."""
    for row in ledger:
        for name, value in (row.get("cv") or {}).items():
            if row.get("primary") is not None and value == row["primary"]:
                return str(name)
    return None


def _context_tags(context: dict[str, Any]) -> dict[str, str]:
    """Budgets and agents: tags rather than parameters, because a resume may raise or change them
    (MLflow parameters cannot change)."""
    keys = ("max_iters", "time_budget", "token_budget", "scientist", "executor", "model", "policy", "n_jobs")
    return {f"tandem.{k}": str(context[k]) for k in keys if context.get(k) is not None}


def _example_rows(folder: RunFolder, summary: dict[str, Any]) -> Any:
    """A few development rows as `tandem predict` feeds them to the model (target dropped), for
    the signature and the input example; None when the data cannot be read any more."""
    task = summary.get("task") or {}
    own_copy = folder.path / "data.csv"  # a run started from a DataFrame keeps its data here
    source = own_copy if own_copy.exists() else Path(str(task.get("csv_path") or ""))
    try:
        frame = read_table(source)
    except InputError:
        return None
    split = read_json(folder.split) or {}
    wanted = [i for i in (split.get("dev_rows") or [])[: SIGNATURE_ROWS * 4] if i in frame.index]
    rows = frame.loc[wanted] if wanted else frame
    rows = rows.drop(columns=[task.get("target")], errors="ignore")
    return rows.dropna(how="all").head(SIGNATURE_ROWS).reset_index(drop=True)


def _requirements() -> list[str]:
    pins = []
    for name in REQUIREMENTS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{name}=={metadata.version(name)}")
    return pins


def _artifacts_for(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: for a SQLite store, `mlruns/EXPERIMENT` beside
    the database file (MLflow's own default is `./mlruns` wherever the process runs, which
    scatters a store's artifacts over every directory tandem was started from); else the store's
    default."""
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri.removeprefix("sqlite:///").split("?")[0])
    if not path.is_absolute():
        path = Path.cwd() / path
    return (path.parent / "mlruns" / re.sub(r"[^A-Za-z0-9_.-]", "_", experiment)).as_uri()


@contextlib.contextmanager
def _few_retries() -> Iterator[None]:
    """An unreachable server fails the first call in seconds, not after MLflow's minutes of retries."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's own warnings (deprecations, integer columns in a signature) stay off the run's output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _store_calls() -> Iterator[None]:
    """Around every call to the store once connected: quiet, and failing in seconds when the server
    went away mid-run (MLflow's own retries held each of a run's steps for about four minutes)."""
    with _quiet(), _few_retries():
        yield


def _folder(run_id: str, runs_dir: str | Path | None) -> RunFolder:
    return run_folder(runs_dir or default_runs_dir(), run_id)


@contextlib.contextmanager
def track_run(option: str | None, run_id: str, runs_dir: str | Path | None, *, new: bool = False) -> Iterator[Tracker]:
    """Track one command's run (run, resume or fork) when `--mlflow` or `$TANDEM_MLFLOW_URI` asks.

    Connects first (a missing extra or a bad URI is one line, exit 2, before any work), logs live
    through `Tracker.watch`, and at the end syncs the folder once more and sets the parent's
    status: FINISHED when delivered, KILLED on Ctrl-C, FAILED on an error, still RUNNING when the
    run waits at an approval gate. A failed final sync raises one line (exit 2); it never hides the
    run's own error. `new` is for `run`: a folder that already exists is not its run.
    """
    uri = resolve_uri(option)
    folder = _folder(run_id, runs_dir) if uri else None
    if new and folder is not None and folder.run_json.exists():
        uri = folder = None  # `run` refuses an id that is taken: that run is not this command's to log
    tracker = Tracker(uri, folder, quiet_failures=True)
    tracker.connect()
    if folder is not None and folder.run_json.exists():
        tracker.sync()  # a resumed run: what it did before (perhaps untracked) first
    status: RunStatus = "RUNNING"
    try:
        yield tracker
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        if tracker.uri is not None:
            _finish(tracker, status)


def _finish(tracker: Tracker, status: RunStatus) -> None:
    """The last sync and the parent's status; see `track_run`."""
    if status != "RUNNING" and not tracker.ran:
        # refused before any step (bad input, a delivered run without --force): the parent keeps its status
        with contextlib.suppress(Exception):
            tracker.quiet_failures = True
            tracker.sync()
        return
    if status != "RUNNING":  # an error is already on its way out: ours must not replace it
        with contextlib.suppress(Exception):
            tracker.quiet_failures = True
            tracker.sync()
            tracker.finish(status)
        return
    tracker.quiet_failures = False
    try:
        parent = tracker.sync()
        if parent is None:
            return
        summary = read_json(tracker.folder.summary) if tracker.folder else None
        delivered = isinstance(summary, dict) and summary.get("status") == "delivered"
        try:
            tracker.finish("FINISHED" if delivered else "RUNNING")
        except Exception as exc:
            raise InputError(f"MLflow logging to {tracker.uri} failed: {_one_line(exc)}") from None
    except InputError as exc:
        raise InputError(f"{exc}; {_log_later(tracker)}") from None
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    uri = str(tracker.uri)
    see = f"open {uri}" if uri.startswith(("http://", "https://")) else f"mlflow ui --backend-store-uri {uri}"
    print(f"MLflow: run {parent} in experiment {experiment!r}; see it with: {see}")


def _log_later(tracker: Tracker) -> str:
    """How to log a run whose last sync failed, once the store answers again (nothing of the run is lost)."""
    assert tracker.folder is not None and tracker.uri is not None
    again = tandem_command("resume", tracker.folder.run_id, tracker.folder.path.parent, "--mlflow", tracker.uri)
    return f"the run itself is saved; log it once the store answers with: {without_password(again)}"


def log_finished(option: str | None, run_id: str, runs_dir: str | Path | None) -> None:
    """`tandem resume RUN --mlflow` on a finished run: nothing runs, but the run is logged as it
    stands (all of it, for a run made without tracking), and the parent marked finished."""
    with track_run(option, run_id, runs_dir):
        pass


def log_run(run_id: str, runs_dir: str | Path | None = None, uri: str | None = None) -> str:
    """Log a run folder to MLflow (all of it that MLflow does not hold yet) and return the parent
    run's id: for a run made without tracking, or from Python after `run_task`.

    `uri` None means `$TANDEM_MLFLOW_URI`, else MLflow's default store.
    """
    folder = _folder(run_id, runs_dir)
    if not folder.run_json.exists():
        raise InputError(f"no run {run_id!r} in {folder.path.parent}")
    tracker = Tracker(resolve_uri(uri or DEFAULT_URI), folder)
    tracker.connect()
    parent = tracker.sync()
    assert parent is not None  # the folder has a run.json
    summary = read_json(folder.summary)
    if isinstance(summary, dict) and summary.get("status") == "delivered":
        tracker.finish("FINISHED")
    return parent
