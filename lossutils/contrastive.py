r"""Contrastive losses over a batch of N matched pairs (image-text, query-key).

Row :math:`i` of the first and of the second array are the two halves of pair
:math:`i`; every other row of the other array is a negative. Both arrays have shape
``(N, D)`` and are L2-normalised along the last axis (as
``torch.nn.functional.normalize``: the norm is floored at 1e-12). The similarity
matrix is evaluated in float64 for every input dtype (the temperature magnifies the
rounding of the cosines), and the result is rounded once to the input's dtype.

Accuracy: every result is within a few ULP of the exact value of the given inputs (the
tests bound float16 and float32 by 2 ULP, float64 by 4), also at a temperature of 0.02
or a SigLIP scale of 1000, which magnify the rounding of the cosines by 50 or 1000: a
float64 loss gets double-double cosines (rows normalised in double-double, the matrix
product's leading part exact by Ozaki's splitting). The gradients: each entry within a
few ULP of the larger of its row's largest entry and the largest entry of the gradient
w.r.t. the normalised row (the matched pair's part apart) over the row's norm (float16
and float32: 2 ULP of the row's largest entry in the tests; float64: 6 the largest
measured, over pairs nearly parallel (1e-9 to 1e-3 apart) and far apart, 3 to 16
features, N = 4 to 16, temperatures 0.02 to 1 and SigLIP's defaults; 3.9 over random rows
at a SigLIP scale of 1e308 or 1.498e308 and a temperature of 1.2e-308, where an entry
whose exact value is beyond the range is ``inf``). The second exceeds the first where
that gradient lies nearly along the row, whose tangent part (all the normalisation
keeps) then cancels: in ULP of the row's largest entry alone, float64 entries were off by
up to 126 in that sweep (few features, many rows), 62 at those extremes. A float64
gradient takes its softmax (sigmoid) from the same double-double logits, and each
matched pair's part of the normalisation's gradient, :math:`k - (h^\top k) h` for
:math:`k` nearly :math:`\pm h`, from double-double unit rows as :math:`w \pm \lVert
w\rVert^2 h / 2` (:math:`w = k \mp h`): the float64 cosine would carry its rounding into
that difference, which is only as large as the angle between the pair (an error of
52,609 ULP at an angle of 1e-6). Where an entry's terms cancel otherwise (another row
nearly parallel, or products of the softmax with the rows of both signs), the error is
a few ULP of the largest term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _numerics as nx
from ._blocks import chunks, row_blocks
from ._checks import (
    check_finite_scalar,
    check_positive_scalar,
    check_reduction,
    check_same_shape,
    check_temperature,
    float_arrays,
    gradients_in_argument_dtypes,
)
from ._reduction import reduce_to, reduction_scale

__all__ = [
    "info_nce_loss",
    "info_nce_loss_grad",
    "info_nce_loss_value_and_grad",
    "clip_loss",
    "clip_loss_grad",
    "clip_loss_value_and_grad",
    "siglip_loss",
    "siglip_loss_grad",
    "siglip_loss_value_and_grad",
]

# F.normalize's default floor of the norm
NORMALIZE_EPS = 1e-12


def _unit(z: np.ndarray) -> nx.UnitRows:
    """Normalise each row without overflow or underflow in its norm
    (:func:`~lossutils._numerics.unit_rows`); a row with infinite entries is normalised to
    the limit of ``z / ||z||`` as those entries grow (at one rate)."""
    return nx.unit_rows(z, NORMALIZE_EPS)


def _unit_backward(u: nx.UnitRows, d_h: np.ndarray, partner, dtype) -> np.ndarray:
    """The gradient w.r.t. z from the gradient w.r.t. h = z / max(||z||, 1e-12).

    Above the floor, :math:`(I - h h^\\top) / \\lVert z\\rVert` (the radial part is
    removed); at the floor :math:`I / 10^{-12}`; 0 for an infinite row (the limit).
    ``d_h`` lacks each row's positive term, ``partner`` gives it
    (:func:`~lossutils._numerics.unit_rows_backward`); ``d_h`` is overwritten.
    """
    rows = (u.h, u.zs, u.scaled_norm, u.exponent, u.floored, u.infinite)
    return nx.unit_rows_backward(rows, d_h, partner, NORMALIZE_EPS, dtype)


@dataclass
class _Pairs:
    """Checked arguments: the two normalised batches (a float16/32 result takes the
    similarity matrix block by block, :func:`_cosine_blocks`)."""

    a: nx.UnitRows
    b: nx.UnitRows
    diagonal: np.ndarray  # (N,) float64: the matched pairs' cosines
    dd: tuple | None  # a float64 result: the double-double unit rows of a and of b
    reduction: str
    dtype: np.dtype  # the result dtype


def _pairs(named: dict, reduction) -> _Pairs:
    reduction = check_reduction(reduction)
    a, b = float_arrays(named, rows=True)
    names = list(named)
    if a.ndim != 2 or a.shape[1] == 0:
        # a cosine of empty vectors is undefined (as cosine_embedding_loss says)
        raise ValueError(f"{names[0]} must have shape (N, D) with D >= 1; got shape {a.shape}")
    check_same_shape(a, b, names[0], names[1])
    ua, ub = _unit(a), _unit(b)
    dtype = np.dtype(a.dtype)
    diagonal = np.einsum("ij,ij->i", ua.h, ub.h)
    if dtype == np.float64:
        # the logits come from double-double rows: no float64 cosine matrix
        return _Pairs(ua, ub, diagonal, (_dd_units(ua), _dd_units(ub)), reduction, dtype)
    return _Pairs(ua, ub, diagonal, None, reduction, dtype)


# Blocks of the logits' rows (float16/32 results): about LOGIT_BLOCK_BYTES of float64, and
# at least LOGIT_MIN_ROWS rows. Each block costs two or three matrix products, and a
# threaded BLAS call carries a fixed cost (its threads synchronise): at (N, D) = (1024,
# 128) on 2 cores, in a process that had imported PyTorch, blocks of 128 rows took 5 to 8
# times the time of one block of all, two blocks of 512 rows about the same time; with the
# cores free, 128 rows took the time of one block. The block, B N float64, is B / D times
# the gradient's size: 4 at N = 1024, 1 from N = 4096 on (D = 128).
LOGIT_BLOCK_BYTES = 4 << 20
LOGIT_MIN_ROWS = 128


def _cosine_blocks(p: _Pairs):
    """``(rows, h_a[rows] h_b^T)`` block by block of rows (float16/32 results).

    The (N, N) float64 matrix is never whole: a training step keeps one block of it, not
    N^2 float64 (512 MB at N = 8192, against blocks of 8 MB).
    """
    n = len(p.diagonal)
    for rows in chunks(n, max(1, LOGIT_MIN_ROWS, LOGIT_BLOCK_BYTES // max(1, 8 * n))):
        yield rows, p.a.h[rows] @ p.b.h.T


@nx.quiet
def _diagonal_cross_entropy(
    logits: np.ndarray, with_grad: bool, consume: bool = False, start: int = 0
):
    """Per row ``-logits[i, start + i] + logsumexp(logits[i])``, and its gradient w.r.t. the
    row (``start``: the first row's index in the whole matrix, for a block of its rows).

    The loss is ``(s_top - s_ii) + log1p(sum of exp(s_ij - s_top) over j != top)``: for a
    confident positive (the top, a small loss) nothing cancels. The gradient is the
    row's softmax minus the one-hot positive, with ``p_ii - 1`` formed as minus the other
    terms' share (without the difference ``1 - p_ii``, which cancels for a confident
    positive).
    """
    n = len(logits)
    rows = np.arange(n)
    columns = rows + start
    top = nx.row_argmax(logits) if n else rows  # (the columns: a transposed view)
    m = logits[rows, top]
    positive = logits[rows, columns]
    # consumed: the shifted logits written over them (no second (N, N) array)
    rest = np.subtract(logits, m[:, None], out=logits if consume else None)
    np.exp(rest, out=rest)
    rest[rows, top] = 0
    total = np.sum(rest, axis=-1)
    loss = (m - positive) + np.log1p(total)
    if not with_grad:
        return loss, None
    return loss, nx.cross_entropy_rows_grad(rest, total, top, columns)


def _scale(reduction: str, n: int) -> float:
    """d(reduced)/d(each per-row loss), a Python float."""
    return float(reduction_scale(n, reduction, np.float64))


def _finish(loss: np.ndarray, p: _Pairs):
    return reduce_to(loss, p.reduction, p.dtype)


class _Backward:
    """Gradients w.r.t. both raw arrays from the gradient w.r.t. the cosine matrix, given
    whole or block by block of its rows (in order, from row 0)."""

    def __init__(self, p: _Pairs, shift: int = 0):
        n, d = p.a.h.shape
        self.p = p
        self.shift = shift  # the coefficients are 2^-shift times the gradient's
        self.positive = np.empty(n)  # the matched pairs' coefficients
        self.d_a = np.empty((n, d))  # w.r.t. the unit rows, without the matched pairs
        self.d_b = np.empty((n, d))

    def add(self, rows: slice, d_cosine: np.ndarray) -> None:
        """The rows ``rows`` of the gradient w.r.t. the cosines (overwritten)."""
        p = self.p
        # the matched pairs apart: nearly parallel, their projections need care
        block = np.arange(len(d_cosine))
        diagonal = (block, block + rows.start)
        self.positive[rows] = d_cosine[diagonal]
        d_cosine[diagonal] = 0
        # (coefficients near the largest float, at a scale near it: a sum may overflow)
        with np.errstate(over="ignore", invalid="ignore"):
            np.matmul(d_cosine, p.b.h, out=self.d_a[rows])
            if rows.start == 0:
                np.matmul(d_cosine.T, p.a.h[rows], out=self.d_b)
            else:
                self.d_b += d_cosine.T @ p.a.h[rows]

    def result(self):
        p, positive, cos = self.p, self.positive, self.p.diagonal
        a, b = ((u.h, u.zs, u.exponent) for u in (p.a, p.b))
        # each in place, and rounded before the next (one float64 gradient alive at a time)
        d_a = nx.to_dtype(self._back(p.a, self.d_a, (positive, b, cos)), p.dtype)
        self.d_a = None
        d_b = nx.to_dtype(self._back(p.b, self.d_b, (positive, a, cos)), p.dtype)
        self.d_b = None
        return d_a, d_b

    def _back(self, u: nx.UnitRows, d_h, partner):
        d = _unit_backward(u, d_h, partner, self.p.dtype)
        if self.shift:  # (exact, or the limit inf where the gradient overflows)
            with np.errstate(over="ignore"):
                np.ldexp(d, self.shift, out=d)
        return d


def _shift(factor: float, n: int) -> int:
    """The power of 2 the coefficients of the backward products take less, and the
    gradient more (:class:`_Backward`), for coefficients of up to ``factor`` (times 1 or
    2) over ``N = n`` pairs: 0 unless a sum of ``N`` of them, or a projection's difference
    of such sums, may overflow though the gradient does not (a SigLIP scale of 1e308, an
    InfoNCE temperature of 1e-308, "sum")."""
    return max(0, int(np.frexp(factor)[1]) + n.bit_length() + 3 - 1023)


def _grads(p: _Pairs, d_cosine: np.ndarray, shift: int = 0):
    """Gradients w.r.t. both raw arrays from the whole gradient w.r.t. the cosine matrix
    (times ``2^-shift``)."""
    backward = _Backward(p, shift)
    backward.add(slice(0, len(d_cosine)), d_cosine)
    return backward.result()


@nx.quiet
def _dd_units(u: nx.UnitRows):
    """The rows of ``u`` normalised in double-double ``(hi, lo)``.

    For a float64 result: a temperature of 0.07 or a scale of 1000 magnifies the float64
    cosines' rounding into dozens of ULP of the loss (up to ``2**-46`` after the
    magnification); from these rows, and a matrix product whose leading part is exact
    (Ozaki's splitting), the logits carry about ``2**-66`` instead.
    """
    hi, lo, _ = nx.dd_unit_rows(u.zs, u.exponent, NORMALIZE_EPS)
    return hi, lo


def _cross_entropy(p: _Pairs, temperature: float, with_grad: bool, both: bool = False):
    """Per row of the logits ``cos / temperature`` of a float64 result: InfoNCE, and its
    gradient w.r.t. the logits (or None); with ``both`` also per column, ``(rows, columns,
    gradient of their sum)``, from one logit matrix.

    Double-double logits: the temperature magnifies the float64 cosines' rounding into
    dozens of ULP of the loss, and of the softmax in the gradient.
    """
    (a_hi, a_lo), b = p.dd
    scaled = nx.dd_scale(a_hi, a_lo, temperature, reciprocal=True)
    del a_hi, a_lo
    p.dd = None  # not used again: the unscaled rows freed
    positive = np.arange(len(p.diagonal))
    if both:
        return nx.dd_product_cross_entropy_both(*scaled, *b, with_grad=with_grad)
    out = nx.dd_product_cross_entropy(*scaled, *b, positive, with_grad=with_grad)
    return out if with_grad else (out, None)


def info_nce_loss(query, key, temperature=0.07, reduction="mean"):
    r"""InfoNCE: the categorical likelihood of each query's own key among the N keys.

    With :math:`q_i`, :math:`k_j` the L2-normalised rows and
    :math:`s_{ij} = q_i^\top k_j / \tau`, the positive of query :math:`i` is key
    :math:`i` and the other :math:`N - 1` keys are its negatives:

    .. math::

        \ell_i = -\log \frac{e^{s_{ii}}}{\sum_{j=1}^{N} e^{s_{ij}}}
               = -s_{ii} + \log \sum_{j=1}^{N} e^{s_{ij}}.

    Parameters
    ----------
    query, key : array_like
        Shape ``(N, D)`` each; row :math:`i` of both is a positive pair.
    temperature : float, optional
        :math:`\tau > 0`.
    reduction : {"mean", "sum", "none"}, optional
        Over the :math:`N` queries; ``"none"`` returns the :math:`N` losses.

    Returns
    -------
    ndarray or numpy scalar
        The reduced loss, in the promoted dtype of the arrays.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``temperature`` is not a positive finite
        number of at least 1.113e-308 (the differences of its logits finite), or
        ``query`` and ``key`` are not two arrays of the same shape ``(N, D)`` with ``D >= 1``.

    Notes
    -----
    In PyTorch, ``F.cross_entropy(F.normalize(q) @ F.normalize(k).T / tau,
    torch.arange(N))``. Accuracy as stated in the module's docstring (tested to 2 ULP in
    float16 and float32 and 4 in float64 down to a temperature of 0.02; the gradients
    down to 0.07). Since :math:`\log N - \ell` is a
    lower bound on the mutual information of the pair, no estimate from it exceeds
    :math:`\log N`. See
    :cite:t:`oord2018representation`.

    Examples
    --------
    >>> q = [[1.0, 0.0], [0.0, 1.0]]
    >>> k = [[2.0, 0.1], [0.1, 3.0]]
    >>> float(round(info_nce_loss(q, k, temperature=0.5), 6))
    0.137469
    """
    return _info_nce(query, key, temperature, reduction, grad=False)[0]


@gradients_in_argument_dtypes("query", "key")
def info_nce_loss_grad(query, key, temperature=0.07, reduction="mean"):
    r"""Gradient of :func:`info_nce_loss` w.r.t. ``query`` and ``key``.

    With :math:`P` the row softmax of the logits and :math:`I` the identity,
    :math:`G = c\,(P - I)/\tau` (:math:`c` the reduction's scale) is the gradient w.r.t.
    the cosines, :math:`G K` and :math:`G^\top Q` those w.r.t. the normalised rows, and
    the normalisation contributes :math:`(I - h h^\top) / \lVert z\rVert`.

    Parameters
    ----------
    query, key, temperature, reduction
        As for :func:`info_nce_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_query, d_key)``, each of shape ``(N, D)`` and the arrays' dtype.

    Raises
    ------
    ValueError
        As :func:`info_nce_loss`.

    Examples
    --------
    >>> d_q, d_k = info_nce_loss_grad([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.1], [0.1, 3.0]], 0.5)
    >>> d_q.round(4).tolist()
    [[0.0, 0.1203], [0.1257, 0.0]]
    """
    return _info_nce(query, key, temperature, reduction, value=False)[1]


@gradients_in_argument_dtypes("query", "key")
def info_nce_loss_value_and_grad(query, key, temperature=0.07, reduction="mean"):
    r"""``info_nce_loss`` and ``info_nce_loss_grad`` in one pass: one similarity matrix.

    Parameters
    ----------
    query, key, temperature, reduction
        Same as :func:`info_nce_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_query, d_key))``: bit for bit :func:`info_nce_loss` and
        :func:`info_nce_loss_grad` of the same arguments.

    Raises
    ------
    ValueError
        As :func:`info_nce_loss`.

    Examples
    --------
    >>> args = ([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.1], [0.1, 3.0]], 0.5)
    >>> value, (d1, d2) = info_nce_loss_value_and_grad(*args)
    >>> bool(value == info_nce_loss(*args))
    True
    >>> [g.tolist() for g in info_nce_loss_grad(*args)] == [d1.tolist(), d2.tolist()]
    True
    """
    return _info_nce(query, key, temperature, reduction)


def _info_nce(query, key, temperature, reduction, *, value=True, grad=True):
    """``(loss or None, gradients or None)`` of InfoNCE, from one similarity matrix."""
    temperature = check_temperature(temperature)
    p = _pairs({"query": query, "key": key}, reduction)
    if p.dtype != np.float64:
        return _info_nce_blocks(p, temperature, value, grad)
    loss, g = _cross_entropy(p, temperature, grad)
    loss = _finish(loss, p) if value else None
    if not grad:
        return loss, None
    factor = _scale(p.reduction, len(g)) / temperature
    shift = _shift(factor, len(g))
    g *= math.ldexp(factor, -shift)
    return loss, _grads(p, g, shift)


def _info_nce_blocks(p: _Pairs, temperature: float, value: bool, grad: bool):
    """:func:`_info_nce` of a float16/32 result, block by block of the logits' rows: each
    block's gradient w.r.t. the cosines is taken into the rows' gradients at once."""
    n = len(p.diagonal)
    loss = np.empty(n)
    backward = _Backward(p) if grad else None
    factor = _scale(p.reduction, n) / temperature
    for rows, cosine in _cosine_blocks(p):
        logits = np.divide(cosine, temperature, out=cosine)
        loss[rows], g = _diagonal_cross_entropy(logits, grad, consume=True, start=rows.start)
        if grad:
            g *= factor
            backward.add(rows, g)
    return (_finish(loss, p) if value else None), (backward.result() if grad else None)


def clip_loss(image_embeds, text_embeds, temperature=0.07, reduction="mean"):
    r"""CLIP's symmetric loss: InfoNCE from images to texts and from texts to images.

    With :math:`s_{ij} = x_i^\top y_j / \tau` for the L2-normalised image rows
    :math:`x_i` and text rows :math:`y_j`, pair :math:`i` has the loss

    .. math::

        \ell_i = \frac{1}{2}\left[\left(-s_{ii} + \log\sum_{j=1}^{N} e^{s_{ij}}\right)
               + \left(-s_{ii} + \log\sum_{j=1}^{N} e^{s_{ji}}\right)\right].

    Parameters
    ----------
    image_embeds, text_embeds : array_like
        Shape ``(N, D)`` each; row :math:`i` of both is a matched image-text pair.
    temperature : float, optional
        :math:`\tau > 0` (CLIP learns :math:`\log(1/\tau)`, initialised at
        :math:`1/\tau = 1/0.07`).
    reduction : {"mean", "sum", "none"}, optional
        Over the :math:`N` pairs; ``"none"`` returns the :math:`N` losses.

    Returns
    -------
    ndarray or numpy scalar
        The reduced loss, in the promoted dtype of the arrays.

    Raises
    ------
    ValueError
        As :func:`info_nce_loss`, naming ``image_embeds`` and ``text_embeds``.

    Notes
    -----
    The mean is the average of the two directions' mean cross-entropies, as in
    :cite:t:`radford2021learning` (``(F.cross_entropy(S, labels) +
    F.cross_entropy(S.T, labels)) / 2``).

    Examples
    --------
    >>> x = [[1.0, 0.0], [0.0, 1.0]]
    >>> y = [[2.0, 0.1], [0.1, 3.0]]
    >>> float(round(clip_loss(x, y, temperature=0.5), 6))
    0.13747
    """
    return _clip(image_embeds, text_embeds, temperature, reduction, grad=False)[0]


@gradients_in_argument_dtypes("image_embeds", "text_embeds")
def clip_loss_grad(image_embeds, text_embeds, temperature=0.07, reduction="mean"):
    r"""Gradient of :func:`clip_loss` w.r.t. ``image_embeds`` and ``text_embeds``.

    The gradient w.r.t. the cosines is :math:`c\,[(P - I) + (Q - I)^\top] / (2\tau)`,
    with :math:`P` the row softmax of the logits and :math:`Q` that of their
    transpose; then as :func:`info_nce_loss_grad`.

    Parameters
    ----------
    image_embeds, text_embeds, temperature, reduction
        As for :func:`clip_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_image_embeds, d_text_embeds)``, each of shape ``(N, D)`` and the arrays'
        dtype.

    Raises
    ------
    ValueError
        As :func:`clip_loss`.

    Examples
    --------
    >>> d_x, d_y = clip_loss_grad([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.1], [0.1, 3.0]], 0.5)
    >>> d_x.round(4).tolist()
    [[0.0, 0.1201], [0.1259, 0.0]]
    """
    return _clip(image_embeds, text_embeds, temperature, reduction, value=False)[1]


@gradients_in_argument_dtypes("image_embeds", "text_embeds")
def clip_loss_value_and_grad(image_embeds, text_embeds, temperature=0.07, reduction="mean"):
    r"""``clip_loss`` and ``clip_loss_grad`` in one pass: one similarity matrix.

    Parameters
    ----------
    image_embeds, text_embeds, temperature, reduction
        Same as :func:`clip_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_image_embeds, d_text_embeds))``: bit for bit :func:`clip_loss` and
        :func:`clip_loss_grad` of the same arguments.

    Raises
    ------
    ValueError
        As :func:`clip_loss`.

    Examples
    --------
    >>> args = ([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.1], [0.1, 3.0]], 0.5)
    >>> value, (d1, d2) = clip_loss_value_and_grad(*args)
    >>> bool(value == clip_loss(*args))
    True
    >>> [g.tolist() for g in clip_loss_grad(*args)] == [d1.tolist(), d2.tolist()]
    True
    """
    return _clip(image_embeds, text_embeds, temperature, reduction)


def _clip(image_embeds, text_embeds, temperature, reduction, *, value=True, grad=True):
    """``(loss or None, gradients or None)`` of the CLIP loss, from one similarity matrix."""
    temperature = check_temperature(temperature)
    p = _pairs({"image_embeds": image_embeds, "text_embeds": text_embeds}, reduction)
    if p.dtype != np.float64:
        return _clip_blocks(p, temperature, value, grad)
    rows, columns, g = _cross_entropy(p, temperature, grad, both=True)
    # (halves first: two losses near 1e308 would overflow in their sum)
    loss = _finish(rows / 2 + columns / 2, p) if value else None
    if not grad:
        return loss, None
    factor = _scale(p.reduction, len(rows)) / (2 * temperature)
    shift = _shift(2 * factor, len(rows))  # (a row's and a column's softmax)
    g *= math.ldexp(factor, -shift)
    return loss, _grads(p, g, shift)


def _parts(rows: slice, n: int):
    """Slices of at most 32 rows covering a block ``rows`` of logits with ``n`` columns,
    relative to the block, and their first rows in the whole matrix: a row function's
    temporaries then stay small next to a block."""
    for part in row_blocks(rows.stop - rows.start, n * 8, max_rows=32):
        yield part, rows.start + part.start


@nx.quiet
def _clip_blocks(p: _Pairs, temperature: float, value: bool, grad: bool):
    """:func:`_clip` of a float16/32 result, block by block of the logits' rows, in two
    passes: the row losses and each column's top entry and the sum of its other terms
    ``exp(s - s_top)`` (rescaled when a block brings a larger top; the top kept apart as
    :func:`_diagonal_cross_entropy` does, so that a confident positive's small loss is not
    lost in ``1 + sum``); with a gradient, each block's logits again for both softmaxes,
    taken into the rows' gradients at once."""
    n = len(p.diagonal)
    rows_loss, positive = np.empty(n), np.empty(n)
    top, top_row, total = np.full(n, -np.inf), np.zeros(n, dtype=np.intp), np.zeros(n)
    for rows, cosine in _cosine_blocks(p):
        logits = np.divide(cosine, temperature, out=cosine)
        block = np.arange(len(logits))
        positive[rows] = logits[block, block + rows.start]
        arg = nx.row_argmax(logits.T)  # (fast in a transposed view)
        m = logits[arg, np.arange(n)]
        new = np.flatnonzero(m > top)
        # the old top joins the others, all rescaled to the new top (0 before any top)
        total[new] = (total[new] + 1) * np.exp(top[new] - m[new])
        top[new], top_row[new] = m[new], arg[new] + rows.start
        for part, first in _parts(rows, n):
            rest = np.exp(logits[part] - top)
            inside = new[(arg[new] >= part.start) & (arg[new] < part.stop)]
            rest[arg[inside] - part.start, inside] = 0  # the new tops themselves
            total += np.sum(rest, axis=0)
            loss, _ = _diagonal_cross_entropy(logits[part], False, consume=True, start=first)
            rows_loss[first : first + len(loss)] = loss
    columns_loss = (top - positive) + np.log1p(total)
    loss = _finish(rows_loss / 2 + columns_loss / 2, p) if value else None
    if not grad:
        return loss, None
    backward = _Backward(p)
    factor = _scale(p.reduction, n) / (2 * temperature)
    denominator = 1 + total
    not_top = top_row != np.arange(n)
    for rows, cosine in _cosine_blocks(p):
        logits = np.divide(cosine, temperature, out=cosine)
        for part, first in _parts(rows, n):
            own = np.arange(part.stop - part.start)
            diagonal = (own, own + first)
            columns = slice(first, first + len(own))
            # the column softmax: exp(s - s_top) / (1 + total), 1 / (1 + total) at the top;
            # the positive's q - 1 as minus the other terms' share (nothing cancels)
            q = np.exp(logits[part] - top)
            others = total[columns] - np.where(not_top[columns], q[diagonal], 0)
            q /= denominator
            q[diagonal] = -(not_top[columns] + others) / denominator[columns]
            _, g = _diagonal_cross_entropy(logits[part], True, consume=True, start=first)
            g += q  # (g: the part's rows of the block, consumed)
        logits *= factor
        backward.add(rows, logits)
    return loss, backward.result()


