"""A checkpoint a teammate hands over runs no code: a pickle whose unpickling would execute a
command (here: create a file) is refused in one line where `dlrepro predict` and `evaluate`
load a model, and where the train stage decides whether to resume from it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from dlrepro.errors import DataError
from dlrepro.plant.inference import load_checkpoint
from dlrepro.plant.runs import RUN_FILE, may_resume


class Payload:
    """Unpickling it calls os.system: what a crafted checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": Payload(marker)}, path)
    return path


def test_the_payload_runs_when_unpickled_unsafely(tmp_path):
    """The positive control: the file does carry code that runs."""
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "evil.ckpt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "evil.ckpt", marker)
    with pytest.raises(DataError, match=r"evil\.ckpt: not a usable classifier checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_crafted_last_checkpoint_is_not_resumed_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "ran"
    (tmp_path / RUN_FILE).write_text(json.dumps({"fingerprint": "f", "finished": False}))
    crafted(tmp_path / "last.ckpt", marker)
    assert may_resume(tmp_path, "f", wanted=True, recipe="text") is False
    assert "last.ckpt is unreadable; starting afresh" in capsys.readouterr().out
    assert not marker.exists()
