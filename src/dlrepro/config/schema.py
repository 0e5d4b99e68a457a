"""Typed schema of params.yaml: every value has a type and a valid range; values live in conf/.

OmegaConf checks types and unknown keys when params.yaml is merged into these dataclasses;
the range and choice rules live in each field's metadata and are checked by
`dlrepro.config.load.validate`, so that a bad value stops a stage before it writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

GATES = ("AND", "OR", "NAND", "NOR", "XOR", "XNOR")
OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "nadam", "adadelta")


def rule(**checks: Any) -> Any:
    """A required field (its value comes from conf/) with validation rules:
    gt, ge, lt, le (bounds) and choices (allowed names)."""
    return field(default=MISSING, metadata=checks)


@dataclass
class DataConfig:
    gates: list[str] = rule(choices=GATES)


@dataclass
class PerceptronConfig:
    gates: list[str] = rule(choices=GATES)
    lr: float = rule(gt=0)
    epochs: int = rule(ge=1)


@dataclass
class MlpXorConfig:
    hidden_size: int = rule(ge=1)
    lr: float = rule(gt=0)
    epochs: int = rule(ge=1)
    seed: int = rule(ge=0)
    log_every: int = rule(ge=1)


@dataclass
class BackpropConfig:
    lr: float = rule(gt=0)
    epochs: int = rule(ge=1)
    seed: int = rule(ge=0)
    log_every: int = rule(ge=1)
    gradcheck_eps: float = rule(gt=0, lt=1)


@dataclass
class ActivationsConfig:
    x_min: float = MISSING
    x_max: float = MISSING
    points: int = rule(ge=2)
    leaky_slope: float = rule(ge=0, lt=1)
    elu_alpha: float = rule(gt=0)


@dataclass
class LossesConfig:
    huber_delta: float = rule(gt=0)
    clip_eps: float = rule(gt=0, lt=0.5)


@dataclass
class OptimizerSpec:
    """Hyper-parameters of one update rule; each rule reads the ones it uses."""

    lr: float = rule(gt=0)
    momentum: float = rule(ge=0, lt=1)
    beta1: float = rule(ge=0, lt=1)
    beta2: float = rule(ge=0, lt=1)
    rho: float = rule(ge=0, lt=1)
    eps: float = rule(gt=0)


@dataclass
class OptimizerProblem:
    """One problem the optimizers race on: a start point, a step budget, a rate per rule."""

    start: list[float] = MISSING
    steps: int = rule(ge=1)
    lr: dict[str, float] = MISSING


@dataclass
class OptimizersConfig:
    optimizers: list[str] = rule(choices=OPTIMIZERS)
    hyper: OptimizerSpec = field(default_factory=OptimizerSpec)
    quadratic: OptimizerProblem = field(default_factory=OptimizerProblem)
    rosenbrock: OptimizerProblem = field(default_factory=OptimizerProblem)
    xor_mlp: OptimizerProblem = field(default_factory=OptimizerProblem)
    xor_seed: int = rule(ge=0)


@dataclass
class KerasRecipe:
    """One training recipe for the text's Dense(4, relu) -> Dense(1, sigmoid) XOR net."""

    hidden_size: int = rule(ge=1)
    lr: float = rule(gt=0)
    epochs: int = rule(ge=1)
    batch_size: int = rule(ge=1)


@dataclass
class KerasXorConfig:
    text: KerasRecipe = field(default_factory=KerasRecipe)
    tuned: KerasRecipe = field(default_factory=KerasRecipe)
    seeds: list[int] = MISSING
    beta1: float = rule(ge=0, lt=1)
    beta2: float = rule(ge=0, lt=1)
    eps: float = rule(gt=0)


@dataclass
class CurriculumConfig:
    perceptron: PerceptronConfig = field(default_factory=PerceptronConfig)
    mlp_xor: MlpXorConfig = field(default_factory=MlpXorConfig)
    backprop: BackpropConfig = field(default_factory=BackpropConfig)
    activations: ActivationsConfig = field(default_factory=ActivationsConfig)
    losses: LossesConfig = field(default_factory=LossesConfig)
    optimizers: OptimizersConfig = field(default_factory=OptimizersConfig)
    keras_xor: KerasXorConfig = field(default_factory=KerasXorConfig)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
