"""The layers of docs/architecture.md, checked on the source with `ast`.

Every module of the five source folders gets its name under `tandem` from pyproject's
[tool.setuptools.package-dir] (read here, not copied), is placed in one layer, and each of its
imports of a project module must point at a layer the table below allows. The test also fails on
an import cycle, on a project import inside a function without a comment saying why, on a source
file that no shipped package holds, and on a leftover import of the old top-level packages.
"""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
PACKAGES: list[str] = PYPROJECT["tool"]["setuptools"]["packages"]

# The layers, lowest first. A layer may import itself and the layers named in its last column,
# never one above it; `layer_of` places each module by the second column.
#
#   layer         its modules                                   may import
RULES: list[tuple[str, tuple[str, ...], set[str]]] = [
    ("tools",      ("tandem.tools.*",),                         set()),
    ("graph",      ("tandem.graph.*",),                         {"tools"}),
    ("nodes",      ("tandem.nodes.*",),                         {"tools", "graph"}),
    ("entry",      ("tandem", "tandem.api", "tandem.live", "tandem.studio",
                    "tandem.cli_options", "tandem.cli_history", "tandem.envs", "tandem.run_listing", "tandem.salvage",
                    "tandem.leaderboard", "tandem.estimators", "tandem.tracking", "tandem.run_cluster",
                    "tandem.stopping"),
                                                                {"tools", "graph", "nodes"}),
    ("benchmarks", ("tandem.benchmarks.*",),                    {"tools", "graph", "nodes", "entry"}),
    ("cli",        ("tandem.cli", "tandem.cli_learning"),       {"tools", "graph", "nodes", "entry", "benchmarks"}),
]  # fmt: skip
# The one exception: the graph's assembly wires the node functions into the graph.
EXCEPTIONS: dict[str, set[str]] = {"tandem.graph.assembly": {"nodes"}}
MAY_IMPORT = {layer: imports | {layer} for layer, _, imports in RULES}

# Where an old top-level name could still be imported from by mistake.
SCANNED = ("app", "graph", "nodes", "tools", "benchmarks", "scripts", "tests", "notebooks")
OLD_TOP_LEVEL = {"graph", "nodes", "tools", "benchmarks", "app"}


def layer_of(module: str) -> str:
    """The layer of a project module; an unplaced module is an error, so a new one must be placed."""
    for layer, patterns, _ in RULES:
        for pattern in patterns:
            if module == pattern or (pattern.endswith(".*") and f"{module}.".startswith(pattern[:-1])):
                return layer
    raise AssertionError(f"{module} is in no layer: add it to RULES in {__file__}")


def allowed(importer: str, imported: str) -> bool:
    return layer_of(imported) in MAY_IMPORT[layer_of(importer)] | EXCEPTIONS.get(importer, set())


# ---------------------------------------------------------------------------- reading the source


def module_files() -> dict[str, Path]:
    """Module name -> file, for every .py file under a package-dir folder (longest folder wins)."""
    folders = sorted(PACKAGE_DIRS.items(), key=lambda item: -len(Path(item[1]).parts))
    modules: dict[str, Path] = {}
    for top in {Path(folder).parts[0] for folder in PACKAGE_DIRS.values()}:
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT)
            for package, folder in folders:
                if relative.parent == Path(folder) or Path(folder) in relative.parents:
                    rest = relative.relative_to(folder).with_suffix("").parts
                    name = ".".join((package, *rest))
                    modules[name.removesuffix(".__init__")] = path
                    break
    return modules


MODULES = module_files()


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the project module it binds (a submodule when `from pkg import submodule`)
    line: int
    end_line: int
    in_function: bool
    type_checking: bool


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def walk_imports(
    tree: ast.AST, in_function: bool = False, type_checking: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import statement, with whether it sits in a function and under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function, type_checking
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from walk_imports(node, True, type_checking)
        elif isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.body:
                yield from walk_imports(ast.Module(body=[child], type_ignores=[]), in_function, True)
            for child in node.orelse:
                yield from walk_imports(ast.Module(body=[child], type_ignores=[]), in_function, type_checking)
        else:
            yield from walk_imports(node, in_function, type_checking)


def project_imports(module: str, source: str, known: set[str]) -> list[Import]:
    """The project modules `module` imports, resolved against the known module names."""
    is_package = MODULES.get(module, Path()).name == "__init__.py"
    found: list[Import] = []
    for node, in_function, type_checking in walk_imports(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                targets.append(candidate if candidate in known else base)
        for target in targets:
            if target == "tandem" or target.startswith("tandem."):
                found.append(
                    Import(module, target, node.lineno, node.end_lineno or node.lineno, in_function, type_checking)
                )
    return found


def all_imports() -> list[Import]:
    known = set(MODULES)
    return [i for name, path in MODULES.items() for i in project_imports(name, path.read_text(), known)]


def layer_violations(imports: list[Import]) -> list[str]:
    return [
        f"{i.importer}:{i.line} imports {i.target} ({layer_of(i.target)}): layer {layer_of(i.importer)!r} "
        f"may import only {sorted(MAY_IMPORT[layer_of(i.importer)] | EXCEPTIONS.get(i.importer, set()))}"
        for i in imports
        if not allowed(i.importer, i.target)
    ]


def cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself).

    An edge is an import that runs: at module level or inside a function. An import under
    `if TYPE_CHECKING:` never runs, so it cannot leave a module half-initialised; it is how a type
    annotation may name a class of a module that imports this one without a runtime cycle. Such
    imports still obey the layer table, so they cannot be used to point upwards.
    The implicit import of parent packages (importing `tandem.tools.metrics` first runs
    `tandem/__init__.py`) is not an edge: Python finishes the parent before any child, so it is no
    cycle, and counting it would make every module depend on the whole public API.
    """
    edges: dict[str, set[str]] = {}
    for i in imports:
        if not i.type_checking:
            edges.setdefault(i.importer, set()).add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


PRAGMA = re.compile(r"(noqa|type:\s*ignore|pragma|fmt:)\b")


def reasons_by_line(source: str) -> dict[int, str]:
    """The comments of each line that say something, i.e. beyond a linter or formatter pragma."""
    reasons: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            parts = [part.strip() for part in token.string.split("#") if part.strip()]
            text = " ".join(part for part in parts if not PRAGMA.match(part))
            if text:
                reasons[token.start[0]] = text
    return reasons


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def unexplained_function_imports(imports: list[Import], files: dict[str, Path] = MODULES) -> list[str]:
    """Project imports inside functions whose lines carry no comment giving a reason."""
    reasons = {name: reasons_by_line(path.read_text()) for name, path in files.items()}
    return [
        f"{shown(files[i.importer])}:{i.line} imports {i.target} inside a function"
        for i in imports
        if i.in_function and not any(n in reasons[i.importer] for n in range(i.line, i.end_line + 1))
    ]


def python_sources(folder: Path) -> Iterator[tuple[Path, str]]:
    """(file, Python source) for the .py files and the notebooks' code cells (magics left out)."""
    for path in sorted(folder.rglob("*.py")):
        yield path, path.read_text()
    for path in sorted(folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                text = "".join(cell["source"])
                lines = [line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))]
                yield path, "\n".join(lines)


# ---------------------------------------------------------------------------- the checks


def test_every_module_is_in_a_layer_and_a_shipped_package() -> None:
    assert "tandem.tools.metrics" in MODULES and "tandem.cli" in MODULES and "tandem" in MODULES
    assert len(MODULES) > 40, sorted(MODULES)
    unshipped = sorted(
        f"{path.relative_to(ROOT)} ({name})"
        for name, path in MODULES.items()
        if name.rsplit(".", 1)[0] not in PACKAGES and name not in PACKAGES
    )
    assert not unshipped, f"no package in pyproject's [tool.setuptools] packages holds {unshipped}"
    for package in PACKAGES:  # every shipped package is a folder with an __init__.py
        assert (ROOT / PACKAGE_DIRS[package] / "__init__.py").is_file(), package
    stray = sorted(path.name for path in ROOT.glob("*.py"))
    assert not stray, f"project code lives in the folders of [tool.setuptools.package-dir], not in {stray}"
    for name in MODULES:
        layer_of(name)  # raises for an unplaced module


