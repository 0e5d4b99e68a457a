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

REPO = Path(__file__).resolve().parents[2]

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
    command = [sys.executable, "-m", "benchmarks", "--quick", "--only", "training"]
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
    # The architecture's FLOPs are counted, not timed, whatever the machine. By hand, for the
    # text's CNN on 128 px (2 FLOPs per multiply-add): conv 3→32 (3×3) on 126², pool to 63,
    # conv 32→64 on 61², pool to 30, dense 30·30·64 → 128 → 1. A training step is the forward,
    # the weight gradients (as many again) and the input gradients (as many again, except the
    # first layer's, which nothing needs).
    macs = [126 * 126 * 32 * 27, 61 * 61 * 64 * 32 * 9, 30 * 30 * 64 * 128, 128]
    forward = 2 * sum(macs) / 1e9
    step = 3 * forward - 2 * macs[0] / 1e9
    assert training["forward_gflop_per_image"] == pytest.approx(forward, rel=2e-3)
    assert training["train_step_gflop_per_image"] == pytest.approx(step, rel=2e-3)
    assert training["tuning"][0]["vs_configured"] == 1.0  # the configured setting is the baseline
    import torch

    if not torch.cuda.is_available():  # the accelerator=auto rows are a GPU machine's alone
        assert training["accelerator_auto"] == []
        assert "accelerator=auto" not in done.stdout


