"""CTC loss: values and gradients against exact references, PyTorch's conventions, bad input.

Two independent references at high precision: brute-force enumeration of every frame-level
path (small T: the definition of the loss itself), and the forward and backward variables
in probability space (no logarithms) with mpmath, for longer sequences and extreme
log-probabilities. Accuracy is measured in ULP of the output dtype against the exact
value of the rounded inputs.
"""

from __future__ import annotations

import itertools

import mpmath
import numpy as np
import pytest

from lossutils import ctc_loss, ctc_loss_grad, ctc_loss_value_and_grad, log_softmax
from lossutils.testing import assert_close_to_exact, assert_gradient_matches

DTYPES = [np.float16, np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]


def collapse(path, blank):
    out, previous = [], None
    for k in path:
        if k != previous and k != blank:
            out.append(k)
        previous = k
    return out


def brute_force(log_probs, target, frames, blank=0, digits=60):
    """-log sum over every path of ``frames`` symbols that collapses to ``target``, and
    d/d log_probs[t, k] of it, by enumeration (mpmath, exact inputs; ``digits``: enough
    for the paths' sums of log-probabilities to keep their differences)."""
    c = log_probs.shape[-1]
    with mpmath.workdps(digits):
        lp = [[mpmath.mpf(float(v)) for v in row] for row in log_probs]
        total = mpmath.mpf(0)
        occupancy = [[mpmath.mpf(0)] * c for _ in range(len(log_probs))]
        for path in itertools.product(range(c), repeat=frames):
            if collapse(path, blank) == list(target):
                weight = mpmath.exp(mpmath.fsum(lp[t][k] for t, k in enumerate(path)))
                total += weight
                for t, k in enumerate(path):
                    occupancy[t][k] += weight
        if total == 0:
            return mpmath.inf, None
        grad = np.array([[-o / total for o in row] for row in occupancy], dtype=object)
        return -mpmath.log(total), grad


def forward_backward(log_probs, target, frames, blank=0):
    """The same quantities from the forward and backward variables in probability space."""
    c = log_probs.shape[-1]
    ext = [blank]
    for k in target:
        ext += [k, blank]
    e = len(ext)
    with mpmath.workdps(60):
        y = [[mpmath.exp(mpmath.mpf(float(v))) for v in row] for row in log_probs[:frames]]

        def sources(s):
            out = [s] + ([s - 1] if s >= 1 else [])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                out.append(s - 2)
            return out

        alpha = [[mpmath.mpf(0)] * e for _ in range(frames)]
        alpha[0][0] = y[0][ext[0]]
        if e > 1:
            alpha[0][1] = y[0][ext[1]]
        for t in range(1, frames):
            for s in range(e):
                alpha[t][s] = y[t][ext[s]] * mpmath.fsum(alpha[t - 1][r] for r in sources(s))
        beta = [[mpmath.mpf(0)] * e for _ in range(frames)]  # after frame t, from state s
        beta[frames - 1][e - 1] = 1
        if e > 1:
            beta[frames - 1][e - 2] = 1
        for t in range(frames - 2, -1, -1):
            for s in range(e):
                beta[t][s] = mpmath.fsum(
                    y[t + 1][ext[r]] * beta[t + 1][r] for r in range(e) if s in sources(r)
                )
        total = alpha[frames - 1][e - 1] + (alpha[frames - 1][e - 2] if e > 1 else 0)
        grad = np.empty((len(log_probs), c), dtype=object)
        grad[:] = mpmath.mpf(0)
        for t in range(frames):
            for s in range(e):
                grad[t, ext[s]] -= alpha[t][s] * beta[t][s] / total
        return -mpmath.log(total), grad


def reduce_exact(losses, lengths, reduction):
    with mpmath.workdps(60):
        if reduction == "none":
            return np.array(losses, dtype=object)
        if reduction == "sum":
            return mpmath.fsum(losses)
        return mpmath.fsum(v / max(int(n), 1) for v, n in zip(losses, lengths, strict=True)) / len(
            losses
        )


def scaled_grads(grads, lengths, reduction, shape):
    out = np.empty(shape, dtype=object)
    with mpmath.workdps(60):
        for n, g in enumerate(grads):
            scale = mpmath.mpf(1)
            if reduction == "mean":
                scale = mpmath.mpf(1) / (len(grads) * max(int(lengths[n]), 1))
            for index in np.ndindex(g.shape):
                out[(index[0], n, index[1])] = g[index] * scale
    return out


