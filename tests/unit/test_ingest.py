"""Image-folder ingest: layouts, every kind of bad or odd file, leaks, the cache and its reload."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dlrepro.data.cache import load_split
from dlrepro.data.images import jpeg_reduction, load_square_rgb
from dlrepro.data.ingest import ingest
from dlrepro.errors import ConfigError, DataError

# Tiny squares keep every test fast; no val split, except in the tests about val.
SMALL = {"image_size": 16, "min_side": 8, "val_fraction": 0}
CLASSES = ("Diseased", "Healthy")


def noise(seed: int, shape: tuple[int, ...] = (24, 32, 3)) -> np.ndarray:
    """A distinct picture per seed (BGR, as OpenCV writes it)."""
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def put(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def given_split(root: Path, n_train: int = 3, n_test: int = 2) -> Path:
    """root/{train,test}/{Diseased,Healthy}/NN.png, lossless, every image different."""
    for s, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        for c, name in enumerate(CLASSES):
            for i in range(n):
                put(root / split / name / f"{i:02d}.png", noise(1000 * s + 100 * c + i))
    return root


def expected_square(bgr: np.ndarray, size: int = 16) -> np.ndarray:
    return cv2.cvtColor(
        cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
    )


def manifest(cache: Path, split: str) -> list[str]:
    return json.loads((cache / split / "manifest.json").read_text())["paths"]


def skip_reasons(report) -> dict[str, str]:
    return {entry["path"]: entry["reason"] for entry in report.skipped}


def test_given_split_is_cached_as_rgb_memmaps_in_sorted_order(tmp_path, capsys):
    source = given_split(tmp_path / "src")
    report = ingest(source, tmp_path / "cache", **SMALL)

    images, labels, classes = load_split(tmp_path / "cache", "train")
    assert isinstance(images, np.memmap) and images.mode == "r"
    assert images.dtype == np.uint8 and images.shape == (6, 16, 16, 3)
    assert classes == ["Diseased", "Healthy"]
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 0, 1, 1, 1]
    paths = manifest(tmp_path / "cache", "train")
    assert paths == sorted(paths) and paths[3] == "train/Healthy/00.png"
    # row 3 is train/Healthy/00.png: resized with INTER_AREA, channels turned BGR → RGB
    np.testing.assert_array_equal(images[3], expected_square(noise(100)))
    assert report.counts == {
        "train": {"Diseased": 3, "Healthy": 3},
        "val": {"Diseased": 0, "Healthy": 0},
        "design": {"Diseased": 0, "Healthy": 0},  # no design/ folder, no design_fraction
        "test": {"Diseased": 2, "Healthy": 2},
    }
    assert capsys.readouterr().out.splitlines() == [
        "train: Found 6 images belonging to 2 classes.",
        "val: Found 0 images belonging to 2 classes.",
        "design: Found 0 images belonging to 2 classes.",
        "test: Found 4 images belonging to 2 classes.",
    ]
    assert json.loads(json.dumps(report.to_dict()))["layout"] == "given split"


def test_rerun_writes_byte_identical_cache(tmp_path):
    source = given_split(tmp_path / "src")
    ingest(source, tmp_path / "a", **SMALL)
    ingest(source, tmp_path / "b", **SMALL)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert [str(f) for f in files] == [
        "classes.json",
        "design/images.npy",  # an empty design split: no design/ folder, no design_fraction
        "design/labels.npy",
        "design/manifest.json",
        "test/images.npy",
        "test/labels.npy",
        "test/manifest.json",
        "train/images.npy",
        "train/labels.npy",
        "train/manifest.json",
        "val/images.npy",
        "val/labels.npy",
        "val/manifest.json",
    ]  # the staging memmap is gone
    for file in files:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


def test_three_classes_are_numbered_in_sorted_name_order(tmp_path):
    source = tmp_path / "src"
    for c, name in enumerate(("gamma", "alpha", "beta")):  # created out of order on purpose
        for split in ("train", "test"):
            for i in range(2):
                put(
                    source / split / name / f"{i}.png",
                    noise(10 * c + i + (50 if split == "test" else 0)),
                )
    ingest(source, tmp_path / "cache", **SMALL)
    for split in ("train", "test"):
        _, labels, classes = load_split(tmp_path / "cache", split)
        assert classes == ["alpha", "beta", "gamma"]
        folders = [path.split("/")[1] for path in manifest(tmp_path / "cache", split)]
        assert [classes[label] for label in labels] == folders


def test_bad_files_are_skipped_with_reasons_and_good_ones_kept(tmp_path):
    source = given_split(tmp_path / "src")
    bad = source / "train" / "Healthy"
    good_jpeg = cv2.imencode(".jpg", noise(7))[1].tobytes()
    (bad / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (bad / "random.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    (bad / "empty.png").write_bytes(b"")
    (bad / "notes.txt").write_text("not a leaf")
    (bad / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (bad / "LICENSE").write_text("no suffix")
    put(bad / "tiny.png", noise(8, (8, 6, 3)))
    put(bad / "float.tiff", np.zeros((20, 20), np.float32))

    report = ingest(source, tmp_path / "cache", **SMALL)

    reasons = skip_reasons(report)
    prefix = "train/Healthy/"
    assert (
        reasons[prefix + "truncated.jpg"] == "corrupt or truncated JPEG (OpenCV cannot decode it)"
    )
    unreadable = "not a readable image (unknown format, corrupt or truncated)"
    assert reasons[prefix + "random.jpg"] == unreadable  # no JPEG marker: not read as a JPEG
    assert reasons[prefix + "float.tiff"] == (
        "unsupported sample type float32 (8- and 16-bit images only)"
    )
    assert reasons[prefix + "empty.png"] == "empty file (0 bytes)"
    assert reasons[prefix + "notes.txt"] == "not an image file (suffix '.txt')"
    assert reasons[prefix + ".DS_Store"] == "hidden file"
    assert reasons[prefix + "LICENSE"] == "not an image file (no suffix)"
    assert reasons[prefix + "tiny.png"] == "too small (6×8; min_side is 8)"
    assert len(reasons) == 8
    # nothing else lost
    assert report.counts["train"] == {"Diseased": 3, "Healthy": 3}
    assert manifest(tmp_path / "cache", "train")[3:] == [prefix + f"0{i}.png" for i in range(3)]


def test_small_images_above_min_side_are_upscaled_and_reported(tmp_path):
    source = given_split(tmp_path / "src")
    put(source / "train" / "Healthy" / "small.png", noise(9, (10, 12, 3)))
    report = ingest(source, tmp_path / "cache", image_size=16, min_side=10, val_fraction=0)
    assert {"path": "train/Healthy/small.png", "conversions": ["upscaled"]} in report.converted
    assert report.counts["train"]["Healthy"] == 4


def test_colour_depth_and_alpha_conversions(tmp_path):
    source = given_split(tmp_path / "src")
    folder = source / "train" / "Diseased"
    put(folder / "gray.png", np.full((20, 20), 77, np.uint8))
    put(folder / "gray.jpg", np.full((24, 24), 200, np.uint8))
    put(folder / "deep.png", np.full((20, 20, 3), 1000, np.uint16))
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :, :3] = (0, 0, 200)  # BGR: red
    rgba[:, :10, 3] = 255  # left half opaque, right half fully transparent
    put(folder / "rgba.png", rgba)
    Image.new("CMYK", (24, 24), (0, 255, 255, 0)).save(folder / "cmyk.jpg", "JPEG")  # pure red

    report = ingest(source, tmp_path / "cache", **SMALL)

    conversions = {entry["path"].split("/")[-1]: entry["conversions"] for entry in report.converted}
    assert conversions == {
        "cmyk.jpg": ["CMYK→RGB"],
        "deep.png": ["16-bit→8-bit"],
        "gray.jpg": ["grayscale→RGB"],
        "gray.png": ["grayscale→RGB"],
        "rgba.png": ["RGBA→RGB"],
    }
    assert report.conversion_counts["grayscale→RGB"] == 2
    images, _, _ = load_split(tmp_path / "cache", "train")
    rows = {path.split("/")[-1]: i for i, path in enumerate(manifest(tmp_path / "cache", "train"))}
    assert (images[rows["gray.png"]] == 77).all()
    assert (np.abs(images[rows["gray.jpg"]].astype(int) - 200) <= 2).all()
    assert (images[rows["deep.png"]] == 4).all()  # 1000 × 255 / 65535 = 3.89; >> 8 would give 3
    red = images[rows["cmyk.jpg"]].reshape(-1, 3).mean(axis=0)
    assert red[0] > 240 and red[1] < 15 and red[2] < 15
    composited = images[rows["rgba.png"]]
    assert (composited[:, :7] == (200, 0, 0)).all()  # opaque red stays red
    assert (composited[:, 9:] == 255).all()  # transparent becomes white, not the stored red


def test_16_bit_scaling_rounds_every_value(tmp_path):
    all_values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    rgb = load_square_rgb(put(tmp_path / "ramp.png", all_values), image_size=256).rgb
    expected = np.floor(all_values / 257 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(rgb[:, :, 0], expected)
    assert rgb[-1, -1, 0] == 255 and rgb[0, 255, 0] == 1  # 255 / 257 rounds up; >> 8 gives 0


def test_semi_transparent_pixels_blend_with_white(tmp_path):
    bgra = np.zeros((16, 16, 4), np.uint8)
    bgra[:, :, 3] = 128  # black at about 50 % opacity
    rgb = load_square_rgb(put(tmp_path / "half.png", bgra), image_size=16).rgb
    assert (rgb == 127).all()  # 255 × (255 − 128) / 255 = 127


def test_huge_jpeg_is_decoded_at_reduced_scale(tmp_path):
    assert jpeg_reduction(4000, 6000, 128) == 8
    assert jpeg_reduction(4000, 6000, 600) == 4  # the short side stays at least image_size
    assert jpeg_reduction(1000, 1000, 128) == 1  # ordinary photos take the plain path
    smooth = cv2.resize(noise(3, (40, 60, 3)), (6000, 4000), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / "huge.jpg"
    path.write_bytes(cv2.imencode(".jpg", smooth)[1].tobytes())
    rgb = load_square_rgb(path, image_size=128).rgb
    reference = expected_square(cv2.imread(str(path)), size=128)
    assert rgb.shape == (128, 128, 3)
    assert np.abs(rgb.astype(int) - reference).mean() < 2


def test_test_copy_of_a_train_image_is_dropped_as_leak(tmp_path):
    source = given_split(tmp_path / "src")
    # the same pixels in another format: different bytes, same model input
    put(source / "test" / "Healthy" / "copy.bmp", noise(101))
    report = ingest(source, tmp_path / "cache", **SMALL)
    assert report.leaks == [
        {"split": "test", "path": "test/Healthy/copy.bmp", "copy_of": "train/Healthy/01.png"}
    ]
    assert report.counts["test"]["Healthy"] == 2
    assert "test/Healthy/copy.bmp" not in manifest(tmp_path / "cache", "test")


def test_duplicates_inside_a_split_are_kept_and_reported(tmp_path):
    source = given_split(tmp_path / "src")
    put(source / "train" / "Diseased" / "again.png", noise(0))
    report = ingest(source, tmp_path / "cache", **SMALL)
    assert report.duplicates == [
        {"split": "train", "paths": ["train/Diseased/00.png", "train/Diseased/again.png"]}
    ]
    assert report.counts["train"]["Diseased"] == 4 and report.leaks == []


def test_empty_test_class_is_reported_not_fatal(tmp_path):
    source = given_split(tmp_path / "src")
    for file in (source / "test" / "Healthy").iterdir():
        file.unlink()
    report = ingest(source, tmp_path / "cache", **SMALL)
    assert report.empty_classes == {
        "train": [],
        "val": ["Diseased", "Healthy"],
        "design": ["Diseased", "Healthy"],
        "test": ["Healthy"],
    }
    assert report.warnings == ["test has no usable image of class 'Healthy'"]
    assert load_split(tmp_path / "cache", "test")[1].tolist() == [0, 0]


@pytest.mark.parametrize("content", ["empty", "corrupt"])
def test_train_class_without_usable_image_is_one_line_error(tmp_path, content):
    source = given_split(tmp_path / "src")
    folder = source / "train" / "Healthy"
    for file in folder.iterdir():
        file.unlink()
    if content == "corrupt":
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(DataError) as err:
        ingest(source, tmp_path / "cache", **SMALL)
    message = str(err.value)
    assert "\n" not in message and str(folder) in message and "class 'Healthy'" in message
    assert ("broken.jpg" in message) == (content == "corrupt")
    assert not (tmp_path / "cache" / "train").exists()  # nothing half-written


def train_without_test(root: Path) -> None:
    for c, name in enumerate(CLASSES):
        put(root / "train" / name / "a.png", noise(c))


def loose_images(root: Path) -> None:
    put(root / "leaf.png", noise(0))


def one_class(root: Path) -> None:
    put(root / "Healthy" / "a.png", noise(0))


def unknown_class_in_test(root: Path) -> None:
    given_split(root)
    put(root / "test" / "Rust" / "a.png", noise(0))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (train_without_test, "has train/ but no test/"),
        (loose_images, "not an image dataset"),
        (one_class, "only one class folder"),
        (unknown_class_in_test, "class 'Rust' has no folder in train/"),
    ],
)
def test_unusable_layouts_are_one_line_data_errors(tmp_path, build, match):
    source = tmp_path / "src"
    source.mkdir()
    build(source)
    with pytest.raises(DataError, match=match) as err:
        ingest(source, tmp_path / "cache", **SMALL)
    assert "\n" not in str(err.value)


def test_arguments_and_paths_are_checked(tmp_path):
    source = given_split(tmp_path / "src")
    with pytest.raises(ConfigError, match="test_fraction"):
        ingest(source, tmp_path / "cache", test_fraction=1.0)
    with pytest.raises(DataError, match="no such folder"):
        ingest(tmp_path / "nowhere", tmp_path / "cache")
    with pytest.raises(DataError, match="outside the source"):
        ingest(source, source / "cache")
    with pytest.raises(DataError, match="no cached 'train' split"):
        load_split(tmp_path / "cache", "train")


def single_folder(root: Path, sizes: dict[str, int]) -> Path:
    for c, (name, n) in enumerate(sizes.items()):
        for i in range(n):
            put(root / name / f"{i:02d}.png", noise(100 * c + i))
    return root


def test_one_folder_gets_a_seeded_stratified_split(tmp_path):
    source = single_folder(tmp_path / "src", {"rust": 10, "healthy": 20, "blight": 30})
    (source / ".ipynb_checkpoints").mkdir()  # Jupyter's folder must not become a class

    report = ingest(source, tmp_path / "a", test_fraction=0.2, seed=0, **SMALL)

    assert report.classes == ["blight", "healthy", "rust"]
    assert report.counts == {
        "train": {"blight": 24, "healthy": 16, "rust": 8},
        "val": {"blight": 0, "healthy": 0, "rust": 0},
        "design": {"blight": 0, "healthy": 0, "rust": 0},
        "test": {"blight": 6, "healthy": 4, "rust": 2},
    }
    assert {"path": ".ipynb_checkpoints", "reason": "hidden"} in report.ignored
    train, test = manifest(tmp_path / "a", "train"), manifest(tmp_path / "a", "test")
    assert not set(train) & set(test) and len(set(train) | set(test)) == 60
    assert report.seed == 0 and report.test_fraction == 0.2 and report.leaks == []

    ingest(source, tmp_path / "b", test_fraction=0.2, seed=0, **SMALL)
    assert manifest(tmp_path / "b", "test") == test  # same seed, same split
    ingest(source, tmp_path / "c", test_fraction=0.2, seed=1, **SMALL)
    assert manifest(tmp_path / "c", "test") != test


def test_one_folder_split_keeps_identical_images_together(tmp_path):
    source = single_folder(tmp_path / "src", {"a": 6, "b": 6})
    for i in range(3):
        put(source / "a" / f"copy{i}.png", noise(0))  # four copies of a/00.png in all
    for seed in range(5):
        report = ingest(source, tmp_path / f"cache{seed}", seed=seed, **SMALL)
        copies = {"a/00.png", "a/copy0.png", "a/copy1.png", "a/copy2.png"}
        test = set(manifest(tmp_path / f"cache{seed}", "test"))
        assert copies <= test or not copies & test
        assert report.leaks == []
        assert (
            min(report.counts["test"].values()) >= 1 and min(report.counts["train"].values()) >= 1
        )


def test_one_folder_class_of_identical_images_stays_in_train(tmp_path):
    source = single_folder(tmp_path / "src", {"b": 5})
    for i in range(3):
        put(source / "a" / f"{i}.png", noise(7))  # one picture three times: it cannot be split
    report = ingest(source, tmp_path / "cache", **SMALL)
    assert report.counts == {
        "train": {"a": 3, "b": 4},
        "val": {"a": 0, "b": 0},
        "design": {"a": 0, "b": 0},
        "test": {"a": 0, "b": 1},
    }
    assert report.warnings == ["test has no usable image of class 'a'"]


def test_jpeg_exif_orientation_is_applied_like_cv2_imread(tmp_path):
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the left half ends up on top
    stored.save(tmp_path / "phone.jpg", exif=exif.tobytes())
    rgb = load_square_rgb(tmp_path / "phone.jpg", image_size=16).rgb.astype(int)
    assert rgb[:6, :, 0].min() > 200 and rgb[:6, :, 2].max() < 60  # red on top
    assert rgb[-6:, :, 2].min() > 200 and rgb[-6:, :, 0].max() < 60  # blue below


VAL = {"image_size": 16, "min_side": 8}  # the default val_fraction, 0.15


def test_val_is_carved_from_train_per_class_seeded_and_leaves_test_alone(tmp_path):
    source = given_split(tmp_path / "src", n_train=20, n_test=4)
    report = ingest(source, tmp_path / "a", **VAL)
    assert report.counts["val"] == {"Diseased": 3, "Healthy": 3}  # round(20 × 0.15) per class
    assert report.counts["train"] == {"Diseased": 17, "Healthy": 17}
    assert report.val_fraction == 0.15 and report.seed == 0
    train, val = manifest(tmp_path / "a", "train"), manifest(tmp_path / "a", "val")
    assert not set(train) & set(val) and all(path.startswith("train/") for path in val)
    images, labels, _ = load_split(tmp_path / "a", "val")
    assert images.shape == (6, 16, 16, 3) and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]

    ingest(source, tmp_path / "b", **VAL)
    assert manifest(tmp_path / "b", "val") == val  # same seed, same val
    ingest(source, tmp_path / "c", seed=1, **VAL)
    assert manifest(tmp_path / "c", "val") != val
    ingest(source, tmp_path / "d", **SMALL)  # no val: the same test split, train is all of it
    assert manifest(tmp_path / "d", "test") == manifest(tmp_path / "a", "test")
    assert sorted(manifest(tmp_path / "d", "train")) == sorted(train + val)


def test_one_folder_test_split_is_the_same_with_or_without_val(tmp_path):
    source = single_folder(tmp_path / "src", {"rust": 10, "healthy": 20, "blight": 30})
    report = ingest(source, tmp_path / "a", test_fraction=0.2, **VAL)
    assert report.counts["test"] == {"blight": 6, "healthy": 4, "rust": 2}
    assert report.counts["val"] == {"blight": 4, "healthy": 2, "rust": 1}  # of 24, 16, 8
    ingest(source, tmp_path / "b", test_fraction=0.2, **SMALL)
    assert manifest(tmp_path / "a", "test") == manifest(tmp_path / "b", "test")


def test_identical_train_images_stay_on_one_side_of_val(tmp_path):
    source = given_split(tmp_path / "src", n_train=10, n_test=2)
    for i in range(3):
        put(source / "train" / "Healthy" / f"copy{i}.png", noise(100))  # = train/Healthy/00.png
    copies = {"train/Healthy/00.png", *(f"train/Healthy/copy{i}.png" for i in range(3))}
    for seed in range(6):
        report = ingest(source, tmp_path / f"cache{seed}", seed=seed, **VAL)
        val = set(manifest(tmp_path / f"cache{seed}", "val"))
        assert copies <= val or not copies & val
        assert report.leaks == []


def test_test_copy_of_a_val_image_is_dropped_as_leak(tmp_path):
    source = given_split(tmp_path / "src", n_train=20, n_test=2)
    carved = ingest(source, tmp_path / "first", **VAL)
    assert carved.leaks == []
    in_val = manifest(tmp_path / "first", "val")[0]
    put(source / "test" / "Diseased" / "copy.bmp", cv2.imread(str(source / in_val)))
    report = ingest(source, tmp_path / "cache", **VAL)
    assert report.leaks == [{"split": "test", "path": "test/Diseased/copy.bmp", "copy_of": in_val}]
    assert "test/Diseased/copy.bmp" not in manifest(tmp_path / "cache", "test")


def test_a_train_split_too_small_for_val_is_one_line(tmp_path):
    source = given_split(tmp_path / "src", n_train=1, n_test=1)
    with pytest.raises(DataError, match="too few train images to carve a validation split"):
        ingest(source, tmp_path / "cache", **VAL)
    with pytest.raises(ConfigError, match="val_fraction must lie in"):
        ingest(source, tmp_path / "cache", image_size=16, val_fraction=1.0)


def test_a_torn_cache_file_is_refused_in_one_line(tmp_path):
    source = given_split(tmp_path / "src")
    ingest(source, tmp_path / "cache", **SMALL)
    images = tmp_path / "cache" / "train" / "images.npy"
    data = bytearray(images.read_bytes())
    data[-10:] = bytes(10)  # same length, last pixels zeroed: what a kill mid-write leaves
    images.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"images\.npy: does not match the checksum") as caught:
        load_split(tmp_path / "cache", "train")
    assert "dvc repro --force prepare" in str(caught.value) and "\n" not in str(caught.value)
    (tmp_path / "cache" / "test" / "labels.npy").unlink()
    with pytest.raises(DataError, match=r"test: unreadable cache \("):
        load_split(tmp_path / "cache", "test")


def test_ingest_writes_beside_the_cache_and_sweeps_a_killed_runs_leftovers(tmp_path):
    source = given_split(tmp_path / "src")
    leftover = tmp_path / ".dlrepro-tmp-cache-abc123"  # what a kill -9 would leave
    (leftover / "cache" / "train").mkdir(parents=True)
    ingest(source, tmp_path / "cache", **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "src"]
    assert not any(p.name.startswith(".") for p in (tmp_path / "cache").rglob("*"))


def test_alpha_compositing_on_white_rounds_every_colour_and_alpha(tmp_path):
    """Each of the 256 × 256 (colour, alpha) pairs becomes colour × α + 255 × (1 − α), rounded
    to the nearest integer (255 is odd: no value falls halfway)."""
    colour, alpha = np.meshgrid(np.arange(256), np.arange(256))
    bgra = np.stack([colour, colour, colour, alpha], axis=-1).astype(np.uint8)
    rgb = load_square_rgb(put(tmp_path / "ramp.png", bgra), image_size=256).rgb
    expected = np.floor((colour * alpha + 255 * (255 - alpha)) / 255 + 0.5).astype(np.uint8)
    assert rgb.shape == (256, 256, 3)
    np.testing.assert_array_equal(rgb, np.repeat(expected[:, :, None], 3, axis=2))
    assert rgb[0, 0, 0] == 255 and rgb[255, 0, 0] == 0  # transparent black: white; opaque: black


class _Terminal:
    """A stderr that says it is a terminal, as a user's is, and keeps what is written."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log file"])
def test_a_progress_bar_counts_files_on_a_terminal_and_stays_out_of_logs(
    tmp_path, monkeypatch, terminal
):
    source = given_split(tmp_path / "src")
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    ingest(source, tmp_path / "cache", **SMALL)
    written = stderr.text if isinstance(stderr, _Terminal) else stderr.getvalue()
    if terminal:
        assert "ingest: 100%" in written and "10/10" in written and "file/s" in written
    else:
        assert written == ""


def test_no_usable_test_image_names_the_folder_it_looked_in(tmp_path):
    """A given split's test/ folder, or the single folder whose test share came out empty."""
    given = given_split(tmp_path / "given")
    for file in (given / "test").rglob("*.png"):
        file.write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError) as caught:
        ingest(given, tmp_path / "a", **SMALL)
    assert str(caught.value) == f"{given / 'test'}: no usable test image (see the skipped files)"

    single = tmp_path / "single"
    for c, name in enumerate(("a", "b")):
        for i in range(3):  # one picture three times per class: none can leave train
            put(single / name / f"{i}.png", noise(c))
    with pytest.raises(DataError) as caught:
        ingest(single, tmp_path / "b", **SMALL)
    assert str(caught.value) == f"{single}: no usable test image (see the skipped files)"


def test_a_single_folder_class_without_usable_image_names_its_folder(tmp_path):
    source = single_folder(tmp_path / "src", {"a": 5, "b": 5})
    for file in (source / "b").iterdir():
        file.write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError) as caught:
        ingest(source, tmp_path / "cache", **SMALL)
    assert str(source / "b") in str(caught.value) and "train" not in str(caught.value)


