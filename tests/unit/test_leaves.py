"""The procedural leaf dataset: layout, determinism, colour statistics that do not give it away."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dlrepro.data.leaves import (
    CLASSES,
    SPLITS,
    contact_sheet,
    describe_leaf,
    generate_dataset,
    render_leaf,
)
from dlrepro.errors import ConfigError, DataError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


@pytest.fixture(scope="module")
def default_dataset(tmp_path_factory) -> tuple[Path, dict]:
    """The real default (800 train / 200 test): ~10-15 s here, and the accuracy bound below is
    only meaningful on the dataset the pipeline actually trains on."""
    root = tmp_path_factory.mktemp("leaves")
    return root, generate_dataset(root)


def test_default_layout_is_balanced_and_matches_the_counts(default_dataset):
    root, counts = default_dataset
    assert counts == {
        "train": {"Healthy": 400, "Diseased": 400},
        "test": {"Healthy": 100, "Diseased": 100},
    }
    assert sorted(p.name for p in root.iterdir()) == sorted(SPLITS)
    for split, per_class in counts.items():
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(CLASSES)
        for class_name, expected in per_class.items():
            names = sorted(p.name for p in (root / split / class_name).iterdir())
            assert names == [f"{class_name.lower()}_{i:04d}.jpg" for i in range(expected)]
    digests = {hashlib.sha256(data).hexdigest() for data in _files(root).values()}
    assert len(digests) == 1000, "every image is a different draw"


def test_default_images_decode_at_the_documented_size(default_dataset):
    root, _ = default_dataset
    for path in sorted(root.rglob("*.jpg")):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape == (160, 160, 3) and image.dtype == np.uint8


def _colour_statistics(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for label, class_name in enumerate(CLASSES):
        for path in sorted((root / split / class_name).glob("*.jpg")):
            image = cv2.imread(str(path)).astype(np.float64)
            features.append(np.concatenate([image.mean(axis=(0, 1)), image.std(axis=(0, 1))]))
            labels.append(label)
    return np.array(features), np.array(labels)


def test_per_image_colour_statistics_do_not_separate_the_classes(default_dataset):
    """A logistic regression on each channel's mean and std (6 features) must stay below 75 %
    test accuracy: the class lives in local lesion structure, not in the colour histogram."""
    root, _ = default_dataset
    x_train, y_train = _colour_statistics(root, "train")
    x_test, y_test = _colour_statistics(root, "test")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, y_train)
    assert model.score(x_test, y_test) < 0.75


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    first = generate_dataset(tmp_path / "a", train_size=6, test_size=4, seed=3, image_size=96)
    generate_dataset(tmp_path / "b", train_size=6, test_size=4, seed=3, image_size=96)
    generate_dataset(tmp_path / "c", train_size=6, test_size=4, seed=4, image_size=96)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert len(a) == 10 and first["test"] == {"Healthy": 2, "Diseased": 2}
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a)


def test_rendering_in_several_processes_writes_the_same_bytes_as_in_one(tmp_path):
    """The plain loop (workers=1) against a pool of spawned processes; the counts too."""
    sizes = {"train_size": 8, "test_size": 4, "seed": 2, "image_size": 96, "design_size": 4}
    plain = generate_dataset(tmp_path / "plain", **sizes, workers=1)
    pooled = generate_dataset(tmp_path / "pooled", **sizes, workers=2)
    assert plain == pooled == {split: {"Healthy": n, "Diseased": n} for split, n in
                               (("train", 4), ("test", 2), ("design", 2))}  # fmt: skip
    one, two = _files(tmp_path / "plain"), _files(tmp_path / "pooled")
    assert len(one) == 16 and one == two


def test_an_image_depends_only_on_its_own_seed_not_on_how_many_are_drawn(tmp_path):
    generate_dataset(tmp_path / "small", train_size=2, test_size=2, seed=5, image_size=96)
    generate_dataset(tmp_path / "large", train_size=8, test_size=6, seed=5, image_size=96)
    small, large = _files(tmp_path / "small"), _files(tmp_path / "large")
    assert small and all(large[name] == data for name, data in small.items())


def test_regenerating_smaller_removes_the_generators_own_stale_files(tmp_path):
    generate_dataset(tmp_path, train_size=6, test_size=4, image_size=96)
    generate_dataset(tmp_path, train_size=2, test_size=2, image_size=96)
    assert len(_files(tmp_path)) == 4


def test_a_foreign_file_in_a_class_folder_is_refused(tmp_path):
    (tmp_path / "train" / "Healthy").mkdir(parents=True)
    (tmp_path / "train" / "Healthy" / "my_photo.jpg").write_bytes(b"not ours")
    with pytest.raises(DataError, match=r"my_photo\.jpg"):
        generate_dataset(tmp_path, train_size=2, test_size=2, image_size=96)
    assert (tmp_path / "train" / "Healthy" / "my_photo.jpg").exists()


def test_a_third_class_folder_is_refused(tmp_path):
    (tmp_path / "test" / "Rust").mkdir(parents=True)
    with pytest.raises(DataError, match="Rust: not a class"):
        generate_dataset(tmp_path, train_size=2, test_size=2, image_size=96)


@pytest.mark.parametrize("sizes", [(3, 2), (2, 0)])
def test_unbalanceable_sizes_are_a_config_error(tmp_path, sizes):
    with pytest.raises(ConfigError, match="even number"):
        generate_dataset(tmp_path, train_size=sizes[0], test_size=sizes[1])


@pytest.mark.parametrize("diseased", [False, True])
def test_render_leaf_returns_a_bgr_uint8_square_of_the_asked_size(diseased):
    image = render_leaf(np.random.default_rng(11), diseased, image_size=192)
    assert image.shape == (192, 192, 3) and image.dtype == np.uint8
    assert image.std() > 5, "a picture, not a flat fill"
    same = render_leaf(np.random.default_rng(11), diseased, image_size=192)
    assert np.array_equal(image, same)


def test_recording_what_was_drawn_changes_no_pixel_and_names_every_kind_of_disease():
    """`drawn` reads the generator's choices without drawing from its rng: the pixels are those
    of a plain render; healthy leaves carry no disease, and over 40 diseased leaves every kind
    the generator knows turns up (a record stuck on one kind would not)."""
    kinds = set()
    for class_name in CLASSES:
        for index in range(40 if class_name == "Diseased" else 8):
            rng_args = (7, SPLITS.index("train"), CLASSES.index(class_name), index)
            drawn: dict = {}
            recorded = render_leaf(
                np.random.default_rng(rng_args), class_name == "Diseased", 96, drawn
            )
            plain = render_leaf(np.random.default_rng(rng_args), class_name == "Diseased", 96)
            assert np.array_equal(recorded, plain)
            if class_name == "Healthy":
                assert drawn["diseases"] == [] and drawn["severity"] is None
            else:
                assert 1 <= len(drawn["diseases"]) <= 2 and 0.25 <= drawn["severity"] <= 1
                kinds.update(drawn["diseases"])
            assert isinstance(drawn["insect_holes"], bool)
    assert kinds == {"spots", "spots, early", "blight", "mosaic, patches", "mosaic, interveinal"}


# sha256 of render_leaf's pixels at commit c5a5a3f, before the generator could record what it
# drew: copied from that version's output, so that recording is proven not to move a draw
# (train split of seed 0; (class index, image index): mosaic patches and spots; blight and
# insect holes; interveinal chlorosis; interveinal chlorosis, early spots and holes; healthy).
PIXELS_BEFORE_RECORDING = [
    ((1, 3), "04022a5fa961b4239c35c78c6da8f20941ae3e18caf405b840d9a7dc6b541ea1"),
    ((1, 6), "a4478b2d4c18a76b24ee710cf188e44a01f0c9d8acc8eba507bb111818190a16"),
    ((1, 13), "201e3ea8ff1ef634f952566e9f7c75e1417ceba1194b5a3ca52934fab0b1d8ed"),
    ((1, 22), "0d07fb7253b5acafcf38db6a9c7a73f70d98a6261864dfa05c5fcdbde2733d3c"),
    ((0, 2), "8a57ff694526bc69cd34d6f8da08f79f70df290131bc7d6fd5fb27bb8e98c17f"),
]


@pytest.mark.parametrize(("leaf", "digest"), PIXELS_BEFORE_RECORDING)
def test_the_generator_draws_the_pixels_it_drew_before_it_recorded_its_choices(leaf, digest):
    class_index, index = leaf
    drawn: dict = {}
    rng = np.random.default_rng([0, SPLITS.index("train"), class_index, index])
    image = render_leaf(rng, CLASSES[class_index] == "Diseased", 160, drawn)
    assert hashlib.sha256(image.tobytes()).hexdigest() == digest, drawn


def test_describe_leaf_reads_split_class_and_index_from_the_generators_file_name():
    # The generator seeds each image with [seed, split index, class index, image index].
    drawn: dict = {}
    render_leaf(np.random.default_rng([3, 1, 1, 5]), True, 96, drawn)
    assert describe_leaf(3, "test/Diseased/diseased_0005.jpg", 96) == drawn
    assert describe_leaf(3, "train/Healthy/healthy_0001.jpg", 96)["diseases"] == []
    for wrong in ("test/Diseased/healthy_0000.jpg", "val/Healthy/healthy_0000.jpg", "x.jpg"):
        with pytest.raises(DataError, match="the leaf generator writes"):
            describe_leaf(3, wrong, 96)


def test_contact_sheet_has_one_labelled_row_per_class(tmp_path):
    generate_dataset(tmp_path / "data", train_size=6, test_size=2, image_size=96)
    out = contact_sheet(tmp_path / "data", per_class=3, out=tmp_path / "sheets" / "leaves.png")
    sheet = cv2.imread(str(out))
    assert out == tmp_path / "sheets" / "leaves.png"
    # Two rows of 96-pixel tiles with a 4-pixel gap; a label column, then 3 tiles plus gaps.
    assert sheet.shape == (2 * 96 + 4, 150 + 3 * (96 + 4), 3)
    first_tile = cv2.imread(str(tmp_path / "data" / "train" / "Healthy" / "healthy_0000.jpg"))
    assert np.array_equal(sheet[:96, 150 : 150 + 96], first_tile)


def test_contact_sheet_with_too_few_images_names_the_folder(tmp_path):
    generate_dataset(tmp_path, train_size=2, test_size=2, image_size=96)
    with pytest.raises(DataError, match="Healthy: needs 2"):
        contact_sheet(tmp_path, per_class=2, out=tmp_path / "sheet.png")
