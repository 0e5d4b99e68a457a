"""Typed schema of params.yaml: every value has a type and a valid range; values live in conf/.

OmegaConf checks types and unknown keys when params.yaml is merged into these dataclasses;
the range and choice rules live in each field's metadata and are checked by
`dlrepro.config.load.validate`, so that a bad value stops a stage before it writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import MISSING

GATES = ("AND", "OR", "NAND", "NOR", "XOR", "XNOR")
OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "nadam", "adadelta")


def rule(**checks: Any) -> Any:
    """A required field (its value comes from conf/) with validation rules:
    gt, ge, lt, le (bounds) and choices (allowed names)."""
    return field(default=MISSING, metadata=checks)


@dataclass
class DataConfig:
    """The gate tables, and the image dataset of the plant case study."""

    gates: list[str] = rule(choices=GATES)
    source: str = rule(choices=("generated", "folder"))
    path: str = MISSING  # generated: written here; folder: an ImageFolder dataset to ingest
    train_size: int = rule(ge=2)  # generated only
    test_size: int = rule(ge=2)  # generated only
    design_size: int = rule(ge=0)  # generated only: leaves in design/ (even; 0: none)
    raw_size: int = rule(ge=32, le=1024)  # generated only: side of the written JPEGs
    image_size: int = rule(ge=16, le=1024)  # the network's input side (the text's target_size)
    test_fraction: float = rule(gt=0, lt=1)  # folder without train/test: stratified split
    val_fraction: float = rule(gt=0, lt=1)  # of train, held out for selection (stratified)
    # of what train has left after val, held out for recipe searches when no design/ folder
    design_fraction: float = rule(ge=0, lt=1)
    min_side: int = rule(ge=1)  # smaller images are skipped, not upscaled from nothing
    seed: int = rule(ge=0)
    batch_size: int = rule(ge=1)  # training, evaluation and export


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
    """Hyper-parameters shared by the update rules, in torch.optim's meaning; each rule reads
    the ones it uses: rho is RMSprop's alpha and Adadelta's rho, momentum_decay is NAdam's."""

    # The rules with an eps; `eps` needs a value for each one raced (checked in load.py).
    EPS_RULES: ClassVar[tuple[str, ...]] = ("adagrad", "rmsprop", "adam", "nadam", "adadelta")

    momentum: float = rule(ge=0, lt=1)
    beta1: float = rule(ge=0, lt=1)
    beta2: float = rule(ge=0, lt=1)
    rho: float = rule(ge=0, lt=1)
    momentum_decay: float = rule(ge=0)
    eps: dict[str, float] = MISSING


@dataclass
class OptimizerProblem:
    """A function the optimizers race on: a start point, a step budget, a rate per rule."""

    start: list[float] = MISSING
    steps: int = rule(ge=1)
    lr: dict[str, float] = MISSING


@dataclass
class XorOptimizerProblem:
    """The text's 2-2-1 XOR net (mlp_xor's text_code.init_params(seed)): steps, rates."""

    seed: int = rule(ge=0)
    steps: int = rule(ge=1)
    lr: dict[str, float] = MISSING


@dataclass
class OptimizersConfig:
    optimizers: list[str] = rule(choices=OPTIMIZERS)
    hyper: OptimizerSpec = field(default_factory=OptimizerSpec)
    quadratic: OptimizerProblem = field(default_factory=OptimizerProblem)
    rosenbrock: OptimizerProblem = field(default_factory=OptimizerProblem)
    xor_mlp: XorOptimizerProblem = field(default_factory=XorOptimizerProblem)


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


# A node that `hydra.utils.instantiate` builds: `_target_` names the class, the other keys are its
# arguments, checked by the class itself when the stage builds it (before any output is touched):
# optimizer (`_partial_: true`, the model binds its parameters), Trainer, callbacks.
Instantiable = dict[str, Any]


