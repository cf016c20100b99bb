"""Draw the landing page's figure: figures/bce-digits.png.

Usage: python tools/landing_figure.py

The binary cross-entropy of a logit z with target 1, -log sigmoid(z), and its gradient
sigmoid(z) - 1, derived in SymPy from the Bernoulli likelihood. Each is evaluated three ways
over the logit range (up to z = 700, where the exact loss e^-z is still a
float64): the textbook formula as NumPy evaluates it, lossutils, and mpmath at
50 digits (the reference). The figure shows the number of correct decimal digits of the first
two. The statements of the figure's caption in intro.md are asserted here.
"""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mpmath  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import lossutils  # noqa: E402
from lossutils import plotting  # noqa: E402
from lossutils import symbolic as ls  # noqa: E402

EPS = 2.0**-53  # unit roundoff of float64
FULL = float(-np.log10(EPS))
OUT = pathlib.Path(__file__).resolve().parent.parent / "figures" / "bce-digits.png"


def correct_digits(computed, reference):
    """-log10 of the relative error, at most float64's 15.95 digits; 0 for inf, NaN or no digit."""
    digits = np.zeros(len(reference))
    for k, (value, exact) in enumerate(zip(computed, reference, strict=True)):
        if np.isfinite(value):
            error = abs(mpmath.mpf(float(value)) - exact) / abs(exact)
            exact_in_float = float(value) == float(exact)  # correctly rounded (or underflows)
            digits[k] = FULL if exact_in_float else float(-mpmath.log10(max(error, EPS)))
    return np.clip(digits, 0.0, FULL)


def main() -> None:
    z, y = sp.symbols("z y", real=True)
    loss = ls.negative_log(ls.bernoulli_pmf(y, ls.sigmoid(z))).subs(y, 1)
    grad = sp.diff(loss, z)
    textbook_grad = 1 / (1 + sp.exp(-z)) - 1  # sigma(z) - y, as usually written
    assert sp.simplify(grad.rewrite(sp.exp) - textbook_grad) == 0
    textbook_loss = -sp.log(1 / (1 + sp.exp(-z)))
    assert sp.simplify(loss.rewrite(sp.exp) - textbook_loss) == 0

    logits = np.concatenate([-np.geomspace(1000, 0.01, 300), np.geomspace(0.01, 700, 300)])
    mpmath.mp.dps = 50
    exact_loss = [mpmath.log1p(mpmath.exp(-mpmath.mpf(float(v)))) for v in logits]
    exact_grad = [-1 / (1 + mpmath.exp(mpmath.mpf(float(v)))) for v in logits]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        naive_loss = sp.lambdify(z, textbook_loss, "numpy")(logits)
        naive_grad = sp.lambdify(z, textbook_grad, "numpy")(logits)
    ones = np.ones_like(logits)
    ours_loss = lossutils.binary_cross_entropy_with_logits(logits, ones, reduction="none")
    ours_grad = lossutils.binary_cross_entropy_with_logits_grad(logits, ones, reduction="none")

    digits = {
        r"loss $-\log \sigma(z)$, textbook": correct_digits(naive_loss, exact_loss),
        r"gradient $\sigma(z) - 1$, textbook": correct_digits(naive_grad, exact_grad),
        "loss, lossutils": correct_digits(ours_loss, exact_loss),
        "gradient, lossutils": correct_digits(ours_grad, exact_grad),
    }
    # The caption's statements.
    assert np.all(naive_loss[logits > 37] == 0) and np.all(naive_loss[logits < 36] > 0)
    assert np.all(naive_grad[logits > 37] == 0) and np.all(naive_grad[logits < 36] < 0)
    assert (
        np.isinf(naive_loss[logits < -710]).all() and np.isfinite(naive_loss[logits > -709]).all()
    )
    assert digits["loss, lossutils"].min() > 15 and digits["gradient, lossutils"].min() > 15

    fig, ax = plotting.figure(width=7.0, height=3.4)
    # textbook dashed and dotted, lossutils solid (wide) with its gradient dotted on top
    looks = [("C3", (0, (5, 2)), 1.8), ("C1", (0, (1, 1.5)), 2.4)]
    looks += [("C0", "-", 3.0), ("C2", ":", 1.8)]
    for (label, values), (colour, style, width) in zip(digits.items(), looks, strict=True):
        ax.plot(logits, values, label=label, color=colour, linestyle=style, linewidth=width)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_ylim(-0.5, 17.0)
    ax.set_xlabel("logit $z$ (target $y = 1$)")
    ax.set_ylabel("correct decimal digits")
    ax.set_title("Binary cross-entropy in float64 against a 50-digit reference")
    ax.legend(loc="lower left", fontsize="small")
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=120, metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {OUT.relative_to(OUT.parent.parent)}")


if __name__ == "__main__":
    main()
