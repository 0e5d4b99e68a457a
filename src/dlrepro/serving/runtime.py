"""An exported model in an ONNX Runtime session: what `predict`, the export's parity check and
the registry run. Imports neither torch nor Lightning."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from dlrepro.errors import DataError
from dlrepro.serving.contract import REQUIRED_METADATA, model_info, to_model_input


def physical_cores() -> int:
    """Physical cores this process may run on: extra hyper-threads only slow a conv net down."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cpus:
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:  # no sysfs topology (a container may hide it): count logical CPUs
            return len(cpus)
        cores.add((package, core))
    return len(cores)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """All graph optimisations (NCHWc conv layout, Conv+ReLU and Gemm fusions) and one intra-op
    thread per physical core (`make bench` measures the choice)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or physical_cores()
    options.log_severity_level = 3  # errors only: warnings would mix with the answers on stderr
    return options


class OnnxModel:
    """An exported classifier in an ONNX Runtime session, with the contract it was exported with."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such model file; run `dvc repro export` or pass --model")
        try:
            self.session = ort.InferenceSession(
                str(path), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # ORT raises its own pybind classes, one per failure kind
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"{path}: not a usable ONNX model ({reason})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        missing = [key for key in REQUIRED_METADATA if key not in metadata]
        if missing:
            raise DataError(
                f"{path}: ONNX model without the metadata {', '.join(missing)}; "
                "export it with `dvc repro export`"
            )
        self.info = model_info(metadata)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB (N, S, S, 3) → float32 (N, len(classes)); column i is P(classes[i])."""
        return self.run(to_model_input(images))

    def run(self, model_input: np.ndarray) -> np.ndarray:
        """float32 (N, 3, S, S), already scaled (`to_model_input`) → probabilities (N, C)."""
        return self.session.run([self.output_name], {self.input_name: model_input})[0]
