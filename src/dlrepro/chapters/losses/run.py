"""Chapter 5, loss functions: the text's seven losses on fixed examples, numpy vs torch.

The text shows only library calls (scikit-learn, Keras) and prints no value. `text_code`
implements them with Keras' conventions, torch.nn.functional is the twin, and the tests also
check scikit-learn. On ordinary inputs all agree to float rounding; they part where a
probability is exactly 0 or 1 (Keras clips at 1e-7, scikit-learn at machine epsilon, torch
clamps log terms at -100 or does not bound them) or where a reduction differs (KL divergence's
batchmean). docs/design.md lists each case; the chapter's findings record them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dlrepro.chapters._common.context import ChapterContext
from dlrepro.chapters._common.result import ChapterResult, Finding
from dlrepro.chapters.losses import text_code as sl
from dlrepro.config import Config

INPUTS: list[Path] = []  # no data file: the chapter computes on its own inputs

# scikit-learn's log_loss clips probabilities at the machine epsilon of their dtype.
SKLEARN_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Example:
    y_true: np.ndarray
    y_pred: np.ndarray


def _example(y_true, y_pred, labels: bool = False) -> Example:
    return Example(np.array(y_true, dtype=np.int64 if labels else np.float64), np.array(y_pred))


CATEGORICAL_PRED = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [0.25, 0.5, 0.25]]
CERTAIN = [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]  # the second row gives its true class 0

# Ordinary inputs: every library agrees on these.
EXAMPLES = {
    # scikit-learn's documented mean_squared_error example plus one outlier (error 5), so
    # that MSE, MAE and Huber tell different stories.
    "regression": _example([3.0, -0.5, 2.0, 7.0, 4.0], [2.5, 0.0, 2.0, 8.0, 9.0]),
    "binary": _example([1, 0, 1, 1, 0, 0], [0.9, 0.1, 0.8, 0.35, 0.2, 0.6]),
    "categorical": _example(np.eye(3)[[0, 1, 2, 1]], CATEGORICAL_PRED),
    "sparse": _example([0, 1, 2, 1], CATEGORICAL_PRED, labels=True),
    # Two strictly positive distributions per sample (a zero would be clipped by Keras only).
    "distributions": _example(
        [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]], [[0.5, 0.4, 0.1], [0.3, 0.3, 0.4]]
    ),
}

# Extreme inputs: probabilities of exactly 0 and 1, where each library guards log(0) its way.
EXTREMES = {
    # two right and certain, two wrong and certain
    "binary": _example([1, 0, 1, 0], [1.0, 0.0, 0.0, 1.0]),
    "categorical": _example(np.eye(3)[[0, 1]], CERTAIN),
    "sparse": _example([0, 1], CERTAIN, labels=True),
    # one-hot targets (zeros in p) against a prediction with a zero too
    "distributions": _example(np.eye(3)[[0, 1]], [[0.8, 0.2, 0.0], [0.5, 0.5, 0.0]]),
}


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a)  # keeps float64, and int64 for class labels


@dataclass(frozen=True)
class Loss:
    text_call: str  # how the text computes it
    example: str  # key of EXAMPLES / EXTREMES
    scratch: Callable  # (y_true, y_pred) -> float, Keras conventions
    framework_call: str
    framework: Callable  # (y_true, y_pred) -> torch scalar
    sklearn_convention: Callable | None = None  # the scratch loss clipped as log_loss clips


def losses(chapter) -> dict[str, Loss]:
    delta, eps = chapter.huber_delta, chapter.clip_eps
    return {
        "mse": Loss(
            "mean_squared_error(y_true, y_pred)",
            "regression",
            sl.mse,
            "F.mse_loss(y_pred, y_true)",
            lambda yt, yp: F.mse_loss(_t(yp), _t(yt)),
        ),
        "mae": Loss(
            "mean_absolute_error(y_true, y_pred)",
            "regression",
            sl.mae,
            "F.l1_loss(y_pred, y_true)",
            lambda yt, yp: F.l1_loss(_t(yp), _t(yt)),
        ),
        "huber": Loss(
            f"Huber(delta={delta})(y_true, y_pred)",
            "regression",
            lambda yt, yp: sl.huber(yt, yp, delta),
            f"F.huber_loss(y_pred, y_true, delta={delta})",
            lambda yt, yp: F.huber_loss(_t(yp), _t(yt), delta=delta),
        ),
        "binary_crossentropy": Loss(
            "log_loss(y_true, y_pred)",
            "binary",
            lambda yt, yp: sl.binary_crossentropy(yt, yp, eps),
            "F.binary_cross_entropy(y_pred, y_true)",
            lambda yt, yp: F.binary_cross_entropy(_t(yp), _t(yt)),
            lambda yt, yp: sl.binary_crossentropy(yt, yp, SKLEARN_EPS),
        ),
        "categorical_crossentropy": Loss(
            "CategoricalCrossentropy()(y_true, y_pred)",
            "categorical",
            lambda yt, yp: sl.categorical_crossentropy(yt, yp, eps),
            # log_softmax leaves log-probabilities of rows that sum to 1 as they are
            "F.cross_entropy(log(y_pred), y_true)",
            lambda yt, yp: F.cross_entropy(_t(yp).log(), _t(yt)),
            lambda yt, yp: sl.categorical_crossentropy(yt, yp, SKLEARN_EPS),
        ),
        "sparse_categorical_crossentropy": Loss(
            "SparseCategoricalCrossentropy()(labels, y_pred)",
            "sparse",
            lambda yt, yp: sl.sparse_categorical_crossentropy(yt, yp, eps),
            "F.nll_loss(log(y_pred), labels)",
            lambda yt, yp: F.nll_loss(_t(yp).log(), _t(yt)),
            lambda yt, yp: sl.sparse_categorical_crossentropy(yt, yp, SKLEARN_EPS),
        ),
        "kl_divergence": Loss(
            "KLDivergence()(y_true, y_pred)",
            "distributions",
            lambda yt, yp: sl.kl_divergence(yt, yp, eps),
            'F.kl_div(log(y_pred), y_true, reduction="batchmean")',
            lambda yt, yp: F.kl_div(_t(yp).log(), _t(yt), reduction="batchmean"),
        ),
    }


def json_number(value: float) -> float | str:
    """JSON has no inf or NaN: those are written as the strings "inf", "-inf", "nan"."""
    value = float(value)
    return value if np.isfinite(value) else str(value)


def run(cfg: Config, ctx: ChapterContext) -> ChapterResult:
    chapter = cfg.curriculum.losses
    table = losses(chapter)
    examples, extremes = {}, {}
    for name, loss in table.items():
        ex = EXAMPLES[loss.example]
        scratch = float(loss.scratch(ex.y_true, ex.y_pred))
        framework = float(loss.framework(ex.y_true, ex.y_pred))
        examples[name] = {
            "scratch": scratch,
            "torch": framework,
            "abs_diff": abs(scratch - framework),
        }
        if loss.example in EXTREMES:
            ex = EXTREMES[loss.example]
            extremes[name] = {
                "keras_convention": json_number(loss.scratch(ex.y_true, ex.y_pred)),
                "torch": json_number(loss.framework(ex.y_true, ex.y_pred)),
            }
            if loss.sklearn_convention is not None:
                extremes[name]["sklearn_convention"] = json_number(
                    loss.sklearn_convention(ex.y_true, ex.y_pred)
                )
    curves = _curves(chapter)
    metrics = {
        "clip_eps": {"keras": chapter.clip_eps, "sklearn": SKLEARN_EPS},
        "examples": examples,
        "max_abs_diff_vs_torch": max(row["abs_diff"] for row in examples.values()),
        "extremes": extremes,
        "kl_one_hot_target": kl_one_hot_target(chapter.clip_eps),
        "kl_reductions": kl_reductions(chapter.clip_eps),
        "outlier_share": outlier_share(chapter.huber_delta),
    }
    return ChapterResult(
        metrics=metrics,
        trace=_trace(table, examples),
        framework_trace=_framework_trace(table, examples, extremes, metrics),
        figures={"losses": _figure(chapter, curves)},
        curves=curves,
        findings=[_certain_and_wrong_finding(chapter.clip_eps)],
    )


def kl_one_hot_target(eps: float) -> dict:
    """One-hot p against a q without zeros: torch adds exactly 0 for p = 0, Keras clips p to
    eps first and adds eps·log(eps/q) for each such class."""
    p = np.eye(3)[[0, 1]]
    q = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    keras = float(sl.kl_divergence(p, q, eps))
    framework = float(F.kl_div(_t(q).log(), _t(p), reduction="batchmean"))
    return {"keras_convention": keras, "torch": framework, "abs_diff": abs(keras - framework)}


def kl_reductions(eps: float) -> dict:
    """Keras' reduction is torch's "batchmean"; torch's default "mean" also divides by classes."""
    ex = EXAMPLES["distributions"]
    classes = ex.y_true.shape[-1]
    with warnings.catch_warnings():  # torch warns that "mean" is not KL's definition: the point
        warnings.filterwarnings("ignore", message="reduction: 'mean'")
        torch_mean = float(F.kl_div(_t(ex.y_pred).log(), _t(ex.y_true), reduction="mean"))
    return {
        "keras_sum_over_classes_mean_over_samples": float(
            sl.kl_divergence(ex.y_true, ex.y_pred, eps)
        ),
        "torch_batchmean": float(
            F.kl_div(_t(ex.y_pred).log(), _t(ex.y_true), reduction="batchmean")
        ),
        "torch_mean": torch_mean,
        "torch_mean_times_classes": torch_mean * classes,
    }