@pytest.mark.parametrize("split", ["val", "design"])
def test_a_carved_split_without_a_class_is_a_warning(tmp_path, split):
    """A class whose pictures are all one image cannot be carved: val (or design) lacks it,
    and the report says so beside the test split's warning."""
    source = single_folder(tmp_path / "src", {"b": 8})
    for i in range(3):
        put(source / "a" / f"{i}.png", noise(7))
    fractions = (
        {"val_fraction": 0.5} if split == "val" else {"val_fraction": 0, "design_fraction": 0.5}
    )
    report = ingest(source, tmp_path / "cache", image_size=16, min_side=8, **fractions)
    assert report.counts[split]["a"] == 0 and report.counts[split]["b"] > 0
    assert report.warnings == [
        f"{split} has no usable image of class 'a'",
        "test has no usable image of class 'a'",
    ]


def test_a_given_design_folder_without_a_class_is_a_warning(tmp_path):
    source = given_split(tmp_path / "src")
    put(source / "design" / "Diseased" / "d.png", noise(55))
    report = ingest(source, tmp_path / "cache", **SMALL)
    assert report.warnings == ["design has no usable image of class 'Healthy'"]


def test_the_defaults_are_128_pixel_squares_and_a_16_pixel_short_side(tmp_path):
    source = given_split(tmp_path / "src")
    put(source / "train" / "Healthy" / "side16.png", noise(60, (16, 24, 3)))
    put(source / "train" / "Healthy" / "side15.png", noise(61, (15, 24, 3)))
    report = ingest(source, tmp_path / "cache", val_fraction=0)
    assert load_split(tmp_path / "cache", "test")[0].shape == (4, 128, 128, 3)
    assert skip_reasons(report) == {"train/Healthy/side15.png": "too small (24×15; min_side is 16)"}
    assert report.counts["train"]["Healthy"] == 4


