"""Experiments with `dvc exp run -S` (one change, then queued grids) and their MLflow runs.

A copy of the repository on the small profile trains once (`dvc repro train@text`, committed as the
baseline); experiments target the `train@text` stage to keep the test short. A workspace experiment
changes the learning rate; a queued grid of 8 runs in DVC's temporary copies under .dvc/tmp/exps/,
two at a time (`dvc queue start -j 2`), once tracked into the embedded SQLite store and once into
a team's store: a real `mlflow server` on a real PostgreSQL, both on 127.0.0.1. Each grid queues
in its own copy of the trained baseline, as two team members would, so each has its own queue
and workers (and its `dvc queue stop` cannot reach the other's: DVC 3.67's shutdown broadcast
stays in the queue's broker and stopped a later start's workers after one task each). Queued
runs must all succeed, use their own overrides, leave the main workspace alone, log nothing that
looks like an error, and land in the chosen store with every per-epoch metric, tagged with the
name `dvc exp show` lists.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from helpers.servers import mlflow_server, postgres, postgres_bin
from helpers.workspace import clone_copy, dvc, ran_stages, run

pytestmark = pytest.mark.slow

QUEUE_TIMEOUT_S = 600
LR_GRID = ("0.002", "0.0005")
# Batch sizes differ from the baseline's 32 (a point equal to the workspace would skip its
# stages) and between the two stores, so `dvc exp show` tells the two grids apart.
BATCHES = {"sqlite": ("16", "8"), "postgresql": ("24", "12")}
EPOCH_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")
# What a worker's or an experiment's log must not hold (MLflow's own INFO lines are fine).
ERROR_LINE = re.compile(r"Traceback|\bERROR\b|^error:|database is locked|OperationalError", re.M)
# Upstream, not dlrepro: with two workers, kombu's filesystem broker (DVC's queue) lets one worker
# read a message file the other has created but not yet written, and the reader's consumer stops
# with this traceback (treeverse/dvc#10428; seen in 2 of 6 queue runs in one session, every
# experiment succeeding). It is cut out of a worker's log before ERROR_LINE looks; nothing else is.
BROKER_RACE = re.compile(
    r"^\[[^]]*CRITICAL/MainProcess\] Unrecoverable error: JSONDecodeError\(.*\)\n"
    r"Traceback \(most recent call last\):\n"
    r"(?:  .*\n)*?  File \"[^\"]*/kombu/transport/filesystem\.py\", line \d+, in _get\n"
    r"(?:  .*\n)*json\.decoder\.JSONDecodeError: .*$",
    re.M,
)


def digest(root: Path) -> dict[str, str]:
    files = [root / "params.yaml", root / "dvc.lock"]
    files += [p for f in ("models", "metrics", "plots") for p in sorted((root / f).rglob("*"))]
    return {str(p): hashlib.md5(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def mlflow_client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def embedded(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


LR = "recipes.text.optimizer.lr"


def text_lr(found: dict) -> float:
    return found["params"]["recipes"]["text"]["optimizer"]["lr"]


def train_runs(uri: str) -> list:
    client = mlflow_client(uri)
    experiment = client.get_experiment_by_name("dlrepro-plant")
    return client.search_runs([experiment.experiment_id], "tags.`dvc.stage` = 'train@text'")


def experiments(root: Path) -> dict[str, dict]:
    """`dvc exp show --json` as {experiment name: {"params": ..., "metrics": ...}}."""
    shown = json.loads(dvc(root, "exp", "show", "--json").stdout)
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for rev in experiment["revs"]:
                data = rev["data"]
                found[rev["name"]] = {
                    "params": data["params"]["params.yaml"]["data"],
                    # Metrics files the run did not produce (other stages) come as "error".
                    "metrics": {k: v["data"] for k, v in data["metrics"].items() if "data" in v},
                }
    return found


def wait_for_queue(root: Path) -> str:
    deadline = time.monotonic() + QUEUE_TIMEOUT_S
    while time.monotonic() < deadline:
        status = dvc(root, "queue", "status").stdout
        if not any(state in status for state in ("Queued", "Running")):
            return status
        time.sleep(3)
    raise AssertionError(f"queue still busy after {QUEUE_TIMEOUT_S} s:\n{status}")


def worker_logs(root: Path) -> dict[str, str]:
    """The celery workers' own output (dvc_task writes it beside the queue's broker)."""
    found = (root / ".dvc" / "tmp" / "exps").rglob("dvc-exp-worker-*.out")
    return {str(p.relative_to(root)): p.read_text(errors="replace") for p in found}


@pytest.fixture(scope="module")
def store(request, tmp_path_factory) -> Iterator[tuple[str, str | None]]:
    """(name, server URL) a grid tracks into: the baseline's own SQLite file (no URL), or a team
    server on PostgreSQL."""
    if request.param == "sqlite":
        yield "sqlite", None
        return
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries absent (Debian: apt-get install postgresql)")
    with postgres() as database:
        folder = tmp_path_factory.mktemp("team-server")
        with mlflow_server(folder, database) as uri:
            yield "postgresql", uri


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
def test_runs_logging_the_same_new_datasets_at_once_all_keep_them(store):
    """The race that failed 1 of 8 queued experiments on PostgreSQL: MLflow's store looks a
    dataset up, then inserts it, so two runs logging the same new split at once both insert and
    the loser gets BAD_REQUEST (duplicate key "dataset_pk"). Without the retry in
    `tracking.datasets.log_inputs_concurrently`, 17 of 20 such rounds lost a run here."""
    import threading
    import uuid

    import mlflow
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    from dlrepro.tracking.datasets import log_inputs_concurrently

    _, uri = store
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment(f"dataset-race-{uuid.uuid4().hex[:8]}")
    failures, run_ids = [], []

    def log_split_inputs(datasets: list, start: threading.Barrier) -> None:
        with mlflow.start_run(experiment_id=experiment) as active:  # each thread its own run
            run_ids.append(active.info.run_id)
            start.wait()
            try:
                log_inputs_concurrently(datasets, ["training", "validation"], [None] * 2)
            except Exception as err:  # the assertion below shows it
                failures.append(str(err).splitlines()[0])

    for _ in range(8):
        version = uuid.uuid4().hex[:8]  # a dataset version no run has logged yet
        datasets = [
            MetaDataset(HTTPDatasetSource(f"http://data/{split}"), name=split, digest=version)
            for split in ("train", "val")
        ]
        start = threading.Barrier(2)
        threads = [
            threading.Thread(target=log_split_inputs, args=(datasets, start)) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    for run_id in run_ids:
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert sorted(i.dataset.name for i in inputs) == ["train", "val"]


def test_a_queued_copy_uses_its_own_files_and_the_main_store(tmp_path, monkeypatch):
    """What DVC sets up for a queued experiment: cwd in the copy, DVC_ROOT at the main repo."""
    from dlrepro import paths
    from dlrepro.tracking.store import tracking_uri

    main = tmp_path / "main"
    copy = main / ".dvc" / "tmp" / "exps" / "tmp1234"
    for root in (main, copy):
        root.mkdir(parents=True, exist_ok=True)
        (root / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(main))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert paths.repo_root() == copy  # params.yaml and outputs: the experiment's own
    assert tracking_uri() == f"sqlite:///{main / 'mlflow.db'}"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    clone_copy(root)
    dvc(root, "repro", "train@text")
    run(root, "git", "add", "-A")
    run(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline")
    return root


@pytest.fixture
def member(baseline, tmp_path) -> Iterator[Path]:
    """A copy of the trained baseline at its last commit, with a queue of its own."""
    root = shutil.copytree(baseline, tmp_path / "repo", symlinks=True)
    run(root, "git", "checkout", "--", ".")  # the workspace experiment above changed files
    dvc(root, "checkout", "--force", "train@text")
    yield root
    dvc(root, "queue", "stop", check=False)  # idle workers exit after 60 s anyway


def test_one_change_reruns_training_and_tags_its_mlflow_run(baseline):
    done = dvc(baseline, "exp", "run", "-S", f"{LR}=0.0005", "train@text")
    # The check reruns for any change; the data stages did not change.
    assert ran_stages(done.stdout) == ["check-config", "train@text"]
    params = yaml.safe_load((baseline / "params.yaml").read_text())
    assert params["recipes"]["text"]["optimizer"]["lr"] == 0.0005
    (name,) = [  # the grid below also tries lr 0.0005, at another batch size
        name
        for name, found in experiments(baseline).items()
        if text_lr(found) == 0.0005 and found["params"]["data"]["batch_size"] == 32
    ]
    (tracked,) = [
        r for r in train_runs(embedded(baseline)) if r.data.tags.get("dvc.exp_name") == name
    ]
    assert tracked.data.params["optimizer.lr"] == "0.0005"  # the key every recipe's run shares
    assert tracked.info.run_name == f"train · text · {name}"


@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)
def test_a_queue_of_4_runs_two_at_a_time_and_the_store_keeps_every_epoch(member, store):
    name, server = store
    uri = server or embedded(member)
    tracking = {"MLFLOW_TRACKING_URI": server} if server else {}
    before = digest(member)
    queued = dvc(
        member, "exp", "run", "--queue", "train@text",
        "-S", f"{LR}={','.join(LR_GRID)}", "-S", f"data.batch_size={','.join(BATCHES[name])}",
    )  # fmt: skip
    points = len(LR_GRID) * len(BATCHES[name])
    assert queued.stdout.count("Queued experiment") == points == 4
    started = time.monotonic()
    dvc(member, "queue", "start", "-j", "2", **tracking)  # workers inherit its environment
    status = wait_for_queue(member)
    wall = time.monotonic() - started
    succeeded = {line.split()[1] for line in status.splitlines() if line.endswith(" Success")}

    shown = experiments(member)
    grid = {
        exp: found
        for exp, found in shown.items()
        if str(found["params"]["data"]["batch_size"]) in BATCHES[name]
    }
    failed = sorted(set(grid) - succeeded)
    assert not failed, "\n".join(  # the failed experiments' logs, fetched only on failure
        [status, *(dvc(member, "queue", "logs", exp, check=False).stdout for exp in failed)]
    )
    # Upstream, not dlrepro: with two workers DVC can report an experiment Success and yet lose
    # its experiment ref, so `dvc exp show` lacks it (treeverse/dvc#8014, #10673; seen once in
    # 6 runs here). Its run is then judged from the tracking store, the part dlrepro owns.
    client = mlflow_client(uri)
    runs = {r.data.tags.get("dvc.exp_name"): r for r in train_runs(uri)}
    lost = sorted(  # this grid's: a run in this store with one of its batch sizes
        exp
        for exp in succeeded - set(shown)
        if exp in runs and runs[exp].data.params["datamodule.batch_size"] in BATCHES[name]
    )
    if lost:
        print(f"DVC lost the experiment refs of {lost} (upstream); judged from the store")
    points_run = [(str(text_lr(e)), str(e["params"]["data"]["batch_size"])) for e in grid.values()]
    points_run += [
        (runs[e].data.params["optimizer.lr"], runs[e].data.params["datamodule.batch_size"])
        for e in lost
    ]
    assert sorted(points_run) == sorted((lr, batch) for lr in LR_GRID for batch in BATCHES[name])
    assert digest(member) == before  # the main workspace was not touched
    assert run(member, "git", "status", "--porcelain").stdout == ""  # nor anything beside it

    for exp in [*grid, *lost]:
        log = dvc(member, "queue", "logs", exp).stdout
        assert not ERROR_LINE.search(log), f"{exp}:\n{log}"
    for path, log in worker_logs(member).items():
        assert not ERROR_LINE.search(BROKER_RACE.sub("", log)), f"{path}:\n{log}"

    epochs = {found["metrics"]["metrics/train/text.json"]["epochs"] for found in grid.values()}
    assert len(epochs) == 1  # one recipe, so one epoch count for every point
    for exp in [*grid, *lost]:
        tracked = runs[exp]  # in the chosen store, not in the deleted temporary copy
        assert tracked.info.status == "FINISHED"
        if exp in grid:
            found = grid[exp]
            assert tracked.data.params["optimizer.lr"] == str(text_lr(found))
            assert tracked.data.params["datamodule.batch_size"] == str(
                found["params"]["data"]["batch_size"]
            )
        for metric in EPOCH_METRICS:  # every epoch, each once
            history = client.get_metric_history(tracked.info.run_id, metric)
            assert sorted(m.step for m in history) == sorted({m.step for m in history}), metric
            assert len(history) == next(iter(epochs)), (exp, metric)
        if exp in grid:
            summary = grid[exp]["metrics"]["metrics/train/text.json"]
            val_acc = client.get_metric_history(tracked.info.run_id, "val/acc")
            assert max(m.value for m in val_acc) == pytest.approx(summary["best_val_acc"])
        assert client.list_artifacts(tracked.info.run_id, "plots/train/text")
    print(f"queue of {points} on {name}: {wall:.0f} s with -j 2")