def _siglip_args(image_embeds, text_embeds, scale, bias, reduction):
    scale = check_positive_scalar(scale, "scale")
    bias = check_finite_scalar(bias, "bias")
    p = _pairs({"image_embeds": image_embeds, "text_embeds": text_embeds}, reduction)
    return p, scale, bias


def siglip_loss(image_embeds, text_embeds, scale=10.0, bias=-10.0, reduction="mean"):
    r"""SigLIP: an independent Bernoulli likelihood of "matched or not" for every pair.

    With :math:`x_i`, :math:`y_j` the L2-normalised rows, the logit of pair
    :math:`(i, j)` is :math:`z_{ij} = t\, x_i^\top y_j + b`, its label
    :math:`l_{ij} = +1` on the diagonal (the :math:`N` matched pairs) and :math:`-1` off
    it (the :math:`N^2 - N` others), and image :math:`i` has the loss

    .. math::

        \ell_i = -\sum_{j=1}^{N} \log\sigma(l_{ij} z_{ij}).

    Parameters
    ----------
    image_embeds, text_embeds : array_like
        Shape ``(N, D)`` each; row :math:`i` of both is a matched image-text pair.
    scale : float, optional
        :math:`t > 0` (SigLIP learns :math:`\log t`, initialised at :math:`t = 10`).
    bias : float, optional
        :math:`b` (initialised at -10, so that the initial loss matches the rarity of
        the positives).
    reduction : {"mean", "sum", "none"}, optional
        ``"none"`` returns one loss per image (its row); ``"mean"`` averages over the
        :math:`N` images, as the paper's :math:`-\frac{1}{N}\sum_i\sum_j`.

    Returns
    -------
    ndarray or numpy scalar
        The reduced loss, in the promoted dtype of the arrays.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the three, ``scale`` is not a positive finite
        number, ``bias`` is not a finite number, or the arrays are not two arrays of the
        same shape ``(N, D)`` with ``D >= 1``.

    Notes
    -----
    Each term is a softplus of a bounded logit, and the row sum of these non-negative
    terms is compensated: no cancellation, and no error growing with :math:`N`.
    See :cite:t:`zhai2023sigmoid`.

    Examples
    --------
    >>> x = [[1.0, 0.0], [0.0, 1.0]]
    >>> y = [[2.0, 0.1], [0.1, 3.0]]
    >>> float(round(siglip_loss(x, y), 6))
    0.697735
    """
    return _siglip(image_embeds, text_embeds, scale, bias, reduction, grad=False)[0]


