"""Classification losses: Bernoulli, categorical and margin-based.

The categorical (softmax) losses live here; the binary ones are defined in
:mod:`lossutils.binary` and re-exported, so that every classification loss can
be imported from this module.
"""

from __future__ import annotations

import numpy as np  # noqa: F401

from .binary import (  # noqa: F401  (re-exported)
    binary_cross_entropy,
    binary_cross_entropy_grad,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    hinge_loss,
    hinge_loss_grad,
    logistic_loss,
    logistic_loss_grad,
    sigmoid_focal_loss,
    sigmoid_focal_loss_grad,
    square_loss,
    square_loss_grad,
    squared_hinge_loss,
    squared_hinge_loss_grad,
    zero_one_loss,
)

__all__ = [
    "nll_loss",
    "nll_loss_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "softmax_focal_loss",
    "softmax_focal_loss_grad",
    "multiclass_hinge_loss",
    "multiclass_hinge_loss_grad",
    "multi_margin_loss",
    "multi_margin_loss_grad",
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


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def nll_loss_grad(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def cross_entropy(
    input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    """Not implemented yet."""
    raise NotImplementedError


def cross_entropy_grad(
    input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    """Not implemented yet."""
    raise NotImplementedError


def softmax_focal_loss(input, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def softmax_focal_loss_grad(
    input, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"
):
    """Not implemented yet."""
    raise NotImplementedError


def multiclass_hinge_loss(input, target, margin=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def multiclass_hinge_loss_grad(input, target, margin=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def multi_margin_loss_grad(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError
