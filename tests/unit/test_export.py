"""ONNX and torch.export exports of the plant CNN: parity with the checkpoint, metadata, dynamic
batch, self-contained and byte-stable files, and the one-line failure when parity breaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import pytorch_lightning as pl
import torch

from dlrepro.errors import DataError
from dlrepro.plant.classifier import LeafClassifier
from dlrepro.plant.inference import (
    Predictor,
    images_to_tensor,
    load_checkpoint,
    torch_probabilities,
)
from dlrepro.serving import export
from dlrepro.serving.contract import to_model_input
from dlrepro.serving.export import ParityError, check_parity, export_checkpoint
from dlrepro.serving.runtime import OnnxModel
from helpers.models import plant_cnn

CLASSES = ["Diseased", "Healthy"]
SMALL = {"image_size": 32, "conv_channels": (4, 8), "dense_units": 8}
TEXT = {"image_size": 128}
# the tuned recipe's options, small: batch norm after the pool, mean+max pool, 8 views averaged
TUNED = {"image_size": 32, "conv_channels": (4, 8), "dense_units": None, "batch_norm": True}
TUNED |= {"padding": "same", "global_pool": "avgmax", "norm_after_pool": True}
TUNED |= {
    "average_symmetries": True
}  # the text's architecture: 7,392,449 parameters, ≈30 MB of weights


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/unit/conftest.py


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Noise at a random brightness per image, so that a network's answers differ between them."""
    rng = np.random.default_rng(seed)
    brightness = rng.uniform(0.1, 1.0, (n, 1, 1, 1))
    return (rng.integers(0, 256, (n, size, size, 3)) * brightness).astype(np.uint8)


def write_checkpoint(path: Path, classes=CLASSES, **arch) -> LeafClassifier:
    """A Lightning checkpoint of a randomly initialised classifier whose output layer is rescaled
    so that its logits on random images have mean 0 and std 3: its probabilities then spread
    over (0, 1) rather than sitting at 0.5 or saturating, and parity is a real comparison."""
    model = plant_cnn(num_classes=len(classes), class_names=classes, init_seed=3, **arch).eval()
    size = model.image_size
    output = model.net.head[-1]
    with torch.no_grad():
        logits = model(images_to_tensor(random_images(64, size, seed=99)))  # output bias is 0
        scale = 3 / logits.std(dim=0).clamp_min(1e-12)
        output.weight.mul_(scale[:, None])
        output.bias.copy_(-(logits * scale).mean(dim=0))
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return model


@pytest.mark.parametrize("arch", [SMALL, TEXT, TUNED], ids=["32px", "128px-text", "32px-tuned"])
def test_exports_answer_as_the_checkpoint(tmp_path, arch):
    write_checkpoint(tmp_path / "best.ckpt", **arch)
    size = arch["image_size"]
    images = random_images(12, size)
    onnx_path, program_path = tmp_path / "out" / "m.onnx", tmp_path / "out" / "m.pt2"

    figures = export_checkpoint(tmp_path / "best.ckpt", onnx_path, program_path, images)

    for name in ("onnx", "torch_export"):
        assert figures[name]["images"] == 12
        assert figures[name]["max_abs_diff"] <= 1e-5
        assert figures[name]["label_mismatches"] == 0
    # one self-contained ONNX file (no external-data side file), no staging left behind
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == ["m.onnx", "m.pt2"]
    reference = torch_probabilities(load_checkpoint(tmp_path / "best.ckpt"), images)
    assert reference[:, 1].std() > 0.05  # the model answers more than 0.5: parity means something
    np.testing.assert_allclose(OnnxModel(onnx_path).probabilities(images), reference, atol=1e-5)


def test_onnx_metadata_says_what_inference_needs(tmp_path):
    write_checkpoint(tmp_path / "best.ckpt", **SMALL)
    path = export.export_onnx(load_checkpoint(tmp_path / "best.ckpt"), tmp_path / "m.onnx", 20)
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(props["classes"]) == CLASSES
    assert props["image_size"] == "32"
    assert props["min_side"] == "20"
    assert (props["channel_order"], props["layout"], props["scale"]) == ("RGB", "NCHW", "1/255")
    assert "P(classes[i])" in props["output"]
    assert props["views_per_image"] == "1"
    info = OnnxModel(path).info
    assert (info.classes, info.image_size, info.min_side) == (CLASSES, 32, 20)


