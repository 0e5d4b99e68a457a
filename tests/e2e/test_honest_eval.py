"""Honest evaluation: the test split never reaches a fit, checkpoint selection reads the val
split, a recipe that fits on train and val keeps no val score, and each evaluation says which
recipe and which selection it measured.

The real train and evaluate stages run as subprocesses on a tiny prepared cache (both recipes,
and the tuned one set to select on val as `selecting`; 2 epochs each): the train stage runs with
the test split deleted from the cache, so any read of it would fail the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from dlrepro.data.cache import load_split
from dlrepro.data.ingest import ingest
from dlrepro.plant.evaluate import evaluate
from dlrepro.plant.inference import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
SIZE = 32  # the tuned network's five blocks halve it five times, to 1
pytestmark = pytest.mark.slow


def write_dataset(folder: Path, per_class: int = 24) -> None:
    """Two colour-coded classes of noisy squares: learnable in two epochs, not trivially."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("Diseased", "Healthy")):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 150, (32, 32, 3), dtype=np.uint8)
            image[..., 2 * label] += 100
            cv2.imwrite(str(folder / name / f"{i:02d}.png"), image)


def stage(root: Path, name: str, recipe: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, "-m", f"dlrepro.stages.{name}", recipe],
        cwd=root,
        env={**env, "DVC_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    write_dataset(root / "source")
    cache = root / "data" / "cache"
    ingest(root / "source", cache, image_size=SIZE, test_fraction=0.25, seed=0)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["image_size"] = SIZE
    params["trainer"]["enable_progress_bar"] = False
    recipes = params["recipes"]
    recipes["selecting"] = {**recipes["tuned"], "fit_on": "train", "selected_on": "val"}
    for recipe in recipes.values():
        recipe["max_epochs"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    hidden = root / "test-split-away"
    shutil.move(cache / "test", hidden)  # a fit that read test would fail here
    for recipe in params["recipes"]:
        done = stage(root, "train", recipe)
        assert done.returncode == 0, done.stderr[-2000:]
    shutil.move(hidden, cache / "test")
    return root


@pytest.mark.parametrize("recipe", ["text", "selecting"])
def test_selection_scores_are_the_val_split_accuracies_of_the_saved_weights(trained, recipe):
    """best.ckpt's score is its weights' accuracy on val, and every epoch's val/acc in the
    history is measured on val's images (the count proves which split). Validation sees each
    image once, as it comes: the tuned recipe averages symmetries only when it answers."""
    summary = json.loads((trained / "metrics" / "train" / f"{recipe}.json").read_text())
    assert summary["val_images"] == len(load_split(trained / "data" / "cache", "val")[1])
    images, labels, classes = load_split(trained / "data" / "cache", "val")
    model_dir = trained / "models" / "plant_cnn" / recipe
    best = load_checkpoint(model_dir / "best.ckpt")
    best.average_symmetries = False  # validation's one view per image
    assert evaluate(best, images, labels, classes)["accuracy"] == pytest.approx(
        summary["best_val_acc"]
    )
    last = load_checkpoint(model_dir / "last.ckpt")
    last.average_symmetries = False
    assert evaluate(last, images, labels, classes)["accuracy"] == pytest.approx(
        summary["last_val_acc"]
    )


@pytest.mark.parametrize(
    ("recipe", "selected_on", "checkpoint"),
    [
        ("text", "last_epoch", "last.ckpt"),
        ("tuned", "last_epoch", "last.ckpt"),
        ("selecting", "val", "best.ckpt"),
    ],
)
def test_evaluation_reads_test_once_and_says_what_it_measured(
    trained, recipe, selected_on, checkpoint
):
    done = stage(trained, "evaluate", recipe)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((trained / "metrics" / "evaluate" / f"{recipe}.json").read_text())
    assert metrics["recipe"] == recipe and metrics["selected_on"] == selected_on
    assert metrics["split"] == "test" and metrics["checkpoint"] == checkpoint
    assert metrics["views_per_image"] == (1 if recipe == "text" else 8)
    images, labels, classes = load_split(trained / "data" / "cache", "test")
    model = load_checkpoint(trained / "models" / "plant_cnn" / recipe / checkpoint)
    assert metrics["num_images"] == len(labels)
    assert metrics["accuracy"] == pytest.approx(
        evaluate(model, images, labels, classes)["accuracy"]
    )


def test_a_fit_on_train_and_val_learns_from_both_and_keeps_no_val_score(trained):
    """The tuned recipe (fit_on: train+val) fits every image of train and val, validates on
    none of them, and leaves last.ckpt alone to evaluate."""
    cache = trained / "data" / "cache"
    fitted = sum(len(load_split(cache, split)[1]) for split in ("train", "val"))
    summary = json.loads((trained / "metrics" / "train" / "tuned.json").read_text())
    assert summary["fit_on"] == "train+val" and summary["selected_on"] == "last_epoch"
    assert summary["train_images"] == fitted and summary["val_images"] == 0
    assert summary["best_val_acc"] is None and summary["last_val_acc"] is None
    model_dir = trained / "models" / "plant_cnn" / "tuned"
    assert sorted(p.name for p in model_dir.iterdir()) == ["last.ckpt", "run.json"]
    history = (trained / "plots" / "train" / "tuned" / "history.csv").read_text()
    assert "train/acc" in history and "val/" not in history
    text = json.loads((trained / "metrics" / "train" / "text.json").read_text())
    assert text["fit_on"] == "train" and text["val_images"] == len(load_split(cache, "val")[1])


def test_an_unknown_recipe_is_one_line(trained):
    done = stage(trained, "train", "fancy")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: expected one recipe name (selecting, text, tuned), got fancy"  # yaml sorts keys
    )
