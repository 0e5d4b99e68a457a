"""The ONNX export in the MLflow Model Registry: versions, tags, pyfunc answers, and a served model
answering HTTP requests as the ONNX file does (a real SQLite tracking store in tmp_path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
from dlrepro.serving.registry import MODEL_NAME, load_version, register_onnx
from dlrepro.serving.runtime import OnnxModel
from helpers.models import plant_cnn
from helpers.servers import free_port, stop, wait_until_up

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


def register(path: Path, example: np.ndarray, name: str = MODEL_NAME):
    import mlflow

    with mlflow.start_run():
        return register_onnx(path, example, TAGS, name)


def test_registered_version_answers_as_the_onnx_file(store, tmp_path):
    import mlflow

    path = onnx_file(tmp_path / "plant_cnn.onnx")
    inputs = leaf_inputs(tmp_path / "leaves", 6)
    registered = register(path, inputs[:2])
    assert (registered.name, registered.version, registered.created) == (MODEL_NAME, "1", True)

    version = mlflow.MlflowClient().get_model_version(MODEL_NAME, "1")
    assert version.tags == {**TAGS, "onnx_md5": file_md5(path)}
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
    name = "plant-cnn-versions"
    inputs = leaf_inputs(tmp_path / "leaves", 2)
    first = onnx_file(tmp_path / "a" / "plant_cnn.onnx")
    assert register(first, inputs, name).version == "1"
    again = register(first, inputs, name)
    assert (again.version, again.created) == ("1", False)
    retrained = onnx_file(tmp_path / "b" / "plant_cnn.onnx", init_seed=1)
    second = register(retrained, inputs, name)
    assert (second.version, second.created) == ("2", True)


@pytest.mark.slow
def test_served_version_answers_http_requests_as_the_onnx_file(store, tmp_path):
    path = onnx_file(tmp_path / "plant_cnn.onnx")
    inputs = leaf_inputs(tmp_path / "leaves", 5)
    registered = register(path, inputs[:2], "plant-cnn-served")
    port = free_port()
    bin_dir = Path(sys.executable).parent  # `mlflow models serve` starts uvicorn by name
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", registered.uri]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            command,
            cwd=store,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: uvicorn's workers end with it
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server, log)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": inputs.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    finally:
        stop(server)
    served = np.array(answer["predictions"]["probabilities"], dtype=np.float32)
    expected = OnnxModel(path).run(inputs)
    np.testing.assert_allclose(served, expected, atol=1e-6)
    assert (served.argmax(axis=1) == expected.argmax(axis=1)).all()