def test_a_hidden_folder_inside_a_class_is_ignored_and_listed(tmp_path):
    source = given_split(tmp_path / "src")
    put(source / "train" / "Healthy" / ".thumbnails" / "00.png", noise(70))
    report = ingest(source, tmp_path / "cache", **SMALL)
    assert report.ignored == [{"path": "train/Healthy/.thumbnails", "reason": "hidden"}]
    assert report.counts["train"]["Healthy"] == 3


def jpeg(mode: str, size: tuple[int, int], **save) -> bytes:
    """A JPEG written by Pillow (width, height = size)."""
    buffer = io.BytesIO()
    Image.new(mode, size, 90 if mode == "L" else None).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def test_the_jpeg_frame_header_gives_height_width_and_components():
    """Sides above 255 (both bytes of the 16-bit fields), each component count, a segment
    before the frame (EXIF), a fill byte before a marker, a header that ends exactly after the
    frame's fields, and headers with no frame."""
    from dlrepro.data.images import _JpegFrame, _read_jpeg_frame

    def frame(data: bytes):
        return _read_jpeg_frame(np.frombuffer(data, np.uint8))

    exif = Image.Exif()
    exif[0x0112] = 1
    assert frame(jpeg("RGB", (517, 300), exif=exif.tobytes())) == _JpegFrame(300, 517, 3)
    assert frame(jpeg("L", (1, 260))) == _JpegFrame(260, 1, 1)
    assert frame(jpeg("CMYK", (300, 7))) == _JpegFrame(7, 300, 4)
    data = jpeg("RGB", (517, 300))
    assert frame(data[:2] + b"\xff" + data[2:]) == _JpegFrame(300, 517, 3)  # a fill byte
    start = next(i for i in range(2, len(data)) if data[i] == 0xFF and data[i + 1] == 0xC0)
    assert frame(data[: start + 10]) == _JpegFrame(300, 517, 3)  # ends after the fields
    assert frame(data[: start + 9]) is None
    assert frame(data[:20]) is None  # ends inside the first segment: no frame, no IndexError
    assert frame(b"\xff\xd8\xff\xda" + bytes(20)) is None  # the image data before any frame


