"""The quickstart notebook runs top to bottom in a fresh kernel, so it can never rot.

The kernel is this interpreter (the project's venv): a private `python3` kernel spec pointing at
`sys.executable` is put first on JUPYTER_PATH, so a `python3` spec installed elsewhere on the
machine cannot pick another Python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


@pytest.fixture
def kernel_of_this_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "tandem venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


def test_quickstart_notebook_runs_top_to_bottom(
    kernel_of_this_venv: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    monkeypatch.setenv("TANDEM_RUNS_DIR", str(runs))
    monkeypatch.setenv("QUICKSTART_MAX_ITERS", "2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in notebook.cells if c.cell_type == "code"), "commit it without outputs"
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name=kernel_of_this_venv, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell (the last cell asserts what it showed)
    text = "\n".join(
        o.get("text", "")
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream"
    )
    assert "stopped after 1 experiment(s)" in text
    assert "status: delivered" in text
    assert "forking from step" in text and "feedback the Scientist saw" in text
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the graph and the progress plot
    assert (runs / "quickstart" / "summary.json").exists() and (runs / "quickstart-fork" / "summary.json").exists()
    assert not (ROOT / "notebooks" / "runs").exists()


def test_training_notebook_trains_a_bandit_in_the_gymnasium_env_and_plots_its_rewards(
    kernel_of_this_venv: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ROOT / "notebooks" / "train_scientist.ipynb"
    monkeypatch.setenv("TRAIN_EPISODES", "2")
    monkeypatch.setenv("TRAIN_STEPS", "2")
    notebook = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in notebook.cells if c.cell_type == "code"), "commit it without outputs"
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name=kernel_of_this_venv, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Discrete(18)" in text and "trained: 2 episodes" in text
    assert text.count("episode 0 ") == 2 and text.count("episode 1 ") == 2  # two experiments per episode
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1  # the reward curve
    assert not (ROOT / "notebooks" / "runs").exists()
