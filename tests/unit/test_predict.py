"""`dlrepro predict`: the text's output line, json/csv, folders, bad images and models, the
torch-free ONNX path and the checkpoint fallback."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from benchmarks.predict import forward_flops
from dlrepro.cli import main
from dlrepro.data.images import load_square_rgb
from dlrepro.plant.classifier import LeafClassifier
from dlrepro.plant.inference import torch_probabilities
from dlrepro.serving.contract import ONNX_MODEL
from dlrepro.serving.export import export_onnx
from dlrepro.serving.predict import expand_paths, predict_files, run
from dlrepro.serving.runtime import OnnxModel
from helpers.models import plant_cnn

CLASSES = ["Diseased", "Healthy"]
SIZE = 32
TEXT_LINE = re.compile(r"^Prediction: (Diseased|Healthy) \((0\.\d\d|1\.00)\)$")


def tiny_model() -> LeafClassifier:
    """Random weights; the output layer scaled so that the answers are not all 0.5."""
    model = plant_cnn(image_size=SIZE, conv_channels=(4, 8), dense_units=8, class_names=CLASSES)
    with torch.no_grad():
        model.net.head[-1].weight.mul_(20)
    return model.eval()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return export_onnx(tiny_model(), tmp_path_factory.mktemp("model") / "plant_cnn.onnx")


@pytest.fixture
def leaves(tmp_path) -> Path:
    """Five photos of different sizes and formats (and brightness) in a folder with a subfolder."""
    folder = tmp_path / "leaves"
    (folder / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in {
        "a.jpg": (60, 80),
        "b.png": (40, 40),
        "c.jpg": (120, 50),
        "d.bmp": (33, 33),
        "more/e.jpg": (70, 70),
    }.items():
        image = (rng.integers(0, 256, (h, w, 3)) * rng.uniform(0.1, 1)).astype(np.uint8)
        cv2.imwrite(str(folder / name), image)
    return folder


def expected(model_file: Path, path: Path) -> np.ndarray:
    model = OnnxModel(model_file)
    return model.probabilities(load_square_rgb(path, SIZE).rgb[None])[0]


def test_one_image_prints_the_texts_line(model_file, leaves, capsys):
    main(["predict", str(leaves / "a.jpg"), "--model", str(model_file)])
    line = capsys.readouterr().out.strip()
    assert TEXT_LINE.match(line), line
    probabilities = expected(model_file, leaves / "a.jpg")
    best = int(np.argmax(probabilities))
    assert line == f"Prediction: {CLASSES[best]} ({probabilities[best]:.2f})"


def test_folders_expand_to_sorted_image_files(leaves):
    (leaves / "notes.txt").write_text("not an image")
    (leaves / ".hidden.jpg").write_bytes((leaves / "a.jpg").read_bytes())
    files = expand_paths([leaves, leaves / "a.jpg"])
    names = [p.relative_to(leaves).as_posix() for p in files]
    assert names == ["a.jpg", "b.png", "c.jpg", "d.bmp", "more/e.jpg", "a.jpg"]


def test_json_and_csv_give_every_class_probability(model_file, leaves, capsys):
    main(["predict", str(leaves), "--model", str(model_file), "--format", "json"])
    answers = json.loads(capsys.readouterr().out)
    assert [Path(a["path"]).name for a in answers] == ["a.jpg", "b.png", "c.jpg", "d.bmp", "e.jpg"]
    for answer in answers:
        probabilities = expected(model_file, Path(answer["path"]))
        assert list(answer["probabilities"]) == CLASSES
        np.testing.assert_allclose(list(answer["probabilities"].values()), probabilities)
        assert answer["prediction"] == CLASSES[int(np.argmax(probabilities))]
        assert answer["probability"] == pytest.approx(probabilities.max())

    main(["predict", str(leaves), "--model", str(model_file), "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["path", "prediction", "probability", "P(Diseased)", "P(Healthy)"]
    assert [r["prediction"] for r in rows] == [a["prediction"] for a in answers]
    assert [float(r["P(Healthy)"]) for r in rows] == pytest.approx(
        [a["probabilities"]["Healthy"] for a in answers]
    )


def test_batches_give_the_same_answers_as_one_image_at_a_time(model_file, leaves):
    files = expand_paths([leaves])
    model = OnnxModel(model_file)
    one_by_one = [p.probabilities for p in predict_files(model, files, batch_size=1)]
    in_twos = [p.probabilities for p in predict_files(model, files, batch_size=2)]
    assert len(one_by_one) == 5
    for single, batched in zip(one_by_one, in_twos, strict=True):
        assert single == pytest.approx(batched, abs=1e-6)


def test_bad_images_are_named_and_the_rest_still_predicted(model_file, leaves, capsys):
    (leaves / "broken.jpg").write_bytes((leaves / "a.jpg").read_bytes()[:40])
    (leaves / "empty.png").write_bytes(b"")
    missing = leaves / "missing.jpg"
    with pytest.raises(SystemExit) as done:
        main(["predict", str(leaves), str(missing), "--model", str(model_file)])
    assert done.value.code == 1
    captured = capsys.readouterr()
    predicted = [line.split(": Prediction: ")[0] for line in captured.out.splitlines()]
    assert [Path(p).name for p in predicted] == ["a.jpg", "b.png", "c.jpg", "d.bmp", "e.jpg"]
    errors = captured.err.splitlines()
    assert len(errors) == 3
    assert errors[0].startswith(f"error: {leaves / 'broken.jpg'}: ")
    assert errors[1] == f"error: {leaves / 'empty.png'}: empty file (0 bytes)"
    assert errors[2].startswith(f"error: {missing}: cannot read the file")


def test_empty_folder_is_an_error_line(model_file, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run([tmp_path / "empty"], model_file, err=sys.stderr) == 1
    assert capsys.readouterr().err.strip().endswith("empty: no image files in this folder")


@pytest.mark.parametrize("problem", ["missing", "corrupt", "no metadata"])
def test_unusable_model_is_one_line_and_exit_2(tmp_path, leaves, capsys, problem):
    path = tmp_path / "model.onnx"
    if problem == "corrupt":
        path.write_bytes(b"\x08\x07garbage")
    elif problem == "no metadata":
        torch.onnx.export(torch.nn.ReLU().eval(), (torch.zeros(1, 3),), path, dynamo=True)
    capsys.readouterr()  # what the exporter printed while making the test's file
    with pytest.raises(SystemExit) as done:
        main(["predict", str(leaves / "a.jpg"), "--model", str(path)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ")


def workspace(root: Path, model_file: Path | None = None) -> Path:
    """A repository-shaped folder (found from its dvc.yaml; its params.yaml names the recipe
    whose checkpoint stands in for a missing export)."""
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    repo = Path(__file__).resolve().parents[2]
    (root / "params.yaml").write_bytes((repo / "params.yaml").read_bytes())
    if model_file is not None:
        (root / ONNX_MODEL).parent.mkdir(parents=True)
        (root / ONNX_MODEL).write_bytes(model_file.read_bytes())
    return root


def test_onnx_path_needs_no_checkpoint_and_imports_no_torch(model_file, leaves, tmp_path):
    root = workspace(tmp_path / "repo", model_file)
    script = (
        "import sys\n"
        "from dlrepro.cli import main\n"
        f"main(['predict', {str(leaves / 'a.jpg')!r}])\n"
        "heavy = ('torch', 'pytorch_lightning', 'lightning', 'torchvision')\n"
        "print('heavy modules:', [m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    answer, heavy = done.stdout.splitlines()
    assert TEXT_LINE.match(answer)
    assert heavy == "heavy modules: []"
    assert not (root / "models" / "plant_cnn").exists()


def test_without_an_export_the_checkpoint_is_used_with_a_note(leaves, tmp_path, monkeypatch):
    root = workspace(tmp_path / "repo")
    model = tiny_model()
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    # the tuned recipe's last epoch (it fits on train+val): what `export` would have exported
    trainer.save_checkpoint(root / "models" / "plant_cnn" / "tuned" / "last.ckpt")
    monkeypatch.chdir(root)
    out, err = io.StringIO(), io.StringIO()
    assert run([leaves / "a.jpg"], out=out, err=err) == 0
    assert err.getvalue() == (
        "no ONNX export found; using the checkpoint (slower start): run `dvc repro export`\n"
    )
    probabilities = torch_probabilities(model, load_square_rgb(leaves / "a.jpg", SIZE).rgb[None])
    best = int(np.argmax(probabilities[0]))
    assert out.getvalue() == f"Prediction: {CLASSES[best]} ({probabilities[0, best]:.2f})\n"


def test_no_model_at_all_is_one_line(leaves, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(workspace(tmp_path / "repo"))
    with pytest.raises(SystemExit) as done:
        main(["predict", str(leaves / "a.jpg")])
    assert done.value.code == 2
    assert "no such model file, nor a checkpoint" in capsys.readouterr().err


def test_flop_count_of_the_texts_cnn():
    """2 × multiply-adds of conv 3→32, conv 32→64 (3×3 valid, 128 px) and dense 57,600→128→1."""
    macs = 126 * 126 * 32 * 27 + 61 * 61 * 64 * 288 + 57_600 * 128 + 128
    assert forward_flops(128, (32, 64), 128, 1) == 2 * macs == 179_350_528


@pytest.mark.parametrize(
    ("value", "message"),
    [("x", "expected a whole number, got 'x'"), ("0", "must be at least 1, got 0")],
)
def test_a_bad_batch_size_is_one_line_naming_the_option(value, message, capsys):
    with pytest.raises(SystemExit) as done:
        main(["predict", "a.jpg", "--batch-size", value])
    assert done.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith(f"argument --batch-size: {message}") and "_positive_int" not in error


def test_errors_and_predictions_come_in_file_order_on_one_terminal(model_file, leaves):
    """A terminal shows stdout and stderr interleaved: a bad file's line must not jump ahead of
    the predictions of the files before it, which wait in the same batch."""
    (leaves / "broken.jpg").write_bytes((leaves / "a.jpg").read_bytes()[:40])
    terminal = io.StringIO()
    assert run([leaves], model_file, out=terminal, err=terminal) == 1
    names = [Path(line.split(": ")[1 if line.startswith("error") else 0]).name
             for line in terminal.getvalue().splitlines()]  # fmt: skip
    assert names == sorted(names) and "broken.jpg" in names


def checkpoint_of(model: LeafClassifier, path: Path) -> Path:
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


def test_a_checkpoint_named_with_model_predicts_as_the_network_does(leaves, tmp_path, capsys):
    model = tiny_model()
    checkpoint = checkpoint_of(model, tmp_path / "chosen.ckpt")
    main(["predict", "--model", str(checkpoint), "--format", "json", str(leaves / "a.jpg")])
    (answer,) = json.loads(capsys.readouterr().out)
    probabilities = torch_probabilities(model, load_square_rgb(leaves / "a.jpg", SIZE).rgb[None])
    assert [answer["probabilities"][c] for c in CLASSES] == pytest.approx(
        probabilities[0], abs=1e-6
    )


def test_a_checkpoint_without_class_names_is_one_line(leaves, tmp_path, capsys):
    model = plant_cnn(image_size=SIZE, conv_channels=(4, 8), dense_units=8, class_names=None)
    checkpoint = checkpoint_of(model, tmp_path / "nameless.ckpt")
    with pytest.raises(SystemExit) as done:
        main(["predict", "--model", str(checkpoint), str(leaves / "a.jpg")])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {checkpoint}: the checkpoint names no classes (class_names)\n"


def test_a_reader_that_stops_early_ends_predict_quietly(model_file, leaves, tmp_path):
    """`dlrepro predict folder | head -1`: exit 1 and no broken-pipe traceback."""
    many = tmp_path / "many"
    many.mkdir()
    image = cv2.imread(str(leaves / "a.jpg"))
    for i in range(400):
        cv2.imwrite(str(many / f"{i:03d}.png"), image)
    dlrepro = Path(sys.executable).parent / "dlrepro"  # the console script
    command = [str(dlrepro), "predict", "--model", str(model_file), str(many)]
    pipeline = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {' '.join(command)} | head -1"],
        capture_output=True,
        text=True,
    )
    (line,) = pipeline.stdout.splitlines()
    assert line.startswith(f"{many / '000.png'}: Prediction: ")
    assert pipeline.returncode == 1
    assert "Traceback" not in pipeline.stderr and "BrokenPipe" not in pipeline.stderr