def batch(seed, t_max, n, c, scale=2.0):
    rng = np.random.default_rng(seed)
    return log_softmax(rng.normal(scale=scale, size=(t_max, n, c)))


# --- values and gradients against brute-force enumeration --------------------------------------

SMALL_TARGETS = np.array([[1, 1, 0], [2, 1, 0], [1, 0, 0], [0, 0, 0]])
SMALL_TARGET_LENGTHS = np.array([2, 2, 1, 0])
SMALL_INPUT_LENGTHS = np.array([5, 4, 2, 3])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_brute_force_enumeration(dtype, reduction):
    log_probs = batch(0, 5, 4, 3).astype(dtype)
    args = (log_probs, SMALL_TARGETS, SMALL_INPUT_LENGTHS, SMALL_TARGET_LENGTHS)
    exact = [
        brute_force(log_probs[:, n], SMALL_TARGETS[n, :m], SMALL_INPUT_LENGTHS[n])
        for n, m in enumerate(SMALL_TARGET_LENGTHS)
    ]
    value = ctc_loss(*args, reduction=reduction)
    assert np.asarray(value).dtype == dtype
    reference = reduce_exact([v for v, _ in exact], SMALL_TARGET_LENGTHS, reduction)
    assert_close_to_exact(value, reference, max_ulp=2, label="loss")
    grad = ctc_loss_grad(*args, reduction=reduction)
    assert grad.dtype == dtype and grad.shape == log_probs.shape
    reference = scaled_grads([g for _, g in exact], SMALL_TARGET_LENGTHS, reduction, grad.shape)
    assert_close_to_exact(grad, reference, max_ulp=2, label="gradient")


def test_references_agree():
    # the two references are computed differently; they agree (to 50 digits)
    log_probs = batch(1, 6, 1, 3)[:, 0]
    for target in ([1, 2], [1, 1], [2], []):
        v1, g1 = brute_force(log_probs, target, 6)
        v2, g2 = forward_backward(log_probs, target, 6)
        assert abs(v1 - v2) < mpmath.mpf(10) ** -45
        assert (
            max(abs(a - b) for a, b in zip(g1.ravel(), g2.ravel(), strict=True))
            < mpmath.mpf(10) ** -45
        )


# --- hard regimes: long sequences, confident predictions, extreme log-probabilities ------------


def regime(name):
    rng = np.random.default_rng(7)
    t_max, c = 40, 5
    targets = np.array([[1, 2, 2, 3, 1, 4, 4, 2], [3, 3, 3, 1, 0, 0, 0, 0]])
    target_lengths = np.array([8, 4])
    input_lengths = np.array([40, 33])
    if name == "random":
        log_probs = log_softmax(rng.normal(scale=3.0, size=(t_max, 2, c)))
    elif name == "confident":
        # one alignment has all the mass: every frame puts 1 - tiny on its symbol
        logits = np.full((t_max, 2, c), -40.0)
        for n in range(2):
            path, previous = [], None
            for k in targets[n, : target_lengths[n]]:
                path += ([0] if k == previous else []) + [k] * 3
                previous = k
            path += [0] * (input_lengths[n] - len(path))
            logits[np.arange(input_lengths[n]), n, path] = 0.0
        log_probs = log_softmax(logits)
    else:  # "extreme": log-probabilities near -1e4 among ordinary ones
        logits = rng.normal(size=(t_max, 2, c))
        logits[rng.random(size=logits.shape) < 0.3] = -1e4
        log_probs = log_softmax(logits)
    return log_probs, targets, input_lengths, target_lengths


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["random", "confident", "extreme"])
def test_accuracy_in_hard_regimes(dtype, name):
    log_probs, targets, input_lengths, target_lengths = regime(name)
    log_probs = log_probs.astype(dtype)
    exact = [
        forward_backward(log_probs[:, n], targets[n, : target_lengths[n]], input_lengths[n])
        for n in range(2)
    ]
    if name == "confident":
        assert all(v < 1e-12 for v, _ in exact) or dtype != np.float64  # tiny losses
    args = (log_probs, targets, input_lengths, target_lengths)
    for reduction in REDUCTIONS:
        reference = reduce_exact([v for v, _ in exact], target_lengths, reduction)
        assert_close_to_exact(ctc_loss(*args, reduction=reduction), reference, 4, name)
        grad = ctc_loss_grad(*args, reduction=reduction)
        reference = scaled_grads([g for _, g in exact], target_lengths, reduction, grad.shape)
        assert_close_to_exact(grad, reference, gradient_ulp(exact, dtype), name + " gradient")


