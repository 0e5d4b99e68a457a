"""Chapter 7: the text's Keras XOR net reproduced in Lightning, its recipe and a tuned one."""

import math

import numpy as np
import pytest
import torch

from dlrepro.chapters._common.context import ChapterContext
from dlrepro.chapters.keras_xor import run as keras_xor
from dlrepro.chapters.keras_xor.twin import KerasXorNet, log_history, xor_loader
from dlrepro.data.gates import INPUTS, TRUTH, write_gates

XOR = np.array(TRUTH["XOR"])


@pytest.fixture(scope="module")
def result(cfg, tmp_path_factory):
    """The whole chapter, run once on the real Trainer for the tests that read its outputs."""
    root = tmp_path_factory.mktemp("keras_xor")
    write_gates(root / "data" / "gates", cfg.data.gates)
    return keras_xor.run(cfg, ChapterContext(root=root))


def test_layers_match_the_texts_dense_4_relu_dense_1():
    net = KerasXorNet(hidden_size=4)
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    assert shapes == {
        "hidden.weight": (4, 2),
        "hidden.bias": (4,),
        "output.weight": (1, 4),
        "output.bias": (1,),
    }
    # Keras' model.summary(): 2·4 + 4 = 12 and 4·1 + 1 = 5 parameters
    assert sum(p.numel() for p in net.parameters()) == 17
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_init_is_glorot_uniform_with_zero_bias():
    torch.manual_seed(0)
    small = KerasXorNet(hidden_size=4)
    assert small.hidden.weight.abs().max() <= math.sqrt(6 / (2 + 4))
    assert small.output.weight.abs().max() <= math.sqrt(6 / (4 + 1))
    assert not small.hidden.bias.any() and not small.output.bias.any()
    # a wide layer shows the distribution: U(-a, a) fills its range and has variance a²/3
    wide = KerasXorNet(input_size=300, hidden_size=500).hidden.weight.detach().double()
    bound = math.sqrt(6 / (300 + 500))
    assert bound * 0.999 < wide.abs().max() <= bound
    assert wide.var().item() == pytest.approx(bound**2 / 3, rel=0.02)
    assert abs(wide.mean().item()) < 0.01 * bound


def test_loss_is_binary_crossentropy_in_the_stable_logits_form():
    net = KerasXorNet()
    logits = torch.linspace(-8, 8, 9).reshape(-1, 1)
    targets = (torch.arange(9) % 2).float().reshape(-1, 1)
    on_probabilities = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits), targets)
    torch.testing.assert_close(net.loss(logits, targets), on_probabilities, rtol=1e-5, atol=0)
    extreme = torch.tensor([[100.0], [-100.0], [100.0], [-100.0]])
    wrong_side = net.loss(extreme[:2], torch.tensor([[0.0], [1.0]]))
    right_side = net.loss(extreme[2:], torch.tensor([[1.0], [0.0]]))
    assert wrong_side.item() == pytest.approx(100.0)  # -log σ(-100) = 100 + log(1 + e^-100)
    assert 0 <= right_side.item() < 1e-30
    # the naive form on float32 probabilities overflows: σ(100) rounds to exactly 1
    naive = -torch.log(1 - torch.sigmoid(extreme[:1]))
    assert torch.isinf(naive).all()


def test_adam_has_keras_defaults(cfg):
    chapter = cfg.curriculum.keras_xor
    assert (chapter.text.lr, chapter.beta1, chapter.beta2, chapter.eps) == (0.001, 0.9, 0.999, 1e-7)
    net = KerasXorNet(lr=chapter.text.lr, beta1=chapter.beta1, beta2=chapter.beta2, eps=chapter.eps)
    optimizer = net.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"]) == (0.001, (0.9, 0.999), 1e-7)
    assert not group["amsgrad"] and group["weight_decay"] == 0


def _keras_adam(gradients, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7):
    """Keras 3's Adam.update_step, float64: epsilon is added to sqrt(v), not to sqrt(v̂)."""
    m = v = 0.0
    x = 0.0
    for t, g in enumerate(gradients, start=1):
        alpha = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        m += (g - m) * (1 - beta1)
        v += (g * g - v) * (1 - beta2)
        x -= m * alpha / (math.sqrt(v) + eps)
    return x


def _torch_adam(gradients, **keras):
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=keras["lr"], betas=keras["betas"], eps=keras["eps"])
    for g in gradients:
        x.grad = torch.tensor([g], dtype=torch.float64)
        optimizer.step()
    return x.item()


def test_torch_adam_differs_from_keras_only_for_gradients_near_epsilon():
    """torch adds eps to sqrt(v̂), Keras to sqrt(v): the same update unless |g| is ~eps."""
    keras = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7}
    shape = 1.5 + np.cos(np.arange(50))  # one sign, varying size

    def relative_gap(scale):
        gradients = list(scale * shape)
        keras_x = _keras_adam(gradients)
        return abs(_torch_adam(gradients, **keras) - keras_x) / abs(keras_x)

    assert relative_gap(0.1) < 1e-4  # this net's gradients: the same trajectory
    assert relative_gap(1e-7) > 0.5  # a nearly dead unit: torch steps much further


