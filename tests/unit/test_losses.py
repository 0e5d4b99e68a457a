"""Chapter 5: the text's losses with Keras' conventions, against torch and scikit-learn."""

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error

from dlrepro.chapters.losses import run as chapter
from dlrepro.chapters.losses import text_code as sl

SRC = Path(__file__).resolve().parents[2] / "src" / "dlrepro"
KERAS = SimpleNamespace(huber_delta=1.0, clip_eps=1e-7)
EX, EXTREME = chapter.EXAMPLES, chapter.EXTREMES
CLASSES = [0, 1, 2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    return {name.split(".")[0] for name in names}


def test_scratch_is_numpy_only_and_sklearn_stays_in_the_tests():
    assert imported_modules(SRC / "chapters" / "losses" / "text_code.py") == {"numpy"}
    assert imported_modules(SRC / "chapters" / "activations" / "text_code.py") == {"numpy"}
    assert "sklearn" not in imported_modules(SRC / "chapters" / "losses" / "run.py")


def test_scratch_equals_sklearn_on_the_fixed_examples():
    reg, binary, sparse = EX["regression"], EX["binary"], EX["sparse"]
    assert sl.mse(reg.y_true, reg.y_pred) == pytest.approx(
        mean_squared_error(reg.y_true, reg.y_pred), abs=1e-12
    )
    assert sl.mae(reg.y_true, reg.y_pred) == pytest.approx(
        mean_absolute_error(reg.y_true, reg.y_pred), abs=1e-12
    )
    # No probability comes near either clip here, so Keras' and sklearn's conventions agree.
    assert sl.binary_crossentropy(binary.y_true, binary.y_pred) == pytest.approx(
        log_loss(binary.y_true, binary.y_pred), abs=1e-12
    )
    expected = log_loss(sparse.y_true, sparse.y_pred, labels=CLASSES)
    assert sl.sparse_categorical_crossentropy(sparse.y_true, sparse.y_pred) == pytest.approx(
        expected, abs=1e-12
    )
    one_hot = EX["categorical"]
    assert sl.categorical_crossentropy(one_hot.y_true, one_hot.y_pred) == pytest.approx(
        expected, abs=1e-12
    )


@pytest.mark.parametrize("constants", [KERAS, SimpleNamespace(huber_delta=2.5, clip_eps=1e-7)])
def test_scratch_equals_torch_on_the_fixed_examples(constants):
    for name, loss in chapter.losses(constants).items():
        ex = EX[loss.example]
        scratch, framework = (
            loss.scratch(ex.y_true, ex.y_pred),
            loss.framework(ex.y_true, ex.y_pred),
        )
        assert scratch == pytest.approx(float(framework), abs=1e-12), name


def test_huber_is_quadratic_up_to_delta_and_linear_beyond():
    zero = np.zeros(1)
    assert sl.huber(zero, np.array([0.5]), delta=1.0) == 0.125
    assert sl.huber(zero, np.array([3.0]), delta=1.0) == 2.5  # 1·3 - ½
    assert sl.huber(zero, np.array([2.0]), delta=2.0) == 2.0  # both branches at |e| = δ
    errors = np.linspace(-4, 4, 81)
    for delta in (0.5, 2.0):
        ours = [sl.huber(zero, np.array([e]), delta) for e in errors]
        theirs = F.huber_loss(
            torch.tensor(errors),
            torch.zeros(81, dtype=torch.float64),
            reduction="none",
            delta=delta,
        )
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-15)


def test_keras_rescales_rows_that_sklearn_only_warns_about():
    ex = EX["categorical"]
    halved = 0.5 * ex.y_pred  # rows sum to 0.5
    keras = sl.categorical_crossentropy(ex.y_true, ex.y_pred)
    assert sl.categorical_crossentropy(ex.y_true, halved) == pytest.approx(keras, abs=1e-15)
    with pytest.warns(UserWarning, match="do not sum to one"):
        sklearn = log_loss(EX["sparse"].y_true, halved, labels=CLASSES)
    assert sklearn == pytest.approx(keras + np.log(2), abs=1e-12)  # -log(p/2), not rescaled


def test_each_library_bounds_log_zero_its_own_way():
    binary = EXTREME["binary"]
    keras = sl.binary_crossentropy(binary.y_true, binary.y_pred)
    sklearn_convention = sl.binary_crossentropy(binary.y_true, binary.y_pred, chapter.SKLEARN_EPS)
    assert sklearn_convention == pytest.approx(log_loss(binary.y_true, binary.y_pred), rel=1e-12)
    # half the samples are certain and wrong: half of -log(eps) each
    assert keras == pytest.approx(-np.log(1e-7) / 2, rel=1e-7)
    assert sklearn_convention == pytest.approx(-np.log(np.finfo(float).eps) / 2, rel=1e-12)
    assert F.binary_cross_entropy(torch.tensor(binary.y_pred), torch.tensor(binary.y_true)) == 50.0

    sparse = EXTREME["sparse"]
    assert sl.sparse_categorical_crossentropy(
        sparse.y_true, sparse.y_pred, chapter.SKLEARN_EPS
    ) == pytest.approx(log_loss(sparse.y_true, sparse.y_pred, labels=CLASSES), rel=1e-12)
    log_p = torch.tensor(sparse.y_pred).log()
    assert torch.isinf(F.nll_loss(log_p, torch.tensor(sparse.y_true)))
    assert torch.isnan(F.cross_entropy(log_p, torch.tensor(EXTREME["categorical"].y_true)))


