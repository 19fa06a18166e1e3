"""report.html as a user sees it: a report about the model, refreshed after every experiment.

Three real runs (binary, multiclass, regression) make the pages; the binary one is first stopped
at the delivery gate, where its page is the search's (out-of-fold plots, no holdout), then
delivered. The pages are checked as HTML (sections, their order, the selection rule, full
proposals, folded agent sections) and then in headless Chromium: every plot has a size on
screen, is not inside a folded section, and its part of a screenshot is not blank.

Chromium is Debian's `chromium` package; the test does not install it and fails with the
command to run when it is missing (`make test` installs it). The plot data is checked against
scikit-learn directly in the unit tests at the end.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_frame
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from tandem.api import open_run, resume_run, run_config, run_task
from tandem.graph.context import RunContext
from tandem.graph.persistence import RunFolder, run_thread
from tandem.nodes import reports
from tandem.tools import model_insight
from tandem.tools.builder import build_pipeline, predict
from tandem.tools.metrics import METRICS
from tandem.tools.model_insight import (
    classifier_plots,
    describe_spec,
    key_params,
    oof_insight,
    permutation_importances,
    regression_plots,
)
from tandem.tools.report import shorten
from tandem.tools.report_html import _sampled_columns
from tandem.tools.spec import Columns, ModelSpec, PipelineSpec, spec_hash
from tandem.tools.training import Problem, evaluate_spec

CLASSIFIER_PLOTS = {"confusion", "calibration", "roc-pr", "importance", "search", "rewards"}
REGRESSION_PLOTS = {"regression", "importance", "search", "rewards"}
AGENT_PLOTS = {"rewards", "tokens"}
PROGRESS_PLOTS = {"confusion", "calibration", "roc-pr", "search", "rewards"}  # out of fold: no holdout importance
SECTIONS = [
    "<h2>Holdout: baseline vs delivered</h2>",
    "<h2>The delivered model: experiment #",
    "<h2>How the delivered model predicts</h2>",
    "<h2>The search: cross-validation score per experiment</h2>",
    "<h2>Leaderboard</h2>",
    "<h2>Experiments</h2>",
    "<details class='rewards'",
    "<details class='tokens'",
]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory, penguins: Path) -> dict[str, Path]:
    """report.html of each run (and a copy of the binary run's page before delivery)."""
    root = tmp_path_factory.mktemp("reports")
    runs = root / "runs"
    synthetic_frame(n=300, seed=1).to_csv(root / "binary.csv", index=False)
    synthetic_frame(n=300, seed=2, task="regression").to_csv(root / "regression.csv", index=False)

    def context(**extra: Any) -> RunContext:
        return RunContext(runs_dir=str(runs), max_iters=2, n_jobs=1, **extra)

    paused = run_task(root / "binary.csv", "label", run_id="binary", folds=3, context=context(approve="delivery"))
    assert paused["status"] == "paused"
    assert not (runs / "binary" / "model_insight.json").exists()  # nothing about the holdout yet
    shutil.copy(runs / "binary" / "report.html", root / "progress.html")
    assert resume_run("binary", runs_dir=runs, answer=True)["status"] == "delivered"
    run_task(penguins, "species", run_id="multiclass", folds=3, context=context())
    run_task(root / "regression.csv", "price $", run_id="regression", folds=3, context=context())
    return {
        "progress": root / "progress.html",
        **{name: runs / name / "report.html" for name in ("binary", "multiclass", "regression")},
    }


def plot_names(page: str) -> set[str]:
    return set(re.findall(r"data-plot='([a-z-]+)'", page))


# ---------------------------------------------------------------------------------------------
# The pages as HTML
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["binary", "multiclass", "regression"])
def test_a_delivered_page_describes_the_model_before_the_search_and_the_agents_last(
    pages: dict[str, Path], run: str
) -> None:
    page = pages[run].read_text()
    folder = pages[run].parent
    summary = json.loads((folder / "summary.json").read_text())
    experiments = [json.loads(line) for line in (folder / "experiments.jsonl").read_text().splitlines()]
    insight = json.loads((folder / "model_insight.json").read_text())

    at = [page.find(section) for section in SECTIONS]
    assert -1 not in at and at == sorted(at), dict(zip(SECTIONS, at, strict=True))
    assert plot_names(page) == (REGRESSION_PLOTS if run == "regression" else CLASSIFIER_PLOTS)
    assert page.count("<svg") == len(plot_names(page))
    for outside in ("<script", "<img", "data:", "src=", "<link"):
        assert outside not in page  # one file, nothing to fetch
    # the delivered model as a pipeline, and why it was chosen, in words
    assert html.escape(summary["selection"]) in page
    delivered = summary["best"]["experiment_id"]
    spec = summary["best"]["spec"]
    if spec["kind"] == "ensemble":  # small data may deliver an average: each member is described
        assert f"<td>{spec['method']} ensemble</td><td>{len(spec['members'])} member pipelines" in page
        for i, member in enumerate(spec["members"], start=1):
            assert f"<td>member {i}</td><td>{html.escape(member['model']['family'])}: " in page
    else:
        assert f"<td>model</td><td>{html.escape(spec['model']['family'])}" in page
    # the whole proposal of every experiment, never cut mid-word
    for x in experiments:
        assert f"<td>{html.escape(x['proposal'])}</td>" in page
    # agents' sections last and folded when all zero: offline agents spend no tokens
    assert "<details class='tokens'>" in page and "<details class='rewards' open>" in page
    # the plots' data: the delivered model on every holdout row
    assert insight["source"] == "holdout" and insight["experiment_id"] == delivered
    assert insight["rows"] == summary["task"]["n_holdout_rows"]
    if run == "regression":
        assert insight["plots"]["shown"] == len(insight["plots"]["actual"]) == insight["rows"]
    else:
        assert sum(map(sum, insight["plots"]["confusion"])) == insight["rows"]
        assert len(insight["plots"]["roc"]) == (1 if run == "binary" else 3)
    columns = {f["column"] for f in insight["importance"]["features"]}
    pipelines = spec["members"] if spec["kind"] == "ensemble" else [spec]
    read = {c for pipeline in pipelines for kind in pipeline["columns"].values() for c in kind}
    assert columns == read  # what the model reads, nothing else
    # the leaderboard ranks every experiment by CV score
    board = page.split("<h2>Leaderboard</h2>")[1].split("<h2>Experiments</h2>")[0]
    metric = summary["task"]["primary_metric"]
    ok = [x for x in experiments if x["status"] == "ok"]
    ranked = sorted(ok, key=lambda x: x["cv"][metric], reverse=summary["task"]["greater_is_better"])
    ranked += [x for x in experiments if x["status"] != "ok"]
    assert [int(i) for i in re.findall(r"<tr(?: class=\"best\")?><td>(\d+)</td>", board)] == [x["id"] for x in ranked]
    assert "delivered" in board


