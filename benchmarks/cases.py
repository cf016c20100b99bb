"""The benchmark table: one declarative entry per function.

Each :class:`Case` names the function, how lossutils and every baseline compute
it (:class:`~benchmarks.implementations.Impl`), its mpmath reference, its hard
sweep for accuracy and its realistic input for speed. Adding a function to the
benchmark means adding one entry to :data:`CASES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from scipy import special

import lossutils as lu
from benchmarks import references as ref
from benchmarks import sweeps
from benchmarks import textbook as tb
from benchmarks.implementations import (
    Impl,
    jax_impl,
    lossutils_impl,
    lossutils_loss,
    torch_impl,
    torch_loss,
)

CONTENDERS = {
    "lossutils": "lossutils",
    "numpy": "textbook NumPy formula",
    "scipy": "SciPy (scipy.special)",
    "pytorch": "PyTorch CPU",
    "jax": "JAX/optax CPU (jit)",
}
"""Column keys and labels; ``numpy`` is the baseline that speed ratios divide by."""


@dataclass(frozen=True)
class Case:
    """One benchmarked function.

    ``baselines`` maps a key of :data:`CONTENDERS` to an :class:`Impl`; a
    contender without the function is simply absent. ``hard_inputs`` and
    ``speed_inputs`` are generators from :mod:`benchmarks.sweeps`.
    """

    name: str
    lossutils: Impl
    baselines: dict[str, Impl]
    reference: Callable
    hard_inputs: Callable
    speed_inputs: Callable
    note: str = ""
    grad_note: str = ""


scipy_softmax = partial(special.softmax, axis=-1)

ACTIVATION_GRAD = (
    "activations have no _grad: the derivative is timed with lossutils' own activations"
)

CASES = (
    Case(
        "logsumexp",
        Impl(lu.logsumexp, lu.softmax),
        {
            "numpy": Impl(tb.logsumexp, tb.softmax),
            "scipy": Impl(partial(special.logsumexp, axis=-1), scipy_softmax),
            "pytorch": torch_impl(lambda t, z: t.logsumexp(z, -1)),
            "jax": jax_impl(lambda jax, optax, z: jax.nn.logsumexp(z, axis=-1)),
        },
        ref.logsumexp,
        sweeps.class_rows_without_labels,
        sweeps.logit_matrix,
        grad_note=ACTIVATION_GRAD,
    ),
    Case(
        "log_softmax",
        Impl(lu.log_softmax, tb.sum_log_softmax_grad(lu.softmax)),
        {
            "numpy": Impl(tb.log_softmax, tb.sum_log_softmax_grad(tb.softmax)),
            "scipy": Impl(
                partial(special.log_softmax, axis=-1),
                tb.sum_log_softmax_grad(scipy_softmax),
            ),
            "pytorch": torch_impl(lambda t, z: t.log_softmax(z, -1)),
            "jax": jax_impl(lambda jax, optax, z: jax.nn.log_softmax(z, axis=-1)),
        },
        ref.log_softmax,
        sweeps.class_rows_without_labels,
        sweeps.logit_matrix,
        grad_note=ACTIVATION_GRAD,
    ),
    Case(
        "softplus",
        Impl(lu.softplus, lu.sigmoid),
        {
            "numpy": Impl(tb.softplus, tb.sigmoid),
            "scipy": Impl(special.softplus, special.expit),
            "pytorch": torch_impl(lambda t, x: t.nn.functional.softplus(x)),
            "jax": jax_impl(lambda jax, optax, x: jax.nn.softplus(x)),
        },
        ref.softplus,
        sweeps.scalar_logits,
        sweeps.logit_vector,
        note="PyTorch's softplus returns x itself above its default threshold=20",
        grad_note=ACTIVATION_GRAD,
    ),
    Case(
        "log_sigmoid",
        Impl(lu.log_sigmoid, tb.sigmoid_of_minus(lu.sigmoid)),
        {
            "numpy": Impl(tb.log_sigmoid, tb.sigmoid_of_minus(tb.sigmoid)),
            "scipy": Impl(special.log_expit, tb.sigmoid_of_minus(special.expit)),
            "pytorch": torch_impl(lambda t, x: t.nn.functional.logsigmoid(x)),
            "jax": jax_impl(lambda jax, optax, x: jax.nn.log_sigmoid(x)),
        },
        ref.log_sigmoid,
        sweeps.scalar_logits,
        sweeps.logit_vector,
        grad_note=ACTIVATION_GRAD,
    ),
    Case(
        "binary_cross_entropy_with_logits",
        lossutils_loss("binary_cross_entropy_with_logits"),
        {
            "numpy": Impl(tb.binary_cross_entropy_with_logits, tb.sigmoid_minus_target(tb.sigmoid)),
            "scipy": Impl(
                lambda x, y: -(y * special.log_expit(x) + (1 - y) * special.log_expit(-x)),
                tb.sigmoid_minus_target(special.expit),
            ),
            "pytorch": torch_loss("binary_cross_entropy_with_logits"),
            "jax": jax_impl(lambda jax, optax, x, y: optax.sigmoid_binary_cross_entropy(x, y)),
        },
        ref.binary_cross_entropy_with_logits,
        sweeps.binary_logits,
        sweeps.logits_with_binary_targets,
        note="SciPy has no such loss: it is written with scipy.special.log_expit and expit",
    ),
    Case(
        "cross_entropy",
        lossutils_loss("cross_entropy"),
        {
            "numpy": Impl(tb.cross_entropy, tb.softmax_minus_onehot(tb.softmax)),
            "scipy": Impl(
                lambda z, y: -tb.take_labels(special.log_softmax(z, axis=-1), y),
                tb.softmax_minus_onehot(scipy_softmax),
            ),
            "pytorch": torch_loss("cross_entropy"),
            "jax": jax_impl(
                lambda jax, optax, z, y: optax.softmax_cross_entropy_with_integer_labels(z, y)
            ),
        },
        ref.cross_entropy,
        sweeps.class_rows,
        sweeps.logit_matrix_with_labels,
        note="SciPy has no such loss: it is written with scipy.special.log_softmax and softmax",
    ),
    Case(
        "log_cosh_loss",
        lossutils_loss("log_cosh_loss"),
        {
            "numpy": Impl(tb.log_cosh_loss, tb.log_cosh_loss_grad),
            "jax": jax_impl(lambda jax, optax, x, y: optax.log_cosh(x, y)),
        },
        ref.log_cosh_loss,
        sweeps.residuals,
        sweeps.predictions_and_targets,
        note="neither SciPy nor PyTorch has a log-cosh loss; optax.log_cosh",
    ),
    Case(
        "huber_loss",
        lossutils_loss("huber_loss"),
        {
            "numpy": Impl(tb.huber_loss, tb.huber_loss_grad),
            "scipy": Impl(lambda x, y: special.huber(1.0, x - y)),
            "pytorch": torch_loss("huber_loss"),
            "jax": jax_impl(lambda jax, optax, x, y: optax.huber_loss(x, y, delta=1.0)),
        },
        ref.huber_loss,
        sweeps.residuals,
        sweeps.predictions_and_targets,
        note="delta = 1; scipy.special.huber has no gradient",
    ),
    Case(
        "gaussian_kl",
        lossutils_impl("gaussian_kl"),
        {
            "numpy": Impl(tb.gaussian_kl, tb.gaussian_kl_grad),
            "pytorch": torch_impl(
                lambda t, mu, logvar: t.distributions.kl_divergence(
                    t.distributions.Normal(mu, t.exp(logvar / 2), validate_args=False),
                    t.distributions.Normal(0.0, 1.0, validate_args=False),
                ).sum(-1),
                differentiable=(0, 1),
            ),
        },
        ref.gaussian_kl,
        sweeps.gaussian_posteriors,
        sweeps.latent_posteriors,
        note="KL to N(0, I), summed over the last axis; PyTorch via torch.distributions; "
        "optax has no Gaussian KL",
    ),
)
