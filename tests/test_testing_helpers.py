"""The chapters' and tests' own helpers in lossutils.testing: exact inputs."""

import re
import warnings

import mpmath
import numpy as np
import pytest

from lossutils.testing import exact_inputs


def test_floats_convert_exactly():
    x = np.float32([0.1, -3.4e38, 1e-45])
    exact = exact_inputs(x)
    # the float32 roundings, not the decimal values
    assert [mpmath.mpf(float(v)) for v in x] == list(exact)
    assert exact[0] != mpmath.mpf("0.1")
    assert exact[0] == mpmath.mpf(13421773) / 2**27


@pytest.mark.parametrize(
    "value, dtype",
    [(2**64 - 1, np.uint64), (-(2**63), np.int64), (2**53 + 1, np.int64), (True, np.bool_)],
)
def test_integers_convert_exactly_beyond_2_53(value, dtype):
    exact = exact_inputs(np.array([value], dtype=dtype))[0]
    assert int(exact) == int(value)
    assert exact - int(value) == 0


@pytest.mark.parametrize(
    "bad",
    [
        np.array([1 + 2j]),
        np.array(["1.0"]),
        np.array(["2020-01-01"], dtype="datetime64[D]"),
        np.array([1.0], dtype=object),
    ],
    ids=["complex", "text", "dates", "objects"],
)
def test_other_dtypes_are_refused_by_position_and_dtype(bad):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (complex input warned, ComplexWarning, and lost i)
        with pytest.raises(
            ValueError, match=rf"argument 1 .*got dtype {re.escape(str(bad.dtype))}"
        ):
            exact_inputs(np.float64([1.0]), bad)


def test_a_long_double_wider_than_float64_is_refused():
    third = np.longdouble(1) / 3
    if np.finfo(np.longdouble).nmant > 52:  # (x86's 80-bit format: float() would round it)
        with pytest.raises(ValueError, match="argument 0 .*float64"):
            exact_inputs(np.array([third]))
    else:  # (float64 itself on some platforms: exact)
        assert exact_inputs(np.array([third]))[0] == mpmath.mpf(float(third))
