"""Chapter 7, the Keras XOR example: the text's recipe over ten seeds, and one that learns XOR.

The text's code is Keras; this project reproduces it with the Lightning twin in
dlrepro.chapters.keras_xor.twin (same layers, init, loss, optimizer and fit defaults), so the "code"
column of this chapter's findings is that reproduction, run as the text configures it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from dlrepro import paths
from dlrepro.chapters._common.context import ChapterContext
from dlrepro.chapters._common.result import ChapterResult, Finding
from dlrepro.config import Config
from dlrepro.config.schema import KerasRecipe, KerasXorConfig
from dlrepro.data.gates import gate_path, read_gate

INPUTS = [gate_path(paths.GATES, "XOR")]  # the only gate this chapter reads
RECIPES = ("text", "tuned")

# What the text prints for `print(model.predict(X))` after `fit(X, Y, epochs=100)`.
TEXT_OUTPUTS = [0.01, 0.98, 0.97, 0.05]


@dataclass
class SeedFit:
    seed: int
    outputs: np.ndarray  # float32 sigmoid outputs, one per XOR row
    epoch_loss: list[float]  # Keras' history["loss"]
    epoch_acc: list[float]  # Keras' history["accuracy"]
    dead_units_at_init: int
    dead_units_at_end: int
    max_weight_change: float  # largest |Δ| of any weight or bias over the whole fit


def fit_seed(
    X, y, recipe: KerasRecipe, chapter: KerasXorConfig, seed: int, logger=False
) -> SeedFit:
    """`model.fit(X, Y, epochs, batch_size)` then `model.predict(X)` for one seed."""
    with _one_torch_thread():
        return _fit(X, y, recipe, chapter, seed, logger)


@contextmanager
def _one_torch_thread():
    """A 4-row batch gains nothing from intra-op threads, and when other processes keep the
    cores busy each op waits for a descheduled thread: measured ~10 ms instead of ~0.6 ms per
    step on this 2-core machine under load. One thread for the toy fits, then the old count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit(X, y, recipe: KerasRecipe, chapter: KerasXorConfig, seed: int, logger) -> SeedFit:
    import pytorch_lightning as pl
    import torch

    from dlrepro.chapters._common.toy_trainer import toy_trainer
    from dlrepro.chapters.keras_xor.twin import KerasXorNet, xor_loader

    pl.seed_everything(seed, workers=True, verbose=False)
    model = KerasXorNet(
        input_size=X.shape[1],
        hidden_size=recipe.hidden_size,
        lr=recipe.lr,
        beta1=chapter.beta1,
        beta2=chapter.beta2,
        eps=chapter.eps,
    )
    inputs = torch.as_tensor(X, dtype=torch.float32)
    initial = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    dead_at_init = _dead_units(model, inputs)
    loader = xor_loader(X, y, recipe.batch_size, seed)
    toy_trainer(max_epochs=recipe.epochs, logger=logger).fit(model, loader)
    final = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    with torch.no_grad():
        outputs = model(inputs).flatten().numpy()
    return SeedFit(
        seed=seed,
        outputs=outputs,
        epoch_loss=model.epoch_loss,
        epoch_acc=model.epoch_acc,
        dead_units_at_init=dead_at_init,
        dead_units_at_end=_dead_units(model, inputs),
        max_weight_change=float((final - initial).abs().max()),
    )


def _dead_units(model, inputs) -> int:
    """Hidden ReLUs that output 0 for all four rows: they get no gradient, so they stay dead."""
    import torch

    with torch.no_grad():
        return int((model.hidden(inputs) <= 0).all(dim=0).sum())


def margin(outputs: np.ndarray, y: np.ndarray) -> float:
    """How far the worst row is on the right side of 0.5 (negative: on the wrong side)."""
    return float(np.min((outputs.astype(np.float64) - 0.5) * (2 * y - 1)))


def learned(outputs: np.ndarray, y: np.ndarray) -> bool:
    return margin(outputs, y) > 0


def keras_print(outputs: np.ndarray) -> str:
    """`print(model.predict(X))`: numpy's default print of the float32 (4, 1) array."""
    return str(outputs.reshape(-1, 1))


def two_decimals(values) -> str:
    """The text's layout, [[0.01] [0.98] ...], one line."""
    return "[" + " ".join(f"[{v:.2f}]" for v in values) + "]"


