"""The text's activation functions, made safe for any float64 input, with their derivatives.

The text's own versions are kept as `*_as_written` where they misbehave on large inputs:
`1 / (1 + np.exp(-x))` computes exp(1000) = inf for x = -1000 (numpy warns "overflow
encountered in exp"), and the text's ELU does the same for x = +1000 because np.where
evaluates both branches everywhere. The safe versions below never exponentiate a positive
number, so they give no warning and no inf/NaN on any finite input. (exp(-1000) does
underflow to 0.0, which is the correctly rounded float64 answer, not an error.)

Derivatives at the kinks follow torch's autograd: relu'(0) = 0, leaky_relu'(0) = slope and
elu'(0) = alpha (all three take the x <= 0 branch at 0).
"""

import numpy as np


# --- The text's code, verbatim: it overflows (with a RuntimeWarning) for |x| > ~709.78.
def sigmoid_as_written(x):
    return 1 / (1 + np.exp(-x))


def elu_as_written(x, alpha=1.0):
    return np.where(x >= 0, x, alpha * (np.exp(x) - 1))


def swish_as_written(x):
    return x * sigmoid_as_written(x)


def softmax_as_written(x):
    e_x = np.exp(x - np.max(x))
    return e_x / e_x.sum()


# --- Safe versions: the same functions.
def sigmoid(x):
    # exp(-|x|) lies in (0, 1]; 1/(1+e) for x >= 0 and e/(1+e) for x < 0 are both sigmoid(x).
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def tanh(x):
    return np.tanh(x)


def relu(x):
    return np.maximum(0, x)


def leaky_relu(x, slope=0.01):
    return np.where(x > 0, x, x * slope)


def elu(x, alpha=1.0):
    # Only the negative part reaches expm1 (np.where computes both branches for every x);
    # expm1 keeps the digits that exp(x) - 1 loses near 0.
    return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0)))


def swish(x):
    return x * sigmoid(x)


def softmax(x, axis=-1):
    """The text's max-shifted softmax, along `axis` so that it also takes a batch of rows."""
    e_x = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e_x / e_x.sum(axis=axis, keepdims=True)


# --- Derivatives (d activation / dx, elementwise), in terms of the safe functions.
def sigmoid_derivative(x):
    s = sigmoid(x)
    return s * (1 - s)


def tanh_derivative(x):
    return 1 - np.tanh(x) ** 2


def relu_derivative(x):
    return np.where(x > 0, 1.0, 0.0)


def leaky_relu_derivative(x, slope=0.01):
    return np.where(x > 0, 1.0, slope)


def elu_derivative(x, alpha=1.0):
    return np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0)))


def swish_derivative(x):
    s = sigmoid(x)
    return s + x * s * (1 - s)


def softmax_jacobian(x):
    """d softmax(x)_i / d x_j = s_i (δ_ij - s_j) for one vector x."""
    s = softmax(x)
    return np.diag(s) - np.outer(s, s)
