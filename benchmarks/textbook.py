"""The textbook NumPy formulas: what a reader writes straight from the definitions.

No shift by the maximum, no ``log1p``/``expm1``: these are the baselines that the
benchmark compares lossutils with, for accuracy and for speed. Each function
returns per-element (or per-row) values; each ``*_grad`` the gradient of their sum.
The gradient builders take the activation to use, so that the same textbook
gradient (e.g. softmax minus one-hot) can be fed SciPy's stable activations too.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    """:math:`1 / (1 + e^{-x})`."""
    return 1 / (1 + np.exp(-x))


def softmax(z):
    """:math:`e^{z_k} / \\sum_j e^{z_j}` over the last axis, unshifted."""
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def logsumexp(z):
    """:math:`\\log \\sum_k e^{z_k}` over the last axis."""
    return np.log(np.sum(np.exp(z), axis=-1))


def log_softmax(z):
    """:math:`\\log \\operatorname{softmax}(z)`."""
    return np.log(softmax(z))


def softplus(x):
    """:math:`\\log(1 + e^{x})`."""
    return np.log(1 + np.exp(x))


def log_sigmoid(x):
    """:math:`\\log \\sigma(x)`."""
    return np.log(sigmoid(x))


def binary_cross_entropy_with_logits(x, y):
    """:math:`-[y \\log p + (1 - y) \\log(1 - p)]` with :math:`p = \\sigma(x)`."""
    p = sigmoid(x)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def take_labels(values, y):
    """``values[..., y]`` row by row: the entry of each row's label."""
    return np.take_along_axis(values, y[..., None], axis=-1)[..., 0]


def cross_entropy(z, y):
    """:math:`-\\log \\operatorname{softmax}(z)_y` for integer labels ``y``."""
    return -np.log(take_labels(softmax(z), y))


def huber_loss(x, y, delta=1.0):
    """:math:`d^2/2` for :math:`|d| \\le \\delta`, else :math:`\\delta(|d| - \\delta/2)`."""
    d = x - y
    return np.where(np.abs(d) <= delta, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))


def huber_loss_grad(x, y, delta=1.0):
    """:math:`\\operatorname{clip}(d, -\\delta, \\delta)` with respect to ``x``."""
    return np.clip(x - y, -delta, delta)


def log_cosh_loss(x, y):
    """:math:`\\log \\cosh(x - y)`."""
    return np.log(np.cosh(x - y))


def log_cosh_loss_grad(x, y):
    """:math:`\\tanh(x - y)` with respect to ``x``."""
    return np.tanh(x - y)


def gaussian_kl(mu, logvar):
    """Kingma and Welling's :math:`-\\frac12 \\sum (1 + \\log\\sigma^2 - \\mu^2 - \\sigma^2)`."""
    return -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar), axis=-1)


def gaussian_kl_grad(mu, logvar):
    """:math:`(\\mu, (\\sigma^2 - 1)/2)` with respect to ``(mu, logvar)``."""
    return mu.copy(), 0.5 * (np.exp(logvar) - 1)


def sum_log_softmax_grad(softmax_fn):
    """Gradient of :math:`\\sum_k \\log \\operatorname{softmax}(z)_k`: :math:`1 - C\\,p`."""

    def grad(z):
        return 1 - z.shape[-1] * softmax_fn(z)

    return grad


def softmax_minus_onehot(softmax_fn):
    """Gradient of the summed cross-entropy: :math:`\\operatorname{softmax}(z) - e_y`."""

    def grad(z, y):
        p = softmax_fn(z)
        rows = np.take_along_axis(p, y[..., None], axis=-1)
        np.put_along_axis(p, y[..., None], rows - 1, axis=-1)
        return p

    return grad


def sigmoid_minus_target(sigmoid_fn):
    """Gradient of the summed binary cross-entropy with logits: :math:`\\sigma(x) - y`."""

    def grad(x, y):
        return sigmoid_fn(x) - y

    return grad


def sigmoid_of_minus(sigmoid_fn):
    """Derivative of :math:`\\log \\sigma(x)`: :math:`\\sigma(-x)`."""

    def grad(x):
        return sigmoid_fn(-x)

    return grad
