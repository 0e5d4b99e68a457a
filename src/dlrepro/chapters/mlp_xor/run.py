"""Chapter 2, "MLP for XOR (No Libraries)": the text's numpy network and its autograd twin."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout

import numpy as np

from dlrepro import paths
from dlrepro.chapters._common.context import ChapterContext
from dlrepro.chapters._common.result import ChapterResult, Finding
from dlrepro.chapters.mlp_xor import text_code as mlp
from dlrepro.chapters.mlp_xor.text_code import sigmoid
from dlrepro.config import Config
from dlrepro.data.gates import gate_path, read_gate

INPUTS = [gate_path(paths.GATES, "XOR")]  # the only gate this chapter reads

# The text's sample output, copied as printed.
TEXT_LOSSES = {
    0: "Epoch 0 - Loss: 0.2565",
    9000: "Epoch 9000 - Loss: 0.0013",
    10000: "Epoch 10000 - Loss: 0.0011",
}
TEXT_PREDICTIONS = [
    "Input: [0 0] → Output: [0.014]",
    "Input: [0 1] → Output: [0.986]",
    "Input: [1 0] → Output: [0.987]",
    "Input: [1 1] → Output: [0.012]",
]
# Acceptance for the autograd twin: every logged loss and final output within this, relative.
RELATIVE_TOLERANCE = 1e-6
INPUT_PATTERN = re.compile(r"\[\d \d\]")  # an input row as numpy prints it, e.g. [0 1]
CURVE_POINTS = 200  # rows of the loss CSV: every epoch would be 10,000 rows for a smooth curve

INITIAL_LOSS_CAUSE = (
    "the epoch-0 loss is taken before any update, so it depends only on the initial weights; "
    "{init} gives {code} on every run, so the text's sample output came from other weights"
)
LATER_LOSS_CAUSE = (
    "the run is deterministic and the text's sample output is not from this code: its epoch-0 "
    "line already differs, and its last printed loss ({text_last:.4f}) is {ratio:.0f} times the "
    "mean squared error of its own printed predictions ({text_predictions_mse:.5f})"
)
PREDICTION_CAUSE = (
    "b1 has shape (1, hidden), so X[i]·W1 + b1 is a row and the output a (1, 1) array that numpy "
    "prints as [[…]], not the text's [...]; the value differs because the text's run is another "
    "one (see the loss findings)"
)


def xor_columns(ctx: ChapterContext) -> tuple[np.ndarray, np.ndarray]:
    """X as the text's (4, 2) integer array, y as its (4, 1) column."""
    X, y = read_gate(ctx.gates_dir, "XOR")
    return X, y.reshape(-1, 1)


def capture(fn, *args, **kwargs):
    """Call fn, returning its result and what it printed."""
    printed = io.StringIO()
    with redirect_stdout(printed):
        result = fn(*args, **kwargs)
    return result, printed.getvalue()


def train_scratch(X, y, chapter) -> tuple[tuple, np.ndarray, list[float]]:
    """Run the text's program as written, printing what it prints; return the trained
    parameters, the loss at every epoch and the printed predictions' values."""
    init = mlp.init_params(chapter.seed, X.shape[1], chapter.hidden_size, y.shape[1])
    params, losses = mlp.train(X, y, init, chapter.lr, chapter.epochs, chapter.log_every)
    W1, b1, W2, b2 = params
    print("\nPredictions after training:")
    predictions = []
    for i in range(len(X)):
        z1 = np.dot(X[i], W1) + b1
        a1 = sigmoid(z1)
        z2 = np.dot(a1, W2) + b2
        a2 = sigmoid(z2)
        print(f"Input: {X[i]} → Output: {a2.round(3)}")
        predictions.append(float(a2.item()))
    return params, losses, predictions


def train_torch(X, y, chapter) -> tuple[np.ndarray, list[float]]:
    """The autograd twin from the same initial weights; its loss per epoch and predictions."""
    from dlrepro.chapters.mlp_xor.twin import XorMLP, predict, train_gd

    init = mlp.init_params(chapter.seed, X.shape[1], chapter.hidden_size, y.shape[1])
    model = XorMLP(*init)
    losses = train_gd(model, X, y, chapter.lr, chapter.epochs)
    return losses, predict(model, X).ravel().tolist()


