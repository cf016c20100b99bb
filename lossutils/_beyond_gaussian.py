"""Likelihoods beyond the Gaussian: counts, heavy tails and quantiles (private).

Four negative log-likelihoods of a regression output and their gradients:
the Poisson and negative binomial for counts, the Student-t for heavy-tailed
residuals, and the pinball loss (the asymmetric Laplace) for quantiles. The
public names are re-exported by :mod:`lossutils.regression`.

Every function evaluates its per-element terms in a working dtype wider than
the output where the output is narrower than float64 (float16 and float32 are
computed in float64), reduces there, and rounds once to the output dtype. float64
input is computed in float64 itself, never in ``long double`` (plain double on
some platforms, so the accuracy would depend on the platform): where a difference
cancels, its terms come from exact transformations of ``_numerics`` (TwoSum,
Dekker's product, a double-double exponential). SciPy provides ``gammaln`` and
``digamma`` (float64 only); the cancellations of the negative binomial's and the
Student-t's large-parameter limits are removed analytically (see
:func:`_log_rising` and :func:`_student_t_log_norm`).
"""

from __future__ import annotations

import math
import numbers
import threading
from fractions import Fraction

import numpy as np
from scipy.special import digamma, gammaln

from ._blocks import BLOCK_BYTES, for_each_block
from ._checks import (
    as_float_array,
    check_bool,
    check_broadcastable,
    check_positive_scalar,
    check_reduction,
    check_same_shape,
    check_scale_shape,
    describe,
    grad_dtype,
    gradients_in_argument_dtypes,
    result_dtype,
    sum_to_shape,
)
from ._numerics import (
    CHUNK,
    _dd_times_split,
    _exp_minus_abs,
    _fast_two_sum,
    _sigmoid_from,
    _split,
    atanh_series,
    chunks,
    count_indices,
    dd_add,
    dd_constant,
    dd_div,
    dd_exp_parts,
    dd_horner,
    dd_log,
    dd_mul,
    exact_difference,
    exp_minus_count,
    exp_minus_near,
    gap_to_square,
    gap_to_square_parts,
    halved_difference,
    horner,
    log1p_minus,
    logistic_pairs,
    scaled_exp_minus,
    scaled_exp_minus_dd,
    scaled_exp_minus_exact,
    scaled_exp_minus_near,
    sigmoid,
    sigmoid_pair,
    softplus,
    take_broadcast,
    times,
    to_dtype,
    two_prod,
    two_sum,
    xlogy,
)
from ._reduction import BlockReduction, reduce_to, reduction_scale, scale_grad, sum_to_shape_parts

__all__ = [
    "poisson_nll_loss",
    "poisson_nll_loss_grad",
    "poisson_nll_loss_value_and_grad",
    "negative_binomial_nll_loss",
    "negative_binomial_nll_loss_grad",
    "negative_binomial_nll_loss_value_and_grad",
    "student_t_nll_loss",
    "student_t_nll_loss_grad",
    "student_t_nll_loss_value_and_grad",
    "quantile_loss",
    "quantile_loss_grad",
    "quantile_loss_value_and_grad",
]

_LOG_2PI = math.log(2 * math.pi)
_HALF_LOG_PI = 0.5 * math.log(math.pi)
_LOG_2 = math.log(2.0)
_HALF_LOG_2 = 0.5 * _LOG_2

# ---------------------------------------------------------------- shared plumbing


def _arrays(names_values, work=None):
    """The arguments as arrays: the output dtype and each argument in the working dtype.

    ``work`` is a function of the output dtype (float64-at-least).
    """
    arrays = {name: as_float_array(value, name) for name, value in names_values.items()}
    out = result_dtype(*names_values.values())
    work_dtype = np.dtype(work(out)) if work else out
    return out, work_dtype, tuple(a.astype(work_dtype) for a in arrays.values())


def _check_counts(y, name="target", integer=False):
    """Non-negative counts (NaN passes); integers too where the pmf needs them."""
    if not integer and y.size and y.min() >= 0:
        return  # one reduction where all are (the minimum is NaN where one is NaN)
    bad = y < 0
    if integer:
        with np.errstate(invalid="ignore"):
            bad = bad | (np.isfinite(y) & (y != np.floor(y))) | np.isinf(y)
    if np.any(bad):
        expected = "non-negative integer counts" if integer else "non-negative counts"
        raise ValueError(f"{name} must hold {expected}; got {describe(float(y[bad].flat[0]))}")


def _check_positive(value, name, allow_zero=False, allow_inf=False):
    """Entries > 0 (or >= 0); NaN is refused too: a parameter, not data."""
    with np.errstate(invalid="ignore"):
        ok = (value >= 0) if allow_zero else (value > 0)
        if not allow_inf:
            ok = ok & np.isfinite(value)
    if not np.all(ok):
        expected = "non-negative" if allow_zero else "positive"
        what = "" if allow_inf else " finite"
        raise ValueError(
            f"{name} must be{what} {expected}; got {describe(float(value[~ok].flat[0]))}"
        )


# ---------------------------------------------------------------- Poisson


def _poisson_args(input, target, log_input, full, eps, reduction):
    """The output dtype, ``input`` and ``target`` checked but for their signs (see
    :func:`_poisson_signs`), in their own floating dtype (widened to float64 piece by piece
    where they are used), and ``eps`` as a float64."""
    check_reduction(reduction)
    check_bool(log_input, "log_input")
    check_bool(full, "full")
    eps = check_positive_scalar(eps, "eps", allow_zero=True)
    out = result_dtype(input, target)
    x, y = (as_float_array(v, n) for n, v in (("input", input), ("target", target)))
    check_same_shape(x, y, "input", "target")
    return out, x, y, np.float64(eps)


def _poisson_signs(x, y, log_input, pieces):
    """The counts ``y`` (and the rates ``x`` of ``log_input=False``) checked, as by
    :func:`_check_counts`, where a piece's minimum was negative or NaN (``pieces`` not
    empty): the minima are taken while each piece is in cache for the loss (a full-size
    pass of their own, on one thread, costs about a tenth of the loss's time on two), and
    the few calls with such a piece check the whole arrays, for the error raised up front
    before."""
    if pieces:
        _check_counts(y)
        if not log_input:
            _check_counts(x, "input")  # a rate: non-negative


def _poisson(
    input, target, log_input, full, eps, reduction, *, value=True, grad=True, careful=False
):
    """``(loss or None, d_input or None)`` of :func:`poisson_nll_loss`, one pass.

    In blocks of about a megabyte (:func:`for_each_block`, on up to two threads), each in
    cache-sized pieces widened to float64 into buffers made once per thread: only the
    results (in their own dtypes) are full-size arrays, a reduced loss is summed piece by
    piece (the blocks' sums added in their order, so the result does not depend on the
    threads), and ``e^x`` of a piece feeds the loss and the gradient. The gradient is scaled
    by the mean's 1/n in float64 and rounded once; the elements where its formula cancels
    are collected over a block's pieces and redone together.

    A reduced float16 or float32 loss of log-rates (not ``careful``) keeps the plain float64
    terms where they cancel: each is within 2^-52 e^x (exp's ULP), so the total is within
    ``2^-52 R`` of that of the redone terms, ``R`` the sum over pieces of their size times
    their largest e^x. Where that is not below 2^-30 of the total (1/32 of its ULP at
    least) the loss is formed again, ``careful``: term by term as for ``"none"``.
    """
    out, x, y, eps = _poisson_args(input, target, log_input, full, eps, reduction)
    xf, yf = x.reshape(-1), y.reshape(-1)
    size = xf.size
    dtype = grad_dtype(input, out)
    g = np.empty(size, dtype) if grad else None
    scale = reduction_scale(size, reduction, np.float64)
    narrow = dtype.itemsize < 8
    # the kept values, written in place by every thread (each into its own pieces)
    kept = BlockReduction(reduction, size, out) if value and reduction == "none" else None
    loose = value and kept is None and out.itemsize < 8 and log_input and not full
    loose = loose and not careful
    parts = {}  # the first element of a block: its reduction
    spans = {}  # the first element of a loose piece: its size times its largest e^x
    unsigned = []  # pieces with a negative (or NaN) count or rate
    local = threading.local()
    step = min(CHUNK, size)

    def blocks(rows: slice) -> None:
        if not hasattr(local, "rate"):
            # float64 work buffers of a thread, reused by every piece (widened narrow
            # inputs, e^x, the loss, the gradient)
            local.wide = [np.empty(step) if v.dtype.itemsize < 8 else None for v in (x, y)]
            local.rate, local.loss, local.grad, local.tmp = (np.empty(step) for _ in range(4))
            local.flags = np.empty(step, bool)
        wide, rate_buf, loss_buf, grad_buf, tmp, flags = (
            local.wide,
            local.rate,
            local.loss,
            local.grad,
            local.tmp,
            local.flags,
        )
        reduced = kept if kept is not None or not value else BlockReduction(reduction, size, out)
        redo = []  # flat indices to redo, together at the end of the block
        for start in range(rows.start, rows.stop, step):
            b = slice(start, min(start + step, rows.stop))
            xb, yb = (_widened(v[b], w) for v, w in zip((xf, yf), wide, strict=True))
            if not yb.min() >= 0 or not (log_input or xb.min() >= 0):
                unsigned.append(start)  # (also a NaN, which passes)
            n = xb.size
            rate = np.exp(xb, out=rate_buf[:n]) if log_input else None
            if value and loose:
                lb = np.multiply(yb, xb, out=loss_buf[:n])
                np.subtract(rate, lb, out=lb)
                t = np.sum(lb)
                if np.isfinite(t):  # no special value
                    reduced.add(np.reshape(t, 1), b)  # (the sum of this one total is itself)
                    spans[start] = n * math.exp(float(np.maximum.reduce(xf[b])))
                else:
                    reduced.add(_poisson_log_terms(xb, yb, rate, lb, True, (tmp, flags)), b)
            elif value:
                if log_input and not full:
                    # float64 values kept: formed in their place in the result
                    lb = reduced.buffer(b, loss_buf[:n])
                    lb = _poisson_log_terms(xb, yb, rate, lb, out.itemsize < 8, (tmp, flags))
                else:
                    lb = _poisson_terms(xb, yb, rate, eps, full)
                reduced.add(lb, b)
            if not grad:
                continue
            if log_input:
                # a float64 gradient is formed in its place (scaled there for the mean)
                gb = g[b] if not narrow else grad_buf[:n]
                np.subtract(rate, yb, out=gb)
                # the loss's buffer is free by now
                close = _poisson_log_close(gb, xb, rate, narrow, (tmp, loss_buf, flags))
            else:
                gb, close = _poisson_rate_slope(xb, yb, eps, narrow)
            if reduction == "mean":
                np.multiply(gb, scale, out=g[b])  # rounded once
            elif gb.base is not g:
                g[b] = gb
            if close.size:
                redo.append(close + start)
        if redo:
            idx = np.concatenate(redo)
            xs, ys = xf[idx].astype(np.float64), yf[idx].astype(np.float64)
            if log_input:
                which, gs = _poisson_log_slopes(xs, ys, narrow)
                idx = idx[which]
            else:
                # s - y is exact (Sterbenz) with s + s_err = x + eps exactly
                s, s_err = two_sum(xs, eps)
                gs = ((s - ys) + s_err) / s
            if reduction == "mean":
                gs *= scale
            g[idx] = gs
        if value and kept is None:
            parts[rows.start] = reduced

    for_each_block(blocks, size, 8)
    _poisson_signs(x, y, log_input, unsigned)  # before any result is returned
    loss = None
    if value:
        reduced = kept
        if reduced is None:
            reduced = BlockReduction(reduction, size, out)
            for start in sorted(parts):
                reduced.extend(parts[start])
        loss = reduced.result(x.shape)
        if spans:
            spread = math.fsum(spans.values()) * 2.0**-52
            summed = abs(float(loss)) * (size if reduction == "mean" else 1)
        if spans and not spread <= 2.0**-30 * summed:  # (also a NaN)
            again = _poisson(
                input, target, log_input, full, eps, reduction, value=True, grad=False, careful=True
            )
            loss = again[0]
    return loss, (None if g is None else g.reshape(x.shape))


def _widened(v, buf):
    """``v`` as float64: itself, or (float16, float32; ``buf`` not None) copied exactly into
    the front of ``buf``."""
    if buf is None:
        return v
    w = buf[: v.size]
    np.copyto(w, v)
    return w


def _poisson_log_terms(x, y, rate, buf, narrow, work):
    """Per-element ``e^x - y x`` (float64, into ``buf``; ``rate`` = e^x) of one block.

    Plain float64: the exponential, the product and the difference each within an ULP of
    the larger term, so within 2^-51 of ``e^x + |y x|``. For float16 and float32 output the
    product of two narrow numbers is exact and the error, within 2^-52 of ``e^x``, is a
    fraction of the result's ULP unless the terms cancel beyond 2^-27 of ``e^x``; only those
    elements are redone, ``e^x - y x`` by :func:`_poisson_log_redo` (within 2^-71 of
    ``e^x`` plus an ULP of the result). float64 output
    keeps the plain value (within the 4 ULP of the result plus 4 ULP of the terms that
    cancel). ``y = 0`` (also with an infinite or NaN ``x``) gives ``e^x``, ``x = inf`` gives
    inf; both only looked for in a block whose sum is not finite.
    """
    lb = np.multiply(y, x, out=buf)
    np.subtract(rate, lb, out=lb)
    if narrow and _none_below(lb, rate, 2.0**27, *work):
        return lb  # also no NaN: no special value to look for (an infinite lb is right)
    if not np.isfinite(np.sum(lb)):
        _both_overflow(lb, x, y, rate)
        zero = y == 0
        lb[zero] = rate[zero]
        lb[x == np.inf] = np.inf
    if narrow:
        near = _below(lb, rate, 2.0**27, *work)
        if near.size:
            xs = x[near]
            lb[near] = _poisson_log_redo(xs, y[near] * xs, True)  # the product is exact
    return lb


def _both_overflow(loss, x, y, rate):
    """Where ``e^x`` and ``y x`` both overflow (``inf - inf``: NaN), ``loss`` gets the sign
    of the exact ``e^x - y x``: ``+inf`` where ``x - log x > log y``, else ``-inf``."""
    both = np.flatnonzero((rate == np.inf) & np.isnan(loss) & (y > 0) & (x < np.inf))
    if both.size:
        xs = x[both]
        loss[both] = np.where(xs - np.log(xs) > np.log(y[both]), np.inf, -np.inf)


def _poisson_terms(x, y, rate, eps, full):
    """Per-element loss (float64) of one block: ``e^x - y x`` (``rate`` = e^x) or
    ``x - y log(x + eps)`` (``rate`` None), plus the Stirling term if ``full``."""
    if rate is not None:
        loss = rate - times(y, x)
        _both_overflow(loss, x, y, rate)
    else:
        loss = x - xlogy(y, x + eps)
    loss = np.where(x == np.inf, np.inf, loss)
    if full:
        big = y > 1
        yb = np.where(big, y, 2)
        stirling = yb * (np.log(yb) - 1) + 0.5 * np.log(2 * np.pi * yb)
        loss = loss + np.where(big, stirling, 0)
    return loss


def _poisson_log_redo(x, y, narrow):
    """``e^x - y`` where it cancels (``|x| <= 700``, ``|e^x - y| < e^x / 4``).

    :func:`exp_minus_near` (within 2^-71 of ``e^x``) where ``|e^x - y| >= 2^-20 e^x``
    (4 ULP of float64), or ``>= 2^-42 e^x`` for float16 and float32 output (2^-29 of the
    result). Below, and for ``|x| < 2^-20`` or ``|x| > 600`` within ``2^-9 e^x``, with the
    finer double-double exponential :func:`scaled_exp_minus_near` (about ``2^-116 e^x``,
    at most ``2^-117.1 e^x`` in sweeps: within 1.5 ULP of a result above ``2^-64 e^x``);
    where even that leaves too few digits (the result below ``2^-64 e^x``, ``2^-80 e^x`` for
    float16 and float32 output, or ``|x| > 600``: the optimum ``x = fl(log y)`` of a
    non-integer ``y`` cancels to about ``2^-53 |x|``, and a fraction ``2^-k`` of such
    elements ``2^-k`` further) in 60-digit decimal arithmetic (:func:`scaled_exp_minus_exact`,
    rounded once; tens of microseconds each, for about 1 element in 2000 at that optimum).
    The rest of ``|x| < 2^-20`` or
    ``|x| > 600`` with :func:`scaled_exp_minus` (about ``2^-105 e^x``, far below their
    ULP). The tests on the float64 difference, within 2^-52 ``e^x`` of the exact one, are
    as good.
    """
    e = np.exp(x)
    gap = np.abs(np.subtract(e, y))
    close = gap < (2.0**-42 if narrow else 2.0**-20) * e
    a = np.abs(x)
    odd = (a < 2.0**-20) | (a > 600)
    near = gap < 2.0**-9 * e
    # on every element (e^x is finite and positive for |x| <= 700: no gather), kept where
    # it is accurate
    g = exp_minus_near(x, y, e)
    rest = np.flatnonzero(odd & ~near)
    if rest.size:
        g[rest] = scaled_exp_minus(None, x[rest], y[rest])  # a = 1
    fine = np.flatnonzero(close | (odd & near))
    if fine.size:
        xs, ys = x[fine], y[fine]
        hi, lo = scaled_exp_minus_near(1.0, xs, ys)
        hi += lo
        # (beyond |x| = 600 the double-double's low parts may be subnormal)
        deep = np.abs(hi) < (2.0**-80 if narrow else 2.0**-64) * e[fine]
        deep = np.flatnonzero(deep | (np.abs(xs) > 600))
        if deep.size:
            hi[deep] = scaled_exp_minus_exact(None, xs[deep], ys[deep])
        g[fine] = hi
    return g


def _poisson_rate_slope(x, y, eps, narrow):
    """Per-element ``1 - y / (x + eps)`` (float64), 1 where ``y = 0``, and where to redo it.

    It vanishes at the best fit and keeps only the absolute accuracy of ``y / s``
    (``s = x + eps``) formed as a difference: where it cancels the caller redoes it as
    ``((s - y) + s_err) / s`` with ``s + s_err = x + eps`` exactly (``s - y`` is then exact).
    That is where ``y / s`` is in [1/2, 2]. For float16 and float32 output it is formed as
    ``((x - y) + eps) / (x + eps)``: the numerator's two roundings are below 2^-53 of
    ``|x - y|`` and of itself, so the quotient is within 2^-51 of the exact one unless
    ``eps`` cancels ``x - y``; that needs ``|(x - y) + eps| < eps / 2`` (otherwise
    ``|x - y| <= 3 |(x - y) + eps|``), and only those elements are redone (``y / s`` is
    then in (1/2, 3/2), as the exact form needs). So also
    ``x = y`` (the best fit of a float32 model) costs no more than any other rate.
    """
    s = x + eps
    if narrow:
        g = np.subtract(x, y)
        g += eps
        near = np.flatnonzero(np.abs(g) < 0.5 * eps)
        g /= s
    else:
        g = np.divide(y, s)
        np.subtract(1, g, out=g)
        near = np.greater_equal(g, -1)
        near &= np.less_equal(g, 0.5, out=np.empty_like(near))
        near = np.flatnonzero(near)  # y / s in [1/2, 2]
    if np.isnan(np.sum(g)):  # one pass when no element is NaN
        # y = 0 gives 1, also where 0 / 0 (x + eps = 0) or x is NaN; and so does x = inf
        # for a finite y (1 - y / inf; the narrow form's inf / inf)
        g[np.isnan(g) & ((y == 0) | ((x == np.inf) & (y < np.inf)))] = 1
    return g, near


def _poisson_log_slopes(x, y, narrow):
    """``(which, values)``: ``e^x - y`` redone for the elements of ``x``, ``y`` (float64,
    gathered where :func:`_poisson_log_close` found that the plain difference cancels) at
    their indices ``which``; the others keep the plain difference.

    Where ``y`` is an integer count of the table of :func:`exp_minus_count` (the common
    case: at the optimum of counts every element cancels) from that table; other targets
    with ``|x| <= 700`` by :func:`_poisson_log_redo`. ``x = 0`` with ``y = 1`` is done too
    (``expm1(0) = 0``); elsewhere ``x = 0`` needs nothing: ``1 - y`` is rounded once.
    A block's elements are done together (a few dozen calls however many there are).
    """
    k, ok = count_indices(y)
    if ok.all():
        return slice(None), exp_minus_count(x, y, k)
    table = np.flatnonzero(ok)
    a = np.abs(x)
    rest = np.flatnonzero(~ok & (a <= 700) & (a != 0))
    values = [exp_minus_count(x[table], y[table], k[table])]
    if rest.size:
        values.append(_poisson_log_redo(x[rest], y[rest], narrow))
    return np.concatenate([table, rest]), np.concatenate(values)


def _below(d, rate, factor, tmp, flags):
    """Where ``|d| factor < rate`` (``factor`` a power of 2), through the buffers ``tmp``
    (float64) and ``flags`` (bool), at least as long as ``d``."""
    t = np.abs(d, out=tmp[: d.size])
    t *= factor
    return np.flatnonzero(np.less(t, rate, out=flags[: d.size]))


def _none_below(d, rate, factor, tmp, flags):
    """Whether no element has ``|d| factor < rate`` and none of ``d``, ``rate`` is NaN: a
    comparison and a reduction of flags instead of a selection, for a block where that is
    the common case (the narrow dtypes). ``|d| factor`` (exact: a power of 2) is left in
    ``tmp``; ``flags`` is a bool buffer; both at least as long as ``d``."""
    t = np.abs(d, out=tmp[: d.size])
    t *= factor
    return bool(np.greater_equal(t, rate, out=flags[: d.size]).all())  # False where NaN


_EXPONENT_BITS = np.int64(0x7FF0000000000000)


def _poisson_log_close(g, x, rate, narrow, work):
    """Where to redo the per-element ``g = e^x - y`` (float64; ``rate`` = e^x).

    Where it cancels: ``|e^x - y| < 2^k / 4`` for ``e^x`` in [2^k, 2^(k + 1)); for float16
    and float32 output ``< 2^-26 e^x`` (beyond, the float64 difference is within 2^-52 e^x,
    at most 2^-26 of the result, a quarter of its float32 ULP: the rounded result is within
    3/4 ULP). The caller redoes those (:func:`_poisson_log_slopes`).
    Elsewhere ``e^x - y`` is exact for the computed ``e^x`` where ``y`` is within a factor
    2 of it (Sterbenz), so its error is that of exp, 1 ULP of e^x (2^(k - 52)): at most
    4 ULP of a difference of at least 2^(k - 2) (or 2 ULP plus the difference's rounding
    where it is at least e^x / 2). The power of 2 is ``e^x`` with its fraction bits cleared
    (inf stays inf, NaN gives inf). ``work``: two float64 buffers and a bool one.
    """
    if narrow:
        if _none_below(g, rate, 2.0**26, work[0], work[2]):
            return np.empty(0, np.intp)
        # |g| 2^26, left in the buffer
        n = g.size
        close = np.flatnonzero(np.less(work[0][:n], rate, out=work[2][:n]))
    else:
        power, t, flags = (w[: g.size] for w in work)
        np.bitwise_and(rate.view(np.int64), _EXPONENT_BITS, out=power.view(np.int64))
        np.abs(g, out=t)
        t *= 4.0
        close = np.flatnonzero(np.less(t, power, out=flags))
    return close


def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean"):
    r"""Negative log-likelihood of a Poisson count with a predicted rate.

    With the log link (``log_input=True``, :math:`\eta` = ``input``) and with the rate given
    directly (``log_input=False``, :math:`\lambda` = ``input``):

    .. math::

        \ell(\eta, y) = e^{\eta} - y\,\eta, \qquad
        \ell(\lambda, y) = \lambda - y \log(\lambda + \epsilon),

    the Poisson NLL :math:`-\log(\lambda^y e^{-\lambda} / y!)` without :math:`\log y!`. With
    ``full=True`` Stirling's approximation of :math:`\log y!`,
    :math:`y \log y - y + \tfrac12 \log(2\pi y)`, is added where :math:`y > 1` (0 elsewhere).

    Parameters
    ----------
    input : array_like
        Log-rates :math:`\eta` (``log_input=True``) or rates :math:`\lambda \ge 0`.
    target : array_like
        Counts :math:`y \ge 0`, the same shape as ``input``. Non-integer values are
        accepted (the loss is then a quasi-likelihood), as PyTorch accepts them.
    log_input : bool
        Whether ``input`` is the log-rate (the canonical link) or the rate.
    full : bool
        Add the Stirling term.
    eps : float
        Non-negative shift inside the logarithm of ``log_input=False``.
    reduction : {"mean", "sum", "none"}
        How the per-element losses are combined.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-element losses for ``"none"``, in the promoted dtype of
        ``input`` and ``target``.

    Raises
    ------
    ValueError
        If ``target`` (or, with ``log_input=False``, ``input``) has a negative entry, the
        shapes differ, ``eps`` is negative or not finite, ``log_input``/``full`` is not a
        bool, or ``reduction`` is unknown.

    Notes
    -----
    The semantics of ``torch.nn.functional.poisson_nll_loss``. Limits: ``target`` 0 contributes
    :math:`e^\eta` (0 times an infinite :math:`\eta` counts as 0), :math:`\eta = +\infty` gives
    :math:`+\infty`. Computed in a wider dtype and rounded once; the result is within a few ULP
    of the exact value except where :math:`e^\eta` and :math:`y\eta` (and the Stirling term)
    nearly cancel, where the error is a few ULP of the largest term. See
    :cite:t:`mccullagh1989generalized`.

    Examples
    --------
    >>> poisson_nll_loss([0.0, 1.0], [1.0, 3.0], reduction="none").round(6).tolist()
    [1.0, -0.281718]
    """
    return _poisson(input, target, log_input, full, eps, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def poisson_nll_loss_grad(input, target, log_input=True, full=False, eps=1e-8, reduction="mean"):
    r"""Gradient of :func:`poisson_nll_loss` w.r.t. ``input``.

    Per element :math:`e^\eta - y` with the log link (the canonical-link rule: mean minus
    target), :math:`1 - y / (\lambda + \epsilon)` for rates (1 where :math:`y = 0`). Divided by
    the number of elements for ``reduction="mean"``.

    Parameters
    ----------
    input, target, log_input, full, eps, reduction
        As in :func:`poisson_nll_loss`.

    Returns
    -------
    ndarray
        The gradient, with ``input``'s shape and floating dtype.

    Raises
    ------
    ValueError
        As :func:`poisson_nll_loss`.

    Notes
    -----
    The Stirling term does not depend on ``input``. See :cite:t:`mccullagh1989generalized`.

    Examples
    --------
    >>> poisson_nll_loss_grad([0.0, 1.0], [1.0, 3.0], reduction="sum").round(6).tolist()
    [0.0, -0.281718]
    """
    return _poisson(input, target, log_input, full, eps, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def poisson_nll_loss_value_and_grad(
    input, target, log_input=True, full=False, eps=1e-8, reduction="mean"
):
    r"""``poisson_nll_loss`` and ``poisson_nll_loss_grad`` in one pass: the loss and its gradient.

    The checked arguments and the intermediates both need are computed once.

    Parameters
    ----------
    input, target, log_input, full, eps, reduction
        Same as :func:`poisson_nll_loss`.

    Returns
    -------
    tuple
        ``(loss, d_input)``: bit for bit ``poisson_nll_loss(...)``
        and ``poisson_nll_loss_grad(...)``.

    Raises
    ------
    ValueError
        As :func:`poisson_nll_loss`.

    Examples
    --------
    >>> args = ([0.0, 1.0], [1.0, 3.0])
    >>> loss, g = poisson_nll_loss_value_and_grad(*args, reduction="sum")
    >>> bool(loss == poisson_nll_loss(*args, reduction="sum")), g.round(6).tolist()
    (True, [0.0, -0.281718])
    """
    return _poisson(input, target, log_input, full, eps, reduction)


# ---------------------------------------------------------------- negative binomial

# Stirling series of log Gamma: log Gamma(x) = (x - 1/2) log x - x + log(2 pi)/2 + corr(x),
# corr(x) = sum_k B_2k / (2k (2k-1) x^(2k-1)). For x >= 10 the nine terms below leave an error
# under 1e-18 (the tenth term is 5e-19 at x = 10). The same Bernoulli numbers give the digamma
# series psi(x) = log x - 1/(2x) - sum_k B_2k / (2k x^2k), truncated after ten terms (< 3e-19).
_BERNOULLI = (
    1 / 6,
    -1 / 30,
    1 / 42,
    -1 / 30,
    5 / 66,
    -691 / 2730,
    7 / 6,
    -3617 / 510,
    43867 / 798,
    -174611 / 330,
)
_STIRLING_MIN = 10.0


def _lgamma_correction(x):
    """corr(x) = log Gamma(x) - Stirling's formula, for x >= 10 (Horner in 1/x^2)."""
    w = 1 / (x * x)
    s = np.full_like(w, _BERNOULLI[8] / (2 * 9 * 17))
    for k in range(8, 0, -1):  # in place
        s *= w
        s += _BERNOULLI[k - 1] / (2 * k * (2 * k - 1))
    s /= x
    return s


def _digamma_correction(x):
    """sum_k B_2k / (2k x^2k) for x >= 10, so that psi(x) = log x - 1/(2x) - this."""
    w = 1 / (x * x)
    s = np.full_like(w, _BERNOULLI[9] / (2 * 10))
    for k in range(9, 0, -1):  # in place
        s *= w
        s += _BERNOULLI[k - 1] / (2 * k)
    s *= w
    return s


def _log_rising(a, d):
    """log Gamma(a + d) - log Gamma(a) (a > 0, a + d > 0) without the cancellation of two gammaln.

    For large a the two log-gammas are huge and nearly equal (a = 1e6, d = 3: 1.3e7 each,
    difference 41), so their difference loses log10(a) digits. Where a >= 10 and a + d >= 10,
    Stirling's formula is subtracted analytically:
    (a - 1/2) log1p(d/a) + d (log(a + d) - 1) + corr(a + d) - corr(a), each term about as
    small as the result (d may be negative).
    """
    direct = gammaln(a + d) - gammaln(a)
    big = (a >= _STIRLING_MIN) & (a + d >= _STIRLING_MIN)
    ab = np.where(big, a, _STIRLING_MIN)
    db = np.where(big, d, 0.0)
    stirling = (
        (ab - 0.5) * np.log1p(db / ab)
        + db * (np.log(ab + db) - 1)
        + (_lgamma_correction(ab + db) - _lgamma_correction(ab))
    )
    return np.where(big, stirling, direct)


def _nb_log_normalizer(r, y):
    """log Gamma(y + 1) + log Gamma(r) - log Gamma(r + y), 0 where r + y = 0 (PyTorch's mask).

    Two of the three log-gammas are huge and nearly cancel when either r or y is large: the
    pair with the larger argument is taken together by :func:`_log_rising`.
    """
    r_large = r >= y
    a_branch = gammaln(y + 1) - _log_rising(np.where(r_large, r, 1.0), np.where(r_large, y, 0.0))
    b_branch = gammaln(r) - _log_rising(
        np.where(r_large, 1.0, y + 1), np.where(r_large, 0.0, r - 1)
    )
    return np.where((r + y) == 0, 0.0, np.where(r_large, a_branch, b_branch))


# corr(y + 1) - ... for the counts y = 1..9 below the Stirling series' range: the Stirling error
# log y! - (y log y - y + log(2 pi y) / 2), from mpmath at 40 digits (the tests recompute them).
_STIRLING_ERRORS = (
    0.08106146679532726,
    0.0413406959554093,
    0.02767792568499834,
    0.020790672103765093,
    0.016644691189821193,
    0.013876128823070748,
    0.01189670994589177,
    0.010411265261972096,
    0.009255462182712733,
)


def _stirling_error(y):
    """log y! - (y log y - y + log(2 pi y)/2) for integer counts y >= 1 (a table below 10)."""
    out = np.asarray(_STIRLING_ERRORS)[np.clip(y, 1, 9).astype(np.intp) - 1]
    large = np.flatnonzero(y >= _STIRLING_MIN)  # the series only where it is used
    if large.size:
        out[large] = _lgamma_correction(y[large])
    return out


def _large_counts(r, y):
    """Where the saddle-point form of the NB loss is used: r > 0 and y >= 1."""
    return (r > 0) & (y >= 1)


# (x + 1/2) log1p(1/x) - 1 = atanh(u)/u - 1 = u^2/3 + u^4/5 + ..., u = 1/(2x + 1): the step of
# the Stirling error from x to x + 1, a series of positive terms for u <= 0.8 (x >= 1/8;
# :func:`atanh_series`); below, the direct form cancels by at most 3.


def _stirling_error_real(r):
    """log Gamma(r + 1) - (r log r - r + log(2 pi r)/2) for real r > 0, a few ULP.

    From the series corr(x) at x >= 10 and the positive steps
    delta(x) - delta(x + 1) = (x + 1/2) log1p(1/x) - 1 below: no cancellation (the direct
    difference of log Gamma and Stirling's formula loses 8 bits at r = 5). The series of a
    step is cut where the largest u of the step's elements needs it.
    """
    r = np.asarray(r, dtype=np.float64)
    out = np.asarray(_lgamma_correction(np.maximum(r, _STIRLING_MIN)))
    small = r < _STIRLING_MIN
    if not small.any():
        return out
    x = r[small]
    m = np.ceil(_STIRLING_MIN - x)
    out[small] = _lgamma_correction(x + m) + _stirling_steps(x, m)
    return out


def _stepping_order(steps, count):
    """``(order, starts)`` for the per-element step counts ``steps`` (small non-negative
    integers): ``order`` sorts the elements by their count (stable), so that the ones still
    stepping at step ``k < count`` are ``order[starts[k]:]``, a suffix; ``starts`` stops
    where no element steps any more. The loops below run on slices of the sorted elements:
    each element sees the same operations as one at a time, without a gather and a scatter
    per step."""
    steps = np.asarray(steps).astype(np.int16)  # (a radix sort)
    order = np.argsort(steps, kind="stable")
    starts = np.searchsorted(steps[order], np.arange(1, count + 1))
    return order, [int(k) for k in starts if k < order.size]


def _stirling_steps(x, m):
    """``corr(x) - corr(x + m)`` for real ``x > 0`` and integer ``m >= 0`` (at most a few
    tens): the sum of the positive steps ``(x + k + 1/2) log1p(1/(x + k)) - 1``, k < m."""
    return _step_sums(x, m, None)[0]


def _step_sums(x, stirling, digamma, wanted=(True, True)):
    """The sums over ``k`` of two kinds of positive steps at ``x + k`` (float64 ``x > 0``):
    ``(x + k + 1/2) log1p(1/(x + k)) - 1`` for ``k < stirling`` (:func:`_stirling_steps`) and
    ``1/(x + k) - log1p(1/(x + k))`` for ``k < digamma`` (:func:`_digamma_rest`), each an
    array of integer step counts (at most a few tens) or None; ``wanted``: which of the two
    sums to form (None for the other), on the steps of both.

    With ``u = 1/(2x + 1)``, ``w = u^2`` and ``S = atanh_series(w)`` (``log1p(1/x) =
    2 atanh(u)``), the first step is ``w S`` and the second ``u (1/x - 2 w S)`` (the two
    parts differ by a factor 13 or more for ``x >= 1``): one series per step for both. The
    direct forms where the series does not apply (``u > 0.8``; ``x < 1`` for the second,
    where it cancels by at most a factor 2.5, as in :func:`log1p_minus`).
    """
    given = [c for c in (stirling, digamma) if c is not None]
    most = given[0] if len(given) == 1 else np.maximum(*given)
    order, starts = _stepping_order(most, int(np.max(most, initial=0)))
    xs = x[order]
    counts = [
        c[order] if c is not None and w else None
        for c, w in zip((stirling, digamma), wanted, strict=True)
    ]
    sums = [None if c is None else np.zeros_like(xs) for c in counts]

    # (no mask for the counts that are the steps walked)
    every = [c is not None and (c is most or np.array_equal(c, most)) for c in (stirling, digamma)]

    def add(i, start, k, value):  # sums[i] += value where the element still takes step k
        acc = sums[i][start:]
        acc += value if every[i] else np.where(k < counts[i][start:], value, 0.0)

    for k, start in enumerate(starts):
        xk = xs[start:] + k
        u = 1 / (2 * xk + 1)
        w = u * u
        series = atanh_series(w)
        if sums[0] is not None:
            step = w * series if sums[1] is not None else np.multiply(series, w, out=series)
            direct = np.flatnonzero(u > 0.8)  # x < 1/8: few elements, if any
            if direct.size:
                xd = xk[direct]
                step[direct] = (xd + 0.5) * np.log1p(1 / xd) - 1
            add(0, start, k, step)
        if sums[1] is not None:
            t = 1 / xk
            series *= w
            series *= 2
            np.subtract(t, series, out=series)
            series *= u
            direct = np.flatnonzero(xk < 1)  # t > 1
            if direct.size:
                td = t[direct]
                series[direct] = td - np.log1p(td)
            add(1, start, k, series)
    for i, acc in enumerate(sums):
        if acc is not None:
            sums[i] = np.empty_like(acc)
            sums[i][order] = acc
    return sums


def _stirling_difference(r, y, steps=None):
    """``corr(r) - corr(r + y)`` for real ``r > 0`` and integer counts ``y >= 1``.

    Below 10 for both, the sum of the ``y`` positive steps from ``r`` (no cancellation, and
    fewer steps than taking each of ``r`` and ``r + y`` up to 10; ``steps``: those sums if
    already known, per element of ``r``); elsewhere the difference of the two Stirling errors.
    """
    few = (y <= _STIRLING_MIN) & (r < _STIRLING_MIN)

    def summed(i):
        return _stirling_steps(r[i], y[i]) if steps is None else steps[i]

    if few.all():
        return summed(slice(None))
    out = np.empty_like(r)
    i, j = np.flatnonzero(few), np.flatnonzero(~few)
    out[i] = summed(i)
    rj = r[j]
    out[j] = _stirling_error_real(rj) - _stirling_error_real(rj + y[j])
    return out


def _nb_nll_saddle(z, d, y, r, sp, steps=None):
    """The NB loss for r > 0, y >= 1 as a sum of non-negative terms (the saddle-point form).

    With the Stirling error corr(n) = log Gamma(n + 1) - (n log n - n + log(2 pi n)/2) (the
    series above 10, a table for the counts below, :func:`_stirling_difference` for
    corr(r) - corr(r + y)) and
    d = r sigma(z) - y sigma(-z) (the input slope: the mean's distance to y, accurate near
    the mode), the loss is
    bd0(y, y + d) + bd0(r, r - d) + log(2 pi y (r + y) / r) / 2 + corr(r) + corr(y) - corr(r+y),
    with the deviance bd0(x, m) = x log(x / m) + m - x >= 0 and y + d = (r + y) sigma(z),
    r - d = (r + y) sigma(-z): two deviances that vanish at the mode, a logarithm and a small
    positive correction. Near the mode bd0 = -x (log1p(t) - t), t = (m - x) / x
    (:func:`log1p_minus`); below t = -2/3, x log(x / m) + m - x directly. The textbook
    sum of terms of size y log y that cancel to the loss (1e7 against 8 at y = 1e6) loses
    their absolute accuracy (millions of ULP at y = 1e6).
    """
    big = _large_counts(r, y)
    yb, rb, db, zb, spb = y, r, d, z, sp
    if not big.all():  # elsewhere harmless values (the caller takes these elements only)
        yb, rb, db = np.where(big, y, 10.0), np.where(big, r, 10.0), np.where(big, d, 0.0)
        zb, spb = np.where(big, z, 0.0), np.where(big, sp, _LOG_2)
    t_y, t_r = db / yb, -db / rb
    bd0_y, bd0_r = -yb * log1p_minus(t_y), -rb * log1p_minus(t_r)
    far = np.flatnonzero((t_y < -2 / 3) | (t_r < -2 / 3))
    if far.size:
        # x log(x / m) + m - x for m = (r + y) sigma(+-z), where m < x / 3 (log(x / m) from
        # softplus where m underflows), on those elements only
        yf, rf, zf, spf = yb[far], rb[far], zb[far], spb[far]
        m_y, m_r = (rf + yf) * sigmoid(zf), (rf + yf) * sigmoid(-zf)
        log_y = np.where(m_y > 1e-300, np.log(yf / m_y), spf - zf - np.log1p(rf / yf))
        log_r = np.where(m_r > 1e-300, np.log(rf / m_r), spf - np.log1p(yf / rf))
        bd0_y[far] = np.where(t_y[far] >= -2 / 3, bd0_y[far], yf * log_y + (m_y - yf))
        bd0_r[far] = np.where(t_r[far] >= -2 / 3, bd0_r[far], rf * log_r + (m_r - rf))
    log_term = 0.5 * (_LOG_2PI + np.log(yb) + np.log1p(yb / rb))
    corr = _stirling_difference(rb, yb, steps) + _stirling_error(yb)
    return (bd0_y + bd0_r) + log_term + corr


# The NB slopes vanish at the best fit, where their terms nearly cancel: d/dz = r sigma(z) -
# y sigma(-z) (the mean r e^z against y) and d/dr = sp(z) - (psi(r + y) - psi(r)) (both about
# log1p(y/r)). Both are rewritten around g = r e^z - y, formed with e^z in double-double
# (scaled_exp_minus_dd) where r e^z is within a factor 8 of y, and finer where it is within
# 2^-48 of y (scaled_exp_minus_near): d/dz = g / (1 + e^z) there
# (both double-doubles, divided to about half an ULP), and everywhere
# d/dr = log1p(g / (r + y)) - (psi(r + y) - psi(r) - log1p(y / r)), the second part from the
# digamma series for r >= 10 (y / (2 r (r + y)) - corr'(r + y) + corr'(r)) and from positive
# terms below (_digamma_rest).


def _part(mask):
    """The elements where ``mask`` holds: all of them as a slice (no gathering), else indices."""
    return slice(None) if mask.all() else np.flatnonzero(mask)


def _nb_input_slope(z, y, r, narrow=False, sigmoids=None):
    """``(d/dz, near, gap, mean)`` of the NB loss (``r`` has ``z``'s shape), as described above.

    ``mean`` is ``r e^z`` in float64 (``z`` capped at 710), ``gap`` its difference to ``y``
    in double-double on the elements ``near``. The textbook difference of the two terms is
    formed on the other elements (on all, then replaced where near). ``narrow``: the result
    is rounded to float32 or float16, so the float64 difference is accurate enough unless
    ``r e^z`` is within 2^-20 of ``y`` (it loses 20 bits there). ``sigmoids``: the pair
    ``(sigma(z), sigma(-z))`` if already computed.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean = r * np.exp(np.minimum(z, 710.0))
    low, high = (1 - 2.0**-20, 1 + 2.0**-20) if narrow else (1 / 8, 8)
    near = (y > 0) & (r > 0) & (np.abs(z) <= 600)  # Dekker's products stay in their domain
    near &= (mean >= low * y) & (mean <= high * y)
    s_pos, s_neg = sigmoid_pair(z) if sigmoids is None else sigmoids
    g_z = times(r, s_pos)
    g_z -= times(y, s_neg)
    gap = None
    if near.any():
        part = _part(near)
        zn = z[part]
        parts = dd_exp_parts(zn)  # e^z once for both differences
        rn, yn = r[part], y[part]
        gap = scaled_exp_minus_dd(rn, zn, yn, parts)
        # at the optimum (r e^z within 2^-48 of y) the double-double's 2^-105 of y is more
        # than an ULP of the gap: those few again, to 2^-116 of y
        tight = np.flatnonzero(np.abs(gap[0]) < 2.0**-48 * yn)
        if tight.size:
            gap[0][tight], gap[1][tight] = scaled_exp_minus_near(rn[tight], zn[tight], yn[tight])
        # (r e^z - y) / (1 + e^z), both double-doubles: one long division step
        den_hi, den_lo = scaled_exp_minus_dd(None, zn, -1.0, parts)
        q = gap[0] / den_hi
        p, p_err = two_prod(q, den_hi)
        g_z[part] = q + (((gap[0] - p) - p_err) + (gap[1] - q * den_lo)) / den_hi
    return g_z, near, gap, mean


def _nb_count_slope(z, y, r, sp, near, gap, mean, steps=None):
    """d/dr of the NB loss, from ``near``, ``gap`` and ``mean`` of :func:`_nb_input_slope`
    (``steps``: the sums of :func:`_digamma_rest`'s steps if already known, per element)."""
    g_r = np.array(sp, dtype=np.float64)
    g_hi = mean - y  # r e^z - y; in double-double where near
    g_lo = np.zeros_like(g_hi)
    if gap is not None:
        g_hi[near], g_lo[near] = gap
    # for y > 0, sp(z) and the digamma difference are taken together: the digamma difference's
    # logarithm log1p(y / r) with sp(z) is log1p(g / (r + y)), also far from the mean (for
    # r << y, sp(z) and log1p(y / r) are both about log(y / r) and cancel)
    usable = (r > 0) & (r < 1e290) & (y > 0) & np.isfinite(g_hi) & (np.abs(g_hi) < 1e290)
    # elsewhere sp(z) - (psi(r + y) - psi(r)), which is sp(z) itself for y = 0 (and for the
    # normalizer's constant 0 at r + y = 0)
    rest = ~usable & (y != 0)
    if rest.any():
        g_r[rest] -= _digamma_difference(r[rest], y[rest])
    if not usable.any():
        return g_r
    every = usable.all()  # then no gathering
    hi, lo, yn, rn, zn = (v if every else v[usable] for v in (g_hi, g_lo, y, r, z))
    if steps is not None and not every:
        steps = steps[usable]
    a = (hi + lo) / (rn + yn)
    # log1p(a) = log((r + r e^z) / (r + y)), from the ratio below a = -1/2 (log1p of an a
    # near -1 would lose the digits of 1 + a)
    log_ratio = np.log1p(a)
    low = np.flatnonzero(a < -0.5)
    if low.size:
        rl = rn[low]
        log_ratio[low] = np.log((rl + rl * np.exp(np.minimum(zn[low], 710.0))) / (rl + yn[low]))
    # each element by its own form: the series for r >= 10, the positive terms below
    series = np.empty_like(a)
    big = rn >= _STIRLING_MIN
    for mask, large in ((big, True), (~big, False)):
        part = _part(mask)
        if not series[part].size:
            continue
        rp, yp, lp = rn[part], yn[part], log_ratio[part]
        series[part] = (
            _count_slope_series(a[part], lp, hi[part], lo[part], rp, yp)
            if large
            else lp - _digamma_rest(rp, yp, None if steps is None else steps[part])
        )
    if every:
        return series
    g_r[usable] = series
    return g_r


def _count_slope_series(a, log_ratio, hi, lo, r, y):
    """d/dr for r >= 10 from ``a = g / (r + y)`` (``g = hi + lo``) and ``log_ratio = log1p(a)``.

    log1p(a) - y / (2 r (r + y)) = log1p_minus(a) + (2 r g - y) / (2 r (r + y)): the two
    halves cancel where d/dr vanishes (|a| <= 1/2), so there 2 r g - y is formed by Dekker's
    product; then the digamma series' corrections.
    """
    head = log_ratio - y / (2 * r * (r + y))
    close = np.flatnonzero(np.abs(a) <= 0.5)  # the careful form only where it is used
    if close.size:
        rc, yc = r[close], y[close]
        p, p_err = two_prod(2 * rc, hi[close])
        numerator = (p - yc) + (p_err + 2 * rc * lo[close])
        head[close] = log1p_minus(a[close]) + numerator / (2 * rc * (rc + yc))
    return head + (_digamma_correction(r + y) - _digamma_correction(r))


def _digamma_rest(r, y, steps=None):
    """psi(r + y) - psi(r) - log1p(y / r) for 0 < r < 10 and counts y >= 1, as positive terms.

    With h(x) = psi(x) - log x (negative), the recurrence psi(x + 1) = psi(x) + 1/x gives
    h(x + 1) - h(x) = 1/x - log1p(1/x) > 0 (:func:`_step_sums`), and above 10 the series
    h(x) = -1/(2x) - corr'(x). So h(r + y) - h(r) is a sum of positive terms: the steps from r
    to r + min(y, m), m = ceil(10 - r), then (y - m) / (2 (r + m)(r + y)) + corr'(r + m) -
    corr'(r + y). SciPy's digamma(r + y) - digamma(r) - log1p(y / r) cancels (40 ULP at r = 9).
    ``steps``: the sums of the steps if already known (per element).
    """
    r = np.where(r < _STIRLING_MIN, r, 1.0)
    m = np.ceil(_STIRLING_MIN - r)
    if steps is None:
        steps = _step_sums(r, None, np.minimum(m, y))[1]
    out = np.array(steps, dtype=np.float64)
    long = np.flatnonzero(y > m)  # the tail only where it is not 0
    if long.size:
        rl, yl, ml = r[long], y[long], m[long]
        rm = rl + ml
        out[long] += (yl - ml) / (2 * rm * (rl + yl)) + (
            _digamma_correction(rm) - _digamma_correction(rl + yl)
        )
    return out


def _digamma_difference(r, y):
    """psi(r + y) - psi(r) for r > 0, y >= 0; for r >= 10 from the series, without cancellation."""
    direct = digamma(r + y) - digamma(r)
    big = r >= _STIRLING_MIN
    rb = np.where(big, r, _STIRLING_MIN)
    yb = np.where(big, y, 0.0)
    series = (
        np.log1p(yb / rb)
        + yb / (2 * rb * (rb + yb))
        - (_digamma_correction(rb + yb) - _digamma_correction(rb))
    )
    return np.where(big, series, direct)


def _nb_args(input, target, total_count, reduction):
    """The output dtype and the checked arguments, each in its own floating dtype (every
    block is widened to float64 where it is used)."""
    check_reduction(reduction)
    names = {"input": input, "target": target, "total_count": total_count}
    out = result_dtype(*names.values())
    z, y, r = (as_float_array(value, name) for name, value in names.items())
    check_same_shape(z, y, "input", "target")
    check_scale_shape(r, z.shape, "total_count")
    _check_counts(y, integer=True)
    _check_positive(r, "total_count", allow_zero=True)
    return out, z, y, r, r.shape


def negative_binomial_nll_loss(input, target, total_count, reduction="mean"):
    r"""Negative log-likelihood of a negative binomial count, with logits.

    With :math:`r` = ``total_count``, :math:`z` = ``input`` (the logit of the probability
    :math:`p = \sigma(z)`) and :math:`\operatorname{sp}(z) = \log(1 + e^z)`:

    .. math::

        \ell(z, y, r) = r \operatorname{sp}(z) + y \operatorname{sp}(-z)
        + \log\Gamma(y + 1) + \log\Gamma(r) - \log\Gamma(r + y),

    :math:`-\log\bigl[\binom{y + r - 1}{y} p^y (1 - p)^r\bigr]`. The mean is :math:`r e^z` and
    the variance :math:`\mu + \mu^2 / r`; :math:`r \to \infty` at fixed mean is the Poisson.

    Parameters
    ----------
    input : array_like
        Logits :math:`z`.
    target : array_like
        Counts: non-negative integers, the same shape as ``input``.
    total_count : array_like or float
        :math:`r \ge 0`: ``input``'s shape, a shape that broadcasts to it with as many
        dimensions (some of them 1: ``(..., 1)``, ``(1, C)``), or a scalar (the shapes ``var``
        takes in :func:`gaussian_nll_loss`).
    reduction : {"mean", "sum", "none"}
        How the per-element losses are combined.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-element losses for ``"none"``.

    Raises
    ------
    ValueError
        If ``target`` holds a negative or non-integer entry (the pmf is defined on integers,
        and PyTorch's distribution refuses them too), ``total_count`` is negative, NaN or
        infinite, the shapes do not fit, or ``reduction`` is unknown.

    Notes
    -----
    The semantics of ``torch.distributions.NegativeBinomial(total_count, logits=input)``
    (``-log_prob(target)``), including its convention that the normalizer is 0 where
    :math:`r + y = 0`. The log-gamma difference is computed without the cancellation of two
    large log-gammas; see :cite:t:`hilbe2011negative` and :cite:t:`salinas2020deepar`.
    Accuracy: within 4 ULP (float64; 1 ULP for narrower dtypes), also near the best fit: for
    ``target`` >= 1 the loss is evaluated in its saddle-point form (two deviances that vanish
    at the mode, a logarithm and the Stirling errors, all non-negative: no cancellation, also
    at a million counts); ``target`` 0 gives :math:`r \operatorname{sp}(z)`.

    Examples
    --------
    >>> negative_binomial_nll_loss([0.0], [2], 1.0, reduction="none").round(6).tolist()
    [2.079442]
    """
    return _negative_binomial(input, target, total_count, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input", "total_count")
def negative_binomial_nll_loss_grad(input, target, total_count, reduction="mean"):
    r"""Gradient of :func:`negative_binomial_nll_loss` w.r.t. ``input`` and ``total_count``.

    .. math::

        \frac{\partial \ell}{\partial z} = r\,\sigma(z) - y\,\sigma(-z), \qquad
        \frac{\partial \ell}{\partial r} = \operatorname{sp}(z) + \psi(r) - \psi(r + y).

    A ``total_count`` with dimensions of 1 or a scalar gets the gradient summed over the
    elements it was broadcast to. Divided by the number of elements for ``reduction="mean"``.
    That sum is the sum of the rounded per-element terms: within 4 ULP of the exact sum plus
    4 ULP (of 1, in the result's dtype) of the sum of the terms' magnitudes, measured; where
    the terms cancel (at the optimum of a learned ``total_count``) only that absolute
    accuracy remains.

    Parameters
    ----------
    input, target, total_count, reduction
        As in :func:`negative_binomial_nll_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_input, d_total_count)``, each with its argument's shape and floating dtype.

    Raises
    ------
    ValueError
        As :func:`negative_binomial_nll_loss`.

    Notes
    -----
    Both vanish at the best fit, where their terms nearly cancel. They are formed around
    :math:`r e^z - y` (with :math:`e^z` in double-double where the mean :math:`r e^z` is within
    a factor 8 of :math:`y`, and to about :math:`2^{-116} y` where it is within
    :math:`2^{-48} y` of :math:`y`: at the best fit the difference is :math:`2^{-53} y` or
    less), the ``total_count`` gradient as
    :math:`\log\frac{r + r e^z}{r + y} - (\psi(r + y) - \psi(r) - \log(1 + y/r))` with the
    second part a sum of positive terms: both within 4 ULP (float64; 1 ULP narrower dtypes),
    except next to the zero of the ``total_count`` gradient for :math:`r < 10`, where its two
    parts cancel. Where
    :math:`r + y = 0` the normalizer is the constant 0 (as in PyTorch), so
    :math:`\partial\ell/\partial r = \operatorname{sp}(z)` there, the derivative of the one
    term that remains; PyTorch's autograd gives NaN there. See :cite:t:`hilbe2011negative`.

    Examples
    --------
    >>> g_input, g_count = negative_binomial_nll_loss_grad([0.0], [2], 1.0, reduction="sum")
    >>> g_input.round(6).tolist(), float(g_count.round(6))
    ([-0.5], -0.806853)
    """
    return _negative_binomial(input, target, total_count, reduction, value=False)[1]


def _negative_binomial(input, target, total_count, reduction, *, value=True, grad=True):
    """``(loss or None, (d_input, d_total_count) or None)``, one pass.

    In cache-sized pieces of elements widened to float64 (every step is elementwise; for a
    float64 result on up to two threads, :func:`for_each_block`): only the results are
    full-size arrays, in their own dtypes (a reduced loss is summed piece by piece, the
    blocks' sums added in their order, so the result does not depend on the threads). The
    gradients are scaled by the mean's 1/n per piece and rounded once; a broadcast
    ``total_count``'s is summed to its shape in float64 first.
    """
    out, z, y, r, r_shape = _nb_args(input, target, total_count, reduction)
    shape = z.shape
    zf, yf = z.reshape(-1), y.reshape(-1)
    rf = np.broadcast_to(r, shape).reshape(-1)
    size = zf.size
    reduced = BlockReduction(reduction, size, out) if value else None  # rounded once
    same = r_shape == shape
    g_z = np.empty(size, grad_dtype(input, out)) if grad else None
    g_r = np.empty(size, grad_dtype(total_count, out) if same else np.float64) if grad else None
    # narrow output: about a dozen block-sized float64 buffers live at once, in blocks small
    # enough that they stay below a tenth of the gradient (float32) in a training step, in
    # the calling thread. float64: the careful forms keep up to about thirty block-sized
    # temporaries (at the peak, the double-double exponential of the input slope); on two
    # threads (blocks of about a quarter megabyte, each taken by the next free thread) in
    # pieces of CHUNK // 2 a training step's peak is about 1.5x the gradient, 1.3x on one
    # thread (CHUNK // 4 would make them 1.3x and 1.15x, for about 17 % more time per
    # element: the careful forms take some hundreds of NumPy calls per piece)
    narrow = out.itemsize < 8
    block, step = (_nb_block_narrow, CHUNK // 8) if narrow else (_nb_block, CHUNK // 2)
    kept = reduced if value and reduction == "none" else None
    parts = {}  # the first element of a block: its reduction (blocks on threads)

    def pieces(span: slice) -> None:
        summed = kept if kept is not None or not value else BlockReduction(reduction, size, out)
        for start in range(span.start, span.stop, step):
            b = slice(start, min(start + step, span.stop))
            zb, yb, rb = (a[b].astype(np.float64, copy=False) for a in (zf, yf, rf))
            lb, gzb, grb = block(zb, yb, rb, value, grad)
            if value:
                summed.add(lb, b)
            if grad:  # scaled in place (float64), then rounded once
                for g in (gzb, grb):
                    scale_grad(g, g.shape, reduction, g.dtype, count=size, in_place=True)
                g_z[b], g_r[b] = gzb, grb
        if value and kept is None:
            parts[span.start] = summed

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if narrow or size <= step:
            pieces(slice(0, size))
        else:
            for_each_block(pieces, size, BLOCK_BYTES // CHUNK)  # blocks of CHUNK elements
        if value and kept is None:
            for start in sorted(parts):
                reduced.extend(parts[start])
        loss = reduced.result(shape) if value else None
        grads = None
        if grad:
            g_r = g_r.reshape(shape)
            if not same:
                g_r = scale_grad(g_r, r_shape, "sum", grad_dtype(total_count, out))  # (scaled)
            grads = (g_z.reshape(shape), g_r)
    return loss, grads


def _nb_block(z, y, r, value, grad, narrow=False):
    """``(loss or None, d/dz or None, d/dr or None)`` per element of one block (float64)."""
    saddle = _large_counts(r, y)
    if saddle.any() and not saddle.all():
        # the saddle-point elements and the others (target 0: a few percent of Poisson-like
        # counts) each on their own: the kernels below then take all of their elements (no
        # gathering and scattering of a part in each of them)
        parts = np.flatnonzero(saddle), np.flatnonzero(~saddle)
        results = [_nb_block(z[i], y[i], r[i], value, grad, narrow) for i in parts]
        merged = []
        for pair in zip(*results, strict=True):
            out = None
            if pair[0] is not None:
                out = np.empty(z.shape)
                for i, values in zip(parts, pair, strict=True):
                    out[i] = values
            merged.append(out)
        return tuple(merged)
    (sp, _), sigmoids = logistic_pairs(z, softpluses=(True, False))  # one exp for all three
    g_z, near, gap, mean = _nb_input_slope(z, y, r, narrow=narrow, sigmoids=sigmoids)
    del sigmoids
    loss = g_r = None
    steps = [None, None]
    if saddle.all():
        # below r = 10 the loss's Stirling steps (y of them, used up to y = 10) and the
        # gradient's digamma steps (as many or fewer) are taken at the same points r + k: one
        # series per step for both. The same steps are walked whatever is asked for, so that
        # each sum is the same in every call (the series' length depends on the elements
        # stepping together). Elsewhere unused zeros.
        low = _part(r < _STIRLING_MIN)
        rl, yl = r[low], y[low]
        stirling = np.minimum(yl, _STIRLING_MIN)
        digamma = np.minimum(np.ceil(_STIRLING_MIN - rl), yl) if grad else None
        for i, sums in enumerate(_step_sums(rl, stirling, digamma, wanted=(value, grad))):
            if sums is not None:
                steps[i] = sums if isinstance(low, slice) else np.zeros(z.shape)
                steps[i][low] = sums
    if grad:  # first: its inputs are dropped before the loss's temporaries are made
        g_r = _nb_count_slope(z, y, r, sp, near, gap, mean, steps[1])
    del near, gap, mean
    if value:
        loss = np.empty(z.shape)
        rest = ~saddle  # target 0 (r sp(z)) and total_count 0: the generic form
        if rest.any():
            zr, yr, rr = z[rest], y[rest], r[rest]
            loss[rest] = times(rr, sp[rest]) + times(yr, softplus(-zr)) + _nb_log_normalizer(rr, yr)
        if saddle.any():
            part = _part(saddle)
            loss[part] = _nb_nll_saddle(z[part], g_z[part], y[part], r[part], sp[part], steps[0])
    return loss, g_z, g_r


# For float16 and float32 output the float64 results need only a relative accuracy of 2^-30
# (1/64 of a float32 ULP, so that the one rounding stays within 1 ULP). The textbook sums
# reach it wherever their terms do not cancel too much: each term is within a few float64
# ULP of max(1, |term|) (a product, SciPy's gammaln and digamma, the softplus), so a sum
# whose terms' magnitudes (plus 1) add up to S is within c 2^-53 S of the exact value, with
# c < 16 for the five terms and four roundings; where S <= 2^16 |result| that is below
# 2^-33 of the result (a margin of 2^3 on c). The other elements (large counts or
# total_counts near the mode, the special values: S not finite) take the careful forms.
# The input slope r sigma(z) - y sigma(-z) has two terms within 2 ULP each: where it is
# above 2^-19 of y sigma(-z) (the mean r e^z not within about 2^-20 of y) it is within
# 2^-31 of itself; the others take the double-double form.
_NARROW_CANCELLATION = 2.0**16


# log y! for the counts below 1024, SciPy's own gammaln(y + 1) (the same numbers, looked up)
_LOG_FACTORIALS = gammaln(np.arange(1.0, 1025.0))


def _log_factorial(y, out):
    """``out = gammaln(y + 1)`` for float64 counts ``y``, from the table below 1024."""
    top = len(_LOG_FACTORIALS) - 1
    np.take(_LOG_FACTORIALS, np.fmin(y, top).astype(np.intp), out=out)  # NaN: the last entry
    big = np.flatnonzero(y >= len(_LOG_FACTORIALS))
    if big.size:
        out[big] = gammaln(y[big] + 1)


def _add_difference(total, scale, lo, hi, buf):
    """``total += lo - hi`` (exactly ``total`` where ``lo == hi``) and
    ``scale += |lo| + |hi| + 1``, in place: the indices where ``scale`` exceeds
    ``_NARROW_CANCELLATION |total|`` or is not a number (``buf``: a buffer, overwritten)."""
    np.abs(lo, out=buf)
    scale += buf
    np.abs(hi, out=buf)
    scale += buf
    scale += 1
    lo -= hi
    total += lo
    np.abs(total, out=buf)
    buf *= _NARROW_CANCELLATION
    return np.flatnonzero(~(scale <= buf))


def _nb_block_narrow(z, y, r, value, grad):
    """:func:`_nb_block` for float16/float32 output: the textbook sums in float64, and the
    careful forms only on the elements where those cancel beyond ``_NARROW_CANCELLATION``.

    The loss and each gradient pick their elements from their own terms alone, so a value
    does not depend on which of the others were asked for. Eight block-sized buffers, used
    in place (products with a zero coefficient and an infinite factor give NaN: the careful
    forms redo those).
    """
    e, sp, a, b, c, d = (np.empty(z.shape) for _ in range(6))
    _exp_minus_abs(z, e)
    np.log1p(e, out=a)
    np.maximum(z, 0, out=sp)
    sp += a  # softplus(z)
    loss = g_z = g_r = None
    if value:
        loss = np.negative(z)
        np.maximum(loss, 0, out=loss)
        loss += a
        loss *= y  # y softplus(-z)
        np.multiply(r, sp, out=b)
        scale = np.add(loss, b)
        loss += b
        _log_factorial(y, b)  # 0 for y = 0, so that the loss is r sp(z) there
        loss += b
        scale += b
        gammaln(r, out=b)
        np.add(r, y, out=c)
        gammaln(c, out=c)
        redo = _add_difference(loss, scale, b, c, a)
        if redo.size:
            loss[redo] = _nb_block(z[redo], y[redo], r[redo], True, False, True)[0]
    if grad:
        np.add(e, 1, out=c)
        _sigmoid_from(z, e, c, a)
        g_z = np.multiply(r, a, out=a)
        _sigmoid_from(z, e, c, b, negate=True)
        b *= y
        g_z -= b
        np.abs(g_z, out=c)
        b *= 2.0**-19
        redo = np.flatnonzero(~(c > b))
        if redo.size:
            g_z[redo] = _nb_input_slope(z[redo], y[redo], r[redo])[0]
        digamma(r, out=b)
        np.add(r, y, out=c)
        digamma(c, out=c)
        np.copyto(e, sp)  # the scale, from sp(z)
        g_r = sp
        redo = _add_difference(g_r, e, b, c, d)  # sp(z) itself for y = 0
        if redo.size:
            g_r[redo] = _nb_block(z[redo], y[redo], r[redo], False, True, True)[2]
    return loss, g_z, g_r


@gradients_in_argument_dtypes("input", "total_count")
def negative_binomial_nll_loss_value_and_grad(input, target, total_count, reduction="mean"):
    r"""``negative_binomial_nll_loss`` and ``negative_binomial_nll_loss_grad`` in one pass.

    The checked arguments and the intermediates both need are computed once.

    Parameters
    ----------
    input, target, total_count, reduction
        Same as :func:`negative_binomial_nll_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_input, d_total_count))``: bit for bit ``negative_binomial_nll_loss(...)``
        and ``negative_binomial_nll_loss_grad(...)``.

    Raises
    ------
    ValueError
        As :func:`negative_binomial_nll_loss`.

    Examples
    --------
    >>> loss, (g_input, g_count) = negative_binomial_nll_loss_value_and_grad([0.0], [2], 1.0)
    >>> bool(loss == negative_binomial_nll_loss([0.0], [2], 1.0)), g_input.tolist()
    (True, [-0.5])
    """
    return _negative_binomial(input, target, total_count, reduction)


# ---------------------------------------------------------------- Student-t

# f(a) = log Gamma(a) - log Gamma(a + 1/2) + log(a)/2, a = df/2, so that the Student-t's
# normalizer is C(df) = log(2)/2 + f(a). Its asymptotic series in 1/a has the coefficients
# B_2m (2 - 2^(1 - 2m)) / (2m (2m - 1)) of 1/a^(2m - 1) (log Gamma(a + h)'s series with the
# Bernoulli polynomials, B_k(0) - B_k(1/2); the tests recompute them with SymPy). It is used
# from a = 10 on, where the first eleven terms leave a relative error below 1e-17. Below, the
# exact recurrences f(a) = f(a + 1) + log1p(1 / (4a(a + 1))) / 2 and
# f'(a) = f'(a + 1) - 1 / (4a(a + 1)(a + 1/2)) (from Gamma(a + 1) = a Gamma(a); all their terms
# have one sign, so nothing cancels) carry a up to 10.


def _bernoulli_numbers(count):
    """B_0 .. B_{count - 1} as fractions (sum_j C(m + 1, j) B_j = 0)."""
    b = [Fraction(1)]
    for m in range(1, count):
        b.append(-sum(math.comb(m + 1, j) * b[j] for j in range(m)) / (m + 1))
    return b


_BERNOULLI_EXACT = _bernoulli_numbers(45)
_T_SERIES_LONG = [
    _BERNOULLI_EXACT[2 * m] * (2 - Fraction(2) ** (1 - 2 * m)) / (2 * m * (2 * m - 1))
    for m in range(1, 23)
]
_T_SERIES_EXACT = _T_SERIES_LONG[:11]
_T_SERIES = tuple(float(c) for c in _T_SERIES_EXACT)
_T_SERIES_MIN_A = 10.0


def _recurrence_slices(a):
    """The elements of the flat ``a`` that the recurrences carry up to _T_SERIES_MIN_A:
    ``(idx, starts)``, their indices sorted by their number of steps, so that the ones still
    stepping at step k are ``idx[starts[k]:]`` (a slice: each element sees the same
    operations as one at a time, without a gather and a scatter per step)."""
    idx = np.flatnonzero(a < _T_SERIES_MIN_A)
    if not idx.size:
        return idx, []
    steps = np.zeros(idx.size, dtype=np.int8)
    chain = a[idx]
    for _ in range(int(_T_SERIES_MIN_A)):
        steps += chain < _T_SERIES_MIN_A  # stays false once true: chain only grows
        chain += 1
    order, starts = _stepping_order(steps, int(_T_SERIES_MIN_A))
    return idx[order], starts


def _student_t_log_norm(df, slope=True):
    """C(df) = log(df)/2 + log Gamma(df/2) - log Gamma((df + 1)/2) and its derivative.

    The Student-t NLL is log s + log(pi)/2 + C(df) + (df + 1)/2 log1p(u^2/df). As df -> oo,
    C(df) -> log(2)/2 (the Gaussian's constant) while each log-gamma grows like df log df:
    for df = 1e6 the direct difference of two numbers of size 6e6 keeps only about 9 of the
    16 digits of 0.3466..., and the digamma difference of the derivative (about 1/(4 df^2))
    about 3 (none at df = 1e9). Hence the series and recurrences above, a few ULP for every
    df > 0. Returns (C, dC/ddf); df = +inf gives the Gaussian limits (log(2)/2, 0).
    ``slope=False``: (C, None), for a caller that has C'(df) from its double-double.
    """
    a = np.asarray(np.where(np.isinf(df), 1e300, df / 2))
    f_acc = np.zeros_like(a)
    d_acc = np.zeros_like(a)
    # the recurrence on the elements below _T_SERIES_MIN_A only: each one's number of steps
    # first (the same additions), then the elements sorted by it, so that the ones still
    # stepping are a slice (each element sees the same operations as one at a time)
    flat_a, flat_f, flat_d = a.reshape(-1), f_acc.reshape(-1), d_acc.reshape(-1)
    idx, starts = _recurrence_slices(flat_a)
    if idx.size:
        al = flat_a[idx]
        fl, dl = np.zeros_like(al), np.zeros_like(al)
        for start in starts:
            a_s = al[start:]
            t = 4 * a_s * (a_s + 1)
            fl[start:] += 0.5 * np.log1p(1 / t)
            if slope:
                dl[start:] -= 1 / (t * (a_s + 0.5))
            a_s += 1
        flat_a[idx], flat_f[idx], flat_d[idx] = al, fl, dl
    # the series by Horner's rule in cache-sized blocks, in place
    w = 1 / (a * a)
    f, fprime = np.zeros_like(a), np.zeros_like(a)
    flat_w, flat_fs, flat_fp = w.reshape(-1), f.reshape(-1), fprime.reshape(-1)
    for b in chunks(a.size):
        wb, fb, pb = flat_w[b], flat_fs[b], flat_fp[b]
        for k in range(len(_T_SERIES), 0, -1):
            c = _T_SERIES[k - 1]
            fb *= wb
            fb += c
            if slope:
                pb *= wb
                pb -= (2 * k - 1) * c
        fb /= flat_a[b]
        fb += flat_f[b]
        if slope:
            pb *= wb
            pb += flat_d[b]  # d f / d a
    return _HALF_LOG_2 + f, 0.5 * fprime if slope else None


# The df gradient where its terms cancel (see _student_t_df_slope_careful), in double-double.
# C'(df) = f'(a) / 2 by the derivative of the series of f above: from a = 10 on, 22 terms
# leave a relative error below 2^-76 (the terms decrease until m = 30 there); the first four
# in double-double, the rest, below 2^-23 of the sum, in float64. Below a = 10, the
# recurrence of f' (at most ten steps, each term to about 2^-100).
# -log(1 - p) - p = p^2 / (2 - p) + 2 z^3 (1/3 + z^2 / 5 + ...) for p <= 1/2 with
# z = p / (2 - p) <= 1/3 (2 atanh z = -log(1 - p); all terms positive): 24 terms
# (z^48 / 51 < 2^-80 of the first), the first six in double-double, the rest (below 2^-21
# of the sum) in float64.
_DF_SLOPE_SERIES = [-(2 * m - 1) * c for m, c in enumerate(_T_SERIES_LONG, 1)]
_DF_SLOPE_HEAD = [dd_constant(c) for c in _DF_SLOPE_SERIES[:4]]
_DF_SLOPE_TAIL = [float(c) for c in _DF_SLOPE_SERIES[4:]]
_ATANH_SERIES = [Fraction(1, 2 * k + 1) for k in range(1, 25)]
_ATANH_HEAD = [dd_constant(c) for c in _ATANH_SERIES[:6]]
_ATANH_TAIL = [float(c) for c in _ATANH_SERIES[6:]]


def _student_t_norm_slope_dd(nu):
    """C'(df) = f'(df / 2) / 2 as a double-double (float64 ``nu`` in (0, 2^200]): to about
    2^-74 of it (the recurrence's terms all have one sign)."""
    a_hi, a_lo = nu / 2, np.zeros_like(nu)
    acc_hi, acc_lo = np.zeros_like(nu), np.zeros_like(nu)
    idx, starts = _recurrence_slices(a_hi)
    if idx.size:
        # Unnormalized double-doubles (|lo| a few ULP of hi, which the products and the
        # TwoSums accept): a + 1 and a + 1/2 by TwoSum, the products by Dekker's with the
        # cross terms (lo * lo below 2^-100 of them), the reciprocal from its remainder
        # (1 - q d exact by Sterbenz), the sum by TwoSum with its errors gathered apart:
        # each term to about 2^-100 of itself, the sum (of terms of one sign) likewise.
        sa_hi, sa_lo = a_hi[idx], np.zeros(idx.size)
        s_hi, s_lo = np.zeros(idx.size), np.zeros(idx.size)
        for k in starts:
            ah, al = sa_hi[k:], sa_lo[k:]
            a1_hi, a1_lo = two_sum(ah, 1.0)
            a1_lo += al
            h_hi, h_lo = two_sum(ah, 0.5)
            h_lo += al
            p_hi, p_lo = two_prod(ah, a1_hi)
            p_lo += ah * a1_lo + al * a1_hi  # a (a + 1)
            d_hi, d_lo = two_prod(p_hi, h_hi)
            d_lo += p_hi * h_lo + p_lo * h_hi  # a (a + 1) (a + 1/2)
            t_hi = 0.25 / d_hi  # 1/(4a(a + 1)(a + 1/2))
            q, q_err = two_prod(4 * t_hi, d_hi)
            t_lo = (((1 - q) - q_err) - 4 * t_hi * d_lo) * t_hi
            sk_hi, e = two_sum(s_hi[k:], -t_hi)
            s_hi[k:] = sk_hi
            s_lo[k:] += e - t_lo
            sa_hi[k:], sa_lo[k:] = a1_hi, a1_lo
        s_hi, s_lo = _fast_two_sum(s_hi, s_lo)
        a_hi[idx], a_lo[idx], acc_hi[idx], acc_lo[idx] = sa_hi, sa_lo, s_hi, s_lo
    w = dd_div(1.0, 0.0, *dd_mul(a_hi, a_lo, a_hi, a_lo))
    series = dd_horner(_DF_SLOPE_HEAD, *w, tail=horner(_DF_SLOPE_TAIL, w[0]))
    f_hi, f_lo = dd_add(*dd_mul(*series, *w), acc_hi, acc_lo)
    return 0.5 * f_hi, 0.5 * f_lo


def _student_t_norm_slope(nu, dc):
    """``([C', hi, lo], inside)``: C'(df) rounded from its double-double ``(hi, lo)`` where df
    is inside [2^-200, 2^200] (the domain of the careful form; within 1/2 ULP), else the
    float64 ``dc``."""
    inside = (nu >= 2.0**-200) & (nu <= 2.0**200)
    hi, lo = _student_t_norm_slope_dd(np.where(inside, nu, 1.0))
    return [np.where(inside, hi + lo, dc), hi, lo], inside


def _minus_log1m_minus(p_hi, p_lo, w_hi, w_lo):
    """``-log(1 - p) - p`` as a double-double from ``p`` and ``w = 1 - p`` (double-doubles):
    the atanh series up to p = 1/2 (where the two cancel), beyond the logarithm of ``w``
    (at most a factor 6 cancels)."""
    out_hi, out_lo = np.empty_like(p_hi), np.empty_like(p_hi)
    small = p_hi <= 0.5
    i = np.flatnonzero(small)
    if i.size:
        ph, pl = p_hi[i], p_lo[i]
        m = dd_add(2.0, 0.0, -ph, -pl)
        z = dd_div(ph, pl, *m)
        z2 = dd_mul(*z, *z)
        v = dd_horner(_ATANH_HEAD, *z2, tail=horner(_ATANH_TAIL, z2[0]))
        tail = dd_mul(*dd_mul(*z, *z2), *v)
        first = dd_div(*dd_mul(ph, pl, ph, pl), *m)
        out_hi[i], out_lo[i] = dd_add(*first, 2 * tail[0], 2 * tail[1])
    i = np.flatnonzero(~small)
    if i.size:
        log_w = dd_log(w_hi[i], w_lo[i])
        out_hi[i], out_lo[i] = dd_add(-log_w[0], -log_w[1], -p_hi[i], -p_lo[i])
    return out_hi, out_lo


def _student_t_df_slope_careful(x, y, s, nu, norm_slope=None):
    """d/ddf of the Student-t NLL (float64 arrays, finite ``nu`` in [2^-200, 2^200] and
    ``|x - y| <= 2^200 s``) in double-double, rounded once. ``norm_slope``: C'(nu) as a
    double-double ``(hi, lo)`` if already known (from :func:`_student_t_norm_slope_dd`).

    ``C'(df) + (-log(1 - p) - p) / 2 - p / (2 df)`` with ``p = r^2 / (df s^2 + r^2)`` and
    ``1 - p = df s^2 / (df s^2 + r^2)`` from the exact residual ``r`` (TwoSum) and exact
    products (``s`` scaled into [1/2, 1) by a power of 2, ``r`` with it), each term to
    about 2^-72 of itself: within 4 ULP of the result wherever the terms cancel to no less
    than 2^-17 of their sum of magnitudes, and within 2^-70 of that sum below.
    """
    # each intermediate dropped once used: the callers pass gathered arrays, and the peak
    # of this function is that of a training step
    r_hi, r_lo = two_sum(x, -y)
    del x, y
    _, e = np.frexp(s)
    s, r_hi, r_lo = np.ldexp(s, -e), np.ldexp(r_hi, -e), np.ldexp(r_lo, -e)
    del e
    r2 = dd_add(*two_prod(r_hi, r_hi), 2 * r_hi * r_lo, 0.0)  # r_lo^2 is below 2^-104 r^2
    del r_hi, r_lo
    scaled = dd_mul(nu, 0.0, *two_prod(s, s))
    del s
    den = dd_add(*scaled, *r2)
    p_hi, p_lo = dd_div(*r2, *den)
    del r2
    w = dd_div(*scaled, *den)
    del scaled, den
    two_b = _minus_log1m_minus(p_hi, p_lo, *w)
    del w
    d_hi, d_lo = dd_div(p_hi, p_lo, nu, 0.0)  # p / df
    del p_hi, p_lo
    body = dd_add(0.5 * two_b[0], 0.5 * two_b[1], -0.5 * d_hi, -0.5 * d_lo)
    del two_b, d_hi, d_lo
    if norm_slope is None:
        norm_slope = _student_t_norm_slope_dd(nu)
    g_hi, g_lo = dd_add(*norm_slope, *body)
    return g_hi + g_lo


def _log1p_square(u, r, s, df):
    """log1p(u^2 / df) for u = r / s, without overflow of u^2 or of u itself.

    Only where u^2 / df overflows (or u itself: r = 1e300, s = 1e-10, the loss is finite)
    is it 2 log w + log1p(1 / w^2) with w = |u| / sqrt(df) and log |u| = log |r| - log s.
    """
    out = np.log1p(u * u / df)
    far = np.flatnonzero(np.isinf(out))
    if far.size:
        r, s, df = (take_broadcast(a, out.shape, far) for a in (r, s, df))
        log_w = np.log(np.abs(r)) - np.log(s) - 0.5 * np.log(df)
        out[far] = 2 * log_w + np.log1p(df * (s / r) ** 2)
    return out


def _log1p_minus_ratio(p, log1p_q):
    """log1p(q) - p with p = q / (1 + q), i.e. -log(1 - p) - p, for p in [0, 1].

    Below p = 1/2 the two cancel (the result is about p^2 / 2): -log(1 - p) = 2 atanh(z)
    with z = p / (2 - p) <= 1/3, so the result is p z + 2 z^3 (1/3 + z^2/5 + ...), terms of
    one sign (about 18 of the series for z^2 <= 1/9, :func:`atanh_series`). Above, where at
    most two bits cancel, ``log1p_q`` (given, since 1 - p loses q when q is huge) minus p.
    """
    small = p < 0.5
    ps = np.where(small, p, 0.0)
    z = ps / (2 - ps)
    w = z * z
    out = atanh_series(w)
    out *= w
    out *= z
    out *= 2
    ps *= z  # p^2 / (2 - p)
    out += ps
    return np.where(small, out, log1p_q - p)


def _student_t_args(input, target, scale, df, reduction):
    """The output dtype and the four arguments checked, each in its own floating dtype (each
    block is widened to float64 where it is used)."""
    check_reduction(reduction)
    names = {"input": input, "target": target, "scale": scale, "df": df}
    x, y, s, nu = (as_float_array(v, n) for n, v in names.items())
    out = result_dtype(*names.values())
    check_same_shape(x, y, "input", "target")
    check_scale_shape(s, x.shape, "scale")
    check_scale_shape(nu, x.shape, "df")
    _check_positive(s, "scale")
    _check_positive(nu, "df", allow_inf=True)
    return out, x, y, s, nu


def student_t_nll_loss(input, target, scale, df, reduction="mean"):
    r"""Negative log-likelihood of a Student-t with predicted location, scale and df.

    With :math:`u = (x - y)/s`:

    .. math::

        \ell(x, y, s, \nu) = \log s + \tfrac12 \log(\nu\pi)
        + \log\Gamma\!\left(\tfrac{\nu}{2}\right) - \log\Gamma\!\left(\tfrac{\nu + 1}{2}\right)
        + \frac{\nu + 1}{2} \log\!\left(1 + \frac{u^2}{\nu}\right).

    ``df`` = :math:`+\infty` is the Gaussian NLL :math:`\log s + \tfrac12\log 2\pi + u^2/2`.

    Parameters
    ----------
    input : array_like
        Locations :math:`x`.
    target : array_like
        Targets :math:`y`, the same shape as ``input``.
    scale : array_like or float
        Scales :math:`s > 0`: ``input``'s shape, a shape that broadcasts to it with as many
        dimensions (some of them 1: ``(..., 1)``, ``(1, C)``), or a scalar (the shapes ``var``
        takes in :func:`gaussian_nll_loss`).
    df : array_like or float
        Degrees of freedom :math:`\nu > 0` (``inf`` allowed), shapes as ``scale``.
    reduction : {"mean", "sum", "none"}
        How the per-element losses are combined.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-element losses for ``"none"``.

    Raises
    ------
    ValueError
        If ``scale`` is not positive and finite, ``df`` is not positive, the shapes do not
        fit, or ``reduction`` is unknown.

    Notes
    -----
    The semantics of ``torch.distributions.StudentT(df, loc=input, scale=scale)``
    (``-log_prob(target)``). Stable where the textbook formula is not: the log-gamma
    difference for large :math:`\nu` (up to 1e6 and beyond) by its asymptotic series,
    :math:`\log(1 + u^2/\nu)` by ``log1p`` for tiny residuals and without squaring huge ones.
    The loss is a sum of terms of both signs (a density above 1 has a negative NLL): where
    they nearly cancel (a loss near 0) the error is a few ULP of the largest term, not of
    the result. See :cite:t:`lange1989robust` and :cite:t:`salinas2020deepar`.

    Examples
    --------
    >>> float(student_t_nll_loss(0.0, 0.0, 1.0, 1.0).round(6))  # log(pi), the Cauchy at 0
    1.14473
    """
    return _student_t(input, target, scale, df, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input", "scale", "df")
def student_t_nll_loss_grad(input, target, scale, df, reduction="mean"):
    r"""Gradient of :func:`student_t_nll_loss` w.r.t. ``input``, ``scale`` and ``df``.

    With :math:`u = (x - y)/s`:

    .. math::

        \frac{\partial \ell}{\partial x} = \frac{(\nu + 1)\,u}{s(\nu + u^2)}, \qquad
        \frac{\partial \ell}{\partial s} = \frac{\nu (1 - u^2)}{s(\nu + u^2)},

        \frac{\partial \ell}{\partial \nu} = \frac{1}{2\nu}
        + \tfrac12\psi\!\left(\tfrac{\nu}{2}\right) - \tfrac12\psi\!\left(\tfrac{\nu+1}{2}\right)
        + \tfrac12 \log\!\left(1 + \frac{u^2}{\nu}\right) - \frac{(\nu + 1) u^2}{2\nu(\nu + u^2)}.

    The input gradient is bounded and redescending (0 as :math:`|u| \to \infty`). ``scale`` and
    ``df`` with dimensions of 1 or scalars get the gradient summed over the elements they were
    broadcast to. Divided by the number of elements for ``reduction="mean"``. A broadcast
    ``scale``'s sum is formed from each element's term in double-double (float64; within 4
    ULP also at the scale's optimum, where the terms cancel). A broadcast ``df``'s gradient
    is the sum of the rounded per-element terms: within 4 ULP of the exact sum plus 4 ULP
    (float64, of 1) of the sum of the terms' magnitudes, measured; where the terms cancel
    (at the df's optimum) only that absolute accuracy remains.

    Parameters
    ----------
    input, target, scale, df, reduction
        As in :func:`student_t_nll_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_input, d_scale, d_df)``, each with its argument's shape and floating dtype.

    Raises
    ------
    ValueError
        As :func:`student_t_nll_loss`.

    Notes
    -----
    Both halves of the ``df`` derivative vanish like :math:`1/\nu^2` while their terms are of
    order :math:`1/\nu`; each is computed without that cancellation (a series for the
    digamma part, :math:`-\log(1-p) - p` with :math:`p = u^2/(\nu + u^2)` for the rest), and
    where the halves cancel each other (the derivative changes sign as :math:`u^2` grows) or
    the rounding of :math:`u` and :math:`p` could cost more than 3.5 ULP (a first-order
    bound of the float64 sum's error), the sum is formed in double-double from the exact
    residual: within 4 ULP wherever the terms cancel to no less than
    :math:`2^{-17}` of their magnitudes, within :math:`2^{-70}` of them below; beyond
    ``df = 2^200`` with :math:`u^2 \le 2^{-80}\nu` it is
    :math:`((u^2 - 1)^2 - 2) / (4\nu^2)` in double-double (its terms are subnormal beyond
    ``df = 2^511``). Elsewhere (:math:`|u| > 2^{200}` or :math:`u^2 > 2^{-80}\nu` with
    :math:`\nu > 2^{200}`) the float64 sum: within 10 ULP plus 2 ULP of the terms' largest
    magnitude (measured on 36000 arguments from 1e-300 to 1e300). The input and scale
    gradients of a scale, df or :math:`|u|` beyond :math:`2^{\pm 200}` are formed from
    mantissas and exponents (no overflow or underflow before the result). At
    ``df = inf`` the gradients are the Gaussian ones and the ``df`` gradient is 0. The scale
    gradient vanishes at :math:`|u| = 1`: there (:math:`1/2 \le |u| \le 2`) it is
    :math:`\nu (s^2 - r^2) / (s (\nu s^2 + r^2))` with :math:`s^2 - r^2` from exact products
    and the exact residual, within 4 ULP (float64; narrower dtypes 1 ULP). See
    :cite:t:`lange1989robust`.

    Examples
    --------
    >>> gx, gs, gdf = student_t_nll_loss_grad([1.0], [0.0], 1.0, 1.0, reduction="sum")
    >>> gx.tolist(), float(gs), float(gdf.round(6))
    ([1.0], 0.0, -0.346574)
    """
    return _student_t(input, target, scale, df, reduction, value=False)[1]


# Elements per block with the gradient: its kernels keep about twenty block-sized float64
# temporaries alive (a block of CHUNK would cost about 6 MB beyond the results, a block of
# CHUNK // 8 under 1 MB, for about 10 % more time). The loss alone takes blocks of CHUNK.
_STUDENT_T_GRAD_BLOCK = CHUNK // 8
# Elements per group of gradient blocks whose double-double work (C'(df) per element in
# float64, the careful df gradient) is done once for the group: those kernels take about a
# hundred NumPy calls per recurrence step on a few thousand elements, so that their time
# was mostly the calls' overhead; on twice the elements it is about a third less, and the
# temporaries of the cheap part are gone by then (peak memory of a training step about
# 1.09x the gradient, was 1.08x). The careful form takes a group's elements in one call
# (at most _STUDENT_T_REDO_BLOCK: its intermediates are the largest).
_STUDENT_T_DD_BLOCK = 2 * _STUDENT_T_GRAD_BLOCK
_STUDENT_T_REDO_BLOCK = _STUDENT_T_DD_BLOCK


def _student_t(input, target, scale, df, reduction, *, value=True, grad=True):
    """``(loss or None, (d_input, d_scale, d_df) or None)``, one pass.

    In cache-sized blocks widened to float64: a reduced loss is summed block by block, and
    the gradient of an argument of the loss's shape is scaled and rounded into its output
    block by block. A scale or df broadcast to the loss's shape gets its per-element
    derivatives in one float64 array, summed over the broadcast axes at the end.
    """
    out, x, y, s, nu = _student_t_args(input, target, scale, df, reduction)
    shape, size = x.shape, x.size

    def flat(a):  # a flat array of the loss's size, or a 0-d one (one value)
        return a.reshape(()) if a.size == 1 and size != 1 else np.broadcast_to(a, shape).reshape(-1)

    flats = [flat(a) for a in (x, y, s, nu)]
    # C(df), C'(df) and the careful gradient's double-double C'(df) depend on df alone: for
    # a df broadcast to the loss (one learned df, or one per column) computed on df's own
    # shape and broadcast like it, not once per element
    per_df = None
    if nu.size < size:
        nu64 = nu.astype(np.float64).reshape(-1)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            per_df = list(_student_t_log_norm(nu64))
            if grad:
                per_df[1:], _ = _student_t_norm_slope(nu64, per_df[1])
        per_df = [flat(a.reshape(nu.shape)) for a in per_df]
    reduced = BlockReduction(reduction, size, out) if value else None  # rounded once
    grads = None
    if grad:
        # full: the argument has the loss's shape (its gradient is written block by block
        # in its own dtype); else the float64 per-element derivatives, summed at the end
        full = [a.shape == shape for a in (x, s, nu)]
        dtypes = [grad_dtype(v, out) for v in (input, scale, df)]
        grads = [np.empty(size, d if f else np.float64) for f, d in zip(full, dtypes, strict=True)]
        scale_ = reduction_scale(size, reduction, np.float64)
    # narrow: the result is rounded to float32 or float16 (the float64 df gradient needs no
    # double-double C'(df) there); per element: C'(df) in double-double for each group
    narrow = out.itemsize < 8
    per_element = grad and per_df is None and not narrow
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for group in chunks(size, _STUDENT_T_DD_BLOCK if grad else max(size, 1)):
            pre = per_df and [a if a.ndim == 0 else a[group] for a in per_df]
            if per_element:
                nug = flats[3][group].astype(np.float64, copy=False)
                nu_f = np.where(np.isinf(nug), 1.0, nug)
                # C'(df) in float64 only where the double-double does not apply
                outside = not np.all((nu_f >= 2.0**-200) & (nu_f <= 2.0**200))
                c, dc = _student_t_log_norm(nug, slope=outside)
                pre = [c, *_student_t_norm_slope(nu_f, 0.0 if dc is None else dc)[0]]
            redo = []
            for b in chunks(group.stop - group.start, _STUDENT_T_GRAD_BLOCK if grad else CHUNK):
                # b: within the group; at: within the loss
                at = slice(group.start + b.start, group.start + b.stop)
                xb, yb, sb, nub = (
                    (a if a.ndim == 0 else a[at]).astype(np.float64, copy=False) for a in flats
                )
                r = xb - yb
                u = r / sb
                if pre is None:
                    (c, dc), norm_slope = _student_t_log_norm(nub, slope=grad), None
                else:
                    c, dc, *norm_slope = (a if a.ndim == 0 else a[b] for a in pre)
                gauss = np.isinf(nub)
                nu_f = np.where(gauss, 1.0, nub)
                log1p_square = _log1p_square(u, r, sb, nu_f)
                if value:
                    body = np.where(gauss, 0.5 * u * u, (nu_f + 1) / 2 * log1p_square)
                    lb = np.log(sb) + _HALF_LOG_PI + c + body
                    # summed in gradient-sized blocks whatever the block: the same bits
                    step = lb.size if reduction == "none" else _STUDENT_T_GRAD_BLOCK
                    for part in chunks(lb.size, max(1, step)):
                        reduced.add(lb[part], slice(at.start + part.start, at.start + part.stop))
                if grad:
                    *parts, cancels = _student_t_grads(
                        xb, yb, r, u, sb, nu_f, gauss, dc, log1p_square, narrow, norm_slope
                    )
                    for g, part in zip(grads, parts, strict=True):
                        g[at] = np.broadcast_to(part, r.shape) * scale_  # rounded once if full
                    redo.append(cancels + b.start)
            if grad:
                _student_t_redo(grads[2], flats, pre, group, np.concatenate(redo), scale_)
    loss = reduced.result(shape) if value else None
    if grad:
        summed = [
            None if f else sum_to_shape(g.reshape(shape), a.shape)
            for g, f, a in zip(grads, full, (x, s, nu), strict=True)
        ]
        # a broadcast scale: its terms cancel at its optimum (the float64 per-element
        # terms are enough for a narrower result)
        if not full[1] and out == np.float64:
            summed[1] = _student_t_scale_sum(x, y, s, nu, reduction, summed[1])
        grads = tuple(
            g.reshape(shape) if f else np.array(to_dtype(np.asarray(g_sum), d))
            for g, f, g_sum, d in zip(grads, full, summed, dtypes, strict=True)
        )
    return loss, grads


def _student_t_scale_sum(x, y, s, nu, reduction, plain):
    """The gradient of the reduced loss w.r.t. a scale broadcast to the loss's shape (float64,
    of ``s``'s shape), from each element's term in double-double.

    At the scale's optimum the terms ``(s^2 - r^2) / (s (s^2 + r^2 / df))`` cancel to about
    an ULP of their magnitudes, so each rounded term (and the plain sum) lost the result:
    here ``s^2 - r^2`` is formed in exact parts from the exact residual and the exact
    square of ``s`` (:func:`~lossutils._numerics.gap_to_square_parts`), the denominator
    and the quotient in double-double (about ``2^-104`` of each term), and the terms are
    summed as in :func:`~lossutils._reduction.sum_to_shape_parts`, divided once by the
    count of a mean. ``plain`` (the per-element derivatives summed) stays where this form
    does not apply: an infinite or NaN result, a scale, residual or df beyond ``2^±200``.
    """
    if x.size == 0:
        return plain
    x, y = (a.astype(np.float64, copy=False) for a in (x, y))
    sb, nub = (np.broadcast_to(a.astype(np.float64, copy=False), x.shape) for a in (s, nu))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        r, r_err = two_sum(x, y, minus=True)
        s2, s2_err = two_prod(sb, sb)
        gap, lows, tail = gap_to_square_parts(s2, r, r_err)
        num, num_err = two_sum(gap, sum(lows) + tail + s2_err)
        # s (s^2 + r^2 / df); r^2 / df is 0 for an infinite df (the Gaussian limit)
        ratio = dd_mul(r, r_err, r, r_err)
        finite = np.isfinite(nub)
        df = np.where(finite, nub, 1.0)
        ratio = [np.where(finite, a, 0.0) for a in dd_div(*ratio, df, 0.0)]
        den = dd_mul(*dd_add(s2, s2_err, *ratio), sb, 0.0)
        hi, lo = dd_div(num, num_err, *den)
        hi, lo = sum_to_shape_parts(hi, (lo,), None, s.shape)
        count = x.size if reduction == "mean" else 1
        grad = np.asarray(sum(dd_div(hi, lo, np.float64(count), 0.0)), dtype=np.float64)
        big = np.abs(r) > 2.0**200 * sb
        big |= (sb < 2.0**-200) | (sb > 2.0**200) | (nub < 2.0**-200) | ~(np.abs(r) < 2.0**200)
    grad = grad.reshape(s.shape)
    bad = ~np.isfinite(grad) | sum_to_shape(big, s.shape).astype(bool)
    grad[bad] = np.asarray(plain, dtype=np.float64).reshape(s.shape)[bad]
    return grad


# Beyond these bounds on s, df and |u| = |x - y| / s (r = 0 aside) the plain gradients' products
# and quotients can overflow or underflow: s (df + u^2) for s = 1e-282, df = 1e-258 is 0.
_T_RANGE = 2.0**200


def _student_t_far(x, y, s, nu, gauss):
    """(d/dx, d/ds) of the Student-t NLL (float64 arrays, ``nu`` 1 where ``gauss``) from the
    mantissas and exponents (:func:`numpy.frexp`) of r = x - y, s and df, for any finite r, s
    and df: ``(df + 1) u / (s (df + u^2))`` and ``df (1 - u^2) / (s (df + u^2))`` (Gaussian:
    ``u / s``, ``(1 - u^2) / s``) as a product of mantissas, scaled by a power of 2 once at
    the end. The same roundings as the plain forms (``1 - u^2`` cancels near ``|u| = 1``:
    the caller's exact form is used there).
    """
    r = x - y
    over = np.isinf(r)  # |x - y| above the largest float64: its half is finite
    m_r, e_r = np.frexp(np.where(over, 0.5 * x - 0.5 * y, r))
    m_s, e_s = np.frexp(s)
    m_n, e_n = np.frexp(nu)
    m_u, e_u = m_r / m_s, e_r + over - e_s  # u = m_u 2^e_u
    zero = m_r == 0
    m_u2, e_u2 = m_u * m_u, np.where(zero, e_n, 2 * e_u)
    e_d = np.maximum(e_n, e_u2)
    m_d = np.ldexp(m_n, e_n - e_d) + np.ldexp(m_u2, e_u2 - e_d)  # df + u^2 = m_d 2^e_d
    e_1 = np.maximum(0, e_u2)
    m_1 = np.ldexp(1.0, -e_1) - np.ldexp(m_u2, e_u2 - e_1)  # 1 - u^2 = m_1 2^e_1
    m_p, e_p = np.frexp(nu + 1)
    g_x = np.where(
        gauss,
        np.ldexp(m_u / m_s, e_u - e_s),
        np.ldexp(m_p * m_u / (m_s * m_d), e_p + e_u - e_s - e_d),
    )
    g_s = np.where(
        gauss,
        np.ldexp(m_1 / m_s, e_1 - e_s),
        np.ldexp(m_n * m_1 / (m_s * m_d), e_n + e_1 - e_s - e_d),
    )
    return g_x, g_s


def _student_t_grads(x, y, r, u, s, nu_f, gauss, dc, log1p_square, narrow=False, norm_slope=None):
    """Per-element (d/dx, d/ds, d/ddf) of the Student-t NLL (``nu_f``: df, 1 where infinite).

    ``narrow``: the result is rounded to float32 or float16, so the float64 ``1 - u^2`` needs
    the exact residual only within 2^-20 of ``|u| = 1`` (it is within 2^-32 elsewhere).
    ``norm_slope``: C'(df) as a double-double ``(hi, lo)`` broadcastable to the block
    (float64 results: always given, and ``dc`` rounded from it), if known. Also returns the
    flat indices of the elements whose df gradient is to be redone by the careful form
    (:func:`_student_t_redo`, on a group of blocks at once).
    """
    # |u| > 1 works with inv = 1/u = s/r (no overflow of u or u^2), |u| <= 1 with u.
    big = np.abs(r) > s
    inv = np.where(big, s / np.where(big, r, 1.0), 0.0)
    us = np.where(big, 0.0, u)
    inv2 = inv * inv
    # d/dx = (nu + 1) u / (s (nu + u^2)); for |u| > 1: (nu + 1) / (r (1 + nu / u^2))
    g_x = np.where(
        big,
        (nu_f + 1) / (np.where(big, r, 1.0) * (1 + nu_f * inv2)),
        (nu_f + 1) * us / (s * (nu_f + us * us)),
    )
    g_x = np.where(gauss, u / s, g_x)
    # d/ds = nu (1 - u^2) / (s (nu + u^2)), 1 - u^2 as a product (exact near |u| = 1)
    one_minus = np.where(
        big,
        (inv - 1) * (inv + 1) / (nu_f * inv2 + 1),
        (1 - us) * (1 + us) / (nu_f + us * us),
    )
    g_s = np.asarray(np.where(gauss, (1 - u) * (1 + u), nu_f * one_minus) / s)
    au = np.abs(u)
    # s, df or u beyond 2^-200 .. 2^200: from mantissas and exponents (the block's extremes
    # first, the mask only where they are beyond)
    lim = _T_RANGE
    ends = [np.min(s), np.max(s), np.min(nu_f), np.max(nu_f), np.min(au), np.max(au)]
    if not (1 / lim <= min(ends) and max(ends) <= lim):
        far = (s < 1 / lim) | (s > lim) | (nu_f < 1 / lim) | (nu_f > lim) | (au > lim)
        far |= (au < 1 / lim) & (r != 0)
        far &= np.isfinite(x) & np.isfinite(y) & np.isfinite(s)  # infinities: their limits
        far = np.flatnonzero(np.broadcast_to(far, g_x.shape))
        if far.size:
            shape = g_x.shape
            g_x.reshape(-1)[far], g_s.reshape(-1)[far] = _student_t_far(
                *(take_broadcast(a, shape, far) for a in (x, y, s, nu_f)),
                take_broadcast(gauss, shape, far, bool),
            )
    # near |u| = 1, 1 - u^2 = (s - |r|)(s + |r|) / s^2 from the exact residual: u = r / s is
    # rounded, and 1 - |u| would keep only its absolute accuracy
    low, high = (1 - 2.0**-20, 1 + 2.0**-20) if narrow else (0.5, 2.0)
    near = au >= low
    near &= au <= high
    near = np.flatnonzero(near)
    if near.size:
        shape = g_s.shape
        rho, rho_err = two_sum(
            take_broadcast(x, shape, near), -take_broadcast(y, shape, near)
        )  # r is finite where |r / s| <= 2
        sn = take_broadcast(s, shape, near)
        nun = take_broadcast(nu_f, shape, near)
        gn = take_broadcast(gauss, shape, near, bool)
        # scaled by the power of 2 that brings s into [1/2, 1) (exact; not needed where
        # nothing can overflow or underflow): s^2 - r^2 from exact products, nu s^2 + r^2
        # without cancellation
        e = 0
        if sn.min() < 2.0**-400 or sn.max() > 2.0**400:
            _, e = np.frexp(sn)
            sn, rho, rho_err = np.ldexp(sn, -e), np.ldexp(rho, -e), np.ldexp(rho_err, -e)
        s2, s2_err = two_prod(sn, sn)
        gap = gap_to_square(s2, s2_err, rho, rho_err)  # s^2 - r^2
        den = np.where(gn, s2, s2 + rho * rho / nun)  # (nu s^2 + r^2) / nu
        tiny = np.flatnonzero((nun < 1 / _T_RANGE) & ~gn)
        if tiny.size:  # r^2 / nu overflows: nu (s^2 - r^2) / (nu s^2 + r^2)
            nut = nun[tiny]
            den[tiny] = nut * s2[tiny] + rho[tiny] * rho[tiny]
            gap[tiny] *= nut
        g_s.reshape(-1)[near] = np.ldexp(gap / (sn * den), -e)
    # p = u^2 / (nu + u^2)
    p = np.where(big, 1 / (nu_f * inv2 + 1), us * us / (nu_f + us * us))
    minus_ratio = _log1p_minus_ratio(p, log1p_square)
    slope_p = p / (2 * nu_f)
    if narrow:
        # The float64 result is within 2^-45 of the terms' magnitudes: redone only where
        # they cancel to 2^-20.
        g_nu = np.where(gauss, 0.0, dc + (0.5 * minus_ratio - slope_p))
        error = np.abs(dc)
        error += slope_p
        error += 0.5 * np.where(p < 0.5, minus_ratio, log1p_square + p)
        cancels = error > 2.0**20 * np.abs(g_nu)
    else:  # dc: C'(df) rounded from its double-double (norm_slope)
        body = 0.5 * minus_ratio - slope_p
        g_nu = np.where(gauss, 0.0, dc + body)
        # A first-order bound of the float64 sum's error, in units of 2^-52 of each part:
        # 1/2 for C' (rounded once from its double-double); 1 for u = (x - y) / s (two
        # roundings), which moves the sum by u d/du of it, s_u = p (1 - p) |u^2 - 1| / df
        # (it vanishes at |u| = 1: the three terms move together); 2 for p's own roundings
        # given u (three or four), which move it by p d/dp = p (u^2 - 1) / (2 df), that is
        # s_u / (1 - p) for 2; 3/2 for -log(1 - p) - p given p below p = 1/2 (p z and the
        # series' fifth at most; beyond, 8 of log1p(q) + p, the logarithm of the rounded
        # u); 1/2 for p / (2 df) and 1/2 for the inner sum. Where that may exceed 3.5 ULP of
        # the sum (with its own rounding, 4), the double-double form.
        s_u = np.where(big, p * p * np.abs(1 - inv2), p * (1 - p) * (1 - us * us) / nu_f)
        error = np.abs(dc)
        error += np.abs(body)
        error += slope_p
        error *= 0.5
        error += s_u
        error += np.where(p < 0.5, s_u / (1 - p) + 0.75 * minus_ratio, 4 * (log1p_square + p))
        cancels = error * 2.0**-52 > 3.5 * np.spacing(np.abs(g_nu))
    cancels &= ~gauss & (nu_f >= 2.0**-200) & (nu_f <= 2.0**200) & (np.abs(r) <= 2.0**200 * s)
    if ends[3] > 2.0**200:  # the largest df
        _student_t_df_slope_huge(g_nu, x, y, s, nu_f, gauss, u)
    return g_x, g_s, g_nu, np.flatnonzero(cancels)


def _student_t_df_slope_huge(g_nu, x, y, s, nu_f, gauss, u):
    """The df gradient, in place, where df > 2^200 is finite and u^2 <= 2^-80 df: there it is
    ((u^2 - 1)^2 - 2) / (4 df^2) to a relative 2^-78 of its terms (C'(df) = -1/(4 df^2) +
    O(df^-4), -log(1 - p) - p = p^2 / 2 + O(p^3) with p = u^2 / (df + u^2)), in double-double
    from the exact residual (the polynomial cancels near u^2 = 1 + sqrt 2) with df's mantissa,
    scaled once: its terms, of order 1/df^2, are subnormal or below beyond df = 2^511 (the
    plain sum was 0 or a few bits of a subnormal result). Beyond |u| = 2^50, (u^2 / 2)^2
    alone (to 2^-98), from u scaled by a power of 2."""
    huge = (nu_f > 2.0**200) & ~gauss
    huge &= u * u <= 2.0**-80 * nu_f
    huge = np.flatnonzero(np.broadcast_to(huge, g_nu.shape))
    if not huge.size:
        return
    xh, yh, sh, nuh, uh = (take_broadcast(a, g_nu.shape, huge) for a in (x, y, s, nu_f, u))
    m_n, e_n = np.frexp(nuh)
    m_s, e_s = np.frexp(sh)
    k = np.frexp(uh)[1]
    far = k > 50
    k = np.where(far, k, 0)
    r_hi, r_lo = two_sum(xh, -yh)
    v = dd_div(np.ldexp(r_hi, -e_s - k), np.ldexp(r_lo, -e_s - k), m_s, 0.0)  # u 2^-k
    a = dd_mul(*v, *v)
    b = dd_add(*a, -1.0, 0.0)
    near = dd_add(*dd_mul(*b, *b), -2.0, 0.0)
    a2 = dd_mul(*a, *a)
    num = [np.where(far, p, q) for p, q in zip(a2, near, strict=True)]
    den = two_prod(m_n, m_n)
    hi, lo = dd_div(*num, 4 * den[0], 4 * den[1])
    g_nu.reshape(-1)[huge] = np.ldexp(hi + lo, 4 * k - 2 * e_n)


def _student_t_redo(g_nu, flats, pre, group, cancels, scale):
    """The df gradient of the elements ``group.start + cancels`` of the loss (``cancels``:
    flat indices within ``group``) by the careful form, scaled and written into ``g_nu``
    (the gradient's flat output); ``pre``: C(df), C'(df) and C'(df) as a double-double for
    the group (arrays of its size or 0-d), or None."""
    for part in chunks(cancels.size, _STUDENT_T_REDO_BLOCK):
        here = cancels[part]
        norm_slope = None
        if pre is not None:
            norm_slope = tuple(
                take_broadcast(a, (group.stop - group.start,), here) for a in pre[2:]
            )
        at = here + group.start
        # the gathered arguments passed without names: the careful form drops them once used
        g_nu[at] = (
            _student_t_df_slope_careful(
                *(take_broadcast(a, (g_nu.size,), at) for a in flats), norm_slope
            )
            * scale
        )


@gradients_in_argument_dtypes("input", "scale", "df")
def student_t_nll_loss_value_and_grad(input, target, scale, df, reduction="mean"):
    r"""``student_t_nll_loss`` and ``student_t_nll_loss_grad`` in one pass.

    The checked arguments and the intermediates both need are computed once.

    Parameters
    ----------
    input, target, scale, df, reduction
        Same as :func:`student_t_nll_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_input, d_scale, d_df))``: bit for bit ``student_t_nll_loss(...)``
        and ``student_t_nll_loss_grad(...)``.

    Raises
    ------
    ValueError
        As :func:`student_t_nll_loss`.

    Examples
    --------
    >>> loss, (gx, gs, gdf) = student_t_nll_loss_value_and_grad([1.0], [0.0], 1.0, 1.0)
    >>> bool(loss == student_t_nll_loss([1.0], [0.0], 1.0, 1.0)), gx.tolist(), float(gs)
    (True, [1.0], 0.0)
    """
    return _student_t(input, target, scale, df, reduction)


# ---------------------------------------------------------------- quantile (pinball)

# Elements per piece of the pinball loss. Its dozen float64 buffers are made once per thread
# and reused from piece to piece: new temporaries of this size for every piece cost page
# faults, as the allocator returns freed memory to the system.
_QUANTILE_BLOCK = 1 << 15

_FRACTION_BITS = np.int64((1 << 52) - 1)


def _quantile_args(input, target, quantile, reduction):
    """The output dtype, ``input`` and ``target`` as arrays (not converted) and the quantile
    level in float64."""
    check_reduction(reduction)
    if isinstance(quantile, numbers.Real) and not isinstance(quantile, bool):
        quantile = float(quantile)
    names_values = {"input": input, "target": target, "quantile": quantile}
    x, y, q = (as_float_array(value, name) for name, value in names_values.items())
    out = result_dtype(*names_values.values())
    q = q.astype(np.float64)
    if not (y.shape == x.shape or (x.ndim >= 1 and y.shape == x.shape[:-1] + (1,))):
        last = f" or {x.shape[:-1] + (1,)}" if x.ndim >= 1 else ""
        raise ValueError(
            f"target must have the shape of input {x.shape}{last}; got shape {y.shape}"
        )
    check_broadcastable(q, x.shape, "quantile", "input")
    with np.errstate(invalid="ignore"):
        ok = (q > 0) & (q < 1)
    if not np.all(ok):
        raise ValueError(
            f"quantile must lie in the open interval (0, 1); got {describe(float(q[~ok].flat[0]))}"
        )
    return out, x, y, q


def _pinball(r, r_err, q):
    """``max(q u, (q - 1) u)`` for the exact residual ``u = r + r_err``, within 1 ULP (``q`` a
    scalar or broadcasting against ``r``): bit for bit :func:`_pinball_block`'s losses.

    The plain formula is used where :func:`_inexact` shows it is within 1 ULP, the others
    are computed exactly by :func:`_pinball_unscaled`. Every element takes the plain formula
    when ``r_err`` is None (a result rounded to float32 or float16: ``r = fl64(y - x)`` and
    the float64 products are then within a few 2^-53 of the exact value).
    """
    out = np.empty(r.shape)
    spare = np.empty((2,) + r.shape)
    _plain_pinball(r, q, out, spare[0])
    if r_err is None:
        return out
    redo = np.flatnonzero(_inexact(r, _fraction_limits(q), out, spare, np.empty(r.shape, bool)))
    if redo.size:
        q_redo = take_broadcast(q, r.shape, redo) if np.ndim(q) else q
        r_redo, r_err_redo = (a.reshape(-1)[redo] for a in (r, r_err))
        exact = np.empty(redo.size)
        _pinball_unscaled(r_redo, r_err_redo, q_redo, exact, _pinball_work(redo.size))
        out.reshape(-1)[redo] = exact
    return out


def _plain_pinball(r, q, out, spare):
    """``out = max((q - 1) r, q r)`` in float64 (+0, not -0, at ``r = +0``)."""
    np.multiply(r, q - 1, out=spare)
    np.multiply(r, q, out=out)
    np.maximum(spare, out, out=out)


def _fraction_limits(q):
    """``(above, below)``: the plain ``fl(c r)`` of a float64 residual ``r > 0`` (``c = q``),
    resp. ``r < 0`` (``c = q - 1``), is within 1 ULP of ``c u`` for every ``u`` that rounds to
    ``r`` where the fraction bits of ``r`` (its mantissa's 52 bits, an integer) are at least
    the limit, and ``2^-960 <= |r| < 2^1024``. The limit is 2^52 (no residual) where ``q - 1``
    is rounded (``q < 1/2``). Integers of ``q``'s shape (uint64).

    Proof, for ``q >= 1/2`` (then ``q`` and ``q - 1`` are exact): ``|c r - c u| <= |c| ulp(r)/2``
    and ``|p - c r| <= ulp(p)/2`` (``p = fl(c r)``), so ``|p - c u| <= ulp(p)`` once ``|c| ulp(r)
    <= ulp(p)``. Write ``|c| = m_c 2^f`` and ``|r| = m 2^e`` (``1 <= m_c, m < 2``). If ``m_c =
    1``, ``p = c r`` exactly and ``ulp(p) = |c| ulp(r)``: limit 0. Otherwise, where ``m >= t =
    (2 / m_c)(1 + 2^-50)``, ``m_c m > 2`` so ``p >= 2^(e + f + 1)`` and ``ulp(p) >= 2^(e + f +
    1 - 52) > |c| ulp(r)``. The margin ``1 + 2^-50`` keeps ``p`` a few ULP above that power of
    2, so ``c u`` (within 1 ULP of ``p``) rounds into ``p``'s binade or above: the bound holds
    in ULP of the exact value too. ``|r| >= 2^-960`` and ``|c| >= 2^-53`` keep ``p`` normal.
    The limit is the fraction of ``t``, ``(t - 1) 2^52`` (2^52 where ``t >= 2``).
    """
    q = np.asarray(q, dtype=np.float64)
    limits = []
    for c in (q, 1 - q):
        m = 2 * np.frexp(c)[0]
        t = 2 / m * (1 + 2.0**-50)
        limit = np.where(m == 1, 0.0, np.minimum((t - 1) * 2.0**52, 2.0**52))
        limits.append(np.where(q < 0.5, 2.0**52, limit).astype(np.uint64)[()])
    return limits


def _inexact(r, limits, loss, work, mask):
    """``mask`` = where the plain ``loss`` (:func:`_plain_pinball`) of the float64 residual
    ``r`` may be more than 1 ULP off (``limits``: :func:`_fraction_limits`), or is below
    2^-960 (zeros too: ``|r| >= loss``), or NaN. ``work``: two float64 buffers of ``r``'s
    shape."""
    above, below = limits
    bits = r.view(np.int64)
    sign, key = (w.view(np.int64) for w in work)
    np.right_shift(bits, 63, out=sign)  # -1 where r < 0, else 0
    np.bitwise_and(bits, _FRACTION_BITS, out=key)
    key ^= sign  # the fraction where r > 0, -fraction - 1 where r < 0
    # one comparison for both signs: -below <= key < above as unsigned integers
    unsigned = key.view(np.uint64)
    unsigned += below
    np.less(unsigned, above + below, out=mask)
    if not np.min(loss, initial=np.inf) >= 2.0**-960:
        mask |= ~(loss >= 2.0**-960)
    return mask


def _pinball_work(size, exact=True):
    """Buffers for :func:`_pinball_block` and :func:`_pinball_unscaled` on blocks of up to
    ``size`` elements, reused from block to block: eleven float64 rows and two masks; two
    rows where the result is narrower than float64 (``exact`` False: the plain formula,
    whose residual and spare are the last two rows in either layout)."""
    return np.empty((11 if exact else 2, size)), np.empty((2, size), bool)


def _pinball_block(y, x, q, limits, out, work):
    """``out`` = the pinball losses (float64) of 1-D blocks ``y``, ``x`` for a scalar level
    ``q``; returns ``r = fl64(y - x)`` (a buffer of ``work``, :func:`_pinball_work`).

    Without ``limits`` (a float32 or float16 result) the plain float64 formula. With them
    (a float64 result, float64 ``y`` and ``x``: :func:`_fraction_limits`) and ``q >= 1/2``,
    the plain formula too, and the elements that :func:`_inexact` finds (about a quarter of
    them) are gathered and computed exactly by :func:`_pinball_unscaled`. With ``q < 1/2``
    every element is computed exactly.
    """
    n = y.size
    rows, masks = work[0][:, :n], work[1][:, :n]
    exact = limits is not None
    if exact and q < 0.5:
        r, r_err = two_sum(y, x, minus=True, out=rows[:3])
        _pinball_unscaled(r, r_err, q, out, work)
        return r
    if not exact:
        r = np.subtract(y, x, out=rows[-2], dtype=np.float64)
        _plain_pinball(r, q, out, rows[-1])
        return r
    r = np.subtract(y, x, out=rows[8], dtype=np.float64)
    _plain_pinball(r, q, out, rows[9])
    redo = np.flatnonzero(_inexact(r, limits, out, rows[9:11], masks[0]))
    k = redo.size
    if k:
        y_k = np.take(y, redo, out=rows[9][:k])
        x_k = np.take(x, redo, out=rows[10][:k])
        r_k, r_err_k = two_sum(y_k, x_k, minus=True, out=rows[:3, :k])
        _pinball_unscaled(r_k, r_err_k, q, y_k, work)
        out[redo] = y_k
    return r


def _pinball_unscaled(r, r_err, q, out, work):
    """``out = max(q u, (q - 1) u)`` for 1-D float64 ``u = r + r_err``, within half an ULP
    plus 2^-50 ULP; ``q`` a scalar or of ``r``'s shape; ``work`` is :func:`_pinball_work`'s
    (its first two rows and first mask are left alone).

    The factor is ``c + c_err`` with ``c = q``, ``c_err = 0`` where ``r > 0``, else ``q - 1 =
    c + c_err`` (TwoSum; ``c_err`` is 0 for ``q >= 1/2``, Sterbenz' lemma). ``c r = p + p_err``
    exactly by Dekker's product, and ``p + (p_err + c r_err + c_err r)`` is rounded once: the
    low terms are each below 2^-52 |p| and are rounded to within 2^-104 |p| (``c_err r_err``,
    below 2^-105 |p|, is left out), so the result is within half an ULP plus 2^-50 ULP of the
    exact ``(c + c_err) u``. Dekker's product needs no scaling where ``p + p_err >= 2^-960``
    (no partial product underflows, and ``2^27 r`` did not overflow, else the sum would be
    NaN); the other elements (``r`` zero, tiny, huge, infinite or NaN, rare) are redone by
    :func:`_pinball_scaled`.
    """
    n = r.size
    buffers, positive = work[0][:, :n], work[1][1, :n]
    c, c_hi, c_lo, p_err, spare, other = buffers[2:8]
    np.greater(r, 0, out=positive)
    m, m_err = two_sum(q, -1.0)
    if np.ndim(q):
        np.copyto(c, np.where(positive, q, m))
    else:
        _choose(positive, q, m, c)
    _split(c, out=(c_hi, c_lo))
    _dd_times_split(r, r_err, c, c_hi, c_lo, out=(out, p_err, spare, other))
    if np.any(m_err):
        if np.ndim(q):
            np.copyto(spare, np.where(positive, 0.0, m_err))
        else:
            _choose(positive, 0.0, m_err, spare)
        spare *= r
        p_err += spare
    out += p_err
    if not np.min(out, initial=np.inf) >= 2.0**-960:  # also with a NaN
        redo = np.flatnonzero(~(out >= 2.0**-960))
        out[redo] = _pinball_scaled(r[redo], r_err[redo], q[redo] if np.ndim(q) else q)


def _choose(mask, a, b, out):
    """``out = a`` where ``mask``, else ``b`` (two scalars of ``out``'s dtype), as integer
    operations on their bits: ``b``'s bits xor ``mask`` times the bits that differ (np.where
    with two constants is several times slower)."""
    bits = np.dtype(f"u{out.itemsize}")
    a_bits, b_bits = (np.asarray(v, out.dtype).view(bits) for v in (a, b))
    out_bits = out.view(bits)
    np.multiply(mask, a_bits ^ b_bits, out=out_bits)
    out_bits ^= b_bits
    return out


def _pinball_halved(y, x, q, losses):
    """In place: the float64 losses that overflowed with ``y - x`` though ``y`` and ``x`` are
    finite (``y = 1e308``, ``x = -1e308`` at ``q = 1/4``: inf for 5e307), again from halves.

    ``rho`` is homogeneous of degree 1, ``rho(u) = 2 rho(u / 2)``, and ``y / 2 - x / 2`` is
    exact as a TwoSum (halving is exact at these magnitudes): :func:`_pinball_scaled` of it,
    doubled, overflows only where the loss does. One reduction when nothing overflowed.
    """
    if np.max(losses, initial=-np.inf) < np.inf:
        return
    shape = losses.shape
    flat = losses.reshape(-1)
    bad, h, h_err = halved_difference(y, x, np.flatnonzero(np.isinf(flat)), shape)
    if not bad.size:
        return
    qs = take_broadcast(q, shape, bad) if np.ndim(q) else q
    flat[bad] = 2 * _pinball_scaled(h, h_err, qs)


def _pinball_scaled(r, r_err, q):
    """:func:`_pinball` for any finite or infinite residual and level, within half an ULP.

    ``r`` and ``q`` are scaled by powers of 2 into [1/2, 1) (exact, and Dekker's product
    stays in its domain: a tiny or subnormal ``q`` times ``r`` scaled alone would underflow);
    ``q r = p + p_err`` exactly, and ``(q - 1) r = q r - r`` by TwoSum, so neither ``q - 1``
    (inexact for q < 1/2) nor ``y - x`` is rounded before the one final rounding. There ``q
    r`` is scaled back first: exact for ``q >= 2^-1021``, else off by at most 2^-1074 in a
    result of at least 1/4. Infinite and NaN residuals take the plain formula.
    """
    q = np.broadcast_to(q, r.shape)
    plain = np.maximum(q * r, (q - 1) * r)
    _, e = np.frexp(r)
    _, f = np.frexp(q)
    rs, es, qs = np.ldexp(r, -e), np.ldexp(r_err, -e), np.ldexp(q, -f)
    p, p_err = two_prod(qs, rs)
    low = p_err + qs * es
    above = np.ldexp(p + low, e + f)
    p, low = np.ldexp(p, f), np.ldexp(low, f)
    s, s_err = two_sum(p, -rs)
    scaled = np.where(rs < 0, np.ldexp(s + ((s_err + low) - es), e), above)
    return np.where(np.isfinite(r), scaled, plain)


def quantile_loss(input, target, quantile, reduction="mean"):
    r"""Pinball (quantile) loss: the NLL of an asymmetric Laplace, up to its scale and constant.

    With :math:`u = y - x` (target minus prediction) and quantile level :math:`\tau`:

    .. math::

        \rho_\tau(u) = \max(\tau u, (\tau - 1) u)
        = u\,\bigl(\tau - \mathbb{1}[u < 0]\bigr).

    Its expected value is minimized by the :math:`\tau`-quantile of :math:`y`.

    Parameters
    ----------
    input : array_like
        Predicted quantiles :math:`x`; for several quantile levels (a multi-quantile head)
        put the levels on the last axis.
    target : array_like
        Targets :math:`y`: ``input``'s shape, or that shape with a last dimension of 1 (one
        target shared by the heads of a row).
    quantile : float or array_like
        Levels :math:`\tau` in the open interval (0, 1); an array broadcasts against ``input``
        (e.g. shape ``(K,)`` for ``K`` heads on the last axis).
    reduction : {"mean", "sum", "none"}
        How the per-element losses are combined (the mean is over all elements of ``input``).

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-element losses (``input``'s shape) for ``"none"``.

    Raises
    ------
    ValueError
        If a level is not in (0, 1) (NaN included), the shapes do not fit, or ``reduction``
        is unknown.

    Notes
    -----
    The loss of the quantile outputs of the temporal fusion transformer
    :cite:p:`lim2021temporal`; quantile regression is due to
    :cite:t:`koenker1978regression`, the asymmetric Laplace likelihood to
    :cite:t:`yu2001bayesian`. Within 1 ULP in every dtype, computed in float64: for a float64
    result, the plain formula where its error is provably below 1 ULP (most elements), the
    others from the exact residual and Dekker's product, rounded once; a residual beyond
    the largest float from the halved arguments.

    Examples
    --------
    >>> quantile_loss([0.0, 0.0], [2.0, -2.0], 0.9, reduction="none").round(6).tolist()
    [1.8, 0.2]
    """
    return _quantile(input, target, quantile, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def quantile_loss_grad(input, target, quantile, reduction="mean"):
    r"""Gradient of :func:`quantile_loss` w.r.t. ``input``.

    Per element :math:`-\tau` where :math:`u = y - x > 0`, :math:`1 - \tau` where
    :math:`u < 0`, and at the kink :math:`u = 0` the subgradient :math:`\tfrac12 - \tau`: the
    average of the two slopes, which is what autograd gives for ``max(tau*u, (tau-1)*u)``
    written with ``torch.maximum`` (it splits the gradient of a tie evenly). Divided by the
    number of elements for ``reduction="mean"``.

    Parameters
    ----------
    input, target, quantile, reduction
        As in :func:`quantile_loss`.

    Returns
    -------
    ndarray
        The gradient, with ``input``'s shape and floating dtype.

    Raises
    ------
    ValueError
        As :func:`quantile_loss`.

    Notes
    -----
    See :cite:t:`koenker1978regression`.

    Examples
    --------
    >>> g = quantile_loss_grad([0.0, 0.0, 0.0], [2.0, -2.0, 0.0], 0.9, reduction="sum")
    >>> g.round(6).tolist()
    [-0.9, 0.1, -0.4]
    """
    return _quantile(input, target, quantile, reduction, value=False)[1]


def _quantile(input, target, quantile, reduction, *, value=True, grad=True):
    """``(loss or None, d_input or None)`` of :func:`quantile_loss`, one pass.

    A scalar level and a target of the input's shape (the usual case) go in cache-sized
    blocks (:func:`_quantile_blocks`); the broadcasting cases in one piece.
    """
    out, x, y, q = _quantile_args(input, target, quantile, reduction)
    if q.ndim == 0 and y.shape == x.shape:
        return _quantile_blocks(input, x, y, q, reduction, out, value, grad)
    x, y = x.astype(np.float64, copy=False), y.astype(np.float64, copy=False)
    loss = g = None
    with np.errstate(over="ignore", invalid="ignore"):
        if value:
            r, r_err = _quantile_residual(y, x, out)
            losses = _pinball(r, r_err, q)
            if r_err is not None:
                _pinball_halved(y, x, q, losses)
            loss = reduce_to(losses, reduction, out)
        else:
            r = y - x  # its sign is that of the exact difference
    if grad:
        shape = x.shape
        g = _quantile_slope(np.broadcast_to(r, shape), q, shape)
        g = scale_grad(g, shape, reduction, grad_dtype(input, out), in_place=True)
    return loss, g


def _quantile_residual(y, x, out):
    """``(r, r_err)``: ``y - x`` in float64, exact for float32 and float16 data (r_err None)."""
    if out.itemsize < 8:
        return y - x, None
    return exact_difference(y, x)


def _quantile_slope(r, q, shape):
    """d loss / d input per element (float64): ``-q`` where ``r > 0``, ``1 - q`` below,
    ``1/2 - q`` at ``r = 0`` (the mean of the two one-sided slopes), NaN for a NaN ``r``."""
    g = np.asarray(np.where(r > 0, -q, 1 - q))
    # r = 0 and NaN, rare: on those elements only
    special = np.flatnonzero(~(np.abs(r) > 0))
    if special.size:
        qs = take_broadcast(q, shape, special)
        g.reshape(-1)[special] = np.where(r.reshape(-1)[special] == 0, 0.5 - qs, np.nan)
    return g


def _quantile_blocks(input, x, y, q, reduction, out, value, grad):
    """:func:`_quantile` for a scalar level and a target of the input's shape, in blocks.

    In blocks of about a megabyte (:func:`for_each_block`, on up to two threads), each in
    cache-sized pieces into buffers made once per thread. Each piece's residual is formed in
    float64 (exactly, as ``r + r_err``, for a float64 result: :func:`_pinball_unscaled`) and
    its losses reduced while in cache (:class:`BlockReduction`; the blocks' sums added in
    their order, so the result does not depend on the threads). The gradient takes three
    values only, ``-q``, ``1 - q`` and ``1/2 - q`` times the reduction's scale (in float64,
    then rounded once): they are formed once and each piece picks them by the sign of its
    residual (exact in the input's dtype, so the gradient alone converts nothing).
    """
    xf, yf = x.reshape(-1), y.reshape(-1)
    size = xf.size
    reduced = BlockReduction(reduction, size, out) if value else None
    gdt = grad_dtype(input, out)
    d_x = np.empty(size, dtype=gdt) if grad else None
    scale = reduction_scale(size, reduction, np.dtype(np.float64))
    above, below, at = (to_dtype(v * scale, gdt) for v in (-q, 1 - q, 0.5 - q))
    exact, level = out.itemsize == 8, float(q)
    if exact:  # float64 (a float32 or float16 argument with a float64 one: converted)
        xf, yf = (v.astype(np.float64, copy=False) for v in (xf, yf))
    limits = _fraction_limits(level) if exact else None
    step = min(size, _QUANTILE_BLOCK)
    local = threading.local()
    # the kept losses are written in place by every thread (each into its own pieces)
    kept = reduced if value and reduction == "none" else None
    parts = {}  # the first element of a block: its reduction

    def blocks(span: slice) -> None:
        if not hasattr(local, "work"):  # a thread's buffers, reused by every piece
            local.work = _pinball_work(step, exact)
            # float64 losses of a piece (a float64 result's own, when the losses are kept)
            local.buffer = np.empty(step) if value else None
        work, buffer = local.work, local.buffer
        rows, mask = work[0], work[1][0]
        summed = kept if kept is not None or not value else BlockReduction(reduction, size, out)
        for start in range(span.start, span.stop, step):
            b = slice(start, min(start + step, span.stop))
            n = b.stop - b.start
            if value:
                losses = summed.buffer(b, buffer[:n])
                r = _pinball_block(yf[b], xf[b], level, limits, losses, work)
                if exact:  # (float32 and float16 residuals do not overflow float64)
                    _pinball_halved(yf[b], xf[b], level, losses)
                summed.add(losses, b)  # rounded once
            else:
                # its sign is that of the exact difference
                r = np.subtract(yf[b], xf[b], out=rows[-2][:n])
            if grad:
                slope = _choose(np.greater(r, 0, out=mask[:n]), above, below, d_x[b])
                size_r = np.abs(r, out=rows[-1][:n])  # (r is in another row)
                if not np.min(size_r) > 0:  # r = 0 and NaN, rare: on those elements only
                    special = np.flatnonzero(~(size_r > 0))
                    slope[special] = np.where(r[special] == 0, at, np.nan)
        if value and kept is None:
            parts[span.start] = summed

    for_each_block(blocks, size, 8)
    if value and kept is None:
        for start in sorted(parts):
            reduced.extend(parts[start])
    loss = reduced.result(x.shape) if value else None
    return loss, (d_x.reshape(x.shape) if grad else None)


@gradients_in_argument_dtypes("input")
def quantile_loss_value_and_grad(input, target, quantile, reduction="mean"):
    r"""``quantile_loss`` and ``quantile_loss_grad`` in one pass: the loss and its gradient.

    The checked arguments and the intermediates both need are computed once.

    Parameters
    ----------
    input, target, quantile, reduction
        Same as :func:`quantile_loss`.

    Returns
    -------
    tuple
        ``(loss, d_input)``: bit for bit ``quantile_loss(...)``
        and ``quantile_loss_grad(...)``.

    Raises
    ------
    ValueError
        As :func:`quantile_loss`.

    Examples
    --------
    >>> args = ([0.0, 0.0, 0.0], [2.0, -2.0, 0.0], 0.9)
    >>> loss, g = quantile_loss_value_and_grad(*args, reduction="sum")
    >>> bool(loss == quantile_loss(*args, reduction="sum")), g.round(6).tolist()
    (True, [-0.9, 0.1, -0.4])
    """
    return _quantile(input, target, quantile, reduction)