def test_same_seed_gives_identical_outputs_on_the_real_trainer(cfg):
    chapter = cfg.curriculum.keras_xor
    first = keras_xor.fit_seed(INPUTS, XOR, chapter.text, chapter, seed=3)
    again = keras_xor.fit_seed(INPUTS, XOR, chapter.text, chapter, seed=3)
    other = keras_xor.fit_seed(INPUTS, XOR, chapter.text, chapter, seed=4)
    np.testing.assert_array_equal(first.outputs, again.outputs)
    assert first.epoch_loss == again.epoch_loss
    assert len(first.epoch_loss) == chapter.text.epochs
    assert not np.array_equal(first.outputs, other.outputs)
    assert first.outputs.dtype == np.float32


def test_texts_recipe_rarely_learns_xor_and_stays_near_one_half(result, cfg):
    text = result.metrics["text"]
    seeds = cfg.curriculum.keras_xor.seeds
    learned = [s["learned"] for s in text["seeds"].values()]
    assert len(learned) == len(seeds)
    assert text["success_rate"] == sum(learned) / len(seeds) < 0.5
    outputs = np.array([s["outputs"] for s in text["seeds"].values()])
    # nowhere near the text's [0.01, 0.98, 0.97, 0.05]: no output is within 0.2 of its target
    assert np.abs(outputs - XOR).min() > 0.2
    assert text["final_loss_mean"] > 0.5  # ln 2 ≈ 0.69 is a constant 0.5 output
    # Adam moves a weight by about lr per step: 100 steps at 0.001 stay near the init
    assert text["max_weight_change"] < 0.2


def test_tuned_recipe_learns_xor_in_most_seeds(result):
    tuned = result.metrics["tuned"]
    assert tuned["success_rate"] >= 0.8
    learned = [s for s in tuned["seeds"].values() if s["learned"]]
    assert all(s["margin"] > 0.4 for s in learned)  # outputs within 0.1 of their targets
    assert tuned["final_loss_mean"] < 0.05


def test_findings_compare_the_texts_print_with_the_reproduction(result, cfg):
    printed, success = result.findings
    assert printed.text == "[[0.01] [0.98] [0.97] [0.05]]"
    seed0 = result.metrics["text"]["seeds"]["seed0"]["outputs"]
    assert printed.code == keras_xor.two_decimals(seed0)
    assert not printed.matches
    assert f"{result.metrics['text']['max_weight_change']:.3f}" in printed.cause
    rate = result.metrics["text"]["success_rate"]
    seeds = len(cfg.curriculum.keras_xor.seeds)
    assert success.code.startswith(f"in {round(rate * seeds)}/{seeds} seeds")


def test_outputs_curves_series_and_figures_cover_both_recipes(result, cfg):
    epochs = cfg.curriculum.keras_xor.text.epochs
    assert [step for step, _ in result.series["text/loss"]] == list(range(1, epochs + 1))
    first_loss = result.series["text/loss"][0][1]
    assert result.series["text/loss"][-1][1] < first_loss  # it does descend, slowly
    rows = result.curves["loss"]
    assert rows[0]["epoch"] == 1 and "tuned_seed9" in rows[0] and "text_mean" in rows[-1]
    assert set(result.figures) == {"outputs", "loss"}
    assert result.trace.count("seed ") == len(cfg.curriculum.keras_xor.seeds)


def test_history_goes_to_a_plain_lightning_logger_one_step_per_epoch():
    class Recorder:
        def __init__(self):
            self.calls = []

        def log_metrics(self, metrics, step):
            self.calls.append((step, metrics))

    recorder = Recorder()
    log_history(recorder, {"train/loss": [0.7, 0.6], "train/acc": [0.5, 0.75]})
    assert recorder.calls == [
        (1, {"train/loss": 0.7, "train/acc": 0.5}),
        (2, {"train/loss": 0.6, "train/acc": 0.75}),
    ]


def test_loader_reshuffles_every_epoch_like_keras_fit_and_is_seeded():
    def orders(seed, epochs=6):
        loader = xor_loader(INPUTS, XOR, batch_size=1, seed=seed)
        return [tuple(tuple(x[0].tolist()) for x, _ in loader) for _ in range(epochs)]

    first = orders(seed=0)
    assert len(set(first)) > 1  # a new order each epoch
    assert all(sorted(order) == sorted(first[0]) for order in first)  # each row once per epoch
    assert orders(seed=0) == first
    (x, labels), *rest = list(xor_loader(INPUTS, XOR, batch_size=32, seed=0))
    assert not rest and x.shape == (4, 2) and labels.shape == (4, 1)  # Keras' batch 32: one batch
    assert x.dtype == labels.dtype == torch.float32
