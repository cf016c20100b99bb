"""Stable activations: the building blocks every likelihood-based loss is made of.

Each function accepts any array-like and returns NumPy (a NumPy scalar for a
scalar input). Integer input counts as float64; float16 and float32 stay what they
are (float16 is computed in float32 and rounded once). The careful kernels themselves
live in ``lossutils._numerics``.
"""

from __future__ import annotations

import numpy as np

from . import _numerics as nx
from ._checks import as_float_array, check_bool, check_class_axis

__all__ = ["sigmoid", "log_sigmoid", "softplus", "logsumexp", "softmax", "log_softmax"]


def _scalar_if_0d(array: np.ndarray):
    return array[()] if array.ndim == 0 else array


def _elementwise(kernel, x):
    """``kernel(x)`` in the working dtype (float32 for float16), rounded once to x's dtype."""
    x = as_float_array(x, "x")
    out = kernel(x.astype(nx.working_dtype(x.dtype), copy=False))
    return _scalar_if_0d(nx.to_dtype(out, x.dtype))


def sigmoid(x):
    r"""Logistic sigmoid :math:`\sigma(x) = 1 / (1 + e^{-x})`, overflow-free.

    For ``x < 0`` it evaluates :math:`e^{x} / (1 + e^{x})`, so ``exp`` never
    overflows and the result keeps full relative accuracy in both tails.

    Parameters
    ----------
    x : array_like
        Logits.

    Returns
    -------
    ndarray
        Values in [0, 1], same shape and floating dtype as ``x``.

    Raises
    ------
    ValueError
        If ``x`` is not real numeric data.

    Notes
    -----
    Equivalent to ``torch.sigmoid`` and ``jax.nn.sigmoid``; ``scipy.special.expit``.
    See :cite:t:`bishop2006pattern`, section 4.2.

    Examples
    --------
    >>> sigmoid([-1000.0, 0.0, 1000.0])
    array([0. , 0.5, 1. ])
    """
    return _elementwise(nx.sigmoid, x)


def softplus(x):
    r"""Softplus :math:`\log(1 + e^{x})`, as :math:`\max(x, 0) + \operatorname{log1p}(e^{-|x|})`.

    The textbook form overflows for ``x > 709`` (float64); this one is exact to
    a few ULP over the whole real line and returns ``x`` itself for large ``x``.

    Parameters
    ----------
    x : array_like
        Input values.

    Returns
    -------
    ndarray
        Non-negative values, same shape and floating dtype as ``x``.

    Raises
    ------
    ValueError
        If ``x`` is not real numeric data.

    Notes
    -----
    Equivalent to ``torch.nn.functional.softplus`` (with ``beta=1`` and no
    threshold) and ``jax.nn.softplus``. See :cite:t:`goodfellow2016deep`, section 3.10.

    Examples
    --------
    >>> softplus([-1000.0, 0.0, 1000.0]).round(6).tolist()
    [0.0, 0.693147, 1000.0]
    """
    return _elementwise(nx.softplus, x)


def log_sigmoid(x):
    r"""Log-sigmoid :math:`\log \sigma(x) = -\operatorname{softplus}(-x)`.

    Parameters
    ----------
    x : array_like
        Logits.

    Returns
    -------
    ndarray
        Non-positive values, same shape and floating dtype as ``x``.

    Raises
    ------
    ValueError
        If ``x`` is not real numeric data.

    Notes
    -----
    Equivalent to ``torch.nn.functional.logsigmoid`` and ``jax.nn.log_sigmoid``;
    ``scipy.special.log_expit``. See :cite:t:`goodfellow2016deep`, section 3.10.

    Examples
    --------
    >>> log_sigmoid([-1000.0, 0.0]).round(6).tolist()
    [-1000.0, -0.693147]
    """
    return _elementwise(nx.log_sigmoid, x)


