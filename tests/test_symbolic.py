"""Tests of lossutils.symbolic: the SymPy derivations every chapter is built on."""

import mpmath
import numpy as np
import pytest
import sympy as sp

from lossutils import symbolic as ls
from lossutils.testing import assert_ulp_close

y, yhat, mu, z = sp.symbols("y yhat mu z", real=True)
beta, b = sp.symbols("beta b", positive=True)
i, j, n = sp.symbols("i j n", integer=True, nonnegative=True)
Y, F = sp.IndexedBase("y", real=True), sp.IndexedBase("f", real=True)


def test_gaussian_negative_log_is_the_textbook_formula():
    nll = ls.negative_log(ls.gaussian_pdf(y, yhat, beta))
    textbook = beta * (y - yhat) ** 2 / 2 - sp.log(beta) / 2 + sp.log(2 * sp.pi) / 2
    assert sp.simplify(sp.expand_log(nll - textbook, force=True)) == 0
    # no log of an exp is left over: the log cancelled the exp
    assert not nll.has(sp.exp)


def test_gaussian_pdf_integrates_to_one_and_has_the_right_variance():
    pdf = ls.gaussian_pdf(y, mu, beta)
    assert sp.simplify(sp.integrate(pdf, (y, -sp.oo, sp.oo))) == 1
    assert sp.simplify(sp.integrate((y - mu) ** 2 * pdf, (y, -sp.oo, sp.oo)) - 1 / beta) == 0


def test_laplace_negative_log():
    nll = ls.negative_log(ls.laplace_pdf(y, mu, b))
    assert sp.simplify(nll - (sp.log(2 * b) + sp.Abs(y - mu) / b)) == 0


def test_sigmoid_derivative_identity():
    s_exp = 1 / (1 + sp.exp(-z))
    assert sp.simplify(sp.diff(ls.sigmoid(z), z).rewrite(sp.exp) - sp.diff(s_exp, z)) == 0
    assert sp.diff(ls.sigmoid(z), z) == ls.sigmoid(z) * (1 - ls.sigmoid(z))
    assert sp.diff(ls.softplus(z), z) == ls.sigmoid(z)
    assert sp.simplify(sp.diff(ls.softplus(z).rewrite(sp.exp), z) - s_exp) == 0


def test_latex_of_a_power_of_sigmoid_and_softplus():
    # the LaTeX printer passes ``exp=`` for a power of a function (it used to raise)
    gamma = sp.Symbol("gamma")
    assert sp.latex(ls.sigmoid(z)) == r"\sigma\left(z\right)"
    assert sp.latex(ls.sigmoid(-z) ** gamma) == r"\left(\sigma\left(- z\right)\right)^{\gamma}"
    assert sp.latex(ls.softplus(z) ** 2) == (
        r"\left(\operatorname{softplus}\left(z\right)\right)^{2}"
    )


def test_bernoulli_logit_gradient_is_sigmoid_minus_label():
    nll = ls.negative_log(ls.bernoulli_pmf(y, ls.sigmoid(z)))
    assert sp.simplify(sp.diff(nll, z) - (ls.sigmoid(z) - y)) == 0


def test_sigmoid_and_softplus_evaluate_to_high_precision():
    for value in ["-30", "-0.5", "0", "2.25", "40"]:
        with mpmath.workdps(50):
            x = mpmath.mpf(value)
            sigma = 1 / (1 + mpmath.exp(-x))
            soft = mpmath.log1p(mpmath.exp(x))
            assert abs(ls.sigmoid(sp.Float(value, 50)).evalf(40) - sigma) < mpmath.mpf(10) ** -38
            assert abs(ls.softplus(sp.Float(value, 50)).evalf(40) - soft) < mpmath.mpf(10) ** -38
    assert ls.sigmoid(sp.oo) == 1 and ls.sigmoid(-sp.oo) == 0 and ls.sigmoid(0) == sp.S.Half
    assert ls.softplus(0) == sp.log(2)


def test_categorical_logit_gradient_is_softmax_minus_onehot():
    zs = sp.symbols("z0:3", real=True)
    ys = sp.symbols("y0:3", nonnegative=True)
    probs = [sp.exp(zk) / sum(sp.exp(zj) for zj in zs) for zk in zs]
    nll = ls.negative_log(ls.categorical_pmf(ys, probs))
    for k in range(3):
        grad = sp.diff(nll, zs[k]).subs(ys[2], 1 - ys[0] - ys[1])
        assert sp.simplify(grad - (probs[k] - [ys[0], ys[1], 1 - ys[0] - ys[1]][k])) == 0


