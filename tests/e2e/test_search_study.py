"""`dlrepro search` end to end (small profile): a 4-trial study whose trials are DVC experiments
run two at a time by DVC's queue, its driver killed (SIGKILL) after the first trial finished and a
queue worker killed in the middle of a trial, then the same command again; and two drivers, in two
workspaces standing in for two machines, sharing one study on PostgreSQL (and one MLflow server on
it). Each ends with exactly 4 complete trials, no parameter set twice, every trial a DVC
experiment holding its metric, and the study's MLflow run with the trials' runs nested under it.
A promoted trial becomes a recipe that `dvc repro` trains and evaluates."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import psutil
import pytest
import yaml
from optuna.trial import TrialState

from helpers.servers import mlflow_server, postgres, postgres_bin
from helpers.workspace import BIN, clone_copy, dvc, env, ran_stages, run

pytestmark = pytest.mark.slow

STUDY_TIMEOUT_S = 900
SPACE = {
    "recipe": "text",
    "trials": 4,
    "jobs": 2,
    "sampler": {"name": "TPESampler", "seed": 0},
    "space": {
        "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "max_epochs": {"type": "int", "low": 1, "high": 3},
    },
}


def commit(root: Path, message: str) -> None:
    run(root, "git", "add", "-A")
    run(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """The small profile's text recipe trained and scored on the design split, committed, with
    two search files: one scored on the design split, one on val."""
    root = clone_copy(tmp_path_factory.mktemp("repo"))
    dvc(root, "repro", "design@text")
    (root / "conf" / "search").mkdir(exist_ok=True)
    objectives = {"design": {"split": "design", "metric": "accuracy"}, "val": {"split": "val"}}
    for name, objective in objectives.items():
        text = yaml.safe_dump({**SPACE, "objective": objective})
        (root / "conf" / "search" / f"{name}.yaml").write_text(text)
    commit(root, "baseline")
    return root


@pytest.fixture
def workspace(baseline, tmp_path) -> Iterator[Path]:
    root = shutil.copytree(baseline, tmp_path / "repo", symlinks=True)
    yield root
    dvc(root, "queue", "stop", check=False)


def driver(root: Path, name: str, **extra: str) -> subprocess.Popen:
    """`dlrepro search run name` by its path, the venv not on PATH (as a user runs it without
    activating the venv: the queue's workers must still find the stages' python)."""
    log = (root / f"driver-{os.getpid()}-{time.monotonic_ns()}.log").open("w")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != BIN)
    return subprocess.Popen(
        [str(BIN / "dlrepro"), "search", "run", name],
        cwd=root,
        env=env(root, **extra) | {"PATH": path},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: the kill below reaches the driver alone
    )


def trials(storage: str, name: str) -> list:
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return []


def wait_for(condition, what: str, timeout: float = STUDY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def busy_worker(root: Path) -> psutil.Process | None:
    """A DVC queue worker of `root` whose experiment is running a stage."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "exp exec-run" in cmdline and str(root) in cmdline:
            with_stage = [
                c
                for c in process.children(recursive=True)
                if "dlrepro.stages" in " ".join(c.cmdline())
            ]
            if with_stage:
                return process.parent()
    return None


def finish(process: subprocess.Popen, root: Path) -> None:
    try:
        assert process.wait(timeout=STUDY_TIMEOUT_S) == 0, logs(root)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def logs(root: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in sorted(root.glob("driver-*.log")))


def committed(root: Path, experiment: str, path: str) -> str:
    """`path` as the DVC experiment's commit holds it (git's view, not DVC's)."""
    refs = run(root, "git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
    (ref,) = [r for r in refs if r.rsplit("/", 1)[1] == experiment]
    return run(root, "git", "show", f"{ref}:{path}").stdout


def check_study(storage: str, name: str, roots: list[Path], uri_of) -> list:
    """4 complete trials, no parameter set twice, each a DVC experiment of its driver's
    workspace holding the told value, each one's runs nested under the study's MLflow run."""
    import mlflow

    found = trials(storage, name)
    complete = [t for t in found if t.state == TrialState.COMPLETE]
    assert len(complete) == 4, [(t.number, t.state, t.user_attrs) for t in found]
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == 4
    study = optuna.load_study(study_name=name, storage=storage)
    parent = study.user_attrs["mlflow_parent_run_id"]
    for trial in complete:
        root = next(r for r in roots if trial.user_attrs["driver"].endswith(str(r)))
        exp = trial.user_attrs["exp_name"]
        metrics_file = "metrics/design/text.json" if name == "design" else "metrics/train/text.json"
        key = "accuracy" if name == "design" else "best_val_acc"
        assert json.loads(committed(root, exp, metrics_file))[key] == trial.value
        client = mlflow.MlflowClient(uri_of(root))
        nested = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            f"tags.`dvc.exp_name` = '{exp}'",
        )
        assert nested and all(r.data.tags["mlflow.parentRunId"] == parent for r in nested)
        assert {r.data.tags["dlrepro.search.trial"] for r in nested} == {str(trial.number)}
    assert mlflow.MlflowClient(uri_of(roots[0])).get_run(parent).info.status == "FINISHED"
    return found