def _class_axis_array(x, axis: int) -> np.ndarray:
    """``x`` as a floating array with at least one element along ``axis``."""
    x = as_float_array(x, "x")
    check_class_axis(x, "x", axis)
    return x


def _rows(x: np.ndarray, axis: int) -> tuple[np.ndarray, tuple]:
    """``x`` with ``axis`` moved last, as rows in the working dtype; and the moved shape."""
    moved = np.moveaxis(x, axis, -1)
    rows = nx.contiguous_rows(moved.reshape(-1, moved.shape[-1]))
    return rows.astype(nx.working_dtype(x.dtype), copy=False), moved.shape


def _wide_or_shifted(rows: np.ndarray, wide, shifted) -> np.ndarray:
    """A row function of 2-D ``rows``: ``wide(rows)`` for float32 rows, where it is accurate.

    ``wide`` (None: none) returns ``(out, ok)``; the rows not ``ok``, and rows of other dtypes, are
    computed by ``shifted`` (which returns ``(out, m)``, ``m`` the row maxima), a row holding
    ``+inf`` from its limit row (:func:`~lossutils._numerics.limit_rows`).
    """

    def by_shift(part: np.ndarray) -> np.ndarray:
        out, m = shifted(part)
        infinite = np.flatnonzero(m == np.inf)
        if infinite.size:  # a row with +inf: its limit
            out[infinite] = shifted(nx.limit_rows(part[infinite]))[0]
        return out

    if wide is None or rows.dtype != np.float32:
        return by_shift(rows)
    out, ok = wide(rows)
    rest = np.flatnonzero(~ok)
    if rest.size:
        out[rest] = by_shift(rows[rest])
    return out


def _softmax_wide(rows: np.ndarray):
    """Softmax of float32 rows as ``e^x / s`` in float64, rounded once; and the rows where
    that is accurate (:func:`~lossutils._numerics.wide_exp_sums`): within half an ULP and a
    hair there."""
    out = np.empty_like(rows)

    def divide(part, e, s):
        e *= (1 / s)[:, None]
        out[part] = e

    return out, nx.wide_exp_sums(rows, divide)[1]


def _softmax_rows(rows: np.ndarray):
    """Softmax of each row of a 2-D array, and the row maxima.

    Every exponential is corrected for the rounding of ``x - m``
    (:func:`~lossutils._numerics.exp_rows`) and divided by its row sum while in the cache.
    A float32 row (one that :func:`_softmax_wide` leaves: an overflowing or all-tiny row)
    is summed and divided in float64, rounded once: what remains is the error of float32's
    exponential (up to 2.5 ULP of it) and of its correction, 3.8 ULP at most measured over
    rows of 200 to 100000 classes.
    """

    def divide(_, e, s, __):
        e /= s[:, None]

    m, _, e = nx.exp_row_blocks(rows, keep=True, finish=divide, wide_sum=True)
    return e, m


