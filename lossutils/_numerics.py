"""Careful floating-point kernels, each written once (private).

Every loss in lossutils is built from these. Each kernel states its domain, its
accuracy and why it is computed the way it is. "ULP" is a unit in the last place
of the result in the working dtype; "exact" means without any rounding error.
None of them emits a NumPy ``RuntimeWarning``: infinities and NaN in the result
carry the information. None of them checks its arguments (the public functions
do that in ``_checks``) or modifies an argument.
"""

from __future__ import annotations

import decimal
import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ._blocks import CHUNK, chunks, for_each_block, row_blocks

# --- warnings -------------------------------------------------------------------------------------


# NumPy 2 sets a fresh error state on each call of a function decorated with an errstate
# (NumPy 1 stores it on the shared errstate object, which nested calls overwrite).
_ERRSTATE_DECORATES_PER_CALL = int(np.__version__.split(".")[0]) >= 2


def quiet(function):
    """Run ``function`` with every floating-point warning off (a fresh ``errstate`` per call).

    No NumPy RuntimeWarning escapes: an overflow or a NaN shows in the result, and
    branches evaluated everywhere may overflow where they are not used. A new
    ``np.errstate`` is made on each call (one shared instance fails on re-entry).
    """

    if _ERRSTATE_DECORATES_PER_CALL:
        return np.errstate(all="ignore")(function)  # the same, without a Python wrapper

    @functools.wraps(function)
    def quiet_function(*args, **kwargs):
        with np.errstate(all="ignore"):
            return function(*args, **kwargs)

    return quiet_function


def underflow_ignored(function):
    """Run ``function`` with floating-point underflow ignored, whatever the caller's
    ``np.seterr`` says (NumPy's default ignores it already).

    Underflow is an expected outcome of the careful kernels (``exp`` of a large negative
    number, a product of tiny probabilities) and carries no information: the result is
    right. A caller's ``np.seterr(under="warn")`` or ``np.seterr(all="raise")`` must not
    turn it into a warning or a ``FloatingPointError`` from inside lossutils; the other
    categories are left as the caller set them (each kernel already silences those it
    expects). Every public function is wrapped once, in ``lossutils/__init__.py``.
    """
    if _ERRSTATE_DECORATES_PER_CALL:
        wrapped = np.errstate(under="ignore")(function)
    else:

        @functools.wraps(function)
        def wrapped(*args, **kwargs):
            with np.errstate(under="ignore"):
                return function(*args, **kwargs)

    wrapped.underflow_ignored = True
    return wrapped


# --- dtypes ---------------------------------------------------------------------------------------


def working_dtype(dtype) -> np.dtype:
    """The dtype a computation for output ``dtype`` runs in: float32 for float16, else ``dtype``.

    float16 has 11 significant bits and overflows at 65504: ``exp(12)``, a sum of 2^11 ones
    (it stops at 2048) or a count of 65520 already fail in it. Computed in float32 (24 bits,
    overflow at 3.4e38) and rounded once, a result of a few float32 ULP is within one
    float16 ULP of the exact value. float32 and float64 are computed in themselves.
    """
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def margin_parts(dtype, margin: float) -> tuple:
    """``(work, hi, lo)``: the working dtype of a hinge for output ``dtype`` and a scalar
    ``margin`` (a Python float), and the margin as ``hi + lo`` in it.

    Rounded to float32, a margin of 0.1 would move the kink of ``max(0, m - s)`` by 1.5e-9
    (a score there on the wrong side of it, and a gap next to it millions of ULP off). So
    ``hi`` is the margin rounded and ``lo`` its rounding error rounded (0 for a margin the
    dtype holds: 1, 0, 0.5, the usual ones): ``fl(fl(hi - s) + lo)`` is within about one
    ULP of ``m - s`` and has its sign (where ``hi - s`` cancels it is exact, elsewhere it
    is at least ``hi / 2``, far above ``lo``). A margin beyond the working dtype's range,
    or below 2^-97 (whose error would be rounded to a subnormal), makes the working dtype
    float64 (``lo`` = 0).
    """
    work = working_dtype(dtype)
    with np.errstate(over="ignore"):
        hi = work.type(margin)
    if np.isinf(hi) or (work == np.float32 and 0 < abs(margin) < 2.0**-97):
        work, hi = np.dtype(np.float64), np.float64(margin)
    return work, hi, work.type(margin - float(hi))


def to_dtype(value, dtype):
    """``value`` rounded once to ``dtype`` (no copy if it has it); overflow to inf is silent.

    The cast of a float32 result above 65504 to float16 is inf, the correctly rounded
    result; NumPy would warn about it.
    """
    dtype = np.dtype(dtype)
    value = np.asarray(value)
    if value.dtype == dtype:
        return value
    with np.errstate(over="ignore", invalid="ignore"):
        return value.astype(dtype)


# --- error-free transformations -------------------------------------------------------------------


def two_sum(a, b, minus=False, out=None, quiet=False):
    """``(s, err)`` with ``s = fl(a + b)`` and ``a + b == s + err`` exactly (Knuth's TwoSum).

    Domain: finite ``a``, ``b`` whose sum does not overflow; exact in any binary floating
    dtype with round-to-nearest (six operations, no branch, no ordering of ``|a|``,
    ``|b|``). Where ``s`` is infinite or NaN, ``err`` is NaN: callers keep ``s`` there.
    With ``minus``, the same for ``a - b`` (the TwoSum of ``a`` and ``-b``, without
    negating ``b``). ``out``: three arrays of the result's shape and dtype (for ``s``,
    ``err`` and a work array), reused by a caller from block to block instead of new ones.
    ``quiet``: the caller has turned warnings off already (a block loop saves the few
    microseconds of an ``errstate`` per call).
    """
    if quiet:
        return _two_sum(a, b, minus, out)
    with np.errstate(invalid="ignore", over="ignore"):
        return _two_sum(a, b, minus, out)


def _two_sum(a, b, minus, out):
    """The operations of :func:`two_sum`, in the caller's error state."""
    if out is None:
        s = a - b if minus else a + b
        back = s - a  # the part of s that came from b (or -b)
        if np.ndim(s) == 0:
            return s, (a - (s - back)) + ((-b if minus else b) - back)
        # the same operations in place: three arrays of the result's size, not six
        err = s - back
    else:
        s, err, back = out
        (np.subtract if minus else np.add)(a, b, out=s)
        np.subtract(s, a, out=back)
        np.subtract(s, back, out=err)
    np.subtract(a, err, out=err)
    if minus:
        back += b  # -((-b) - back)
        err -= back
    else:
        np.subtract(b, back, out=back)
        err += back
    return s, err


def float32_difference_into(a, b, out, spare):
    """``out = a - b`` in float64 (rounded once: exact unless the exponents of ``a`` and ``b``
    are more than 29 apart) of the float32 arrays ``a`` and ``b`` (one block).

    The float32 difference ``d`` is formed first: it is exact if and only if ``fl(d + b)
    == a`` and ``fl(a - d) == b``. (Its error ``e = a - b - d``, if not 0, is a multiple of
    the smaller of the ULPs of ``a`` and ``b``, so at least that ULP: ``b + e`` or ``a - e``
    then rounds to a number other than ``b`` or ``a``.) That is five float32 passes and a
    cast, cheaper than casting both to float64 first; the few differences that are not
    exact (and those of infinities or NaN) are formed in float64. ``spare``: two float32
    and two boolean arrays of the block's shape.
    """
    d, t, same, also = spare
    np.subtract(a, b, out=d)
    np.equal(np.add(d, b, out=t), a, out=same)
    np.equal(np.subtract(a, d, out=t), b, out=also)
    np.logical_and(same, also, out=same)
    np.copyto(out, d)
    if not np.logical_and.reduce(same):
        redo = np.flatnonzero(~same)
        out[redo] = a[redo].astype(np.float64) - b[redo]
    return out


def two_diff(a, b):
    """``(d, err)`` with ``d = fl(a - b)`` and ``a - b == d + err`` exactly (TwoSum of a, -b).

    ``err`` is 0 where ``d`` is not finite (so that adding it is harmless), and None
    when ``b`` is 0 everywhere: then the difference is exact and callers skip the
    correction.
    """
    if not np.any(b):
        return a - b, None
    d, err = two_sum(a, -b)
    return d, np.where(np.isfinite(d), err, 0)


def margin_gaps(x, pivot, margin, out=None):
    """``margin - pivot[:, None] + x`` for rows ``x`` (N, C), one pivot per row, in two passes.

    With ``pivot - margin = top + err`` exactly (:func:`two_diff`, on N numbers), the gap is
    ``fl(fl(x - top) - err)``. Where it cancels (``top / 2 <= x <= 2 top``) ``x - top`` is
    exact (Sterbenz), so the gap is rounded once; elsewhere ``|x - top| >= |top| / 2``
    while ``|err| <= eps |top| / 2``, so it is within about one ULP. Either way it has the
    sign of the exact gap of the given numbers, and is 0 only where that is 0: a hinge is
    active exactly when the exact gap is positive. NaN where ``x`` and ``top`` are equal
    infinities (or either is NaN). ``out`` may be ``x`` itself.
    """
    top, err = two_diff(pivot, margin)
    with np.errstate(invalid="ignore"):
        out = np.subtract(x, top[:, None], out=out)
        if err is not None:
            out -= err[:, None]
    return out


def clip_hinges(hinge):
    """``max(hinge, 0)`` in place for rows ``hinge`` (N, C); NaN stays.

    Compared with a row of zeros: NumPy's fast path (a scalar 0 is about twice as slow).
    """
    return np.maximum(hinge, np.zeros(hinge.shape[-1], hinge.dtype), out=hinge)


