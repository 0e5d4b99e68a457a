"""Chapter 1, the perceptron: the text's numpy class on each gate, and its Lightning twin."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import numpy as np
from scipy.optimize import linprog

from dlrepro import paths
from dlrepro.chapters._common.context import ChapterContext
from dlrepro.chapters._common.result import ChapterResult, Finding
from dlrepro.chapters.perceptron.text_code import Perceptron
from dlrepro.config import Config
from dlrepro.data.gates import read_gate

INPUTS = [paths.GATES]  # every gate in curriculum.perceptron.gates

# What the text prints for the AND gate: epoch 1, then the final predictions.
TEXT_EPOCH_1 = [
    "Input: [0 0], Predicted: 0, Error: 0, Weights: [0. 0.], Bias: 0.0",
    "Input: [0 1], Predicted: 0, Error: 0, Weights: [0. 0.], Bias: 0.0",
    "Input: [1 0], Predicted: 0, Error: 0, Weights: [0. 0.], Bias: 0.0",
    "Input: [1 1], Predicted: 0, Error: 1, Weights: [0.1 0.1], Bias: 0.1",
]
TEXT_FINAL = ["[0 0] --> 0", "[0 1] --> 0", "[1 0] --> 0", "[1 1] --> 1"]
STEP_CAUSE = (
    "step(0) = 1 as written (`1 if x >= 0`): with zero weights and bias w·x+b = 0, so the first "
    "prediction is 1 and the error -1; the text's trace behaves as if step(0) were 0"
)


def linearly_separable(X: np.ndarray, y: np.ndarray) -> bool:
    """Is there (w, b) with (2y-1)(w·x+b) >= 1 for every row? A feasibility LP decides it."""
    sign = 2 * y - 1
    a_ub = -sign[:, None] * np.hstack([X, np.ones((len(X), 1))])
    res = linprog(np.zeros(X.shape[1] + 1), A_ub=a_ub, b_ub=-np.ones(len(X)), bounds=(None, None))
    return bool(res.status == 0)


def train_scratch(X, y, lr: float, epochs: int) -> tuple[Perceptron, np.ndarray, str]:
    """Run the text's code as written; return the model, per-sample history and printed trace."""
    p = Perceptron(input_size=X.shape[1], learning_rate=lr)
    printed = io.StringIO()
    with redirect_stdout(printed):
        history = p.train(X, y, epochs=epochs)
        print("\nFinal Predictions:")
        for i in range(len(X)):
            print(f"{X[i]} --> {p.predict(X[i])}")
    return p, history, printed.getvalue()


def train_lightning(X, y, lr: float, epochs: int, logger=False) -> np.ndarray:
    """The Lightning twin; returns its per-sample history in the scratch version's layout."""
    from dlrepro.chapters._common.toy_trainer import toy_trainer
    from dlrepro.chapters.perceptron.twin import LightningPerceptron, gate_loader

    model = LightningPerceptron(input_size=X.shape[1], lr=lr)
    toy_trainer(max_epochs=epochs, logger=logger).fit(model, gate_loader(X, y))
    return np.array(model.history, dtype=np.float64)


def errors_per_epoch(history: np.ndarray, epochs: int) -> list[int]:
    return [int(np.count_nonzero(history[history[:, 0] == e, 1])) for e in range(1, epochs + 1)]


def run(cfg: Config, ctx: ChapterContext) -> ChapterResult:
    chapter = cfg.curriculum.perceptron
    metrics, traces, framework_lines, findings = {}, [], [], []
    curves: dict[int, dict] = {e: {"epoch": e} for e in range(1, chapter.epochs + 1)}
    for gate in chapter.gates:
        X, y = read_gate(ctx.gates_dir, gate)
        model, history, printed = train_scratch(X, y, chapter.lr, chapter.epochs)
        twin = train_lightning(X, y, chapter.lr, chapter.epochs, ctx.logger(f"perceptron-{gate}"))
        errors = errors_per_epoch(history, chapter.epochs)
        clean = [e for e, n in enumerate(errors, start=1) if n == 0]
        predictions = [model.predict(x) for x in X]
        metrics[gate] = {
            "converged": bool(clean),
            "first_clean_epoch": clean[0] if clean else None,
            "errors_per_epoch": errors,
            "weights": model.weights.tolist(),
            "bias": float(model.bias),
            "predictions": predictions,
            "accuracy": float(np.mean(np.array(predictions) == y)),
            "linearly_separable": linearly_separable(X, y),
            "lightning_equals_numpy": bool(np.array_equal(twin, history)),
        }
        for epoch, count in enumerate(errors, start=1):
            curves[epoch][gate] = count
        traces.append(f"=== {gate} gate ===\n{printed}")
        framework_lines.append(
            f"{gate}: weights {twin[-1, 2:-1].tolist()}, bias {float(twin[-1, -1])}, "
            f"identical to numpy after every sample: {metrics[gate]['lightning_equals_numpy']}"
        )
        if gate == "AND":
            findings += _and_findings(printed, twin)
    return ChapterResult(
        metrics=metrics,
        trace="\n".join(traces),
        framework_trace="\n".join(framework_lines) + "\n",
        figures={"decision_boundaries": _boundaries_figure(ctx, chapter.gates, metrics)},
        curves={"errors": list(curves.values())},
        findings=findings,
    )


def _and_findings(printed: str, twin: np.ndarray) -> list[Finding]:
    lines = printed.splitlines()
    start = lines.index("Epoch 1") + 1
    code_epoch_1 = lines[start : start + 4]
    final = lines[lines.index("Final Predictions:") + 1 :]
    findings = []
    for i, (text, code) in enumerate(zip(TEXT_EPOCH_1, code_epoch_1, strict=True)):
        w, b = twin[i, 2:-1], twin[i, -1]
        findings.append(
            Finding(
                what=f"AND, epoch 1, sample {i + 1}",
                text=text,
                code=code,
                framework=f"Error: {int(twin[i, 1])}, Weights: {w}, Bias: {b}",
                cause="" if text == code else STEP_CAUSE,
            )
        )
    findings.append(
        Finding(
            what="AND, final predictions",
            text="; ".join(TEXT_FINAL),
            code="; ".join(final),
            framework="same weights as numpy, so the same predictions",
        )
    )
    return findings


def _boundaries_figure(ctx: ChapterContext, gates: list[str], metrics: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(gates), figsize=(3.2 * len(gates), 3.2), squeeze=False)
    xs = np.linspace(-0.5, 1.5, 2)
    for ax, gate in zip(axes[0], gates, strict=True):
        X, y = read_gate(ctx.gates_dir, gate)
        w, b = metrics[gate]["weights"], metrics[gate]["bias"]
        ax.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=120, edgecolors="k", zorder=3)
        if w[1] != 0:
            ax.plot(xs, -(w[0] * xs + b) / w[1], "k--", label="w·x + b = 0")
        elif w[0] != 0:
            ax.axvline(-b / w[0], color="k", linestyle="--")
        state = "converged" if metrics[gate]["converged"] else "never converges"
        ax.set(title=f"{gate}: {state}", xlim=(-0.5, 1.5), ylim=(-0.5, 1.5), xlabel="x1")
    axes[0][0].set_ylabel("x2")
    fig.tight_layout()
    return fig
