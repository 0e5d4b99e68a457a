"""Chapter 3, "Forward & Backward Propagation": the text's hand-written gradients, checked
against autograd at every step and against finite differences at a few."""

from __future__ import annotations

import numpy as np

from dlrepro import paths
from dlrepro.chapters._common.context import ChapterContext
from dlrepro.chapters._common.result import ChapterResult
from dlrepro.chapters.backprop import text_code as backprop
from dlrepro.chapters.backprop.text_code import PARAMETERS
from dlrepro.chapters.mlp_xor.run import (
    CURVE_POINTS,
    capture,
    comparison_metrics,
    curve_rows,
    logged_epochs,
    loss_figure,
    loss_findings,
    prediction_findings,
    text_predictions_mse,
    twin_trace,
    xor_columns,
)
from dlrepro.chapters.mlp_xor.text_code import sigmoid
from dlrepro.config import Config
from dlrepro.data.gates import gate_path

INPUTS = [gate_path(paths.GATES, "XOR")]  # the only gate this chapter reads

# The text's sample output, copied as printed.
TEXT_LOSSES = {0: "Epoch 0 - Loss: 0.2572", 9000: "Epoch 9000 - Loss: 0.0012"}
TEXT_PREDICTIONS = ["[0 0] → [0.01]", "[0 1] → [0.99]", "[1 0] → [0.99]", "[1 1] → [0.01]"]
# Hand-written vs autograd, every entry at every step. Absolute: the gradients' entries range
# from ~1e-6 to ~0.1 along the run, and both sides agree to a few ulps of the largest.
GRADIENT_TOLERANCE = 1e-10
# Central differences err by O(eps²) plus rounding O(ulp·loss/eps): ~2e-8 relative here.
GRADCHECK_TOLERANCE = 1e-6


def train_scratch(X, y, chapter) -> tuple[tuple, dict[str, np.ndarray], list[float]]:
    """Run the text's program as written, printing what it prints; return the trained
    parameters, the per-epoch history and the printed predictions' values."""
    init = backprop.init_params(chapter.seed)
    params, history = backprop.train(X, y, init, chapter.lr, chapter.epochs, chapter.log_every)
    W1, b1, W2, b2 = params
    print("\nPredictions after training:")
    predictions = []
    for i in range(len(X)):
        output = sigmoid(np.dot(sigmoid(np.dot(X[i], W1) + b1), W2) + b2)
        print(f"{X[i]} → {output.round(3)}")
        predictions.append(float(output.item()))
    return params, history, predictions


def train_torch(X, y, chapter) -> tuple[np.ndarray, list[float]]:
    """The autograd twin (chapter 2's module) from the same initial weights."""
    from dlrepro.chapters.mlp_xor.twin import XorMLP, predict, train_gd

    model = XorMLP(*backprop.init_params(chapter.seed))
    losses = train_gd(model, X, y, chapter.lr, chapter.epochs)
    return losses, predict(model, X).ravel().tolist()


def relative_difference(a, b) -> np.ndarray:
    """|a - b| / max(|a|, |b|) entry by entry, 0 where both are 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(a), np.abs(b))
    return np.divide(np.abs(a - b), scale, out=np.zeros_like(scale), where=scale > 0)


def flat(gradients: dict[str, np.ndarray], prefix: str = "") -> np.ndarray:
    """(epochs, 9): the four parameters' gradients of each step side by side."""
    columns = [gradients[prefix + name] for name in PARAMETERS]
    return np.concatenate([column.reshape(len(column), -1) for column in columns], axis=1)


def compare_with_autograd(X, y, history) -> dict[str, np.ndarray]:
    """Autograd's gradient of ½·Σ(y_pred - y)² at the very weights of every step, set against
    the hand-written one: per step, the largest absolute and relative difference."""
    from dlrepro.chapters.mlp_xor.twin import gradients_along

    hand = flat(history, prefix="d_")
    auto = flat(gradients_along(X, y, history))
    return {
        "absolute": np.max(np.abs(hand - auto), axis=1),
        "relative": np.max(relative_difference(hand, auto), axis=1),
    }


def half_sse(X, y, W1, b1, W2, b2) -> float:
    y_pred = sigmoid(np.dot(sigmoid(np.dot(X, W1) + b1), W2) + b2)
    return 0.5 * np.sum((y_pred - y) ** 2)


def mean_squared_error(X, y, W1, b1, W2, b2) -> float:
    """The loss the text prints."""
    return 2 * half_sse(X, y, W1, b1, W2, b2) / len(X)


def finite_differences(loss, params, eps: float) -> np.ndarray:
    """Central differences (loss(p + eps) - loss(p - eps)) / 2eps, one entry at a time, all
    parameters' entries in one vector (PARAMETERS order)."""
    gradient = []
    for k, p in enumerate(params):
        for index in np.ndindex(p.shape):
            shifted = []
            for sign in (1, -1):
                moved = [q.copy() for q in params]
                moved[k][index] += sign * eps
                shifted.append(loss(*moved))
            gradient.append((shifted[0] - shifted[1]) / (2 * eps))
    return np.array(gradient)


def params_at(history, step: int) -> list[np.ndarray]:
    return [history[name][step] for name in PARAMETERS]


def hand_gradients_at(history, step: int) -> np.ndarray:
    return np.concatenate([history[f"d_{name}"][step].ravel() for name in PARAMETERS])


def gradient_check(X, y, history, steps: list[int], eps: float) -> list[float]:
    """At each step: the largest relative error of the hand-written gradient against central
    differences of ½·Σ(y_pred - y)²."""
    errors = []
    for step in steps:
        numeric = finite_differences(lambda *p: half_sse(X, y, *p), params_at(history, step), eps)
        errors.append(float(np.max(relative_difference(hand_gradients_at(history, step), numeric))))
    return errors


