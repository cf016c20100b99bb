"""One figure style for the whole book.

Every chapter draws through these helpers, so axes are always labelled, sizes
and colours agree across chapters, and nothing non-deterministic (a date, a
memory address) ends up in a stored output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["use_book_style", "figure", "plot_curves", "plot_loss_and_grad", "plot_decision_regions"]

BOOK_STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 80,
    "savefig.dpi": 80,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": "medium",
    "legend.frameon": False,
    "font.size": 10,
}


def use_book_style() -> None:
    """Apply the book's matplotlib style (call once, in a chapter's first code cell)."""
    import matplotlib.pyplot as plt

    plt.rcParams.update(BOOK_STYLE)


def figure(ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 3.6):
    """A new figure with a grid of axes in the book's style; returns ``(fig, axes)``."""
    import matplotlib.pyplot as plt

    use_book_style()
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width, height), squeeze=False, layout="constrained"
    )
    return fig, (axes[0, 0] if axes.size == 1 else axes.ravel())


def plot_curves(ax, x, curves: Mapping[str, np.ndarray], xlabel: str, ylabel: str, title: str = ""):
    """Several labelled curves ``{label: y}`` against one ``x`` on ``ax``."""
    for label, y in curves.items():
        ax.plot(x, y, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    return ax


def plot_loss_and_grad(
    x,
    losses: Mapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    xlabel: str,
    title: str = "",
):
    """Side by side: each loss, and its derivative, against ``x`` (a residual or a margin)."""
    fig, (left, right) = figure(ncols=2, width=8.0, height=3.2)
    plot_curves(left, x, losses, xlabel, "loss")
    plot_curves(right, x, grads, xlabel, "derivative of the loss")
    if title:
        fig.suptitle(title)
    return fig


def plot_decision_regions(
    ax,
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    xlabel: str = "$x_1$",
    ylabel: str = "$x_2$",
    resolution: int = 200,
):
    """Colour the plane by the classes ``predict`` gives an ``(n, 2)`` array; scatter ``X``."""
    pad = 0.5
    x0 = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, resolution)
    x1 = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, resolution)
    g0, g1 = np.meshgrid(x0, x1)
    classes = np.asarray(predict(np.column_stack([g0.ravel(), g1.ravel()]))).reshape(g0.shape)
    levels = np.arange(int(max(classes.max(), y.max())) + 2) - 0.5
    ax.contourf(g0, g1, classes, levels=levels, cmap="Pastel1", alpha=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="Set1", s=12, edgecolors="k", linewidths=0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax
