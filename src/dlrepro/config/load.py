"""Load params.yaml into the typed schema and check every range, so stages get valid values only."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from dlrepro.config.schema import (
    OPTIMIZERS,
    Config,
    OptimizersConfig,
    OptimizerSpec,
    RecipeConfig,
)
from dlrepro.errors import ConfigError
from dlrepro.plant.shapes import smallest_image_size

# The problems of chapter 6 (curriculum.optimizers), each with a learning rate per rule.
_PROBLEMS = ("quadratic", "rosenbrock", "xor_mlp")

_RULES = {
    "gt": (lambda v, b: v > b, "must be > {}"),
    "ge": (lambda v, b: v >= b, "must be >= {}"),
    "lt": (lambda v, b: v < b, "must be < {}"),
    "le": (lambda v, b: v <= b, "must be <= {}"),
}


def load_config(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Config:
    """Read params.yaml (plus optional dotlist overrides), typed and validated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run `make params` to compose it from conf/")
    try:
        raw = OmegaConf.load(path)
        merged = OmegaConf.merge(OmegaConf.structured(Config), raw)
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(overrides))
        # a structured config's to_object is an instance of its dataclass; the stub's return
        # type is the union of everything to_object can return
        cfg = cast(Config, OmegaConf.to_object(merged))
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    validate(cfg)
    return cfg


def read_yaml(path: str | Path) -> Any:
    """A YAML file (params.yaml, dvc.yaml) as plain data: PyYAML's safe loader, parsed by
    libyaml when PyYAML was built with it (the same data, several times faster)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(Path(path).read_text(), Loader=loader)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: settings by dotted key (DVC's and MLflow's), and flat
    metrics for MLflow and the report."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def validate(node: Any, prefix: str = "") -> None:
    """Check the gt/ge/lt/le/choices rules declared in the schema's field metadata."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
            continue
        if isinstance(value, dict) and any(dataclasses.is_dataclass(v) for v in value.values()):
            for name, item in value.items():  # e.g. recipes: name -> RecipeConfig
                validate(item, f"{key}.{name}.")
            continue
        if value is None:  # an optional setting turned off (e.g. global_pool: null)
            continue
        for name, bound in f.metadata.items():
            if name == "choices":
                for item in value if isinstance(value, list) else [value]:
                    if item not in bound:
                        allowed = ", ".join("null" if b is None else str(b) for b in bound)
                        raise ConfigError(
                            f"{key}={value!r}: unknown value {item!r}; allowed: {allowed}"
                        )
            else:
                ok, message = _RULES[name]
                for item in value if isinstance(value, list) else [value]:
                    if not ok(item, bound):
                        raise ConfigError(f"{key}={value!r}: {message.format(bound)}")
    if isinstance(node, Config):
        _cross_check(node)


# Ranges of the optimizer and LR scheduler arguments a recipe may set (torch accepts some of
# these out of range without a word: OneCycleLR takes a negative max_lr and trains into ruin).
# name -> (lowest, lowest allowed?, highest, highest allowed?); None: unbounded.
HYPER_RANGES: dict[str, tuple[float | None, bool, float | None, bool]] = {
    "lr": (0, False, None, False),
    "max_lr": (0, False, None, False),
    "eps": (0, False, None, False),
    "weight_decay": (0, True, None, False),
    "momentum": (0, True, 1, False),
    "dampening": (0, True, 1, True),
    "alpha": (0, True, 1, False),
    "betas": (0, True, 1, False),
    "pct_start": (0, False, 1, False),
    "div_factor": (0, False, None, False),
    "final_div_factor": (0, False, None, False),
    "eta_min": (0, True, None, False),
    "gamma": (0, False, None, False),
    "base_momentum": (0, True, 1, False),
    "max_momentum": (0, True, 1, False),
}


def _range_text(low: float | None, low_ok: bool, high: float | None, high_ok: bool) -> str:
    lower = "" if low is None else f"{'>=' if low_ok else '>'} {low:g}"
    upper = "" if high is None else f"{'<=' if high_ok else '<'} {high:g}"
    return " and ".join(part for part in (lower, upper) if part)


