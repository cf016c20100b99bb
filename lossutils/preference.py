"""Preference losses: a Bernoulli likelihood of which of two responses is preferred.

Both losses are elementwise over a batch of comparisons: every array argument has
the batch's shape (no broadcasting), and ``reduction="none"`` returns one loss per
comparison. The margin of a comparison is a difference of differences (of scores, or
of log-probability ratios), which cancels; it is formed in float64 before the
log-sigmoid sees it: as a double-double number, for float64 inputs (and with label
smoothing), within 2^-66 absolute before the product with beta (see ``_MODERATE``) and
2^-76 relative after it, and
in plain float64 for float32 and float16 inputs, whose margins it holds to 2^-30
relative or better (the few that it could not are formed exactly). The result is
rounded once to the input's dtype. Evaluated in cache-sized blocks.
"""

from __future__ import annotations

import threading

import numpy as np

from . import _numerics as nx
from ._checks import (
    check_positive_scalar,
    check_reduction,
    check_same_shape,
    check_unit_interval_scalar,
    float_arrays,
    gradients_in_argument_dtypes,
)
from ._reduction import BlockReduction, for_each_span

__all__ = [
    "bradley_terry_loss",
    "bradley_terry_loss_grad",
    "bradley_terry_loss_value_and_grad",
    "dpo_loss",
    "dpo_loss_grad",
    "dpo_loss_value_and_grad",
]


# A float32 or float16 margin formed in plain float64 is within 3.01 * 2^-53 * S of the exact one,
# S = beta (|a - b| + |c - d|): the two differences, their difference and the product with beta
# round once each, and |margin| <= S. The loss, its smoothed term and sigma(-z) move by at most
# |dz| relative (d softplus(-z) / dz = -sigma(-z) and sigma(-z) <= softplus(-z); likewise for
# softplus(z) and sigma(+-z)), so below this S they are within 2^-30 relative, 1/64 of a float32
# ULP. Elements above it are formed exactly, and every float64 margin as a double-double:
# rounded once or twice, an ordinary margin (|z| near 1 or more) would cost the loss an ULP
# or two.
_PLAIN_SPREAD = 2.0**21

# Elements per block: the exact margins of four arrays and the loss keep fourteen float64
# buffers in use (they should stay in the caches); the others fewer, and fewer blocks cost
# less overhead (measured on 1e7 float64 comparisons: blocks of 2^14 about 10 % faster than
# 2^13). The buffers are made once per call and reused from block to block (new temporaries
# of these sizes for every block cost page faults: the allocator returns freed memory to the
# system).
_EXACT_BLOCK, _PLAIN_BLOCK = 1 << 14, 1 << 15


def _exact_margins(cols, beta: float, rows, rescue=True):
    """``(hi, lo, bound)``: float64 ``hi + lo`` = ``beta ((a - b) - (c - d))`` (or ``beta (a -
    b)``) of the float64 columns ``cols``, within 2^-66 absolute (the two differences:
    exact; see ``_MODERATE``) and about 2^-76 relative (the product with ``beta``, if not
    1), ``|lo| <= ulp(hi) / 2``; ``lo`` is 0 where ``hi`` is not finite or beyond ``1e300
    min(beta, 1)`` (``hi`` is then the plain float64 margin); ``bound`` is ``max |hi|``, inf
    if there is such an ``hi``. ``rows``: seven float64 buffers of the block's length (the
    results are two of them).

    With ``rescue``, such a margin whose inputs are finite (the differences may overflow
    where ``beta`` times them does not, or cancel, and ``lo`` counts) is formed again by
    :func:`_scaled_margins`, with its ``lo``."""
    rows = list(rows)  # the same array objects throughout: buffers are told apart by identity
    hi, lo, other, other_lo, work, spare, extra = rows
    nx.two_sum(cols[0], cols[1], minus=True, out=(hi, lo, work), quiet=True)
    if len(cols) == 4:
        nx.two_sum(cols[2], cols[3], minus=True, out=(other, other_lo, work), quiet=True)
        d = np.subtract(lo, other_lo, out=extra)  # (within 2^-66 where _moderate holds)
        low_err = None
        if not _moderate(d):  # kept exactly: it is the margin where h cancels
            d, low_err = nx.two_sum(lo, other_lo, minus=True, out=(extra, spare, work), quiet=True)
        h, err = nx.two_sum(hi, other, minus=True, out=(lo, other_lo, work), quiet=True)
        lo = np.add(d, err, out=d)
        # renormalized (where the differences cancel, lo can exceed h) by Fast2Sum, exact
        # here: where h = x - y cancels (x, y within a factor 2) it is exact, a multiple of
        # u = min(ulp(x), ulp(y)), and |lo| <= (ulp(x) + ulp(y)) / 2 <= 1.5 u; elsewhere
        # |lo| <= 2.5 ulp(h): either way h is 0 or its exponent is at least lo's
        np.add(h, lo, out=hi)
        np.subtract(hi, h, out=work)
        lo = np.subtract(lo, work, out=rows[1])
        if low_err is not None:
            lo += low_err  # (below 2^-52 of lo: a rounding of 2^-105 of the margin at most)
    if beta != 1:
        _times_beta(hi, lo, beta, (other, spare, work))
    # a margin beyond 1e300 min(beta, 1) (the differences, or beta times them, may be near
    # the overflow), or not finite (the error terms are NaN, and so is hi): there the plain
    # margin, and the scaled inputs give lo (two reductions, no pass that writes)
    limit = 1e300 * min(beta, 1.0)
    largest = _extent(hi)
    if largest < limit:
        return hi, lo, float(largest)
    out = np.flatnonzero(~(np.abs(hi) < limit))
    plain = np.subtract(cols[0][out], cols[1][out])
    if len(cols) == 4:
        plain -= np.subtract(cols[2][out], cols[3][out])
    hi[out], lo[out] = plain * beta, 0
    if rescue:
        redo, _ = nx.finite_entries(out, hi.shape, *cols)
        if redo.size:
            z, z_lo, _ = _scaled_margins(cols, beta, redo)
            z *= _UNSCALE
            z_lo *= _UNSCALE
            z_lo[~np.isfinite(z)] = 0
            hi[redo], lo[redo] = z, z_lo
    return hi, lo, np.inf


# The difference of the two differences' error terms, rounded, is within 2^-66 absolute
# where it is at most 2^-13 (differences below about 2^39): far below an ULP of the loss and
# of its gradient for every margin (a loss e^-z of a margin z > 36 is relatively off by
# that absolute error of z). Larger, where the differences cancel to the last bit, that
# rounding would be the margin's error (373 ULP of a loss of 6.6e-307 from
# log-probabilities of -3.7e21): it is then kept by a TwoSum.
_MODERATE = 2.0**-13


def _extent(x) -> float:
    """``max |x|`` (0 if empty; NaN with a NaN) by two reductions, no pass that writes."""
    return max(np.maximum.reduce(x, initial=0.0), -np.minimum.reduce(x, initial=0.0))


def _moderate(x) -> bool:
    """Whether every entry of ``x`` is within ``+-_MODERATE`` (False with a NaN)."""
    return bool(_extent(x) <= _MODERATE)