def _log_softmax_rows(rows: np.ndarray):
    """Log-softmax ``(x - m) - r`` of each row of a 2-D array, ``r = logsumexp(x) - m``;
    and the row maxima ``m``.

    ``r = log1p(s)``, ``s`` the sum of ``e^{x - m}`` over all but one maximal entry, is
    subtracted block by block; rows dominated by their maximum (``s < 1``, where ``r`` is
    small and every digit of it counts) are recomputed with the compensated ``r`` of
    :func:`~lossutils._numerics.log1p_rest` (computed in float64 for float32), rounded to
    the rows' dtype: every entry ``(x - m) - r``, two non-positive terms, is at least ``r``
    in magnitude, so that rounding costs at most half an ULP of it.
    """
    out = np.empty_like(rows)

    def subtract(rows_, _, s, __):
        out[rows_] -= np.log1p(s)[:, None]

    m, s, _ = nx.exp_row_blocks(
        rows, keep=False, correct=False, finish=subtract, d_out=out, drop_top=True
    )
    hard = np.flatnonzero((s < 1) & np.isfinite(m))
    if hard.size:
        r = nx.to_dtype(nx.log1p_rest(rows, m, hard), out.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            out[hard] = (rows[hard] - m[hard, None]) - r[:, None]
    return out, m


def logsumexp(x, axis=-1, keepdims=False):
    r""":math:`\log \sum_k e^{x_k}` along ``axis``, without overflow.

    Shifts by the maximum :math:`m` and evaluates :math:`m + \operatorname{log1p}(s)`,
    where :math:`s` sums :math:`e^{x_k - m}` over all but one maximal element; in rows
    dominated by their maximum (:math:`s < 1`) the rounding error of each difference
    :math:`x_k - m` is compensated, so a tiny :math:`\operatorname{log1p}(s)` keeps its digits.
    A float32 row whose result is 8 or more in magnitude (and whose exponentials neither
    overflow nor all underflow) is :math:`\log \sum_k e^{x_k}` unshifted, with the
    logarithm in float64: there the sum's relative error is a fraction of an ULP of the
    result.

    Parameters
    ----------
    x : array_like
        Input values; must have at least one element along ``axis``.
    axis : int, optional
        The axis to reduce (default: the last).
    keepdims : bool, optional
        Keep the reduced axis with length 1.

    Returns
    -------
    ndarray
        Same floating dtype as ``x``.

    Raises
    ------
    ValueError
        If ``x`` is not real numeric data, has no dimension, or has no element along
        ``axis``; if ``axis`` is out of range; if ``keepdims`` is not a bool.

    Notes
    -----
    Equivalent to ``torch.logsumexp`` and ``jax.nn.logsumexp``;
    ``scipy.special.logsumexp``. See :cite:t:`blanchard2021accurate`. Where the
    result is tiny next to a negative maximum (e.g. two entries near :math:`-\log 2`)
    the problem itself is ill-conditioned and the relative error grows with
    :math:`|m| / |\text{result}|`.

    Examples
    --------
    >>> logsumexp([1000.0, 1000.0])
    np.float64(1000.6931471805599)
    """
    keepdims = check_bool(keepdims, "keepdims")
    x = _class_axis_array(x, axis)
    rows, moved = _rows(x, axis)
    if rows.dtype.itemsize > 4:
        out = _logsumexp_rows(rows)
    else:  # float32: the unshifted sum where it is accurate, the shifted one elsewhere
        logs, ok = nx.log_exp_sums(rows)
        out = logs.astype(rows.dtype)
        rest = np.flatnonzero(~ok)
        if rest.size:
            out[rest] = _logsumexp_rows(rows[rest])
    out = nx.to_dtype(out.reshape(moved[:-1]), x.dtype)
    if keepdims:
        out = np.expand_dims(out, axis)
    return _scalar_if_0d(out)


def _logsumexp_rows(rows: np.ndarray) -> np.ndarray:
    """Log-sum-exp ``m + log1p(s)`` of each row of a 2-D array, shifted by its maximum."""
    m, s, _ = nx.exp_row_blocks(rows, keep=False, correct=False, drop_top=True)
    with np.errstate(invalid="ignore"):
        out = m + np.log1p(s)
    # rows dominated by their maximum whose result is small: log1p of the compensated rest,
    # added in float64. Uncompensated, log1p(s) is off by at most log(C) eps / 2 (each term
    # e^d of the rest carries |d| eps / 2, and sum_k e^{d_k} |d_k| <= log(C) for a rest
    # below 1): below one ULP of a result of 8 or more, for up to millions of classes.
    hard = np.flatnonzero((s < 1) & np.isfinite(m) & (np.abs(out) < 8))
    if hard.size:
        out[hard] = nx.to_dtype(m[hard] + nx.log1p_rest(rows, m, hard), out.dtype)
    # a row whose maximum is +-inf or NaN has that maximum as its log-sum-exp
    np.copyto(out, m, where=~np.isfinite(m))
    return out


def softmax(x, axis=-1):
    r"""Softmax :math:`e^{x_k} / \sum_j e^{x_j}` along ``axis``, shifted where needed.

    The rounding error of each difference :math:`x_k - m` is recovered exactly and
    compensated, so a tail probability such as :math:`e^{-700}` keeps its relative
    accuracy (uncompensated it is off by up to :math:`|x_k - m| / 2` ULP): every entry is
    within a few ULP. float32 (and float16) rows whose float64 sum of exponentials is
    finite and at least :math:`2^{-860}` need no shift: :math:`e^{x_k} / \sum_j e^{x_j}` is
    computed in float64 and rounded once to float32, within half an ULP and a hair (for
    float16, rounded once more from float32). Large inputs are processed in blocks of
    rows of about 1 MB, on up to two threads.

    Parameters
    ----------
    x : array_like
        Scores (logits).
    axis : int, optional
        The class axis (default: the last).

    Returns
    -------
    ndarray
        Probabilities that sum to 1 along ``axis`` (up to rounding); same shape and dtype
        as ``x``.

    Raises
    ------
    ValueError
        If ``x`` is not real numeric data, has no dimension, or has no element along
        ``axis`` (an empty class axis); if ``axis`` is out of range.

    Notes
    -----
    Equivalent to ``torch.softmax`` and ``jax.nn.softmax``; ``scipy.special.softmax``.
    See :cite:t:`bishop2006pattern`, section 4.3.4.
    A row holding ``+inf`` gives its limit: all the probability on the ``+inf`` entries,
    shared equally among several (they are taken to grow together; PyTorch gives NaN, see
    ``deviations.md``); a ``-inf`` entry has probability 0.

    Examples
    --------
    >>> softmax([5.0, 4.0, 2.0]).round(4)
    array([0.7054, 0.2595, 0.0351])
    """
    x = _class_axis_array(x, axis)
    rows, moved = _rows(x, axis)
    out = _wide_or_shifted(rows, _softmax_wide, _softmax_rows)
    return np.moveaxis(nx.to_dtype(out, x.dtype).reshape(moved), -1, axis)


def log_softmax(x, axis=-1):
    r"""Log-softmax :math:`x_k - \log \sum_j e^{x_j}` along ``axis``.

    Evaluated as :math:`(x_k - m) - \operatorname{log1p}(s)` (two non-positive terms)
    so that the entry of a confident, correct class keeps its tiny magnitude instead
    of rounding to 0; as in :func:`logsumexp`, :math:`s` is compensated in rows
    dominated by their maximum.

    Parameters
    ----------
    x : array_like
        Scores (logits).
    axis : int, optional
        The class axis (default: the last).

    Returns
    -------
    ndarray
        Values in (-inf, 0]; same shape and dtype as ``x``.

    Raises
    ------
    ValueError
        If ``x`` is not real numeric data, has no dimension, or has no element along
        ``axis``; if ``axis`` is out of range.

    Notes
    -----
    Equivalent to ``torch.log_softmax`` and ``jax.nn.log_softmax``;
    ``scipy.special.log_softmax``. See :cite:t:`blanchard2021accurate`.
    A row holding ``+inf`` gives its limit: all the probability on the ``+inf`` entries,
    shared equally among several (they are taken to grow together; PyTorch gives NaN, see
    ``deviations.md``); a ``-inf`` entry has probability 0.

    Examples
    --------
    >>> log_softmax([5.0, 4.0, 2.0]).round(4).tolist()
    [-0.349, -1.349, -3.349]
    """
    x = _class_axis_array(x, axis)
    rows, moved = _rows(x, axis)
    out = _wide_or_shifted(rows, None, _log_softmax_rows)
    return np.moveaxis(nx.to_dtype(out, x.dtype).reshape(moved), -1, axis)