def test_jpeg_conversions_and_a_jpeg_without_a_frame(tmp_path):
    (tmp_path / "small.jpg").write_bytes(jpeg("RGB", (12, 10)))
    assert load_square_rgb(tmp_path / "small.jpg", image_size=16).conversions == ("upscaled",)
    (tmp_path / "gray.jpg").write_bytes(jpeg("L", (20, 20)))
    assert load_square_rgb(tmp_path / "gray.jpg", image_size=16).conversions == ("grayscale→RGB",)
    (tmp_path / "noframe.jpg").write_bytes(b"\xff\xd8\xff\xda" + bytes(20))
    with pytest.raises(Exception) as caught:
        load_square_rgb(tmp_path / "noframe.jpg", image_size=16)
    assert str(caught.value) == "corrupt JPEG (no frame header before the image data)"


def test_jpeg_reduction_at_its_boundaries():
    assert jpeg_reduction(2000, 4000, 128) == 1  # 8,000,000 pixels: not above the threshold
    assert jpeg_reduction(2000, 4001, 128) == 8
    assert jpeg_reduction(3000, 3000, 375) == 8  # 3000 // 8 = 375: exactly image_size
    assert jpeg_reduction(3000, 3000, 1000) == 2  # 3000 // 3 would be 1000 too: not a factor
    assert jpeg_reduction(3000, 3000, 2000) == 1  # no divisor keeps 2000 pixels


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"image_size": 0}, "image_size must be at least 1, got 0"),
        ({"min_side": 0}, "min_side must be at least 1, got 0"),
        ({"test_fraction": 0}, "test_fraction must lie strictly between 0 and 1, got 0"),
    ],
)
def test_arguments_below_their_least_are_refused_and_the_least_accepted(
    tmp_path, arguments, message
):
    source = given_split(tmp_path / "src")
    with pytest.raises(ConfigError) as caught:
        ingest(source, tmp_path / "cache", **{**SMALL, **arguments})
    assert str(caught.value) == message
    if "test_fraction" not in arguments:
        least = {key: 1 for key in arguments}
        ingest(source, tmp_path / "cache", **{**SMALL, "min_side": 1, **least})
        assert (tmp_path / "cache" / "train").is_dir()


