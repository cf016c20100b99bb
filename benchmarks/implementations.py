"""How each contender computes a function: a loss (per element or per row) and a gradient.

An :class:`Impl` pairs the values with the gradient of their sum (``None`` when the
contender has no gradient). PyTorch is optional: :func:`torch_impl` builds its
entry lazily, so nothing imports torch unless it is installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

import lossutils


@dataclass(frozen=True)
class Impl:
    """A function's per-element values and the gradient of their sum (``None``: none)."""

    loss: Callable
    grad: Callable | None = None


def lossutils_loss(name: str) -> Impl:
    """The lossutils loss ``name`` and ``name_grad`` with ``reduction="none"``."""
    return Impl(
        partial(getattr(lossutils, name), reduction="none"),
        partial(getattr(lossutils, f"{name}_grad"), reduction="none"),
    )


def torch_available() -> bool:
    """Whether PyTorch can be imported (it is optional)."""
    return importlib.util.find_spec("torch") is not None


def _to_torch(torch, array, requires_grad):
    tensor = torch.from_numpy(np.array(array, copy=True))
    return tensor.requires_grad_() if requires_grad else tensor


def torch_impl(body: Callable, differentiable=(0,)) -> Impl:
    """A PyTorch CPU entry from ``body(torch, *tensors)``; the gradient comes from autograd.

    ``differentiable`` lists the argument positions whose gradients are returned
    (one array for one position, a tuple otherwise), as lossutils' ``*_grad`` do.
    """

    def loss(*args):
        import torch

        with torch.no_grad():
            return body(torch, *(_to_torch(torch, a, False) for a in args)).numpy()

    def grad(*args):
        import torch

        tensors = [_to_torch(torch, a, i in differentiable) for i, a in enumerate(args)]
        body(torch, *tensors).sum().backward()
        grads = tuple(tensors[i].grad.numpy() for i in differentiable)
        return grads[0] if len(grads) == 1 else grads

    return Impl(loss, grad)


def torch_loss(name: str) -> Impl:
    """The PyTorch loss ``torch.nn.functional.<name>`` with ``reduction="none"``."""
    return torch_impl(lambda t, *args: getattr(t.nn.functional, name)(*args, reduction="none"))
