"""Denoising diffusion (DDPM): the Gaussian posterior of the forward process and the
noise-prediction loss whose per-step weights make it the variational bound.

The forward process adds Gaussian noise in ``T`` steps with variances
``betas[t - 1]`` (:math:`\\beta_t`, ``t = 1..T``): :math:`q(x_t \\mid x_{t-1}) =
\\mathcal N(\\sqrt{1 - \\beta_t}\\, x_{t-1}, \\beta_t I)`, so that with
:math:`\\bar\\alpha_t = \\prod_{s \\le t} (1 - \\beta_s)`,
:math:`x_t = \\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1 - \\bar\\alpha_t}\\, \\epsilon`.
"""

from __future__ import annotations

import numpy as np

from ._checks import (
    as_array,
    as_float_array,
    check_choice,
    check_reduction,
    check_same_shape,
    describe,
    gradients_in_argument_dtypes,
    result_dtype,
)
from ._numerics import (
    CHUNK,
    chunks,
    cumulative_product_dd,
    dd_sqrt,
    halved_square_sums,
    quiet,
    to_dtype,
    two_sum,
)
from ._reduction import reduce_to, reduction_scale

__all__ = [
    "ddpm_posterior",
    "ddpm_elbo_weights",
    "ddpm_noise_loss",
    "ddpm_noise_loss_grad",
    "ddpm_noise_loss_value_and_grad",
]

WEIGHTINGS = ("elbo", "simple")


def _betas(betas) -> np.ndarray:
    b = as_float_array(betas, "betas")
    if b.ndim != 1 or b.size == 0:
        raise ValueError(f"betas must be a non-empty 1-D array (one per step); got {describe(b)}")
    bad = ~((b > 0) & (b < 1))
    if np.any(bad):
        raise ValueError(f"betas must lie in (0, 1); got {describe(b[bad][0])}")
    return b


def _schedule(b: np.ndarray):
    r"""``(beta, alpha_bar, one_minus_alpha_bar)``, the last two for t = 0..T, in float64.

    :math:`\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)` as a running product of
    double-doubles (each factor ``1 - beta`` exact as one): a float64 ``cumprod(1 - betas)``
    rounds each factor (``1 - 1e-4`` loses 4 digits of ``beta``) and a running sum of
    ``log1p(-beta)`` carries its rounding errors into the exponent (34 ULP of float64 at step
    925 of the linear schedule); and :math:`1 - \bar\alpha_t`, which cancels for the first
    steps (where it is about :math:`\beta_1`), is taken from the double-double. Both are
    within an ULP of float64 on every platform (no ``long double``); the formulas built on
    them round a few times more.
    """
    beta = b.astype(np.float64)
    f_hi, f_lo = two_sum(np.ones_like(beta), -beta)  # 1 - beta, exactly
    hi, lo = cumulative_product_dd(f_hi, f_lo)
    one_minus_hi, one_minus_lo = two_sum(np.ones_like(hi), -hi)
    alpha_bar = np.concatenate([[1.0], hi + lo])
    one_minus = np.concatenate([[0.0], one_minus_hi + (one_minus_lo - lo)])
    return beta, alpha_bar, one_minus


def _root_alpha_bar(beta: np.ndarray) -> np.ndarray:
    r""":math:`\sqrt{\bar\alpha_{t-1}}` for t = 1..T (float64), as the running product of the
    double-double roots of ``1 - beta``: :math:`\bar\alpha` itself leaves float64's range
    (below 2^-1074 after 1075 steps of beta = 1/2, subnormal with fewer digits before)
    where its root, about 2^-537, does not."""
    f_hi, f_lo = two_sum(np.ones_like(beta[:-1]), -beta[:-1])  # 1 - beta, exactly
    hi, lo = cumulative_product_dd(*dd_sqrt(f_hi, f_lo))
    return np.concatenate([[1.0], hi + lo])


