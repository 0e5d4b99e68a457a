"""A study's trials as DVC experiments: queued with their overrides, run by DVC's queue workers,
read back through `dvc.api`. Nothing here runs a stage: DVC does, in its own copies.

A trial's experiment is lost when DVC still lists it as running, the process running it is gone
and its result was never stored (its queue worker was killed: DVC then never collects it), or
when DVC does not list it at all (the driver died between asking the trial and queueing it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlrepro.errors import DlreproError

DONE, FAILED, PENDING, LOST = "done", "failed", "pending", "lost"


@dataclass(frozen=True)
class Experiment:
    name: str
    rev: str
    state: str  # DVC's: Queued, Running, Success, Failed


def _env() -> dict[str, str]:
    """This environment with the venv's bin/ first on PATH, as `make` sets it: DVC's queue
    workers run each stage's `python -m ...` by name (without it they exit at once)."""
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")])}


def _dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`dvc <args>` in `root`: the venv's own, found through _env's PATH."""
    done = subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True, env=_env())
    if check and done.returncode != 0:
        lines = [x for x in (done.stderr or done.stdout).splitlines() if x.strip()]
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise DlreproError(f"dvc {' '.join(args[:3])} failed: {last}")
    return done


def queue(root: Path, name: str, overrides: list[str], target: str) -> None:
    """Queue experiment `name`: `dvc exp run --queue` with each override as `-S`, for `target`."""
    sets = [arg for o in overrides for arg in ("-S", o)]
    _dvc(root, "exp", "run", "--queue", "--name", name, *sets, target)


def start_workers(root: Path, count: int) -> None:
    """`dvc queue start -j count`: workers that run what is queued, and exit when nothing is."""
    if count > 0:
        _dvc(root, "queue", "start", "--jobs", str(count))


def forget(root: Path, name: str) -> None:
    """Drop a lost experiment's stale entry from DVC's queue (best effort)."""
    _dvc(root, "queue", "remove", name, check=False)


def head(root: Path) -> str:
    """The workspace's commit: the baseline an experiment queued now is based on."""
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


def experiments(root: Path, baselines: set[str]) -> dict[str, Experiment]:
    """The experiments DVC lists for these commits and the workspace's, by name (DVC lists a
    commit's own only: a commit made while a study runs must not hide its trials)."""
    import dvc.api

    revs = sorted({*baselines, head(root)})
    rows: list[dict[str, Any]] = dvc.api.exp_show(repo=str(root), revs=revs)
    return {
        row["Experiment"]: Experiment(row["Experiment"], row["rev"], row["State"] or "")
        for row in rows
        if row.get("Experiment")
    }


def result_ref(root: Path, name: str) -> str | None:
    """The git ref holding the experiment's result (refs/exps/<baseline>/<name>), once DVC has
    stored it; its worker may still be marking it finished."""
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout.split()
    return next((ref for ref in refs if ref.rsplit("/", 1)[-1] == name), None)


def runner_alive(root: Path, rev: str) -> bool:
    """Whether the process DVC started for the experiment at `rev` still runs."""
    for pid_file in (root / ".dvc" / "tmp" / "exps" / "run").glob(f"{rev}*/*.pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), 0)
        except (ValueError, OSError) as err:
            if isinstance(err, PermissionError):
                return True
            continue
        return True
    return False


def outcome(root: Path, found: Experiment | None) -> str:
    """DONE, FAILED, PENDING (queued or running) or LOST."""
    if found is None:
        return LOST
    if found.state in ("Success", ""):  # "": listed as a commit only (its queue entry gone)
        return DONE if found.state or result_ref(root, found.name) else PENDING
    if found.state == "Failed":
        return FAILED
    if found.state == "Running" and not runner_alive(root, found.rev):
        # Its run ended: collected (the worker is marking it), or lost with its worker.
        return DONE if result_ref(root, found.name) else LOST
    return PENDING


def metric(root: Path, name: str, metrics_file: str, key: str) -> float:
    """The value of `key` in `metrics_file` as experiment `name` committed it."""
    import dvc.api

    values = dvc.api.metrics_show(metrics_file, repo=str(root), rev=result_ref(root, name) or name)
    value = values.get(key) if isinstance(values, dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise DlreproError(f"experiment {name}: {metrics_file} holds no number {key!r}")
    return float(value)
