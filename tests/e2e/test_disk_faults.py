"""Disk and folder faults, and a fit that diverges: one line and exit status 2 each, and the
previous outputs complete.

Unit level: the stage boundary's one line for ENOSPC / EROFS / EACCES, output folders replaced
whole or not at all (`new_dir`), checkpoints written under a temporary name, a symbolic link
refused, a non-finite loss stopping the fit. End to end (as root, where tmpfs can be mounted):
the train stage on a full disk and on a read-only model folder, in a throwaway workspace.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlrepro.cli import run_stage
from dlrepro.errors import DataError, DivergedError
from dlrepro.outputs import new_dir
from dlrepro.plant.callbacks import AtomicCheckpointIO
from dlrepro.plant.datamodule import PlantDataModule
from dlrepro.plant.train import fit_plant_cnn
from helpers.models import plant_cnn
from helpers.workspace import clone_copy, dvc, run


def one_error_line(capsys, main) -> str:
    with pytest.raises(SystemExit) as done:
        run_stage(main)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith("error: ")
    return line


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space left on device"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_a_disk_fault_is_one_line_naming_the_path(capsys, code, words):
    def main() -> None:
        raise OSError(code, os.strerror(code), "models/plant_cnn/text/last.ckpt")

    line = one_error_line(capsys, main)
    assert line.startswith("error: models/plant_cnn/text/last.ckpt: " + words)


def test_another_os_error_is_not_hidden(capsys):
    """A fault that is not the disk's (a bug) keeps its traceback."""

    def main() -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError):
        run_stage(main)


def test_an_output_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "plots"
    target.mkdir()
    (target / "old.png").write_bytes(b"old")
    with pytest.raises(OSError), new_dir(target) as staged:
        (staged / "new.png").write_bytes(b"new")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(p.name for p in target.iterdir()) == ["old.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["plots"]  # no staging left behind
    with new_dir(target) as staged:
        (staged / "new.png").write_bytes(b"new")
    assert sorted(p.name for p in target.iterdir()) == ["new.png"]


def test_a_symbolic_link_in_place_of_an_output_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("theirs")
    (tmp_path / "plots").symlink_to(elsewhere)
    with pytest.raises(DataError, match="a symbolic link"), new_dir(tmp_path / "plots"):
        pass
    assert (elsewhere / "keep.txt").read_text() == "theirs"


def test_a_checkpoint_torn_by_a_full_disk_leaves_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"weights": torch.ones(3)}, path)
    before = path.read_bytes()

    def torn(self, checkpoint, target, storage_options=None):
        Path(target).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr("lightning_fabric.plugins.TorchCheckpointIO.save_checkpoint", torn)
    with pytest.raises(OSError):
        io.save_checkpoint({"weights": torch.zeros(3)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_diverging_fit_stops_with_one_line(tmp_path):
    """A rate that ruins the fit ends it at the epoch the loss stops being finite: no model
    from it is kept to evaluate or register."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(16) % 2
    data = PlantDataModule(["a", "b"], images, labels, images[:4], labels[:4], batch_size=8, seed=0)
    ruinous = functools.partial(torch.optim.SGD, lr=1e30)
    model = plant_cnn(image_size=16, conv_channels=(4,), dense_units=4, optimizer=ruinous)
    with pytest.raises(DivergedError, match=r"^train/loss is (nan|inf) after epoch 1: the fit"):
        fit_plant_cnn(data, model, tmp_path, max_epochs=3, enable_progress_bar=False)


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def refused_in_one_line(root: Path, words: str, stage: tuple[str, ...] = ("train", "text")) -> None:
    done = run(root, sys.executable, "-m", f"dlrepro.stages.{stage[0]}", *stage[1:], check=False)
    assert done.returncode == 2, done.stdout[-1500:] + done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    errors = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs or a read-only bind needs root")
def test_train_on_a_full_disk_or_a_read_only_folder_keeps_the_model(tmp_path):
    """The text recipe trained once (small profile); then its model folder's parent on a tmpfs
    with room for the model but not for a new fit, and then mounted read-only: each rerun ends
    in one line, and the model folder is byte for byte what it was."""
    root = clone_copy(tmp_path / "ws")
    dvc(root, "repro", "train@text")
    models = root / "models" / "plant_cnn"
    model = models / "text"
    before = folder_bytes(model)
    (model / "run.json").write_text(json.dumps({"fingerprint": "other", "finished": True}))
    before = folder_bytes(model)  # a finished run of other settings: the rerun must train
    saved = tmp_path / "saved"
    shutil.copytree(models, saved)
    room = sum(len(b) for b in before.values()) + 256 * 1024
    mount("-t", "tmpfs", "-o", f"size={room}", "tmpfs", str(models))
    try:
        shutil.copytree(saved, models, dirs_exist_ok=True)
        refused_in_one_line(root, "no space left on device")
        assert folder_bytes(model) == before
    finally:
        subprocess.run(["umount", str(models)], check=True)
    mount("--bind", str(models), str(models))
    try:
        mount("-o", "remount,ro,bind", str(models))
        refused_in_one_line(root, "read-only file system")
        assert folder_bytes(model) == before
    finally:
        subprocess.run(["umount", str(models)], check=True)

    # The export of that model, then its folder read-only: the export ends in one line too.
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("  recipe: tuned", "  recipe: text"))
    dvc(root, "repro", "export")
    exported = root / "models"
    before = {p.name: p.read_bytes() for p in exported.iterdir() if p.is_file()}
    mount("--bind", str(exported), str(exported))
    try:
        mount("-o", "remount,ro,bind", str(exported))
        refused_in_one_line(root, "read-only file system", ("export",))
        assert {p.name: p.read_bytes() for p in exported.iterdir() if p.is_file()} == before
    finally:
        subprocess.run(["umount", str(exported)], check=True)
