"""The design split: generated into design/ with data.seed + 1 (the benchmark's design set),
ingested from a design/ folder or carved from train after val, never a leak, checked in config,
and scored by `design@<recipe>`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrepro.config import load_config
from dlrepro.data.cache import load_split
from dlrepro.data.ingest import ingest
from dlrepro.data.leaves import CLASSES, describe_leaf, generate_dataset
from dlrepro.errors import ConfigError, DataError
from dlrepro.stages.evaluate import split_argument

REPO = Path(__file__).resolve().parents[2]
VAL = {"image_size": 16, "min_side": 8}  # the default val_fraction, 0.15


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def put(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def given_split(root: Path, n_train: int, n_test: int, n_design: int = 0) -> Path:
    """root/{train,test[,design]}/{Diseased,Healthy}/NN.png, lossless, every image different."""
    sizes = (("train", n_train), ("test", n_test), ("design", n_design))
    for s, (split, n) in enumerate(sizes):
        for c, name in enumerate(("Diseased", "Healthy")):
            for i in range(n):
                put(root / split / name / f"{i:02d}.png", noise(1000 * s + 100 * c + i))
    return root


def manifest(cache: Path, split: str) -> list[str]:
    return json.loads((cache / split / "manifest.json").read_text())["paths"]


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


# --- ingest -------------------------------------------------------------------------------------


def test_a_design_folder_is_ingested_as_its_own_split(tmp_path):
    source = given_split(tmp_path / "src", n_train=10, n_test=2, n_design=3)
    report = ingest(source, tmp_path / "cache", **VAL)
    assert report.counts["design"] == {"Diseased": 3, "Healthy": 3}
    assert report.counts["val"] == {"Diseased": 2, "Healthy": 2}  # from train/ only
    assert report.design_fraction is None  # a given design split, not a carved one
    paths = manifest(tmp_path / "cache", "design")
    assert paths == sorted(paths) and all(p.startswith("design/") for p in paths)
    images, labels, classes = load_split(tmp_path / "cache", "design")
    assert images.shape == (6, 16, 16, 3) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert classes == ["Diseased", "Healthy"]
    assert not {p for p in manifest(tmp_path / "cache", "train") if p.startswith("design/")}
    assert report.found["design"] == "Found 6 images belonging to 2 classes."


def test_a_design_class_train_lacks_and_a_folder_beside_a_fraction_are_one_line(tmp_path):
    source = given_split(tmp_path / "src", n_train=4, n_test=1, n_design=1)
    with pytest.raises(ConfigError) as both:
        ingest(source, tmp_path / "cache", design_fraction=0.2, **VAL)
    assert str(both.value) == (
        f"{(source / 'design').resolve()}: a design/ folder and data.design_fraction=0.2 both "
        "make a design split; remove the folder or set data.design_fraction=0"
    )
    assert "\n" not in str(both.value) and not (tmp_path / "cache").exists()
    put(source / "design" / "Rust" / "00.png", noise(5))
    with pytest.raises(DataError, match=r"class 'Rust' has no folder in train/"):
        ingest(source, tmp_path / "cache", **VAL)
    with pytest.raises(ConfigError, match=r"design_fraction must lie in \[0, 1\)"):
        ingest(source, tmp_path / "cache", design_fraction=1.0, **VAL)


def test_carved_design_is_disjoint_per_class_deterministic_and_after_val(tmp_path):
    source = given_split(tmp_path / "src", n_train=20, n_test=4)
    report = ingest(source, tmp_path / "a", design_fraction=0.2, **VAL)
    # val: round(20 × 0.15) = 3 per class; design: round(17 × 0.2) = 3 of what train has left
    assert report.counts["val"] == {"Diseased": 3, "Healthy": 3}
    assert report.counts["design"] == {"Diseased": 3, "Healthy": 3}
    assert report.counts["train"] == {"Diseased": 14, "Healthy": 14}
    assert report.design_fraction == 0.2 and report.leaks == []
    splits = {s: set(manifest(tmp_path / "a", s)) for s in ("train", "val", "design", "test")}
    for name, paths in splits.items():
        for other, others in splits.items():
            assert name == other or not paths & others, (name, other)
    assert all(p.startswith("train/") for p in splits["design"])

    ingest(source, tmp_path / "b", design_fraction=0.2, **VAL)
    for split in ("train", "val", "design", "test"):
        for name in ("images.npy", "labels.npy", "manifest.json"):
            a, b = (tmp_path / c / split / name for c in "ab")
            assert a.read_bytes() == b.read_bytes(), (split, name)
    ingest(source, tmp_path / "c", seed=1, design_fraction=0.2, **VAL)
    assert manifest(tmp_path / "c", "design") != manifest(tmp_path / "a", "design")


def test_design_fraction_zero_leaves_train_val_and_test_as_they_were(tmp_path):
    """Design is drawn after val from its own stream: carving it changes neither val nor test,
    and without it train is what it always was (train ∪ design of a carved run)."""
    source = given_split(tmp_path / "src", n_train=20, n_test=4)
    ingest(source, tmp_path / "none", **VAL)
    ingest(source, tmp_path / "zero", design_fraction=0.0, **VAL)
    ingest(source, tmp_path / "carved", design_fraction=0.25, **VAL)
    for split in ("train", "val", "test"):
        for name in ("images.npy", "labels.npy", "manifest.json"):
            none, zero = (tmp_path / c / split / name for c in ("none", "zero"))
            assert none.read_bytes() == zero.read_bytes(), (split, name)
    for split in ("val", "test"):
        for name in ("images.npy", "labels.npy", "manifest.json"):
            none, carved = (tmp_path / c / split / name for c in ("none", "carved"))
            assert none.read_bytes() == carved.read_bytes(), (split, name)
    carved_train = manifest(tmp_path / "carved", "train") + manifest(tmp_path / "carved", "design")
    assert sorted(carved_train) == manifest(tmp_path / "none", "train")
    assert load_split(tmp_path / "zero", "design")[0].shape == (0, 16, 16, 3)


def test_a_design_copy_of_train_and_a_test_copy_of_design_are_dropped_as_leaks(tmp_path):
    source = given_split(tmp_path / "src", n_train=3, n_test=2, n_design=2)
    in_train = source / "train" / "Healthy" / "01.png"
    in_design = source / "design" / "Diseased" / "00.png"
    put(source / "design" / "Healthy" / "copy.png", cv2.imread(str(in_train)))
    put(source / "test" / "Diseased" / "copy.png", cv2.imread(str(in_design)))
    report = ingest(source, tmp_path / "cache", image_size=16, min_side=8, val_fraction=0)
    assert report.leaks == [
        {"split": "design", "path": "design/Healthy/copy.png", "copy_of": "train/Healthy/01.png"},
        {"split": "test", "path": "test/Diseased/copy.png", "copy_of": "design/Diseased/00.png"},
    ]
    assert "design/Healthy/copy.png" not in manifest(tmp_path / "cache", "design")
    assert "test/Diseased/copy.png" not in manifest(tmp_path / "cache", "test")
    assert report.counts["design"] == {"Diseased": 2, "Healthy": 2}


def test_a_train_split_too_small_to_carve_design_is_one_line(tmp_path):
    source = given_split(tmp_path / "src", n_train=1, n_test=1)
    with pytest.raises(DataError, match="too few train images to carve a design split"):
        ingest(source, tmp_path / "cache", image_size=16, val_fraction=0, design_fraction=0.5)


# --- the generator ----------------------------------------------------------------------------


def test_generated_design_leaves_are_what_seed_plus_one_draws_for_test(tmp_path):
    counts = generate_dataset(tmp_path / "a", 2, 2, seed=3, image_size=96, design_size=8)
    generate_dataset(tmp_path / "b", 2, 8, seed=4, image_size=96)
    assert counts["design"] == {"Healthy": 4, "Diseased": 4}
    design = {k: v for k, v in files(tmp_path / "a").items() if k.startswith("design/")}
    other_test = {k: v for k, v in files(tmp_path / "b").items() if k.startswith("test/")}
    assert len(design) == 8
    assert design == {"design/" + k.removeprefix("test/"): v for k, v in other_test.items()}
    own = {v for k, v in files(tmp_path / "a").items() if not k.startswith("design/")}
    assert not own & set(design.values())
    name = "design/Diseased/diseased_0001.jpg"
    assert describe_leaf(3, name, 96) == describe_leaf(4, "test/Diseased/diseased_0001.jpg", 96)


def test_design_size_zero_removes_the_generators_design_folder_and_odd_sizes_fail(tmp_path):
    generate_dataset(tmp_path, 2, 2, image_size=96, design_size=4)
    assert sorted(p.name for p in (tmp_path / "design").iterdir()) == sorted(CLASSES)
    generate_dataset(tmp_path, 2, 2, image_size=96, design_size=2)
    assert len([k for k in files(tmp_path) if k.startswith("design/")]) == 2
    counts = generate_dataset(tmp_path, 2, 2, image_size=96)
    assert "design" not in counts and not (tmp_path / "design").exists()
    with pytest.raises(ConfigError, match="design_size must be an even number >= 0"):
        generate_dataset(tmp_path, 2, 2, image_size=96, design_size=3)
    put(tmp_path / "design" / "Healthy" / "mine.png", noise(1))
    with pytest.raises(DataError, match=r"mine\.png: not written by the leaf generator"):
        generate_dataset(tmp_path, 2, 2, image_size=96)
    assert (tmp_path / "design" / "Healthy" / "mine.png").exists()


def test_the_generated_design_split_is_the_benchmarks_design_set(tmp_path):
    """benchmarks.recipes.design_set is the pipeline's design split (the same generator call and
    ingest), and holds exactly the leaves the benchmark used before: the test split of a dataset
    generated with data.seed + 1, prepared as prepare does."""
    from benchmarks.recipes import design_set, other_leaves

    bench = design_set(tmp_path / "bench", 8)
    images, labels, classes = load_split(bench, "design")
    # before: other_leaves(tmp / "design", DESIGN_SEED_OFFSET=1, train=4, test=size), its test
    before = other_leaves(tmp_path / "before", 1, train=4, test=8)
    old_images, old_labels, old_classes = load_split(before, "test")
    assert images.shape[0] == 8 and classes == old_classes
    np.testing.assert_array_equal(images, old_images)
    np.testing.assert_array_equal(labels, old_labels)
    # and the files: the pipeline's design/ leaves are the earlier set's test/ leaves, byte for byte
    data = load_config(REPO / "params.yaml").data
    generate_dataset(tmp_path / "pipeline", 2, 2, data.seed, data.raw_size, design_size=8)
    rows = manifest(bench, "design")
    old_leaves = tmp_path / "before" / "plant_disease_dataset"
    assert len(rows) == 8
    for row in rows:
        old = old_leaves / ("test/" + row.removeprefix("design/"))
        assert (tmp_path / "pipeline" / row).read_bytes() == old.read_bytes(), row


# --- config and the stage's argument ----------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.design_size=3"], "data.design_size=3: must be even"),
        (["data.design_size=-2"], "data.design_size=-2: must be >= 0"),
        (["data.design_fraction=1.0"], "data.design_fraction=1.0: must be < 1"),
        (
            ["data.design_fraction=0.1", "data.design_size=8"],
            "data.design_fraction=0.1: the generated design/ folder (data.design_size=8)",
        ),
    ],
)
def test_bad_design_settings_are_one_line(overrides, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "params.yaml", overrides)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_folder_dataset_may_carve_design_and_generated_data_may_turn_it_off():
    carved = ["data.source=folder", "data.design_fraction=0.1", "data.design_size=8"]
    assert load_config(REPO / "params.yaml", carved).data.design_fraction == 0.1
    assert load_config(REPO / "params.yaml", ["data.design_size=0"]).data.design_size == 0
    # generated data without its design/ folder may carve one from train instead
    carve = ["data.design_size=0", "data.design_fraction=0.1"]
    assert load_config(REPO / "params.yaml", carve).data.design_fraction == 0.1


def test_the_evaluate_stage_scores_test_or_design_only():
    assert split_argument(["text"]) == "test"
    assert split_argument(["text", "design"]) == "design"
    assert split_argument(["text", "test"]) == "test"
    for wrong in (["text", "val"], ["text", "design", "more"]):
        with pytest.raises(ConfigError, match=r"optionally a split \(test, design\)"):
            split_argument(wrong)
