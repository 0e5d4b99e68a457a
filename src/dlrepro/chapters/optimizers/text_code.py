"""The text's "What is an Optimizer?": its gradient-descent loop on f(x) = x², and the seven
update rules of its table (SGD, Momentum, AdaGrad, RMSprop, Adam, Nadam, Adadelta) in numpy.

Each rule keeps its own state and updates a list of numpy arrays in place:

    opt = Adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    opt.step(params, grads)          # params[i] -= ... , same shapes as grads[i]

The formulas are torch.optim's, term for term (each class names its twin), so that the same
gradients give the same trajectory up to rounding. Where torch's definition is one of several
in use, the docstring says how others differ.
"""

import numpy as np


def minimise_square(x=10, lr=0.1, epochs=20, log=print):
    """The text's example: minimise f(x) = x² by gradient descent. Returns x after each epoch."""
    xs = []
    for epoch in range(epochs):
        grad = 2 * x
        x = x - lr * grad
        log(f"Epoch {epoch + 1}: x = {x:.4f}, f(x) = {x**2:.4f}")
        xs.append(x)
    return xs


class SGD:
    """Plain gradient descent, torch.optim.SGD(lr):  p ← p − lr·g."""

    def __init__(self, lr):
        self.lr = lr

    def step(self, params, grads):
        for p, g in zip(params, grads, strict=True):
            p -= self.lr * g


class Momentum:
    """Heavy-ball momentum, torch.optim.SGD(lr, momentum):  v ← m·v + g;  p ← p − lr·v.

    torch starts the velocity at the first gradient; v = 0 before the first step gives the
    same v₁ = g₁. (Keras' SGD keeps v in units of lr, v ← m·v − lr·g; the same path for a
    constant lr.)
    """

    def __init__(self, lr, momentum):
        self.lr, self.momentum = lr, momentum
        self.velocity = None

    def step(self, params, grads):
        if self.velocity is None:
            self.velocity = [np.zeros_like(p) for p in params]
        for p, g, v in zip(params, grads, self.velocity, strict=True):
            v *= self.momentum
            v += g
            p -= self.lr * v


class AdaGrad:
    """torch.optim.Adagrad(lr, eps) with no lr decay and a zero starting sum:
    s ← s + g²;  p ← p − lr·g / (√s + eps).  The step size only shrinks as s grows."""

    def __init__(self, lr, eps):
        self.lr, self.eps = lr, eps
        self.sum_squares = None

    def step(self, params, grads):
        if self.sum_squares is None:
            self.sum_squares = [np.zeros_like(p) for p in params]
        for p, g, s in zip(params, grads, self.sum_squares, strict=True):
            s += g * g
            p -= self.lr * g / (np.sqrt(s) + self.eps)


class RMSprop:
    """torch.optim.RMSprop(lr, alpha=rho, eps): a decaying average of g² instead of a sum,
    s ← ρ·s + (1−ρ)·g²;  p ← p − lr·g / (√s + eps)  (eps outside the root, as torch has it)."""

    def __init__(self, lr, rho, eps):
        self.lr, self.rho, self.eps = lr, rho, eps
        self.mean_squares = None

    def step(self, params, grads):
        if self.mean_squares is None:
            self.mean_squares = [np.zeros_like(p) for p in params]
        for p, g, s in zip(params, grads, self.mean_squares, strict=True):
            s *= self.rho
            s += (1 - self.rho) * g * g
            p -= self.lr * g / (np.sqrt(s) + self.eps)


class Adam:
    """torch.optim.Adam(lr, betas=(β1, β2), eps): momentum on g and RMSprop's scaling, both
    bias-corrected for their zero start:  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
    p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + eps)."""

    def __init__(self, lr, beta1, beta2, eps):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 0
        self.m = self.v = None

    def step(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        assert self.v is not None  # set together with self.m
        self.t += 1
        step_size = self.lr / (1 - self.beta1**self.t)
        root_correction = (1 - self.beta2**self.t) ** 0.5
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            m += (g - m) * (1 - self.beta1)
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= step_size * m / (np.sqrt(v) / root_correction + self.eps)


class Nadam:
    """torch.optim.NAdam(lr, betas, eps, momentum_decay): Adam with a Nesterov look-ahead.

    Dozat's momentum schedule μₜ = β1·(1 − ½·0.96^(t·momentum_decay)), torch's default
    momentum_decay = 0.004; the step mixes the current gradient and the next step's momentum:
    p ← p − lr·(1−μₜ)/(1−Πμ₁..ₜ)·g/d − lr·μₜ₊₁/(1−Πμ₁..ₜ₊₁)·m/d,  d = √(v/(1−β2ᵗ)) + eps.

    Keras 3's Nadam (keras/src/optimizers/nadam.py) uses μₜ = β1·(1 − ½·0.96ᵗ), i.e. this
    formula with momentum_decay = 1, and eps = 1e-7 by default: its path is not torch's.
    """

    def __init__(self, lr, beta1, beta2, eps, momentum_decay=0.004):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.momentum_decay = momentum_decay
        self.t = 0
        self.mu_product = 1.0
        self.m = self.v = None

    def mu(self, t):
        return self.beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def step(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        assert self.v is not None  # set together with self.m
        self.t += 1
        mu, mu_next = self.mu(self.t), self.mu(self.t + 1)
        self.mu_product *= mu
        grad_weight = self.lr * (1.0 - mu) / (1.0 - self.mu_product)
        momentum_weight = self.lr * mu_next / (1.0 - self.mu_product * mu_next)
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            m += (g - m) * (1 - self.beta1)
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            denom = np.sqrt(v / (1 - self.beta2**self.t)) + self.eps
            p -= grad_weight * g / denom
            p -= momentum_weight * m / denom


class Adadelta:
    """torch.optim.Adadelta(lr, rho, eps): the step is g scaled by the ratio of two running
    RMS values, of past steps over past gradients, so it has the units of p and needs no
    learning rate (torch keeps lr, default 1, as a plain multiplier):
    s ← ρ·s + (1−ρ)·g²;  Δ = √(u + eps) / √(s + eps) · g;  u ← ρ·u + (1−ρ)·Δ²;  p ← p − lr·Δ.
    With u = 0 at the start, eps sets the size of the first step: √(eps/(1−ρ)) while g² ≫ eps.
    """

    def __init__(self, lr, rho, eps):
        self.lr, self.rho, self.eps = lr, rho, eps
        self.mean_squares = self.mean_deltas = None

    def step(self, params, grads):
        if self.mean_squares is None:
            self.mean_squares = [np.zeros_like(p) for p in params]
            self.mean_deltas = [np.zeros_like(p) for p in params]
        assert self.mean_deltas is not None  # set together with self.mean_squares
        for p, g, s, u in zip(params, grads, self.mean_squares, self.mean_deltas, strict=True):
            s *= self.rho
            s += (1 - self.rho) * g * g
            delta = np.sqrt(u + self.eps) / np.sqrt(s + self.eps) * g
            u *= self.rho
            u += (1 - self.rho) * delta * delta
            p -= self.lr * delta