@gradients_in_argument_dtypes("image_embeds", "text_embeds")
def siglip_loss_grad(image_embeds, text_embeds, scale=10.0, bias=-10.0, reduction="mean"):
    r"""Gradient of :func:`siglip_loss` w.r.t. ``image_embeds`` and ``text_embeds``.

    :math:`\partial\ell/\partial z_{ij} = -l_{ij}\,\sigma(-l_{ij} z_{ij})`; the gradient
    w.r.t. the cosines is :math:`t` times that (times the reduction's scale), then as
    :func:`info_nce_loss_grad`.

    Parameters
    ----------
    image_embeds, text_embeds, scale, bias, reduction
        As for :func:`siglip_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_image_embeds, d_text_embeds)``, each of shape ``(N, D)`` and the arrays'
        dtype.

    Raises
    ------
    ValueError
        As :func:`siglip_loss`.

    Examples
    --------
    >>> d_x, d_y = siglip_loss_grad([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.1], [0.1, 3.0]])
    >>> d_x.round(4).tolist()
    [[0.0, -0.1253], [-0.0831, 0.0]]
    """
    return _siglip(image_embeds, text_embeds, scale, bias, reduction, value=False)[1]


@gradients_in_argument_dtypes("image_embeds", "text_embeds")
def siglip_loss_value_and_grad(image_embeds, text_embeds, scale=10.0, bias=-10.0, reduction="mean"):
    r"""``siglip_loss`` and ``siglip_loss_grad`` in one pass: one matrix of logits.

    Parameters
    ----------
    image_embeds, text_embeds, scale, bias, reduction
        Same as :func:`siglip_loss`.

    Returns
    -------
    tuple
        ``(loss, (d_image_embeds, d_text_embeds))``: bit for bit :func:`siglip_loss` and
        :func:`siglip_loss_grad` of the same arguments.

    Raises
    ------
    ValueError
        As :func:`siglip_loss`.

    Examples
    --------
    >>> args = ([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.1], [0.1, 3.0]])
    >>> value, (d1, d2) = siglip_loss_value_and_grad(*args)
    >>> bool(value == siglip_loss(*args))
    True
    >>> [g.tolist() for g in siglip_loss_grad(*args)] == [d1.tolist(), d2.tolist()]
    True
    """
    return _siglip(image_embeds, text_embeds, scale, bias, reduction)


