"""Chapter 6, optimizers: the text's f(x) = x² loop, then the seven rules of its table raced
on f(x) = x², the Rosenbrock function and the text's XOR net, in numpy and in torch.optim."""

from __future__ import annotations

import math

import numpy as np

from dlrepro import paths
from dlrepro.chapters._common.context import ChapterContext
from dlrepro.chapters._common.result import ChapterResult, Finding
from dlrepro.chapters.mlp_xor.text_code import init_params, loss_and_gradients
from dlrepro.chapters.optimizers import text_code as rules
from dlrepro.config import Config
from dlrepro.config.schema import OptimizerSpec
from dlrepro.data.gates import gate_path, read_gate

INPUTS = [gate_path(paths.GATES, "XOR")]  # the only gate this chapter reads

PROBLEMS = ("quadratic", "rosenbrock", "xor_mlp")
# What the text prints for its loop; "..." stands for epochs 3 to 19.
TEXT_LINES = {
    1: "Epoch 1: x = 8.0000, f(x) = 64.0000",
    2: "Epoch 2: x = 6.4000, f(x) = 40.9600",
    20: "Epoch 20: x = 0.1220, f(x) = 0.0149",
}
TEXT_X0, TEXT_LR, TEXT_EPOCHS = 10, 0.1, 20  # the text's loop, as its code sets them
# numpy and torch.optim must follow the same path: the largest |difference| of any
# parameter at any step may not exceed this.
TOLERANCE = 1e-6
SERIES_POINTS = 100  # per MLflow loss series; a problem's every step goes to its CSV


def scratch_rule(name: str, lr: float, hyper: OptimizerSpec):
    """The numpy rule for `name` (scratch/optimizers.py), set up like nn.optimizers'."""
    eps = hyper.eps.get(name)
    match name:
        case "sgd":
            return rules.SGD(lr)
        case "momentum":
            return rules.Momentum(lr, hyper.momentum)
        case "adagrad":
            return rules.AdaGrad(lr, eps)
        case "rmsprop":
            return rules.RMSprop(lr, hyper.rho, eps)
        case "adam":
            return rules.Adam(lr, hyper.beta1, hyper.beta2, eps)
        case "nadam":
            return rules.Nadam(lr, hyper.beta1, hyper.beta2, eps, hyper.momentum_decay)
        case "adadelta":
            return rules.Adadelta(lr, hyper.rho, eps)
    raise ValueError(f"unknown optimizer {name!r}")


# Each problem maps a list of parameter arrays to (loss, gradients), the rules' interface.
def quadratic(params):
    """The text's f(x) = x² (summed, should x have several entries)."""
    (x,) = params
    return float(np.sum(x**2)), [2 * x]


def rosenbrock(params):
    """(1 − x)² + 100·(y − x²)²: a curved valley, minimum 0 at (1, 1)."""
    (p,) = params
    x, y = p
    gradient = np.array([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])
    return float((1 - x) ** 2 + 100 * (y - x**2) ** 2), [gradient]


def xor_mlp(X, y):
    """½·Σ error² of the text's 2-2-1 XOR net and its gradients, params W1, b1, W2, b2."""

    def loss_and_grads(params):
        loss, grads = loss_and_gradients(X, y, *params)
        return loss, list(grads)

    return loss_and_grads


def race_scratch(loss_and_grads, start, rates, hyper, steps):
    """numpy's race, laid out like nn.optimizers.race: {name: (path, loss)} for t = 0..steps."""
    result = {}
    for name, lr in rates.items():
        params = [p.copy() for p in start]
        rule = scratch_rule(name, lr, hyper)
        path, losses = [], []
        for t in range(steps + 1):
            loss, grads = loss_and_grads(params)
            path.append(np.concatenate([p.ravel() for p in params]))
            losses.append(loss)
            if t < steps:
                rule.step(params, grads)
        result[name] = (np.array(path), np.array(losses))
    return result


