"""The vs_keras section: the text's Keras program against dlrepro's `train` stage.

Both run as their own process on the same data, one after the other, and each is observed the
same way from outside its code:

- Keras: `benchmarks/text_keras/text_program.py` (the text's case study, verbatim) in the
  TensorFlow venv that `make keras-env` builds, through `text_keras/keras_reference.py`, from
  the folder that holds `plant_disease_dataset/`: it decodes the JPEGs itself, as the text does.
- dlrepro: `python -m dlrepro.stages.train`, the command `dvc repro` runs, through
  `benchmarks.train_stage`; then once more with the text recipe in bfloat16.

Figures of each side: program wall (interpreter start to exit, imports included), fit wall and
fit throughput (train images × epochs / fit wall, validation and data loading included, as
Keras' `fit` counts), peak RSS (VmHWM of the program's own process) and the final model's test
accuracy (Keras: its `model.evaluate(test_data)`; dlrepro: `last.ckpt` on the test split, the
last epoch unselected, as Keras' figure is). dlrepro's loop throughput is the steady rate of its
training steps (`benchmarks.common.steady_rate`). `--quick` uses a tiny generated set and one
epoch.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import last_line, load_average, load_row, print_table, timed_subprocess
from benchmarks.train_stage import dataset, run_train_stage
from dlrepro import paths
from dlrepro.config import load_config
from dlrepro.errors import DataError

# Runs the text's Keras program (text_keras/text_program.py) in the TensorFlow venv.
KERAS_RUNNER = Path(__file__).with_name("text_keras") / "keras_reference.py"
KERAS_VENV = ".venv-keras"
KERAS_MISSING = (
    "the text's Keras program needs its own environment: run `make keras-env` (builds "
    f"{KERAS_VENV} with tensorflow-cpu 2.21.0, about 2 minutes), then `make bench` again"
)
LOOP_SPEEDUP_TARGET = 2.0
STAGE_WALL_RATIO_TARGET = 0.5
# figure -> (target, whether it is a floor): the targets of the vs_keras ratios
TARGETS = {
    "loop_speedup": (LOOP_SPEEDUP_TARGET, True),
    "stage_wall_ratio": (STAGE_WALL_RATIO_TARGET, False),
    "peak_rss_ratio": (1.0, False),
}
BF16 = "bf16-mixed"  # the vs_keras section's second dlrepro run: the text recipe in bfloat16


def keras_python(root: Path) -> Path | None:
    python = root / KERAS_VENV / "bin" / "python"
    return python if python.is_file() else None


def run_keras(python: Path, data_root: Path, tmp: Path, epochs: int, seed: int) -> dict[str, Any]:
    result = tmp / "keras.json"
    command = [str(python), str(KERAS_RUNNER), str(data_root), str(result), "--epochs", str(epochs)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    wall, done = timed_subprocess([*command, "--seed", str(seed)], tmp, env)
    if done.returncode != 0:
        raise DataError(f"the Keras program failed: {last_line(done.stderr)}")
    return {**json.loads(result.read_text()), "program_wall_s": wall}


def comparison(keras: dict[str, Any] | None, stage: dict[str, Any]) -> dict[str, Any]:
    """The `vs_keras` figures; the ratios need the Keras side."""
    figures: dict[str, Any] = {
        "loop_img_s": round(stage["loop_img_s"], 1),
        "stage_wall_s": round(stage["program_wall_s"], 1),
        "stage_fit_s": round(stage["fit_s"], 1),
        "stage_fit_img_s": round(stage["fit_img_s"], 1),
        "stage_peak_rss_gb": round(stage["peak_rss_bytes"] / 1e9, 3),
        "stage_epoch_s": stage["epoch_s"],
        "stage_test_acc": round(stage["test_acc"], 4),
        "train_images": stage["train_images"],
        "val_images": stage["val_images"],
        "epochs": stage["epochs"],
    }
    if keras is None:
        return {**figures, "keras": KERAS_MISSING}
    return {
        **figures,
        "keras_fit_img_s": round(keras["fit_img_s"], 1),
        "keras_fit_s": round(keras["fit_s"], 1),
        "keras_program_wall_s": round(keras["program_wall_s"], 1),
        "keras_peak_rss_gb": round(keras["peak_rss_bytes"] / 1e9, 3),
        "keras_test_acc": round(keras["test_acc"], 4),
        "tensorflow": keras["tensorflow"],
        "loop_speedup": round(stage["loop_img_s"] / keras["fit_img_s"], 3),
        "fit_speedup": round(stage["fit_img_s"] / keras["fit_img_s"], 3),
        "stage_wall_ratio": round(stage["program_wall_s"] / keras["program_wall_s"], 3),
        "peak_rss_ratio": round(stage["peak_rss_bytes"] / keras["peak_rss_bytes"], 3),
    }


BF16_KEYS = ("loop_img_s", "stage_wall_s", "stage_fit_img_s", "stage_peak_rss_gb", "stage_test_acc")
BF16_RATIOS = ("loop_speedup", "stage_wall_ratio")


def bf16_figures(keras: dict[str, Any] | None, stage: dict[str, Any]) -> dict[str, Any]:
    """The text recipe once more under bfloat16 autocast: the same network and recipe in a
    different arithmetic (bf16 products, float32 sums and weights), so not the text's function;
    what `-S recipes.text.trainer.precision=bf16-mixed` buys on this machine."""
    figures = comparison(keras, stage)
    kept = [*BF16_KEYS, *(BF16_RATIOS if keras is not None else ())]
    return {"precision": stage["precision"], **{key: figures[key] for key in kept}}


def target_note(figures: dict[str, Any], key: str) -> str:
    """The figure against its target in TARGETS, e.g. `target >= 2.0: met`."""
    target, at_least = TARGETS[key]
    met = figures[key] >= target if at_least else figures[key] <= target
    return f"target {'>=' if at_least else '<='} {target}: {'met' if met else 'not met'}"


def bf16_rows(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    note = "the text recipe under bf16 autocast: a different arithmetic"
    out = [
        ("bf16 loop", f"{figures['loop_img_s']} img/s", note),
        ("bf16 program wall", f"{figures['stage_wall_s']} s", "process start to exit"),
        ("bf16 peak RSS", f"{figures['stage_peak_rss_gb']} GB", "VmHWM of the process"),
        ("bf16 test accuracy", f"{figures['stage_test_acc']}", "final model, test split"),
    ]
    for key in BF16_RATIOS:
        if key in figures:
            out.append((f"bf16 {key}", f"{figures[key]:.3f}", target_note(figures, key)))
    return out


def rows(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, note) rows: each measure with dlrepro's value, Keras' and the ratio."""
    out = [
        (
            "data",
            f"{figures['train_images']} train images",
            f"{figures['epochs']} epochs; Keras fits all "
            f"{figures['train_images'] + figures['val_images']} of train/, dlrepro holds "
            f"{figures['val_images']} out as val",
        )
    ]
    pairs = (
        ("program wall", "stage_wall_s", "keras_program_wall_s", "s", "process start to exit"),
        ("fit wall", "stage_fit_s", "keras_fit_s", "s", "fit(), validation included"),
        ("fit throughput", "stage_fit_img_s", "keras_fit_img_s", "img/s", "images × epochs / fit"),
        ("peak RSS", "stage_peak_rss_gb", "keras_peak_rss_gb", "GB", "VmHWM of the process"),
        ("test accuracy", "stage_test_acc", "keras_test_acc", "", "final model, test split"),
    )
    for label, ours, theirs, unit, note in pairs:
        value = f"{figures[ours]} {unit}".strip()
        if theirs in figures:
            note = f"Keras {figures[theirs]} {unit}".strip() + f"; {note}"
        out.append((f"dlrepro {label}", value, note))
    out.append(("dlrepro loop", f"{figures['loop_img_s']} img/s", "steady training steps"))
    seconds = figures["stage_epoch_s"]
    each = " / ".join(f"{s:.1f}" for s in seconds)
    out.append(("dlrepro epoch", f"{sum(seconds) / len(seconds):.1f} s", f"mean; each: {each}"))
    if "keras" in figures:
        out.append(("Keras", "not run", figures["keras"]))
        return out
    for key, note in (
        ("loop_speedup", "dlrepro loop ÷ Keras fit throughput"),
        ("fit_speedup", "fit throughput ÷ Keras fit throughput"),
        ("stage_wall_ratio", "train stage wall ÷ Keras program wall"),
        ("peak_rss_ratio", "peak RSS ÷ Keras peak RSS"),
    ):
        if key in TARGETS:
            note += f"; {target_note(figures, key)}"
        out.append((key, f"{figures[key]:.3f}", note))
    return out


def bench_vs_keras(quick: bool) -> dict[str, Any]:
    """Both programs on the same data; returns the `vs_keras` figures and prints the table."""
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")
    epochs = 1 if quick else cfg.recipes["text"].max_epochs
    python = keras_python(root)
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="dlrepro-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data_root, cache, described = dataset(tmp, quick)
        keras = None if python is None else run_keras(python, data_root, tmp, epochs, cfg.seed)
        stage = run_train_stage(cache, tmp, epochs)
        (tmp / "bf16").mkdir()
        bf16 = run_train_stage(cache, tmp / "bf16", epochs, trainer={"precision": BF16})
    figures = {
        **comparison(keras, stage),
        "bf16": bf16_figures(keras, bf16),
        "dataset": described,
        "quick": quick,
    }
    load_end = load_average()
    figures["load_average"] = {"start": load_start, "end": load_end}
    print_table(
        "vs_keras: the text's Keras program beside the train stage",
        [*rows(figures), *bf16_rows(figures["bf16"]), load_row(load_start, load_end)],
    )
    return figures