def test_imports_follow_the_layers() -> None:
    imports = all_imports()
    assert len(imports) > 100  # the walk found the project's imports at all
    bad = layer_violations(imports)
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    found = cycles(all_imports())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_inside_functions_say_why() -> None:
    bad = unexplained_function_imports(all_imports())
    assert not bad, "a project import inside a function needs a trailing comment giving the reason:\n" + "\n".join(bad)


def test_no_leftover_top_level_imports() -> None:
    bad = []
    for top in SCANNED:
        for path, source in python_sources(ROOT / top):
            for node in ast.walk(ast.parse(source)):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                bad += [f"{path.relative_to(ROOT)}: import {n}" for n in names if n.split(".")[0] in OLD_TOP_LEVEL]
    assert not bad, "import from tandem.* instead:\n" + "\n".join(bad)


# ---------------------------------------------------------------------------- the checks can fail


def synthetic(sources: dict[str, str]) -> list[Import]:
    known = set(MODULES) | set(sources)
    return [i for name, text in sources.items() for i in project_imports(name, text, known)]


@pytest.mark.parametrize(
    ("importer", "statement"),
    [
        ("tandem.tools.metrics", "from tandem.graph.state import TandemState"),
        ("tandem.tools.metrics", "import tandem.nodes.reward"),
        ("tandem.graph.routing", "from tandem.nodes import reward"),
        ("tandem.nodes.reward", "from tandem.api import run_task"),
        ("tandem.nodes.reward", "from tandem import run_task"),
        ("tandem.api", "from tandem.benchmarks.tasks import default_suite"),
        ("tandem.live", "from tandem.cli import main"),
        ("tandem.benchmarks.bench", "from tandem.cli import main"),
        ("tandem.tools.metrics", "from ..graph import state"),
    ],
)
def test_an_upward_import_is_caught(importer: str, statement: str) -> None:
    code = f"from __future__ import annotations\n\n\ndef f() -> None:\n    {statement}  # a reason\n"
    assert layer_violations(synthetic({importer: code}))
    assert layer_violations(synthetic({importer: statement}))


@pytest.mark.parametrize(
    ("importer", "statement"),
    [
        ("tandem.graph.assembly", "from tandem.nodes.reward import reward_node"),
        ("tandem.benchmarks.players", "from tandem import run_task"),
        ("tandem.cli", "from tandem.benchmarks.cli import add_bench_commands"),
        ("tandem.nodes.setup", "from tandem.graph.state import TandemState"),
    ],
)
def test_a_downward_import_is_allowed(importer: str, statement: str) -> None:
    assert not layer_violations(synthetic({importer: statement}))


def test_a_cycle_is_caught_but_not_through_type_checking() -> None:
    a, b = "tandem.tools.one", "tandem.tools.two"
    assert cycles(synthetic({a: "import tandem.tools.two", b: "def f():\n    from tandem.tools import one\n"})) == [
        [a, b]
    ]
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tandem.tools import one\n"
    assert cycles(synthetic({a: "import tandem.tools.two", b: guarded})) == []


def test_an_unexplained_import_in_a_function_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "metrics.py"
    path.write_text(
        "def f():\n    from tandem.tools import spec  # noqa: F401\n"
        "def g():\n    from tandem.tools import data  # noqa: F401  # pulls in pandas only when called\n"
        "def h():\n    from tandem.tools import (  # the plotting stack, loaded when drawing\n        report,\n    )\n"
    )
    imports = project_imports("tandem.tools.metrics", path.read_text(), set(MODULES))
    assert [i.target for i in imports] == ["tandem.tools.spec", "tandem.tools.data", "tandem.tools.report"]
    assert unexplained_function_imports(imports, {"tandem.tools.metrics": path}) == [
        f"{path}:2 imports tandem.tools.spec inside a function"
    ]
