"""The ONNX export in the MLflow Model Registry: versions, tags, pyfunc answers, and a served model
answering HTTP requests as the ONNX file does (a real SQLite tracking store in tmp_path)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dlrepro.data.images import load_square_rgb
from dlrepro.hashing import file_md5
from dlrepro.serving.contract import to_model_input
from dlrepro.serving.export import export_onnx
from dlrepro.serving.registry import CHAMPION, DESCRIPTION, MODEL_NAME, load_version, register_onnx
from dlrepro.serving.runtime import OnnxModel
from helpers.models import plant_cnn
from helpers.servers import on_a_free_port, serving
from helpers.workspace import BIN

CLASSES = ["Diseased", "Healthy"]
SIZE = 32
TAGS = {"git_commit": "0123abc", "data_md5": "feedbeef.dir"}


def onnx_file(path: Path, init_seed: int = 0) -> Path:
    model = plant_cnn(
        image_size=SIZE,
        conv_channels=(4, 8),
        dense_units=8,
        class_names=CLASSES,
        init_seed=init_seed,
    )
    with torch.no_grad():
        model.net.head[-1].weight.mul_(20)  # answers that are not all 0.5
    return export_onnx(model.eval(), path)


def leaf_inputs(folder: Path, n: int) -> np.ndarray:
    """n JPEG files written and decoded as `dlrepro predict` decodes them → the model's input."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    rgb = []
    for i in range(n):
        path = folder / f"leaf_{i}.jpg"
        image = (rng.integers(0, 256, (48, 64, 3)) * rng.uniform(0.1, 1)).astype(np.uint8)
        cv2.imwrite(str(path), image)
        rgb.append(load_square_rgb(path, SIZE).rgb)
    return to_model_input(np.stack(rgb))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite tracking store for the module (creating its tables takes seconds): each test
    registers under its own model name. Artifacts go to <store>/mlruns."""
    import mlflow

    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        yield folder
        mlflow.set_tracking_uri(None)


def register(path: Path, example: np.ndarray, name: str = MODEL_NAME, trained_by=None):
    import mlflow

    with mlflow.start_run():
        return register_onnx(path, example, TAGS, name, trained_by=trained_by)


def test_registered_version_answers_as_the_onnx_file(store, tmp_path):
    import mlflow

    path = onnx_file(tmp_path / "plant_cnn.onnx")
    inputs = leaf_inputs(tmp_path / "leaves", 6)
    registered = register(path, inputs[:2])
    assert (registered.name, registered.version, registered.created) == (MODEL_NAME, "1", True)

    version = mlflow.MlflowClient().get_model_version(MODEL_NAME, "1")
    export_run = version.tags.pop("export_run_id")
    assert version.tags == {**TAGS, "onnx_md5": file_md5(path)}
    assert version.run_id == export_run  # no train run given: the run that logged it
    pyfunc = load_version("1")
    answer = pyfunc.predict(inputs)
    assert list(answer) == ["probabilities"]
    np.testing.assert_allclose(answer["probabilities"], OnnxModel(path).run(inputs), atol=1e-6)
    assert answer["probabilities"][:, 1].std() > 0.05  # not a constant answer
    inputs_spec = pyfunc.metadata.get_input_schema().to_dict()[0]
    assert inputs_spec["tensor-spec"] == {"dtype": "float32", "shape": (-1, 3, SIZE, SIZE)}
    assert json.loads(pyfunc.metadata.metadata["classes"]) == CLASSES
    # one self-contained ONNX file in the registry, no external-data side file
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}/1"))
    assert sorted(p.name for p in local.glob("*.onnx*")) == ["model.onnx"]


def test_same_bytes_add_no_version_and_a_new_model_does(store, tmp_path):
    import mlflow

    client = mlflow.MlflowClient()
    name = "plant-cnn-versions"
    inputs = leaf_inputs(tmp_path / "leaves", 2)
    first = onnx_file(tmp_path / "a" / "plant_cnn.onnx")
    assert register(first, inputs, name).version == "1"
    again = register(first, inputs, name)
    assert (again.version, again.created) == ("1", False)
    assert client.get_model_version_by_alias(name, CHAMPION).version == 1
    retrained = onnx_file(tmp_path / "b" / "plant_cnn.onnx", init_seed=1)
    second = register(retrained, inputs, name)
    assert (second.version, second.created) == ("2", True)
    assert client.get_model_version_by_alias(name, CHAMPION).version == 2


def test_a_version_points_to_the_run_that_trained_it(store, tmp_path):
    import mlflow

    client = mlflow.MlflowClient()
    name = "plant-cnn-lineage"
    with mlflow.start_run() as train:
        mlflow.log_metric("train/acc", 0.9)
    registered = register(
        onnx_file(tmp_path / "plant_cnn.onnx"), leaf_inputs(tmp_path, 2), name, train.info.run_id
    )
    version = client.get_model_version(name, registered.version)
    assert version.run_id == train.info.run_id
    assert version.tags["export_run_id"] not in ("", train.info.run_id)
    logged = mlflow.get_logged_model(registered.model_id)
    assert logged.source_run_id == train.info.run_id
    assert logged.name == f"{name}-onnx"  # TAGS names no recipe
    exported = client.get_run(version.tags["export_run_id"]).outputs.model_outputs
    assert [output.model_id for output in exported] == [registered.model_id]
    assert client.get_registered_model(name).description == DESCRIPTION
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == registered.version


@pytest.mark.slow
def test_served_version_answers_http_requests_as_the_onnx_file(store, tmp_path):
    path = onnx_file(tmp_path / "plant_cnn.onnx")
    inputs = leaf_inputs(tmp_path / "leaves", 5)
    registered = register(path, inputs[:2], "plant-cnn-served")
    command = [str(BIN / "mlflow"), "models", "serve", "-m", registered.uri]
    command += ["--env-manager", "local", "-h", "127.0.0.1"]

    def serve(port: int):
        return serving(
            [*command, "-p", str(port)], port, tmp_path / "serve.log", cwd=store, health="/ping"
        )

    with on_a_free_port(serve) as url:
        request = urllib.request.Request(
            f"{url}/invocations",
            data=json.dumps({"inputs": inputs.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    served = np.array(answer["predictions"]["probabilities"], dtype=np.float32)
    expected = OnnxModel(path).run(inputs)
    np.testing.assert_allclose(served, expected, atol=1e-6)
    assert (served.argmax(axis=1) == expected.argmax(axis=1)).all()