def shared_mass(t_max, labels, confidence, seed):
    """Confident frames (a logit ``confidence`` above the rest) along one alignment, except
    that the first frame of each label's run is as likely blank as the label: the loss is
    tiny, the sum of 2^L alignments' probabilities that share the mass."""
    rng = np.random.default_rng(seed)
    c = 6
    target = 1 + np.arange(labels) % (c - 1)
    run = t_max // (2 * labels + 1)
    path, first = [], []
    for k in target:
        path += [0] * run
        first.append(len(path))
        path += [k] * run
    path += [0] * (t_max - len(path))
    logits = rng.normal(size=(t_max, 1, c))
    logits[np.arange(t_max), 0, path] += confidence
    logits[first, 0, 0] = logits[first, 0, target]
    return log_softmax(logits), target[None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_loss_whose_alignments_share_the_mass(dtype):
    # two frames, target (1,): the paths 11, b1, 1b hold all the mass but p1(b) p2(b); each
    # frame's log-sum-exp once rounded log1p(s) to float64 (an absolute 2^-53 that the
    # result, log(1/2) + log(2) minus a tiny loss, kept): 2.4e7 ULP of a loss of 5e-9 in
    # float64; in float32 (the frames' log-probabilities chosen so that their rounding
    # leaves P within 1e-15 of 1) 8.8e5 ULP
    half = dtype(np.log(0.5))
    small = np.log(1e-8 if dtype == np.float64 else 2.0**-50)
    big = -(np.log(2.0) + float(half)) if dtype == np.float32 else np.log1p(-1e-8)
    log_probs = np.array([[[small, big]], [[half, half]]], dtype=dtype)
    value, grad = brute_force(log_probs[:, 0], [1], 2)
    args = (log_probs, np.array([[1]]), [2], [1])
    for reduction in REDUCTIONS:
        v, g = ctc_loss_value_and_grad(*args, reduction=reduction)
        assert_close_to_exact(v, reduce_exact([value], [1], reduction), 4, reduction)
        expected = scaled_grads([grad], [1], reduction, log_probs.shape)
        assert_close_to_exact(g, expected, 4, reduction + " gradient")


@pytest.mark.parametrize(("t_max", "labels", "confidence"), [(200, 10, 12.0), (300, 12, 40.0)])
def test_long_sequence_with_a_tiny_loss_within_4_ulp(t_max, labels, confidence):
    # losses of 0.015 and 5e-14 over hundreds of frames: up to 24 and 1.5e14 ULP before the
    # samples whose estimated rounding exceeds an ULP were redone to about 2^-100 per frame;
    # where the inputs' rounding makes the exact loss negative, so is the result
    log_probs, target = shared_mass(t_max, labels, confidence, 1)
    value, grad = forward_backward(log_probs[:, 0], target[0], t_max)
    args = (log_probs, target, [t_max], [labels])
    with mpmath.workdps(60):
        for reduction in REDUCTIONS:
            got = ctc_loss(*args, reduction=reduction)
            assert_close_to_exact(got, reduce_exact([value], [labels], reduction), 4, reduction)
        expected = scaled_grads([grad], [labels], "sum", log_probs.shape)
    assert_close_to_exact(ctc_loss_grad(*args, reduction="sum"), expected, 4, "gradient")


@pytest.mark.parametrize(("labels", "confidence", "seed"), [(52, 30.0, 3), (42, 8.0, 4)])
def test_long_sequence_gradient_within_its_documented_bound(labels, confidence, seed):
    # the exponents alpha + beta - log P carry the forward and backward variables' float64
    # log-sum-exp roundings: 5.8 and 4.4 ULP here (the docstring states up to 11 measured
    # over 60 sequences of 100 to 2000 frames)
    log_probs, target = shared_mass(300, labels, confidence, seed)
    _, grad = forward_backward(log_probs[:, 0], target[0], 300)
    with mpmath.workdps(60):
        expected = scaled_grads([grad], [labels], "sum", log_probs.shape)
    got = ctc_loss_grad(log_probs, target, [300], [labels], reduction="sum")
    assert_close_to_exact(got, expected, 7, "gradient")


def gradient_ulp(exact, dtype):
    """The gradient's bound: 4 ULP, plus the documented relative error of about
    ``4 * loss * 2^-104`` (the forward and backward variables are double-doubles; their
    log-space sums carry terms as large as the loss). The same on every platform: no
    ``long double`` is involved."""
    largest = max(float(v) for v, _ in exact)
    return 4 + 4 * largest * 2.0**-104 / np.finfo(dtype).eps


# --- finite differences, the two target layouts, PyTorch's conventions ------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_gradient_matches_finite_differences(reduction, zero_infinity):
    log_probs = batch(3, 7, 3, 4)
    targets = np.array([[1, 2, 2], [3, 0, 0], [2, 1, 0]])
    args = (log_probs, targets, np.array([7, 5, 6]), np.array([3, 1, 2]))
    assert_gradient_matches(
        ctc_loss,
        ctc_loss_grad,
        args,
        (0,),
        kwargs={"reduction": reduction, "zero_infinity": zero_infinity},
        rtol=1e-6,
        atol=1e-9,
    )


def test_concatenated_targets_equal_padded():
    log_probs = batch(4, 9, 3, 5)
    padded = np.array([[1, 2, 3, 0], [4, 4, 0, 0], [2, 0, 0, 0]])
    lengths = np.array([3, 2, 1])
    concatenated = np.array([1, 2, 3, 4, 4, 2])
    frames = np.array([9, 8, 3])
    for f in (ctc_loss, ctc_loss_grad):
        np.testing.assert_array_equal(
            f(log_probs, padded, frames, lengths, reduction="none"),
            f(log_probs, concatenated, frames, lengths, reduction="none"),
        )


def test_mean_divides_by_target_lengths():
    log_probs = batch(5, 8, 3, 4)
    targets = np.array([[1, 2, 3], [3, 0, 0], [0, 0, 0]])
    lengths = np.array([3, 1, 0])
    frames = np.array([8, 8, 8])
    per = ctc_loss(log_probs, targets, frames, lengths, reduction="none")
    mean = ctc_loss(log_probs, targets, frames, lengths)
    # an empty target counts as length 1 (PyTorch clamps the divisor at 1)
    assert np.isclose(mean, (per[0] / 3 + per[1] / 1 + per[2] / 1) / 3, rtol=1e-15)
    # the empty target's likelihood is every frame emitting blank
    assert np.isclose(per[2], -log_probs[:, 2, 0].sum(), rtol=1e-15)


def test_blank_other_than_zero():
    log_probs = batch(6, 6, 2, 3)
    # relabel: class 2 plays blank, classes 0 and 1 the labels
    swapped = log_probs[..., [2, 1, 0]]
    targets = np.array([[1, 2], [2, 2]])
    lengths = np.array([2, 2])
    frames = np.array([6, 6])
    expected = ctc_loss(log_probs, targets, frames, lengths, reduction="none")
    relabeled = np.array([[1, 0], [0, 0]])
    got = ctc_loss(swapped, relabeled, frames, lengths, blank=2, reduction="none")
    np.testing.assert_array_equal(got, expected)
    g = ctc_loss_grad(swapped, relabeled, frames, lengths, blank=2, reduction="none")
    np.testing.assert_array_equal(
        g, ctc_loss_grad(log_probs, targets, frames, lengths, reduction="none")[..., [2, 1, 0]]
    )


# --- infinities, zero_infinity, empty batches, NaN -------------------------------------------


def test_target_that_does_not_fit_is_infinite():
    log_probs = batch(8, 4, 2, 3)
    # [1, 1] needs 3 frames (a blank between the repeats); [1, 2] needs 2
    targets = np.array([[1, 1], [1, 2]])
    frames, lengths = np.array([2, 2]), np.array([2, 2])
    per = ctc_loss(log_probs, targets, frames, lengths, reduction="none")
    assert per[0] == np.inf and np.isfinite(per[1])
    grad = ctc_loss_grad(log_probs, targets, frames, lengths, reduction="none")
    assert np.isnan(grad[:2, 0]).all() and not grad[2:, 0].any()
    zeroed = ctc_loss(log_probs, targets, frames, lengths, reduction="none", zero_infinity=True)
    assert zeroed[0] == 0 and zeroed[1] == per[1]
    grad = ctc_loss_grad(log_probs, targets, frames, lengths, reduction="none", zero_infinity=True)
    assert not grad[:, 0].any() and np.isfinite(grad).all()


def test_probability_zero_symbols():
    # log-probabilities of -inf are symbols that cannot be emitted: the paths through them
    # vanish, the others count as before; a target reachable only through them is infinite
    log_probs = batch(9, 5, 2, 3)
    log_probs[:, :, 2] = -np.inf
    targets = np.array([[1, 0], [2, 1]])
    per = ctc_loss(log_probs, targets, [5, 5], [1, 2], reduction="none")
    assert per[1] == np.inf
    exact, grad_exact = brute_force(log_probs[:, 0], [1], 5)
    assert_close_to_exact(per[:1], [exact], 2)
    grad = ctc_loss_grad(log_probs, targets, [5, 5], [1, 2], reduction="none", zero_infinity=True)
    assert_close_to_exact(grad[:, 0], grad_exact, 2)
    assert not grad[:, 1].any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(dtype):
    log_probs = np.zeros((4, 0, 3), dtype=dtype)
    args = (log_probs, np.zeros((0, 2), dtype=int), np.zeros(0, int), np.zeros(0, int))
    assert np.isnan(ctc_loss(*args)) and ctc_loss(*args).dtype == dtype
    assert ctc_loss(*args, reduction="sum") == 0
    assert ctc_loss(*args, reduction="none").shape == (0,)
    for reduction in REDUCTIONS:
        grad = ctc_loss_grad(*args, reduction=reduction)
        assert grad.shape == (4, 0, 3) and grad.dtype == dtype


def test_zero_frames():
    log_probs = np.zeros((0, 2, 3))
    per = ctc_loss(log_probs, np.array([[1], [0]]), [0, 0], [1, 0], reduction="none")
    assert per.tolist() == [np.inf, 0.0]  # the empty path fits only the empty target


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_probability_of_plus_inf(dtype):
    # a log-probability of +inf on an alignment makes P infinite: the loss is -inf, its
    # limit (a state no path reaches gave NaN, inf + -inf); no derivative: NaN in its frames
    # (zero_infinity replaces only a loss of +inf)
    log_probs = np.log(np.full((3, 2, 3), 1 / 3)).astype(dtype)
    log_probs[1, 0, 1] = np.inf
    everywhere = np.full((3, 2, 3), np.inf, dtype=dtype)
    args = (np.array([[1, 2], [1, 2]]), [3, 3], [2, 2])
    for lp in (log_probs, everywhere):
        for zero_infinity in (False, True):
            loss, grad = ctc_loss_value_and_grad(
                lp, *args, reduction="none", zero_infinity=zero_infinity
            )
            assert loss[0] == -np.inf and np.all(np.isnan(grad[:, 0]))
    assert np.isfinite(ctc_loss(log_probs, *args, reduction="none")[1])


def test_empty_target_in_no_frames_is_plus_zero():
    # -(0 + 0) was -0.0
    loss = ctc_loss(np.zeros((2, 1, 3)), np.zeros((1, 0), int), [0], [0], reduction="none")
    assert loss[0] == 0 and not np.signbit(loss[0])


def test_nan_propagates():
    log_probs = batch(10, 5, 2, 3)
    log_probs[2, 0, 1] = np.nan
    per = ctc_loss(log_probs, np.array([[1], [2]]), [5, 5], [1, 1], reduction="none")
    assert np.isnan(per[0]) and np.isfinite(per[1])


def test_inputs_are_not_modified():
    log_probs = batch(11, 5, 2, 3).astype(np.float32)
    targets = np.array([[1, 2], [2, 0]])
    copies = (log_probs.copy(), targets.copy())
    ctc_loss(log_probs, targets, [5, 4], [2, 1])
    ctc_loss_grad(log_probs, targets, [5, 4], [2, 1])
    np.testing.assert_array_equal(log_probs, copies[0])
    np.testing.assert_array_equal(targets, copies[1])


# --- bad input -------------------------------------------------------------------------------

GOOD = dict(
    log_probs=np.zeros((4, 2, 3)),
    targets=np.array([[1, 2], [2, 0]]),
    input_lengths=np.array([4, 3]),
    target_lengths=np.array([2, 1]),
)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"log_probs": np.zeros((4, 3))}, r"log_probs must be a real array of shape \(T, N, C\)"),
        ({"log_probs": np.zeros((4, 2, 3), complex)}, "log_probs must be a real array"),
        ({"targets": np.array([[1.0, 2.0], [2.0, 0.0]])}, "targets must be an integer array"),
        ({"targets": np.array([[1, 0], [2, 0]])}, r"targets must hold labels.*other than blank"),
        ({"targets": np.array([[1, 3], [2, 0]])}, r"targets must hold labels in \[0, 2\]"),
        ({"targets": np.array([[1, 2]])}, r"targets padded to \(N, S\) must have N=2 rows"),
        ({"targets": np.array([1, 2])}, "sum\\(target_lengths\\) = 3 entries; got 2"),
        ({"input_lengths": np.array([5, 3])}, r"input_lengths must hold lengths in \[0, 4\]"),
        ({"input_lengths": np.array([4])}, r"input_lengths must be a 1-D array.*\(2,\)"),
        ({"input_lengths": np.array([4.0, 3.0])}, "input_lengths must be a 1-D array of integers"),
        ({"target_lengths": np.array([3, 1])}, r"target_lengths must hold lengths in \[0, 2\]"),
        ({"target_lengths": np.array([-1, 1])}, "target_lengths must hold lengths"),
        ({"blank": 3}, r"blank must be an integer in \[0, 2\]"),
        ({"blank": 1.0}, "blank must be an integer"),
        ({"zero_infinity": 1}, "zero_infinity must be True or False"),
        ({"reduction": "avg"}, "reduction must be one of"),
    ],
)
@pytest.mark.parametrize("f", [ctc_loss, ctc_loss_grad])
def test_bad_input(f, change, match):
    with pytest.raises(ValueError, match=match):
        f(**{**GOOD, **change})


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_long_sequence_with_a_large_loss_within_4_ulp(reduction):
    # 300 frames, a loss of about 900: a float64 recursion carries an absolute error of
    # hundreds of ULP of the loss into it, and into the exponents alpha + beta - loss of the
    # gradient; the double-double recursion keeps both within 4 ULP without long double
    rng = np.random.default_rng(11)
    log_probs = log_softmax(rng.normal(scale=3.0, size=(300, 1, 6)))
    target = np.array([[1, 2, 2, 3, 5, 4, 4, 1]])
    value, grad_ref = forward_backward(log_probs[:, 0], target[0], 300)
    assert value > 500
    args = (log_probs, target, np.array([300]), np.array([8]))
    scale = 8 if reduction == "mean" else 1
    with mpmath.workdps(60):
        assert_close_to_exact(ctc_loss(*args, reduction=reduction), value / scale, 4, "loss")
        expected = scaled_grads([grad_ref], [8], reduction, log_probs.shape)
    assert_close_to_exact(ctc_loss_grad(*args, reduction=reduction), expected, 4, "gradient")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradient_where_the_loss_overflows_is_minus_the_posteriors(reduction):
    # log-probabilities near -1e308: the first sample's loss (about 2e308) is beyond
    # float64's range, its gradient (minus the posteriors, within [-1, 0]) is not: it was
    # NaN. Classes 0 and 1 tie in frames 0 and 2, class 2 is far below there; frame 1
    # holds ordinary log-probabilities, on which the posteriors depend. The second sample
    # is ordinary (the mean's divisor N L_n covers the whole batch)
    log_probs = np.empty((3, 2, 3))
    log_probs[:, 0] = [[-1e308, -1e308, -1.5e308], np.log([0.2, 0.3, 0.5]), [-1e308] * 2 + [-3e307]]
    log_probs[:, 1] = batch(3, 3, 1, 3)[:, 0]
    targets, frames, lengths = np.array([[1, 0], [1, 2]]), np.array([3, 3]), np.array([1, 2])
    # (sums of -1e308 and of log 0.2: 400 digits keep the latter's)
    exact = [brute_force(log_probs[:, n], targets[n, : lengths[n]], 3, digits=400) for n in (0, 1)]
    assert exact[0][0] > np.finfo(np.float64).max  # (the loss overflows)
    expected = scaled_grads([g for _, g in exact], lengths, reduction, log_probs.shape)
    loss, grad = ctc_loss_value_and_grad(log_probs, targets, frames, lengths, reduction=reduction)
    if reduction == "mean":  # about 1e308: finite (it was inf), as are the mean's terms
        with mpmath.workdps(400):
            mean = (exact[0][0] / lengths[0] + exact[1][0] / lengths[1]) / 2
        assert_close_to_exact(np.reshape(loss, 1), [mean], 4, "ctc_loss")
    else:
        assert np.all(np.isinf(loss) if reduction != "none" else np.isinf(loss[0]))
    assert_close_to_exact(grad, expected, 4, "ctc_loss_grad")
    np.testing.assert_array_equal(
        ctc_loss_grad(log_probs, targets, frames, lengths, reduction=reduction), grad
    )
    # the one alignment of [1, 1] in 3 frames (1, blank, 1) takes -1e308 twice in frames
    # whose largest entry is 0 (no shift helps): still NaN, as documented
    forced = np.zeros((3, 1, 3))
    forced[[0, 2], 0, 1] = -1e308
    assert np.isnan(ctc_loss_grad(forced, np.array([[1, 1]]), [3], [2])).all()


