"""Chapter 1: the text's perceptron, its real trace, and its Lightning twin."""

import numpy as np

from dlrepro.chapters.perceptron import run as perceptron
from dlrepro.chapters.perceptron.text_code import Perceptron, step_function
from dlrepro.data.gates import INPUTS, TRUTH


def test_step_function_fires_at_zero_as_written():
    assert step_function(0) == 1
    assert step_function(-1e-12) == 0


def test_first_prediction_of_and_is_one_with_error_minus_one():
    _, history, printed = perceptron.train_scratch(INPUTS, np.array(TRUTH["AND"]), 0.1, 1)
    assert history[0, 1] == -1  # error of the first sample
    assert "Input: [0 0], Predicted: 1, Error: -1, Weights: [0. 0.], Bias: -0.1" in printed


def test_linearly_separable_gates_converge_and_xor_never_does(cfg, ctx):
    result = perceptron.run(cfg, ctx)
    for gate in ("AND", "OR", "NAND"):
        assert result.metrics[gate]["converged"], gate
        assert result.metrics[gate]["accuracy"] == 1.0
        assert result.metrics[gate]["linearly_separable"]
    assert not result.metrics["XOR"]["converged"]
    assert result.metrics["XOR"]["accuracy"] < 1.0
    assert not result.metrics["XOR"]["linearly_separable"]


def test_lightning_weights_equal_numpy_after_every_sample():
    for gate in ("AND", "OR", "NAND", "XOR"):
        y = np.array(TRUTH[gate])
        _, history, _ = perceptron.train_scratch(INPUTS, y, 0.1, 10)
        twin = perceptron.train_lightning(INPUTS, y, 0.1, 10)
        assert twin.shape == history.shape == (40, 5)
        np.testing.assert_array_equal(twin, history)  # exact, not approximate


def test_report_findings_flag_the_texts_epoch_one_trace(cfg, ctx):
    findings = perceptron.run(cfg, ctx).findings
    first = findings[0]
    assert not first.matches
    assert "Predicted: 1, Error: -1" in first.code
    assert "step(0) = 1" in first.cause
    final = findings[-1]
    assert final.what == "AND, final predictions" and final.matches


def test_scratch_perceptron_is_the_texts_class():
    p = Perceptron(input_size=2)
    assert p.lr == 0.1 and p.bias == 0 and not p.weights.any()
