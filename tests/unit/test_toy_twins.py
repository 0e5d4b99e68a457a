"""Every trained toy twin of the curriculum is a LightningModule, and the step that trains it is
its own `training_step`: by the Trainer (perceptron, keras_xor) or by `fit_full_batch` (mlp_xor,
backprop, optimizers). A spy wraps the class's `training_step` and counts the calls; the parity
tests of each chapter check what the steps compute.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from dlrepro.chapters._common.toy_trainer import fit_full_batch
from dlrepro.chapters.backprop import run as backprop_run
from dlrepro.chapters.keras_xor import run as keras_run
from dlrepro.chapters.keras_xor.twin import KerasXorNet
from dlrepro.chapters.mlp_xor import run as mlp_run
from dlrepro.chapters.mlp_xor.twin import XorMLP, XorTwin, train_gd
from dlrepro.chapters.optimizers import twin as optimizers_twin
from dlrepro.chapters.perceptron import run as perceptron_run
from dlrepro.chapters.perceptron.twin import LightningPerceptron

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
Y = np.array([0, 1, 1, 0])
STEPS = 5


@pytest.fixture
def spy(monkeypatch):
    """Wrap `cls.training_step`; returns the list of the instances each call ran on."""

    def install(cls) -> list[object]:
        calls: list[object] = []
        original = cls.training_step

        def training_step(self, *args, **kwargs):
            calls.append(self)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "training_step", training_step)
        return calls

    return install


def assert_lightning_steps(calls: list[object], cls: type, expected: int) -> None:
    assert issubclass(cls, pl.LightningModule)
    assert len(calls) == expected
    assert all(isinstance(module, cls) for module in calls)


def test_perceptron_trains_by_its_training_step_under_the_trainer(spy, one_torch_thread):
    calls = spy(LightningPerceptron)
    perceptron_run.train_lightning(X, Y, lr=0.1, epochs=2)
    assert_lightning_steps(calls, LightningPerceptron, 2 * len(X))  # one sample per step


def test_mlp_xor_trains_by_its_training_step(spy, cfg, one_torch_thread):
    calls = spy(XorTwin)
    chapter = dataclasses.replace(cfg.curriculum.mlp_xor, epochs=STEPS)
    losses, _ = mlp_run.train_torch(X, Y.reshape(-1, 1), chapter)
    assert_lightning_steps(calls, XorTwin, STEPS)
    assert len(losses) == STEPS


def test_backprop_trains_by_the_same_twins_training_step(spy, cfg, one_torch_thread):
    calls = spy(XorTwin)
    chapter = dataclasses.replace(cfg.curriculum.backprop, epochs=STEPS)
    backprop_run.train_torch(X, Y.reshape(-1, 1), chapter)
    assert_lightning_steps(calls, XorTwin, STEPS)


def test_optimizers_race_trains_by_its_training_step(spy, cfg, one_torch_thread):
    calls = spy(optimizers_twin.OptimizerRace)
    rates = {"sgd": 0.1, "adam": 0.1}
    result = optimizers_twin.race(
        optimizers_twin.quadratic_losses,
        [np.array([1.0, -2.0])],
        rates,
        cfg.curriculum.optimizers.hyper,
        STEPS,
    )
    assert_lightning_steps(calls, optimizers_twin.OptimizerRace, STEPS)
    for path, loss in result.values():
        assert path.shape == (STEPS + 1, 2) and loss.shape == (STEPS + 1,)
    # plain SGD on Σx²: x ← x − lr·2x, so each step scales the point by 0.8
    np.testing.assert_allclose(result["sgd"][0][-1], [0.8**STEPS, -2 * 0.8**STEPS], rtol=1e-15)


def test_keras_xor_trains_by_its_training_step_under_the_trainer(spy, cfg, one_torch_thread):
    calls = spy(KerasXorNet)
    chapter = cfg.curriculum.keras_xor
    recipe = dataclasses.replace(chapter.text, epochs=2, batch_size=2)
    keras_run._fit(X, Y.reshape(-1, 1), recipe, chapter, seed=0, logger=False)
    assert_lightning_steps(calls, KerasXorNet, 2 * 2)  # two batches of two rows an epoch


def test_full_batch_steps_equal_the_hand_written_gradient_descent(one_torch_thread):
    """The thin loop is the Trainer's automatic optimization: the parameters after it equal a
    hand-written p ← p − lr·∂L/∂p bit for bit."""
    rng = np.random.default_rng(0)
    init = [rng.normal(size=s) for s in ((2, 2), (1, 2), (2, 1), (1, 1))]
    inputs = torch.as_tensor(X, dtype=torch.float64)
    targets = torch.as_tensor(Y.reshape(-1, 1), dtype=torch.float64)
    by_hand = XorMLP(*init)
    for _ in range(STEPS):
        loss = 0.5 * torch.sum((targets - by_hand(inputs)) ** 2)
        gradients = torch.autograd.grad(loss, list(by_hand.parameters()))
        with torch.no_grad():
            for parameter, gradient in zip(by_hand.parameters(), gradients, strict=True):
                parameter.sub_(gradient, alpha=0.5)
    model = XorMLP(*init)
    train_gd(model, X, Y.reshape(-1, 1), lr=0.5, epochs=STEPS)
    for ours, theirs in zip(model.parameters(), by_hand.parameters(), strict=True):
        assert torch.equal(ours, theirs)


def test_full_batch_steps_every_optimizer_configure_optimizers_returns():
    class Two(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Parameter(torch.tensor(1.0))
            self.b = torch.nn.Parameter(torch.tensor(1.0))

        def training_step(self, batch, batch_idx):
            return self.a * batch + self.b * batch

        def configure_optimizers(self):
            return [torch.optim.SGD([self.a], lr=0.1), torch.optim.SGD([self.b], lr=0.2)]

    module = Two()
    fit_full_batch(module, torch.tensor(1.0), 3)
    assert module.a.item() == pytest.approx(1 - 3 * 0.1)
    assert module.b.item() == pytest.approx(1 - 3 * 0.2)


def test_a_single_optimizer_is_stepped_once_a_step():
    stepped = SimpleNamespace(count=0)

    class One(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(2.0))

        def training_step(self, batch, batch_idx):
            return self.w**2

        def configure_optimizers(self):
            optimizer = torch.optim.SGD([self.w], lr=0.25)
            step = optimizer.step

            def counted(*args, **kwargs):
                stepped.count += 1
                return step(*args, **kwargs)

            optimizer.step = counted  # type: ignore[method-assign]
            return optimizer

    module = One()
    fit_full_batch(module, None, 4)
    assert stepped.count == 4
    assert module.w.item() == pytest.approx(2.0 * 0.5**4)  # w ← w − 0.25·2w


def test_full_batch_refuses_what_it_cannot_step():
    class NoLoss(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(1.0))

        def training_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            return torch.optim.SGD([self.w], lr=0.1)

    with pytest.raises(TypeError, match=r"NoLoss\.training_step must return the loss tensor"):
        fit_full_batch(NoLoss(), None, 1)

    class WithScheduler(NoLoss):
        def configure_optimizers(self):
            optimizer = torch.optim.SGD([self.w], lr=0.1)
            return {"optimizer": optimizer, "lr_scheduler": None}

    with pytest.raises(TypeError, match="plain torch optimizers only"):
        fit_full_batch(WithScheduler(), None, 1)