def test_a_file_that_cannot_be_read_says_why_and_a_one_pixel_image_is_usable(tmp_path):
    from dlrepro.data.images import UnusableImage

    with pytest.raises(UnusableImage) as caught:
        load_square_rgb(tmp_path / "missing.png", image_size=16)
    assert str(caught.value) == "cannot read the file (No such file or directory)"
    put(tmp_path / "dot.png", noise(3, (1, 1, 3)))
    dot = load_square_rgb(tmp_path / "dot.png", image_size=4)  # min_side 1 by default
    assert dot.rgb.shape == (4, 4, 3) and dot.conversions == ("upscaled",)


def test_the_report_records_the_settings_and_lists_what_it_ignored_sorted(tmp_path, capsys):
    source = given_split(tmp_path / "src")
    put(source / "train" / "Healthy" / ".z" / "00.png", noise(71))
    put(source / "test" / "Diseased" / ".a" / "00.png", noise(72))  # found after train's
    (source / "train" / "Healthy" / "notes.txt").write_text("a note")
    report = ingest(source, tmp_path / "cache", image_size=16, min_side=8, val_fraction=0, seed=3)
    assert (report.source, report.layout) == (str(source.resolve()), "given split")
    assert (report.image_size, report.min_side, report.seed) == (16, 8, 3)
    assert report.test_fraction is None  # a given split: test/ is the test split
    assert [entry["path"] for entry in report.ignored] == ["test/Diseased/.a", "train/Healthy/.z"]
    assert capsys.readouterr().out.splitlines()[-1] == (
        "Skipped 1 files and dropped 0 val/design/test images also in an earlier split "
        "(see the data report)."
    )


