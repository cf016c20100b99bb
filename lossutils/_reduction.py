"""Reductions of per-element losses and the matching gradient scales, in one place (private).

``reduction`` is ``"mean"``, ``"sum"`` or ``"none"`` everywhere, and ``"batchmean"``
for ``kl_div``. The weighted mean of the class-index losses divides by the summed
weights of the samples that count. Each reduction has a gradient scale: the
derivative of the reduced loss with respect to one element's loss.

Every dtype is first-class. Sums are accumulated in float64 for float16 (a float16
sum of 2049 ones is 2048, and 65520 in float16 is inf), and in the loss's own dtype
otherwise, recomputed wider only if that overflows; the count or the weight total is
never cast to float16; the result is rounded once to the loss's dtype. So a mean
overflows only if the true mean does. A mean over zero elements (or over a zero
total weight) is NaN, silently, as in PyTorch; a sum over zero elements is 0.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from ._blocks import for_each_block
from ._numerics import (
    _cascaded_sum,
    _fast_two_sum,
    pairwise_sum_errors,
    scaled_dot,
    times,
    to_dtype,
    two_sum,
)


def accumulator(dtype) -> np.dtype:
    """The dtype sums of ``dtype`` values are accumulated in: float64 for float16."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float64) if dtype.itemsize < 4 else dtype


def total(values: np.ndarray):
    """The sum of all entries, in the accumulator dtype, without overflow in that dtype.

    A float32 sum that overflows is recomputed in float64 (where it cannot), so that the
    caller's division (a mean) overflows only if its result does.
    """
    acc = accumulator(values.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.sum(values, dtype=acc)
        # (inf, or NaN where partial sums of opposite signs overflowed: inf - inf)
        if not np.isfinite(out) and np.all(np.isfinite(values)):
            out = np.sum(values, dtype=np.float64) if acc.itemsize < 8 else _frame_total(values)
    return out


def _frame_total(values) -> np.float64:
    """The float64 sum of finite ``values`` whose plain sum overflowed in a partial sum
    (inf, or NaN where partial sums of opposite signs overflowed): summed scaled down by a
    power of 2 (:func:`_frame`) and scaled back, so that it is inf only where the exact
    sum is beyond the range."""
    k = _frame(np.size(values))
    with np.errstate(over="ignore"):
        return np.ldexp(_frame_sum(values, k), k)


def _frame(count) -> int:
    """The power of 2 that scales ``count`` finite terms (of any float dtype) down so that
    their sum cannot overflow: ``2^k >= 2 count``, so it stays below half the largest
    float64."""
    return int(count).bit_length() + 1


def _frame_sum(values, k) -> np.float64:
    """The float64 sum of ``values * 2^-k`` (each product exact, but where it would be
    below the smallest normal: a term lost there is below ``2^(k-1022)``, far below an
    overflowing sum's last place)."""
    with np.errstate(under="ignore"):
        return np.sum(np.ldexp(np.asarray(values, dtype=np.float64), -k), dtype=np.float64)


def _divided_first(values, count):
    """The mean ``sum(values) / count`` in float64 of finite values whose plain sum
    overflows (float64 ones only: :func:`total` sums narrower ones in float64, where they
    cannot): summed scaled down by a power of 2 (:func:`_frame`), divided by the count and
    scaled back, so that it is rounded about as a plain mean is (a few ULP) and overflows
    only if the mean does. (Each term divided by the count before the sum, three terms
    of the largest float gave inf: each quotient rounded up.) ``count`` may be a weights'
    total, below the number of values: the scaling takes the larger."""
    k = _frame(max(np.size(values), count))
    with np.errstate(over="ignore"):
        return np.ldexp(_frame_sum(values, k) / np.float64(count), k)


def square_shares(gaps: np.ndarray, count) -> np.float64:
    """``sum(gaps**2) / count`` in float64, overflowing only where it does: for a mean of
    squares whose squares overflow (a float32 square beyond 3.4e38, a float64 one beyond
    1.8e308) though the mean does not. The gaps are scaled by the power of 2 of the
    largest (exact; an entry below it by more than 2^1000 is lost, far below the sum's
    last place), squared and summed in float64, divided by ``count``, scaled back."""
    g = gaps.astype(np.float64)
    top = float(np.max(np.abs(g), initial=0.0))
    if not np.isfinite(top) or top == 0:
        return np.float64(top * top / count)
    e = math.frexp(top)[1]
    with np.errstate(under="ignore", over="ignore"):
        np.ldexp(g, -e, out=g)
        return np.ldexp(np.sum(np.square(g, out=g)) / np.float64(count), 2 * e)


def scaled_shares(values_at, count) -> np.float64:
    """``sum(values) / count`` in float64 where a block's values overflowed (a gap
    ``3e38 - -3e38`` in float32) though its inputs are finite: ``values_at(s)`` forms the
    values again (float64) from the inputs times ``s = 1/4`` (exact, float32 inputs
    included; below the largest float64 by half), each is divided by ``count`` before the
    sum, and the sum is scaled back; so that the mean overflows only where its exact value
    does. (Losses linear in their inputs: a hinge, the input itself.)"""
    k = _frame(count)
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        return np.ldexp(_frame_sum(values_at(0.25), k) / np.float64(count), k + 2)


def mean_past_the_range(values: np.ndarray, rows, scaled, k) -> np.float64:
    """The mean of float64 ``values`` whose entries ``rows`` are beyond float64's range
    (inf there), given as ``ldexp(scaled, k)``: the terms summed scaled down by a common
    power of 2 (no sum of them overflows there), divided by the count and scaled back, so
    that the mean overflows only where its exact value does."""
    count = values.size
    rest = np.delete(values.reshape(-1), rows)
    top = _frame(count) + max(k, 0)  # (2^top >= 2 count 2^k: neither sum overflows)
    with np.errstate(over="ignore"):
        sum_ = _frame_sum(rest, top) + _frame_sum(scaled, top - k)
        return np.ldexp(sum_ / np.float64(count), top)


def _mean(sum_, count, dtype):
    """``sum_ / count`` rounded once to ``dtype``; NaN for 0 / 0, silently."""
    dtype = np.dtype(dtype)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if dtype.itemsize < 8 or np.asarray(sum_).dtype.itemsize < 8:
            value = np.float64(sum_) / np.float64(count)
        else:
            value = sum_ / np.asarray(count, dtype=np.asarray(sum_).dtype)
    return to_dtype(value, dtype)[()]


def reduce(loss: np.ndarray, reduction: str):
    """Apply ``reduction`` to per-element losses; the result has ``loss``'s dtype.

    ``"none"`` returns ``loss`` itself. The mean of finite float64 terms whose sum
    overflows (squared errors near 1e154) is summed scaled down by a power of 2
    (:func:`_divided_first`), so it overflows only if the mean does.
    """
    if reduction == "none":
        return loss
    dtype = loss.dtype
    sum_ = total(loss)
    if reduction == "sum":
        return to_dtype(sum_, dtype)[()]
    if loss.size == 0:
        return dtype.type(np.nan)
    if np.isinf(sum_) and np.all(np.isfinite(loss)):  # float64 only (see total)
        return to_dtype(_divided_first(loss, loss.size), dtype)[()]
    return _mean(sum_, loss.size, dtype)


def reduce_to(loss, reduction: str, dtype):
    """:func:`reduce` the per-element losses (working dtype), then round once to ``dtype``.

    A 0-d result is a NumPy scalar of ``dtype``.
    """
    return to_dtype(reduce(np.asarray(loss), reduction), dtype)[()]


def weighted_reduce(
    loss: np.ndarray, weight_total, reduction: str, shape: tuple, scaled=None, factors=None
):
    """Reduce per-sample losses; the mean divides by ``weight_total`` (NaN when it is 0).

    ``weight_total`` is a count or a sum from :func:`total` (never rounded to float16);
    ``"none"`` returns the losses reshaped to ``shape``. A mean over a zero total is NaN
    whatever the summed losses (label smoothing gives a sample of weight 0 a nonzero loss:
    the sum over no weight is then not 0, and its quotient by 0 would be infinite).
    A mean whose sum of finite losses overflows is summed scaled down by a power of 2
    (:func:`_divided_first`), so that it overflows only if the mean does. ``scaled``, if
    given, returns the per-sample losses times their
    factors ``d(mean) / d(loss_i)`` (each weight divided by the total before it multiplies):
    that sum is then the mean also where a weighted loss itself overflows (a weight of 2
    on a loss of 1e308, twice, over a total of 4). ``factors``, if given, is the pair
    ``(w, v)`` whose products (:func:`~lossutils._numerics.times`) are the losses: a sum
    that is not finite though they are is formed again from them
    (:func:`~lossutils._numerics.scaled_dot`), so that it overflows only where it does
    (losses of both signs whose products overflowed to inf and -inf: NaN).
    """
    if reduction == "none":
        return loss.reshape(shape)[()]
    sum_ = total(loss)
    if reduction == "sum":
        if factors is not None and not np.isfinite(sum_):
            w, v = factors
            present = w != 0  # (a zero weight masks its element)
            w, v = w[present], v[present]
            if np.all(np.isfinite(w)) and np.all(np.isfinite(v)):
                s, k = scaled_dot(w, v)
                with np.errstate(over="ignore"):
                    sum_ = np.ldexp(s, k)
        return to_dtype(sum_, loss.dtype)[()]
    if weight_total == 0:
        return loss.dtype.type(np.nan)
    if np.isinf(sum_):  # finite weighted losses whose sum overflows: scaled down
        if np.all(np.isfinite(loss)):
            return to_dtype(_divided_first(loss, weight_total), loss.dtype)[()]
        if scaled is not None:
            return to_dtype(total(scaled()), loss.dtype)[()]
    return _mean(sum_, weight_total, loss.dtype)


def product_row_means(values: np.ndarray, weight, count, out: np.ndarray) -> np.ndarray:
    """``sum(weight * values, axis=-1) / count`` for each row, written into ``out``.

    ``weight`` (None: ones) has ``values``' shape; a zero weight masks its value
    (:func:`~lossutils._numerics.times`). A row whose sum is infinite though its weights and
    values are finite (a product or a partial sum overflowed: its mean may be finite) is
    summed again, scaled (:func:`~lossutils._numerics.scaled_dot`); checked after the plain
    sums, so other rows cost nothing more. A float64 ``out`` for float32 ``values`` keeps
    such a row's mean even beyond float32's range, for a reduction over the rows to round.
    """
    terms = values if weight is None else times(weight, values)
    with np.errstate(over="ignore", invalid="ignore"):  # (inf - inf: redone below)
        sums = np.sum(terms, axis=-1)
        np.divide(sums, count, out=out)
    over = np.flatnonzero(~np.isfinite(sums))  # (NaN: partial sums of opposite signs)
    if over.size:
        v, w = values[over], None if weight is None else weight[over]
        if w is not None:
            v = np.where(w == 0, 0, v).astype(values.dtype, copy=False)  # absent terms
        finite = np.all(np.isfinite(v), axis=-1)
        if w is not None:
            finite &= np.all(np.isfinite(w), axis=-1)
        s, k = scaled_dot(w, v, axis=-1)
        with np.errstate(over="ignore", invalid="ignore"):
            out[over[finite]] = np.ldexp(s / count, k)[finite]
    return out


def reduction_scale(size: int, reduction: str, dtype) -> np.floating:
    """d(reduced)/d(each element): ``1/size`` for the mean (NaN if empty), 1 otherwise.

    In ``dtype``; for float16 use :func:`scale_grad`, which never rounds the scale
    itself to float16 (``1/65520`` is subnormal there, with two significant bits).
    """
    dtype = np.dtype(dtype)
    if reduction == "mean":
        return dtype.type(np.nan) if size == 0 else dtype.type(1.0 / size)
    return dtype.type(1.0)


def batchmean_scale(shape: tuple, dtype) -> np.floating:
    """d(reduced)/d(each element) for ``"batchmean"``: 1 / (size of axis 0), NaN if 0."""
    n = shape[0]
    return np.dtype(dtype).type(np.nan) if n == 0 else np.dtype(dtype).type(1.0 / n)


def sum_to_shape(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a gradient computed at a broadcast shape back to an argument's ``shape``."""
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    return np.sum(grad, axis=_summed_axes(grad.shape, shape), keepdims=True).reshape(shape)


def _summed_axes(full: tuple, shape: tuple) -> tuple:
    """The axes of ``full`` an argument of ``shape`` was broadcast along."""
    lead = len(full) - len(shape)
    return tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and full[lead + i] != 1
    )


def sum_to_shape_parts(hi: np.ndarray, lows, tail, shape: tuple, narrow=False, parts=False):
    """:func:`sum_to_shape` of terms given in parts, float64, as a double-double ``(s, s_err)``
    of ``shape``: each term is ``hi`` plus the arrays ``lows`` (exact parts below 2^-52 of
    it) plus ``tail`` (None, or a rounded part below 2^-100 of it).

    ``hi`` is summed pairwise with every addition's rounding error kept
    (:func:`~lossutils._numerics.pairwise_sum_errors`); those errors and the ``lows`` are
    summed again so (:func:`~lossutils._numerics.accurate_sum`), the rest plainly: within
    about ``2^-150`` of the sum of the terms' magnitudes, so a gradient whose terms cancel
    to an ULP of the largest (at the optimum of a broadcast variance) is within an ULP.
    Where no sum cancels that far, those errors and ``lows`` are summed plainly (within
    half an ULP of each sum, by its bound). With ``parts``, the sum as three arrays ``(s,
    s_lo, s_tail)``, ``s + s_lo`` exact (TwoSum) and ``s_tail`` below 2^-100 of ``s``: a
    partial sum (of a block of elements) that may cancel against others keeps all its
    digits, which a double-double would not (it is rounded to 2^-106 of itself); its
    errors and ``lows`` are then always summed again.
    ``narrow`` (a result rounded to float32 or narrower, whose terms cancel to about 2^-24
    of their magnitudes): the ``lows`` summed plainly, within about ``2^-100`` of that sum,
    at half the cost. Non-empty sums only.
    """
    shape = tuple(shape)
    axes = _summed_axes(hi.shape, shape)
    kept = [a for a in range(hi.ndim) if a not in axes]
    order = (*kept, *axes)
    rows = math.prod(hi.shape[a] for a in kept)

    def flat(a):
        return np.transpose(np.broadcast_to(a, hi.shape), order).reshape(rows, -1)

    with np.errstate(invalid="ignore", over="ignore"):
        if narrow:
            s, err = _cascaded_sum(flat(hi))
            s2 = sum(np.sum(flat(a), axis=-1) for a in lows)
        else:
            h = flat(hi)
            s, errors = pairwise_sum_errors(h)
            # the errors and lows summed plainly are within (log2(n)^2 + 3 log2(n) + 1)
            # 2^-106 of the terms' magnitudes: enough, and half the cost, unless the sum
            # cancels to below 2^10 of that (as at the optimum), where they are summed again
            s2 = np.sum(errors, axis=-1) + sum(np.sum(flat(a), axis=-1) for a in lows)
            err = np.zeros_like(s2)
            levels = math.log2(max(h.shape[-1], 2))
            bound = (levels * levels + 3 * levels + 1) * 2.0**-105
            # (a partial sum may cancel against others: never plainly)
            if parts or not np.all(np.abs(s + s2) >= bound * 2.0**53 * np.sum(np.abs(h), -1)):
                both = np.concatenate([errors, *(flat(a) for a in lows)], axis=-1)
                s2, err = _cascaded_sum(both)
        if tail is not None:
            err += np.sum(flat(tail), axis=-1)
        s, s2 = two_sum(s, s2)
        if parts:
            return s.reshape(shape), s2.reshape(shape), err.reshape(shape)
        s2 += err
        s, err = _fast_two_sum(s, s2)
    return s.reshape(shape), err.reshape(shape)


def scale_grad(
    local, shape: tuple, reduction: str, dtype, count=None, *, in_place=False
) -> np.ndarray:
    """The gradient of the reduced loss w.r.t. an argument of ``shape``, rounded once to
    ``dtype``, from ``local`` (d loss_i / d x_i): times the reduction's scale, then summed
    over the elements the argument was broadcast to.

    ``count`` is the divisor of the mean (default: the number of losses, the size of
    ``local`` broadcast with ``shape``). The result has ``shape`` (a smaller ``local`` is
    broadcast up to it, a larger one summed down) and is a new writeable array, or
    ``local`` itself when that already is one of the right shape and dtype. The product
    is formed in ``dtype`` (in float32 for float16) from ``local`` converted to it; with
    ``in_place``, in ``local``'s own dtype and in place (``local`` is then the caller's to
    overwrite, a float32 or float64 array of the working dtype: no copy).
    """
    dtype, shape, local = np.dtype(dtype), tuple(shape), np.asarray(local)
    full = shape if local.shape == shape else np.broadcast_shapes(local.shape, shape)
    if reduction == "mean":
        size = math.prod(full) if count is None else count
        if in_place:  # (a scale in (0, 1] cannot overflow; NaN only for no elements)
            local *= reduction_scale(size, reduction, local.dtype)
        else:
            work = np.dtype(np.float32) if dtype.itemsize < 4 else dtype
            scale = work.type(np.nan) if size == 0 else work.type(1.0 / size)
            with np.errstate(invalid="ignore", over="ignore"):  # (the conversion to work)
                local = scale * np.asarray(local, dtype=work)
    if full != shape:
        with np.errstate(invalid="ignore", over="ignore"):  # (a sum may overflow: inf)
            local = sum_to_shape(local, shape)
    out = to_dtype(local, dtype)
    if out.shape != shape or not out.flags.writeable:
        out = np.array(np.broadcast_to(out, shape), dtype=dtype)
    return out


def mean_shares(
    weight: np.ndarray | None, used: np.ndarray, classes: np.ndarray | None = None
) -> np.ndarray | None:
    """Class weights for a mean over their total, scaled by a power of 2: the largest of
    ``used`` (the weights that enter the mean) then lies in [1/2, 1), unless that makes
    the total a subnormal.

    Such a mean (cross-entropy's, the focal loss's) sees the weights only as shares
    ``w_i / sum w``, which an exact scaling leaves as they are, while the total, each
    weighted loss and each factor ``w_i / sum w`` keep their digits: six weights of
    1.08e308 made the total inf (the mean 0 and the gradient 0), and weights of 5e-324 made
    each weighted loss a subnormal (the mean 0). A weight the scaling makes subnormal has
    a share below ``2^-1020`` of the largest used one; one outside ``used`` (a class no
    sample has) that the scaling would take beyond the range is held at the largest float.
    Where ``used`` holds more than the weights of the counted samples' ``classes`` (label
    smoothing weighs every class, the total only the samples' own), the scaling stops
    where the largest of the samples' weights would become subnormal (and never scales up
    beyond both 1 and the largest as given): their total, and the factor ``1 / total``,
    stay finite and keep their digits (weights 0.001 and 1.7e38, float32, the samples all
    of the first class: the factor was inf). Infinite or NaN used weights, and used
    weights all 0, are left as they are (their mean is NaN).
    """
    if weight is None or used.size == 0:
        return weight
    largest = np.max(used)
    if not np.isfinite(largest) or largest <= 0:
        return weight
    exponent = int(np.frexp(largest)[1])
    lowest = np.finfo(weight.dtype).minexp + 1  # (frexp's exponent of the smallest normal)
    smallest = np.min(used, where=used > 0, initial=largest)
    if classes is not None and int(np.frexp(smallest)[1]) - exponent < lowest and classes.size:
        # (rare: only then are the samples' own weights gathered)
        own = int(np.frexp(np.max(weight[classes]))[1])
        exponent = max(min(exponent, own - lowest), min(exponent, 0))
    if exponent == 0:
        return weight
    with np.errstate(over="ignore"):  # (a class outside ``used`` may go beyond the range:
        scaled = np.ldexp(weight, -exponent).astype(weight.dtype)  # it is held at the top)
    return np.minimum(scaled, np.finfo(weight.dtype).max, out=scaled)


def sample_scale(coef: np.ndarray, valid, weight_total, reduction: str) -> np.ndarray:
    """Per-sample factor d(reduced)/d(loss_i) times ``coef``; exactly 0 for ignored samples.

    For the weighted mean the factor is ``1 / weight_total``; ``coef`` is divided by it in
    ``coef``'s dtype, which callers make at least float32. A mean over a zero total weight
    is NaN (:func:`weighted_reduce`), and so is every sample's factor that is not ignored.
    """
    if reduction == "mean":
        if weight_total == 0:
            coef = np.full_like(coef, np.nan)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            coef = coef / np.asarray(weight_total, dtype=coef.dtype)
    return np.where(valid, coef, 0).astype(coef.dtype, copy=False)


class BlockReduction:
    """:func:`reduce_to` of per-element losses that arrive block by block, never all at once.

    A loss that is reduced needs no full-size array of its per-element values: each block
    is passed to :meth:`add` while it is in cache and summed there by :func:`total` (with
    its overflow rule); the block totals are summed in float64. :meth:`result` is then
    what :func:`reduce_to` of all the values gives, up to the order of the summation: a
    sum or mean overflows only if the result does (a block whose total overflows though
    its values are finite also keeps the sum of its values divided by the count, for the
    mean); an empty mean is NaN. A mean may divide by a ``divisor`` other than the count.

    For ``"none"`` the values are kept instead, in one flat array of ``count`` values of
    ``dtype``: :meth:`add` writes a block into its place, rounded once to ``dtype``, and
    :meth:`result` returns them in the loss's shape. A kernel that can write its values
    straight into that array (no copy) asks :meth:`buffer` where to write them.
    """

    def __init__(self, reduction: str, count: int, dtype, divisor=None):
        self.reduction, self.count, self.dtype = reduction, count, np.dtype(dtype)
        # a mean's divisor: the count, or another (the batch size of kl_div's "batchmean")
        self.divisor = count if divisor is None else divisor
        self.values = np.empty(count, self.dtype) if reduction == "none" else None
        self.totals: list = []  # float64 block totals
        # per block where the total overflows: the sum of the values times 2^-frame (a
        # float), or that sum over the count, from ``shares`` (a 1-tuple)
        self.scaled: list = []
        self.frame = _frame(count)

    def buffer(self, block: slice, scratch: np.ndarray) -> np.ndarray:
        """Where to form ``block``'s values: their place in the result when they are kept
        and ``scratch`` has the result's dtype (:meth:`add` then copies nothing), else
        ``scratch``."""
        if self.values is not None and scratch.dtype == self.dtype:
            return self.values[block]
        return scratch

    def add(self, values: np.ndarray, block: slice | np.ndarray | None = None, shares=None) -> None:
        """Take the values of ``block`` (the elements they are, a slice or flat indices,
        needed for ``"none"``). ``shares``, if given, is called (with the count) where a
        mean's block total is infinite though the exact values may not be (squares that
        overflowed): it returns the sum of the exact values divided by the count, e.g.
        :func:`square_shares`."""
        if self.values is not None:
            if np.may_share_memory(values, self.values):
                return  # formed in place
            # rounded once; to inf silently, as by to_dtype (only a narrowing can overflow)
            narrowing = values.dtype.itemsize > self.dtype.itemsize
            with np.errstate(over="ignore") if narrowing else contextlib.nullcontext():
                self.values[block] = values
            return
        t = np.float64(total(values))
        scaled = None
        if np.isinf(t) and np.all(np.isfinite(values)):
            scaled = _frame_sum(values, self.frame)
        elif np.isinf(t) and shares is not None and self.reduction == "mean":
            scaled = (shares(self.count),)
        self.totals.append(t)
        self.scaled.append(scaled)

    def extend(self, other: BlockReduction) -> None:
        """Take ``other``'s blocks after this one's (blocks reduced apart, e.g. by threads)."""
        self.totals += other.totals
        self.scaled += other.scaled

    def result(self, shape: tuple = (-1,)):
        """The reduced loss, a NumPy scalar; for ``"none"`` the values in ``shape`` (a 0-d
        result is a NumPy scalar)."""
        if self.values is not None:
            return self.values.reshape(shape)[()]
        # (a sum of finite block totals is inf only if their exact sum is, see total)
        sum_ = total(np.array(self.totals, dtype=np.float64))
        if self.reduction != "sum" and self.divisor == 0:
            return self.dtype.type(np.nan)
        finite = all(
            np.isfinite(t) or s is not None for t, s in zip(self.totals, self.scaled, strict=True)
        )
        if np.isfinite(sum_) or not finite:
            return (
                to_dtype(sum_, self.dtype)[()]
                if self.reduction == "sum"
                else _mean(sum_, self.divisor, self.dtype)
            )
        # finite values whose sum overflows (inf, or NaN: blocks of opposite signs):
        # summed scaled down (a sum has no shares: each ``s`` is then a float)
        k, count = self.frame, np.float64(self.count)
        with np.errstate(over="ignore", under="ignore"):
            parts = [
                np.ldexp(t, -k)
                if s is None
                else np.ldexp(s[0], -k) * count  # (below 2^-k of count times the largest)
                if isinstance(s, tuple)
                else s
                for t, s in zip(self.totals, self.scaled, strict=True)
            ]
            scaled = np.sum(np.array(parts, dtype=np.float64))
            divisor = np.float64(self.divisor)
            value = np.ldexp(scaled if self.reduction == "sum" else scaled / divisor, k)
        return to_dtype(value, self.dtype)[()]


def for_each_span(function, total: BlockReduction | None, size: int, item_bytes: int = 8) -> None:
    """Call ``function(span, summed)`` for spans of ``range(size)`` of about a megabyte
    (``item_bytes`` per element), on up to two threads (:func:`for_each_block`).

    ``summed`` is ``total`` itself where it keeps the values (``"none"``: each span writes
    its own) or is None (no loss), else a new :class:`BlockReduction` of the span, whose
    blocks are added to ``total`` in the spans' order afterwards: the result does not
    depend on the threads.
    """
    keep = total is None or total.values is not None
    parts = {}

    def run(span: slice) -> None:
        summed = total if keep else BlockReduction(total.reduction, total.count, total.dtype)
        function(span, summed)
        if not keep:
            parts[span.start] = summed

    for_each_block(run, size, item_bytes)
    for first in sorted(parts):
        total.extend(parts[first])
