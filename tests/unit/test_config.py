"""conf/ is the single source of truth, and bad values stop with one line naming key and rule."""

from pathlib import Path

import pytest
import yaml

from dlrepro.config import load_config
from dlrepro.config.compose import compose
from dlrepro.config.load import read_yaml, validate
from dlrepro.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_params_yaml_is_a_fresh_composition_of_conf(tmp_path):
    fresh = compose(tmp_path / "params.yaml")
    assert (REPO / "params.yaml").read_text() == fresh.read_text(), "run `make params`"


def test_composed_params_validate(cfg):
    assert cfg.curriculum.perceptron.lr == 0.1
    assert cfg.curriculum.mlp_xor.epochs == 10_000


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("curriculum.perceptron.lr=-1", "curriculum.perceptron.lr=-1.0: must be > 0"),
        ("curriculum.perceptron.epochs=0", "curriculum.perceptron.epochs=0: must be >= 1"),
        ("curriculum.perceptron.lr=fast", "curriculum.perceptron.lr: Value 'fast'"),
        ("data.gates=[AND,MAYBE]", "unknown value 'MAYBE'; allowed: AND, OR, NAND, NOR, XOR, XNOR"),
        ("curriculum.optimizers.optimizers=[adamw]", "unknown value 'adamw'"),
        (  # a choice that may be null names it so (this was a TypeError)
            "recipes.tuned.model.global_pool=mean",
            "unknown value 'mean'; allowed: avg, max, avgmax, null",
        ),
        ("curriculum.perceptron.gates=[XNOR]", "XNOR not prepared"),
        ("recipes.tuned.model.convs_per_block=[1,0,1,1,1]", "must be >= 1"),
        (  # one count per block, or the network would silently drop or invent blocks
            "recipes.tuned.model.convs_per_block=[2,2]",
            "recipes.tuned.model.convs_per_block=[2, 2]: needs one count per block",
        ),
        (  # an unknown key lists the keys the section takes
            "curriculum.perceptron.learning_rate=1",
            "curriculum.perceptron.learning_rate: unknown key; curriculum.perceptron takes gates",
        ),
        # a misspelt key names the nearest one, also under a recipe's name and at the top
        (
            "recipes.tuned.max_epoch=3",
            "recipes.tuned.max_epoch: unknown key; did you mean recipes.tuned.max_epochs?",
        ),
        ("recipes.text.model.dropuot=0.1", "did you mean recipes.text.model.dropout?"),
        ("seeed=1", "seeed: unknown key; did you mean seed?"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_key(override, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "params.yaml", [override])
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_missing_value_is_named(tmp_path):
    params = tmp_path / "params.yaml"
    text = (REPO / "params.yaml").read_text().replace("    lr: 0.1\n", "", 1)
    params.write_text(text)
    with pytest.raises(ConfigError, match=r"curriculum\.perceptron\.lr"):
        load_config(params)


def test_missing_params_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ConfigError, match="make params"):
        load_config(tmp_path / "params.yaml")


def test_hydra_overrides_compose_and_unknown_keys_fail(tmp_path):
    out = compose(tmp_path / "p.yaml", ["curriculum.perceptron.lr=0.25"])
    assert load_config(out).curriculum.perceptron.lr == 0.25
    with pytest.raises(ConfigError) as caught:
        compose(tmp_path / "q.yaml", ["curriculum.perceptron.nope=1"])
    # Hydra's first line, the one that names the key
    assert str(caught.value) == (
        "conf/ does not compose: Could not override 'curriculum.perceptron.nope'."
    )


def test_an_optimizer_lr_that_the_one_cycle_schedule_would_override_is_refused(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["recipes"]["tuned"]["optimizer"]["lr"] = 0.01
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"^recipes\.tuned\.optimizer\.lr: OneCycleLR sets"):
        load_config(tmp_path / "params.yaml")


def test_export_recipe_must_name_a_recipe(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["export"]["recipe"] = "fancy"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        ConfigError, match=r"^export\.recipe='fancy': unknown; allowed: text, tuned"
    ):
        load_config(tmp_path / "params.yaml")


def test_epochs_belong_to_the_recipes_not_the_trainer(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["trainer"]["max_epochs"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"^trainer\.max_epochs: each recipe sets its own"):
        load_config(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"selected_on": "val"},
            "recipes.tuned.selected_on='val': with fit_on=train+val the fit learns from val, so "
            "val cannot choose its epoch; use last_epoch (or fit_on=train)",
        ),
        (
            {"callbacks": {"stop": {"_target_": "x.EarlyStopping", "monitor": "val/acc"}}},
            "recipes.tuned.callbacks.stop: monitors val/acc, but with fit_on=train+val nothing",
        ),
        (
            {"trainer": {"precision": "bf16-mixed", "limit_val_batches": 0.5}},
            "recipes.tuned.trainer.limit_val_batches: recipes.tuned has fit_on=train+val, so it",
        ),
    ],
)
def test_a_fit_on_train_and_val_refuses_whatever_would_read_val(tmp_path, change, expected):
    """The tuned recipe learns from val: nothing may select, stop or validate on it."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["recipes"]["tuned"]["fit_on"] == "train+val"
    params["recipes"]["tuned"].update(change)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "params.yaml")
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)
    params["recipes"]["tuned"]["fit_on"] = "train"  # the same settings on a fit that holds val out
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    load_config(tmp_path / "params.yaml")


@pytest.fixture
def conf_copy(tmp_path, monkeypatch) -> Path:
    """A workspace holding conf/ and dvc.yaml, the current folder (where `make params` runs)."""
    import shutil

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_make_params_writes_the_composition_with_its_overrides(conf_copy, monkeypatch, capsys):
    from dlrepro.config import compose as module

    monkeypatch.setattr("sys.argv", ["compose", "profile=small", "seed=3"])
    module.main()
    written = load_config(conf_copy / "params.yaml")
    assert (written.seed, written.data.train_size, written.data.design_size) == (3, 64, 32)
    assert capsys.readouterr().out == "composed conf/ into params.yaml\n"
    assert sorted(p.name for p in conf_copy.iterdir()) == ["conf", "dvc.yaml", "params.yaml"]


@pytest.mark.parametrize(
    ("override", "words"),
    [("recipes.tuned.scheduler.max_lr=-1", "max_lr=-1: must be > 0"), ("nope=1", "nope")],
)
def test_make_params_with_a_bad_value_keeps_params_yaml(
    conf_copy, monkeypatch, capsys, override, words
):
    """A value that composes but fails validation, or one that does not compose: exit 2, one
    line, the previous params.yaml byte for byte, no draft left behind."""
    from dlrepro.config import compose as module

    (conf_copy / "params.yaml").write_text("previous\n")
    monkeypatch.setattr("sys.argv", ["compose", override])
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert (conf_copy / "params.yaml").read_text() == "previous\n"
    assert sorted(p.name for p in conf_copy.iterdir()) == ["conf", "dvc.yaml", "params.yaml"]


def test_no_suggestion_under_an_unknown_section_or_a_plain_value():
    """'foo.bar' (no section foo) and 'data.seed.x' (seed holds a number): nothing to suggest."""
    from dlrepro.config.load import _nearest

    assert _nearest("foo.bar") == ""
    assert _nearest("data.seed.x") == ""
    assert _nearest("data.sed") == "; did you mean data.seed?"


@pytest.mark.parametrize(
    ("bounds", "text"),
    [
        ((0, False, None, False), "> 0"),
        ((0, True, None, False), ">= 0"),
        ((0, True, 1, False), ">= 0 and < 1"),
        ((0, False, 1, True), "> 0 and <= 1"),
        ((None, False, 2.5, True), "<= 2.5"),
    ],
)
def test_a_range_reads_as_its_bounds(bounds, text):
    from dlrepro.config.load import _range_text

    assert _range_text(*bounds) == text


def test_an_omegaconf_error_without_a_key_is_its_first_line():
    from omegaconf.errors import OmegaConfBaseException

    from dlrepro.config.load import _one_line

    assert _one_line(OmegaConfBaseException("the reason\n    full_key: \n")) == "the reason"


def test_a_model_without_a_min_side_takes_the_default():
    import json

    from dlrepro.serving.contract import (
        DEFAULT_MIN_SIDE,
        META_CLASSES,
        META_IMAGE_SIZE,
        META_MIN_SIDE,
        model_info,
    )

    stated = {META_CLASSES: json.dumps(["a", "b"]), META_IMAGE_SIZE: "32"}
    assert model_info(stated).min_side == DEFAULT_MIN_SIDE
    assert model_info({**stated, META_MIN_SIDE: "9"}).min_side == 9


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "recipes.tuned.optimizer.weight_decay=abc",
            "recipes.tuned.optimizer.weight_decay='abc': must be a number",
        ),
        ("recipes.text.optimizer.lr=0", "recipes.text.optimizer.lr=0: must be > 0"),
        (
            "curriculum.optimizers.quadratic.lr.adamw=0.1",
            "curriculum.optimizers.quadratic.lr.adamw: unknown optimizer; allowed: sgd, "
            "momentum, adagrad, rmsprop, adam, nadam, adadelta",
        ),
        (
            "foo=1",
            "foo: unknown key; params.yaml takes seed, data, datamodule, trainer, recipes, "
            "export, resume, curriculum",
        ),
    ],
)
def test_refusals_read_in_full(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "params.yaml", [override])
    assert str(caught.value) == message


def test_bounds_that_are_allowed_are_accepted_and_two_missing_rates_are_named(tmp_path):
    assert load_config(REPO / "params.yaml", ["recipes.text.optimizer.weight_decay=0"])
    assert load_config(REPO / "params.yaml", ["recipes.text.optimizer.dampening=1"])  # <= 1
    with pytest.raises(ConfigError, match=r"dampening=1\.5: must be >= 0 and <= 1$"):
        load_config(REPO / "params.yaml", ["recipes.text.optimizer.dampening=1.5"])
    with pytest.raises(ConfigError, match=r"momentum=1: must be >= 0 and < 1$"):  # 1 excluded
        load_config(REPO / "params.yaml", ["recipes.text.optimizer.momentum=1"])
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    rates = params["curriculum"]["optimizers"]["quadratic"]["lr"]
    del rates["sgd"], rates["adam"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "params.yaml")
    assert str(caught.value) == (
        "curriculum.optimizers.quadratic.lr: no value for sgd, adam, raced in "
        "curriculum.optimizers.optimizers"
    )


@pytest.mark.parametrize("name", ["params.yaml", "dvc.yaml", "dvc.lock"])
def test_read_yaml_reads_what_the_plain_safe_loader_reads(name):
    """libyaml's parser is a speed-up only: the data equal PyYAML's pure-Python safe loader's."""
    path = REPO / name
    assert read_yaml(path) == yaml.load(path.read_text(), Loader=yaml.SafeLoader)


