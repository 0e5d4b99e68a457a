"""Real servers on 127.0.0.1 for the tests: `mlflow server` (on SQLite or PostgreSQL) and a
PostgreSQL cluster of Debian's `postgresql` package, each started and stopped by the test.

Ports: a server is given a port the kernel just handed out (`unused_port`), and between that
moment and its bind another process may take it. Every server start here goes through
`on_a_free_port`, which starts it again on another port when its log says the address was taken;
`closed_port` gives a port where nothing can answer, held bound (never listening) by the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

from helpers.workspace import BIN

STARTUP_TIMEOUT_S = 180  # an mlflow server's first start runs the schema migrations (~15 s idle)
POSTGRES_USER = "postgres"  # Debian's package account: initdb and the server refuse root


T = TypeVar("T")
PORT_ATTEMPTS = 5
# What uvicorn, gunicorn, PostgreSQL and torch print when the port is taken
PORT_TAKEN = re.compile(r"address already in use|could not bind|errno 98", re.IGNORECASE)


class PortTaken(Exception):
    """The server could not bind its port: another process took it first."""


def unused_port() -> int:
    """A port the kernel hands out now; a server given it may find it taken (see on_a_free_port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def on_a_free_port(start: Callable[[int], AbstractContextManager[T]]) -> Iterator[T]:
    """`start(port)`'s context on a port nobody uses; when the port was taken before the server
    bound it (`start` raises PortTaken, or its failure's text says so), again on another."""
    for attempt in range(PORT_ATTEMPTS):
        try:
            started = start(unused_port())
            value = started.__enter__()
        except Exception as err:
            taken = isinstance(err, PortTaken) or PORT_TAKEN.search(str(err))
            if taken and attempt < PORT_ATTEMPTS - 1:
                continue
            raise
        break
    try:
        yield value
    except BaseException as err:
        if not started.__exit__(type(err), err, err.__traceback__):
            raise
    else:
        started.__exit__(None, None, None)


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 where a connection is refused: bound by this process, not listening,
    so no other process can start a server on it while the test uses it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    """Until `url` answers 200; fails with the server's log if it exits or never answers."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited ({process.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not up after {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    """The server runs uvicorn and a job runner as children: signal the session it leads."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def mlflow_server(
    folder: Path, backend_uri: str | None = None, *extra: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`mlflow server` on a free port with a proxied artifact store in `folder` and its backend
    at `backend_uri` (an SQLite file in `folder` by default), `env` added to its environment;
    yields its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", backend_uri or f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--workers", "1", *extra,
    ]  # fmt: skip
    with on_a_free_port(
        lambda port: serving([*command, "--port", str(port)], port, folder / "server.log", env)
    ) as uri:
        yield uri


@contextlib.contextmanager
def serving(
    command: list[str],
    port: int,
    log: Path,
    env: dict[str, str] | None = None,
    health: str = "/health",
    cwd: Path | None = None,
) -> Iterator[str]:
    """A server `command` that listens on `port`, started in its own session with the venv's
    bin first on PATH (MLflow starts uvicorn by name), `env` added; yields its URL once `health`
    answers, and stops it (and its children) afterwards. PortTaken when the port was taken."""
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})},
            start_new_session=True,  # its own process group, so teardown reaches its children
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_up(f"{uri}{health}", process, log)
        except AssertionError:
            if PORT_TAKEN.search(log.read_text()):
                raise PortTaken(port) from None
            raise
        yield uri
    finally:
        stop(process)


def postgres_bin() -> Path | None:
    """The server binaries of Debian's `postgresql` package (not on PATH there), if installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextlib.contextmanager
def postgres(database: str = "mlflow") -> Iterator[str]:
    """A throwaway PostgreSQL cluster (`initdb` into a temporary folder, `pg_ctl` on 127.0.0.1 and
    a free port) with one database; yields its SQLAlchemy URI and removes everything after."""
    bin_dir = postgres_bin()
    assert bin_dir is not None, "PostgreSQL server binaries are not installed"
    as_user = ["runuser", "-u", POSTGRES_USER, "--"] if os.geteuid() == 0 else []
    # Outside pytest's tmp folders: those are private to root, and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="dlrepro-postgres-"))
    if as_user:
        shutil.chown(folder, POSTGRES_USER)
    data, log = folder / "data", folder / "server.log"

    def pg(tool: str, *args: str) -> None:
        done = subprocess.run([*as_user, str(bin_dir / tool), *args], capture_output=True)
        if done.returncode:
            logged = log.read_text() if log.exists() else ""
            raise AssertionError(f"{tool} failed:\n{done.stdout!r}\n{done.stderr!r}\n{logged}")

    @contextlib.contextmanager
    def cluster(port: int) -> Iterator[str]:
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}"
        log.unlink(missing_ok=True)
        pg("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", database)
            yield f"postgresql://mlflow@127.0.0.1:{port}/{database}"
        finally:
            pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")

    try:
        pg("initdb", "-D", str(data), "-U", "mlflow", "-A", "trust", "--no-sync", "-E", "UTF8")
        with on_a_free_port(cluster) as uri:
            yield uri
    finally:
        shutil.rmtree(folder, ignore_errors=True)
