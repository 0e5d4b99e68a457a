"""The case study on data a user brings (both recipes, the tuned one no worse than the text's),
and a training run that is interrupted and resumed.

Both run the real stages (DVC, Lightning, MLflow) in a fresh copy of the repository.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers.workspace import BIN, clone_copy, dvc, env, ran_stages, run

pytestmark = pytest.mark.slow

COLOURS = {"blight": (40, 40, 200), "healthy": (40, 200, 40), "rust": (200, 60, 40)}  # BGR


def write_three_class_folder(folder: Path, per_class: int = 30) -> None:
    """One folder of class folders (no train/test split): easy, colour-coded leaves."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (96, 96, 3), dtype=np.uint8)
            centre = tuple(int(v) for v in rng.integers(30, 66, 2))
            cv2.circle(image, centre, int(rng.integers(15, 28)), colour, -1)
            cv2.imwrite(str(folder / name / f"{i:03d}.png"), image)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = clone_copy(tmp_path_factory.mktemp("repo"))
    write_three_class_folder(root / "data" / "three_classes")
    return root


def test_three_class_folder_trains_and_evaluates_both_recipes_without_code_changes(workspace):
    """Each recipe at its own epochs on a dataset the user brings: the tuned recipe must not
    be worse than the text's there either."""
    run(
        workspace,
        sys.executable,
        "-m",
        "dlrepro.config.compose",
        "data.source=folder",
        "data.path=data/three_classes",
        "recipes.text.max_epochs=10",  # each recipe's own epochs, not the small profile's 2
        "recipes.tuned.max_epochs=30",
        "data.image_size=32",  # the least the tuned network takes: colour tells the classes
    )
    done = dvc(workspace, "repro", "evaluate")
    ran = ran_stages(done.stdout)
    assert ran[:2] == ["check-config", "prepare"] and sorted(ran[2:]) == [  # no leaf generation
        "evaluate@text",
        "evaluate@tuned",
        "train@text",
        "train@tuned",
    ]
    # 30 per class: 6 to test, then 4 of the other 24 to val
    assert "train: Found 60 images belonging to 3 classes." in done.stdout
    report = json.loads((workspace / "reports" / "data.json").read_text())
    assert report["layout"] == "one folder, seeded split"
    assert report["counts"]["test"] == {"blight": 6, "healthy": 6, "rust": 6}
    assert report["counts"]["val"] == {"blight": 4, "healthy": 4, "rust": 4}
    accuracy = {}
    for recipe, epochs in (("text", 10), ("tuned", 30)):
        metrics = json.loads((workspace / "metrics" / "evaluate" / f"{recipe}.json").read_text())
        assert metrics["classes"] == ["blight", "healthy", "rust"]
        assert metrics["recipe"] == recipe and metrics["split"] == "test"
        assert np.array(metrics["confusion_matrix"]).shape == (3, 3)
        trained = json.loads((workspace / "metrics" / "train" / f"{recipe}.json").read_text())
        assert trained["classes"] == metrics["classes"] and trained["epochs"] == epochs
        # text holds the 12 val images out; tuned fits them with train's 60 (fit_on: train+val)
        held_out = 12 if recipe == "text" else 0
        assert trained["val_images"] == held_out and trained["train_images"] == 72 - held_out
        accuracy[recipe] = metrics["accuracy"]
    assert accuracy["text"] > 0.6  # colour-coded classes: far above chance (1/3)
    assert accuracy["tuned"] >= accuracy["text"], accuracy


