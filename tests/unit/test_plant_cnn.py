"""The plant CNN's architecture, outputs and loss, and the datamodule's batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlrepro.errors import DataError
from dlrepro.plant.datamodule import EpochBatchSampler, ImageBatches, PlantDataModule
from dlrepro.plant.inference import images_to_tensor, load_checkpoint, square_symmetries
from dlrepro.plant.networks import AvgMaxPool
from helpers.models import plant_cnn

CLASSES = ["Diseased", "Healthy"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/unit/conftest.py


def random_split(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 2


def test_parameter_count_matches_the_texts_keras_model():
    model = plant_cnn(num_classes=2, image_size=128)
    assert sum(p.numel() for p in model.parameters()) == 7_392_449


def test_width_options_change_the_architecture():
    model = plant_cnn(image_size=32, conv_channels=(8, 16), dense_units=10)
    # 32 → 30 → 15 → 13 → 6: 16·6·6 features into the dense layer.
    assert model.net.head[1].in_features == 16 * 6 * 6
    assert model.net.head[1].out_features == 10


@pytest.mark.parametrize(("num_classes", "shape"), [(2, (4, 1)), (3, (4, 3))])
def test_forward_gives_one_logit_binary_and_one_per_class_otherwise(num_classes, shape):
    model = plant_cnn(num_classes=num_classes, image_size=64)
    logits = model(torch.rand(4, 3, 64, 64))
    assert logits.shape == shape
    probs = model.predict_step(torch.rand(4, 3, 64, 64), 0)
    if num_classes == 2:
        assert probs.shape == (4,)
    else:
        assert probs.shape == (4, 3)
        torch.testing.assert_close(probs.sum(dim=1), torch.ones(4))
    assert ((probs >= 0) & (probs <= 1)).all()


def test_channels_last_changes_layout_not_results():
    images = torch.rand(3, 3, 32, 32)
    fast, plain = plant_cnn(image_size=32), plant_cnn(image_size=32, channels_last=False)
    assert fast.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.net.features[0].weight.is_contiguous()
    torch.testing.assert_close(fast(images), plain(images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels_last", [True, False])
def test_pooling_before_relu_computes_the_texts_function_and_gradients(channels_last):
    """The fast block order (conv → pool → ReLU, in place) against the text's (conv → ReLU →
    pool), same weights, at the text's size: equal outputs and equal gradients of every
    parameter for a batch, to fp32 tolerance, so "the same model as the text" stays true."""
    text = plant_cnn(image_size=128, pool_before_relu=False, channels_last=channels_last)
    fast = plant_cnn(image_size=128, pool_before_relu=True, channels_last=channels_last)
    fast.load_state_dict(text.state_dict())  # same names and indices in both orders
    assert [type(m).__name__ for m in text.net.features] == ["Conv2d", "ReLU", "MaxPool2d"] * 2
    assert [type(m).__name__ for m in fast.net.features] == ["Conv2d", "MaxPool2d", "ReLU"] * 2
    images = torch.rand(8, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1] * 4)
    outputs = {}
    for name, model in (("text", text), ("fast", fast)):
        logits = model(images)
        model.loss(logits, labels).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        outputs[name] = (logits.detach(), grads)
    torch.testing.assert_close(outputs["fast"][0], outputs["text"][0], rtol=1e-5, atol=1e-6)
    for name, grad in outputs["text"][1].items():
        torch.testing.assert_close(outputs["fast"][1][name], grad, rtol=1e-4, atol=1e-6)
    assert sum(p.numel() for p in fast.parameters()) == 7_392_449


def test_tuned_options_build_a_small_pooled_network_that_keeps_pool_relu_equivalence():
    """batch_norm, same padding, a global max-pool and dropout (the tuned recipe): the head no
    longer depends on the image size, and the fast block order is still the plain one's
    function (in eval mode, where batch norm and dropout are fixed)."""
    options = {"conv_channels": (8, 16), "dense_units": 12, "batch_norm": True}
    options |= {"padding": "same", "global_pool": "max", "dropout": 0.2}
    fast = plant_cnn(image_size=32, **options).eval()
    plain = plant_cnn(image_size=32, pool_before_relu=False, **options).eval()
    plain.load_state_dict(fast.state_dict())
    names = [type(m).__name__ for m in fast.net.features]
    assert names == ["Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU"] * 2
    assert fast.net.features[0].bias is None  # batch norm's shift replaces the conv bias
    images = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(fast(images), plain(images))
    assert plant_cnn(image_size=64, **options)(torch.rand(2, 3, 64, 64)).shape == (2, 1)
    with pytest.raises(ValueError, match="global_pool"):
        plant_cnn(global_pool="mean")


def test_avgmax_pool_is_the_mean_and_the_max_of_each_channel_side_by_side():
    """global_pool="avgmax": the head sees each channel's mean (how much of the leaf a diffuse
    mottling covers) and its max (one small lesion), so its input doubles."""
    features = torch.randn(2, 5, 7, 7)
    pooled = AvgMaxPool()(features)
    expected = torch.cat([nn.AdaptiveAvgPool2d(1)(features), nn.AdaptiveMaxPool2d(1)(features)], 1)
    torch.testing.assert_close(pooled, expected)
    options = {"conv_channels": (8, 16), "dense_units": None, "padding": "same"}
    model = plant_cnn(image_size=32, global_pool="avgmax", **options)
    assert model.net.head[-1].in_features == 2 * 16
    assert model(torch.rand(3, 3, 32, 32)).shape == (3, 1)


def test_same_init_seed_builds_the_same_network_whatever_the_global_rng():
    torch.manual_seed(1)
    first = plant_cnn(image_size=32, init_seed=7)
    torch.manual_seed(2)
    second = plant_cnn(image_size=32, init_seed=7)
    other = plant_cnn(image_size=32, init_seed=8)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first.net.features[0].weight, other.net.features[0].weight)


def test_binary_loss_equals_binary_crossentropy_on_the_sigmoid():
    model = plant_cnn(image_size=32)
    logits = torch.linspace(-4, 4, 9).unsqueeze(1)
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1])
    expected = F.binary_cross_entropy(torch.sigmoid(logits[:, 0]), labels.float())
    torch.testing.assert_close(model.loss(logits, labels), expected)


def test_multiclass_loss_is_cross_entropy():
    model = plant_cnn(num_classes=3, image_size=32)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.2, 3.0]])
    labels = torch.tensor([0, 1])
    expected = -torch.log_softmax(logits, dim=1)[[0, 1], labels].mean()
    torch.testing.assert_close(model.loss(logits, labels), expected)


@pytest.mark.parametrize(
    ("image_size", "depths", "padding", "smallest"),
    [
        (31, [1] * 5, "same", 32),  # by hand: 32 = 2**5
        (21, [1] * 3, "valid", 22),  # 22 → 20/2 → 8/2 → 2/2 = 1
        (11, [2, 1], "valid", 12),  # two convs first: 12 → 8/2 → 2/2 = 1
        (7, [1, 3, 2], "same", 8),  # "same" convs keep the side, however many: 2**3
    ],
)
def test_too_small_an_image_names_the_smallest_that_fits(image_size, depths, padding, smallest):
    options = {"conv_channels": [4] * len(depths), "padding": padding, "convs_per_block": depths}
    plant_cnn(image_size=smallest, **options)
    with pytest.raises(
        ValueError, match=rf"is too small for {len(depths)} blocks .*: at least {smallest}$"
    ):
        plant_cnn(image_size=image_size, **options)


def test_extra_convolutions_keep_the_blocks_width_with_a_relu_between():
    model = plant_cnn(
        image_size=16,
        conv_channels=(4, 8),
        convs_per_block=(2, 1),
        dense_units=None,
        global_pool="avg",
    )
    # By hand: 3→4 (3·4·9 + 4), 4→4 (4·4·9 + 4), 4→8 (4·8·9 + 8), then 8 → 1 logit (8 + 1).
    assert sum(p.numel() for p in model.parameters()) == 112 + 148 + 296 + 9
    kinds = [type(layer).__name__ for layer in model.net.features]
    assert kinds == ["Conv2d", "ReLU", "Conv2d", "MaxPool2d", "ReLU", "Conv2d", "MaxPool2d", "ReLU"]
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 1)


def test_convs_per_block_needs_one_count_per_block():
    with pytest.raises(ValueError, match="one count of at least 1 per block"):
        plant_cnn(conv_channels=(4, 8), convs_per_block=(2,))


def test_class_names_must_match_num_classes():
    with pytest.raises(ValueError, match="3 class names"):
        plant_cnn(num_classes=2, class_names=["a", "b", "c"])


def test_images_become_float_chw_scaled_like_keras_rescale():
    images = np.array([[[[0, 128, 255]]]], dtype=np.uint8)  # one 1×1 RGB pixel
    tensor = images_to_tensor(images)
    assert tensor.shape == (1, 3, 1, 1) and tensor.dtype == torch.float32
    expected = torch.tensor([0, 128, 255], dtype=torch.float32) * np.float32(1 / 255)
    torch.testing.assert_close(tensor.flatten(), expected, rtol=0, atol=0)


def batches(datamodule: PlantDataModule, epoch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def numbered_split(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image i is filled with the value i, so a batch tells which rows it holds."""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, size, size, 3))
    return np.ascontiguousarray(images), np.arange(n) % 2


