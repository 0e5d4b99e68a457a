"""A search file (`conf/search/<name>.yaml`): which recipe keys a study varies and how, what it
maximises, its sampler (docs/search.md shows one). Read and checked in full before a trial is
asked; every fault is one line.

The objective is read from a file the trial's stages write: `design` from
`metrics/design/<recipe>.json` (the `design@<recipe>` stage), `val` from
`metrics/train/<recipe>.json`. The test split is never an objective.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlrepro.errors import ConfigError

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")  # a study name is part of a git ref's name
SPLITS = {"design": ("metrics/design/{recipe}.json", "design@{recipe}"),
          "val": ("metrics/train/{recipe}.json", "train@{recipe}")}  # fmt: skip
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("TPESampler", "RandomSampler", "QMCSampler", "GPSampler", "CmaEsSampler")
TOP_KEYS = {"recipe", "objective", "trials", "jobs", "sampler", "overrides", "space", "study"}


@dataclass(frozen=True)
class Dimension:
    """One varied key: its Optuna distribution's arguments."""

    key: str  # under recipes.<recipe>
    type: str  # float, int or categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        import optuna.distributions as d

        if self.type == "categorical":  # Optuna takes scalars: a list choice is its JSON text
            return d.CategoricalDistribution([_encode(c) for c in self.choices])
        low, high, step = self.low or 0, self.high or 0, self.step
        if self.type == "int":
            return d.IntDistribution(int(low), int(high), log=self.log, step=int(step or 1))
        return d.FloatDistribution(float(low), float(high), log=self.log, step=step)

    def decode(self, value: Any) -> Any:
        """The choice a trial's parameter stands for (a list choice from its JSON text)."""
        if self.type == "categorical" and isinstance(value, str):
            for choice in self.choices:
                if _encode(choice) == value:
                    return choice
        return value


def _encode(choice: Any) -> Any:
    return json.dumps(choice) if isinstance(choice, list | dict) else choice


@dataclass(frozen=True)
class Search:
    """A search file, checked."""

    name: str
    recipe: str
    split: str
    metric: str
    direction: str
    trials: int
    jobs: int
    sampler: str
    seed: int
    overrides: tuple[str, ...]
    space: tuple[Dimension, ...] = field(default_factory=tuple)

    @property
    def metrics_file(self) -> str:
        return SPLITS[self.split][0].format(recipe=self.recipe)

    @property
    def target(self) -> str:
        """The one DVC stage a trial's experiment runs (with what it depends on)."""
        return SPLITS[self.split][1].format(recipe=self.recipe)

    def distributions(self) -> dict[str, Any]:
        return {dim.key: dim.distribution() for dim in self.space}

    def values(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's parameters as the recipe's values, by key."""
        dims = {dim.key: dim for dim in self.space}
        return {k: dims[k].decode(v) if k in dims else v for k, v in sorted(params.items())}

    def trial_overrides(self, params: dict[str, Any]) -> list[str]:
        """The `-S` overrides of a trial: the fixed ones, then each varied key's value."""
        values = self.values(params)
        varied = [f"recipes.{self.recipe}.{k}={_hydra_value(v)}" for k, v in values.items()]
        return [*self.overrides, *varied]


def _hydra_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def load_search(path: str | Path, recipes: list[str]) -> Search:
    """The search file at `path`, checked against the recipes params.yaml defines."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the search file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of {', '.join(sorted(TOP_KEYS))}")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r}; known: {', '.join(sorted(TOP_KEYS))}"
        )
    name = str(raw.get("study", path.stem))
    if not NAME.match(name):
        raise ConfigError(f"{path}: study name {name!r}: use a-z, 0-9, - and _ (at most 41)")
    recipe = raw.get("recipe")
    if recipe not in recipes:
        raise ConfigError(
            f"{path}: recipe={recipe!r}: not a recipe of params.yaml ({', '.join(recipes)})"
        )
    objective = raw.get("objective") or {}
    split = objective.get("split", "design")
    if split == "test":
        raise ConfigError(
            f"{path}: objective.split=test: the test split is never an objective (it would no "
            "longer measure anything unseen); use design or val"
        )
    if split not in SPLITS:
        raise ConfigError(f"{path}: objective.split={split!r}: use design or val")
    direction = objective.get("direction", "maximize")
    if direction not in DIRECTIONS:
        raise ConfigError(f"{path}: objective.direction={direction!r}: use maximize or minimize")
    metric = objective.get("metric", "accuracy" if split == "design" else "best_val_acc")
    sampler = raw.get("sampler") or {}
    sampler_name = sampler.get("name", "TPESampler")
    if sampler_name not in SAMPLERS:
        raise ConfigError(f"{path}: sampler.name={sampler_name!r}: one of {', '.join(SAMPLERS)}")
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{path}: overrides: a list of Hydra overrides such as profile=small")
    space = raw.get("space") or {}
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{path}: space: give at least one key to vary")
    return Search(
        name=name,
        recipe=recipe,
        split=split,
        metric=str(metric),
        direction=direction,
        trials=_positive(path, "trials", raw.get("trials", 20)),
        jobs=_positive(path, "jobs", raw.get("jobs", 1)),
        sampler=sampler_name,
        seed=_natural(path, "sampler.seed", sampler.get("seed", 0)),
        overrides=tuple(overrides),
        space=tuple(_dimension(path, key, spec) for key, spec in space.items()),
    )


def _positive(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path}: {key}={value!r}: a whole number of at least 1")
    return value


def _natural(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{path}: {key}={value!r}: a whole number of at least 0")
    return value


def _dimension(path: Path, key: Any, spec: Any) -> Dimension:
    where = f"{path}: space.{key}"
    if not isinstance(key, str) or key.startswith("recipes."):
        raise ConfigError(f"{where}: name keys under the recipe (optimizer.lr, not recipes.x.…)")
    if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
        raise ConfigError(f"{where}: give type: float, int or categorical")
    kind = spec["type"]
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or len(choices) < 2:
            raise ConfigError(f"{where}: categorical needs choices: a list of at least 2 values")
        return Dimension(key, kind, choices=tuple(choices))
    low, high, log, step = (
        spec.get("low"),
        spec.get("high"),
        bool(spec.get("log", False)),
        spec.get("step"),
    )
    number = int if kind == "int" else (int, float)
    if not all(isinstance(v, number) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigError(f"{where}: {kind} needs low and high, both {kind} numbers")
    if not low < high:  # type: ignore[operator]
        raise ConfigError(f"{where}: low={low} must be below high={high}")
    if log and low <= 0:  # type: ignore[operator]
        raise ConfigError(f"{where}: log: true needs low > 0, got {low}")
    if log and step is not None:
        raise ConfigError(f"{where}: log and step cannot be combined")
    return Dimension(key, kind, low=low, high=high, log=log, step=step)
