"""Tracking-server faults told apart, each against a real server: one that stalls (from the start,
or in the middle of a stage), a real `mlflow server` killed in the middle of a stage, one that
refuses (HTTP 403) or answers an error; and runs left RUNNING by a killed process, ended when
their stage next starts unless it resumes them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlrepro.cli import run_stage
from dlrepro.errors import TrackingError
from dlrepro.tracking import faults
from dlrepro.tracking.runs import (
    ENDED_TAG,
    PROCESS_TAG,
    interrupted_run,
    log_outcome,
    stage_run,
)
from dlrepro.tracking.store import ensure_reachable, tracking_uri
from helpers.servers import mlflow_server

REPO = Path(__file__).resolve().parents[2]
# Small waits for the tests: 2 tries of 2 s, no backoff before the first retry.
FAST = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "2",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
}
FAST_BOUND_S = 4.0
SLACK_S = 3.0  # a stage's start-up after its first request, and its exit, on a busy machine


@pytest.fixture(autouse=True)
def _own_http_settings(monkeypatch):
    """Each test starts with none of MLflow's HTTP settings, and what it (or `give_up`) sets is
    undone afterwards."""
    for name in {*faults.HTTP_DEFAULTS, *faults.GIVE_UP}:
        monkeypatch.delenv(name, raising=False)


class Stalling:
    """A server on 127.0.0.1 (port 0). Alone, it answers `GET /health` with 200 and holds every
    other request unanswered. With `upstream` (a port), it passes bytes both ways until `stall`
    is set, then holds every request. `held`: when each held request arrived (monotonic)."""

    def __init__(self, upstream: int | None = None) -> None:
        self.upstream = upstream
        self.stall = threading.Event()
        self.held: list[float] = []
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            handler = self._stall_alone if self.upstream is None else self._pass
            threading.Thread(target=handler, args=(client,), daemon=True).start()

    def _stall_alone(self, client: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = client.recv(65536)
            if not chunk:
                return
            request += chunk
        if request.startswith(b"GET /health "):
            client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
            client.close()
        else:
            self.held.append(time.monotonic())  # and never answered

    def _pass(self, client: socket.socket) -> None:
        assert self.upstream is not None
        server = socket.create_connection(("127.0.0.1", self.upstream))
        self._sockets.append(server)
        threading.Thread(target=self._copy, args=(server, client), daemon=True).start()
        while chunk := _recv(client):
            if self.stall.is_set():
                self.held.append(time.monotonic())
                return  # the request goes nowhere; the client's socket stays open
            server.sendall(chunk)

    @staticmethod
    def _copy(source: socket.socket, target: socket.socket) -> None:
        while chunk := _recv(source):
            with contextlib.suppress(OSError):
                target.sendall(chunk)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def stalling() -> Iterator[Stalling]:
    server = Stalling()
    yield server
    server.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """A real `mlflow server` that serves 127.0.0.1 and refuses (HTTP 403) any other Host header,
    e.g. `localhost`: one server for the tests that do not kill it."""
    with mlflow_server(
        tmp_path_factory.mktemp("server"), None, "--allowed-hosts", "127.0.0.1:*"
    ) as uri:
        yield uri


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def run_stage_in_process(main, capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exited:
        run_stage(main)
    return int(exited.value.code or 0), error_lines(capsys.readouterr().err)


def test_http_defaults_bound_each_call_and_yield_to_the_users_own(monkeypatch):
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
        MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER,
    )

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    tracking_uri()  # what every tracking call asks first
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 20
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 2
    assert MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get() == 1
    assert MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER.get() is False
    assert faults.call_bound_s() == 3 * 20 + (1 * 2 + 1)  # 3 tries, one backoff of at most 3 s

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")  # a user's own setting wins
    tracking_uri()
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 300
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert faults.call_bound_s() == 300


@pytest.mark.slow
def test_a_server_that_stalls_ends_the_stage_within_the_bound_in_one_line(stalling, tmp_path):
    """It answers /health, then never answers the start-up check's API call: the stage ends one
    call's bound after that call, with one line saying so, and writes nothing."""
    for name in ("params.yaml", "dvc.yaml"):
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    env = {**os.environ, **FAST, "MLFLOW_TRACKING_URI": stalling.uri, "DVC_ROOT": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "dlrepro.stages.gates"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    ended = time.monotonic()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = error_lines(done.stderr)
    assert errors == [
        f"error: MLflow tracking server {stalling.uri} did not answer within 2 s; check that it "
        "is not stuck or overloaded (its log, its database), raise MLFLOW_HTTP_REQUEST_TIMEOUT, "
        "or unset MLFLOW_TRACKING_URI to track into the embedded mlflow.db"
    ], done.stderr
    assert len(stalling.held) == 2  # the first try and its one retry
    assert ended - stalling.held[0] < FAST_BOUND_S + SLACK_S
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_a_server_that_stalls_in_the_middle_of_a_stage_costs_one_bound(server, monkeypatch, capsys):
    """A real server behind a relay that stops passing requests on: the call that meets the stall
    waits one bound; ending the run then tries once, briefly, instead of a second bound."""
    import mlflow

    relay = Stalling(upstream=int(server.rsplit(":", 1)[1]))
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", relay.uri)
    started: list[float] = []

    def main() -> None:
        ensure_reachable()
        with stage_run("gates", "data", {"gates": ["and"]}, inputs=[]):
            relay.stall.set()
            started.append(time.monotonic())
            mlflow.log_metric("gates", 1.0)

    try:
        status, errors = run_stage_in_process(main, capsys)
    finally:
        relay.close()
    took = time.monotonic() - started[0]
    assert status == 2
    assert len(errors) == 1 and f"{relay.uri} did not answer within 2 s" in errors[0], errors
    assert FAST_BOUND_S <= took < FAST_BOUND_S + 2.0, took


def kill_listener(uri: str) -> None:
    """`kill -9` of the server answering at `uri`, and of its process group (uvicorn, jobs)."""
    import psutil

    port = int(uri.rsplit(":", 1)[1])
    pids = {
        c.pid
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
    }
    assert pids, f"nothing listens on {port}"
    for pid in pids:
        group = os.getpgid(pid)
        assert group != os.getpgrp(), "the server shares the tests' process group"
        os.killpg(group, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"port {port} still answers")


@pytest.mark.slow
def test_a_server_killed_in_the_middle_of_a_stage_is_not_reachable(tmp_path, monkeypatch, capsys):
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    with mlflow_server(tmp_path / "server", None) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

        def main() -> None:
            ensure_reachable()
            with stage_run("gates", "data", {"gates": ["and"]}, inputs=[]) as run:
                kill_listener(uri)
                log_outcome(run.info.run_id, {"gates": 1}, {}, [])

        status, errors = run_stage_in_process(main, capsys)
    assert status == 2
    assert errors == [
        f"error: MLflow tracking server {uri} is not reachable ([Errno 111] Connection refused); "
        "start it, or unset MLFLOW_TRACKING_URI to track into the embedded mlflow.db"
    ]


@pytest.mark.slow
def test_a_refusal_and_an_error_answer_each_get_their_own_line(server, monkeypatch, capsys):
    """HTTP 403 (a Host header outside `--allowed-hosts`) blames the hosts and the credentials;
    any other error status (HTTP 404 for a run the store lacks) points at the server's log."""
    import mlflow

    refused = server.replace("127.0.0.1", "localhost")
    with pytest.raises(TrackingError) as caught:
        ensure_reachable(refused)
    assert str(caught.value).startswith(
        f"MLflow tracking server {refused} refused the request (HTTP 403: "
    )
    assert "--allowed-hosts and your credentials" in str(caught.value)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", refused)
    status, errors = run_stage_in_process(
        lambda: mlflow.MlflowClient(refused).search_experiments(), capsys
    )
    assert status == 2 and len(errors) == 1 and "refused the request (HTTP 403" in errors[0]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    status, errors = run_stage_in_process(
        lambda: mlflow.MlflowClient(server).get_run("0" * 32), capsys
    )
    assert status == 2 and len(errors) == 1, errors
    assert errors[0].startswith(f"error: MLflow tracking server {server} answered HTTP 404 (")
    assert "credentials" not in errors[0] and "not reachable" not in errors[0]


HOLD_A_RUN = """
import sys, time
from dlrepro.tracking.runs import FINGERPRINT_TAG, stage_run
recipe, fingerprint = sys.argv[1:]
with stage_run("train", "plant", {}, [], recipe=recipe, tags={FINGERPRINT_TAG: fingerprint}) as run:
    print("run", run.info.run_id, flush=True)
    time.sleep(600)
"""


def hold_runs(uri: str, *runs: tuple[str, str]) -> tuple[list[subprocess.Popen], list[str]]:
    """One process per (recipe, fingerprint) that starts its train run and stays in it; and the
    runs' ids."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", HOLD_A_RUN, recipe, fingerprint],
            cwd=REPO,
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            stdout=subprocess.PIPE,
            text=True,
        )
        for recipe, fingerprint in runs
    ]
    ids = []
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline()
        while line and not line.startswith("run "):
            line = process.stdout.readline()
        ids.append(line.removeprefix("run ").strip())
    return processes, ids


@pytest.mark.slow
def test_runs_of_a_killed_stage_end_failed_at_its_next_start_unless_resumed(server, monkeypatch):
    """Three processes hold train runs: two of recipe `text` (fingerprints `a` and `b`), one of
    `tuned`. While they live, a new start of train@text leaves their runs alone; once they are
    killed, the next start of train@text resuming fingerprint `b` (found as the train stage finds
    it) ends the dead `a` run as FAILED, continues `b`, and leaves `tuned` to its own stage."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    client = mlflow.MlflowClient(server)
    processes, ids = hold_runs(server, ("text", "a"), ("text", "b"), ("tuned", "a"))
    dead, resumed, other = ids
    try:
        assert all(ids), "a process did not start its run"
        with stage_run("train", "plant", {}, inputs=[], recipe="text"):
            pass
        assert {client.get_run(r).info.status for r in ids} == {"RUNNING"}
    finally:
        for process in processes:
            process.kill()
            process.wait()

    found = interrupted_run("plant", "b")
    assert found == resumed
    with stage_run("train", "plant", {}, inputs=[], recipe="text", continue_run=found) as run:
        assert run.info.run_id == resumed
        assert client.get_run(resumed).info.status == "RUNNING"
        assert client.get_run(resumed).data.tags[PROCESS_TAG].split(":")[1] == str(os.getpid())
        ended = client.get_run(dead)
        assert ended.info.status == "FAILED"
        assert ended.data.tags[PROCESS_TAG] in ended.data.tags[ENDED_TAG]
        assert client.get_run(other).info.status == "RUNNING"
    assert client.get_run(resumed).info.status == "FINISHED"
    assert ENDED_TAG not in client.get_run(resumed).data.tags


@pytest.mark.slow
def test_train_keeps_its_model_when_the_folder_is_a_link_or_the_server_dies_mid_fit(tmp_path):
    """The text recipe trained once (small profile, embedded store); then two reruns that must
    train again (a finished run of other settings recorded): with the model folder replaced by
    a symbolic link, refused before the fit; with a real server killed after the first epoch's
    checkpoint, one line naming the server. The model folder is byte for byte what it was."""
    import json
    import shutil

    import yaml

    from helpers.workspace import clone_copy, dvc, run

    root = clone_copy(tmp_path / "ws")
    dvc(root, "repro", "train@text")
    model = root / "models" / "plant_cnn" / "text"
    (model / "run.json").write_text(json.dumps({"fingerprint": "other", "finished": True}))
    before = {p.name: p.read_bytes() for p in model.iterdir()}

    def one_line(done: subprocess.CompletedProcess, words: str) -> None:
        assert done.returncode == 2, done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        errors = error_lines(done.stderr)
        assert len(errors) == 1 and words in errors[0], done.stderr[-2000:]

    elsewhere = tmp_path / "elsewhere"
    shutil.move(model, elsewhere)
    model.symlink_to(elsewhere)
    train = (sys.executable, "-m", "dlrepro.stages.train", "text")
    one_line(run(root, *train, check=False), "a symbolic link where dlrepro writes")
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == before
    model.unlink()
    shutil.move(elsewhere, model)

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["recipes"]["text"]["max_epochs"] = 50  # still fitting when the server dies
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with mlflow_server(tmp_path / "server", None) as uri:
        from helpers.workspace import env

        child = subprocess.Popen(
            train,
            cwd=root,
            env=env(root, MLFLOW_TRACKING_URI=uri, **FAST),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        first_epoch = root / "models" / "plant_cnn" / ".dlrepro-run-text" / "last.ckpt"
        deadline = time.monotonic() + 300
        while not first_epoch.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first_epoch.exists(), "the fit never saved its first epoch"
        kill_listener(uri)
        _, stderr = child.communicate(timeout=300)
    one_line(subprocess.CompletedProcess(train, child.returncode, "", stderr), "not reachable")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
