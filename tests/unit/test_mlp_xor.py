"""Chapter 2: the text's numpy MLP for XOR, its real trace, and its autograd twin."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from dlrepro.chapters._common.context import ChapterContext
from dlrepro.chapters.mlp_xor import run as mlp_xor
from dlrepro.chapters.mlp_xor import text_code as mlp
from dlrepro.chapters.mlp_xor.twin import (
    PARAMETERS,
    XorMLP,
    as_tensors,
    gradients_along,
    half_sse,
    train_gd,
)
from dlrepro.data.gates import INPUTS, TRUTH, write_gates

X, Y = INPUTS, np.array(TRUTH["XOR"]).reshape(-1, 1)


@pytest.fixture(scope="module")
def result(cfg, tmp_path_factory):
    """One run of the chapter with the default config (the text's 10,000 epochs)."""
    root = tmp_path_factory.mktemp("mlp_xor")
    write_gates(root / "data" / "gates", cfg.data.gates)
    return mlp_xor.run(cfg, ChapterContext(root=root))


def test_twin_starts_from_the_numpy_weights_in_float64():
    init = mlp.init_params(1)
    model = XorMLP(*init)
    for array, parameter in zip(init, model.parameters(), strict=True):
        assert parameter.dtype == torch.float64
        np.testing.assert_array_equal(parameter.detach().numpy(), array)


def test_autograd_of_half_sum_is_the_texts_update():
    """The text's update W += lr·a.T·(error·σ') is W -= lr·∂(½·Σ error²)/∂W; the gradient of
    the mean it prints would be half as large (N/2 = 2 with four rows)."""
    init = mlp.init_params(1)
    stepped, losses = mlp.train(X, Y, init, 0.5, epochs=1, log=lambda line: None)
    model = XorMLP(*init)
    twin_losses = train_gd(model, X, Y, lr=0.5, epochs=1)
    for numpy_param, torch_param in zip(stepped, model.parameters(), strict=True):
        np.testing.assert_allclose(torch_param.detach().numpy(), numpy_param, rtol=1e-14)
    assert twin_losses[0] == pytest.approx(losses[0], rel=1e-14)

    _, hand = mlp.loss_and_gradients(X, Y, *init)
    model = XorMLP(*init)
    error = torch.as_tensor(Y) - model(torch.as_tensor(X, dtype=torch.float64))
    mean_loss_grads = torch.autograd.grad(torch.mean(error**2), [*model.parameters()])
    for hand_grad, mean_grad in zip(hand, mean_loss_grads, strict=True):
        np.testing.assert_allclose(hand_grad, 2 * mean_grad.numpy(), rtol=1e-12)


def test_batched_gradients_equal_one_at_a_time():
    """One backward pass through stacked parameter sets gives each set its own gradient."""
    sets = [mlp.init_params(seed) for seed in (1, 2, 3)]
    stacked = {name: np.stack([s[i] for s in sets]) for i, name in enumerate(PARAMETERS)}
    batched = gradients_along(X, Y, stacked)
    x, y = as_tensors(X, Y)
    for k, params in enumerate(sets):
        model = XorMLP(*params)
        half_sse(model(x), y).backward()
        for name, parameter in model.named_parameters():
            np.testing.assert_allclose(batched[name][k], parameter.grad.numpy(), rtol=1e-13)
    assert not np.allclose(batched["W1"][0], batched["W1"][1])


def test_every_logged_loss_and_output_of_the_twin_within_1e6_relative(result):
    agreement = result.metrics["agreement"]
    assert agreement["within_tolerance"]
    scratch, twin = result.metrics["scratch"], result.metrics["torch"]
    assert result.metrics["logged_epochs"] == list(range(0, 10000, 1000))
    np.testing.assert_allclose(twin["logged_losses"], scratch["logged_losses"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(twin["predictions"], scratch["predictions"], rtol=1e-6, atol=0)
    # the comparison is not vacuous: the net learned XOR along the way
    assert scratch["logged_losses"][-1] < scratch["logged_losses"][0] / 100
    assert scratch["accuracy"] == 1.0


def test_trace_is_what_the_code_prints(result):
    # Pinned from the text's numpy program run as written (chapters/mlp_xor/text_code.py,
    # seeded with curriculum.mlp_xor.seed from params.yaml; float64): what a reader who runs it
    # sees. The text's own printed values are the findings' `text`, and differ.
    lines = result.trace.splitlines()
    assert lines[0] == "Epoch 0 - Loss: 0.2511"
    assert lines[9] == "Epoch 9000 - Loss: 0.0004"
    assert "Epoch 10000" not in result.trace
    assert lines[10:12] == ["", "Predictions after training:"]
    assert lines[12] == "Input: [0 0] → Output: [[0.019]]"  # a (1, 1) array, not the text's [..]
    assert len(lines) == 16


def test_findings_give_text_code_and_cause_for_every_printed_value(result):
    findings = {f.what: f for f in result.findings}
    assert len(findings) == 3 + 4
    epoch0 = findings["loss at epoch 0"]
    assert (epoch0.text, epoch0.code) == ("Epoch 0 - Loss: 0.2565", "Epoch 0 - Loss: 0.2511")
    assert "initial weights" in epoch0.cause
    assert findings["loss at epoch 9000"].code == "Epoch 9000 - Loss: 0.0004"
    last = findings["loss at epoch 10000"]
    assert "never printed" in last.code and "range(10000)" in last.cause
    assert findings["prediction for [0 0]"].text == "Input: [0 0] → Output: [0.014]"
    assert all(not f.matches and f.cause for f in result.findings)
    assert all(f.framework for f in result.findings)


def test_outputs_are_json_and_curves_cover_the_run(result):
    assert json.loads(json.dumps(result.metrics)) == result.metrics
    rows = result.curves["loss"]
    assert rows[0]["epoch"] == 0 and rows[-1]["epoch"] == 9999
    assert set(result.figures) == {"loss", "decision_surface"}
    assert [step for step, _ in result.series["torch/loss"]] == result.metrics["logged_epochs"]


def test_config_drives_the_run(cfg, ctx):
    short = dataclasses.replace(
        cfg.curriculum.mlp_xor, hidden_size=3, epochs=300, seed=2, log_every=100
    )
    curriculum = dataclasses.replace(cfg.curriculum, mlp_xor=short)
    result = mlp_xor.run(dataclasses.replace(cfg, curriculum=curriculum), ctx)
    assert result.metrics["logged_epochs"] == [0, 100, 200]
    assert result.metrics["agreement"]["within_tolerance"]
    epoch_lines = [line for line in result.trace.splitlines() if line.startswith("Epoch")]
    assert len(epoch_lines) == 3 and epoch_lines[0] != "Epoch 0 - Loss: 0.2511"
    (params, _, _), _ = mlp_xor.capture(mlp_xor.train_scratch, X, Y, short)
    assert params[0].shape == (2, 3)


def test_the_texts_defaults_seed_1_and_a_2_2_1_network():
    """init_params() is the text's call: seed 1, two inputs, two hidden units, one output."""
    np.random.seed(1)
    first = np.random.uniform(size=(2, 2))
    W1, b1, W2, b2 = mlp.init_params()
    np.testing.assert_array_equal(W1, first)
    assert (b1.shape, W2.shape, b2.shape) == ((1, 2), (2, 1), (1, 1))


def test_loss_and_gradients_for_several_outputs_equal_autograd_of_half_sse():
    """The value is ½·Σ error² and every gradient autograd's, also with two outputs per row (the
    output bias's gradient sums over rows only, one per output)."""
    W1, b1, W2, b2 = mlp.init_params(3, input_size=2, hidden_size=3, output_size=2)
    b1, b2 = b1 + 0.1, b2 - 0.2
    y = np.column_stack([Y, 1 - Y])
    loss, grads = mlp.loss_and_gradients(X, y, W1, b1, W2, b2)
    leaves = [torch.tensor(p, requires_grad=True) for p in (W1, b1, W2, b2)]
    hidden = torch.sigmoid(torch.as_tensor(X, dtype=torch.float64) @ leaves[0] + leaves[1])
    output = torch.sigmoid(hidden @ leaves[2] + leaves[3])
    expected = 0.5 * torch.sum((torch.as_tensor(y, dtype=torch.float64) - output) ** 2)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-14)
    for hand, leaf in zip(grads, leaves, strict=True):
        assert hand.shape == leaf.shape
        np.testing.assert_allclose(hand, leaf.grad.numpy(), rtol=1e-12)


def test_the_texts_call_with_its_defaults_logs_every_1000_of_10000_epochs():
    """train(X, y, init_params()) as the text calls it: lr 0.5, 10,000 epochs, a line every
    1,000; the defaults give what the explicit values give."""
    lines: list[str] = []
    final, losses = mlp.train(X, Y, mlp.init_params(), log=lines.append)
    assert losses.shape == (10_000,) and len(lines) == 10
    assert [line.split(" - ")[0] for line in lines] == [
        f"Epoch {e}" for e in range(0, 10_000, 1000)
    ]
    same, explicit = mlp.train(
        X, Y, mlp.init_params(1), 0.5, epochs=10_000, log_every=1000, log=lambda line: None
    )
    np.testing.assert_array_equal(losses, explicit)
    for a, b in zip(final, same, strict=True):
        np.testing.assert_array_equal(a, b)