def test_a_study_survives_kill_9_of_its_driver_and_of_a_worker(workspace):
    """The driver killed once the first trial is complete, a commit made, the rerun's queue
    worker killed in the middle of a trial: the rerun finds that trial lost and runs its
    parameters again, and the trials queued before the commit are found."""
    storage = f"sqlite:///{workspace / 'optuna.db'}"
    first = driver(workspace, "design")
    try:
        wait_for(
            lambda: any(t.state == TrialState.COMPLETE for t in trials(storage, "design")),
            "the first complete trial",
        )
    finally:
        os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    # A commit while the study runs: DVC lists a commit's own experiments only.
    (workspace / "NOTES.txt").write_text("a teammate's note\n")
    commit(workspace, "a commit in the middle of the study")
    rerun = driver(workspace, "design")
    worker = None

    def a_worker_is_busy() -> bool:
        nonlocal worker
        worker = busy_worker(workspace)
        return worker is not None

    wait_for(a_worker_is_busy, "a queue worker in the middle of a trial", timeout=300)
    assert worker is not None
    worker.kill()
    finish(rerun, workspace)
    found = check_study(storage, "design", [workspace], lambda r: f"sqlite:///{r / 'mlflow.db'}")
    lost = [t for t in found if t.user_attrs.get("failure") == "lost"]
    assert lost, "the killed worker's trial was not found lost"
    retried = {t.user_attrs.get("retry_of") for t in found}
    assert {t.number for t in lost} <= retried
    shown = run(workspace, str(BIN / "dlrepro"), "search", "show", "design").stdout
    best = max((t for t in found if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert shown.splitlines()[2].split()[:2] == [str(best.number), "complete"]
    assert best.user_attrs["exp_name"] in shown
    for figure in ("trials.csv", "history.png", "importances.png"):
        assert (workspace / "reports" / "search" / "design" / figure).stat().st_size > 0

    # The best trial promoted as a recipe of its own: trained and evaluated by dvc repro.
    run(workspace, str(BIN / "dlrepro"), "search", "promote", "design", "--as", "text_best")
    params = yaml.safe_load((workspace / "params.yaml").read_text())["recipes"]
    assert params["text_best"]["optimizer"]["lr"] == best.params["optimizer.lr"]
    assert params["text_best"]["max_epochs"] == best.params["max_epochs"]
    rest = {k: v for k, v in params["text_best"].items() if k not in ("optimizer", "max_epochs")}
    assert rest == {k: v for k, v in params["text"].items() if k not in ("optimizer", "max_epochs")}
    done = dvc(workspace, "repro", "evaluate@text_best")
    assert {"train@text_best", "evaluate@text_best"} <= set(ran_stages(done.stdout))
    assert (workspace / "metrics" / "evaluate" / "text_best.json").exists()


@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries are not installed")
def test_two_drivers_share_one_study_on_postgresql(baseline, tmp_path):
    roots = [shutil.copytree(baseline, tmp_path / f"machine{i}", symlinks=True) for i in (1, 2)]
    with (
        postgres("optuna") as storage,
        postgres("mlflow") as backend,
        mlflow_server(tmp_path / "server", backend) as uri,
    ):
        study_storage = storage.replace("postgresql://", "postgresql+psycopg://")
        extra = {"OPTUNA_STORAGE": study_storage, "MLFLOW_TRACKING_URI": uri}
        cfg = yaml.safe_load((roots[0] / "conf/search/val.yaml").read_text())
        for root in roots:  # one experiment at a time on each machine
            (root / "conf/search/val.yaml").write_text(yaml.safe_dump({**cfg, "jobs": 1}))
            commit(root, "one at a time")
        drivers = [driver(root, "val", **extra) for root in roots]
        try:
            for process, root in zip(drivers, roots, strict=True):
                finish(process, root)
        finally:
            for root in roots:
                dvc(root, "queue", "stop", check=False)
        found = check_study(study_storage, "val", roots, lambda _: uri)
    by = {t.user_attrs.get("driver") for t in found if t.state == TrialState.COMPLETE}
    assert len(by) == 2, "both drivers ran trials"


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from dlrepro.search.space import load_search
from dlrepro.search.study import load_study
search = load_search(Path(sys.argv[1]), ["text", "tuned"])
while not Path(sys.argv[3]).exists():
    time.sleep(0.001)
load_study(search, sys.argv[2])
"""


@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries are not installed")
def test_drivers_opening_a_fresh_database_at_once_all_get_the_study(tmp_path):
    """Every driver creates Optuna's tables on a fresh database; the slower CREATEs collide in
    PostgreSQL's catalogue (a duplicate key in pg_type). Each driver still opens the one study."""
    space = tmp_path / "val.yaml"
    space.write_text(yaml.safe_dump({**SPACE, "objective": {"split": "val"}}))
    go = tmp_path / "go"
    with postgres("optuna") as storage:
        url = storage.replace("postgresql://", "postgresql+psycopg://")
        opening = [
            subprocess.Popen(
                [str(BIN / "python"), "-c", OPEN_AT_ONCE, str(space), url, str(go)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        time.sleep(8)  # every process imported and waiting at the line
        go.touch()
        errors = [p.communicate(timeout=120)[1] for p in opening]
        assert [p.returncode for p in opening] == [0] * 6, "\n".join(errors)
        assert len(optuna.get_all_study_summaries(url)) == 1
