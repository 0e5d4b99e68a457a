"""The text's seven losses in numpy, with the conventions of the Keras classes the text calls.

Keras (and so these functions) averages over samples, and guards log(0) by clipping
probabilities to [eps, 1 - eps] with eps = 1e-7 (keras.backend.epsilon()). Categorical
cross-entropy first rescales each row of y_pred to sum to 1; KL divergence clips both
distributions to [eps, 1]. Passing eps = np.finfo(float).eps instead gives scikit-learn's
log_loss convention. Labels are y_true, predictions y_pred, as in the text's calls.
"""

import numpy as np

EPSILON = 1e-7  # keras.backend.epsilon()


def mse(y_true, y_pred):
    return np.mean((y_true - y_pred) ** 2)


def mae(y_true, y_pred):
    return np.mean(np.abs(y_true - y_pred))


def huber(y_true, y_pred, delta=1.0):
    """Quadratic for errors up to delta, linear beyond: ½e² or δ|e| - ½δ²."""
    error = np.abs(y_pred - y_true)
    return np.mean(np.where(error <= delta, 0.5 * error**2, delta * error - 0.5 * delta**2))


def binary_crossentropy(y_true, y_pred, eps=EPSILON):
    p = np.clip(y_pred, eps, 1 - eps)
    return -np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))


def categorical_crossentropy(y_true, y_pred, eps=EPSILON):
    """y_true: one-hot (or soft) rows; y_pred: one probability row per sample."""
    p = y_pred / np.sum(y_pred, axis=-1, keepdims=True)
    p = np.clip(p, eps, 1 - eps)
    return np.mean(-np.sum(y_true * np.log(p), axis=-1))


def sparse_categorical_crossentropy(labels, y_pred, eps=EPSILON):
    """The same loss with integer class labels instead of one-hot rows."""
    one_hot = np.eye(y_pred.shape[-1])[labels]
    return categorical_crossentropy(one_hot, y_pred, eps)


def kl_divergence(y_true, y_pred, eps=EPSILON):
    """Σ p log(p / q) over classes for each sample, then the mean over samples."""
    p = np.clip(y_true, eps, 1)
    q = np.clip(y_pred, eps, 1)
    return np.mean(np.sum(p * np.log(p / q), axis=-1))