def test_an_export_averaging_symmetries_answers_alike_for_a_turned_or_mirrored_image(tmp_path):
    """Parity alone would pass if both formats dropped the averaging: the ONNX graph itself must
    give a quarter-turned or mirrored image the answer of the image, and say it averages 8."""
    write_checkpoint(tmp_path / "best.ckpt", **TUNED)
    path = export.export_onnx(load_checkpoint(tmp_path / "best.ckpt"), tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert props["views_per_image"] == "8"
    model = OnnxModel(path)
    images = random_images(4, 32)
    answer = model.probabilities(images)
    assert answer[:, 1].std() > 0.05  # answers that differ between images: invariance is real
    for changed in (np.rot90(images, 1, axes=(1, 2)), images[:, :, ::-1]):
        np.testing.assert_allclose(
            model.probabilities(np.ascontiguousarray(changed)), answer, atol=1e-5
        )


def test_an_averaging_model_holds_its_network_once_in_the_graph(tmp_path):
    """The 8 views run as one batch through one copy of the network (a graph 8 times smaller to
    trace and translate); its answer is the eager loop's over the views, within the tolerance."""
    write_checkpoint(tmp_path / "best.ckpt", **TUNED)
    model = load_checkpoint(tmp_path / "best.ckpt")
    path = export.export_onnx(model, tmp_path / "m.onnx")
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.net.modules())
    assert convs >= 2
    assert [n.op_type for n in onnx.load(path).graph.node].count("Conv") == convs
    images = random_images(5, 32)
    with torch.inference_mode():
        graph = export.ProbabilityModel(model).eval()(images_to_tensor(images))
        eager = model.class_probabilities(images_to_tensor(images))
    torch.testing.assert_close(graph, eager, rtol=0, atol=export.PARITY_TOLERANCE)


def test_batch_dimension_is_dynamic_in_both_formats(tmp_path):
    model = write_checkpoint(tmp_path / "best.ckpt", **SMALL).eval()
    onnx_model = OnnxModel(export.export_onnx(model, tmp_path / "m.onnx"))
    assert onnx_model.session.get_inputs()[0].shape == ["batch", 3, 32, 32]
    program = export.export_program(model, tmp_path / "m.pt2")
    for n in (1, 3, 7):
        images = random_images(n, 32, seed=n)
        reference = torch_probabilities(model, images)
        np.testing.assert_allclose(onnx_model.probabilities(images), reference, atol=1e-6)
        np.testing.assert_allclose(
            export.program_probabilities(program, images), reference, atol=1e-6
        )


def test_multiclass_export_answers_softmax_rows(tmp_path):
    classes = ["Blight", "Healthy", "Rust"]
    write_checkpoint(tmp_path / "best.ckpt", classes, **SMALL)
    images = random_images(9, 32)
    figures = export_checkpoint(
        tmp_path / "best.ckpt", tmp_path / "m.onnx", tmp_path / "m.pt2", images
    )
    assert figures["classes"] == classes
    answer = OnnxModel(tmp_path / "m.onnx").probabilities(images)
    assert answer.shape == (9, 3)
    np.testing.assert_allclose(answer.sum(axis=1), 1, atol=1e-6)


def test_exports_are_byte_identical_across_runs(tmp_path):
    write_checkpoint(tmp_path / "best.ckpt", **SMALL)
    images = random_images(4, 32)
    contents = []
    for run in ("a", "b"):
        out = tmp_path / run
        export_checkpoint(tmp_path / "best.ckpt", out / "m.onnx", out / "m.pt2", images)
        contents.append(((out / "m.onnx").read_bytes(), (out / "m.pt2").read_bytes()))
    assert contents[0] == contents[1]