@quiet
def ddpm_posterior(betas):
    r"""The Gaussian posterior :math:`q(x_{t-1} \mid x_t, x_0)` of the forward process.

    .. math::

        q(x_{t-1} \mid x_t, x_0) = \mathcal N\big(a_t x_0 + b_t x_t,\ \tilde\beta_t I\big),
        \quad a_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t},
        \quad b_t = \frac{\sqrt{1 - \beta_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t},
        \quad \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\,\beta_t,

    with :math:`\bar\alpha_0 = 1` (so at :math:`t = 1` the posterior is the point
    :math:`x_0`: :math:`a_1 = 1`, :math:`b_1 = \tilde\beta_1 = 0`).

    Parameters
    ----------
    betas : array_like
        The noise schedule :math:`\beta_1, \dots, \beta_T`, each in (0, 1), shape ``(T,)``.

    Returns
    -------
    tuple of ndarray
        ``(a, b, variance)``, each of shape ``(T,)`` and ``betas``' floating dtype; entry
        ``t - 1`` belongs to step ``t``.

    Raises
    ------
    ValueError
        If ``betas`` is not a non-empty 1-D array of numbers in (0, 1).

    Notes
    -----
    Computed in float64 from :math:`1 - \bar\alpha_t` and :math:`\sqrt{\bar\alpha_t}`
    formed as double-doubles, so that small betas (1e-4 and below) keep their digits, and
    :math:`a_t` stays accurate where :math:`\bar\alpha_t` underflows but its root does not;
    rounded once to ``betas``' dtype. See :cite:t:`ho2020denoising`, eq. (7).

    Examples
    --------
    >>> a, b, var = ddpm_posterior([0.1, 0.2])
    >>> [round(float(v), 6) for v in (a[1], b[1], var[1])]
    [0.677631, 0.319438, 0.071429]
    """
    beta = _betas(betas)
    dtype = result_dtype(beta)
    b64, _, one_minus = _schedule(beta)
    a = _root_alpha_bar(b64) * b64 / one_minus[1:]
    b = np.sqrt(1 - b64) * one_minus[:-1] / one_minus[1:]
    variance = one_minus[:-1] / one_minus[1:] * b64
    return tuple(to_dtype(v, dtype) for v in (a, b, variance))


@quiet
def ddpm_elbo_weights(betas):
    r"""The weights :math:`\lambda_t` that make the noise-prediction loss the variational bound.

    With the reverse model :math:`p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta,
    \sigma_t^2 I)` and the mean parametrised by a noise prediction,
    :math:`\mu_\theta = (x_t - \beta_t \epsilon_\theta / \sqrt{1 - \bar\alpha_t}) /
    \sqrt{1 - \beta_t}`, each term of the bound is

    .. math::

        \lambda_t \,\lVert \epsilon - \epsilon_\theta(x_t, t) \rVert^2 + c_t, \qquad
        \lambda_t = \frac{\beta_t^2}{2 \sigma_t^2 (1 - \beta_t)(1 - \bar\alpha_t)},

    with :math:`\sigma_t^2 = \tilde\beta_t` (the posterior variance) for :math:`t \ge 2`,
    where the constant :math:`c_t` is 0, so :math:`\lambda_t = \beta_t / (2 (1 - \beta_t)
    (1 - \bar\alpha_{t-1}))`; and :math:`\sigma_1^2 = \beta_1` for the Gaussian decoder
    :math:`p_\theta(x_0 \mid x_1)`, where :math:`\lambda_1 = 1 / (2 (1 - \beta_1))` and the
    constant is :math:`\frac12 \log(2 \pi \beta_1)` per dimension.

    Parameters
    ----------
    betas : array_like
        The noise schedule, shape ``(T,)``, each in (0, 1).

    Returns
    -------
    ndarray
        :math:`\lambda_1, \dots, \lambda_T`, shape ``(T,)``, ``betas``' floating dtype.

    Raises
    ------
    ValueError
        If ``betas`` is not a non-empty 1-D array of numbers in (0, 1).

    Notes
    -----
    The "simple" loss of :cite:t:`ho2020denoising` sets every :math:`\lambda_t` to 1 (and
    samples :math:`t` uniformly): it is no longer the bound, but a reweighting of it that
    puts relatively more weight on the noisy steps.

    Examples
    --------
    >>> [round(float(w), 6) for w in ddpm_elbo_weights([0.1, 0.2])]
    [0.555556, 1.25]
    """
    beta = _betas(betas)
    dtype = result_dtype(beta)
    b64, _, one_minus = _schedule(beta)
    weights = b64 / (2 * (1 - b64) * one_minus[:-1])
    weights[0] = 1 / (2 * (1 - b64[0]))
    return to_dtype(weights, dtype)


def _noise_args(noise_pred, noise, t, betas, weighting, reduction):
    reduction = check_reduction(reduction)
    check_choice(weighting, "weighting", WEIGHTINGS)
    pred = as_float_array(noise_pred, "noise_pred")
    target = as_float_array(noise, "noise")
    check_same_shape(pred, target, "noise_pred", "noise")
    if pred.ndim < 1:
        raise ValueError(
            f"noise_pred must have a batch axis first, shape (N, ...); got shape {pred.shape}"
        )
    beta = _betas(betas)
    steps = as_array(t, "t")
    if steps.dtype.kind not in "iu" or steps.shape != pred.shape[:1]:
        raise ValueError(
            f"t must be an integer array of shape ({pred.shape[0]},) (one step per sample); "
            f"got {describe(steps)}"
        )
    bad = (steps < 1) | (steps > beta.size)
    if np.any(bad):
        raise ValueError(f"t must hold steps in [1, {beta.size}]; got {steps[bad][0]}")
    dtype = result_dtype(pred, target, beta)  # NumPy's promotion of the floating arguments
    if weighting == "elbo":
        weight = ddpm_elbo_weights(beta.astype(np.float64))[steps - 1]
    else:
        weight = np.ones(steps.shape)
    return pred, target, weight, dtype, reduction


@quiet
def ddpm_noise_loss(noise_pred, noise, t, betas, weighting="elbo", reduction="mean"):
    r"""The DDPM noise-prediction loss, weighted to be the variational bound or "simple".

    Per sample :math:`i` at step :math:`t_i`,

    .. math::

        \ell_i = w_{t_i} \sum_{d} \big(\hat\epsilon_{i,d} - \epsilon_{i,d}\big)^2,

    with :math:`w_t = \lambda_t` of :func:`ddpm_elbo_weights` (``"elbo"``: then
    :math:`T\,\mathbb E_t[\ell]` plus the constants is the negative variational bound,
    up to its prior term) or :math:`w_t = 1` (``"simple"``, the loss of
    :cite:t:`ho2020denoising`).

    Parameters
    ----------
    noise_pred, noise : array_like
        :math:`\epsilon_\theta(x_t, t)` and the noise :math:`\epsilon` that made
        :math:`x_t`, the same shape ``(N, ...)``; the sum runs over all axes but the first.
    t : array_like of int
        Shape ``(N,)``: each sample's step, in ``[1, T]``.
    betas : array_like
        The noise schedule, shape ``(T,)``.
    weighting : {"elbo", "simple"}, optional
    reduction : {"mean", "sum", "none"}, optional
        Over the ``N`` samples; ``"none"`` returns the ``N`` losses.

    Returns
    -------
    ndarray or numpy scalar
        In NumPy's promotion of the floating dtypes of ``noise_pred``, ``noise`` and ``betas``,
        as every loss (float16 arrays give float16; float16 predictions with float64 betas
        give float64).

    Raises
    ------
    ValueError
        If the shapes differ or lack a batch axis, ``t`` is not an integer array of one
        step in ``[1, T]`` per sample, ``betas`` is not a valid schedule, or ``weighting``
        or ``reduction`` is unknown.

    Notes
    -----
    With ``weighting="simple"`` and ``reduction="mean"`` this is
    :math:`D` times PyTorch's ``F.mse_loss(noise_pred, noise)`` for ``D`` features per
    sample (the conformance test
    ``test_claim_ddpm_simple_mean_is_features_times_mse_loss``). Computed in float64 for
    float16 and float32 results, rounded once; a float32 result's residuals are formed in
    float32 (one rounding each, for speed), so a float32 loss is within 2.5 ULP and its
    gradient within 1.5 (a float64 result of float32 data, with float64 ``betas``, takes
    exact residuals). The gradient has ``noise_pred``'s dtype. In
    float64 a sample whose residual (1e308 - (-1e308)) or squares (beyond 1.3e154)
    overflow is redone from the halved residuals, so that a weighted sum or a gradient
    :math:`2 w r / N` is infinite only if its exact value is; a mean of samples whose
    weighted sums overflow is infinite. A weight below 2.2e-308 (a beta near 1e-308) is
    subnormal and keeps only its absolute accuracy.

    Examples
    --------
    >>> import numpy as np
    >>> float(ddpm_noise_loss(np.array([[0.5]]), np.array([[0.0]]), [2], [0.1, 0.2]))
    0.3125
    """
    return _noise_loss(noise_pred, noise, t, betas, weighting, reduction, grad=False)[0]


