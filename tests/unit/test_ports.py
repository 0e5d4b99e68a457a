"""The tests' servers start on a port nobody holds: one taken between the kernel handing it out
and the server binding it makes the helper start the server again on another."""

from __future__ import annotations

import socket
import sys
import urllib.request

import pytest

from helpers import servers


def test_a_server_whose_port_was_taken_starts_again_on_another(tmp_path, monkeypatch):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        handed_out = iter([taken, servers.unused_port()])
        monkeypatch.setattr(servers, "unused_port", lambda: next(handed_out))
        tried = []

        def http_server(port: int):
            tried.append(port)
            command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
            return servers.serving(
                command, port, tmp_path / f"{port}.log", health="/", cwd=tmp_path
            )

        with servers.on_a_free_port(http_server) as url:
            answer = urllib.request.urlopen(url, timeout=5)
            assert answer.status == 200
            answer.close()
        assert len(tried) == 2 and tried[0] == taken and url.endswith(f":{tried[1]}")
        assert "Address already in use" in (tmp_path / f"{taken}.log").read_text()


def test_another_failure_is_not_retried(tmp_path):
    tried = []

    def broken(port: int):
        tried.append(port)
        command = [sys.executable, "-c", "raise SystemExit('no such option')"]
        return servers.serving(command, port, tmp_path / "log", health="/")

    with pytest.raises(AssertionError, match="no such option"), servers.on_a_free_port(broken):
        pass
    assert len(tried) == 1


def test_a_closed_port_refuses_connections():
    with servers.closed_port() as port, pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
