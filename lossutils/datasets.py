"""Small seeded synthetic data sets that several chapters share.

A data set that two chapters use lives here, with its own seed, so that it does
not depend on how many random numbers a chapter happened to draw before it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["line_with_outlier"]


def line_with_outlier(
    n: int = 30,
    slope: float = 2.0,
    intercept: float = 1.0,
    noise: float = 0.1,
    outlier: float = 10.0,
    seed: int = 0,
):
    """Noisy points of a line, and the same points with one gross outlier.

    The inputs are sorted uniform draws on :math:`[0, 1]` and the targets follow

    .. math::

        y_i = a x_i + b + \\sigma \\varepsilon_i, \\qquad \\varepsilon_i \\sim \\mathcal{N}(0, 1),

    with slope :math:`a`, intercept :math:`b` and noise level :math:`\\sigma`. The corrupted copy
    adds ``outlier`` to the target of the last point, the one with the largest :math:`x`.

    Parameters
    ----------
    n : int, optional
        Number of points (at least 2).
    slope, intercept : float, optional
        The true line :math:`y = a x + b`.
    noise : float, optional
        Standard deviation :math:`\\sigma` of the Gaussian noise.
    outlier : float, optional
        What is added to the last target in ``y_outlier``.
    seed : int, optional
        Seed of the generator (``numpy.random.default_rng(seed)``); the data depend on nothing
        else.

    Returns
    -------
    x : ndarray, shape (n,)
        Sorted inputs in :math:`[0, 1)`.
    y : ndarray, shape (n,)
        Clean targets.
    y_outlier : ndarray, shape (n,)
        A copy of ``y`` whose last entry is ``y[-1] + outlier``.

    Raises
    ------
    ValueError
        If ``n`` is not an integer of at least 2.

    Notes
    -----
    The data of the line experiments in the chapters on the Gaussian likelihood and on robust
    regression: least squares fits the clean points well and is dragged by the outlier, which
    the robust losses resist :cite:p:`huber1964robust`. The generator draws the ``n`` inputs
    first and then the ``n`` noise values, so a given seed always gives the same data.

    Examples
    --------
    >>> x, y, y_outlier = line_with_outlier()
    >>> x.shape, bool(np.all(np.diff(x) > 0))
    ((30,), True)
    >>> bool(y_outlier[-1] == y[-1] + 10.0), bool(np.array_equal(y_outlier[:-1], y[:-1]))
    (True, True)
    >>> np.round(np.polyfit(x, y, 1), 1).tolist()
    [2.0, 1.0]
    """
    if int(n) != n or n < 2:
        raise ValueError(f"n: expected an integer of at least 2, got {n!r}")
    n = int(n)
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0.0, 1.0, size=n))
    y = slope * x + intercept + noise * rng.normal(size=n)
    y_outlier = y.copy()
    y_outlier[-1] += outlier
    return x, y, y_outlier
