"""Entropies and divergences between distributions, and the ELBO."""

from __future__ import annotations

import numpy as np  # noqa: F401

__all__ = [
    "entropy",
    "categorical_cross_entropy",
    "categorical_cross_entropy_grad",
    "kl_divergence",
    "kl_divergence_grad",
    "kl_div",
    "kl_div_grad",
    "gaussian_kl",
    "gaussian_kl_grad",
    "vae_loss",
    "vae_loss_grad",
]


def entropy(p, axis=-1):
    """Not implemented yet."""
    raise NotImplementedError


def categorical_cross_entropy(p, q, axis=-1):
    """Not implemented yet."""
    raise NotImplementedError


def categorical_cross_entropy_grad(p, q, axis=-1):
    """Not implemented yet."""
    raise NotImplementedError


def kl_divergence(p, q, axis=-1):
    """Not implemented yet."""
    raise NotImplementedError


def kl_divergence_grad(p, q, axis=-1):
    """Not implemented yet."""
    raise NotImplementedError


def kl_div(input, target, reduction="mean", log_target=False):
    """Not implemented yet."""
    raise NotImplementedError


def kl_div_grad(input, target, reduction="mean", log_target=False):
    """Not implemented yet."""
    raise NotImplementedError


def gaussian_kl(mu, logvar, mu_prior=0.0, logvar_prior=0.0, axis=-1):
    """Not implemented yet."""
    raise NotImplementedError


def gaussian_kl_grad(mu, logvar, mu_prior=0.0, logvar_prior=0.0, axis=-1):
    """Not implemented yet."""
    raise NotImplementedError


def vae_loss(x, recon, mu, logvar, likelihood="bernoulli", reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def vae_loss_grad(x, recon, mu, logvar, likelihood="bernoulli", reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError
