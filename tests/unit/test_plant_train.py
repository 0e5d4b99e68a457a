"""Training, resuming, checkpoint loading and evaluation of the plant CNN on tiny synthetic data."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from sklearn import metrics as skm

from dlrepro.errors import ConfigError, DataError
from dlrepro.plant.augment import BatchAugment
from dlrepro.plant.callbacks import HISTORY_METRICS
from dlrepro.plant.classifier import LeafClassifier
from dlrepro.plant.datamodule import PlantDataModule, StackedRows
from dlrepro.plant.evaluate import count_metrics, evaluate
from dlrepro.plant.figures import confusion_figure, misclassified_gallery, roc_figure
from dlrepro.plant.inference import load_checkpoint
from dlrepro.plant.networks import ConvNet
from dlrepro.plant.train import build_trainer, fit_plant_cnn
from helpers.models import plant_cnn

CLASSES = ["Diseased", "Healthy"]
SIZE = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/unit/conftest.py


def leaves(n: int, seed: int, num_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Noise images; class c has +100 in colour channel c: easy, but only from the pixels."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes)
    images = rng.integers(0, 128, (n, SIZE, SIZE, 3), dtype=np.uint8)
    for c in range(num_classes):
        images[labels == c, :, :, c] += 100
    return images, labels


def leaf_datamodule(num_classes: int = 2, learn_from_val: bool = False) -> PlantDataModule:
    classes = CLASSES if num_classes == 2 else [f"class{c}" for c in range(num_classes)]
    return PlantDataModule(
        classes,
        *leaves(64, seed=1, num_classes=num_classes),
        *leaves(32, seed=2, num_classes=num_classes),
        batch_size=16,
        learn_from_val=learn_from_val,
    )


def fit(out_dir, max_epochs: int, **kwargs):
    return fit_plant_cnn(
        leaf_datamodule(),
        plant_cnn(image_size=SIZE, class_names=CLASSES),
        out_dir,
        max_epochs=max_epochs,
        accelerator="cpu",
        enable_progress_bar=False,
        **kwargs,
    )


def weights(checkpoint) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["state_dict"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    return fit(tmp_path_factory.mktemp("three_epochs"), max_epochs=3)


def test_fit_learns_the_easy_task_and_records_every_epoch(three_epochs):
    result = three_epochs
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert all(set(HISTORY_METRICS) <= row.keys() for row in result.history)
    assert result.history[-1]["val/acc"] >= 0.9
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]
    assert result.best_val_acc == max(row["val/acc"] for row in result.history)
    assert result.best_checkpoint.name == "best.ckpt" and result.best_checkpoint.exists()
    assert result.last_checkpoint.name == "last.ckpt" and result.last_checkpoint.exists()
    assert sorted(p.name for p in result.best_checkpoint.parent.iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]


def test_stacked_rows_read_any_rows_of_the_splits_as_one_array():
    train, _ = leaves(10, seed=1)
    val, _ = leaves(4, seed=2)
    stacked = StackedRows(train, val)
    whole = np.concatenate([train, val])
    assert len(stacked) == 14 and stacked.shape == whole.shape and stacked.dtype == np.uint8
    for rows in ([13, 0, 10, 9], [2, 3], [11, 12], list(range(14))[::-1]):
        assert np.array_equal(stacked[np.array(rows)], whole[rows]), rows
    with pytest.raises(IndexError):
        stacked[np.array([3, 14])]
    with pytest.raises(DataError, match="image shapes differ"):
        StackedRows(train, val[:, :16])


def test_a_fit_on_train_and_val_learns_from_every_row_of_both_and_validates_on_none(tmp_path):
    train, val = leaves(64, seed=1), leaves(32, seed=2)
    datamodule = PlantDataModule(CLASSES, *train, *val, batch_size=16, learn_from_val=True)
    seen = [
        (image.numpy().tobytes(), int(label))
        for images, labels in datamodule.train_dataloader()
        for image, label in zip(images, labels, strict=True)
    ]
    expected = [
        (torch.from_numpy(image).permute(2, 0, 1).float().mul(1 / 255).numpy().tobytes(), label)
        for images, labels in (train, val)
        for image, label in zip(images, labels.tolist(), strict=True)
    ]
    assert sorted(seen) == sorted(expected)  # each image of both splits once an epoch
    with pytest.raises(DataError, match="no split left to validate on"):
        datamodule.val_dataloader()

    def fit_both(out_dir, max_epochs):
        return fit_plant_cnn(
            datamodule,
            plant_cnn(image_size=SIZE, class_names=CLASSES),
            out_dir,
            max_epochs=max_epochs,
            accelerator="cpu",
            enable_progress_bar=False,
        )

    result = fit_both(tmp_path / "straight", 2)
    assert result.best_checkpoint is None and result.best_val_acc is None
    assert [sorted(row) for row in result.history] == [["epoch", "train/acc", "train/loss"]] * 2
    assert sorted(p.name for p in result.last_checkpoint.parent.iterdir()) == ["last.ckpt"]
    assert torch.load(result.last_checkpoint, weights_only=True)["global_step"] == 2 * 6
    with pytest.raises(ConfigError, match=r"early_stopping: monitors val/acc, but this fit"):
        fit_plant_cnn(
            datamodule, plant_cnn(image_size=SIZE), tmp_path / "stops", 2, early_stopping_patience=1
        )
    fit_both(tmp_path / "resumed", 1)  # interrupted after one epoch, then run again
    resumed = fit_both(tmp_path / "resumed", 2)
    assert resumed.history == result.history
    assert resumed.last_checkpoint.read_bytes() == result.last_checkpoint.read_bytes()


def test_of_epochs_tied_on_val_acc_best_holds_the_lowest_val_loss(three_epochs):
    """The easy task is at val/acc 1.0 from the first epoch on, while val/loss keeps falling:
    best.ckpt must be the last epoch, not the first to reach 1.0 (ModelCheckpoint's own rule)."""
    result = three_epochs
    tied = [row for row in result.history if row["val/acc"] == result.best_val_acc]
    assert len(tied) >= 2  # else this test would not see a tie
    lowest = min(tied, key=lambda row: row["val/loss"])
    assert result.best_epoch == lowest["epoch"] != tied[0]["epoch"]
    assert result.best_epoch == 3  # so best.ckpt holds the very weights last.ckpt does
    assert_same_weights(weights(result.best_checkpoint), weights(result.last_checkpoint))


def test_two_fits_with_the_same_seed_give_identical_weights(three_epochs, tmp_path):
    again = fit(tmp_path, max_epochs=3)
    assert_same_weights(weights(again.last_checkpoint), weights(three_epochs.last_checkpoint))
    assert again.history == three_epochs.history


def test_resuming_from_last_checkpoint_continues_exactly_where_it_stopped(three_epochs, tmp_path):
    first = fit(tmp_path, max_epochs=2)
    assert len(first.history) == 2
    resumed = fit(tmp_path, max_epochs=3)
    assert torch.load(resumed.last_checkpoint, weights_only=True)["global_step"] == 3 * 4
    assert resumed.history == three_epochs.history
    # Same weights as the uninterrupted run: optimizer state and batch order were restored too.
    assert_same_weights(weights(resumed.last_checkpoint), weights(three_epochs.last_checkpoint))
    # And the same bytes (callback state included: see RelocatableCheckpoint), so the resumed
    # run's outputs are the uninterrupted run's in dvc.lock too.
    assert resumed.last_checkpoint.read_bytes() == three_epochs.last_checkpoint.read_bytes()


@pytest.mark.parametrize("learn_from_val", [False, True], ids=["val-held-out", "train+val"])
def test_a_resumed_tuned_style_fit_equals_the_uninterrupted_one(tmp_path, learn_from_val):
    """With augmentation (seeded per batch from (seed, epoch)), batch norm, dropout and a
    one-cycle schedule stepped per batch: a 3-epoch run interrupted after its second epoch and
    run again gives the weights and history of a straight run, so an interrupted tuned run
    loses nothing, whether it holds val out or learns from it (the tuned recipe's fit_on)."""
    from functools import partial

    class Interrupted(Exception):
        pass

    class StopsBeforeEpoch(LeafClassifier):
        stop_at: int | None = None

        def on_train_epoch_start(self) -> None:
            if self.current_epoch == self.stop_at:
                raise Interrupted

    def run(out_dir, stop_at=None):
        datamodule = leaf_datamodule(learn_from_val=learn_from_val)
        datamodule.train.augment = BatchAugment(hflip=True, rot90=True, brightness=0.2)
        net = ConvNet(
            image_size=SIZE,
            conv_channels=(4, 8),
            dense_units=8,
            batch_norm=True,
            padding="same",
            global_pool="max",
            dropout=0.2,
        )
        scheduler = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.01)
        model = StopsBeforeEpoch(net, scheduler=scheduler)
        model.stop_at = stop_at
        return fit_plant_cnn(
            datamodule, model, out_dir, max_epochs=3, accelerator="cpu", enable_progress_bar=False
        )

    straight = run(tmp_path / "straight")
    with pytest.raises(Interrupted):
        run(tmp_path / "resumed", stop_at=2)
    assert torch.load(tmp_path / "resumed" / "last.ckpt", weights_only=True)["epoch"] == 1
    resumed = run(tmp_path / "resumed")
    assert resumed.history == straight.history
    assert_same_weights(weights(resumed.last_checkpoint), weights(straight.last_checkpoint))
    assert resumed.last_checkpoint.read_bytes() == straight.last_checkpoint.read_bytes()
    schedule = torch.load(straight.last_checkpoint, weights_only=True)["lr_schedulers"][0]
    steps = 96 // 16 if learn_from_val else 64 // 16  # per epoch: train+val rows or train's
    assert schedule["last_epoch"] == 3 * steps
    assert schedule["total_steps"] == max(16, 3 * steps)  # at least 16


