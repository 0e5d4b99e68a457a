"""dvc.yaml's deps are proven, not kept: for every stage, the project modules that its command
imports (statically, transitively, lazy imports inside functions included, and the module a stage
loads by name from its argument) are exactly the code its `deps` list, and a chapter's data deps
are exactly the files it reads.

A module missing from `deps` leaves results stale while `dvc status` says "up to date"; a module
listed but never imported reruns a stage for nothing. Both fail here, naming the stage and the
module.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
CONFIG_CHECK = "reports/config-check.json"  # check-config's record: the graph's first stage

# Plumbing that cannot change what a stage writes: the only modules a stage may import without
# listing them (and whose own imports are not followed). Anything that computes, fills a default
# or decides where an input is read from belongs in `deps`.
PLUMBING = {
    # turns a DlreproError into one line on stderr and an exit status
    "dlrepro/cli.py",
    # exception types only
    "dlrepro/errors.py",
    # MLflow: where a run is recorded (the tracking store), never what a stage writes
    "dlrepro/tracking/__init__.py",
    "dlrepro/tracking/datasets.py",
    "dlrepro/tracking/lineage.py",
    "dlrepro/tracking/logger.py",
    "dlrepro/tracking/runs.py",
    "dlrepro/tracking/store.py",
}


def stages() -> dict[str, dict]:
    """dvc.yaml's stages, a `foreach` over params.yaml's `recipes` expanded as DVC expands it
    (train@text, train@tuned, ...)."""
    recipes = yaml.safe_load((REPO / "params.yaml").read_text())["recipes"]
    expanded = {}
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        if "foreach" not in stage:
            expanded[name] = stage
            continue
        assert stage["foreach"] == "${recipes}", f"stage {name}: foreach over {stage['foreach']}"
        for key in recipes:
            text = yaml.safe_dump(stage["do"]).replace("${key}", key)
            expanded[f"{name}@{key}"] = yaml.safe_load(text)
    return expanded


def module_file(name: str) -> Path | None:
    """The file of project module `name` (dlrepro.x.y), or None when it is not one."""
    if name != "dlrepro" and not name.startswith("dlrepro."):
        return None
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_trivial(path: Path) -> bool:
    """A package marker: only a docstring and dunder constants (`__version__`), nothing that
    could change a result when imported."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign) and all(
            isinstance(t, ast.Name) and t.id.startswith("__") for t in node.targets
        ):
            continue
        return False
    return True


def _literal(node: ast.expr, argv: list[str]) -> str | None:
    """`"a.b"` or `f"a.{x}.b"` with each placeholder filled by the stage's argument."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and argv:
        return "".join(
            part.value if isinstance(part, ast.Constant) else argv[0] for part in node.values
        )
    return None


def imported_names(path: Path, argv: list[str]) -> set[str]:
    """Every module `path` imports anywhere in its body, by absolute name."""
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    names: set[str] = set()
    tree = ast.parse(path.read_text())
    # `if TYPE_CHECKING:` blocks never run: their imports are for the type checker only
    typing_only = {
        id(inner)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for stmt in block.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # submodules, if any
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
        ):
            loaded = _literal(node.args[0], argv)
            assert loaded is not None, f"{path}: import_module with a name this test cannot read"
            names.add(loaded)
    return names


def closure(entry: str, argv: list[str]) -> set[Path]:
    """The project files `python -m entry argv...` can import, parents' __init__ included."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
            path = module_file(".".join(parts[:i]))
            if path is None or path in seen:
                continue
            seen.add(path)
            if path.relative_to(SRC).as_posix() not in PLUMBING:
                todo += imported_names(path, argv)
    return {p for p in seen if p.relative_to(SRC).as_posix() not in PLUMBING and not is_trivial(p)}


def command(stage: dict) -> tuple[str, list[str]]:
    words = shlex.split(stage["cmd"])
    assert words[:2] == ["python", "-m"], f"not a `python -m` stage: {stage['cmd']}"
    return words[2], words[3:]


def code_deps(stage: dict) -> list[Path]:
    return [REPO / d for d in stage.get("deps", []) if d.startswith("src/")]


def covered(path: Path, deps: list[Path]) -> bool:
    return any(path == dep or dep in path.parents for dep in deps)


def listed_modules(deps: list[Path]) -> set[Path]:
    files = set()
    for dep in deps:
        found = sorted(dep.rglob("*.py")) if dep.is_dir() else [dep]
        files |= {f for f in found if "__pycache__" not in f.parts and not is_trivial(f)}
    return files


STAGES = stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_cover_exactly_the_modules_the_stage_imports(name):
    stage = STAGES[name]
    entry, argv = command(stage)
    imported = closure(entry, argv)
    deps = code_deps(stage)
    for dep in deps:
        assert dep.exists(), f"stage {name}: dep {dep.relative_to(REPO)} does not exist"
    missing = sorted(p.relative_to(REPO).as_posix() for p in imported if not covered(p, deps))
    assert not missing, f"stage {name} imports {', '.join(missing)}, not in its deps (dvc.yaml)"
    unused = sorted(p.relative_to(REPO).as_posix() for p in listed_modules(deps) - imported)
    assert not unused, f"stage {name} lists {', '.join(unused)} in its deps but never imports it"


