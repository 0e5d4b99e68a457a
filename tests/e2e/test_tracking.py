"""Tracking: where runs go, the tags they carry, and the one-line failure when a server is down."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dlrepro.config.load import flatten
from dlrepro.errors import TrackingError
from dlrepro.hashing import dvc_md5, file_md5
from dlrepro.tracking.logger import interrupts_deferred, mlflow_logger
from dlrepro.tracking.runs import experiment_id
from dlrepro.tracking.store import ensure_reachable, tracking_uri, ui_links
from helpers.servers import closed_port, mlflow_server

DVC = str(Path(sys.executable).parent / "dvc")


def test_embedded_store_is_sqlite_at_the_repo_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_env_var_selects_a_server(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri() == "http://127.0.0.1:5999"


def test_unreachable_server_is_one_line(monkeypatch):
    with closed_port() as port, pytest.raises(TrackingError) as caught:
        uri = f"http://127.0.0.1:{port}"
        ensure_reachable(uri)
    message = str(caught.value)
    assert uri in message and "not reachable" in message and "\n" not in message


def test_md5_tags_equal_what_dvc_records(tmp_path):
    """The `dvc.md5.<path>` tags must match dvc.lock, so compare with a real `dvc add`."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("x,y\n1,2\n")
    (data / "sub" / "b.txt").write_text("leaf\n")
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], [DVC, "add", "-q", "data"]):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    recorded = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]["md5"]
    assert dvc_md5(data) == recorded
    assert dvc_md5(data / "a.csv") == file_md5(data / "a.csv")


def test_flatten_nests_with_dots():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {
        "a.b": 1,
        "a.c.d": 2,
        "e": 3,
    }


def test_experiments_are_marked_as_model_training_and_make_ui_links_open_that_view(
    monkeypatch, tmp_path
):
    """MLflow 3's UI opens an experiment in its GenAI view unless told otherwise: each dlrepro
    experiment carries the model-training kind (also one made before the mark), and the links
    `make ui` prints ask for the model-training view."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    mlflow.set_tracking_uri(uri)
    older = mlflow.create_experiment("dlrepro-data")  # as an earlier version left it
    mlflow.create_experiment("someone-else")
    assert experiment_id("data") == older
    plant = experiment_id("plant")
    client = mlflow.MlflowClient(tracking_uri=uri)
    for experiment in (older, plant):
        tags = client.get_experiment(experiment).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development"

    links = ui_links("http://127.0.0.1:5000/", uri)
    assert links == [
        f"dlrepro-data: http://127.0.0.1:5000/#/experiments/{older}/runs?workflowType=machine_learning",
        f"dlrepro-plant: http://127.0.0.1:5000/#/experiments/{plant}/runs?workflowType=machine_learning",
        "model registry: http://127.0.0.1:5000/#/models?workflowType=machine_learning",
    ]


def test_an_experiment_created_by_a_concurrent_run_is_joined(monkeypatch, tmp_path):
    """Two queued experiments starting at once (`dvc queue start -j 2`, seen on PostgreSQL): both
    find no experiment and both create it; the loser gets RESOURCE_ALREADY_EXISTS from the real
    server and must join the winner's experiment, not fail its stage."""
    import mlflow

    with mlflow_server(tmp_path, None) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        lookup = mlflow.get_experiment_by_name
        winner = []

        def racing_lookup(name):  # the other run creates it between our lookup and our create
            if not winner:
                winner.append(mlflow.MlflowClient(uri).create_experiment(name))
                return None
            return lookup(name)

        monkeypatch.setattr(mlflow, "get_experiment_by_name", racing_lookup)
        assert experiment_id("plant") == winner[0]
        tags = mlflow.MlflowClient(uri).get_experiment(winner[0]).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.fixture(scope="module")
def refusing_server(tmp_path_factory):
    """A real `mlflow server` that answers /health but refuses every API call (HTTP 403):
    `--allowed-hosts example.org`, while the client connects to 127.0.0.1."""
    folder = tmp_path_factory.mktemp("refusing")
    with mlflow_server(folder, None, "--allowed-hosts", "example.org") as uri:
        yield uri


def test_a_server_that_answers_but_refuses_is_one_line(refusing_server):
    with pytest.raises(TrackingError) as caught:
        ensure_reachable(refusing_server)
    message = str(caught.value)
    assert message.startswith(f"MLflow tracking server {refusing_server} refused the request")
    assert "HTTP 403" in message and "--allowed-hosts" in message and "\n" not in message


def test_a_stage_meeting_a_refusing_server_touches_no_output(refusing_server, tmp_path):
    """The train stage checks before it empties models/plant_cnn/<recipe> (a 40-line traceback
    and both checkpoints gone, before the check made a real call)."""
    import os
    import shutil

    repo = Path(__file__).resolve().parents[2]
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(repo / name, tmp_path / name)
    model_dir = tmp_path / "models" / "plant_cnn" / "text"
    model_dir.mkdir(parents=True)
    (model_dir / "best.ckpt").write_bytes(b"earlier weights")
    done = subprocess.run(
        [sys.executable, "-m", "dlrepro.stages.train", "text"],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": refusing_server, "DVC_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refused the request (HTTP 403" in errors[0], done.stderr
    assert (model_dir / "best.ckpt").read_bytes() == b"earlier weights"


def test_a_ctrl_c_during_a_tracking_write_takes_effect_when_the_write_ends():
    """The interrupt waits for the block (an MLflow write) and then arrives as Ctrl-C would."""
    import os
    import signal
    import time

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's Ctrl-C
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt), interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal is handled here, and nothing is raised
            steps.append("write finished")
        assert steps == ["write finished"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with interrupts_deferred():  # no Ctrl-C, no interrupt
            steps.append("second write")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert steps == ["write finished", "second write"]


def test_the_stage_logger_is_lightnings_mlflow_logger_with_guarded_writes(tmp_path, monkeypatch):
    """A Ctrl-C that arrives while the logger writes lets the write finish, then interrupts."""
    import os
    import signal

    from mlflow.tracking import MlflowClient
    from pytorch_lightning.loggers import MLFlowLogger

    logger = mlflow_logger(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert isinstance(logger, MLFlowLogger)
    logger.log_metrics({"val/acc": 0.5}, step=0)
    real_log_batch = MlflowClient.log_batch

    def pressed_mid_write(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the write is under way
        return real_log_batch(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", pressed_mid_write)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's Ctrl-C
    try:
        with pytest.raises(KeyboardInterrupt):
            logger.log_metrics({"val/acc": 0.75}, step=1)
    finally:
        signal.signal(signal.SIGINT, previous)
        monkeypatch.undo()
    logger.finalize()
    history = logger.experiment.get_metric_history(logger.run_id, "val/acc")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.75)]  # the cut write landed
