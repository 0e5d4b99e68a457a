"""The cache splits a stage reads, logged as MLflow dataset inputs of its run.

Each split is one dataset named `<dataset folder>/<split>` whose digest is the md5 dvc.lock
records, so runs that read the same version share it; its role (training, validation, test) is
the input's context, and the DVC remote goes in the input's tags.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from dlrepro.hashing import dvc_md5
from dlrepro.paths import repo_root

# A split's role in a run, as MLflow's dataset inputs name it (the `mlflow.data.context` tag).
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}


@cache
def _split_dataset_class() -> type:
    """MLflow's MetaDataset with a profile (defined on first use: mlflow imports slowly)."""
    from mlflow.data.meta_dataset import MetaDataset

    class SplitDataset(MetaDataset):
        def __init__(self, profile: dict[str, Any], **kwargs: Any) -> None:
            self._profile = profile
            super().__init__(**kwargs)

        @property
        def profile(self) -> dict[str, Any]:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self._profile)}

    return SplitDataset


def cache_split_dataset(folder: Path) -> Any:
    """A split of the prepared cache as an MLflow dataset entity.

    name: `<dataset folder>/<split>` (e.g. `plant_disease_dataset/train`); digest: the md5 that
    dvc.lock records for the split's folder, so runs that read the same version share one
    dataset in MLflow; source: the split's path in the repository (the DVC remote goes in the
    input's tags, see `log_cache_splits`); profile: images, classes, counts per class and the
    image shape.
    """
    import numpy as np
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    root = repo_root()
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(folder.resolve().relative_to(root).as_posix())
    classes = json.loads((folder.parent / "classes.json").read_text())
    labels = np.load(folder / "labels.npy")
    shape = np.load(folder / "images.npy", mmap_mode="r").shape
    profile = {
        "images": len(labels),
        "classes": classes,
        "counts": {name: int((labels == i).sum()) for i, name in enumerate(classes)},
        "image_shape": list(shape[1:]),
    }
    return _split_dataset_class()(
        profile,
        source=source,
        name=f"{Path(dataset_name(root)).name}/{folder.name}",
        digest=dvc_md5(folder),
    )


def dataset_name(root: Path) -> str:
    """The dataset the cache was prepared from, as reports/data.json names it (data.path)."""
    try:
        return json.loads((root / "reports" / "data.json").read_text())["source"]
    except (OSError, ValueError, KeyError):
        return "dataset"


def dvc_remote_url(root: Path) -> str | None:
    """The default DVC remote's URL, when .dvc/config names one."""
    import configparser

    config = configparser.ConfigParser()
    config.read([root / ".dvc" / "config", root / ".dvc" / "config.local"])
    default = config.get("core", "remote", fallback=None)
    url = config.get(f"'remote \"{default}\"'", "url", fallback=None) if default else None
    if url is None or "://" in url or Path(url).is_absolute():
        return url
    return str((root / ".dvc" / url).resolve())  # DVC resolves a relative url against .dvc/


def log_cache_splits(splits: list[Path], contexts: Mapping[str, str] | None = None) -> None:
    """Each cache split as a dataset input of the active run, with its context (training,
    validation, test: CONTEXTS, or `contexts` by split name, e.g. val as training data)."""
    if not splits:
        return
    remote = dvc_remote_url(repo_root())
    tags = {"dvc.remote": remote} if remote else {}
    roles = {**CONTEXTS, **(contexts or {})}
    log_inputs_concurrently(
        [cache_split_dataset(folder) for folder in splits],
        contexts=[roles.get(folder.name, folder.name) for folder in splits],
        tags_list=[tags or None for _ in splits],
    )


def log_inputs_concurrently(datasets: list, contexts: list[str | None], tags_list: list) -> None:
    """`mlflow.log_inputs`, safe when another run logs the same new datasets at the same moment.

    MLflow's SQL store looks each dataset up and inserts the missing ones in one transaction, so
    two queued experiments starting at once (`dvc queue start -j 2`) both insert it; the loser's
    unique-key violation (`dataset_pk`) comes back as BAD_REQUEST. The winner has committed by
    then, so one more try finds its rows and only links them to this run.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.log_inputs(datasets, contexts=contexts, tags_list=tags_list)
    except MlflowException as err:
        if err.error_code != "BAD_REQUEST":
            raise
        mlflow.log_inputs(datasets, contexts=contexts, tags_list=tags_list)
