"""Metric-learning losses on embeddings.

Embeddings lie along the last axis: an input of shape ``(..., D)`` holds one
embedding per index of its batch shape ``(...)``, and the per-sample losses
(``reduction="none"``) have that batch shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.blas import dgemm

from . import _numerics as nx
from ._checks import (
    as_array,
    check_binary_labels,
    check_bool,
    check_positive_scalar,
    check_reduction,
    check_same_shape,
    check_scalar_at_least,
    check_temperature,
    float_arrays,
    gradients_in_argument_dtypes,
    result_dtype,
)
from ._numerics import quiet, scaled_norm, times, two_sum
from ._pairwise import (
    cosine_embedding_loss,
    cosine_embedding_loss_grad,
    cosine_embedding_loss_value_and_grad,
    hinge_embedding_loss,
    hinge_embedding_loss_grad,
    hinge_embedding_loss_value_and_grad,
    margin_ranking_loss,
    margin_ranking_loss_grad,
    margin_ranking_loss_value_and_grad,
)
from ._reduction import reduce_to, reduction_scale, square_shares

__all__ = [
    "contrastive_loss",
    "contrastive_loss_grad",
    "contrastive_loss_value_and_grad",
    "triplet_margin_loss",
    "triplet_margin_loss_grad",
    "triplet_margin_loss_value_and_grad",
    "nt_xent_loss",
    "nt_xent_loss_grad",
    "nt_xent_loss_value_and_grad",
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

# F.normalize's default floor of the norm
NORMALIZE_EPS = 1e-12


def _working_dtype(dtype) -> np.dtype:
    """float16 and float32 embeddings are evaluated in float64, and rounded once at the end.

    A squared distance of 256 overflows float16; and these losses subtract
    distances (from the margin, from each other), which magnifies the distances'
    rounding errors: float64 distances leave a float32 result within its few ULP
    unless the cancellation exceeds a factor of about 2**26.
    """
    return np.dtype(np.float64)


# Where a difference of float64 distances (from each other or from the margin) is below
# this fraction of the distances, it is recomputed in double-double: for a float64
# result wherever it cancels at all, for float32 and float16 results only where the
# cancellation exceeds what float64 distances (relative error ~2**-52) leave below an ULP.
_CANCELLATION_CUT = {
    np.dtype(np.float64): 0.5,
    np.dtype(np.float32): 2.0**-20,
    np.dtype(np.float16): 2.0**-32,
}

# A sum of squares at least this large lost nothing to underflow (each lost term is
# below the smallest subnormal, D of them a negligible part of the sum).
_SAFE_SQUARED_SUM = {np.dtype(np.float32): 2.0**-100, np.dtype(np.float64): 2.0**-900}


def _unsafe_sums(squared, axis=None):
    """Indices of the 1-D sums of squares ``squared`` (with ``axis=0``, of the columns of a
    2-D array where any entry is) that underflowed, overflowed or are NaN: those the
    scaled norm takes again. Two reductions first: a mask only where some sum needs it."""
    floor = _SAFE_SQUARED_SUM[squared.dtype]
    if not squared.size or (np.min(squared) >= floor and np.max(squared) < np.inf):
        return np.empty(0, np.intp)
    safe = (squared >= floor) & (squared < np.inf)
    return np.flatnonzero(~(safe if axis is None else np.all(safe, axis=axis)))


@dataclass(frozen=True)
class _Euclidean:
    """Euclidean norms of the rows of ``v`` (last axis) and what their gradients need."""

    norm: np.ndarray  # ||v||, v's batch shape
    squared: np.ndarray  # ||v||^2 (inf only where the exact value overflows)
    unit: np.ndarray | None  # v / ||v||, 0 where v = 0 (PyTorch's norm backward)


def _euclidean(v: np.ndarray, unit: bool = False) -> _Euclidean:
    """Norms over the last axis that neither overflow nor underflow in between.

    The plain sum of squares serves the rows where it is finite and not tiny; the
    others are recomputed by the scaled norm (largest entry factored out). A
    dissimilar pair 1e-170 apart keeps its distance (and its gradient direction)
    instead of a squared distance of 0.
    """
    if v.ndim == 1:  # one vector: as a batch of one
        one = _euclidean(v[None], unit)
        return _Euclidean(one.norm[0], one.squared[0], one.unit[0] if unit else None)
    squared = nx.row_dot(v, v)  # no full-size temporary
    norm = np.sqrt(squared)
    direction = v / norm[..., None] if unit else None
    redo = _unsafe_sums(squared.reshape(-1))  # tiny, infinite or NaN
    if redo.size:
        redo = np.unravel_index(redo, squared.shape)
        rows = v[redo]
        root = scaled_norm(rows, axis=-1)
        norm[redo] = root
        squared[redo] = root * root
        if unit:
            safe = np.where(root > 0, root, 1)[:, None]
            direction[redo] = np.where(root[:, None] > 0, rows / safe, 0)
            # a norm below the normal range has lost digits: those rows from the rows
            # scaled by a power of 2 (their largest entry in [1/2, 1)), whose norm has not
            tiny = (root > 0) & (root < np.finfo(v.dtype).tiny)
            if np.any(tiny):
                direction[tuple(i[tiny] for i in redo)] = nx.unit_rows(rows[tiny], 0.0).h
    return _Euclidean(norm, squared, direction)


# --- double-double arithmetic: a value as an unevaluated sum hi + lo of two float64 ---------
# Used only where a loss subtracts nearly equal distances or cosines, so that the result
# keeps its few ULP: the error-free transformations of Knuth (TwoSum) and Dekker
# (TwoProduct by splitting), exact for operands far from overflow, which the callers
# ensure by scaling rows by a power of 2.


def _dd_row_sum(hi, lo):
    """The sum of ``hi + lo`` over the last axis as a double-double (pairwise TwoSum)."""
    err = np.sum(lo, axis=-1)
    s = hi
    while s.shape[-1] > 1:
        if s.shape[-1] % 2:
            s = np.concatenate([s, np.zeros_like(s[..., :1])], axis=-1)
        s, e = two_sum(s[..., 0::2], s[..., 1::2])
        err = err + np.sum(e, axis=-1)
    total = s[..., 0] if s.shape[-1] else np.zeros(s.shape[:-1])
    return two_sum(total, err)


def _dd_difference(x, y, shift):
    """``x - y + shift`` (``shift`` one per row) kept exactly as ``hi + lo``."""
    hi, lo = two_sum(x, -y)
    if np.any(shift):
        hi, e = two_sum(hi, shift[..., None])
        lo += e
    return hi, lo


def _dd_distance(x, y, shift, kind, slices=3):
    """The distance of rows ``x - y + shift`` as a double-double ``(hi, lo)``.

    ``x`` and ``y`` are scaled by a power of 2 per row (``shift`` too, one per row) so
    that ``|x - y + shift| < 1``. ``kind`` is 1 (the L1 norm), 2 (the Euclidean norm) or
    ``"squared"`` (its square). The difference is kept exactly as hi + lo; the squares
    and their sum by :func:`~lossutils._numerics.dd_sum_of_squares`; the square root
    gets one Newton correction in double-double.
    """
    hi, lo = _dd_difference(x, y, shift)
    if kind == 1:
        sign = np.where(hi < 0, -1.0, 1.0)
        return _dd_row_sum(sign * hi, sign * lo)
    s_hi, s_lo = nx.dd_sum_of_squares(hi, lo, slices)
    if kind == "squared":
        return s_hi, s_lo
    return nx.dd_sqrt(s_hi, s_lo)


def _embeddings(named: dict, dtype=None):
    """Same-shape arrays of embeddings with at least one (the feature) axis."""
    arrays = float_arrays(named, dtype, rows=True)
    names = list(named)
    if arrays[0].ndim == 0 or arrays[0].shape[-1] == 0:
        # a distance or a cosine of empty vectors is no measure of the pair
        raise ValueError(
            f"{names[0]} must have a non-empty feature axis (the last); got shape {arrays[0].shape}"
        )
    for name, array in zip(names[1:], arrays[1:], strict=True):
        check_same_shape(arrays[0], array, names[0], name)
    return arrays


@dataclass(frozen=True)
class _Pairs:
    """Checked arguments of the contrastive loss, in the working dtype."""

    x1: np.ndarray  # the result dtype
    x2: np.ndarray
    diff: np.ndarray | None  # x1 - x2 in the working dtype (float32 for float16), if kept
    work: np.dtype  # the working dtype
    target: np.ndarray  # labels, 1 = similar (float64)
    margin: float
    reduction: str
    dtype: np.dtype  # the result dtype


def _contrastive_args(x1, x2, target, margin, reduction, with_diff=True) -> _Pairs:
    reduction = check_reduction(reduction)
    margin = check_positive_scalar(margin, "margin", allow_zero=True)
    target = as_array(target, "target")
    if target.dtype.kind not in "biuf":
        raise ValueError(f"target must hold labels in {{0, 1}}; got dtype {target.dtype}")
    # integer or bool labels do not promote the embeddings' dtype (as class indices)
    dtype = result_dtype(x1, x2, target if target.dtype.kind == "f" else None)
    x1, x2 = _embeddings({"x1": x1, "x2": x2}, dtype)
    if target.shape != x1.shape[:-1]:
        raise ValueError(
            f"target must have the batch shape of x1 {x1.shape[:-1]} (all axes but the last); "
            f"got shape {target.shape}"
        )
    target = target.astype(np.float64)
    check_binary_labels(target, "target")
    # float16 in float32 (where its differences are exact); the few pairs whose hinge
    # cancels get their distance again in float64 (_hinge)
    work = nx.working_dtype(dtype)
    diff = np.subtract(x1, x2, dtype=work) if with_diff else None
    return _Pairs(x1, x2, diff, work, target, margin, reduction, np.dtype(dtype))


# Elements per block of the differences of pairs whose distances alone are needed.
_PAIR_BLOCK_ELEMENTS = 1 << 16
# Elements per block of the p = 1 triplets' double-double distances (dd_abs_sum_distance:
# its dozen block-sized temporaries in the fastest cache).
_PAIR_DD_ELEMENTS = 1 << 14


def _pair_distances(pairs: _Pairs) -> _Euclidean:
    """:func:`_euclidean` of ``x1 - x2`` without its full-size difference: the differences
    of cache-sized blocks of rows and their sums of squares (each row the same operations
    as on the whole difference), the rows that need the scaled norm taken again."""
    width = pairs.x1.shape[-1]
    x1, x2 = (x.reshape(-1, width) for x in (pairs.x1, pairs.x2))
    n = len(x1)
    squared = np.empty(n, pairs.work)
    step = max(1, _PAIR_BLOCK_ELEMENTS // width)
    buffer = np.empty((min(n, step), width), pairs.work)
    for rows in nx.chunks(n, step):
        v = np.subtract(x1[rows], x2[rows], out=buffer[: rows.stop - rows.start], dtype=pairs.work)
        squared[rows] = nx.row_dot(v, v)
    norm = np.sqrt(squared)
    redo = _unsafe_sums(squared)
    if redo.size:
        again = _euclidean(np.subtract(x1[redo], x2[redo], dtype=pairs.work))
        norm[redo], squared[redo] = again.norm, again.squared
    batch = pairs.x1.shape[:-1]
    return _Euclidean(norm.reshape(batch), squared.reshape(batch), None)


def _hinge(pairs: _Pairs, dist: _Euclidean):
    """``(max(0, margin - d), d)``, the distance redone where ``d`` is near the margin.

    There ``m - d`` cancels and magnifies the rounding of ``d`` by ``m / (m - d)``;
    elsewhere (``d <= m / 2``) it loses nothing. A float32 distance (relative error
    ~2**-24) within ``m / 2`` of the margin is redone in float64 from the exact
    difference; a float64 one (or a float64 redo still within 2**-20 of the margin,
    for a float32 result) in double-double. ``d`` is returned in float64.
    """
    m = pairs.margin
    norm = np.array(dist.norm, dtype=np.float64)  # an array also for one pair
    d = norm.reshape(-1)  # a view: the distances of the pairs in order
    x1, x2 = (x.reshape(-1, x.shape[-1]) for x in (pairs.x1, pairs.x2))
    # the rows whose float64 hinge may be off by more than an ULP of the result dtype: a
    # float64 result where m - d cancels at all, a float32 one only where it cancels by
    # more than 2**-20 (float64 distances carry ~2**-52 of their size)
    cut, top = m * _CANCELLATION_CUT[pairs.dtype], m * (1 + 2.0**-49)
    dissimilar = pairs.target.reshape(-1) == 0
    if pairs.work == np.float64:
        rows = np.flatnonzero(dissimilar & (d > m - cut) & (d < top))
    else:
        rows = np.flatnonzero(dissimilar & (d > m / 2) & (d < m * (1 + 2.0**-20)))
        if rows.size:  # gathered by index and cast first: faster than a mixed subtract
            diff = np.take(x1, rows, axis=0).astype(np.float64)
            diff -= np.take(x2, rows, axis=0)
            d[rows] = redone = _euclidean(diff).norm
            # the test below on these only: the other pairs keep float32 distances outside
            # (m / 2, m (1 + 2**-20)), which it would not select either
            rows = rows[(redone > m - cut) & (redone < top)]
    hinge = np.array(np.maximum(m - norm, 0))
    if rows.size:
        flat = hinge.reshape(-1)  # a view: the hinge of the pairs in order
        e = np.frexp(d[rows] * (1 + 2.0**-20))[1]  # the power of 2 above each distance
        # m - d cancelling by less than 2**10: a distance to 2**-67 of 2**e suffices, from
        # dd_distances_squared where nothing needs scaling; else each row scaled by 2**-e
        # (a distance is at least its largest entry), with 1 or 3 slices
        moderate = d[rows] < m * (1 - 2.0**-10)
        fast = moderate & (np.abs(e) < nx.DD_DISTANCE_EXPONENTS)
        # the double-double distances (hi, lo) of the selected rows: the fast ones at
        # once, the others in cache-sized blocks; then their roots and hinges at once
        r, r_lo = np.empty(rows.size), np.empty(rows.size)
        if np.any(fast):
            ((r[fast], r_lo[fast]),) = nx.dd_distances_squared(
                [x1, x2], [(0, 1)], 0.0, e[fast], index=rows[fast]
            )
        step = max(1, _BLOCK_ELEMENTS // x1.shape[-1])
        for group, slices in ((moderate & ~fast, 1), (~moderate, 3)):
            picked = np.flatnonzero(group)
            for part in nx.chunks(picked.size, step):
                block = picked[part]
                index, exponent = rows[block], e[block]
                xs, ys = (
                    np.take(x, index, axis=0).astype(np.float64, copy=False) for x in (x1, x2)
                )
                k = -exponent[:, None]
                hi, lo = _dd_distance(np.ldexp(xs, k), np.ldexp(ys, k), 0.0, 2, slices)
                r[block], r_lo[block] = np.ldexp(hi, exponent), np.ldexp(lo, exponent)
        if np.any(fast):
            r[fast], r_lo[fast] = nx.dd_sqrt(r[fast], r_lo[fast])
        h, h_err = two_sum(m, -r)
        flat[rows] = np.maximum(h + (h_err - r_lo), 0)
    return hinge, norm


@quiet
def contrastive_loss(x1, x2, target, margin=1.0, reduction="mean"):
    r"""Contrastive loss of pairs: :math:`y\,d^2 + (1 - y)\max(0, m - d)^2`.

    With :math:`d = \lVert x_1 - x_2 \rVert_2` over the last axis: similar pairs
    (:math:`y = 1`) are pulled together, dissimilar pairs (:math:`y = 0`) are pushed
    apart until they are at least the margin :math:`m` apart.

    Parameters
    ----------
    x1, x2 : array_like
        Embeddings of shape ``(..., D)``, the same shape.
    target : array_like
        Labels in {0, 1} (1 = similar) of the batch shape ``x1.shape[:-1]``. Integer
        or bool labels do not change the result dtype; floating labels take part
        in the dtype promotion.
    margin : float, optional
        :math:`m \ge 0`.
    reduction : {"mean", "sum", "none"}, optional
        Over the pairs.

    Returns
    -------
    ndarray or numpy scalar
        The reduced loss, or the per-pair losses (batch shape) for ``"none"``.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``margin`` is not a non-negative finite
        number, ``x1`` and ``x2`` differ in shape or have no (or an empty) feature axis,
        or ``target`` does not have their batch shape or holds a label other than 0 and 1.

    Notes
    -----
    :cite:t:`hadsell2006dimensionality` write :math:`\frac12` in front of both terms and
    use :math:`Y = 0` for similar pairs; this is the common modern form without the
    halves. PyTorch has no built-in; it is usually written
    ``y * d.pow(2) + (1 - y) * F.relu(margin - d).pow(2)`` with
    ``d = F.pairwise_distance(x1, x2, eps=0)``.

    Accuracy: within 4 ULP of the exact loss of the given embeddings, in every dtype, for
    rows of up to about 250 entries, and longer rows of varied entries. A row's sum of
    squares is a BLAS dot product, whose rounding grows with the row's length D where the
    squares are nearly equal: on rows of one repeated entry, up to about D/128 ULP in
    float32 and D/64 in float64 (measured: 5.1 and 11 at D = 1000, 24 and 60 at 4096).
    float32 embeddings are evaluated in float32 (float16 in float32 too); the distance is a
    scaled norm where its square would overflow or underflow (a float16 pair 256 apart, a
    float64 pair 1e-170 apart). Dissimilar pairs within half the margin, where
    :math:`m - d` cancels and magnifies the rounding of :math:`d`, get their distance again:
    float32 ones in float64 (from the exact differences), float64 ones (and float32 ones
    within :math:`2^{-20}` of the margin) in double-double.

    Examples
    --------
    >>> import numpy as np
    >>> x1 = np.array([[0.0, 0.0], [0.0, 0.0]])
    >>> x2 = np.array([[0.3, 0.4], [0.3, 0.4]])
    >>> contrastive_loss(x1, x2, [1, 0], reduction="none").round(6).tolist()
    [0.25, 0.25]
    """
    return _contrastive(x1, x2, target, margin, reduction, grad=False)[0]


@gradients_in_argument_dtypes("x1", "x2")
@quiet
def contrastive_loss_grad(x1, x2, target, margin=1.0, reduction="mean"):
    r"""Gradient of :func:`contrastive_loss` w.r.t. ``x1`` and ``x2``.

    .. math::

        \frac{\partial \ell}{\partial x_1} = -\frac{\partial \ell}{\partial x_2}
        = 2\Big(y - (1 - y)\frac{\max(0, m - d)}{d}\Big)(x_1 - x_2)

    At :math:`d = 0` the hinge term's gradient is taken as 0, which is what
    PyTorch's autograd gives for ``torch.norm`` (its backward masks a zero norm to
    a zero gradient); the :math:`y\,d^2` term is differentiable there.

    Parameters
    ----------
    x1, x2, target, margin, reduction
        As for :func:`contrastive_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_x1, d_x2)``, each of ``x1``'s shape and dtype.

    Raises
    ------
    ValueError
        As :func:`contrastive_loss`.

    Examples
    --------
    >>> d1, d2 = contrastive_loss_grad([[0.0, 0.0]], [[0.3, 0.4]], [0])
    >>> d1.round(6).tolist(), d2.round(6).tolist()
    ([[0.6, 0.8]], [[-0.6, -0.8]])
    """
    return _contrastive(x1, x2, target, margin, reduction, value=False)[1]


@gradients_in_argument_dtypes("x1", "x2")
@quiet
def contrastive_loss_value_and_grad(x1, x2, target, margin=1.0, reduction="mean"):
    r"""``contrastive_loss`` and ``contrastive_loss_grad`` in one pass: one distance for both.

    Parameters
    ----------
    x1, x2, target, margin, reduction
        Same as :func:`contrastive_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_x1, d_x2))``: bit for bit :func:`contrastive_loss` and
        :func:`contrastive_loss_grad` of the same arguments.

    Raises
    ------
    ValueError
        As :func:`contrastive_loss`.

    Examples
    --------
    >>> args = ([[0.0, 0.0], [0.0, 0.0]], [[0.3, 0.4], [0.3, 0.4]], [1, 0])
    >>> value, (d1, d2) = contrastive_loss_value_and_grad(*args)
    >>> bool(value == contrastive_loss(*args))
    True
    >>> [g.tolist() for g in contrastive_loss_grad(*args)] == [d1.tolist(), d2.tolist()]
    True
    """
    return _contrastive(x1, x2, target, margin, reduction)


def _contrastive(x1, x2, target, margin, reduction, *, value=True, grad=True):
    """``(loss or None, gradients or None)`` of the contrastive loss, from one distance."""
    pairs = _contrastive_args(x1, x2, target, margin, reduction, with_diff=grad)
    dist = _euclidean(pairs.diff) if grad else _pair_distances(pairs)
    hinge, norm = _hinge(pairs, dist)
    y = pairs.target
    loss = None
    if value:
        # selected rather than multiplied: 0 * inf would be NaN for a far dissimilar pair
        loss = np.where(y == 0, hinge * hinge, y * dist.squared)
        loss = _contrastive_reduce(loss, lambda: np.where(y == 0, hinge, norm), pairs)
    if not grad:
        return loss, None
    # one float64 coefficient per pair times x1 - x2: 2 y for a similar pair and
    # -2 max(0, m - d) / d for a dissimilar one (the hinge along the unit direction)
    scale = reduction_scale(y.size, pairs.reduction, np.float64)
    with_hinge = np.array(y == 0)
    diff = pairs.diff
    # rounded to the working dtype, in which it multiplies x1 - x2
    coefficient = (np.where(with_hinge, -2 * hinge / norm, 2 * y) * scale).astype(diff.dtype)
    # where d is 0, infinite, NaN, below the working dtype's normal range (its digits
    # lost) or so small that m / d overflows the working dtype: the unit vector itself
    # from the rows scaled by a power of 2 (0 at d = 0, as PyTorch's norm backward), and
    # a zero hinge masks it
    normal = (norm >= np.finfo(diff.dtype).tiny) & (norm < np.inf)
    careful = with_hinge & ~(np.isfinite(coefficient) & normal)
    # a similar pair whose x1 - x2 overflowed the working dtype (x1 and x2 finite): its
    # gradient 2 y (x1 - x2) / n need not overflow
    far = ~with_hinge & (norm == np.inf)
    if np.any(careful):
        unit = _euclidean(_pair_difference(pairs, careful), unit=True).unit
        careful_g = -2 * scale * times(hinge[careful][..., None], unit)
    if np.any(far):
        far_g = _similar_grad_beyond_overflow(pairs, far, 2 * y[far] * scale)
    g = np.multiply(coefficient[..., None], diff, out=diff)  # in place
    if np.any(careful):
        g[careful] = careful_g
    if np.any(far):
        g[far] = far_g
    g += 0.0  # -0.0 (a zero hinge or a zero unit vector) as +0.0
    g = nx.to_dtype(g, pairs.dtype)
    return loss, (g, -g)


def _contrastive_reduce(loss, gaps, pairs: _Pairs):
    """The reduced loss from the per-pair losses ``gaps()**2``: a mean whose squares overflow
    (a float32 distance beyond 1.8e19, a float64 one beyond 1.3e154) though it does not is
    taken from the gaps themselves (:func:`~lossutils._reduction.square_shares`)."""
    if pairs.reduction == "mean" and loss.size and not np.max(loss) < np.inf:
        gaps = gaps()
        if np.all(np.isfinite(gaps)) and not np.any(np.isnan(loss)):
            return nx.to_dtype(square_shares(gaps.reshape(-1), loss.size), pairs.dtype)[()]
    return reduce_to(loss, pairs.reduction, pairs.dtype)


def _pair_difference(pairs: _Pairs, rows):
    """``x1 - x2`` of the selected pairs in float64 (exact for float32 and float16 pairs)."""
    return np.subtract(pairs.x1[rows], pairs.x2[rows], dtype=np.float64)


def _similar_grad_beyond_overflow(pairs: _Pairs, rows, coefficient):
    """``coefficient (x1 - x2)`` (one coefficient per pair) of the selected pairs, in float64,
    where ``x1 - x2`` may overflow: entries whose float64 difference overflows though
    ``x1`` and ``x2`` are finite take ``c x1 - c x2``, two terms of one sign."""
    c = coefficient[..., None]
    x1, x2 = (x[rows].astype(np.float64) for x in (pairs.x1, pairs.x2))
    g = c * _pair_difference(pairs, rows)
    beyond = ~np.isfinite(g) & np.isfinite(x1) & np.isfinite(x2)
    if np.any(beyond):
        g[beyond] = (c * x1 - c * x2)[beyond]
    return g


def _pnorm(v, p):
    """:math:`\\lVert v \\rVert_p` over the last axis; scaled by the largest entry for p > 2."""
    a = np.abs(v)
    if p == 1:
        return np.sum(a, axis=-1)
    if p == 2:
        return _euclidean(v).norm
    top = np.max(a, axis=-1, keepdims=True, initial=0)
    safe = np.where((top > 0) & np.isfinite(top), top, 1)
    scaled = np.sum((a / safe) ** p, axis=-1, keepdims=True) ** (1 / p)
    return np.where(np.isinf(top), top, safe * scaled)[..., 0]


def _pnorm_grad(v, norm, p):
    """d||v||_p / dv = sign(v) (|v| / ||v||)^(p-1); 0 at v = 0 (PyTorch's norm backward)."""
    n = norm[..., None]
    g = np.sign(v) * (np.abs(v) / np.where(n == 0, 1, n)) ** (p - 1)
    return np.where(n == 0, 0, g)


@dataclass(frozen=True)
class _Triplets:
    """Checked arguments of the triplet loss, in the working dtype."""

    anchor: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    margin: float
    p: float
    eps: float
    reduction: str
    dtype: np.dtype  # the result dtype


def _triplet_args(anchor, positive, negative, margin, p, eps, squared, reduction) -> _Triplets:
    reduction = check_reduction(reduction)
    margin = check_positive_scalar(margin, "margin", allow_zero=True)
    p = check_scalar_at_least(p, "p", 1.0)
    eps = check_positive_scalar(eps, "eps", allow_zero=True)
    if squared and p != 2:
        raise ValueError(f"p must be 2 with squared=True (the squared Euclidean form); got {p}")
    a, pos, neg = _embeddings({"anchor": anchor, "positive": positive, "negative": negative})
    # float16 and float32 embeddings stay as they are: widened block by block in _triplet
    return _Triplets(a, pos, neg, margin, p, eps, reduction, a.dtype)


def _tail_fields(t: _Triplets):
    """The fields of ``t`` after the three embeddings."""
    return t.margin, t.p, t.eps, t.reduction, t.dtype


@dataclass(frozen=True)
class _TripletDistances:
    """The distances d(a, p), d(a, n) (and d(p, n) with swap) and their gradients."""

    dist: dict  # "ap", "an" (and "pn"): distances, the batch shape
    diff: dict  # the same keys: the differences x - y (+ eps), (..., D), or None


def _triplet_parts(t: _Triplets, swap, squared, with_grad=False) -> _TripletDistances:
    """The distances and, if asked, the differences they are the norms of."""
    shift = 0 if squared else t.eps
    diffs = {"ap": (t.anchor, t.positive), "an": (t.anchor, t.negative)}
    if swap:
        diffs["pn"] = (t.positive, t.negative)
    dist, kept = {}, {}
    for key, (x, y) in diffs.items():
        v = np.subtract(x, y, dtype=np.float64)  # float32 rows widened here, in cache
        if shift:
            v += shift
        if squared:
            dist[key] = _euclidean(v).squared
        elif t.p == 2:
            dist[key] = _euclidean(v).norm
        else:
            dist[key] = _pnorm(v, t.p)
        kept[key] = v if with_grad else None
    return _TripletDistances(dist, kept)


def _times_distance_grad(coefficient, v, dist, t: _Triplets, squared):
    """``coefficient`` (one per row) times the gradient of the distance w.r.t. ``v``.

    Written over ``v``. For the Euclidean norm one factor ``coefficient / d`` per row;
    the unit vector ``v / d`` itself only where that overflows or ``d`` is 0 or
    infinite (0 at ``d = 0``, PyTorch's norm backward).
    """
    if squared:
        return np.multiply((2 * coefficient)[..., None], v, out=v)
    if t.p != 2:
        g = _pnorm_grad(v, dist, t.p)
        g *= coefficient[..., None]
        return g
    factor = coefficient / dist
    careful = ~(np.isfinite(factor) & (dist > 0) & (dist < np.inf))
    if np.any(careful):
        fix = coefficient[careful][..., None] * _euclidean(v[careful], unit=True).unit
    g = np.multiply(factor[..., None], v, out=v)
    if np.any(careful):
        g[careful] = fix
    return g


# Rows per block of the double-double triplets: their temporaries stay cache-sized.
_BLOCK_ELEMENTS = 1 << 16


def _refined_triplet(t: _Triplets, rows, swap, squared, bound, slices=3):
    """``d(a, p) - d(a, n) + margin`` of the selected rows, in double-double.

    ``bound`` (one per row) is at least the largest ``|entry|`` of the differences (a
    distance is): each row is scaled by the power of 2 above it. Where most rows are
    selected, all are computed (gathering them would cost more), in blocks of rows.
    """

    def distances(part: _Triplets, e):
        k = -e[..., None]
        a, pos, neg = (np.ldexp(x, k) for x in (part.anchor, part.positive, part.negative))
        shift = 0.0 if squared else np.ldexp(t.eps, -e)
        pairs = [(a, pos), (a, neg)] + ([(pos, neg)] if swap else [])
        kind = "squared" if squared else int(t.p)
        return [_dd_distance(x, y, shift, kind, slices) for x, y in pairs]

    return _triplet_rows(t, rows, swap, squared, bound, distances, scaled=True)


def _refined_triplet_unscaled(t: _Triplets, rows, swap, squared, bound):
    """:func:`_refined_triplet` (cancelling by less than ``2**10``) of rows whose distances
    need no scaling (and, for p = 2, whose ``eps`` is below ``2**-20`` of them): by
    :func:`~lossutils._numerics.dd_distances_squared` (p = 2, squared) at a fraction of
    the cost, over all the rows where most are selected (gathering them would cost
    more), or :func:`~lossutils._numerics.dd_abs_sum_distance` (p = 1)."""
    pairs = [_PAIRS[key] for key in (("ap", "an", "pn") if swap else ("ap", "an"))]
    shift = 0.0 if squared else t.eps
    if t.p == 1 and not squared:

        def distances(part: _Triplets, e):
            x = [part.anchor, part.positive, part.negative]
            return [nx.dd_abs_sum_distance(x[i], x[j], shift, e) for i, j in pairs]

        return _triplet_rows(
            t, rows, swap, squared, bound, distances, False, elements=_PAIR_DD_ELEMENTS
        )
    flat = [x.reshape(-1, x.shape[-1]) for x in (t.anchor, t.positive, t.negative)]
    e = np.frexp(bound.reshape(-1) * (1 + 2.0**-20))[1]
    picked = np.flatnonzero(rows.reshape(-1))
    every = picked.size > len(e) // 4
    index = None if every else picked
    dists = nx.dd_distances_squared(flat, pairs, shift, e if every else e[picked], index)
    if not squared:
        dists = [nx.dd_sqrt(*d) for d in dists]
    value = _triplet_value_dd(dists, swap, t.margin, None)
    return value[picked] if every else value


def _unscaled_rows(t: _Triplets, squared, bound):
    """The rows :func:`_refined_triplet_unscaled` serves (p = 1, 2 or squared)."""
    e = np.frexp(bound * (1 + 2.0**-20))[1]
    ok = np.abs(e) < nx.DD_DISTANCE_EXPONENTS
    if t.p not in (1.0, 2.0) and not squared:
        return np.zeros_like(ok)
    return ok if squared else ok & (t.eps <= np.ldexp(1.0, e - 20))


def _triplet_rows(
    t: _Triplets, rows, swap, squared, bound, distances, scaled, finish=None, elements=None
):
    """The refined values of the selected ``rows``, with ``distances(part, e)`` giving the
    double-double distances of a block ``part`` of triplets whose distances are below
    ``2**e`` (scaled by ``2**-e`` if ``scaled``), and ``finish`` (if given) applied to
    them over all the rows at once (few operations on many small blocks cost more). Where
    most rows are selected, all are computed in blocks of rows (gathering them would cost
    more); else the selected ones."""
    flat = [x.reshape(-1, x.shape[-1]) for x in (t.anchor, t.positive, t.negative)]
    e_all = np.frexp(bound.reshape(-1) * (1 + 2.0**-20))[1]
    picked = np.flatnonzero(rows.reshape(-1))
    every = picked.size > len(e_all) // 4
    index = np.arange(len(e_all)) if every else picked
    dists = np.empty((3 if swap else 2, 2, index.size))  # per pair: high and low parts
    step = max(1, (elements or _BLOCK_ELEMENTS) // flat[0].shape[-1])
    for block in nx.chunks(index.size, step):
        take = index[block] if not every else block
        part = _Triplets(*(x[take].astype(np.float64, copy=False) for x in flat), *_tail_fields(t))
        dists[:, :, block] = distances(part, e_all[take])
    dists = list(dists) if finish is None else finish(list(dists))
    e = e_all[index]
    value = _triplet_value_dd(dists, swap, t.margin, (2 * e if squared else e) if scaled else None)
    return value[picked] if every else value


def _triplet_value_dd(dists, swap, margin, scale):
    """``d(a, p) - d(a, n) + margin`` (with ``swap`` the smaller negative distance) from
    double-double distances, scaled by ``2**-scale`` (``scale`` None: not scaled)."""
    (ap, ap_lo), (an, an_lo), *rest = dists
    if swap:
        pn, pn_lo = rest[0]
        smaller = (pn < an) | ((pn == an) & (pn_lo < an_lo))
        an, an_lo = np.where(smaller, pn, an), np.where(smaller, pn_lo, an_lo)
    m = margin if scale is None else np.ldexp(margin, -scale)
    s, s_err = two_sum(ap, -an)
    s, m_err = two_sum(s, m)
    value = s + (s_err + m_err + (ap_lo - an_lo))
    if scale is None:
        return value
    # a margin beyond the scaled range: the distances are negligible next to it
    return np.where(np.isinf(m), margin, np.ldexp(value, scale))


@quiet
def triplet_margin_loss(
    anchor,
    positive,
    negative,
    margin=1.0,
    p=2.0,
    eps=1e-6,
    swap=False,
    squared=False,
    reduction="mean",
):
    r"""Triplet margin loss :math:`\max(0, d(a, p) - d(a, n) + m)`.

    PyTorch's distance :math:`d(x, y) = \lVert x - y + \varepsilon \rVert_p` (``eps``
    is added to every entry of the difference). With ``swap=True`` the negative
    distance is :math:`\min(d(a, n), d(p, n))`. With ``squared=True`` it is the
    FaceNet form :math:`\max(0, \lVert a - p\rVert_2^2 - \lVert a - n\rVert_2^2 + m)`
    (``p`` must be 2; ``eps`` is not used).

    Parameters
    ----------
    anchor, positive, negative : array_like
        Embeddings of shape ``(..., D)``, all the same shape.
    margin : float, optional
        :math:`m \ge 0`.
    p : float, optional
        The norm's order, :math:`p \ge 1`.
    eps : float, optional
        Added to the differences (as ``torch.nn.functional.pairwise_distance``).
    swap : bool, optional
        The distance swap of :cite:t:`balntas2016learning`.
    squared : bool, optional
        Squared Euclidean distances :cite:p:`schroff2015facenet`.
    reduction : {"mean", "sum", "none"}, optional
        Over the triplets.

    Returns
    -------
    ndarray or numpy scalar
        The reduced loss, or the per-triplet losses (batch shape) for ``"none"``.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``margin`` or ``eps`` is not a non-
        negative finite number, ``p`` is below 1 (or not 2 with ``squared=True``), or the
        three embeddings differ in shape or have no (or an empty) feature axis, or ``swap``
        or ``squared`` is not a bool.

    Notes
    -----
    Same as ``torch.nn.functional.triplet_margin_loss(anchor, positive, negative,
    margin, p, eps, swap, reduction=...)`` (``squared=False``). The FaceNet form
    has no PyTorch built-in: ``F.relu((a - p).pow(2).sum(-1) - (a - n).pow(2).sum(-1)
    + margin)``. See :cite:t:`schroff2015facenet`.

    Accuracy: within 4 ULP of the exact loss of the given embeddings for ``p`` = 1, 2 and
    ``squared=True``, in every dtype: float16 and float32 are evaluated in float64, and
    float64 triplets whose three terms cancel get double-double distances. For other ``p``
    the error there is a few ULP of the largest of the two distances and the margin.

    Examples
    --------
    >>> a, p, n = [[0.0, 0.0]], [[0.3, 0.4]], [[0.6, 0.8]]
    >>> float(round(triplet_margin_loss(a, p, n, eps=0.0), 6))
    0.5
    >>> float(round(triplet_margin_loss(a, p, n, squared=True), 6))
    0.25
    """
    args = (anchor, positive, negative, margin, p, eps, swap, squared, reduction)
    return _triplet(*args, grad=False)[0]


def _triplet(
    anchor, positive, negative, margin, p, eps, swap, squared, reduction, *, value=True, grad=True
):
    """``(loss or None, gradients or None)`` of the triplet loss, from one set of distances.

    float16 and float32 embeddings are widened to the working dtype in blocks of rows of
    cache size, each block's distances feeding its rows' hinges and gradients: no
    full-size float64 copies or differences. Each row sees the same operations as
    unblocked, so the results do not depend on the blocking.
    """
    swap, squared = check_bool(swap, "swap"), check_bool(squared, "squared")
    t = _triplet_args(anchor, positive, negative, margin, p, eps, squared, reduction)
    work = _working_dtype(t.dtype)
    narrow = t.anchor.dtype != work
    # the loss alone (p = 1, 2), and float16 / float32 gradients for p = 2, in one pass
    # over blocks of rows; float64 gradients from full-size differences (they are kept
    # for the gradient), other p in blocks of rows through the general path
    if (t.p == 2 and narrow) or (t.p in (1.0, 2.0) and not grad):
        return _triplet_narrow(t, swap, squared, value, grad)
    if not narrow:
        parts = _triplet_parts(t, swap, squared, with_grad=grad)
        loss = _triplet_value(t, parts.dist, swap, squared) if value else None
        return loss, (_triplet_grad(t, parts, swap, squared) if grad else None)
    width = t.anchor.shape[-1]
    flat = [x.reshape(-1, width) for x in (t.anchor, t.positive, t.negative)]
    n = len(flat[0])
    hinge = np.empty(n, work) if value else None
    grads = [np.empty((n, width), t.dtype) for _ in range(3)] if grad else None
    step = max(1, (_NARROW_BLOCK_ELEMENTS if grad else _NARROW_VALUE_BLOCK_ELEMENTS) // width)
    for rows in nx.chunks(n, step):
        part = _Triplets(*(x[rows] for x in flat), *_tail_fields(t))  # views
        parts = _triplet_parts(part, swap, squared, with_grad=grad)
        if value:
            hinge[rows] = _triplet_hinge(part, parts.dist, swap, squared)
        if grad:
            _triplet_grad(part, parts, swap, squared, n, out=[g[rows] for g in grads])
    batch = t.anchor.shape[:-1]
    loss = reduce_to(hinge.reshape(batch), t.reduction, t.dtype) if value else None
    return loss, (tuple(g.reshape(t.anchor.shape) for g in grads) if grad else None)


# The embeddings each distance is taken between (indices into anchor, positive, negative).
_PAIRS = {"ap": (0, 1), "an": (0, 2), "pn": (1, 2)}


def _triplet_narrow(t: _Triplets, swap, squared, value, grad):
    """:func:`_triplet` with p = 2 (or squared), and of the loss alone with p = 1.

    One pass over blocks of rows does only the work on the embeddings' size: each block's
    anchor (and positive, with swap) widened once to float64 (float16 and float32), the
    differences (exact: a float32 difference has at most 24 + 29 bits where the exponents
    differ by 29 or less, and else loses below 2**-53 of itself), their sums of squares
    (of absolute values for p = 1), and the gradient rows, rounded once into the
    result's dtype; the per-row work (roots, hinges, coefficients) over the block's rows.
    The rare rows that need care are done again after the pass: those whose sum of
    squares underflows, is 0 or not finite (by the general path), the hinges that cancel
    (in double-double, :func:`_triplet_hinge`) and the anchor gradients whose two terms
    cancel (:func:`_anchor_grad_dd`).
    """
    width = t.anchor.shape[-1]
    flat = [x.reshape(-1, width) for x in (t.anchor, t.positive, t.negative)]
    n = len(flat[0])
    keys = ("ap", "an", "pn") if swap else ("ap", "an")
    shift = 0.0 if squared else t.eps
    sums = np.empty((len(keys), n))  # the squared distances, in float64
    grads = [np.empty((n, width), t.dtype) for _ in range(3)] if grad else None
    # the anchor gradient's squared norm over its terms' larger one (grad only)
    cancel = np.empty(n, np.float32) if grad else None  # compared with 2**-40 and above
    scale = reduction_scale(n, t.reduction, np.float64)
    # the widened anchor (and positive, with swap; float64 ones are read in place), then
    # one difference per distance: with the gradient, as many elements in them all as
    # three blocks of _NARROW_BLOCK_ELEMENTS (the memory of a training step)
    widen = flat[0].dtype != np.float64
    count = ((2 if swap else 1) if widen else 0) + len(keys)
    if grad:
        step = max(1, 3 * _NARROW_BLOCK_ELEMENTS // (count * width))
    else:
        step = max(1, _NARROW_VALUE_BLOCK_ELEMENTS // width)
    wide = [np.empty((min(step, n), width)) for _ in range(count)]
    for rows in nx.chunks(n, step):
        size = rows.stop - rows.start
        sources = [w[:size] for w in wide[: count - len(keys)]]
        for source, x in zip(sources, flat, strict=False):
            np.copyto(source, x[rows])
        diffs = []
        for j, key in enumerate(keys):
            i, k = _PAIRS[key]
            v = wide[len(sources) + j][:size]
            if widen:
                np.copyto(v, flat[k][rows])  # widened first: a mixed subtraction is slower
                np.subtract(sources[i], v, out=v)
            else:
                np.subtract(flat[i][rows], flat[k][rows], out=v)
            if shift:
                v += shift
            if t.p == 1 and not squared:
                sums[j, rows] = np.sum(np.abs(v, out=v), axis=-1)
            else:
                sums[j, rows] = nx.row_dot(v, v)
            diffs.append(v)
        if grad:
            out = [g[rows] for g in grads]
            cancel[rows] = _narrow_grad_block(t, sums[:, rows], diffs, squared, scale, out)
    if t.p == 1 and not squared:
        odd_rows = np.flatnonzero(~np.all(sums < np.inf, axis=0))
    else:
        odd_rows = _unsafe_sums(sums, axis=0)
    plain = squared or t.p == 1
    dist = dict(zip(keys, sums if plain else np.sqrt(sums, out=sums), strict=True))
    if grad:  # the rows whose side of the hinge the rounded distances leave in doubt too
        doubt = _hinge_doubt(t, dist, swap)
        if doubt.size:
            odd_rows = np.union1d(odd_rows, doubt)
    if odd_rows.size:  # tiny, zero, huge or NaN: the general path on those rows
        part = _Triplets(*(x[odd_rows] for x in flat), *_tail_fields(t))
        parts = _triplet_parts(part, swap, squared, with_grad=grad)
        for key in keys:
            dist[key][odd_rows] = parts.dist[key]
        if grad:
            for g, o in zip(grads, _triplet_grad(part, parts, swap, squared, n), strict=True):
                g[odd_rows] = o
    loss = None
    if value:
        hinge = _triplet_hinge(t, dist, swap, squared).reshape(t.anchor.shape[:-1])
        loss = reduce_to(hinge, t.reduction, t.dtype)
    if not grad:
        return loss, None
    # where the anchor's two terms cancel (their difference below the cut of the larger):
    # its gradient again, in double-double, from the same coefficients
    cut = _CANCELLATION_CUT[t.dtype] ** 2
    ok = np.isfinite(dist["ap"]) & np.isfinite(dist["an"]) & (dist["ap"] > 0) & (dist["an"] > 0)
    ok[odd_rows] = False  # those took the general path
    redo = np.flatnonzero((cancel < cut) & ok)
    if redo.size:
        picked = {k: d[redo] for k, d in dist.items()}
        s, weight_an = _narrow_coefficients(t, picked, scale)
        part = _Triplets(*(x[redo] for x in flat), *_tail_fields(t))
        grads[0][redo] = _anchor_grad_dd(part, s * (weight_an == 1), picked, squared)
    return loss, tuple(g.reshape(t.anchor.shape) for g in grads)


def _hinge_doubt(t: _Triplets, dist: dict, swap):
    """Indices of the rows whose value before the hinge is below :data:`_SIGN_CUT` of its
    terms (taken by the general path, which decides their side exactly)."""
    value, largest = _rounded_pre_hinge(t, dist, swap)
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(np.abs(value) < largest * _SIGN_CUT)


def _rounded_pre_hinge(t: _Triplets, dist: dict, swap):
    """``(d(a, p) - d(a, n) + margin, the largest of its three terms)`` from the rounded
    distances (with ``swap`` the smaller negative one); the value an array also for one
    triplet."""
    negative = np.minimum(dist["an"], dist["pn"]) if swap else dist["an"]
    value = np.array(dist["ap"] - negative + t.margin)
    return value, np.maximum(np.maximum(dist["ap"], negative), t.margin)


def _narrow_coefficients(t: _Triplets, dist: dict, scale):
    """``(s, weight_an)``: the hinge's gradient (0 where inactive, else the reduction's
    scale) and the share of it of d(a, n) (1, or with swap 0 or a tie's 1/2)."""
    an = dist["an"]
    pn = dist.get("pn")
    nearest = an if pn is None else np.minimum(an, pn)
    s = (dist["ap"] - nearest + t.margin >= 0) * scale
    weight_an = 1.0 if pn is None else np.where(an == pn, 0.5, an < pn)
    return s, np.asarray(weight_an, dtype=np.float64) * np.ones_like(s)


def _narrow_grad_block(t: _Triplets, sums, diffs, squared, scale, out):
    """The gradient rows of a block from its squared distances and differences (float64,
    overwritten), rounded once into ``out``; returns the anchor gradient's squared norm
    over the larger of its two terms' (where it is small, the terms cancel)."""
    dist = dict(zip(("ap", "an", "pn"), sums if squared else np.sqrt(sums), strict=False))
    s, weight_an = _narrow_coefficients(t, dist, scale)
    swap = "pn" in dist
    weights = [np.ones_like(s), weight_an] + ([1 - weight_an] if swap else [])
    terms, sizes = [], []
    for v, d, w in zip(diffs, dist.values(), weights, strict=True):
        c = s * w
        sizes.append(c * c * (4 * d if squared else 1))  # the term's squared norm
        terms.append(np.multiply((2 * c if squared else c / d)[:, None], v, out=v))
    t_ap, t_an = terms[:2]
    if swap:
        t_pn = terms[2]
        np.add(t_an, t_pn, out=out[2], casting="same_kind")
        np.negative(np.add(t_ap, t_pn, out=t_pn), out=out[1], casting="same_kind")
    else:
        np.negative(t_ap, out=out[1], casting="same_kind")
        np.copyto(out[2], t_an, casting="same_kind")
    d_anchor = np.subtract(t_ap, t_an, out=t_an)
    np.copyto(out[0], d_anchor, casting="same_kind")
    with np.errstate(invalid="ignore", divide="ignore"):
        return nx.row_dot(d_anchor, d_anchor) / np.maximum(sizes[0], sizes[1])


# Elements per block of rows of the triplets in one pass: the block-sized float64 buffers
# (widened rows, differences, gradient terms) stay cache-sized. Smaller blocks keep less
# memory but the per-block calls then dominate: measured on (8192, 128) float32 triplets,
# a training step at 1 << 14 took about a fifth longer; 1 << 16 a tenth less time, but
# its buffers took the step's memory to 1.17x the gradient.
_NARROW_BLOCK_ELEMENTS = 1 << 15
# The loss alone keeps no gradient rows: blocks of 1 << 16 elements (1 << 15 and 1 << 18
# about a fifth slower on the same triplets); the per-row results do not depend on the
# blocking.
_NARROW_VALUE_BLOCK_ELEMENTS = 1 << 16


def _triplet_value(t: _Triplets, dist: dict, swap, squared):
    """The reduced loss from the distances."""
    return reduce_to(_triplet_hinge(t, dist, swap, squared), t.reduction, t.dtype)


def _triplet_hinge(t: _Triplets, dist: dict, swap, squared):
    """The per-triplet losses (working dtype) from the distances (rows that cancel refined
    in double-double)."""
    return np.maximum(_triplet_pre_hinge(t, dist, swap, squared, _CANCELLATION_CUT[t.dtype]), 0)


# Where the value before the hinge is below this fraction of its terms, the rounded
# distances (a few 2**-53 of them) may give it the wrong sign: the gradient's side of the
# hinge is taken from the refined value there.
_SIGN_CUT = 2.0**-40


def _hinge_active(t: _Triplets, dist: dict, swap, squared):
    """Where the hinge passes the gradient (value before it >= 0): the sign of the exact
    value, from the refined one where the rounded distances leave it in doubt (p = 1, 2
    and squared; for squared distances exactly, else to about ``2**-100`` of the terms)."""
    return _triplet_pre_hinge(t, dist, swap, squared, _SIGN_CUT) >= 0


def _triplet_pre_hinge(t: _Triplets, dist: dict, swap, squared, cut):
    """``d(a, p) - d(a, n) + margin`` (working dtype) from the distances; the rows below
    ``cut`` of the largest of its terms redone in double-double (p = 1, 2 and squared),
    and exactly (squared) where they cancel beyond what double-double leaves an ULP."""
    value, largest = _rounded_pre_hinge(t, dist, swap)
    near = np.abs(value) < largest * cut
    if not (np.any(near) and (squared or t.p in (1.0, 2.0))):
        return value
    bound = np.maximum(dist["ap"], dist["an"])
    if swap:
        bound = np.maximum(bound, dist["pn"])
    if squared:
        bound = np.sqrt(bound)
    # cancelling by less than 2**10 (standard normal embeddings: about 16), a
    # distance to 2**-69 suffices (dd_sum_of_squares' first slice only)
    extreme = near & (np.abs(value) < largest * 2.0**-10)
    moderate = near & ~extreme
    # most rows: their distances need no scaling
    fast = moderate & _unscaled_rows(t, squared, bound)
    if np.any(fast):
        value[fast] = _refined_triplet_unscaled(t, fast, swap, squared, bound)
    moderate &= ~fast
    for rows, slices in ((moderate, 1), (extreme, 3)):
        if np.any(rows):
            value[rows] = _refined_triplet(t, rows, swap, squared, bound, slices)
    # double-double squares carry 2**-100 of the largest term: beyond a cancellation of
    # 2**-44 that is more than a sixteenth of an ULP of the value
    exact = extreme & (np.abs(value) < largest * 2.0**-44)
    if squared and np.any(exact):
        value[exact] = _exact_squared_rows(t, exact, swap, bound)
    return value


def _exact_squared_rows(t: _Triplets, rows, swap, bound):
    """``d(a, p)^2 - d(a, n)^2 + margin`` (squared distances) of the selected rows,
    correctly rounded (:func:`~lossutils._numerics.exact_squares_gap`); each row scaled by
    the power of 2 above ``bound`` (at least its largest difference)."""
    width = t.anchor.shape[-1]
    picked = np.flatnonzero(rows.reshape(-1))
    e = np.frexp(bound.reshape(-1)[picked] * (1 + 2.0**-20))[1]
    a, pos, neg = (
        np.ldexp(x.reshape(-1, width)[picked].astype(np.float64), -e[:, None])
        for x in (t.anchor, t.positive, t.negative)
    )
    margin = np.ldexp(t.margin, -2 * e)
    value = nx.exact_squares_gap(a, pos, a, neg, margin)
    if swap:  # the smaller negative distance: the larger of the two values
        value = np.maximum(value, nx.exact_squares_gap(a, pos, pos, neg, margin))
    return np.ldexp(value, 2 * e)


@gradients_in_argument_dtypes("anchor", "positive", "negative")
@quiet
def triplet_margin_loss_grad(
    anchor,
    positive,
    negative,
    margin=1.0,
    p=2.0,
    eps=1e-6,
    swap=False,
    squared=False,
    reduction="mean",
):
    r"""Gradient of :func:`triplet_margin_loss` w.r.t. ``anchor``, ``positive``, ``negative``.

    Where the hinge is active, with :math:`u_{xy} = \partial d(x, y)/\partial x`
    (:math:`\mathrm{sign}(v)\,(|v|/\lVert v\rVert_p)^{p-1}` for :math:`v = x - y + \varepsilon`,
    or :math:`2(x - y)` when squared):
    :math:`\partial_a = u_{ap} - u_{an}`, :math:`\partial_p = -u_{ap}`,
    :math:`\partial_n = u_{an}` (with ``swap``, the negative distance's gradient goes
    to whichever of :math:`d(a, n)`, :math:`d(p, n)` is smaller).

    Subgradients as PyTorch's autograd: at the hinge's kink (value exactly 0) the
    gradient passes (``clamp_min`` passes it where its input is >= 0); a zero
    distance has a zero gradient (``norm``'s backward); with ``swap`` a tie
    :math:`d(a, n) = d(p, n)` splits the gradient in halves (``minimum``'s backward): a
    tie of the exact distances (squared distances that both underflow are compared by
    the distances themselves). The side of the hinge is that of the exact value: where
    the rounded distances leave its sign in doubt (below :math:`2^{-40}` of its terms)
    it is decided by the refined value of :func:`triplet_margin_loss` (exactly for
    ``squared``, to about :math:`2^{-100}` of the terms for ``p`` = 1, 2).

    Accuracy: each entry within 4 ULP of its row's largest entry, in every dtype, with
    ``squared``, and for ``p`` = 2 in float16 and float32: where :math:`u_{ap}` and
    :math:`u_{an}` nearly cancel (the negative close to the ray from the anchor through
    the positive, or ``eps`` far larger than the embeddings), the anchor's gradient is
    their difference in double-double, and below an angle of about :math:`2^{-40}`
    between them from the component of one across the other. That is chosen by the
    norms (the difference's below half the terms'): a float64 anchor's gradient whose
    two terms share a large entry that cancels while its other entries do not is within
    a few ULP of that entry, more of the row's largest (measured over triplets built so:
    up to 4.4 ULP for D = 4, 7.5 for D = 128, 16 for D = 512). For other ``p``, and for
    the positive's gradient :math:`-u_{ap} - u_{pn}` with ``swap``, the error is a few
    ULP of the terms' size (the reduction's scale times the largest entry of a
    :math:`u`).

    Parameters
    ----------
    anchor, positive, negative, margin, p, eps, swap, squared, reduction
        As for :func:`triplet_margin_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_anchor, d_positive, d_negative)``, each of ``anchor``'s shape and dtype.

    Raises
    ------
    ValueError
        As :func:`triplet_margin_loss`.

    Examples
    --------
    >>> da, dp, dn = triplet_margin_loss_grad([[0.0, 0.0]], [[0.3, 0.4]], [[0.6, 0.8]], eps=0.0)
    >>> da.round(6).tolist(), dp.round(6).tolist(), dn.round(6).tolist()
    ([[0.0, 0.0]], [[0.6, 0.8]], [[-0.6, -0.8]])
    """
    args = (anchor, positive, negative, margin, p, eps, swap, squared, reduction)
    return _triplet(*args, value=False)[1]


@gradients_in_argument_dtypes("anchor", "positive", "negative")
@quiet
def triplet_margin_loss_value_and_grad(
    anchor,
    positive,
    negative,
    margin=1.0,
    p=2.0,
    eps=1e-6,
    swap=False,
    squared=False,
    reduction="mean",
):
    r"""``triplet_margin_loss`` and ``triplet_margin_loss_grad`` in one pass: one set of distances.

    Parameters
    ----------
    anchor, positive, negative, margin, p, eps, swap, squared, reduction
        Same as :func:`triplet_margin_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_anchor, d_positive, d_negative))``: bit for bit
        :func:`triplet_margin_loss` and :func:`triplet_margin_loss_grad` of the same
        arguments.

    Raises
    ------
    ValueError
        As :func:`triplet_margin_loss`.

    Examples
    --------
    >>> args = ([[0.0, 0.0]], [[0.3, 0.4]], [[0.6, 0.8]])
    >>> value, grads = triplet_margin_loss_value_and_grad(*args)
    >>> bool(value == triplet_margin_loss(*args))
    True
    >>> [g.tolist() for g in triplet_margin_loss_grad(*args)] == [g.tolist() for g in grads]
    True
    """
    args = (anchor, positive, negative, margin, p, eps, swap, squared, reduction)
    return _triplet(*args)


def _triplet_grad(t: _Triplets, parts: _TripletDistances, swap, squared, count=None, out=None):
    """The gradients w.r.t. anchor, positive and negative from the distances and theirs.

    ``count``: the number of triplets the mean divides by (default: those of ``t``);
    ``out``: three arrays of ``t.dtype`` to write them into (default: new ones).
    """
    dist = parts.dist
    work = _working_dtype(t.dtype)
    an = dist["an"]
    # minimum's backward: the smaller distance takes the gradient, a tie splits it
    pn = dist["pn"] if swap else np.full_like(an, np.inf)
    active = _hinge_active(t, dist, swap, squared)
    s = active * reduction_scale(active.size if count is None else count, t.reduction, work)
    weight_an = np.where(an == pn, 0.5, an < pn)
    weight_pn = np.where(an == pn, 0.5, pn < an)
    if swap and squared:
        _break_underflowed_ties(parts, weight_an, weight_pn)

    def term(key, weight):
        return _times_distance_grad(s * weight, parts.diff[key], dist[key], t, squared)

    t_ap = term("ap", 1.0)
    t_an = term("an", weight_an)
    d_anchor = t_ap - t_an
    if t.p == 2:
        _refine_anchor_grad(t, (d_anchor, t_ap, t_an), s * (weight_an == 1), dist, squared)
    d_positive = np.negative(t_ap, out=t_ap)
    d_negative = t_an
    if swap:
        t_pn = term("pn", weight_pn)
        d_positive -= t_pn
        d_negative += t_pn
    grads = (d_anchor, d_positive, d_negative)
    if out is None:
        return tuple(nx.to_dtype(g, t.dtype) for g in grads)
    for o, g in zip(out, grads, strict=True):
        o[...] = g  # rounded once
    return out


def _break_underflowed_ties(parts: _TripletDistances, weight_an, weight_pn):
    """Where squared distances d(a, n) = d(p, n) tie because both underflowed (below the
    smallest subnormal: differences below about 1e-162 in float64), the weights of
    ``minimum``'s backward from the distances themselves (scaled norms, which do not
    underflow): a tie of the rounded squares is no tie of the exact ones. Written into
    ``weight_an`` and ``weight_pn`` (1 for the smaller, 0 for the other, 1/2 at a tie)."""
    an, pn = parts.dist["an"], parts.dist["pn"]
    rows = (an == pn) & (an < _SAFE_SQUARED_SUM[np.dtype(np.float64)])
    if np.any(rows):
        norm_an = _euclidean(parts.diff["an"][rows]).norm
        norm_pn = _euclidean(parts.diff["pn"][rows]).norm
        weight_an[rows] = np.where(norm_an == norm_pn, 0.5, norm_an < norm_pn)
        weight_pn[rows] = 1 - weight_an[rows]


def _refine_anchor_grad(t: _Triplets, arrays, s, dist, squared):
    """Redo ``d_anchor = s (u_ap - u_an)`` in double-double where its two terms cancel.

    ``u_ap`` and ``u_an`` (the unit vectors towards the positive and the negative, or
    ``2 (a - p)`` and ``2 (a - n)`` when squared) carry an ULP or two of their size; where
    they nearly agree their difference is much smaller, and that rounding many ULP of
    it. On those rows (the norm of the difference below a cut of the terms' norms: a
    row's dot product is several times faster than its largest entry) the differences
    are kept exactly, the norms and the unit vectors taken in double-double, and their
    difference rounded once. ``arrays`` is ``(d_anchor, s u_ap, s u_an)``; the result
    is written into ``d_anchor``.
    """
    ap, an = dist["ap"], dist["an"]
    ok = np.isfinite(ap) & np.isfinite(an) & (ap > 0) & (an > 0)

    def squared_norm(x):
        return nx.row_dot(x, x)

    d_anchor, t_ap, t_an = arrays
    cut = np.maximum(squared_norm(t_ap), squared_norm(t_an)) * _CANCELLATION_CUT[t.dtype] ** 2
    rows = np.flatnonzero((squared_norm(d_anchor) < cut).reshape(-1) & ok.reshape(-1))
    if not rows.size:
        return
    width = t.anchor.shape[-1]
    flat = d_anchor.reshape(-1, width)  # a view, as the arrays it refines are fresh
    part = _Triplets(
        *(x.reshape(-1, width)[rows] for x in (t.anchor, t.positive, t.negative)),
        *_tail_fields(t),
    )
    picked = {key: dist[key].reshape(-1)[rows] for key in ("ap", "an")}
    flat[rows] = _anchor_grad_dd(part, s.reshape(-1)[rows], picked, squared)


def _anchor_grad_dd(t: _Triplets, s, dist, squared):
    """``s (u_ap - u_an)`` of the rows of ``t`` (float64), without the cancellation of the
    difference (:func:`_refine_anchor_grad`); ``s`` and ``dist`` one per row.

    Squared: ``2 (n - p)``, exact before its rounding. Else the difference of the unit
    vectors of ``v1 = a - p + eps`` and ``v2 = a - n + eps`` in double-double; where they
    agree to ``2**-40`` and more (angle ``theta``), their rounding (``2**-106``) would be
    too much of a difference only ``theta`` large (all of it where ``eps`` is far larger
    than the embeddings: ``theta`` near 1e-34 for float32 embeddings of 1e-40), and
    ``u_ap - u_an = P / |v1| - (1 - cos theta) v2 / |v2|`` instead, ``P`` the component of
    ``v1`` across ``v2``, which is that of ``v1 - v2 = n - p`` (no ``eps`` in it), formed
    without cancellation by :func:`~lossutils._numerics.dd_across_rows`, and ``1 - cos =
    sin^2 / (1 + cos)``, ``sin = |P| / |v1|``.
    """
    ap, an = dist["ap"], dist["an"]
    a, pos, neg = (x.astype(np.float64, copy=False) for x in (t.anchor, t.positive, t.negative))
    bound = np.sqrt(np.maximum(ap, an)) if squared else np.maximum(ap, an)
    e = np.frexp(bound * (1 + 2.0**-20))[1]
    k = -e[:, None]
    a, pos, neg = np.ldexp(a, k), np.ldexp(pos, k), np.ldexp(neg, k)
    across_hi, across_lo = _dd_difference(neg, pos, 0.0)  # v1 - v2, exactly
    factor = s[:, None]
    if squared:  # 2 (n - p) / 2**-e: the scaling undone
        return np.ldexp(2 * factor * (across_hi + across_lo), e[:, None])
    shift = np.ldexp(t.eps, -e)
    v1, v2 = _dd_difference(a, pos, shift), _dd_difference(a, neg, shift)
    norms = [nx.dd_sqrt(*nx.dd_sum_of_squares(*v)) for v in (v1, v2)]
    units = []
    for (hi, lo), norm in zip((v1, v2), norms, strict=True):
        q, q_lo = nx.dd_divide_rows(hi, *norm)
        units.append((q, q_lo + lo / norm[0][:, None]))
    (p_hi, p_lo), (n_hi, n_lo) = units
    d = (p_hi - n_hi) + (p_lo - n_lo)  # the first difference is exact where it cancels
    # below an angle of 2**-40 the unit vectors' rounding (2**-106) is more than 2**-66 of
    # d: there from the component of v1 across v2 (what eps far above the embeddings does)
    tiny = np.flatnonzero(np.max(np.abs(d), axis=-1) < 2.0**-40)
    if tiny.size:
        w_hi, w_lo = v2[0][tiny], v2[1][tiny]
        c_hi, c_lo = nx.dd_across_rows(across_hi[tiny], w_hi, across_lo[tiny], w_lo)
        (n1_hi, n1_lo), (n2_hi, n2_lo) = ((x[tiny] for x in norm) for norm in norms)
        across = nx.dd_divide_rows(c_hi, n1_hi, n1_lo)[0] + c_lo / n1_hi[:, None]
        sin_sq = nx.row_dot(across, across)
        cos = np.sqrt(1 - sin_sq)  # near 1
        unit2 = nx.dd_divide_rows(w_hi, n2_hi, n2_lo)[0]
        d[tiny] = across - (sin_sq / (1 + cos))[:, None] * unit2
    return factor * d


@dataclass(frozen=True)
class _NTXent:
    """The views, normalised as ``F.normalize`` does, and the per-row pieces of the loss.

    Everything in float64. A float64 result comes from double-double logits
    (:func:`_nt_xent_exact_losses`); a float32 or float16 one from plain float64 logits
    formed block of rows by block of rows (:func:`_nt_xent_blocks`), the loss of the rows
    where their rounding could reach the result's last digit recomputed from
    double-double ones.
    """

    n: int  # pairs: the 2n views are z1's rows, then z2's
    zs: np.ndarray  # (2n, D): each view scaled by a power of 2 (its largest entry in [1/2, 1))
    h: np.ndarray  # (2n, D): z / max(||z||, 1e-12)
    scaled_norm: np.ndarray  # (2n,): ||z|| / 2**e, the row scaled by its largest power of 2
    exponent: np.ndarray  # (2n,): that e
    floored: np.ndarray  # (2n,): where the norm's floor 1e-12 is active
    infinite: np.ndarray  # (2n,): a view with infinite entries, taken as its limit direction
    positive: np.ndarray  # (2n,): the column of each row's other view
    temperature: float
    reduction: str
    dtype: np.dtype  # the result dtype


def _nt_xent(z1, z2, temperature, reduction) -> _NTXent:
    reduction = check_reduction(reduction)
    temperature = check_temperature(temperature)
    z1, z2 = _embeddings({"z1": z1, "z2": z2})
    if z1.ndim != 2:
        raise ValueError(f"z1 must have shape (N, D); got shape {z1.shape}")
    n = z1.shape[0]
    views = np.concatenate([z1, z2], axis=0)
    u = nx.unit_rows(views, NORMALIZE_EPS)
    positive = (np.arange(2 * n) + n) % (2 * n)
    return _NTXent(
        n,
        u.zs,
        u.h,
        u.scaled_norm,
        u.exponent,
        u.floored,
        u.infinite,
        positive,
        temperature,
        reduction,
        z1.dtype,
    )


def _nt_xent_dd_rows(v: _NTXent):
    """The views normalised (as ``F.normalize``) and multiplied by ``tau**-0.5`` entry by
    entry in double-double, ``(hi, lo)``: the logits are their Gram matrix."""
    hi, lo, _ = nx.dd_unit_rows(v.zs, v.exponent, NORMALIZE_EPS)
    c, c_lo = nx.dd_inverse_sqrt(v.temperature)
    return nx.dd_scale(hi, lo, c, c_lo=c_lo)


def _nt_xent_exact_losses(v: _NTXent, with_grad=False):
    """The 2n losses from double-double logits: each within an ULP or two of float64.

    The logits are the Gram matrix of :func:`_nt_xent_dd_rows`, formed with an exact
    leading part (:func:`~lossutils._numerics.dd_gram_cross_entropy`): about
    ``2**-68 / tau`` absolute, so that a loss keeps its few ULP. With ``with_grad``,
    ``(losses, their gradient w.r.t. the logits)``: the softmax, within a few ULP of itself.
    """
    return nx.dd_gram_cross_entropy(*_nt_xent_dd_rows(v), v.positive, with_grad=with_grad)


def _nt_xent_refined(v: _NTXent, losses, inexact):
    """``losses`` with the ``inexact`` rows recomputed from double-double logits (those
    rows of the Gram matrix of :func:`_nt_xent_dd_rows`, by
    :func:`~lossutils._numerics.dd_matmul`: about ``2**-68 / tau`` absolute), in blocks."""
    need = np.flatnonzero(inexact)
    if not need.size:
        return losses
    a_hi, a_lo = _nt_xent_dd_rows(v)
    size = _nt_xent_block_rows(len(losses))
    for part in nx.chunks(need.size, size):
        rows = need[part]
        s_hi, s_lo = nx.dd_matmul(a_hi[rows], a_lo[rows], a_hi, a_lo)
        k = np.arange(rows.size)
        s_hi[k, rows] = -np.inf  # the diagonal left out
        s_lo[k, rows] = 0
        losses[rows] = nx.dd_cross_entropy_rows(s_hi, s_lo, v.positive[rows])
    return losses


# Blocks of plain float64 logits: about 2**20 entries (8 MB), but at least 256 rows. Each
# block costs three matrix products, which lose their speed when small: on a busy
# machine (each product waiting for both BLAS threads) 2 MB blocks made a (1024, 128)
# step twice as slow, blocks of 128 rows a (4096, 128) one eight times. The (2n, 2n)
# logits are never whole.
_NT_XENT_BLOCK = 2**20
_NT_XENT_ROWS = 256


def _nt_xent_block_rows(m):
    """The rows of a block of logits with ``m`` columns."""
    return max(_NT_XENT_ROWS, _NT_XENT_BLOCK // max(m, 1))


def _nt_xent_blocks(v: _NTXent, grad):
    """``(losses, inexact, d_h, d_positive)`` from plain float64 logits, block by block.

    Each block of rows ``s = (h[r] / T) h^T`` gives its rows' losses ``(s_top - s_pos) +
    log1p(sum of exp(s - s_top) but the top)``; ``inexact`` marks the rows whose plain
    loss could be off by 1/32 of an ULP of the result. With ``grad``, the block's
    gradient ``G`` of the (reduced) losses w.r.t. its logits reaches both sides of the
    Gram product (``s_ij = s_ji``): ``d_h[r] += G h`` and ``d_h += G^T h[r]``, over ``T``
    at the end; the positives' entries are taken apart into ``d_positive``
    (:func:`_nt_xent_backward` projects them with care). Without ``grad``, ``d_h`` and
    ``d_positive`` are None.
    """
    m, h, t = 2 * v.n, v.h, v.temperature
    losses, inexact = np.empty(m), np.empty(m, dtype=bool)
    # a float64 cosine of unit rows is off by at most (2 D + 6) 2**-53 (the dot product's
    # D roundings, each row's norm), a logit by that over T: delta is twice that
    delta = 2 * (2 * h.shape[-1] + 6) * 2.0**-53 / t
    ulp = np.finfo(v.dtype).eps / 32
    d_h = np.zeros(h.shape) if grad else None  # C order: d_h.T is dgemm's Fortran array
    d_positive = np.empty(m) if grad else None
    scale = reduction_scale(m, v.reduction, np.float64)
    for r, rows, pos, s in _nt_xent_row_blocks(v):
        top = np.argmax(s, axis=-1)
        largest = s[rows, top]
        losses[r] = largest - s[rows, pos]
        rest = np.subtract(s, largest[:, None], out=s)  # in place: exp(s - s_top)
        np.exp(rest, out=rest)
        rest[rows, top] = 0
        total = np.sum(rest, axis=-1)
        losses[r] += np.log1p(total)
        # the gap is off by delta (0 where the positive is the top), log1p by 2 delta T/(1+T)
        bound = np.where(top == pos, 0, delta) + 2 * delta * total / (1 + total)
        inexact[r] = bound > ulp * np.abs(losses[r])
        if grad:
            g = nx.cross_entropy_rows_grad(rest, total, top, pos)
            g *= scale
            d_positive[r] = g[rows, pos]
            g[rows, pos] = 0
            d_h[r] += g @ h
            # d_h += G^T h[r] in place, as d_h^T += h[r]^T G: no (2n, D) temporary
            dgemm(1.0, h[r].T, g.T, beta=1.0, c=d_h.T, trans_b=True, overwrite_c=True)
            del g
        del s, rest  # before the next block is formed
    if grad:
        d_h /= t
        d_positive += d_positive[v.positive]  # s_ij = s_ji: both entries' gradients
        d_positive /= t
    return losses, inexact, d_h, d_positive


def _nt_xent_row_blocks(v: _NTXent):
    """``(r, rows, positive[r], s)`` for blocks of rows ``r`` of the plain float64 logits
    ``s = (h[r] / T) h^T``, the diagonal ``-inf``, each block a new array."""
    m = 2 * v.n
    for r in nx.chunks(m, _nt_xent_block_rows(m)):
        rows = np.arange(r.stop - r.start)
        s = (v.h[r] / v.temperature) @ v.h.T  # the logits of one whole product, entry by entry
        s[rows, r.start + rows] = -np.inf
        yield r, rows, v.positive[r], s
        del s  # not alive while the next block is formed


@quiet
def nt_xent_loss(z1, z2, temperature=0.5, reduction="mean"):
    r"""SimCLR's normalised temperature-scaled cross-entropy (NT-Xent).

    The :math:`2N` views :math:`[z_1; z_2]` are L2-normalised to :math:`h_i`, with
    :math:`s_{ij} = h_i^\top h_j / \tau`; the positive of view :math:`i` is the other
    view of the same sample, :math:`\mathrm{pos}(i) = i \pm N`, and

    .. math::

        \ell_i = -s_{i,\mathrm{pos}(i)} + \log \sum_{j \ne i} e^{s_{ij}}.

    Parameters
    ----------
    z1, z2 : array_like
        The two views' embeddings, shape ``(N, D)`` each; row :math:`k` of ``z1``
        and of ``z2`` come from the same sample.
    temperature : float, optional
        :math:`\tau > 0`.
    reduction : {"mean", "sum", "none"}, optional
        Over the :math:`2N` views; ``"none"`` returns the :math:`2N` losses, those
        of ``z1``'s rows first.

    Returns
    -------
    ndarray or numpy scalar
        The reduced loss, or the :math:`2N` losses for ``"none"``.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``temperature`` is not a positive finite
        number of at least 1.113e-308 (the differences of its logits finite), or
        ``z1`` and ``z2`` are not two arrays of the same shape ``(N, D)`` with ``D >= 1``.

    Notes
    -----
    Normalisation as ``torch.nn.functional.normalize`` (the norm is floored at
    1e-12, so a zero embedding gives zero similarities instead of NaN). In PyTorch
    it is usually written ``F.cross_entropy(sim, labels)`` with ``sim`` the masked
    similarity matrix; the lightly / pytorch-metric-learning ``NTXentLoss`` are the
    same loss. See :cite:t:`chen2020simple`.

    Accuracy: within 4 ULP of the exact loss of the given views, in every dtype. The loss
    magnifies an error of the cosines by :math:`1/\tau`, so float16 and float32 views are
    evaluated in float64, and float64 views get their logits as double-doubles (rows
    normalised in double-double, a matrix product whose leading part is exact by Ozaki's
    splitting); the loss is :math:`(s_{\max} -
    s_{\mathrm{pos}}) + \operatorname{log1p}(\text{the rest})`, which does not cancel when
    the positive dominates. An empty batch gives NaN (mean), 0 (sum) or an empty array.

    Examples
    --------
    >>> import numpy as np
    >>> z1 = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> z2 = np.array([[2.0, 0.1], [0.1, 3.0]])
    >>> float(round(nt_xent_loss(z1, z2), 6))
    0.258634
    """
    return _nt_xent_loss(z1, z2, temperature, reduction, grad=False)[0]


def _nt_xent_loss(z1, z2, temperature, reduction, *, value=True, grad=True):
    """``(loss or None, gradients or None)`` of NT-Xent."""
    v = _nt_xent(z1, z2, temperature, reduction)
    if v.dtype == np.float64:  # double-double logits alone, one set of them for both
        if not grad:
            return reduce_to(_nt_xent_exact_losses(v), v.reduction, v.dtype), None
        losses, g = _nt_xent_exact_losses(v, with_grad=True)
        loss = reduce_to(losses, v.reduction, v.dtype) if value else None
        return loss, _nt_xent_grad_dd(v, g)
    # float32 and float16: one pass over blocks of plain float64 logits, the few rows
    # whose loss they cannot give to the result's ULP recomputed in double-double
    losses, inexact, d_h, d_positive = _nt_xent_blocks(v, grad)
    loss = None
    if value:
        loss = reduce_to(_nt_xent_refined(v, losses, inexact), v.reduction, v.dtype)
    return loss, (_nt_xent_backward(v, d_h, d_positive) if grad else None)


@gradients_in_argument_dtypes("z1", "z2")
@quiet
def nt_xent_loss_grad(z1, z2, temperature=0.5, reduction="mean"):
    r"""Gradient of :func:`nt_xent_loss` w.r.t. ``z1`` and ``z2``.

    With :math:`P` the softmax of the masked logits and :math:`Y` the one-hot
    positives, :math:`G = c\,(P - Y)` (:math:`c` the reduction's scale) is the
    gradient w.r.t. the logits, :math:`(G + G^\top) H / \tau` the gradient w.r.t.
    the normalised views :math:`H`, and the normalisation contributes
    :math:`\partial h / \partial z = (I - h h^\top)/\lVert z\rVert` (or
    :math:`I / 10^{-12}` where the norm's floor is active, as autograd of
    ``F.normalize``).

    Parameters
    ----------
    z1, z2, temperature, reduction
        As for :func:`nt_xent_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_z1, d_z2)``, each of shape ``(N, D)`` and ``z1``'s dtype.

    Raises
    ------
    ValueError
        As :func:`nt_xent_loss`.

    Notes
    -----
    Accuracy: each entry within a few ULP of the larger of its row's largest entry and
    the largest entry of the gradient w.r.t. the normalised view (its positive's part
    apart) over the view's norm (float16 and float32: 4 ULP of the row's largest entry;
    float64: 4 the largest measured, over views nearly parallel, 1e-9 to 0.3 apart, and
    unrelated, N = 3 to 12, 3 to 16 features, temperatures 0.05 to 1), also at
    temperatures of 0.1 and below and for nearly parallel views: a float64 gradient takes
    its softmax from the double-double logits of the loss, and each view's positive's
    part of the normalisation's gradient from double-double unit rows
    (``unit_rows_backward`` in the private ``_numerics``). The second exceeds the first
    where that gradient lies nearly along the view, whose tangent part (all the
    normalisation keeps) then cancels: in ULP of the row's largest entry alone, float64
    entries were off by up to 123 in that sweep (3 features, N = 12, views 1e-9 apart;
    about 16 for views 1e-6 to 0.3 apart). Where an entry's terms of both signs cancel
    otherwise, the error is a few ULP of the largest term.

    Examples
    --------
    >>> d1, d2 = nt_xent_loss_grad([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.1], [0.1, 3.0]])
    >>> d1.round(4).tolist()
    [[0.0, 0.2063], [0.2134, 0.0]]
    """
    return _nt_xent_loss(z1, z2, temperature, reduction, value=False)[1]


@gradients_in_argument_dtypes("z1", "z2")
@quiet
def nt_xent_loss_value_and_grad(z1, z2, temperature=0.5, reduction="mean"):
    r"""``nt_xent_loss`` and ``nt_xent_loss_grad`` in one pass: one normalisation for both.

    Parameters
    ----------
    z1, z2, temperature, reduction
        Same as :func:`nt_xent_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_z1, d_z2))``: bit for bit :func:`nt_xent_loss` and
        :func:`nt_xent_loss_grad` of the same arguments.

    Raises
    ------
    ValueError
        As :func:`nt_xent_loss`.

    Examples
    --------
    >>> args = ([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.1], [0.1, 3.0]])
    >>> value, (d1, d2) = nt_xent_loss_value_and_grad(*args)
    >>> bool(value == nt_xent_loss(*args))
    True
    >>> [g.tolist() for g in nt_xent_loss_grad(*args)] == [d1.tolist(), d2.tolist()]
    True
    """
    return _nt_xent_loss(z1, z2, temperature, reduction)


def _nt_xent_grad_dd(v: _NTXent, g):
    """The gradients w.r.t. both views from ``g``, the gradient of the losses w.r.t. the
    (double-double) logits, for a float64 result."""
    rows = np.arange(2 * v.n)
    g *= reduction_scale(2 * v.n, v.reduction, g.dtype)
    d_logits = nx.symmetric_sum(g)
    d_logits /= v.temperature
    # each view's positive apart: nearly parallel, its projection needs care
    d_positive = d_logits[rows, v.positive]
    d_logits[rows, v.positive] = 0
    return _nt_xent_backward(v, d_logits @ v.h, d_positive)


def _nt_xent_backward(v: _NTXent, d_h, d_positive):
    """The gradients w.r.t. both views from ``d_h``, that w.r.t. the unit rows but for
    the positives, and ``d_positive``, that w.r.t. each row's logit with its positive."""
    d_z = np.empty(v.h.shape, dtype=v.dtype)
    views = (v.h, v.zs, v.scaled_norm, v.exponent, v.floored, v.infinite)
    # in blocks of rows: the backward's float64 temporaries are a block's, not (2n, D)
    for r in nx.chunks(len(d_z), max(1, nx.CHUNK // max(v.h.shape[-1], 1))):
        p = v.positive[r]
        k = (v.h[p], v.zs[p], v.exponent[p])
        cos = np.einsum("ij,ij->i", v.h[r], k[0])
        rows = tuple(x[r] for x in views)
        partner = (d_positive[r], k, cos)
        d_z[r] = nx.unit_rows_backward(rows, d_h[r], partner, NORMALIZE_EPS, v.dtype)
    return d_z[: v.n], d_z[v.n :]