def _times_beta(hi, lo, beta: float, out) -> None:
    """``hi, lo = beta (hi + lo)`` in place, renormalized, within about 2^-76 relative, for
    ``|lo| <= ulp(hi) / 2``; ``out``: three buffers of their length.

    ``hi = t + g`` with ``t`` its 26 leading bits (a mask) and ``beta = b1 + b2`` likewise:
    ``b1 t`` and ``b2 t`` are exact (at most 53 bits each) and the rest, below 2^-24 of the
    product, rounds within 2^-76 of it: ten passes, where Dekker's product and a
    renormalization take twenty-two. ``b1 t`` is the larger part by far: Fast2Sum."""
    t, rest, work = out
    b1 = (np.float64(beta).view(np.int64) & nx._HIGH_BITS).view(np.float64)
    np.bitwise_and(hi.view(np.int64), nx._HIGH_BITS, out=t.view(np.int64))
    np.subtract(hi, t, out=rest)
    rest += lo
    rest *= beta
    rest += np.multiply(t, beta - b1, out=work)
    t *= b1
    np.add(t, rest, out=hi)
    np.subtract(hi, t, out=work)
    np.subtract(rest, work, out=lo)


# Inputs beyond 1e300 are scaled by 2^-64: exact (tiny inputs beside them lose bits below
# 2^-1010, nothing beside such margins), and neither their differences nor the margin times
# a moderate beta overflow or leave Dekker's product's domain.
_SCALE, _UNSCALE = 2.0**-64, 2.0**64


def _scaled_margins(cols, beta: float, index):
    """``(hi, lo, bound)`` of :func:`_exact_margins` for the elements ``index`` of ``cols``, from
    the inputs times ``_SCALE``: the margins times ``_SCALE``."""
    scaled = [c[index].astype(np.float64) * _SCALE for c in cols]
    return _exact_margins(scaled, beta, np.empty((7, index.size)), rescue=False)


def _margins(cols, beta: float, exact: bool, rows, negate=False, narrow=None):
    """``(z, lo, bound)`` of one block: the margin ``z + lo`` (``lo`` None where it is 0
    throughout), in buffers of ``rows`` (seven float64 arrays of the block's length); with
    ``negate``, ``-z`` and ``-lo`` instead (the plain margin then costs no extra pass).
    ``bound``: an upper bound of ``|z|`` (below ``1e300``: the losses are finite), or inf
    (not known, or a NaN or a margin beyond it).

    With ``exact`` every margin is a double-double; otherwise the plain float64 margin of
    float32 or float16 inputs, redone exactly where its spread exceeds ``_PLAIN_SPREAD``
    (looked for element by element only when the block's extremes allow it). The
    differences of the inputs are exact (float32 ones by :func:`float32_difference_into`,
    given the four buffers ``narrow``), so a margin of two inputs is at most rounded once
    (by ``beta``): it needs no spread.
    """
    if exact:  # minus the margin: the columns of each difference swapped
        wide = [c.astype(np.float64, copy=False) for c in cols]
        if negate:
            wide = [wide[i ^ 1] for i in range(len(wide))]
        return _exact_margins(wide, beta, rows)
    first, second = (1, 0) if negate else (0, 1)
    differences = []
    for pair, out in zip(range(0, len(cols), 2), rows, strict=False):
        a, b = cols[pair + first], cols[pair + second]
        if narrow is None:  # float16: its differences are exact in float64
            differences.append(np.subtract(a, b, dtype=np.float64, out=out))
        else:
            differences.append(nx.float32_difference_into(a, b, out, narrow))
    z, other = differences if len(differences) == 2 else (differences[0], None)
    if other is None:
        if beta != 1:
            z *= beta
        return z, None, np.inf
    largest = _extent(z) + _extent(other)  # NaN with a NaN
    redo = ()
    if not beta * largest <= _PLAIN_SPREAD:
        spread = np.abs(z)
        spread += np.abs(other)
        redo = np.flatnonzero(spread > _PLAIN_SPREAD / beta)
    z -= other
    if beta != 1:
        z *= beta
    if not len(redo):
        return z, None, np.inf
    lo = np.zeros_like(z)
    wide = [c[redo].astype(np.float64) for c in cols]
    hi, hi_lo, _ = _exact_margins(wide, beta, np.empty((7, len(redo))))
    z[redo], lo[redo] = (-hi, -hi_lo) if negate else (hi, hi_lo)
    return z, lo, np.inf


