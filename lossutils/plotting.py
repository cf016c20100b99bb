"""One figure style for the whole book.

Every chapter draws through these helpers, so axes are always labelled, sizes
and colours agree across chapters, and nothing non-deterministic (a date, a
memory address) ends up in a stored output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

__all__ = [
    "use_book_style",
    "figure",
    "plot_curves",
    "plot_loss_and_grad",
    "class_colors",
    "plot_decision_regions",
]

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


# Series differ by line style as well as colour, so that a curve drawn on top of another
# (two losses that agree on part of the axis) leaves the one below visible, in print too.
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))


def plot_curves(ax, x, curves: Mapping[str, np.ndarray], xlabel: str, ylabel: str, title: str = ""):
    """Several labelled curves ``{label: y}`` against one ``x`` on ``ax``.

    The k-th curve gets the k-th of ``LINE_STYLES`` (solid first), so none hides another.

    Examples
    --------
    >>> fig, ax = figure()
    >>> x = np.linspace(-1, 1, 5)
    >>> _ = plot_curves(ax, x, {"a": x, "b": x}, "$x$", "$y$")
    >>> [line.get_linestyle() for line in ax.get_lines()]
    ['-', '--']
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    for k, (label, y) in enumerate(curves.items()):
        ax.plot(x, y, label=label, linestyle=LINE_STYLES[k % len(LINE_STYLES)])
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


def class_colors(n_classes: int, tint: float = 0.3):
    """The colour of each class, full and as a light tint; returns two ``(n_classes, 3)`` arrays.

    One qualitative palette (matplotlib's ``tab10``, repeated beyond ten classes) for the whole
    book. The tint mixes a colour with white: ``tint`` is the share of the colour that remains.

    Examples
    --------
    >>> full, light = class_colors(3)
    >>> full.shape, bool(np.allclose(light, 1 - 0.3 * (1 - full)))
    ((3, 3), True)
    """
    import matplotlib as mpl
    from matplotlib.colors import to_rgb

    palette = mpl.colormaps["tab10"].colors
    full = np.array([to_rgb(palette[k % len(palette)]) for k in range(n_classes)])
    return full, 1 - tint * (1 - full)


def plot_decision_regions(
    ax,
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    xlabel: str = "$x_1$",
    ylabel: str = "$x_2$",
    resolution: int = 200,
):
    """Colour the plane by the classes ``predict`` gives an ``(n, 2)`` array; scatter ``X``.

    Classes are integers ``0, 1, ...``. Class ``k`` has one colour (:func:`class_colors`): its
    region is a light tint of it and its points are drawn in the full colour with a thin dark
    edge, so a point whose colour differs from the region under it is misclassified.

    Examples
    --------
    >>> fig, ax = figure()
    >>> X, y = np.array([[0.0, 0.0], [1.0, 1.0], [0.9, 0.0]]), np.array([0, 1, 1])
    >>> _ = plot_decision_regions(ax, lambda P: (P.sum(axis=1) > 1).astype(int), X, y)
    >>> full, light = class_colors(2)
    >>> bool(np.allclose(ax.collections[-1].get_facecolors()[:, :3], full[y]))
    True
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('$x_1$', '$x_2$')
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    pad = 0.5
    x0 = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, resolution)
    x1 = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, resolution)
    g0, g1 = np.meshgrid(x0, x1)
    classes = np.asarray(predict(np.column_stack([g0.ravel(), g1.ravel()]))).reshape(g0.shape)
    labels = np.asarray(y).astype(int)
    n_classes = int(max(classes.max(), labels.max())) + 1
    full, light = class_colors(n_classes)
    levels = np.arange(n_classes + 1) - 0.5
    ax.contourf(g0, g1, classes, levels=levels, colors=[tuple(c) for c in light])
    ax.scatter(X[:, 0], X[:, 1], c=full[labels], s=14, edgecolors="0.15", linewidths=0.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax
