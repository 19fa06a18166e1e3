"""The command-line contract: a run delivers its artifacts, and bad input is one line with exit 2."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_frame

from tandem import run_listing
from tandem.cli import main, make_parser, stop_farewell
from tandem.graph import context, persistence
from tandem.live import Progress


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def titanic_run(tmp_path_factory: pytest.TempPathFactory, titanic: Path) -> Path:
    """One short real run shared by the artifact tests."""
    runs = tmp_path_factory.mktemp("runs")
    code = main(
        [
            "run",
            str(titanic),
            "--target",
            "Survived",
            "--max-iters",
            "4",
            "--runs-dir",
            str(runs),
            "--run-id",
            "t1",
            "--metrics",
            "f1,roc_auc,accuracy",
            "--primary",
            "f1",
        ]
    )
    assert code == 0
    return runs / "t1"


def test_run_writes_the_documented_artifacts(titanic_run: Path) -> None:
    summary = json.loads((titanic_run / "summary.json").read_text())
    assert summary["run_id"] == "t1" and summary["status"] == "delivered"
    assert summary["task"]["target"] == "Survived" and summary["task"]["task_type"] == "binary"
    assert summary["task"]["metrics"] == ["f1", "roc_auc", "accuracy"] and summary["task"]["primary_metric"] == "f1"
    assert summary["iterations"] <= 4 and summary["stop_reason"]
    for part in ("baseline", "best"):
        assert set(summary[part]) >= {"experiment_id", "spec", "cv", "holdout"}
        assert set(summary[part]["holdout"]) == {"f1", "roc_auc", "accuracy"}
        assert all(0.0 <= v <= 1.0 for v in summary[part]["holdout"].values())
    assert set(summary["rewards"]) == {"scientist", "executor"}
    assert summary["tokens"]["scientist"] == {"input": 0, "output": 0}  # heuristic agents call no API
    for name in summary["artifacts"].values():  # named relative to the run folder, so it can move
        assert not Path(name).is_absolute() and (titanic_run / name).is_file(), name
    holdout = json.loads((titanic_run / "holdout_rows.json").read_text())["rows"]
    assert len(holdout) == summary["task"]["n_holdout_rows"] == 179
    ledger = [json.loads(line) for line in (titanic_run / "experiments.jsonl").read_text().splitlines()]
    assert [e["id"] for e in ledger] == list(range(len(ledger)))
    assert {"spec_hash", "proposal", "fold_scores", "fidelity", "rewards", "fit_seconds", "status"} <= set(ledger[1])
    # 712 development rows are "small data": 5 folds repeated 3 times, every fold score kept
    assert len(ledger[1]["fold_scores"]["f1"]) == 5 * 3
    report = (titanic_run / "report.md").read_text()
    assert "cv_scores.png" in report and "rewards.png" in report and "Holdout: baseline vs delivered" in report


def test_incumbent_is_the_best_cv_experiment_and_small_data_deliver_the_blend_of_the_best_pipelines(
    titanic_run: Path, titanic: Path
) -> None:
    from tandem.graph.reward_rules import small_data_blend
    from tandem.tools.spec import spec_hash
    from tandem.tools.training import Split, load_oof

    summary = json.loads((titanic_run / "summary.json").read_text())
    ledger = [json.loads(line) for line in (titanic_run / "experiments.jsonl").read_text().splitlines()]
    searched = [e for e in ledger if e["move"] != "delivery_blend"]
    best_cv = max(e["cv"]["f1"] for e in searched if e["status"] == "ok")
    incumbent = ledger[summary["incumbent"]]
    assert incumbent["cv"]["f1"] == pytest.approx(best_cv)
    # 712 development rows: small data, so Caruana's blend of the best pipelines is delivered
    task = summary["task"]
    dev_rows = list(Split.load(titanic_run / "split.json").dev_rows)
    y = pd.read_csv(titanic)[task["target"]].loc[dev_rows].to_numpy()
    oof = lambda key: load_oof(titanic_run / "cache", key)  # noqa: E731
    blend = small_data_blend(searched, oof, y, persistence.problem_of(task))  # type: ignore[arg-type]
    delivered = ledger[summary["best"]["experiment_id"]]
    if blend is None:
        assert delivered["id"] == incumbent["id"] and summary["selection"] == "the best mean CV score"
    else:
        assert delivered["spec_hash"] == spec_hash(blend) and "Caruana" in summary["selection"]


def test_model_file_loads_in_plain_python_and_predict_command_matches(
    titanic_run: Path, titanic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = joblib.load(titanic_run / "model.joblib")
    frame = pd.read_csv(titanic)
    direct = model.predict(frame.drop(columns=["Survived"]))
    out = tmp_path / "pred.csv"
    code, stdout, _ = run_cli(
        capsys, "predict", "t1", str(titanic), "-o", str(out), "--runs-dir", str(titanic_run.parent)
    )
    assert code == 0 and "891 predictions" in stdout
    predictions = pd.read_csv(out)
    assert list(predictions.columns) == ["prediction", "proba_0", "proba_1"]
    np.testing.assert_array_equal(predictions["prediction"].to_numpy(), direct)
    np.testing.assert_allclose(predictions[["proba_0", "proba_1"]].sum(axis=1), 1.0)


def test_runs_and_show_list_the_run(titanic_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "runs", "--runs-dir", str(titanic_run.parent))
    assert code == 0 and "t1" in out and "delivered" in out
    code, out, _ = run_cli(capsys, "show", "t1", "--runs-dir", str(titanic_run.parent))
    assert code == 0 and "baseline" in out and "delivered" in out


def _write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def _raw(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


BAD_INPUTS = {
    "missing file": (lambda d: d / "nope.csv", "Survived", [], "no such file"),
    "empty file": (lambda d: _raw(d / "e.csv", ""), "y", [], "empty"),
    "not a csv": (lambda d: _raw(d / "p.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR"), "y", [], "csv"),
    "target absent": (lambda d: _write(d / "a.csv", synthetic_frame()), "Label", [], "'label'"),
    "target all missing": (
        lambda d: _write(d / "m.csv", synthetic_frame().assign(label=np.nan)),
        "label",
        [],
        "missing",
    ),
    "one class": (lambda d: _write(d / "o.csv", synthetic_frame().assign(label="yes")), "label", [], "one class"),
    "rare class": (
        lambda d: _write(d / "r.csv", synthetic_frame().assign(label=["rare"] * 3 + ["a", "b"] * 148 + ["a"])),
        "label",
        [],
        "'rare'",
    ),
    "fewer rows than folds": (lambda d: _write(d / "f.csv", synthetic_frame(n=4)), "label", [], "rows"),
    "duplicate columns": (
        lambda d: _raw(d / "d.csv", "a,a,y\n1,2,0\n3,4,1\n"),
        "y",
        [],
        "duplicate",
    ),
    "metric unfit for task": (
        lambda d: _write(d / "g.csv", synthetic_frame(task="regression")),
        "price $",
        ["--metrics", "roc_auc"],
        "roc_auc",
    ),
    "unknown metric": (lambda d: _write(d / "u.csv", synthetic_frame()), "label", ["--metrics", "f2"], "f2"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_leaves_no_run(
    case: str, tmp_path: Path, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, target, extra, expected = BAD_INPUTS[case]
    path = make(tmp_path)
    code, out, err = run_cli(capsys, "run", str(path), "--target", target, "--runs-dir", str(runs_dir), *extra)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tandem: "), err
    assert expected.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err + out
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_awkward_but_valid_files_work(tmp_path: Path, runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """cp1252 bytes, a BOM, spaces and symbols in names, and missing target rows all run."""
    frame = synthetic_frame(n=200, task="regression")
    frame["ville"] = np.where(frame["colour"] == "red", "Orléans", "Besançon")
    frame.loc[:4, "price $"] = np.nan
    path = tmp_path / "awkward.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False).encode("utf-8"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(frame.to_csv(index=False).encode("cp1252"))
    for i, csv in enumerate((path, latin)):
        code, out, err = run_cli(
            capsys,
            "run",
            str(csv),
            "--target",
            "price $",
            "--max-iters",
            "1",
            "--runs-dir",
            str(runs_dir),
            "--run-id",
            f"a{i}",
        )
        assert code == 0, err
        assert "dropped 5 rows" in out
        summary = json.loads((runs_dir / f"a{i}" / "summary.json").read_text())
        assert summary["task"]["n_rows"] == 195


def test_unknown_run_is_a_one_line_error(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "show", "nope", "--runs-dir", str(runs_dir))
    assert code == 2 and "no run 'nope'" in err and len(err.strip().splitlines()) == 1


def test_runs_is_a_table_with_date_status_size_best_score_and_time(
    titanic_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "runs", "--runs-dir", str(titanic_run.parent))
    header, rule, row = out.splitlines()[:3]
    assert code == 0 and header.split() == [
        *("updated", "run", "id", "status", "target", "exps", "metric", "best", "CV", "holdout", "time")
    ]
    assert set(rule) == {"-", " "}
    summary = json.loads((titanic_run / "summary.json").read_text())
    ledger = (titanic_run / "experiments.jsonl").read_text().splitlines()
    cells = row.split()
    datetime.strptime(f"{cells[0]} {cells[1]}", "%Y-%m-%d %H:%M")  # a date and a time, not a run id
    assert cells[2:6] == ["t1", "delivered", "Survived", str(len(ledger))]
    assert cells[6:9] == ["f1", f"{summary['best']['cv']['f1']:.4f}", f"{summary['best']['holdout']['f1']:.4f}"]
    assert cells[9] not in ("–", "")  # the run's duration


def test_show_is_tables_not_raw_dicts(titanic_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "show", "t1", "--runs-dir", str(titanic_run.parent))
    summary = json.loads((titanic_run / "summary.json").read_text())
    assert code == 0
    assert "{'scientist'" not in out and "'input':" not in out  # the rewards and tokens were dicts
    best = summary["best"]
    score = next(line for line in out.splitlines() if line.startswith("holdout f1 "))
    assert score.split()[2:] == [f"{summary['baseline']['holdout']['f1']:.4f}", f"{best['holdout']['f1']:.4f}"]
    assert any(line.split()[:2] == ["scientist", "heuristic"] for line in out.splitlines())
    spec = best["spec"]  # the delivered model as the model it is, then the change that led to it
    what = spec["model"]["family"] if spec["kind"] == "pipeline" else f"{spec['method']} blend of"
    assert f"delivered: #{best['experiment_id']} {what}" in out and f"its last change: {best['proposal']}" in out
    assert f"report: {titanic_run / 'report.html'}" in out
    assert "next: tandem predict t1 new.csv" in out


def test_resume_of_a_finished_run_says_how_to_continue(titanic_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = (titanic_run / "experiments.jsonl").read_bytes()
    code, out, err = run_cli(capsys, "resume", "t1", "--runs-dir", str(titanic_run.parent), "--plain")
    assert code == 0, err
    (line,) = out.strip().splitlines()
    summary = json.loads((titanic_run / "summary.json").read_text())
    assert line.startswith(f"run t1 is finished: {summary['stop_reason']}, after {summary['iterations']} experiments")
    more = max(4, summary["iterations"]) + 5  # above the run's --max-iters 4, so the search goes on
    assert f"tandem resume t1 --max-iters {more}" in line and "--time-budget" in line and "tandem fork t1" in line
    assert (titanic_run / "experiments.jsonl").read_bytes() == ledger  # nothing ran


def test_a_reader_that_goes_away_ends_a_listing_quietly_with_exit_1(tmp_path: Path) -> None:
    """`tandem runs | head -1`: the pipe's reader is gone before the listing is written. No line
    blaming a run file, no "Exception ignored" at exit: exit 1, as Python's documentation advises."""
    reader, writer = os.pipe()
    os.close(reader)  # every write to the pipe now fails with EPIPE, as after `head` has its line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tandem.cli", "runs", "--runs-dir", str(tmp_path / "runs")],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (1, "")


def test_every_next_step_a_message_prints_reaches_the_run_from_another_directory(
    titanic_run: Path,
    titanic: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command printed for the user to paste names the runs folder it was given, so pasted in any
    directory it reaches the same run, not a `./runs` that has no such run."""
    runs = tmp_path / "x" / "runs"
    for name in ("t1", "stopped", "damaged"):
        shutil.copytree(titanic_run, runs / name)
    (runs / "stopped" / "summary.json").unlink()
    (runs / "damaged" / "summary.json").write_text("{}")
    monkeypatch.delenv("TANDEM_RUNS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    where = ["--runs-dir", str(runs)]
    printed = [
        run_cli(capsys, "show", "stopped", *where)[2].partition("continue it with: ")[2],
        run_cli(capsys, "show", "damaged", *where)[2].partition("checkpoints with: ")[2],
        run_cli(capsys, "show", "t1", *where)[1].partition("next: ")[2],
        run_cli(capsys, "history", "t1", *where)[1].partition("fork with: ")[2].rstrip().removesuffix(")"),
    ]
    hint = run_cli(capsys, "resume", "t1", *where)[1]
    printed += [
        *re.findall(r"budget: (tandem .*?) \(or", hint),
        *re.findall(r"new run: (tandem .*?), then (tandem .*)", hint)[0],
    ]
    own_data = run_cli(capsys, "predict", "t1", str(titanic), "-o", str(tmp_path / "p.csv"), *where)[1]
    printed += re.findall(r"holdout's \((tandem .*?)\)$", own_data, re.MULTILINE)
    assert len(printed) == 8 and all(printed), printed
    for command in printed:
        words = shlex.split(command.strip().replace("STEP", "3"))
        assert words[0] == "tandem", command
        args = make_parser().parse_args(words[1:])
        assert Path(args.runs_dir).resolve() == runs.resolve() and (runs / args.run_id).is_dir(), command


def test_a_run_that_never_got_its_folder_is_suggested_again_not_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tandem resume` finds a run by its run.json: before that exists there is nothing to resume,
    so the failure and the stop lines give the command as typed, and only after it, the resume."""
    csv = _write(tmp_path / "data.csv", synthetic_frame(60))
    runs = tmp_path / "afile"
    runs.write_text("not a folder")
    argv = ["run", str(csv), "--target", "label", "--runs-dir", str(runs), "--run-id", "x1"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 3 and err.strip().endswith(f"run `{shlex.join(['tandem', *argv])}`"), err
    assert "resume" not in err

    runs = tmp_path / "runs"
    args = make_parser().parse_args(["run", str(csv), "--target", "label", "--runs-dir", str(runs)])
    args.run_id = "x2"  # as `tandem run` names it before it starts, for a stop to name it
    assert stop_farewell(args, "tandem run AS TYPED")[1].endswith("Run it again with: tandem run AS TYPED")
    (runs / "x2").mkdir(parents=True)
    (runs / "x2" / "run.json").write_text("{}")
    assert stop_farewell(args, "tandem run AS TYPED")[1].endswith(f"Continue with: tandem resume x2 --runs-dir {runs}")


def test_a_forced_resume_that_searched_on_does_not_also_say_the_run_is_finished(
    penguins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On 200 penguins the delivery's blend row is replaced by the next experiment, so the ledger
    keeps its length: whether the search went on is read from the new delivery, not from that."""
    small = _raw(tmp_path / "p200.csv", "".join(penguins.read_text().splitlines(keepends=True)[:201]))
    where = ["--runs-dir", str(tmp_path / "runs"), "--plain", "--n-jobs", "1"]
    started = run_cli(capsys, "run", str(small), "--target", "species", "--max-iters", "3", "--run-id", "b", *where)
    assert started[0] == 0
    code, out, _ = run_cli(capsys, "resume", "b", "--force", "--max-iters", "4", *where)
    assert code == 0 and json.loads((tmp_path / "runs" / "b" / "summary.json").read_text())["iterations"] == 4
    assert "is finished" not in out
    code, out, _ = run_cli(capsys, "resume", "b", "--max-iters", "4", *where)  # raised, but not above what it used
    assert code == 0 and "run b is finished: iteration budget reached" in out


def test_a_resume_that_runs_nothing_leaves_run_json_as_it_was(
    titanic_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A budget below what the run used continues nothing, so it must not become the run's recorded
    budget (a later plain resume or fork would read it)."""
    copy = tmp_path / "runs" / "t1"
    shutil.copytree(titanic_run, copy)
    recorded = (copy / "run.json").read_bytes()
    code, out, _ = run_cli(capsys, "resume", "t1", "--max-iters", "2", "--runs-dir", str(copy.parent), "--plain")
    assert code == 0 and "run t1 is finished" in out
    assert (copy / "run.json").read_bytes() == recorded


def test_light_commands_load_no_heavy_library(titanic_run: Path) -> None:
    """`--help`, `runs` and `show` stay fast by never importing the ML stack (timed in scripts/cli_startup.py)."""
    script = (
        "import sys\n"
        "from tandem.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"main(['runs', '--runs-dir', {str(titanic_run.parent)!r}])\n"
        f"main(['show', 't1', '--runs-dir', {str(titanic_run.parent)!r}])\n"
        "heavy = ('langgraph', 'langchain_core', 'pandas', 'numpy', 'sklearn', 'lightgbm', 'matplotlib', 'rich')\n"
        "print('LOADED', sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "LOADED []"


def test_the_light_run_id_rule_is_the_checkpoints_rule() -> None:
    assert run_listing.RUN_ID_RULE.pattern == persistence.RUN_ID_RULE.pattern
    assert persistence.RunFolder(Path("r")).previous_summary.name == run_listing.PREVIOUS_SUMMARY
    assert run_listing.default_runs_dir() == context.default_runs_dir()


def _reward_update(exp_id: int, base: int, move: str, changes: list[dict[str, object]], proposal: str) -> dict:
    record = {
        "id": exp_id,
        "base_experiment": base,
        "move": move,
        "changes": changes,
        "proposal": proposal,
        "primary": 0.8,
        "status": "ok",
        "error": None,
        "significant": False,
        "incumbent_after": 1,
        "fidelity": 1.0,
        "rewards": {"scientist": 0.0, "executor": 0.0},
        "tokens": {},
        "cv": {"f1": 0.8},
    }
    return {"ledger": [record]}


def test_a_step_line_names_where_the_experiment_starts() -> None:
    lines = Progress()
    lines.metric = "f1"
    weights = [{"change": "set_class_weight", "class_weight": "balanced"}]
    step = lines.describe("reward", _reward_update(3, 1, "class_weight", weights, "set_class_weight(balanced)"))
    assert step is not None and step.splitlines()[0] == "[#3 ← #1 class_weight] set_class_weight(balanced)"
    blend = [{"change": "build_ensemble", "experiment_ids": [1, 3], "method": "voting", "weights": None}]
    step = lines.describe("reward", _reward_update(4, 3, "ensemble", blend, "build_ensemble(...)"))
    assert step is not None and step.startswith("[#4 ← #1+#3 ensemble] ")  # a blend starts from its members
    long = "set_params(params={" + ", ".join(f"'p{i}': {i}" for i in range(40)) + "})"
    first = lines.describe("reward", _reward_update(5, 1, "tune", [], long)).splitlines()[0]  # type: ignore[union-attr]
    shown_part = first.split("] ", 1)[1]
    assert shown_part.endswith("…") and long.startswith(shown_part[:-1]) and long[len(shown_part) - 1] == " "