def rows_of(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 0, 0] * 255).round().long().tolist()


def test_train_batches_are_chw_floats_in_unit_range_covering_every_image_once():
    images, labels = numbered_split(20, 8)
    dm = PlantDataModule(CLASSES, images, labels, images, labels, batch_size=6)
    got = batches(dm)
    assert [len(y) for _, y in got] == [6, 6, 6, 2]
    x, y = got[0]
    assert x.shape == (6, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= 0 and x.max() <= 1
    rows = [row for x, _ in got for row in rows_of(x)]
    assert sorted(rows) == list(range(20)) and rows != sorted(rows)
    assert torch.equal(torch.cat([y for _, y in got]), torch.from_numpy(labels[rows]))


def test_shuffle_is_a_function_of_seed_and_epoch():
    images, labels = numbered_split(40, 2)

    def order(seed: int, epoch: int) -> list[int]:
        dm = PlantDataModule(CLASSES, images, labels, images, labels, batch_size=8, seed=seed)
        return [row for x, _ in batches(dm, epoch) for row in rows_of(x)]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(1, 0)
    assert order(0, 0) != order(0, 1)


def test_validation_batches_are_in_file_order():
    images, labels = random_split(10, 4, seed=0)
    dm = PlantDataModule(CLASSES, images, labels, images, labels, batch_size=4)
    x = torch.cat([x for x, _ in dm.val_dataloader()])
    torch.testing.assert_close(x, images_to_tensor(images))


GEOMETRY = {"hflip": True, "vflip": True, "rot90": True}  # moves pixels, changes none


def test_augmentation_changes_training_batches_only_and_is_a_function_of_seed_and_epoch():
    images, labels = random_split(32, 6, seed=0)
    plain = PlantDataModule(CLASSES, images, labels, images, labels, batch_size=32)
    augmented = PlantDataModule(
        CLASSES, images, labels, images, labels, batch_size=32, augment=GEOMETRY
    )
    (x_plain, y_plain), (x_aug, y_aug) = batches(plain)[0], batches(augmented)[0]
    assert torch.equal(y_plain, y_aug)
    moved = [not torch.equal(a, b) for a, b in zip(x_plain, x_aug, strict=True)]
    assert 0 < sum(moved) < 32  # 1 in 8 draws is the identity (hflip ∘ vflip = rot180)
    for a, b in zip(x_plain, x_aug, strict=True):  # each image is a flip/rotation of its own
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
    torch.manual_seed(123)  # whatever the global RNG holds
    assert torch.equal(batches(augmented)[0][0], x_aug)  # same (seed, epoch): same batch
    assert not torch.equal(batches(augmented, epoch=1)[0][0], x_aug)
    assert torch.equal(
        torch.cat([x for x, _ in augmented.val_dataloader()]), images_to_tensor(images)
    )


def test_colour_and_crop_augmentation_keeps_pixel_range_and_shape():
    from dlrepro.plant.augment import BatchAugment

    augment = BatchAugment(crop_scale=(0.5, 1.0), brightness=0.3, contrast=0.3, saturation=0.2)
    batch = torch.from_numpy(random_split(4, 16, seed=1)[0]).permute(0, 3, 1, 2)
    global_state = torch.get_rng_state()
    out = augment(batch, seed=3)
    assert torch.equal(torch.get_rng_state(), global_state)  # draws from its own seed only
    assert out.dtype == torch.float32 and out.shape == batch.shape
    assert out.min() >= 0 and out.max() <= 255
    assert not torch.equal(out, batch.float()) and torch.equal(augment(batch, seed=3), out)
    with pytest.raises(ValueError, match="expected uint8"):
        augment(batch.float(), seed=3)


def test_grayscale_weighs_channels_by_bt601_luma_as_torchvision_rounds_it():
    # Independent source: ITU-R BT.601 luma, Y = 0.299 R + 0.587 G + 0.114 B, which torchvision's
    # rgb_to_grayscale writes as 0.2989 / 0.587 / 0.114.
    from dlrepro.plant.augment import grayscale

    pure = torch.tensor([[255.0, 0, 0], [0, 255.0, 0], [0, 0, 255.0], [100.0, 100, 100]])
    luma = grayscale(pure.reshape(4, 3, 1, 1))
    assert luma.shape == (4, 1, 1, 1)
    expected = torch.tensor([0.2989 * 255, 0.587 * 255, 0.114 * 255, 0.9999 * 100])
    assert torch.allclose(luma.flatten(), expected, rtol=1e-6)


def test_datamodule_reads_a_memmap_without_copying_it(tmp_path):
    images, labels = random_split(12, 8, seed=3)
    np.save(tmp_path / "images.npy", images)
    mapped = np.load(tmp_path / "images.npy", mmap_mode="r")
    dm = PlantDataModule(CLASSES, mapped, labels, mapped, labels, batch_size=5)
    assert dm.train.images is mapped
    x = torch.cat([x for x, _ in dm.val_dataloader()])
    torch.testing.assert_close(x, images_to_tensor(images))


def test_datamodule_with_worker_processes_gives_the_same_batches():
    images, labels = random_split(16, 4, seed=0)
    inline = PlantDataModule(CLASSES, images, labels, images, labels, batch_size=4)
    workers = PlantDataModule(CLASSES, images, labels, images, labels, batch_size=4, num_workers=1)
    for (a, ya), (b, yb) in zip(batches(inline), batches(workers), strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((4, 8, 8), np.uint8), np.zeros(4), "uint8 N×H×W×3"),
        (np.zeros((4, 8, 8, 3), np.float32), np.zeros(4), "uint8 N×H×W×3"),
        (np.zeros((4, 8, 8, 3), np.uint8), np.zeros(3), "3 labels for 4 images"),
        (np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 1, 2, 0]), "outside 0..1"),
    ],
)
def test_unusable_arrays_raise_data_errors(images, labels, message):
    good_images, good_labels = random_split(4, 8, seed=0)
    with pytest.raises(DataError, match=message):
        PlantDataModule(CLASSES, images, labels, good_images, good_labels)


