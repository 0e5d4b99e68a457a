"""`loss, acc = model.evaluate(test_data)` and more: the text reports one accuracy; here every
classification metric a reader of that figure would ask for, and pictures of the mistakes.

Binary models (one sigmoid output = P(classes[1])): an image is predicted as classes[1] when that
probability is > 0.5 (Keras' binary_accuracy rule). Precision, recall, F1 and the ROC curve are
about one *positive class*: "Diseased" when there is such a class (the one a screening tool must
not miss), else classes[1]. With the text's folders sorted as Keras sorts them, Diseased is class
0, so its score is 1 − output. ROC AUC does not depend on that choice.

More than two classes: precision, recall, F1 and ROC AUC are macro averages of one-vs-rest
scores, and `roc` holds one one-vs-rest curve per class. Accuracy is always plain accuracy.

ROC thresholds follow torchmetrics: the first point (fpr = tpr = 0) has threshold 1.0 where
scikit-learn writes +inf; both mean "nothing predicted positive".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchmetrics.functional.classification as tmf
from matplotlib.figure import Figure
from tqdm import tqdm

from dlrepro.plant.datamodule import images_to_tensor
from dlrepro.plant.model import PlantCNN

POSITIVE_CLASS_NAME = "diseased"  # matched case-insensitively
THRESHOLD = 0.5


def positive_class_index(classes: Sequence[str]) -> int:
    """Index of "Diseased" (any case) if present, else 1."""
    lowered = [name.lower() for name in classes]
    return lowered.index(POSITIVE_CLASS_NAME) if POSITIVE_CLASS_NAME in lowered else 1


def predict_probabilities(model: PlantCNN, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Binary: P(classes[1]) per image, (N,). Otherwise class probabilities, (N, C).

    Reads `images` (uint8 N×H×W×3, memmaps included) one batch at a time, in eval mode and without
    autograd; the model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    chunks = []
    try:
        with torch.inference_mode():
            starts = range(0, len(images), batch_size)
            for start in tqdm(starts, desc="evaluate", unit="batch", disable=None):
                batch = images_to_tensor(images[start : start + batch_size]).to(model.device)
                chunks.append(model.predicted_probabilities(batch).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy()


def _floats(values: torch.Tensor) -> list[float]:
    return [float(v) for v in values]


def _roc_points(fpr: torch.Tensor, tpr: torch.Tensor, thresholds: torch.Tensor) -> dict:
    return {"fpr": _floats(fpr), "tpr": _floats(tpr), "thresholds": _floats(thresholds)}


def evaluate(
    model: PlantCNN,
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    batch_size: int = 64,
) -> dict[str, Any]:
    """Metrics of `model` on (images, labels); every value is JSON-serialisable.

    Scalars: accuracy (the text's figure), precision, recall, f1, roc_auc.
    Also: classes, num_images, average ("binary" or "macro"), positive_class (binary only),
    confusion_matrix (rows = true class, columns = predicted class, in `classes` order),
    roc (binary: fpr/tpr/thresholds lists; otherwise one such dict per class name),
    labels, predictions (class indices) and probabilities (as `predict_probabilities`), per image.
    """
    classes = list(classes)
    probs = torch.from_numpy(predict_probabilities(model, images, batch_size))
    target = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    result: dict[str, Any] = {"classes": classes, "num_images": len(target)}

    if len(classes) == 2:
        preds = (probs > THRESHOLD).long()
        positive = positive_class_index(classes)
        score = probs if positive == 1 else 1 - probs
        is_positive, predicted_positive = (target == positive).long(), (preds == positive).long()
        result |= {
            "average": "binary",
            "positive_class": classes[positive],
            "accuracy": float(tmf.binary_accuracy(preds, target)),
            # Integer predictions: torchmetrics applies no threshold of its own to them.
            "precision": float(tmf.binary_precision(predicted_positive, is_positive)),
            "recall": float(tmf.binary_recall(predicted_positive, is_positive)),
            "f1": float(tmf.binary_f1_score(predicted_positive, is_positive)),
            "roc_auc": float(tmf.binary_auroc(score, is_positive)),
            "confusion_matrix": tmf.binary_confusion_matrix(preds, target).tolist(),
            "roc": _roc_points(*tmf.binary_roc(score, is_positive)),
        }
    else:
        n = len(classes)
        preds = probs.argmax(dim=1)
        fprs, tprs, thresholds = tmf.multiclass_roc(probs, target, n)
        result |= {
            "average": "macro",
            "accuracy": float(tmf.multiclass_accuracy(preds, target, n, average="micro")),
            "precision": float(tmf.multiclass_precision(preds, target, n, average="macro")),
            "recall": float(tmf.multiclass_recall(preds, target, n, average="macro")),
            "f1": float(tmf.multiclass_f1_score(preds, target, n, average="macro")),
            "roc_auc": float(tmf.multiclass_auroc(probs, target, n, average="macro")),
            "confusion_matrix": tmf.multiclass_confusion_matrix(preds, target, n).tolist(),
            "roc": {
                name: _roc_points(fpr, tpr, thr)
                for name, fpr, tpr, thr in zip(classes, fprs, tprs, thresholds, strict=True)
            },
        }
    result |= {
        "labels": target.tolist(),
        "predictions": preds.tolist(),
        "probabilities": probs.tolist(),
    }
    return result


def predicted_confidence(preds: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Probability the model gave to the class it predicted, per image."""
    preds, probs = np.asarray(preds), np.asarray(probs)
    if probs.ndim == 1:  # binary: P(class 1)
        return np.where(preds == 1, probs, 1 - probs)
    return probs[np.arange(len(preds)), preds]


def misclassified_gallery(
    images: np.ndarray,
    labels: Sequence[int],
    preds: Sequence[int],
    probs: Sequence[float] | Sequence[Sequence[float]],
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
