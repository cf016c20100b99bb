"""PyTorch's pairwise ranking and embedding losses with labels in {-1, +1} (private).

``margin_ranking_loss`` ranks two scores, ``hinge_embedding_loss`` takes a distance
(or any score) of a pair, ``cosine_embedding_loss`` the cosine of two embeddings.
None of them is a negative log-likelihood. Public as :mod:`lossutils.metric` and
``lossutils`` (this module is the implementation, not an import path).
"""

from __future__ import annotations

import math

import numpy as np

from . import _numerics as nx
from ._checks import (
    as_array,
    check_finite_scalar,
    check_pm1_labels,
    check_reduction,
    check_same_shape,
    float_arrays,
    gradients_in_argument_dtypes,
    result_dtype,
)
from ._reduction import reduce_to, reduction_scale, scaled_shares
from ._signed import in_blocks

__all__ = [
    "margin_ranking_loss",
    "margin_ranking_loss_grad",
    "margin_ranking_loss_value_and_grad",
    "cosine_embedding_loss",
    "cosine_embedding_loss_grad",
    "cosine_embedding_loss_value_and_grad",
    "hinge_embedding_loss",
    "hinge_embedding_loss_grad",
    "hinge_embedding_loss_value_and_grad",
]

# PyTorch's cosine_embedding_loss adds this to each squared norm: EPSILON in its Loss.cpp, a
# float constant 1e-12 (so 1e-12 rounded to float32), in every dtype.
COSINE_EPS = float(np.float32(1e-12))
_SQRT_COSINE_EPS = math.sqrt(COSINE_EPS)


def _quiet():
    """No NumPy RuntimeWarning escapes: overflow, underflow and NaN show in the result."""
    return np.errstate(all="ignore")


def _active(gap):
    """1 where ``gap >= 0`` (the gradient passes at the kink, as ``torch.clamp_min``'s backward),
    NaN where the gap is NaN, 0 elsewhere; a gap of -0.0 is a negative one that underflowed
    (the callers form an exact zero as +0.0)."""
    with np.errstate(invalid="ignore"):
        passes = (gap > 0) | ((gap == 0) & ~np.signbit(gap))
        return np.where(np.isnan(gap), np.nan, passes.astype(gap.dtype))


# --- margin ranking -------------------------------------------------------------------------------


def _ranking_args(input1, input2, target, margin, reduction):
    check_reduction(reduction)
    margin = check_finite_scalar(margin, "margin")
    x1, x2, t = float_arrays({"input1": input1, "input2": input2, "target": target})
    check_same_shape(x1, x2, "input1", "input2")
    check_same_shape(x1, t, "input1", "target")
    return x1, x2, t, margin


def _ranking_gap(a, b, t, m, lo=0):
    """The gap ``m + lo - t (a - b)`` of one block (``t`` +-1, ``m`` and the margin's
    rounding error ``lo`` in the blocks' dtype) within one rounding of its exact value, and
    the mask of its NaNs (None where there is none).

    With ``m = 0`` it is ``-t fl(a - b)``: one rounding. Otherwise ``a - b = d + e`` and
    ``m - t d = s + f`` exactly (TwoSum) and the gap is ``s + (f - t e)``, the three terms
    summed as in twice the precision: a plain ``m - t fl(a - b)`` would carry the rounding
    of ``a - b`` (half an ULP of ``a - b``) into a gap that cancels to far less. ``lo`` is
    added to ``f - t e`` by TwoSum, its error last: where ``s`` cancels the rest, ``s`` and
    ``f - t e = -t e`` are exact and the gap keeps its sign.
    """
    if m == 0:
        gap = np.subtract(a, b)
        gap *= t
        np.negative(gap, out=gap)
    else:
        d, e = nx.two_sum(a, -b)
        d *= t  # exact
        gap, f = nx.two_sum(m, -d)
        e *= t
        f -= e
        f, f_err = nx.two_sum(f, lo) if lo else (f, None)
        # a term that is infinite or NaN leaves f (and f_err) NaN: the plain sum there
        finite = ~np.isnan(f)
        np.add(gap, f, out=gap, where=finite)
        if f_err is not None:
            np.add(gap, f_err, out=gap, where=finite)
    nan = np.isnan(gap)
    return gap, (nan if nan.any() else None)


def _wide_hinge(a, b, t, m, s):
    """The hinges of ``s a``, ``s b`` and ``s m`` in float64 (``s`` a power of 2)."""
    f = np.float64
    return np.maximum(_ranking_gap(a.astype(f) * s, b.astype(f) * s, t, f(m) * s)[0], 0)