def test_read_yaml_keeps_yaml_1_1_scalars_and_refuses_tags(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text("a: 1e-3\nb: 1.0e-3\nc: yes\nd: 0o17\ne: 017\nf: ~\ng: '3'\n")
    assert read_yaml(path) == yaml.safe_load(path.read_text())
    assert read_yaml(path)["a"] == "1e-3"  # YAML 1.1: no dot, no float
    path.write_text("a: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(yaml.constructor.ConstructorError):
        read_yaml(path)


def test_read_yaml_takes_libyaml_when_pyyaml_has_it(tmp_path, monkeypatch):
    used = []

    class Spy(yaml.CSafeLoader):  # type: ignore[name-defined,misc]
        def __init__(self, stream):
            used.append(stream)
            super().__init__(stream)

    monkeypatch.setattr(yaml, "CSafeLoader", Spy)
    path = tmp_path / "a.yaml"
    path.write_text("a: [1, 2]\n")
    assert read_yaml(path) == {"a": [1, 2]} and len(used) == 1


def test_read_yaml_falls_back_to_the_pure_python_loader(tmp_path, monkeypatch):
    """A PyYAML built without libyaml has no CSafeLoader: the same data, parsed in Python."""
    monkeypatch.delattr(yaml, "CSafeLoader")
    path = tmp_path / "a.yaml"
    path.write_text("a: [1, 2]\nb: 1e-3\n")
    assert read_yaml(path) == {"a": [1, 2], "b": "1e-3"}


def _params_with(tmp_path: Path, change) -> Path:
    """The repository's params.yaml, changed by `change(params)`, written to tmp_path."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    change(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda p: p["trainer"].pop("_target_"),
            "trainer: needs a `_target_` naming the class to build",
        ),
        (
            lambda p: p.update(recipes={}),
            "recipes: none configured (conf/config.yaml lists recipe@recipes.*)",
        ),
        (
            lambda p: p["recipes"]["tuned"]["optimizer"].pop("_target_"),
            "recipes.tuned.optimizer: needs a `_target_` naming the class to build",
        ),
        (
            lambda p: p["recipes"]["tuned"]["scheduler"].pop("_target_"),
            "recipes.tuned.scheduler: needs a `_target_` naming the class to build",
        ),
    ],
    ids=["trainer", "no-recipes", "optimizer", "scheduler"],
)
def test_a_node_without_what_builds_it_is_refused_in_one_line(tmp_path, change, message):
    with pytest.raises(ConfigError) as caught:
        load_config(_params_with(tmp_path, change))
    assert str(caught.value) == message


def _text_only(params: dict) -> None:
    """The text recipe alone (the tuned one's five blocks need larger images)."""
    del params["recipes"]["tuned"]
    params["export"]["recipe"] = "text"


@pytest.mark.parametrize(("image_size", "accepted"), [(22, True), (21, False)])
def test_the_smallest_image_for_three_valid_blocks_is_22(tmp_path, image_size, accepted):
    """Three blocks of one valid 3×3 convolution and a 2×2 pool (`convs_per_block: null`, one
    convolution a block): 22 → 20 → 10 → 8 → 4 → 2 → 1. Three, because the schema's least
    image side (16) already fits the text's two."""

    def change(params: dict) -> None:
        _text_only(params)
        params["recipes"]["text"]["model"]["conv_channels"] = [8, 16, 32]
        params["data"]["image_size"] = image_size

    path = _params_with(tmp_path, change)
    if accepted:
        assert load_config(path).data.image_size == 22
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        "data.image_size=21: too small for recipes.text's 3 conv blocks (valid padding): "
        "at least 22"
    )


@pytest.mark.parametrize(
    ("crop", "message"),
    [
        ([0.5, 0.5], None),
        ([0.5, 0.9], None),
        ([0.9, 0.5], "recipes.tuned.augment.crop_scale=[0.9, 0.5]: needs [min, max], min <= max"),
        ([0.5], "recipes.tuned.augment.crop_scale=[0.5]: needs [min, max], min <= max"),
    ],
)
def test_crop_scale_is_a_min_max_pair(tmp_path, crop, message):
    path = _params_with(
        tmp_path, lambda p: p["recipes"]["tuned"]["augment"].update(crop_scale=crop)
    )
    if message is None:
        assert load_config(path).recipes["tuned"].augment.crop_scale == crop
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == message


def test_a_callback_without_target_is_refused_naming_it(tmp_path):
    def change(params: dict) -> None:
        params["recipes"]["tuned"]["callbacks"]["early_stopping"] = {"patience": 3}

    with pytest.raises(ConfigError) as caught:
        load_config(_params_with(tmp_path, change))
    assert str(caught.value) == (
        "recipes.tuned.callbacks.early_stopping: needs a `_target_` (or null to turn it off)"
    )


def test_every_missing_gate_is_named(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "params.yaml", ["curriculum.perceptron.gates=[XNOR,NOR,OR]"])
    assert ": XNOR, NOR not prepared;" in str(caught.value)


def test_a_wrong_value_inside_a_recipe_is_named_by_its_full_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "params.yaml", ["recipes.tuned.model.dropout=1.5"])
    assert str(caught.value).startswith("recipes.tuned.model.dropout=1.5: must be")


def test_validate_names_a_top_level_key_without_a_prefix(tmp_path):
    cfg = load_config(REPO / "params.yaml")
    cfg.seed = -1
    with pytest.raises(ConfigError) as caught:
        validate(cfg)
    assert str(caught.value) == "seed=-1: must be >= 0"


def test_load_config_reads_params_yaml_of_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert load_config().seed == load_config(REPO / "params.yaml").seed
