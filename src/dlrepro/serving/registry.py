"""The exported ONNX model in the MLflow Model Registry, as versions of `plant-cnn`.

A version is the self-contained ONNX file, logged as an MLflow LoggedModel (`plant-cnn-<recipe>`)
whose source is the train run that made its weights and which the export stage's run outputs;
the version points to that train run and records the export run (`export_run_id`). It carries a
signature from two real test images, the ONNX metadata, tags (`git_commit`, the md5 of each data
split, recipe, fit and selection, `onnx_md5`), the model card as its description, pinned
requirements and the CPU provider; the alias `champion` names the version the export shipped.
A new version is created only when the ONNX bytes differ from the latest one's, so a rerun that
leaves the model as it was adds no duplicate. mlflow is imported inside the functions (it
imports slowly).
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
CHAMPION = "champion"  # the alias of the version `dvc repro export` shipped
DESCRIPTION = (
    "Tells healthy from diseased plant leaves: the case study's CNN exported to ONNX by the "
    "dlrepro pipeline's export stage. Each version's description is its model card; the "
    f"`{CHAMPION}` alias names the version the pipeline ships."
)


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    created: bool  # False: the latest version already held these ONNX bytes
    model_id: str | None = None  # the LoggedModel, when this call created the version

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def register_onnx(
    onnx_path: str | Path,
    input_example: np.ndarray,
    tags: dict[str, str],
    name: str = MODEL_NAME,
    description: str = "",
    trained_by: str | None = None,
) -> RegisteredVersion:
    """Log `onnx_path` as a model of the active MLflow run and register it as a version of
    `name`, tagged with `tags` and `onnx_md5`, described by `description` (markdown), aliased
    CHAMPION. `trained_by`: the train run that made the weights (the model's source run and the
    version's run); without it, the active run.

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
        client.set_registered_model_alias(name, CHAMPION, latest.version)
        return RegisteredVersion(name, str(latest.version), created=False)

    active = mlflow.active_run()
    if active is None:
        raise ValueError("register_onnx logs into the active MLflow run: start one first")
    source_run = trained_by or active.info.run_id
    logged = mlflow.initialize_logged_model(
        name=f"{name}-{tags.get('recipe', 'onnx')}",
        source_run_id=source_run,
        experiment_id=active.info.experiment_id,
        tags={"onnx_md5": md5},
    )
    model = OnnxModel(onnx_path)
    answer = {model.output_name: model.run(input_example)}
    metadata = model.session.get_modelmeta().custom_metadata_map
    info = mlflow.onnx.log_model(
        onnx.load(onnx_path),
        name=ARTIFACT_NAME,
        model_id=logged.model_id,
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
    found = client.search_registered_models(f"name = '{name}'")
    if not found:
        client.create_registered_model(name, description=DESCRIPTION)
    elif not found[0].description:  # registered before it had one
        client.update_registered_model(name, description=DESCRIPTION)
    created = client.create_model_version(
        name,
        source=info.model_uri,
        run_id=source_run,
        tags={**tags, "onnx_md5": md5, "export_run_id": active.info.run_id},
        description=description or None,
        model_id=info.model_id,
    )
    version = str(created.version)
    client.set_registered_model_alias(name, CHAMPION, version)
    return RegisteredVersion(name, version, created=True, model_id=info.model_id)


def model_card(
    recipe: str,
    fit_on: str,
    selected_on: str,
    metrics: dict[str, Any],
    meta: dict[str, str],
    data_md5: dict[str, str],
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
            # plain text: MLflow's versions list shows the first line unrendered
            f"plant-cnn, recipe {recipe}: fitted on {fit_on}, weights selected on {selected_on}.",
            "",
            f"- Test split ({metrics.get('num_images', '?')} images, never used for selection): "
            f"{figures}.",
            "- Data (the digests of the runs' dataset inputs, as dvc.lock records them): "
            + ", ".join(f"{split} `{md5}`" for split, md5 in data_md5.items())
            + ".",
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
