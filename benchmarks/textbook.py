"""The textbook NumPy formulas: what a reader writes straight from the definitions.

No shift by the maximum, no ``log1p``/``expm1``: these are the baselines that the
benchmark compares lossutils with, for accuracy and for speed. Each function
returns per-element (or per-row) values; each ``*_grad`` the gradient of their sum.
The gradient builders take the activation to use, so that the same textbook
gradient (e.g. softmax minus one-hot) can be fed SciPy's stable activations too.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special


def sigmoid(x):
    """:math:`1 / (1 + e^{-x})`."""
    return 1 / (1 + np.exp(-x))


def softmax(z):
    """:math:`e^{z_k} / \\sum_j e^{z_j}` over the last axis, unshifted."""
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def logsumexp(z):
    """:math:`\\log \\sum_k e^{z_k}` over the last axis."""
    return np.log(np.sum(np.exp(z), axis=-1))


def log_softmax(z):
    """:math:`\\log \\operatorname{softmax}(z)`."""
    return np.log(softmax(z))


def softplus(x):
    """:math:`\\log(1 + e^{x})`."""
    return np.log(1 + np.exp(x))


def log_sigmoid(x):
    """:math:`\\log \\sigma(x)`."""
    return np.log(sigmoid(x))


def binary_cross_entropy_with_logits(x, y):
    """:math:`-[y \\log p + (1 - y) \\log(1 - p)]` with :math:`p = \\sigma(x)`."""
    p = sigmoid(x)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def take_labels(values, y):
    """``values[..., y]`` row by row: the entry of each row's label."""
    return np.take_along_axis(values, y[..., None], axis=-1)[..., 0]


def cross_entropy(z, y):
    """:math:`-\\log \\operatorname{softmax}(z)_y` for integer labels ``y``."""
    return -np.log(take_labels(softmax(z), y))


def huber_loss(x, y, delta=1.0):
    """:math:`d^2/2` for :math:`|d| \\le \\delta`, else :math:`\\delta(|d| - \\delta/2)`."""
    d = x - y
    return np.where(np.abs(d) <= delta, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))


def huber_loss_grad(x, y, delta=1.0):
    """:math:`\\operatorname{clip}(d, -\\delta, \\delta)` with respect to ``x``."""
    return np.clip(x - y, -delta, delta)


def log_cosh_loss(x, y):
    """:math:`\\log \\cosh(x - y)`."""
    return np.log(np.cosh(x - y))


def log_cosh_loss_grad(x, y):
    """:math:`\\tanh(x - y)` with respect to ``x``."""
    return np.tanh(x - y)


def gaussian_kl(mu, logvar):
    """Kingma and Welling's :math:`-\\frac12 \\sum (1 + \\log\\sigma^2 - \\mu^2 - \\sigma^2)`."""
    return -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar), axis=-1)


def gaussian_kl_grad(mu, logvar):
    """:math:`(\\mu, (\\sigma^2 - 1)/2)` with respect to ``(mu, logvar)``."""
    return mu.copy(), 0.5 * (np.exp(logvar) - 1)


def sum_log_softmax_grad(softmax_fn):
    """Gradient of :math:`\\sum_k \\log \\operatorname{softmax}(z)_k`: :math:`1 - C\\,p`."""

    def grad(z):
        return 1 - z.shape[-1] * softmax_fn(z)

    return grad


def softmax_minus_onehot(softmax_fn):
    """Gradient of the summed cross-entropy: :math:`\\operatorname{softmax}(z) - e_y`."""

    def grad(z, y):
        p = softmax_fn(z)
        rows = np.take_along_axis(p, y[..., None], axis=-1)
        np.put_along_axis(p, y[..., None], rows - 1, axis=-1)
        return p

    return grad


def sigmoid_minus_target(sigmoid_fn):
    """Gradient of the summed binary cross-entropy with logits: :math:`\\sigma(x) - y`."""

    def grad(x, y):
        return sigmoid_fn(x) - y

    return grad


