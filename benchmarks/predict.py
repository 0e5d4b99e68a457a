"""The predict section: how fast `dlrepro predict` answers, and where the time goes.

    python -m benchmarks.predict        # prints the table; `run()` returns its rows

Everything is measured in one run on the text's CNN (128 px, 32/64 conv, 128 dense; random
weights: the arithmetic does not depend on their values), exported to a temporary ONNX file:

- cold start: wall time of `dlrepro predict one.jpg` from process start to the printed answer
  (median of 5), and its parts measured with timers inside a fresh interpreter: interpreter
  start, imports (numpy, cv2, onnxruntime, dlrepro), session creation, decode, first inference;
- single-image ONNX Runtime latency (median of 200 after warm-up) against the FLOP limit: the
  forward's exact FLOPs (2 × multiply-adds, from the architecture) over the fp32 sgemm rate
  measured in the same run (2048² matrices with torch, one thread per physical core, the best of
  10 runs before and 10 after the ONNX Runtime figures). At batch 1 the dense layer (57,600 →
  128) streams 29.5 MB of weights for 14.7 MFLOP: its time is set by memory, not FLOPs, so a
  floor that times it (torch.mv) and counts only the rest at the sgemm rate is shown too;
- what was tuned, before/after, each its own session, timed in interleaved blocks of 20 calls:
  graph optimisation level (BASIC, EXTENDED, ALL: the NCHWc convolution layout) and intra-op
  threads (1 vs one per physical core), plus an ONNX Runtime session sharing its process with
  torch (the situation `predict` avoids);
- batch-32 throughput: ONNX Runtime vs PyTorch `inference_mode` (channels_last, as trained).

ONNX Runtime figures come from a child process that never imports torch, as `dlrepro predict`
runs; the machines are shared, so compare figures of one run with each other only.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import child_env, load_average, load_row, print_table, text_classifier

IMAGE_SIZE = 128
CONV_CHANNELS = (32, 64)
DENSE_UNITS = 128
LATENCY_RUNS = 200
LATENCY_BLOCK = 20
THROUGHPUT_BATCH = 32
COLD_STARTS = 5

_BREAKDOWN_SCRIPT = """
import json, sys, time
start = time.perf_counter()
import numpy
after_numpy = time.perf_counter()
import cv2
after_cv2 = time.perf_counter()
import onnxruntime
after_ort = time.perf_counter()
from dlrepro.cli import main
from dlrepro.data.images import load_square_rgb
from dlrepro.serving.runtime import OnnxModel
after_dlrepro = time.perf_counter()
model = OnnxModel(sys.argv[1])
after_session = time.perf_counter()
rgb = load_square_rgb(sys.argv[2], model.info.image_size, model.info.min_side).rgb
after_decode = time.perf_counter()
model.probabilities(rgb[None])
after_inference = time.perf_counter()
print(json.dumps({
    "import numpy": after_numpy - start,
    "import cv2": after_cv2 - after_numpy,
    "import onnxruntime": after_ort - after_cv2,
    "import dlrepro (cli, predict)": after_dlrepro - after_ort,
    "session creation": after_session - after_dlrepro,
    "decode one.jpg": after_decode - after_session,
    "first inference": after_inference - after_decode,
}))
"""


def _serving() -> tuple[type, Callable[[], int], Callable[[np.ndarray], np.ndarray]]:
    """What `dlrepro predict` runs on (ONNX Runtime, no torch): (OnnxModel, physical_cores,
    to_model_input), imported on call so that importing this module stays light."""
    from dlrepro.serving.contract import to_model_input
    from dlrepro.serving.runtime import OnnxModel, physical_cores

    return OnnxModel, physical_cores, to_model_input


def forward_flops(
    image_size: int = IMAGE_SIZE,
    conv_channels: Sequence[int] = CONV_CHANNELS,
    dense_units: int = DENSE_UNITS,
    outputs: int = 1,
) -> int:
    """FLOPs (2 per multiply-add) of one forward pass of the text's CNN: valid 3×3 convs, 2×2
    pools, dense.
    Biases, ReLUs, pooling and the sigmoid add < 0.5 % and are left out, as sgemm counts only
    multiply-adds."""
    flops, side, channels = 0, image_size, 3
    for out_channels in conv_channels:
        side -= 2
        flops += 2 * side * side * out_channels * channels * 9
        side //= 2
        channels = out_channels
    features = channels * side * side
    return flops + 2 * features * dense_units + 2 * dense_units * outputs


def _times(call: Callable[[], object], runs: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        call()
    return [_timed(call) for _ in range(runs)]


def _median_seconds(call: Callable[[], object], runs: int, warmup: int = 10) -> float:
    return statistics.median(_times(call, runs, warmup))


def ort_figures(model_path: str) -> dict[str, float]:
    """Latencies (s) and throughput (img/s) of ONNX Runtime sessions; torch must not be loaded."""
    import onnxruntime as ort

    OnnxModel, physical_cores, to_model_input = _serving()

    rng = np.random.default_rng(0)
    one = to_model_input(rng.integers(0, 256, (1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8))
    batch = to_model_input(
        rng.integers(0, 256, (THROUGHPUT_BATCH, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    )
    cores = physical_cores()
    levels = ort.GraphOptimizationLevel
    variants = {
        f"BASIC, {cores} threads": (levels.ORT_ENABLE_BASIC, cores),
        f"EXTENDED, {cores} threads": (levels.ORT_ENABLE_EXTENDED, cores),
        "ALL, 1 thread": (levels.ORT_ENABLE_ALL, 1),
    }
    calls = {}
    for name, (level, threads) in variants.items():
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: one}
        calls[name] = lambda s=session, f=feed: s.run(None, f)
    tuned = OnnxModel(model_path)  # what `dlrepro predict` opens
    calls["tuned"] = lambda: tuned.run(one)
    # Interleaved blocks: a neighbour's load that comes and goes then weighs on every variant
    # alike. Blocks rather than single calls, because an idle session's threads spin for a
    # while after each run and would slow the next variant down.
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(LATENCY_RUNS // LATENCY_BLOCK):
        for name, call in calls.items():
            times[name] += _times(call, LATENCY_BLOCK, warmup=3)
    figures = {name: statistics.median(values) for name, values in times.items()}
    figures["tuned best"] = min(times["tuned"])
    batch_seconds = _median_seconds(lambda: tuned.run(batch), 15, warmup=3)
    figures["batch throughput"] = THROUGHPUT_BATCH / batch_seconds
    return figures


def _sgemm_flops_per_second(threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    for _ in range(3):
        torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(10))
    return 2 * 2048**3 / best


def _dense_seconds(threads: int) -> float:
    """Best time of the hidden dense layer at batch 1 (weights (128, 57,600) × a vector)."""
    import torch

    torch.set_num_threads(threads)
    weights, vector = torch.rand(DENSE_UNITS, _dense_inputs()), torch.rand(_dense_inputs())
    for _ in range(5):
        torch.mv(weights, vector)
    return min(_timed(lambda: torch.mv(weights, vector)) for _ in range(50))


def _dense_inputs() -> int:
    side = IMAGE_SIZE
    for _ in CONV_CHANNELS:
        side = (side - 2) // 2
    return CONV_CHANNELS[-1] * side * side


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _torch_figures(threads: int) -> dict[str, float]:
    import torch

    from dlrepro.plant.inference import images_to_tensor

    torch.set_num_threads(threads)
    model = text_classifier(image_size=IMAGE_SIZE).eval()
    rng = np.random.default_rng(0)
    shape = (THROUGHPUT_BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)
    batch = images_to_tensor(rng.integers(0, 256, shape, dtype=np.uint8))
    with torch.inference_mode():
        batch_seconds = _median_seconds(lambda: model(batch), 15, warmup=3)
        single = _median_seconds(lambda: model(batch[:1]), 50)
    return {"batch throughput": THROUGHPUT_BATCH / batch_seconds, "single": single}


def _export_text_model(folder: Path) -> tuple[Path, Path]:
    import cv2

    from dlrepro.serving.export import export_onnx

    model = text_classifier(image_size=IMAGE_SIZE, class_names=["Diseased", "Healthy"])
    onnx_path = export_onnx(model.eval(), folder / "plant_cnn.onnx")
    image = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    image_path = folder / "one.jpg"
    cv2.imwrite(str(image_path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return onnx_path, image_path


def _cold_start(command: list[str]) -> float:
    """Seconds from launching `command` to its first line of output."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    elapsed = time.perf_counter() - start
    process.communicate()
    if process.returncode != 0 or not line.startswith("Prediction: "):
        raise RuntimeError(f"{' '.join(command)} failed: {line!r}")
    return elapsed


def _child_json(args: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    done = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.splitlines()[-1])


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def run() -> list[tuple[str, str]]:
    """Measure everything listed in the module docstring; rows of (figure, value)."""
    OnnxModel, physical_cores, to_model_input = _serving()

    python = sys.executable
    script = str(Path(python).with_name("dlrepro"))
    cores = physical_cores()
    batch = THROUGHPUT_BATCH
    load_before = os.getloadavg()[0]
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        onnx_path, image_path = _export_text_model(Path(tmp))
        predict = [script, "predict", str(image_path), "--model", str(onnx_path)]
        cold = statistics.median(_cold_start(predict) for _ in range(COLD_STARTS))
        rows.append((f"cold start: `dlrepro predict one.jpg` (median of {COLD_STARTS})", _ms(cold)))
        interpreter = statistics.median(
            _timed(lambda: subprocess.run([python, "-c", "pass"], check=True)) for _ in range(5)
        )
        rows.append(("  interpreter start (python -c pass)", _ms(interpreter)))
        parts = [
            _child_json([python, "-c", _BREAKDOWN_SCRIPT, str(onnx_path), str(image_path)])
            for _ in range(COLD_STARTS)
        ]
        rows += [(f"  {part}", _ms(statistics.median(p[part] for p in parts))) for part in parts[0]]

        # sgemm before and after the ORT figures, the best of both: on a shared machine a
        # neighbour's burst during one measurement must not make the FLOP limit look slower
        sgemm_before = _sgemm_flops_per_second(cores)
        ort_worker = [python, "-m", "benchmarks.predict", "--ort-worker", str(onnx_path)]
        ort = _child_json(ort_worker, child_env())
        sgemm = max(sgemm_before, _sgemm_flops_per_second(cores))
        flops = forward_flops()
        limit = flops / sgemm
        tuned = ort["tuned"]
        dense = _dense_seconds(cores)
        dense_flops, dense_bytes = (
            2 * _dense_inputs() * DENSE_UNITS,
            4 * _dense_inputs() * DENSE_UNITS,
        )
        floor = (flops - dense_flops) / sgemm + dense
        rows += [
            ("FLOPs per single-image forward (text's CNN, 128 px)", f"{flops / 1e9:.4f} GFLOP"),
            (
                f"fp32 sgemm 2048² (torch, {cores} threads, best of 20)",
                f"{sgemm / 1e9:.1f} GFLOP/s",
            ),
            ("FLOP limit of one forward (FLOPs / sgemm rate)", _ms(limit)),
            (
                f"ORT single image, tuned (ALL, {cores} threads; median of {LATENCY_RUNS})",
                f"{_ms(tuned)} = {tuned / limit:.2f}× the FLOP limit",
            ),
            (
                f"  the fastest of those {LATENCY_RUNS} (a run no neighbour interrupted)",
                f"{_ms(ort['tuned best'])} = {ort['tuned best'] / limit:.2f}× the FLOP limit",
            ),
            (
                f"  dense layer at batch 1 streams {dense_bytes / 1e6:.1f} MB of weights for "
                f"{dense_flops / 1e6:.1f} MFLOP (torch.mv, best of 50)",
                f"{_ms(dense)} ({dense_bytes / dense / 1e9:.0f} GB/s)",
            ),
            (
                "  floor: the rest at the sgemm rate + that dense layer",
                f"{_ms(floor)}; tuned = {tuned / floor:.2f}× the floor",
            ),
        ]
        for name in (f"BASIC, {cores} threads", f"EXTENDED, {cores} threads", "ALL, 1 thread"):
            rows.append((f"  before: ORT single image, {name}", _ms(ort[name])))

        on_torch = _torch_figures(cores)
        shared = OnnxModel(onnx_path)  # in this process, which has just run torch
        one = to_model_input(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8))
        shared_latency = _median_seconds(lambda: shared.run(one), LATENCY_RUNS)
        rows += [
            ("  ORT single image in a process that also runs torch", _ms(shared_latency)),
            ("torch eager single image (inference_mode)", _ms(on_torch["single"])),
            (f"batch-{batch} throughput: ORT (tuned)", f"{ort['batch throughput']:.0f} img/s"),
            (
                f"batch-{batch} throughput: torch inference_mode (channels_last)",
                f"{on_torch['batch throughput']:.0f} img/s",
            ),
            ("batch throughput FLOP limit (sgemm rate / FLOPs)", f"{sgemm / flops:.0f} img/s"),
        ]
    # Other jobs on the machine: with more runnable threads than cores, a 2-thread parallel
    # region waits for whichever thread the scheduler paused, and medians grow many times over.
    load = f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    rows.append((f"machine load (1-minute load average; {os.cpu_count()} CPUs)", load))
    return rows


def number_or_text(value: Any) -> float | str:
    """A figure as a number when it reads as one ("4.2"), else its text ("216 img/s")."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def bench_predict(quick: bool) -> dict[str, Any]:
    """The section: `run()`'s (figure, value) rows as a table and as figures."""
    load_start = load_average()
    rows = run()  # it sizes itself; --quick does not reach it
    load_end = load_average()
    print_table(
        "predict: inference",
        [(name, str(value), "") for name, value in rows] + [load_row(load_start, load_end)],
    )
    return {
        "quick": quick,
        "figures": {name: number_or_text(value) for name, value in rows},
        "load_average": {"start": load_start, "end": load_end},
    }


def main() -> None:
    if sys.argv[1:2] == ["--ort-worker"]:
        print(json.dumps(ort_figures(sys.argv[2])))
        return
    rows = run()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