def _check_hyper(key: str, node: dict[str, Any]) -> None:
    """Every number of an optimizer or scheduler node that has a known range lies in it."""
    for name, value in node.items():
        if name not in HYPER_RANGES:
            continue
        low, low_ok, high, high_ok = HYPER_RANGES[name]
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise ConfigError(f"{key}.{name}={value!r}: must be a number")
            below = low is not None and (item < low if low_ok else item <= low)
            above = high is not None and (item > high if high_ok else item >= high)
            if below or above or item != item:  # item != item: NaN
                rule = _range_text(low, low_ok, high, high_ok)
                raise ConfigError(f"{key}.{name}={value!r}: must be {rule}")


# Trainer arguments about a validation loop, which a fit on train+val does not have. Refused in
# the recipe's own `trainer`; in the shared one they apply to the recipes that validate.
VALIDATION_OPTIONS = (
    "limit_val_batches",
    "val_check_interval",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
)


def _check_nothing_validates(key: str, recipe: RecipeConfig) -> None:
    """A fit that learns from val has nothing held out: refuse whatever would read val."""
    if recipe.selected_on == "val":
        raise ConfigError(
            f"{key}.selected_on='val': with fit_on=train+val the fit learns from val, so val "
            "cannot choose its epoch; use last_epoch (or fit_on=train)"
        )
    for callback, node in recipe.callbacks.items():
        if node is not None and str(node.get("monitor", "")).startswith("val/"):
            raise ConfigError(
                f"{key}.callbacks.{callback}: monitors {node['monitor']}, but with "
                "fit_on=train+val nothing is held out to validate on"
            )
    for option in VALIDATION_OPTIONS:
        if option in recipe.trainer:
            raise ConfigError(
                f"{key}.trainer.{option}: {key} has fit_on=train+val, so it runs no validation"
            )


def _check_design(cfg: Config) -> None:
    """The design split has one source: the generated design/ folder or a share of train."""
    size, fraction = cfg.data.design_size, cfg.data.design_fraction
    if size % 2:
        raise ConfigError(f"data.design_size={size}: must be even (two balanced classes)")
    if cfg.data.source == "generated" and size > 0 and fraction > 0:
        raise ConfigError(
            f"data.design_fraction={fraction}: the generated design/ folder "
            f"(data.design_size={size}) is the design split already; set one of them to 0"
        )


def _cross_check(cfg: Config) -> None:
    _check_design(cfg)
    if not isinstance(cfg.trainer.get("_target_"), str):
        raise ConfigError("trainer: needs a `_target_` naming the class to build")
    if "max_epochs" in cfg.trainer:
        raise ConfigError(
            "trainer.max_epochs: each recipe sets its own; use recipes.<name>.max_epochs"
        )
    if not cfg.recipes:
        raise ConfigError("recipes: none configured (conf/config.yaml lists recipe@recipes.*)")
    for name, recipe in cfg.recipes.items():
        key = f"recipes.{name}"
        for part in ("optimizer", "scheduler"):  # the schema makes only the scheduler Optional
            node = getattr(recipe, part)
            if node is not None and not isinstance(node.get("_target_"), str):
                raise ConfigError(f"{key}.{part}: needs a `_target_` naming the class to build")
        for option in ("_target_", "max_epochs"):
            if option in recipe.trainer:
                use = f"{key}.max_epochs" if option == "max_epochs" else "trainer._target_"
                raise ConfigError(f"{key}.trainer.{option}: not a recipe's to set; use {use}")
        for callback, node in recipe.callbacks.items():
            if node is not None and not (isinstance(node, dict) and "_target_" in node):
                raise ConfigError(
                    f"{key}.callbacks.{callback}: needs a `_target_` (or null to turn it off)"
                )
        _check_hyper(f"{key}.optimizer", recipe.optimizer)
        if recipe.scheduler is not None:
            _check_hyper(f"{key}.scheduler", recipe.scheduler)
        scheduler = (recipe.scheduler or {}).get("_target_", "")
        if scheduler.endswith(".OneCycleLR") and "lr" in recipe.optimizer:
            raise ConfigError(
                f"{key}.optimizer.lr: OneCycleLR sets the learning rate at every step, so this "
                f"value would be ignored; set {key}.scheduler.max_lr instead"
            )
        depths, widths = recipe.model.convs_per_block, recipe.model.conv_channels
        if depths is not None and len(depths) != len(widths):
            raise ConfigError(
                f"{key}.model.convs_per_block={list(depths)!r}: needs one count per block of "
                f"conv_channels ({len(widths)})"
            )
        blocks = list(depths or [1] * len(widths))
        smallest = smallest_image_size(blocks, recipe.model.padding)
        if cfg.data.image_size < smallest:
            raise ConfigError(
                f"data.image_size={cfg.data.image_size}: too small for {key}'s "
                f"{len(blocks)} conv blocks ({recipe.model.padding} padding): at least {smallest}"
            )
        crop = recipe.augment.crop_scale if recipe.augment else None
        if crop is not None and not (len(crop) == 2 and crop[0] <= crop[1]):
            raise ConfigError(f"{key}.augment.crop_scale={crop!r}: needs [min, max], min <= max")
        if recipe.fit_on == "train+val":
            _check_nothing_validates(key, recipe)
    if cfg.export.recipe not in cfg.recipes:
        raise ConfigError(
            f"export.recipe={cfg.export.recipe!r}: unknown; allowed: {', '.join(cfg.recipes)}"
        )
    missing = [g for g in cfg.curriculum.perceptron.gates if g not in cfg.data.gates]
    if missing:
        raise ConfigError(
            f"curriculum.perceptron.gates={cfg.curriculum.perceptron.gates!r}: "
            f"{', '.join(missing)} not prepared; data.gates is {cfg.data.gates!r}"
        )
    _check_optimizers(cfg.curriculum.optimizers, "curriculum.optimizers")