def test_the_page_of_a_run_that_has_not_delivered_shows_the_search_from_out_of_fold_predictions(
    pages: dict[str, Path],
) -> None:
    page = pages["progress"].read_text()
    assert "Not delivered yet" in page and "tandem resume binary" in page
    assert plot_names(page) == PROGRESS_PLOTS
    assert "out-of-fold predictions of experiment #" in page
    assert "<h2>Holdout" not in page and "holdout rows, scored once" not in page
    assert "Permutation feature importance" not in page  # it needs the holdout
    assert "<h2>Leaderboard</h2>" in page and "<th>step</th><th>what</th>" in page  # the incumbent's steps


def test_the_progress_page_takes_at_most_its_share_of_the_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drawn after every experiment, the page was a fifth of a small run's time: it waits 1/share
    times its cost between drawings, and the first waits until the search has worked that long,
    except when the search waits for a person."""
    runs = tmp_path / "runs"
    synthetic_frame(n=200, seed=3).to_csv(tmp_path / "data.csv", index=False)
    context = RunContext(runs_dir=str(runs), max_iters=1, n_jobs=1)
    run_task(tmp_path / "data.csv", "label", run_id="r", folds=3, context=context)
    folder = RunFolder(runs / "r")
    with open_run(folder) as graph:
        state = graph.get_state(run_config(run_thread(folder), context)).values
    clock = [1000.0]
    monkeypatch.setattr(reports.time, "monotonic", lambda: clock[0])
    real = reports.render_progress_html
    monkeypatch.setattr(reports, "render_progress_html", lambda *a, **k: time.sleep(0.05) or real(*a, **k))

    def draw(now: bool = False) -> bool:
        return reports.write_progress_report(folder, context, state["task"], state["ledger"], [], 0, now=now)

    assert folder.path not in reports._DRAWN  # a search of a few seconds drew no page: delivery drew its own
    expected = reports._DRAWN[next(reversed(reports._DRAWN))][1] if reports._DRAWN else reports.FIRST_PAGE_SECONDS
    worked = sum(r["fit_seconds"] for r in state["ledger"])
    assert worked * reports.REPORT_SHARE < expected and not draw()  # still too little work for a first page
    state["ledger"] = [{**r, "fit_seconds": 1.01 * expected / reports.REPORT_SHARE} for r in state["ledger"]]
    assert draw()  # the first page, once the search has worked 1/share times what a page costs
    cost = reports._DRAWN[folder.path][1]
    assert cost >= 0.05
    clock[0] += 0.5 * cost / reports.REPORT_SHARE
    assert not draw()  # too soon: the search goes on without it
    assert draw(now=True)  # the search waits for a person here: the page is drawn
    clock[0] += 1.01 * reports._DRAWN[folder.path][1] / reports.REPORT_SHARE
    assert draw()


# ---------------------------------------------------------------------------------------------
# The pages in a browser
# ---------------------------------------------------------------------------------------------

PROBE = """<script>
window.addEventListener('load', () => {
  const plots = [...document.querySelectorAll('[data-plot]')].map(div => {
    const box = div.querySelector('svg').getBoundingClientRect();
    return {name: div.dataset.plot, x: box.left + scrollX, y: box.top + scrollY, width: box.width,
            height: box.height, shown: div.getClientRects().length > 0};
  });
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({height: document.documentElement.scrollHeight, plots});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "chromium is not installed: the report is checked in headless Chromium; "
            "install it with `apt-get install chromium` (`make test` does)",
            pytrace=False,
        )
    return found


def headless(page: Path, tmp: Path, *flags: str) -> str:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # tests run as root on CI
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp / 'profile'}",
        *flags,
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("run", ["binary", "multiclass", "regression", "progress"])
def test_every_plot_is_on_screen_and_not_blank_in_headless_chromium(
    pages: dict[str, Path], run: str, tmp_path: Path
) -> None:
    text = pages[run].read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", PROBE + "</body>"))
    dom = headless(probed, tmp_path, "--window-size=1200,900", "--virtual-time-budget=10000", "--dump-dom")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.DOTALL)
    assert found, "the page did not load in Chromium"
    probe = json.loads(html.unescape(found.group(1)))
    plots = {p["name"]: p for p in probe["plots"]}
    assert set(plots) == plot_names(text)
    for name, box in plots.items():
        assert box["shown"], f"{name} is in a folded section"
        assert box["width"] > 250 and box["height"] > 150, (name, box)

    shot = tmp_path / "page.png"
    height = min(int(probe["height"]), 16000)
    headless(pages[run], tmp_path, f"--window-size=1200,{height}", f"--screenshot={shot}")
    pixels = matplotlib.image.imread(str(shot))[:, :, :3]
    assert pixels.shape[0] == height
    for name, box in plots.items():
        top, left = int(box["y"]), int(box["x"])
        area = pixels[top : top + int(box["height"]), left : left + int(box["width"])]
        inked = (area.min(axis=2) < 0.85).mean()  # share of pixels that are not white or near it
        coloured = (area.max(axis=2) - area.min(axis=2) > 0.25).mean()  # blue, orange, green marks
        assert inked > 0.01, (name, inked)
        if name not in AGENT_PLOTS:  # the agents' lines are mostly black; the model's plots are in colour
            assert coloured > 0.0005, (name, coloured)


