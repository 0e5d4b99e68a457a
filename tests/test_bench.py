"""Smoke test of `make bench`: the training section runs end to end and records its figures.

Timings are never asserted (they depend on the machine and its load); the test checks that every
figure is measured, printed and written as a number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RATES = (
    "sgemm_gflops",
    "flop_limit_img_s",
    "lightning_img_s",
    "plain_loop_img_s",
    "loading_img_s",
    "lightning_best_step_img_s",
    "peak_rss_gb",
)
RATIOS = ("lightning_vs_plain", "training_vs_flop_limit", "loading_vs_training", "peak_rss_gb")
PRINTED = (
    "sgemm fp32",
    "FLOP limit",
    "lightning",
    "plain loop",
    "loading",
    "peak RSS",
    "lightning best step",
    "tuning: channels_last=",
    "load average",
    *RATIOS,
)


@pytest.mark.slow
def test_quick_training_bench_prints_and_writes_numeric_figures(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    command = [sys.executable, "-m", "dlrepro.bench", "--quick", "--only", "training"]
    done = subprocess.run(
        [*command, "--output", str(output)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in PRINTED:
        assert name in done.stdout, f"{name!r} missing from the printed table"

    results = json.loads(output.read_text())
    assert set(results) == {"training", "machine"}  # --only runs one section
    training = results["training"]
    assert training["quick"] is True
    for name in RATES:
        assert isinstance(training[name], float) and training[name] > 0, name
    for name in RATIOS:
        ratio = training["ratios"][name]
        assert isinstance(ratio["value"], float) and ratio["value"] > 0, name
        assert isinstance(ratio["met"], bool)
    # The architecture's FLOPs are counted, not timed: the text's CNN costs 0.51 GFLOP per image
    # per training step (0.18 forward) whatever the machine.
    assert training["train_step_gflop_per_image"] == pytest.approx(0.5106, abs=1e-3)
    assert training["forward_gflop_per_image"] == pytest.approx(0.1794, abs=1e-3)
    assert training["tuning"][0]["vs_configured"] == 1.0  # the configured setting is the baseline