def _check_optimizers(chapter: OptimizersConfig, key: str) -> None:
    """Each raced rule needs a rate > 0 on every problem (and an eps > 0 if it has one)."""
    raced = chapter.optimizers
    tables = {f"{key}.{p}.lr": (getattr(chapter, p).lr, raced) for p in _PROBLEMS}
    with_eps = [name for name in raced if name in OptimizerSpec.EPS_RULES]
    tables[f"{key}.hyper.eps"] = (chapter.hyper.eps, with_eps)
    for table_key, (table, needed) in tables.items():
        for name, value in table.items():
            if name not in OPTIMIZERS:
                raise ConfigError(
                    f"{table_key}.{name}: unknown optimizer; allowed: {', '.join(OPTIMIZERS)}"
                )
            if not value > 0:
                raise ConfigError(f"{table_key}.{name}={value!r}: must be > 0")
        missing = [name for name in needed if name not in table]
        if missing:
            raise ConfigError(
                f"{table_key}: no value for {', '.join(missing)}, raced in {key}.optimizers"
            )
    for problem, size in (("quadratic", 1), ("rosenbrock", 2)):
        start = getattr(chapter, problem).start
        if len(start) != size:
            raise ConfigError(f"{key}.{problem}.start={start!r}: needs {size} value(s)")


def _one_line(err: OmegaConfBaseException) -> str:
    """OmegaConf's messages span several lines; keep the key, the value and the reason, and for
    an unknown key name the nearest known one."""
    reason = str(err).splitlines()[0].strip()
    key = getattr(err, "full_key", None)
    if isinstance(err, ConfigKeyError) and key:
        return f"{key}: unknown key{_nearest(key)}"
    return f"{key}: {reason}" if key else reason


def _nearest(key: str) -> str:
    """'; did you mean data.seed?' for data.sed: the closest field of the schema node that
    `key` would belong to, or the node's fields when none is close."""
    node: Any = Config
    parts = key.split(".")
    for index, part in enumerate(parts[:-1]):  # node: always a dataclass (_field_type's)
        if part not in {f.name for f in dataclasses.fields(node)}:
            if index == 0:
                return ""
            continue  # a name under a dict of nodes (recipes.<name>)
        node = _field_type(node, part)
        if node is None:
            return ""
    names = [f.name for f in dataclasses.fields(node)]
    close = difflib.get_close_matches(parts[-1], names, n=1)
    prefix = ".".join(parts[:-1])
    if close:
        return f"; did you mean {'.'.join([*parts[:-1], close[0]])}?"
    return f"; {prefix or 'params.yaml'} takes {', '.join(names)}"


def _field_type(node: Any, name: str) -> Any:
    """The dataclass a field of `node` holds (for dict[str, X] fields, X), or None."""
    hints = typing.get_type_hints(node)
    hint = hints.get(name)
    if dataclasses.is_dataclass(hint):
        return hint
    args = typing.get_args(hint)
    for arg in reversed(args):
        if dataclasses.is_dataclass(arg):
            return arg
    return None
