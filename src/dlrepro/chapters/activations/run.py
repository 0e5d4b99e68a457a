"""Chapter 4, activation functions: the text's six curves, their derivatives, and torch's twins.

The text's code prints nothing; it plots sigmoid, tanh, ReLU, leaky ReLU, ELU and swish on
np.linspace(-10, 10, 100). Here the safe numpy versions (dlrepro.chapters.activations.text_code) are
checked against torch.nn.functional, values and autograd derivatives in float64, on the
plotting grid plus the points where numerics break first (exp overflows float64 beyond
|x| = 709.78, and the kinks at 0). The text's functions as written are run on the same grid
to count the overflow warnings they give.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dlrepro.chapters._common.context import ChapterContext
from dlrepro.chapters._common.result import ChapterResult, Finding
from dlrepro.chapters.activations import text_code as act
from dlrepro.config import Config

INPUTS: list[Path] = []  # no data file: the chapter computes on its own inputs

# Added to the plotting grid: both sides of exp's float64 overflow (709.78), large and tiny
# magnitudes, and 0, where relu, leaky relu and elu have their kinks.
STRESS_POINTS = (-1000, -710, -100, -30, -1, -1e-8, 0, 1e-8, 1, 30, 100, 710, 1000)

# Softmax takes a vector: a small one, one whose exponentials overflow unless shifted by the max.
SOFTMAX_EXAMPLES = {"[2, 1, 0.1]": [2.0, 1.0, 0.1], "[1000, 999, -1000]": [1000.0, 999.0, -1000.0]}


@dataclass(frozen=True)
class Activation:
    title: str  # the text's subplot title
    scratch: Callable
    derivative: Callable
    framework: Callable  # the torch.nn.functional twin
    as_written: Callable | None = None  # the text's version, where it differs from `scratch`


def activations(chapter) -> dict[str, Activation]:
    """The text's six plotted functions, in its subplot order, with the configured constants."""
    slope, alpha = chapter.leaky_slope, chapter.elu_alpha
    return {
        "sigmoid": Activation(
            "Sigmoid", act.sigmoid, act.sigmoid_derivative, torch.sigmoid, act.sigmoid_as_written
        ),
        "tanh": Activation("Tanh", act.tanh, act.tanh_derivative, torch.tanh),
        "relu": Activation("ReLU", act.relu, act.relu_derivative, F.relu),
        "leaky_relu": Activation(
            "Leaky ReLU",
            partial(act.leaky_relu, slope=slope),
            partial(act.leaky_relu_derivative, slope=slope),
            partial(F.leaky_relu, negative_slope=slope),
        ),
        "elu": Activation(
            "ELU",
            partial(act.elu, alpha=alpha),
            partial(act.elu_derivative, alpha=alpha),
            partial(F.elu, alpha=alpha),
            partial(act.elu_as_written, alpha=alpha),
        ),
        "swish": Activation("Swish", act.swish, act.swish_derivative, F.silu, act.swish_as_written),
    }


def plotting_grid(chapter) -> np.ndarray:
    return np.linspace(chapter.x_min, chapter.x_max, chapter.points)


def comparison_grid(chapter) -> np.ndarray:
    return np.unique(np.concatenate([plotting_grid(chapter), np.array(STRESS_POINTS, float)]))


