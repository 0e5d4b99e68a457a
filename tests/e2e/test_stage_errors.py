"""A stage given bad config or a dead tracking server stops in one line and touches no output."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A repository-shaped folder with earlier outputs of the perceptron stage in place."""
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    for folder in ("metrics/curriculum", "plots/curriculum/perceptron", "data/gates"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "metrics/curriculum/perceptron.json").write_text('{"earlier": true}\n')
    (tmp_path / "plots/curriculum/perceptron/errors.csv").write_text("epoch\n1\n")
    return tmp_path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "params.yaml"
    }


def _run_stage(root: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DVC_ROOT": str(root), **env}
    return subprocess.run(
        [sys.executable, "-m", "dlrepro.stages.curriculum", "perceptron"],
        cwd=root,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_invalid_value_stops_before_writing(workspace):
    params = workspace / "params.yaml"
    params.write_text(params.read_text().replace("    lr: 0.1\n", "    lr: -1\n", 1))
    before = _snapshot(workspace)
    done = _run_stage(workspace)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: curriculum.perceptron.lr=-1.0: must be > 0"
    assert _snapshot(workspace) == before
    assert not (workspace / "mlflow.db").exists()


def test_unreachable_tracking_server_stops_before_writing(workspace):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = _snapshot(workspace)
    done = _run_stage(workspace, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not reachable" in lines[0] and str(port) in lines[0]
    assert _snapshot(workspace) == before


def test_unknown_chapter_is_rejected_by_the_cli(workspace):
    done = subprocess.run(
        [sys.executable, "-m", "dlrepro.stages.curriculum", "transformers"],
        cwd=workspace,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "invalid choice: 'transformers'" in done.stderr
