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

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchmetrics.functional.classification as tmf
from tqdm import tqdm

from dlrepro.plant.classifier import LeafClassifier
from dlrepro.plant.datamodule import images_to_tensor

POSITIVE_CLASS_NAME = "diseased"  # matched case-insensitively
THRESHOLD = 0.5


def positive_class_index(classes: Sequence[str]) -> int:
    """Index of "Diseased" (any case) if present, else 1."""
    lowered = [name.lower() for name in classes]
    return lowered.index(POSITIVE_CLASS_NAME) if POSITIVE_CLASS_NAME in lowered else 1


def predict_probabilities(
    model: LeafClassifier, images: np.ndarray, batch_size: int = 64
) -> np.ndarray:
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


def torch_probabilities(
    model: LeafClassifier, images: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """The classifier's class probabilities (N, C) on uint8 RGB (N, S, S, 3), batched: what the
    exports must reproduce."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = images_to_tensor(images[start : start + batch_size])
            chunks.append(model.class_probabilities(batch).numpy())
    return np.concatenate(chunks)


def _floats(values: torch.Tensor) -> list[float]:
    return [float(v) for v in values]


def _roc_points(fpr: torch.Tensor, tpr: torch.Tensor, thresholds: torch.Tensor) -> dict:
    return {"fpr": _floats(fpr), "tpr": _floats(tpr), "thresholds": _floats(thresholds)}


def evaluate(
    model: LeafClassifier,
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
