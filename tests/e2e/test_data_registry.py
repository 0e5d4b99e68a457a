"""dlrepro as a DVC data registry: another repository imports the generated dataset at the
version dlrepro's dvc.lock records, and `dvc update` moves it to a newly published version.

The real git and DVC: a copy of dlrepro (small profile) with its remote in a local folder, and
a second, empty repository that imports from it by path, as a team would by URL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from helpers.workspace import clone_copy, dvc, run

pytestmark = pytest.mark.slow
DATASET = "data/plant_disease_dataset"


def publish(repo: Path, message: str, *overrides: str) -> str:
    """Regenerate the dataset with `overrides`, commit dvc.lock, push the data; the lock's md5."""
    run(repo, sys.executable, "-m", "dlrepro.config.compose", *overrides)
    dvc(repo, "repro", "generate")
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    dvc(repo, "push", "generate")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["generate"]
    return next(out["md5"] for out in lock["outs"] if out["path"] == DATASET)


def head(repo: Path) -> str:
    return run(repo, "git", "rev-parse", "HEAD").stdout.strip()


def test_another_repository_imports_and_updates_the_dataset(tmp_path):
    registry = clone_copy(tmp_path / "dlrepro")
    # .dvc/config as committed: the default remote is the folder beside the repository
    first = publish(registry, "first version")

    consumer = tmp_path / "consumer"
    consumer.mkdir()
    run(consumer, "git", "init", "-q")
    dvc(consumer, "init", "-q")
    dvc(consumer, "import", str(registry), DATASET, "-o", "leaves")
    record = yaml.safe_load((consumer / "leaves.dvc").read_text())
    assert record["deps"][0]["repo"]["rev_lock"] == head(registry)
    assert record["outs"][0]["md5"] == first  # exactly the version dlrepro's dvc.lock records
    assert sorted(p.name for p in (consumer / "leaves").iterdir()) == ["design", "test", "train"]
    files = sorted((consumer / "leaves").rglob("*.jpg"))
    assert len(files) == 64 + 32 + 32  # the small profile's 64 train, 32 test, 32 design leaves
    same = registry / DATASET / files[0].relative_to(consumer / "leaves")
    assert files[0].read_bytes() == same.read_bytes()

    second = publish(registry, "more leaves", "data.train_size=80")
    assert second != first
    dvc(consumer, "update", "leaves.dvc")
    record = yaml.safe_load((consumer / "leaves.dvc").read_text())
    assert record["deps"][0]["repo"]["rev_lock"] == head(registry)
    assert record["outs"][0]["md5"] == second
    assert len(list((consumer / "leaves").rglob("*.jpg"))) == 80 + 32 + 32
    status = dvc(consumer, "status")
    assert "Data and pipelines are up to date." in status.stdout
