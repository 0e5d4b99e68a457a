"""Where the repository is and where each kind of output goes (the same layout for every stage)."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The workspace a stage runs in: the nearest folder above cwd holding dvc.yaml (DVC starts
    every stage in its wdir, here the root), else DVC_ROOT, else cwd.

    cwd comes first because DVC_ROOT is not always the workspace: a queued experiment
    (`dvc exp run --queue`, `--temp`) runs in a copy under .dvc/tmp/exps/, and DVC then sets
    DVC_ROOT to the main repository; a stage trusting it would read the main params.yaml and
    overwrite the main workspace's outputs.
    """
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    return here


DATA = Path("data")
METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")
MODELS = Path("models")
GATES = DATA / "gates"
LEAVES = DATA / "plant_disease_dataset"  # the generated dataset, in the text's layout
CACHE = DATA / "cache"  # decoded uint8 arrays of the dataset `data.path` points at
PLANT_MODEL_DIR = MODELS / "plant_cnn"  # one folder per recipe: checkpoints and run.json


# What each recipe's `selected_on` evaluates and exports: the last epoch or the best val/acc
# epoch; the train stage writes last.ckpt always, best.ckpt where the recipe holds val out
# (dlrepro.plant.train.fit_callbacks).
SELECTED_CHECKPOINT = {"last_epoch": "last.ckpt", "val": "best.ckpt"}


def recipe_model_dir(recipe: str) -> Path:
    return PLANT_MODEL_DIR / recipe


def recipe_run_dir(recipe: str) -> Path:
    """Where `train@<recipe>` fits: its checkpoints and run record until the fit has finished
    and they replace `recipe_model_dir` whole; an interrupted run resumes from here."""
    return PLANT_MODEL_DIR / f".dlrepro-run-{recipe}"


def selected_checkpoint(recipe: str, selected_on: str) -> Path:
    return recipe_model_dir(recipe) / SELECTED_CHECKPOINT[selected_on]