@gradients_in_argument_dtypes("noise_pred")
@quiet
def ddpm_noise_loss_grad(noise_pred, noise, t, betas, weighting="elbo", reduction="mean"):
    r"""Gradient of :func:`ddpm_noise_loss` w.r.t. ``noise_pred``:
    :math:`2 w_{t_i} (\hat\epsilon_i - \epsilon_i)`, divided by ``N`` for the mean.

    Parameters
    ----------
    noise_pred, noise, t, betas, weighting, reduction
        As for :func:`ddpm_noise_loss`.

    Returns
    -------
    ndarray
        Shape and dtype of ``noise_pred``.

    Raises
    ------
    ValueError
        As :func:`ddpm_noise_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> ddpm_noise_loss_grad(np.array([[0.5]]), np.array([[0.0]]), [2], [0.1, 0.2]).tolist()
    [[1.25]]
    """
    return _noise_loss(noise_pred, noise, t, betas, weighting, reduction, value=False)[1]


@gradients_in_argument_dtypes("noise_pred")
@quiet
def ddpm_noise_loss_value_and_grad(noise_pred, noise, t, betas, weighting="elbo", reduction="mean"):
    r"""``ddpm_noise_loss`` and ``ddpm_noise_loss_grad`` in one pass: the loss and its gradient.

    The residual and the per-step weights are computed once and feed both.

    Parameters
    ----------
    noise_pred, noise, t, betas, weighting, reduction
        Same as :func:`ddpm_noise_loss`.

    Returns
    -------
    tuple
        ``(loss, d_noise_pred)``: bit for bit ``ddpm_noise_loss(...)`` and
        ``ddpm_noise_loss_grad(...)``.

    Raises
    ------
    ValueError
        As :func:`ddpm_noise_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> args = (np.array([[0.5]]), np.array([[0.0]]), [2], [0.1, 0.2])
    >>> loss, grad = ddpm_noise_loss_value_and_grad(*args)
    >>> bool(loss == ddpm_noise_loss(*args)), grad.tolist()
    (True, [[1.25]])
    """
    return _noise_loss(noise_pred, noise, t, betas, weighting, reduction)