def logged_epochs(epochs: int, log_every: int) -> list[int]:
    return list(range(0, epochs, log_every))


def max_relative_difference(values, reference) -> float:
    values, reference = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    return float(np.max(np.abs(values - reference) / np.abs(reference)))


def loss_line(epoch: int, loss: float) -> str:
    return f"Epoch {epoch} - Loss: {loss:.4f}"


def printed_loss_lines(printed: str) -> dict[int, str]:
    return {int(m.group(1)): m.group(0) for m in re.finditer(r"Epoch (\d+) - Loss: \S+", printed)}


def loss_findings(text_losses, printed, scratch, twin, init: str, text_predictions_mse):
    """One finding per loss line the text prints: its line, the code's, the twin's, and why."""
    code_lines = printed_loss_lines(printed)
    last = len(scratch) - 1
    text_last = float(list(text_losses.values())[-1].rsplit(" ", 1)[-1])
    findings = []
    for epoch, text in text_losses.items():
        if epoch not in code_lines:  # an epoch the loop never reaches or never logs
            code = f"(never printed; the last epoch is {last}, loss {scratch[last]:.4f})"
            framework = f"{loss_line(last, twin[last])} (last epoch)"
            cause = (
                f"`for epoch in range({len(scratch)})` runs epochs 0..{last}: the loop never "
                f"reaches epoch {epoch}, so nothing is printed for it"
            )
        else:
            code, framework = code_lines[epoch], loss_line(epoch, twin[epoch])
            if text == code:
                cause = ""
            elif epoch == 0:
                cause = INITIAL_LOSS_CAUSE.format(init=init, code=f"{scratch[0]:.4f}")
            else:
                cause = LATER_LOSS_CAUSE.format(
                    text_last=text_last,
                    ratio=text_last / text_predictions_mse,
                    text_predictions_mse=text_predictions_mse,
                )
        findings.append(Finding(f"loss at epoch {epoch}", text, code, framework, cause))
    return findings


def _search(pattern: str | re.Pattern[str], line: str) -> re.Match[str]:
    """The first match of `pattern` in a printed line; a line without one means the printed
    format changed."""
    match = re.search(pattern, line)
    if match is None:
        raise ValueError(f"no {pattern!r} in {line!r}")
    return match


def prediction_findings(text_lines, code_lines, twin_lines) -> list[Finding]:
    return [
        Finding(
            what=f"prediction for {_search(INPUT_PATTERN, text).group(0)}",
            text=text,
            code=code,
            framework=twin,
            cause="" if text == code else PREDICTION_CAUSE,
        )
        for text, code, twin in zip(text_lines, code_lines, twin_lines, strict=True)
    ]


def text_predictions_mse(text_lines, y) -> float:
    """The mean squared error that the text's printed predictions imply."""
    values = [float(_search(r"\[+([\d.]+)\]+", line).group(1)) for line in text_lines]
    return float(np.mean((np.array(values) - y.ravel()) ** 2))