def sigmoid_of_minus(sigmoid_fn):
    """Derivative of :math:`\\log \\sigma(x)`: :math:`\\sigma(-x)`."""

    def grad(x):
        return sigmoid_fn(-x)

    return grad


# ---- the losses measured for speed and memory only -----------------------------------
# Each is the formula of its definition, with the gradient of the summed values (with
# respect to what the lossutils ``*_grad`` returns) worked out by hand.

LN2 = math.log(2)


def _pair(grad):
    """``(grad, -grad)``: the gradients with respect to two inputs entering as a difference."""
    return grad, -grad


def _active(condition, dtype):
    """The 0/1 indicator of ``condition`` as numbers of ``dtype``."""
    return condition.astype(dtype)


def mse_loss(x, y):
    """:math:`(x - y)^2`."""
    return (x - y) ** 2


def mse_loss_grad(x, y):
    """:math:`2 (x - y)`."""
    return 2 * (x - y)


def l1_loss(x, y):
    """:math:`|x - y|`."""
    return np.abs(x - y)


def l1_loss_grad(x, y):
    """:math:`\\operatorname{sign}(x - y)`."""
    return np.sign(x - y)


def smooth_l1_loss(x, y, beta=1.0):
    """:math:`d^2 / (2\\beta)` for :math:`|d| < \\beta`, else :math:`|d| - \\beta/2`."""
    d = x - y
    return np.where(np.abs(d) < beta, 0.5 * d * d / beta, np.abs(d) - 0.5 * beta)


def smooth_l1_loss_grad(x, y, beta=1.0):
    """:math:`\\operatorname{clip}(d / \\beta, -1, 1)`."""
    return np.clip((x - y) / beta, -1, 1)


def gaussian_nll_loss(x, y, var, eps=1e-6):
    """:math:`\\frac12 (\\log v + (x - y)^2 / v)` with :math:`v = \\max(\\text{var}, \\epsilon)`."""
    v = np.maximum(var, eps)
    return 0.5 * (np.log(v) + (x - y) ** 2 / v)


def gaussian_nll_loss_grad(x, y, var, eps=1e-6):
    """:math:`((x - y)/v,\\ \\frac12 (1/v - (x - y)^2/v^2))` for ``(input, var)``."""
    v = np.maximum(var, eps)
    d = x - y
    return d / v, 0.5 * (1 / v - d * d / v**2)


def laplace_nll_loss(x, y, scale, eps=1e-6):
    """:math:`\\log b + |x - y| / b` with :math:`b = \\max(\\text{scale}, \\epsilon)`."""
    b = np.maximum(scale, eps)
    return np.log(b) + np.abs(x - y) / b


def laplace_nll_loss_grad(x, y, scale, eps=1e-6):
    """:math:`(\\operatorname{sign}(x - y)/b,\\ 1/b - |x - y|/b^2)` for ``(input, scale)``."""
    b = np.maximum(scale, eps)
    d = x - y
    return np.sign(d) / b, 1 / b - np.abs(d) / b**2


def poisson_nll_loss(x, y):
    """:math:`e^{x} - y x` (log link)."""
    return np.exp(x) - y * x


def poisson_nll_loss_grad(x, y):
    """:math:`e^{x} - y`."""
    return np.exp(x) - y


def negative_binomial_nll_loss(z, y, r):
    """:math:`r \\log(1 + e^z) + y \\log(1 + e^{-z}) + \\log\\Gamma(y + 1) + \\log\\Gamma(r)
    - \\log\\Gamma(r + y)`."""
    return (
        r * np.log(1 + np.exp(z))
        + y * np.log(1 + np.exp(-z))
        + special.gammaln(y + 1)
        + special.gammaln(r)
        - special.gammaln(r + y)
    )


