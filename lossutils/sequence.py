"""Sequence losses: connectionist temporal classification (CTC).

A network emits, at each of :math:`T` frames, log-probabilities over :math:`C` symbols
(the labels and one *blank*). CTC scores an unaligned label sequence :math:`y` of length
:math:`L \\le T` by summing the probabilities of every frame-level path that collapses to
it (merge repeated symbols, then drop blanks); the loss is the negative log of that sum.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import numpy as np

from ._checks import as_array, check_reduction, describe, gradients_in_argument_dtypes
from ._numerics import dd_sum, log_sum_exp_dd, quiet, to_dtype
from ._reduction import mean_past_the_range, reduce_to

__all__ = ["ctc_loss", "ctc_loss_grad", "ctc_loss_value_and_grad"]


@dataclass(frozen=True)
class _Problem:
    log_probs: np.ndarray  # (T, N, C) in float64
    labels: np.ndarray  # (N, E) the extended label sequences (blank, y1, blank, ..., blank)
    valid: np.ndarray  # (N, E) states s <= 2 L_n
    skip: np.ndarray  # (N, E) the transition s-2 -> s is allowed
    input_lengths: np.ndarray  # (N,)
    target_lengths: np.ndarray  # (N,)
    dtype: np.dtype  # the output dtype
    reduction: str
    zero_infinity: bool


def _lengths(value, name: str, n: int | None, upper: int | None, upper_name: str) -> np.ndarray:
    array = as_array(value, name)
    if array.dtype.kind not in "iu" or array.ndim != 1 or (n is not None and len(array) != n):
        shape = "(N,)" if n is None else f"({n},)"
        raise ValueError(
            f"{name} must be a 1-D array of integers of shape {shape} (one per sample); "
            f"got {describe(array)}"
        )
    bad = (array < 0) | ((array > upper) if upper is not None else False)
    if np.any(bad):
        bound = f"[0, {upper}] ({upper_name})" if upper is not None else ">= 0"
        raise ValueError(f"{name} must hold lengths in {bound}; got {array[bad][0]}")
    return array.astype(np.intp)


def _problem(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity):
    reduction = check_reduction(reduction)
    if not isinstance(zero_infinity, bool | np.bool_):
        raise ValueError(f"zero_infinity must be True or False; got {describe(zero_infinity)}")
    lp = as_array(log_probs, "log_probs")
    if lp.dtype.kind in "biu":
        lp = lp.astype(np.float64)
    if lp.dtype.kind != "f" or lp.ndim != 3 or lp.shape[2] == 0:
        raise ValueError(
            "log_probs must be a real array of shape (T, N, C) (frames, batch, classes, C >= 1); "
            f"got {describe(lp)}"
        )
    t_max, n, c = lp.shape
    if not isinstance(blank, numbers.Integral) or isinstance(blank, bool) or not 0 <= blank < c:
        raise ValueError(
            f"blank must be an integer in [0, {c - 1}] (a class); got {describe(blank)}"
        )
    inputs = _lengths(input_lengths, "input_lengths", n, t_max, "T, the frames of log_probs")
    targets = as_array(targets, "targets")
    if targets.dtype.kind not in "iu" or targets.ndim not in (1, 2):
        raise ValueError(
            "targets must be an integer array, padded (N, S) or concatenated 1-D; "
            f"got {describe(targets)}"
        )
    s_pad = targets.shape[1] if targets.ndim == 2 else None
    lengths = _lengths(target_lengths, "target_lengths", n, s_pad, "S, the padded targets' width")
    if targets.ndim == 2:
        if targets.shape[0] != n:
            raise ValueError(
                f"targets padded to (N, S) must have N={n} rows (the batch of log_probs); "
                f"got shape {targets.shape}"
            )
        rows = targets
    else:
        if len(targets) != int(lengths.sum()):
            raise ValueError(
                "concatenated 1-D targets must have sum(target_lengths) = "
                f"{int(lengths.sum())} entries; got {len(targets)}"
            )
        rows = np.zeros((n, int(lengths.max(initial=0))), dtype=np.intp)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.intp)
        for i in range(n):
            rows[i, : lengths[i]] = targets[starts[i] : starts[i] + lengths[i]]
    width = int(lengths.max(initial=0))
    rows = np.asarray(rows[:, :width], dtype=np.intp)
    used = np.arange(width)[None, :] < lengths[:, None]
    bad = used & ((rows < 0) | (rows >= c) | (rows == blank))
    if np.any(bad):
        raise ValueError(
            f"targets must hold labels in [0, {c - 1}] other than blank={blank} "
            f"(within target_lengths); got {rows[bad][0]}"
        )
    e = 2 * width + 1
    labels = np.full((n, e), blank, dtype=np.intp)
    labels[:, 1::2] = np.where(used, rows, blank)
    state = np.arange(e)[None, :]
    valid = state <= 2 * lengths[:, None]
    skip = np.zeros((n, e), dtype=bool)
    skip[:, 2:] = (labels[:, 2:] != blank) & (labels[:, 2:] != labels[:, :-2])
    skip &= valid
    return _Problem(
        lp.astype(np.float64),
        labels,
        valid,
        skip,
        inputs,
        lengths,
        lp.dtype,
        reduction,
        zero_infinity,
    )


def _log_sum(*terms, precise=False):
    """Elementwise log(sum(exp(terms))) of double-doubles ``(hi, lo)``, as a double-double,
    and ``s``, whose ``2^-50 s`` bounds its rounding error (see :func:`log_sum_exp_dd`)."""
    hi = np.stack([t[0] for t in terms], axis=-1)
    lo = np.stack([t[1] for t in terms], axis=-1)
    out_hi, out_lo, s = log_sum_exp_dd(hi, lo, precise)
    return (out_hi, out_lo), s


def _where(mask, a, b):
    """``np.where`` on double-doubles."""
    return np.where(mask, a[0], b[0]), np.where(mask, a[1], b[1])


def _shift_dd(a, k, fill):
    return _shift(a[0], k, fill), _shift(a[1], k, 0.0)


def _shift(a, k, fill):
    """``a`` moved ``k`` states to the right (``k > 0``) or left (``k < 0``), ``fill`` entering."""
    out = np.full_like(a, fill)
    if k > 0:
        out[:, k:] = a[:, :-k]
    else:
        out[:, :k] = a[:, -k:]
    return out


def _forward(p: _Problem, precise=False):
    """The log forward variables alpha_t(s) for t = 0..T-1, the log-likelihoods log P, an
    estimate of the absolute rounding error of log P and the sum over frames of the
    magnitude of each frame's largest log-probability among the states' (the last two
    None with ``precise``).

    As double-doubles ``(hi, lo)``: the recursion adds log-probabilities over every frame,
    and float64 alone would carry an absolute error growing with their sum. Each frame's
    log-sum-exp still rounds by up to ``2^-50 s`` (:func:`log_sum_exp_dd`); these roundings
    are independent from frame to frame, so the estimate is half the root of the largest sum
    of their squared bounds along the paths into a state (a state's sum is its sources'
    largest plus its own square): measured at 10 to 700 times the error over random
    sequences of 200 and 1000 frames. ``precise`` takes every log-sum-exp to about 2^-100.
    """
    t_max, n, _ = p.log_probs.shape
    ninf = -np.inf
    shape = p.labels.shape
    alpha = (np.full(shape, ninf), np.zeros(shape))
    alpha[0][:, 0] = 0  # the state before the first frame: only "nothing emitted yet"
    alphas = (np.empty((t_max,) + shape), np.empty((t_max,) + shape))
    error = np.zeros(shape)
    rows = np.arange(n)[:, None]
    none = (np.full(shape, ninf), np.zeros(shape))
    tops = np.empty((t_max, n))  # each frame's largest usable log-probability
    for t in range(t_max):
        emit = p.log_probs[t][rows, p.labels]
        if not precise:
            np.max(emit, axis=1, out=tops[t])
        skipped = _where(p.skip, _shift_dd(alpha, 2, ninf), none)
        paths, s = _log_sum(alpha, _shift_dd(alpha, 1, ninf), skipped, precise=precise)
        # a state no path reaches stays -inf also under an emission of +inf (not NaN)
        step = _where(p.valid & (paths[0] != ninf), dd_sum(emit, 0.0, *paths), none)
        running = (t < p.input_lengths)[:, None]
        alpha = _where(running, step, alpha)
        alphas[0][t], alphas[1][t] = alpha
        if not precise:  # in units of 2^-100: the squared bounds are s^2 (no terms: NaN, 0)
            sources = error.copy()
            np.maximum(sources[:, 1:], error[:, :-1], out=sources[:, 1:])
            np.maximum(sources[:, 2:], error[:, :-2] * p.skip[:, 2:], out=sources[:, 2:])
            sources += np.fmax(s * s, 0.0)
            np.copyto(error, sources, where=running & p.valid)
    last = 2 * p.target_lengths
    samples = np.arange(n)
    before_index = np.maximum(last - 1, 0)
    end = (alpha[0][samples, last], alpha[1][samples, last])
    before = _where(
        last > 0,
        (alpha[0][samples, before_index], alpha[1][samples, before_index]),
        (np.full(n, ninf), np.zeros(n)),
    )
    log_likelihood, s = _log_sum(end, before, precise=precise)
    if precise:
        return alphas, log_likelihood, None, None
    error = np.maximum(error[samples, last], error[samples, before_index]) + np.fmax(s * s, 0.0)
    with np.errstate(invalid="ignore"):
        np.abs(tops, out=tops)
        tops[~((np.arange(t_max)[:, None] < p.input_lengths) & (tops < np.inf))] = 0.0
    return alphas, log_likelihood, 2.0**-51 * np.sqrt(error), np.sum(tops, axis=0)


def _log_likelihood(p: _Problem):
    """The forward variables, log P as they give it (for the gradient, whose exponents
    ``alpha + beta - log P`` then share their rounding), log P within a fraction of an ULP
    of the output dtype (for the loss) and the sizes of :func:`_forward`: the samples whose
    error estimate exceeds an ULP are redone with every log-sum-exp to about 2^-100 (a loss
    near 0 that the sum of several alignments' probabilities makes: with ``2^-52`` per frame
    it has lost every digit)."""
    alphas, log_likelihood, error, size = _forward(p)
    ll_hi, ll_lo = log_likelihood
    with np.errstate(invalid="ignore"):
        redo = np.flatnonzero(error > np.finfo(p.dtype).eps * np.abs(ll_hi))
    if redo.size:
        sub = replace(
            p,
            log_probs=p.log_probs[:, redo],
            labels=p.labels[redo],
            valid=p.valid[redo],
            skip=p.skip[redo],
            input_lengths=p.input_lengths[redo],
            target_lengths=p.target_lengths[redo],
        )
        _, (hi, lo), _, _ = _forward(sub, precise=True)
        ll_hi, ll_lo = ll_hi.copy(), ll_lo.copy()
        ll_hi[redo], ll_lo[redo] = hi, lo
    return alphas, log_likelihood, (ll_hi, ll_lo), size


def _losses(p: _Problem, log_likelihood):
    loss = 0.0 - (log_likelihood[0] + log_likelihood[1])  # 0 - x: no negative zeros
    if p.zero_infinity:
        loss = np.where(loss == np.inf, 0, loss).astype(loss.dtype)
    return loss


def _reduce(p: _Problem, loss):
    if p.reduction == "mean":
        loss = loss / np.maximum(p.target_lengths, 1).astype(loss.dtype)
        beyond = np.flatnonzero(loss == np.inf)  # (the mean of such losses may be finite)
        if beyond.size:
            mean = _mean_past_the_range(p, loss, beyond)
            if mean is not None:
                return to_dtype(mean, p.dtype)[()]
    return reduce_to(loss, p.reduction, p.dtype)


@quiet
def ctc_loss(
    log_probs,
    targets,
    input_lengths,
    target_lengths,
    blank=0,
    reduction="mean",
    zero_infinity=False,
):
    r"""Connectionist temporal classification loss, with PyTorch's semantics.

    For sample :math:`n` with :math:`T_n` frames of log-probabilities
    :math:`\log p_t(k)` and a target :math:`y` of length :math:`L_n`,

    .. math::

        \ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(y)} \prod_{t=1}^{T_n} p_t(\pi_t),

    where :math:`\mathcal{B}` merges repeated symbols and then removes blanks, so the sum
    runs over every alignment of :math:`y` to the frames. It is computed by the forward
    recursion over the extended sequence :math:`y' = (b, y_1, b, \dots, y_L, b)`:
    :math:`\alpha_t(s) = \log p_t(y'_s) + \operatorname{logsumexp}(\alpha_{t-1}(s),
    \alpha_{t-1}(s-1), \alpha_{t-1}(s-2))`, the last term only where
    :math:`y'_s \ne b` and :math:`y'_s \ne y'_{s-2}`.

    Parameters
    ----------
    log_probs : array_like
        Shape ``(T, N, C)``: frames, batch, classes (normally a ``log_softmax`` over the
        last axis; any real values are accepted, as in PyTorch).
    targets : array_like of int
        Padded, shape ``(N, S)`` with ``S >= max(target_lengths)``, or the targets
        concatenated, 1-D of length ``sum(target_lengths)``; labels in ``[0, C)`` other
        than ``blank``.
    input_lengths, target_lengths : array_like of int
        Shape ``(N,)``: the frames :math:`T_n \le T` and target lengths :math:`L_n` used.
    blank : int, optional
        The blank class.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides each loss by its target length (at least 1), then averages over
        the batch (PyTorch's convention); ``"none"`` returns the ``N`` losses.
    zero_infinity : bool, optional
        Replace infinite losses by 0, and their gradients by 0: a target no alignment
        fits into :math:`T_n` frames, or only through probabilities of 0, and also (as in
        PyTorch) a loss beyond float64's range (log-probabilities near -1e308). A float32
        or float16 loss is formed in float64: one finite there that rounds to ``inf`` in
        the narrow dtype is kept, with its finite gradient.

    Returns
    -------
    ndarray or numpy scalar
        The reduced loss, or the ``N`` losses for ``"none"``, in ``log_probs``' dtype.

    Raises
    ------
    ValueError
        If ``log_probs`` is not a real ``(T, N, C)`` array, ``blank`` is not a class, a
        length is not in its range (``input_lengths <= T``; ``target_lengths <= S``), the
        targets are not integer labels other than ``blank`` of the right shape,
        ``zero_infinity`` is not a bool, or ``reduction`` is not one of the three.

    Notes
    -----
    Infinite losses: a target with :math:`L_n` labels and :math:`r_n` adjacent repeats
    needs :math:`T_n \ge L_n + r_n` frames; with fewer the loss is ``inf``. Accuracy:
    within a few ULP of the exact value in every dtype and on every platform: the forward
    variables are double-doubles (float64 pairs, no ``long double``) summed by the
    compensated log-sum-exp of ``_numerics``, so their rounding errors do not grow with
    the size of the loss, and the result is rounded once. Each frame's log-sum-exp still
    rounds by about 2^-52 absolute, which is all the digits of a loss near 0 that several
    alignments sharing the mass make (:math:`\log\frac12 + \log 2` minus the loss): a
    sample whose estimated rounding exceeds an ULP of its loss is recomputed with every
    log-sum-exp to about 2^-104 (five to six times its time; in float64 the usual case
    for a trained model whose frames hesitate between blank and a label, rare in
    float32), within an ULP of losses as small as 1e-15 over 1000 frames (where the
    inputs' rounding makes the exact loss negative, so is the result). A loss beyond
    float64's range (log-probabilities near -1e308) is ``inf``; the ``"mean"`` forms such
    losses again scaled down, so it is ``inf`` only where its exact value is. The
    unbatched ``(T, C)`` form of PyTorch is not accepted: pass
    ``log_probs[:, None]``. See :cite:t:`graves2006connectionist`.

    Examples
    --------
    >>> import numpy as np
    >>> log_probs = np.log(np.full((3, 1, 2), 0.5))
    >>> # the target (1,) fits 3 frames in 6 of the 8 paths: -log(6/8)
    >>> float(round(ctc_loss(log_probs, np.array([[1]]), [3], [1], reduction="sum"), 6))
    0.287682
    """
    return _ctc(
        log_probs,
        targets,
        input_lengths,
        target_lengths,
        blank,
        reduction,
        zero_infinity,
        grad=False,
    )[0]


@gradients_in_argument_dtypes("log_probs")
@quiet
def ctc_loss_grad(
    log_probs,
    targets,
    input_lengths,
    target_lengths,
    blank=0,
    reduction="mean",
    zero_infinity=False,
):
    r"""Gradient of :func:`ctc_loss` w.r.t. ``log_probs`` (the forward-backward algorithm).

    With the backward variables :math:`\beta_t(s)` (the log-probability of finishing the
    target from state :math:`s` after frame :math:`t`),

    .. math::

        \frac{\partial \ell_n}{\partial \log p_t(k)}
        = -\sum_{s:\, y'_s = k} e^{\alpha_t(s) + \beta_t(s) + \ell_n},

    minus the posterior probability that frame :math:`t` emits :math:`k`; 0 for frames
    :math:`t \ge T_n`. Times the reduction's scale: :math:`1 / (N \max(L_n, 1))` for
    ``"mean"``.

    Parameters
    ----------
    log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity
        As for :func:`ctc_loss`.

    Returns
    -------
    ndarray
        Shape and dtype of ``log_probs``. NaN in the frames of a sample whose loss has no
        derivative: ``inf`` where no alignment fits, unless ``zero_infinity``, which makes
        them 0, and ``-inf`` from a log-probability of ``+inf`` on an alignment. A loss
        that is ``inf`` only because it is beyond the range (log-probabilities near
        -1e308) has a finite gradient, which is returned (see Notes).

    Raises
    ------
    ValueError
        As :func:`ctc_loss`.

    Notes
    -----
    Accuracy: a few ULP, plus the absolute error of the exponents
    :math:`\alpha + \beta + \ell_n`, which each frame's float64 log-sum-exp adds to (up to
    2^-50 times the sum of its terms relative to the largest), and the sums of the states'
    occupancies per class: in float64 up to 11 ULP (measured on 60 sequences of 100 to 2000
    frames, random and confident with alignments sharing the mass: 5 ULP at 100 frames, 8
    at 300, 10 at 1000 and 2000); float32 and float16 round it away.

    Large log-probabilities: the exponents sum terms as large as the log-probabilities along
    the alignments. The forward and backward variables are double-doubles (about 2^-104 of
    their size), but each log-sum-exp's first-order correction for their low parts drops its
    square (7e3 ULP at losses of 1e10, 6e7 at 1e12, every digit from about 1e16 on:
    posteriors off by 0.1 or outside [-1, 0]). A sample whose loss, or whose sum over frames
    of the largest magnitude among the log-probabilities its alignments take (blank's and
    the target's labels'), exceeds 2^20 is redone from each frame's log-probabilities less
    that frame's largest (where beyond 2^11 in magnitude), with every log-sum-exp to about
    2^-104: within 2 ULP against mpmath at losses of 1e10, 1e100 and 1e300 (float32: 4e37).
    A constant added to one frame's log-probabilities leaves every posterior as it is (each
    alignment takes one entry per frame); the shift is exact for the entries within a factor
    2 of that largest and rounds only those below it by more than 1024 (weights below
    :math:`e^{-1024}` of it). Where such entries carry the probability (a target forced
    through them), or no frame's largest is large, the loss of the redone sample stays
    large: a relative error of about :math:`4 \ell 2^{-104}` is added, :math:`\ell` that
    loss (below an ULP under about 1e14; 2 ULP measured at 2e16), plus half an ULP of each
    such shifted entry.

    Losses beyond the range: where the forward recursion overflows (a loss beyond 1.8e308,
    ``inf``), the derivative, minus the posterior of each frame's classes, is finite (it
    was NaN), and the same redone sample gives it. Where no alignment keeps a finite
    log-probability even so (1, blank, 1 through two log-probabilities of -1e308 in frames
    whose blank has 0), the gradient stays NaN. With ``zero_infinity`` it is 0, as for
    every infinite loss.

    This is the derivative of the loss with respect to ``log_probs`` as given. The
    gradient PyTorch's ``F.ctc_loss`` returns for ``log_probs`` differs: it adds
    :math:`e^{\log p_t(k)}` times the sample's scale in every frame :math:`t < T_n`, which
    makes it the gradient with respect to logits ``z`` with ``log_probs =
    log_softmax(z)``. Chained through ``log_softmax`` both agree (the conformance test
    ``test_claim_ctc_gradient_through_log_softmax`` checks it).

    Examples
    --------
    >>> import numpy as np
    >>> log_probs = np.log(np.full((1, 1, 2), 0.5))
    >>> ctc_loss_grad(log_probs, np.array([[1]]), [1], [1], reduction="sum")[0, 0].tolist()
    [0.0, -1.0]
    """
    return _ctc(
        log_probs,
        targets,
        input_lengths,
        target_lengths,
        blank,
        reduction,
        zero_infinity,
        value=False,
    )[1]


@gradients_in_argument_dtypes("log_probs")
@quiet
def ctc_loss_value_and_grad(
    log_probs,
    targets,
    input_lengths,
    target_lengths,
    blank=0,
    reduction="mean",
    zero_infinity=False,
):
    r"""``ctc_loss`` and ``ctc_loss_grad`` in one pass: the loss and its gradient.

    The forward recursion runs once and feeds both the loss and the backward pass.

    Parameters
    ----------
    log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity
        Same as :func:`ctc_loss`.

    Returns
    -------
    tuple
        ``(loss, d_log_probs)``: bit for bit ``ctc_loss(...)`` and ``ctc_loss_grad(...)``.

    Raises
    ------
    ValueError
        As :func:`ctc_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> args = (np.log(np.full((3, 1, 2), 0.5)), np.array([[1]]), [3], [1])
    >>> loss, grad = ctc_loss_value_and_grad(*args, reduction="sum")
    >>> bool(loss == ctc_loss(*args, reduction="sum")), grad.shape
    (True, (3, 1, 2))
    """
    return _ctc(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity)


def _ctc(
    log_probs,
    targets,
    input_lengths,
    target_lengths,
    blank,
    reduction,
    zero_infinity,
    *,
    value=True,
    grad=True,
):
    """``(loss or None, d_log_probs or None)``: one forward recursion feeds both."""
    p = _problem(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity)
    alphas, log_likelihood, precise, size = _log_likelihood(p)
    loss = _reduce(p, _losses(p, precise)) if value else None
    if not grad:
        return loss, None
    d = _backward(p, alphas, log_likelihood)
    _large_samples(p, log_likelihood[0], size, d)
    return loss, to_dtype(d, p.dtype)


def _large_samples(p: _Problem, ll_hi, size, grad) -> None:
    """In place: the gradient of the samples whose log-probabilities are large, redone.

    The exponents ``alpha + beta - log P`` of the posteriors are sums of terms as large as
    the log-probabilities along the alignments: their double-doubles keep an absolute
    error of about 2^-104 of that size, and the first-order ``e^d (1 + delta)`` of each
    log-sum-exp (``delta`` the low parts' difference, up to an ULP of the size) adds
    ``delta^2`` (within 4 ULP up to losses of 1e8, then 7e3 ULP at 1e10, every digit
    from about 1e16). Redone: the samples whose log-likelihood or ``size`` (the sum over
    frames of the magnitude of the largest log-probability the alignments take, blank's or
    the target's) exceeds 2^20 (a hundredth of where digits go: never for the outputs of a
    log-softmax over a few thousand frames), from their log-probabilities less, in each frame whose
    largest is beyond 2^11 in magnitude, that largest, with every log-sum-exp's
    exponentials to about 2^-104 (``precise``). A constant added to one frame's
    log-probabilities leaves every posterior as it is (each alignment takes one entry per
    frame); the shift is exact for every entry within a factor 2 of that largest
    (Sterbenz), and rounds only entries whose probability is below ``e^-1024`` of it (a
    half ULP of their shifted value). This also gives the gradient of a loss beyond the
    range (log-likelihood ``-inf``, log-probabilities near -1e308), which is finite. A
    sample whose shifted likelihood is still 0 (no alignment fits, or one forced through
    entries beyond the range) keeps its NaN (or 0, with ``zero_infinity``)."""
    with np.errstate(invalid="ignore"):
        large = (np.abs(ll_hi) > _LARGE) | (size > _LARGE)
        large &= (ll_hi != np.inf) & ~np.isnan(ll_hi)
    if p.zero_infinity:
        large &= ll_hi != -np.inf
    redo = np.flatnonzero(large)
    if not redo.size:
        return
    sub, _ = _shifted(p, redo)
    alphas, log_likelihood, _, _ = _forward(sub, precise=True)
    found = np.isfinite(log_likelihood[0])
    if found.any():
        d = _backward(sub, alphas, log_likelihood, batch=len(p.input_lengths), precise=True)
        grad[:, redo[found]] = d[:, found]


def _shifted(p: _Problem, redo):
    """The samples ``redo`` of ``p`` with, in each frame whose largest log-probability
    among those the alignments take (blank's and the target's labels') is beyond 2^11 in
    magnitude, that largest subtracted from the frame's log-probabilities (see
    :func:`_large_samples`), and the ``(T, len(redo))`` shifts (0 elsewhere): each
    sample's log-likelihood is its shifted one plus the sum of its shifts."""
    lp = p.log_probs[:, redo]
    frames = np.arange(lp.shape[0])[:, None] < p.input_lengths[redo][None, :]
    # (the largest of the classes the alignments take: blank and the target's labels)
    emitted = lp[:, np.arange(redo.size)[:, None], p.labels[redo]]
    with np.errstate(invalid="ignore"):
        top = np.max(emitted, axis=-1, initial=-np.inf)
        shift = np.where(frames & np.isfinite(top) & (np.abs(top) > 2.0**11), top, 0.0)
    sub = replace(
        p,
        log_probs=lp - shift[:, :, None],
        labels=p.labels[redo],
        valid=p.valid[redo],
        skip=p.skip[redo],
        input_lengths=p.input_lengths[redo],
        target_lengths=p.target_lengths[redo],
    )
    return sub, shift


def _mean_past_the_range(p: _Problem, loss, rows):
    """The mean of the per-sample ``loss`` (float64, already over the target lengths)
    whose ``rows`` are ``inf`` because they are beyond float64's range (log-probabilities
    near -1e308), though the mean may not be: those losses again from the shifted samples
    (:func:`_shifted`), as the sums of their shifts and shifted losses scaled by 2^-64,
    and the mean formed scaled (:func:`~lossutils._reduction.mean_past_the_range`).
    None where a shifted loss is still infinite (no alignment: the exact mean is too)."""
    sub, shift = _shifted(p, rows)
    _, (hi, lo), _, _ = _forward(sub, precise=True)
    if not np.all(np.isfinite(hi)):
        return None
    k = 64  # (a loss is at most T times the largest float64: below 2^64 of it)
    with np.errstate(under="ignore"):
        scaled = np.sum(np.ldexp(-shift, -k), axis=0) - np.ldexp(hi + lo, -k)
    scaled /= np.maximum(p.target_lengths[rows], 1)
    return mean_past_the_range(loss, rows, scaled, k)


# the size of log-probabilities beyond which the gradient is redone (_large_samples)
_LARGE = 2.0**20


def _backward(p: _Problem, alphas, log_likelihood, batch=None, precise=False):
    """The gradient w.r.t. ``log_probs`` from the forward variables (the backward
    recursion), float64. ``batch``: the mean's batch size, if not ``p``'s (a part of it);
    ``precise``: every log-sum-exp to about 2^-104 (:func:`_forward`)."""
    t_max, n, c = p.log_probs.shape
    ninf = -np.inf
    shape = p.labels.shape
    rows = np.arange(n)[:, None]
    last = 2 * p.target_lengths
    state = np.arange(shape[1])[None, :]
    finish = np.where((state == last[:, None]) | (state == last[:, None] - 1), 0.0, ninf)
    finish = (finish, np.zeros(shape))
    none = (np.full(shape, ninf), np.zeros(shape))
    skip_from = _shift(p.skip, -2, False)  # s -> s+2 allowed
    grad = np.zeros((t_max, n, c))
    beta = none
    # divided by n L_n for the mean (an exact integer: one rounding), else 1
    batch = n if batch is None else batch
    divisor = batch * np.maximum(p.target_lengths, 1) if p.reduction == "mean" else np.ones(n, int)
    ll_hi, ll_lo = log_likelihood
    infinite = ll_hi == -np.inf
    for t in range(t_max - 1, -1, -1):
        if t + 1 < t_max:
            reached = p.valid & (beta[0] != ninf)
            ahead = _where(reached, dd_sum(p.log_probs[t + 1][rows, p.labels], 0.0, *beta), none)
            skipped = _where(skip_from, _shift_dd(ahead, -2, ninf), none)
            paths, _ = _log_sum(ahead, _shift_dd(ahead, -1, ninf), skipped, precise=precise)
            step = _where(p.valid, paths, none)
        else:
            step = beta
        here = (t == p.input_lengths - 1)[:, None]
        inside = (t < p.input_lengths - 1)[:, None]
        beta = _where(here, finish, _where(inside, step, none))
        # alpha + beta - log P: terms as large as the loss cancel to about 0; summed exactly
        total = dd_sum(*dd_sum(alphas[0][t], alphas[1][t], *beta), -ll_hi[:, None], -ll_lo[:, None])
        occupancy = np.exp(total[0])
        occupancy += occupancy * np.where(np.isfinite(occupancy), total[1], 0.0)  # e^lo = 1 + lo
        occupancy = np.where((t < p.input_lengths)[:, None], occupancy, 0)
        frame = np.zeros((n, c))
        np.add.at(frame, (np.broadcast_to(rows, shape), p.labels), occupancy)
        grad[t] = 0 - frame / divisor[:, None]  # 0 - x: no negative zeros
    if p.zero_infinity:
        grad[:, infinite, :] = 0
    # no derivative: NaN in every frame the loss depends on (a loss of -inf, from a
    # log-probability of +inf, is not replaced by zero_infinity)
    undefined = (ll_hi == np.inf) if p.zero_infinity else (infinite | (ll_hi == np.inf))
    frames = np.arange(t_max)[:, None] < p.input_lengths[None, :]
    grad[frames & undefined[None, :]] = np.nan
    return grad
