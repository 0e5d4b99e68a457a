"""A fresh clone-like copy of the repository, for tests that run the real pipeline in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def clone_copy(root: Path, profile: str = "small") -> Path:
    """Copy what a clone would hold (plus uncommitted work), minus the results, into `root`,
    with `profile` as the default of its conf/ (so that `dvc exp run`, which recomposes conf/,
    keeps it too), params.yaml recomposed, and everything committed to a new git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        source = REPO / rel
        if source.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / rel)
    for produced in ("dvc.lock", "metrics"):  # results are rebuilt, not copied
        path = root / produced
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    config = root / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("- profile: full", f"- profile: {profile}"))
    run(root, sys.executable, "-m", "dlrepro.config.compose")
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"],
    ):
        subprocess.run(cmd, cwd=root, check=True)
    return root


def env(root: Path, **extra: str) -> dict[str, str]:
    """The venv first on PATH (DVC runs `python -m ...` by name), the copy's own code first on
    the import path (as in a clone with its own venv, not this checkout's editable install), and
    the embedded MLflow store."""
    full = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PYTHONPATH": str(root / "src"),
        "DVC_ROOT": str(root),
        **extra,
    }
    if "MLFLOW_TRACKING_URI" not in extra:
        full.pop("MLFLOW_TRACKING_URI", None)
    # A commit in a copy (the docs' blocks commit as a user would) on a machine with no git identity
    for variable in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        full.setdefault(variable, "dlrepro tests")
    for variable in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        full.setdefault(variable, "tests@dlrepro.invalid")
    return full


def run(root: Path, *cmd: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=root, env=env(root, **extra), capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def dvc(root: Path, *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    return run(root, str(BIN / "dvc"), *args, check=check, **extra)


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]
