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
from test_api import SAMPLES

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
