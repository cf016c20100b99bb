r"""SymPy side of the book: densities -> negative log-likelihood -> loss, gradients.

Every chapter derives its loss in the same few lines:

>>> import sympy as sp
>>> y, yhat = sp.symbols("y yhat", real=True)
>>> beta = sp.Symbol("beta", positive=True)
>>> nll = negative_log(gaussian_pdf(y, yhat, beta))
>>> loss, constant = drop_constants(nll, [yhat])
>>> loss
beta*(y - yhat)**2/2
>>> sp.factor(sp.diff(loss, yhat))
-beta*(y - yhat)

and then checks the numbers of ``lossutils`` against :func:`to_numpy` of the
derived expression. SymPy (and mpmath) are needed only for this module, which
is why ``lossutils`` does not import it: ``from lossutils import symbolic``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sympy as sp
from sympy import stats

from . import activations

__all__ = [
    "sigmoid",
    "softplus",
    "gaussian_pdf",
    "laplace_pdf",
    "bernoulli_pmf",
    "categorical_pmf",
    "negative_log",
    "iid_negative_log_likelihood",
    "additive_terms",
    "drop_constants",
    "derivative",
    "gaussian_expectation",
    "stabilize",
    "to_numpy",
    "to_mpmath",
    "equation_latex",
    "glue_equation",
]


class _PositiveFunction(sp.Function):
    """A real function of one real argument with positive values, evaluated via its exp form."""

    nargs = 1
    latex_name = ""
    special_values: dict = {}

    @classmethod
    def eval(cls, z):
        return cls.special_values.get(z)

    def _eval_evalf(self, prec):
        return self.rewrite(sp.exp)._eval_evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return self.args[0].is_extended_real

    def _latex(self, printer, exp=None):
        tex = self.latex_name + r"\left(" + printer._print(self.args[0]) + r"\right)"
        # the LaTeX printer passes the exponent of a power of a function
        return tex if exp is None else r"\left(" + tex + r"\right)^{" + exp + "}"


class sigmoid(_PositiveFunction):  # noqa: N801 - named like the mathematical function
    r"""The logistic sigmoid :math:`\sigma(z) = 1 / (1 + e^{-z})` as a SymPy function.

    Kept as one symbol (rather than its exp form) so that derivatives stay short:
    :math:`\sigma'(z) = \sigma(z)(1 - \sigma(z))`, and the logit gradient of the
    Bernoulli negative log-likelihood simplifies to :math:`\sigma(z) - y`.
    ``rewrite(sp.exp)`` gives the exp form; numbers evaluate with ``evalf``.

    Examples
    --------
    >>> z = sp.Symbol("z", real=True)
    >>> sp.diff(sigmoid(z), z)
    (1 - sigmoid(z))*sigmoid(z)
    >>> sigmoid(z).rewrite(sp.exp)
    1/(1 + exp(-z))
    >>> sigmoid(0), sigmoid(1).evalf(6)
    (1/2, 0.731059)
    """

    latex_name = r"\sigma"
    special_values = {0: sp.S.Half, sp.oo: sp.S.One, -sp.oo: sp.S.Zero}

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, z, **kwargs):
        return 1 / (1 + sp.exp(-z))


class softplus(_PositiveFunction):  # noqa: N801 - named like the mathematical function
    r"""Softplus :math:`\log(1 + e^{z})` as a SymPy function; its derivative is :math:`\sigma(z)`.

    Examples
    --------
    >>> z = sp.Symbol("z", real=True)
    >>> sp.diff(softplus(z), z)
    sigmoid(z)
    >>> softplus(z).rewrite(sp.exp)
    log(exp(z) + 1)
    >>> softplus(0)
    log(2)
    """

    latex_name = r"\operatorname{softplus}"
    special_values = {0: sp.log(2), sp.oo: sp.oo, -sp.oo: sp.S.Zero}

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, z, **kwargs):
        return sp.log(1 + sp.exp(z))

    def _eval_rewrite_as_sigmoid(self, z, **kwargs):
        return -sp.log(sigmoid(-z))


# --------------------------------------------------------------------------- densities


def gaussian_pdf(y, mean, precision):
    r"""The Gaussian density :math:`\mathcal{N}(y \mid \mu, \beta^{-1})`, precision :math:`\beta`.

    .. math:: \sqrt{\beta / (2\pi)}\, \exp\!\left(-\tfrac{\beta}{2}(y - \mu)^2\right)

    Built with ``sympy.stats.Normal`` (standard deviation :math:`1/\sqrt{\beta}`).
    Pass ``precision=1/var`` for the variance form. See :cite:t:`bishop2006pattern`, section 1.2.4.

    Examples
    --------
    >>> y, mu = sp.symbols("y mu", real=True)
    >>> gaussian_pdf(y, mu, 1)
    sqrt(2)*exp(-(-mu + y)**2/2)/(2*sqrt(pi))
    """
    return stats.density(stats.Normal("Y", mean, 1 / sp.sqrt(precision)))(y)


def laplace_pdf(y, mean, scale):
    r"""The Laplace density :math:`\exp(-|y - \mu| / b) / (2b)` with scale :math:`b`.

    Examples
    --------
    >>> y, mu = sp.symbols("y mu", real=True)
    >>> b = sp.Symbol("b", positive=True)
    >>> negative_log(laplace_pdf(y, mu, b))
    log(b) + log(2) + Abs(mu - y)/b
    """
    return stats.density(stats.Laplace("Y", mean, scale))(y)


def bernoulli_pmf(y, p):
    r"""The Bernoulli probability :math:`p^{y} (1 - p)^{1 - y}` of a label :math:`y \in \{0, 1\}`.

    Written out (``sympy.stats.Bernoulli`` gives a dict, not an expression in ``y``).

    Examples
    --------
    >>> y, p = sp.symbols("y p", real=True)
    >>> negative_log(bernoulli_pmf(y, p))
    -y*log(p) - (1 - y)*log(1 - p)
    """
    return p**y * (1 - p) ** (1 - y)


def categorical_pmf(y_onehot, p):
    r"""The categorical probability :math:`\prod_k p_k^{y_k}` of a one-hot label.

    Parameters
    ----------
    y_onehot, p : sequence of SymPy expressions, or IndexedBase with ``(k, K)``
        Either two sequences of the same length (an explicit product over the
        classes), or ``(y[k], p[k])`` as ``sympy.Indexed`` with the class
        index ``k``: then pass ``p`` as ``(p[k], (k, 0, K - 1))`` to get a
        ``sympy.Product`` over a symbolic number of classes.

    Raises
    ------
    ValueError
        If ``y_onehot`` and ``p`` are sequences of different lengths.

    Examples
    --------
    >>> y = sp.symbols("y0:3", nonnegative=True)
    >>> p = sp.symbols("p0:3", positive=True)
    >>> negative_log(categorical_pmf(y, p))
    -y0*log(p0) - y1*log(p1) - y2*log(p2)
    >>> k, K = sp.symbols("k K", integer=True, positive=True)
    >>> Y, P = sp.IndexedBase("y"), sp.IndexedBase("p", positive=True)
    >>> negative_log(categorical_pmf(Y[k], (P[k], (k, 0, K - 1))))
    -Sum(log(p[k])*y[k], (k, 0, K - 1))
    """
    if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], tuple):
        term, limits = p
        return sp.Product(term**y_onehot, limits)
    y_onehot, p = list(y_onehot), list(p)
    if len(y_onehot) != len(p):
        raise ValueError(
            f"y_onehot and p must have the same length; got {len(y_onehot)} and {len(p)}"
        )
    return sp.Mul(*[pk**yk for yk, pk in zip(y_onehot, p, strict=True)])


# --------------------------------------------------------------------------- likelihood -> loss


def negative_log(expr):
    r""":math:`-\log` of a density, with the logs of products and powers split.

    ``expand_log(..., force=True)``: the log of a product is the sum of the logs
    and the log cancels the exp. A ``sympy.Product`` becomes a
    ``sympy.Sum`` of logs.

    Examples
    --------
    >>> x, a = sp.symbols("x a", real=True)
    >>> negative_log(sp.exp(-(x**2)) * a**2)
    x**2 - 2*log(a)
    """
    expr = sp.sympify(expr).replace(
        lambda e: isinstance(e, sp.Product),
        lambda e: sp.exp(sp.Sum(sp.log(e.function), *e.limits)),
    )
    out = sp.expand_log(-sp.log(expr), force=True)
    # expand_log does not reach inside a Sum
    return out.replace(
        lambda e: isinstance(e, sp.Sum),
        lambda e: sp.Sum(sp.expand_log(e.function, force=True), *e.limits),
    )


def iid_negative_log_likelihood(density_of_i, i, n):
    r"""The negative log-likelihood of ``n`` i.i.d. samples, :math:`-\sum_{i=0}^{n-1} \log p_i`.

    The likelihood of independent samples is the product of their densities;
    its negative log is the sum of the per-sample negative logs. The limits are
    0-based, so :func:`to_numpy` can index NumPy arrays with ``i``.

    Parameters
    ----------
    density_of_i : SymPy expression
        The density (or probability) of sample ``i``, written with indexed
        symbols such as ``y[i]``.
    i : Symbol
        The sample index (an integer symbol).
    n : Symbol or int
        The number of samples.

    Examples
    --------
    >>> i, n = sp.symbols("i n", integer=True, nonnegative=True)
    >>> y, f = sp.IndexedBase("y", real=True), sp.IndexedBase("f", real=True)
    >>> iid_negative_log_likelihood(gaussian_pdf(y[i], f[i], 1), i, n)
    Sum((-f[i] + y[i])**2/2 + log(2)/2 + log(pi)/2, (i, 0, n - 1))
    """
    return sp.Sum(negative_log(density_of_i), (i, 0, n - 1))


def additive_terms(expr) -> list:
    """The additive terms of ``expr``, splitting sums and constant multiples of sums.

    ``Sum(a + b)`` contributes ``Sum(a)`` and ``Sum(b)``; ``c * Sum(a + b)``
    contributes ``c * Sum(a)`` and ``c * Sum(b)``. Powers are not expanded, so
    a squared residual stays one term.

    Examples
    --------
    >>> i, n = sp.symbols("i n", integer=True)
    >>> x = sp.IndexedBase("x")
    >>> additive_terms(sp.Sum(x[i] ** 2 + 1, (i, 0, n - 1)) / n)
    [Sum(1, (i, 0, n - 1))/n, Sum(x[i]**2, (i, 0, n - 1))/n]
    """
    expr = sp.sympify(expr)
    if isinstance(expr, sp.Add):
        return [t for arg in expr.args for t in additive_terms(arg)]
    if isinstance(expr, sp.Sum):
        inner = additive_terms(expr.function)
        if len(inner) == 1:
            return [expr]
        return [sp.Sum(t, *expr.limits) for t in inner]
    if isinstance(expr, sp.Mul):
        sums = [a for a in expr.args if isinstance(a, (sp.Add, sp.Sum))]
        if len(sums) == 1:
            coefficient = expr / sums[0]
            return [coefficient * t for t in additive_terms(sums[0])]
    return [expr]


def drop_constants(expr, params: Sequence):
    """Split ``expr`` into the terms that depend on ``params`` and a constant.

    A constant (a term in which no parameter occurs) changes neither the
    minimizer nor the gradient, so a loss keeps only the first part.

    Parameters
    ----------
    expr : SymPy expression
        A negative log-likelihood, possibly a ``sympy.Sum`` over samples.
    params : sequence of Symbol, Indexed or IndexedBase
        What the loss is minimized over (the network outputs or weights).

    Returns
    -------
    kept, dropped : SymPy expressions
        ``kept + dropped`` equals ``expr``; ``dropped`` is free of ``params``.

    Raises
    ------
    ValueError
        If ``params`` is empty.

    Examples
    --------
    >>> y, yhat = sp.symbols("y yhat", real=True)
    >>> drop_constants(negative_log(gaussian_pdf(y, yhat, 1)), [yhat])
    ((y - yhat)**2/2, log(2)/2 + log(pi)/2)
    """
    params = list(params)
    if not params:
        raise ValueError("params must name at least one parameter; got an empty sequence")
    kept, dropped = [], []
    for term in additive_terms(expr):
        (kept if any(term.has(p) for p in params) else dropped).append(term)
    return sp.Add(*kept), sp.Add(*dropped)


def derivative(expr, wrt):
    r"""``d expr / d wrt``, with sums over samples evaluated.

    Differentiating :math:`\sum_i \ell(f_i)` by :math:`f_j` gives a Kronecker
    delta inside the sum; ``doit`` collapses it to :math:`\ell'(f_j)` guarded by
    ``Piecewise(..., j <= n - 1)``. The index ``j`` is taken to lie in the
    range, so the guard is removed.

    Examples
    --------
    >>> i, j, n = sp.symbols("i j n", integer=True, nonnegative=True)
    >>> y, f = sp.IndexedBase("y", real=True), sp.IndexedBase("f", real=True)
    >>> derivative(sp.Sum((y[i] - f[i]) ** 2, (i, 0, n - 1)), f[j])
    2*f[j] - 2*y[j]
    """
    out = sp.diff(expr, wrt).doit()
    return out.replace(
        lambda e: (
            isinstance(e, sp.Piecewise)
            and len(e.args) == 2
            and e.args[1].cond == sp.true
            and e.args[1].expr == 0
        ),
        lambda e: e.args[0].expr,
    )


def gaussian_expectation(expr, x, mean, std):
    r"""The expectation :math:`\mathbb E_{x \sim \mathcal N(\mu, \sigma^2)}[f(x)]` of ``expr``.

    The integral :math:`\int \mathcal N(x \mid \mu, \sigma^2) f(x)\,dx` after the
    substitution :math:`x = \mu + \sigma u` (the reparameterization of a VAE).
    When :math:`f(\mu + \sigma u)` is a polynomial in :math:`u` (the log of a
    Gaussian density, or a ratio of them) each power is replaced by its moment
    :math:`\mathbb E[u^k] = (k - 1)!!` for even :math:`k`, 0 for odd :math:`k`;
    this is exact and much faster than ``integrate``, which is the fallback.

    Parameters
    ----------
    expr : SymPy expression
        The integrand :math:`f`; logs of products are split (``expand_log(force=True)``).
    x : Symbol
        The variable of integration.
    mean, std : SymPy expressions
        :math:`\mu` and :math:`\sigma > 0`.

    Examples
    --------
    >>> x, mu = sp.symbols("x mu", real=True)
    >>> sigma = sp.Symbol("sigma", positive=True)
    >>> gaussian_expectation(x**2, x, mu, sigma)
    mu**2 + sigma**2
    >>> q, p = gaussian_pdf(x, mu, 1 / sigma**2), gaussian_pdf(x, 0, 1)
    >>> gaussian_expectation(sp.log(q / p), x, mu, sigma)  # KL(q || N(0, 1))
    mu**2/2 + sigma**2/2 - log(sigma) - 1/2
    """
    u = sp.Dummy("u", real=True)
    f = sp.expand(sp.expand_log(sp.sympify(expr).subs(x, mean + std * u), force=True))
    if f.is_polynomial(u):
        moments = [(c, k) for (k,), c in sp.Poly(f, u).terms() if k % 2 == 0]
        return sp.Add(*[c * sp.factorial2(k - 1) for c, k in moments])
    standard = sp.exp(-(u**2) / 2) / sp.sqrt(2 * sp.pi)
    return sp.integrate(f * standard, (u, -sp.oo, sp.oo), conds="none")


# --------------------------------------------------------------------------- numbers


def _is_one_plus_exp(arg):
    """``arg == 1 + exp(a)``: return ``a``, else None."""
    if isinstance(arg, sp.Add) and len(arg.args) == 2 and sp.S.One in arg.args:
        other = arg.args[0] if arg.args[1] == 1 else arg.args[1]
        if isinstance(other, sp.exp):
            return other.args[0]
    return None


def stabilize(expr):
    r"""Rewrite the textbook forms that overflow into :class:`softplus` / :class:`sigmoid`.

    ``log(1 + exp(a))`` becomes ``softplus(a)``, ``log(sigmoid(a))`` becomes
    ``-softplus(-a)`` and ``log(1 - sigmoid(a))`` becomes ``-softplus(a)``;
    :func:`to_numpy` then evaluates them with the stable NumPy functions.

    Examples
    --------
    >>> z, y = sp.symbols("z y", real=True)
    >>> stabilize(-y * sp.log(sigmoid(z)) - (1 - y) * sp.log(1 - sigmoid(z)))
    y*softplus(-z) + (1 - y)*softplus(z)
    >>> stabilize(sp.log(1 + sp.exp(-z)))
    softplus(-z)
    """

    def rule(e):
        arg = e.args[0]
        a = _is_one_plus_exp(arg)
        if a is not None:
            return softplus(a)
        if isinstance(arg, sigmoid):
            return -softplus(-arg.args[0])
        if (
            isinstance(arg, sp.Add)
            and len(arg.args) == 2
            and sp.S.One in arg.args
            and any(isinstance(-t, sigmoid) for t in arg.args)
        ):
            (s,) = [-t for t in arg.args if isinstance(-t, sigmoid)]
            return -softplus(s.args[0])
        return e

    return sp.sympify(expr).replace(lambda e: isinstance(e, sp.log), rule)


NUMPY_FUNCTIONS = {"sigmoid": activations.sigmoid, "softplus": activations.softplus}


def to_numpy(expr, symbols: Sequence, stable: bool = True) -> Callable:
    """A NumPy function of ``symbols`` that evaluates ``expr`` (``sympy.lambdify``).

    Parameters
    ----------
    expr : SymPy expression
    symbols : sequence of Symbol or IndexedBase
        The arguments of the returned function, in order (an IndexedBase takes
        an array; a 0-based ``sympy.Sum`` over it then indexes the array).
    stable : bool, optional
        True (default): apply :func:`stabilize` first and evaluate ``sigmoid``
        and ``softplus`` with :func:`lossutils.activations.sigmoid` and
        :func:`lossutils.activations.softplus`.
        False: evaluate the textbook exp form as written, overflow included
        (to show what goes wrong).

    Examples
    --------
    >>> import numpy as np
    >>> z = sp.Symbol("z", real=True)
    >>> nll = -sp.log(sigmoid(z))
    >>> to_numpy(nll, [z])(np.array([-1000.0, 0.0])).round(6).tolist()
    [1000.0, 0.693147]
    >>> with np.errstate(over="ignore", divide="ignore"):
    ...     to_numpy(nll, [z], stable=False)(np.array([-1000.0, 0.0])).round(6).tolist()
    [inf, 0.693147]
    """
    expr = sp.sympify(expr)
    if stable:
        expr = stabilize(expr)
        return sp.lambdify(list(symbols), expr, modules=[NUMPY_FUNCTIONS, "numpy"])
    expr = expr.rewrite(sp.exp) if expr.has(sigmoid, softplus) else expr
    return sp.lambdify(list(symbols), expr, modules="numpy")


def to_mpmath(expr, symbols: Sequence, digits: int = 400) -> Callable:
    """A high-precision reference: ``expr`` evaluated elementwise by mpmath at ``digits`` digits.

    The returned function takes float arrays (broadcast against each other),
    converts every entry exactly to an mpmath number and evaluates the
    :func:`stabilize` form of ``expr``, with softplus as ``log1p(exp(.))``, so
    the reference neither overflows nor loses the tiny values of a confident
    prediction. It returns an object array of mpmath numbers, the ``reference``
    of :func:`lossutils.testing.assert_ulp_close`.

    Examples
    --------
    >>> import mpmath
    >>> import numpy as np
    >>> z = sp.Symbol("z", real=True)
    >>> reference = to_mpmath(-sp.log(sigmoid(z)), [z])
    >>> [mpmath.nstr(v, 6) for v in reference(np.array([40.0, -1000.0]))]
    ['4.24835e-18', '1000.0']
    """
    import mpmath
    import numpy as np

    functions = {
        "softplus": lambda x: mpmath.log1p(mpmath.exp(x)),
        "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    }
    f = sp.lambdify(list(symbols), stabilize(expr), modules=[functions, "mpmath"])

    def reference(*arrays):
        arrays = np.broadcast_arrays(*[np.asarray(a, dtype=np.float64) for a in arrays])
        out = np.empty(arrays[0].shape, dtype=object)
        with mpmath.workdps(digits):
            for index in np.ndindex(out.shape):
                out[index] = f(*(mpmath.mpf(float(a[index])) for a in arrays))
        return out

    return reference


def equation_latex(lhs: str, rhs, order=None) -> str:
    r"""The LaTeX of ``lhs = rhs``: ``lhs`` as written, ``rhs`` printed by SymPy.

    ``order`` is SymPy's term order (e.g. ``"rev-lex"`` prints :math:`\sigma(z) - y` rather
    than :math:`-y + \sigma(z)`); the expression itself is the one derived, unchanged.

    >>> z, y = sp.symbols("z y", real=True)
    >>> equation_latex(r"\frac{\partial \ell}{\partial z}", sigmoid(z) - y, order="rev-lex")
    '\\frac{\\partial \\ell}{\\partial z} = \\sigma\\left(z\\right) - y'
    """
    return f"{lhs} = {sp.latex(rhs, order=order)}"


def glue_equation(key: str, lhs: str, rhs, order=None) -> None:
    """Glue :func:`equation_latex` under ``key`` for a ``{glue:math}`` block of a chapter.

    The displayed equation is then SymPy's printing of the derived expression ``rhs``, and
    nbval compares its LaTeX whenever the chapter is tested. Needs myst-nb (the book's
    environment has it).
    """
    from IPython.display import Math
    from myst_nb import glue

    glue(key, Math(equation_latex(lhs, rhs, order=order)), display=False)