def text_loop() -> tuple[list[float], str]:
    """The text's loop as written, with its printed lines."""
    lines: list[str] = []
    xs = rules.minimise_square(TEXT_X0, TEXT_LR, TEXT_EPOCHS, log=lines.append)
    return xs, "\n".join(lines) + "\n"


def run(cfg: Config, ctx: ChapterContext) -> ChapterResult:
    from dlrepro.chapters.optimizers import twin as twin

    chapter = cfg.curriculum.optimizers
    hyper = chapter.hyper
    X, y = read_gate(ctx.gates_dir, "XOR")
    X, y = X.astype(np.float64), y.astype(np.float64).reshape(-1, 1)
    setups = {
        "quadratic": (quadratic, twin.quadratic_losses, [np.array(chapter.quadratic.start)]),
        "rosenbrock": (rosenbrock, twin.rosenbrock_losses, [np.array(chapter.rosenbrock.start)]),
        "xor_mlp": (xor_mlp(X, y), twin.xor_mlp_losses(X, y), init_params(chapter.xor_mlp.seed)),
    }
    races = {}
    for problem, (numpy_problem, torch_losses, start) in setups.items():
        settings = getattr(chapter, problem)
        rates = {name: settings.lr[name] for name in chapter.optimizers}
        races[problem] = (
            race_scratch(numpy_problem, start, rates, hyper, settings.steps),
            twin.race(torch_losses, list(start), rates, hyper, settings.steps),
        )

    xs, printed = text_loop()
    torch_sgd = twin.race(
        twin.quadratic_losses, [np.array([float(TEXT_X0)])], {"sgd": TEXT_LR}, hyper, TEXT_EPOCHS
    )["sgd"][0][1:, 0]
    torch_lines = [_epoch_line(n, x) for n, x in enumerate(torch_sgd, start=1)]
    metrics = {problem: _problem_metrics(*races[problem]) for problem in PROBLEMS}
    metrics["text_loop"] = {
        "final_x": xs[-1],
        "final_f": xs[-1] ** 2,
        "max_abs_diff_vs_torch": float(np.max(np.abs(np.array(xs) - torch_sgd))),
    }
    return ChapterResult(
        metrics=metrics,
        trace=printed,
        framework_trace=_framework_trace(torch_lines, races),
        figures={
            "quadratic_paths": _quadratic_figure(races["quadratic"][0]),
            "rosenbrock_paths": _rosenbrock_figure(races["rosenbrock"][0]),
            "losses": _losses_figure(races),
        },
        curves={f"{problem}_loss": _loss_rows(races[problem][0]) for problem in PROBLEMS},
        series=_series(races),
        findings=_findings(printed, torch_lines, xs),
    )


def _problem_metrics(numpy_race, torch_race) -> dict:
    metrics = {}
    for name, (path, losses) in numpy_race.items():
        torch_path, torch_losses = torch_race[name]
        difference = float(np.max(np.abs(path - torch_path)))
        metrics[name] = {
            "final_loss": float(losses[-1]),
            "final_params": path[-1].tolist(),
            "torch_final_loss": float(torch_losses[-1]),
            "diverged": not bool(np.isfinite(losses[-1])),
            "max_abs_diff_vs_torch": difference,
            "matches_torch": difference <= TOLERANCE,
        }
    return metrics


def _epoch_line(epoch: int, x: float) -> str:
    return f"Epoch {epoch}: x = {x:.4f}, f(x) = {x**2:.4f}"


def _framework_trace(torch_lines: list[str], races: dict) -> str:
    lines = ["torch.optim.SGD(lr=0.1) on the text's f(x) = x², from x = 10:", *torch_lines, ""]
    for problem, (_, torch_race) in races.items():
        lines.append(f"{problem}: torch.optim, float64, final loss and parameters")
        for name, (path, losses) in torch_race.items():
            params = np.array2string(path[-1], precision=6, max_line_width=200)
            lines.append(f"  {name:<9} loss {losses[-1]:.6e}  params {params}")
    return "\n".join(lines) + "\n"