@pytest.mark.parametrize(
    ("height", "width", "upscaled", "interpolation"),
    [
        (16, 40, False, cv2.INTER_AREA),  # a side exactly image_size: only shrinking
        (40, 16, False, cv2.INTER_AREA),
        (10, 40, True, cv2.INTER_CUBIC),  # one side short: it grows, and so cubic
        (40, 10, True, cv2.INTER_CUBIC),
    ],
)
def test_upscaling_is_reported_and_cubic_when_either_side_is_short(
    tmp_path, height, width, upscaled, interpolation
):
    pixels = noise(80, (height, width, 3))
    square = load_square_rgb(put(tmp_path / "x.png", pixels), image_size=16)
    assert ("upscaled" in square.conversions) == upscaled
    expected = cv2.resize(pixels, (16, 16), interpolation=interpolation)
    np.testing.assert_array_equal(square.rgb, cv2.cvtColor(expected, cv2.COLOR_BGR2RGB))


def test_an_image_over_opencvs_pixel_limit_says_so(tmp_path):
    """A PNG header claiming 60,000 × 60,000 pixels: OpenCV refuses before allocating."""
    import struct
    import zlib

    from dlrepro.data.images import UnusableImage

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(bytes(100)))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")
    (tmp_path / "huge.png").write_bytes(png)
    with pytest.raises(UnusableImage) as caught:
        load_square_rgb(tmp_path / "huge.png", image_size=16)
    assert str(caught.value) == "OpenCV cannot decode it (pixels <= CV_IO_MAX_IMAGE_PIXELS)"