# ---------------------------------------------------------------------------------------------
# The plot data, against scikit-learn
# ---------------------------------------------------------------------------------------------


def test_classifier_plots_match_scikit_learn_for_binary_and_multiclass() -> None:
    rng = np.random.default_rng(0)
    y = rng.choice(["a", "b"], size=400)
    p_b = np.clip((y == "b") * 0.4 + rng.uniform(0, 0.6, size=400), 0, 1)
    proba = np.column_stack([1 - p_b, p_b])
    y_pred = np.where(p_b > 0.5, "b", "a")
    plots = classifier_plots(y, y_pred, proba, ("a", "b"), "b", "model")
    assert plots["classes"] == ["a", "b"]
    assert plots["confusion"] == confusion_matrix(y, y_pred, labels=["a", "b"]).tolist()
    (roc,), (pr,), (cal,) = plots["roc"], plots["pr"], plots["calibration"]
    assert roc["label"] == "b" and roc["area"] == pytest.approx(roc_auc_score(y == "b", p_b))
    assert pr["area"] == pytest.approx(average_precision_score(y == "b", p_b))
    assert pr["prevalence"] == pytest.approx((y == "b").mean(), abs=1e-6)
    observed, predicted = calibration_curve(y == "b", p_b, n_bins=10, strategy="uniform")
    assert cal["observed"] == pytest.approx(observed, abs=1e-6) and cal["predicted"] == pytest.approx(
        predicted, abs=1e-6
    )
    assert sum(cal["count"]) == 400

    # many classes: curves for the most frequent, the rest merged into one row and column
    labels = np.array([f"c{i}" for i in range(14)])
    y = labels[np.minimum(rng.geometric(0.25, size=2000) - 1, 13)]
    classes = tuple(labels)
    proba = rng.dirichlet(np.ones(14), size=2000)
    plots = classifier_plots(y, y, proba, classes, None, "highest probability")
    assert plots["classes"][-1] == "(other)" and len(plots["classes"]) == model_insight.MAX_CLASSES + 1
    assert np.trace(np.array(plots["confusion"])) == 2000  # perfect labels stay on the diagonal
    assert len(plots["roc"]) == model_insight.MAX_CLASSES
    assert {c["label"] for c in plots["roc"]} == set(pd.Series(y).value_counts().index[:10])


def test_regression_plots_keep_every_row_or_a_seeded_sample() -> None:
    few = regression_plots([1.0, 2.0, 3.0], [1.5, 2.0, 2.5], seed=0)
    assert few == {"kind": "regression", "actual": [1.0, 2.0, 3.0], "predicted": [1.5, 2.0, 2.5], "shown": 3}
    many = np.arange(5000, dtype=float)
    sample = regression_plots(many, many * 2, seed=0)
    assert sample["shown"] == model_insight.MAX_POINTS == len(sample["actual"])
    assert sample["predicted"] == [2 * a for a in sample["actual"]]  # pairs stay pairs
    assert sample == regression_plots(many, many * 2, seed=0)


def test_out_of_fold_plots_come_from_the_cached_predictions(tmp_path: Path) -> None:
    frame = synthetic_frame(n=240, seed=4)
    X, y = frame.drop(columns=["label"]), frame["label"]
    spec = PipelineSpec(columns=Columns(numeric=("x 1", "x2 (cm)")), model=ModelSpec(family="logistic"))
    problem = Problem("binary", ("f1_macro",), "f1_macro", classes=("no", "yes"), positive_class="yes")
    folds = np.arange(len(y)) % 4
    evaluate_spec(spec, X, y, folds, problem, cache_dir=tmp_path, n_jobs=1)
    insight = oof_insight(tmp_path, spec_hash(spec), y, problem, experiment_id=3)
    assert insight is not None and insight["source"] == "out-of-fold" and insight["rows"] == 240
    oof = np.load(tmp_path / f"{spec_hash(spec)}.oof.npy")[0]
    labels = np.array(["no", "yes"])[oof.argmax(axis=1)]
    assert insight["plots"]["confusion"] == confusion_matrix(y, labels, labels=["no", "yes"]).tolist()
    assert oof_insight(tmp_path, "0" * 16, y, problem, experiment_id=3) is None  # nothing cached


