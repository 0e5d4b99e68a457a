"""`dlrepro check-config`, the stage error boundary's MLflow branch, and two tracking helpers
that no stage test reaches on its own: `log_outcome`'s filtering and batching, and the DVC
remote a dataset input names."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from dlrepro.cli import main, run_stage
from dlrepro.tracking.datasets import dvc_remote_url

REPO = Path(__file__).resolve().parents[2]


def test_check_config_prints_the_validated_config(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    main(["check-config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert printed["recipes"]["tuned"]["max_epochs"] == params["recipes"]["tuned"]["max_epochs"]
    assert printed["data"]["image_size"] == params["data"]["image_size"]


def test_check_config_refuses_a_bad_value_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["recipes"]["tuned"]["scheduler"]["max_lr"] = -1  # torch's OneCycleLR would take it
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit) as done:
        main(["check-config", str(bad)])
    assert done.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("error: recipes.tuned.scheduler.max_lr")


def test_a_tracking_failure_after_start_up_is_one_line(capsys, monkeypatch):
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")

    def stage() -> None:
        raise MlflowException("API request to endpoint /api/2.0/mlflow/runs/log-batch failed")

    with pytest.raises(SystemExit) as done:
        run_stage(stage)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "http://127.0.0.1:9" in err


def test_another_error_is_not_disguised_as_a_tracking_one():
    def stage() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_stage(stage)


def test_log_outcome_drops_nan_and_sends_at_most_1000_metrics_a_request(tmp_path, monkeypatch):
    import mlflow

    from dlrepro.tracking.runs import log_outcome

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    sizes: list[int] = []
    real = mlflow.MlflowClient.log_batch

    def counted(self, run_id, metrics=(), **kwargs):
        sizes.append(len(metrics))
        return real(self, run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", counted)
    try:
        run = client.create_run(client.create_experiment("outcome"))
        series = {"loss": [(step, 1.0 / (step + 1)) for step in range(2500)]}
        metrics = {"accuracy": 0.75, "auc": math.nan, "nested": {"ok": True}, "name": "text"}
        log_outcome(run.info.run_id, metrics, series, [])
    finally:
        mlflow.set_tracking_uri(None)
    logged = client.get_run(run.info.run_id).data.metrics
    assert logged == {"accuracy": 0.75, "nested.ok": 1.0, "loss": 1.0 / 2500}
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2500
    assert sum(sizes) == 2 + 2500 and max(sizes) == 1000


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "[core]\n    remote = store\n['remote \"store\"']\n    url = ../../shared/cache\n",
            "{root}/../shared/cache",
        ),
        (
            "[core]\n    remote = s3\n['remote \"s3\"']\n    url = s3://bucket/dlrepro\n",
            "s3://bucket/dlrepro",
        ),
        ("[core]\n    remote = abs\n['remote \"abs\"']\n    url = /srv/dvc\n", "/srv/dvc"),
        ("['remote \"unused\"']\n    url = /srv/dvc\n", None),  # no default remote
    ],
)
def test_the_dvc_remote_is_the_default_one_resolved_as_dvc_resolves_it(tmp_path, config, expected):
    root = tmp_path / "repo"
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc" / "config").write_text(config)
    found = dvc_remote_url(root)
    if expected is None or "://" in expected or not expected.startswith("{root}"):
        assert found == expected
    else:
        assert found == str((tmp_path / "shared" / "cache").resolve())
