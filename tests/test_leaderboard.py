"""`tandem leaderboard RUN`: a run's experiments by CV score, and `tandem elo` for the league's table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import synthetic_frame

from tandem.api import run_task
from tandem.cli import main
from tandem.graph.context import RunContext
from tandem.leaderboard import describe_spec, leaderboard, leaderboard_text


def _pipeline(family: str, **params: object) -> dict[str, object]:
    return {
        "kind": "pipeline",
        "columns": {"numeric": ["a"], "categorical": [], "high_cardinality": []},
        "features": [],
        "preprocessing": {"scaler": "standard", "numeric_imputer": "median"},
        "model": {"family": family, "params": params},
        "target_transform": "none",
        "class_weight": "none",
        "threshold": "default",
    }


def _record(id: int, primary: float | None, spec: dict[str, object], status: str = "ok") -> dict[str, object]:
    folds = [] if primary is None else [primary - 0.1, primary + 0.1]
    return {
        "id": id,
        "proposal": f"experiment {id}",
        "spec": spec,
        "spec_hash": f"hash{id}",
        "status": status,
        "cv": {} if primary is None else {"rmse": primary, "mae": primary / 2},
        "cv_std": {} if primary is None else {"rmse": 0.1},
        "fold_scores": {} if primary is None else {"rmse": folds},
        "primary": primary,
        "fit_seconds": 1.5,
        "incumbent_after": 0,
    }


def _folder(root: Path, records: list[dict[str, object]], summary: dict[str, object] | None) -> Path:
    folder = root / "r1"
    (folder / "cache").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"run_id": "r1", "request": {}, "context": {}}))
    rows = "".join(json.dumps(r) + "\n" for r in records).encode()
    (folder / "experiments.jsonl").write_bytes(rows + '{"torn in "café'.encode()[:-1])  # cut inside a character
    (folder / "cache" / "hash1.json").write_text(json.dumps({"fold_fit_seconds": 0.25, "fold_predict_seconds": 0.01}))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_lower_is_better_metrics_sort_ascending_and_unscored_experiments_come_last(tmp_path: Path) -> None:
    records = [
        _record(0, 10.0, _pipeline("ridge")),
        _record(1, 8.0, _pipeline("lightgbm", n_estimators=300, learning_rate=0.05)),
        _record(2, None, _pipeline("random_forest"), status="failed"),
        _record(3, 9.0, {"kind": "ensemble", "method": "voting", "members": [_pipeline("ridge"), _pipeline("lightgbm")],
                         "member_ids": [0, 1], "weights": [1.0, 2.0]}),
    ]  # fmt: skip
    summary = {"task": {"primary_metric": "rmse", "greater_is_better": False}, "best": {"experiment_id": 3}}
    _folder(tmp_path, records, summary)
    rows = leaderboard("r1", tmp_path)
    assert [r["experiment"] for r in rows] == [1, 3, 0, 2]
    assert [r["rank"] for r in rows] == [1, 2, 3, None]
    best = rows[0]
    assert (best["family"], best["params"]) == ("lightgbm", "learning_rate=0.05, n_estimators=300")
    assert (best["cv"], best["cv_std"], best["fold_min"], best["fold_max"], best["folds"]) == (8.0, 0.1, 7.9, 8.1, 2)
    assert (best["fit_seconds"], best["predict_seconds"], best["cv_seconds"]) == (0.25, 0.01, 1.5)
    assert rows[2]["fit_seconds"] is None  # no cached timing: shown as unknown, not as zero
    assert rows[1]["family"] == "ensemble(ridge+lightgbm)" and rows[1]["delivered"]
    assert rows[1]["params"] == "method=voting, members=#0+#1, weights=1/2"
    assert rows[3]["cv"] is None and rows[3]["status"] == "failed"

    text = leaderboard_text(rows, "r1")
    assert "sorted by mean CV rmse" in text and text.splitlines()[5].endswith("delivered")
    assert text.splitlines()[-1].split()[:3] == ["–", "#2", "random_forest"]


def test_a_run_not_yet_delivered_takes_its_metric_and_direction_from_the_ledger(tmp_path: Path) -> None:
    records = [_record(0, 10.0, _pipeline("ridge")), _record(1, 8.0, _pipeline("lightgbm"))]
    _folder(tmp_path, records, summary=None)
    rows = leaderboard("r1", tmp_path)
    assert rows[0]["metric"] == "rmse" and [r["experiment"] for r in rows] == [1, 0]  # rmse: lower is better
    assert not any(r["delivered"] for r in rows)


def test_settings_that_differ_from_the_defaults_are_key_parameters() -> None:
    spec = _pipeline("logistic", C=10.0)
    spec.update(class_weight="balanced", target_transform="none", threshold="tuned")
    spec["preprocessing"] = {"numeric_transform": "power", "scaler": "standard"}
    spec["bagging"] = {"folds": 5, "repeats": 2}
    family, params = describe_spec(spec)
    assert family == "logistic"
    assert params == "C=10, class_weight=balanced, threshold=tuned, numeric_transform=power, bagged=5x2"
    assert describe_spec(None) == ("–", "")


def test_tandem_leaderboard_on_a_real_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "data.csv"
    synthetic_frame(150).to_csv(csv, index=False)
    runs = tmp_path / "runs"
    context = RunContext(runs_dir=str(runs), max_iters=2, n_jobs=1, candidate_time_limit=None)
    run_task(csv, "label", folds=2, run_id="lb", context=context)

    assert main(["leaderboard", "lb", "--runs-dir", str(runs), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ledger = [json.loads(line) for line in (runs / "lb" / "experiments.jsonl").read_text().splitlines()]
    assert sorted(r["experiment"] for r in rows) == [r["id"] for r in ledger]
    scored = [r["cv"] for r in rows if r["rank"] is not None]
    assert scored == sorted(scored, reverse=True)  # f1_macro: higher is better
    assert sum(r["delivered"] for r in rows) == 1
    for row in rows:  # every evaluated experiment has its fold timings recorded by training
        if row["status"] == "ok":
            assert row["fit_seconds"] > 0 and row["predict_seconds"] > 0 and row["folds"] == 6  # 2 folds x 3 repeats

    assert main(["leaderboard", "lb", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run lb: ") and "CV f1_macro" in out and "fit s" in out and "predict s" in out

    assert main(["leaderboard", "nope", "--runs-dir", str(runs)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_the_elo_table_has_its_own_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["elo", "--results-dir", str(tmp_path / "empty")]) == 0
    assert "no results store" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:  # the old spelling is now a run's leaderboard, which needs a run
        main(["leaderboard", "--results-dir", str(tmp_path)])
    assert exited.value.code == 2
