"""What a `train@<recipe>` run is: the settings it reads, the fingerprint that decides whether an
interrupted run may continue, and the summary it writes.

An interrupted run continues from last.ckpt only when its fingerprint (every setting that changes
what is computed, the data, the checkpoint format) matches and it did not finish; anything else
starts afresh, so a checkpoint never leaks from one configuration into another.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dlrepro.config import Config
from dlrepro.config.load import flatten, read_yaml
from dlrepro.errors import ConfigError

RUN_FILE = "run.json"
# The shape of last.ckpt's state: Lightning skips state it cannot match, so a run interrupted
# under another shape starts afresh rather than resuming half-restored.
# 3: the network moved under the classifier (`net.` state-dict keys).
CHECKPOINT_FORMAT = 3
# What the stage reads from params.yaml: these sections whole, data.image_size, its recipe.
READS = ("seed", "datamodule", "trainer", "resume", "data.image_size")
# Settings that change how a run goes, not what it computes: not in dvc.yaml's params, so
# changing one reruns nothing.
RUNTIME_SWITCHES = ("trainer.enable_progress_bar", "datamodule.num_workers", "resume")


def _within(key: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def read_settings(params: dict[str, Any], recipe: str) -> dict[str, Any]:
    """The settings `train@<recipe>` reads, by dotted key, from params.yaml as loaded: one
    inventory for the DVC check, the resume fingerprint and the MLflow params."""
    reads = (*READS, f"recipes.{recipe}")
    return {k: v for k, v in flatten(params).items() if _within(k, reads)}


def stage_params(root: Path, recipe: str) -> list[str]:
    """The `params` dvc.yaml lists for `train@<recipe>` (its foreach `${key}` filled in)."""
    stage = read_yaml(root / "dvc.yaml")["stages"]["train"]
    return [str(p).replace("${key}", recipe) for p in stage["do"]["params"]]


def unhashed_settings(settings: dict[str, Any], stage_params: list[str]) -> list[str]:
    """Settings that are neither in the stage's dvc.yaml `params` nor run-time switches: a change
    to one would not rerun the stage (e.g. a Trainer option added with `-S +trainer.x`)."""
    return [k for k in settings if k not in RUNTIME_SWITCHES and not _within(k, stage_params)]


def check_hashed(settings: dict[str, Any], root: Path, recipe: str) -> None:
    """Refuse a setting that DVC does not hash: it would be applied once and then go stale."""
    unhashed = unhashed_settings(settings, stage_params(root, recipe))
    if unhashed:
        raise ConfigError(
            f"{unhashed[0]}: dvc.yaml's train stage does not list it in its params, so DVC would "
            f"not rerun training when it changes; add `- {unhashed[0]}` there"
        )


def fingerprint(settings: dict[str, Any], data_md5: str) -> str:
    """What the run computes (every setting but the run-time switches, and the data), and the
    shape of the checkpoint state it resumes from."""
    computed = {k: v for k, v in settings.items() if k not in RUNTIME_SWITCHES}
    identity = [computed, data_md5, CHECKPOINT_FORMAT]
    return hashlib.md5(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def trainer_options(cfg: Config, recipe: str) -> dict[str, Any]:
    """The Trainer arguments of `train@<recipe>`: the shared `trainer`, the recipe's own over them
    (`recipes.<name>.trainer`, e.g. the tuned recipe's precision), and the recipe's epochs."""
    spec = cfg.recipes[recipe]
    return {**cfg.trainer, **spec.trainer, "max_epochs": spec.max_epochs}


def tracked_params(
    settings: dict[str, Any], recipe: str, trainer: dict[str, Any]
) -> dict[str, Any]:
    """The MLflow params of a train run, on keys every recipe shares, so MLflow's compare view
    pairs them: `recipes.<recipe>.optimizer.lr` is logged as `optimizer.lr`, and `trainer.*` holds
    the Trainer arguments the fit used (`trainer`, the shared ones with the recipe's over them),
    once. params.yaml's key of each is `recipes.<recipe>.<key>` or the key itself."""
    prefix = f"recipes.{recipe}."
    params: dict[str, Any] = {"recipe": recipe}
    for key, value in settings.items():
        short = key.removeprefix(prefix)
        if not short.startswith("trainer."):
            params[short] = value
    return params | {f"trainer.{name}": value for name, value in trainer.items()}


def recipe_keyed(err: ConfigError, recipe: str, own: dict[str, Any]) -> ConfigError:
    """An error about a Trainer argument the recipe sets names the recipe's key, where the user
    would change it."""
    text = str(err)
    if any(text.startswith((f"trainer.{name}=", f"trainer.{name}:")) for name in own):
        return ConfigError(f"recipes.{recipe}.{text}")
    return err


def check_recipes(cfg: Config, params: dict[str, Any], root: Path) -> None:
    """What each `train@<recipe>` checks before it touches an output, for every recipe at once:
    its Trainer arguments (known to Lightning, runnable on this machine) and that DVC hashes
    every setting it reads. A ConfigError names the key."""
    from dlrepro.plant.checks import check_trainer

    for recipe, spec in cfg.recipes.items():
        try:
            check_trainer(trainer_options(cfg, recipe))
        except ConfigError as err:
            raise recipe_keyed(err, recipe, spec.trainer) from None
        check_hashed(read_settings(params, recipe), root, recipe)


def may_resume(run_dir: Path, stamp: str, wanted: bool, recipe: str) -> bool:
    """Whether the interrupted run in `run_dir` continues: wanted (`resume`), the same
    fingerprint, not finished, and a readable last.ckpt; says why when a record or checkpoint is
    unreadable."""
    if not run_dir.is_dir():
        return False
    previous = read_run_file(run_dir / RUN_FILE)
    if previous is None:
        print(f"train@{recipe}: {RUN_FILE} is unreadable, so no run can continue; starting afresh")
        return False
    resume = wanted and previous.get("fingerprint") == stamp and not previous.get("finished")
    last = run_dir / "last.ckpt"
    if resume and last.exists() and not checkpoint_readable(last):
        print(f"train@{recipe}: the interrupted run's last.ckpt is unreadable; starting afresh")
        return False
    return resume


def checkpoint_readable(path: Path) -> bool:
    """Whether an interrupted run's last.ckpt can be loaded (a kill mid-write truncates it)."""
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # torch raises many kinds for a torn or foreign file
        return False
    return True


def read_run_file(path: Path) -> dict | None:
    """The previous run's record: {} when there is none, None when it cannot be read (the caller
    says so and starts afresh: the record only ever decides whether to resume)."""
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