@pytest.mark.slow
def test_accelerator_runs_fit_the_recipes_and_keep_a_failed_run_as_a_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the training section runs on a CUDA machine, run here where accelerator="auto" finds
    the CPU: the tuned recipe in its own precision, and a run that fails (an unknown precision)
    becomes a row with its error rather than ending the bench."""
    from benchmarks import training
    from benchmarks.common import Scale, generate_and_prepare
    from dlrepro.config import load_config

    cfg = load_config(REPO / "params.yaml")
    generate_and_prepare(tmp_path / "leaves", tmp_path / "cache", cfg.data, 64, 16)
    runs = (("tuned", None), ("text", "no-such-precision"))
    monkeypatch.setattr(training, "ACCELERATOR_RUNS", runs)
    scale = Scale(quick=True)
    scale.image_limit = None  # the whole small cache
    tuned, failed = training.bench_accelerator(tmp_path, tmp_path / "cache", cfg, scale, 100.0)

    assert tuned["recipe"] == "tuned" and tuned["precision"] == "bf16-mixed"  # the recipe's own
    assert tuned["device"] == "cpu" and tuned["peak_device_memory_gb"] is None
    assert tuned["img_s"] > 0 and tuned["fit_s"] > 0 and tuned["epochs"] == 2
    assert tuned["vs_cpu_lightning"] == pytest.approx(tuned["img_s"] / 100.0, abs=0.01)
    assert "error" not in tuned
    assert failed["recipe"] == "text" and "img_s" not in failed
    assert "no-such-precision" in failed["error"]


def run_bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    output = tmp_path / "bench.json"
    command = [sys.executable, "-m", "benchmarks", *args, "--output", str(output)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads(output.read_text())


def on_the_quick_test_split(accuracy: float) -> bool:
    """An accuracy the stage measured on the quick run's test images: k of them right, rounded
    to 4 decimals as the bench writes it."""
    from benchmarks.train_stage import QUICK_SIZES

    images = QUICK_SIZES[1]
    return any(abs(accuracy - k / images) <= 5e-5 for k in range(images + 1))


@pytest.mark.slow
def test_quick_vs_keras_section_runs_the_train_stage_and_says_how_to_add_keras(
    tmp_path: Path,
) -> None:
    """The project's side is the real train stage (its own process, its own MLflow store); the
    Keras side runs when `make keras-env` built .venv-keras, else the bench says how to."""
    from benchmarks.vs_keras import KERAS_MISSING, keras_python

    done, results = run_bench(tmp_path, "--quick", "--only", "vs_keras")
    figures = results["vs_keras"]
    for name in ("loop_img_s", "stage_wall_s", "stage_fit_img_s", "stage_peak_rss_gb"):
        assert isinstance(figures[name], float) and figures[name] > 0, name
    assert on_the_quick_test_split(figures["stage_test_acc"])
    assert figures["epochs"] == 1 and len(figures["stage_epoch_s"]) == 1
    bf16 = figures["bf16"]  # the same stage once more, its recipe in bfloat16
    assert bf16["precision"] == "bf16-mixed" and bf16["loop_img_s"] > 0
    assert on_the_quick_test_split(bf16["stage_test_acc"]) and "bf16 loop" in done.stdout
    if keras_python(REPO) is None:
        assert figures["keras"] == KERAS_MISSING and "make keras-env" in done.stdout
        assert "loop_speedup" not in figures
    else:
        for name in ("keras_fit_img_s", "keras_program_wall_s", "loop_speedup", "stage_wall_ratio"):
            assert isinstance(figures[name], float) and figures[name] > 0, name
        assert figures["loop_speedup"] == pytest.approx(
            figures["loop_img_s"] / figures["keras_fit_img_s"], rel=0.01
        )
        assert bf16["loop_speedup"] == pytest.approx(
            bf16["loop_img_s"] / figures["keras_fit_img_s"], rel=0.01
        )


@pytest.mark.slow
def test_scale_option_measures_each_size(tmp_path: Path) -> None:
    done, results = run_bench(tmp_path, "--scale", "64,96")
    runs = results["scale"]["runs"]
    assert [run["train_images"] for run in runs] == [64, 96]
    for run in runs:
        assert run["prepare_ms_per_image"] > 0 and run["train_ms_per_image"] > 0
        assert run["train_peak_rss_gb"] > 0
    assert "train peak RSS growth" in done.stdout


def test_scale_option_refuses_odd_or_single_sizes(tmp_path: Path) -> None:
    for value in ("800", "801,4000", "800,x", "32,800"):
        command = [sys.executable, "-m", "benchmarks", "--scale", value]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 2 and "--scale" in done.stderr, value


@pytest.mark.slow
def test_quick_recipes_section_times_both_train_stages(tmp_path: Path) -> None:
    done, results = run_bench(
        tmp_path, "--quick", "--only", "recipes", "--design", "8", "--train-leaves", "96"
    )
    figures = results["recipes"]
    assert figures["seeds"] == [0]  # params.yaml's seed
    assert figures["design_images"] == 8 and "design accuracy" in done.stdout
    assert figures["train_leaves"] == 96 and "96/" in figures["dataset"]
    for recipe, fit_on in (("text", "train"), ("tuned", "train+val")):
        run = figures[recipe]
        assert run["epochs"] == [1] and run["selected_on"] == "last_epoch"
        assert run["fit_on"] == fit_on
        assert isinstance(run["fit_s_mean"], float) and run["fit_s_mean"] > 0, recipe
        # one seed: its figure is the mean, with no spread
        assert run["test_acc"] == [run["test_acc_mean"]] and run["test_acc_sd"] == 0.0
        assert run["design_acc"] == [run["design_acc_mean"]]
        by_group = run["design_errors_by_group"]
        assert sum(row["leaves"] for row in by_group.values()) == 8
        wrong = sum(row["errors"] for row in by_group.values())
        assert wrong == pytest.approx(8 * (1 - run["design_acc_mean"]), abs=1e-3), recipe
    assert figures["tuned_fit_ratio"] == pytest.approx(
        figures["tuned"]["fit_s_mean"] / figures["text"]["fit_s_mean"], rel=0.05
    )
    assert "tuned_fit_ratio" in done.stdout and "target <= 3.0" in done.stdout
    assert "errors on the design set by what the generator drew" in done.stdout


def test_leaf_group_sorts_leaves_by_what_the_generator_drew():
    from benchmarks.recipes import MILD, leaf_group

    def leaf(*diseases, severity=0.7, holes=False):
        return {"diseases": list(diseases), "severity": severity, "insect_holes": holes}

    assert leaf_group(leaf(severity=None)) == "healthy, no holes"
    assert leaf_group(leaf(severity=None, holes=True)) == "healthy, insect holes"
    assert leaf_group(leaf("blight", severity=MILD - 0.01)) == "blight, mild"
    assert leaf_group(leaf("blight", severity=MILD)) == "blight, severe"
    assert leaf_group(leaf("spots", severity=0.3, holes=True)) == "spots, mild"
    assert leaf_group(leaf("spots, early", severity=0.9)) == "spots, early"
    assert leaf_group(leaf("mosaic, interveinal")) == "mosaic, interveinal"
    assert leaf_group(leaf("blight", "mosaic, patches")) == "two kinds of disease"


def test_errors_by_group_counts_each_groups_wrong_answers_averaged_over_seeds():
    from benchmarks.recipes import errors_by_group

    groups = ["a", "b", "a", "a"]
    right = [[True, False, False, True], [False, False, True, True]]
    assert errors_by_group(groups, right) == {
        "a": {"leaves": 3, "errors": 1.0, "error_pct": 33.3},
        "b": {"leaves": 1, "errors": 1.0, "error_pct": 100.0},
    }
    # 40 wrong answers over 3 seeds among 42 leaves: 31.7 %, not 31.75 rounded twice to 31.8.
    rates = errors_by_group(["x"] * 42, [[i >= n for i in range(42)] for n in (13, 13, 14)])
    assert rates["x"]["error_pct"] == 31.7
    with pytest.raises(ValueError, match="one answer per leaf"):
        errors_by_group(groups, [[True] * 3])


def test_design_set_holds_new_leaves_of_both_classes(tmp_path: Path) -> None:
    """The recipes section's extra leaves come from another data seed: none of them is an image
    the pipeline's own seed draws (with the same seed every one would be)."""
    from benchmarks.common import generate_and_prepare
    from benchmarks.recipes import design_set
    from dlrepro.config import load_config
    from dlrepro.data.cache import load_split

    images, labels, classes = load_split(design_set(tmp_path / "design", 8), "design")
    assert len(images) == 8 and sorted(labels.tolist()) == [0] * 4 + [1] * 4
    assert classes == ["Diseased", "Healthy"]
    data = load_config(REPO / "params.yaml").data
    generate_and_prepare(tmp_path / "own" / "leaves", tmp_path / "own" / "cache", data, 4, 8)
    own, _, _ = load_split(tmp_path / "own" / "cache", "test")
    assert not any((image == other).all() for image in images for other in own)


