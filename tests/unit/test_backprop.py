"""Chapter 3: the text's hand-written backward pass, checked against autograd and finite
differences, and its real trace."""

import json

import numpy as np
import pytest

from dlrepro.chapters._common.context import ChapterContext
from dlrepro.chapters.backprop import run as backprop
from dlrepro.chapters.backprop import text_code as scratch
from dlrepro.data.gates import INPUTS, TRUTH, write_gates

X, Y = INPUTS, np.array(TRUTH["XOR"]).reshape(-1, 1)


@pytest.fixture(scope="module")
def result(cfg, tmp_path_factory):
    """One run of the chapter with the default config (the text's 10,000 epochs)."""
    root = tmp_path_factory.mktemp("backprop")
    write_gates(root / "data" / "gates", cfg.data.gates)
    return backprop.run(cfg, ChapterContext(root=root))


@pytest.fixture(scope="module")
def short_history():
    _, history = scratch.train(X, Y, scratch.init_params(0), epochs=50, log=lambda line: None)
    return history


def test_init_is_the_texts_seed_0_rand():
    W1, b1, W2, b2 = scratch.init_params(0)
    np.random.seed(0)
    np.testing.assert_array_equal(W1, np.random.rand(2, 2))
    np.testing.assert_array_equal(W2, np.random.rand(2, 1))
    assert not b1.any() and not b2.any() and b1.shape == (1, 2) and b2.shape == (1, 1)


def test_history_holds_the_weights_each_gradient_was_taken_at(short_history):
    # the update is W -= lr·dW, so consecutive recorded weights differ by exactly that
    np.testing.assert_array_equal(
        short_history["W1"][1], short_history["W1"][0] - 0.5 * short_history["d_W1"][0]
    )


def test_hand_written_gradients_equal_autograd_at_every_step(result):
    gradients = result.metrics["gradients"]
    assert gradients["steps_compared"] == 10000
    assert gradients["within_tolerance"]
    assert gradients["max_abs_difference"] <= 1e-10
    assert gradients["max_relative_difference"] <= 1e-9


def test_the_autograd_comparison_catches_a_wrong_gradient(short_history):
    assert backprop.compare_with_autograd(X, Y, short_history)["absolute"].max() <= 1e-10
    # a gradient off by 0.1% is flagged at every step
    broken = dict(short_history)
    broken["d_W2"] = short_history["d_W2"] * 1.001
    assert backprop.compare_with_autograd(X, Y, broken)["absolute"].min() > 1e-10


def test_hand_written_gradient_is_of_the_half_sum_not_the_printed_mean(result, short_history):
    ratio = result.metrics["hand_over_printed_loss_gradient"]
    assert ratio["min"] == pytest.approx(2.0, rel=1e-6)
    assert ratio["max"] == pytest.approx(2.0, rel=1e-6)
    numeric = backprop.finite_differences(
        lambda *p: backprop.half_sse(X, Y, *p), backprop.params_at(short_history, 10), 1e-6
    )
    hand = backprop.hand_gradients_at(short_history, 10)
    np.testing.assert_allclose(hand, numeric, rtol=1e-6)


def test_finite_difference_check_at_initial_middle_and_final_weights(result):
    check = result.metrics["gradcheck"]
    assert check["steps"] == [0, 5000, 9999]
    assert check["eps"] == 1e-6
    assert check["passed"] and max(check["max_relative_error"]) <= 1e-6
    # and it is a real check: a gradient off by 0.1% fails it
    _, history = scratch.train(X, Y, scratch.init_params(0), epochs=1, log=lambda line: None)
    history["d_b2"] = history["d_b2"] * 1.001
    assert backprop.gradient_check(X, Y, history, [0], 1e-6)[0] > 1e-6


def test_twin_trains_like_the_numpy_code(result):
    assert result.metrics["agreement"]["within_tolerance"]
    scratch_run, twin = result.metrics["scratch"], result.metrics["torch"]
    np.testing.assert_allclose(twin["logged_losses"], scratch_run["logged_losses"], rtol=1e-6)
    np.testing.assert_allclose(twin["predictions"], scratch_run["predictions"], rtol=1e-6)
    assert scratch_run["accuracy"] == 1.0


def test_trace_and_findings_show_what_the_code_prints(result):
    # Pinned from the text's numpy program run as written (chapters/backprop/text_code.py,
    # seeded with curriculum.backprop.seed from params.yaml; float64): what a reader who runs it
    # sees. The text's own printed values are the findings' `text`, and differ.
    lines = result.trace.splitlines()
    assert lines[0] == "Epoch 0 - Loss: 0.2759"
    assert lines[9] == "Epoch 9000 - Loss: 0.0003"
    assert lines[10:12] == ["", "Predictions after training:"]
    assert lines[12] == "[0 0] → [[0.019]]"
    findings = {f.what: f for f in result.findings}
    assert len(findings) == 2 + 4
    assert findings["loss at epoch 0"].text == "Epoch 0 - Loss: 0.2572"
    assert findings["loss at epoch 0"].code == lines[0]
    assert findings["loss at epoch 9000"].text == "Epoch 9000 - Loss: 0.0012"
    assert findings["prediction for [1 1]"].code == "[1 1] → [[0.017]]"
    assert all(not f.matches and f.cause and f.framework for f in result.findings)


def test_outputs_are_json_and_curves_cover_the_run(result):
    assert json.loads(json.dumps(result.metrics)) == result.metrics
    assert set(result.figures) == {"loss", "gradient_difference"}
    windows = result.curves["gradient_difference"]
    assert windows[0]["step"] == 0
    peak = max(row["max_abs_difference"] for row in windows)
    assert peak == result.metrics["gradients"]["max_abs_difference"]


def test_the_texts_call_with_its_defaults_prints_its_trace():
    """train(X, y, init_params()) as the text calls it: seed 0, lr 0.5, 10,000 epochs, a loss
    line every 1,000 (pinned as in the trace test above), every epoch's loss the MSE of what
    that epoch's weights predict."""
    lines: list[str] = []
    _, history = scratch.train(X, Y, scratch.init_params(), log=lines.append)
    assert len(lines) == 10 and lines[0] == "Epoch 0 - Loss: 0.2759"
    assert lines[1].startswith("Epoch 1000 - ") and lines[9] == "Epoch 9000 - Loss: 0.0003"
    assert history["loss"].shape == (10_000,)
    for epoch in (0, 4321, 9999):
        hidden = 1 / (1 + np.exp(-(X @ history["W1"][epoch] + history["b1"][epoch])))
        output = 1 / (1 + np.exp(-(hidden @ history["W2"][epoch] + history["b2"][epoch])))
        assert history["loss"][epoch] == pytest.approx(np.mean((Y - output) ** 2), rel=1e-12)
