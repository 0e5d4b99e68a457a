"""Shared fixtures: the composed config, and a repository-shaped temp folder with the gate data."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

from dlrepro.chapters._common.context import ChapterContext
from dlrepro.config import Config, load_config
from dlrepro.config.compose import compose
from dlrepro.data.gates import write_gates

matplotlib.use("Agg")  # figures are files here, never windows

# Under pytest-xdist (`make test` runs two modules at a time, each on its own worker).
# Each worker's torch, and the stage processes it starts, would otherwise take every core, and
# OpenMP threads spinning on shared cores make a training several times slower: split the cores.
# Set before anything imports torch (the imports above do not); subprocesses inherit it.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cfg(tmp_path_factory) -> Config:
    """conf/ composed afresh (not the checked-in params.yaml, which has its own test)."""
    params = compose(tmp_path_factory.mktemp("conf") / "params.yaml")
    return load_config(params)


@pytest.fixture
def ctx(tmp_path: Path, cfg: Config) -> ChapterContext:
    """A chapter context over a temp root that holds the prepared gate tables, no tracking."""
    write_gates(tmp_path / "data" / "gates", cfg.data.gates)
    return ChapterContext(root=tmp_path)