def torch_value_and_derivative(fn: Callable, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fn(x) and dfn/dx by autograd; the functions are elementwise, so grad of the sum is f'."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(t)
    (grad,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), grad.numpy()


def torch_softmax_and_jacobian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.tensor(x, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: F.softmax(v, dim=0), t)
    return F.softmax(t, dim=0).numpy(), jacobian.numpy()


def runtime_warnings(fn: Callable, x) -> tuple[np.ndarray, list[str]]:
    """fn(x) and the messages of the RuntimeWarnings numpy gives meanwhile (overflow, invalid
    value, division by zero; underflow to 0 is the correctly rounded result and is not one)."""
    with (
        warnings.catch_warnings(record=True) as caught,
        np.errstate(over="warn", invalid="warn", divide="warn", under="ignore"),
    ):
        warnings.simplefilter("always")
        y = fn(x)
    return y, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def as_written_report(fn: Callable, safe: Callable, text_grid, grid) -> dict:
    """How the text's version behaves: warnings on the text's grid and on the comparison grid,
    the points that warn when evaluated one by one, and how far it lands from the safe one."""
    y, messages = runtime_warnings(fn, grid)
    _, text_messages = runtime_warnings(fn, text_grid)
    warned_at = [float(x) for x in grid if runtime_warnings(fn, np.array([x]))[1]]
    return {
        "runtime_warnings_on_text_grid": len(text_messages),
        "runtime_warnings": len(messages),
        "warning_messages": sorted(set(messages)),
        "warning_points": warned_at,
        "nan_count": int(np.isnan(y).sum()),
        "inf_count": int(np.isinf(y).sum()),
        "max_abs_diff_vs_safe": float(np.max(np.abs(y - safe(grid)))),
    }


def run(cfg: Config, ctx: ChapterContext) -> ChapterResult:
    chapter = cfg.curriculum.activations
    functions = activations(chapter)
    x_text, grid = plotting_grid(chapter), comparison_grid(chapter)

    diffs, peaks, as_written, scratch_messages, finite = {}, {}, {}, [], True
    for name, f in functions.items():
        value, value_messages = runtime_warnings(f.scratch, grid)
        slope, slope_messages = runtime_warnings(f.derivative, grid)
        scratch_messages += value_messages + slope_messages
        finite &= bool(np.isfinite(value).all() and np.isfinite(slope).all())
        torch_value, torch_slope = torch_value_and_derivative(f.framework, grid)
        diffs[name] = {
            "value": float(np.max(np.abs(value - torch_value))),
            "derivative": float(np.max(np.abs(slope - torch_slope))),
        }
        peaks[name] = float(np.max(slope))
        if f.as_written is not None:
            as_written[name] = as_written_report(f.as_written, f.scratch, x_text, grid)

    softmax_rows = _softmax_comparison(grid)
    diffs["softmax"] = {
        "value": max(row["value_diff"] for row in softmax_rows),
        "jacobian": max(row["jacobian_diff"] for row in softmax_rows),
    }
    # The text's softmax already subtracts the max: it is safe, for one vector, as written.
    as_written["softmax"] = as_written_report(act.softmax_as_written, act.softmax, x_text, grid)
    metrics = {
        "comparison_grid": {
            "points": len(grid),
            "min": float(grid.min()),
            "max": float(grid.max()),
            "includes_zero": bool((grid == 0).any()),
        },
        "max_abs_diff_vs_torch": diffs,
        "scratch_runtime_warnings": len(scratch_messages),
        "scratch_all_finite": finite,
        "max_derivative": peaks,
        "as_written": as_written,
    }
    return ChapterResult(
        metrics=metrics,
        trace=_trace(x_text, grid, as_written),
        framework_trace=_framework_trace(grid, diffs, softmax_rows),
        figures={
            "activations": _grid_figure(functions, x_text, lambda f: f.scratch, "{}"),
            "derivatives": _grid_figure(functions, x_text, lambda f: f.derivative, "{}'(x)"),
            "softmax": _softmax_figure(),
        },
        curves={
            "activations": _rows(functions, x_text, lambda f: f.scratch),
            "derivatives": _rows(functions, x_text, lambda f: f.derivative),
        },
        findings=_findings(functions),
    )


def _softmax_comparison(grid: np.ndarray) -> list[dict]:
    """Safe softmax and its Jacobian vs torch on each example vector and on the whole
    comparison grid taken as one vector of logits."""
    vectors = {**SOFTMAX_EXAMPLES, "comparison grid": grid}
    rows = []
    for label, x in vectors.items():
        x = np.asarray(x, dtype=np.float64)
        torch_value, torch_jacobian = torch_softmax_and_jacobian(x)
        value = act.softmax(x)
        rows.append(
            {
                "vector": label,
                "value": value,
                "value_diff": float(np.max(np.abs(value - torch_value))),
                "jacobian_diff": float(np.max(np.abs(act.softmax_jacobian(x) - torch_jacobian))),
            }
        )
    return rows


def _trace(x_text: np.ndarray, grid: np.ndarray, as_written: dict) -> str:
    on_text_grid = {name: r["runtime_warnings_on_text_grid"] for name, r in as_written.items()}
    lines = [
        "# The text's code prints nothing: it draws activations.png from "
        f"x = np.linspace({x_text[0]}, {x_text[-1]}, {len(x_text)}).",
        "# RuntimeWarnings numpy gives for the text's functions as written",
        f"on the text's grid: {on_text_grid}",
        f"on the comparison grid ({len(grid)} points, {grid.min()} .. {grid.max()}):",
    ]
    for name, r in as_written.items():
        where = f" at x = {r['warning_points']}" if r["warning_points"] else ""
        lines.append(f"  {name}: {', '.join(r['warning_messages']) or 'none'}{where}")
    return "\n".join(lines) + "\n"


def _framework_trace(grid: np.ndarray, diffs: dict, softmax_rows: list[dict]) -> str:
    lines = [
        f"scratch (numpy) vs torch.nn.functional, float64, {len(grid)} points "
        f"from {grid.min()} to {grid.max()} including 0; derivatives by torch autograd",
        "",
        "| function | max abs diff value | max abs diff derivative |",
        "|---|---|---|",
    ]
    for name, d in diffs.items():
        slope = d.get("derivative", d.get("jacobian"))
        lines.append(f"| {name} | {d['value']:.3e} | {slope:.3e} |")
    lines += ["", "softmax (Jacobian diag(s) - s s^T vs autograd):"]
    for row in softmax_rows[: len(SOFTMAX_EXAMPLES)]:
        lines.append(f"  softmax({row['vector']}) = {np.array2string(row['value'], precision=6)}")
    return "\n".join(lines) + "\n"


def _findings(functions: dict[str, Activation]) -> list[Finding]:
    log_max64 = float(np.log(np.finfo(np.float64).max))
    log_max32 = float(np.log(np.finfo(np.float32).max))
    sigmoid_value, sigmoid_warnings = runtime_warnings(act.sigmoid_as_written, np.float64(-1000))
    elu = functions["elu"]
    assert elu.as_written is not None  # the text's elu differs from the scratch one
    elu_value, elu_warnings = runtime_warnings(elu.as_written, np.float64(1000))
    torch_sigmoid = torch.sigmoid(torch.tensor(-1000.0, dtype=torch.float64)).item()
    torch_elu = elu.framework(torch.tensor(1000.0, dtype=torch.float64)).item()
    silu_parameters = sum(p.numel() for p in torch.nn.SiLU().parameters())
    swish_parameters = list(inspect.signature(act.swish_as_written).parameters)
    return [
        Finding(
            what="Sigmoid as written, x = -1000",
            text="def sigmoid(x): return 1 / (1 + np.exp(-x))",
            code=f"sigmoid(-1000.0) = {float(sigmoid_value)!r} with RuntimeWarning: "
            + "; ".join(sigmoid_warnings),
            framework=f"torch.sigmoid(-1000.0, float64) = {torch_sigmoid!r}, no warning",
            cause=(
                f"np.exp(1000) is above the largest float64 (about exp({log_max64:.2f})) and "
                "becomes inf; 1 / (1 + inf) = 0 is still the right limit, so only the warning "
                "(an error under np.errstate(over='raise')) shows it. In float32 the same code "
                f"overflows already for x < -{log_max32:.2f}. The safe form computes "
                "exp(-|x|) and splits by the sign of x."
            ),
        ),
        Finding(
            what="ELU as written, x = +1000",
            text="np.where(x >= 0, x, alpha * (np.exp(x) - 1))",
            code=f"elu(1000.0) = {float(elu_value)!r} with RuntimeWarning: "
            + "; ".join(elu_warnings),
            framework=f"torch.nn.functional.elu(1000.0, float64) = {torch_elu!r}, no warning",
            cause=(
                "np.where evaluates both branches for every x, so exp(1000) overflows even "
                "though its result is thrown away; the value is right, the warning is not. "
                "The safe form applies np.expm1 to min(x, 0) only."
            ),
        ),
        Finding(
            what="Swish, 'Smooth, trainable' (table)",
            text="Swish | Smooth, trainable | Slightly slower",
            code=f"def swish({', '.join(swish_parameters)}): return x * sigmoid(x) "
            "(no β: nothing to train)",
            framework=f"torch.nn.SiLU() has {silu_parameters} parameters; F.silu(x) = x·σ(x)",
            cause=(
                "Swish is trainable only in its form x·σ(βx) with a learned β "
                "(Ramachandran et al., 2017); the text's code, like torch's SiLU, is the "
                "fixed β = 1 case"
            ),
        ),
    ]


def _rows(functions: dict[str, Activation], x: np.ndarray, pick: Callable) -> list[dict]:
    columns = {name: pick(f)(x) for name, f in functions.items()}
    return [
        {"x": float(xi), **{name: float(col[i]) for name, col in columns.items()}}
        for i, xi in enumerate(x)
    ]


def _grid_figure(functions: dict[str, Activation], x: np.ndarray, pick: Callable, title: str):
    """The text's figure: a 2×3 grid, one function per panel, figsize (12, 8)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 8))
    for ax, f in zip(axes.flat, functions.values(), strict=True):
        ax.plot(x, pick(f)(x))
        ax.set_title(title.format(f.title))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _softmax_figure():
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SOFTMAX_EXAMPLES), figsize=(4 * len(SOFTMAX_EXAMPLES), 3))
    for ax, (label, logits) in zip(axes, SOFTMAX_EXAMPLES.items(), strict=True):
        probabilities = act.softmax(np.array(logits))
        ax.bar([str(v) for v in logits], probabilities)
        for i, p in enumerate(probabilities):
            ax.text(i, p, f"{p:.4f}", ha="center", va="bottom")
        ax.set(title=f"softmax({label})", xlabel="logit", ylabel="probability", ylim=(0, 1.1))
    fig.tight_layout()
    return fig