def test_best_checkpoint_holds_weights_only_and_last_holds_what_resuming_needs(tmp_path):
    """best.ckpt is read for its weights (evaluate, export, predict): no optimizer moments, no
    callback state, so it is written cheaply on each improvement; last.ckpt keeps both."""
    result = fit(tmp_path / "run", max_epochs=1)
    best = torch.load(result.best_checkpoint, weights_only=True)
    last = torch.load(result.last_checkpoint, weights_only=True)
    assert "optimizer_states" not in best and "callbacks" not in best
    assert last["optimizer_states"] and last["callbacks"]
    assert best["state_dict"].keys() == last["state_dict"].keys()
    assert all(
        torch.equal(best["state_dict"][k], last["state_dict"][k]) for k in best["state_dict"]
    )
    assert result.best_checkpoint.stat().st_size < result.last_checkpoint.stat().st_size / 2
    load_checkpoint(result.best_checkpoint)


def test_checkpoints_hold_no_absolute_path_and_resume_after_the_folder_moved(
    three_epochs, tmp_path
):
    """Two clones at different paths write the same checkpoint bytes: the callbacks' state names
    files relative to their folder, and a moved folder still resumes with its best score."""
    first = fit(tmp_path / "here", max_epochs=2)
    for checkpoint in (first.best_checkpoint, first.last_checkpoint):
        raw = checkpoint.read_bytes()
        assert str(tmp_path).encode() not in raw and b"/tmp" not in raw
    states = torch.load(first.last_checkpoint, weights_only=True)["callbacks"]
    saved = [s for key, s in states.items() if key.startswith(("RelocatableCheckpoint", "BestOn"))]
    assert len(saved) == 2 and {s["dirpath"] for s in saved} == {"."}  # best's and last's
    moved = tmp_path / "somewhere" / "else"
    moved.parent.mkdir()
    (tmp_path / "here").rename(moved)
    resumed = fit(moved, max_epochs=3)
    assert resumed.history == three_epochs.history
    assert resumed.best_val_acc == three_epochs.best_val_acc
    assert_same_weights(weights(resumed.last_checkpoint), weights(three_epochs.last_checkpoint))
    twin = fit(tmp_path / "a-longer-name-for-the-same-run", max_epochs=3)
    assert twin.last_checkpoint.read_bytes() == three_epochs.last_checkpoint.read_bytes()


def test_without_resume_a_fit_starts_afresh(tmp_path):
    fit(tmp_path, max_epochs=2)
    with pytest.warns(UserWarning, match="exists and is not empty"):
        restarted = fit(tmp_path, max_epochs=1, resume=False)
    assert [row["epoch"] for row in restarted.history] == [1]


def test_early_stopping_ends_the_fit_once_val_acc_stops_improving(tmp_path):
    result = fit(tmp_path, max_epochs=15, early_stopping_patience=1)
    assert len(result.history) < 15
    assert result.history[-1]["val/acc"] <= result.history[-2]["val/acc"]


@pytest.mark.parametrize(
    "node",
    [
        {"_target_": "pytorch_lightning.callbacks.EMAWeightAveraging", "decay": 0.99},
        {"_target_": "pytorch_lightning.callbacks.StochasticWeightAveraging", "swa_lrs": 0.01},
    ],
)
def test_weight_averaging_is_refused_since_best_ckpt_would_hold_the_live_weights(tmp_path, node):
    """best.ckpt is written weights-only, which skips the callbacks' checkpoint hooks: an EMA's
    average would validate and be selected, yet the live weights would be saved and evaluated."""
    options = {"_target_": "pytorch_lightning.Trainer", "accelerator": "cpu", "max_epochs": 1}
    name = node["_target_"].rsplit(".", 1)[1]
    with pytest.raises(
        ConfigError, match=rf"^recipes\.tuned\.callbacks\.avg: {name}: weight avera"
    ):
        build_trainer(
            options, tmp_path / "out", {"avg": node}, callbacks_key="recipes.tuned.callbacks"
        )
    assert not (tmp_path / "out").exists()  # refused before anything is written
    stopping = {"_target_": "pytorch_lightning.callbacks.EarlyStopping", "monitor": "val/acc"}
    build_trainer(options, tmp_path / "out", {"stop": stopping})  # another callback is taken


