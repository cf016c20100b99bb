"""How each contender computes a function: a loss (per element or per row) and a gradient.

An :class:`Impl` pairs the values with the gradient of their sum (``None`` when the
contender has no gradient), and says how the contender does one training step (the
value and the gradient together): lossutils with ``X_value_and_grad``, PyTorch with
one forward pass recording the graph and one backward pass, JAX with
``jax.value_and_grad``; the textbook formulas call the loss, then the gradient.
PyTorch and JAX are optional: :func:`torch_impl` and :func:`jax_impl` build their
entries lazily, so nothing imports torch or jax unless it is installed (both are in
the conformance environment, where ``make bench`` runs).
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

import lossutils


@dataclass(frozen=True)
class Impl:
    """A function's per-element values and the gradient of their sum (``None``: none).

    ``step`` computes both in one call, as the contender does in a training loop
    (``None``: the loss, then the gradient). ``training_step`` is that call with the
    mean over the batch, the reduction a training loop uses (``None``: ``step``).
    """

    loss: Callable
    grad: Callable | None = None
    step: Callable | None = None
    training_step: Callable | None = None


def _lossutils(name: str, **kwargs) -> Callable:
    return partial(getattr(lossutils, name), **kwargs)


def lossutils_impl(name: str, **kwargs) -> Impl:
    """The lossutils function ``name`` with ``name_grad`` and ``name_value_and_grad``."""
    return Impl(
        _lossutils(name, **kwargs),
        _lossutils(f"{name}_grad", **kwargs),
        _lossutils(f"{name}_value_and_grad", **kwargs),
    )


def lossutils_loss(name: str) -> Impl:
    """The lossutils loss ``name`` with ``reduction="none"``, its gradient and its steps.

    A loss without a ``reduction`` argument (a divergence summed over an axis, a penalty)
    is :func:`lossutils_impl`: its one form is both.
    """
    if "reduction" not in inspect.signature(getattr(lossutils, name)).parameters:
        return lossutils_impl(name)
    impl = lossutils_impl(name, reduction="none")
    mean_step = _lossutils(f"{name}_value_and_grad", reduction="mean")
    return Impl(impl.loss, impl.grad, impl.step, mean_step)


def torch_available() -> bool:
    """Whether PyTorch can be imported (it is optional)."""
    return importlib.util.find_spec("torch") is not None


def jax_available() -> bool:
    """Whether JAX and optax can be imported (they are optional)."""
    return all(importlib.util.find_spec(name) is not None for name in ("jax", "optax"))


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

    def step(*args):
        import torch

        tensors = [_to_torch(torch, a, i in differentiable) for i, a in enumerate(args)]
        values = body(torch, *tensors)
        values.sum().backward()
        grads = tuple(tensors[i].grad.numpy() for i in differentiable)
        return values.detach().numpy(), grads[0] if len(grads) == 1 else grads

    def grad(*args):
        return step(*args)[1]

    return Impl(loss, grad, step)


def torch_loss(name: str, differentiable=(0,), **kwargs) -> Impl:
    """The PyTorch loss ``torch.nn.functional.<name>`` with ``reduction="none"``."""
    return torch_impl(
        lambda t, *args: getattr(t.nn.functional, name)(*args, reduction="none", **kwargs),
        differentiable,
    )


def torchvision_loss(name: str) -> Impl:
    """The loss ``torchvision.ops.<name>`` with ``reduction="none"``.

    torchvision's package index wheel may fail to load its compiled operators next to the
    CPU build of PyTorch; its losses are plain PyTorch, so they are loaded as the
    conformance suite loads them.
    """

    def body(t, *args):
        return getattr(_torchvision_ops(), name)(*args, reduction="none")

    return torch_impl(body)


def _torchvision_ops():
    import mpmath

    from conformance.conftest import load_torchvision_ops

    digits = mpmath.mp.dps  # the conformance helpers set mpmath's global precision
    try:
        return load_torchvision_ops()
    finally:
        mpmath.mp.dps = digits


def _jax():
    """``jax`` with float64 enabled (float32 arrays stay float32), and ``optax``."""
    import jax
    import optax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    return jax, optax


def jax_impl(body: Callable, differentiable=(0,)) -> Impl:
    """A JAX CPU entry from ``body(jax, optax, *arrays)``: ``jax.jit`` of the values, and
    ``jax.jit(jax.grad(...))`` of their sum for the gradient.

    Results are waited for (``block_until_ready``) and returned as NumPy arrays, so a
    timing covers the whole computation. The first call of each traces and compiles:
    the speed benchmark's warm-up call pays for it.
    """
    compiled = {}

    def functions():
        if not compiled:
            jax, optax = _jax()

            def values(*args):
                return body(jax, optax, *args)

            compiled["loss"] = jax.jit(values)
            compiled["grad"] = jax.jit(
                jax.grad(lambda *args: values(*args).sum(), argnums=tuple(differentiable))
            )
            compiled["step"] = jax.jit(
                jax.value_and_grad(lambda *args: values(*args).sum(), argnums=tuple(differentiable))
            )
        return compiled

    def loss(*args):
        return np.asarray(functions()["loss"](*args).block_until_ready())

    def grad(*args):
        grads = tuple(np.asarray(g.block_until_ready()) for g in functions()["grad"](*args))
        return grads[0] if len(grads) == 1 else grads

    def step(*args):
        value, grads = functions()["step"](*args)
        grads = tuple(np.asarray(g.block_until_ready()) for g in grads)
        return np.asarray(value), grads[0] if len(grads) == 1 else grads

    return Impl(loss, grad, step)