def test_one_trace_for_both_files_writes_the_bytes_of_exporting_the_module(tmp_path):
    """The export traces the model once and translates that program to ONNX: the plain way,
    `torch.onnx.export` of the module itself, must give the same file, byte for byte."""
    write_checkpoint(tmp_path / "best.ckpt", **SMALL)
    model = load_checkpoint(tmp_path / "best.ckpt")  # what the export loads
    plain = torch.onnx.export(
        export.ProbabilityModel(model).eval(),
        (torch.zeros(2, 3, 32, 32),),
        dynamo=True,
        input_names=[export.INPUT_NAME],
        output_names=[export.OUTPUT_NAME],
        dynamic_shapes={export.INPUT_NAME: {0: torch.export.Dim("batch", min=1)}},
        external_data=False,
        verbose=False,
    )
    assert plain is not None
    plain.model.metadata_props.update(export.onnx_metadata(model))
    for node in plain.model.graph.all_nodes():
        node.metadata_props.pop(export.STACK_TRACE_KEY, None)
    plain.save(tmp_path / "plain.onnx", external_data=False)
    export_checkpoint(
        tmp_path / "best.ckpt", tmp_path / "m.onnx", tmp_path / "m.pt2", random_images(4, 32)
    )
    assert (tmp_path / "m.onnx").read_bytes() == (tmp_path / "plain.onnx").read_bytes()


def test_preprocessing_without_torch_equals_trainings(tmp_path):
    images = random_images(5, 16)
    np.testing.assert_array_equal(to_model_input(images), images_to_tensor(images).numpy())


def test_parity_failure_is_one_line_naming_the_format():
    reference = np.array([[0.2, 0.8], [0.7, 0.3]], dtype=np.float32)
    with pytest.raises(ParityError) as off:
        check_parity("ONNX", reference, reference + np.float32(2e-5))
    assert "\n" not in str(off.value) and str(off.value).startswith("ONNX export disagrees")
    # a label flips although every probability is within tolerance
    near_half = np.array([[0.500001, 0.499999]], dtype=np.float32)
    with pytest.raises(ParityError, match="1 labels differ"):
        check_parity("torch.export", near_half, near_half[:, ::-1].copy())
    with pytest.raises(ParityError):
        check_parity("ONNX", reference, np.full_like(reference, np.nan))
    assert check_parity("ONNX", reference, reference)["max_abs_diff"] == 0


def test_failed_parity_keeps_earlier_exports(tmp_path, monkeypatch):
    write_checkpoint(tmp_path / "best.ckpt", **SMALL)
    images = random_images(4, 32)
    onnx_path, program_path = tmp_path / "m.onnx", tmp_path / "m.pt2"
    onnx_path.write_bytes(b"earlier")
    program_path.write_bytes(b"earlier")
    broken = export.onnx_probabilities
    monkeypatch.setattr(export, "onnx_probabilities", lambda *a: broken(*a)[:, ::-1])
    with pytest.raises(ParityError):
        export_checkpoint(tmp_path / "best.ckpt", onnx_path, program_path, images)
    assert onnx_path.read_bytes() == program_path.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "m.onnx", "m.pt2"]


def test_unusable_checkpoint_is_one_line(tmp_path):
    with pytest.raises(DataError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError) as bad:
        load_checkpoint(tmp_path / "bad.ckpt")
    assert "not a usable classifier checkpoint" in str(bad.value) and "\n" not in str(bad.value)


@pytest.mark.parametrize("arch", [SMALL, TUNED], ids=["one-view", "8-symmetries"])
@pytest.mark.parametrize("classes", [CLASSES, ["a", "b", "c"]], ids=["binary", "3-class"])
def test_a_loaded_checkpoint_answers_bit_for_bit_as_the_module_that_wrote_it(
    tmp_path, arch, classes
):
    """`load_checkpoint` gives the Lightning-free `Predictor`; `LeafClassifier.from_checkpoint`
    the LightningModule. Both answer exactly what the trained module answers."""
    trained = write_checkpoint(tmp_path / "best.ckpt", classes=classes, **arch)
    loaded = load_checkpoint(tmp_path / "best.ckpt")
    assert isinstance(loaded, Predictor) and not loaded.training
    assert (loaded.class_names, loaded.image_size) == (classes, trained.image_size)
    assert loaded.views_per_image == trained.views_per_image == (8 if arch is TUNED else 1)
    back = LeafClassifier.from_checkpoint(tmp_path / "best.ckpt")
    assert not back.training
    images = images_to_tensor(random_images(6, trained.image_size, seed=5))
    with torch.inference_mode():
        expected = trained.eval().class_probabilities(images)
        assert expected.shape == (6, len(classes))
        assert torch.equal(loaded(images), expected)
        assert torch.equal(back.class_probabilities(images), expected)
        assert torch.equal(
            loaded.predicted_probabilities(images), trained.predicted_probabilities(images)
        )