@pytest.mark.parametrize("size", [1e10, 1e100, 1e300])
def test_gradient_of_large_finite_losses_within_4_ulp(size):
    # log-probabilities of magnitude size / 40 over 40 frames (a loss about size): the
    # exponents alpha + beta - loss sum terms as large as the loss, and the first-order
    # e^d (1 + delta) of each log-sum-exp dropped delta^2 (delta the low parts' difference,
    # an ULP of them): 7e3 ULP at a loss of 1e10, every digit (posteriors off by 0.2 and
    # more, or outside [-1, 0]) from 1e14 on. The second sample is ordinary
    rng = np.random.default_rng(5)
    log_probs = np.empty((40, 2, 5))
    log_probs[:, 0] = -size / 40 * (1 + rng.random((40, 1))) + rng.normal(scale=2.0, size=(40, 5))
    log_probs[:, 1] = batch(6, 40, 1, 5)[:, 0]
    targets, frames, lengths = np.array([[1, 2, 3, 3, 4], [2, 4, 0, 0, 0]]), [40, 40], [5, 2]
    exact = [forward_backward(log_probs[:, n], targets[n, : lengths[n]], 40) for n in (0, 1)]
    assert exact[0][0] > size / 2
    args = (log_probs, targets, frames, lengths)
    for reduction in REDUCTIONS:
        expected = scaled_grads([g for _, g in exact], lengths, reduction, log_probs.shape)
        grad = ctc_loss_grad(*args, reduction=reduction)
        assert_close_to_exact(grad, expected, 4, f"ctc_loss_grad {reduction}")
        # (a finite loss: zero_infinity changes nothing)
        grad = ctc_loss_grad(*args, reduction=reduction, zero_infinity=True)
        assert_close_to_exact(grad, expected, 4, f"ctc_loss_grad {reduction} zero_infinity")


