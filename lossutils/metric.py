"""Metric-learning losses on embeddings."""

from __future__ import annotations

import numpy as np  # noqa: F401

__all__ = [
    "contrastive_loss",
    "contrastive_loss_grad",
    "triplet_margin_loss",
    "triplet_margin_loss_grad",
    "nt_xent_loss",
    "nt_xent_loss_grad",
]


def contrastive_loss(x1, x2, target, margin=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def contrastive_loss_grad(x1, x2, target, margin=1.0, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def triplet_margin_loss(
    anchor,
    positive,
    negative,
    margin=1.0,
    p=2.0,
    eps=1e-6,
    swap=False,
    squared=False,
    reduction="mean",
):
    """Not implemented yet."""
    raise NotImplementedError


def triplet_margin_loss_grad(
    anchor,
    positive,
    negative,
    margin=1.0,
    p=2.0,
    eps=1e-6,
    swap=False,
    squared=False,
    reduction="mean",
):
    """Not implemented yet."""
    raise NotImplementedError


def nt_xent_loss(z1, z2, temperature=0.5, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError


def nt_xent_loss_grad(z1, z2, temperature=0.5, reduction="mean"):
    """Not implemented yet."""
    raise NotImplementedError