def test_best_checkpoint_loads_with_weights_only(three_epochs):
    model = load_checkpoint(three_epochs.best_checkpoint)
    assert model.image_size == SIZE
    assert model.class_names == CLASSES
    assert_same_weights(model.state_dict(), weights(three_epochs.best_checkpoint))


def test_evaluate_reproduces_the_best_val_acc(three_epochs):
    model = load_checkpoint(three_epochs.best_checkpoint).train()
    images, labels = leaves(32, seed=2)
    result = evaluate(model, images, labels, CLASSES, batch_size=10)
    assert result["accuracy"] == pytest.approx(three_epochs.best_val_acc)
    assert model.training  # evaluate restores the mode it found


@pytest.mark.filterwarnings("ignore:.*LeafSpec")  # Lightning 2.6 against torch 2.14, not ours
def test_trainer_predict_gives_one_probability_per_image(three_epochs):
    model = LeafClassifier.from_checkpoint(three_epochs.best_checkpoint)
    assert_same_weights(model.state_dict(), weights(three_epochs.best_checkpoint))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    probs = torch.cat(trainer.predict(model, datamodule=leaf_datamodule()))
    assert probs.shape == (32,)
    _, labels = leaves(32, seed=2)
    assert ((probs > 0.5).long().numpy() == labels).mean() >= 0.9


def test_a_three_class_model_trains_with_cross_entropy(tmp_path):
    result = fit_plant_cnn(
        leaf_datamodule(num_classes=3),
        plant_cnn(num_classes=3, image_size=SIZE),
        tmp_path,
        max_epochs=4,
        accelerator="cpu",
        enable_progress_bar=False,
    )
    assert result.best_val_acc >= 0.8


