"""Regression losses: Gaussian, Laplace and robust likelihoods of a residual.

Every loss here is a function of the residual :math:`r = x - y` (``input``
minus ``target``, which must have the same shape), possibly with a predicted
variance or scale. The two likelihood losses :func:`gaussian_nll_loss` and
:func:`laplace_nll_loss` floor that variance or scale at ``eps`` as PyTorch
does, and their gradients follow PyTorch's autograd through that floor.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import (
    as_float_array,
    check_nonnegative,
    check_positive_scalar,
    check_reduction,
    check_same_shape,
    check_scale_shape,
    float_arrays,
    grad_dtype,
    reduce,
    reduction_scale,
    result_dtype,
    sum_to_shape,
)

__all__ = [
    "mse_loss",
    "mse_loss_grad",
    "l1_loss",
    "l1_loss_grad",
    "huber_loss",
    "huber_loss_grad",
    "smooth_l1_loss",
    "smooth_l1_loss_grad",
    "log_cosh_loss",
    "log_cosh_loss_grad",
    "gaussian_nll_loss",
    "gaussian_nll_loss_grad",
    "laplace_nll_loss",
    "laplace_nll_loss_grad",
]

_LOG_2PI = math.log(2 * math.pi)
_LOG_2 = math.log(2.0)


def _floats(names_values):
    """The arguments as arrays of their promoted floating dtype (Python numbers are weak)."""
    for name, value in names_values.items():
        as_float_array(value, name)  # the ValueError for non-numeric data comes first
    return float_arrays(names_values, result_dtype(*names_values.values()))


def _residual(input, target, reduction):
    """Checked residual ``input - target`` in the promoted dtype."""
    check_reduction(reduction)
    x, y = _floats({"input": input, "target": target})
    check_same_shape(x, y, "input", "target")
    return x - y


def _reduced_grad(grad, arg, shape, reduction):
    """Gradient of the reduced loss w.r.t. ``arg`` (of ``shape``) from the per-element one.

    ``grad`` has the loss's shape: scale it by the reduction, sum it over the
    elements ``arg`` was broadcast to, and give it ``arg``'s floating dtype.
    """
    grad = grad * reduction_scale(grad.size, reduction, grad.dtype)
    return np.asarray(sum_to_shape(grad, shape), dtype=grad_dtype(arg, grad.dtype))


def _likelihood_args(input, target, scale, name, eps, reduction):
    """Checked residual and the variance or scale floored at ``eps`` (broadcastable)."""
    check_reduction(reduction)
    eps = check_positive_scalar(eps, "eps", allow_zero=True)
    x, y, s = _floats({"input": input, "target": target, name: scale})
    check_same_shape(x, y, "input", "target")
    check_scale_shape(s, x.shape, name)
    check_nonnegative(s, name)
    # np.maximum propagates NaN, as torch.clamp does.
    return x - y, np.maximum(s, s.dtype.type(eps)), s.shape


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
    r = _residual(input, target, reduction)
    return reduce(r * r, reduction)


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

    Notes
    -----
    What ``torch.autograd`` gives for ``mse_loss``. See :cite:t:`bishop2006pattern`.

    Examples
    --------
    >>> mse_loss_grad([1.0, 2.0, 3.0], [1.5, 2.0, 1.0], reduction="sum").tolist()
    [-1.0, 0.0, 4.0]
    """
    r = _residual(input, target, reduction)
    return _reduced_grad(2 * r, input, r.shape, reduction)


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

    Notes
    -----
    Equivalent to ``torch.nn.functional.l1_loss``; ``optax`` has no direct
    equivalent (``jnp.abs(x - y)``). See :cite:t:`hastie2009elements`, section 10.6.

    Examples
    --------
    >>> float(l1_loss([1.0, 2.0, 3.0], [1.5, 2.0, 1.0]))
    0.8333333333333334
    """
    r = _residual(input, target, reduction)
    return reduce(np.abs(r), reduction)


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

    Notes
    -----
    What ``torch.autograd`` gives for ``l1_loss``. See :cite:t:`hastie2009elements`.

    Examples
    --------
    >>> l1_loss_grad([1.0, 2.0, 3.0], [1.5, 2.0, 1.0], reduction="sum").tolist()
    [-1.0, 0.0, 1.0]
    """
    r = _residual(input, target, reduction)
    return _reduced_grad(np.sign(r), input, r.shape, reduction)


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
    delta = check_positive_scalar(delta, "delta")
    r = _residual(input, target, reduction)
    a = np.abs(r)
    # Each branch sees only its own range: no overflow where it is not used.
    near = np.where(a < delta, a, 0)
    far = np.maximum(a, delta)
    loss = np.where(a < delta, 0.5 * near * near, delta * (far - 0.5 * delta))
    return reduce(loss, reduction)


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

    Notes
    -----
    What ``torch.autograd`` gives for ``huber_loss``. See :cite:t:`huber1964robust`.

    Examples
    --------
    >>> huber_loss_grad([0.5, 3.0, -4.0], [0.0, 0.0, 0.0], reduction="sum").tolist()
    [0.5, 1.0, -1.0]
    """
    delta = check_positive_scalar(delta, "delta")
    r = _residual(input, target, reduction)
    return _reduced_grad(np.clip(r, -delta, delta), input, r.shape, reduction)


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
    beta = check_positive_scalar(beta, "beta", allow_zero=True)
    r = _residual(input, target, reduction)
    a = np.abs(r)
    if beta == 0:
        return reduce(a, reduction)
    # r * (r / beta): r * r would underflow for tiny r and beta.
    rc = np.minimum(a, beta)
    loss = np.where(a < beta, 0.5 * rc * (rc / beta), a - 0.5 * beta)
    return reduce(loss, reduction)


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

    Notes
    -----
    What ``torch.autograd`` gives for ``smooth_l1_loss``. See :cite:t:`girshick2015fast`.

    Examples
    --------
    >>> smooth_l1_loss_grad([0.5, 3.0], [0.0, 0.0], beta=2.0, reduction="sum").tolist()
    [0.25, 1.0]
    """
    beta = check_positive_scalar(beta, "beta", allow_zero=True)
    r = _residual(input, target, reduction)
    grad = np.sign(r) if beta == 0 else np.clip(r, -beta, beta) / beta
    return _reduced_grad(grad, input, r.shape, reduction)


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
    r = _residual(input, target, reduction)
    a = np.abs(r)
    # Each branch sees only its own range, so neither overflows where it is not used.
    s = np.sinh(0.5 * np.minimum(a, 1.0))
    near = np.log1p(2 * s * s)
    b = np.maximum(a, 1.0)
    far = (b - _LOG_2) + np.log1p(np.exp(-2 * b))
    return reduce(np.where(a < 1, near, far), reduction)


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

    Notes
    -----
    What ``jax.grad`` gives for ``optax.log_cosh``. See :cite:t:`saleh2022statistical`.

    Examples
    --------
    >>> log_cosh_loss_grad([0.0, 1.0, 1000.0], [0.0, 0.0, 0.0], reduction="sum").round(6).tolist()
    [0.0, 0.761594, 1.0]
    """
    r = _residual(input, target, reduction)
    return _reduced_grad(np.tanh(r), input, r.shape, reduction)


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
        that shape with a last dimension of 1 (one variance per row), or a
        scalar. A negative entry is an error.
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

    Notes
    -----
    Equivalent to ``torch.nn.functional.gaussian_nll_loss``, with one
    difference: PyTorch also accepts a ``var`` one dimension short of
    ``input`` and unsqueezes it; here pass ``var[..., None]`` (a NumPy array of
    that shape would broadcast along the wrong axis, so it is refused).
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
    r, v, _ = _likelihood_args(input, target, var, "var", eps, reduction)
    # r * (r / v) rather than r**2 / v: no overflow of r**2 when r**2 / v is finite.
    loss = 0.5 * (np.log(v) + r * (r / v))
    if full:
        loss = loss + 0.5 * _LOG_2PI
    return reduce(loss, reduction)


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
    through the clone unchanged (a straight-through floor). A ``var`` of shape
    ``(..., 1)`` or a scalar gets the gradient summed over the elements it was
    broadcast to. Divided by the number of elements for ``reduction="mean"``.

    Parameters
    ----------
    input, target, var, full, eps, reduction
        As in :func:`gaussian_nll_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_input, d_var)``, each with its argument's shape and floating dtype
        (a Python-number ``var`` gets the dtype of the loss).

    Notes
    -----
    See :cite:t:`nix1994estimating`.

    Examples
    --------
    >>> g_input, g_var = gaussian_nll_loss_grad([0.0, 1.0], [1.0, 1.0], 0.5, reduction="sum")
    >>> g_input.tolist(), float(g_var)
    ([-2.0, 0.0], 0.0)
    """
    r, v, var_shape = _likelihood_args(input, target, var, "var", eps, reduction)
    q = r / v
    return (
        _reduced_grad(q, input, r.shape, reduction),
        _reduced_grad(0.5 * (1 / v - q * q), var, var_shape, reduction),
    )


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
        Predicted scales :math:`b \ge 0`: ``input``'s shape, that shape with a
        last dimension of 1, or a scalar (the shapes ``var`` takes in
        :func:`gaussian_nll_loss`). A negative entry is an error.
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
    r, b, _ = _likelihood_args(input, target, scale, "scale", eps, reduction)
    loss = np.log(b) + np.abs(r) / b
    if full:
        loss = loss + _LOG_2
    return reduce(loss, reduction)


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
    the same way. A scale of shape ``(..., 1)`` or a scalar gets the gradient
    summed over the elements it was broadcast to. Divided by the number of
    elements for ``reduction="mean"``.

    Parameters
    ----------
    input, target, scale, full, eps, reduction
        As in :func:`laplace_nll_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_input, d_scale)``, each with its argument's shape and floating dtype.

    Notes
    -----
    See :cite:t:`murphy2022probabilistic`.

    Examples
    --------
    >>> g_input, g_scale = laplace_nll_loss_grad([0.0, 3.0], [1.0, 1.0], 2.0, reduction="sum")
    >>> g_input.tolist(), float(g_scale)
    ([-0.5, 0.5], 0.25)
    """
    r, b, scale_shape = _likelihood_args(input, target, scale, "scale", eps, reduction)
    return (
        _reduced_grad(np.sign(r) / b, input, r.shape, reduction),
        _reduced_grad((1 - np.abs(r) / b) / b, scale, scale_shape, reduction),
    )
