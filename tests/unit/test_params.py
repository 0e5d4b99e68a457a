"""Every setting is applied or refused: each key of params.yaml either changes what its stage
computes (and is then one of the stage's params in dvc.yaml) or is a documented run-time switch
that no stage hashes; a Trainer setting reaches the Trainer; a value this machine cannot run is
refused in one line before any output is touched."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from dlrepro.config import load_config
from dlrepro.data.ingest import ingest
from dlrepro.errors import ConfigError
from dlrepro.plant import runs
from dlrepro.plant.checks import check_trainer, visible_cpus
from dlrepro.plant.runs import (
    RUNTIME_SWITCHES,
    check_hashed,
    fingerprint,
    read_settings,
    stage_params,
    trainer_options,
    unhashed_settings,
)
from dlrepro.plant.train import build_classifier, build_datamodule, build_trainer, fit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_cfg(cfg):
    """The session's composed config, for a test to change."""
    return copy.deepcopy(cfg)


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_every_train_setting_is_a_param_unless_it_is_a_runtime_switch():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for recipe in params["recipes"]:
        assert unhashed_settings(read_settings(params, recipe), stage_params(REPO, recipe)) == []
    for switch in RUNTIME_SWITCHES:
        section, _, key = switch.partition(".")
        assert (key in params[section]) if key else (section in params), switch
        hashing = []
        for name, stage in dvc_stages().items():
            for p in stage.get("do", stage).get("params", []):
                if isinstance(p, dict):  # a whole file: only check-config, whose record is
                    assert name == "check-config", name  # constant, so nothing after it reruns
                elif switch == p or switch.startswith(p.replace("${key}", "") + "."):
                    hashing.append(name)
        assert not hashing, f"run-time switch {switch} is a param of {hashing}"


def test_a_recipe_reads_its_own_section_only():
    """train@text does not rerun when the tuned recipe changes, and the reverse."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    text, tuned = read_settings(params, "text"), read_settings(params, "tuned")
    assert any(k.startswith("recipes.text.") for k in text)
    assert not any(k.startswith("recipes.tuned.") for k in text)
    assert not any(k.startswith("recipes.text.") for k in tuned)
    assert "recipes.text" in stage_params(REPO, "text")
    assert "recipes.tuned" not in stage_params(REPO, "text")


def test_both_recipes_log_their_settings_on_shared_keys(cfg):
    """MLflow's compare view pairs params by key: Adam vs AdamW must sit on one row."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    logged = {
        recipe: runs.tracked_params(
            read_settings(params, recipe), recipe, trainer_options(cfg, recipe)
        )
        for recipe in ("text", "tuned")
    }
    text, tuned = logged["text"], logged["tuned"]
    assert not [k for k in (*text, *tuned) if k.startswith("recipes.")]
    assert text["optimizer._target_"] == "torch.optim.Adam"
    assert tuned["optimizer._target_"] == "torch.optim.AdamW"
    assert (text["max_epochs"], tuned["max_epochs"]) == (
        10,
        params["recipes"]["tuned"]["max_epochs"],
    )
    # the Trainer's arguments as the fit used them: the recipe's own precision, once
    assert text["trainer.precision"] == params["trainer"]["precision"]
    assert tuned["trainer.precision"] == params["recipes"]["tuned"]["trainer"]["precision"]
    assert tuned["trainer.max_epochs"] == tuned["max_epochs"]
    shared = {"model.conv_channels", "optimizer.lr", "datamodule.batch_size", "seed", "recipe"}
    assert shared <= text.keys() and shared - {"optimizer.lr"} <= tuned.keys()


def test_the_resume_fingerprint_covers_settings_data_and_checkpoint_format(monkeypatch):
    """A run interrupted under older code (another shape of last.ckpt's callback state) must not
    resume: Lightning would silently skip the state it cannot match."""
    settings = {"seed": 0, "trainer.max_epochs": 2, "trainer.enable_progress_bar": True}
    stamp = fingerprint(settings, "md5-a")
    assert fingerprint({**settings, "trainer.enable_progress_bar": False}, "md5-a") == stamp
    assert fingerprint({**settings, "seed": 1}, "md5-a") != stamp
    assert fingerprint(settings, "md5-b") != stamp
    monkeypatch.setattr(runs, "CHECKPOINT_FORMAT", runs.CHECKPOINT_FORMAT - 1)
    assert fingerprint(settings, "md5-a") != stamp