def test_evaluation_export_and_prediction_import_no_lightning():
    """What only predicts pays torch's import, not Lightning's (about 1.4 s a process), and the
    export and prediction not torchmetrics' either (evaluation computes its metrics with it)."""
    answering = ["dlrepro.plant.inference", "dlrepro.serving.export", "dlrepro.serving.predict"]
    answering += ["dlrepro.stages.export"]
    evaluating = ["dlrepro.stages.evaluate", "dlrepro.plant.evaluate"]

    def heavy_after(modules: list[str]) -> list[str]:
        code = (
            f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'pytorch_lightning', 'lightning_fabric', 'lightning', 'torchmetrics'})))"
        )
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()

    assert heavy_after(answering) == []
    assert heavy_after(evaluating) == ["torchmetrics"]
    # the check sees Lightning where it is imported
    with_training = heavy_after([*answering, "dlrepro.plant.classifier"])
    assert {"pytorch_lightning", "torchmetrics"} <= set(with_training)


@pytest.mark.slow
def test_export_stage_writes_outputs_and_registers_a_changed_model_once(tmp_path):
    """`python -m dlrepro.stages.export` in a repository-shaped folder with the embedded store."""
    import cv2

    from dlrepro.data.ingest import ingest

    repo = Path(__file__).resolve().parents[2]
    for name in ("params.yaml", "dvc.yaml"):
        (tmp_path / name).write_bytes((repo / name).read_bytes())
    for seed, (split, name) in enumerate([(s, c) for s in ("train", "test") for c in CLASSES]):
        folder = tmp_path / "source" / split / name
        folder.mkdir(parents=True)
        for i, image in enumerate(random_images(4, 40, seed)):
            cv2.imwrite(str(folder / f"{i}.jpg"), image)
    ingest(tmp_path / "source", tmp_path / "data" / "cache", image_size=32)
    checkpoint = tmp_path / "models" / "plant_cnn" / "tuned" / "last.ckpt"  # export.recipe's
    write_checkpoint(checkpoint, **SMALL)
    evaluation = tmp_path / "metrics" / "evaluate" / "tuned.json"  # what the model card quotes
    evaluation.parent.mkdir(parents=True)
    evaluation.write_text(
        json.dumps({"accuracy": 0.5, "f1": 0.25, "roc_auc": 0.75, "num_images": 8})
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["DVC_ROOT"] = str(tmp_path)

    def stage() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dlrepro.stages.export"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = stage()
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("registered as models:/plant-cnn/1")
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    version = client.get_model_version("plant-cnn", "1")
    assert version.tags["recipe"] == "tuned" and version.tags["fit_on"] == "train+val"
    assert version.tags["selected_on"] == "last_epoch"
    card = version.description
    # its first line plain text: the versions list shows it unrendered
    assert card.startswith(
        "plant-cnn, recipe tuned: fitted on train+val, weights selected on last_epoch.\n"
    )
    assert "accuracy 0.500, F1 0.250, ROC AUC 0.750" in card
    assert version.run_id == version.tags["export_run_id"]  # no train run in this store
    assert client.get_model_version_by_alias("plant-cnn", "champion").version == 1
    assert "float32 NCHW (N, 3, 32, 32), RGB" in card and "dvc repro export" in card
    metrics = json.loads((tmp_path / "metrics" / "export.json").read_text())
    assert metrics["onnx"]["images"] == metrics["torch_export"]["images"] == 8
    assert metrics["onnx"]["max_abs_diff"] <= 1e-5
    exported = [(tmp_path / "models" / f"plant_cnn.{s}").read_bytes() for s in ("onnx", "pt2")]

    second = stage()  # e.g. `dvc repro --force`: same model, same bytes, no new version
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().endswith("unchanged, still models:/plant-cnn/1")
    assert exported == [
        (tmp_path / "models" / f"plant_cnn.{s}").read_bytes() for s in ("onnx", "pt2")
    ]

    checkpoint.unlink()
    missing = stage()
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "error: models/plant_cnn/tuned/last.ckpt: not found: run `dvc repro train@tuned` first"
    )


def test_test_images_of_another_size_are_one_line(tmp_path):
    write_checkpoint(tmp_path / "best.ckpt", **SMALL)
    with pytest.raises(DataError, match="takes 32×32 RGB images, the test images are 64×64×3"):
        export_checkpoint(
            tmp_path / "best.ckpt", tmp_path / "m.onnx", tmp_path / "m.pt2", random_images(2, 64)
        )
