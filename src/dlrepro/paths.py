"""Where the repository is and where each kind of output goes (the same layout for every stage)."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """DVC_ROOT inside a DVC stage; otherwise the nearest folder above cwd holding dvc.yaml."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


DATA = Path("data")
METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")
MODELS = Path("models")
GATES = DATA / "gates"
LEAVES = DATA / "plant_disease_dataset"  # the generated dataset, in the text's layout
CACHE = DATA / "cache"  # decoded uint8 arrays of the dataset `data.path` points at
PLANT_MODEL_DIR = MODELS / "plant_cnn"