def test_a_setting_dvc_would_not_hash_is_refused(tmp_path):
    """`-S +trainer.gradient_clip_val=1` reaches params.yaml but not train's params in dvc.yaml:
    the stage refuses it rather than train once and never notice a change."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["trainer"]["gradient_clip_val"] = 1.0
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    with pytest.raises(ConfigError, match=r"^trainer\.gradient_clip_val: dvc.yaml's train stage"):
        check_hashed(read_settings(params, "tuned"), tmp_path, "tuned")
    clean = yaml.safe_load((REPO / "params.yaml").read_text())
    check_hashed(read_settings(clean, "tuned"), REPO, "tuned")


def test_every_trainer_key_is_a_trainer_argument(cfg):
    import inspect

    import pytorch_lightning as pl

    accepted = inspect.signature(pl.Trainer).parameters
    assert [k for k in cfg.trainer if not k.startswith("_") and k not in accepted] == []
    with pytest.raises(ConfigError, match=r"^trainer\.max_epoch: not an argument of "):
        check_trainer({**cfg.trainer, "max_epoch": 3})
    assert "max_epochs" not in cfg.trainer  # each recipe sets its own


def _tiny_data(n: int = 8, size: int = 16):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = np.arange(n) % 2
    return images, labels


def _fit_weights(cfg, tmp_path: Path, **trainer: object) -> torch.Tensor:
    images, labels = _tiny_data()
    cfg.data.image_size = images.shape[1]
    cfg.datamodule.batch_size = 4
    options = {**cfg.trainer, "max_epochs": 1, "enable_progress_bar": False, **trainer}
    model = build_classifier(cfg, "text", ["a", "b"])
    datamodule = build_datamodule(cfg, "text", ["a", "b"], (images, labels), (images, labels))
    built, callbacks = build_trainer(options, tmp_path, cfg.recipes["text"].callbacks)
    assert built.precision == options["precision"]
    fit(built, callbacks, model, datamodule, resume=False)
    return model.net.head[1].weight.detach().clone()


def test_precision_reaches_the_trainer_and_changes_the_result(own_cfg, tmp_path):
    cfg = own_cfg
    full = _fit_weights(cfg, tmp_path / "32", precision="32-true")
    again = _fit_weights(cfg, tmp_path / "32-again", precision="32-true")
    bf16 = _fit_weights(cfg, tmp_path / "bf16", precision="bf16-mixed")
    assert torch.equal(full, again)  # deterministic: only the precision differs below
    assert not torch.equal(full, bf16)


def test_a_recipes_own_trainer_arguments_override_the_shared_ones(own_cfg, tmp_path):
    cfg = own_cfg
    assert cfg.recipes["tuned"].trainer == {"precision": "bf16-mixed"}  # conf/recipe/tuned.yaml
    tuned, text = trainer_options(cfg, "tuned"), trainer_options(cfg, "text")
    assert tuned["precision"] == "bf16-mixed" and text["precision"] == cfg.trainer["precision"]
    assert tuned["max_epochs"] == cfg.recipes["tuned"].max_epochs
    assert {k: v for k, v in tuned.items() if k not in ("precision", "max_epochs")} == {
        k: v for k, v in text.items() if k not in ("precision", "max_epochs")
    }
    built, _ = build_trainer({**tuned, "enable_progress_bar": False}, tmp_path)
    assert built.precision == "bf16-mixed"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("max_epochs", r"^recipes\.tuned\.trainer\.max_epochs: not a recipe's to set; use recipes"),
        ("_target_", r"^recipes\.tuned\.trainer\._target_: not a recipe's to set; use trainer"),
    ],
)
def test_a_recipe_cannot_set_its_epochs_or_trainer_class_twice(tmp_path, option, message):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["recipes"]["tuned"]["trainer"][option] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "params.yaml")


def test_optimizer_is_built_from_its_node(own_cfg):
    cfg = own_cfg
    cfg.data.image_size = 16
    recipe = cfg.recipes["text"]
    recipe.optimizer = {
        "_target_": "torch.optim.SGD",
        "_partial_": True,
        "lr": 0.5,
        "momentum": 0.9,
    }
    optimizer = build_classifier(cfg, "text", ["a", "b"]).configure_optimizers()
    assert type(optimizer) is torch.optim.SGD
    assert optimizer.param_groups[0]["momentum"] == 0.9
    recipe.optimizer = {**recipe.optimizer, "lr": -1.0}
    with pytest.raises(ConfigError, match=r"^recipes\.text\.optimizer: Invalid learning rate: -1"):
        build_classifier(cfg, "text", ["a", "b"])
    recipe.optimizer = {"_target_": "torch.optim.Adam", "_partial_": True, "betaz": [0.9, 0.9]}
    with pytest.raises(ConfigError, match=r"^recipes\.text\.optimizer\.betaz: not an argument"):
        build_classifier(cfg, "text", ["a", "b"])


def test_the_tuned_recipe_builds_its_scheduler_over_the_whole_run(own_cfg):
    cfg = own_cfg
    cfg.data.image_size = 32  # the smallest size the tuned network's five blocks accept
    model = build_classifier(cfg, "tuned", ["a", "b"])
    optimizer = model.optimizer_factory(model.parameters())
    schedule = model.build_scheduler(optimizer, total_steps=40)
    assert type(schedule) is torch.optim.lr_scheduler.OneCycleLR and schedule.total_steps == 40
    cfg.recipes["tuned"].scheduler = {**cfg.recipes["tuned"].scheduler, "pct_start": 2.0}
    with pytest.raises(ConfigError, match=r"^recipes\.tuned\.scheduler: "):
        build_classifier(cfg, "tuned", ["a", "b"])


# --- refused before anything is touched: the real train stage, one subprocess per key -------


@pytest.fixture(scope="module")
def stage_root(tmp_path_factory) -> Path:
    """A repository-shaped folder: params.yaml, a tiny prepared cache, earlier model outputs."""
    root = tmp_path_factory.mktemp("stage")
    source = root / "source"
    images, labels = _tiny_data(12, 32)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = source / ("Diseased", "Healthy")[label]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), image)
    ingest(source, root / "data" / "cache", image_size=32, test_fraction=0.25, seed=0)
    (root / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    model_dir = root / "models" / "plant_cnn" / "text"
    model_dir.mkdir(parents=True)
    (model_dir / "best.ckpt").write_bytes(b"earlier weights")
    (model_dir / "run.json").write_text('{"fingerprint": "x", "finished": true}\n')
    return root


BAD_TRAINER = {
    "accelerator": ("gpu", r"trainer\.accelerator='gpu': this machine has no CUDA GPU"),
    "strategy": ("nonsense", r"trainer\.strategy='nonsense': unknown; allowed: auto, ddp"),
    "devices": (visible_cpus() + 3, rf"trainer\.devices={visible_cpus() + 3}: this machine has"),
    "precision": ("8-true", r"trainer\.precision='8-true': unknown; allowed: 16-true"),
    "num_nodes": (2, r"trainer\.num_nodes=2: needs a launcher that starts every node"),
    "max_epoch": (3, r"trainer\.max_epoch: not an argument of pytorch_lightning\.Trainer"),
}


def _refused_by_the_stage(stage_root: Path, params: dict, message: str) -> None:
    """The real train stage refuses `params` in one line matching `message`, touching nothing."""
    (stage_root / "params.yaml").write_text(yaml.safe_dump(params))
    load_config(stage_root / "params.yaml")  # valid for the schema: only Lightning can tell
    model_dir = stage_root / "models" / "plant_cnn" / "text"
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    done = subprocess.run(
        [sys.executable, "-m", "dlrepro.stages.train", "text"],
        cwd=stage_root,
        env={**os.environ, "DVC_ROOT": str(stage_root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, done.stderr
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert re.search(message, errors[0]), errors[0]
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    assert not (stage_root / "plots").exists() and not (stage_root / "metrics").exists()


@pytest.mark.parametrize("key", sorted(BAD_TRAINER))
def test_a_value_that_cannot_run_is_refused_before_any_output_is_touched(stage_root, key):
    if key == "accelerator" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    value, message = BAD_TRAINER[key]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["image_size"] = 32
    params["trainer"][key] = value
    _refused_by_the_stage(stage_root, params, message)


def test_a_recipes_own_trainer_value_is_refused_under_the_recipes_key(stage_root):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["image_size"] = 32
    params["recipes"]["text"]["trainer"] = {"precision": "8-true"}
    message = r"^error: recipes\.text\.trainer\.precision='8-true': unknown; allowed: 16-true"
    _refused_by_the_stage(stage_root, params, message)


def test_fp16_on_a_cpu_is_refused_rather_than_silently_bf16():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=r"^trainer\.precision='16-mixed': float16 autocast"):
        check_trainer({"_target_": "pytorch_lightning.Trainer", "precision": "16-mixed"})
