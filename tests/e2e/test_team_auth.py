"""A team server with sign-in, as docs/team.md starts it: a real `mlflow server --app-name
basic-auth` on 127.0.0.1. A stage without credentials, or with a wrong password, stops in one
line before any output is touched; a member's credentials from the environment let the same
stage track its run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dlrepro.data.gates import write_gates
from helpers.servers import mlflow_server

REPO = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "admin-password-for-the-test"
MEMBER = ("ada", "member-password-for-the-test")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("auth-server")
    config = folder / "basic_auth.ini"
    config.write_text(  # the docs' file, with its database in the test's folder
        "[mlflow]\n"
        "default_permission = EDIT\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-secret-for-the-test",  # the sign-in forms' CSRF key
    }
    with mlflow_server(folder, None, "--app-name", "basic-auth", env=env) as uri:
        import mlflow.server

        os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
        try:  # the operator creates a member's account through MLflow's API
            mlflow.server.get_app_client("basic-auth", tracking_uri=uri).create_user(*MEMBER)
        finally:
            for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(name)
        yield uri


@pytest.fixture
def workspace(tmp_path) -> Path:
    """What the perceptron chapter's stage reads: dvc.yaml, params.yaml and the gate tables."""
    for name in ("dvc.yaml", "params.yaml"):
        (tmp_path / name).write_text((REPO / name).read_text())
    gates = yaml.safe_load((REPO / "params.yaml").read_text())["data"]["gates"]
    write_gates(tmp_path / "data" / "gates", gates)
    return tmp_path


def perceptron_stage(root: Path, uri: str, *login: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(MLFLOW_TRACKING_URI=uri, DVC_STAGE="curriculum-perceptron")  # as DVC sets it
    if login:
        env.update(MLFLOW_TRACKING_USERNAME=login[0], MLFLOW_TRACKING_PASSWORD=login[1])
    return subprocess.run(
        [sys.executable, "-m", "dlrepro.stages.curriculum", "perceptron"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("login", [(), (MEMBER[0], "a wrong password")], ids=["anonymous", "wrong"])
def test_a_stage_without_valid_credentials_stops_in_one_line(server, workspace, login):
    done = perceptron_stage(workspace, server, *login)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(errors) == 1, done.stderr[-2000:]
    assert errors[0].startswith(f"error: MLflow tracking server {server} asks to sign in (HTTP 401")
    assert "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in errors[0]
    assert not (workspace / "metrics").exists() and not (workspace / "plots").exists()


def test_a_members_credentials_track_the_stage_on_the_server(server, workspace, monkeypatch):
    done = perceptron_stage(workspace, server, *MEMBER)
    assert done.returncode == 0, done.stderr[-3000:]
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", MEMBER[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", MEMBER[1])
    client = mlflow.MlflowClient(tracking_uri=server)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, "tags.`dvc.stage` = 'curriculum-perceptron'")
    (run,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]  # not the nested fits
    assert len(runs) == 5  # the stage's run and one fit per gate under it
    assert run.info.status == "FINISHED"
    assert run.data.metrics["AND.accuracy"] == 1.0
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "a wrong password")
    with pytest.raises(mlflow.exceptions.MlflowException, match="401"):
        client.get_run(run.info.run_id)  # the run is the server's, behind sign-in
