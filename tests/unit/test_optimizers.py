"""Chapter 6: the text's f(x) = x² loop, seven numpy update rules, and their torch.optim twins."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from dlrepro.chapters._common.context import ChapterContext
from dlrepro.chapters.optimizers import run as chapter
from dlrepro.chapters.optimizers import twin as twin
from dlrepro.config import load_config
from dlrepro.config.compose import compose
from dlrepro.config.schema import OPTIMIZERS, OptimizerSpec
from dlrepro.data.gates import write_gates
from dlrepro.errors import ConfigError

# The one command that queues one experiment per rule (conf/chapter/optimizers.yaml says it too).
SWEEP = (
    "curriculum.optimizers.optimizers="
    "[sgd],[momentum],[adagrad],[rmsprop],[adam],[nadam],[adadelta]"
)


@pytest.fixture(scope="module")
def result(cfg, tmp_path_factory):
    """The chapter run once with the default config (its compute takes a few seconds)."""
    root = tmp_path_factory.mktemp("root")
    write_gates(root / "data" / "gates", cfg.data.gates)
    return chapter.run(cfg, ChapterContext(root=root))


def _params_file(cfg, path, remove: str | None = None):
    """cfg written back as params.yaml, optionally without one key, for load_config to read."""
    params = OmegaConf.create(OmegaConf.to_container(OmegaConf.structured(cfg)))
    if remove:
        parent, key = remove.rsplit(".", 1)
        del OmegaConf.select(params, parent)[key]
    OmegaConf.save(params, path)
    return path


def test_text_loop_prints_ten_times_point_eight_to_the_n():
    xs, printed = chapter.text_loop()
    lines = printed.splitlines()
    assert len(lines) == 20
    for n, (x, line) in enumerate(zip(xs, lines, strict=True), start=1):
        assert x == pytest.approx(10 * 0.8**n, rel=1e-12)
        assert line == f"Epoch {n}: x = {10 * 0.8**n:.4f}, f(x) = {(10 * 0.8**n) ** 2:.4f}"
    assert lines[-1] == "Epoch 20: x = 0.1153, f(x) = 0.0133"


def test_findings_match_epochs_one_and_two_and_flag_epoch_twenty(result):
    first, second, last = result.findings
    assert first.matches and second.matches
    assert first.framework == first.text  # torch's SGD prints the same line
    assert not last.matches
    assert last.code == last.framework == "Epoch 20: x = 0.1153, f(x) = 0.0133"
    # the cause places 0.1220 between epoch 19 (0.1441) and 20 (0.1153), at 0.8^19.75
    assert "0.1441" in last.cause and "0.1153" in last.cause and "19.75" in last.cause


def _bowl(params):
    """An anisotropic bowl over two arrays, numpy: Σ c·w² + 3·Σ (B − 1)²."""
    w, B = params
    c = np.array([1.0, 4.0, 0.25])
    return float(np.sum(c * w**2) + 3 * np.sum((B - 1) ** 2)), [2 * c * w, 6 * (B - 1)]


def _bowl_losses(w, B):
    c = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64)
    return (c * w**2).sum(dim=1) + 3 * ((B - 1) ** 2).sum(dim=(1, 2))


def test_every_numpy_rule_is_torch_optims_formula():
    """Odd hyper-parameters and a large eps, so that a different formula (eps inside or
    outside a root, bias corrections, NAdam's μ schedule, the first momentum step) shows."""
    hyper = OptimizerSpec(
        momentum=0.7,
        beta1=0.8,
        beta2=0.95,
        rho=0.8,
        momentum_decay=0.5,
        eps=dict.fromkeys(OptimizerSpec.EPS_RULES, 0.3),
    )
    start = [np.array([1.5, -2.0, 3.0]), np.array([[0.5, -1.0], [2.0, 0.0]])]
    rates = dict.fromkeys(OPTIMIZERS, 0.05)
    numpy_race = chapter.race_scratch(_bowl, start, rates, hyper, steps=40)
    torch_race = twin.race(_bowl_losses, start, rates, hyper, steps=40)
    for name in OPTIMIZERS:
        path, losses = numpy_race[name]
        torch_path, torch_losses = torch_race[name]
        assert path.shape == torch_path.shape == (41, 7), name
        assert np.max(np.abs(path - torch_path)) < 1e-12, name
        assert np.max(np.abs(losses - torch_losses)) < 1e-12, name
        assert losses[-1] < losses[0], name  # every rule descends


def test_default_races_follow_torch_within_tolerance(result, cfg):
    assert chapter.TOLERANCE == 1e-6
    for problem in chapter.PROBLEMS:
        assert list(result.metrics[problem]) == cfg.curriculum.optimizers.optimizers
        for name, m in result.metrics[problem].items():
            assert m["max_abs_diff_vs_torch"] <= 1e-6, (problem, name)
            assert m["matches_torch"] and not m["diverged"], (problem, name)
            assert m["final_loss"] == pytest.approx(m["torch_final_loss"], rel=1e-9, abs=1e-12)
    text_loop = result.metrics["text_loop"]
    assert text_loop["max_abs_diff_vs_torch"] <= 1e-6
    # SGD on the quadratic is the text's loop: the same operations, the same float
    assert result.metrics["quadratic"]["sgd"]["final_params"] == [text_loop["final_x"]]
    assert result.trace == chapter.text_loop()[1]


def test_every_rule_descends_each_problem(result):
    starts = {"quadratic": 100.0, "rosenbrock": 12.5, "xor_mlp": None}
    for problem, start in starts.items():
        for name, m in result.metrics[problem].items():
            first = result.curves[f"{problem}_loss"][0][name]
            if start is not None:
                assert first == pytest.approx(start)
            assert m["final_loss"] < first, (problem, name)
    rosenbrock = result.metrics["rosenbrock"]
    assert rosenbrock["momentum"]["final_loss"] < rosenbrock["sgd"]["final_loss"]


def test_curves_hold_every_step_and_series_a_subsample(result, cfg):
    steps = cfg.curriculum.optimizers.rosenbrock.steps
    rows = result.curves["rosenbrock_loss"]
    assert [row["step"] for row in rows] == list(range(steps + 1))
    assert list(rows[0]) == ["step", *cfg.curriculum.optimizers.optimizers]
    series = result.series["rosenbrock/adam/loss"]
    assert len(series) <= chapter.SERIES_POINTS + 1
    assert series[0][0] == 0 and series[-1][0] == steps
    assert all(value == rows[step]["adam"] for step, value in series)
    assert len(result.series) == 3 * len(cfg.curriculum.optimizers.optimizers)
    assert set(result.figures) == {"quadratic_paths", "rosenbrock_paths", "losses"}


def test_sweep_command_queues_one_experiment_per_rule(tmp_path):
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps

    sweeps = get_hydra_sweeps(to_path_overrides([SWEEP]))
    assert [s["params.yaml"] for s in sweeps] == [
        [f"curriculum.optimizers.optimizers=[{name}]"] for name in OPTIMIZERS
    ]
    # Hydra composes each sweep's override into a one-rule list that validates
    cfg = load_config(compose(tmp_path / "params.yaml", sweeps[-1]["params.yaml"]))
    assert cfg.curriculum.optimizers.optimizers == ["adadelta"]


def test_a_one_rule_experiment_runs(cfg, ctx, tmp_path):
    params = _params_file(cfg, tmp_path / "params.yaml")
    short = ["curriculum.optimizers.rosenbrock.steps=5", "curriculum.optimizers.xor_mlp.steps=5"]
    one = load_config(params, ["curriculum.optimizers.optimizers=[nadam]", *short])
    result = chapter.run(one, ctx)
    for problem in chapter.PROBLEMS:
        assert list(result.metrics[problem]) == ["nadam"]
    assert list(result.curves["xor_mlp_loss"][0]) == ["step", "nadam"]
    assert len(result.findings) == 3  # the text's loop does not depend on the rules raced


@pytest.mark.parametrize(
    ("remove", "override", "message"),
    [
        ("curriculum.optimizers.rosenbrock.lr.adam", None, "curriculum.optimizers.rosenbrock.lr"),
        ("curriculum.optimizers.hyper.eps.adagrad", None, "curriculum.optimizers.hyper.eps"),
        (None, "curriculum.optimizers.xor_mlp.lr.sgd=0", "curriculum.optimizers.xor_mlp.lr.sgd"),
        (None, "curriculum.optimizers.quadratic.lr.adma=0.1", "unknown optimizer"),
        (None, "curriculum.optimizers.rosenbrock.start=[1.0]", "rosenbrock.start"),
    ],
)
def test_config_names_the_key_a_raced_rule_lacks(cfg, tmp_path, remove, override, message):
    params = _params_file(cfg, tmp_path / "params.yaml", remove)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")) as error:
        load_config(params, [override] if override else None)
    assert "\n" not in str(error.value)


def test_a_rule_not_raced_needs_no_rate_or_eps(cfg, tmp_path):
    params = _params_file(cfg, tmp_path / "params.yaml", "curriculum.optimizers.hyper.eps.adagrad")
    sgd_only = load_config(params, ["curriculum.optimizers.optimizers=[sgd]"])
    assert "adagrad" not in sgd_only.curriculum.optimizers.hyper.eps


def test_nadam_twin_needs_float64_optimizer_scalars(cfg, monkeypatch):
    """Why nn.optimizers.race sets float64 as torch's default dtype: NAdam's μ product."""
    from contextlib import nullcontext

    settings = cfg.curriculum.optimizers
    start, rate = [np.array(settings.rosenbrock.start)], {"nadam": settings.rosenbrock.lr["nadam"]}
    steps, hyper = settings.rosenbrock.steps, settings.hyper
    numpy_path = chapter.race_scratch(chapter.rosenbrock, start, rate, hyper, steps)["nadam"][0]
    exact = twin.race(twin.rosenbrock_losses, start, rate, hyper, steps)["nadam"][0]
    monkeypatch.setattr(twin, "float64_scalars", nullcontext)
    float32_product = twin.race(twin.rosenbrock_losses, start, rate, hyper, steps)["nadam"][0]
    assert np.max(np.abs(numpy_path - exact)) <= chapter.TOLERANCE
    assert np.max(np.abs(numpy_path - float32_product)) > 1e-3


@pytest.mark.parametrize(
    "rule",
    [
        lambda tc: tc.SGD(lr=0.1),
        lambda tc: tc.Momentum(lr=0.1, momentum=0.9),
        lambda tc: tc.AdaGrad(lr=0.1, eps=1e-8),
        lambda tc: tc.RMSprop(lr=0.1, rho=0.9, eps=1e-8),
        lambda tc: tc.Adam(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8),
        lambda tc: tc.Nadam(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8),
        lambda tc: tc.Adadelta(lr=1.0, rho=0.9, eps=1e-6),
    ],
    ids=["sgd", "momentum", "adagrad", "rmsprop", "adam", "nadam", "adadelta"],
)
def test_a_rule_given_fewer_gradients_than_parameters_refuses(rule):
    """A gradient list one short would otherwise leave the last parameter silently unchanged."""
    from dlrepro.chapters.optimizers import text_code

    optimizer = rule(text_code)
    params = [np.ones(2), np.ones(3)]
    optimizer.step(params, [np.ones(2), np.ones(3)])  # the state is sized on the first step
    with pytest.raises(ValueError, match="shorter"):
        optimizer.step(params, [np.ones(2)])


def test_the_texts_defaults_minimise_x_squared_from_10_at_rate_0_1_for_20_epochs():
    from dlrepro.chapters.optimizers import text_code

    lines: list[str] = []
    xs = text_code.minimise_square(log=lines.append)
    assert len(xs) == 20 and xs[0] == pytest.approx(8.0) and xs[-1] == pytest.approx(10 * 0.8**20)
    assert lines[0] == "Epoch 1: x = 8.0000, f(x) = 64.0000"


def test_nadam_decays_its_momentum_by_torchs_default_0_004():
    from dlrepro.chapters.optimizers import text_code

    default = text_code.Nadam(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    explicit = text_code.Nadam(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, momentum_decay=0.004)
    a, b = [np.array([1.0, -2.0])], [np.array([1.0, -2.0])]
    for _ in range(5):
        default.step(a, [2 * a[0]])
        explicit.step(b, [2 * b[0]])
    np.testing.assert_array_equal(a[0], b[0])
    assert torch.optim.NAdam([torch.zeros(1)]).defaults["momentum_decay"] == 0.004