def negative_binomial_nll_loss_grad(z, y, r):
    """:math:`(r \\sigma(z) - y \\sigma(-z),\\ \\log(1 + e^z) + \\psi(r) - \\psi(r + y))`."""
    return (
        r * sigmoid(z) - y * sigmoid(-z),
        np.log(1 + np.exp(z)) + special.digamma(r) - special.digamma(r + y),
    )


def student_t_nll_loss(x, y, s, df):
    """:math:`\\log s + \\frac12 \\log(\\nu\\pi) + \\log\\Gamma(\\frac{\\nu}{2})
    - \\log\\Gamma(\\frac{\\nu + 1}{2}) + \\frac{\\nu + 1}{2} \\log(1 + u^2/\\nu)`."""
    u = (x - y) / s
    return (
        np.log(s)
        + 0.5 * np.log(df * np.pi)
        + special.gammaln(df / 2)
        - special.gammaln((df + 1) / 2)
        + (df + 1) / 2 * np.log(1 + u * u / df)
    )


def student_t_nll_loss_grad(x, y, s, df):
    """With :math:`w = (\\nu + 1) u / (\\nu + u^2)`: :math:`(w/s,\\ (1 - w u)/s,\\
    \\frac12 [1/\\nu + \\psi(\\frac{\\nu}{2}) - \\psi(\\frac{\\nu + 1}{2})
    + \\log(1 + u^2/\\nu)] - w u / (2\\nu))` for ``(input, scale, df)``."""
    u = (x - y) / s
    w = (df + 1) * u / (df + u * u)
    d_df = 0.5 * (
        1 / df + special.digamma(df / 2) - special.digamma((df + 1) / 2) + np.log(1 + u * u / df)
    ) - w * u / (2 * df)
    return w / s, (1 - w * u) / s, d_df


def quantile_loss(x, y, tau):
    """:math:`\\max(\\tau u, (\\tau - 1) u)` with :math:`u = y - x`."""
    u = y - x
    return np.maximum(tau * u, (tau - 1) * u)


def quantile_loss_grad(x, y, tau):
    """:math:`-(\\tau - [y < x])`."""
    return -(tau - _active(y < x, x.dtype))


def binary_cross_entropy(p, y):
    """:math:`-[y \\log p + (1 - y) \\log(1 - p)]`."""
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def binary_cross_entropy_grad(p, y):
    """:math:`(p - y) / (p (1 - p))`."""
    return (p - y) / (p * (1 - p))


def sigmoid_focal_loss(x, y, alpha=0.25, gamma=2.0):
    """:math:`\\alpha_t (1 - p_t)^\\gamma \\operatorname{BCE}(x, y)`, torchvision's formula."""
    p = sigmoid(x)
    q = 1 - (p * y + (1 - p) * (1 - y))
    return (alpha * y + (1 - alpha) * (1 - y)) * q**gamma * binary_cross_entropy_with_logits(x, y)


def sigmoid_focal_loss_grad(x, y, alpha=0.25, gamma=2.0):
    """:math:`\\alpha_t [\\gamma q^{\\gamma - 1} (1 - 2y) p (1 - p) \\operatorname{BCE}
    + q^\\gamma (p - y)]` with :math:`q = 1 - p_t`."""
    p = sigmoid(x)
    q = 1 - (p * y + (1 - p) * (1 - y))
    bce = binary_cross_entropy_with_logits(x, y)
    dq = (1 - 2 * y) * p * (1 - p)
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return alpha_t * (gamma * q ** (gamma - 1) * dq * bce + q**gamma * (p - y))


def hinge_loss(x, t, margin=1.0):
    """:math:`\\max(0, m - t x)`."""
    return np.maximum(0, margin - t * x)


def hinge_loss_grad(x, t, margin=1.0):
    """:math:`-t\\,[m - t x > 0]`."""
    return -t * _active(margin - t * x > 0, x.dtype)


def squared_hinge_loss(x, t, margin=1.0):
    """:math:`\\max(0, m - t x)^2`."""
    return np.maximum(0, margin - t * x) ** 2