def curve_rows(epochs: int, columns: dict[str, np.ndarray]) -> list[dict]:
    """Every stride-th epoch and the last one, so that the CSV stays small."""
    stride = max(1, epochs // CURVE_POINTS)
    kept = sorted({*range(0, epochs, stride), epochs - 1})
    return [{"epoch": e, **{name: float(v[e]) for name, v in columns.items()}} for e in kept]


def loss_figure(curves: dict[str, np.ndarray], title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for (label, losses), style in zip(curves.items(), ("-", "--"), strict=False):
        ax.semilogy(losses, style, label=label)
    ax.set(title=title, xlabel="epoch", ylabel="mean squared error (log)")
    ax.legend()
    fig.tight_layout()
    return fig


def comparison_metrics(logged, scratch, twin, predictions, twin_predictions, y) -> dict:
    """Both runs' logged losses and predictions, and how far the twin is from numpy."""
    loss_difference = max_relative_difference(twin[logged], scratch[logged])
    prediction_difference = max_relative_difference(twin_predictions, predictions)
    return {
        "logged_epochs": logged,
        "scratch": {
            "logged_losses": scratch[logged].tolist(),
            "final_loss": float(scratch[-1]),
            "predictions": predictions,
            "accuracy": float(np.mean((np.array(predictions) > 0.5) == y.ravel())),
        },
        "torch": {
            "logged_losses": twin[logged].tolist(),
            "final_loss": float(twin[-1]),
            "predictions": twin_predictions,
        },
        "agreement": {
            "relative_tolerance": RELATIVE_TOLERANCE,
            "max_relative_difference_logged_losses": loss_difference,
            "max_relative_difference_all_losses": max_relative_difference(twin, scratch),
            "max_relative_difference_predictions": prediction_difference,
            "within_tolerance": max(loss_difference, prediction_difference) <= RELATIVE_TOLERANCE,
        },
    }


def twin_trace(metrics: dict, prediction_lines: list[str]) -> list[str]:
    """The twin's run in the text's format, then how far it is from numpy."""
    agreement = metrics["agreement"]
    losses = zip(metrics["logged_epochs"], metrics["torch"]["logged_losses"], strict=True)
    return [
        *(loss_line(epoch, loss) for epoch, loss in losses),
        "",
        "Predictions after training:",
        *prediction_lines,
        "",
        f"Largest relative difference from numpy: logged losses "
        f"{agreement['max_relative_difference_logged_losses']:.2e}, predictions "
        f"{agreement['max_relative_difference_predictions']:.2e} "
        f"(tolerance {agreement['relative_tolerance']:g})",
    ]


def run(cfg: Config, ctx: ChapterContext) -> ChapterResult:
    chapter = cfg.curriculum.mlp_xor
    X, y = xor_columns(ctx)
    (params, scratch, predictions), printed = capture(train_scratch, X, y, chapter)
    twin, twin_predictions = train_torch(X, y, chapter)

    logged = logged_epochs(chapter.epochs, chapter.log_every)
    metrics = comparison_metrics(logged, scratch, twin, predictions, twin_predictions, y)
    twin_lines = [
        f"Input: {x} → Output: {np.array([[p]]).round(3)}"
        for x, p in zip(X, twin_predictions, strict=True)
    ]
    init = f"np.random.seed({chapter.seed}) with uniform [0, 1) weights"
    findings = loss_findings(
        TEXT_LOSSES, printed, scratch, twin, init, text_predictions_mse(TEXT_PREDICTIONS, y)
    ) + prediction_findings(TEXT_PREDICTIONS, printed.splitlines()[-len(X) :], twin_lines)
    return ChapterResult(
        metrics=metrics,
        trace=printed,
        framework_trace="\n".join(twin_trace(metrics, twin_lines)) + "\n",
        figures={
            "loss": loss_figure(
                {"numpy (text's code)": scratch, "torch autograd": twin},
                "XOR MLP: loss, numpy vs torch",
            ),
            "decision_surface": decision_surface_figure(X, y, params),
        },
        curves={"loss": curve_rows(chapter.epochs, {"scratch": scratch, "torch": twin})},
        series={
            "scratch/loss": [(e, float(scratch[e])) for e in logged],
            "torch/loss": [(e, float(twin[e])) for e in logged],
        },
        findings=findings,
    )


def decision_surface_figure(X, y, params):
    """The trained net's output over [-0.5, 1.5]², with its 0.5 contour and the four points."""
    import matplotlib.pyplot as plt

    axis = np.linspace(-0.5, 1.5, 201)
    grid_x, grid_y = np.meshgrid(axis, axis)
    _, surface = mlp.forward(np.column_stack([grid_x.ravel(), grid_y.ravel()]), *params)
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    filled = ax.contourf(grid_x, grid_y, surface.reshape(grid_x.shape), levels=20, cmap="coolwarm")
    ax.contour(grid_x, grid_y, surface.reshape(grid_x.shape), levels=[0.5], colors="k")
    ax.scatter(X[:, 0], X[:, 1], c=y.ravel(), cmap="coolwarm", s=120, edgecolors="k", zorder=3)
    fig.colorbar(filled, ax=ax, label="a2")
    ax.set(title="XOR MLP output (black: a2 = 0.5)", xlabel="x1", ylabel="x2")
    fig.tight_layout()
    return fig
