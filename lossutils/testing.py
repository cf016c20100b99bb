"""Checks shared by the test suite and the chapters.

Three kinds of evidence that a number is right, each independent of the code
under test: central finite differences for gradients, a high-precision mpmath
reference measured in units in the last place (ULP), and agreement with a
SymPy expression evaluated numerically.

The accuracy contract of lossutils is checked by :func:`assert_close_to_exact`:
the result, in its own dtype (float16, float32 or float64), against the exact
value of the same rounded inputs (:func:`exact_inputs`), in ULP of that dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "numerical_gradient",
    "assert_gradient_matches",
    "ulp_error",
    "assert_ulp_close",
    "exact_inputs",
    "assert_close_to_exact",
    "assert_matches_sympy",
]


def numerical_gradient(f: Callable[..., float], args: Sequence, argnum: int = 0, h=None):
    """Central finite differences of a scalar function ``f(*args)`` w.r.t. ``args[argnum]``.

    The step defaults to ``eps**(1/3) * max(1, |x|)`` per entry, which balances
    truncation and rounding error (the error is then about ``eps**(2/3)``).

    Raises
    ------
    ValueError
        If ``args[argnum]`` does not convert to a float64 array (NumPy's message).
    TypeError
        If ``f(*args)`` is not a scalar (an array of more than one element).

    Examples
    --------
    >>> numerical_gradient(lambda x: float((x**2).sum()), [np.array([1.0, -2.0])]).round(6)
    array([ 2., -4.])
    """
    args = [np.array(a, dtype=np.float64) if i == argnum else a for i, a in enumerate(args)]
    x = args[argnum]
    grad = np.zeros_like(x)
    steps = (
        np.cbrt(np.finfo(np.float64).eps) * np.maximum(1.0, np.abs(x))
        if h is None
        else np.full_like(x, h)
    )
    for index in np.ndindex(x.shape):
        original = x[index]
        step = steps[index]
        x[index] = original + step
        upper = float(f(*args))
        x[index] = original - step
        lower = float(f(*args))
        x[index] = original
        grad[index] = (upper - lower) / (2 * step)
    return grad


def assert_gradient_matches(
    loss: Callable,
    grad: Callable,
    args: Sequence,
    argnums: Sequence[int] = (0,),
    kwargs: dict | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
):
    """Assert that ``grad(*args, **kwargs)`` equals finite differences of ``loss``.

    ``grad`` returns one array when ``argnums`` has one entry and a tuple otherwise
    (the convention of every ``*_grad`` in lossutils). The loss is summed, so a
    ``reduction="none"`` loss is checked as the gradient of its sum.

    Raises
    ------
    AssertionError
        If the gradient has the wrong number of arrays or shape, or disagrees with
        the finite differences beyond ``rtol`` and ``atol``.

    Examples
    --------
    >>> assert_gradient_matches(lambda x: (x**2).sum(), lambda x: 2 * x, [np.array([0.5, 3.0])])
    """
    kwargs = kwargs or {}
    analytic = grad(*args, **kwargs)
    if len(argnums) == 1:
        analytic = (analytic,)
    if len(analytic) != len(argnums):
        raise AssertionError(f"grad returned {len(analytic)} arrays for {len(argnums)} arguments")
    for argnum, computed in zip(argnums, analytic, strict=True):
        numeric = numerical_gradient(
            lambda *a: np.sum(loss(*a, **kwargs), dtype=np.float64), args, argnum
        )
        computed = np.asarray(computed, dtype=np.float64)
        if computed.shape != numeric.shape:
            raise AssertionError(
                f"gradient w.r.t. argument {argnum} has shape {computed.shape}, "
                f"expected {numeric.shape}"
            )
        np.testing.assert_allclose(
            computed,
            numeric,
            rtol=rtol,
            atol=atol,
            err_msg=f"gradient w.r.t. argument {argnum} disagrees with finite differences",
        )


def ulp_error(actual, reference, dtype=np.float64) -> np.ndarray:
    """``|actual - reference|`` in units of the last place of ``reference`` on ``dtype``'s grid.

    ``reference`` may hold mpmath numbers (or anything ``mpmath.mpf`` accepts) at
    higher precision than ``dtype``; the difference is taken at that precision
    before rounding, so the reference's own rounding does not count. The unit is
    the spacing of ``dtype`` at the reference rounded to ``dtype`` (at least the
    dtype's smallest subnormal). ``dtype`` is float64 by default; pass
    ``actual.dtype`` (or use :func:`assert_close_to_exact`) to measure a float16 or
    float32 result in its own ULP. Equal infinities count as 0 ULP (also a
    reference beyond the dtype's range against an infinity of its sign), NaN
    against a number as infinitely many.

    Raises
    ------
    ValueError
        If ``dtype`` is not float16, float32 or float64.

    Examples
    --------
    >>> import mpmath
    >>> float(ulp_error(0.1, mpmath.mpf(1) / 10))
    0.0
    >>> round(float(ulp_error(np.float16(0.1), mpmath.mpf(1) / 10, np.float16)), 3)
    0.4
    """
    import mpmath

    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float16, float32 or float64; got {dtype}")
    actual = np.asarray(actual, dtype=np.float64)
    reference = np.asarray(reference, dtype=object)
    if reference.shape != actual.shape:
        reference = np.broadcast_to(reference, actual.shape)
    out = np.empty(actual.shape, dtype=np.float64)
    kind = dtype.type
    tiny = float(np.nextafter(kind(0), kind(1)))
    with mpmath.workprec(2000), np.errstate(over="ignore"):
        for index in np.ndindex(actual.shape):
            a, r = float(actual[index]), mpmath.mpf(reference[index])
            if mpmath.isnan(r) or np.isnan(a):
                out[index] = 0.0 if (mpmath.isnan(r) and np.isnan(a)) else np.inf
                continue
            rounded = float(kind(float(r)))  # the reference on the dtype's grid (maybe inf)
            if mpmath.isinf(r) or np.isinf(a) or np.isinf(rounded):
                out[index] = 0.0 if rounded == a else np.inf
            else:
                unit = max(float(np.spacing(kind(abs(rounded)))), tiny)
                out[index] = float(abs(mpmath.mpf(a) - r) / unit)
    return out


def assert_ulp_close(
    actual, reference, max_ulp: float = 4.0, label: str = "", dtype=np.float64
) -> float:
    """Assert every entry of ``actual`` is within ``max_ulp`` of ``reference``; return the worst.

    ULP on ``dtype``'s grid, as in :func:`ulp_error` (float64 by default).

    Raises
    ------
    AssertionError
        If an entry is more than ``max_ulp`` from the reference (the message names
        the worst entry, its value and the reference).

    Examples
    --------
    >>> import mpmath
    >>> assert_ulp_close(np.log1p(1e-20), mpmath.log1p(mpmath.mpf("1e-20")))
    0.0
    """
    errors = ulp_error(actual, reference, dtype)
    worst = float(np.max(errors)) if errors.size else 0.0
    if not worst <= max_ulp:
        index = np.unravel_index(int(np.argmax(errors)), errors.shape) if errors.ndim else ()
        unit = "" if np.dtype(dtype) == np.float64 else f" ({np.dtype(dtype).name})"
        raise AssertionError(
            f"{label + ': ' if label else ''}{worst:.3g} ULP{unit} > {max_ulp} at index {index}: "
            f"got {np.asarray(actual, dtype=np.float64)[index]!r}, "
            f"expected {np.asarray(reference, dtype=object)[index]}"
        )
    return worst


def exact_inputs(*arrays):
    """The exact values of already rounded inputs, as object arrays of ``mpmath.mpf``.

    A float16, float32 or float64 number converts to ``mpf`` without rounding, so a
    reference computed from these is the exact result *of the rounded inputs* the
    function under test received: its error is then the function's own, not the
    rounding of its inputs. Returns one array, or a tuple for several.

    Integers (and booleans) convert exactly too, also beyond 2^53.

    Raises
    ------
    ValueError
        If an array is not of a real numeric dtype (complex, long double, text, dates,
        objects): its position, and the dtype given.

    Examples
    --------
    >>> x = np.float32([0.1])
    >>> exact_inputs(x)[0] == 0.1
    False
    >>> exact_inputs([2**60 + 1])[0] == 2**60 + 1
    True
    """
    import mpmath

    out = []
    for position, a in enumerate(arrays):
        a = np.asarray(a)
        if a.dtype.kind not in "biuf" or (a.dtype.kind == "f" and a.dtype.itemsize > 8):
            # (a complex number's imaginary part would be dropped, with a ComplexWarning; a
            # long double rounded to float64)
            raise ValueError(
                f"exact_inputs: argument {position} must be real numbers (bool, integer, "
                f"float16, float32 or float64); got dtype {a.dtype}"
            )
        exact = int if a.dtype.kind in "biu" else float  # (each exact for its kind)
        values = np.empty(a.shape, dtype=object)
        # (mpf rounds an integer to the working precision: 64 bits hold every int64, uint64)
        with mpmath.workprec(64):
            for index in np.ndindex(a.shape):
                values[index] = mpmath.mpf(exact(a[index]))
        out.append(values)
    return out[0] if len(out) == 1 else tuple(out)


def assert_close_to_exact(actual, reference, max_ulp: float = 4.0, label: str = "") -> float:
    """The accuracy contract: ``actual`` within ``max_ulp`` ULP *of its own dtype* of ``reference``.

    ``actual`` must be a float16, float32 or float64 array (or NumPy scalar): the result of
    the function under test, whose dtype is the output dtype. ``reference`` holds the exact
    values (mpmath, at a precision well above float64) computed from the same rounded
    inputs (see :func:`exact_inputs`). Returns the worst distance found, in ULP of the
    output dtype: a float16 result that is the correctly rounded exact value is within
    0.5, whatever the float64 digits of an intermediate were.

    Raises
    ------
    ValueError
        If ``actual`` is not a float16, float32 or float64 result.
    AssertionError
        If an entry is more than ``max_ulp`` ULP of that dtype from the reference.

    Examples
    --------
    >>> import mpmath
    >>> x = np.float16([3.0])
    >>> with mpmath.workdps(40):
    ...     exact = [mpmath.log1p(mpmath.exp(v)) for v in exact_inputs(x)]
    >>> assert_close_to_exact(np.float16([3.049]), exact, max_ulp=1) <= 1
    True
    """
    dtype = np.asarray(actual).dtype
    if dtype not in (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"actual must be a float16, float32 or float64 result; got dtype {dtype}")
    return assert_ulp_close(actual, reference, max_ulp, label, dtype)


def assert_matches_sympy(expr, symbols: Sequence, values: Sequence, actual, rtol=1e-12, atol=0.0):
    """Assert that a SymPy expression evaluated at ``values`` equals ``actual``.

    ``symbols`` and ``values`` pair up; each value may be an array. The
    expression is evaluated elementwise by :func:`lossutils.symbolic.to_numpy`
    (which knows the book's SymPy ``sigmoid`` and ``softplus``), in float64: keep
    the values where the formula does not cancel, and compare the extremes with
    :func:`assert_ulp_close` against a high-precision reference instead.

    Raises
    ------
    AssertionError
        If ``actual`` differs from the evaluated expression beyond ``rtol`` and ``atol``.

    Examples
    --------
    >>> import sympy as sp
    >>> x = sp.Symbol("x")
    >>> assert_matches_sympy(2 * x, [x], [np.array([1.0, 2.0])], np.array([2.0, 4.0]))
    """
    from .symbolic import to_numpy

    f = to_numpy(expr, symbols)
    expected = np.broadcast_to(np.asarray(f(*values), dtype=np.float64), np.shape(actual))
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        expected,
        rtol=rtol,
        atol=atol,
        err_msg=f"lossutils disagrees with the SymPy expression {expr}",
    )