def run(cfg: Config, ctx: ChapterContext) -> ChapterResult:
    chapter = cfg.curriculum.keras_xor
    X, y = read_gate(ctx.gates_dir, "XOR")
    fits = {}
    for name in RECIPES:
        recipe = getattr(chapter, name)
        fits[name] = [
            fit_seed(X, y, recipe, chapter, seed, ctx.logger(f"keras_xor-{name}-seed{seed}"))
            for seed in chapter.seeds
        ]
    metrics = {name: _recipe_metrics(getattr(chapter, name), fits[name], y) for name in RECIPES}
    metrics["adam"] = {"beta1": chapter.beta1, "beta2": chapter.beta2, "eps": chapter.eps}
    mean_loss = {name: np.mean([f.epoch_loss for f in fits[name]], axis=0) for name in RECIPES}
    mean_acc = {name: np.mean([f.epoch_acc for f in fits[name]], axis=0) for name in RECIPES}
    series = {}
    for name in RECIPES:
        series[f"{name}/loss"] = [(e, float(v)) for e, v in enumerate(mean_loss[name], start=1)]
        series[f"{name}/acc"] = [(e, float(v)) for e, v in enumerate(mean_acc[name], start=1)]
    return ChapterResult(
        metrics=metrics,
        trace=_trace(chapter.text, fits["text"]),
        framework_trace=_framework_trace(chapter, fits, metrics),
        figures={
            "outputs": _outputs_figure(chapter, fits, metrics, X, y),
            "loss": _loss_figure(chapter, fits, mean_loss),
        },
        curves={"loss": _loss_rows(fits, mean_loss)},
        series=series,
        findings=_findings(chapter, fits, metrics),
    )


def _recipe_metrics(recipe: KerasRecipe, fits: list[SeedFit], y: np.ndarray) -> dict:
    per_seed = {
        f"seed{f.seed}": {
            "outputs": [float(v) for v in f.outputs],
            "outputs_2dp": [round(float(v), 2) for v in f.outputs],
            "learned": learned(f.outputs, y),
            "margin": margin(f.outputs, y),
            "final_loss": f.epoch_loss[-1],
            "final_acc": f.epoch_acc[-1],
            "dead_units_at_init": f.dead_units_at_init,
            "dead_units_at_end": f.dead_units_at_end,
            "max_weight_change": f.max_weight_change,
        }
        for f in fits
    }
    learned_seeds = [f.seed for f in fits if learned(f.outputs, y)]
    return {
        "recipe": {
            "hidden_size": recipe.hidden_size,
            "lr": recipe.lr,
            "epochs": recipe.epochs,
            "batch_size": recipe.batch_size,
        },
        "success_rate": len(learned_seeds) / len(fits),
        "learned_seeds": learned_seeds,
        "mean_outputs": np.mean([f.outputs.astype(np.float64) for f in fits], axis=0).tolist(),
        "final_loss_mean": float(np.mean([f.epoch_loss[-1] for f in fits])),
        "max_weight_change": max(f.max_weight_change for f in fits),
        "seeds": per_seed,
    }


def _describe(name: str, recipe: KerasRecipe) -> str:
    return (
        f"{name}: Dense({recipe.hidden_size}, relu) -> Dense(1, sigmoid), Adam lr {recipe.lr}, "
        f"{recipe.epochs} epochs, batch {recipe.batch_size}"
    )


def _trace(recipe: KerasRecipe, fits: list[SeedFit]) -> str:
    lines = [
        f"# print(model.predict(X)) after the text's fit(X, Y, epochs={recipe.epochs}), per seed.",
        "# Keras is not part of this project: these are the Lightning reproduction's outputs",
        "# (dlrepro.chapters.keras_xor.twin), printed as Keras prints them (numpy float32, no",
        "# rounding; Keras' predict also prints a `1/1 ... step` progress line before each array).",
    ]
    for f in fits:
        lines += [f"seed {f.seed}:", keras_print(f.outputs)]
    return "\n".join(lines) + "\n"


def _framework_trace(chapter: KerasXorConfig, fits: dict, metrics: dict) -> str:
    lines = []
    for name in RECIPES:
        m = metrics[name]
        learned_count = len(m["learned_seeds"])
        lines.append(f"{_describe(name, getattr(chapter, name))}")
        lines.append(f"  learned XOR in {learned_count}/{len(fits[name])} seeds")
        for f in fits[name]:
            s = m["seeds"][f"seed{f.seed}"]
            lines.append(
                f"  seed {f.seed}: {two_decimals(f.outputs)} learned={s['learned']!s:5} "
                f"margin={s['margin']:+.4f} loss={s['final_loss']:.4f} "
                f"dead ReLUs {s['dead_units_at_init']}->{s['dead_units_at_end']}"
            )
    return "\n".join(lines) + "\n"


