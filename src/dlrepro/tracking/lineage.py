"""Which train run made a model folder's weights, so that what comes after (the evaluate
stage's test figures, the exported model and its registry version) points back to it.

The train run is tagged with the DVC md5 of the model folder it wrote (MODEL_TAG), the digest
`dvc.lock` records for that folder; a later stage reading the folder finds the run by the same
digest, whichever DVC experiment or clone trained it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from dlrepro.hashing import dvc_md5
from dlrepro.tracking.runs import RECIPE_TAG, experiment_id

MODEL_TAG = "dlrepro.model_md5"
TEST_PREFIX = "test/"  # test figures on the train run: beside its curves, apart from train/val


def tag_model(run_id: str, model_dir: Path) -> None:
    """Record on the train run the digest of the model folder it wrote."""
    import mlflow

    mlflow.MlflowClient().set_tag(run_id, MODEL_TAG, dvc_md5(model_dir))


def train_run_of(model_dir: Path, recipe: str) -> str | None:
    """The latest finished train run of `recipe` that wrote these exact weights, or None (a model
    folder trained before the tag existed, or tracked into another store)."""
    import mlflow

    query = (
        f"tags.`{MODEL_TAG}` = '{dvc_md5(model_dir)}' and tags.`{RECIPE_TAG}` = '{recipe}' "
        "and tags.`dlrepro.stage` = 'train' and attributes.status = 'FINISHED'"
    )
    found = mlflow.MlflowClient().search_runs(
        [experiment_id("plant")], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    return found[0].info.run_id if found else None


def log_test_metrics(run_id: str, metrics: Mapping[str, float], prefix: str = TEST_PREFIX) -> None:
    """Test figures as `test/<name>` (or `prefix<name>`, e.g. `design/`) on the train run: one
    run per recipe then holds its curves and its scores, for MLflow's compare view."""
    import mlflow
    from mlflow.entities import Metric

    mlflow.MlflowClient().log_batch(
        run_id,
        metrics=[
            Metric(prefix + key, float(value), int(time.time() * 1000), 0)
            for key, value in metrics.items()
        ],
    )