def rss_file_bytes() -> int:
    """Resident pages of file mappings in this process (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_an_epoch_over_a_memmapped_cache_does_not_keep_the_split_resident(tmp_path):
    """The cache is read a batch at a time and its pages are released after each read, so an
    epoch over a 36 MB split leaves far less than the split resident; the batches are the same
    bytes as from the array in memory."""
    count, size = 1000, 110  # 1000 × 110 × 110 × 3 bytes = 36 MB
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", pixels)
    mapped = np.load(tmp_path / "images.npy", mmap_mode="r")
    labels = np.arange(count) % 2
    from_map, in_memory = ImageBatches(mapped, labels), ImageBatches(pixels, labels)
    before = rss_file_bytes()
    for plan in EpochBatchSampler(count, 32, shuffle=True, augment=False, seed=0):
        images, _ = from_map[plan]
        assert torch.equal(images, in_memory[plan][0])
    assert rss_file_bytes() - before < pixels.nbytes / 4


def test_norm_after_pool_normalises_the_pooled_map_with_the_same_parameters():
    """norm_after_pool: conv → pool → norm → ReLU, the same parameters as conv → norm → pool →
    ReLU, and in training mode each block's statistics are those of the pooled map."""
    options = {"conv_channels": (4, 8), "dense_units": None, "batch_norm": True}
    options |= {"padding": "same", "global_pool": "avgmax"}
    before = plant_cnn(image_size=16, **options)
    after = plant_cnn(image_size=16, norm_after_pool=True, **options)
    names = [type(m).__name__ for m in after.net.features]
    assert names == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"] * 2
    assert after.net.features[0].bias is None  # the norm's shift replaces it, as before
    assert [p.shape for p in after.parameters()] == [p.shape for p in before.parameters()]
    images = torch.rand(5, 3, 16, 16)
    pooled = F.max_pool2d(after.net.features[0](images), 2)
    after.train()(images)
    torch.testing.assert_close(after.net.features[2].running_mean, 0.1 * pooled.mean((0, 2, 3)))
    with_extra = plant_cnn(image_size=16, norm_after_pool=True, convs_per_block=[2, 1], **options)
    names = [type(m).__name__ for m in with_extra.net.features[:6]]
    assert names == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "MaxPool2d", "BatchNorm2d"]