@pytest.mark.parametrize("name", sorted(n for n in STAGES if n.startswith("curriculum-")))
def test_a_chapter_depends_on_exactly_the_data_it_reads(name):
    stage = STAGES[name]
    _, argv = command(stage)
    runner = importlib.import_module(f"dlrepro.chapters.{argv[0]}.run")
    data = sorted(
        d for d in stage.get("deps", []) if not d.startswith("src/") and d != CONFIG_CHECK
    )
    assert data == sorted(p.as_posix() for p in runner.INPUTS), f"stage {name}: data deps"


def test_check_config_runs_before_every_other_stage():
    """Every stage reaches check-config's record through its deps, so DVC runs the check first
    and a bad value stops the pipeline before any output is touched."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())

    def resolved(path: str) -> str:  # ${data.path}, ${export.recipe}: as DVC fills them in
        def value(match: re.Match) -> str:
            node = params
            for part in match.group(1).split("."):
                node = node[part]
            return str(node)

        return re.sub(r"\$\{([^}]+)\}", value, path)

    produced = {resolved(o): name for name, stage in STAGES.items() for o in outputs(stage)}
    for name in STAGES:
        if name == "check-config":
            continue
        seen, todo = set(), [name]
        while todo:
            current = todo.pop()
            # A path set by a param (${data.path}) may name a user's folder that no stage
            # makes: only fixed paths count.
            fixed = [d for d in STAGES[current].get("deps", []) if "${" not in d]
            for dep in map(resolved, fixed):
                producer = next(
                    (p for out, p in produced.items() if dep == out or dep.startswith(out + "/")),
                    None,
                )
                if producer is not None and producer not in seen:
                    seen.add(producer)
                    todo.append(producer)
        assert "check-config" in seen, f"stage {name} can run before check-config"


def outputs(stage: dict) -> list[str]:
    found = []
    for kind in ("outs", "metrics", "plots"):
        for item in stage.get(kind, []):
            found.append(next(iter(item)) if isinstance(item, dict) else item)
    return found


def test_the_closure_sees_lazy_and_by_name_imports():
    """The checker itself: a lazy import inside a function, and the chapter that the curriculum
    stage loads with importlib from its argument, are both found."""
    chapter = closure("dlrepro.stages.curriculum", ["perceptron"])
    rel = {p.relative_to(SRC).as_posix() for p in chapter}
    assert "dlrepro/chapters/perceptron/run.py" in rel  # import_module(f"...{chapter}.run")
    assert "dlrepro/chapters/perceptron/twin.py" in rel  # imported inside train_lightning()
    assert "dlrepro/chapters/mlp_xor/run.py" not in rel
    assert not {"dlrepro/tracking/runs.py", "dlrepro/cli.py"} & rel  # plumbing is not followed


def test_an_import_for_the_type_checker_only_is_not_a_dep(tmp_path, monkeypatch):
    """`if TYPE_CHECKING:` imports never run; the same import outside that block counts."""
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    (tmp_path / "dlrepro").mkdir()
    module = tmp_path / "dlrepro" / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "import typing\n"
        "if TYPE_CHECKING:\n    from dlrepro.plant.classifier import LeafClassifier\n"
        "if typing.TYPE_CHECKING:\n    import dlrepro.plant.train\n"
        "else:\n    import dlrepro.plant.networks\n"
    )
    found = imported_names(module, [])
    assert "dlrepro.plant.networks" in found
    assert not {"dlrepro.plant.classifier", "dlrepro.plant.train"} & found
    module.write_text("from dlrepro.plant.classifier import LeafClassifier\n")
    assert "dlrepro.plant.classifier" in imported_names(module, [])


def test_a_missing_or_extra_dep_is_named(monkeypatch):
    """Dropping an imported module from a stage, or adding one it never imports, is caught."""
    stage = dict(STAGES["curriculum-mlp_xor"])
    deps = list(stage["deps"])
    stage["deps"] = [d for d in deps if d != "src/dlrepro/chapters/_common/result.py"]
    monkeypatch.setitem(STAGES, "curriculum-mlp_xor", stage)
    with pytest.raises(AssertionError, match=r"imports src/dlrepro/chapters/_common/result\.py"):
        test_deps_cover_exactly_the_modules_the_stage_imports("curriculum-mlp_xor")
    stage["deps"] = [*deps, "src/dlrepro/chapters/losses"]
    with pytest.raises(AssertionError, match=r"lists src/dlrepro/chapters/losses/run\.py"):
        test_deps_cover_exactly_the_modules_the_stage_imports("curriculum-mlp_xor")