def test_interrupted_training_resumes_from_last_checkpoint(workspace):
    run(workspace, sys.executable, "-m", "dlrepro.config.compose", "recipes.text.max_epochs=4")
    dvc(workspace, "repro", "prepare")
    model_dir = workspace / "models" / "plant_cnn" / "text"
    run_dir = workspace / "models" / "plant_cnn" / ".dlrepro-run-text"  # where the fit writes
    last = run_dir / "last.ckpt"
    last.unlink(missing_ok=True)
    kept = {p.name: p.read_bytes() for p in model_dir.iterdir()} if model_dir.exists() else {}
    train = subprocess.Popen(
        [sys.executable, "-m", "dlrepro.stages.train", "text"],
        cwd=workspace,
        env=env(workspace),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A shell that starts `make test` in the background ignores SIGINT, and the child would
        # inherit that: give it the default handler, as a terminal's Ctrl-C meets it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not last.exists() and train.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert train.poll() is None, "ended before the interrupt: " + train.stdout.read()[-3000:]
    train.send_signal(signal.SIGINT)  # Ctrl-C after the first epoch's checkpoint
    output, _ = train.communicate(timeout=120)
    assert train.returncode == 130, output  # as documented, not Lightning's exit(1)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors == ["error: interrupted; outputs were left as they were"], output
    assert "Traceback" not in output
    interrupted = json.loads((run_dir / "run.json").read_text())
    assert interrupted["finished"] is False
    now = {p.name: p.read_bytes() for p in model_dir.iterdir()} if model_dir.exists() else {}
    assert now == kept  # nothing half-done replaced the outputs

    resumed = run(workspace, str(BIN / "python"), "-m", "dlrepro.stages.train", "text")
    metrics = json.loads((workspace / "metrics" / "train" / "text.json").read_text())
    assert metrics["epochs"] == 4, resumed.stdout
    finished = json.loads((model_dir / "run.json").read_text())
    assert finished["finished"] is True
    assert not run_dir.exists()  # the finished fit replaced the model folder whole
    # One MLflow run from start to end: the resumed fit continued the interrupted one.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    plant = client.get_experiment_by_name("dlrepro-plant").experiment_id
    (tracked,) = client.search_runs(
        [plant], f"tags.`dlrepro.fingerprint` = '{finished['fingerprint']}'"
    )
    assert tracked.info.status == "FINISHED"
    assert tracked.data.tags["dlrepro.resumed"] == "true"
    history = client.get_metric_history(tracked.info.run_id, "val/acc")
    assert len(history) == 4 and len({m.step for m in history}) == 4

    # A finished run, or new settings, start afresh: nothing leaks between configurations.
    run(workspace, str(BIN / "python"), "-m", "dlrepro.stages.train", "text")
    latest = client.search_runs(
        [plant],
        f"tags.`dlrepro.fingerprint` = '{finished['fingerprint']}'",
        order_by=["attributes.start_time DESC"],
    )
    assert len(latest) == 2 and latest[0].data.tags["dlrepro.resumed"] == "false"


def test_torn_or_invalid_state_recovers_or_stops_in_one_line(workspace):
    """What a kill or a bad disk can leave behind, on the workspace the run above finished:
    state that only decides whether to resume is dropped with a note; a torn result stops the
    stage that reads it in one line naming the file and the fix, and its outputs stay."""
    model_dir = workspace / "models" / "plant_cnn" / "text"
    train = (str(BIN / "python"), "-m", "dlrepro.stages.train", "text")

    run_dir = model_dir.parent / ".dlrepro-run-text"
    run_dir.mkdir()
    (run_dir / "run.json").write_text('{"fingerprint": ')  # an interrupted run's record, torn
    done = run(workspace, *train)
    note = "train@text: run.json is unreadable, so no run can continue; starting afresh"
    assert note in done.stdout
    record = json.loads((model_dir / "run.json").read_text())
    assert record["finished"] is True and not run_dir.exists()

    # An interrupted run (same fingerprint, not finished) whose last.ckpt was torn mid-write.
    shutil.copytree(model_dir, run_dir)
    (run_dir / "run.json").write_text(json.dumps({**record, "finished": False}))
    torn = run_dir / "last.ckpt"
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    last = model_dir / "last.ckpt"
    done = run(workspace, *train)
    assert (
        "train@text: the interrupted run's last.ckpt is unreadable; starting afresh" in done.stdout
    )
    assert json.loads((workspace / "metrics" / "train" / "text.json").read_text())["epochs"] == 4

    # The evaluated checkpoint torn (text evaluates its final model, last.ckpt).
    evaluate = (str(BIN / "python"), "-m", "dlrepro.stages.evaluate", "text")
    run(workspace, *evaluate)
    outputs = workspace / "metrics" / "evaluate" / "text.json"
    before, weights = outputs.read_bytes(), last.read_bytes()
    last.write_bytes(weights[:4096])
    done = run(workspace, *evaluate, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: {last}: not a usable classifier checkpoint (")
    assert line.endswith("`dvc repro` retrains it")
    assert outputs.read_bytes() == before

    # A torn cache file: refused by its checksum, in one line, before any output is touched.
    last.write_bytes(weights)
    labels = workspace / "data" / "cache" / "test" / "labels.npy"
    labels.write_bytes(labels.read_bytes()[:-8])
    done = run(workspace, *evaluate, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "data/cache/test" in line and "dvc repro" in line, line
    assert outputs.read_bytes() == before