def outlier_share(delta: float) -> dict:
    """How much of each regression loss the one outlier of the example carries."""
    ex = EXAMPLES["regression"]
    outlier = np.argmax(np.abs(ex.y_pred - ex.y_true))
    rest = np.arange(len(ex.y_true)) != outlier
    share = {}
    for name, fn in (
        ("mse", sl.mse),
        ("mae", sl.mae),
        ("huber", lambda t, p: sl.huber(t, p, delta)),
    ):
        total = fn(ex.y_true, ex.y_pred) * len(ex.y_true)
        without = fn(ex.y_true[rest], ex.y_pred[rest]) * rest.sum()
        share[name] = float((total - without) / total)
    return share


def _trace(table: dict[str, Loss], examples: dict) -> str:
    lines = [
        "# The text's snippets print nothing: each computes `loss`. Run on the fixed examples of",
        "# dlrepro.chapters.losses.run (Keras conventions, its text_code), loss is:",
    ]
    lines += [f"{loss.text_call} = {examples[name]['scratch']!r}" for name, loss in table.items()]
    return "\n".join(lines) + "\n"


def _framework_trace(table: dict[str, Loss], examples: dict, extremes: dict, metrics: dict) -> str:
    lines = [
        "Fixed examples: numpy with Keras conventions vs torch.nn.functional (float64)",
        "",
        "| loss | example | numpy (Keras) | torch | torch call | abs diff |",
        "|---|---|---|---|---|---|",
    ]
    for name, loss in table.items():
        row = examples[name]
        lines.append(
            f"| {name} | {loss.example} | {row['scratch']:.10f} | {row['torch']:.10f} "
            f"| {loss.framework_call} | {row['abs_diff']:.1e} |"
        )
    clip = metrics["clip_eps"]
    lines += [
        "",
        "Extreme examples (probabilities of exactly 0 and 1): each library guards log(0) its way",
        "",
        f"| loss | Keras (clip {clip['keras']:g}) | sklearn (clip {clip['sklearn']:.3g}) | torch |",
        "|---|---|---|---|",
    ]
    for name, row in extremes.items():
        sklearn = row.get("sklearn_convention", "-")
        lines.append(f"| {name} | {row['keras_convention']} | {sklearn} | {row['torch']} |")
    kl = metrics["kl_reductions"]
    lines += [
        "",
        "KL reductions on the distributions example: "
        + ", ".join(f"{key} = {value:.10f}" for key, value in kl.items()),
    ]
    return "\n".join(lines) + "\n"


