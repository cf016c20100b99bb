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
    torchvision_loss,
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
    ``speed_inputs`` are generators from :mod:`benchmarks.sweeps`. A case without a
    reference and a hard sweep (``None``) is measured for speed and memory only: the
    tests check every function's accuracy against mpmath.
    """

    name: str
    lossutils: Impl
    baselines: dict[str, Impl]
    reference: Callable | None
    hard_inputs: Callable | None
    speed_inputs: Callable
    note: str = ""
    grad_note: str = ""


def textbook(name: str) -> Impl:
    """The formula ``name`` and its gradient ``name_grad`` of :mod:`benchmarks.textbook`."""
    return Impl(getattr(tb, name), getattr(tb, f"{name}_grad"))


def speed_only(name: str, speed_inputs: Callable, note: str = "", **baselines: Impl) -> Case:
    """A loss measured for speed and memory against its textbook formula (and ``baselines``).

    Its accuracy is not in the benchmark: the tests check it against mpmath.
    """
    return Case(
        name,
        lossutils_loss(name),
        {"numpy": textbook(name)} | baselines,
        None,
        None,
        speed_inputs,
        note,
    )


scipy_softmax = partial(special.softmax, axis=-1)

ACTIVATION_GRAD = (
    "activations have no _grad: the derivative is timed with lossutils' own activations"
)

SPEED_ONLY = (
    # regression
    speed_only(
        "mse_loss",
        sweeps.predictions_and_targets,
        pytorch=torch_loss("mse_loss"),
        jax=jax_impl(lambda jax, optax, x, y: optax.squared_error(x, y)),
    ),
    speed_only("l1_loss", sweeps.predictions_and_targets, pytorch=torch_loss("l1_loss")),
    speed_only(
        "smooth_l1_loss", sweeps.predictions_and_targets, pytorch=torch_loss("smooth_l1_loss")
    ),
    speed_only(
        "gaussian_nll_loss",
        sweeps.predictions_targets_and_variances,
        "gradient with respect to (input, var)",
        pytorch=torch_loss("gaussian_nll_loss", differentiable=(0, 2)),
    ),
    speed_only(
        "laplace_nll_loss",
        sweeps.predictions_targets_and_variances,
        "gradient with respect to (input, scale)",
    ),
    speed_only(
        "poisson_nll_loss", sweeps.log_rates_and_counts, pytorch=torch_loss("poisson_nll_loss")
    ),
    speed_only(
        "negative_binomial_nll_loss",
        sweeps.logits_counts_and_total_counts,
        "gradient with respect to (input, total_count)",
    ),
    speed_only(
        "student_t_nll_loss",
        sweeps.student_t_arguments,
        "gradient with respect to (input, scale, df)",
    ),
    speed_only("quantile_loss", sweeps.quantile_arguments, "quantile 0.9"),
    # binary labels and scores
    speed_only(
        "binary_cross_entropy",
        sweeps.probabilities_with_binary_targets,
        pytorch=torch_loss("binary_cross_entropy"),
    ),
    speed_only(
        "sigmoid_focal_loss",
        sweeps.logits_with_binary_targets,
        "alpha 0.25, gamma 2; PyTorch: torchvision.ops.sigmoid_focal_loss",
        pytorch=torchvision_loss("sigmoid_focal_loss"),
    ),
    speed_only(
        "hinge_loss",
        sweeps.scores_with_signed_labels,
        jax=jax_impl(lambda jax, optax, x, t: optax.hinge_loss(x, t)),
    ),
    speed_only("squared_hinge_loss", sweeps.scores_with_signed_labels),
    speed_only("square_loss", sweeps.scores_with_signed_labels),
    speed_only("logistic_loss", sweeps.scores_with_signed_labels, "base 2"),
    speed_only(
        "soft_margin_loss",
        sweeps.scores_with_signed_labels,
        pytorch=torch_loss("soft_margin_loss"),
    ),
    speed_only(
        "margin_ranking_loss",
        sweeps.score_pairs_with_signed_labels,
        "gradient with respect to (input1, input2)",
        pytorch=torch_loss("margin_ranking_loss", differentiable=(0, 1)),
    ),
    speed_only(
        "hinge_embedding_loss",
        sweeps.distances_with_signed_labels,
        pytorch=torch_loss("hinge_embedding_loss"),
    ),
    speed_only(
        "bradley_terry_loss",
        sweeps.preference_log_probabilities,
        "gradient with respect to (chosen, rejected)",
    ),
    speed_only(
        "dpo_loss",
        sweeps.dpo_log_probabilities,
        "beta 0.1; gradient with respect to the policy's (chosen, rejected)",
    ),
    speed_only("l2_penalty", sweeps.weights_and_strength, "lam 1e-4; one number, no reduction"),
    speed_only("l1_penalty", sweeps.weights_and_strength, "lam 1e-4; one number, no reduction"),
    # class rows
    speed_only(
        "nll_loss", sweeps.log_probability_matrix_with_labels, pytorch=torch_loss("nll_loss")
    ),
    speed_only("softmax_focal_loss", sweeps.logit_matrix_with_labels, "gamma 2"),
    speed_only("multiclass_hinge_loss", sweeps.logit_matrix_with_labels),
    speed_only(
        "multi_margin_loss",
        sweeps.logit_matrix_with_labels,
        "p 1, margin 1",
        pytorch=torch_loss("multi_margin_loss"),
    ),
    speed_only(
        "multilabel_soft_margin_loss",
        sweeps.logit_matrix_with_binary_targets,
        pytorch=torch_loss("multilabel_soft_margin_loss"),
    ),
    speed_only(
        "multilabel_margin_loss",
        sweeps.logit_matrix_with_label_lists,
        f"{sweeps.MULTILABEL_LABELS} labels per row",
        pytorch=torch_loss("multilabel_margin_loss"),
    ),
    speed_only(
        "categorical_cross_entropy",
        sweeps.distribution_pairs,
        "summed over the rows' last axis; gradient with respect to q",
    ),
    speed_only(
        "kl_divergence",
        sweeps.distribution_pairs,
        "summed over the rows' last axis; gradient with respect to q",
    ),
    speed_only("kl_div", sweeps.log_probabilities_and_probabilities, pytorch=torch_loss("kl_div")),
    speed_only(
        "vae_loss",
        sweeps.vae_batch,
        "Bernoulli likelihood, 32 latents; gradient with respect to (recon, mu, logvar)",
    ),
    speed_only(
        "ddpm_noise_loss",
        sweeps.noise_predictions,
        "ELBO weights of a linear schedule of 1000 steps",
    ),
    # embeddings
    speed_only(
        "contrastive_loss",
        sweeps.embedding_pairs_with_labels,
        "gradient with respect to (x1, x2)",
    ),
    speed_only(
        "triplet_margin_loss",
        sweeps.embedding_triplets,
        "gradient with respect to (anchor, positive, negative)",
        pytorch=torch_loss("triplet_margin_loss", differentiable=(0, 1, 2)),
    ),
    speed_only(
        "cosine_embedding_loss",
        sweeps.embedding_pairs_with_signed_labels,
        "gradient with respect to (input1, input2)",
        pytorch=torch_loss("cosine_embedding_loss", differentiable=(0, 1)),
    ),
    # every pair of a batch
    speed_only("nt_xent_loss", sweeps.paired_views, "temperature 0.5"),
    speed_only("info_nce_loss", sweeps.paired_views, "temperature 0.07"),
    speed_only("clip_loss", sweeps.paired_views, "temperature 0.07"),
    speed_only("siglip_loss", sweeps.paired_views, "scale 10, bias -10"),
)
"""The losses measured for speed and memory only (their accuracy is tested in tests/)."""

LEFT_OUT = {
    "ctc_loss": "the textbook forward recursion over the alignments is a page of NumPy, "
    "not a formula",
}
"""Public losses with a gradient that the benchmark does not measure, and why."""

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
    *SPEED_ONLY,
)
