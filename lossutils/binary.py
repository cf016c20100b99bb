"""Binary classification losses: one Bernoulli or margin decision per output.

Labels are ``y`` in {0, 1} for the likelihood losses (cross-entropy, focal) and
``t`` in {-1, +1} for the margin losses (hinge, square, logistic, zero-one).
These functions are also available from :mod:`lossutils.classification`.
"""

from __future__ import annotations

import numpy as np  # noqa: F401

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_grad",
    "hinge_loss",
    "hinge_loss_grad",
    "squared_hinge_loss",
    "squared_hinge_loss_grad",
    "square_loss",
    "square_loss_grad",
    "logistic_loss",
    "logistic_loss_grad",
    "zero_one_loss",
]


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def binary_cross_entropy_grad(input, target, weight=None, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def binary_cross_entropy_with_logits_grad(
    input, target, weight=None, pos_weight=None, reduction="mean"
):
    """Not implemented yet."""
    raise NotImplementedError


def sigmoid_focal_loss(input, target, alpha=0.25, gamma=2.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def sigmoid_focal_loss_grad(input, target, alpha=0.25, gamma=2.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def hinge_loss(input, target, margin=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def hinge_loss_grad(input, target, margin=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def squared_hinge_loss(input, target, margin=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def squared_hinge_loss_grad(input, target, margin=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def square_loss(input, target, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def square_loss_grad(input, target, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def logistic_loss(input, target, base=2.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def logistic_loss_grad(input, target, base=2.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def zero_one_loss(input, target, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError
