"""A killed run's temporaries are swept when any stage next starts; a live process's never are."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlrepro import outputs
from dlrepro.cli import run_stage
from dlrepro.outputs import (
    TEMP_PREFIX,
    fresh_dir,
    replace_dir,
    save_figure,
    staging_dir,
    sweep_temporaries,
    sweep_workspace,
    temp_prefix,
    write_csv,
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
    # Every signal back to its default action, which ends the process: one started under
    # nohup (or a test runner) would otherwise inherit SIGHUP ignored and hide a stray signal.
    code = (
        "import signal, time\n"
        "for s in signal.valid_signals():\n"
        "    try: signal.signal(s, signal.SIG_DFL)\n"
        "    except (OSError, ValueError): pass\n"
        "time.sleep(60)"
    )
    owner = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.5)  # its handlers in place
    try:
        leftover = tmp_path / "data" / f"{TEMP_PREFIX}{owner.pid}-cache-x"
        leftover.mkdir(parents=True)
        sweep_workspace(tmp_path)
        assert leftover.is_dir()
        with pytest.raises(subprocess.TimeoutExpired):  # still running: no signal reached it
            owner.wait(timeout=1)
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


@pytest.mark.parametrize("stale", [False, True], ids=["plain", "stale aside folder"])
def test_a_replaced_folder_leaves_only_the_new_one(tmp_path, stale):
    """The old copy is moved aside under this process's name for the target; one left there
    (a replace of this pid that died between its renames) is cleared first, not renamed onto."""
    target = tmp_path / "models" / "text"
    target.mkdir(parents=True)
    (target / "old.ckpt").write_text("old")
    if stale:
        aside = target.parent / f"{temp_prefix(target.name)}old"
        aside.mkdir()
        (aside / "left.ckpt").write_text("left")
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


def test_a_fresh_dir_is_empty_and_a_link_in_its_place_is_refused(tmp_path):
    """What a stage writes into starts empty (nested parents made); a symlink there is one
    line and neither it nor its target is touched."""
    from dlrepro.errors import DataError

    folder = tmp_path / "models" / "deep" / "text"
    assert fresh_dir(folder) == folder and list(folder.iterdir()) == []
    (folder / "sub").mkdir()
    (folder / "sub" / "old.ckpt").write_text("old")
    (folder / "old.json").write_text("{}")
    fresh_dir(folder)
    assert folder.is_dir() and list(folder.iterdir()) == []
    target = tmp_path / "kept"
    target.mkdir()
    (target / "a").write_text("a")
    link = tmp_path / "linked"
    link.symlink_to(target, target_is_directory=True)
    message = (
        f"{link}: a symbolic link where dlrepro writes an output folder; replace it with a "
        "folder (DVC's cache links files, never this folder)"
    )
    with pytest.raises(DataError) as caught:
        fresh_dir(link)
    assert str(caught.value) == message
    staged = tmp_path / "staged"
    staged.mkdir()
    with pytest.raises(DataError) as caught:
        replace_dir(staged, link)
    assert str(caught.value) == message
    assert link.is_symlink() and (target / "a").read_text() == "a" and staged.is_dir()


def test_a_csv_has_every_rows_columns_in_first_seen_order(tmp_path):
    path = tmp_path / "plots" / "deep" / "t.csv"
    rows = [{"epoch": 0, "loss": 0.5}, {"epoch": 1, "acc": 0.75, "loss": 0.25}]
    assert write_csv(path, rows) == path
    assert path.read_bytes() == b"epoch,loss,acc\n0,0.5,\n1,0.25,0.75\n"
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]


def test_a_figure_is_a_byte_stable_png_without_the_software_tag_and_is_closed(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def figure():
        fig, ax = plt.subplots(figsize=(2, 1), dpi=50)  # saved at 100 dpi whatever it shows at
        ax.plot([0, 1], [1, 0])
        return fig

    first, second = tmp_path / "a" / "f.png", tmp_path / "b" / "f.png"
    fig = figure()
    other = plt.figure()  # the current figure is not the one saved: that one is closed
    assert save_figure(fig, first) == first
    assert not plt.fignum_exists(fig.number) and plt.fignum_exists(other.number)
    plt.close(other)
    save_figure(figure(), second)
    data = first.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data == second.read_bytes()
    assert b"Software" not in data and b"matplotlib" not in data
    assert (data[16:24], [p.name for p in first.parent.iterdir()]) == (
        (200).to_bytes(4, "big") + (100).to_bytes(4, "big"),  # 2 x 1 inches at dpi 100
        ["f.png"],
    )


def test_file_digest_is_md5_unless_asked_otherwise(tmp_path):
    import hashlib

    from dlrepro.outputs import file_digest

    data = bytes(range(256)) * 5000  # over one read's chunk
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f") == hashlib.md5(data).hexdigest()
    assert file_digest(tmp_path / "f", "sha256") == hashlib.sha256(data).hexdigest()


def test_a_live_leftover_does_not_stop_the_sweep_of_the_others(tmp_path, dead_pid):
    """The sweep steps over a live writer's temporary and goes on: every dead one around it
    (twenty, so that the live one is rarely listed last) is removed."""
    live = tmp_path / f"{temp_prefix('live')}x"
    live.write_text("being written")
    dead = [tmp_path / f"{TEMP_PREFIX}{dead_pid}-{i:02d}-x" for i in range(20)]
    for path in dead:
        path.write_text("left by a killed run")
    sweep_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [live.name]