def _beyond_overflow(cols, beta: float, smoothing: float, loss):
    """``loss`` where it is not finite although its inputs are: there the margin overflows
    (``|z| >= 2^1024``) while the loss, ``(1 - eps) max(-z, 0) + eps max(z, 0)`` (the log1p
    terms are below 2^-1000 of it), need not. Formed from the scaled margin. Returns the
    block's shares of a mean (``shares(count)``, the sum of the losses over ``count``, for
    :meth:`BlockReduction.add`): a mean of losses beyond the range need not be (2e308 and
    0.0067 have the mean 1e308), or None."""
    bad, _ = nx.finite_entries(np.flatnonzero(~np.isfinite(loss)), loss.shape, *cols)
    if not bad.size:
        return None
    z, _, _ = _scaled_margins(cols, beta, bad)
    part = np.where(z < 0, nx.times(1 - smoothing, -z), nx.times(smoothing, z))
    loss[bad] = part * _UNSCALE
    others = np.ones(loss.shape, bool)
    others[bad] = False
    rest = loss[others]

    def shares(count):
        return np.sum(rest / np.float64(count)) + np.sum(part * (_UNSCALE / np.float64(count)))

    return shares


@nx.quiet
def _evaluate(named: dict, beta: float, smoothing: float, reduction, value=True, grad=True):
    """``(reduced loss or None, gradients or None)`` of the comparisons of ``named``.

    The margin of each comparison is ``z = beta ((a - b) - (c - d))`` (``a - b`` for
    Bradley-Terry) of the named arrays in order, ``z + lo`` to double-double accuracy in
    float64 (see :func:`_margins`). The loss per comparison is
    ``-(1 - eps) log sigma(z) - eps log sigma(-z)`` (float64). To first order in ``lo``:
    ``softplus(-z) = softplus(-hi) - sigma(-hi) lo`` and ``softplus(z) = softplus(hi) +
    sigma(hi) lo``; the neglected term is below ``lo^2 / 8``, far below an ULP of either.
    The gradients are ``(d_first, d_second)`` with ``d_first = beta dz`` of the reduced loss,
    ``eps sigma(z) - (1 - eps) sigma(-z)`` per comparison, and ``d_second = -d_first``. One
    ``exp`` feeds both. Evaluated in cache-sized blocks, in buffers made once: the gradients
    (and the losses for ``"none"``) are the only full-size arrays.
    """
    reduction = check_reduction(reduction)
    arrays = float_arrays(named)
    names = list(named)
    for name, array in zip(names[1:], arrays[1:], strict=True):
        check_same_shape(arrays[0], array, names[0], name)
    dtype, shape = arrays[0].dtype, arrays[0].shape
    flats = [a.reshape(-1) for a in arrays]
    n = flats[0].size
    # float32 and float16 margins are within 1/64 ULP in plain float64 (see _PLAIN_SPREAD),
    # except with label smoothing: its gradient vanishes at an optimum, where it keeps only
    # the absolute accuracy of the margin
    exact = dtype == np.float64 or smoothing != 0
    # without smoothing, softplus(-z) and sigma(-z) come from one exp(-z): the margins are
    # formed negated (at no extra pass) for it
    fast = smoothing == 0
    narrow_out = dtype != np.float64  # results rounded to float32 or float16
    total = BlockReduction(reduction, n, dtype) if value else None
    d = np.empty(n, dtype) if grad else None
    length = max(1, min(n, _EXACT_BLOCK if exact and len(flats) == 4 else _PLAIN_BLOCK))
    # buffers for the margins (seven for a double-double, two of them hold it; two for
    # plain ones), then e, 1 + e, the two sigmoids, log1p(e), the loss and a spare one
    held = 7 if exact else 2
    # d ell / d dz: beta / n rounded once (beta times reduction_scale would round twice)
    scale = beta / np.float64(n) if reduction == "mean" else np.float64(beta)
    local = threading.local()

    def pieces(span: slice, summed) -> None:
        if not hasattr(local, "rows"):  # a thread's buffers, reused by every block
            local.rows = list(np.empty((held + 7, length)))
            local.narrow = None
            if not exact and dtype == np.float32:  # for the exact float32 differences
                local.narrow = [np.empty(length, np.float32) for _ in range(2)]
                local.narrow += [np.empty(length, bool) for _ in range(2)]
            # np.minimum with an array is several times faster than with 0
            local.zeros = np.zeros(length) if not fast else None
        for begin in range(span.start, span.stop, length):
            block = slice(begin, min(begin + length, span.stop))
            size = block.stop - block.start
            buffers = [row[:size] for row in local.rows]
            narrow_rows = None if local.narrow is None else [row[:size] for row in local.narrow]
            cols = [f[block] for f in flats]
            z, lo, bound = _margins(
                cols, beta, exact, buffers[:held], negate=fast, narrow=narrow_rows
            )
            e, ope, s_down, s_up, log1p_e, loss, spare = buffers[held:]
            if fast:
                loss = summed.buffer(block, loss) if value else None  # float64: the result itself
                outs = (loss, s_down if grad or lo is not None else None)
                # (z is minus the margin)
                nx.softplus_sigmoid_into(z, *outs, e, narrow=narrow_out, bound=bound)
                if value:
                    if lo is not None:  # softplus(z + lo) = softplus(z) + sigma(z) lo
                        loss += np.multiply(s_down, lo, out=spare)
                    shares = None  # (float32 and float16 margins give finite float64 losses)
                    if not (narrow_out or bound < np.inf or np.max(loss) < np.inf):  # or NaN
                        shares = _beyond_overflow(cols, beta, smoothing, loss)
                    summed.add(loss, block, shares)  # rounded once
                if grad:
                    g = s_down
                    if lo is not None:  # sigma(z + lo) = sigma(z) + sigma(z) sigma(-z) lo
                        g = np.subtract(1.0, s_down, out=spare)
                        g *= s_down
                        g *= lo
                        g += s_down
                    np.multiply(g, -scale, out=d[block])
                continue
            zero = local.zeros[:size]
            nx._exp_minus_abs(z, e)
            if grad or lo is not None:  # sigma(+-z); sigma(z) only where a term needs it
                np.add(e, 1, out=ope)
                nx._sigmoid_from(z, e, ope, s_down, negate=True)
                if smoothing or (grad and lo is not None):
                    nx._sigmoid_from(z, e, ope, s_up)
            if value:
                np.log1p(e, out=log1p_e)
                # softplus(-z) = max(-z, 0) + log1p(e) = log1p(e) - min(z, 0)
                np.minimum(z, zero, out=spare)
                np.subtract(log1p_e, spare, out=loss)
                if lo is not None:
                    np.multiply(s_down, lo, out=spare)
                    loss -= spare
                if smoothing:
                    up = np.maximum(z, zero, out=spare)  # softplus(z)
                    up += log1p_e
                    if lo is not None:
                        np.multiply(s_up, lo, out=log1p_e)
                        up += log1p_e
                    loss *= 1 - smoothing
                    loss += nx.times(smoothing, up)
                shares = None
                if not (bound < np.inf or np.max(loss) < np.inf):  # also with a NaN: rare
                    shares = _beyond_overflow(cols, beta, smoothing, loss)
                summed.add(loss, block, shares)  # rounded once
            if grad:
                g = np.negative(s_down, out=loss)
                if lo is not None:
                    shift = np.multiply(s_up, s_down, out=spare)
                    shift *= lo  # d sigma(z) = sigma(z) sigma(-z) dz
                    g += shift
                    if smoothing:
                        shift += s_up
                if smoothing:
                    g *= 1 - smoothing
                    g += smoothing * (s_up if lo is None else shift)
                np.multiply(g, scale, out=d[block])

    for_each_span(pieces, total, n)  # spans of about a megabyte of margins, on two threads
    loss = total.result(shape) if value else None
    grads = None
    if grad:
        d = d.reshape(shape)
        grads = (d, np.negative(d))
    return loss, grads


