"""The text's "Forward & Backward Propagation (XOR)" program: the backward pass by hand.

What the code does that the text does not say:
- `d_y_pred = (y_pred - y) * sigmoid'(y_pred)` is ∂/∂z2 of ½·Σ(y_pred - y)², the half *sum* of
  squared errors, while the loss it prints is their mean: each step follows N/2 = 2 times the
  gradient of the printed loss.
- The text's listing lost its indentation: the UPDATE and print lines belong inside the loop
  (as here), otherwise the weights would change once and nothing would be printed.
"""

import numpy as np

from dlrepro.chapters.mlp_xor.text_code import sigmoid, sigmoid_derivative

PARAMETERS = ("W1", "b1", "W2", "b2")
# What `train` keeps from every epoch, so that other implementations can be compared step by step
RECORDED = ("loss", *PARAMETERS, "d_W1", "d_b1", "d_W2", "d_b2")


def init_params(seed=0):
    """The text's initialisation: np.random.seed(0), then np.random.rand weights, zero biases."""
    np.random.seed(seed)
    W1 = np.random.rand(2, 2)
    b1 = np.zeros((1, 2))
    W2 = np.random.rand(2, 1)
    b2 = np.zeros((1, 1))
    return W1, b1, W2, b2


def train(X, y, params, lr=0.5, epochs=10000, log_every=1000, log=print):
    """The text's loop. Returns the final parameters and, for every epoch, the loss, the
    parameters and the hand-written gradients (all taken before that epoch's update)."""
    W1, b1, W2, b2 = (p.copy() for p in params)
    history = {"loss": np.empty(epochs)}
    for name, p in zip(PARAMETERS, params, strict=True):
        history[name] = np.empty((epochs, *p.shape))
        history[f"d_{name}"] = np.empty((epochs, *p.shape))
    for epoch in range(epochs):
        # ---- FORWARD ----
        z1 = np.dot(X, W1) + b1
        a1 = sigmoid(z1)
        z2 = np.dot(a1, W2) + b2
        y_pred = sigmoid(z2)

        # ---- LOSS ----
        loss = np.mean((y - y_pred) ** 2)

        # ---- BACKWARD ----
        d_y_pred = (y_pred - y) * sigmoid_derivative(y_pred)
        d_W2 = np.dot(a1.T, d_y_pred)
        d_b2 = np.sum(d_y_pred, axis=0, keepdims=True)
        d_hidden = np.dot(d_y_pred, W2.T) * sigmoid_derivative(a1)
        d_W1 = np.dot(X.T, d_hidden)
        d_b1 = np.sum(d_hidden, axis=0, keepdims=True)

        # (not in the text) what this epoch saw, before its update
        seen = (loss, W1, b1, W2, b2, d_W1, d_b1, d_W2, d_b2)
        for name, value in zip(RECORDED, seen, strict=True):
            history[name][epoch] = value

        # ---- UPDATE ----
        W2 -= lr * d_W2
        b2 -= lr * d_b2
        W1 -= lr * d_W1
        b1 -= lr * d_b1

        if epoch % log_every == 0:
            log(f"Epoch {epoch} - Loss: {loss:.4f}")
    return (W1, b1, W2, b2), history
