"""Regression losses: Gaussian, Laplace and robust likelihoods of a residual."""

from __future__ import annotations

import numpy as np  # noqa: F401

__all__ = [
    "mse_loss",
    "mse_loss_grad",
    "l1_loss",
    "l1_loss_grad",
    "huber_loss",
    "huber_loss_grad",
    "smooth_l1_loss",
    "smooth_l1_loss_grad",
    "log_cosh_loss",
    "log_cosh_loss_grad",
    "gaussian_nll_loss",
    "gaussian_nll_loss_grad",
    "laplace_nll_loss",
    "laplace_nll_loss_grad",
]


def mse_loss(input, target, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def mse_loss_grad(input, target, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def l1_loss(input, target, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def l1_loss_grad(input, target, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def huber_loss(input, target, delta=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def huber_loss_grad(input, target, delta=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def smooth_l1_loss(input, target, beta=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def smooth_l1_loss_grad(input, target, beta=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def log_cosh_loss(input, target, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def log_cosh_loss_grad(input, target, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def gaussian_nll_loss_grad(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def laplace_nll_loss(input, target, scale, full=False, eps=1e-6, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def laplace_nll_loss_grad(input, target, scale, full=False, eps=1e-6, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError
