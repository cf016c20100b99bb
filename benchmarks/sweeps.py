"""Input generators: hard sweeps for accuracy, realistic arrays for speed.

A hard sweep ``f(rng, n)`` returns a list of regimes ``(description, args)``,
each with ``n`` points (rows for the row functions), all float64 (labels are
integers). A speed generator ``f(rng, dtype, sizes)`` returns the arguments at
the sizes of a real training step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_CLASSES = 10


@dataclass(frozen=True)
class Sizes:
    """Array sizes of the speed and memory benchmarks."""

    rows: tuple[int, int]
    elements: int

    def describe(self) -> dict:
        """The sizes as JSON-ready numbers (each speed entry also records its shapes)."""
        return {
            "row_losses": list(self.rows),
            "elementwise_losses": self.elements,
            "embeddings": list(_quick(self, EMBEDDINGS)),
            "all_pairs_batch": list(_quick(self, ALL_PAIRS_BATCH)),
            "multilabel_margin_loss": list(_quick(self, MULTILABEL_ROWS)),
            "log_gamma_losses": _fewer(self).elements,
        }


FULL = Sizes(rows=(8192, 1000), elements=10**7)
QUICK = Sizes(rows=(64, 100), elements=10**4)


def _signed_logspace(rng, low, high, n):
    """``n`` magnitudes log-uniform on ``[10**low, 10**high]`` with random signs."""
    return rng.choice([-1.0, 1.0], n) * np.logspace(low, high, n)


def _confident_margins(n, num_others=1):
    """Margins M whose loss ``log1p(num_others * e^-M)`` runs from 1e-15 down to 1e-300."""
    return np.log(num_others / np.logspace(-15, -300, n))


# ---- hard sweeps ---------------------------------------------------------------------


def scalar_logits(rng, n):
    """Logits for the elementwise activations: both tails out to +-1e4, and tiny ones."""
    return [
        ("moderate |x| <= 30", (np.linspace(-30, 30, n),)),
        ("tiny |x| in 1e-300..1e-5", (_signed_logspace(rng, -300, -5, n),)),
        ("tails 30 < |x| <= 1e4", (_signed_logspace(rng, np.log10(30), 4, n),)),
    ]


def binary_logits(rng, n):
    """(logit, target) pairs: confident right and wrong, soft targets, logits of +-1e4."""
    sign = rng.choice([-1.0, 1.0], n)
    label = (sign > 0).astype(np.float64)
    return [
        ("confident correct, loss 1e-15..1e-300", (sign * _confident_margins(n), label)),
        ("confident wrong, |x| in 10..1e4", (-sign * np.logspace(1, 4, n), label)),
        ("moderate |x| <= 20, soft targets", (rng.uniform(-20, 20, n), rng.uniform(0, 1, n))),
        ("|x| = 1e4, soft targets", (sign * 1e4, rng.uniform(0, 1, n))),
    ]


def class_rows(rng, n, num_classes=NUM_CLASSES):
    """(logits, labels) rows: confident right and wrong, rows near +-1e4, wide spreads."""
    labels = rng.integers(0, num_classes, n)
    at_label = np.arange(num_classes) == labels[:, None]
    noise = rng.standard_normal((n, num_classes))
    top = np.where(at_label, _confident_margins(n, num_classes - 1)[:, None], 0.0)
    wrong = np.where(np.roll(at_label, 1, axis=1), np.logspace(1, 4, n)[:, None], 0.0)
    return [
        ("moderate logits N(0, 3^2)", (3 * noise, labels)),
        ("confident correct, loss 1e-15..1e-300", (top, labels)),
        ("confident wrong, margin 10..1e4", (wrong, labels)),
        ("logits near +1e4", (1e4 + 3 * noise, labels)),
        ("logits near -1e4", (-1e4 + 3 * noise, labels)),
        ("logits spread over +-1e4", (rng.uniform(-1e4, 1e4, (n, num_classes)), labels)),
    ]


def class_rows_without_labels(rng, n):
    """The rows of :func:`class_rows` for functions of the logits alone."""
    return [(name, (logits,)) for name, (logits, _) in class_rows(rng, n)]


def residuals(rng, n):
    """(input, target) pairs: tiny residuals, moderate ones around 1, huge ones."""
    tiny = _signed_logspace(rng, -300, -5, n)
    tiny_target = np.round(rng.uniform(-3, 3, n)) * np.abs(tiny)
    huge = _signed_logspace(rng, 1, 300, n)
    target = rng.standard_normal(n)
    return [
        ("tiny residuals 1e-300..1e-5", (tiny_target + tiny, tiny_target)),
        ("moderate residuals N(0, 3^2)", (target + 3 * rng.standard_normal(n), target)),
        ("huge residuals 10..1e300", (target + huge, target)),
    ]


def gaussian_posteriors(rng, n):
    """(mu, logvar) rows of one latent each: near the prior, moderate, and both tails."""
    tiny = _signed_logspace(rng, -300, -3, n)
    return [
        ("mu = 0, tiny logvar 1e-300..1e-3", (np.zeros((n, 1)), tiny[:, None])),
        (
            "tiny mu and logvar 1e-300..1e-5",
            (_signed_logspace(rng, -300, -5, n)[:, None], rng.permutation(tiny)[:, None]),
        ),
        (
            "moderate mu N(0, 1), logvar N(0, 2^2)",
            (rng.standard_normal((n, 1)), 2 * rng.standard_normal((n, 1))),
        ),
        (
            "tails |mu| 1..1e150, |logvar| 1..700",
            (
                _signed_logspace(rng, 0, 150, n)[:, None],
                _signed_logspace(rng, 0, np.log10(700), n)[:, None],
            ),
        ),
    ]


# ---- realistic inputs for speed and memory -------------------------------------------


def _normal(rng, shape, dtype, scale=3.0):
    return (scale * rng.standard_normal(shape, dtype=np.float64)).astype(dtype)


def logit_matrix(rng, dtype, sizes):
    """Logits of shape ``sizes.rows``."""
    return (_normal(rng, sizes.rows, dtype),)


def logit_matrix_with_labels(rng, dtype, sizes):
    """Logits of shape ``sizes.rows`` and one integer label per row."""
    return logit_matrix(rng, dtype, sizes) + (rng.integers(0, sizes.rows[1], sizes.rows[0]),)


def logit_vector(rng, dtype, sizes):
    """``sizes.elements`` logits."""
    return (_normal(rng, sizes.elements, dtype),)


def logits_with_binary_targets(rng, dtype, sizes):
    """``sizes.elements`` logits and 0/1 targets of the same dtype."""
    return logit_vector(rng, dtype, sizes) + (rng.integers(0, 2, sizes.elements).astype(dtype),)


def predictions_and_targets(rng, dtype, sizes):
    """``sizes.elements`` predictions and targets."""
    return logit_vector(rng, dtype, sizes) + (_normal(rng, sizes.elements, dtype, 1.0),)


def latent_posteriors(rng, dtype, sizes):
    """(mu, logvar) with ``sizes.elements`` entries, as rows of ``sizes.rows[1]`` latents."""
    shape = (sizes.elements // sizes.rows[1], sizes.rows[1])
    return _normal(rng, shape, dtype, 1.0), _normal(rng, shape, dtype, 1.0)


# ---- realistic inputs of the losses measured for speed and memory only ---------------
# Each returns float arrays of ``dtype`` (labels, counts and indices as the loss takes them).

EMBEDDINGS = (8192, 128)
"""Pairs, triplets and sequences of embeddings for the metric losses: one row each."""
ALL_PAIRS_BATCH = (1024, 128)
"""The batch of the losses over every pair of it (cost quadratic in the rows)."""
MULTILABEL_ROWS = (8192, 1000)
"""Rows of the multilabel margin loss: the row functions' logits (the textbook's
rows x labels x classes hinges are then a few hundred MB)."""
MULTILABEL_LABELS = 3
"""Labels per row of the multilabel margin loss (the textbook's cost is rows x labels x
classes)."""


LOG_GAMMA_FRACTION = 10
"""The elementwise losses with log-gamma terms use a tenth of the elements: lossutils'
careful log-gamma differences take seconds per 1e7 elements (a full run would spend
minutes on them)."""


def _quick(sizes, shape):
    """``shape`` at full size; a tiny one for a quick run."""
    return shape if sizes.elements >= 10**6 else (16, 8)


def _signs(rng, shape, dtype):
    return rng.choice([-1.0, 1.0], shape).astype(dtype)


def _positive(rng, shape, dtype):
    """Log-normal positive numbers around 1 (variances, scales, counts' dispersions)."""
    return np.exp(0.5 * rng.standard_normal(shape)).astype(dtype)


def _counts(rng, shape, dtype):
    return rng.poisson(3.0, shape).astype(dtype)


def _probabilities(rng, dtype, shape):
    """Rows of ``shape`` on the simplex (a softmax of N(0, 1) logits)."""
    e = np.exp(rng.standard_normal(shape))
    return (e / e.sum(axis=-1, keepdims=True)).astype(dtype)


def predictions_targets_and_variances(rng, dtype, sizes):
    """Predictions, targets and a positive variance or scale per element."""
    return predictions_and_targets(rng, dtype, sizes) + (_positive(rng, sizes.elements, dtype),)


def log_rates_and_counts(rng, dtype, sizes):
    """Log-rates N(0, 1) and Poisson(3) counts."""
    return _normal(rng, sizes.elements, dtype, 1.0), _counts(rng, sizes.elements, dtype)


def _fewer(sizes):
    """``sizes`` with :data:`LOG_GAMMA_FRACTION` of the elements."""
    return Sizes(sizes.rows, sizes.elements // LOG_GAMMA_FRACTION)


def logits_counts_and_total_counts(rng, dtype, sizes):
    """Logits N(0, 1), Poisson(3) counts and a positive total count per element, for a tenth
    of ``sizes.elements`` (log-gamma terms)."""
    sizes = _fewer(sizes)
    return log_rates_and_counts(rng, dtype, sizes) + (1 + _positive(rng, sizes.elements, dtype),)


def student_t_arguments(rng, dtype, sizes):
    """Predictions, targets, positive scales and degrees of freedom in [1, 30], for a tenth of
    ``sizes.elements`` (log-gamma terms)."""
    sizes = _fewer(sizes)
    df = rng.uniform(1, 30, sizes.elements).astype(dtype)
    return predictions_targets_and_variances(rng, dtype, sizes) + (df,)


def quantile_arguments(rng, dtype, sizes):
    """Predictions, targets and the 0.9 quantile level."""
    return predictions_and_targets(rng, dtype, sizes) + (0.9,)


def probabilities_with_binary_targets(rng, dtype, sizes):
    """Probabilities sigma(N(0, 1)) and 0/1 targets."""
    p = 1 / (1 + np.exp(-rng.standard_normal(sizes.elements)))
    return p.astype(dtype), rng.integers(0, 2, sizes.elements).astype(dtype)


def scores_with_signed_labels(rng, dtype, sizes):
    """Scores N(0, 3^2) and labels in {-1, +1}."""
    return logit_vector(rng, dtype, sizes) + (_signs(rng, sizes.elements, dtype),)


def score_pairs_with_signed_labels(rng, dtype, sizes):
    """Two scores per element and a label in {-1, +1}."""
    return predictions_and_targets(rng, dtype, sizes) + (_signs(rng, sizes.elements, dtype),)


def distances_with_signed_labels(rng, dtype, sizes):
    """Non-negative distances |N(0, 1)| and labels in {-1, +1}."""
    d = np.abs(_normal(rng, sizes.elements, dtype, 1.0))
    return d, _signs(rng, sizes.elements, dtype)


def preference_log_probabilities(rng, dtype, sizes, count=2):
    """``count`` arrays of sequence log-probabilities (negative, around -50)."""
    return tuple(
        (-50 + _normal(rng, sizes.elements, np.float64, 5.0)).astype(dtype) for _ in range(count)
    )


def dpo_log_probabilities(rng, dtype, sizes):
    """Policy and reference log-probabilities of the chosen and rejected responses."""
    return preference_log_probabilities(rng, dtype, sizes, count=4)


def weights_and_strength(rng, dtype, sizes):
    """``sizes.elements`` parameters N(0, 0.1^2) and the penalty's strength 1e-4."""
    return _normal(rng, sizes.elements, dtype, 0.1), 1e-4


def log_probability_matrix_with_labels(rng, dtype, sizes):
    """Log-softmax rows of shape ``sizes.rows`` and one integer label per row."""
    z, labels = logit_matrix_with_labels(rng, np.float64, sizes)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return logp.astype(dtype), labels


def logit_matrix_with_binary_targets(rng, dtype, sizes):
    """Logits of shape ``sizes.rows`` and 0/1 targets per class."""
    return logit_matrix(rng, dtype, sizes) + (rng.integers(0, 2, sizes.rows).astype(dtype),)


def logit_matrix_with_label_lists(rng, dtype, sizes):
    """Logits of shape :data:`MULTILABEL_ROWS`; targets listing a few distinct classes, padded
    with -1."""
    n, c = _quick(sizes, MULTILABEL_ROWS)
    labels = np.argsort(rng.random((n, c)), axis=1)[:, :MULTILABEL_LABELS]
    target = np.full((n, c), -1, dtype=np.int64)
    target[:, :MULTILABEL_LABELS] = labels
    return _normal(rng, (n, c), dtype), target


def log_probabilities_and_probabilities(rng, dtype, sizes):
    """Log-probability rows (the input of ``kl_div``) and probability rows (its target)."""
    logq = np.log(_probabilities(rng, np.float64, sizes.rows)).astype(dtype)
    return logq, _probabilities(rng, dtype, sizes.rows)


def distribution_pairs(rng, dtype, sizes):
    """Two probability rows of shape ``sizes.rows``: ``p`` and ``q``."""
    return _probabilities(rng, dtype, sizes.rows), _probabilities(rng, dtype, sizes.rows)


def vae_batch(rng, dtype, sizes, latents=32):
    """Binary data and reconstruction logits of shape ``sizes.rows``, and (mu, logvar)."""
    n = sizes.rows[0]
    x = rng.integers(0, 2, sizes.rows).astype(dtype)
    return (x, _normal(rng, sizes.rows, dtype)) + tuple(
        _normal(rng, (n, latents), dtype, 1.0) for _ in range(2)
    )


def _embeddings(rng, dtype, shape, count):
    """``count`` arrays of rows N(0, I / D): norms near 1, distances near sqrt(2)."""
    return tuple(_normal(rng, shape, dtype, shape[-1] ** -0.5) for _ in range(count))


def embedding_pairs_with_labels(rng, dtype, sizes):
    """Two embeddings per row and a 0/1 label (similar or not) per row."""
    shape = _quick(sizes, EMBEDDINGS)
    return _embeddings(rng, dtype, shape, 2) + (rng.integers(0, 2, shape[0]).astype(dtype),)


def embedding_pairs_with_signed_labels(rng, dtype, sizes):
    """Two embeddings per row and a label in {-1, +1} per row."""
    shape = _quick(sizes, EMBEDDINGS)
    return _embeddings(rng, dtype, shape, 2) + (_signs(rng, shape[0], dtype),)


def embedding_triplets(rng, dtype, sizes):
    """Anchor, positive and negative embeddings."""
    return _embeddings(rng, dtype, _quick(sizes, EMBEDDINGS), 3)


def paired_views(rng, dtype, sizes):
    """Two views of one batch (rows i of both are a positive pair) for the all-pairs losses."""
    shape = _quick(sizes, ALL_PAIRS_BATCH)
    z1 = _normal(rng, shape, np.float64, 1.0)
    return (z1.astype(dtype), (z1 + _normal(rng, shape, np.float64, 0.5)).astype(dtype))


def noise_predictions(rng, dtype, sizes, steps=1000):
    """Predicted and true noise as ``sizes.elements`` entries in rows of ``sizes.rows[1]``;
    a step per row and a linear schedule of ``steps`` betas from 1e-4 to 0.02."""
    shape = (sizes.elements // sizes.rows[1], sizes.rows[1])
    t = rng.integers(1, steps + 1, shape[0])
    return (
        _normal(rng, shape, dtype, 1.0),
        _normal(rng, shape, dtype, 1.0),
        t,
        np.linspace(1e-4, 0.02, steps).astype(dtype),
    )