@nx.quiet
def _doubled(blocks):
    """The ``(rows, hi, lo)`` blocks of a double-double product, doubled in place."""
    for rows, hi, lo in blocks:
        with np.errstate(over="ignore"):
            hi *= 2
            lo *= 2
        yield rows, hi, lo


def _siglip_blocks(p: _Pairs, scale: float, backward: _Backward | None):
    """``(blocks, spare)``: ``blocks`` yields ``(rows, hi, lo, out)`` of the logits'
    products ``t cos`` block by block of rows (``lo`` None for float32 and float16 inputs,
    whose float64 cosines suffice), ``out`` where the rows' gradient w.r.t. the cosines
    goes: for a float64 result the rows of ``spare``, an (N, N) array; for float16/32 the
    products' own rows, each block of cosines (:func:`_cosine_blocks`, cut into blocks of
    about a megabyte for the elementwise work) given to ``backward`` once it is done, and
    ``spare`` None.

    For a float64 result, double-doubles: the scale magnifies the float64 cosines'
    rounding into many ULP of the loss and of its gradient. To first order in the low
    parts, ``softplus(x + e) ~ softplus(x) + sigma(x) e`` and ``sigma(x + e) ~ sigma(x)
    (1 + sigma(-x) e)``.
    """
    if p.dtype == np.float64:
        (a_hi, a_lo), b = p.dd
        p.dd = None  # not used again: the unscaled rows freed
        # a scale within 2**-26 of the largest float: the products' splits of the scaled
        # rows overflowed (NaN); they take half the scale, and the products are doubled
        # (exactly, or to the limit inf, whose low part the caller drops)
        twice = scale > 2.0**1023
        a_hi, a_lo = nx.dd_scale(a_hi, a_lo, scale / 2 if twice else scale)
        blocks, spare = nx.dd_matmul_blocks(a_hi, a_lo, *b)
        if twice:
            blocks = _doubled(blocks)
        return ((rows, hi, lo, spare[rows]) for rows, hi, lo in blocks), spare

    def blocks():
        n = len(p.diagonal)
        for rows, z in _cosine_blocks(p):
            z *= scale
            # (parts of at most 32 rows: the chain's temporaries stay small next to a block)
            for part in row_blocks(len(z), n * 8, max_rows=32):
                yield slice(rows.start + part.start, rows.start + part.stop), z[part], None, z[part]
            if backward is not None:  # (the loop is done with the block's parts)
                backward.add(rows, z)

    return blocks(), None


def _siglip(image_embeds, text_embeds, scale, bias, reduction, *, value=True, grad=True):
    """``(loss or None, gradients or None)`` of SigLIP, from one matrix of logits."""
    p, scale, bias = _siglip_args(image_embeds, text_embeds, scale, bias, reduction)
    n = len(p.diagonal)
    sums = np.empty(n) if value else None
    exact = p.dtype == np.float64
    # row blocks: the gradient is written over the products' rows already read
    factor = scale * _scale(p.reduction, n)
    # a factor near the largest float: the backward products' sums of N coefficients of up
    # to the factor (and the projections' differences) overflowed though the gradient
    # does not (a scale of 1e308, "sum": inf for entries of 2e307); the coefficients take
    # 2^-shift of it, the gradient is multiplied back (exact, or to the limit inf)
    shift = _shift(factor, n)
    factor = math.ldexp(factor, -shift)
    backward = _Backward(p, shift) if grad else None
    blocks, d_z = _siglip_blocks(p, scale, backward)
    huge = scale + abs(bias) > 2.0**1022  # t cos + b may overflow
    for rows, x, lo, out in blocks:
        # x = -l z, z = t cos + b: z off the diagonal, -z on it (the matched pairs)
        diagonal = (np.arange(len(x)), np.arange(rows.start, rows.start + len(x)))
        with np.errstate(all="ignore"):
            if exact:
                x, err = nx.two_sum(x, bias)
                lo += err
                if huge:  # a logit beyond the range: its limit, without a NaN low part
                    lo[~np.isfinite(x)] = 0
                lo[diagonal] *= -1
            else:
                x += bias
            x[diagonal] *= -1
            softpluses, sigmoids = nx.logistic_pairs(
                x, softpluses=(value, False), sigmoids=(value and exact or grad, exact and grad)
            )
            softplus = softpluses and softpluses[0]
            sigma, sigma_minus = sigmoids or (None, None)
            if value:
                if exact:
                    softplus += sigma * lo
                # float64: a compensated row sum (N rounded additions would cost up to
                # N/2 ULP); a float16/32 result: the N terms are >= 0, so float64's sum is
                # within N 2**-53 of itself, far below half an ULP of float32
                sums[rows] = (
                    nx.accurate_sum(softplus, axis=-1) if exact else np.sum(softplus, axis=-1)
                )
            if grad:
                # d softplus(-l z) / dz = -l sigma(-l z): sigma(x) off the diagonal, -sigma(x) on it
                if exact:
                    sigma += sigma * sigma_minus * lo
                sigma[diagonal] *= -1
                np.multiply(sigma, factor, out=out)
    loss = _finish(sums, p) if value else None
    if not grad:
        return loss, None
    if exact:
        backward.add(slice(0, n), d_z)
    return loss, backward.result()