def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean"):
    r"""Margin ranking loss: the first score should exceed the second by ``margin`` if t = 1.

    .. math::

        \ell(x_1, x_2, t) = \max\bigl(0,\ -t\,(x_1 - x_2) + m\bigr)

    With :math:`t = 1` the pair is ranked correctly when :math:`x_1 \ge x_2 + m`; with
    :math:`t = -1`, when :math:`x_2 \ge x_1 + m`. The gap :math:`m + t x_2 - t x_1` is
    summed with its rounding errors compensated, so the loss is within one ULP of the
    exact value of the given inputs and a pair is active exactly when its true gap is
    non-negative.

    Parameters
    ----------
    input1, input2 : array_like
        Scores :math:`x_1`, :math:`x_2`, the same shape.
    target : array_like
        Labels :math:`t \in \{-1, +1\}`, the same shape.
    margin : float, optional
        The margin :math:`m` (any finite number).
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    ndarray or numpy scalar
        The per-element losses (``"none"``) or their reduction.

    Raises
    ------
    ValueError
        If ``margin`` is not a finite number; if ``reduction`` is unknown; if ``input2`` or
        ``target`` does not have ``input1``'s shape; if ``target`` holds a label other than
        -1 and +1.

    Notes
    -----
    ``torch.nn.functional.margin_ranking_loss`` :cite:p:`paszke2019pytorch` (which
    broadcasts the three arguments and accepts any label); the pairwise ranking hinge.
    Not a likelihood loss: no probability model of
    :math:`t` has it as its negative log-likelihood.

    Examples
    --------
    >>> margin_ranking_loss([2.0, 0.0], [1.0, 1.0], [1, 1], margin=0.5,
    ...                     reduction="none").tolist()
    [0.0, 1.5]
    """
    return _margin_ranking(input1, input2, target, margin, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input1", "input2")
def margin_ranking_loss_grad(input1, input2, target, margin=0.0, reduction="mean"):
    r"""Gradient of :func:`margin_ranking_loss` with respect to ``input1`` and ``input2``.

    .. math::

        \frac{\partial \ell}{\partial x_1} = -\frac{\partial \ell}{\partial x_2}
        = -t\, \mathbb{1}\bigl[-t (x_1 - x_2) + m \ge 0\bigr]

    At the kink (gap exactly 0) the gradient passes: PyTorch evaluates the loss as
    ``clamp_min(gap, 0)``, whose backward passes where ``gap >= 0``.

    Parameters
    ----------
    input1, input2, target, margin, reduction
        As in :func:`margin_ranking_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_input1, d_input2)``, each of ``input1``'s shape and the result dtype.

    Raises
    ------
    ValueError
        As :func:`margin_ranking_loss` does, for the same arguments.

    Notes
    -----
    What autograd gives for ``torch.nn.functional.margin_ranking_loss``
    :cite:p:`paszke2019pytorch`.

    Examples
    --------
    >>> g1, g2 = margin_ranking_loss_grad([2.0, 0.0], [1.0, 1.0], [1, 1], margin=0.5,
    ...                                   reduction="none")
    >>> g1.tolist(), g2.tolist()
    ([-0.0, -1.0], [0.0, 1.0])
    """
    return _margin_ranking(input1, input2, target, margin, reduction, value=False)[1]


@gradients_in_argument_dtypes("input1", "input2")
def margin_ranking_loss_value_and_grad(input1, input2, target, margin=0.0, reduction="mean"):
    r"""``margin_ranking_loss`` and ``margin_ranking_loss_grad`` in one pass: one gap for both.

    Parameters
    ----------
    input1, input2, target, margin, reduction
        Same as :func:`margin_ranking_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_input1, d_input2))``: bit for bit :func:`margin_ranking_loss` and
        :func:`margin_ranking_loss_grad` of the same arguments.

    Raises
    ------
    ValueError
        As :func:`margin_ranking_loss` does, for the same arguments.

    Examples
    --------
    >>> args = ([2.0, 0.0], [1.0, 1.0], [1, 1], 0.5)
    >>> value, (g1, g2) = margin_ranking_loss_value_and_grad(*args)
    >>> bool(value == margin_ranking_loss(*args))
    True
    >>> [g.tolist() for g in margin_ranking_loss_grad(*args)] == [g1.tolist(), g2.tolist()]
    True
    """
    return _margin_ranking(input1, input2, target, margin, reduction)


def _margin_ranking(input1, input2, target, margin, reduction, *, value=True, grad=True):
    """``(loss or None, gradients or None)`` of the margin ranking loss, from one gap."""
    x1, x2, t, margin = _ranking_args(input1, input2, target, margin, reduction)
    work, m, lo = nx.margin_parts(x1.dtype, margin)

    def kernel(a, b, labels):
        gap, nan = _ranking_gap(a, b, labels, m, lo)
        values = np.maximum(gap, 0) if value else None
        # a mean whose gaps overflowed (x1 - x2 of 3e38 and -3e38): the gaps again, scaled
        shares = lambda count: scaled_shares(  # noqa: E731
            lambda s: _wide_hinge(a, b, labels, margin, s), count
        )
        if not grad:
            return values, None, shares
        # -t [gap >= 0], NaN where the gap is
        local = np.multiply(labels, np.greater_equal(gap, 0), out=gap)
        np.negative(local, out=local)
        if nan is not None:
            local[nan] = np.nan
        return values, local, shares

    # (a nonzero margin: a dozen block-sized temporaries, in blocks of 64 KB; 256 KB ones
    # took twice as long on 1e7 float32 pairs)
    size = {"block_bytes": 1 << 16} if m else {}
    return in_blocks(kernel, (x1, x2), t, reduction, value=value, grad=grad, work=work, **size)


# --- hinge embedding ------------------------------------------------------------------------------


def _hinge_embedding_args(input, target, margin, reduction):
    check_reduction(reduction)
    margin = check_finite_scalar(margin, "margin")
    x, t = float_arrays({"input": input, "target": target})
    check_same_shape(x, t, "input", "target")
    return x, t, margin


def hinge_embedding_loss(input, target, margin=1.0, reduction="mean"):
    r"""Hinge embedding loss, as PyTorch's: the input itself for t = 1, a hinge for t = -1.

    .. math::

        \ell(x, t) = \begin{cases} x & t = 1 \\ \max(0,\ m - x) & t = -1 \end{cases}

    Meant for a non-negative distance :math:`x` between the two members of a pair:
    similar pairs (:math:`t = 1`) are pulled together, dissimilar ones pushed at least
    :math:`m` apart. Exact up to the one rounding of :math:`m - x`.

    Parameters
    ----------
    input : array_like
        The values :math:`x` (usually distances).
    target : array_like
        Labels :math:`t \in \{-1, +1\}`, same shape as ``input``.
    margin : float, optional
        The margin :math:`m` (any finite number).
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    ndarray or numpy scalar
        The per-element losses (``"none"``) or their reduction.

    Raises
    ------
    ValueError
        If ``margin`` is not a finite number; if ``reduction`` is unknown; if ``target``
        does not have ``input``'s shape or holds a label other than -1 and +1.

    Notes
    -----
    ``torch.nn.functional.hinge_embedding_loss`` :cite:p:`paszke2019pytorch` (which
    accepts any label: a label other than :math:`\pm 1` there adds both terms); with
    :math:`x` the distance of a pair it is the contrastive loss of
    :cite:t:`hadsell2006dimensionality` without the squares. Not a likelihood loss.
    A similar pair's loss is :math:`x` itself: over values of both signs a ``"sum"`` or
    ``"mean"`` is a difference that may cancel, and is then within a few ULP of the sum
    of the magnitudes rather than of the result (distances, :math:`x \ge 0`, never
    cancel).

    Examples
    --------
    >>> hinge_embedding_loss([0.3, 0.3, 2.0], [1, -1, -1], reduction="none").tolist()
    [0.3, 0.7, 0.0]
    """
    return _hinge_embedding(input, target, margin, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def hinge_embedding_loss_grad(input, target, margin=1.0, reduction="mean"):
    r"""Gradient of :func:`hinge_embedding_loss` with respect to ``input``.

    .. math::

        \frac{\partial \ell}{\partial x} = \begin{cases} 1 & t = 1 \\
        -\mathbb{1}[m - x \ge 0] & t = -1 \end{cases}

    At the kink :math:`x = m` the gradient passes (-1), as through PyTorch's
    ``clamp_min``.

    Parameters
    ----------
    input, target, margin, reduction
        As in :func:`hinge_embedding_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape and dtype of ``input``.

    Raises
    ------
    ValueError
        As :func:`hinge_embedding_loss` does, for the same arguments.

    Notes
    -----
    What autograd gives for ``torch.nn.functional.hinge_embedding_loss``
    :cite:p:`paszke2019pytorch`.

    Examples
    --------
    >>> hinge_embedding_loss_grad([0.3, 0.3, 1.0], [1, -1, -1], reduction="none").tolist()
    [1.0, -1.0, -1.0]
    """
    return _hinge_embedding(input, target, margin, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def hinge_embedding_loss_value_and_grad(input, target, margin=1.0, reduction="mean"):
    r"""``hinge_embedding_loss`` and ``hinge_embedding_loss_grad`` in one pass: one gap for both.

    Parameters
    ----------
    input, target, margin, reduction
        Same as :func:`hinge_embedding_loss`.

    Returns
    -------
    tuple
        ``(loss, d_input)``: bit for bit :func:`hinge_embedding_loss` and
        :func:`hinge_embedding_loss_grad` of the same arguments.

    Raises
    ------
    ValueError
        As :func:`hinge_embedding_loss` does, for the same arguments.

    Examples
    --------
    >>> args = ([0.3, 0.3, 2.0], [1, -1, -1])
    >>> value, grad = hinge_embedding_loss_value_and_grad(*args)
    >>> bool(value == hinge_embedding_loss(*args))
    True
    >>> grad.tolist() == hinge_embedding_loss_grad(*args).tolist()
    True
    """
    return _hinge_embedding(input, target, margin, reduction)


def _hinge_embedding(input, target, margin, reduction, *, value=True, grad=True):
    """``(loss or None, gradient or None)`` of the hinge embedding loss, from one gap."""
    x, t, margin = _hinge_embedding_args(input, target, margin, reduction)
    work, m, lo = nx.margin_parts(x.dtype, margin)

    def kernel(xb, labels):
        gap = np.subtract(m, xb)
        if lo:  # the margin's rounding error (0.1 in float32)
            gap += lo
        similar = labels == 1
        values = np.where(similar, xb, np.maximum(gap, 0)) if value else None
        # a mean whose hinges overflowed (a margin of 2^127 in float32): formed again, scaled
        shares = lambda count: scaled_shares(  # noqa: E731
            lambda s: _wide_embedding(xb, similar, margin, s), count
        )
        if not grad:
            return values, None, shares
        # 1 for t = 1, -[gap >= 0] for t = -1; NaN where the gap is (where x is)
        local = np.greater_equal(gap, 0, out=np.empty(gap.shape, bool))
        local = np.negative(local, out=gap, dtype=gap.dtype)
        local[similar] = 1
        local[np.isnan(xb)] = np.nan
        return values, local, shares

    loss, grads = in_blocks(kernel, (x,), t, reduction, value=value, grad=grad, work=work)
    return loss, (None if grads is None else grads[0])


def _wide_embedding(xb, similar, m, s):
    """The losses of ``s x`` and ``s m`` in float64 (``s`` a power of 2)."""
    wide = xb.astype(np.float64) * s
    return np.where(similar, wide, np.maximum(np.float64(m) * s - wide, 0))


# --- cosine embedding -----------------------------------------------------------------------------


class _Cosine:
    """The cosine of PyTorch's ``cosine_embedding_loss`` and its pieces, row by row, in float64.

    Each row of ``x1`` and ``x2`` is scaled by a power of 2 (exact) so that its largest
    entry lies in [0.5, 1): ``x_k = 2**e_k u_k``. With ``s_k = ||u_k||`` and
    ``c_k = sqrt(eps) 2**-e_k`` the eps-regularised norm is
    ``sqrt(||x_k||^2 + eps) = 2**e_k r_k``, ``r_k = hypot(s_k, c_k)``, and

        cos = <u_1, u_2> / (r_1 r_2)

    neither overflows nor underflows for any finite input (PyTorch's squares overflow
    for entries above about 1.3e154 in float64, 1.8e19 in float32). ``1 - cos`` is a sum
    of two non-negative parts, ``r_1 r_2 - s_1 s_2`` (the eps) and
    ``s_1 s_2 - <u_1, u_2> = s_1 s_2 ||v_1 - v_2||^2 / 2`` (``v_k = u_k / s_k``), so it
    does not cancel for nearly parallel vectors.
    """

    def __init__(self, x1: np.ndarray, x2: np.ndarray):
        with _quiet():
            self.e1, self.e2 = (np.frexp(np.max(np.abs(x), axis=-1))[1] for x in (x1, x2))
            self.u1 = np.ldexp(x1, -self.e1[..., None])
            self.u2 = np.ldexp(x2, -self.e2[..., None])
            self.s1 = np.sqrt(np.sum(self.u1 * self.u1, axis=-1))
            self.s2 = np.sqrt(np.sum(self.u2 * self.u2, axis=-1))
            c1 = np.ldexp(_SQRT_COSINE_EPS, -self.e1)
            c2 = np.ldexp(_SQRT_COSINE_EPS, -self.e2)
            self.r1, self.r2 = np.hypot(self.s1, c1), np.hypot(self.s2, c2)
            denominator = self.r1 * self.r2
            # (+0.0: an exact zero is +0, so that -0.0 marks a negative cosine that underflowed)
            self.cos = (np.sum(self.u1 * self.u2, axis=-1) + 0.0) / denominator
            # 1 - cos cancels only for cos > 1/2: there it is formed without cancellation
            # arrays also for one pair (no batch axis): the careful rows are assigned by mask
            self.s1, self.s2, self.r1, self.r2, self.cos = (
                np.asarray(x) for x in (self.s1, self.s2, self.r1, self.r2, self.cos)
            )
            self.one_minus = np.asarray(1 - self.cos)
            careful = self.cos > 0.5
            self.careful = careful
            if np.any(careful):
                one_minus = self._one_minus_cos(careful)
                # where c overflows (entries below about 1e-300) the eps dominates: cos = 0
                ok = np.isfinite(one_minus)
                self.one_minus[careful] = np.where(ok, one_minus, self.one_minus[careful])

    def minus(self, margin: float):
        """``cos - margin``; where ``cos > 1/2`` as ``(1 - margin) - (1 - cos)`` from the
        accurate ``1 - cos`` (the rounded cosine would carry a few ULP of 1 into it)."""
        out = np.asarray(self.cos - margin)
        near_one = self.cos > 0.5
        if np.any(near_one):
            head, err = nx.two_sum(1.0, -margin)
            out[near_one] = (head - self.one_minus[near_one]) + err
        return out

    def _one_minus_cos(self, rows):
        """``1 - cos`` of the selected rows as ``(1 - rho) + rho ||v1 - v2||^2 / 2``.

        With the unit rows ``v_k = u_k / s_k`` and ``rho = s1 s2 / (r1 r2)``, ``1 / rho^2 =
        (1 + t1) (1 + t2)``, ``t_k = c_k^2 / s_k^2``: two non-negative parts. The angular
        part takes the unit rows in double-double: rounded to float64 they would carry their
        2**-53 into ``v1 - v2``, which for nearly parallel rows (angle ``theta``) is only
        ``theta`` large (656,000 ULP at ``theta`` = 1e-6); and the squared norms of ``u_k``
        and of ``v1 - v2`` are summed in double-double (a float64 sum of D rounded squares
        is off by up to about D/2 ULP: 4.5 ULP of the loss at D = 300). Below an angle of
        about ``2**-45`` the unit rows' own rounding (``2**-106``) is too much of
        ``v1 - v2`` (12 ULP of the loss at 4e-18): there ``1 - <v1, v2> = sin^2 / 2`` and
        ``v1 - v2`` come from the component of ``u1`` across ``u2``, formed without cancellation
        (:func:`~lossutils._numerics.dd_across_rows`). The eps part is
        ``1 - rho = (shrink_1 + rho_1^2 shrink_2) / (1 + rho)``, ``shrink_k = 1 - rho_k^2
        = c_k^2 / r_k^2``: positive terms, from the double-double squared norms and
        ``c_k^2 = eps 2**(-2 e_k)`` exactly, each rounded once (``1 - 1 / sqrt(1 + T)``
        would carry the rounding of ``1 + T``, an ULP of 1, into a difference only ``T``
        large).
        """
        u1, u2 = self.u1[rows], self.u2[rows]
        sq1, sq2 = nx.dd_sum_of_squares(u1, 0 * u1), nx.dd_sum_of_squares(u2, 0 * u2)
        v1_hi, v1_lo = nx.dd_divide_rows(u1, *nx.dd_sqrt(*sq1))
        v2_hi, v2_lo = nx.dd_divide_rows(u2, *nx.dd_sqrt(*sq2))
        # v1 - v2 as a double-double, scaled so that its largest entry lies in [1/2, 1)
        d_hi, d_lo = nx.two_sum(v1_hi, -v2_hi)
        d_hi, d_lo = nx.two_sum(d_hi, d_lo + (v1_lo - v2_lo))  # (|d_lo| <= ulp(d_hi) / 2)
        e = np.frexp(np.max(np.abs(d_hi), axis=-1))[1][..., None]
        # (a sum of squares that nothing subtracts from: the first grid is enough, 2**-69)
        sq_hi, sq_lo = nx.dd_sum_of_squares(np.ldexp(d_hi, -e), np.ldexp(d_lo, -e), slices=1)
        half = np.ldexp(sq_hi + sq_lo, 2 * e[..., 0] - 1)  # |v1 - v2|^2 / 2 = 1 - <v1, v2>
        # below an angle of about 2**-45 the unit rows' own rounding (2**-106) is more than
        # 2**-61 of v1 - v2: there from the component of u1 across u2 instead
        tiny = np.flatnonzero(half < 2.0**-90)
        if len(tiny):
            # 1 - <v1, v2> = sin^2 / (1 + cos) = sin^2 / 2 to 2**-90 of it, sin^2 = |P|^2 /
            # |u1|^2 with P the component of u1 across u2; v1 - v2 = P / |u1| - half v2
            p_hi, p_lo = nx.dd_across_rows(u1[tiny], u2[tiny])
            e_p = np.frexp(np.max(np.abs(p_hi), axis=-1))[1][:, None]
            p_sq = nx.dd_sum_of_squares(np.ldexp(p_hi, -e_p), np.ldexp(p_lo, -e_p))
            q_hi, q_lo = nx.dd_div(*p_sq, sq1[0][tiny], sq1[1][tiny])
            half[tiny] = np.ldexp(q_hi + q_lo, 2 * e_p[:, 0] - 1)
            s1 = nx.dd_sqrt(sq1[0][tiny], sq1[1][tiny])
            d_hi[tiny] = nx.dd_divide_rows(p_hi, *s1)[0] - half[tiny, None] * v2_hi[tiny]
        self.unit_rows = (v1_hi, v1_lo, v2_hi, v2_lo, d_hi, half)  # for the gradient
        pieces = []  # rho_k, 1 - rho_k^2 and r_k, for the gradient
        for sq, e in ((sq1, self.e1[rows]), (sq2, self.e2[rows])):
            c_sq = np.ldexp(COSINE_EPS, -2 * e)
            # r_k^2, r_k, rho_k = s_k / r_k and 1 - rho_k^2 = c_k^2 / r_k^2 from double-doubles,
            # each rounded once: where the eps dominates (small norms) the loss and the
            # gradient are their products (log1p, expm1 and a rounded r_k^2 gave up to 5 ULP)
            r_sq = nx._fast_two_sum(*nx.two_sum(sq[0], c_sq))
            r_sq = nx._fast_two_sum(r_sq[0], r_sq[1] + sq[1])
            r = nx.dd_sqrt(*r_sq)
            rho = nx.dd_div(*nx.dd_sqrt(*sq), *r)
            shrink = nx.dd_div(c_sq, 0 * c_sq, *r_sq)[0]
            pieces.append((rho, shrink, r))
        self.scales = pieces
        (rho1, shrink1, _), (rho2, shrink2, _) = pieces
        rho = rho1[0] * rho2[0]
        # 1 - rho1 rho2 = (1 - rho1^2 rho2^2) / (1 + rho1 rho2), and 1 - rho1^2 rho2^2 =
        # (c1^2 r2^2 + s1^2 c2^2) / (r1^2 r2^2) = shrink1 + rho1^2 shrink2: positive terms
        eps_part = (shrink1 + rho1[0] * rho1[0] * shrink2) / (1 + rho)
        return eps_part + half * rho

    def grad(self):
        """``(d cos / d x1, d cos / d x2)``, from ``d cos/d x1 = x2/(d1 d2) - cos x1 / d1^2``.

        Where ``cos > 1/2`` the two terms cancel for nearly parallel rows (the rounded
        cosine carries its rounding into a difference only as large as the angle); there, with
        the unit rows ``v_k`` and ``rho_k = s_k / r_k``, ``d cos / d x1 = rho_2 (w +
        (|w|^2 / 2) v_1 + (1 - rho_1^2) <v_1, v_2> v_1) / r_1`` (``w = v_2 - v_1`` from the
        double-double unit rows, ``1 - rho_1^2 = c_1^2 / r_1^2``), and symmetrically; the
        ``rho_k``, ``1 - rho_k^2`` and ``r_k`` from the double-double squared norms, as
        :meth:`_one_minus_cos` formed them.
        """
        with _quiet():
            cos = self.cos[..., None]
            r1, r2 = self.r1[..., None], self.r2[..., None]
            g1 = (self.u2 / r2 - cos * self.u1 / r1) / r1
            g2 = (self.u1 / r1 - cos * self.u2 / r2) / r2
            if np.any(self.careful):  # _one_minus_cos has kept the unit rows
                rows = self.careful
                v1, v1_lo, v2, v2_lo, d, half = self.unit_rows
                (rho1, shrink1, r1), (rho2, shrink2, r2) = self.scales
                # half + shrink_k <v1, v2> = shrink_k + half (1 - shrink_k): two positive
                # terms, without the rounding of <v1, v2> = 1 - half; the unit rows with
                # their low parts (each rounding counts where the eps part dominates)
                a1 = (shrink1 + half * (1 - shrink1))[..., None]
                a2 = (shrink2 + half * (1 - shrink2))[..., None]
                fix1 = nx.dd_div(*rho2, *r1)[0][..., None] * (a1 * v1 + (a1 * v1_lo - d))
                fix2 = nx.dd_div(*rho1, *r2)[0][..., None] * (a2 * v2 + (a2 * v2_lo + d))
                ok = np.all(np.isfinite(fix1) & np.isfinite(fix2), axis=-1)[..., None]
                g1[rows] = np.where(ok, fix1, g1[rows])
                g2[rows] = np.where(ok, fix2, g2[rows])
            return np.ldexp(g1, -self.e1[..., None]), np.ldexp(g2, -self.e2[..., None])


def _cosine_args(input1, input2, target, margin, reduction):
    check_reduction(reduction)
    # (+0.0: a margin of -0.0 as 0, so that cos - m is -0.0 only for an underflowed cos < 0)
    margin = check_finite_scalar(margin, "margin") + 0.0
    target = as_array(target, "target")
    # integer or bool labels do not promote the embeddings' dtype (as contrastive_loss)
    labels = {"target": target} if target.dtype.kind == "f" else {}
    dtype = result_dtype(*float_arrays({"input1": input1, "input2": input2, **labels}))
    x1, x2 = float_arrays({"input1": input1, "input2": input2}, dtype, rows=True)
    if x1.ndim == 0 or x1.shape[-1] == 0:
        raise ValueError(
            f"input1 must have a non-empty feature axis (the last); got shape {x1.shape}"
        )
    check_same_shape(x1, x2, "input1", "input2")
    t = float_arrays({"target": target})[0]
    if t.shape != x1.shape[:-1]:
        raise ValueError(
            f"target must have the batch shape of input1 {x1.shape[:-1]} (all axes but the "
            f"last); got shape {t.shape}"
        )
    check_pm1_labels(t, "target")
    return x1, x2, t, margin, dtype


def _careful_cosine(x1, x2):
    """:class:`_Cosine` of the rows ``x1``, ``x2`` (in float64), a row with infinite entries
    taken as its limit direction scaled by 2**600 (the eps of the cosine is then negligible,
    as in the limit, and the scaling of _Cosine stays exact)."""
    x1, inf1 = nx.limit_direction(x1.astype(np.float64, copy=False), 2.0**600)
    x2, inf2 = nx.limit_direction(x2.astype(np.float64, copy=False), 2.0**600)
    cos = _Cosine(x1, x2)
    cos.infinite = (inf1, inf2)
    return cos


# Rows whose squared norms (float64) lie in this range take the plain cosine: nothing
# overflows (r1 r2 <= 2**900), and a product that underflows (below 2**-1022) is
# negligible next to the eps or to a norm above 2**-450. Every nonzero float32 or float16
# row is inside it.
_PLAIN_SQUARES = (2.0**-900, 2.0**900)


def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction="mean"):
    r"""Cosine embedding loss, as PyTorch's: pull similar pairs to cosine 1, push others below m.

    With the cosine over the last axis as PyTorch regularises it,

    .. math::

        \cos(x_1, x_2) = \frac{\langle x_1, x_2 \rangle}
        {\sqrt{(\lVert x_1 \rVert^2 + \varepsilon)(\lVert x_2 \rVert^2 + \varepsilon)}},
        \qquad \varepsilon = 10^{-12} \text{ (rounded to float32, as PyTorch's constant)},

    .. math::

        \ell(x_1, x_2, t) = \begin{cases} 1 - \cos(x_1, x_2) & t = 1 \\
        \max\bigl(0,\ \cos(x_1, x_2) - m\bigr) & t = -1 \end{cases}

    The :math:`\varepsilon` makes the cosine of a zero vector 0 (the loss 1 for
    :math:`t = 1`, :math:`\max(0, -m)` for :math:`t = -1`); it changes the cosine
    noticeably only for vectors of norm below about :math:`10^{-5}`. Evaluated in float64
    for every dtype; a row whose squares would overflow or underflow there is scaled by a
    power of 2 first (no overflow or underflow for any finite input). For
    :math:`\cos > 1/2`, :math:`1 - \cos` is formed
    as :math:`\lVert x_1/\lVert x_1\rVert - x_2/\lVert x_2\rVert\rVert^2 / 2` (with the
    :math:`\varepsilon` part apart), from the normalised vectors in double-double, not
    from the rounded cosine (which would lose :math:`10^{-16}/\theta^2` relative at an
    angle :math:`\theta`): within one ULP in float16 and float32, four in float64, also
    for nearly parallel pairs; in float64 for rows of up to about 250 entries and longer
    rows of varied entries: a row's sums of products are BLAS dot products, whose rounding
    grows with the row's length D where the products are nearly equal (on rows of one
    repeated entry, up to about D/64 ULP; measured: 7 at D = 1000, 21 at 4096). For
    :math:`t = -1`, :math:`\cos - m` is formed from that :math:`1 - \cos` where
    :math:`\cos > 1/2`; where it cancels (:math:`\cos` within a few ULP of :math:`m`, or
    :math:`m = 0` and a nearly orthogonal pair, whose dot product cancels) its error is a
    few float64 ULP of the larger of :math:`|m|` and the dot product's terms over the
    norms (at most a few float64 ULP of 1).

    Parameters
    ----------
    input1, input2 : array_like, shape (..., D)
        Embeddings, the same shape; the feature axis is last.
    target : array_like, shape (...)
        Labels :math:`t \in \{-1, +1\}` of the batch shape ``input1.shape[:-1]``. Integer
        labels do not change the result dtype; floating labels take part in the promotion.
    margin : float, optional
        The margin :math:`m` (PyTorch suggests :math:`[0, 0.5]`; any finite number).
    reduction : {"mean", "sum", "none"}
        Over the pairs.

    Returns
    -------
    ndarray or numpy scalar
        The per-pair losses (``"none"``, the batch shape) or their reduction.

    Raises
    ------
    ValueError
        If ``margin`` is not a finite number; if ``reduction`` is unknown; if ``input1`` has
        no feature axis or ``input2`` not its shape; if ``target`` does not have the batch
        shape or holds a label other than -1 and +1.

    Notes
    -----
    ``torch.nn.functional.cosine_embedding_loss`` :cite:p:`paszke2019pytorch`, which
    takes 1-D or 2-D input and any label (a label other than :math:`\pm 1` gives 0).
    PyTorch squares the entries in the input's dtype, so its cosine is NaN or 0 for
    embeddings with entries above about :math:`1.8 \times 10^{19}` in float32; here it is
    the cosine. Not a likelihood loss.

    Examples
    --------
    >>> cosine_embedding_loss([[1.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]], [1, -1],
    ...                       margin=0.5, reduction="none").round(6).tolist()
    [0.292893, 0.5]
    """
    return _cosine_embedding(input1, input2, target, margin, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input1", "input2")
def cosine_embedding_loss_grad(input1, input2, target, margin=0.0, reduction="mean"):
    r"""Gradient of :func:`cosine_embedding_loss` with respect to ``input1`` and ``input2``.

    With :math:`d_k = \sqrt{\lVert x_k \rVert^2 + \varepsilon}`,

    .. math::

        \frac{\partial \cos}{\partial x_1} = \frac{x_2}{d_1 d_2}
        - \cos(x_1, x_2)\, \frac{x_1}{d_1^2}

    (and symmetrically for :math:`x_2`); the loss's gradient is
    :math:`-\partial \cos` for :math:`t = 1` and :math:`\partial \cos\,
    \mathbb{1}[\cos - m \ge 0]` for :math:`t = -1`. At the kink :math:`\cos = m` the
    gradient passes, as through PyTorch's ``clamp_min``; the side is that of
    :math:`\cos - m` as the loss forms it in float64 (within a few ULP of :math:`1 - \cos`
    where :math:`\cos > 1/2`), and a negative cosine too small for float64 counts as
    negative. At a zero vector it is finite (:math:`x_2 / (\sqrt{\varepsilon}\, d_2)`), as
    in PyTorch.

    Parameters
    ----------
    input1, input2, target, margin, reduction
        As in :func:`cosine_embedding_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_input1, d_input2)``, each of ``input1``'s shape and the result dtype.

    Raises
    ------
    ValueError
        As :func:`cosine_embedding_loss` does, for the same arguments.

    Notes
    -----
    What autograd gives for ``torch.nn.functional.cosine_embedding_loss``
    :cite:p:`paszke2019pytorch`. Accuracy: each entry within 4 ULP of its row's largest
    entry, in every dtype. The two terms cancel for nearly parallel vectors (to the
    angle): where :math:`\cos > 1/2` the difference is formed from the normalised
    vectors in double-double (as :math:`1 - \cos` for the loss), not from the rounded
    cosine. For nearly opposite vectors (:math:`\cos` near -1) the error is a few ULP of
    the terms' size.

    Examples
    --------
    >>> g1, g2 = cosine_embedding_loss_grad([[1.0, 0.0]], [[0.0, 1.0]], [1])
    >>> g1.round(6).tolist(), g2.round(6).tolist()
    ([[-0.0, -1.0]], [[-1.0, -0.0]])
    """
    return _cosine_embedding(input1, input2, target, margin, reduction, value=False)[1]


@gradients_in_argument_dtypes("input1", "input2")
def cosine_embedding_loss_value_and_grad(input1, input2, target, margin=0.0, reduction="mean"):
    r"""``cosine_embedding_loss`` and ``cosine_embedding_loss_grad`` in one pass: one cosine.

    The rows are scaled, their norms and cosines computed once, and feed both.

    Parameters
    ----------
    input1, input2, target, margin, reduction
        Same as :func:`cosine_embedding_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_input1, d_input2))``: bit for bit :func:`cosine_embedding_loss` and
        :func:`cosine_embedding_loss_grad` of the same arguments.

    Raises
    ------
    ValueError
        As :func:`cosine_embedding_loss` does, for the same arguments.

    Examples
    --------
    >>> args = ([[1.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]], [1, -1], 0.5)
    >>> value, (g1, g2) = cosine_embedding_loss_value_and_grad(*args)
    >>> bool(value == cosine_embedding_loss(*args))
    True
    >>> [g.tolist() for g in cosine_embedding_loss_grad(*args)] == [g1.tolist(), g2.tolist()]
    True
    """
    return _cosine_embedding(input1, input2, target, margin, reduction)


def _squares_and_dot(u, v):
    """``(|u|^2, |v|^2, <u, v>)`` of the rows, in float64: float32 or float16 rows are
    converted in blocks of rows (their products are exact in float64), never full-size."""
    if u.dtype == np.float64:
        return nx.row_dot(u, u), nx.row_dot(v, v), nx.row_dot(u, v)
    out = np.empty((3, len(u)))
    for rows in nx.chunks(len(u), max(1, nx.CHUNK // max(1, u.shape[-1]))):
        ub, vb = u[rows].astype(np.float64), v[rows].astype(np.float64)
        out[0, rows], out[1, rows], out[2, rows] = (
            nx.row_dot(ub, ub),
            nx.row_dot(vb, vb),
            nx.row_dot(ub, vb),
        )
    return out[0], out[1], out[2]


def _cosine_embedding(input1, input2, target, margin, reduction, *, value=True, grad=True):
    """``(loss or None, gradients or None)`` of the cosine embedding loss, from one cosine.

    Every row first takes the plain cosine ``<x1, x2> / sqrt((|x1|^2 + eps)(|x2|^2 + eps))``
    in float64 (three row dot products; no full-size float64 copy of the embeddings): where
    ``cos <= 1/2`` and the squared norms are in :data:`_PLAIN_SQUARES` it is within a few
    float64 ULP and ``1 - cos`` does not cancel. The other rows (nearly parallel pairs,
    huge, tiny, infinite or NaN entries) are gathered and redone by :class:`_Cosine`. The
    plain gradient is written in blocks of rows, from per-row coefficients.
    """
    x1, x2, t, margin, dtype = _cosine_args(input1, input2, target, margin, reduction)
    shape, batch = x1.shape, x1.shape[:-1]
    a1, a2 = (x.reshape(-1, shape[-1]) for x in (x1, x2))
    t = t.reshape(-1)
    n = len(t)
    with _quiet():
        r1, r2, plain_cos = _squares_and_dot(a1, a2)
        low, high = _PLAIN_SQUARES
        inside = (r1 <= high) & (r2 <= high)
        tiny = (r1 < low) | (r2 < low)
        for r in (r1, r2):  # the squared norms become the norms, in place
            r += COSINE_EPS
            np.sqrt(r, out=r)
        plain_cos += 0.0  # an exact zero as +0 (see _Cosine)
        plain_cos /= r1 * r2
        inside &= plain_cos <= 0.5
        rows = np.flatnonzero(~inside | tiny)
        del tiny
        # cos - m: the loss of t = -1 and, for the gradient, the side of its kink (the same
        # numbers: the loss is 0 where the gradient is, but at an exact kink)
        one_minus, minus = None, plain_cos - margin
        if value:
            one_minus = 1 - plain_cos
        if len(rows):
            careful = _careful_cosine(a1[rows], a2[rows])
            minus[rows] = careful.minus(margin)
            if value:
                one_minus[rows] = careful.one_minus
    loss = None
    if value:
        loss = np.where(t == 1, one_minus, np.maximum(minus, 0))
        loss = reduce_to(np.where(np.isnan(t), np.nan, loss).reshape(batch), reduction, dtype)
        del one_minus
    if not grad:
        return loss, None
    scale = float(reduction_scale(n, reduction, np.float64))
    d1, d2 = np.empty(a1.shape, dtype), np.empty(a1.shape, dtype)
    with _quiet():
        f = _cosine_factor(minus, t, scale)
        # d cos / d x1 = (x2 / r2 - cos x1 / r1) / r1 = x2 A - x1 B1, and symmetrically
        a = f / (r1 * r2)
        f *= plain_cos
        _plain_cosine_grad(a2, a1, a, f / (r1 * r1), d1)
        _plain_cosine_grad(a1, a2, a, f / (r2 * r2), d2)
        del a
        # rows whose squared norms only fall below the range keep the plain gradient: the
        # eps dominates their norms, and x2 / (r1 r2) does not cancel; _Cosine's scaled
        # rows would form it below float64's normal range before scaling back
        redo = ~inside[rows]
        if redo.any():
            rows = rows[redo]
            f = _cosine_factor(minus[rows], t[rows], scale)[:, None]
            grads = zip((d1, d2), careful.grad(), careful.infinite, strict=True)
            for out, g, infinite in grads:
                # the gradient with respect to an infinite row is 0 (its limit)
                g = np.where(infinite[redo, None], 0.0, g[redo])
                out[rows] = f * g + 0.0
    return loss, (d1.reshape(shape), d2.reshape(shape))


def _cosine_factor(minus, t, scale):
    """d loss / d cos times the reduction's scale: -1 for t = 1, [cos - m >= 0] for t = -1
    (``minus``: cos - m)."""
    f = np.where(t == 1, -1.0, _active(minus))
    f = np.where(np.isnan(t), np.nan, f)
    f *= scale
    return f


def _plain_cosine_grad(v, u, coef_v, coef_u, out):
    """``out = v coef_v - u coef_u`` (per-row coefficients) in float64, in blocks of rows."""
    step = max(1, nx.CHUNK // 4 // max(1, v.shape[-1]))  # two float64 buffers of 64 KB
    buffers = np.empty((2, min(step, len(v)), v.shape[-1]))
    for rows in nx.chunks(len(v), step):
        g, term = buffers[:, : len(v[rows])]
        np.multiply(v[rows], coef_v[rows, None], out=g)
        g -= np.multiply(u[rows], coef_u[rows, None], out=term)
        g += 0.0  # a zero gradient is +0
        out[rows] = g