def squared_hinge_loss_grad(x, t, margin=1.0):
    """:math:`-2 t \\max(0, m - t x)`."""
    return -2 * t * np.maximum(0, margin - t * x)


def square_loss(x, t):
    """:math:`(1 - t x)^2`."""
    return (1 - t * x) ** 2


def square_loss_grad(x, t):
    """:math:`-2 t (1 - t x)`."""
    return -2 * t * (1 - t * x)


def soft_margin_loss(x, t):
    """:math:`\\log(1 + e^{-t x})`."""
    return np.log(1 + np.exp(-t * x))


def soft_margin_loss_grad(x, t):
    """:math:`-t / (1 + e^{t x})`."""
    return -t / (1 + np.exp(t * x))


def logistic_loss(x, t):
    """:math:`\\log_2(1 + e^{-t x})`."""
    return soft_margin_loss(x, t) / LN2


def logistic_loss_grad(x, t):
    """:math:`-t / ((1 + e^{t x}) \\ln 2)`."""
    return soft_margin_loss_grad(x, t) / LN2


def margin_ranking_loss(x1, x2, t, margin=0.0):
    """:math:`\\max(0, -t (x_1 - x_2) + m)`."""
    return np.maximum(0, -t * (x1 - x2) + margin)


def margin_ranking_loss_grad(x1, x2, t, margin=0.0):
    """:math:`\\mp t\\,[-t (x_1 - x_2) + m > 0]` for ``(input1, input2)``."""
    return _pair(-t * _active(-t * (x1 - x2) + margin > 0, x1.dtype))


def hinge_embedding_loss(x, t, margin=1.0):
    """:math:`x` for :math:`t = 1`, :math:`\\max(0, m - x)` for :math:`t = -1`."""
    return np.where(t == 1, x, np.maximum(0, margin - x))


def hinge_embedding_loss_grad(x, t, margin=1.0):
    """1 for :math:`t = 1`, :math:`-[m - x > 0]` for :math:`t = -1`."""
    return np.where(t == 1, 1, -_active(margin - x > 0, x.dtype)).astype(x.dtype)


def bradley_terry_loss(chosen, rejected):
    """:math:`\\log(1 + e^{-(r_c - r_r)})`."""
    return np.log(1 + np.exp(-(chosen - rejected)))


def bradley_terry_loss_grad(chosen, rejected):
    """:math:`\\mp \\sigma(-(r_c - r_r))` for ``(chosen, rejected)``."""
    return _pair(-sigmoid(-(chosen - rejected)))


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=0.1):
    """:math:`\\log(1 + e^{-z})` with :math:`z = \\beta [(\\log\\pi_c - \\log\\pi^{ref}_c)
    - (\\log\\pi_r - \\log\\pi^{ref}_r)]`."""
    z = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return np.log(1 + np.exp(-z))


def dpo_loss_grad(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=0.1):
    """:math:`\\mp \\beta \\sigma(-z)` for the policy's ``(chosen, rejected)`` log-probabilities."""
    z = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return _pair(-beta * sigmoid(-z))


def l2_penalty(w, lam):
    """:math:`\\lambda \\sum w^2`."""
    return lam * np.sum(w**2)


def l2_penalty_grad(w, lam):
    """:math:`2 \\lambda w`."""
    return 2 * lam * w


def l1_penalty(w, lam):
    """:math:`\\lambda \\sum |w|`."""
    return lam * np.sum(np.abs(w))


def l1_penalty_grad(w, lam):
    """:math:`\\lambda \\operatorname{sign}(w)`."""
    return lam * np.sign(w)