def test_gradient_of_large_finite_losses_other_cases():
    rng = np.random.default_rng(7)
    cases = []
    # float32 log-probabilities near -1e36 (a loss of 4e37 in float32's range: 9e10 ULP
    # before)
    cases.append((np.float32, -1e36 * (1 + rng.random((40, 1))) + rng.normal(size=(40, 5)), 40))
    # unnormalised, the frames' largest alternating +-1e12: a loss of a few units, forward
    # variables of 1e12 (1e7 ULP before)
    sign = np.where(np.arange(6) % 2, -1.0, 1.0)[:, None]
    cases.append((np.float64, 1e12 * sign + rng.normal(size=(6, 5)), 6))
    # the target's labels forced through entries of about -1e12 in frames whose blank is
    # ordinary (no shift applies: the loss stays 3e12; 9e7 ULP before)
    forced = rng.normal(size=(6, 5))
    forced[:, [1, 2, 3]] = -1e12 + rng.normal(size=(6, 3))
    cases.append((np.float64, forced, 6))
    for dtype, log_probs, t in cases:
        log_probs = log_probs.astype(dtype)
        target = [1, 2, 3, 3] if t == 40 else [1, 3, 3]
        _, g = forward_backward(log_probs.astype(np.float64), target, t)
        expected = scaled_grads([g], [len(target)], "sum", (t, 1, 5))
        grad = ctc_loss_grad(
            log_probs[:, None], np.array([target]), [t], [len(target)], reduction="sum"
        )
        assert grad.dtype == dtype
        assert_close_to_exact(grad, expected, 4, f"ctc_loss_grad {dtype.__name__}")
