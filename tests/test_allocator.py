"""dlrepro.allocator: a block freed by one training step is reused by the next, not page-faulted
in again (the behaviour the speed-up rests on), and the values computed do not change."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A 64 MB tensor (the size of the text's first activation at batch 32) written, freed and asked
# for again: the minor page faults of the second round tell whether its memory was reused.
SECOND_ROUND_FAULTS = """
import resource, sys
from dlrepro.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
import torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = torch.ones(16 * 1024 * 1024)
del block
before = faults()
block = torch.ones(16 * 1024 * 1024)
print(applied, faults() - before)
"""


def second_round_faults(mode: str) -> tuple[bool, int]:
    done = subprocess.run(
        [sys.executable, "-c", SECOND_ROUND_FAULTS, mode], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    applied, faults = done.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_block_is_reused_instead_of_faulted_in_again():
    applied, kept = second_round_faults("keep")
    _, default = second_round_faults("default")
    assert applied
    # 64 MB is 16,384 pages of 4 KB: glibc's default maps them afresh, every one a fault.
    assert default > 10_000
    assert kept < 1_000


def test_training_steps_compute_the_same_values_either_way(tmp_path):
    """Only where buffers come from changes: a few steps of the text's CNN give bit-identical
    weights with and without the setting."""
    code = """
import sys, torch
from dlrepro.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
from dlrepro.plant.model import PlantCNN
torch.manual_seed(0)
model = PlantCNN(image_size=32)
optimizer = model.optimizer_factory(model.parameters())
images, labels = torch.rand(8, 3, 32, 32), torch.randint(0, 2, (8,))
for _ in range(3):
    loss = model.loss(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
torch.save(model.state_dict(), sys.argv[2])
"""
    for mode in ("keep", "default"):
        done = subprocess.run(
            [sys.executable, "-c", code, mode, str(tmp_path / f"{mode}.pt")],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    import torch

    kept = torch.load(tmp_path / "keep.pt")
    default = torch.load(tmp_path / "default.pt")
    for name, value in kept.items():
        assert torch.equal(value, default[name]), name
