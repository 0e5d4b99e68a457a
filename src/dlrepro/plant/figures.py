"""The case study's figures: training curves per epoch (like Keras' History plots), the
confusion matrix, the ROC curve and a gallery of the most confident mistakes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def history_figure(history: list[dict[str, float]]) -> Figure:
    """Loss and accuracy per epoch, train against validation, like Keras' History plots."""
    figure = Figure(figsize=(10, 3.8))
    epochs = [row["epoch"] for row in history]
    # A fit on train+val validates on nothing: its curves are train's alone.
    splits = [s for s in ("train", "val") if any(f"{s}/loss" in row for row in history)]
    for ax, metric in zip(figure.subplots(1, 2), ("loss", "acc"), strict=True):
        for split in splits:
            ax.plot(epochs, [row.get(f"{split}/{metric}") for row in history], "o-", label=split)
        ax.set(xlabel="epoch", title=metric)
        if len(epochs) <= 15:  # one tick per epoch while they stay readable
            ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    figure.set_layout_engine("tight")
    return figure


def predicted_confidence(preds: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Probability the model gave to the class it predicted, per image."""
    preds, probs = np.asarray(preds), np.asarray(probs)
    if probs.ndim == 1:  # binary: P(class 1)
        return np.where(preds == 1, probs, 1 - probs)
    return probs[np.arange(len(preds)), preds]


def misclassified_gallery(
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    preds: Sequence[int] | np.ndarray,
    probs: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    classes: Sequence[str],
    out: Path,
    max_images: int = 32,
    columns: int = 8,
) -> list[int]:
    """Write a PNG grid of misclassified images, most confident mistakes first.

    Each caption gives the true class, the predicted class and the probability the model gave
    to its prediction. Writes a one-line notice instead when nothing is misclassified, so `out`
    always exists. Returns the indices shown, in grid order.
    """
    labels, preds = np.asarray(labels), np.asarray(preds)
    confidence = predicted_confidence(preds, np.asarray(probs))
    wrong = np.flatnonzero(labels != preds)
    # Stable sort on descending confidence: ties keep index order, so the grid is reproducible.
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:max_images]

    if len(shown) == 0:
        figure = Figure(figsize=(4, 1))
        figure.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    else:
        cols = min(columns, len(shown))
        rows = math.ceil(len(shown) / cols)
        figure = Figure(figsize=(1.7 * cols, 2.0 * rows), layout="constrained")
        for slot, index in enumerate(shown):
            ax = figure.add_subplot(rows, cols, slot + 1)
            ax.imshow(images[index])
            ax.set_title(
                f"true {classes[labels[index]]}\npred {classes[preds[index]]} "
                f"({confidence[index]:.2f})",
                fontsize=7,
            )
            ax.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    return [int(i) for i in shown]


def confusion_figure(metrics: dict[str, Any]) -> Figure:
    """Confusion matrix of an `evaluate` result: counts, rows = true class, columns = predicted."""
    matrix = np.asarray(metrics["confusion_matrix"])
    classes = metrics["classes"]
    figure = Figure(figsize=(1.2 * len(classes) + 2.5, 1.2 * len(classes) + 1.8))
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax)
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {metrics['accuracy']:.3f} on {metrics['num_images']} images")
    dark = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        color = "white" if count > dark else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=color)
    figure.set_layout_engine("tight")
    return figure


def roc_figure(metrics: dict[str, Any]) -> Figure:
    """ROC curve of an `evaluate` result (one curve per class, one-vs-rest, beyond two)."""
    figure = Figure(figsize=(5, 4.5))
    ax = figure.add_subplot()
    if metrics["average"] == "binary":
        curves = {f"{metrics['positive_class']} (AUC {metrics['roc_auc']:.3f})": metrics["roc"]}
    else:
        curves = {f"{name} vs rest": points for name, points in metrics["roc"].items()}
        ax.set_title(f"macro AUC {metrics['roc_auc']:.3f}")
    for label, points in curves.items():
        ax.plot(points["fpr"], points["tpr"], label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    figure.set_layout_engine("tight")
    return figure
