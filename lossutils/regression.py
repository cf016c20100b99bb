"""Regression losses: Gaussian, Laplace and robust likelihoods of a residual.

Every loss here is a function of the residual :math:`r = x - y` (``input``
minus ``target``, which must have the same shape), possibly with a predicted
variance or scale. The two likelihood losses :func:`gaussian_nll_loss` and
:func:`laplace_nll_loss` floor that variance or scale at ``eps`` as PyTorch
does, and their gradients follow PyTorch's autograd through that floor.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ._checks import (
    as_float_array,
    check_bool,
    check_nonnegative,
    check_positive_scalar,
    check_reduction,
    check_same_shape,
    check_scale_shape,
    float_arrays,
    grad_dtype,
    gradients_in_argument_dtypes,
    result_dtype,
)
from ._numerics import (
    CHUNK,
    abs_gap_of_difference,
    chunks,
    dd_div,
    gap_to_abs_parts,
    gap_to_square_parts,
    halved_difference,
    log_cosh_into,
    quiet,
    relative_gap_of_difference,
    take_broadcast,
    to_dtype,
    two_prod,
    two_sum,
    working_dtype,
)
from ._reduction import (
    BlockReduction,
    reduce_to,
    reduction_scale,
    scale_grad,
    square_shares,
    sum_to_shape_parts,
)

__all__ = [
    "mse_loss",
    "mse_loss_grad",
    "mse_loss_value_and_grad",
    "l1_loss",
    "l1_loss_grad",
    "l1_loss_value_and_grad",
    "huber_loss",
    "huber_loss_grad",
    "huber_loss_value_and_grad",
    "smooth_l1_loss",
    "smooth_l1_loss_grad",
    "smooth_l1_loss_value_and_grad",
    "log_cosh_loss",
    "log_cosh_loss_grad",
    "log_cosh_loss_value_and_grad",
    "gaussian_nll_loss",
    "gaussian_nll_loss_grad",
    "gaussian_nll_loss_value_and_grad",
    "laplace_nll_loss",
    "laplace_nll_loss_grad",
    "laplace_nll_loss_value_and_grad",
]  # and the losses beyond the Gaussian, added at the end

_LOG_2PI = math.log(2 * math.pi)
_LOG_2 = math.log(2.0)


def _floats(names_values):
    """The arguments as arrays of their promoted floating dtype (Python numbers are weak)."""
    for name, value in names_values.items():
        as_float_array(value, name)  # the ValueError for non-numeric data comes first
    return float_arrays(names_values, result_dtype(*names_values.values()))


@dataclass(frozen=True)
class _Spread:
    """How a likelihood loss uses its residual ``r`` and floored variance or scale ``s``.

    On one block of elements (or on whole arrays, ``s`` broadcast), in the working dtype:
    ``quotient(r, s)`` is a new array ``q``; ``value(r, s, q, out)`` writes the loss without
    its constant (``full``) into ``out``; ``input_slope(r, s, q, out)`` writes d loss / d
    input into ``out`` (``q`` may be overwritten, or None where it was not needed).
    ``plain(r, s, q, out=None) -> (slope, ratio)`` is the textbook spread slope, accurate
    unless ``low <= ratio <= high``, where its two terms cancel; ``exact(s, x, y, dtype)``
    is that slope from the inputs in float64 (exact residual), for those elements only, or
    for every element of a block where ``exact_everywhere`` (it is then accurate on the
    whole domain and costs no more than the formula and the selection). ``huge(h, s)`` gives
    ``(loss, d_input, d_spread, applies)`` from half the residual ``h``, for the elements
    whose residual or an intermediate such as ``r^2 / s`` overflowed (see
    :func:`_redo_overflow`), and where those forms are accurate. The spread slope is
    ``gap / (gap_divisor s^2)``, and ``gap_parts(s, r, r_err)`` is that gap in exact parts
    (``(gap, lows, tail)``, see :func:`~lossutils._numerics.gap_to_square_parts`) from the
    exact residual ``r + r_err`` (float64): a broadcast spread's gradient sums these before
    it divides (:func:`_broadcast_spread_grad`).
    """

    quotient: object
    value: object
    input_slope: object
    plain: object
    exact: object
    low: float
    high: float
    constant: float
    huge: object
    exact_everywhere: bool = False
    gap_parts: object = None
    gap_divisor: float = 1.0


def _likelihood_args(input, target, spread, name, eps, reduction):
    """``(x, y, s)`` checked, in the working dtype, the floor ``eps`` and the result dtype."""
    check_reduction(reduction)
    eps = check_positive_scalar(eps, "eps", allow_zero=True)
    x, y, s = _floats({"input": input, "target": target, name: spread})
    dtype = x.dtype
    check_same_shape(x, y, "input", "target")
    check_scale_shape(s, x.shape, name)
    check_nonnegative(s, name)
    work = working_dtype(dtype)
    return tuple(a.astype(work, copy=False) for a in (x, y, s)), work.type(eps), dtype


def _near_optimum(ratio, low, high):
    """Flat indices of the elements with ``low <= ratio <= high`` (where a spread gradient
    cancels), one boolean pass and no full-size copy of the selection."""
    near = np.greater_equal(ratio, low)
    near &= np.less_equal(ratio, high, out=np.empty_like(near))
    return np.flatnonzero(near)


def _spread_slope(r, s, q, x, y, spec: _Spread, out, all_exact):
    """Per-element slope of a likelihood loss in its variance or scale ``s``, into ``out``.

    The formula ``spec.plain``, and ``spec.exact`` where it cancels. ``all_exact`` (a block
    of a spread of the input's shape, with float32 work, where float64 is plain (see the
    kernels), or a ``spec.exact_everywhere``): every element is ``exact``, only non-finite
    results falling back to ``plain``.
    """
    if all_exact:
        g = spec.exact(*(a.astype(np.float64, copy=False) for a in (s, x, y)), r.dtype)
        out[...] = g
        if not np.isfinite(np.sum(g)):  # one pass when every element is finite
            # infinite or zero spreads, infinite or NaN data: the formula's limits
            bad = np.flatnonzero(~np.isfinite(g))
            rb, sb = r[bad], s[bad]
            out[bad] = spec.plain(rb, sb, spec.quotient(rb, sb))[0]
        return out
    out, ratio = spec.plain(r, s, q, out)
    near = _near_optimum(ratio, spec.low, spec.high)
    if near.size:
        out.reshape(-1)[near] = spec.exact(
            take_broadcast(s, r.shape, near),
            take_broadcast(x, r.shape, near),
            take_broadcast(y, r.shape, near),
            r.dtype,
        )
    return out


def _likelihood_terms(x, y, s, eps, full, spec: _Spread, loss, d_input, d_spread):
    """Per-element loss (into ``loss``) and slopes (into ``d_input``, ``d_spread``) of one
    block; an output that is None is not computed, one that is ``True`` is a new array."""

    def buffer(out):
        return np.empty(r.shape, r.dtype) if out is True else out

    r = x - y
    s = np.maximum(s, eps)  # propagates NaN, as torch.clamp does
    all_exact = s.shape == r.shape and (r.dtype != np.float64 or spec.exact_everywhere)
    # the quotient where something uses it (not the gradients of a Laplace loss in blocks)
    q = None
    if loss is not None or (d_spread is not None and not all_exact):
        q = spec.quotient(r, s)
    if loss is not None:
        loss = spec.value(r, s, q, buffer(loss))
        if eps == 0:  # a zero spread: the limit +inf, or -inf where r = 0 (not inf - inf)
            zero = np.flatnonzero((s == 0) & ~np.isnan(r))
            if zero.size:
                loss.reshape(-1)[zero] = np.where(r.reshape(-1)[zero] == 0, -np.inf, np.inf)
        if full:
            loss += spec.constant
    if d_spread is not None:
        d_spread = _spread_slope(r, s, q, x, y, spec, buffer(d_spread), all_exact)
    if d_input is not None:
        d_input = spec.input_slope(r, s, q, buffer(d_input))
    _redo_overflow(x, y, s, spec, full, (loss, d_input, d_spread))
    return loss, d_input, d_spread


def _redo_overflow(x, y, s, spec: _Spread, full, outputs):
    """Redo, from half the residual, the elements whose results overflowed while the inputs
    are finite and the spread positive: ``x - y`` itself can overflow (``x = 1e308``,
    ``y = -1e308``: the gradient ``r / v`` is finite for ``v = 1e300``), and so can ``r^2 / v``
    or ``|r| / b`` where the spread's slope, divided by ``v`` or ``b`` once more, is finite.
    ``h = x/2 - y/2`` does not overflow (the halving is exact at these magnitudes). Only
    the infinite results, only where ``spec.huge`` applies and only by a number (where its
    form is ``inf - inf``, e.g. ``1 / (2 v)`` and ``r^2 / v`` of a subnormal ``v``, the
    overflow stands). One sum per output when nothing overflowed.
    """
    computed = [o for o in outputs if o is not None]
    if all(np.isfinite(np.sum(o)) for o in computed):
        return
    bad = np.zeros(computed[0].shape, bool)
    for o in computed:
        bad |= np.isinf(o)
    bad &= (s > 0) & np.isfinite(s)  # s broadcasts to the block's shape
    shape = computed[0].shape
    idx, h, _ = halved_difference(x, y, np.flatnonzero(bad), shape, with_error=False)
    if not idx.size:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        *parts, applies = spec.huge(h, take_broadcast(s, shape, idx, s.dtype))
        if full:
            parts[0] = parts[0] + spec.constant
    for out, part in zip(outputs, parts, strict=True):
        if out is not None:
            flat = out.reshape(-1)
            # the finite results stay as they are, and so does an infinite one the redo
            # cannot improve on (inf - inf: 1 / (2 v) and r^2 / v both overflow, v subnormal)
            redo = applies & np.isinf(flat[idx]) & ~np.isnan(part)
            flat[idx[redo]] = part[redo]


def _broadcast_spread_grad(x, y, s, eps, spec: _Spread, reduction, count):
    """The gradient of the reduced loss w.r.t. a spread ``s`` broadcast to ``x``'s shape,
    float64 of ``s``'s shape, or None where this form does not apply (no elements).

    Its terms cancel at the optimum of the spread (the learned variance is the mean of the
    squared residuals): each element's gap (``v - r^2``, ``b - |r|``) is formed in exact
    parts from the exact residual, these are summed over the broadcast elements to about
    ``2^-150`` of their magnitudes (:func:`~lossutils._reduction.sum_to_shape_parts`), and
    the sum is divided once by ``gap_divisor s^2`` (and by the count of a mean): within
    about 1 ULP of the exact gradient unless it cancels beyond ``2^-95`` of its terms.
    Entries outside that form's domain (an infinite or NaN result, a spread whose square
    leaves the range) are the per-element slopes summed as before.
    """
    if x.size == 0:
        return None
    floored = np.maximum(s, eps).astype(np.float64)
    narrow = x.dtype != np.float64  # (the float64 gaps suffice for a narrower result)

    def gap_sum(x, y, shape, parts=False):  # the gaps of these elements summed to ``shape``
        if narrow:
            r, r_err = x.astype(np.float64) - y, None
        else:
            r, r_err = two_sum(x, y, minus=True)
        gaps = spec.gap_parts(np.broadcast_to(floored.reshape(shape), x.shape), r, r_err)
        return sum_to_shape_parts(*gaps, shape, narrow=narrow, parts=parts)

    with np.errstate(invalid="ignore", over="ignore"):
        # a spread of one value along the first axis: in blocks of rows (a few block-sized
        # temporaries, not full-size ones), each block's sum kept in its three parts, and
        # these summed once more
        ones = s.reshape((1,) * x.ndim) if s.ndim < x.ndim else s
        if x.ndim and ones.shape[0] == 1 and x.size > CHUNK:
            blocks = chunks(len(x), max(1, CHUNK // max(1, x[0].size)))
            sums = [gap_sum(x[b], y[b], ones.shape, parts=True) for b in blocks]
            his, los, tails = (np.stack([p[k] for p in sums]) for k in (0, 1, 2))
            hi, lo = sum_to_shape_parts(his, (los,), tails, ones.shape, narrow=narrow)
        else:
            hi, lo = gap_sum(x, y, s.shape)
        hi, lo = (a.reshape(s.shape) for a in (hi, lo))
        hi, lo = dd_div(hi, lo, *two_prod(floored, floored))
        divisor = spec.gap_divisor * (count if reduction == "mean" else 1)
        grad = sum(dd_div(hi, lo, np.float64(divisor), 0.0))
    grad = np.asarray(grad, dtype=np.float64).reshape(s.shape)
    bad = ~np.isfinite(grad) | ~((floored >= 1e-145) & (floored <= 1e145))
    if np.any(bad):  # (an infinite or zero spread, infinite or NaN data, an overflow)
        plain = _likelihood_terms(x, y, s, eps, False, spec, None, None, True)[2]
        plain = scale_grad(plain, s.shape, reduction, np.float64, count=count)
        grad[bad] = plain[bad]
    return grad


def _likelihood_loss(input, target, spread, name, eps, full, reduction, spec, value, grad):
    """``(loss or None, (d_input, d_spread) or None)`` of a likelihood loss, one pass.

    In cache-sized blocks: of elements for a spread of the input's shape, of rows
    (leading-axis slices) for a spread that is broadcast along other axes only (``(N, 1)``
    against ``(N, C)``), its gradient summed to its shape block by block. Only the results
    are full-size arrays (a reduced loss is summed block by block). Any other broadcast
    spread is taken on the whole arrays and its gradient summed to its shape.
    """
    full = check_bool(full, "full")
    (x, y, s), eps, dtype = _likelihood_args(input, target, spread, name, eps, reduction)
    shape = x.shape
    loss = grads = None
    same = s.shape == shape
    by_rows = not same and x.ndim >= 2 and s.ndim == x.ndim and s.shape[0] == shape[0] > 1
    if not (same or by_rows):
        d_spread = _broadcast_spread_grad(x, y, s, eps, spec, reduction, x.size) if grad else None
        loss, d_input, plain = _likelihood_terms(
            x,
            y,
            s,
            eps,
            full,
            spec,
            value or None,
            grad or None,
            (d_spread is None and grad) or None,
        )
        if value:
            loss = reduce_to(loss, reduction, dtype)
        if grad:
            # (each argument's gradient in its own floating dtype; a Python number's is the
            # result dtype)
            grads = (
                scale_grad(d_input, shape, reduction, grad_dtype(input, dtype), in_place=True),
                to_dtype(d_spread, grad_dtype(spread, dtype))
                if d_spread is not None
                else scale_grad(
                    plain, s.shape, reduction, grad_dtype(spread, dtype), in_place=True
                ),
            )
        return loss, grads
    if same:
        x, y, s = (a.reshape(-1) for a in (x, y, s))
        blocks, row = chunks(x.size), 1
    else:
        row = max(1, x[0].size)
        blocks = chunks(len(x), max(1, CHUNK // row))
    reduced = BlockReduction(reduction, x.size, dtype) if value else None
    d_input = np.empty_like(x) if grad else None
    # (a broadcast spread's gradient in float64, rounded once below)
    d_spread = (np.empty_like(s) if same else np.empty(s.shape)) if grad else None
    for b in blocks:
        kept = slice(b.start * row, b.stop * row)  # the block's elements
        block_loss = None
        if value:  # formed in place where kept in the working dtype, else rounded once
            block_loss = reduced.buffer(kept, np.empty(x[b].size, x.dtype))
        block_loss, di, ds = _likelihood_terms(
            x[b],
            y[b],
            s[b],
            eps,
            full,
            spec,
            None if block_loss is None else block_loss.reshape(x[b].shape),
            None if d_input is None else d_input[b],
            None if d_spread is None or not same else d_spread[b],
        )
        if value:
            reduced.add(block_loss.reshape(-1), kept)
        if grad:  # scaled in place, in the working dtype (rounded once below)
            scale_grad(di, di.shape, reduction, di.dtype, count=x.size, in_place=True)
            if same:
                scale_grad(ds, ds.shape, reduction, ds.dtype, count=x.size, in_place=True)
            else:
                d_spread[b] = _broadcast_spread_grad(x[b], y[b], s[b], eps, spec, reduction, x.size)
    if value:
        loss = reduced.result(shape)
    if grad:
        grads = (
            to_dtype(d_input.reshape(shape), grad_dtype(input, dtype)),
            to_dtype(d_spread.reshape(s.shape if not same else shape), grad_dtype(spread, dtype)),
        )
    return loss, grads


def _gaussian_value(r, v, q, out):
    """(log v + r^2/v) / 2; r * (r / v) rather than r^2 / v: no overflow of r^2 when r^2 / v
    is finite."""
    np.log(v, out=out)
    out += np.multiply(r, q)
    out *= 0.5
    return out


def _gaussian_var_slope(r, v, q, out=None):
    """(1 - r^2/v) / (2 v) and r^2/v: a few ULP wherever r^2/v is outside [1/2, 4] (measured
    against exact arithmetic; 0.5 (1/v - q^2) was 5 ULP off at r^2/v = 16)."""
    t = np.multiply(r, q)
    d_var = np.subtract(1, t, out=np.empty(t.shape, t.dtype) if out is None else out)
    d_var /= v
    d_var *= 0.5  # exact (a power of 2)
    return d_var, t


def _gaussian_var_exact(v, x, y, dtype):
    """(v - r^2) / (2 v^2) from the exact r^2 (Dekker's product of the exact residual)."""
    g = relative_gap_of_difference(v, x, y, dtype)
    g *= 0.5
    return g


def _gaussian_input_slope(r, v, q, out):
    """r / v (``q`` if it was formed)."""
    if q is None:
        return np.divide(r, v, out=out)
    np.copyto(out, q)
    return out


def _gaussian_huge(h, v):
    """Loss (no constant), d/dinput and d/dvar from ``h = r / 2``: with ``q = h / v``,
    ``log(v) / 2 + 2 h q``, ``2 q`` and ``1 / (2 v) - 2 q^2``, and where they apply:
    ``h q >= 16`` (``r^2 / v >= 64``: ``1 / (2 v)`` is at most 1/64 of ``2 q^2``, whose two
    roundings and the difference's keep it within 2 ULP)."""
    q = h / v
    hq = h * q
    return 0.5 * np.log(v) + 2 * hq, 2 * q, 0.5 / v - 2 * (q * q), hq >= 16


# positional: quotient, value, input_slope, plain, exact, low, high, constant, huge
_GAUSSIAN = _Spread(
    np.divide,
    _gaussian_value,
    _gaussian_input_slope,
    _gaussian_var_slope,
    _gaussian_var_exact,
    0.5,
    4.0,
    0.5 * _LOG_2PI,
    _gaussian_huge,
    gap_parts=gap_to_square_parts,
    gap_divisor=2.0,
)


def _abs_quotient(r, b):
    q = np.abs(r)
    q /= b
    return q


def _laplace_value(r, b, q, out):
    """log b + |r| / b."""
    np.log(b, out=out)
    out += q
    return out


def _laplace_input_slope(r, b, q, out):
    """sign(r) / b."""
    np.sign(r, out=out)
    out /= b
    return out


def _laplace_scale_slope(r, b, q, out=None):
    """(1 - |r|/b) / b and |r|/b (``q``)."""
    d_scale = np.subtract(1, q, out=np.empty(q.shape, q.dtype) if out is None else out)
    d_scale /= b
    return d_scale, q


def _laplace_huge(h, b):
    """Loss (no constant), d/dinput and d/dscale from ``h = r / 2``, for every ratio: with
    ``a = |h|`` and ``q = a / b``, ``log b + 2 q``, ``sign(h) / b`` and ``(1 - 2 q) / b``,
    within 2 ULP where ``q > 1`` (``2 q - 1`` then loses at most a factor 2 to the
    cancellation); where ``q <= 1`` (``|r|`` just beyond the largest float, ``b`` near it)
    the last is ``2 (b / 2 - a) / b / b``, whose difference is exact (Sterbenz,
    ``b / 4 <= a <= b``) or does not cancel (for a normal ``b``; a subnormal one has no
    exact half, and its ``1 / b`` overflows anyway)."""
    a = np.abs(h)
    q = a / b
    d_scale = (1 - 2 * q) / b
    near = (q <= 1) & (b >= 4 * np.finfo(b.dtype).tiny)  # (b / 2 exact: b normal)
    if np.any(near):
        bn = b[near]
        d_scale[near] = 2 * ((bn / 2 - a[near]) / bn) / bn
    return np.log(b) + 2 * q, np.sign(h) / b, d_scale, np.ones(q.shape, bool)


# (b - |r|) / b^2 where it cancels (|r| / b in [1/2, 2]), from the exact |r|; the formula is
# within 3.4 ULP outside (measured against exact arithmetic). The exact form is within 2 ULP
# for every ratio and costs what the formula and the selection cost: used on every element
# of a scale of the input's shape
_LAPLACE = _Spread(
    _abs_quotient,
    _laplace_value,
    _laplace_input_slope,
    _laplace_scale_slope,
    abs_gap_of_difference,
    0.5,
    2.0,
    _LOG_2,
    _laplace_huge,
    exact_everywhere=True,
    gap_parts=gap_to_abs_parts,
)


def _gaussian(input, target, var, full, eps, reduction, *, value=True, grad=True):
    """``(loss or None, (d_input, d_var) or None)`` of :func:`gaussian_nll_loss`, one pass."""
    return _likelihood_loss(input, target, var, "var", eps, full, reduction, _GAUSSIAN, value, grad)


def _laplace(input, target, scale, full, eps, reduction, *, value=True, grad=True):
    """``(loss or None, (d_input, d_scale) or None)`` of :func:`laplace_nll_loss`, one pass."""
    return _likelihood_loss(
        input, target, scale, "scale", eps, full, reduction, _LAPLACE, value, grad
    )


@dataclass(frozen=True)
class _Kernel:
    """A loss of the residual alone, on one block of residuals ``r`` at a time.

    ``value(r, out)`` writes the per-element losses into ``out``, ``slope(r, out)`` the
    derivatives d loss / d r divided by ``factor`` (working dtype; ``r`` is not modified).
    A power-of-two ``factor`` is applied after the mean's ``1/size``: the same bits, but a
    gradient ``2 r / size`` that is finite is not lost to an overflow of ``2 r``.
    """

    value: object
    slope: object
    factor: int = 1
    shares: object = None  # for values that are squares: _reduction.square_shares


def _residual_loss(input, target, reduction, kernel: _Kernel, value=True, grad=True):
    """``(loss or None, gradient or None)`` of a residual loss, in one pass over the data.

    The residual ``r = input - target`` is formed block by block (cache-sized, in the
    working dtype) and feeds the loss and the gradient of that block while it is in
    cache; the per-element results are the only full-size arrays. The gradient of the
    mean is scaled in place by ``1/size`` (bit for bit ``grad * reduction_scale``).
    """
    check_reduction(reduction)
    x, y = _floats({"input": input, "target": target})
    check_same_shape(x, y, "input", "target")
    dtype, work = x.dtype, working_dtype(x.dtype)
    xf, yf = (np.reshape(a.astype(work, copy=False), -1) for a in (x, y))
    # a reduced loss is summed block by block: no full-size array of per-element losses
    reduced = BlockReduction(reduction, xf.size, dtype) if value else None
    d = np.empty_like(xf) if grad else None
    r, scratch = (np.empty(min(xf.size, CHUNK), work) for _ in range(2))
    scale = reduction_scale(xf.size, reduction, work)  # (in the loop: no call per block)
    for block in chunks(xf.size):
        n = block.stop - block.start
        rb = r[:n]
        np.subtract(xf[block], yf[block], out=rb)
        if value:
            values = reduced.buffer(block, scratch[:n])  # in place where kept in work's dtype
            kernel.value(rb, values)
            shares = None if kernel.shares is None else functools.partial(kernel.shares, rb)
            reduced.add(values, block, shares)  # rounded once
        if grad:
            kernel.slope(rb, d[block])
            if reduction == "mean":
                d[block] *= scale
            if kernel.factor != 1:
                d[block] *= kernel.factor
    loss = reduced.result(x.shape) if value else None
    if grad:
        d = to_dtype(d.reshape(x.shape), grad_dtype(input, dtype))
    return loss, d


def _square_into(r, out):
    np.multiply(r, r, out=out)


_mse = _Kernel(_square_into, lambda r, out: np.copyto(out, r), factor=2, shares=square_shares)
_l1 = _Kernel(lambda r, out: np.abs(r, out=out), lambda r, out: np.sign(r, out=out))


def _quadratic_then_linear(r, out, threshold, huber: bool):
    """``out`` = the Huber loss (``huber``) or the smooth L1 loss of one block of residuals.

    With ``a = |r|``: ``a^2 / 2`` or ``a^2 / (2 threshold)`` where ``a < threshold``, else
    ``threshold (a - threshold / 2)`` or ``a - threshold / 2``. Both branches are formed
    on the block (in cache), the quadratic one copied over where it applies: ``a * a`` may
    overflow on the linear side, where it is not used; ``a * (a / threshold)`` does not
    underflow for tiny ``a`` and ``threshold``.
    """
    a = np.abs(r)
    linear_side = a >= threshold  # NaN: the quadratic side, as before (NaN either way)
    quadratic = 0.5 * a
    quadratic *= a if huber else a / threshold
    linear = np.subtract(a, 0.5 * threshold, out=a)
    if huber:
        linear *= threshold
    out[...] = np.where(linear_side, linear, quadratic)


def _huber(delta) -> _Kernel:
    delta = check_positive_scalar(delta, "delta")
    return _Kernel(
        lambda r, out: _quadratic_then_linear(r, out, delta, huber=True),
        lambda r, out: np.clip(r, -delta, delta, out=out),
    )


def _smooth_l1(beta) -> _Kernel:
    beta = check_positive_scalar(beta, "beta", allow_zero=True)
    if beta == 0:
        return _l1

    def slope(r, out):
        np.clip(r, -beta, beta, out=out)
        out /= beta

    return _Kernel(lambda r, out: _quadratic_then_linear(r, out, beta, huber=False), slope)


_LOG_COSH = _Kernel(log_cosh_into, lambda r, out: np.tanh(r, out=out))


@quiet
def mse_loss(input, target, reduction="mean"):
    r"""Mean squared error :math:`\ell(x, y) = (x - y)^2`.

    The negative log-likelihood of a Gaussian with unit variance, up to the
    factor 1/2 and an additive constant.

    Parameters
    ----------
    input : array_like
        Predictions :math:`x`.
    target : array_like
        Targets :math:`y`, the same shape as ``input``.
    reduction : {"mean", "sum", "none"}
        How the per-element losses are combined.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-element losses for ``"none"``.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric.

    Notes
    -----
    Equivalent to ``torch.nn.functional.mse_loss``. ``optax.l2_loss`` is
    :math:`\tfrac12 r^2`, half of this loss; ``optax.squared_error`` is this
    loss without reduction. See :cite:t:`bishop2006pattern`, section 1.2.5.

    Examples
    --------
    >>> float(mse_loss([1.0, 2.0, 3.0], [1.5, 2.0, 1.0]))
    1.4166666666666667
    """
    return _residual_loss(input, target, reduction, _mse, grad=False)[0]


@gradients_in_argument_dtypes("input")
@quiet
def mse_loss_grad(input, target, reduction="mean"):
    r"""Gradient of :func:`mse_loss` w.r.t. ``input``: :math:`2 (x - y)` per element.

    Divided by the number of elements for ``reduction="mean"``.

    Parameters
    ----------
    input, target, reduction
        As in :func:`mse_loss`.

    Returns
    -------
    ndarray
        The gradient, with ``input``'s shape and floating dtype.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric.

    Notes
    -----
    What ``torch.autograd`` gives for ``mse_loss``. See :cite:t:`bishop2006pattern`.

    Examples
    --------
    >>> mse_loss_grad([1.0, 2.0, 3.0], [1.5, 2.0, 1.0], reduction="sum").tolist()
    [-1.0, 0.0, 4.0]
    """
    return _residual_loss(input, target, reduction, _mse, value=False)[1]


@gradients_in_argument_dtypes("input")
@quiet
def mse_loss_value_and_grad(input, target, reduction="mean"):
    r"""``mse_loss`` and ``mse_loss_grad`` in one pass: the residual is formed once.

    Parameters
    ----------
    input, target, reduction
        Same as :func:`mse_loss`.

    Returns
    -------
    tuple
        ``(mse_loss(...), mse_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`mse_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = mse_loss_value_and_grad([1.0, 3.0], [1.5, 1.0], reduction="none")
    >>> value.round(6).tolist(), grad.round(6).tolist()
    ([0.25, 4.0], [-1.0, 4.0])
    """
    return _residual_loss(input, target, reduction, _mse)


@quiet
def l1_loss(input, target, reduction="mean"):
    r"""Mean absolute error :math:`\ell(x, y) = |x - y|`.

    The negative log-likelihood of a Laplace distribution with unit scale, up
    to an additive constant.

    Parameters
    ----------
    input : array_like
        Predictions :math:`x`.
    target : array_like
        Targets :math:`y`, the same shape as ``input``.
    reduction : {"mean", "sum", "none"}
        How the per-element losses are combined.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-element losses for ``"none"``.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric.

    Notes
    -----
    Equivalent to ``torch.nn.functional.l1_loss``; ``optax`` has no direct
    equivalent (``jnp.abs(x - y)``). See :cite:t:`hastie2009elements`, section 10.6.

    Examples
    --------
    >>> float(l1_loss([1.0, 2.0, 3.0], [1.5, 2.0, 1.0]))
    0.8333333333333334
    """
    return _residual_loss(input, target, reduction, _l1, grad=False)[0]


@gradients_in_argument_dtypes("input")
@quiet
def l1_loss_grad(input, target, reduction="mean"):
    r"""Gradient of :func:`l1_loss` w.r.t. ``input``: :math:`\operatorname{sign}(x - y)`.

    At the kink :math:`x = y` this is the subgradient 0, the value
    :math:`\operatorname{sign}(0) = 0` that PyTorch's autograd gives for ``abs``.
    Divided by the number of elements for ``reduction="mean"``.

    Parameters
    ----------
    input, target, reduction
        As in :func:`l1_loss`.

    Returns
    -------
    ndarray
        The gradient, with ``input``'s shape and floating dtype.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric.

    Notes
    -----
    What ``torch.autograd`` gives for ``l1_loss``. See :cite:t:`hastie2009elements`.

    Examples
    --------
    >>> l1_loss_grad([1.0, 2.0, 3.0], [1.5, 2.0, 1.0], reduction="sum").tolist()
    [-1.0, 0.0, 1.0]
    """
    return _residual_loss(input, target, reduction, _l1, value=False)[1]


@gradients_in_argument_dtypes("input")
@quiet
def l1_loss_value_and_grad(input, target, reduction="mean"):
    r"""``l1_loss`` and ``l1_loss_grad`` in one pass: the residual is formed once.

    Parameters
    ----------
    input, target, reduction
        Same as :func:`l1_loss`.

    Returns
    -------
    tuple
        ``(l1_loss(...), l1_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`l1_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = l1_loss_value_and_grad([1.0, 3.0], [1.5, 1.0], reduction="none")
    >>> value.round(6).tolist(), grad.round(6).tolist()
    ([0.5, 2.0], [-1.0, 1.0])
    """
    return _residual_loss(input, target, reduction, _l1)


@quiet
def huber_loss(input, target, delta=1.0, reduction="mean"):
    r"""Huber loss: quadratic near zero, linear beyond ``delta``.

    .. math::

        \ell(r) = \begin{cases} \tfrac12 r^2 & |r| < \delta \\
        \delta \left(|r| - \tfrac12 \delta\right) & \text{otherwise} \end{cases}
        \qquad r = x - y.

    Parameters
    ----------
    input : array_like
        Predictions :math:`x`.
    target : array_like
        Targets :math:`y`, the same shape as ``input``.
    delta : float
        The positive, finite threshold :math:`\delta` between the two regimes.
    reduction : {"mean", "sum", "none"}
        How the per-element losses are combined.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-element losses for ``"none"``.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric, or ``delta`` is not a positive finite number.

    Notes
    -----
    Equivalent to ``torch.nn.functional.huber_loss`` and to
    ``optax.huber_loss(x, y, delta)``. For :math:`|r| < \delta` it equals
    ``optax.l2_loss`` (:math:`\tfrac12 r^2`, half of :func:`mse_loss`), and
    ``huber_loss / delta`` is :func:`smooth_l1_loss` with ``beta = delta``.
    See :cite:t:`huber1964robust`.

    Examples
    --------
    >>> huber_loss([0.5, 3.0], [0.0, 0.0], delta=1.0, reduction="none").tolist()
    [0.125, 2.5]
    """
    return _residual_loss(input, target, reduction, _huber(delta), grad=False)[0]


@gradients_in_argument_dtypes("input")
@quiet
def huber_loss_grad(input, target, delta=1.0, reduction="mean"):
    r"""Gradient of :func:`huber_loss` w.r.t. ``input``: :math:`\mathrm{clip}(r, -\delta, \delta)`.

    That is :math:`r` for :math:`|r| < \delta` and :math:`\delta\,\operatorname{sign}(r)`
    otherwise (continuous, so there is no kink to choose a subgradient at).
    Divided by the number of elements for ``reduction="mean"``.

    Parameters
    ----------
    input, target, delta, reduction
        As in :func:`huber_loss`.

    Returns
    -------
    ndarray
        The gradient, with ``input``'s shape and floating dtype.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric, or ``delta`` is not a positive finite number.

    Notes
    -----
    What ``torch.autograd`` gives for ``huber_loss``. See :cite:t:`huber1964robust`.

    Examples
    --------
    >>> huber_loss_grad([0.5, 3.0, -4.0], [0.0, 0.0, 0.0], reduction="sum").tolist()
    [0.5, 1.0, -1.0]
    """
    return _residual_loss(input, target, reduction, _huber(delta), value=False)[1]


@gradients_in_argument_dtypes("input")
@quiet
def huber_loss_value_and_grad(input, target, delta=1.0, reduction="mean"):
    r"""``huber_loss`` and ``huber_loss_grad`` in one pass: the residual is formed once.

    Parameters
    ----------
    input, target, delta, reduction
        Same as :func:`huber_loss`.

    Returns
    -------
    tuple
        ``(huber_loss(...), huber_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`huber_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = huber_loss_value_and_grad([0.5, 3.0], [0.0, 0.0], reduction="none")
    >>> value.round(6).tolist(), grad.round(6).tolist()
    ([0.125, 2.5], [0.5, 1.0])
    """
    return _residual_loss(input, target, reduction, _huber(delta))


@quiet
def smooth_l1_loss(input, target, beta=1.0, reduction="mean"):
    r"""Smooth L1 loss (Fast R-CNN): quadratic below ``beta``, then :math:`|r|` shifted.

    .. math::

        \ell(r) = \begin{cases} \tfrac12 r^2 / \beta & |r| < \beta \\
        |r| - \tfrac12 \beta & \text{otherwise} \end{cases}
        \qquad r = x - y,

    so that ``smooth_l1_loss(beta=b) == huber_loss(delta=b) / b``. With
    ``beta=0`` it is exactly :func:`l1_loss` (as in PyTorch, which then calls
    ``l1_loss``).

    Parameters
    ----------
    input : array_like
        Predictions :math:`x`.
    target : array_like
        Targets :math:`y`, the same shape as ``input``.
    beta : float
        The non-negative, finite threshold :math:`\beta`.
    reduction : {"mean", "sum", "none"}
        How the per-element losses are combined.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-element losses for ``"none"``.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric, or ``beta`` is not a non-negative finite number.

    Notes
    -----
    Equivalent to ``torch.nn.functional.smooth_l1_loss``. ``optax`` has no
    separate function: use ``optax.huber_loss(x, y, delta=beta) / beta``.
    See :cite:t:`girshick2015fast`.

    Examples
    --------
    >>> smooth_l1_loss([0.5, 3.0], [0.0, 0.0], beta=2.0, reduction="none").tolist()
    [0.0625, 2.0]
    """
    return _residual_loss(input, target, reduction, _smooth_l1(beta), grad=False)[0]


@gradients_in_argument_dtypes("input")
@quiet
def smooth_l1_loss_grad(input, target, beta=1.0, reduction="mean"):
    r"""Gradient of :func:`smooth_l1_loss` w.r.t. ``input``: :math:`\mathrm{clip}(r/\beta, -1, 1)`.

    With ``beta=0`` it is the gradient of :func:`l1_loss`,
    :math:`\operatorname{sign}(r)` with the PyTorch subgradient 0 at :math:`r = 0`.
    Divided by the number of elements for ``reduction="mean"``.

    Parameters
    ----------
    input, target, beta, reduction
        As in :func:`smooth_l1_loss`.

    Returns
    -------
    ndarray
        The gradient, with ``input``'s shape and floating dtype.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric, or ``beta`` is not a non-negative finite number.

    Notes
    -----
    What ``torch.autograd`` gives for ``smooth_l1_loss``. See :cite:t:`girshick2015fast`.

    Examples
    --------
    >>> smooth_l1_loss_grad([0.5, 3.0], [0.0, 0.0], beta=2.0, reduction="sum").tolist()
    [0.25, 1.0]
    """
    return _residual_loss(input, target, reduction, _smooth_l1(beta), value=False)[1]


@gradients_in_argument_dtypes("input")
@quiet
def smooth_l1_loss_value_and_grad(input, target, beta=1.0, reduction="mean"):
    r"""``smooth_l1_loss`` and ``smooth_l1_loss_grad`` in one pass: the residual is formed once.

    Parameters
    ----------
    input, target, beta, reduction
        Same as :func:`smooth_l1_loss`.

    Returns
    -------
    tuple
        ``(smooth_l1_loss(...), smooth_l1_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`smooth_l1_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = smooth_l1_loss_value_and_grad(
    ...     [0.5, 3.0], [0.0, 0.0], beta=2.0, reduction="none")
    >>> value.round(6).tolist(), grad.round(6).tolist()
    ([0.0625, 2.0], [0.25, 1.0])
    """
    return _residual_loss(input, target, reduction, _smooth_l1(beta))


@quiet
def log_cosh_loss(input, target, reduction="mean"):
    r"""Log-cosh loss :math:`\ell(r) = \log\cosh(r)`, :math:`r = x - y`, accurate for all :math:`r`.

    It behaves like :math:`\tfrac12 r^2` near zero and like :math:`|r| - \log 2`
    far out. The textbook ``log(cosh(r))`` overflows for :math:`|r| > 710`, and
    :math:`|r| + \operatorname{log1p}(e^{-2|r|}) - \log 2` cancels near 0, so
    with :math:`a = |r|` this evaluates

    .. math::

        \log\cosh a = \begin{cases}
        \operatorname{log1p}\!\left(2 \sinh^2(a/2)\right) & a < 1 \\
        (a - \log 2) + \operatorname{log1p}(e^{-2a}) & a \ge 1,
        \end{cases}

    using :math:`\cosh a - 1 = 2\sinh^2(a/2)`; both branches are within a few
    ULP of the exact value (checked against mpmath in the tests).

    Parameters
    ----------
    input : array_like
        Predictions :math:`x`.
    target : array_like
        Targets :math:`y`, the same shape as ``input``.
    reduction : {"mean", "sum", "none"}
        How the per-element losses are combined.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-element losses for ``"none"``.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric.

    Notes
    -----
    Equivalent to ``optax.log_cosh(x, y)`` (without reduction); PyTorch has no
    built-in. It is the negative log-likelihood of the hyperbolic secant
    distribution up to a constant. See :cite:t:`saleh2022statistical`.

    Examples
    --------
    >>> log_cosh_loss([0.5, 1.0, 1000.0], [0.0, 0.0, 0.0], reduction="none").round(6).tolist()
    [0.120115, 0.433781, 999.306853]
    """
    return _residual_loss(input, target, reduction, _LOG_COSH, grad=False)[0]


@gradients_in_argument_dtypes("input")
@quiet
def log_cosh_loss_grad(input, target, reduction="mean"):
    r"""Gradient of :func:`log_cosh_loss` w.r.t. ``input``: :math:`\tanh(x - y)`.

    Divided by the number of elements for ``reduction="mean"``.

    Parameters
    ----------
    input, target, reduction
        As in :func:`log_cosh_loss`.

    Returns
    -------
    ndarray
        The gradient, with ``input``'s shape and floating dtype.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric.

    Notes
    -----
    What ``jax.grad`` gives for ``optax.log_cosh``. See :cite:t:`saleh2022statistical`.

    Examples
    --------
    >>> log_cosh_loss_grad([0.0, 1.0, 1000.0], [0.0, 0.0, 0.0], reduction="sum").round(6).tolist()
    [0.0, 0.761594, 1.0]
    """
    return _residual_loss(input, target, reduction, _LOG_COSH, value=False)[1]


@gradients_in_argument_dtypes("input")
@quiet
def log_cosh_loss_value_and_grad(input, target, reduction="mean"):
    r"""``log_cosh_loss`` and ``log_cosh_loss_grad`` in one pass: the residual is formed once.

    Parameters
    ----------
    input, target, reduction
        Same as :func:`log_cosh_loss`.

    Returns
    -------
    tuple
        ``(log_cosh_loss(...), log_cosh_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`log_cosh_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = log_cosh_loss_value_and_grad([0.5, 1000.0], [0.0, 0.0], reduction="none")
    >>> value.round(6).tolist(), grad.round(6).tolist()
    ([0.120115, 999.306853], [0.462117, 1.0])
    """
    return _residual_loss(input, target, reduction, _LOG_COSH)


@quiet
def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    r"""Negative log-likelihood of a Gaussian with predicted mean and variance.

    .. math::

        \ell(x, y, v) = \tfrac12 \left(\log v_\epsilon + \frac{(x - y)^2}{v_\epsilon}\right)
        \;\left[+ \tfrac12 \log 2\pi \text{ if full}\right],
        \qquad v_\epsilon = \max(v, \epsilon).

    Parameters
    ----------
    input : array_like
        Predicted means :math:`x`.
    target : array_like
        Targets :math:`y`, the same shape as ``input``.
    var : array_like or float
        Predicted variances :math:`v \ge 0`: ``input``'s shape (heteroscedastic),
        or a shape that broadcasts to it with as many dimensions, some of them 1
        (``(..., 1)``: one variance per row; ``(N, 1, H, W)`` for an input
        ``(N, C, H, W)``: one per pixel, shared by the channels), or a scalar.
        A negative entry is an error.
    full : bool
        Include the constant :math:`\tfrac12 \log 2\pi`.
    eps : float
        Non-negative floor for the variance, for stability.
    reduction : {"mean", "sum", "none"}
        How the per-element losses are combined (the mean is over all
        elements of ``input``).

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-element losses (``input``'s shape) for ``"none"``.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three; ``target``'s shape differs from ``input``'s;
        an argument is not real numeric; ``var`` has a negative entry or a shape that does not
        broadcast to ``input``'s with as many dimensions; ``eps`` is not a non-negative
        finite number; or ``full`` is not a bool.

    Notes
    -----
    Equivalent to ``torch.nn.functional.gaussian_nll_loss``, with one
    difference: PyTorch also accepts a ``var`` one dimension short of
    ``input`` and unsqueezes it; here pass ``var[..., None]`` (NumPy aligns a
    shorter shape with the last axes, so it would broadcast along the wrong
    axis: every shape with fewer dimensions than ``input`` is refused, except a
    single value).
    With a fixed variance the loss is :func:`mse_loss` / (2 v) plus a constant.
    Learning the variance is due to :cite:t:`nix1994estimating`; see also
    :cite:t:`bishop2006pattern`, section 1.2.4.

    Accuracy: each term is computed to a few ULP, so the result is within a few
    ULP of :math:`\tfrac12(|\log v| + r^2/v)`; where the two terms nearly cancel
    (small :math:`v` with :math:`r^2/v \approx -\log v`) the relative error grows
    with that cancellation, which is intrinsic to the problem (the result is
    exact for inputs perturbed by a few ULP). Away from cancellation it is
    within a few ULP.

    Examples
    --------
    >>> gaussian_nll_loss([0.0, 1.0], [1.0, 1.0], [1.0, 0.5], reduction="none").round(6).tolist()
    [0.5, -0.346574]
    """
    return _gaussian(input, target, var, full, eps, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input", "var")
@quiet
def gaussian_nll_loss_grad(input, target, var, full=False, eps=1e-6, reduction="mean"):
    r"""Gradient of :func:`gaussian_nll_loss` w.r.t. ``input`` and ``var``.

    Per element, with :math:`r = x - y` and :math:`v_\epsilon = \max(v, \epsilon)`:

    .. math::

        \frac{\partial \ell}{\partial x} = \frac{r}{v_\epsilon}, \qquad
        \frac{\partial \ell}{\partial v} = \frac12\left(\frac{1}{v_\epsilon}
        - \frac{r^2}{v_\epsilon^2}\right).

    The variance gradient is this formula **also where the floor is active**
    (:math:`v < \epsilon`): it is evaluated at :math:`v_\epsilon = \epsilon`,
    not set to zero. This is what PyTorch's autograd yields, because
    ``gaussian_nll_loss`` clones ``var`` and clamps the clone in place under
    ``torch.no_grad()``: the clamp is not recorded, so the gradient flows
    through the clone unchanged (a straight-through floor). A ``var`` with
    dimensions of 1 or a scalar gets the gradient summed over the elements it was
    broadcast to. Divided by the number of elements for ``reduction="mean"``.

    Accuracy: within 4 ULP entry by entry, also at the optimum :math:`r^2 = v_\epsilon`,
    where the two terms of the variance gradient cancel: there (:math:`r^2/v_\epsilon` between
    1/16 and 16) it is evaluated as :math:`(v_\epsilon - r^2) / (2 v_\epsilon^2)` with
    :math:`r^2` formed exactly from the exact residual. A broadcast variance's gradient, a
    sum whose terms cancel at the variance's optimum, is within 4 ULP there too: each
    element's :math:`v_\epsilon - r^2` in exact parts, summed to about :math:`2^{-150}` of
    their magnitudes (float64) and divided once.

    Parameters
    ----------
    input, target, var, full, eps, reduction
        As in :func:`gaussian_nll_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_input, d_var)``, each with its argument's shape and floating dtype
        (a Python-number ``var`` gets the dtype of the loss).

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three; ``target``'s shape differs from ``input``'s;
        an argument is not real numeric; ``var`` has a negative entry or a shape that does not
        broadcast to ``input``'s with as many dimensions; ``eps`` is not a non-negative
        finite number; or ``full`` is not a bool.

    Notes
    -----
    See :cite:t:`nix1994estimating`.

    Examples
    --------
    >>> g_input, g_var = gaussian_nll_loss_grad([0.0, 1.0], [1.0, 1.0], 0.5, reduction="sum")
    >>> g_input.tolist(), float(g_var)
    ([-2.0, 0.0], 0.0)
    """
    return _gaussian(input, target, var, full, eps, reduction, value=False)[1]


@gradients_in_argument_dtypes("input", "var")
@quiet
def gaussian_nll_loss_value_and_grad(input, target, var, full=False, eps=1e-6, reduction="mean"):
    r"""``gaussian_nll_loss`` and ``gaussian_nll_loss_grad`` in one pass: the loss and its gradient.

    The residual and the floored variance are formed once and feed both.

    Parameters
    ----------
    input, target, var, full, eps, reduction
        Same as :func:`gaussian_nll_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_input, d_var))``: bit for bit ``gaussian_nll_loss(...)`` and
        ``gaussian_nll_loss_grad(...)``.

    Raises
    ------
    ValueError
        As :func:`gaussian_nll_loss`.

    Examples
    --------
    >>> args = ([0.0, 1.0], [1.0, 1.0], [1.0, 0.5])
    >>> loss, (g_input, g_var) = gaussian_nll_loss_value_and_grad(*args)
    >>> bool(loss == gaussian_nll_loss(*args)), g_input.tolist(), g_var.tolist()
    (True, [-0.5, 0.0], [0.0, 0.5])
    """
    return _gaussian(input, target, var, full, eps, reduction)


@quiet
def laplace_nll_loss(input, target, scale, full=False, eps=1e-6, reduction="mean"):
    r"""Negative log-likelihood of a Laplace distribution with predicted location and scale.

    .. math::

        \ell(x, y, b) = \log b_\epsilon + \frac{|x - y|}{b_\epsilon}
        \;\left[+ \log 2 \text{ if full}\right],
        \qquad b_\epsilon = \max(b, \epsilon).

    Parameters
    ----------
    input : array_like
        Predicted locations :math:`x`.
    target : array_like
        Targets :math:`y`, the same shape as ``input``.
    scale : array_like or float
        Predicted scales :math:`b \ge 0`: ``input``'s shape, a shape that
        broadcasts to it with as many dimensions, or a scalar (the shapes ``var``
        takes in :func:`gaussian_nll_loss`). A negative entry is an error.
    full : bool
        Include the constant :math:`\log 2`.
    eps : float
        Non-negative floor for the scale, for stability.
    reduction : {"mean", "sum", "none"}
        How the per-element losses are combined.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-element losses (``input``'s shape) for ``"none"``.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric, ``scale`` has a negative entry or a shape that does
        not broadcast to ``input``'s with as many dimensions, ``eps`` is not a non-negative
        finite number, or ``full`` is not a bool.

    Notes
    -----
    PyTorch and optax have no built-in; it is the Laplace analogue of
    ``torch.nn.functional.gaussian_nll_loss`` (same shape rules, same clamp).
    With a fixed scale it is :func:`l1_loss` / b plus a constant. See
    :cite:t:`murphy2022probabilistic`. Accuracy as in :func:`gaussian_nll_loss`:
    a few ULP of :math:`|\log b| + |r|/b`, so a few ULP of the result away from
    cancellation of the two terms.

    Examples
    --------
    >>> laplace_nll_loss([0.0, 1.0], [1.0, 1.0], [1.0, 0.5], reduction="none").round(6).tolist()
    [1.0, -0.693147]
    """
    return _laplace(input, target, scale, full, eps, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input", "scale")
@quiet
def laplace_nll_loss_grad(input, target, scale, full=False, eps=1e-6, reduction="mean"):
    r"""Gradient of :func:`laplace_nll_loss` w.r.t. ``input`` and ``scale``.

    Per element, with :math:`r = x - y` and :math:`b_\epsilon = \max(b, \epsilon)`:

    .. math::

        \frac{\partial \ell}{\partial x} = \frac{\operatorname{sign}(r)}{b_\epsilon}, \qquad
        \frac{\partial \ell}{\partial b} = \frac{1}{b_\epsilon} - \frac{|r|}{b_\epsilon^2}.

    At :math:`r = 0` the input gradient is the subgradient 0 (PyTorch's
    :math:`\operatorname{sign}(0) = 0` for ``abs``). Where the floor is active
    (:math:`b < \epsilon`) the scale gradient is the formula at
    :math:`b_\epsilon = \epsilon`, not zero: the straight-through floor of
    PyTorch's ``gaussian_nll_loss`` (a clamp under ``torch.no_grad()``), applied
    the same way. A scale with dimensions of 1 or a scalar gets the gradient
    summed over the elements it was broadcast to. Divided by the number of
    elements for ``reduction="mean"``.

    Accuracy: within 4 ULP entry by entry, also at the optimum :math:`|r| = b_\epsilon`, where
    the scale gradient is evaluated as :math:`(b_\epsilon - |r|) / b_\epsilon^2` from the exact
    residual; a broadcast scale's gradient (a sum whose terms cancel at the scale's
    optimum) from each element's :math:`b_\epsilon - |r|` exactly, summed to about
    :math:`2^{-150}` of their magnitudes (float64) and divided once: within 4 ULP there too.

    Parameters
    ----------
    input, target, scale, full, eps, reduction
        As in :func:`laplace_nll_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_input, d_scale)``, each with its argument's shape and floating dtype.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``target``'s shape differs from ``input``'s,
        or an argument is not real numeric, ``scale`` has a negative entry or a shape that does
        not broadcast to ``input``'s with as many dimensions, ``eps`` is not a non-negative
        finite number, or ``full`` is not a bool.

    Notes
    -----
    See :cite:t:`murphy2022probabilistic`.

    Examples
    --------
    >>> g_input, g_scale = laplace_nll_loss_grad([0.0, 3.0], [1.0, 1.0], 2.0, reduction="sum")
    >>> g_input.tolist(), float(g_scale)
    ([-0.5, 0.5], 0.25)
    """
    return _laplace(input, target, scale, full, eps, reduction, value=False)[1]


@gradients_in_argument_dtypes("input", "scale")
@quiet
def laplace_nll_loss_value_and_grad(input, target, scale, full=False, eps=1e-6, reduction="mean"):
    r"""``laplace_nll_loss`` and ``laplace_nll_loss_grad`` in one pass: the loss and its gradient.

    The residual and the floored scale are formed once and feed both.

    Parameters
    ----------
    input, target, scale, full, eps, reduction
        Same as :func:`laplace_nll_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_input, d_scale))``: bit for bit ``laplace_nll_loss(...)`` and
        ``laplace_nll_loss_grad(...)``.

    Raises
    ------
    ValueError
        As :func:`laplace_nll_loss`.

    Examples
    --------
    >>> args = ([0.0, 3.0], [1.0, 1.0], 2.0)
    >>> loss, grads = laplace_nll_loss_value_and_grad(*args, reduction="sum")
    >>> bool(loss == laplace_nll_loss(*args, reduction="sum")), float(grads[1])
    (True, 0.25)
    """
    return _laplace(input, target, scale, full, eps, reduction)


# Counts, heavy tails and quantiles: likelihoods beyond the Gaussian and the Laplace.
from . import _beyond_gaussian  # noqa: E402
from ._beyond_gaussian import *  # noqa: E402, F403  (public from here: one import path)

__all__ += _beyond_gaussian.__all__