def test_more_leaves_are_neither_the_pipelines_nor_the_design_sets(tmp_path: Path) -> None:
    """`--train-leaves`' dataset comes from a third data seed: a recipe trained on it has seen
    none of the design set's leaves (which it is scored on) nor the pipeline's."""
    from benchmarks.common import generate_and_prepare
    from benchmarks.recipes import design_set, more_leaves
    from dlrepro.config import load_config
    from dlrepro.data.cache import load_split

    data = load_config(REPO / "params.yaml").data
    cache, described = more_leaves(tmp_path / "more", 8)
    assert described == f"generated 8/{data.test_size} leaves (data.seed + 2)"
    train, labels, _ = load_split(cache, "train")
    val, _, _ = load_split(cache, "val")
    assert len(train) + len(val) == 8 and set(labels.tolist()) == {0, 1}
    test, _, _ = load_split(cache, "test")
    assert len(test) == data.test_size
    # Each generated image is a function of (seed, split, class, index): with the pipeline's
    # seed the training leaves would repeat its own, with the design set's the test leaves.
    generate_and_prepare(tmp_path / "own" / "leaves", tmp_path / "own" / "cache", data, 8, 8)
    own = [
        image
        for split in ("train", "val")
        for image in load_split(tmp_path / "own" / "cache", split)[0]
    ]
    assert not any((image == other).all() for image in [*train, *val] for other in own)
    design, _, _ = load_split(design_set(tmp_path / "design", 8), "design")
    assert not any((image == other).all() for image in test for other in design)