def _findings(printed: str, torch_lines: list[str], xs: list[float]) -> list[Finding]:
    code_lines = printed.splitlines()
    findings = []
    for epoch, text in TEXT_LINES.items():
        code = code_lines[epoch - 1]
        findings.append(
            Finding(
                what=f"f(x) = x² by gradient descent, epoch {epoch}",
                text=text,
                code=code,
                framework=torch_lines[epoch - 1],
                cause="" if text == code else _epoch_cause(text, xs),
            )
        )
    return findings


def _epoch_cause(text: str, xs: list[float]) -> str:
    """Why the text's last line is not the loop's: where its x sits on x ← (1 − 2·lr)·x."""
    printed_x = float(text.split("x = ")[1].split(",")[0])
    factor = 1 - 2 * TEXT_LR
    epoch = math.log(printed_x / TEXT_X0) / math.log(factor)
    lr_needed = (1 - (printed_x / TEXT_X0) ** (1 / TEXT_EPOCHS)) / 2
    return (
        f"x ← x − {TEXT_LR}·2x = {factor:g}·x, so epoch n prints {TEXT_X0}·{factor:g}ⁿ: "
        f"epoch {TEXT_EPOCHS - 1} x = {xs[-2]:.4f}, epoch {TEXT_EPOCHS} x = {xs[-1]:.4f}. "
        f"The printed x = {printed_x:.4f} is {TEXT_X0}·{factor:g}^{epoch:.2f}, at no whole "
        f"epoch of this loop (reaching it in {TEXT_EPOCHS} epochs takes lr = {lr_needed:.4f}); "
        f"its f(x) is {printed_x:.4f}² = {printed_x**2:.5f}, so the text's two numbers agree "
        "with each other but not with its code"
    )


def _loss_rows(numpy_race: dict) -> list[dict]:
    steps = len(next(iter(numpy_race.values()))[1])
    return [
        {"step": t, **{name: float(losses[t]) for name, (_, losses) in numpy_race.items()}}
        for t in range(steps)
    ]


def _series(races: dict) -> dict[str, list[tuple[int, float]]]:
    series = {}
    for problem, (numpy_race, _) in races.items():
        for name, (_, losses) in numpy_race.items():
            last = len(losses) - 1
            stride = max(1, last // SERIES_POINTS)
            steps = [*range(0, last, stride), last]
            series[f"{problem}/{name}/loss"] = [(t, float(losses[t])) for t in steps]
    return series


def _quadratic_figure(numpy_race: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (path, _) in numpy_race.items():
        ax.plot(path[:, 0], marker=".", label=name)
    text_epochs = list(TEXT_LINES)
    text_xs = [float(line.split("x = ")[1].split(",")[0]) for line in TEXT_LINES.values()]
    ax.plot(text_epochs, text_xs, "kx", markersize=9, label="the text's printed x")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="step", ylabel="x", title="f(x) = x² from x = 10: x after each step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _rosenbrock_figure(numpy_race: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.5))
    xs, ys = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
    surface = (1 - xs) ** 2 + 100 * (ys - xs**2) ** 2
    ax.contour(xs, ys, np.log10(surface + 1e-3), levels=25, cmap="Greys", linewidths=0.6)
    for name, (path, _) in numpy_race.items():
        ax.plot(path[:, 0], path[:, 1], linewidth=1.2, label=name)
    start = next(iter(numpy_race.values()))[0][0]
    ax.plot(*start, "ko", label="start")
    ax.plot(1, 1, "r*", markersize=12, label="minimum (1, 1)")
    ax.set(
        xlim=(-2, 2),
        ylim=(-1, 3),
        xlabel="x",
        ylabel="y",
        title="Rosenbrock (1 − x)² + 100(y − x²)²: paths of each optimizer",
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _losses_figure(races: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(races), figsize=(5 * len(races), 4), squeeze=False)
    for ax, (problem, (numpy_race, _)) in zip(axes[0], races.items(), strict=True):
        for name, (_, losses) in numpy_race.items():
            ax.plot(losses, label=name)
        ax.set(yscale="log", xlabel="step", ylabel="loss", title=problem)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig
