"""The package's shape: no import circle among its modules, no benchmark inside it, no module
over MAX_LINES, short module docstrings, and the boundaries the architecture page promises
(text_code without torch, prediction without torch or Lightning)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PACKAGE = SRC / "dlrepro"
MAX_LINES = 400
MAX_DOCSTRING_LINES = 15


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """Project modules `path` imports anywhere in it (lazy imports inside functions included),
    resolved to module names: `from dlrepro.x import y` is dlrepro.x.y when y is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != "dlrepro":
                found.add(name)
    return found


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    known = set(files)
    graph = {}
    for name, path in files.items():
        # a package's own __init__ is not an edge: importing dlrepro.a.b runs dlrepro.a first
        parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        graph[name] = imports(path, known) - {name} - parents
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as err:
        return list(err.args[1])
    return None


def test_no_import_circle_among_the_package_modules():
    assert cycle(import_graph(modules())) is None


def test_the_circle_check_finds_a_circle(tmp_path):
    """The checker itself: two modules that import each other, one of them lazily."""
    (tmp_path / "a.py").write_text("from dlrepro.b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    import dlrepro.a\n")
    files = {"dlrepro.a": tmp_path / "a.py", "dlrepro.b": tmp_path / "b.py"}
    assert set(cycle(import_graph(files))) == {"dlrepro.a", "dlrepro.b"}
    (tmp_path / "b.py").write_text("def f():\n    pass\n")
    assert cycle(import_graph(files)) is None


def test_no_benchmark_inside_the_package():
    assert not [p for p in PACKAGE.rglob("bench*")], "benchmarks live in benchmarks/"


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_is_short_and_says_what_it_is_in_a_few_lines(name):
    path = modules()[name]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines (at most {MAX_LINES}): split it by job"
    doc = ast.get_docstring(ast.parse(path.read_text()), clean=False) or ""
    assert doc or path.name == "__init__.py", f"{name}: no module docstring"
    assert len(doc.splitlines()) <= MAX_DOCSTRING_LINES, (
        f"{name}: a {len(doc.splitlines())}-line docstring; what and why in a few lines, "
        "details in docs/"
    )


def closure(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen


def third_party(names: set[str], files: dict[str, Path]) -> set[str]:
    """Top-level third-party packages imported (anywhere) by the modules `names`."""
    found = set()
    for name in names:
        for node in ast.walk(ast.parse(files[name].read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("start", "forbidden"),
    [
        *[
            (f"dlrepro.chapters.{c}.text_code", {"torch", "pytorch_lightning"})
            for c in (
                "perceptron",
                "mlp_xor",
                "backprop",
                "activations",
                "losses",
                "optimizers",
            )
        ],
        ("dlrepro.serving.contract", {"torch", "pytorch_lightning", "onnxruntime"}),
        ("dlrepro.serving.runtime", {"torch", "pytorch_lightning"}),
    ],
)
def test_boundaries_the_architecture_promises(start, forbidden):
    """The text's code is numpy only; the serving contract and runtime never import torch (the
    predict path's lazy checkpoint fallback lives in serving.predict, on request only)."""
    files = modules()
    if start not in files:
        pytest.skip(f"{start} does not exist")
    reached = closure(start, import_graph(files))
    assert not third_party(reached, files) & forbidden, f"{start} reaches {forbidden}"


def test_export_and_predict_do_not_import_each_other():
    graph = import_graph(modules())
    assert "dlrepro.serving.predict" not in closure("dlrepro.serving.export", graph)
    assert "dlrepro.serving.export" not in closure("dlrepro.serving.predict", graph)