def scored_by_brightness(num_classes: int) -> LeafClassifier:
    """A classifier whose logits the test controls: mean brightness of each colour channel."""
    model = plant_cnn(num_classes=num_classes, image_size=8, conv_channels=(1,), dense_units=1)

    def logits(images: torch.Tensor) -> torch.Tensor:
        channel_means = images.mean(dim=(2, 3))
        if num_classes == 2:
            return (channel_means[:, :1] - 0.5) * 8
        return channel_means * 8

    model.forward = logits
    return model


def noisy_images(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """8×8 flat images whose colour hints at the label, with noise enough for every kind of
    mistake: binary, channel 0 brighter for class 1; otherwise channel c brighter for class c."""
    rng = np.random.default_rng(seed)
    levels = np.full((len(labels), 3), 128.0)
    if num_classes == 2:
        levels[:, 0] += 40 * (labels - 0.5)
    else:
        levels[np.arange(len(labels)), labels] += 30
    levels += rng.normal(0, 35, levels.shape)
    pixels = np.clip(levels, 0, 255).astype(np.uint8)[:, None, None, :]
    return np.ascontiguousarray(np.broadcast_to(pixels, (len(labels), 8, 8, 3)))


@pytest.mark.parametrize(("classes", "positive"), [(CLASSES, 0), (["cat", "dog"], 1)])
def test_binary_metrics_equal_sklearns(classes, positive):
    labels = np.random.default_rng(0).integers(0, 2, 60)
    images = noisy_images(labels, 2, seed=1)
    result = evaluate(scored_by_brightness(2), images, labels, classes, batch_size=16)

    p1 = np.asarray(result["probabilities"])
    preds = (p1 > 0.5).astype(int)
    assert result["predictions"] == preds.tolist()
    assert 0.55 < result["accuracy"] < 0.95  # imperfect, so the comparison below means something
    assert result["positive_class"] == classes[positive]
    score = p1 if positive == 1 else 1 - p1
    expected = {
        "accuracy": skm.accuracy_score(labels, preds),
        "precision": skm.precision_score(labels, preds, pos_label=positive),
        "recall": skm.recall_score(labels, preds, pos_label=positive),
        "f1": skm.f1_score(labels, preds, pos_label=positive),
        "roc_auc": skm.roc_auc_score(labels == positive, score),
    }
    for name, value in expected.items():
        # counts in Python floats, ROC AUC in float64: equal to scikit-learn's float64, not near it
        assert result[name] == pytest.approx(value, rel=1e-12, abs=0), name
    assert result["confusion_matrix"] == skm.confusion_matrix(labels, preds).tolist()
    fpr, tpr, _ = skm.roc_curve(labels == positive, score, drop_intermediate=False)
    np.testing.assert_allclose(result["roc"]["fpr"], fpr, atol=1e-6)
    np.testing.assert_allclose(result["roc"]["tpr"], tpr, atol=1e-6)


def test_multiclass_metrics_equal_sklearns_macro_averages():
    labels = np.random.default_rng(0).integers(0, 3, 90)
    images = noisy_images(labels, 3, seed=1)
    result = evaluate(scored_by_brightness(3), images, labels, ["a", "b", "c"], batch_size=16)

    probs = np.asarray(result["probabilities"])
    preds = probs.argmax(axis=1)
    assert result["predictions"] == preds.tolist()
    assert 0.4 < result["accuracy"] < 0.95
    expected = {
        "accuracy": skm.accuracy_score(labels, preds),
        "precision": skm.precision_score(labels, preds, average="macro"),
        "recall": skm.recall_score(labels, preds, average="macro"),
        "f1": skm.f1_score(labels, preds, average="macro"),
        "roc_auc": skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro"),
    }
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-12, abs=0), name
    assert result["confusion_matrix"] == skm.confusion_matrix(labels, preds).tolist()
    assert sorted(result["roc"]) == ["a", "b", "c"]
    fpr, tpr, _ = skm.roc_curve(labels == 1, probs[:, 1], drop_intermediate=False)
    np.testing.assert_allclose(result["roc"]["b"]["fpr"], fpr, atol=1e-6)
    np.testing.assert_allclose(result["roc"]["b"]["tpr"], tpr, atol=1e-6)


