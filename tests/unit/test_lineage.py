"""A model folder leads back to the train run that wrote it: by the folder's DVC md5, the
recipe, and a finished run only (a real SQLite store in tmp_path)."""

from __future__ import annotations

import pytest

from dlrepro.tracking import lineage
from dlrepro.tracking.runs import RECIPE_TAG, experiment_id


@pytest.fixture
def store(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def train_run(client, recipe: str, finished: bool = True) -> str:
    run = client.create_run(
        experiment_id("plant"), tags={"dlrepro.stage": "train", RECIPE_TAG: recipe}
    )
    if finished:
        client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_the_train_run_is_found_by_the_weights_it_wrote(store, tmp_path):
    weights = tmp_path / "models" / "tuned"
    weights.mkdir(parents=True)
    (weights / "last.ckpt").write_bytes(b"weights")
    other = tmp_path / "models" / "other"
    other.mkdir()
    (other / "last.ckpt").write_bytes(b"other weights")

    wrote_it, unfinished = train_run(store, "tuned"), train_run(store, "tuned", finished=False)
    lineage.tag_model(wrote_it, weights)
    lineage.tag_model(unfinished, weights)
    assert lineage.train_run_of(weights, "tuned") == wrote_it
    assert lineage.train_run_of(weights, "text") is None  # another recipe's run
    assert lineage.train_run_of(other, "tuned") is None  # other weights

    lineage.log_test_metrics(wrote_it, {"accuracy": 0.965})
    assert store.get_run(wrote_it).data.metrics == {"test/accuracy": 0.965}
