"""A trained classifier → ONNX and a `torch.export` program, each proven to answer as the
checkpoint.

What is exported is the checkpoint's classifier in eval mode *with its output activation*
(`class_probabilities`): the graph answers class probabilities (N, C), with the
average over the 8 symmetries inside it when the model averages them, so the ONNX file, the
registered model and a served endpoint need no post-processing. The input contract and the
metadata keys are `dlrepro.serving.contract`'s.

ONNX (dynamo exporter) is written as one self-contained file; the `.pt2` program is for Python
consumers with torch (TorchScript is deprecated). Parity: both exports and the checkpoint predict
the whole test split; the largest absolute difference of any probability must be ≤ `tolerance`
and every label must agree, else `ParityError` and nothing is written. Stack traces (absolute
paths) are dropped from both, so two clones write the same bytes.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dlrepro.errors import DataError, DlreproError
from dlrepro.outputs import staging_dir
from dlrepro.plant.inference import (
    Predictor,
    class_columns,
    images_to_tensor,
    load_checkpoint,
    probabilities,
    square_symmetries,
    torch_probabilities,
)
from dlrepro.serving.contract import (
    DEFAULT_MIN_SIDE,
    INPUT_NAME,
    OUTPUT_NAME,
    ModelInfo,
    metadata,
)
from dlrepro.serving.runtime import OnnxModel

if TYPE_CHECKING:  # a LeafClassifier exports as well; the stage loads a Predictor
    from dlrepro.plant.classifier import LeafClassifier

    Classifier = Predictor | LeafClassifier

PARITY_TOLERANCE = 1e-5
# Both exporters record, per node, the Python stack that produced it: absolute paths of this
# checkout and its venv, which would make the files differ between two clones of the same commit.
STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"


class ParityError(DlreproError):
    """An export answers differently from the checkpoint it was made from."""


class ProbabilityModel(nn.Module):
    """The exported graph: images → the classifier's class probabilities.

    A model that averages the 8 symmetries runs them as one batch of 8N images through one copy
    of the network, where eager evaluation loops over the views: the graph holds the network
    once instead of 8 times, so tracing and the ONNX translation take about an eighth of the
    work. The same function, in another order of float operations; the parity check holds the
    exports to the checkpoint's eager answer.
    """

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        views = self.model.views_per_image
        if views == 1:
            return self.model.class_probabilities(images)
        answers = probabilities(self.model.net(torch.cat(square_symmetries(images))))
        mean = answers.reshape(views, images.shape[0], *answers.shape[1:]).mean(dim=0)
        return class_columns(mean)


def onnx_metadata(model: Classifier, min_side: int = DEFAULT_MIN_SIDE) -> dict[str, str]:
    if not model.class_names:
        raise DataError("the checkpoint names no classes (class_names): retrain it with names")
    info = ModelInfo(model.class_names, model.image_size, min_side)
    return metadata(info, model.views_per_image)


def _example_and_shapes(model: Classifier) -> tuple[tuple[torch.Tensor], dict]:
    size = model.image_size
    # batch 2 in the example: torch.export specialises a dimension whose example size is 1
    example = (torch.zeros(2, 3, size, size),)
    return example, {INPUT_NAME: {0: torch.export.Dim("batch", min=1)}}


def exported_program(model: Classifier) -> torch.export.ExportedProgram:
    """`model` (with its output activation) traced once by `torch.export`, batch size dynamic,
    without stack traces (they hold this machine's paths): the source of both exports."""
    example, shapes = _example_and_shapes(model)
    program = torch.export.export(ProbabilityModel(model).eval(), example, dynamic_shapes=shapes)
    for node in program.graph.nodes:
        node.meta.pop("stack_trace", None)
    return program


def export_onnx(
    model: Classifier,
    path: str | Path,
    min_side: int = DEFAULT_MIN_SIDE,
    program: torch.export.ExportedProgram | None = None,
) -> Path:
    """Write `model` (with its output activation) as one self-contained ONNX file with metadata,
    translated from `program` (`exported_program(model)`, traced here when not given)."""
    path = Path(path)
    onnx_program = torch.onnx.export(
        program if program is not None else exported_program(model),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        external_data=False,
        verbose=False,
    )
    assert onnx_program is not None  # None only without dynamo=True
    _name_the_batch_dimension(onnx_program.model.graph)
    onnx_program.model.metadata_props.update(onnx_metadata(model, min_side))
    for node in onnx_program.model.graph.all_nodes():
        node.metadata_props.pop(STACK_TRACE_KEY, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_program.save(path, external_data=False)
    return path


def _name_the_batch_dimension(graph: Any) -> None:
    """Call the input's symbolic first dimension `batch` everywhere (a program traced by
    `torch.export` names it after its symbol, e.g. `s34`), as an export from the module does."""
    import onnx_ir as ir

    symbol = graph.inputs[0].shape[0]
    if not isinstance(symbol, ir.SymbolicDim):
        return

    def renamed(dim: Any) -> Any:
        return "batch" if isinstance(dim, ir.SymbolicDim) and dim.value == symbol.value else dim

    values = [*graph.inputs, *graph.outputs, *(o for n in graph.all_nodes() for o in n.outputs)]
    for value in values:
        if value.shape is not None:
            value.shape = ir.Shape([renamed(dim) for dim in value.shape])


def export_program(
    model: Classifier, path: str | Path, program: torch.export.ExportedProgram | None = None
) -> Path:
    """Write `model` (with its output activation) as a `torch.export` program archive: `program`
    (`exported_program(model)`, traced here when not given)."""
    path = Path(path)
    program = program if program is not None else exported_program(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch warns about weights it cannot place on a device; ours are all on the CPU
        warnings.filterwarnings("ignore", message="No complete tensor found")
        torch.export.save(program, path)
    return path


def onnx_probabilities(path: str | Path, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    model = OnnxModel(path)
    return np.concatenate(
        [model.probabilities(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
    )


def program_probabilities(path: str | Path, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    module = torch.export.load(path).module()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunks.append(module(images_to_tensor(images[start : start + batch_size])).numpy())
    return np.concatenate(chunks)


def check_parity(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    tolerance: float = PARITY_TOLERANCE,
) -> dict[str, float | int]:
    """Figures of `candidate` against the checkpoint's `reference` probabilities (N, C); raises
    ParityError when a probability differs by more than `tolerance` or a label differs."""
    if candidate.shape != reference.shape:
        raise ParityError(f"{name}: answers {candidate.shape}, the checkpoint {reference.shape}")
    max_abs_diff = float(np.max(np.abs(candidate.astype(np.float64) - reference)))
    label_mismatches = int(np.sum(candidate.argmax(axis=1) != reference.argmax(axis=1)))
    if not max_abs_diff <= tolerance or label_mismatches:  # `not <=` also catches NaN
        raise ParityError(
            f"{name} export disagrees with the checkpoint on {len(reference)} test images: "
            f"max |Δ probability| = {max_abs_diff:.3g} (tolerance {tolerance:g}), "
            f"{label_mismatches} labels differ"
        )
    return {
        "images": len(reference),
        "max_abs_diff": max_abs_diff,
        "label_mismatches": label_mismatches,
    }


def export_checkpoint(
    checkpoint: str | Path,
    onnx_path: str | Path,
    program_path: str | Path,
    test_images: np.ndarray,
    min_side: int = DEFAULT_MIN_SIDE,
    batch_size: int = 64,
    tolerance: float = PARITY_TOLERANCE,
) -> dict[str, Any]:
    """Export `checkpoint` to `onnx_path` and `program_path` and prove both on `test_images`
    (uint8 RGB, N × S × S × 3, e.g. the cached test split).

    Returns the parity figures per format. The files are written next to their destinations
    first and moved into place only when both pass, so a failed parity (ParityError) leaves
    earlier exports as they were. min_side: recorded in the ONNX metadata, the ingest's
    smallest accepted image side. batch_size: images per forward pass while comparing.
    """
    onnx_path, program_path = Path(onnx_path), Path(program_path)
    if len(test_images) == 0:
        raise DataError("no test images to prove the exports on")
    model = load_checkpoint(checkpoint)
    size = model.image_size
    if test_images.shape[1:] != (size, size, 3):
        raise DataError(
            f"{checkpoint}: takes {size}×{size} RGB images, the test images are "
            f"{'×'.join(map(str, test_images.shape[1:]))}: retrain on the current cache"
        )
    reference = torch_probabilities(model, test_images, batch_size)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(onnx_path) as staging:  # beside the outputs, swept if a run was killed
        program = exported_program(model)  # traced once, for both files
        staged_onnx = export_onnx(model, staging / onnx_path.name, min_side, program)
        staged_program = export_program(model, staging / program_path.name, program)
        figures = {
            "onnx": check_parity(
                "ONNX",
                reference,
                onnx_probabilities(staged_onnx, test_images, batch_size),
                tolerance,
            ),
            "torch_export": check_parity(
                "torch.export",
                reference,
                program_probabilities(staged_program, test_images, batch_size),
                tolerance,
            ),
        }
        program_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged_onnx, onnx_path)
        os.replace(staged_program, program_path)
    return {
        **figures,
        "tolerance": tolerance,
        "classes": model.class_names,
    }
