"""Preference losses: a Bernoulli likelihood of which of two responses is preferred.

Both losses are elementwise over a batch of comparisons: every array argument has
the batch's shape (no broadcasting), and ``reduction="none"`` returns one loss per
comparison. The margin of a comparison is a difference of differences (of scores, or
of log-probability ratios), which cancels; it is formed exactly, as a double-double
number in float64 for every input dtype, before the log-sigmoid sees it, and the
result is rounded once to the input's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _numerics as nx
from ._checks import (
    check_positive_scalar,
    check_reduction,
    check_same_shape,
    check_unit_interval_scalar,
    float_arrays,
)
from ._reduction import reduce_to

__all__ = [
    "bradley_terry_loss",
    "bradley_terry_loss_grad",
    "bradley_terry_loss_value_and_grad",
    "dpo_loss",
    "dpo_loss_grad",
    "dpo_loss_value_and_grad",
]


@dataclass(frozen=True)
class _Margins:
    """The checked comparison margins ``z = hi + lo`` (float64, ``|lo| <= ulp(hi) / 2``)."""

    hi: np.ndarray
    lo: np.ndarray
    beta: float  # dz / d(policy log-ratio difference); 1 for Bradley-Terry
    smoothing: float  # the probability that a label is flipped (0 for Bradley-Terry)
    reduction: str
    shape: tuple
    dtype: np.dtype  # the result dtype


def _exact_difference(a, b):
    """``a - b`` as ``(d, err)`` with ``d + err`` exact (0 error where ``d`` is not finite)."""
    d, err = nx.two_diff(a, b)
    return d, (np.zeros_like(d) if err is None else err)


@nx.quiet
def _margins(named: dict, beta: float, smoothing: float, reduction) -> _Margins:
    """``beta ((a - b) - (c - d))`` (or ``a - b``) of the named arrays, in double-double."""
    reduction = check_reduction(reduction)
    arrays = float_arrays(named)
    names = list(named)
    for name, array in zip(names[1:], arrays[1:], strict=True):
        check_same_shape(arrays[0], array, names[0], name)
    dtype = arrays[0].dtype
    wide = [a.astype(np.float64) for a in arrays]  # exact
    hi, lo = _exact_difference(wide[0], wide[1])
    if len(wide) == 4:
        other, other_lo = _exact_difference(wide[2], wide[3])
        hi, err = nx.two_sum(hi, -other)
        lo = np.where(np.isfinite(hi), (lo - other_lo) + np.nan_to_num(err), 0)
    if beta != 1:
        hi, err = nx.two_prod(beta, hi)
        lo = np.where(np.isfinite(hi) & (np.abs(hi) < 1e300), err + beta * lo, 0)
    # renormalize: |lo| at most half an ULP of hi
    hi, err = nx.two_sum(hi, lo)
    lo = np.where(np.isfinite(hi), err, 0)
    return _Margins(hi, lo, beta, smoothing, reduction, arrays[0].shape, np.dtype(dtype))


@nx.quiet
def _loss_and_grad(m: _Margins, value=True, grad=True):
    """``(reduced loss or None, gradients or None)`` of the comparisons' margins ``m``.

    The loss per comparison is ``-(1 - eps) log sigma(z) - eps log sigma(-z)`` (float64).
    To first order in ``lo``: ``softplus(-z) = softplus(-hi) - sigma(-hi) lo`` and
    ``softplus(z) = softplus(hi) + sigma(hi) lo``; the neglected term is below
    ``lo^2 / 8``, far below an ULP of either. The gradients are ``(d_first, d_second)``
    with ``d_first = beta dz`` of the reduced loss, ``eps sigma(z) - (1 - eps) sigma(-z)``
    per comparison, and ``d_second = -d_first``. One ``exp`` feeds both.
    """
    (up, down), (s_up, s_down) = nx.logistic_pairs(m.hi)  # softplus(+-hi), sigma(+-hi)
    loss = d = None
    if value:
        loss = down - s_down * m.lo
        if m.smoothing:
            loss = (1 - m.smoothing) * loss + nx.times(m.smoothing, up + s_up * m.lo)
        loss = reduce_to(loss, m.reduction, m.dtype)
    if grad:
        shift = s_up * s_down * m.lo  # d sigma(z) = sigma(z) sigma(-z) dz
        g = -(s_down - shift)
        if m.smoothing:
            g = (1 - m.smoothing) * g + m.smoothing * (s_up + shift)
        if m.reduction == "mean":
            g = g / np.float64(g.size) if g.size else g * np.nan
        if m.beta != 1:
            g = g * m.beta
        d = nx.to_dtype(g, m.dtype), nx.to_dtype(-g, m.dtype)
    return loss, d


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
    The difference is formed exactly (a pair of float64 numbers) before the
    log-sigmoid, so a confident comparison (a gap of 40 between scores of 1e4) keeps a
    loss of :math:`e^{-40}` to a few ULP; an infinite gap gives the limit (0 or inf).
    See :cite:t:`bradley1952rank` and :cite:t:`ouyang2022training`.

    Examples
    --------
    >>> float(round(bradley_terry_loss([2.0, 0.5], [0.0, 1.0]), 6))
    0.550502
    """
    return _bradley_terry(chosen, rejected, reduction, grad=False)[0]


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

    Examples
    --------
    >>> d_c, d_r = bradley_terry_loss_grad([2.0], [0.0])
    >>> float(round(d_c[0], 6)), float(round(d_r[0], 6))
    (-0.119203, 0.119203)
    """
    return _bradley_terry(chosen, rejected, reduction, value=False)[1]


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
    m = _margins({"chosen": chosen, "rejected": rejected}, 1.0, 0.0, reduction)
    return _loss_and_grad(m, value, grad)


def _dpo_margins(pc, pr, rc, rr, beta, label_smoothing, reduction) -> _Margins:
    beta = check_positive_scalar(beta, "beta")
    label_smoothing = check_unit_interval_scalar(label_smoothing, "label_smoothing")
    named = {
        "policy_chosen_logps": pc,
        "reference_chosen_logps": rc,
        "policy_rejected_logps": pr,
        "reference_rejected_logps": rr,
    }
    return _margins(named, beta, label_smoothing, reduction)


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
    exactly (a pair of float64 numbers) and multiplied by ``beta`` with its rounding
    error kept, so that the loss is within a few ULP of its exact value for the given
    inputs. See :cite:t:`rafailov2023direct` and, for the label noise,
    :cite:t:`mitchell2023note`.

    Examples
    --------
    >>> float(round(dpo_loss([-10.0], [-12.0], [-11.0], [-11.0], beta=0.5), 6))
    0.313262
    """
    m = _dpo_margins(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        label_smoothing,
        reduction,
    )
    return _loss_and_grad(m, grad=False)[0]


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
    m = _dpo_margins(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        label_smoothing,
        reduction,
    )
    return _loss_and_grad(m, value=False)[1]


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
    m = _dpo_margins(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        label_smoothing,
        reduction,
    )
    return _loss_and_grad(m)