def test_leaf_count_options_refuse_odd_or_tiny_sizes(tmp_path: Path) -> None:
    for option in ("--design", "--train-leaves"):
        for value in ("7", "0", "x"):
            command = [sys.executable, "-m", "benchmarks", option, value]
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            assert done.returncode == 2 and option in done.stderr, (option, value)


@pytest.mark.slow
def test_quick_curriculum_section_times_a_chapter_stage_from_a_cold_process(tmp_path: Path) -> None:
    done, results = run_bench(tmp_path, "--quick", "--only", "curriculum")
    figures = results["curriculum"]
    assert figures["quick"] is True and figures["chapter_errors"] == {}
    (chapter,) = figures["chapter_s"]  # quick: the first chapter only
    assert figures["chapter_s"][chapter] > 0
    assert figures["total_s"] == pytest.approx(figures["chapter_s"][chapter], abs=0.01)
    assert figures["total_vs_target"] == pytest.approx(
        figures["total_s"] / figures["target_s"], abs=1e-3
    )
    assert set(figures["import_s"]) >= {"import mlflow"} and figures["mlflow_store_creation_s"] > 0
    # the floor: one chapter's library imports per stage timed (one, quick)
    floor = figures["import_s"]["every chapter's imports"]
    assert figures["library_import_floor_s"] == pytest.approx(floor, abs=0.01)
    assert floor > figures["import_s"]["import torch"]
    assert f"curriculum-{chapter}" in done.stdout and "curriculum total" in done.stdout


@pytest.mark.slow
def test_predict_section_measures_cold_start_latency_and_throughput(tmp_path: Path) -> None:
    done, results = run_bench(tmp_path, "--only", "predict")
    figures = results["predict"]["figures"]
    cold = next(v for k, v in figures.items() if k.startswith("cold start"))
    assert isinstance(cold, str) and cold.endswith(" ms") and float(cold.split()[0]) > 0
    gflop = figures["FLOPs per single-image forward (text's CNN, 128 px)"]
    assert gflop == "0.1794 GFLOP"  # by hand: test_training_section's count, to 4 decimals
    throughput = next(v for k, v in figures.items() if k.startswith("batch-") and "ORT" in k)
    assert float(throughput.split()[0]) > 0
    assert "predict: inference" in done.stdout


def test_stage_walls_run_from_each_running_line_to_the_next():
    from benchmarks.pipeline import stage_walls

    lines = [
        (1.0, "Running stage 'check-config':"),
        (1.5, "> python -m dlrepro.stages.check_config"),
        (3.0, "Running stage 'train@text':"),
        (9.0, "Updating lock file 'dvc.lock'"),
        (10.0, "Running stage 'curriculum-perceptron':"),
    ]
    walls = stage_walls(lines, end=12.5)
    assert walls == {"check-config": 2.0, "train@text": 7.0, "curriculum-perceptron": 2.5}
    assert stage_walls([(1.0, "Data and pipelines are up to date.")], end=2.0) == {}


@pytest.mark.slow
def test_quick_pipeline_section_times_each_stage_of_a_fresh_clone(tmp_path: Path) -> None:
    done, results = run_bench(tmp_path, "--quick", "--only", "pipeline")
    figures = results["pipeline"]
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert figures["quick"] is True and figures["commit"] == head
    # a fresh clone has no outputs: DVC runs `gates` (and whatever it needs that git lacks)
    assert "gates" in figures["stage_s"] and set(figures["stage_s"]) <= {"check-config", "gates"}
    assert all(seconds > 0 for seconds in figures["stage_s"].values())
    assert figures["total_s"] >= sum(figures["stage_s"].values())
    assert "pipeline" not in figures["ratios"]  # quick: no whole-pipeline figure to compare
    for row in ("gates", "pipeline total", "fresh clone of " + head):
        assert row in done.stdout, row
