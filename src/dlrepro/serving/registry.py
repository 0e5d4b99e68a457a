"""The exported ONNX model in the MLflow Model Registry, as versions of `plant-cnn`.

A version is the self-contained ONNX file logged into the export stage's run, with a signature
from two real test images, the ONNX metadata, tags (`git_commit`, `data_md5`, recipe, fit and
selection, `onnx_md5`), the model card as its description, pinned requirements and the CPU
provider. A new version is created only when the ONNX bytes differ from the latest one's, so a
rerun that leaves the model as it was adds no duplicate. mlflow is imported inside the functions
(it imports slowly).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlrepro.hashing import file_md5
from dlrepro.serving.runtime import OnnxModel

MODEL_NAME = "plant-cnn"
ARTIFACT_NAME = "model"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    created: bool  # False: the latest version already held these ONNX bytes

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def register_onnx(
    onnx_path: str | Path,
    input_example: np.ndarray,
    tags: dict[str, str],
    name: str = MODEL_NAME,
    description: str = "",
) -> RegisteredVersion:
    """Log `onnx_path` into the active MLflow run (or a new one) and register it as a version of
    `name`, tagged with `tags` and `onnx_md5`, described by `description` (markdown).

    input_example: float32 (N ≥ 2, 3, S, S), as the model takes it (`predict.to_model_input`).
    """
    import mlflow
    import onnx
    import onnxruntime

    onnx_path = Path(onnx_path)
    if input_example.dtype != np.float32 or len(input_example) < 2:
        raise ValueError("input_example must be float32 with at least two images")
    md5 = file_md5(onnx_path)
    client = mlflow.MlflowClient()
    latest = latest_version(client, name)
    if latest is not None and latest.tags.get("onnx_md5") == md5:
        return RegisteredVersion(name, str(latest.version), created=False)

    model = OnnxModel(onnx_path)
    answer = {model.output_name: model.run(input_example)}
    metadata = model.session.get_modelmeta().custom_metadata_map
    info = mlflow.onnx.log_model(
        onnx.load(onnx_path),
        name=ARTIFACT_NAME,
        registered_model_name=name,
        signature=mlflow.models.infer_signature(input_example, answer),
        input_example=input_example,
        save_as_external_data=False,
        onnx_execution_providers=["CPUExecutionProvider"],
        pip_requirements=[
            f"onnx=={onnx.__version__}",
            f"onnxruntime=={onnxruntime.__version__}",
            f"numpy=={np.__version__}",
        ],
        metadata=dict(metadata),
    )
    version = str(info.registered_model_version)
    for key, value in {**tags, "onnx_md5": md5}.items():
        client.set_model_version_tag(name, version, key, value)
    if description:
        client.update_model_version(name, version, description=description)
    return RegisteredVersion(name, version, created=True)


def model_card(
    recipe: str,
    fit_on: str,
    selected_on: str,
    metrics: dict[str, Any],
    meta: dict[str, str],
    data_md5: str,
    commit: str,
) -> str:
    """The version's description: recipe, data, test figures, input contract, how to rebuild."""
    size = meta.get("image_size", "?")
    figures = ", ".join(
        f"{label} {metrics[key]:.3f}"
        for key, label in (("accuracy", "accuracy"), ("f1", "F1"), ("roc_auc", "ROC AUC"))
        if key in metrics
    )
    return "\n".join(
        [
            f"**plant-cnn, recipe `{recipe}`** (fitted on {fit_on}; weights selected on: "
            f"{selected_on}).",
            "",
            f"- Test split ({metrics.get('num_images', '?')} images, never used for selection): "
            f"{figures}.",
            f"- Data: the prepared cache with DVC md5 `{data_md5}`.",
            f"- Input: float32 NCHW (N, 3, {size}, {size}), {meta.get('channel_order', 'RGB')}, "
            f"uint8 pixels × {meta.get('scale', '1/255')}; output: one probability per class, "
            f"columns in the order {meta.get('classes', '?')}.",
            f"- Reproduce: `git checkout {commit} && dvc pull && dvc repro export`.",
        ]
    )


def latest_version(client: Any, name: str = MODEL_NAME) -> Any | None:
    """The highest version of `name` (an mlflow ModelVersion), or None when there is none."""
    found = client.search_model_versions(
        f"name = '{name}'", order_by=["version_number DESC"], max_results=1
    )
    return found[0] if found else None


def load_version(version: str | int, name: str = MODEL_NAME) -> Any:
    """The registered version as an MLflow pyfunc model (from the current tracking store)."""
    import mlflow

    return mlflow.pyfunc.load_model(f"models:/{name}/{version}")