def bradley_terry_loss(chosen, rejected, reduction="mean"):
    r"""The reward-model loss: the Bradley-Terry negative log-likelihood of a preference.

    The Bradley-Terry model states that the chosen response beats the rejected one with
    probability :math:`\sigma(r_c - r_r)`, the logistic function of the difference of
    their scores; the loss is the negative log of that probability,

    .. math::

        \ell = -\log \sigma(r_c - r_r) = \log\left(1 + e^{-(r_c - r_r)}\right).

    Parameters
    ----------
    chosen, rejected : array_like
        Scores (rewards) :math:`r_c` of the preferred and :math:`r_r` of the other
        response of each comparison; the same shape.
    reduction : {"mean", "sum", "none"}, optional
        ``"none"`` returns one loss per comparison.

    Returns
    -------
    ndarray or numpy scalar
        The reduced loss, in the promoted dtype of the scores.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, a score array is not real numeric, or
        ``rejected`` does not have the shape of ``chosen``.

    Notes
    -----
    The difference is formed exactly (a pair of float64 numbers; for float32 and
    float16 scores, float64 itself is exact enough) before the log-sigmoid, so a
    confident comparison (a gap of 40 between scores of 1e4) keeps a
    loss of :math:`e^{-40}` to a few ULP; an infinite gap gives the limit (0 or inf).
    See :cite:t:`bradley1952rank` and :cite:t:`ouyang2022training`.

    Examples
    --------
    >>> float(round(bradley_terry_loss([2.0, 0.5], [0.0, 1.0]), 6))
    0.550502
    """
    return _bradley_terry(chosen, rejected, reduction, grad=False)[0]


