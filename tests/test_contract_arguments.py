"""Bad arguments, uniformly over every public loss: a ValueError naming the argument.

Each array argument of the sample calls of ``test_api`` is replaced by a value no loss
accepts (None, dates, complex numbers, text); each flag by a non-bool. The error must be a
``ValueError`` whose message names the argument, never NumPy's own exception (a
``DTypePromotionError`` for dates, "the truth value of an array is ambiguous" for an
array flag) or a ``KeyError``.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from test_api import SAMPLES, _assert_identical

import lossutils

SUFFIXES = ("", "_grad", "_value_and_grad")
CASES = [
    (name, position)
    for name, (args, _) in sorted(SAMPLES.items())
    for position, arg in enumerate(args)
    if isinstance(arg, np.ndarray)
]
BAD = {
    "None": lambda a: None,
    "datetime64": lambda a: np.zeros(a.shape, "datetime64[s]"),
    "complex": lambda a: a.astype(complex),
    "str": lambda a: a.astype(str),
}


@pytest.mark.parametrize(("name", "position"), CASES)
@pytest.mark.parametrize("bad", sorted(BAD))
def test_a_bad_array_is_a_value_error_naming_it(name, position, bad):
    args, _ = SAMPLES[name]
    argument = list(inspect.signature(getattr(lossutils, name)).parameters)[position]
    args = args[:position] + (BAD[bad](args[position]),) + args[position + 1 :]
    for suffix in SUFFIXES:
        with pytest.raises(ValueError, match=rf"\b{argument}\b"):
            getattr(lossutils, name + suffix)(*args)


FLAGS = [
    ("gaussian_nll_loss", "full"),
    ("laplace_nll_loss", "full"),
    ("poisson_nll_loss", "full"),
    ("poisson_nll_loss", "log_input"),
    ("triplet_margin_loss", "swap"),
    ("triplet_margin_loss", "squared"),
    ("kl_div", "log_target"),
    ("ctc_loss", "zero_infinity"),
]


@pytest.mark.parametrize(("name", "flag"), FLAGS)
@pytest.mark.parametrize("value", ["yes", None, np.ones(2), 1])
def test_a_flag_that_is_not_a_bool_is_a_value_error_naming_it(name, flag, value):
    args, _ = SAMPLES[name]
    for suffix in SUFFIXES:
        with pytest.raises(ValueError, match=rf"^{flag} must be True or False"):
            getattr(lossutils, name + suffix)(*args, **{flag: value})


@pytest.mark.parametrize("value", ["yes", None, np.ones(2), 1])
def test_logsumexp_keepdims_must_be_a_bool(value):
    with pytest.raises(ValueError, match=r"^keepdims must be True or False"):
        lossutils.logsumexp(np.zeros((2, 3)), keepdims=value)


@pytest.mark.parametrize(
    ("name", "choice"),
    [("ddpm_noise_loss", "weighting"), ("vae_loss", "likelihood"), ("mse_loss", "reduction")],
)
@pytest.mark.parametrize("value", [np.array(["elbo", "mean"]), ["mean"], None, b"mean"])
def test_a_choice_that_is_not_a_string_is_a_value_error_naming_it(name, choice, value):
    args, _ = SAMPLES[name]
    for suffix in SUFFIXES:
        with pytest.raises(ValueError, match=rf"^{choice} must be one of"):
            getattr(lossutils, name + suffix)(*args, **{choice: value})


def _layouts(array):
    """``array`` in Fortran order, as a strided view, and read-only (same values)."""
    readonly = array.copy()
    readonly.setflags(write=False)
    return {
        "fortran": np.asfortranarray(array),
        "strided": np.repeat(array[..., None], 2, axis=-1)[..., 0],
        "readonly": readonly,
    }


def _long_rows(name, dtype):
    """Arguments of 64 rows of 100 entries for the losses whose rows are reduced (matrix
    products, row dot products, sums along the class or latent axis: their BLAS kernels and
    pairwise sums group the terms by the layout); None for the others."""
    rng = np.random.default_rng(0)
    rows = [rng.normal(size=(64, 100)).astype(dtype) for _ in range(3)]
    labels = rng.integers(0, 100, size=64)
    embeddings = {"clip_loss": 2, "info_nce_loss": 2, "nt_xent_loss": 2, "siglip_loss": 2}
    if name in embeddings:
        return tuple(rows[: embeddings[name]])
    return {
        "triplet_margin_loss": tuple(rows),
        "cosine_embedding_loss": (*rows[:2], np.where(labels % 2 == 0, 1.0, -1.0)),
        "cross_entropy": (3 * rows[0], labels),
        "softmax_focal_loss": (3 * rows[0], labels),
        "gaussian_kl": tuple(rows[:2]),
    }.get(name)


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["fortran", "strided", "readonly"])
def test_the_layout_of_the_arguments_does_not_change_the_bits(name, dtype, layout):
    args, _ = SAMPLES[name]
    args = tuple(
        a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a for a in args
    )
    args = _long_rows(name, dtype) or args
    moved = tuple(_layouts(a)[layout] if isinstance(a, np.ndarray) else a for a in args)
    copies = [np.copy(a) for a in moved]
    for suffix in SUFFIXES:
        expected = getattr(lossutils, name + suffix)(*args)
        actual = getattr(lossutils, name + suffix)(*moved)
        _assert_identical(actual, expected, f"{name}{suffix}, {layout}")
    for copy, array in zip(copies, moved, strict=True):
        np.testing.assert_array_equal(copy, array)  # not modified in place


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["fortran", "strided", "readonly"])
def test_the_layout_of_the_rows_does_not_change_the_row_functions(name, dtype, layout):
    x = 3 * np.random.default_rng(1).normal(size=(64, 100)).astype(dtype)
    probabilities = lossutils.softmax(x[::-1])
    f = getattr(lossutils, name)
    _assert_identical(f(_layouts(x)[layout]), f(x), f"{name}, {layout}")
    # along the first axis: the transposed rows
    expected = np.moveaxis(f(x), -1, 0)  # (logsumexp: one number per row)
    _assert_identical(f(_layouts(x.T)[layout], axis=0), expected, f"{name}, axis 0, {layout}")
    # cross-entropy with probability targets: both arguments' rows
    moved = _layouts(x)[layout], _layouts(probabilities)[layout]
    for suffix in SUFFIXES:
        ce = getattr(lossutils, "cross_entropy" + suffix)
        _assert_identical(ce(*moved), ce(x, probabilities), f"cross_entropy{suffix}, {layout}")
