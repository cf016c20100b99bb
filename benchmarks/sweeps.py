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
        """The sizes as JSON-ready numbers."""
        return {"row_losses": list(self.rows), "elementwise_losses": self.elements}


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
