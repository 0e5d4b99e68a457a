"""Chapter 4: the text's activation functions, safe on any float64 input, and equal to torch's."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from dlrepro.chapters.activations import run as chapter
from dlrepro.chapters.activations import text_code as act

# Non-default constants too, so that a slope or alpha dropped somewhere shows.
CONSTANTS = [
    SimpleNamespace(leaky_slope=0.01, elu_alpha=1.0),
    SimpleNamespace(leaky_slope=0.2, elu_alpha=2.0),
]
STRESS = np.array(chapter.STRESS_POINTS, dtype=np.float64)


def strict():
    """Overflow, invalid values and division by zero raise. Underflow may happen: exp(-1000)
    rounds to 0.0, which is the correctly rounded float64 result and what torch gives too."""
    return np.errstate(over="raise", invalid="raise", divide="raise", under="ignore")


@pytest.mark.parametrize("constants", CONSTANTS)
def test_safe_functions_and_derivatives_never_overflow_on_the_stress_points(constants):
    with strict(), warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in chapter.activations(constants).values():
            for fn in (f.scratch, f.derivative):
                assert np.isfinite(fn(STRESS)).all()
        assert np.isfinite(act.softmax(STRESS)).all()
        assert np.isfinite(act.softmax_jacobian(STRESS)).all()


def test_the_texts_sigmoid_and_elu_overflow_at_1000():
    x = np.array([-1000.0, 1000.0])
    with strict(), pytest.raises(FloatingPointError, match="overflow"):
        act.sigmoid_as_written(x)
    with strict(), pytest.raises(FloatingPointError, match="overflow"):
        act.elu_as_written(x)
    with strict(), pytest.raises(FloatingPointError, match="overflow"):
        act.swish_as_written(x)


def test_safe_functions_equal_the_texts_where_the_text_does_not_overflow():
    x = np.linspace(-10, 10, 101)
    np.testing.assert_allclose(act.sigmoid(x), act.sigmoid_as_written(x), rtol=1e-15, atol=0)
    np.testing.assert_allclose(act.elu(x), act.elu_as_written(x), rtol=0, atol=1e-15)
    np.testing.assert_allclose(act.swish(x), act.swish_as_written(x), rtol=1e-14, atol=0)
    np.testing.assert_array_equal(act.softmax(x), act.softmax_as_written(x))


@pytest.mark.parametrize("constants", CONSTANTS)
def test_values_and_derivatives_equal_torch_in_float64(constants):
    grid = chapter.comparison_grid(SimpleNamespace(x_min=-10, x_max=10, points=100))
    assert {-1000.0, 0.0, 1000.0} <= set(grid)
    for name, f in chapter.activations(constants).items():
        value, slope = chapter.torch_value_and_derivative(f.framework, grid)
        np.testing.assert_allclose(f.scratch(grid), value, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(f.derivative(grid), slope, rtol=0, atol=1e-12, err_msg=name)


def test_derivative_conventions_at_the_kinks_follow_torch():
    zero = np.array([0.0])
    assert act.relu_derivative(zero)[0] == 0.0
    assert act.leaky_relu_derivative(zero, slope=0.2)[0] == 0.2
    assert act.elu_derivative(zero, alpha=2.0)[0] == 2.0
    f = chapter.activations(SimpleNamespace(leaky_slope=0.2, elu_alpha=2.0))
    for name, expected in (("relu", 0.0), ("leaky_relu", 0.2), ("elu", 2.0)):
        assert chapter.torch_value_and_derivative(f[name].framework, zero)[1][0] == expected


def test_softmax_rows_sum_to_one_and_its_jacobian_equals_autograd():
    logits = np.array([[2.0, 1.0, 0.1], [1000.0, 999.0, -1000.0]])
    probabilities = act.softmax(logits)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=0, atol=1e-15)
    assert probabilities[1, 2] == 0.0 and probabilities[1, 0] > probabilities[1, 1] > 0.25
    for row in logits:
        value, jacobian = chapter.torch_softmax_and_jacobian(row)
        np.testing.assert_allclose(act.softmax(row), value, rtol=0, atol=1e-15)
        np.testing.assert_allclose(act.softmax_jacobian(row), jacobian, rtol=0, atol=1e-15)
        np.testing.assert_allclose(act.softmax_jacobian(row).sum(axis=0), 0.0, atol=1e-15)


def test_run_reports_agreement_overflows_and_findings(cfg, ctx):
    result = chapter.run(cfg, ctx)
    metrics = result.metrics
    assert metrics["comparison_grid"]["includes_zero"]
    assert metrics["comparison_grid"]["min"] == -1000.0
    for name, diff in metrics["max_abs_diff_vs_torch"].items():
        assert max(diff.values()) < 1e-6, name
    assert metrics["scratch_runtime_warnings"] == 0 and metrics["scratch_all_finite"]
    assert metrics["max_derivative"]["sigmoid"] == 0.25  # the grid holds 0, where σ' peaks

    sigmoid = metrics["as_written"]["sigmoid"]
    assert sigmoid["runtime_warnings_on_text_grid"] == 0
    assert sigmoid["warning_messages"] == ["overflow encountered in exp"]
    assert sigmoid["warning_points"] == [-1000.0, -710.0]  # exp overflows above 709.78
    assert metrics["as_written"]["elu"]["warning_points"] == [710.0, 1000.0]
    assert metrics["as_written"]["softmax"]["runtime_warnings"] == 0

    overflow, elu, swish = result.findings
    assert not overflow.matches and "overflow encountered in exp" in overflow.code
    assert "= 0.0" in overflow.code and "= 0.0" in overflow.framework
    assert "elu(1000.0) = 1000.0" in elu.code
    assert "0 parameters" in swish.framework and "def swish(x)" in swish.code

    assert set(result.figures) == {"activations", "derivatives", "softmax"}
    assert len(result.figures["activations"].axes) == 6
    assert len(result.curves["activations"]) == cfg.curriculum.activations.points
    assert "| sigmoid |" in result.framework_trace


def test_the_default_slope_and_alpha_are_the_texts():
    """leaky_relu's slope 0.01 and elu's alpha 1.0 when the caller gives none."""
    x = np.array([-2.0])
    assert act.leaky_relu(x)[0] == pytest.approx(-0.02)
    assert act.leaky_relu_derivative(x)[0] == pytest.approx(0.01)
    assert act.elu(x)[0] == pytest.approx(np.expm1(-2.0))
    assert act.elu_derivative(x)[0] == pytest.approx(np.exp(-2.0))