def test_square_symmetries_are_the_eight_quarter_turns_and_mirrors():
    images = torch.rand(2, 3, 6, 6)
    views = square_symmetries(images)
    assert len(views) == 8 and torch.equal(views[0], images)
    expected = [
        torch.rot90(flipped, turns, dims=(2, 3))
        for turns in range(4)
        for flipped in (images, images.flip(2))  # a mirror after a turn is a turn after one
    ]
    for view in views:
        assert sum(torch.equal(view, other) for other in expected) == 1
    assert all(not torch.equal(a, b) for i, a in enumerate(views) for b in views[i + 1 :])


def test_average_symmetries_answers_alike_for_every_symmetry_of_an_image():
    """The averaged answer is the mean of the 8 views' probabilities, so turning or mirroring the
    image cannot change it; the single-view answer (the default) does change."""
    options = {"conv_channels": (4, 8), "dense_units": None, "batch_norm": True}
    options |= {"padding": "same", "global_pool": "avgmax", "image_size": 16}
    averaged = plant_cnn(average_symmetries=True, **options).eval()
    single = plant_cnn(**options).eval()
    images = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        answer = averaged.predicted_probabilities(images)
        views = [single.probabilities(single(view)) for view in square_symmetries(images)]
        torch.testing.assert_close(answer, torch.stack(views).mean(0))
        for view in square_symmetries(images)[1:]:
            torch.testing.assert_close(averaged.predicted_probabilities(view), answer)
        turned = torch.rot90(images, 1, dims=(2, 3))
        assert not torch.allclose(single.predicted_probabilities(turned), views[0])