def active_hinges(hinge):
    """In place, for clipped hinges (>= 0 or NaN): 1 where positive, 0 where 0, NaN where NaN.

    ``np.sign`` of them, as three branch-free passes (``np.sign`` branches per element and
    is several times slower on mixed zeros and positives): two products by ``2^k``, with
    ``2^(2k)`` above the reciprocal of the smallest subnormal, lift every positive number to
    at least 1; the minimum with 1 follows.
    """
    tiny = np.finfo(hinge.dtype).smallest_subnormal
    factor = hinge.dtype.type(2.0 ** -((int(np.log2(tiny)) - 1) // 2))
    with np.errstate(over="ignore"):
        np.multiply(hinge, factor, out=hinge)
        np.multiply(hinge, factor, out=hinge)
    return np.minimum(hinge, np.ones(hinge.shape[-1], hinge.dtype), out=hinge)


# 2^27 + 1: splits a float64 into two halves of 26 and 27 bits whose products are exact.
_SPLITTER = 134217729.0


def two_prod(a, b):
    """``(p, err)`` with ``p = fl(a * b)`` and ``a * b == p + err`` exactly (Dekker's product).

    Float64 only (the splitter is 2^27 + 1), without a fused multiply-add: each factor is
    split into halves whose partial products are exact. Domain: ``|a|, |b| < 1e300`` (the
    split multiplies by 2^27) and no underflow in the partial products; elsewhere ``err``
    is meaningless and callers must not use it.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        p = a * b
        c = _SPLITTER * a
        a_hi = c - (c - a)
        a_lo = a - a_hi
        c = _SPLITTER * b
        b_hi = c - (c - b)
        b_lo = b - b_hi
        err = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return p, err


def accurate_sum(x: np.ndarray, axis: int):
    """Sum along ``axis`` as if in twice the working precision.

    Pairwise summation in which every addition also yields its exact rounding error
    (TwoSum); the errors are summed separately and added back (cascaded summation,
    Ogita, Rump and Oishi's Sum2 in pairwise order). The result is within about one ULP
    of the exact sum plus ``n * eps^2 * sum |x|``: a sum that cancels to a tiny value
    keeps its leading digits. Where the plain sum is infinite or NaN, that is returned.
    """
    x = np.moveaxis(x, axis, -1)
    plain = np.sum(x, axis=-1)
    if x.shape[-1] == 0:
        return plain
    with np.errstate(invalid="ignore", over="ignore"):
        s, error = _cascaded_sum(x)
        total = s + error
    return np.where(np.isfinite(plain), total, plain)


def _cascaded_sum(x: np.ndarray):
    """``(s, error)`` of :func:`accurate_sum` over the last (non-empty) axis, before they are
    added: ``s + error`` is the sum as if in twice the working precision."""
    error = np.zeros(x.shape[:-1], dtype=x.dtype)
    while x.shape[-1] > 1:
        if x.shape[-1] % 2:
            x = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)
        s, err = two_sum(x[..., 0::2], x[..., 1::2])
        error = error + np.sum(err, axis=-1)
        x = s
    return x[..., 0], error


def pairwise_sum_errors(x: np.ndarray):
    """``(s, errors)`` with ``s + sum(errors) == sum(x)`` exactly, over the last (non-empty)
    axis: the pairwise sum ``s`` and every addition's rounding error (TwoSum), kept along
    the last axis of ``errors`` for a caller to sum again (a sum in more than twice the
    working precision, as Ogita, Rump and Oishi's SumK)."""
    errors = []
    while x.shape[-1] > 1:
        if x.shape[-1] % 2:
            x = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)
        x, err = two_sum(x[..., 0::2], x[..., 1::2])
        errors.append(err)
    return x[..., 0], np.concatenate([np.zeros_like(x), *errors], axis=-1)


def horner(coefficients, x):
    """``sum_k c_k x^k`` (``coefficients`` from ``c_0`` on) in float64 by Horner's rule, in
    place: the short tails of the series below, whose terms the callers bound."""
    out = np.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out *= x
        out += c
    return out


# --- x log y --------------------------------------------------------------------------------------


def xlogy(x, y):
    """``x * log(y)`` with ``0 log 0 = 0`` (the limit; also ``0 log y = 0`` for any y >= 0).

    Domain: ``x``, ``y`` >= 0. Accuracy: one ``log`` and one product, about 1 ULP
    (relative to the product; where ``y`` is near 1 the product is small and its
    relative accuracy is that of ``log``). A NaN in either argument propagates, as
    SciPy's ``xlogy`` does.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        # in C order, so that the flat view below is a view (a product of transposed rows
        # would take their layout, and reshape(-1) would then copy: the fixes were lost)
        out = np.multiply(x, np.log(y), order="C")
        if np.ndim(out) == 0:
            return x * np.log(np.where((x == 0) & ~np.isnan(y), 1, y))
        # the plain product is right except 0 * log 0 and 0 * log inf (NaN): two passes,
        # and the NaN entries fixed alone
        nan = np.flatnonzero(np.isnan(out))
        if nan.size:
            flat = out.reshape(-1)
            xs = np.broadcast_to(x, out.shape).reshape(-1)[nan]
            ys = np.broadcast_to(y, out.shape).reshape(-1)[nan]
            flat[nan[(xs == 0) & ~np.isnan(ys)]] = 0
        return out


# Probabilities scaled by 2**k before the terms x log y of a small row sum are formed again:
# for x in [0, 1] every nonzero term is then in the normal range (x >= 2**-149 and |log y|
# >= 2**-24 in float32, x >= 2**-1074 and |log y| >= 2**-53 in float64), and no x overflows
TINY_TERMS_SHIFT = {np.dtype(np.float32): 64, np.dtype(np.float64): 600}


def tiny_terms_limit(dtype, n: int) -> float:
    """A sum of ``n`` terms below this bound may owe more than 1/32 of its ULP to terms
    rounded to the subnormal grid (half a spacing each): 16 n times the smallest normal
    number."""
    return float(np.finfo(dtype).tiny) * 16 * max(1, n)


def xlogy_row_sums_again(x, y, sums):
    """Redo the row sums (last axis) of ``x log y`` that are small enough for terms below the
    normal range to count; ``sums`` (``x.shape[:-1]``, an array) is updated in place.

    Domain: ``x`` in [0, 1], ``y`` >= 0, float32 or float64. A term below the normal range
    is rounded to the subnormal grid, an absolute error of half its spacing: N such terms
    carry N/2 spacings into a sum that is itself that small (159 ULP of float64 for an
    entropy of 1000 subnormal probabilities). Rows whose sum is below ``16 N`` times the
    smallest normal number (there N half-spacings reach 1/32 of the sum's ULP) are summed
    again with ``x`` scaled by ``2**k`` (exact): every nonzero term is then normal, and the
    sum is scaled back with one rounding.
    """
    if not sums.size:
        return
    limit = tiny_terms_limit(sums.dtype, x.shape[-1])
    if not np.min(np.abs(sums)) < limit:  # (one reduction; also with a NaN)
        return
    redo = np.nonzero(np.abs(sums) < limit)
    k = TINY_TERMS_SHIFT[sums.dtype]
    sums[redo] = np.ldexp(np.sum(xlogy(np.ldexp(x[redo], k), y[redo]), axis=-1), -k)


def xlogy_sum(x, y, axis=-1):
    """``sum(x log y)`` along ``axis`` (0 log 0 = 0), an array; small sums redone by
    :func:`xlogy_row_sums_again` (same domain)."""
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    sums = np.asarray(np.sum(xlogy(x, y), axis=-1))
    if sums.ndim == 0:  # one row: as a batch of one
        one = sums.reshape(1)
        xlogy_row_sums_again(x[None], y[None], one)
        return one.reshape(())
    xlogy_row_sums_again(x, y, sums)
    return sums


# --- softplus and sigmoid -------------------------------------------------------------------------


def _flat(x) -> tuple[np.ndarray, np.ndarray]:
    """``x`` as an array and as a 1-D view (a copy only if ``x`` is not contiguous)."""
    x = np.asarray(x)
    return x, x.reshape(-1)


def _exp_minus_abs(xb, out):
    """``out = exp(-|xb|)``: in (0, 1], never overflows; 0 for infinite ``xb``."""
    np.abs(xb, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)


def _sigmoid_from(xb, e, one_plus_e, out, negate=False):
    """``out = sigma(xb)`` (``sigma(-xb)`` with ``negate``) given ``e = exp(-|xb|)``.

    The large one of the pair is ``1 / (1 + e)``, the small one ``e / (1 + e)``; neither
    is ``1 - other``, so the small one keeps its relative accuracy (about 1.5 ULP). The
    numerator is ``max(e, [xb >= 0])``: 1 where ``sigma`` is the large one, else ``e``
    (``e <= 1``), one branch-free pass; NaN propagates.
    """
    (np.less_equal if negate else np.greater_equal)(xb, 0, out=out)
    np.maximum(e, out, out=out)
    np.divide(out, one_plus_e, out=out)


def softplus(x):
    """``log(1 + e^x)`` as ``max(x, 0) + log1p(e^{-|x|})``, for any real (or infinite) x.

    The textbook form overflows for ``x > 709`` (float64) and loses every digit for
    ``x < -37`` (``1 + e^x`` rounds to 1). Here both terms are non-negative, ``exp``
    never overflows, and ``log1p`` keeps the tiny values: about 1-2 ULP everywhere, and
    ``x`` itself when ``e^{-|x|}`` is below half an ULP of ``x``. Evaluated in
    cache-sized blocks; the result is the only full-size allocation.
    """
    return _softplus_or_log_sigmoid(x, log_sigmoid=False)


def log_sigmoid(x):
    """``log sigma(x) = min(x, 0) - log1p(e^{-|x|})``, bit for bit ``-softplus(-x)``.

    Same accuracy and blocks as :func:`softplus` (``-(max(-x, 0) + l)`` and
    ``min(x, 0) - l`` round alike: rounding to nearest is symmetric).
    """
    return _softplus_or_log_sigmoid(x, log_sigmoid=True)


def _softplus_or_log_sigmoid(x, log_sigmoid: bool):
    """``max(x, 0) + l`` or ``min(x, 0) - l``, ``l = log1p(exp(-|x|))``, in cache-sized blocks."""
    x, flat = _flat(x)
    out = np.empty_like(flat)
    e = np.empty(min(CHUNK, flat.size), flat.dtype)
    for block in chunks(flat.size):
        xb, ob, eb = flat[block], out[block], e[: block.stop - block.start]
        _exp_minus_abs(xb, eb)
        np.log1p(eb, out=eb)
        if log_sigmoid:
            np.minimum(xb, 0, out=ob)
            ob -= eb
        else:
            np.maximum(xb, 0, out=ob)
            ob += eb
    return out.reshape(x.shape)


def sigmoid(x):
    """``1 / (1 + e^{-x})``, evaluated as ``e^x / (1 + e^x)`` for ``x < 0``.

    ``exp`` only sees ``-|x| <= 0``, so it never overflows, and the small tail keeps
    full relative accuracy (about 1.5 ULP) instead of rounding ``1 - sigma`` to 0.
    Bit for bit the first of :func:`sigmoid_pair`.
    """
    return logistic_pairs(x, softpluses=False, sigmoids=(True, False))[1][0]


def sigmoid_pair(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sigmoid(x), sigmoid(-x))`` from one ``exp``, bit-for-bit as :func:`sigmoid`.

    With ``e = exp(-|x|)`` the large one of the two is ``1 / (1 + e)`` and the small one
    ``e / (1 + e)``; neither is formed as ``1 - other``, so the small one keeps its
    relative accuracy. A 0-d ``x`` (or a NumPy scalar) gives 0-d arrays.
    """
    return logistic_pairs(x, softpluses=False)[1]


def logistic_pairs(x, softpluses=True, sigmoids=(True, True)):
    """``((softplus(x), softplus(-x)), (sigmoid(x), sigmoid(-x)))`` from one ``exp(-|x|)``.

    The value and the slope of a logistic loss share ``e = exp(-|x|)``: the softplus
    pair is ``max(+-x, 0) + log1p(e)`` and the sigmoid pair ``1 / (1 + e)`` and
    ``e / (1 + e)`` (see :func:`softplus`, :func:`_sigmoid_from`). A pair not asked for
    is None; a pair of flags asks for one of the two only (``(True, False)``: the
    second is None). Bit for bit the same numbers whichever are asked for. Evaluated
    in cache-sized blocks: the results are the only full-size allocations. A 0-d ``x``
    (or a NumPy scalar) gives 0-d arrays.
    """
    softpluses, sigmoids = (
        (flags, flags) if isinstance(flags, bool) else tuple(flags)
        for flags in (softpluses, sigmoids)
    )
    want = (*softpluses, *sigmoids)
    x, flat = _flat(x)
    outs = [np.empty_like(flat) if w else None for w in want]
    e, d = (np.empty(min(CHUNK, flat.size), flat.dtype) for _ in range(2))
    for block in chunks(flat.size):
        xb, eb, db = flat[block], e[: block.stop - block.start], d[: block.stop - block.start]
        sp_pos, sp_neg, s_pos, s_neg = (o if o is None else o[block] for o in outs)
        _exp_minus_abs(xb, eb)
        if any(sigmoids):
            np.add(eb, 1, out=db)
            if s_pos is not None:
                _sigmoid_from(xb, eb, db, s_pos)
            if s_neg is not None:
                _sigmoid_from(xb, eb, db, s_neg, negate=True)
        if any(softpluses):
            np.log1p(eb, out=eb)
            if sp_pos is not None:
                np.maximum(xb, 0, out=sp_pos)
                sp_pos += eb
            if sp_neg is not None:
                np.negative(xb, out=sp_neg)
                np.maximum(sp_neg, 0, out=sp_neg)
                sp_neg += eb
    outs = [o if o is None else o.reshape(x.shape) for o in outs]
    return (tuple(outs[:2]) if any(softpluses) else None), (
        tuple(outs[2:]) if any(sigmoids) else None
    )


# |z| up to which exp(z) and exp(-z) are normal numbers of the dtype (e^87 < 2^126 in float32)
_PLAIN_LOGISTIC = {np.dtype(np.float32): 87.0, np.dtype(np.float64): 708.0}


def softplus_sigmoid_into(z, softplus_out, sigmoid_out, spare, narrow=False, bound=np.inf):
    """``softplus(z)`` into ``softplus_out`` and ``sigma(z)`` into ``sigmoid_out`` (either
    None) for one cache-sized float32 or float64 block ``z``, from one ``u = exp(z)``:
    ``log1p(u)`` and ``u / (1 + u)``; ``spare`` (``z``'s shape) holds ``u``. Returns the
    flat indices of the elements redone by :func:`logistic_pairs` (None if there are none).

    For ``|z|`` up to ``_PLAIN_LOGISTIC`` (``u`` and ``1 / u`` normal) these are as accurate
    as :func:`logistic_pairs`' forms: for ``z <= 0`` they are the same operations; for
    ``z > 0`` the relative error of ``u`` reaches ``log1p(u)`` times ``u / ((1 + u)
    log1p(u)) <= 1 / (2 ln 2) = 0.72`` (there ``logistic_pairs`` adds ``z`` to
    ``log1p(1 / u)``), and ``u / (1 + u)`` has the rounding errors of ``1 / (1 + 1 / u)``.
    Beyond it (or NaN) an element is redone by :func:`logistic_pairs` (``exp(z)`` would
    overflow; ``sigma(z)`` may underflow). Both results are positive in the plain range.
    With ``narrow`` (float64 results that will be rounded to float32 or float16) only
    ``z`` beyond the upper limit is redone: below ``-limit`` the results are below the
    narrow dtype's range (0 there; ``log1p(u)`` and ``u / (1 + u)`` are 0 or tiny).
    ``bound``: an upper bound of ``|z|`` known to the caller (no NaN); within the plain range
    it spares the reductions that look for elements to redo.
    """
    limit = _PLAIN_LOGISTIC[z.dtype]
    u = np.exp(z, out=spare)
    if softplus_out is not None:
        np.log1p(u, out=softplus_out)
    if sigmoid_out is not None:
        np.add(u, 1, out=sigmoid_out)
        np.divide(u, sigmoid_out, out=sigmoid_out)
    if bound <= limit:
        return None
    if narrow:
        if np.maximum.reduce(z) <= limit:  # not with a NaN
            return None
        redo = np.flatnonzero(~(z <= limit))
    elif max(np.maximum.reduce(z), -np.minimum.reduce(z)) <= limit:
        return None
    else:
        redo = np.flatnonzero(~(np.abs(z) <= limit))
    softpluses, sigmoids = logistic_pairs(
        z[redo], (softplus_out is not None, False), (sigmoid_out is not None, False)
    )
    if softplus_out is not None:
        softplus_out[redo] = softpluses[0]
    if sigmoid_out is not None:
        sigmoid_out[redo] = sigmoids[0]
    return redo


# Below this -t x, log(1 + e^{-t x}) in float64 would keep the softplus to less than 2^-30
# relative (e^-15.5 is about 2^-22.4, the rounding of 1 + u 2^-53): there log1p.
_LOG_OF_ONE_PLUS = -15.5


def softplus_sigmoid_wide(z, u, softplus, sigmoid, value=True, grad=True):
    """``softplus(z)`` into ``softplus`` (if ``value``) and ``sigma(z)`` into ``sigmoid``
    (if ``grad``) for float64 ``z``, ``u`` a scratch buffer of its size: each within
    2^-30 relative of the exact value (rounded once to float32 or float16: one ULP).
    Returns ``min(z)`` (NaN if some ``z`` is NaN). The sibling of
    :func:`softplus_sigmoid_into` for float64 work whose results are float32 or float16:
    2^-30 relative is enough there, so ``log`` replaces most ``log1p``.

    ``u = e^z``; the softplus is ``log(1 + u)``, which the float64 ``1 + u`` keeps to
    2^-53 absolute, 2^-30 relative where ``z`` is above ``_LOG_OF_ONE_PLUS`` (and
    ``log1p(u)`` below it; ``log`` costs half of ``log1p``); the sigmoid ``u / (1 + u)``.
    Beyond z = 708 an element is redone by :func:`logistic_pairs` (``u`` would overflow).
    """
    np.exp(z, out=u)
    one_plus = np.add(u, 1, out=softplus)
    if grad:
        np.divide(u, one_plus, out=sigmoid)
    if value:
        np.log(one_plus, out=softplus)
    bottom, top = np.minimum.reduce(z), np.maximum.reduce(z)
    if value and not bottom >= _LOG_OF_ONE_PLUS:  # (or a NaN)
        low = np.flatnonzero(z < _LOG_OF_ONE_PLUS)
        softplus[low] = np.log1p(u[low])
    limit = _PLAIN_LOGISTIC[np.dtype(np.float64)]
    if not top <= limit:  # (or a NaN)
        redo = np.flatnonzero(~(z <= limit))
        pluses, sigmas = logistic_pairs(z[redo], (value, False), (grad, False))
        if value:
            softplus[redo] = pluses[0]
        if grad:
            sigmoid[redo] = sigmas[0]
    return bottom


def logistic_terms(x, y, cy, value=True, slope=True, consume=None):
    """The binary cross-entropy on logits and its slope, from one ``exp(-|x|)`` per element.

    ``value = cy softplus(-x) + (1 - y) softplus(x)`` (two non-negative terms: no
    cancellation) and ``slope = (1 - y) sigma(x) - cy sigma(-x)``, each None unless asked
    for; ``y`` and ``cy`` (the positive term's coefficient, ``y`` itself without a
    ``pos_weight``) have ``x``'s shape. A term whose coefficient is 0 is absent, also
    where its softplus is infinite (an infinite logit) or NaN: such elements, found by a
    non-finite block sum, are recomputed with :func:`times`. Where the two terms of the
    slope are within a factor 2 of each other (a soft target near ``sigma(x)``), the
    slope is :func:`logistic_slope_exact` of those elements, rounded once. Evaluated in
    cache-sized blocks: the results are the only full-size allocations. With ``consume``
    (a reduction's ``add``), each block of values is passed to it instead of being kept:
    the returned value is then None.
    """
    x, flat = _flat(x)
    y, cy = np.reshape(y, -1), np.reshape(cy, -1)
    loss = np.empty_like(flat) if value and consume is None else None
    kept = None if loss is None else loss
    if value and consume is not None:
        kept = np.empty(min(CHUNK, flat.size), flat.dtype)
    d = np.empty_like(flat) if slope else None
    e, ope, t, u = (np.empty(min(CHUNK, flat.size), flat.dtype) for _ in range(4))
    with np.errstate(invalid="ignore", over="ignore"):  # an infinite pos_weight
        for block in chunks(flat.size):
            n = block.stop - block.start
            xb, yb, cb, eb, tb, ub = flat[block], y[block], cy[block], e[:n], t[:n], u[:n]
            _exp_minus_abs(xb, eb)
            np.subtract(1, yb, out=ub)  # the coefficient of softplus(x)
            if slope:
                db, ob = d[block], ope[:n]
                np.add(eb, 1, out=ob)
                _sigmoid_from(xb, eb, ob, db)
                db *= ub
                _sigmoid_from(xb, eb, ob, tb, negate=True)
                tb *= cb
                # terms within a factor 2 cancel (a soft target near its optimum): there
                # the rounding errors of sigma would be most of the difference
                close = np.flatnonzero((db < 2 * tb) & (tb < 2 * db))
                db -= tb
                if close.size:
                    exact = logistic_slope_exact(
                        *(a[close].astype(np.float64) for a in (xb, yb, cb))
                    )
                    db[close] = exact
            if value:
                lb = kept[block] if consume is None else kept[:n]
                np.log1p(eb, out=eb)
                np.negative(xb, out=tb)
                np.maximum(tb, 0, out=tb)
                tb += eb  # softplus(-x)
                np.maximum(xb, 0, out=lb)
                lb += eb  # softplus(x)
                lb *= ub
                tb *= cb
                lb += tb
                if not np.isfinite(np.sum(lb)):
                    bad = np.flatnonzero(~np.isfinite(lb))
                    xs = xb[bad]
                    log1p_e = np.log1p(np.exp(-np.abs(xs)))
                    lb[bad] = times(cb[bad], np.maximum(-xs, 0) + log1p_e) + times(
                        ub[bad], np.maximum(xs, 0) + log1p_e
                    )
                if consume is not None:
                    consume(lb)
    if loss is not None:
        loss = loss.reshape(x.shape)
    if slope:
        d = d.reshape(x.shape)
    return loss, d


def sigmoid_power(u, gamma: float):
    r""":math:`\sigma(u)^\gamma` for float64 ``u`` and ``gamma > 0``, to ``1 + 0.4 gamma`` ULP.

    Evaluated as :math:`\exp(\gamma \log\sigma(u))` with
    :math:`\log\sigma(u) = \min(u, 0) - \operatorname{log1p}(e^{-|u|})`: the first term is
    the exact input, the second lies in :math:`[-\log 2, 0]`. Both products with
    :math:`\gamma` are formed exactly (:func:`two_prod`) and summed with their errors
    (:func:`two_sum`), so the exponent is known to about one ULP of
    :math:`\gamma \operatorname{log1p}(\cdot) \le 0.7 \gamma`; then
    :math:`e^{h + l} = e^h (1 + l)`. Raising a rounded :math:`\sigma(u)` to the power
    instead multiplies its 1.5 ULP error by :math:`\gamma`; this is what lets the focal
    loss keep its accuracy in float64 without a wider type (``long double`` is plain
    double on some platforms). Underflows to 0 where the result does; ``u = +inf`` gives
    1, ``-inf`` gives 0, NaN propagates.
    """
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        head = np.minimum(u, 0)
        # below it exp underflows anyway: keep the split of two_prod in its domain
        head = np.maximum(head, -1000.0 / gamma - 1.0)
        tail = -np.log1p(np.exp(-np.abs(u)))
        p1, e1 = two_prod(gamma, head)
        p2, e2 = two_prod(gamma, tail)
        hi, e3 = two_sum(p1, p2)
        lo = (e1 + e2) + e3
        out = np.exp(hi)
        out += out * np.where(np.isfinite(lo), lo, 0)
    return out


def times(c, v):
    """``c * v`` with ``0 * v = 0`` also for infinite or NaN ``v``: a term whose coefficient
    is 0 is absent (a zero weight masks its element, and a target of 0 removes the term
    of an infinite logit that it does not multiply)."""
    with np.errstate(invalid="ignore", over="ignore"):
        if (
            isinstance(c, np.ndarray)
            and isinstance(v, np.ndarray)
            and c.ndim
            and c.shape == v.shape
        ):
            # the same numbers without a where over two full arrays: the zeros are looked for
            out = c * v
            zero = c == 0
            if zero.any():
                out[zero] = 0
            return out
        return np.where(c == 0, np.zeros_like(c * 0), c * v)


# --- log cosh -------------------------------------------------------------------------------------

_LOG_2 = math.log(2.0)


def log_cosh_into(r: np.ndarray, out: np.ndarray) -> None:
    r"""``out = log cosh r`` within about 3 ULP for every real (or infinite) ``r`` (1-D).

    Evaluated as :math:`\operatorname{log1p}(2 \sinh^2(r/2))` (``cosh r - 1 = 2 sinh^2(r/2)``):
    no cancellation near 0, where the value is about ``r^2 / 2`` (measured against mpmath:
    at most 3.1 ULP in float32 and float64). ``sinh^2`` overflows from ``|r| ~ 89`` (float32)
    or ``710`` (float64) on; those few elements (found by a non-finite sum) take
    :math:`(|r| - \log 2) + \operatorname{log1p}(e^{-2|r|})`, which cannot cancel there.
    In place in ``out``; meant for cache-sized blocks (see :func:`chunks`).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        np.multiply(r, 0.5, out=out)
        np.sinh(out, out=out)
        np.multiply(out, out, out=out)
        out *= 2
        np.log1p(out, out=out)
        if not np.isfinite(np.sum(out)):
            bad = np.flatnonzero(~np.isfinite(out))
            a = np.abs(r[bad])
            out[bad] = (a - _LOG_2) + np.log1p(np.exp(-2 * a))


# --- e^d - 1 - d ----------------------------------------------------------------------------------

# 1/2!, 1/3!, ..., 1/20!: the Taylor coefficients of (e^d - 1 - d) / d^2 used for |d| <= 1.
# The series stops at 1/20! because the next term, |d|^19 / 21! <= 2.0e-20, is below a
# quarter of an ULP of the sum (>= 1/2 - 1/6 = 1/3 for d in [-1, 1], ULP 5.6e-17).
_EXPM1_SERIES = [1.0 / math.factorial(k) for k in range(2, 21)]
# In float32 the series stops at 1/12!: the next term, |d|^11 / 13! <= 1.6e-10, is below a
# quarter of an ULP of the sum (>= 1/3, ULP 3.0e-8).
_EXPM1_SERIES_FLOAT32 = _EXPM1_SERIES[:11]


def exp_minus_1_minus(d):
    r""":math:`(e^d - 1 - d, \operatorname{expm1}(d))` with the first within a few ULP.

    Domain: any ``d`` (``+inf`` gives ``inf``). ``e^d - 1 - d >= 0`` cancels
    catastrophically for small ``|d|`` (it is about ``d^2 / 2``). Three branches, each
    element evaluated by one of them only (in place: large arrays are dominated by
    their temporaries):

    - ``d > 1``: ``expm1(d) - d`` cancels by at most a factor of about 2.4 (at d = 1),
      so it stays within about 3 ULP;
    - ``d < -1``: ``e^d`` and ``-(1 + d)`` are both non-negative, no cancellation;
    - ``|d| <= 1``: ``d^2 (1/2! + d/3! + ... + d^18/20!)`` by Horner's rule, whose terms
      alternate at most mildly (the bracket is at least 1/3): about 2 ULP.

    ``expm1(d)``, the derivative, is returned as well because it is computed on the way.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        em1 = np.expm1(d)
        out = em1 - d
        out[d == np.inf] = np.inf
        below = d < -1
        if below.any():
            low = d[below]
            out[below] = np.exp(low) - (1 + low)
        near = np.abs(d) <= 1
        if near.any():
            x = d[near]
            coefficients = _EXPM1_SERIES if x.dtype.itemsize > 4 else _EXPM1_SERIES_FLOAT32
            series = horner(coefficients, x)
            series *= x
            series *= x
            out[near] = series
    return out, em1


# --- log-sum-exp ----------------------------------------------------------------------------------


def diff_error(x, m, d):
    """The exact rounding error ``(x - m) - d`` of ``d = fl(x - m)`` (TwoSum, in place).

    0 where ``d`` is not finite (an infinite or NaN entry, or a row whose maximum is
    infinite). Used to correct ``exp(d)`` to first order, ``e^{d + err} ~ e^d (1 + err)``:
    ``|err| <= ulp(d) / 2``, so the neglected second-order term is below
    ``eps^2 |d|^2``, far below an ULP for any ``|d|`` up to the overflow threshold.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        back = d - x
        err = d - back
        np.subtract(x, err, out=err)
        back += m
        err -= back  # (x - m) - d, exactly
    np.copyto(err, 0, where=~np.isfinite(d))
    return err


def exp_sum_rest(x: np.ndarray, m: np.ndarray, rows=None) -> np.ndarray:
    r"""Row sums of ``exp(x - m)`` over every column but the first maximal one, for 2-D ``x``.

    ``m`` holds the row maxima; with ``rows`` (indices), only those rows. Domain: rows
    whose maximum is finite. Accuracy: a few ULP of the sum, which is what a small
    ``log1p`` of it needs (a row dominated by its maximum). In float64 the rounding
    error of each difference ``x - m`` is recovered exactly (:func:`shift_error`) and
    applied to first order: without it, a difference of size 40 carries a relative error
    of up to 40 ULP into the sum. float32 (and float16) rows are computed in float64,
    where their differences are exact to far below a float32 ULP and no exponential is
    subnormal; the result is then float64, for the caller to round once. Processed in
    cache-sized blocks of rows.
    """
    rows = np.arange(len(x)) if rows is None else np.asarray(rows)
    wide = np.dtype(np.float64) if x.dtype.itemsize < 8 else x.dtype
    out = np.empty(len(rows), dtype=wide)

    def block(part: slice) -> None:
        xb = x[rows[part]].astype(wide, copy=False)
        mb = m[rows[part]].astype(wide, copy=False)
        top = np.argmax(xb, axis=-1)[:, None]
        d = xb - mb[:, None]
        w = shift_error(xb, mb, d, np.empty_like(d)) if wide == x.dtype else None
        np.exp(d, out=d)
        np.put_along_axis(d, top, 0, axis=-1)
        out[part] = np.sum(d, axis=-1)
        if w is not None:  # the first-order corrections, summed on their own
            w *= d
            out[part] += np.sum(w, axis=-1)

    for_each_block(block, len(rows), x.shape[-1] * wide.itemsize)
    return out


def exp_sum_rest_dd(x: np.ndarray, m: np.ndarray, rows: np.ndarray, pivot=None):
    r""":func:`exp_sum_rest` of float64 ``rows`` of ``x`` as a double-double ``(hi, lo)``.

    For rows dominated by their maximum whose result raises this sum to a power: the focal
    loss behaves like :math:`R^{1 + \gamma}`, so an ULP of error in the sum ``R`` becomes
    :math:`1 + \gamma` ULP of the result. Each ``e^(x - m)`` is taken in double-double,
    :func:`exp_shifted_dd` of ``d = fl(x - m)`` and its exact rounding error
    (:func:`shift_error`), and summed by the cascaded TwoSum of :func:`accurate_sum`: to
    about ``2^-58`` of ``R``, a small fraction of an ULP however it is raised (terms below
    ``e^-746``, which underflow to 0, count as 0; parts below ``2^-1022`` are subnormal and
    lose digits, far below any ULP of a result that does not underflow). Domain: rows whose
    maximum is finite. With ``pivot`` (a column for each of ``rows``, and ``m`` that column's
    entry in those rows), the sum over the other columns of ``e^(x - m)``, which may exceed 1
    (entries up to 700 above the pivot; the shifts' errors by TwoSum, :func:`diff_error`).
    """
    out_hi, out_lo = np.empty(len(rows)), np.empty(len(rows))

    def block(part: slice) -> None:
        xb, mb = x[rows[part]], m[rows[part]]
        d = xb - mb[:, None]
        if pivot is None:
            top = np.argmax(xb, axis=-1)[:, None]
            err = shift_error(xb, mb, d, np.empty_like(d))
        else:
            top = pivot[part][:, None]
            err = diff_error(xb, mb[:, None], d)
        gone = ~(d >= -746.0)  # (-inf too) the exponential underflows to 0
        np.put_along_axis(gone, top, True, axis=-1)  # the maximum itself is not in the sum
        d[gone], err[gone] = 0.0, 0.0
        hi, lo = exp_shifted_dd(d, err)
        hi[gone], lo[gone] = 0.0, 0.0
        s, s_err = _cascaded_sum(hi)
        out_hi[part], out_lo[part] = _fast_two_sum(s, s_err + np.sum(lo, axis=-1))

    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        for_each_block(block, len(rows), x.shape[-1] * 8)
    return out_hi, out_lo


def shift_error(x: np.ndarray, m: np.ndarray, d: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The exact rounding error ``(x - m) - d`` of ``d = fl(x - m)``, row by row, into ``out``.

    ``x`` is a 2-D block, ``m`` the shift of each row: its maximum, or 0 where that is
    infinite (a NaN row gives NaN in ``d`` and 0 here). Dekker's Fast2Sum gives the error
    in two exact operations when the larger operand has the larger exponent. With
    ``2^(k-1) <= |m| < 2^k``: an entry ``|x| < 2^k`` has an exponent no larger than
    ``m``'s, and ``x - (d + m)`` is exact; an entry ``x <= -2^k`` has a larger exponent,
    and the mirrored ``-((d - x) + m)`` is exact. The first covers every entry of nearly
    every row of logits (the row minimum tells); rows with entries of the second kind get
    it where it applies. Rows with an infinite or NaN entry, or a maximum near the
    overflow threshold, get the six operations of TwoSum (:func:`diff_error`), which is 0
    where ``d`` is not finite.
    """
    mc = m[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        np.add(d, mc, out=out)
        np.subtract(x, out, out=out)
        lo = np.min(x, axis=-1)
        bound = np.ldexp(np.ones_like(m), np.frexp(m)[1])  # 2^k > |m|
        big = np.finfo(m.dtype).max / 4  # (no difference overflows)
        safe = np.isfinite(lo) & (np.abs(m) < big) & (lo > -2 * big)
        near = lo > -bound
        if (near & safe).all():
            return out
        mixed = np.flatnonzero(safe & ~near & (m != 0))  # (m = 0: d = x, the error is 0)
        if mixed.size:
            xs, ds, ms = x[mixed], d[mixed], mc[mixed]
            far = xs <= -bound[mixed, None]
            z = ds - xs
            z += ms
            np.negative(z, out=z)
            rows = out[mixed]
            np.copyto(rows, z, where=far)
            out[mixed] = rows
        slow = np.flatnonzero(~safe)
        if slow.size:
            out[slow] = diff_error(x[slow], mc[slow], d[slow])
    return out


def exp_rows(
    x: np.ndarray,
    e: np.ndarray,
    correct=True,
    d_out=None,
    drop_top=False,
    wide_sum=False,
    v_out=None,
):
    """Row maxima ``m`` and row sums ``s`` of ``e = exp(x - m)`` for a 2-D block ``x``.

    ``e`` (an array of ``x``'s shape) receives the exponentials; ``d_out``, if given, the
    differences ``d = fl(x - m)``. With ``correct`` each exponential is corrected to first
    order for the rounding of ``x - m``: ``e^{d + w} = e^d (1 + w)`` with ``d + w = x - m``
    exactly (:func:`shift_error`). ``|w| <= ulp(d) / 2``, so an uncorrected entry carries
    a relative error of up to ``|d| / 2`` ULP (``d = -100``: 50 ULP; ``-700``: 350);
    corrected it is within about 1 ULP of ``exp``, the neglected term ``w^2 / 2`` being far
    below an ULP. A probability needs that; a log-normalizer ``log(s)`` does not: an
    entry's error is weighted by its share of ``s``, and ``sum_k e^{d_k} |d_k| / s`` stays
    below ``log(C)`` (``log(s)`` of a sum off by k ULP is off by k ULP of 1 only). Rows
    whose maximum is infinite are shifted by 0: an all ``-inf`` row gives ``e = 0`` and
    ``s = 0``; a row holding ``+inf`` is for the caller to replace by its limit
    (:func:`limit_rows`). With ``drop_top`` the first maximal entry of each row is left out
    of ``e`` (set to 0) and of ``s``: then ``log1p(s)`` is ``logsumexp(x) - m``, and a small
    ``s`` keeps its digits. With ``wide_sum`` a float32 block's ``s`` is summed in float64
    and returned in float64, for a caller that divides by it: a float32 row sum of C
    terms carries a relative error of several ULP, which the division passes on to every
    probability (7.2 ULP measured at C = 1000, with the exponential's own error); in
    float64 it is far below one float32 ULP.

    ``v_out``, if given, receives the row sums of the uncorrected exponentials in ``x``'s
    dtype, taken before they are corrected: bit for bit the ``s`` of ``correct=False``
    without ``wide_sum``, for a value computed together with a gradient.
    """
    if drop_top:
        top = np.argmax(x, axis=-1)[:, None]
        m = np.take_along_axis(x, top, axis=-1)[:, 0]
    else:
        m = np.max(x, axis=-1)
    shift = m if np.isfinite(m).all() else np.where(np.isinf(m), 0, m).astype(m.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.subtract(x, shift[:, None], out=e if d_out is None else d_out)
        w = shift_error(x, shift, d, np.empty_like(x)) if correct else None
        np.exp(d, out=e)
        if drop_top:
            np.put_along_axis(e, top, 0, axis=-1)
        if v_out is not None:
            np.sum(e, axis=-1, out=v_out)
            if not (correct or wide_sum):
                return m, v_out  # (the sum is the same)
        if correct:  # (a dropped entry stays 0)
            w *= e
            e += w
        return m, np.sum(e, axis=-1, dtype=_row_sum_dtype(e.dtype, wide_sum))


def _row_sum_dtype(dtype, wide_sum: bool) -> np.dtype:
    """The dtype :func:`exp_rows` sums a row of exponentials in (float64 for a wide float32)."""
    return np.dtype(np.float64) if wide_sum else np.dtype(dtype)


def exp_row_blocks(
    x: np.ndarray,
    keep: bool,
    correct=True,
    finish=None,
    d_out=None,
    drop_top=False,
    wide_sum=False,
    v_out=None,
):
    """:func:`exp_rows` over every row of a 2-D ``x``, block by block (``_blocks``).

    Returns ``(m, s, e)`` (``s`` in float64 with ``wide_sum``, as :func:`exp_rows` sums
    it then); ``e`` is None unless ``keep`` (else each block's exponentials live in a
    block-sized scratch array). ``finish(rows, e_rows, s_rows, m_rows)``, if given, is
    called on each block while it is in the cache (e.g. to scale ``e`` into a gradient);
    ``d_out``, an array of ``x``'s shape, receives ``fl(x - m)``; ``v_out``, of length
    ``len(x)``, the sums of the uncorrected exponentials (filled before ``finish`` sees a
    block); ``drop_top`` and ``wide_sum`` are passed on.
    """
    n = x.shape[0]
    m = np.empty(n, x.dtype)
    s = np.empty(n, _row_sum_dtype(x.dtype, wide_sum))
    e = np.empty_like(x) if keep else None

    def block(rows: slice) -> None:
        e_rows = e[rows] if keep else np.empty_like(x[rows])
        d_rows = None if d_out is None else d_out[rows]
        v_rows = None if v_out is None else v_out[rows]
        m[rows], s[rows] = exp_rows(x[rows], e_rows, correct, d_rows, drop_top, wide_sum, v_rows)
        if finish is not None:
            finish(rows, e_rows, s[rows], m[rows])

    for_each_block(block, n, x.shape[-1] * x.itemsize)
    return m, s, e


def log_exp_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``log(sum(exp(x)))`` of each row of a 2-D ``x``, unshifted, and where it is accurate.

    Returns ``(l, ok)``: ``l`` in float64 and the rows ``ok`` where it is within about
    1 ULP of ``x``'s dtype. There the sum is finite, at least ``2^-60`` (its subnormal
    terms carry absolute errors too small to count) and ``|l| >= 8``: the sum's relative
    error, a few ULP (the exponentials' and the summation's), is ``l``'s absolute error,
    at most a fraction of an ULP of a result of 8 or more once the logarithm, taken in
    float64, is rounded. Other rows (overflow, all terms tiny, a small result whose
    digits a max-shift keeps) are for the caller. Without the shift by the row maximum
    the rows need no arg-max and no subtraction: two operations per entry, block by block.
    """
    sums = np.empty(len(x), x.dtype)

    def block(rows: slice) -> None:
        np.sum(np.exp(x[rows]), axis=-1, out=sums[rows])

    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for_each_block(block, len(x), x.shape[-1] * x.itemsize)
        logs = np.log(sums.astype(np.float64))
        ok = np.isfinite(logs) & (np.abs(logs) >= 8) & (sums >= 2.0**-60)
    return logs, ok


# Wide row sums are trusted down to 2^-860 (about e^-596): below it, exponentials that
# matter to a float32 quotient could be float64 subnormals (see wide_exp_sums).
_WIDE_SUM_FLOOR = 2.0**-860


def wide_exp_sums(x: np.ndarray, finish=None) -> tuple[np.ndarray, np.ndarray]:
    r"""Row sums ``s`` of ``exp(x)``, unshifted and in float64, for a 2-D float32 ``x``.

    Returns ``(s, ok)``: ``s`` in float64 and the rows ``ok`` where the unshifted float64
    path may be used: ``s`` finite and at least ``2^-860``. ``finish(rows, e, s_rows)``, if
    given, is called on each block with its float64 exponentials ``e`` while they are in
    the cache.

    Domain: float32 (or float16 computed in float32) rows. A float32 ``x`` is exact in
    float64 and ``e^x`` is finite there for ``x < 709.78``, so no shift by the row maximum
    is needed: each exponential is within about an ULP of float64, and the pairwise sum
    ``s`` within about ``log2(C)`` ULP of float64 (below ``2^-40`` relative for any row
    that fits in memory), far below a float32 ULP (``2^-24``). A quotient ``e / s`` rounded
    to float32 is then within half an ULP and a hair (an uncorrected float32 ``exp(x - m)``
    is off by up to ``|x - m| / 2`` ULP). Rows outside ``ok`` (an overflowing, infinite, NaN
    or all-tiny row) are for the caller. The floor keeps float64 subnormals out of anything
    a float32 result can see: with ``s >= 2^-860 > e^-597``, an exponential below the float64
    normal range (``e^-708``) gives a quotient below ``e^-111``, under half the smallest
    float32 subnormal (``2^-150 > e^-104``), which rounds to 0 as its exact value does. (A
    quotient multiplied by a factor ``c > 1`` needs ``s >= 2^-860 c``: the caller's test.)
    Three passes per entry (the widening copy, the exponential, the sum), block by block.
    """
    s = np.empty(len(x))

    def block(rows: slice) -> None:
        e = np.empty(x[rows].shape)
        np.copyto(e, x[rows])  # (then exp in place: faster than exp's own float32-to-64 cast)
        np.exp(e, out=e)
        np.sum(e, axis=-1, out=s[rows])
        if finish is not None:
            finish(rows, e, s[rows])

    with np.errstate(over="ignore", invalid="ignore"):
        for_each_block(block, len(x), x.shape[-1] * 8)
        ok = (s >= _WIDE_SUM_FLOOR) & (s < np.inf)
    return s, ok


def log1p_rest(x: np.ndarray, m: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``log1p`` of :func:`exp_sum_rest` for ``rows`` of ``x``: ``logsumexp(x) - m`` there.

    For rows dominated by their maximum, where this is small and every digit of the sum
    counts. Returns float64 for float32 (or float16) input, as :func:`exp_sum_rest` does:
    there the sum may be of subnormal float32 numbers, each carrying an absolute error of
    half the smallest subnormal, which would add up to several ULP of a subnormal result.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        return np.log1p(exp_sum_rest(x, m, rows))


def contiguous_rows(x: np.ndarray) -> np.ndarray:
    """``x`` with each row (last axis) contiguous in memory: a copy only if it is not.

    A reduction along a row sums pairwise over a contiguous row but term by term over a
    strided one (a row of a Fortran-order array): other roundings, so other bits. Rows
    that are contiguous but not adjacent (a slice ``x[::2]``) are summed alike.
    """
    if x.ndim == 0 or x.shape[-1] <= 1 or x.strides[-1] == x.itemsize:
        return x
    return np.ascontiguousarray(x)


def limit_rows(x: np.ndarray) -> np.ndarray:
    """2-D ``x`` with each row holding ``+inf`` replaced by the limit row of its softmax.

    As the ``+inf`` entries of a row grow together, the softmax tends to the uniform
    distribution over them: the row is replaced by 0 at its ``+inf`` entries and
    ``-inf`` elsewhere, whose softmax, log-softmax, cross-entropy and gradients are those
    limits (a log-probability of ``-log k`` for each of ``k`` infinite entries, ``-inf``
    for the others). A row with a NaN is left as it is (NaN propagates). Returns ``x``
    itself (no copy) when no row changes.
    """
    with np.errstate(invalid="ignore"):
        rows = np.flatnonzero(np.max(x, axis=-1) == np.inf) if x.size else np.empty(0, int)
    if not rows.size:
        return x
    out = x.copy()
    out[rows] = np.where(x[rows] == np.inf, 0, -np.inf).astype(x.dtype, copy=False)
    return out


def limit_direction(z: np.ndarray, scale: float = 1.0):
    """Rows ``z`` with each row holding ``+-inf`` replaced by its limit direction.

    As the infinite entries of a row grow (at one rate), ``z / ||z||`` tends to the
    signs of those entries, normalised, with 0 elsewhere: the row is replaced by those
    signs times ``scale``, 0 elsewhere (a finite row of that direction). Also returns the
    mask of the replaced rows (their gradient, of order ``1 / ||z||``, tends to 0). A row
    with a NaN is left as it is (NaN propagates). ``z`` itself is not modified.
    """
    with np.errstate(invalid="ignore"):
        infinite = np.any(np.isinf(z), axis=-1) & ~np.any(np.isnan(z), axis=-1)
    if np.any(infinite):
        z = z.copy()
        rows = z[infinite]
        z[infinite] = np.where(np.isinf(rows), np.sign(rows) * scale, 0.0)
    return z, infinite


# --- norms ----------------------------------------------------------------------------------------


@quiet
@dataclass(frozen=True)
class UnitRows:
    """Rows normalised as ``F.normalize`` does, and what the normalisation's gradient needs."""

    h: np.ndarray  # (N, D) float64: z / max(||z||, floor)
    zs: np.ndarray  # (N, D): z scaled by a power of 2, its largest entry in [1/2, 1)
    scaled_norm: np.ndarray  # (N,): ||z|| / 2**e, the row scaled by its largest power of 2
    exponent: np.ndarray  # (N,): that e
    floored: np.ndarray  # (N,): the floor is active
    infinite: np.ndarray  # (N,): the row has an infinite entry


def unit_rows(z: np.ndarray, floor: float) -> UnitRows:
    """Rows divided by ``max(||z||, floor)`` (as ``torch.nn.functional.normalize``), in float64.

    Each row is first scaled exactly by a power of 2, its largest entry in [1/2, 1), so its
    norm neither overflows nor underflows; a row with infinite entries is taken as its
    limit direction (:func:`limit_direction`). Returns the unit rows ``h``, the scaled rows
    ``zs = z / 2**e``, ``||z|| / 2**e``, ``e``, where the floor is active, and the rows that
    held an infinity, named (:class:`UnitRows`). Each entry of a
    unit row is within about 1.5 ULP of float64 (the norm's sum, its root and the
    quotient); a row with a NaN stays NaN.
    """
    z, infinite = limit_direction(z.astype(np.float64))
    _, exponent = np.frexp(np.max(np.abs(z), axis=-1, initial=0))
    zs = np.ldexp(z, -exponent[:, None])
    # overflows that change nothing: a row with a NaN is not scaled (its maximum is NaN, its
    # exponent 0), so its squares may overflow, and it stays NaN; a norm beyond the range
    # (a row of 1e308s) compares as inf, not floored
    with np.errstate(over="ignore"):
        norm = np.sqrt(np.sum(zs * zs, axis=-1))
        floored = (np.ldexp(norm, exponent) < floor) & ~infinite
    h = zs / np.where(floored, 1, norm)[:, None]
    if np.any(floored):  # (rare: only those rows are divided by the floor)
        h[floored] = z[floored] / floor
    return UnitRows(h, zs, norm, exponent, floored, infinite)


def scaled_norm(x, axis=-1, keepdims=False):
    """Euclidean norm along ``axis`` with the largest ``|entry|`` factored out.

    ``m * sqrt(sum((x / m)^2))``, ``m = max |x|``: the squares neither overflow (entries
    up to the dtype's maximum: a float16 entry of 256 squares to inf) nor underflow (an
    entry of 1e-170 squares to 0 in float64), so the norm is within about 2 ULP wherever
    it is representable. A zero vector has norm 0; an infinite entry gives inf, a NaN
    entry NaN.
    """
    x = np.asarray(x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        m = np.max(np.abs(x), axis=axis, keepdims=True) if x.shape[axis] else None
        if m is None:
            return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))
        safe = np.where((m > 0) & np.isfinite(m), m, 1)
        y = x / safe
        out = safe * np.sqrt(np.sum(y * y, axis=axis, keepdims=True))
        out = np.where(np.isinf(m), np.inf, out)  # NaN entries: m is NaN, so is the sum
    return out if keepdims else np.squeeze(out, axis=axis)


# --- sums of products that must not overflow ------------------------------------------------------


def scaled_dot(w, v, axis=None):
    """``(s, k)`` with ``s * 2**k == sum(w * v, axis)``, where no product or partial sum overflows.

    For the few sums whose plain evaluation overflowed though the mean formed from them may
    be finite (a class weight of 2 times a softplus of 3e38 in float32). ``w`` (None: all
    ones) and ``v`` are finite and of one shape. float32 and narrower: the products are exact
    in float64 and no float64 sum of fewer than 2**700 of them overflows, so ``k = 0`` and
    ``s`` is the float64 sum (a few float64 ULP from the exact one). float64: the factor ``w``
    (``v`` without weights) is scaled by ``2**-k``, ``k >= 0`` the smallest that keeps every
    term below ``2**1023 / n`` (``n`` terms summed, so no partial sum reaches ``2**1023``):
    a power of two, exact except for scaled factors below ``2**-1022`` (subnormal), whose
    error is below ``2**-1000`` times the largest ``|w|`` times the largest ``|v|``.
    ``k`` has the shape of ``s``.
    """
    v = np.asarray(v)
    if v.dtype.itemsize < 8:
        terms = v.astype(np.float64)
        if w is not None:
            terms *= np.asarray(w, dtype=np.float64)
        s = np.sum(terms, axis=axis)
        return s, np.zeros(np.shape(s), int)
    n = v.size if axis is None else v.shape[axis]

    def exponent(a):  # the e with max |a| < 2**e
        return np.frexp(np.max(np.abs(a), axis=axis, keepdims=True))[1] if n else 0

    k = exponent(v) + (0 if w is None else exponent(w)) + math.ceil(math.log2(max(n, 1))) - 1023
    k = np.maximum(k, 0)
    with np.errstate(under="ignore"):
        terms = np.ldexp(v, -k) if w is None else np.ldexp(w, -k) * v
    s = np.sum(terms, axis=axis, keepdims=True)
    squeeze = (lambda a: a.reshape(())) if axis is None else (lambda a: np.squeeze(a, axis))
    return squeeze(s), squeeze(np.broadcast_to(k, s.shape))


# --- t (log t - x), accurate where x is close to log t --------------------------------------------

# ln 2 in three parts: the first two have 32 significant bits, so k * part is exact for the
# |k| <= 1075 of any float64 exponent; the three carry ln 2 to about 2^-122.
_LN2_HI = float.fromhex("0x1.62e42ff000000p-1")
_LN2_MID = float.fromhex("-0x1.718432a200000p-35")
_LN2_LO = float.fromhex("0x1.3c7673007e5edp-69")
# e^z = 2^k 2^(j/256) e^r: z = n ln 2 / 256 + r with n = 256 k + j, j in [-128, 127], and
# |r| <= ln 2 / 512 < 2^-9.4. The factors 2^(j/256) are tabulated in double-double (from the
# standard library's decimal exponential at 60 digits). expm1(r) is its Taylor series by
# Horner's rule: the terms r^m / m! for m >= 5 (below 2^-54 of 1) in double, whose rounding
# leaves under 2^-107; the four Horner steps up to r / 1! in double-double (each product
# exact by Dekker's, the constants 1/m! in double-double), to about 2^-106 of e^r; the
# series stops after r^9 / 9! (r^10 / 10! < 2^-115).
_EXP_TABLE_BITS = 8


def _double_double(value: Fraction) -> tuple[float, float]:
    hi = float(value)
    return hi, float(value - Fraction(hi))


_INVERSE_FACTORIALS = [_double_double(Fraction(1, math.factorial(k))) for k in range(10)]


def _exp2_table(bits: int, parts: int) -> np.ndarray:
    """``2^(j / 2^bits)`` for ``j = -2^(bits - 1) .. 2^(bits - 1) - 1`` (index ``j +
    2^(bits - 1)``), each as ``parts`` doubles, each the rounding of what the ones before
    leave (their sum is it to about ``2^(-53 parts)``): an array of shape ``(parts, 2^bits)``,
    from 60-digit decimal arithmetic."""
    size = 1 << bits
    context = decimal.Context(prec=60)
    ln2 = context.ln(decimal.Decimal(2))
    rows = []
    for j in range(-size // 2, size // 2):
        rest = Fraction(context.exp(context.divide(context.multiply(ln2, j), size)))
        row = []
        for _ in range(parts):
            row.append(float(rest))
            rest -= Fraction(row[-1])
        rows.append(row)
    return np.array(rows).T.copy()


def _exp_table_index(z, bits: int):
    """``(n, k, j)``: ``n = rint(z 2^bits / ln 2)`` (float64) and ``n = 2^bits k + j - 2^(bits
    - 1)``, ``k`` the power of 2 and ``j`` the index of ``2^(j / 2^bits - 1/2)`` in
    :func:`_exp2_table` of ``bits`` (int64 arrays)."""
    n = np.rint(z * ((1 << bits) / math.log(2.0)))
    with np.errstate(invalid="ignore"):
        shifted = n.astype(np.int64) + (1 << (bits - 1))
    return n, shifted >> bits, shifted & ((1 << bits) - 1)


_EXP2_HI, _EXP2_LO = _exp2_table(_EXP_TABLE_BITS, 2)  # 2^(j / 256), j = -128..127 (at j + 128)
_LN2_HI_T, _LN2_MID_T, _LN2_LO_T = (
    math.ldexp(part, -_EXP_TABLE_BITS) for part in (_LN2_HI, _LN2_MID, _LN2_LO)
)


def _fast_two_sum(a, b):
    """``(s, err)`` with ``s + err == a + b`` exactly, for ``|a| >= |b|`` (or ``a == 0``)."""
    s = a + b
    return s, b - (s - a)


def _dd_add(a_hi, a_lo, b_hi, b_lo):
    """Double-double sum (relative error about 2^-104 unless it cancels)."""
    s, e = two_sum(a_hi, b_hi)
    return _fast_two_sum(s, e + (a_lo + b_lo))


def _dd_mul(a_hi, a_lo, b_hi, b_lo):
    """Double-double product (relative error about 2^-104)."""
    p, e = two_prod(a_hi, b_hi)
    return _fast_two_sum(p, e + (a_hi * b_lo + a_lo * b_hi))


def _split(a, out=None):
    """Dekker's split of ``a``: ``(hi, lo)``, ``hi + lo == a``, each of at most 26 bits.

    ``out``: two arrays of ``a``'s shape for ``hi`` and ``lo`` (reused buffers)."""
    if out is None:
        c = _SPLITTER * a
        hi = c - (c - a)
        return hi, a - hi
    hi, lo = out
    np.multiply(_SPLITTER, a, out=hi)
    np.subtract(hi, a, out=lo)
    np.subtract(hi, lo, out=hi)
    np.subtract(a, hi, out=lo)
    return hi, lo


def _dd_times_split(hi, lo, r, r_hi, r_lo, out=None):
    """``(hi + lo) r`` as an unnormalised ``(p, e)``: ``hi r = p + (its error)`` exactly
    (Dekker's product with ``r`` split once by the caller), ``lo r`` rounded into ``e``.

    ``out``: four arrays of the result's shape (for ``p``, ``e`` and two work arrays),
    reused by a caller from block to block; the same operations in the same order."""
    if out is None:
        a_hi, a_lo = _split(hi)
        p = hi * r
        e = ((a_hi * r_hi - p) + a_hi * r_lo + a_lo * r_hi) + a_lo * r_lo
        e += lo * r
        return p, e
    p, e, a_hi, a_lo = out
    _split(hi, out=(a_hi, a_lo))
    np.multiply(hi, r, out=p)
    np.multiply(a_hi, r_hi, out=e)
    e -= p
    np.multiply(a_hi, r_lo, out=a_hi)
    e += a_hi
    np.multiply(a_lo, r_hi, out=a_hi)
    e += a_hi
    np.multiply(a_lo, r_lo, out=a_lo)
    e += a_lo
    np.multiply(lo, r, out=a_lo)
    e += a_lo
    return p, e


def _dd_expm1(r):
    """``expm1(r)`` as a double-double ``(hi, lo)`` for float64 ``|r| <= ln 2 / 512``.

    To about 2^-106 of ``e^r`` (see ``_EXP_TABLE_BITS``): the tail of the series in double,
    then Horner steps ``(hi, lo) r + 1/m!`` in double-double, with ``hi r`` exact (Dekker's
    product, ``r`` split once) and the constant the larger addend (fast TwoSum).
    """
    tail = horner([c for c, _ in _INVERSE_FACTORIALS[5:10]], r)
    # 1/4! + r tail: the product's rounding is below 2^-69 of the sum, 2^-107 of e^r
    tail *= r
    hi, lo = _fast_two_sum(_INVERSE_FACTORIALS[4][0], tail)
    lo += _INVERSE_FACTORIALS[4][1]
    r_hi, r_lo = _split(r)
    for c_hi, c_lo in reversed(_INVERSE_FACTORIALS[1:4]):
        p, e = _dd_times_split(hi, lo, r, r_hi, r_lo)
        s, s_err = _fast_two_sum(c_hi, p)  # |p| < 2^-9 c_hi
        hi, lo = _fast_two_sum(s, s_err + (e + c_lo))
    return _fast_two_sum(*_dd_times_split(hi, lo, r, r_hi, r_lo))


def dd_exp_parts(z):
    """``(k, m_hi, m_lo)`` with ``e^z = 2^k (1 + m)``, ``m`` a double-double, for float64 ``z``.

    Domain: ``|z| <= 745`` or so (``k`` an exponent). ``z = (256 k + j) ln 2 / 256 + r``
    with ``r`` in double-double (three-part ln 2), ``1 + m = 2^(j/256) e^r`` from a table of
    ``2^(j/256)`` and :func:`_dd_expm1`: relative accuracy about 2^-105 of ``e^z``, and
    ``1 + m`` in [0.7, 1.42]. Long arrays go in cache-sized blocks (the same operations).
    """
    z = np.asarray(z)
    if z.ndim == 1 and z.size > CHUNK:
        k = np.empty(z.shape, np.int64)
        m_hi, m_lo = np.empty(z.shape), np.empty(z.shape)
        for b in chunks(z.size):
            k[b], m_hi[b], m_lo[b] = _dd_exp_parts_block(z[b])
        return k, m_hi, m_lo
    return _dd_exp_parts_block(z)


def _exp_table_reduction(z):
    """``(n, k, j, a)`` for ``z = n ln 2 / 256 + r``: ``n = 256 k + j - 128`` (``j`` the index of
    ``2^(j/256 - 1/2)`` in the table) and ``a = z - n L_hi``, for the three parts ``L_hi``,
    ``L_mid``, ``L_lo`` of ``ln 2 / 256``, so that ``r = a - n L_mid - n L_lo``. ``n`` times
    each of the first two parts is exact (32-bit parts, ``|n| < 2^19``), and ``a`` is exact
    (Sterbenz)."""
    n, k, j = _exp_table_index(z, _EXP_TABLE_BITS)
    return n, k, j, z - n * _LN2_HI_T


def exp_shifted_dd(d, err):
    """``e^(d + err)`` as an unnormalised double-double ``(hi, lo)``, to about ``2^-61``.

    Domain: float64 ``|d| <= 745`` and ``|err| <= ulp(d)``. For sums whose every digit
    counts, where :func:`dd_exp_parts` (to ``2^-105``) would cost several times as much:
    ``e^z = 2^k T e^r`` (``_EXP_TABLE_BITS``), with ``|r| <= ln 2 / 512`` in one double
    (rounded about twice: below ``2^-62`` of ``e^r``) and ``e^r - 1`` by ``expm1`` (within an
    ULP of a number below ``2^-9``), so that ``hi = 2^k T_hi`` is exact and
    ``lo = 2^k (T_lo + T_hi expm1(r))`` carries the rest. Parts below ``2^-1022`` are
    subnormal and lose digits.
    """
    k, hi, lo = _exp_shifted_parts(d, err)
    # times 2^k as two exact products by powers of 2 built from their bits (np.ldexp is
    # several times slower): 2^(k + 600) is normal for every k of the domain
    k += 1023 + 600
    k <<= 52
    scale = k.view(np.float64)
    hi *= scale
    lo *= scale
    hi *= 2.0**-600
    lo *= 2.0**-600
    return hi, lo


def _exp_shifted_parts(d, err):
    """``(k, hi, lo)`` with ``e^(d + err) = 2^k (hi + lo)`` (``hi + lo`` in [0.7, 1.42]), as
    :func:`exp_shifted_dd` before its scaling by ``2^k``."""
    n, k, j, r = _exp_table_reduction(d)
    r -= n * _LN2_MID_T
    r -= n * _LN2_LO_T
    r += err
    lo = np.expm1(r)
    hi = np.take(_EXP2_HI, j)
    lo *= hi
    lo += np.take(_EXP2_LO, j)
    return k, hi, lo


# Beyond this e^t m 2^e is 0 or infinite for every float64 m 2^e (at least 2^-1074 and below
# 2^1024); the table reduction needs |t| < 1400 or so.
_EXP_TIMES_LIMIT = 1500.0


@quiet
def exp_times_power(t, m, e):
    """``e^t m 2^e`` (float64) for finite float64 ``t`` and ``m``, integer ``e``, without
    leaving the normal range on the way.

    The textbook ``exp(t) * v`` keeps only the absolute accuracy of a subnormal ``e^t``
    (below ``t = -708``: thousands of ULP of a normal product), and gives NaN or a spurious
    0 or infinity where ``e^t`` or ``v`` underflows or overflows while the product does not.
    Here ``e^t = 2^k (hi + lo)`` (:func:`_exp_shifted_parts`, within about an ULP), the
    product ``(hi + lo) m`` is rounded once, and the single ``ldexp`` by ``2^(k + e)`` rounds
    it into the subnormal range if it lands there: within 2 ULP (3 for an ``m`` that is
    itself rounded once, such as a squared mantissa).
    """
    limit = _EXP_TIMES_LIMIT
    k, hi, lo = _exp_shifted_parts(np.clip(t, -limit, limit), 0.0)
    hi += lo
    hi *= m
    return np.ldexp(hi, k + e)


@quiet
def exp_times_difference(t, x):
    """``e^t (t - x)`` (float64) for float64 ``t > -inf``, ``x``, also where ``e^t`` is subnormal.

    :func:`exp_times_power` of ``t - x = 2^e m`` (``frexp`` of the halved difference, which
    does not overflow where ``e^t`` underflows): within 2 ULP.
    """
    m, e = np.frexp(0.5 * t - 0.5 * x)
    return exp_times_power(t, m, e + 1)


def _dd_exp_parts_block(z):
    """:func:`dd_exp_parts` of one block: ``2^k (1 + m) = 2^k T e^r`` (``_EXP_TABLE_BITS``)."""
    # r = z - n ln 2 / 256 in double-double
    n, k, j, a = _exp_table_reduction(z)
    r, r_err = two_sum(a, -(n * _LN2_MID_T))
    r, r_err = _fast_two_sum(r, r_err - n * _LN2_LO_T)
    e_hi, e_lo = _dd_expm1(r)
    t_hi, t_lo = _EXP2_HI[j], _EXP2_LO[j]
    # m = (T - 1) + T expm1(r); T - 1 is exact (Sterbenz: T in [2^-1/2, 2^1/2])
    p_hi, p_lo = _dd_mul(t_hi, t_lo, e_hi, e_lo)
    m_hi, m_lo = _dd_add(t_hi - 1, t_lo, p_hi, p_lo)
    # e^{r + r_err} - 1 = m + (1 + m) r_err, to second order in r_err (below 2^-120)
    m_hi, m_lo = _fast_two_sum(m_hi, m_lo + (1 + m_hi) * r_err)
    return k, m_hi, m_lo


def scaled_exp_minus(a, z, b):
    """``a e^z - b`` for float64 ``a``, ``z``, ``b``, within about 1 ULP however much it cancels.

    Domain: ``|z| <= 700`` and ``a e^z`` finite. With ``e^z = 2^k (1 + m)``
    (:func:`dd_exp_parts`), ``a e^z - b = (A - b) + A m`` for ``A = a 2^k`` (exact): ``A - b``
    by TwoSum, ``A m`` in double-double, summed in double-double and rounded once. The textbook
    ``a * exp(z) - b`` keeps only the absolute accuracy of ``a e^z`` (the canonical-link
    gradient ``e^eta - y`` of a Poisson at its optimum ``eta = log y``). ``a = None`` stands
    for 1 (see :func:`scaled_exp_minus_dd`).
    """
    hi, lo = scaled_exp_minus_dd(a, z, b)
    return hi + lo


def scaled_exp_minus_dd(a, z, b, parts=None):
    """:func:`scaled_exp_minus` as the double-double ``(hi, lo)`` (to about 2^-104 of ``a e^z``).

    ``parts``: :func:`dd_exp_parts` of ``z`` if already computed (two differences of one
    exponential). ``a = None`` stands for 1: ``A = 2^k`` and ``A m`` is exact without
    Dekker's product (a power of 2 times a double-double).
    """
    k, m_hi, m_lo = dd_exp_parts(z) if parts is None else parts
    if a is None:
        big = np.ldexp(1.0, k)
        p_hi, p_lo = big * m_hi, big * m_lo
    else:
        big = np.ldexp(a, k)
        p_hi, p_lo = _dd_mul(big, 0.0, m_hi, m_lo)
    s, s_err = two_sum(big, -b)
    return _dd_add(s, s_err, p_hi, p_lo)


# a e^z - b where a e^z is within a hair of b (the optimum of an exponential mean: where a e^z
# rounds to b the difference is 2^-53 of b or less, often much less): the double-double
# exponential's 2^-105 of b is then more than an ULP of it. e^z = 2^k 2^(j/4096) e^r with
# |r| <= ln 2 / 8192 < 2^-13.5: the table entries in three parts, ln 2 / 4096 in four (three
# of 30 bits, so that n times each is exact for |n| < 2^23, and the rest), expm1(r) in
# double-double (its roundings scaled by r: about 2^-119), and the products and the sum with
# b kept as exact pairs down to 2^-66 of b, rounded together once: within about 2^-116 of b.
_NEAR_TABLE_BITS = 12


@functools.cache
def _exp2_fine_table():
    """``2^(j / 4096)`` for ``j = -2048..2047`` in three parts, and ``ln 2 / 4096`` in four
    (built on first use: 0.2 s of decimal arithmetic at 60 digits)."""
    size = 1 << _NEAR_TABLE_BITS
    step = Fraction(decimal.Context(prec=60).ln(decimal.Decimal(2))) / size
    steps = []
    for _ in range(3):  # 30 significant bits each
        exponent = math.frexp(float(step))[1]
        head = Fraction(round(step * 2 ** (30 - exponent)), 2 ** (30 - exponent))
        steps.append(float(head))
        step -= head
    steps.append(float(step))
    return _exp2_table(_NEAR_TABLE_BITS, 3), tuple(steps)


def scaled_exp_minus_near(a, z, b):
    """``a e^z - b`` as a double-double, for float64 ``a > 0``, ``|z| <= 700``, ``b`` with
    ``a e^z`` within ``2^-8`` of ``b`` (and ``a 2^k`` normal): within about ``2^-116 b``.

    For the few elements where :func:`scaled_exp_minus_dd` (about ``2^-105 b``) leaves too
    few digits of the difference; see ``_NEAR_TABLE_BITS``. ``A = a 2^k`` is exact, ``A T``
    in exact pairs (Dekker's products), ``A T_hi - b`` exact (Sterbenz), the product with
    ``expm1(r)`` as an exact pair plus roundings below ``2^-119 b``.
    """
    (t_hi, t_mid, t_lo), (l1, l2, l3, l4) = _exp2_fine_table()
    n, k, j = _exp_table_index(z, _NEAR_TABLE_BITS)
    # r = z - n ln 2 / 4096: z - n l1 exact (Sterbenz), n l2 and n l3 exact, n l4 rounded
    r, r_lo = two_sum(z - n * l1, -(n * l2))
    r, r_lo2 = two_sum(r, -(n * l3))
    r, r_lo = _fast_two_sum(r, (r_lo + r_lo2) - n * l4)
    e_hi, e_lo = _dd_expm1(r)
    e_lo += (1 + e_hi) * r_lo  # e^{r + r_lo} - 1, to second order in r_lo (below 2^-130)
    big = np.ldexp(a, k)
    a1, a2 = two_prod(big, t_hi[j])
    a3, a4 = two_prod(big, t_mid[j])
    p, p_err = two_prod(a1, e_hi)
    p_err += a1 * e_lo + (a2 + a3) * e_hi
    u, u_err = two_sum(a1 - b, p)
    v, v_err = two_sum(u, a2)
    w, w_err = two_sum(v, a3)
    rest = ((u_err + v_err) + (w_err + p_err)) + (a4 + big * t_lo[j])
    return _fast_two_sum(w, rest)


# For a = 1 (the only use) the closest e^z comes to a float64 b, other than equal, is about
# 2^-113 b (the worst cases of rounding exp to float64): 60 decimal digits (about 2^-199)
# leave every such difference far more than its 53 bits. Not claimed for a general a.
_EXACT_CONTEXT = decimal.Context(prec=60)


def scaled_exp_minus_exact(a, z, b):
    """``a e^z - b`` (float64) element by element in 60-digit decimal arithmetic, rounded once.

    For the few elements whose difference cancels beyond what :func:`scaled_exp_minus_near`
    resolves (below about ``2^-60 b``, where its ``2^-116 b`` is more than an ULP): tens of
    microseconds each. ``a = None`` stands for 1, the case the accuracy is argued for (see
    ``_EXACT_CONTEXT``). Domain: finite ``z``, ``a e^z`` finite.
    """
    context = _EXACT_CONTEXT
    a = np.ones_like(z) if a is None else np.broadcast_to(a, np.shape(z))
    out = np.empty(np.shape(z))
    for i, (ai, zi, bi) in enumerate(zip(a.tolist(), z.tolist(), b.tolist(), strict=True)):
        exp = context.exp(decimal.Decimal(zi))
        product = context.multiply(decimal.Decimal(ai), exp)
        out[i] = float(context.subtract(product, decimal.Decimal(bi)))
    return out


def logistic_slope_exact(x, y, cy):
    r"""``(1 - y) sigma(x) - cy sigma(-x)`` within 4 ULP of float64, also where it cancels.

    Near the optimum of a soft target (``y`` close to ``sigma(x)``) the two terms nearly
    cancel, and the rounding errors of ``sigma`` (a few ULP of the terms) would be most of
    the difference. With ``E = e^{-|x|} = 2^k P`` (:func:`dd_exp_parts`, ``P`` in
    double-double): for ``x >= 0`` the difference is :math:`[(1 - y) - c_y E] / (1 + E)`,
    for ``x < 0`` it is :math:`[(1 - y) E - c_y] / (1 + E)`. ``1 - y`` is exact (TwoSum),
    the numerator is formed in double-double scaled by ``2^{-k}`` (nothing underflows) and
    only the final division rounds. The error is below about 2^-104 of the larger term: at
    most 4 ULP of the difference (measured: 2.7) unless the difference is below 2^-55 of
    the larger term (``y`` and ``sigma(x)`` agree beyond the 53 bits of float64), where it
    stays below 2^-103 of that term.
    float64 arrays of one shape, ``x`` finite; ``cy`` is the coefficient as given (``y``
    itself, or ``y`` times a ``pos_weight``). A few hundred operations per element: for
    the elements whose terms cancel.
    """
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        k, m_hi, m_lo = dd_exp_parts(-np.abs(x))
        p_hi, p_lo = _dd_add(1.0, 0.0, m_hi, m_lo)
        one_hi, one_lo = two_sum(1.0, -y)  # 1 - y, exactly
        a_hi, a_lo = _dd_mul(one_hi, one_lo, p_hi, p_lo)  # (1 - y) P, for x < 0
        b_hi, b_lo = _dd_mul(cy, 0.0, p_hi, p_lo)  # cy P, for x >= 0
        positive = x >= 0
        n_hi, n_lo = _dd_add(
            np.where(positive, np.ldexp(one_hi, -k), a_hi),
            np.where(positive, np.ldexp(one_lo, -k), a_lo),
            -np.where(positive, b_hi, np.ldexp(cy, -k)),
            -np.where(positive, b_lo, 0.0),
        )
        return np.ldexp(n_hi + n_lo, k) / (1 + np.ldexp(p_hi, k))


def dd_constant(value: Fraction) -> tuple[float, float]:
    """A rational constant as a double-double ``(hi, lo)`` (to 2^-106 of it)."""
    return _double_double(Fraction(value))


# the double-double sum and product for other modules (to about 2^-104 of the larger addend,
# however much they cancel; of the product, in Dekker's domain below 1e300)
dd_add, dd_mul = _dd_add, _dd_mul


def dd_div(a_hi, a_lo, b_hi, b_lo):
    """Double-double quotient ``(a_hi + a_lo) / (b_hi + b_lo)``, to about 2^-104 of it.

    The float64 quotient ``q``, then the remainder ``a - q b`` (``q b_hi`` exact by Dekker's
    product; the remainder is a few ULP of ``a`` and nearly exact) divided once: the
    correction. Domain: finite ``b != 0``, ``|q|``, ``|b|`` below 1e300.
    """
    q = a_hi / b_hi
    p, p_err = two_prod(q, b_hi)
    rem = (((a_hi - p) - p_err) + a_lo) - q * b_lo
    return _fast_two_sum(q, rem / b_hi)


def dd_log(w_hi, w_lo):
    """``log(w_hi + w_lo)`` as a double-double, for a double-double ``w > 0`` (normal).

    ``log(w) = log(w_hi) + log1p(w_lo / w_hi)`` with ``log1p(v) = v`` up to ``v^2 / 2`` (below
    2^-106); ``log(w_hi) = l + (log(w_hi) - l)`` for ``l = fl(log w_hi)``, the difference by
    :func:`_log_minus_table` (about 2^-72 absolute; Sterbenz applies, ``l`` being within an
    ULP of ``log w_hi``). Accuracy: about 2^-72 absolute, 2^-72 / |log w| relative (not
    for ``w`` within 2^-10 of 1, where the log is small: use a series of ``w - 1`` there).
    """
    lead = np.log(w_hi)
    rest = _log_minus_table(w_hi, lead)
    rest += w_lo / w_hi
    return _fast_two_sum(lead, rest)


def dd_horner(coefficients, z_hi, z_lo, tail=None):
    """``sum_k c_k z^k`` (``coefficients`` = double-doubles ``(c_hi, c_lo)`` from ``c_0`` on)
    by Horner's rule in double-double: to about 2^-100 of the sum of ``|c_k z^k|``.

    ``tail`` (float64, optional): the value of the higher terms divided by
    ``z^len(coefficients)``, evaluated by the caller in float64 where they are small enough
    for that; it starts the recurrence.
    """
    if tail is None:
        hi = np.full_like(z_hi, coefficients[-1][0])
        lo = np.full_like(z_hi, coefficients[-1][1])
        coefficients = coefficients[:-1]
    else:
        hi, lo = tail, np.zeros_like(z_hi)
    for c_hi, c_lo in reversed(coefficients):
        hi, lo = _dd_mul(hi, lo, z_hi, z_lo)
        hi, lo = _dd_add(hi, lo, c_hi, c_lo)
    return hi, lo


def log_minus_near(t, x):
    """``log(t) - x`` for float64 ``t > 0`` and finite ``x`` with ``|log t - x| <= 372``.

    ``log t - x = log1p(w)`` with ``w = t e^{-x} - 1``, and ``w`` is formed to about 2^-100
    of its size (so that a ``w`` that cancels to ``2^-60`` still has its 53 bits):
    ``e^{-x} = 2^k (1 + m)`` (:func:`dd_exp_parts`), ``T = t 2^k`` (exact), and
    ``w = (T - 1) + T m``, where ``T - 1`` is exact whenever ``w`` is small (``T`` is then
    within a factor 2 of 1).
    Accuracy: about 1 ULP (that of ``log1p``).
    """
    k, m_hi, m_lo = dd_exp_parts(-x)
    big = np.ldexp(t, k)
    p_hi, p_lo = _dd_mul(big, 0.0, m_hi, m_lo)
    w_hi, w_lo = _dd_add(big - 1, 0.0, p_hi, p_lo)
    return np.log1p(w_hi) + w_lo / (1 + w_hi)


# log of a float64 t > 0, to about 2^-90 absolute: t = 2^k m with m in [1, 2), and
# m r_j = 1 + u with r_j a reciprocal of 16 significant bits for m's first 12 fraction bits j
# (r_0 = 1): m r_j is then exact in two parts (m split into 26 and 27 bits) and
# |u| < 2^-12.8, so log t = k ln 2 - log r_j + log1p(u), with -log r_j tabulated in
# double-double (from the standard library's decimal logarithm, exact to 50 digits; built on
# first use, 4096 entries in about 0.4 s) and log1p(u) summed as u - u^2/2 (exact parts) + a
# series in double from u^3/3 (below 2^-40: rounded within 2^-93) to u^7/7 (the next term is
# below 2^-105). (A table of 128 entries leaves |u| < 2^-7 and a series rounded to 2^-78.)
_TABLE_BITS = 12
_RECIPROCAL_BITS = 16


def _reciprocal(j: int) -> float:
    if j == 0:
        return 1.0
    centre = 1 + (j + 0.5) / 2**_TABLE_BITS
    mantissa, exponent = math.frexp(1 / centre)
    return math.ldexp(round(mantissa * 2**_RECIPROCAL_BITS), exponent - _RECIPROCAL_BITS)


@functools.cache
def _minus_log_table():
    context = decimal.Context(prec=50)
    r = [_reciprocal(j) for j in range(2**_TABLE_BITS)]
    logs = [-context.ln(decimal.Decimal(v)) for v in r]
    hi = [float(v) for v in logs]
    lo = [float(v - decimal.Decimal(h)) for v, h in zip(logs, hi, strict=True)]
    return np.array(r), np.array(hi), np.array(lo)


_LOG1P_SERIES = [(-1.0) ** (k + 1) / k for k in range(3, 8)]  # u^3/3 - u^4/4 + ...
_HIGH_BITS = ~np.int64((1 << 27) - 1)  # clears the 27 low bits of a float64's fraction


def _log_minus_table(t, x):
    """``log(t) - x`` for float64 ``t > 0`` and finite ``x`` within a factor 2 of ``log t``.

    ``log t`` is formed as an unevaluated sum to about 2^-90 absolute (see ``_TABLE_BITS``):
    ``k ln2_hi``, ``k ln2_mid`` (exact products) and the leading parts summed by TwoSum,
    the rest (below 2^-40, or an ULP of the sum) in double. Its leading part minus ``x`` is
    exact (Sterbenz' lemma), so the result is within about 2^-90 plus half an ULP: within
    2 ULP wherever ``|log t - x| >= 2^-36``.
    """
    reciprocals, minus_log_hi, minus_log_lo = _minus_log_table()
    m, k = np.frexp(t)
    m *= 2
    k = (k - 1).astype(np.float64)
    j = ((m - 1) * 2**_TABLE_BITS).astype(np.intp)
    r = reciprocals[j]
    m_hi = (m.view(np.int64) & _HIGH_BITS).view(np.float64)
    m_lo = m - m_hi
    u, u_err = two_sum(m_hi * r - 1, m_lo * r)  # m r - 1, exactly
    sq, sq_err = two_prod(u, u)
    series = horner(_LOG1P_SERIES, u)
    series *= sq * u
    s, e1 = two_sum(k * _LN2_HI, minus_log_hi[j])
    s, e2 = two_sum(s, k * _LN2_MID)  # (up to 2^-25: too large to be rounded in the rest)
    s, e3 = two_sum(s, u)
    s, e4 = two_sum(s, -0.5 * sq)
    low = (e1 + e2) + (e3 + e4) + (minus_log_lo[j] + k * _LN2_LO)
    low += u_err * (1 - u) - 0.5 * sq_err + series
    return (s - x) + low


def exp_minus_near(x, y, e=None):
    """``e^x - y`` for float64 ``2^-20 <= |x| <= 600`` and ``|e^x - y| <= e^x / 4``.

    From ``E = fl(e^x)`` (``e``, if already computed) and the logarithm:
    ``e^x = E e^{-d}`` with ``d = log E - x`` (:func:`_log_minus_table`, to about 2^-72
    absolute; ``|d|`` is a few 2^-53, and ``x`` is within a factor 2 of ``log E``), so
    ``e^x - y = (E - y) - E d`` up to ``E d^2 / 2 < 2^-100 E``, with ``E - y`` exact
    (Sterbenz: ``y`` is within a factor 2 of ``E``). Within about 2^-71 of ``e^x`` plus half
    an ULP of the result: 4 ULP wherever ``|e^x - y| >= 2^-20 e^x``. (Below ``x = -600``
    the product ``E d`` would lose bits to underflow.) A few tens of
    operations per element, a third of the double-double exponential's.
    """
    e = np.exp(x) if e is None else e
    d = _log_minus_table(e, x)
    d *= e
    return np.subtract(e, y) - d


# e^x - y for an integer count y in [1, COUNT_LOGS) near its optimum x = log y (the gradient of
# a Poisson log-likelihood): y expm1(d) with d = x - log y, from log y in double-double (a
# table, from the standard library's decimal logarithm to 40 digits).
COUNT_LOGS = 1 << 12


@functools.cache
def _count_log_table():
    """``log k`` for ``k = 0..COUNT_LOGS - 1`` as ``(hi, lo)`` (entry 0 is 0, unused), built on
    first use: the decimal logarithm of each prime, and ``log k = log p + log(k / p)`` for its
    smallest prime factor ``p`` (a dozen additions at 40 digits at most: within 10^-38)."""
    context = decimal.Context(prec=40)
    logs = [decimal.Decimal(0)] * COUNT_LOGS
    for k in range(2, COUNT_LOGS):
        p = next((q for q in range(2, math.isqrt(k) + 1) if k % q == 0), k)
        logs[k] = context.ln(decimal.Decimal(k)) if p == k else context.add(logs[p], logs[k // p])
    hi = np.array([float(v) for v in logs])
    lo = np.array([float(v - decimal.Decimal(h)) for v, h in zip(logs, hi.tolist(), strict=True)])
    return hi, lo


def count_indices(y):
    """``(k, ok)``: ``y`` (float64) as integers (garbage where it is not one: NaN, huge) and
    where it is an integer count of the table, in ``[1, COUNT_LOGS)``."""
    with np.errstate(invalid="ignore"):
        k = y.astype(np.intp)
    ok = np.less((k - 1).view(np.uintp), COUNT_LOGS - 1)  # 1 <= k < COUNT_LOGS
    ok &= k == y  # (exact: |k| < 2^53 where it matters)
    return k, ok


def exp_minus_count(x, y, k):
    """``e^x - y`` for float64 ``x`` and integer ``y`` in ``[1, COUNT_LOGS)`` with
    ``|x - log y| <= 0.3`` (where ``e^x`` is within a quarter of ``y``): within 4 ULP. ``k``:
    ``y`` as integers (:func:`count_indices`).

    ``y expm1(d)`` with ``d = (x - L_hi) - L_lo``, ``L_hi + L_lo = log y`` to ``2^-106``
    (``_count_log_table``). ``x - L_hi`` is exact (Sterbenz' lemma: ``L_hi >= 0.69`` and
    ``|d| <= L_hi / 2``, or ``y = 1``, ``L = 0``), so ``d`` is rounded once, within half an ULP
    plus ``2^-106 |log y|``, which is below ``2^-39`` of ``d`` (no double lies closer than
    ``2^-14`` of an ULP of ``L_hi`` to a ``log y`` of the table, ``y > 1``: a test checks it).
    ``expm1`` at ``|d| <= 0.3`` has condition ``d e^d / expm1(d) <= 1.16``: with its own
    ULP and the product's rounding the relative error is below ``4.2 * 2^-53`` (about 2 ULP
    in practice). About ten operations per element; the double-double exponential of
    :func:`scaled_exp_minus` takes two hundred.
    """
    hi, lo = _count_log_table()
    d = np.subtract(x, hi.take(k))
    d -= lo.take(k)
    np.expm1(d, out=d)
    d *= y
    return d


# log t = e ln 2 + log c_j + log1p(u) for t = 2^e m (m in [1/2, 1)), c_j = (j + 1/2) / 1024 the
# centre of m's interval [j/1024, (j + 1)/1024) (j = 512..1023) and u = (m - c_j) / c_j,
# |u| < 2^-10: 1024 m - (j + 1/2) is exact (both multiples of 2^-43 within 1/2 of each other)
# and the quotient by j + 1/2 is rounded once (within 2^-53 |u| < 2^-63). log c_j in
# double-double (from the standard library's decimal logarithm, exact to 50 digits), as the
# real and imaginary parts of one complex table (one look-up fetches both; 16 KB, in the L1
# cache); entries below 512 are NaN (t = 0 comes out NaN). (A table of 256 leaves |u| < 2^-8
# and four times the error: four times as many elements of random distributions to redo.)
_MID_BITS = 10


def _mid_log_table():
    context = decimal.Context(prec=50)
    size = 1 << _MID_BITS
    table = np.full(size, complex(math.nan, math.nan))
    for j in range(size // 2, size):
        log_c = context.ln(decimal.Decimal(j + 0.5) / size)
        hi = float(log_c)
        table[j] = complex(hi, float(log_c - decimal.Decimal(hi)))
    return table


_MID_LOGS = _mid_log_table()


def log_minus_buffers(size: int):
    """Scratch buffers for :func:`_log_minus_mid` of up to ``size`` elements."""
    size = max(1, size)
    floats = (np.empty(size) for _ in range(3))
    return (
        *floats,
        np.empty(size, np.complex128),
        np.empty(size, np.int32),
        np.empty(size, np.intp),
    )


def _log_minus_mid(t, x, out=None, buffers=None):
    """``log(t) - x`` for float64 ``t > 0`` and finite ``x``, within 2^-60.5 absolute plus
    half an ULP of the result.

    ``t = 2^e m``, ``log t = e ln 2 + log c_j + log1p(u)`` (see ``_MID_BITS``): ``u`` within
    2^-63, ``log1p(u)`` within an ULP (2^-63); ``e ln2_hi + log c_j`` summed exactly
    (Fast2Sum: ``|e ln 2| > |log c_j|`` unless ``e = 0``; ``e ln2_hi`` is exact), the other
    parts (about ``2^-10``) in double. So within 2^-60.5 plus half an ULP of ``s - x`` (its
    leading part ``s`` minus ``x``) and half an ULP of the result: within 2 ULP wherever
    ``|log t - x| >= 2^-7``, where ``|s - x| < 1.14 |log t - x|``. About twenty operations
    and one table look-up, into ``out`` with the scratch ``buffers``
    (:func:`log_minus_buffers`) when given: no temporary. ``t = 0`` and NaN give NaN.
    """
    n = t.size
    if out is None:
        out = np.empty(t.shape)
    w, c, a, logs, e, j = (b[:n] for b in (buffers or log_minus_buffers(n)))
    np.frexp(t, out=(w, e))
    w *= 1 << _MID_BITS
    np.copyto(j, w, casting="unsafe")  # floor (a NaN or 0 lands on a NaN entry, or is clipped)
    np.take(_MID_LOGS, j, out=logs, mode="clip")
    np.floor(w, out=c)  # j, in floating point (cheaper than adding to the integers)
    c += 0.5
    w -= c  # exact
    np.divide(w, c, out=w)  # u
    np.log1p(w, out=w)
    np.copyto(c, e)  # e in floating point, once for both products
    np.multiply(c, _LN2_HI, out=a)  # exact
    np.add(a, logs.real, out=out)  # s
    np.subtract(out, a, out=a)
    np.subtract(logs.real, a, out=a)  # the error of s
    c *= _LN2_MID + _LN2_LO
    a += c
    a += logs.imag
    a += w
    np.subtract(out, x, out=out)
    out += a
    return out


def _log_minus_small(t, x, d):
    """``log(t) - x`` for float64 ``t > 0`` and finite ``x`` with ``|log t - x| < 2^-7``.

    ``d``: an estimate of the result (within 2^-24 of it, relatively: it only chooses the
    kernel, the table's own result decides again). Within 2 ULP (plus 2^-104 of ``t``, the
    double-double's): :func:`_log_minus_table` (90 bits) where the result may reach 2^-36,
    and where it is below, which needs more, the double-double :func:`log_minus_near`
    (directly where the estimate is below 2^-37).
    """
    y = np.empty_like(t)
    tiny = np.abs(d) < 2.0**-37
    table = np.flatnonzero(~tiny)
    if table.size:
        yt = _log_minus_table(t[table], x[table])
        y[table] = yt
        tiny[table[np.abs(yt) < 2.0**-36]] = True
    tiny = np.flatnonzero(tiny)
    if tiny.size:
        y[tiny] = log_minus_near(t[tiny], x[tiny])
    return y


# Elements per block of XlogMinus: its float64 buffers (256 KB each) stay in the L2 cache.
XLOG_BLOCK = 1 << 15
# Gathered elements per call of the careful kernels: their temporaries (64 KB) are reused from
# the allocator's free lists (larger ones are mapped and unmapped by the allocator on every
# call, a page fault per 4 KB).
_CAREFUL_BLOCK = 1 << 13
# |log t| <= 103.3 for float32 t > 0 (2^-149): |log t - x| > 104 2^-26 exceeds 2^-26 |log t|
_WIDE_LIMIT = 104 * 2.0**-26
# float64: where |log t - x| >= 2^-7, _log_minus_mid is within 2 ULP
_MID_LIMIT = 2.0**-7
# float32: where |log t - x| >= 2^-33, _log_minus_mid's 2^-60.5 is 2^-27.5 of it, below a
# quarter of a float32 ULP
_MID_LIMIT_WIDE = 2.0**-33


class XlogMinus:
    """``t * (log(t) - x)`` for ``t >= 0``, block by block, within a few ULP also where ``x``
    is near ``log t``.

    The plain ``log(t) - x`` cancels where ``x`` is near ``log t`` (a relative error of
    ``|log t| / |log t - x|`` ULP: 10^8 ULP at the optimum of a KL divergence). Each block
    goes through a fast formula into its output, which also tells the few elements where
    that formula may be off by more than about 2 ULP (the "hard" ones); the caller gathers
    those and gives them to :func:`xlog_minus_careful`. The buffers are made once (no
    block allocates a temporary):

    - float32 ``t``: the float64 difference ``log t - x``, within 2^-52 ``|log t|`` plus
      half an ULP, so within a quarter of a float32 ULP of itself unless below 2^-26
      ``|log t|``; where below ``104 * 2^-26`` (at least that) the block redoes it by
      :func:`_log_minus_mid`, and only what is below 2^-33 there (and ``t = 0``) is hard.
      The product is rounded once (to float32, or kept in float64 when ``out`` is float64).
    - float64 ``t``: :func:`_log_minus_mid` (within 2^-60.5 absolute: the rounding of
      ``log1p`` of a number below 2^-10 instead of that of ``log t``); hard where the
      difference is below 2^-7 (0.4 % of the elements of random distributions), also
      ``t = 0`` (NaN there).

    NaN anywhere makes the element hard.
    """

    def __init__(self, dtype, size: int):
        self.wide = np.dtype(dtype) != np.float64
        self.step = self.block_size(dtype)
        size = max(1, min(self.step, size))
        self.diff, self.size = np.empty(size), np.empty(size)
        self.good = np.empty(size, dtype=bool)
        if self.wide:  # (a ufunc widening its inputs itself makes a copy of each)
            self.wide_t, self.wide_x = np.empty(size), np.empty(size)
        # float32: made when a block first has elements to redo (random data has none)
        self.buffers = None if self.wide else log_minus_buffers(size)

    @staticmethod
    def block_size(dtype) -> int:
        """Elements per block: float32 blocks are half as long (their inputs are widened into
        two more buffers)."""
        return XLOG_BLOCK if np.dtype(dtype) == np.float64 else XLOG_BLOCK // 2

    def block(self, t, x, out):
        """Write ``t (log t - x)`` for a block (at most ``step`` elements) into ``out``;
        return the block's hard indices and their differences (within 2^-50 of ``log t - x``).

        float32: the elements below ``104 * 2^-26`` are redone here by :func:`_log_minus_mid`
        (within 2^-60.5 plus an ULP: a quarter of a float32 ULP wherever the difference is at
        least 2^-33); only those below 2^-33 stay hard.
        """
        n = t.size
        d, size, good = self.diff[:n], self.size[:n], self.good[:n]
        if self.wide:
            t_narrow, x_narrow = t, x
            t, x = self.wide_t[:n], self.wide_x[:n]
            np.copyto(t, t_narrow)  # exact
            np.copyto(x, x_narrow)
            np.log(t, out=d)
            np.subtract(d, x, out=d)
            np.abs(d, out=size)
            np.greater(size, _WIDE_LIMIT, out=good)
            np.logical_and(good, t, out=good)  # t = 0: hard
        else:
            _log_minus_mid(t, x, d, self.buffers)
            np.abs(d, out=size)
            np.greater_equal(size, _MID_LIMIT, out=good)  # NaN (also t = 0): hard
        if 4 * (n - np.count_nonzero(good)) > n:  # mostly hard (near an optimum): a pass of
            # its own over the block, no gathers (its plain values are not needed)
            if self.wide:
                return self._mid_block(t, x, out)
            if np.isfinite(d).all():  # (else t = 0, a NaN or an infinity: below)
                return self._table_block(t, x, out)
        np.multiply(d, t, out=out)
        np.logical_not(good, out=good)
        hard = np.flatnonzero(good)
        if not (self.wide and hard.size):
            return hard, d[hard]
        if self.buffers is None:
            self.buffers = log_minus_buffers(self.diff.size)
        tk = t[hard]
        y = _log_minus_mid(tk, x[hard], size[: hard.size], self.buffers)
        done = np.abs(y) >= _MID_LIMIT_WIDE  # (not t = 0, NaN)
        out[hard[done]] = y[done] * tk[done]  # rounded once
        rest = ~done
        return hard[rest], y[rest]

    def _mid_block(self, t, x, out):
        """float32 (widened), most of the block hard: :func:`_log_minus_mid` over all of it;
        only what is below 2^-33 there (and ``t = 0``, NaN) stays hard."""
        n = t.size
        d, size, good = self.diff[:n], self.size[:n], self.good[:n]
        if self.buffers is None:
            self.buffers = log_minus_buffers(self.diff.size)
        y = _log_minus_mid(t, x, size, self.buffers)
        np.multiply(y, t, out=out)
        np.abs(y, out=d)
        np.greater_equal(d, _MID_LIMIT_WIDE, out=good)  # (not t = 0, NaN)
        hard = np.flatnonzero(np.logical_not(good, out=good))
        return hard, y[hard]

    def _table_block(self, t, x, out):
        """float64, most of the block hard and every difference finite:
        :func:`_log_minus_table` (within 2 ULP down to 2^-36) over the block in pieces of
        ``_CAREFUL_BLOCK``, without gathering; only what is below 2^-36 stays hard (with the
        table's difference as its estimate)."""
        n = t.size
        d, y = self.diff[:n], self.size[:n]
        for piece in chunks(n, _CAREFUL_BLOCK):
            y[piece] = _log_minus_table(t[piece], x[piece])
        # (the easy elements too: the table is as accurate there)
        np.multiply(y, t, out=out)
        np.abs(y, out=d)
        good = self.good[:n]
        np.greater_equal(d, 2.0**-36, out=good)
        hard = np.flatnonzero(np.logical_not(good, out=good))
        return hard, y[hard]


def xlog_minus_careful(t, x, d, wide: bool):
    """``t * (log(t) - x)`` in float64 for the hard elements of :class:`XlogMinus`.

    ``d``: their differences from :meth:`XlogMinus.block` (an estimate: it only chooses among
    kernels that are each accurate where chosen, so float32 copies of them do); ``wide``:
    float32 values held in float64 (to a quarter of a float32 ULP), else float64 (within
    about 2 ULP plus the double-double's 2^-104 of ``t``). ``t = 0`` gives 0 (the limit; NaN
    where ``x`` is NaN, 0 also where ``x = -inf``); NaN gives NaN. In blocks of
    ``_CAREFUL_BLOCK``.
    """
    out = np.empty(t.shape)
    for block in chunks(t.size, _CAREFUL_BLOCK):
        tb = t[block].astype(np.float64, copy=False)
        xb = x[block].astype(np.float64, copy=False)
        db = d[block]
        y = np.full(tb.shape, np.nan)
        ok = np.flatnonzero((tb > 0) & np.isfinite(db))  # else t = 0 or NaN
        if ok.size:
            tk, xk = tb[ok], xb[ok]
            # float32 (to a quarter of its ULP): below 2^-33 (see XlogMinus.block)
            y[ok] = log_minus_near(tk, xk) if wide else _log_minus_small(tk, xk, db[ok])
            y[ok] *= tk
        zero = tb == 0
        y[zero] = np.where(np.isnan(xb[zero]), np.nan, 0.0)
        out[block] = y
    return out


# --- gaps that vanish at an optimum ---------------------------------------------------------------

# The spread gradients of the Gaussian, Laplace and Student-t likelihoods are differences that
# vanish at their optimum (r^2 = v, |r| = b, |r| = s): formed as 1/v - r^2/v^2 they keep only the
# absolute accuracy of the larger term. Callers evaluate these kernels only where the two terms
# are within a small factor of each other (elsewhere the plain difference loses at most a bit),
# in float64, from the exact residual r + r_err of :func:`exact_difference`.


def take_broadcast(a, shape, where, dtype=np.float64):
    """``a`` broadcast to ``shape`` at the flat indices ``where``, as ``dtype`` (a gather,
    without a full-size copy of a broadcast argument)."""
    a = np.asarray(a)
    if a.shape == tuple(shape):
        return a.reshape(-1)[where].astype(dtype, copy=False)
    return np.broadcast_to(a, shape)[np.unravel_index(where, shape)].astype(dtype, copy=False)


def exact_difference(x, y):
    """``(r, r_err)``: float64 ``r = fl(x - y)`` and ``x - y == r + r_err`` exactly (TwoSum).

    ``x``, ``y`` are cast to float64 (exactly); ``r_err`` is 0 where ``r`` is not finite.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    r, r_err = two_sum(x, -y)
    return r, np.where(np.isfinite(r), r_err, 0.0)


def finite_entries(index, shape, *arrays):
    """``(index, values)``: the flat indices of ``index`` (into ``shape``) where every one of
    ``arrays`` (broadcast to ``shape``) is finite, and each array's entries there, in its own
    dtype. The elements whose results overflowed though their inputs are finite (to be
    redone from scaled inputs) are told apart so."""
    values = [take_broadcast(a, shape, index, np.asarray(a).dtype) for a in arrays]
    keep = np.isfinite(values[0])
    for v in values[1:]:
        keep &= np.isfinite(v)
    if keep.all():  # (usually: no second gather)
        return index, values
    return index[keep], [v[keep] for v in values]


def halved_difference(a, b, index, shape, with_error=True):
    """``(index, h, h_err)`` for redoing a result that overflowed from the halved inputs:
    the entries of flat ``index`` (into ``shape``, ``a`` and ``b`` broadcast to it) where
    ``a`` and ``b`` are finite, and there ``h + h_err = a / 2 - b / 2`` exactly (TwoSum;
    ``h = fl(a / 2 - b / 2)``; without ``with_error``, ``h`` alone and ``h_err`` None).

    ``a - b`` itself can overflow (``a = 1e308``, ``b = -1e308``) where a result divided by
    it, or homogeneous in it, is finite; the halves cannot (``|a / 2 - b / 2| < 2^1024``),
    and the halving is exact at such magnitudes (it loses a bit only of a subnormal, whose
    difference does not overflow). In the inputs' own dtype.
    """
    index, (a, b) = finite_entries(index, shape, a, b)
    if not with_error:
        return index, a / 2 - b / 2, None
    h, h_err = two_sum(a / 2, b / 2, minus=True)
    return index, h, h_err


def halved_square_sums(a, b, factor):
    """``factor * sum((a - b)**2)`` over the last axis of 2-D float64 ``a``, ``b`` (finite),
    one ``factor`` per row, for rows whose ``a - b`` or squares overflow float64 though the
    product need not (a factor below 1, even subnormal). From the halves ``h = a / 2 - b /
    2`` (exact halving at such magnitudes; see :func:`halved_difference`), ``h = 2^e u``
    with ``e`` the exponent of the row's largest ``|h|`` and ``factor = 2^k m``:
    ``4 m sum(u^2) 2^(2e + k)``, rounded once into the result's range (a few ULP)."""
    h = a / 2 - b / 2
    e = np.frexp(np.max(np.abs(h), axis=-1, initial=0.0))[1]
    m, k = np.frexp(factor)
    s = np.sum(np.square(np.ldexp(h, -e[:, None])), axis=-1)
    return np.ldexp(4 * m * s, 2 * e + k)


def relative_gap_to_square(v, r, r_err):
    r""":math:`(v - \rho^2) / v^2` for float64 ``v > 0``, :math:`\rho` = ``r + r_err`` exactly.

    Domain: finite ``v > 0`` and ``r`` with :math:`r^2` within a factor of 16 of ``v`` (where
    the difference cancels). ``v`` is scaled by a power of 4 into [1/2, 2) and ``r`` by the
    square root of that power (exact), so that Dekker's product of ``r`` with itself is in
    its domain and nothing overflows or underflows; :func:`gap_to_square` gives
    :math:`v - \rho^2` to about 1 ULP, and the result is within 2 ULP after the two divisions.
    """
    if v.size == 0 or (np.min(v) >= 2.0**-800 and np.max(v) <= 2.0**800):
        # r^2 is within a factor 16 of v: no overflow in the split and no underflow in
        # the product's error term, so the scaling (exact either way) is not needed;
        # cache-sized blocks keep the temporaries of Dekker's product in the cache
        out = np.empty_like(v)
        for b in chunks(v.size):
            g = gap_to_square(v[b], 0.0, r[b], r_err[b])
            g /= v[b]
            np.divide(g, v[b], out=out[b])
        return out
    _, e = np.frexp(v)
    k = e // 2
    vs = np.ldexp(v, -2 * k)
    rs = np.ldexp(r, -k)
    es = np.ldexp(r_err, -k)
    return np.ldexp(gap_to_square(vs, 0.0, rs, es) / vs / vs, -2 * k)


def _relative_gap_of_difference(v, x, y, dtype, plain_gap, exact):
    """Shared plan of the kernels below: ``gap / v^2`` of ``v`` and ``r = x - y`` (float64).

    For a result rounded to float32 or narrower (``dtype``), ``plain_gap(v, r)`` in float64
    (``r`` within 2^-53 of ``x - y``, the gap within 2^-51 of ``v``) is accurate wherever
    the gap is at least 2^-22 of ``v``; only the elements below that take ``exact(v, x, y)``
    (from the exact residual). For float64 every element does.
    """
    if np.dtype(dtype).itemsize >= 8:
        return exact(v, x, y)
    g = plain_gap(v, x - y)
    redo = np.flatnonzero(np.abs(g) < 2.0**-22 * v)
    g /= v
    g /= v
    if redo.size:
        g[redo] = exact(v[redo], x[redo], y[redo])
    return g


def _square_gap(v, r):
    r *= r
    return np.subtract(v, r, out=r)


def _abs_gap(b, r):
    np.abs(r, out=r)
    return np.subtract(b, r, out=r)


def relative_gap_of_difference(v, x, y, dtype=np.float64):
    r""":math:`(v - (x - y)^2) / v^2` for float64 arrays, :math:`(x - y)^2` within 16x of ``v``.

    :func:`relative_gap_to_square` of the exact residual (TwoSum); for a result rounded to
    float32 or narrower (``dtype``), plain float64 wherever that is accurate.
    """

    def exact(v, x, y):
        return relative_gap_to_square(v, *two_sum(x, -y))

    return _relative_gap_of_difference(v, x, y, dtype, _square_gap, exact)


def abs_gap_of_difference(b, x, y, dtype=np.float64):
    r""":math:`(b - |x - y|) / b^2` for float64 arrays (finite ``b > 0``, ``x``, ``y``).

    :func:`gap_to_abs` of the exact residual (TwoSum); for a result rounded to float32 or
    narrower (``dtype``), plain float64 wherever that is accurate. Within 2 ULP for any
    ratio :math:`|x - y| / b`, not only where it cancels: outside [1/2, 2] the difference
    ``b - |r|`` is at least half of ``b`` or of ``|r|`` (its rounding is half an ULP of it,
    the added ``r_err`` below 2^-52 of it), and each division adds half an ULP; so a caller
    may use it on every element rather than select the ones that cancel.
    """

    def exact(b, x, y):
        g = gap_to_abs(b, *two_sum(x, -y))
        g /= b
        g /= b
        return g

    return _relative_gap_of_difference(b, x, y, dtype, _abs_gap, exact)


def gap_to_square(v, v_err, r, r_err):
    r""":math:`(v + v_{err}) - (r + r_{err})^2` for float64 arguments, ``r`` in Dekker's domain.

    ``r^2 = p + p_err`` exactly (:func:`two_prod`); ``v - p`` is exact where ``p`` is within a
    factor of 2 of ``v`` (Sterbenz), and the small terms are added after it: about 1 ULP of
    the gap, however much ``v`` and :math:`r^2` cancel. ``|r_err| <= ulp(r)/2`` and
    ``|v_err| <= ulp(v)/2`` (the error terms of exact transformations).
    """
    p, p_err = _exact_square(r)
    gap = v - p
    p_err = v_err - p_err
    gap += p_err
    hi = 2 * r
    hi += r_err
    hi *= r_err
    gap -= hi
    return gap


def _exact_square(r):
    """``(p, p_err)`` with ``r^2 == p + p_err`` exactly: Dekker's product of ``r`` with itself
    (one split; every step is exact in his domain)."""
    p = r * r
    hi = _SPLITTER * r
    hi -= hi - r
    lo = r - hi
    p_err = hi * hi
    p_err -= p
    p_err += 2 * hi * lo
    lo *= lo
    p_err += lo
    return p, p_err


def gap_to_square_parts(v, r, r_err):
    r""":math:`v - (r + r_{err})^2` as ``(gap, lows, tail)``, float64: ``gap`` and the arrays
    ``lows`` exact, their sum the gap but for ``tail``, below ``2^-150`` of ``max(v, r^2)``.

    The terms of a sum that cancels (a gradient summed over the elements a variance was
    broadcast to, at its optimum) need each gap with its rounding errors kept apart:
    ``v - p`` by TwoSum, ``p_err`` of the exact square and ``2 r r_err`` by Dekker's
    product. Domain: Dekker's (``|r| < 1e150``, no underflow of ``r^2`` that matters next
    to ``v``). With ``r_err`` None, the float64 gap alone (``(v - r^2, (), None)``, within
    2^-51 of ``max(v, r^2)``: enough for a float32 or narrower result).
    """
    if r_err is None:
        return v - r * r, (), None
    p, p_err = _exact_square(r)
    gap, err = two_sum(v, p, minus=True)
    cross, cross_err = two_prod(-2 * r, r_err)
    cross_err -= r_err * r_err
    return gap, (err, np.negative(p_err, out=p_err), cross), cross_err


def gap_to_abs_parts(b, r, r_err):
    r""":math:`b - |r + r_{err}|` as ``(gap, lows, None)`` (float64), exactly: the TwoSum of
    ``b`` and ``-|r|``, and the residual's error (see :func:`gap_to_square_parts`; with
    ``r_err`` None, the float64 gap alone)."""
    if r_err is None:
        return b - np.abs(r), (), None
    gap, err = two_sum(b, np.abs(r), minus=True)
    return gap, (err, -np.sign(r) * r_err), None


def gap_to_abs(b, r, r_err):
    r""":math:`b - |\rho|` for float64 ``b``, :math:`\rho` = ``r + r_err`` exactly.

    ``b - |r|`` is exact where ``|r|`` is within a factor of 2 of ``b`` (Sterbenz), and the
    residual's rounding error is added back: about half an ULP of the gap, however small
    (elsewhere, where nothing cancels, about 1 ULP). Domain: ``|r_err| <= ulp(r) / 2`` (as
    :func:`exact_difference` gives).
    """
    return (b - np.abs(r)) - np.sign(r) * r_err


@quiet
def dd_sum_of_squares(hi: np.ndarray, lo: np.ndarray, slices: int = 3):
    """``sum((hi + lo)**2)`` over the last axis as a double-double ``(s, err)``, float64.

    Domain: rows scaled so that ``|hi| < 1`` (a power of 2 factored out, exactly), with
    ``|lo| <= ulp(hi)``: a difference kept exactly as ``hi + lo``. Accuracy: about
    ``2**-100`` of the sum for a row whose largest entry is at least 1/2 (what a loss
    that subtracts a norm from a margin, or from another norm, needs where they agree
    to 30 bits and more). Ozaki's splitting: ``hi`` is cut into slices on the fixed
    grids ``2**-k``, ``2**-2k`` and ``2**-3k``, ``k = (53 - log2 D) // 2``, so coarse that
    the sum over a row of the product of any two slices has at most 53 significant bits
    and is exact whatever the order; these exact sums are added with TwoSum, and only
    the products with what is left below ``2**-3k`` (and with ``lo``) are rounded. One
    ``einsum`` per pair of slices: a fraction of the cost of TwoProduct and TwoSum entry
    by entry. With ``slices=1`` only the first grid: about ``D 2**-(53 + k)`` of the sum
    (``2**-69`` for D = 128) at half the cost, for differences that cancel by less than
    ``2**10``.
    """
    k = _grid_bits(hi.shape[-1])

    def dot(u, v):
        return np.einsum("...i,...i->...", u, v)

    pieces, rest = [], hi
    for level in range(1, 4 if slices == 3 else 2):
        step = 2.0 ** (level * k)
        piece = np.rint(rest * step)
        piece /= step
        rest = rest - piece  # exact, at most 2**-(level k + 1)
        pieces.append(piece)
    if slices != 3:
        (a1,) = pieces
        s, err = two_sum(dot(a1, a1), dot(a1 + hi, rest) + 2 * dot(hi, lo))
        return two_sum(s, err)
    a1, a2, a3 = pieces
    # the exact sums, from the largest down, then the rounded rest
    s, err = two_sum(dot(a1, a1), 2 * dot(a1, a2))
    terms = (dot(a2, a2), 2 * dot(a1, a3), 2 * dot(a2, a3), dot(a3, a3))
    small = 2 * dot(a1 + a2 + a3, rest) + dot(rest, rest) + 2 * dot(hi, lo)
    for term in (*terms, small):
        s, e = two_sum(s, term)
        err += e
    return two_sum(s, err)


@quiet
def dd_across_rows(u, w, u_lo=None, w_lo=None):
    """The component of each row ``u`` (plus ``u_lo``) across the row ``w`` (plus ``w_lo``),
    ``u - (<u, w> / |w|^2) w``, as a double-double ``(hi, lo)``, without the
    cancellation of that difference.

    Domain: finite float64 rows, ``u_lo`` and ``w_lo`` (if given) at most an ULP of ``u``
    and ``w``; each row of ``u`` and of ``w`` is scaled by a power of 2 here. An error of
    ``w`` of relative size ``eta`` moves the result by about ``eta |u|``: a rounded ``w``
    only for ``|u|`` far below ``|w|``. For nearly parallel rows (angle ``theta``) the
    result is ``theta |u|`` large, while any rounded ``<u, w> / |w|^2`` leaves
    ``2**-53 |u|`` of ``w`` in it, and rounded unit rows ``2**-106``. So ``w`` is taken off
    repeatedly: ``r <- r - lam w`` with ``lam`` the ratio ``<r, w> / |w|^2`` as a
    double-double (the dot product a cascaded sum of Dekker's products, about ``2**-100``
    of ``|r| |w|``), ``lam_hi w_j`` exact and each difference formed with TwoSum, ``r`` kept as a
    double-double scaled by a power of 2 (which the row's exponent carries). A step that
    cancels less than ``2**-40`` of ``r`` leaves at most ``2**-60`` of it along ``w``: the
    row is done. Rows that are exactly parallel end at 0. Each step gains about 45 bits:
    two steps for rows parallel up to their rounding, at most 25 (to the bottom of
    float64's range). Accuracy: each entry within about ``2**-100`` of the row's
    largest. Cost: a few passes over the row per step, for the few rows that need it.
    """

    def exponent(x):
        top = np.max(np.abs(x), axis=-1)
        return np.where(top > 0, np.frexp(top)[1], 0)

    shift = exponent(u)  # the result is (hi + lo) 2**shift
    hi = np.ldexp(u, -shift[:, None])
    lo = np.zeros(u.shape) if u_lo is None else np.ldexp(u_lo, -shift[:, None])
    w_shift = -exponent(w)[:, None]
    w = np.ldexp(w, w_shift)
    w_lo = np.zeros(w.shape) if w_lo is None else np.ldexp(w_lo, w_shift)
    w_sq = dd_sum_of_squares(w, w_lo)
    todo = np.arange(len(u))
    for _ in range(25):
        r_hi, r_lo, ww, ww_lo = hi[todo], lo[todo], w[todo], w_lo[todo]
        p_hi, p_lo = two_prod(r_hi, ww)
        p_lo += r_lo * ww + r_hi * ww_lo
        dot = _fast_two_sum(*_cascaded_sum(np.concatenate([p_hi, p_lo], axis=1)))
        # lam as a double-double: a rounded one would leave 2**-53 of r's part along w
        lam_hi, lam_lo = (x[:, None] for x in dd_div(*dot, w_sq[0][todo], w_sq[1][todo]))
        q_hi, q_lo = two_prod(lam_hi, ww)
        m_hi, m_lo = two_prod(lam_lo, ww)
        l_hi, l_lo = two_prod(lam_hi, ww_lo)
        # r - lam w from its exact parts; what cancels is r_hi - q_hi (exact), the rest is
        # added with TwoSum, its errors (2**-106 of r and below) summed apart
        s, err = two_sum(r_hi, -q_hi)
        for term in (r_lo, -q_lo, -m_hi, -l_hi):
            s, e = two_sum(s, term)
            err += e
        new_hi, new_lo = two_sum(s, err - (m_lo + l_lo + lam_lo * ww_lo))
        before = np.max(np.abs(r_hi), axis=1)
        after = np.max(np.abs(new_hi), axis=1)
        e = np.where(after > 0, np.frexp(after)[1], 0)[:, None]
        hi[todo], lo[todo] = np.ldexp(new_hi, -e), np.ldexp(new_lo, -e)
        shift[todo] += e[:, 0]
        todo = todo[(after < 2.0**-40 * before) & (after > 0)]
        if not len(todo):
            break
    return np.ldexp(hi, shift[:, None]), np.ldexp(lo, shift[:, None])


def row_dot(u, v):
    """The dot products of the rows (last axis) of ``u`` and ``v``, in their dtype.

    NumPy's ``vecdot`` (NumPy 2: a BLAS dot per row, about a third faster than
    ``einsum``) where it exists, else ``einsum``; neither makes a full-size temporary.
    """
    if _VECDOT is None:
        return np.einsum("...i,...i->...", u, v)
    return _VECDOT(u, v)


_VECDOT = getattr(np, "vecdot", None)


# Exponents of 2 within which dd_distance_squared needs no scaling: no square of an entry
# below 2**400 overflows, no product of two grid steps above 2**-(400 + 53) underflows.
DD_DISTANCE_EXPONENTS = 400


@quiet
def exact_squares_gap(x, y, u, v, margin):
    """``sum((x - y)**2) - sum((u - v)**2) + margin`` per row, correctly rounded, float64.

    Domain: 2-D rows scaled so that no entry reaches ``2**500`` and no product of two
    differences' parts underflows (a power of 2 factored out, exactly), ``margin`` one per
    row. Each difference is exact as ``hi + lo`` (TwoSum), its square the exact sum of
    ``hi**2``, ``2 hi lo`` and ``lo**2``, each an exact pair of float64 (TwoProduct);
    these ``12 D + 1`` numbers are added exactly (``math.fsum``, one row at a time). Used
    for the few rows where the two sums and the margin cancel beyond what double-double
    squares (to ``2**-100`` of them) resolve to an ULP; the result's sign is the exact one.
    """
    terms = []
    for first, second, sign in ((x, y, 1.0), (u, v, -1.0)):
        hi, lo = two_sum(first, second, minus=True)
        for f, g in ((hi, hi), (2 * hi, lo), (lo, lo)):
            product, error = two_prod(f, g)
            terms += [sign * product, sign * error]
    terms.append(np.reshape(margin, (-1, 1)) * np.ones((len(x), 1)))
    rows = np.concatenate(terms, axis=-1).tolist()
    return np.array([math.fsum(row) for row in rows], dtype=np.float64).reshape(len(x))


@quiet
def dd_distance_squared(x, y, shift, exponent):
    """``sum((x - y + shift)**2)`` over the last axis as a double-double ``(s, err)``, float64.

    Domain: rows whose distance is below ``2**exponent`` (one exponent per row, of size
    below :data:`DD_DISTANCE_EXPONENTS`: nothing to scale) and a scalar ``shift`` with
    ``|shift| <= 2**(exponent - 20)``. Accuracy: about ``2**-67`` of ``4**exponent`` for
    D = 128, as :func:`dd_sum_of_squares` with one slice, for distances that cancel by
    less than ``2**10`` against another distance or a margin; at about half its cost, as
    nothing is scaled and the shift takes no second TwoSum.

    With ``d = fl(x - y)`` and its exact error ``lo`` (TwoSum), ``a`` is ``d`` rounded to
    the grid ``2**(e - k)``, ``k = (53 - log2 D) // 2``, so that the sum of ``a**2`` is
    exact; ``e`` is the largest exponent of the rows where they differ by at most 1 (one
    grid for all: at most 4 times the error of a row's own), else each row's. The rest
    ``w = (d - a) + shift + lo`` (``d - a`` exact) is rounded by a few ULP of
    ``2**(e - k) + |shift|``, which moves the sum by about
    ``sqrt(D) 2**-53 (2**-k + 2**-20)`` of ``4**e``. The sum is
    ``sum(a**2) + sum((2 a + w) w)``, the second (``2**-k`` of the first) with
    ``(a + d) + shift`` for ``2 a + w`` (they differ by ``lo`` and two roundings) and
    rounded to about ``D 2**-(53 + k)`` of ``4**e``.
    """
    k = _grid_bits(x.shape[-1])
    exponent = np.asarray(exponent)
    top = int(np.max(exponent, initial=-DD_DISTANCE_EXPONENTS))
    if exponent.size and top - int(np.min(exponent)) > 1:
        top = exponent[..., None]
    # adding and subtracting 1.5 2**(52 + e - k) rounds to the grid 2**(e - k) (to nearest
    # even, as rint), exactly for |d| < 2**e
    magic = np.ldexp(1.5, 52 - k + top)
    d, lo, back = (np.empty(np.broadcast_shapes(x.shape, y.shape)) for _ in range(3))
    two_sum(x, y, minus=True, out=(d, lo, back))  # d + lo = x - y exactly
    a = d + magic
    a -= magic
    w = np.subtract(d, a, out=back)  # the rest below the grid, exact
    if shift:
        w += shift
    w += lo
    s = row_dot(a, a)
    a += d
    if shift:
        a += shift
    return two_sum(s, row_dot(a, w))


# Elements per block of the double-double distance kernels, whose dozen block-sized
# buffers are allocated once per call: fresh temporaries of a block's size are mapped and
# faulted in anew by the allocator on every block, which cost several times the
# arithmetic (measured on blocks of 128 x 128 float64). Blocks of 256 x 128 took about
# 12 % less time than blocks of 128 x 128 (2,000 rows of pairs and of triplets, CPU time):
# half the calls, whose overhead weighs more than the buffers' leaving the L2 cache.
_DD_DISTANCE_BLOCK = 1 << 15


@quiet
def dd_distances_squared(rows, pairs, shift, exponent, index=None):
    """:func:`dd_distance_squared` of several pairs of the 2-D arrays ``rows`` at once: a
    list of ``(s, err)``, one for each ``(i, j)`` in ``pairs`` (``rows[i] - rows[j]``), of
    the rows ``index`` (default: all; one exponent each), gathered block by block.

    Domain and accuracy those of :func:`dd_distance_squared` (``exponent`` bounds every
    pair's distance), at a fraction of its cost: in blocks of rows, into buffers made
    once, and each array split once for all its pairs (a triplet's anchor): ``x = h + l``
    with ``h`` rounded to the grid ``2**(e - k)`` (``e`` the largest exponent of a block
    whose exponents differ by at most 1, else each row's; exactly, for entries below
    ``2**(e + 28)``) and ``l = x - h`` exact. Then ``A = h_i - h_j`` is exact, on the grid
    and at most ``2**e + 2**(e - k)`` in size where the distance is below ``2**e``, so
    that ``sum(A**2)`` (about ``4**e``, ``2**(2k)`` squared grid steps) is exact; the rest
    ``W = l_i - l_j + shift`` is rounded by an ULP of ``2**(e - k) + |shift|``, and
    ``sum((A + W)**2) - sum(A**2) = 2 sum(A W) + sum(W**2)`` by about
    ``D 2**-(53 + k)`` of ``4**e``. A row whose ``sum(W**2)`` exceeds
    ``D (2**(e - k) + |shift|)**2`` (an entry beyond ``2**(e + 28)``: its ``l`` is not
    below the grid) is taken again by :func:`dd_distance_squared`.
    """
    width = rows[0].shape[-1]
    n = len(rows[0]) if index is None else len(index)
    k = _grid_bits(width)
    exponent = np.asarray(exponent)
    used = sorted({i for pair in pairs for i in pair})
    step = max(1, (_DD_DISTANCE_BLOCK - 1) // width)
    size = min(step, n)
    split = {i: (np.empty((size, width)), np.empty((size, width))) for i in used}
    a_buffer, w_buffer = np.empty((size, width)), np.empty((size, width))
    dots = np.empty((len(pairs), 3, n))  # sum(A**2), sum(A W), sum(W**2) of each pair
    grid = np.empty(n, int)  # the exponent of each row's grid, plus k
    for start in range(0, n, step):
        block = slice(start, min(n, start + step))
        m = block.stop - block.start
        # adding and subtracting 1.5 2**(52 + e - k) rounds to the grid 2**(e - k) (to
        # nearest even, as rint), exactly for entries below 2**(e + 28); one grid for
        # the block where its exponents differ by at most 1 (a scalar is added faster)
        top = int(np.max(exponent[block]))
        if top - int(np.min(exponent[block])) > 1:
            top = exponent[block][:, None]
        grid[block] = top if np.ndim(top) == 0 else top[:, 0]
        magic = np.ldexp(1.5, 52 - k + top)
        for i in used:
            h, low = (b[:m] for b in split[i])
            x = rows[i][block] if index is None else None
            if x is None and rows[i].dtype == np.float64:
                x = np.take(rows[i], index[block], axis=0, out=low, mode="clip")  # in place
            elif x is None or x.dtype != np.float64:  # float16 / float32 widened (exactly)
                np.copyto(low, x if x is not None else np.take(rows[i], index[block], axis=0))
                x = low
            np.add(x, magic, out=h)
            h -= magic
            np.subtract(x, h, out=low)
        for q, (i, j) in enumerate(pairs):
            a = np.subtract(split[i][0][:m], split[j][0][:m], out=a_buffer[:m])
            w = np.subtract(split[i][1][:m], split[j][1][:m], out=w_buffer[:m])
            if shift:
                w += shift
            dots[q, 0, block] = row_dot(a, a)
            dots[q, 1, block] = row_dot(a, w)
            dots[q, 2, block] = row_dot(w, w)
    limit = width * (np.ldexp(1.0, grid - k) + abs(shift)) ** 2
    out = []
    for q, (i, j) in enumerate(pairs):
        squares, cross, rest = dots[q]
        s, err = two_sum(squares, 2 * cross + rest)
        far = np.flatnonzero(~(rest <= limit))
        if far.size:
            at = far if index is None else index[far]
            x, y = (rows[r][at].astype(np.float64, copy=False) for r in (i, j))
            s[far], err[far] = dd_distance_squared(x, y, shift, exponent[far])
        out.append((s, err))
    return out


@quiet
def dd_abs_sum_distance(x, y, shift, exponent):
    """``sum(|x - y + shift|)`` over the last axis as a double-double ``(s, err)``, float64.

    Domain: rows whose L1 distance is below ``2**exponent`` (one exponent per row, of size
    below :data:`DD_DISTANCE_EXPONENTS`: nothing to scale) and a scalar ``shift`` with
    ``D |shift| <= 2**exponent``. Accuracy: about ``D 2**-53 |shift| + D**2 2**-104`` of
    ``2**exponent`` (``2**-66`` for D = 128 and ``|shift| <= 2**(exponent - 20)``, as
    :func:`dd_distance_squared`), for distances that cancel by less than ``2**10``
    against another distance or a margin.

    ``x - y`` is kept exactly as ``h + l`` (TwoSum), and with ``g`` the sign of the
    rounded ``(h + shift) + l`` (that of the entry ``v = h + l + shift``, except where
    ``|v|`` is below ``2**-104`` of ``h``: a negligible error), ``|v| = g h + g l +
    g shift``. The terms ``g h`` are split at the grid ``2**(e - 51)``: their rounded
    parts are multiples of it whose absolute values sum to below ``2**(e + 2)``, so that
    every partial sum is below ``2**53`` grid steps, exact in any order; the rests
    (exact, at most ``2**(e - 52)``) and the ``g l`` (at most an ULP of each entry) are
    summed with about ``D 2**-53`` of their total as error, and ``shift`` times the
    exact integer ``sum(g)`` is rounded once.
    """
    ones = np.ones(x.shape[-1])
    h, low, back = (np.empty(np.broadcast_shapes(x.shape, y.shape)) for _ in range(3))
    two_sum(x, y, minus=True, out=(h, low, back))  # h + low = x - y exactly
    g = np.add(h, shift, out=back) if shift else np.copyto(back, h) or back
    g += low
    np.copysign(1.0, g, out=g)
    h *= g
    magic = np.ldexp(1.5, np.asarray(exponent)[..., None] + 1)  # rounds to 2**(e - 51)
    a = h + magic
    a -= magic
    h -= a  # the rest below the grid, exact
    rest = row_dot(h, ones) + row_dot(g, low)
    if shift:
        rest += shift * row_dot(g, ones)
    return two_sum(row_dot(a, ones), rest)


# --- log1p(t) - t ---------------------------------------------------------------------------------

# atanh(u) / u - 1 = u^2 (1/3 + u^2/5 + u^4/7 + ...): the sum below, in w = u^2, a series of
# positive terms. It is cut after the first n terms when the next, w^n / (2n + 3), is below
# 2^-60 of the first, 1/3, for the largest w of the call (the tail after it is at most
# 1/(1 - w) times it): 28 terms for w = 1/4, 16 for w = 1/13, 90 (the table) up to w = 0.64.
_ATANH_TERMS = [1.0 / (2 * j + 3) for j in range(90)]


def atanh_series(w):
    """``sum_j w^j / (2j + 3)`` for float64 ``0 <= w <= 0.64`` (``atanh(u)/u - 1 = w`` times
    it for ``w = u^2``), to 2^-60 of its first term: Horner's rule in place, with as many
    terms as the largest ``w`` needs (a few ULP, no cancellation)."""
    w = np.asarray(w, dtype=np.float64)
    w_max = min(float(np.max(w, initial=0.0)), 0.64)
    count, limit = 1, 2.0**-60 / 3
    while count < len(_ATANH_TERMS) and w_max**count / (2 * count + 3) >= limit:
        count += 1
    return horner(_ATANH_TERMS[:count], w)


# log1p(t) = 2 atanh(u) with u = t / (2 + t), and t = 2u / (1 - u), so that
# log1p(t) - t = -t u + 2 u^3 (1/3 + u^2/5 + u^4/7 + ...) (-2 u^2 / (1 - u) = -t u): the two
# parts have one sign for u < 0 and the second is below a fifth of the first for
# 0 <= u <= 1/3, so nothing cancels. Used for -1/2 <= u <= 1/3 (t in [-2/3, 1]; u^2 <= 1/4).


def log1p_minus(t):
    """``log1p(t) - t`` for ``t > -1``, within a few ULP (it is about ``-t^2 / 2`` near 0).

    ``t`` in [-2/3, 1] by the atanh series above (the textbook difference loses every digit
    as ``t -> 0``); outside, ``log1p(t) - t`` cancels by at most a factor of about 2.5.
    ``t = -1`` gives ``-inf``; ``+inf`` gives ``-inf``.
    """
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        near = (t >= -2 / 3) & (t <= 1)
        every = t.ndim > 0 and near.all()  # then no direct form, no gather and scatter
        out = None if every else np.asarray(np.log1p(t) - t)
        if every or near.any():
            tn = t if every else t[near]
            u = tn / (2 + tn)
            w = u * u
            series = atanh_series(w)
            series *= w
            series *= u
            series *= 2
            w = np.multiply(tn, u, out=w)
            series -= w  # -2 u^2 / (1 - u) = -t u
            if every:
                return series
            out[near] = series
    return out


# --- double-double rows and matrix products (cosines whose rounding a loss magnifies) ------------


@quiet
def dd_sqrt(s_hi, s_lo):
    """``sqrt(s_hi + s_lo)`` as a double-double: the float64 root and one Newton step.

    Domain: ``s_hi >= 0`` far from overflow and underflow (rows scaled by a power of 2),
    ``|s_lo| <= ulp(s_hi)``. Accuracy: about ``2**-100`` relative; 0 gives (0, 0).
    """
    r = np.sqrt(s_hi)
    rr, rr_err = two_prod(r, r)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = ((s_hi - rr) - rr_err + s_lo) / (2 * r)
    return r, np.where(r > 0, low, 0)


@quiet
def dd_divide_rows(x, d_hi, d_lo):
    """``x / (d_hi + d_lo)`` entry by entry as a double-double, one divisor per row.

    Domain: float64 ``x`` (exact) and ``d`` of the last-but-one axis, ``|q|, |d| < 1e300``
    (:func:`two_prod`). Accuracy: about ``2**-100`` relative (the remainder
    ``x - q d`` is formed exactly, then divided once).
    """
    d_hi, d_lo = d_hi[..., None], d_lo[..., None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        q = x / d_hi
        qd, qd_err = two_prod(q, d_hi)
        return q, (((x - qd) - qd_err) - q * d_lo) / d_hi


@quiet
def dd_unit_rows(zs, exponent, floor):
    """The rows ``z = zs * 2**exponent`` over ``max(||z||, floor)``, as double-doubles.

    As ``torch.nn.functional.normalize`` (``floor`` its eps), for rows scaled so that
    their largest entry lies in [1/2, 1) (or 0): the norm by :func:`dd_sum_of_squares`
    and :func:`dd_sqrt`, each entry by :func:`dd_divide_rows`. Accuracy: about
    ``2**-75`` relative, so that cosines of the unit rows keep a loss's few ULP after a
    temperature has magnified them. Returns ``(hi, lo, floored)``.
    """
    s_hi, s_lo = dd_sum_of_squares(zs, np.zeros_like(zs))
    den, den_lo = dd_sqrt(s_hi, s_lo)
    floored = np.ldexp(den, exponent) < floor
    # a floored row is (zs / floor) 2**exponent: floor 2**-exponent itself would be as large
    # as 2**1074 for a subnormal row, beyond the domain of the division's products (NaN)
    den = np.where(floored, floor, den)
    den_lo = np.where(floored, 0, den_lo)
    hi, lo = dd_divide_rows(zs, den, den_lo)
    if np.any(floored):
        shift = np.where(floored, exponent, 0)[:, None]
        hi, lo = np.ldexp(hi, shift), np.ldexp(lo, shift)
    return hi, lo, floored


@quiet
def unit_rows_backward(rows, d_h, partner, floor, dtype):
    """The gradient w.r.t. ``z`` of ``h = z / max(||z||, floor)`` (row by row), float64.

    ``rows`` is ``(h, zs, scaled_norm, exponent, floored, infinite)`` of the normalised
    rows (``z = zs 2**exponent``, ``scaled_norm = ||zs||``); the gradient w.r.t. ``h`` is
    ``d_h + c k``, ``partner = (c, (k, k_zs, k_exponent), cos)`` giving for each row the
    coefficient ``c``, the unit row ``k`` of its positive (as ``h``, ``zs`` and
    ``exponent`` are to ``z``) and ``cos = h . k``. Above the floor the gradient is
    ``(I - h h^T)(d_h + c k) / ||z||``; at the floor ``(d_h + c k) / floor``; 0 for an
    infinite row (the limit).

    The positive is usually nearly parallel to ``h``: with ``k = s h + w`` (``s`` the
    sign of ``cos``), ``(I - h h^T) k = w + s |w|^2 / 2 h`` for unit rows, ``w`` from
    double-double unit rows, instead of ``k - cos h``, into which the float64 cosine
    carries its rounding while the difference is only as large as the angle. Done where
    ``|cos| > 1/2`` for a float64 result, where ``1 - |cos| < 2**-40`` for float32 and
    float16 ones (the float64 projection keeps their ULP above that). Other rows nearly
    parallel to ``h`` (inside ``d_h``) keep the float64 projection.

    ``d_h`` (float64) is overwritten with the result: a training step keeps no further
    (N, D) arrays than one temporary.
    """
    h, zs, scaled_norm, exponent, floored, infinite = rows
    c, (k, k_zs, k_exponent), cos = partner
    near = (1 - np.abs(cos)) < (0.5 if dtype == np.float64 else 2.0**-40)
    k_norm = np.ldexp(np.sqrt(np.einsum("ij,ij->i", k_zs, k_zs)), k_exponent)
    near &= ~floored & ~infinite & (k_norm >= floor)  # both rows unit rows
    pick = np.flatnonzero(near)
    given = d_h[pick]  # (a copy: d_h is overwritten)
    d_h += c[:, None] * k
    radial = np.einsum("ij,ij->i", h, d_h)[:, None]
    at_floor = d_h[floored] / floor  # (rare rows: gathered, not a full-size branch)
    safe = np.where(floored, 1, scaled_norm)[:, None]
    d_h -= h * radial
    d_h /= safe
    if pick.size:
        h_hi, h_lo, _ = dd_unit_rows(zs[pick], exponent[pick], floor)
        k_hi, k_lo, _ = dd_unit_rows(k_zs[pick], k_exponent[pick], floor)
        sign = np.where(cos[pick] < 0, -1.0, 1.0)[:, None]
        w = (k_hi - sign * h_hi) + (k_lo - sign * h_lo)  # the first difference exact
        projected = w + (sign * 0.5 * np.einsum("ij,ij->i", w, w)[:, None]) * h[pick]
        rest = given - h[pick] * np.einsum("ij,ij->i", h[pick], given)[:, None]
        d_h[pick] = (rest + c[pick, None] * projected) / safe[pick]
    np.ldexp(d_h, -exponent[:, None], out=d_h)
    d_h[floored] = at_floor
    d_h[infinite] = 0.0
    return d_h


@quiet
def dd_scale(hi, lo, c: float, reciprocal: bool = False, c_lo: float = 0.0):
    """``(hi + lo) * c`` (or ``/ c`` with ``reciprocal``) as a double-double, scalar ``c``.

    ``1 / c`` is itself taken as a double-double (its rounding would otherwise cost an ULP
    of every logit); ``c_lo`` is the low part of a double-double ``c + c_lo``. Domain:
    ``hi`` far from overflow, any positive finite ``c`` (``c = m 2**k``, ``m`` in [1/2, 1):
    the products take ``m``, inside :func:`two_prod`'s domain, and the power of 2 is applied
    last; a temperature of 1e-302 or a scale of 1e302 gave NaN). Accuracy: about
    ``2**-100``, where the result is normal.
    """
    c_hi, k = np.frexp(c)
    k = int(k)
    c_lo = np.ldexp(c_lo, -k)
    if reciprocal:
        m, k = c_hi, -k
        c_hi = 1.0 / m
        p, p_err = two_prod(c_hi, m)
        c_lo = ((1.0 - p) - p_err) / m
    p, p_err = two_prod(hi, c_hi)
    return np.ldexp(p, k), np.ldexp(p_err + (hi * c_lo + lo * c_hi), k)


@quiet
def _grid_bits(width: int) -> int:
    """Bits of the heads on a row's grid such that products of two heads summed over
    ``width`` entries are exact: ``(53 - ceil(log2 width)) // 2``."""
    return (53 - int(np.ceil(np.log2(max(width, 1))))) // 2


def _ozaki_head(x, bits):
    """``x = head + tail`` with each row's head on the grid ``2**(e - bits)`` (``e`` the
    exponent of the row's largest entry): products of two heads have at most ``2 bits``
    significant bits, so their sums over ``2**(53 - 2 bits)`` entries are exact."""
    with np.errstate(invalid="ignore"):
        _, e = np.frexp(np.max(np.abs(x), axis=-1, initial=0))
    shift = (bits - e)[:, None]
    head = np.ldexp(np.rint(np.ldexp(x, shift)), -shift)
    return head, x - head


def _dd_products(a_hi, a_lo, b_hi, b_lo):
    """``(exact, small)`` with ``exact + small = (a_hi + a_lo) @ (b_hi + b_lo).T`` to
    about ``4 D 2**-(53 + k)`` of ``|a| |b|`` (see :func:`dd_matmul`); ``exact`` has no
    rounding error at all."""
    k = _grid_bits(a_hi.shape[-1])
    a_head, a_r = _ozaki_head(a_hi, k)
    b_head, b_r = _ozaki_head(b_hi, k)
    # a = head + r: r = tail + lo rounded (2**-(53 + k) of a), and
    # a b = head_a head_b + head_a r_b + r_a b, the last two in one product
    np.add(a_r, a_lo, out=a_r)
    np.add(b_r, b_lo, out=b_r)
    exact = a_head @ b_head.T
    # the pieces freed once stacked: fewer (N, D) arrays alive beside the (N, M) products
    left = np.concatenate([a_head, a_r], axis=-1)
    del a_head, a_r, b_head
    right = np.concatenate([b_r, b_hi], axis=-1)
    del b_r
    return exact, left @ right.T


def dd_inverse_sqrt(x: float):
    """``x**-0.5`` of a positive float64 as a double-double ``(hi, lo)``, to about ``2**-106``."""
    exact = 1 / decimal.Context(prec=50).sqrt(decimal.Decimal(x))
    hi = float(exact)
    return hi, float(exact - decimal.Decimal(hi))


# Bits of the heads of rows on one grid below their largest norm (_dd_gram_products): a
# sum of products of two heads is at most their norms' product, below 2**(2 * 25 + 0.01)
# grid steps squared, and a difference of two such sums below 2**51.01: exact.
_GRAM_HEAD_BITS = 25


def _dd_gram_products(hi, lo):
    """``(head, small)`` with ``exact + small = a a^T`` (``a = hi + lo``) for ``exact =
    head head^T``, the Gram matrix of rows whose norms are about equal (unit rows times a
    constant); ``exact`` is left to the caller, a block of rows at a time.

    ``a = head + r``, every row's head on ONE grid ``g = 2**(E - 25)``, ``2**E`` above
    the largest norm: by Cauchy-Schwarz every partial sum of a row of ``head head^T`` is
    at most ``|head_i| |head_j| < 2**50.01 g**2`` (each head entry is within ``g / 2`` of
    the row's), an integer multiple of ``g**2``: ``exact`` is exact whatever the order of
    the sums, and so is the difference of two of its entries in a row (below
    ``2**51.01 g**2``), which :func:`_gram_cross_entropy_rows` relies on. The rest
    ``r = (hi - head) + lo`` (at most ``g / 2`` an entry) gives ``a a^T - head head^T =
    N + N^T`` for ``N = (head + r / 2) r^T``: two matrix products of depth D instead of
    products of depth D and 2 D, ``N + N^T`` tile by tile (:func:`symmetric_sum`). The
    error of ``small`` is the rounding of ``N``: about ``D 2**-53 |a| sqrt(D) g`` and so
    ``D**1.5 2**-78`` of the largest ``|a|**2`` (``2**-67.5`` for D = 128).
    """
    norms = np.sqrt(row_dot(hi, hi))  # a relative error below 2**-30: the margin
    _, top = np.frexp(np.max(norms, initial=0.0) * (1 + 2.0**-30))
    bits = _GRAM_HEAD_BITS - int(top)
    head = np.ldexp(np.rint(np.ldexp(hi, bits)), -bits)
    r = np.subtract(hi, head)
    r += lo
    half = r * 0.5
    half += head
    return head, symmetric_sum(half @ r.T)


def _gram_cross_entropy_rows(exact, small, positive, start, work, with_grad=False):
    """Rows ``-s[i, positive[i]] + logsumexp(s[i])`` (the diagonal, column ``start + i``,
    left out) of the logits ``s = exact + small`` of :func:`_dd_gram_products`, in place.

    With ``t`` the top of ``exact`` in a row (no entry of ``s`` above ``s_t`` by more
    than twice ``small``'s size, about ``2**-20`` of ``|a|**2``), the loss is
    ``(s_t - s_pos) + log1p(sum over j != t of exp(x + c))`` with ``x = exact - exact_t``
    (exact: see :func:`_dd_gram_products`) and ``c = small - small_t`` (rounded by an
    ULP of a number ``2**-20`` of ``|a|**2``). ``y = fl(x + c)`` and its rounding
    ``e = c - (y - x)`` (Fast2Sum: exact where ``|x| >= |c|``; elsewhere ``|y| <= 2 |c|``
    and ``y`` and ``e`` are both off by below ``2**-50`` of ``|c|``: a relative error of
    ``exp(y)`` below ``2**-65``) give each term as ``exp(y) (1 + e)`` to a few ULP.
    Accuracy: a few ULP of float64, as :func:`dd_cross_entropy_rows`, in ten passes over
    the block instead of about twenty. ``work``: a buffer of at least the block's size.
    With ``with_grad``, ``(loss, gradient w.r.t. the logits)`` written over ``small``.
    """
    rows = np.arange(len(exact))
    diagonal = start + rows
    exact[rows, diagonal] = -np.inf
    small[rows, diagonal] = 0
    top = np.argmax(exact, axis=-1) if len(exact) else rows
    largest, largest_small = exact[rows, top], small[rows, top]
    gap = (largest - exact[rows, positive]) + (largest_small - small[rows, positive])
    x = np.subtract(exact, largest[:, None], out=exact)
    c = np.subtract(small, largest_small[:, None], out=small)
    y = np.add(x, c, out=work[: exact.size].reshape(exact.shape))
    e = np.subtract(c, np.subtract(y, x, out=x), out=c)
    e[rows, diagonal] = 0  # NaN there: -inf - -inf
    y[rows, top] = -np.inf
    rest = np.exp(y, out=y)
    e *= rest
    e += rest  # exp(y) (1 + e)
    total = np.sum(e, axis=-1)
    loss = gap + np.log1p(total)
    if not with_grad:
        return loss
    return loss, cross_entropy_rows_grad(e, total, top, positive)


# Rows of the exact part of the Gram matrix formed at once: about 2**20 entries (8 MB), at
# least 512 rows (a matrix product of fewer rows loses much of its speed on a busy
# machine). Being exact, it is the same in any blocks; the whole of it would be a second
# (2n, 2n) array beside the small part.
_GRAM_BLOCK = 2**20
_GRAM_ROWS = 512


@quiet
def dd_gram_cross_entropy(hi, lo, positive, with_grad=False):
    """:func:`dd_product_cross_entropy` of ``s = a a^T`` (``a = hi + lo``, rows of about
    one norm), the diagonal left out: the Gram matrix by :func:`_dd_gram_products` (two
    thirds of the matrix products of ``a`` times another matrix), its exact part a large
    block of rows at a time, and the rows by :func:`_gram_cross_entropy_rows`, block by
    block. With ``with_grad``, ``(losses, their gradient w.r.t. s)``, written over the
    products' small part."""
    head, small = _dd_gram_products(hi, lo)
    m = len(hi)
    out = np.empty(m)
    head_t = head.T.copy()  # head @ head.T of one array would be a (slower) symmetric product
    for rows in chunks(m, max(_GRAM_ROWS, _GRAM_BLOCK // max(m, 1))):
        exact = head[rows] @ head_t
        blocks = row_blocks(rows.stop - rows.start, m * exact.itemsize)
        work = np.empty(max((b.stop - b.start for b in blocks), default=0) * m)
        for block in blocks:
            at = slice(rows.start + block.start, rows.start + block.stop)
            result = _gram_cross_entropy_rows(
                exact[block], small[at], positive[at], at.start, work, with_grad
            )
            out[at] = result[0] if with_grad else result
        del exact  # before the next block's is formed
    return (out, small) if with_grad else out


@quiet
def dd_matmul(a_hi, a_lo, b_hi, b_lo):
    """``(a_hi + a_lo) @ (b_hi + b_lo).T`` as a double-double, for 2-D float64 rows.

    Ozaki's splitting: the heads of ``a_hi`` and ``b_hi`` on grids of
    ``k = (53 - log2 D) // 2`` bits multiply exactly whatever BLAS does (each sum has at
    most 53 significant bits); the rest, at most ``2**-k`` of the product and below, is
    one matrix product of the stacked pieces, whose rounding is about
    ``2 D 2**-(53 + k)`` of ``|a| |b|``: ``2**-67`` for unit rows with D = 128. Two
    matrix products (of depth D and 2D) instead of a double-double product per entry.
    """
    return two_sum(*_dd_products(a_hi, a_lo, b_hi, b_lo))


# Rows and columns of the square tiles of symmetric_sum: two tiles stay in the L1 cache.
_SYMMETRIC_TILE = 64


def symmetric_sum(g):
    """``g + g.T`` of a square matrix, written over ``g`` and returned, bit for bit.

    Tile by tile: entry (i, j) and entry (j, i) both get ``fl(g[i, j] + g[j, i])``. A
    transposed operand read whole strides across the matrix and misses the cache at every
    entry (about three times slower for 1024 x 1024).
    """
    n, t = len(g), _SYMMETRIC_TILE
    for i in range(0, n, t):
        for j in range(i, n, t):
            a, b = g[i : i + t, j : j + t], g[j : j + t, i : i + t]
            s = a + b.T
            a[...] = s
            if i != j:
                b[...] = s.T
    return g


def row_argmax(x: np.ndarray) -> np.ndarray:
    """``np.argmax(x, axis=-1)`` of a 2-D array, also fast when its rows are strided.

    NumPy's argmax copies a transposed view into row order first (for a 1024 x 1024
    float64 view, 30 times the time of the row maxima). The maxima are a fast reduction
    in any layout; a row's only entry equal to its maximum then has the index
    ``hit @ arange``, and ``hit @ 1`` counts the entries equal to it. The rows where that
    count is not 1 (a tie, or a NaN maximum) take NumPy's argmax: the first of them.
    """
    if x.flags.c_contiguous or x.shape[-1] == 0:
        return np.argmax(x, axis=-1)
    with np.errstate(invalid="ignore"):
        hit = (x == np.max(x, axis=-1, keepdims=True)).astype(np.float64)
    index_and_count = hit @ np.stack(
        [np.arange(x.shape[-1], dtype=np.float64), np.ones(x.shape[-1])], 1
    )
    top = index_and_count[:, 0].astype(np.intp)
    odd = np.flatnonzero(index_and_count[:, 1] != 1)
    if odd.size:
        top[odd] = np.argmax(x[odd], axis=-1)
    return top


def cross_entropy_rows_grad(rest, total, top, positive):
    """The gradient of per-row cross-entropies w.r.t. their logits: softmax minus one-hot.

    From ``rest = exp(s - s_top)`` (0 at the top and at masked entries) and its row sums
    ``total``; ``p_pos - 1`` is formed as minus the other terms' share (without the
    difference ``1 - p_pos``, which cancels for a confident positive). Overwrites
    ``rest`` with the result.
    """
    rows = np.arange(len(rest))
    denominator = 1 + total
    not_top = (top != positive).astype(np.float64)
    others = total - rest[rows, positive]
    g = np.divide(rest, denominator[:, None], out=rest)
    g[rows, top] = 1 / denominator
    g[rows, positive] = -(not_top + others) / denominator
    return g


@quiet
def dd_cross_entropy_rows(hi, lo, positive, with_grad=False):
    """Per row ``-s[i, positive[i]] + logsumexp(s[i])`` of double-double logits ``hi + lo``.

    Domain: 2-D finite logits, or ``-inf`` where an entry is masked (its ``lo`` 0), and
    one finite entry per row at least. As ``(s_top - s_pos) + log1p(sum of the rest)``:
    no cancellation where the positive dominates (a small loss), the rounding of each
    ``s - s_top`` and the low parts applied to first order, ``e^(d + c) ~ e^d (1 + c)``.
    Accuracy: a few ULP of float64 where the logits carry ``2**-60`` of themselves. With
    ``with_grad``, ``(loss, gradient w.r.t. the logits)`` (:func:`cross_entropy_rows_grad`),
    each entry within a few ULP of itself.
    """
    rows = np.arange(len(hi))
    top = np.argmax(hi, axis=-1) if len(hi) else rows
    largest, largest_low = hi[rows, top], lo[rows, top]
    gap = (largest - hi[rows, positive]) + (largest_low - lo[rows, positive])
    with np.errstate(invalid="ignore", over="ignore"):
        rest = hi - largest[:, None]
        correction = diff_error(hi, largest[:, None], rest)
        correction += lo
        correction -= largest_low[:, None]
        np.exp(rest, out=rest)
        correction *= rest
        rest += correction
    rest[rows, top] = 0
    total = np.sum(rest, axis=-1)
    loss = gap + np.log1p(total)
    if not with_grad:
        return loss
    return loss, cross_entropy_rows_grad(rest, total, top, positive)


# --- log-sum-exp of double-doubles ----------------------------------------------------------------


def dd_sum(a_hi, a_lo, b_hi, b_lo):
    """``(a_hi + a_lo) + (b_hi + b_lo)`` as a double-double; where the sum is not finite, the
    plain sum of the high parts and a low part of 0 (infinities of log-probabilities)."""
    with np.errstate(invalid="ignore", over="ignore"):
        s, err = two_sum(a_hi, b_hi)
        finite = np.isfinite(s)
        hi, lo = _fast_two_sum(s, np.where(finite, err + (a_lo + b_lo), 0.0))
    return np.where(finite, hi, s), np.where(finite, lo, 0.0)


def log_sum_exp_dd(hi, lo, precise=False):
    """``log(sum(exp(hi + lo)))`` over the last axis of double-doubles, as a double-double,
    and ``s``, the sum of the other terms' exponentials relative to the largest.

    For the recursions of log-probabilities that run over many steps (CTC's forward and
    backward variables): carried as double-doubles, their rounding errors do not grow with
    the size of the values (a float64 sum of log-probabilities of size 500 has an absolute
    error of 500 eps per step). With ``m`` the largest ``hi`` and ``d = fl(hi - m)``, each
    ``exp(d + delta)`` is taken as ``e^d (1 + delta)``, where ``delta`` is the exact rounding
    error of ``d`` (:func:`diff_error`) plus ``lo - lo_m`` (below an ULP of ``d`` and of
    ``m``: the second-order term is below 2^-80 for values up to 1e4, and far below an
    ULP of ``m`` for any). The result is ``m + lo_m + log1p(s)``, ``s`` the corrected sum
    over the other terms. Where ``m`` is infinite (or NaN) the result is ``m``.

    Accuracy: the float64 ``exp`` and ``log1p`` leave an absolute error of at most
    ``2^-50 s`` (an ULP of each ``e^d`` and of ``log1p(s)``), independent of ``m``. It
    matters where a result near 0 is a sum of terms that cancel (``m = log(1/2)`` and
    ``log1p(s) = log 2``); with ``precise`` each ``e^(d + delta)`` with ``d >= -80`` comes
    from :func:`dd_exp_parts` and ``log1p(s)`` from :func:`log1p_dd`, about ``2^-100``
    absolute (three times the work).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        top = np.argmax(hi, axis=-1)[..., None]
        m = np.take_along_axis(hi, top, axis=-1)
        m_lo = np.take_along_axis(lo, top, axis=-1)
        d = hi - m
        delta = diff_error(hi, m, d)
        delta += np.where(np.isfinite(d), lo - m_lo, 0.0)
        e = np.exp(d)
        np.put_along_axis(e, top, 0.0, axis=-1)
        terms = e + e * delta
        s = np.sum(terms, axis=-1)
        m, m_lo = m[..., 0], m_lo[..., 0]
        if precise:
            l_hi, l_lo = log1p_dd(*_exp_sum_dd(d, delta, terms, top))
        else:
            l_hi, l_lo = np.log1p(s), 0.0
        out_hi, out_lo = dd_sum(m, m_lo, l_hi, l_lo)
    finite = np.isfinite(m)
    return np.where(finite, out_hi, m), np.where(finite, out_lo, 0.0), s


def _exp_sum_dd(d, delta, terms, top):
    """The sum over the last axis of ``e^(d + delta)`` (``d <= 0``) but the ``top`` entry, as
    a double-double to about 2^-104: :func:`dd_exp_parts` where ``d >= -80``, the plain
    ``terms`` below (under 2^-115 of 1, the largest term)."""
    near = d >= -80.0
    # d + delta = z + z_err exactly: delta holds the low parts of log-probabilities as
    # large as the loss (2^-41 for 3600), too large for first order; z_err is below ulp(z)
    z, z_err = two_sum(np.where(near, d, 0.0), np.where(near, delta, 0.0))
    k, m_hi, m_lo = dd_exp_parts(z)
    # (1 + m)(1 + z_err) 2^k, to first order in z_err (the second below 2^-104)
    t_hi, t_lo = _fast_two_sum(1.0, m_hi)
    t_lo += m_lo + (1.0 + m_hi) * z_err
    scale = np.ldexp(1.0, k)
    t_hi, t_lo = t_hi * scale, t_lo * scale
    far = ~near
    np.copyto(t_hi, terms, where=far)
    np.copyto(t_lo, 0.0, where=far)
    np.put_along_axis(t_hi, top, 0.0, axis=-1)
    np.put_along_axis(t_lo, top, 0.0, axis=-1)
    s_hi, s_lo = t_hi[..., 0], t_lo[..., 0]
    for j in range(1, d.shape[-1]):
        s_hi, s_lo = _dd_add(s_hi, s_lo, t_hi[..., j], t_lo[..., j])
    return s_hi, s_lo


def log1p_dd(s_hi, s_lo):
    """``log1p(s_hi + s_lo)`` as a double-double, for ``0 <= s <= 3``, to about 2^-102.

    The float64 ``y = log1p(s_hi)``, then one Newton step: ``log1p(s) = y + log1p(eps)``
    with ``1 + eps = (1 + s) e^-y`` (:func:`dd_exp_parts`, ``e^-y = 2^k (1 + m)``), which
    is within a few ULP of 1, so that ``eps`` is exact to about 2^-104 (``fl(q 2^k) - 1``
    exact by Sterbenz) and ``log1p(eps) = eps - eps^2 / 2`` (the next term is below
    2^-150).
    """
    y = np.log1p(s_hi)
    k, m_hi, m_lo = dd_exp_parts(-y)
    w_hi, w_lo = two_sum(1.0, s_hi)
    w_lo += s_lo
    p_hi, p_lo = _dd_mul(w_hi, w_lo, m_hi, m_lo)
    q_hi, q_lo = _dd_add(w_hi, w_lo, p_hi, p_lo)  # (1 + s)(1 + m)
    scale = np.ldexp(1.0, k)
    eps = (q_hi * scale - 1.0) + q_lo * scale
    return _fast_two_sum(y, eps - 0.5 * eps * eps)


def cumulative_product_dd(hi, lo):
    """Running products of the double-doubles ``hi + lo`` along a 1-D axis, as double-doubles.

    Domain: factors in (0, 2] (a noise schedule's ``1 - beta``). By doubling (Hillis and
    Steele's scan: ``log2(n)`` vectorized passes of double-double products): each product
    has a relative error of about 2^-104, so that the ``n``-th carries about ``n`` 2^-104,
    far below an ULP of float64 for any schedule length, where a float64 cumulative product
    (or a sum of ``log1p``) carries up to ``n`` ULP.
    """
    hi, lo = np.array(hi, dtype=np.float64), np.array(lo, dtype=np.float64)
    step = 1
    with np.errstate(under="ignore", invalid="ignore", over="ignore"):
        while step < len(hi):
            p_hi, p_lo = _dd_mul(hi[step:], lo[step:], hi[:-step], lo[:-step])
            hi[step:], lo[step:] = p_hi, p_lo
            step *= 2
    return hi, lo


@quiet
def dd_product_cross_entropy(
    a_hi, a_lo, b_hi, b_lo, positive, mask_diagonal=False, with_grad=False
):
    """Per row ``-s[i, positive[i]] + logsumexp(s[i])`` of ``s = a @ b.T`` in double-double.

    ``a`` and ``b`` are 2-D double-double rows (``hi + lo``); with ``mask_diagonal`` the
    entries ``s[i, i]`` are left out (``-inf``). The product as :func:`dd_matmul` (the
    heads' part exact, the rest one product of stacked pieces) and the loss as
    :func:`dd_cross_entropy_rows`, in blocks of rows: the two products are formed whole
    (BLAS is much slower on blocks), every other temporary has about ``2**17`` entries.
    With ``with_grad``, ``(losses, their gradients w.r.t. s)``, an ``(N, M)`` array.
    """
    products = _dd_products(a_hi, a_lo, b_hi, b_lo)  # whole: BLAS is slower on blocks
    return _dd_cross_entropy_blocks(products, positive, mask_diagonal, with_grad, overwrite=True)


def dd_matmul_blocks(a_hi, a_lo, b_hi, b_lo):
    """:func:`dd_matmul` in blocks of rows: ``(blocks, spare)``; ``blocks`` yields
    ``(rows, hi, lo)``, ``rows`` a slice, ``hi + lo`` those rows of the product (about
    ``2**17`` entries each). The two matrix products are formed whole (BLAS is much
    slower on blocks), the rest block by block. ``spare`` is an ``(N, M)`` float64 array
    whose rows may be overwritten once their block has been yielded (the products' low
    part, not read again): room for a result of the product's shape."""
    products = _dd_products(a_hi, a_lo, b_hi, b_lo)
    return _dd_product_blocks(products), products[1]


def _dd_product_blocks(products, transposed=False):
    """``(rows, hi, lo)`` of ``exact + small`` (of its transpose) block by block.

    The transpose's blocks are strided views: ``two_sum`` writes them in their memory
    order and the row reductions follow it (a contiguous copy of each block would cost
    three times the cross-entropy of the block)."""
    exact, small = products
    if transposed:
        exact, small = exact.T, small.T
    for block in row_blocks(exact.shape[0], exact.shape[1] * exact.itemsize):
        hi, lo = exact[block], small[block]
        with np.errstate(invalid="ignore", over="ignore"):
            yield (block, *two_sum(hi, lo))


@quiet
def dd_product_cross_entropy_both(a_hi, a_lo, b_hi, b_lo, with_grad=False):
    """:func:`dd_product_cross_entropy` of ``s = a @ b.T`` over its rows and over its
    columns (``s.T``), the positives on the diagonal, from one product.

    Returns ``(row losses, column losses, gradient)``: the gradient of the sum of all
    those losses w.r.t. ``s`` (the rows' and the columns' softmax minus twice the
    identity), or None. The columns are taken in blocks of ``s.T`` (strided views), their
    gradient added into the rows' (no second ``(N, N)`` product or gradient).
    """
    products = _dd_products(a_hi, a_lo, b_hi, b_lo)
    positive = np.arange(len(a_hi))
    rows = _dd_cross_entropy_blocks(products, positive, False, with_grad)
    rows, grad = rows if with_grad else (rows, None)
    columns = _dd_cross_entropy_blocks(products, positive, False, with_grad, True, grad)
    return rows, columns, grad


def _dd_cross_entropy_blocks(
    products, positive, mask_diagonal, with_grad, transposed=False, add_to=None, overwrite=False
):
    """The losses (and gradients) of :func:`dd_product_cross_entropy` from the logits
    ``exact + small``, in blocks of rows. With ``transposed``, the same for the logits'
    transpose, in blocks of their columns: the gradient is added into ``add_to`` (an array
    of the logits' shape) transposed and the losses alone are returned. With
    ``overwrite``, the gradient is written over ``small`` (each block of rows after it
    is read): no third ``(N, M)`` array."""
    shape = products[0].T.shape if transposed else products[0].shape
    out = np.empty(shape[0])
    grad = None
    if with_grad and not transposed:
        grad = products[1] if overwrite else np.empty(shape)
    for block, hi, lo in _dd_product_blocks(products, transposed):
        start = block.start
        if mask_diagonal:
            rows = np.arange(len(hi))
            hi[rows, start + rows] = -np.inf
            lo[rows, start + rows] = 0
        if with_grad and transposed:
            out[block], g = dd_cross_entropy_rows(hi, lo, positive[block], True)
            add_to[:, block] += g.T
        elif with_grad:
            out[block], grad[block] = dd_cross_entropy_rows(hi, lo, positive[block], True)
        else:
            out[block] = dd_cross_entropy_rows(hi, lo, positive[block])
    if transposed:
        return out
    return (out, grad) if with_grad else out
