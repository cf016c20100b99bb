"""Shared helpers of the conformance suite: lossutils next to PyTorch, torchvision, JAX and optax.

Every comparison runs the other library for real, in the dtype under test: values and
gradients (autograd of the summed output, the convention of lossutils' ``_grad`` functions).
"""

import importlib
import importlib.util
import sys
import types
import zlib

import jax
import mpmath
import numpy as np
import pytest
import torch

# float64 in JAX too; otherwise jax.numpy silently computes in float32.
jax.config.update("jax_enable_x64", True)
# Reference values: 50 digits, for every test alike (mpmath's precision is global).
mpmath.mp.dps = 50

DTYPES = [np.float64, np.float32]
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}
# Both sides round differently (another summation order, another formula for the same
# function), so the tolerance is a small multiple of the working precision.
RTOL = {np.float64: 1e-11, np.float32: 2e-5}
ATOL = {np.float64: 1e-13, np.float32: 1e-6}


@pytest.fixture(params=DTYPES, ids=["float64", "float32"])
def dtype(request):
    return request.param


def tt(x, dtype=None, grad=False):
    """A torch tensor of a NumPy array (float arrays in ``dtype``), optionally a leaf."""
    a = np.asarray(x)
    if dtype is not None and np.issubdtype(a.dtype, np.floating):
        a = a.astype(dtype)
    t = torch.from_numpy(a.copy())
    if grad:
        t.requires_grad_(True)
    return t


def torch_run(fn, args, grad_args=()):
    """Run ``fn`` on torch tensors; return its value and the gradients of its sum.

    ``args`` are tensors; ``grad_args`` the indices of those that need gradients.
    """
    out = fn(*args)
    value = out.detach().numpy()
    if not grad_args:
        return value, []
    grads = torch.autograd.grad(out.sum(), [args[i] for i in grad_args], allow_unused=True)
    return value, [
        np.zeros(args[i].shape, value.dtype) if g is None else g.numpy()
        for i, g in zip(grad_args, grads, strict=True)
    ]


def assert_close(actual, expected, dtype, rtol=None, atol=None):
    """Same shape, the dtype under test, and equal to within the working precision."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    np.testing.assert_allclose(
        actual,
        expected,
        rtol=RTOL[dtype] if rtol is None else rtol,
        atol=ATOL[dtype] if atol is None else atol,
        equal_nan=True,
    )


def load_torchvision_ops():
    """``torchvision.ops``, also where torchvision's compiled operators cannot load.

    The torchvision wheel on the package index is linked against PyTorch's CUDA libraries
    (libc10_cuda, libtorch_cuda), which the CPU build of PyTorch does not ship; importing the
    package then fails while it registers its compiled operators (``operator torchvision::nms
    does not exist``). ``torchvision.ops.sigmoid_focal_loss`` is plain Python on top of
    ``torch``, so in that case the installed package directory is imported without running its
    ``__init__`` (which loads the compiled part), and ``torchvision.ops`` comes from the
    installed files unchanged.
    """
    try:
        return importlib.import_module("torchvision.ops")
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    spec = importlib.util.find_spec("torchvision")
    package = types.ModuleType("torchvision")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["torchvision"] = package
    return importlib.import_module("torchvision.ops")


@pytest.fixture
def rng(request):
    """A generator seeded by the test's own id: the same data whichever tests ran before."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