def _noise_loss(noise_pred, noise, t, betas, weighting, reduction, *, value=True, grad=True):
    """``(loss or None, d_noise_pred or None)`` of :func:`ddpm_noise_loss`, one pass.

    Blocks of rows of cache size: each block's residual is formed once in the working
    dtype (float64 for float16 and float32 results: a float16 residual is exact there, a
    float32 one is rounded once in float32, and the squares sum without losing a digit of the
    result; float64 for a float64 result of narrower data, exactly) and feeds
    the block's per-sample sums of squares and its gradient rows, written into the
    gradient's own dtype. The full-size arrays are the gradient and nothing else.
    """
    pred, target, weight, dtype, reduction = _noise_args(
        noise_pred, noise, t, betas, weighting, reduction
    )
    work = np.dtype(np.float64) if dtype.itemsize < 8 else dtype
    n = len(pred)
    features = int(np.prod(pred.shape[1:]))
    pred2, target2 = (np.reshape(a, (n, features)) for a in (pred, target))
    w = weight.astype(work)
    per = np.empty(n, work) if value else None
    g = np.empty(pred2.shape, pred.dtype) if grad else None
    if grad:
        # d loss / d pred = 2 w r times the mean's 1/N: one factor per row, so a gradient
        # that is finite is not lost to an overflow of 2 w r
        mean = reduction == "mean"
        coef = 2 * w * reduction_scale(n, reduction, np.float64) if mean else 2 * w
        coef = coef.astype(work)[:, None]

    # rows of about CHUNK elements through two buffers reused from block to block (fresh
    # block-sized arrays cost page faults that took longer than the arithmetic)
    step = max(1, CHUNK // max(1, features))
    rb, sb = (np.empty(min(n, step) * features, work) for _ in range(2))
    # the residuals are formed in float64, exactly for float16 and float32 data (NumPy's
    # float16 loop would round them, and slowly), except for a float32 result: its float32
    # data are subtracted in float32, one rounding of the residual (about 40% faster than a
    # float64 residual, at most one ULP more in the loss). A float64 result of float32 data
    # (float64 betas) takes the exact residual: a float32 one was 4e8 ULP off.
    residual = np.dtype(np.float32) if dtype == np.float32 else work
    for rows in chunks(n, step):
        r = rb[: (rows.stop - rows.start) * features].reshape(rows.stop - rows.start, features)
        with np.errstate(over="raise"):  # (float64 data only can overflow; the flag is free)
            try:
                np.subtract(pred2[rows], target2[rows], out=r, dtype=residual)
                overflowed = False
            except FloatingPointError:
                overflowed = True
        if overflowed:
            np.subtract(pred2[rows], target2[rows], out=r, dtype=residual)
        if value:
            sq = np.multiply(r, r, out=sb[: r.size].reshape(r.shape))
            np.sum(sq, axis=-1, out=per[rows])
        if grad:
            np.multiply(r, coef[rows], out=g[rows])  # rounded once to the gradient's dtype
            if overflowed:
                _halved_slopes(g[rows], r, pred2[rows], target2[rows], coef[rows])
    loss = None
    if value:
        per *= w
        if not np.isfinite(per).all():
            _halved_sums(per, pred2, target2, w)
        loss = reduce_to(per, reduction, dtype)
    return loss, None if g is None else g.reshape(pred.shape)


def _halved_slopes(g, r, pred, target, coef):
    """Redo the entries of ``g = r coef`` whose float64 residual ``r`` overflowed (1e308 -
    (-1e308)) from the halves: ``(pred / 2 - target / 2) (2 coef)``, finite where the
    exact gradient is (the mean's 1/N or a weight below 1 brings it back)."""
    where = np.nonzero(np.isinf(r) & np.isfinite(pred) & np.isfinite(target))
    half = pred[where] / 2 - target[where] / 2
    g[where] = half * (2 * np.broadcast_to(coef, r.shape)[where])


def _halved_sums(per, pred, target, w):
    """Redo the samples whose float64 ``per = w sum(r^2)`` is not finite while their data
    are: the squares (r beyond 1.3e154) or ``r`` itself overflowed though the weighted sum
    (a weight below 1) may not (:func:`halved_square_sums`)."""
    rows = np.flatnonzero(~np.isfinite(per))
    rows = rows[np.isfinite(pred[rows]).all(axis=-1) & np.isfinite(target[rows]).all(axis=-1)]
    if rows.size:
        per[rows] = halved_square_sums(pred[rows], target[rows], w[rows])