@dataclass
class ModelConfig:
    """The plant CNN (`conf/model/`): conv(3×3) → maxpool → ReLU per width in conv_channels
    (optionally batch-normalised), then Flatten (the text) or a global pool, dense(dense_units,
    relu) → head. Classes, input size and the init seed come from the data and the global seed
    when the stage instantiates it."""

    _target_: str = rule(choices=("dlrepro.plant.networks.ConvNet",))
    conv_channels: list[int] = rule(ge=1)
    dense_units: int | None = rule(ge=1)  # None: no hidden dense layer
    channels_last: bool = MISSING  # NHWC convolutions: same function, faster on CPU
    batch_norm: bool = MISSING
    padding: str = rule(choices=("valid", "same"))  # valid: the text's Keras default
    # None: Flatten, as the text; avgmax: the mean and the max of each channel
    global_pool: str | None = rule(choices=("avg", "max", "avgmax", None))
    dropout: float = rule(ge=0, lt=1)  # before the dense layers
    # 3×3 convolutions per block, one count per width; None: one each (the text)
    convs_per_block: list[int] | None = rule(ge=1)
    # batch_norm only: each block normalises after its pool (a quarter of the values) rather
    # than before it; a different function from conv → norm → pool
    norm_after_pool: bool = MISSING
    # evaluation, export and prediction average the 8 symmetries of each image (8× the cost)
    average_symmetries: bool = MISSING


@dataclass
class AugmentConfig:
    """Label-preserving augmentation of training batches (`dlrepro.plant.augment`)."""

    hflip: bool = MISSING
    vflip: bool = MISSING
    rot90: bool = MISSING
    crop_scale: list[float] | None = rule(gt=0, le=1)  # RandomResizedCrop area range, or off
    brightness: float = rule(ge=0, lt=1)  # ColorJitter factors: 0 is off
    contrast: float = rule(ge=0, lt=1)
    saturation: float = rule(ge=0, lt=1)


SELECTIONS = ("last_epoch", "val")
# What a recipe's fit learns from: train alone (val held out for selection and curves), or train
# and val together (nothing held out: the last epoch is evaluated).
FIT_ON = ("train", "train+val")


@dataclass
class RecipeConfig:
    """One way to train the plant CNN (`conf/recipe/`): what `train@<name>` fits and what
    `evaluate@<name>` measures. fit_on: the splits the fit learns from, train (val held out) or
    train+val (the recipe's settings chosen beforehand, the final model fitted on every labelled
    image). selected_on: the weights evaluated and exported, the last epoch's (no selection) or
    the best val/acc epoch's. trainer: Trainer arguments this recipe sets over the shared
    `trainer` (e.g. its precision), checked like them."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: Instantiable = MISSING  # e.g. torch.optim.Adam, `_partial_: true`
    scheduler: Instantiable | None = MISSING  # a torch LR scheduler, `_partial_: true`, or null
    augment: AugmentConfig | None = MISSING
    callbacks: dict[str, Any] = field(default_factory=dict)  # name -> instantiable or null
    trainer: dict[str, Any] = field(default_factory=dict)  # over `trainer`, for this recipe
    max_epochs: int = rule(ge=1)
    fit_on: str = rule(choices=FIT_ON)
    selected_on: str = rule(choices=SELECTIONS)


@dataclass
class DataModuleConfig:
    """The plant datamodule (`conf/datamodule/`); `num_workers` is a run-time switch."""

    _target_: str = rule(choices=("dlrepro.plant.datamodule.PlantDataModule",))
    batch_size: int = rule(ge=1)
    seed: int = rule(ge=0)
    num_workers: int = rule(ge=0)


@dataclass
class ExportConfig:
    recipe: str = MISSING  # which of `recipes` export writes, registers and predict uses


@dataclass
class Config:
    seed: int = rule(ge=0)
    data: DataConfig = field(default_factory=DataConfig)
    datamodule: DataModuleConfig = field(default_factory=DataModuleConfig)
    trainer: Instantiable = MISSING  # pytorch_lightning.Trainer's arguments (not max_epochs)
    recipes: dict[str, RecipeConfig] = field(default_factory=dict)
    export: ExportConfig = field(default_factory=ExportConfig)
    resume: bool = MISSING  # run-time switch: continue an interrupted fit from last.ckpt
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
