"""Real servers on 127.0.0.1 for the tests: `mlflow server` (on SQLite or PostgreSQL) and a
PostgreSQL cluster of Debian's `postgresql` package, each started and stopped by the test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from helpers.workspace import BIN

STARTUP_TIMEOUT_S = 180  # an mlflow server's first start runs the schema migrations (~15 s idle)
POSTGRES_USER = "postgres"  # Debian's package account: initdb and the server refuse root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    port = free_port()
    log = folder / "server.log"
    command = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", backend_uri or f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *extra,
    ]  # fmt: skip
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            # It starts uvicorn by name.
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})},
            start_new_session=True,  # its own process group, so teardown reaches its children
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{uri}/health", process, log)
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
    data, log, port = folder / "data", folder / "server.log", free_port()

    def pg(tool: str, *args: str) -> None:
        subprocess.run([*as_user, str(bin_dir / tool), *args], check=True, capture_output=True)

    try:
        pg("initdb", "-D", str(data), "-U", "mlflow", "-A", "trust", "--no-sync", "-E", "UTF8")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}"
        pg("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", database)
            yield f"postgresql://mlflow@127.0.0.1:{port}/{database}"
        finally:
            pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
