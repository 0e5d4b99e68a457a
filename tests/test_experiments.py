"""Experiments with `dvc exp run -S` (one change, then a queued grid) and their MLflow runs.

A copy of the repository on the small profile trains once (`dvc repro train@text`, committed as the
baseline); experiments target the `train@text` stage to keep the test short. A workspace experiment
changes the learning rate; a queued grid runs in DVC's temporary copies under .dvc/tmp/exps/,
two at a time. Queued runs must use their own overrides, leave the main workspace alone, and
still land in the main repository's MLflow store, tagged with the name `dvc exp show` lists.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import yaml

from workspace import clone_copy, dvc, ran_stages, run

pytestmark = pytest.mark.slow

QUEUE_TIMEOUT_S = 480
LR_GRID = ("0.002", "0.0005")
BATCH = "16"  # differs from the baseline's 32: every point of the grid really trains


def digest(root: Path) -> dict[str, str]:
    files = [root / "params.yaml", root / "dvc.lock"]
    files += [p for f in ("models", "metrics", "plots") for p in sorted((root / f).rglob("*"))]
    return {str(p): hashlib.md5(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def mlflow_client(root: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


LR = "recipes.text.optimizer.lr"


def text_lr(found: dict) -> float:
    return found["params"]["recipes"]["text"]["optimizer"]["lr"]


def train_runs(root: Path) -> list:
    client = mlflow_client(root)
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


def test_a_queued_copy_uses_its_own_files_and_the_main_store(tmp_path, monkeypatch):
    """What DVC sets up for a queued experiment: cwd in the copy, DVC_ROOT at the main repo."""
    from dlrepro import paths, tracking

    main = tmp_path / "main"
    copy = main / ".dvc" / "tmp" / "exps" / "tmp1234"
    for root in (main, copy):
        root.mkdir(parents=True, exist_ok=True)
        (root / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(main))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert paths.repo_root() == copy  # params.yaml and outputs: the experiment's own
    assert tracking.tracking_uri() == f"sqlite:///{main / 'mlflow.db'}"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    clone_copy(root)
    dvc(root, "repro", "train@text")
    run(root, "git", "add", "-A")
    run(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline")
    yield root
    dvc(root, "queue", "stop", check=False)  # workers exit once idle; this is a safety net


def test_one_change_reruns_training_and_tags_its_mlflow_run(baseline):
    done = dvc(baseline, "exp", "run", "-S", f"{LR}=0.0005", "train@text")
    assert ran_stages(done.stdout) == ["train@text"]  # the data stages did not change
    params = yaml.safe_load((baseline / "params.yaml").read_text())
    assert params["recipes"]["text"]["optimizer"]["lr"] == 0.0005
    (name,) = [  # the grid below also tries lr 0.0005, at another batch size
        name
        for name, found in experiments(baseline).items()
        if text_lr(found) == 0.0005 and found["params"]["data"]["batch_size"] == 32
    ]
    (tracked,) = [r for r in train_runs(baseline) if r.data.tags.get("dvc.exp_name") == name]
    assert tracked.data.params[LR] == "0.0005"
    assert tracked.info.run_name == f"train · text · {name}"


def test_queued_grid_runs_apart_and_tracks_into_the_main_store(baseline):
    run(baseline, "git", "checkout", "--", ".")  # back to the committed baseline
    dvc(baseline, "checkout", "--force", "train@text")
    before = digest(baseline)
    queued = dvc(
        baseline, "exp", "run", "--queue", "train@text",
        "-S", f"{LR}={','.join(LR_GRID)}", "-S", f"data.batch_size={BATCH}",
    )  # fmt: skip
    assert queued.stdout.count("Queued experiment") == len(LR_GRID)
    dvc(baseline, "queue", "start", "-j", "2")
    status = wait_for_queue(baseline)
    assert status.count("Success") == len(LR_GRID), status

    grid = {
        name: found
        for name, found in experiments(baseline).items()
        if found["params"]["data"]["batch_size"] == int(BATCH)
    }
    assert sorted(str(text_lr(e)) for e in grid.values()) == sorted(LR_GRID)
    assert digest(baseline) == before  # the main workspace was not touched

    client = mlflow_client(baseline)
    runs = {r.data.tags.get("dvc.exp_name"): r for r in train_runs(baseline)}
    for name, found in grid.items():
        tracked = runs[name]  # in the main mlflow.db, not in the deleted temporary copy
        assert tracked.data.params[LR] == str(text_lr(found))
        assert tracked.data.params["datamodule.batch_size"] == BATCH
        val_acc = client.get_metric_history(tracked.info.run_id, "val/acc")
        summary = found["metrics"]["metrics/train/text.json"]
        assert len(val_acc) == summary["epochs"]
        assert max(m.value for m in val_acc) == pytest.approx(summary["best_val_acc"])
        assert client.list_artifacts(tracked.info.run_id, "plots/train/text")  # beside the store
