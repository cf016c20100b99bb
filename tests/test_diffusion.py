"""DDPM pieces: the posterior q(x_{t-1} | x_t, x_0), the bound's weights, the noise loss.

References are independent: the posterior from Bayes' rule (precisions add) and the weights
from the KL divergence between the posterior and the reverse model, both in mpmath at 60
digits from the exact schedule; the loss against mpmath sums of squares.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from lossutils import (
    ddpm_elbo_weights,
    ddpm_noise_loss,
    ddpm_noise_loss_grad,
    ddpm_noise_loss_value_and_grad,
    ddpm_posterior,
)
from lossutils.testing import assert_close_to_exact, assert_gradient_matches

DTYPES = [np.float16, np.float32, np.float64]
SCHEDULES = {
    "linear-1000": np.linspace(1e-4, 0.02, 1000),
    "short": np.linspace(0.01, 0.3, 20),
    "tiny": np.full(50, 1e-7),
    # alpha_bar below float64's range from step 1075 on, while its square root (in a) is not
    "underflowing": np.full(1100, 0.5),
    # a itself subnormal from about step 1180, then 0
    "steep": np.full(1300, 0.7),
}


def exact_schedule(betas):
    with mpmath.workdps(60):
        beta = [mpmath.mpf(float(b)) for b in betas]
        alpha_bar = [mpmath.mpf(1)]
        for b in beta:
            alpha_bar.append(alpha_bar[-1] * (1 - b))
    return beta, alpha_bar


def bayes_posterior(betas):
    """Mean coefficients and variance of q(x_{t-1} | x_t, x_0) ~ q(x_t | x_{t-1}) q(x_{t-1} | x_0)."""
    beta, alpha_bar = exact_schedule(betas)
    a, b, var = [], [], []
    with mpmath.workdps(60):
        for t in range(1, len(beta) + 1):
            if t == 1:  # q(x_0 | x_0) is the point x_0
                a.append(mpmath.mpf(1)), b.append(mpmath.mpf(0)), var.append(mpmath.mpf(0))
                continue
            prior_var = 1 - alpha_bar[t - 1]
            precision = (1 - beta[t - 1]) / beta[t - 1] + 1 / prior_var
            v = 1 / precision
            b.append(v * mpmath.sqrt(1 - beta[t - 1]) / beta[t - 1])
            a.append(v * mpmath.sqrt(alpha_bar[t - 1]) / prior_var)
            var.append(v)
    return [np.array(x, dtype=object) for x in (a, b, var)]


def kl_weights(betas):
    """lambda_t from KL(N(m1, s1) || N(m2, s2)) with m1 - m2 = c (eps - eps_hat): the factor
    of (eps - eps_hat)^2, c = beta_t / (sqrt(1 - beta_t) sqrt(1 - alpha_bar_t))."""
    beta, alpha_bar = exact_schedule(betas)
    _, _, posterior_var = bayes_posterior(betas)
    out = []
    with mpmath.workdps(60):
        for t in range(1, len(beta) + 1):
            sigma2 = beta[0] if t == 1 else posterior_var[t - 1]
            c = beta[t - 1] / (mpmath.sqrt(1 - beta[t - 1]) * mpmath.sqrt(1 - alpha_bar[t]))
            out.append(c**2 / (2 * sigma2))
    return np.array(out, dtype=object)


def _mp_noise_loss(pred, noise, t, betas, reduction):
    """The exact ``ddpm_noise_loss`` (KL weights, ``reduction``) of the given rows and its
    gradient w.r.t. ``pred``, ``2 w_t r / N`` for the mean, in mpmath at 60 digits."""
    weights, n = kl_weights(betas), len(pred)
    with mpmath.workdps(60):
        r = [
            [mpmath.mpf(float(p)) - mpmath.mpf(float(q)) for p, q in zip(*row, strict=True)]
            for row in zip(pred, noise, strict=True)
        ]
        per = [weights[t[i] - 1] * mpmath.fsum(v**2 for v in r[i]) for i in range(n)]
        scale = mpmath.mpf(1) / n if reduction == "mean" else 1
        if reduction == "none":
            value = np.array(per, dtype=object)
        else:
            value = mpmath.fsum(per) * scale
        slopes = [[2 * weights[t[i] - 1] * scale * v for v in r[i]] for i in range(n)]
    return value, np.array(slopes, dtype=object)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_posterior_is_bayes_rule(name, dtype):
    betas = SCHEDULES[name].astype(dtype)
    got = ddpm_posterior(betas)
    for value, reference, label in zip(got, bayes_posterior(betas), "ab", strict=False):
        assert value.dtype == dtype
        assert_close_to_exact(value, reference, 4, label)
    assert_close_to_exact(got[2], bayes_posterior(betas)[2], 4, "variance")


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_weights_are_the_kl_factors(name, dtype):
    betas = SCHEDULES[name].astype(dtype)
    weights = ddpm_elbo_weights(betas)
    assert weights.dtype == dtype
    assert_close_to_exact(weights, kl_weights(betas), 4)


def test_kl_between_gaussians_is_the_weighted_noise_error():
    # KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for the noise-parametrised mean equals
    # lambda_t (eps - eps_hat)^2, on random draws (t >= 2, sigma_t^2 = posterior variance)
    rng = np.random.default_rng(0)
    betas = SCHEDULES["short"]
    a, b, var = ddpm_posterior(betas)
    weights = ddpm_elbo_weights(betas)
    alpha_bar = np.cumprod(1 - betas)
    for t in range(2, len(betas) + 1):
        x0, eps, eps_hat = rng.normal(size=3)
        xt = np.sqrt(alpha_bar[t - 1]) * x0 + np.sqrt(1 - alpha_bar[t - 1]) * eps
        posterior_mean = a[t - 1] * x0 + b[t - 1] * xt
        coef = betas[t - 1] / np.sqrt(1 - alpha_bar[t - 1])
        model_mean = (xt - coef * eps_hat) / np.sqrt(1 - betas[t - 1])
        kl = (posterior_mean - model_mean) ** 2 / (2 * var[t - 1])
        np.testing.assert_allclose(kl, weights[t - 1] * (eps - eps_hat) ** 2, rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighting", ["elbo", "simple"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_noise_loss_against_mpmath(dtype, weighting, reduction):
    rng = np.random.default_rng(1)
    betas = SCHEDULES["short"].astype(dtype)  # the references see the rounded schedule
    pred = rng.normal(size=(6, 3)).astype(dtype)
    noise = (pred + rng.normal(scale=1e-3, size=(6, 3))).astype(dtype)  # near the optimum
    t = np.array([1, 2, 5, 10, 19, 20])
    weights = kl_weights(betas) if weighting == "elbo" else np.full(20, mpmath.mpf(1), object)
    with mpmath.workdps(60):
        per = [
            weights[t[i] - 1]
            * mpmath.fsum(
                (mpmath.mpf(float(p)) - mpmath.mpf(float(q))) ** 2
                for p, q in zip(pred[i], noise[i], strict=True)
            )
            for i in range(6)
        ]
        if reduction == "sum":
            reference = mpmath.fsum(per)
        elif reduction == "mean":
            reference = mpmath.fsum(per) / 6
        else:
            reference = np.array(per, dtype=object)
    got = ddpm_noise_loss(pred, noise, t, betas, weighting=weighting, reduction=reduction)
    assert np.asarray(got).dtype == dtype
    assert_close_to_exact(got, reference, 4)
    grad = ddpm_noise_loss_grad(pred, noise, t, betas, weighting=weighting, reduction=reduction)
    assert grad.dtype == dtype and grad.shape == pred.shape
    with mpmath.workdps(60):
        scale = mpmath.mpf(1) / 6 if reduction == "mean" else 1
        expected = np.array(
            [
                [
                    2 * weights[t[i] - 1] * scale * (mpmath.mpf(float(p)) - mpmath.mpf(float(q)))
                    for p, q in zip(pred[i], noise[i], strict=True)
                ]
                for i in range(6)
            ],
            dtype=object,
        )
    assert_close_to_exact(grad, expected, 4)


@pytest.mark.parametrize(
    "data, schedule", [(np.float32, np.float64), (np.float16, np.float64), (np.float16, np.float32)]
)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_noise_loss_of_narrow_data_with_a_wider_schedule(data, schedule, reduction):
    # the result has the schedule's wider dtype and its accuracy: the residuals of the
    # narrow data are exact there (float32 data with float64 betas were subtracted in
    # float32, 4e8 ULP off; float16 data with float32 betas in float16)
    rng = np.random.default_rng(3)
    betas = SCHEDULES["short"].astype(schedule)
    # (independent, not near each other: a difference of nearby numbers is exact anyway)
    pred, noise = (rng.normal(size=(6, 3)).astype(data) for _ in range(2))
    t = np.array([1, 2, 5, 10, 19, 20])
    value, slopes = _mp_noise_loss(pred, noise, t, betas, reduction)
    loss, grad = ddpm_noise_loss_value_and_grad(pred, noise, t, betas, reduction=reduction)
    assert np.asarray(loss).dtype == schedule and grad.dtype == data
    assert_close_to_exact(loss, value, 4)
    assert_close_to_exact(grad, slopes, 1)  # (one rounding to the data's dtype)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_float64_residuals_beyond_the_range_and_small_weights(reduction):
    # the squares of 1e155 overflow float64 while their sum times the weight 1e-300 does
    # not (it was inf for 1.16e10), and the residual 1e308 - (-1e308) overflows while the
    # gradient 2 w r / N (w = 1e-305) does not (it was inf for 0.0133)
    betas = np.array([0.5, 1e-300, 1e-305])
    pred = np.array([[1e155, 3e154], [1e308, 0.0], [1.0, 2.0]])
    noise = np.array([[0.0, -1e154], [-1e308, 5.0], [0.0, 0.0]])
    t = np.array([2, 3, 1])
    reference, expected = _mp_noise_loss(pred, noise, t, betas, reduction)
    value, grad = ddpm_noise_loss_value_and_grad(pred, noise, t, betas, reduction=reduction)
    assert_close_to_exact(value, reference, 4, "loss")
    assert_close_to_exact(grad, expected, 4, "gradient")
    assert np.array_equal(ddpm_noise_loss(pred, noise, t, betas, reduction=reduction), value)
    assert np.array_equal(ddpm_noise_loss_grad(pred, noise, t, betas, reduction=reduction), grad)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    args = (
        rng.normal(size=(4, 2, 3)),
        rng.normal(size=(4, 2, 3)),
        np.array([1, 4, 2, 3]),
        [0.1, 0.2, 0.3, 0.4],
    )
    for weighting in ("elbo", "simple"):
        for reduction in ("mean", "sum", "none"):
            assert_gradient_matches(
                ddpm_noise_loss,
                ddpm_noise_loss_grad,
                args,
                (0,),
                kwargs={"weighting": weighting, "reduction": reduction},
                rtol=1e-6,
                atol=1e-9,
            )


def test_simple_mean_is_features_times_mse():
    rng = np.random.default_rng(3)
    pred, noise = rng.normal(size=(2, 5, 4))
    loss = ddpm_noise_loss(pred, noise, np.array([1, 2, 3, 4, 5]), np.full(5, 0.1), "simple")
    np.testing.assert_allclose(loss, 4 * np.mean((pred - noise) ** 2), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_narrow_noise_loss_from_its_residuals(dtype, reduction):
    # float16: the residuals exact in float64 and the results rounded once (subtracted in
    # float16, they were rounded there: a loss of 5.3125, not 5.3164, the exact 5.31623
    # rounded, and gradient entries 1.1 ULP off). float32: a residual rounded once in
    # float32 (2u relative in its square), as the docstring states
    rng = np.random.default_rng(3)
    betas = SCHEDULES["short"].astype(dtype)
    pred = rng.normal(size=(40, 5)).astype(dtype)
    noise = (rng.normal(size=(40, 5)) * 10.0 ** rng.integers(-4, 2, size=(40, 5))).astype(dtype)
    t = rng.integers(1, 21, size=40)
    reference, slopes = _mp_noise_loss(pred, noise, t, betas, reduction)
    got = ddpm_noise_loss(pred, noise, t, betas, reduction=reduction)
    bound, grad_bound = (0.501, 0.501) if dtype == np.float16 else (2.5, 1.5)
    assert_close_to_exact(got, reference, bound, "ddpm_noise_loss")
    grad = ddpm_noise_loss_grad(pred, noise, t, betas, reduction=reduction)
    assert_close_to_exact(grad, slopes, grad_bound, "ddpm_noise_loss_grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(dtype):
    empty = np.zeros((0, 3), dtype=dtype)
    args = (empty, empty, np.zeros(0, int), [0.1, 0.2])
    assert np.isnan(ddpm_noise_loss(*args)) and ddpm_noise_loss(*args, reduction="sum") == 0
    assert ddpm_noise_loss(*args, reduction="none").shape == (0,)
    assert ddpm_noise_loss_grad(*args).shape == (0, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 0), (2, 3, 0)])
def test_no_features(dtype, shape):
    # a sample with no features sums no squares: its loss is 0, its gradient has no entries
    zeros = np.zeros(shape, dtype=dtype)
    args = (zeros, zeros, np.array([1, 2]), np.array([0.1, 0.2], dtype=dtype))
    for reduction, expected in [("mean", 0.0), ("sum", 0.0), ("none", np.zeros(2))]:
        value, grad = ddpm_noise_loss_value_and_grad(*args, reduction=reduction)
        assert np.asarray(value).dtype == dtype and np.array_equal(value, expected)
        assert grad.shape == shape and grad.dtype == dtype
        assert np.array_equal(ddpm_noise_loss(*args, reduction=reduction), value)
        assert ddpm_noise_loss_grad(*args, reduction=reduction).shape == shape


def test_infinite_noise_prediction():
    loss = ddpm_noise_loss(
        np.array([[np.inf], [0.0]]),
        np.zeros((2, 1)),
        np.array([1, 2]),
        [0.1, 0.2],
        reduction="none",
    )
    assert loss[0] == np.inf and loss[1] == 0


@pytest.mark.parametrize(
    ("f", "args", "match"),
    [
        (ddpm_posterior, ([0.1, 1.0],), r"betas must lie in \(0, 1\); got 1.0"),
        (ddpm_posterior, ([[0.1]],), "betas must be a non-empty 1-D array"),
        (ddpm_elbo_weights, ([],), "betas must be a non-empty 1-D array"),
        (ddpm_elbo_weights, ([-0.1],), r"betas must lie in \(0, 1\)"),
        (
            ddpm_noise_loss,
            (np.zeros((2, 1)), np.zeros((2, 1)), np.array([0, 1]), [0.1]),
            r"t must hold steps in \[1, 1\]; got 0",
        ),
        (
            ddpm_noise_loss,
            (np.zeros((2, 1)), np.zeros((2, 1)), np.array([1.0, 1.0]), [0.1]),
            r"t must be an integer array of shape \(2,\)",
        ),
        (
            ddpm_noise_loss,
            (np.zeros((2, 1)), np.zeros((2, 2)), np.array([1, 1]), [0.1]),
            "noise must have the same shape",
        ),
        (
            ddpm_noise_loss,
            (np.zeros(()), np.zeros(()), np.array(1), [0.1]),
            "noise_pred must have a batch axis",
        ),
    ],
)
@pytest.mark.parametrize("grad", [False, True])
def test_bad_input(f, args, match, grad):
    if grad and f is ddpm_noise_loss:
        f = ddpm_noise_loss_grad
    with pytest.raises(ValueError, match=match):
        f(*args)


@pytest.mark.parametrize("f", [ddpm_noise_loss, ddpm_noise_loss_grad])
def test_unknown_weighting(f):
    with pytest.raises(ValueError, match="weighting must be one of 'elbo', 'simple'; got 'vlb'"):
        f(np.zeros((1, 1)), np.zeros((1, 1)), np.array([1]), [0.1], weighting="vlb")


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_noise_loss_dtype_is_the_promotion_of_its_arguments(dtype):
    # as every loss: NumPy's promotion of the floating arguments, betas included (float16
    # predictions next to float64 betas gave float16); the gradient keeps noise_pred's dtype
    pred, noise = np.ones((2, 3), dtype=dtype), np.zeros((2, 3), dtype=dtype)
    t = np.array([1, 2])
    for betas, expected in [
        (np.array([0.1, 0.2], dtype=dtype), dtype),
        (np.array([0.1, 0.2]), np.float64),
        ([0.1, 0.2], np.float64),
    ]:
        for reduction in ("mean", "none"):
            assert (
                np.asarray(ddpm_noise_loss(pred, noise, t, betas, reduction=reduction)).dtype
                == expected
            )
        assert ddpm_noise_loss_grad(pred, noise, t, betas).dtype == dtype
