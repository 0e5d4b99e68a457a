"""`loss, acc = model.evaluate(test_data)` and more: every classification metric a reader of the
text's one accuracy would ask for, and pictures of the mistakes.

Binary models (one sigmoid output = P(classes[1])) predict classes[1] above 0.5 (Keras' rule);
precision, recall, F1 and ROC are about the positive class "Diseased" when there is one (the
class a screening tool must not miss), else classes[1]. More classes: macro averages of
one-vs-rest scores. Accuracy, precision, recall and F1 are ratios of counts in Python floats
(152 of 200 is 0.76, not float32's 0.7599999904...), ROC AUC a float64; ROC thresholds follow
torchmetrics (the first point's threshold is 1.0 where scikit-learn writes +inf).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torchmetrics.functional.classification as tmf
from tqdm import tqdm

from dlrepro.plant.inference import Predictor, images_to_tensor

if TYPE_CHECKING:  # evaluation itself never imports Lightning
    from dlrepro.plant.classifier import LeafClassifier

POSITIVE_CLASS_NAME = "diseased"  # matched case-insensitively
THRESHOLD = 0.5


def positive_class_index(classes: Sequence[str]) -> int:
    """Index of "Diseased" (any case) if present, else 1."""
    lowered = [name.lower() for name in classes]
    return lowered.index(POSITIVE_CLASS_NAME) if POSITIVE_CLASS_NAME in lowered else 1


def predict_probabilities(
    model: Predictor | LeafClassifier, images: np.ndarray, batch_size: int = 64
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


def _floats(values: torch.Tensor) -> list[float]:
    return [float(v) for v in values]


def _ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator, 0.0 when the denominator is 0 (scikit-learn's zero_division=0)."""
    return numerator / denominator if denominator else 0.0


def count_metrics(confusion: Sequence[Sequence[int]], positive: int | None) -> dict[str, float]:
    """Accuracy, precision, recall and F1 from a confusion matrix (rows true, columns predicted).

    `positive` given: binary scores of that class. None: macro averages over the classes that
    occur as truth or prediction (the classes scikit-learn and torchmetrics average over).
    """
    n = len(confusion)
    total = sum(sum(row) for row in confusion)
    per_class = []
    for c in range(n):
        tp = confusion[c][c]
        fp = sum(confusion[r][c] for r in range(n)) - tp
        fn = sum(confusion[c]) - tp
        scores = {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        }
        per_class.append((scores, tp + fp + fn > 0))
    accuracy = _ratio(sum(confusion[c][c] for c in range(n)), total)
    if positive is not None:
        return {"accuracy": accuracy, **per_class[positive][0]}
    counted = [scores for scores, occurs in per_class if occurs]
    averages = {
        name: sum(scores[name] for scores in counted) / len(counted) if counted else 0.0
        for name in ("precision", "recall", "f1")
    }
    return {"accuracy": accuracy, **averages}


def roc_auc(score: np.ndarray, is_positive: np.ndarray) -> float:
    """Area under the ROC curve in float64: the chance that a positive outscores a negative, ties
    counting half (the Mann-Whitney statistic, equal to the trapezoids under the curve).
    0.0 when one of the two groups is empty, as torchmetrics gives."""
    is_positive = np.asarray(is_positive, dtype=bool)
    n_pos, n_neg = int(is_positive.sum()), int((~is_positive).sum())
    if not n_pos or not n_neg:
        return 0.0
    _, group, counts = np.unique(np.asarray(score), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[group]  # 1-based, ties share their mean rank
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _roc_points(fpr: torch.Tensor, tpr: torch.Tensor, thresholds: torch.Tensor) -> dict:
    return {"fpr": _floats(fpr), "tpr": _floats(tpr), "thresholds": _floats(thresholds)}


def evaluate(
    model: Predictor | LeafClassifier,
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
        is_positive = (target == positive).long()
        confusion = tmf.binary_confusion_matrix(preds, target).tolist()
        result |= {
            "average": "binary",
            "positive_class": classes[positive],
            **count_metrics(confusion, positive),
            "roc_auc": roc_auc(score.numpy(), is_positive.numpy() == 1),
            "confusion_matrix": confusion,
            "roc": _roc_points(*tmf.binary_roc(score, is_positive)),
        }
    else:
        n = len(classes)
        preds = probs.argmax(dim=1)
        fprs, tprs, thresholds = tmf.multiclass_roc(probs, target, n)
        confusion = tmf.multiclass_confusion_matrix(preds, target, n).tolist()
        result |= {
            "average": "macro",
            **count_metrics(confusion, None),
            "roc_auc": sum(roc_auc(probs[:, c].numpy(), target.numpy() == c) for c in range(n)) / n,
            "confusion_matrix": confusion,
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
