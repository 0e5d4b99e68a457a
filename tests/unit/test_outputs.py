"""A killed run's temporaries are swept when any stage next starts; a live process's never are."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlrepro import outputs
from dlrepro.cli import run_stage
from dlrepro.outputs import (
    TEMP_PREFIX,
    replace_dir,
    staging_dir,
    sweep_temporaries,
    sweep_workspace,
    temp_prefix,
    write_json,
)


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has ended (a killed run's)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"{TEMP_PREFIX}*"))


def workspace_with_leftovers(root: Path, dead: int) -> dict[str, Path]:
    (root / "dvc.yaml").write_text("stages: {}\n")
    places = {
        "staged cache": root / "data" / f"{TEMP_PREFIX}{dead}-cache-x1" / "cache",
        "staged onnx": root / "models" / f"{TEMP_PREFIX}{dead}-plant_cnn.onnx-x2",
        "torn checkpoint": root
        / "models/plant_cnn/.dlrepro-run-text"
        / f"{TEMP_PREFIX}{dead}-last.ckpt-part",
        "json": root / "metrics" / "train" / f"{TEMP_PREFIX}{dead}-text.json-x3",
        "unnamed": root / "plots" / f"{TEMP_PREFIX}cache-abc",  # no pid: nobody writes it
        "live": root / "reports" / f"{temp_prefix('index.html')}x4",  # this process's
        "deep": root / "data" / "mine" / "a" / "b" / f"{TEMP_PREFIX}{dead}-x",  # a user's folder
    }
    for name, path in places.items():
        if name in ("staged cache",):
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"partial")
    return places


def test_the_sweep_removes_dead_runs_leftovers_and_keeps_live_ones(tmp_path, dead_pid):
    places = workspace_with_leftovers(tmp_path, dead_pid)
    sweep_workspace(tmp_path)
    kept = {name for name, path in places.items() if path.exists()}
    assert kept == {"live", "deep"}  # below the output folders' depth nothing is walked
    assert (tmp_path / "models/plant_cnn/.dlrepro-run-text").is_dir()  # a resumable run stays


def test_a_stage_start_sweeps_and_other_commands_do_not(tmp_path, dead_pid, monkeypatch):
    places = workspace_with_leftovers(tmp_path, dead_pid)
    monkeypatch.chdir(tmp_path)
    run_stage(lambda: None)  # `dlrepro predict`, `check-config`: not a stage of this workspace
    assert all(path.exists() for path in places.values())
    seen = []
    run_stage(lambda: seen.append(leftovers(tmp_path)), sweep=True)
    assert seen == [[str(p.relative_to(tmp_path)) for p in (places["deep"], places["live"])]]


def test_writers_name_their_temporaries_by_process(tmp_path):
    with staging_dir(tmp_path / "out") as staged:
        assert staged.name.startswith(f"{TEMP_PREFIX}{os.getpid()}-out-")
        sweep_temporaries(tmp_path)  # the writer's own: kept while it runs
        assert staged.is_dir()
    write_json(tmp_path / "a.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_a_live_owner_is_asked_without_a_signal_and_its_leftover_kept(tmp_path):
    """Whether the writer lives is asked with signal 0, which delivers nothing."""
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        leftover = tmp_path / "data" / f"{TEMP_PREFIX}{owner.pid}-cache-x"
        leftover.mkdir(parents=True)
        sweep_workspace(tmp_path)
        assert leftover.is_dir()
        assert owner.poll() is None  # still running: no signal reached it
    finally:
        owner.kill()
        owner.wait()


def test_the_sweep_follows_no_symlink_and_steps_over_files(tmp_path, dead_pid):
    outside = tmp_path / "elsewhere"
    theirs = outside / f"{TEMP_PREFIX}{dead_pid}-x"
    theirs.mkdir(parents=True)
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    (root / "data" / "linked").symlink_to(outside, target_is_directory=True)
    (root / "data" / "notes.txt").write_text("a file among the folders")
    sweep_workspace(root)
    assert theirs.is_dir()  # not the workspace's to sweep


def test_a_replaced_folder_leaves_only_the_new_one(tmp_path):
    target = tmp_path / "models" / "text"
    target.mkdir(parents=True)
    (target / "old.ckpt").write_text("old")
    new = tmp_path / "models" / "staged"
    new.mkdir()
    (new / "new.ckpt").write_text("new")
    replace_dir(new, target)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["text"]
    assert [p.name for p in target.iterdir()] == ["new.ckpt"]


def test_json_is_written_sorted_indented_and_newline_ended(tmp_path, monkeypatch):
    """Byte-stable metrics files (DVC hashes them): keys sorted, 2-space indent, final newline;
    written beside the file under this process's prefix, parents created, then moved in."""
    moves = []
    real_replace = os.replace
    monkeypatch.setattr(
        outputs.os, "replace", lambda src, dst: (moves.append((src, dst)), real_replace(src, dst))
    )
    path = tmp_path / "metrics" / "deep" / "m.json"
    write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    ((source, destination),) = moves
    assert Path(destination) == path
    assert Path(source).parent == path.parent
    assert Path(source).name.startswith(temp_prefix("m.json"))