@gradients_in_argument_dtypes("chosen", "rejected")
def bradley_terry_loss_grad(chosen, rejected, reduction="mean"):
    r"""Gradient of :func:`bradley_terry_loss` w.r.t. ``chosen`` and ``rejected``.

    :math:`\partial \ell / \partial r_c = -\sigma(r_r - r_c)` and
    :math:`\partial \ell / \partial r_r = \sigma(r_r - r_c)`, times the reduction's scale.

    Parameters
    ----------
    chosen, rejected, reduction
        As for :func:`bradley_terry_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_chosen, d_rejected)``, each of the scores' shape and dtype.

    Raises
    ------
    ValueError
        As :func:`bradley_terry_loss`.

    Notes
    -----
    float32 and float16 gradients are rounded once from float64. In float64 the
    sigmoid's exponential (within 0.71 ULP), ``1 + u`` and their quotient each round
    (and, for a mean, the scale ``1 / n`` and the product with it): an entry is a few
    ULP from the exact value, up to 2.5 ULP on a dense sweep of the margins in
    [-40, 40] (3.0 for a mean).

    Examples
    --------
    >>> d_c, d_r = bradley_terry_loss_grad([2.0], [0.0])
    >>> float(round(d_c[0], 6)), float(round(d_r[0], 6))
    (-0.119203, 0.119203)
    """
    return _bradley_terry(chosen, rejected, reduction, value=False)[1]


@gradients_in_argument_dtypes("chosen", "rejected")
def bradley_terry_loss_value_and_grad(chosen, rejected, reduction="mean"):
    r"""``bradley_terry_loss`` and ``bradley_terry_loss_grad`` in one pass: the exact margin
    and its softplus and sigmoid pairs are computed once.

    Parameters
    ----------
    chosen, rejected, reduction
        Same as :func:`bradley_terry_loss`.

    Returns
    -------
    tuple
        ``(bradley_terry_loss(...), bradley_terry_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`bradley_terry_loss`.

    Examples
    --------
    >>> value, (d_c, d_r) = bradley_terry_loss_value_and_grad([2.0], [0.0])
    >>> float(round(value, 6)), float(round(d_c[0], 6)), float(round(d_r[0], 6))
    (0.126928, -0.119203, 0.119203)
    """
    return _bradley_terry(chosen, rejected, reduction)


def _bradley_terry(chosen, rejected, reduction, value=True, grad=True):
    named = {"chosen": chosen, "rejected": rejected}
    return _evaluate(named, 1.0, 0.0, reduction, value, grad)


def _dpo(pc, pr, rc, rr, beta, label_smoothing, reduction, value=True, grad=True):
    beta = check_positive_scalar(beta, "beta")
    label_smoothing = check_unit_interval_scalar(label_smoothing, "label_smoothing")
    named = {
        "policy_chosen_logps": pc,
        "reference_chosen_logps": rc,
        "policy_rejected_logps": pr,
        "reference_rejected_logps": rr,
    }
    return _evaluate(named, beta, label_smoothing, reduction, value, grad)


def dpo_loss(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta=0.1,
    label_smoothing=0.0,
    reduction="mean",
):
    r"""Direct Preference Optimization: Bradley-Terry with the implicit reward.

    With the implicit reward :math:`\beta \log(\pi(y \mid x) / \pi_{\mathrm{ref}}(y \mid x))`
    of each response, the margin of a comparison is

    .. math::

        z = \beta\left[(\log\pi_c - \log\pi^{\mathrm{ref}}_c)
            - (\log\pi_r - \log\pi^{\mathrm{ref}}_r)\right],

    and the loss, with labels flipped with probability :math:`\varepsilon`
    (``label_smoothing``, the conservative DPO of noisy preferences), is

    .. math::

        \ell = -(1 - \varepsilon) \log\sigma(z) - \varepsilon \log\sigma(-z).

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps : array_like
        :math:`\log\pi_c`, :math:`\log\pi_r`: the policy's log-probabilities of the
        chosen and rejected responses (usually summed over their tokens).
    reference_chosen_logps, reference_rejected_logps : array_like
        The same under the frozen reference policy; every array has the same shape.
    beta : float, optional
        :math:`\beta > 0`, the strength of the KL regularization toward the reference.
    label_smoothing : float, optional
        :math:`\varepsilon \in [0, 1]`, the assumed probability that a preference label
        is flipped (0 is the DPO loss itself).
    reduction : {"mean", "sum", "none"}, optional
        ``"none"`` returns one loss per comparison.

    Returns
    -------
    ndarray or numpy scalar
        The reduced loss, in the promoted dtype of the arrays.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``beta`` is not a positive finite
        number, ``label_smoothing`` is not in [0, 1], an array is not real numeric, or
        the four arrays do not have the same shape.

    Notes
    -----
    The conformance test ``test_claim_preferences_dpo_formula`` checks it against this
    formula written in PyTorch (``F.logsigmoid``) and its autograd gradient. The margin, a
    difference of differences of log-probabilities of a few hundred each, is formed
    as a pair of float64 numbers (to 2^-66 absolute, and exactly where the two
    differences cancel to their last bit) and multiplied by ``beta`` with its rounding
    error kept (to 2^-76 of the margin; for float32 and float16 inputs without label
    smoothing, plain float64 is exact enough, except where the differences exceed about
    2^21 / ``beta``), so that the loss is within a few ULP of its exact value for the
    given inputs. See :cite:t:`rafailov2023direct` and, for the label noise,
    :cite:t:`mitchell2023note`.

    Examples
    --------
    >>> float(round(dpo_loss([-10.0], [-12.0], [-11.0], [-11.0], beta=0.5), 6))
    0.313262
    """
    return _dpo(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        label_smoothing,
        reduction,
        grad=False,
    )[0]