def test_categorical_product_over_symbolic_classes():
    k, K = sp.symbols("k K", integer=True, positive=True)
    P = sp.IndexedBase("p", positive=True)
    nll = ls.negative_log(ls.categorical_pmf(Y[k], (P[k], (k, 0, K - 1))))
    expected = -sp.Sum(Y[k] * sp.log(P[k]), (k, 0, K - 1))
    at_three = (nll - expected).subs(K, 3).doit()
    assert sp.simplify(sp.expand_log(at_three, force=True)) == 0


def test_iid_nll_is_the_sum_of_per_sample_negative_logs():
    nll = ls.iid_negative_log_likelihood(ls.gaussian_pdf(Y[i], F[i], beta), i, n)
    assert isinstance(nll, sp.Sum) and nll.limits == ((i, 0, n - 1),)
    rng = np.random.default_rng(0)
    ys, fs = rng.normal(size=5), rng.normal(size=5)
    numeric = ls.to_numpy(nll.subs(n, 5), [Y, F, beta])(ys, fs, 2.0)
    direct = -np.sum(np.log(np.sqrt(2.0 / (2 * np.pi)) * np.exp(-((ys - fs) ** 2))))
    np.testing.assert_allclose(numeric, direct, rtol=1e-13)


def test_drop_constants_invariant_and_result():
    nll = ls.iid_negative_log_likelihood(ls.gaussian_pdf(Y[i], F[i], beta), i, n)
    kept, dropped = ls.drop_constants(nll, [F])
    assert sp.simplify((kept + dropped - nll).subs(n, 4).doit()) == 0
    assert not dropped.has(F)
    assert sp.simplify(kept.doit() - sp.Sum(beta * (Y[i] - F[i]) ** 2 / 2, (i, 0, n - 1))) == 0
    assert sp.simplify(dropped.doit() - n * (sp.log(2 * sp.pi) - sp.log(beta)) / 2) == 0


def test_drop_constants_keeps_parameter_terms_of_a_scalar_expression():
    expr = mu**2 + 3 * mu + sp.log(beta) + 7
    kept, dropped = ls.drop_constants(expr, [mu])
    assert kept == mu**2 + 3 * mu and dropped == sp.log(beta) + 7
    kept, dropped = ls.drop_constants(expr, [mu, beta])
    assert kept == mu**2 + 3 * mu + sp.log(beta) and dropped == 7


def test_additive_terms_splits_a_scaled_sum():
    expr = sp.Sum(F[i] ** 2 + Y[i], (i, 0, n - 1)) / n
    terms = ls.additive_terms(expr)
    assert len(terms) == 2
    assert sp.simplify(sum(terms, sp.S.Zero).subs(n, 3).doit() - expr.subs(n, 3).doit()) == 0


def test_derivative_of_a_sum_over_samples():
    loss = sp.Sum((Y[i] - F[i]) ** 2, (i, 0, n - 1)) / n
    grad = ls.derivative(loss, F[j])
    assert not grad.has(sp.Piecewise, sp.Sum)
    assert sp.simplify(grad - 2 * (F[j] - Y[j]) / n) == 0


def test_stabilize_rewrites_and_preserves_values():
    bce = ls.negative_log(ls.bernoulli_pmf(y, ls.sigmoid(z)))
    stable = ls.stabilize(bce)
    assert not stable.has(sp.log)
    assert ls.stabilize(sp.log(1 + sp.exp(z))) == ls.softplus(z)
    for zv, yv in [("-7/2", "1/5"), ("1/4", "1"), ("4", "0")]:
        zv, yv = sp.Rational(zv), sp.Rational(yv)
        a = sp.N(bce.subs({z: zv, y: yv}).rewrite(sp.exp), 30)
        s = sp.N(stable.subs({z: zv, y: yv}).rewrite(sp.exp), 30)
        assert abs(a - s) < 1e-25


def test_to_numpy_is_stable_at_extreme_logits():
    nll = ls.negative_log(ls.bernoulli_pmf(y, ls.sigmoid(z)))
    f = ls.to_numpy(nll, [z, y])
    zs = np.array([-1e4, -800.0, -40.0, 0.0, 40.0, 800.0, 1e4])
    with mpmath.workdps(400):
        reference = [mpmath.log1p(mpmath.exp(-mpmath.mpf(v))) for v in zs]
    assert_ulp_close(f(zs, np.ones_like(zs)), reference, label="softplus(-z)")
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        textbook = ls.to_numpy(nll, [z, y], stable=False)(zs, np.ones_like(zs))
    assert not np.all(np.isfinite(textbook))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="params"):
        ls.drop_constants(mu**2, [])
    with pytest.raises(ValueError, match="same length"):
        ls.categorical_pmf([y], [mu, z])