def _findings(chapter: KerasXorConfig, fits: dict, metrics: dict) -> list[Finding]:
    text, tuned = metrics["text"], metrics["tuned"]
    first = fits["text"][0]
    mean = text["mean_outputs"]
    n_seeds = len(chapter.seeds)
    printed = Finding(
        what=(
            f"print(model.predict(X)) after fit(epochs={chapter.text.epochs}) with Keras defaults; "
            f"code = the Lightning reproduction, seed {first.seed}, rounded to 2 decimals like "
            "the text"
        ),
        text=two_decimals(TEXT_OUTPUTS),
        code=two_decimals(first.outputs),
        framework=(
            f"seed {first.seed} exact: {[float(v) for v in first.outputs]}; "
            f"mean over seeds {chapter.seeds}: {two_decimals(mean)}"
        ),
        cause=(
            f"{chapter.text.epochs} Adam steps at lr {chapter.text.lr} move each weight by about "
            f"lr per step, at most {text['max_weight_change']:.3f} here, so the net stays close "
            "to its Glorot init and every output stays near 0.5. The text's values are those "
            f"of a trained net: the tuned recipe ({_describe('tuned', chapter.tuned)}) gives "
            f"{two_decimals(fits['tuned'][0].outputs)} for seed {fits['tuned'][0].seed}"
        ),
    )
    success = Finding(
        what="does the text's recipe learn XOR (all 4 outputs on the right side of 0.5)?",
        text=f"{two_decimals(TEXT_OUTPUTS)}: all 4 on the right side of 0.5, so yes",
        code=(
            f"in {len(text['learned_seeds'])}/{n_seeds} seeds "
            f"(learned seeds {text['learned_seeds']}, best margin "
            f"{max(s['margin'] for s in text['seeds'].values()):+.4f})"
        ),
        framework=(
            f"tuned recipe: in {len(tuned['learned_seeds'])}/{n_seeds} seeds, "
            f"final loss {tuned['final_loss_mean']:.4f} (text recipe {text['final_loss_mean']:.4f})"
        ),
        cause=(
            "too few, too small steps (see above). Dense(4, relu) also starts some seeds with "
            "ReLUs that are off for all four rows; they get no gradient and stay off (dead "
            f"units at init per seed: {[s['dead_units_at_init'] for s in text['seeds'].values()]}"
            f", at the end: {[s['dead_units_at_end'] for s in text['seeds'].values()]})"
        ),
    )
    return [printed, success]


def _loss_rows(fits: dict, mean_loss: dict) -> list[dict]:
    epochs = max(len(loss) for loss in mean_loss.values())
    rows = []
    for e in range(epochs):
        row: dict[str, float] = {"epoch": e + 1}
        for name in RECIPES:
            if e < len(mean_loss[name]):
                row[f"{name}_mean"] = float(mean_loss[name][e])
                for f in fits[name]:
                    row[f"{name}_seed{f.seed}"] = f.epoch_loss[e]
        rows.append(row)
    return rows


def _outputs_figure(chapter: KerasXorConfig, fits: dict, metrics: dict, X, y):
    """Seeds × inputs heatmaps of the sigmoid outputs, the text's printed outputs on top."""
    import matplotlib.pyplot as plt

    size = (5 * len(RECIPES), 0.45 * (len(chapter.seeds) + 1) + 2)
    fig, axes = plt.subplots(1, len(RECIPES), figsize=size, layout="constrained")
    for ax, name in zip(axes, RECIPES, strict=True):
        grid = np.array([TEXT_OUTPUTS] + [f.outputs for f in fits[name]])
        image = ax.imshow(grid, cmap="coolwarm", vmin=0, vmax=1, aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
        ax.axhline(0.5, color="k", linewidth=2)
        seeds = [f"seed {f.seed}" + ("" if learned(f.outputs, y) else " ✗") for f in fits[name]]
        ax.set_yticks(range(len(seeds) + 1), ["text prints", *seeds])
        ax.set_xticks(range(len(y)), [f"{x}→{t}" for x, t in zip(X, y, strict=True)])
        recipe = getattr(chapter, name)
        m = metrics[name]
        ax.set_title(
            f"{name} recipe: learned XOR in {len(m['learned_seeds'])}/{len(fits[name])} seeds\n"
            f"Dense({recipe.hidden_size}, relu), Adam lr {recipe.lr}, {recipe.epochs} epochs",
            fontsize=9,
        )
        ax.set_xlabel("input → target")
    axes[0].set_ylabel("✗ = some output on the wrong side of 0.5")
    fig.colorbar(image, ax=axes, label="sigmoid output")
    return fig


def _loss_figure(chapter: KerasXorConfig, fits: dict, mean_loss: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, color in zip(RECIPES, ("tab:red", "tab:blue"), strict=True):
        for f in fits[name]:
            epochs = range(1, len(f.epoch_loss) + 1)
            ax.plot(epochs, f.epoch_loss, color=color, alpha=0.25, linewidth=0.8)
        epochs = range(1, len(mean_loss[name]) + 1)
        label = f"{_describe(name, getattr(chapter, name))} (mean of {len(fits[name])} seeds)"
        ax.plot(epochs, mean_loss[name], color=color, linewidth=2, label=label)
    ax.set(xlabel="epoch", ylabel="binary cross-entropy", yscale="log", title="Training loss")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