def test_permutation_importance_finds_the_signal_and_stays_within_its_time() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"signal": rng.normal(size=3000), "noise": rng.normal(size=3000), "unused": rng.normal(size=3000)})
    y = pd.Series(np.where(X["signal"] + 0.3 * rng.normal(size=3000) > 0, "yes", "no"))
    model = LogisticRegression().fit(X, y)
    problem = Problem("binary", ("accuracy",), "accuracy", classes=("no", "yes"), positive_class="yes")
    found = permutation_importances(model, X, y, problem, ["signal", "noise"], seconds=60.0)
    assert [f["column"] for f in found["features"]] == ["signal", "noise"]  # only what the model reads
    assert found["features"][0]["mean"] > 0.2 > abs(found["features"][1]["mean"])
    assert found["rows"] == model_insight.IMPORTANCE_ROWS and found["repeats"] == model_insight.IMPORTANCE_REPEATS
    quick = permutation_importances(model, X, y, problem, ["signal", "noise"], seconds=1e-6)
    assert quick["repeats"] == 1 and quick["rows"] == 200  # no time: one repeat on the fewest rows


def test_permutation_importance_of_too_many_columns_for_its_time_measures_a_sample() -> None:
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(300, 400)), columns=[f"g{i}" for i in range(400)])
    y = pd.Series(np.where(X["g0"] > 0, "yes", "no"))
    model = LogisticRegression(max_iter=50).fit(X, y)
    problem = Problem("binary", ("accuracy",), "accuracy", classes=("no", "yes"), positive_class="yes")
    quick = permutation_importances(model, X, y, problem, list(X.columns), seconds=1e-6)
    assert (quick["rows"], quick["repeats"], quick["columns_read"]) == (200, 1, 400)
    assert 1 <= len(quick["features"]) < 400
    assert f"{len(quick['features'])} of the 400 columns" in _sampled_columns(quick)
    full = permutation_importances(model, X, y, problem, list(X.columns), seconds=600.0)
    assert len(full["features"]) == full["columns_read"] == 400 and full["features"][0]["column"] == "g0"
    assert _sampled_columns(full) == ""


def test_a_run_past_its_time_budget_spends_the_least_on_importance(tmp_path: Path) -> None:
    """Permutation importance is optional work after the search: a spent budget gets its fewest rows."""
    synthetic_frame(n=1500, seed=5).to_csv(tmp_path / "data.csv", index=False)
    importance = {}
    for run_id, budget in (("unbounded", None), ("spent", 1e-3)):
        context = RunContext(runs_dir=str(tmp_path / "runs"), max_iters=1, n_jobs=1, time_budget=budget)
        outcome = run_task(tmp_path / "data.csv", "label", run_id=run_id, folds=3, context=context)
        assert outcome["status"] == "delivered"
        found = json.loads((tmp_path / "runs" / run_id / "model_insight.json").read_text())["importance"]
        importance[run_id] = (found["rows"], found["repeats"])
    assert importance == {"unbounded": (300, model_insight.IMPORTANCE_REPEATS), "spent": (200, 1)}