def onehot(shape, y, dtype):
    """Rows of zeros with a one at each row's label."""
    out = np.zeros(shape, dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out


def nll_loss(logp, y):
    """:math:`-\\log p_y`."""
    return -take_labels(logp, y)


def nll_loss_grad(logp, y):
    """Minus the one-hot rows."""
    return -onehot(logp.shape, y, logp.dtype)


def softmax_focal_loss(z, y, gamma=2.0):
    """:math:`-(1 - p_y)^\\gamma \\log p_y` with :math:`p = \\operatorname{softmax}(z)`."""
    p_y = take_labels(softmax(z), y)
    return -((1 - p_y) ** gamma) * np.log(p_y)


def softmax_focal_loss_grad(z, y, gamma=2.0):
    """:math:`\\frac{d\\ell}{dp_y}\\, p_y (e_y - p)` with :math:`\\frac{d\\ell}{dp_y} =
    \\gamma (1 - p_y)^{\\gamma - 1} \\log p_y - (1 - p_y)^\\gamma / p_y`."""
    p = softmax(z)
    p_y = take_labels(p, y)[..., None]
    dl = gamma * (1 - p_y) ** (gamma - 1) * np.log(p_y) - (1 - p_y) ** gamma / p_y
    return dl * p_y * (onehot(z.shape, y, z.dtype) - p)


def _best_rival(z, y):
    """Each row's largest logit other than the label's, and its column."""
    rivals = z.copy()
    np.put_along_axis(rivals, y[..., None], -np.inf, axis=-1)
    j = np.argmax(rivals, axis=-1)
    return take_labels(rivals, j), j


def multiclass_hinge_loss(z, y, margin=1.0):
    """:math:`\\max(0, m + \\max_{j \\ne y} z_j - z_y)`."""
    return np.maximum(0, margin + _best_rival(z, y)[0] - take_labels(z, y))


def multiclass_hinge_loss_grad(z, y, margin=1.0):
    """+1 at the best rival and -1 at the label, in the rows where the hinge is active."""
    rival, j = _best_rival(z, y)
    active = _active(margin + rival - take_labels(z, y) > 0, z.dtype)[..., None]
    return active * (onehot(z.shape, j, z.dtype) - onehot(z.shape, y, z.dtype))


def _margin_violations(z, y, margin):
    """:math:`\\max(0, m - z_y + z_j)` for every class, 0 at the label."""
    h = np.maximum(0, margin - take_labels(z, y)[..., None] + z)
    np.put_along_axis(h, y[..., None], 0, axis=-1)
    return h


def multi_margin_loss(z, y, margin=1.0):
    """:math:`\\frac1C \\sum_{j \\ne y} \\max(0, m - z_y + z_j)` (``p = 1``)."""
    return _margin_violations(z, y, margin).sum(axis=-1) / z.shape[-1]


def multi_margin_loss_grad(z, y, margin=1.0):
    """:math:`[h_j > 0]/C` off the label, minus their sum at the label."""
    g = _active(_margin_violations(z, y, margin) > 0, z.dtype) / z.shape[-1]
    np.put_along_axis(g, y[..., None], -g.sum(axis=-1, keepdims=True), axis=-1)
    return g


def multilabel_soft_margin_loss(x, y):
    """:math:`-\\frac1C \\sum_c [y_c \\log \\sigma(x_c) + (1 - y_c) \\log \\sigma(-x_c)]`."""
    return binary_cross_entropy_with_logits(x, y).mean(axis=-1)


def multilabel_soft_margin_loss_grad(x, y):
    """:math:`(\\sigma(x) - y) / C`."""
    return (sigmoid(x) - y) / x.shape[-1]


def _listed_labels(target):
    """The target's label columns (padding after the first -1 set to 0) and where they are
    labels, over the first columns that list a label in some row."""
    listed = np.cumprod(target != -1, axis=-1).astype(bool)
    k = max(int(listed.sum(axis=-1).max()), 1)
    return np.where(listed, target, 0)[:, :k], listed[:, :k]


def _multilabel_hinges(x, target):
    """:math:`\\max(0, 1 - (x_j - x_i))` for the listed labels ``j`` (rows x labels x classes),
    0 where ``j`` is padding or ``i`` is a label."""
    labels, listed = _listed_labels(target)
    n, c = x.shape
    is_label = np.zeros((n, c + 1), dtype=bool)  # the padding marks the extra column
    np.put_along_axis(is_label, np.where(listed, labels, c), True, axis=-1)
    hinge = np.maximum(0, 1 - (np.take_along_axis(x, labels, axis=-1)[..., None] - x[:, None, :]))
    return hinge * (listed[..., None] & ~is_label[:, None, :c])


def multilabel_margin_loss(x, target):
    """:math:`\\frac1C \\sum_{j \\in Y} \\sum_{i \\notin Y} \\max(0, 1 - (x_j - x_i))`."""
    return _multilabel_hinges(x, target).sum(axis=(1, 2)) / x.shape[-1]


def multilabel_margin_loss_grad(x, target):
    """Each active pair adds :math:`1/C` at the other class ``i`` and :math:`-1/C` at ``j``."""
    active = _active(_multilabel_hinges(x, target) > 0, x.dtype) / x.shape[-1]
    g = active.sum(axis=1)
    rows = np.arange(len(x))[:, None]
    np.add.at(g, (rows, _listed_labels(target)[0]), -active.sum(axis=2))
    return g


def categorical_cross_entropy(p, q):
    """:math:`-\\sum_k p_k \\log q_k`."""
    return -np.sum(p * np.log(q), axis=-1)


def categorical_cross_entropy_grad(p, q):
    """:math:`-p / q` with respect to ``q``."""
    return -p / q


def kl_divergence(p, q):
    """:math:`\\sum_k p_k \\log(p_k / q_k)`."""
    return np.sum(p * np.log(p / q), axis=-1)


kl_divergence_grad = categorical_cross_entropy_grad


def kl_div(logq, t):
    """PyTorch's pointwise :math:`t (\\log t - \\log q)`."""
    return t * (np.log(t) - logq)


def kl_div_grad(logq, t):
    """:math:`-t` with respect to the input :math:`\\log q`."""
    return -t


def vae_loss(x, recon, mu, logvar):
    """Binary cross-entropy of the logits summed over the data, plus the Gaussian KL."""
    return binary_cross_entropy_with_logits(recon, x).sum(axis=-1) + gaussian_kl(mu, logvar)


def vae_loss_grad(x, recon, mu, logvar):
    """:math:`(\\sigma(r) - x,\\ \\mu,\\ (\\sigma^2 - 1)/2)` for ``(recon, mu, logvar)``."""
    return (sigmoid(recon) - x,) + gaussian_kl_grad(mu, logvar)


def _distance(x1, x2):
    return np.sqrt(np.sum((x1 - x2) ** 2, axis=-1))


def contrastive_loss(x1, x2, y, margin=1.0):
    """:math:`y d^2 + (1 - y) \\max(0, m - d)^2` with :math:`d = \\lVert x_1 - x_2 \\rVert`."""
    d = _distance(x1, x2)
    return y * d**2 + (1 - y) * np.maximum(0, margin - d) ** 2


def contrastive_loss_grad(x1, x2, y, margin=1.0):
    """:math:`\\pm [2 y - 2 (1 - y) \\max(0, m - d) / d] (x_1 - x_2)`."""
    d = _distance(x1, x2)
    scale = 2 * y - 2 * (1 - y) * np.maximum(0, margin - d) / d
    return _pair(scale[..., None] * (x1 - x2))


def triplet_margin_loss(a, p, n, margin=1.0, eps=1e-6):
    """:math:`\\max(0, d(a, p) - d(a, n) + m)`, PyTorch's distance
    :math:`d(x, y) = \\lVert x - y + \\epsilon \\rVert_2`."""
    return np.maximum(0, _distance(a + eps, p) - _distance(a + eps, n) + margin)


def triplet_margin_loss_grad(a, p, n, margin=1.0, eps=1e-6):
    """With :math:`u = (a - p + \\epsilon)/d_p`, :math:`v = (a - n + \\epsilon)/d_n` where the
    hinge is active: :math:`(u - v, -u, v)`."""
    dp, dn = _distance(a + eps, p), _distance(a + eps, n)
    active = _active(dp - dn + margin > 0, a.dtype)[..., None]
    u = active * (a - p + eps) / dp[..., None]
    v = active * (a - n + eps) / dn[..., None]
    return u - v, -u, v


def _cosine(x1, x2):
    n1, n2 = np.sqrt(np.sum(x1**2, axis=-1)), np.sqrt(np.sum(x2**2, axis=-1))
    return np.sum(x1 * x2, axis=-1) / (n1 * n2), n1, n2


def cosine_embedding_loss(x1, x2, t, margin=0.0):
    """:math:`1 - \\cos` for :math:`t = 1`, :math:`\\max(0, \\cos - m)` for :math:`t = -1`."""
    cos = _cosine(x1, x2)[0]
    return np.where(t == 1, 1 - cos, np.maximum(0, cos - margin))


def cosine_embedding_loss_grad(x1, x2, t, margin=0.0):
    """:math:`s\\, \\partial\\cos`, :math:`s = -1` for :math:`t = 1` and :math:`[\\cos > m]` else,
    with :math:`\\partial_{x_1} \\cos = x_2/(n_1 n_2) - \\cos\\, x_1/n_1^2` (and symmetrically)."""
    cos, n1, n2 = _cosine(x1, x2)
    s = np.where(t == 1, -1.0, _active(cos > margin, x1.dtype))[..., None]
    cos, n1, n2 = cos[..., None], n1[..., None], n2[..., None]
    return (
        s * (x2 / (n1 * n2) - cos * x1 / n1**2),
        s * (x1 / (n1 * n2) - cos * x2 / n2**2),
    )


def _normalized(z):
    norm = np.sqrt(np.sum(z**2, axis=-1, keepdims=True))
    return z / norm, norm


def _through_normalization(h, norm, dh):
    """The gradient with respect to ``z`` of a function of ``h = z / |z|``, given ``dh``."""
    return (dh - h * np.sum(h * dh, axis=-1, keepdims=True)) / norm


def _nt_xent_similarities(z1, z2, temperature):
    h, norm = _normalized(np.concatenate([z1, z2]))
    s = h @ h.T / temperature
    n = len(z1)
    return s, h, norm, (np.arange(2 * n) + n) % (2 * n)


def nt_xent_loss(z1, z2, temperature=0.5):
    """:math:`-s_{i, \\mathrm{pos}(i)} + \\log \\sum_{j \\ne i} e^{s_{ij}}` for the 2N views."""
    s, _, _, pos = _nt_xent_similarities(z1, z2, temperature)
    e = np.exp(s)
    np.fill_diagonal(e, 0)
    return -s[np.arange(len(s)), pos] + np.log(e.sum(axis=-1))


def nt_xent_loss_grad(z1, z2, temperature=0.5):
    """:math:`G = \\operatorname{softmax}_{j \\ne i}(s) - e_{\\mathrm{pos}}`,
    :math:`\\partial h = (G + G^\\top) h / \\tau`, then through the normalization."""
    s, h, norm, pos = _nt_xent_similarities(z1, z2, temperature)
    e = np.exp(s)
    np.fill_diagonal(e, 0)
    g = e / e.sum(axis=-1, keepdims=True)
    g[np.arange(len(s)), pos] -= 1
    dz = _through_normalization(h, norm, (g + g.T) @ h / temperature)
    return dz[: len(z1)], dz[len(z1) :]


def _all_pairs(x, y, scale):
    """The normalised rows and :math:`s = \\text{scale}\\, x y^\\top`."""
    (xh, xn), (yh, yn) = _normalized(x), _normalized(y)
    return xh, xn, yh, yn, scale * xh @ yh.T


def _through_similarities(g, xh, xn, yh, yn, scale):
    """Gradients with respect to ``(x, y)`` from :math:`G = \\partial/\\partial s` for
    :math:`s = \\text{scale}\\, \\hat x \\hat y^\\top`."""
    return (
        _through_normalization(xh, xn, scale * g @ yh),
        _through_normalization(yh, yn, scale * g.T @ xh),
    )


def info_nce_loss(q, k, temperature=0.07):
    """:math:`-s_{ii} + \\log \\sum_j e^{s_{ij}}` with :math:`s = \\hat q \\hat k^\\top / \\tau`."""
    s = _all_pairs(q, k, 1 / temperature)[-1]
    return -np.diag(s) + np.log(np.exp(s).sum(axis=-1))


def info_nce_loss_grad(q, k, temperature=0.07):
    """:math:`G = \\operatorname{softmax}(s) - I`, then through :math:`s` and the normalization."""
    *parts, s = _all_pairs(q, k, 1 / temperature)
    return _through_similarities(
        softmax(s) - np.eye(len(s), dtype=s.dtype), *parts, 1 / temperature
    )


def clip_loss(x, y, temperature=0.07):
    """The mean of InfoNCE over the rows of :math:`s` and over its columns."""
    s = _all_pairs(x, y, 1 / temperature)[-1]
    e = np.exp(s)
    return -np.diag(s) + 0.5 * (np.log(e.sum(axis=-1)) + np.log(e.sum(axis=0)))


def clip_loss_grad(x, y, temperature=0.07):
    """:math:`G = \\frac12 (\\operatorname{softmax}_{rows}(s) + \\operatorname{softmax}_{cols}(s))
    - I`, then through :math:`s` and the normalization."""
    *parts, s = _all_pairs(x, y, 1 / temperature)
    e = np.exp(s)
    g = 0.5 * (e / e.sum(axis=-1, keepdims=True) + e / e.sum(axis=0)) - np.eye(
        len(s), dtype=s.dtype
    )
    return _through_similarities(g, *parts, 1 / temperature)


def siglip_loss(x, y, scale=10.0, bias=-10.0):
    """:math:`\\sum_j \\log(1 + e^{-l_{ij} z_{ij}})`, :math:`z = t \\hat x \\hat y^\\top + b`,
    :math:`l = 2I - 1`."""
    z = _all_pairs(x, y, scale)[-1] + bias
    labels = 2 * np.eye(len(z), dtype=z.dtype) - 1
    return np.sum(np.log(1 + np.exp(-labels * z)), axis=-1)


def siglip_loss_grad(x, y, scale=10.0, bias=-10.0):
    """:math:`G = -l \\sigma(-l z)`, then through :math:`z` and the normalization."""
    *parts, s = _all_pairs(x, y, scale)
    labels = 2 * np.eye(len(s), dtype=s.dtype) - 1
    return _through_similarities(-labels * sigmoid(-labels * (s + bias)), *parts, scale)


def ddpm_elbo_weights(betas):
    """:math:`\\lambda_1 = 1 / (2 (1 - \\beta_1))`, :math:`\\lambda_t = \\beta_t / (2 (1 - \\beta_t)
    (1 - \\bar\\alpha_{t-1}))` with :math:`\\bar\\alpha_t = \\prod_{s \\le t} (1 - \\beta_s)`."""
    alpha_bar = np.cumprod(1 - betas)
    weights = betas / (2 * (1 - betas))
    weights[0] = 1 / (2 * (1 - betas[0]))
    weights[1:] /= 1 - alpha_bar[:-1]
    return weights


def ddpm_noise_loss(pred, noise, t, betas):
    """:math:`\\lambda_t \\sum_d (\\hat\\epsilon_d - \\epsilon_d)^2` per sample."""
    return ddpm_elbo_weights(betas)[t - 1] * np.sum((pred - noise) ** 2, axis=-1)


def ddpm_noise_loss_grad(pred, noise, t, betas):
    """:math:`2 \\lambda_t (\\hat\\epsilon - \\epsilon)`."""
    return 2 * ddpm_elbo_weights(betas)[t - 1][:, None] * (pred - noise)