def test_kl_keras_clips_zero_targets_that_torch_counts_as_zero():
    metrics = chapter.kl_one_hot_target(1e-7)
    p, q = np.eye(3)[[0, 1]], np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    # Keras adds eps·log(eps/q) for each zero of p (then averages over the two samples)
    expected = np.sum(np.where(p == 0, 1e-7 * np.log(1e-7 / q), 0)) / 2
    assert metrics["keras_convention"] - metrics["torch"] == pytest.approx(expected, rel=1e-6)
    assert 1e-6 < metrics["abs_diff"] < 1e-5  # above a 1e-6 tolerance: a real difference

    reductions = chapter.kl_reductions(1e-7)
    assert reductions["torch_batchmean"] == pytest.approx(
        reductions["keras_sum_over_classes_mean_over_samples"], abs=1e-15
    )
    assert reductions["torch_mean"] == pytest.approx(reductions["torch_batchmean"] / 3, rel=1e-14)


def test_run_reports_agreement_extremes_and_the_finding(cfg, ctx):
    result = chapter.run(cfg, ctx)
    metrics = result.metrics
    json.dumps(metrics, allow_nan=False)  # inf and NaN are written as strings
    assert metrics["max_abs_diff_vs_torch"] < 1e-6
    assert set(metrics["examples"]) == set(chapter.losses(cfg.curriculum.losses))
    assert metrics["examples"]["mse"]["scratch"] == pytest.approx(5.3)  # (.25+.25+0+1+25)/5
    extremes = metrics["extremes"]
    assert extremes["binary_crossentropy"]["torch"] == 50.0
    assert extremes["sparse_categorical_crossentropy"]["torch"] == "inf"
    assert extremes["categorical_crossentropy"]["torch"] == "nan"
    assert extremes["kl_divergence"]["torch"] == "nan"
    assert np.isfinite(extremes["kl_divergence"]["keras_convention"])
    share = metrics["outlier_share"]
    assert share["mse"] > share["huber"] > share["mae"]  # Huber sits between: robust, smooth

    (finding,) = result.findings
    assert not finding.matches
    # Keras clips probabilities to [1e-7, 1 - 1e-7]; scikit-learn's convention to float64's eps
    assert f"{-np.log(1e-7):.4f}" in finding.code  # 16.1181
    assert f"{-np.log(np.finfo(float).eps):.4f}" in finding.framework  # 36.0437
    assert "nll_loss(log p): inf" in finding.framework

    guards = result.curves["log_guards"]
    assert guards[0]["p"] == pytest.approx(1e-50)
    assert guards[0]["keras"] == pytest.approx(-np.log(1e-7))
    assert guards[0]["torch"] == 100.0
    assert guards[-1]["keras"] == pytest.approx(0.0, abs=2e-7)
    assert set(result.figures) == {"losses"}
    assert "| kl_divergence |" in result.framework_trace


def test_keras_bounds_and_defaults_at_the_top_of_the_range():
    """A certain, correct prediction still costs −ln(1 − 1e-7) (Keras clips to 1 − eps), KL
    clips predictions above 1 to 1, and huber's delta is 1 unless given."""
    assert sl.categorical_crossentropy(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]])) == (
        pytest.approx(-np.log1p(-1e-7), rel=1e-9)
    )
    got = sl.kl_divergence(np.array([[0.5, 0.5]]), np.array([[1.5, 0.5]]))
    assert got == pytest.approx(0.5 * np.log(0.5 / 1.0), rel=1e-12)
    over = sl.kl_divergence(np.array([[1.5, 0.5]]), np.array([[0.5, 0.5]]))  # targets too
    assert over == pytest.approx(np.log(1.0 / 0.5), rel=1e-12)
    y, p = np.array([0.0, 0.0]), np.array([0.5, 3.0])
    assert sl.huber(y, p) == pytest.approx(np.mean([0.5 * 0.5**2, 3.0 - 0.5]))


def test_class_axis_is_the_last_for_sequences_of_rows():
    """(batch, steps, classes) arrays, as Keras takes them: each row's loss, then the mean."""
    rng = np.random.default_rng(0)
    y_pred = rng.uniform(0.1, 1.0, (2, 3, 4))
    labels = rng.integers(0, 4, (2, 3))
    one_hot = np.eye(4)[labels]
    rows = y_pred / y_pred.sum(axis=-1, keepdims=True)
    expected = np.mean(-np.log(np.take_along_axis(rows, labels[..., None], axis=-1)))
    assert sl.categorical_crossentropy(one_hot, y_pred) == pytest.approx(expected, rel=1e-12)
    assert sl.sparse_categorical_crossentropy(labels, y_pred) == pytest.approx(expected, rel=1e-12)
    target = rng.dirichlet(np.ones(4), (2, 3))
    kl = np.mean(np.sum(target * np.log(target / y_pred.clip(max=1)), axis=-1))
    assert sl.kl_divergence(target, y_pred) == pytest.approx(kl, rel=1e-12)