@pytest.mark.parametrize("metric", ["f1_macro", "log_loss"])
def test_stacked_permutation_importance_equals_scikit_learns(metric: str) -> None:
    """Predicting the shuffled copies together must not change a digit: same draws, same numbers."""
    frame = synthetic_frame(n=300, seed=7)
    X, y = frame.drop(columns=["label"]), frame["label"]
    spec = PipelineSpec(
        columns=Columns(numeric=("x 1", "x2 (cm)"), categorical=("colour",)), model=ModelSpec(family="lightgbm")
    )
    model = build_pipeline(spec, "binary", primary_metric=metric).fit(X, y)
    problem = Problem("binary", (metric,), metric, classes=("no", "yes"), positive_class="yes", seed=3)
    columns = ["x 1", "x2 (cm)", "colour"]
    ours = permutation_importances(model, X, y, problem, columns, seconds=600.0)
    scorer = METRICS[metric]
    sign = 1.0 if scorer.greater_is_better else -1.0

    def score(estimator: Any, X_part: pd.DataFrame, y_part: pd.Series) -> float:
        full = X.copy()
        for column in X_part.columns:
            full[column] = X_part[column].array
        return sign * scorer(np.asarray(y_part), predict(estimator, full, "binary", ("no", "yes"), "yes"))

    theirs = permutation_importance(model, X[columns], y, scoring=score, n_repeats=ours["repeats"], random_state=3)
    assert ours["repeats"] == model_insight.IMPORTANCE_REPEATS
    by_column = {f["column"]: (f["mean"], f["std"]) for f in ours["features"]}
    for i, column in enumerate(columns):
        mean, std = round(float(theirs.importances_mean[i]), 6), round(float(theirs.importances_std[i]), 6)
        assert by_column[column] == (mean, std)
    assert any(m != 0 for m, _ in by_column.values())  # the comparison covers real drops, not only zeros


def test_a_spec_is_described_by_its_steps_and_its_key_parameters() -> None:
    spec = PipelineSpec(
        columns=Columns(numeric=("age",), categorical=("sex",)),
        model=ModelSpec(family="lightgbm", params={"n_estimators": 300}),
        class_weight="balanced",
    ).model_dump(mode="json")
    steps = {s["step"]: s["what"] for s in describe_spec(spec)}
    assert steps["columns"] == "numeric: age; categorical: sex"
    assert steps["model"].startswith("lightgbm with n_estimators=300")
    assert steps["class weight"] == "balanced"
    assert key_params(spec) == ("lightgbm", "n_estimators=300; class_weight=balanced")
    ensemble = {
        "kind": "ensemble",
        "method": "voting",
        "members": [spec, spec],
        "weights": [1.0, 2.0],
        "member_ids": [1, 2],
    }
    assert key_params(ensemble) == ("voting (lightgbm, lightgbm)", "of #1, #2; weights 1, 2")
    assert [s["step"] for s in describe_spec(ensemble)] == ["voting ensemble", "member 1", "member 2"]
    assert key_params({"model": {"family": "ridge", "params": {}}}) == ("ridge", "default parameters")
    scaled = {"model": {"family": "ridge"}, "preprocessing": {"scaler": "robust", "numeric_imputer": "median"}}
    assert key_params(scaled) == ("ridge", "scaler=robust")  # preprocessing that differs from the defaults


def test_the_markdown_report_cuts_a_long_proposal_between_words() -> None:
    proposal = "set_model(family=lightgbm, params={'n_estimators': 300, 'learning_rate': 0.05, 'num_leaves': 15})"
    short = shorten(proposal, 60)
    assert len(short) <= 60 and short.endswith(" …")
    kept = short.removesuffix(" …").split()
    assert kept == proposal.split()[: len(kept)]  # whole words only
    assert shorten("set_class_weight(class_weight=balanced)") == "set_class_weight(class_weight=balanced)"