def _certain_and_wrong_finding(eps: float) -> Finding:
    """One sample, true class 1 of 3, predicted with probability 0."""
    one_hot, certain = np.eye(3)[[1]], np.array([[1.0, 0.0, 0.0]])
    keras = sl.categorical_crossentropy(one_hot, certain, eps)
    sklearn = sl.categorical_crossentropy(one_hot, certain, SKLEARN_EPS)
    nll = F.nll_loss(_t(certain).log(), torch.tensor([1])).item()
    bce = F.binary_cross_entropy(_t(np.array([0.0])), _t(np.array([1.0]))).item()
    return Finding(
        what="Cross-entropy of a certain, wrong prediction (p = 0 for the true class)",
        text="CategoricalCrossentropy() and log_loss(y_true, y_pred): no value printed",
        code=f"Keras convention (p clipped to [{eps:g}, 1 - {eps:g}]): {keras:.4f}",
        framework=(
            f"sklearn log_loss convention (clip {SKLEARN_EPS:.3g}): {sklearn:.4f}; "
            f"torch nll_loss(log p): {nll}; torch binary_cross_entropy: {bce}"
        ),
        cause=(
            "the text presents Keras' and scikit-learn's cross-entropies as one loss; they bound "
            "-log(0) differently: Keras by clipping p at 1e-7, scikit-learn at the float64 "
            "epsilon, torch's binary_cross_entropy by clamping log at -100, and torch's "
            "nll_loss not at all"
        ),
    )


