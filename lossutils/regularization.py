"""Weight penalties: the negative log of a prior on the parameters."""

from __future__ import annotations

import numpy as np  # noqa: F401

__all__ = ["l2_penalty", "l2_penalty_grad", "l1_penalty", "l1_penalty_grad"]


def l2_penalty(params, lam):
    """Not implemented yet."""
    raise NotImplementedError


def l2_penalty_grad(params, lam):
    """Not implemented yet."""
    raise NotImplementedError


def l1_penalty(params, lam):
    """Not implemented yet."""
    raise NotImplementedError


def l1_penalty_grad(params, lam):
    """Not implemented yet."""
    raise NotImplementedError
