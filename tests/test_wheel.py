"""The wheel a user installs: one top-level name, and the commands work from it, outside the checkout.

The test builds the wheel from a copy of the source folders (so the checkout's build/ and
egg-info are not touched), installs it with pip into a fresh venv, and runs Python and the
`tandem` command there from an empty folder. Everything is offline: the build uses this venv's
setuptools (`--no-build-isolation`, which would otherwise download it), and the fresh venv gets its
dependencies from this venv's site-packages through a .pth line. A directory named in a .pth line
is only appended to sys.path, its own .pth files are not read, so this venv's editable-install
hook (`__editable__.tandem_ml-*.pth`, which points at the checkout) stays out; the test checks
that `tandem` is imported from the fresh venv.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@dataclass(frozen=True)
class Installed:
    venv: Path
    site_packages: Path
    new_entries: set[str]  # what the wheel's install added to the fresh site-packages
    workdir: Path  # an empty folder outside the checkout


def run(*args: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env = {k: v for k, v in env.items() if not k.startswith("TANDEM_")}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.is_relative_to(ROOT)
    source = base / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / PYPROJECT["project"]["readme"], source)
    for folder in {Path(f).parts[0] for f in PYPROJECT["tool"]["setuptools"]["package-dir"].values()}:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = base / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
        "-w", dist, source, cwd=base)  # fmt: skip
    (wheel,) = dist.glob("tandem_ml-*.whl")

    venv = base / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    python = venv / "bin" / "python"
    site_packages = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=base).stdout.strip()
    )
    before = {p.name for p in site_packages.iterdir()}
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=base)
    new_entries = {p.name for p in site_packages.iterdir()} - before
    # the dependencies, offline: this venv's site-packages, appended after the fresh one
    (site_packages / "dependencies-from-the-dev-venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    workdir = base / "empty"
    workdir.mkdir()
    return Installed(venv, site_packages, new_entries, workdir)


def test_the_wheel_adds_one_top_level_name(installed: Installed) -> None:
    (dist_info,) = [name for name in installed.new_entries if name.endswith(".dist-info")]
    assert installed.new_entries == {"tandem", dist_info}
    assert dist_info.startswith("tandem_ml-")
    record = (installed.site_packages / dist_info / "RECORD").read_text().splitlines()
    installed_files = [line.split(",")[0] for line in record]
    tops = {path.split("/")[0] for path in installed_files if not path.startswith("..")}
    assert tops == {"tandem", dist_info}
    assert (installed.site_packages / dist_info / "top_level.txt").read_text().split() == ["tandem"]
    # the scripts go to bin/, and the one script is `tandem`
    assert [Path(p).name for p in installed_files if p.startswith("..")] == ["tandem"]
    # the suite and its data ship as package data
    assert "tandem/benchmarks/suite.toml" in installed_files
    assert "tandem/benchmarks/data/penguins.csv.gz" in installed_files
    assert "tandem/py.typed" in installed_files
    assert "tandem/tools/policies/scientist.json" in installed_files  # --policy learned


def test_import_from_an_empty_folder(installed: Installed) -> None:
    out = run(
        installed.venv / "bin" / "python",
        "-c",
        "import tandem; print(tandem.run_task); print(tandem.__file__)",
        cwd=installed.workdir,
    ).stdout.splitlines()
    assert out[0].startswith("<function run_task at ")
    # from the wheel, not from the checkout through the editable install
    assert Path(out[1]) == installed.site_packages / "tandem" / "__init__.py"


def test_bench_list_from_the_wheel(installed: Installed) -> None:
    out = run(installed.venv / "bin" / "tandem", "bench", "--list", cwd=installed.workdir).stdout
    names = [line.split()[0] for line in out.splitlines() if "budget" in line]
    assert {"titanic", "house_prices", "adult_income", "penguins"} <= set(names)
    assert {"tandem", "linear", "lightgbm"} <= {line.split()[0] for line in out.splitlines() if line.strip()}


def test_one_task_bench_from_the_wheel(installed: Installed) -> None:
    results = installed.workdir / "results"
    out = run(
        installed.venv / "bin" / "tandem",
        "bench",
        "--tasks", "penguins",
        "--players", "tandem,linear,lightgbm",
        "--budget", "5",
        "--results-dir", results,
        cwd=installed.workdir,
        timeout=90,
    ).stdout  # fmt: skip
    scores = dict(re.findall(r"^\[penguins seed 0\] (\w+)\s+f1_macro (\d\.\d+)", out, re.MULTILINE))
    assert set(scores) == {"tandem", "linear", "lightgbm"}, out
    # penguins' species are easy: a player that trained anything scores well above chance (1/3)
    assert all(float(score) > 0.9 for score in scores.values()), scores
    (bench_id,) = re.findall(r"^bench (bench-\S+): report", out, re.MULTILINE)
    assert (results / "results.sqlite").is_file()
    assert "| penguins | 0 | f1_macro" in (results / bench_id / "report.md").read_text()