def _per_sample(fn: Callable, y_true, predictions: np.ndarray) -> np.ndarray:
    """The loss of a one-sample batch, for each prediction."""
    return np.array([fn(np.array([y_true]), np.array([p])) for p in predictions])


def _curves(chapter) -> dict[str, list[dict]]:
    delta, eps = chapter.huber_delta, chapter.clip_eps
    errors = np.linspace(-3, 3, 121)
    regression = {
        "mse": _per_sample(sl.mse, 0.0, errors),
        "mae": _per_sample(sl.mae, 0.0, errors),
        "huber": _per_sample(lambda t, p: sl.huber(t, p, delta), 0.0, errors),
    }
    p = np.linspace(0.001, 0.999, 100)
    classification = {
        "bce_y_true_1": _per_sample(lambda t, q: sl.binary_crossentropy(t, q, eps), 1.0, p),
        "bce_y_true_0": _per_sample(lambda t, q: sl.binary_crossentropy(t, q, eps), 0.0, p),
        # the true class gets p, the two others share 1 - p
        "cce_true_class_p": np.array(
            [
                sl.categorical_crossentropy(
                    np.eye(3)[[0]], np.array([[q, (1 - q) / 2, (1 - q) / 2]]), eps
                )
                for q in p
            ]
        ),
    }
    tiny = np.logspace(-50, 0, 101)
    guards = {
        "keras": _per_sample(lambda t, q: sl.binary_crossentropy(t, q, eps), 1.0, tiny),
        "sklearn": _per_sample(lambda t, q: sl.binary_crossentropy(t, q, SKLEARN_EPS), 1.0, tiny),
        "torch": F.binary_cross_entropy(_t(tiny), _t(np.ones_like(tiny)), reduction="none").numpy(),
    }
    return {
        "regression": _rows("y_pred", errors, regression),
        "classification": _rows("p", p, classification),
        "log_guards": _rows("p", tiny, guards),
    }


def _rows(x_name: str, x: np.ndarray, columns: dict[str, np.ndarray]) -> list[dict]:
    return [
        {x_name: float(xi), **{name: float(col[i]) for name, col in columns.items()}}
        for i, xi in enumerate(x)
    ]


def _figure(chapter, curves: dict[str, list[dict]]):
    import matplotlib.pyplot as plt

    fig, (reg, cls, guard) = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, name, title in (
        (reg, "regression", "Regression, y_true = 0"),
        (cls, "classification", "Classification, p = predicted P(class 1)"),
        (guard, "log_guards", "BCE, y_true = 1, p → 0: how log(0) is bounded"),
    ):
        rows = curves[name]
        x_name = next(iter(rows[0]))
        x = [row[x_name] for row in rows]
        # dashes and dots keep curves visible where they coincide
        for column, style in zip(list(rows[0])[1:], ("-", "--", ":"), strict=True):
            ax.plot(x, [row[column] for row in rows], style, label=column, linewidth=2)
        ax.set(title=title, xlabel=x_name, ylabel="loss")
        ax.legend()
        ax.grid(alpha=0.3)
    for edge in (-chapter.huber_delta, chapter.huber_delta):
        reg.axvline(edge, color="grey", linestyle=":")
    reg.text(chapter.huber_delta, 0.9 * reg.get_ylim()[1], f" δ = {chapter.huber_delta:g}")
    guard.set_xscale("log")
    fig.tight_layout()
    return fig