@gradients_in_argument_dtypes("policy_chosen_logps", "policy_rejected_logps")
def dpo_loss_grad(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta=0.1,
    label_smoothing=0.0,
    reduction="mean",
):
    r"""Gradient of :func:`dpo_loss` w.r.t. the policy's log-probabilities.

    :math:`\partial\ell/\partial z = \varepsilon - \sigma(-z)`, so
    :math:`\partial\ell/\partial\log\pi_c = \beta(\varepsilon - \sigma(-z))` and
    :math:`\partial\ell/\partial\log\pi_r = -\beta(\varepsilon - \sigma(-z))`, times the
    reduction's scale. The reference log-probabilities are constants (the reference
    policy is frozen).

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps : array_like
        As for :func:`dpo_loss`.
    reference_chosen_logps, reference_rejected_logps : array_like
        As for :func:`dpo_loss`.
    beta, label_smoothing, reduction
        As for :func:`dpo_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_policy_chosen_logps, d_policy_rejected_logps)``, of the arrays' shape and
        dtype.

    Raises
    ------
    ValueError
        As :func:`dpo_loss`.

    Notes
    -----
    float32 and float16 gradients are rounded once from float64. In float64 the
    sigmoid's exponential (within 0.71 ULP), ``1 + u``, their quotient and the product
    with :math:`\beta` (with :math:`\beta / n`, itself rounded, for a mean) each round:
    an entry is a few ULP from the exact value, up to 3.8 ULP on a dense sweep of the
    margins in [-40, 40] with :math:`\beta = 0.1` (4.2 for a mean); with
    :math:`\beta = 1` up to 2.5 (3.0), as :func:`bradley_terry_loss_grad`. Where the
    sigmoid is below the normal range (a margin beyond 708) it keeps only its absolute
    accuracy, so that with :math:`\beta > 1` an entry is within :math:`4 \beta 2^{-1074}`
    instead (as a weighted loss below the normal range, in the API page's contract).

    With ``label_smoothing`` :math:`\varepsilon > 0` the gradient vanishes at
    :math:`z = \log((1 - \varepsilon)/\varepsilon)`; near there it is a difference of
    two terms, computed in float64: its error is a few float64 ULP of :math:`\beta`,
    which is below an ULP of float32 or float16 results, but for float64 results near
    that optimum it is an absolute, not a relative, accuracy.

    Examples
    --------
    >>> d_c, d_r = dpo_loss_grad([-10.0], [-12.0], [-11.0], [-11.0], beta=0.5)
    >>> float(round(d_c[0], 6)), float(round(d_r[0], 6))
    (-0.134471, 0.134471)
    """
    return _dpo(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        label_smoothing,
        reduction,
        value=False,
    )[1]


@gradients_in_argument_dtypes("policy_chosen_logps", "policy_rejected_logps")
def dpo_loss_value_and_grad(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta=0.1,
    label_smoothing=0.0,
    reduction="mean",
):
    r"""``dpo_loss`` and ``dpo_loss_grad`` in one pass: the exact margin and its softplus and
    sigmoid pairs are computed once.

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps : array_like
        Same as :func:`dpo_loss`.
    reference_chosen_logps, reference_rejected_logps : array_like
        Same as :func:`dpo_loss`.
    beta, label_smoothing, reduction
        Same as :func:`dpo_loss`.

    Returns
    -------
    tuple
        ``(dpo_loss(...), dpo_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`dpo_loss`.

    Examples
    --------
    >>> value, (d_c, d_r) = dpo_loss_value_and_grad([-10.0], [-12.0], [-11.0], [-11.0], beta=0.5)
    >>> float(round(value, 6)), float(round(d_c[0], 6)), float(round(d_r[0], 6))
    (0.313262, -0.134471, 0.134471)
    """
    return _dpo(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        label_smoothing,
        reduction,
    )