def test_average_symmetries_keeps_a_multiclass_answer_a_distribution():
    model = plant_cnn(num_classes=3, image_size=16, conv_channels=(4,), average_symmetries=True)
    answer = model.eval().predicted_probabilities(torch.rand(5, 3, 16, 16))
    assert answer.shape == (5, 3) and model.views_per_image == 8
    torch.testing.assert_close(answer.sum(1), torch.ones(5))


def test_norm_after_pool_without_a_norm_to_move_is_refused():
    with pytest.raises(ValueError, match="norm_after_pool needs batch_norm"):
        plant_cnn(image_size=32, norm_after_pool=True)
    with pytest.raises(ValueError, match="norm_after_pool needs batch_norm"):
        plant_cnn(image_size=32, batch_norm=True, norm_after_pool=True, pool_before_relu=False)


def test_a_checkpoint_without_its_network_config_is_refused_in_one_line(tmp_path):
    """A checkpoint of another format (one that stored no network config, as the single-module
    model before the network moved under the classifier did) is refused in one line, and one
    that has it loads as the network it was."""
    import pytorch_lightning as pl

    model = plant_cnn(image_size=32, conv_channels=(4, 8), batch_norm=True, class_names=["a", "b"])
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "old.ckpt", weights_only=True)
    saved = torch.load(tmp_path / "old.ckpt", weights_only=True)
    loaded = load_checkpoint(tmp_path / "old.ckpt")
    assert loaded.views_per_image == 1 and loaded.net.config == model.net.config
    del saved["hyper_parameters"]["network"]
    torch.save(saved, tmp_path / "older.ckpt")
    with pytest.raises(
        DataError, match=r"not a usable classifier checkpoint \(no 'network'"
    ) as err:
        load_checkpoint(tmp_path / "older.ckpt")
    assert "\n" not in str(err.value)
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(
        loaded.predicted_probabilities(images), model.eval()(images)[:, 0].sigmoid()
    )