def hand_over_printed_loss_gradient(X, y, history, eps: float) -> np.ndarray:
    """Hand-written gradient / gradient of the printed mean loss, entry by entry, at the
    initial weights: N/2 = 2 everywhere says the code descends ½·Σ, not the mean."""
    numeric = finite_differences(
        lambda *p: mean_squared_error(X, y, *p), params_at(history, 0), eps
    )
    return hand_gradients_at(history, 0) / numeric


def run(cfg: Config, ctx: ChapterContext) -> ChapterResult:
    chapter = cfg.curriculum.backprop
    X, y = xor_columns(ctx)
    (_, history, predictions), printed = capture(train_scratch, X, y, chapter)
    scratch = history["loss"]
    twin, twin_predictions = train_torch(X, y, chapter)
    differences = compare_with_autograd(X, y, history)
    checked_steps = sorted({0, chapter.epochs // 2, chapter.epochs - 1})
    gradcheck = gradient_check(X, y, history, checked_steps, chapter.gradcheck_eps)
    ratio = hand_over_printed_loss_gradient(X, y, history, chapter.gradcheck_eps)

    logged = logged_epochs(chapter.epochs, chapter.log_every)
    metrics = comparison_metrics(logged, scratch, twin, predictions, twin_predictions, y)
    largest_difference = float(differences["absolute"].max())
    identical_steps = int(np.count_nonzero(differences["absolute"] == 0))
    metrics["gradients"] = {
        "loss": "0.5 * sum((y_pred - y)**2)",
        "steps_compared": len(differences["absolute"]),
        "absolute_tolerance": GRADIENT_TOLERANCE,
        "max_abs_difference": largest_difference,
        "max_relative_difference": float(differences["relative"].max()),
        "identical_steps": identical_steps,
        "within_tolerance": largest_difference <= GRADIENT_TOLERANCE,
    }
    metrics["gradcheck"] = {
        "eps": chapter.gradcheck_eps,
        "steps": checked_steps,
        "max_relative_error": gradcheck,
        "tolerance": GRADCHECK_TOLERANCE,
        "passed": max(gradcheck) <= GRADCHECK_TOLERANCE,
    }
    metrics["hand_over_printed_loss_gradient"] = {
        "min": float(ratio.min()),
        "max": float(ratio.max()),
    }
    twin_lines = [
        f"{x} → {np.array([[p]]).round(3)}" for x, p in zip(X, twin_predictions, strict=True)
    ]
    framework_trace = [
        *twin_trace(metrics, twin_lines),
        f"Hand-written vs autograd gradients of ½·Σ(y_pred - y)² at all {len(scratch)} steps: "
        f"max |difference| {largest_difference:.2e} (tolerance {GRADIENT_TOLERANCE:g}), "
        f"max relative {differences['relative'].max():.2e}, {identical_steps} steps bit-identical",
        f"Central differences (eps {chapter.gradcheck_eps:g}) at steps "
        f"{', '.join(map(str, checked_steps))}: max relative error "
        f"{', '.join(f'{e:.2e}' for e in gradcheck)}",
        f"Hand-written / gradient of the printed mean loss: {ratio.min():.6f} to "
        f"{ratio.max():.6f} (N/2 = {len(X) / 2:g})",
    ]
    init = f"np.random.seed({chapter.seed}) with np.random.rand weights"
    findings = loss_findings(
        TEXT_LOSSES, printed, scratch, twin, init, text_predictions_mse(TEXT_PREDICTIONS, y)
    ) + prediction_findings(TEXT_PREDICTIONS, printed.splitlines()[-len(X) :], twin_lines)
    return ChapterResult(
        metrics=metrics,
        trace=printed,
        framework_trace="\n".join(framework_trace) + "\n",
        figures={
            "loss": loss_figure(
                {"numpy (hand-written backward)": scratch, "torch autograd": twin},
                "Backprop on XOR: loss, numpy vs torch",
            ),
            "gradient_difference": gradient_difference_figure(differences["absolute"]),
        },
        curves={
            "loss": curve_rows(chapter.epochs, {"scratch": scratch, "torch": twin}),
            "gradient_difference": window_maxima(differences["absolute"]),
        },
        series={
            "scratch/loss": [(e, float(scratch[e])) for e in logged],
            "torch/loss": [(e, float(twin[e])) for e in logged],
            "gradients/max_abs_difference": [
                (e, float(differences["absolute"][e])) for e in logged
            ],
        },
        findings=findings,
    )


def window_maxima(absolute: np.ndarray) -> list[dict]:
    """The largest difference in each window of steps: a sample could miss the peaks."""
    starts = np.arange(0, len(absolute), max(1, len(absolute) // CURVE_POINTS))
    maxima = np.maximum.reduceat(absolute, starts)
    return [
        {"step": int(step), "max_abs_difference": float(largest)}
        for step, largest in zip(starts, maxima, strict=True)
    ]


def gradient_difference_figure(absolute: np.ndarray):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = np.arange(len(absolute))
    nonzero = absolute > 0  # a log axis cannot show the bit-identical steps
    ax.semilogy(steps[nonzero], absolute[nonzero], ".", markersize=2, label="max |hand - autograd|")
    ax.axhline(GRADIENT_TOLERANCE, color="k", linestyle="--", label="tolerance")
    ax.set(
        title=f"Gradient difference per step ({np.count_nonzero(~nonzero)} steps identical)",
        xlabel="step",
        ylabel="largest |difference| (log)",
    )
    ax.legend()
    fig.tight_layout()
    return fig