def test_gallery_shows_the_most_confident_mistakes_first_and_is_reproducible(tmp_path):
    labels = np.random.default_rng(0).integers(0, 2, 60)
    images = noisy_images(labels, 2, seed=1)
    result = evaluate(scored_by_brightness(2), images, labels, CLASSES)
    preds, probs = np.asarray(result["predictions"]), np.asarray(result["probabilities"])
    wrong = np.flatnonzero(preds != labels)
    assert len(wrong) > 4

    shown = misclassified_gallery(images, labels, preds, probs, CLASSES, tmp_path / "a.png", 4)
    confidence = np.maximum(probs, 1 - probs)
    assert len(shown) == 4 and set(shown) <= set(wrong)
    assert confidence[shown].tolist() == sorted(confidence[wrong], reverse=True)[:4]
    assert matplotlib.image.imread(tmp_path / "a.png").shape[2] in (3, 4)
    misclassified_gallery(images, labels, preds, probs, CLASSES, tmp_path / "b.png", 4)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_gallery_without_mistakes_still_writes_its_file(tmp_path):
    images = np.zeros((3, 8, 8, 3), np.uint8)
    labels = np.array([0, 1, 1])
    out = tmp_path / "none.png"
    assert misclassified_gallery(images, labels, labels, [0.1, 0.9, 0.8], CLASSES, out) == []
    assert out.exists()


def test_figures_show_the_counts_and_curves():
    labels = np.random.default_rng(0).integers(0, 2, 60)
    result = evaluate(scored_by_brightness(2), noisy_images(labels, 2, seed=1), labels, CLASSES)
    texts = [t.get_text() for t in confusion_figure(result).axes[0].texts]
    assert texts == [str(c) for row in result["confusion_matrix"] for c in row]
    lines = roc_figure(result).axes[0].get_lines()
    assert len(lines) == 2  # the positive class's curve and the chance diagonal
    np.testing.assert_allclose(lines[0].get_xdata(), result["roc"]["fpr"])


def test_a_one_cycle_schedule_survives_a_run_of_a_few_steps():
    """4 steps at pct_start 0.25 leave one-cycle's warm-up empty (torch divides by zero): the
    schedule spans at least MIN_SCHEDULE_STEPS, so a smoke-test run just ends early in it."""
    from functools import partial

    from dlrepro.plant.classifier import MIN_SCHEDULE_STEPS

    model = plant_cnn(
        image_size=SIZE,
        scheduler=partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.01, pct_start=0.25),
    )
    optimizer = model.optimizer_factory(model.parameters())
    schedule = model.build_scheduler(optimizer, total_steps=4)
    assert schedule.total_steps == MIN_SCHEDULE_STEPS
    for _ in range(4):
        optimizer.step()
        schedule.step()


def test_count_metrics_are_exact_ratios():
    # the default pipeline's text recipe: 152 of 200 right, where float32 gives 0.7599999904632568
    confusion = [[75, 25], [23, 77]]
    result = count_metrics(confusion, positive=0)
    assert repr(result["accuracy"]) == "0.76"
    assert result["precision"] == 75 / 98 and result["recall"] == 0.75
    assert result["f1"] == 150 / 198


@pytest.mark.parametrize("seed", range(6))
def test_count_metrics_equal_sklearns_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    n = 2 + seed % 3
    labels, preds = (
        rng.integers(0, n, 40),
        rng.integers(0, n - seed % 2, 40),
    )  # some never predicted
    confusion = skm.confusion_matrix(labels, preds, labels=range(n)).tolist()
    if n == 2:
        result = count_metrics(confusion, positive=0)
        options: dict = {"pos_label": 0, "zero_division": 0}
    else:
        result = count_metrics(confusion, positive=None)
        options = {"average": "macro", "zero_division": 0}
    assert result["accuracy"] == skm.accuracy_score(labels, preds)
    for name, score in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        assert result[name] == pytest.approx(score(labels, preds, **options), rel=1e-12), name
