"""Metric-learning losses on embeddings.

Embeddings lie along the last axis: an input of shape ``(..., D)`` holds one
embedding per index of its batch shape ``(...)``, and the per-sample losses
(``reduction="none"``) have that batch shape.
"""

from __future__ import annotations

import numpy as np

from ._checks import (
    check_binary_labels,
    check_positive_scalar,
    check_reduction,
    check_same_shape,
    check_scalar_at_least,
    float_arrays,
    reduce,
    reduction_scale,
    result_dtype,
)
from .activations import log_softmax, softmax

__all__ = [
    "contrastive_loss",
    "contrastive_loss_grad",
    "triplet_margin_loss",
    "triplet_margin_loss_grad",
    "nt_xent_loss",
    "nt_xent_loss_grad",
]

# F.normalize's default floor of the norm
NORMALIZE_EPS = 1e-12


def _embeddings(named: dict, dtype=None):
    """Same-shape arrays of embeddings with at least one (the feature) axis."""
    arrays = float_arrays(named, dtype)
    names = list(named)
    if arrays[0].ndim == 0:
        raise ValueError(
            f"{names[0]} must have a feature axis (the last); got shape {arrays[0].shape}"
        )
    for name, array in zip(names[1:], arrays[1:], strict=True):
        check_same_shape(arrays[0], array, names[0], name)
    return arrays


def _contrastive_args(x1, x2, target, margin, reduction):
    reduction = check_reduction(reduction)
    margin = check_positive_scalar(margin, "margin", allow_zero=True)
    target = np.asarray(target)
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
    target = target.astype(dtype)
    check_binary_labels(target, "target")
    return x1, x2, target, margin, reduction


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

    Notes
    -----
    :cite:t:`hadsell2006dimensionality` write :math:`\frac12` in front of both terms and
    use :math:`Y = 0` for similar pairs; this is the common modern form without the
    halves. PyTorch has no built-in; it is usually written
    ``y * d.pow(2) + (1 - y) * F.relu(margin - d).pow(2)`` with
    ``d = F.pairwise_distance(x1, x2, eps=0)``.

    Examples
    --------
    >>> import numpy as np
    >>> x1 = np.array([[0.0, 0.0], [0.0, 0.0]])
    >>> x2 = np.array([[0.3, 0.4], [0.3, 0.4]])
    >>> contrastive_loss(x1, x2, [1, 0], reduction="none").round(6).tolist()
    [0.25, 0.25]
    """
    x1, x2, target, margin, reduction = _contrastive_args(x1, x2, target, margin, reduction)
    diff = x1 - x2
    squared = np.sum(diff * diff, axis=-1)
    hinge = np.maximum(margin - np.sqrt(squared), 0)
    return reduce(np.asarray(target * squared + (1 - target) * hinge * hinge), reduction)


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

    Examples
    --------
    >>> d1, d2 = contrastive_loss_grad([[0.0, 0.0]], [[0.3, 0.4]], [0])
    >>> d1.round(6).tolist(), d2.round(6).tolist()
    ([[0.6, 0.8]], [[-0.6, -0.8]])
    """
    x1, x2, target, margin, reduction = _contrastive_args(x1, x2, target, margin, reduction)
    diff = x1 - x2
    d = np.sqrt(np.sum(diff * diff, axis=-1))
    hinge = np.maximum(margin - d, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = np.where(d == 0, 0, hinge / d)
    coefficient = (
        2 * (target - (1 - target) * pull) * reduction_scale(target.size, reduction, x1.dtype)
    )
    g = coefficient[..., None] * diff
    return g, -g


def _pnorm(v, p):
    """:math:`\\lVert v \\rVert_p` over the last axis; scaled by the largest entry for p > 2."""
    a = np.abs(v)
    if p == 1:
        return np.sum(a, axis=-1)
    if p == 2:
        return np.sqrt(np.sum(a * a, axis=-1))
    top = np.max(a, axis=-1, keepdims=True, initial=0)
    safe = np.where((top > 0) & np.isfinite(top), top, 1)
    scaled = np.sum((a / safe) ** p, axis=-1, keepdims=True) ** (1 / p)
    return np.where(np.isinf(top), top, safe * scaled)[..., 0]


def _pnorm_grad(v, norm, p):
    """d||v||_p / dv = sign(v) (|v| / ||v||)^(p-1); 0 at v = 0 (PyTorch's norm backward)."""
    n = norm[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.sign(v) * (np.abs(v) / np.where(n == 0, 1, n)) ** (p - 1)
    return np.where(n == 0, 0, g)


def _triplet_args(anchor, positive, negative, margin, p, eps, squared, reduction):
    reduction = check_reduction(reduction)
    margin = check_positive_scalar(margin, "margin", allow_zero=True)
    p = check_scalar_at_least(p, "p", 1.0)
    eps = check_positive_scalar(eps, "eps", allow_zero=True)
    if squared and p != 2:
        raise ValueError(f"p must be 2 with squared=True (the squared Euclidean form); got {p}")
    a, pos, neg = _embeddings({"anchor": anchor, "positive": positive, "negative": negative})
    return a, pos, neg, margin, p, eps, reduction


def _triplet_parts(a, pos, neg, p, eps, swap, squared):
    """The differences, distances and distance gradients (w.r.t. the differences)."""
    shift = 0 if squared else eps
    diffs = {"ap": a - pos + shift, "an": a - neg + shift, "pn": pos - neg + shift}
    if not swap:
        del diffs["pn"]
    dist, grad = {}, {}
    for key, v in diffs.items():
        if squared:
            dist[key] = np.sum(v * v, axis=-1)
            grad[key] = 2 * v
        else:
            dist[key] = _pnorm(v, p)
            grad[key] = _pnorm_grad(v, dist[key], p)
    return dist, grad


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

    Notes
    -----
    Same as ``torch.nn.functional.triplet_margin_loss(anchor, positive, negative,
    margin, p, eps, swap, reduction=...)`` (``squared=False``). The FaceNet form
    has no PyTorch built-in: ``F.relu((a - p).pow(2).sum(-1) - (a - n).pow(2).sum(-1)
    + margin)``. See :cite:t:`schroff2015facenet`.

    Examples
    --------
    >>> a, p, n = [[0.0, 0.0]], [[0.3, 0.4]], [[0.6, 0.8]]
    >>> float(round(triplet_margin_loss(a, p, n, eps=0.0), 6))
    0.5
    >>> float(round(triplet_margin_loss(a, p, n, squared=True), 6))
    0.25
    """
    a, pos, neg, margin, p, eps, reduction = _triplet_args(
        anchor, positive, negative, margin, p, eps, squared, reduction
    )
    dist, _ = _triplet_parts(a, pos, neg, p, eps, swap, squared)
    negative_dist = np.minimum(dist["an"], dist["pn"]) if swap else dist["an"]
    return reduce(np.asarray(np.maximum(dist["ap"] - negative_dist + margin, 0)), reduction)


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
    :math:`d(a, n) = d(p, n)` splits the gradient in halves (``minimum``'s backward).

    Parameters
    ----------
    anchor, positive, negative, margin, p, eps, swap, squared, reduction
        As for :func:`triplet_margin_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_anchor, d_positive, d_negative)``, each of ``anchor``'s shape and dtype.

    Examples
    --------
    >>> da, dp, dn = triplet_margin_loss_grad([[0.0, 0.0]], [[0.3, 0.4]], [[0.6, 0.8]], eps=0.0)
    >>> da.round(6).tolist(), dp.round(6).tolist(), dn.round(6).tolist()
    ([[0.0, 0.0]], [[0.6, 0.8]], [[-0.6, -0.8]])
    """
    a, pos, neg, margin, p, eps, reduction = _triplet_args(
        anchor, positive, negative, margin, p, eps, squared, reduction
    )
    dist, u = _triplet_parts(a, pos, neg, p, eps, swap, squared)
    an = dist["an"]
    # minimum's backward: the smaller distance takes the gradient, a tie splits it
    pn = dist["pn"] if swap else np.full_like(an, np.inf)
    w_an = np.where(an == pn, 0.5, an < pn).astype(a.dtype)[..., None]
    w_pn = np.where(an == pn, 0.5, pn < an).astype(a.dtype)[..., None]
    u_pn = u["pn"] if swap else np.zeros_like(a)
    active = dist["ap"] - np.minimum(an, pn) + margin >= 0
    s = (active * reduction_scale(active.size, reduction, a.dtype)).astype(a.dtype)[..., None]
    d_anchor = s * (u["ap"] - w_an * u["an"])
    d_positive = -s * (u["ap"] + w_pn * u_pn)
    d_negative = s * (w_an * u["an"] + w_pn * u_pn)
    return tuple(g.astype(a.dtype, copy=False) for g in (d_anchor, d_positive, d_negative))


def _nt_xent_args(z1, z2, temperature, reduction):
    reduction = check_reduction(reduction)
    temperature = check_positive_scalar(temperature, "temperature")
    z1, z2 = _embeddings({"z1": z1, "z2": z2})
    if z1.ndim != 2:
        raise ValueError(f"z1 must have shape (N, D); got shape {z1.shape}")
    return z1, z2, temperature, reduction


def _nt_xent_logits(z1, z2, temperature):
    """Normalised views, their norms and the logits without the diagonal, (2N, 2N - 1).

    Row i holds s_ij for j != i in order, so the other view i + N (i < N) sits in
    column i + N - 1 and the other view i - N (i >= N) in column i - N.
    """
    z = np.concatenate([z1, z2], axis=0)
    norm = np.sqrt(np.sum(z * z, axis=-1, keepdims=True))
    denominator = np.maximum(norm, NORMALIZE_EPS)
    h = z / denominator
    m = z.shape[0]
    logits = ((h @ h.T) / temperature)[~np.eye(m, dtype=bool)].reshape(m, m - 1)
    return z, h, norm, denominator, logits


def _positive_columns(n):
    """Column of the other view in each row of the logits without the diagonal."""
    return np.concatenate([np.arange(n - 1, 2 * n - 1), np.arange(n)])


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

    Notes
    -----
    Normalisation as ``torch.nn.functional.normalize`` (the norm is floored at
    1e-12, so a zero embedding gives zero similarities instead of NaN). In PyTorch
    it is usually written ``F.cross_entropy(sim, labels)`` with ``sim`` the masked
    similarity matrix; the lightly / pytorch-metric-learning ``NTXentLoss`` are the
    same loss. See :cite:t:`chen2020simple`.

    Examples
    --------
    >>> import numpy as np
    >>> z1 = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> z2 = np.array([[2.0, 0.1], [0.1, 3.0]])
    >>> float(round(nt_xent_loss(z1, z2), 6))
    0.258634
    """
    z1, z2, temperature, reduction = _nt_xent_args(z1, z2, temperature, reduction)
    n = z1.shape[0]
    *_, logits = _nt_xent_logits(z1, z2, temperature)
    losses = -log_softmax(logits)[np.arange(2 * n), _positive_columns(n)]
    return reduce(np.asarray(losses), reduction)


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

    Examples
    --------
    >>> d1, d2 = nt_xent_loss_grad([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.1], [0.1, 3.0]])
    >>> d1.round(4).tolist()
    [[0.0, 0.2063], [0.2134, 0.0]]
    """
    z1, z2, temperature, reduction = _nt_xent_args(z1, z2, temperature, reduction)
    n = z1.shape[0]
    z, h, norm, denominator, logits = _nt_xent_logits(z1, z2, temperature)
    off_diagonal = softmax(logits)
    off_diagonal[np.arange(2 * n), _positive_columns(n)] -= 1
    g = np.zeros((2 * n, 2 * n), dtype=z.dtype)
    g[~np.eye(2 * n, dtype=bool)] = off_diagonal.ravel()
    g = g * reduction_scale(2 * n, reduction, z.dtype)
    d_h = (g + g.T) @ h / temperature
    radial = np.sum(h * d_h, axis=-1, keepdims=True)
    # above the floor the norm's gradient removes the radial part; at the floor it is 0
    d_z = np.where(norm >= NORMALIZE_EPS, d_h - h * radial, d_h) / denominator
    d_z = d_z.astype(z.dtype, copy=False)
    return d_z[:n], d_z[n:]
