"""Elementwise losses of labels in {-1, +1}, evaluated block by block (private).

The hinge, square, logistic and pairwise margin losses are short chains of elementwise
operations on a score and a label. Over blocks of a few tens of thousands of elements
the chain runs in the cache, and the only full-size arrays are the results: the
per-element losses of a reduction are summed block by block, never stored.
"""

from __future__ import annotations

import numpy as np

from . import _numerics as nx
from ._checks import check_pm1_labels
from ._reduction import BlockReduction


def in_blocks(kernel, inputs, target, reduction, *, value, grad, factor=1, work=None):
    """``(loss or None, gradients or None)`` of an elementwise loss, block by block.

    ``inputs`` (same shape) and the labels ``target`` (checked block by block) are taken
    in blocks of elements in the working dtype (``work``, if given: float64 for a margin
    that the working dtype does not hold); ``kernel(*blocks, labels)`` returns the
    block's per-element losses (or None) and the derivative of each loss with respect to
    the first input (or None), a new array, and optionally a third item: the ``shares``
    of :meth:`BlockReduction.add` (values that are squares which may overflow). The
    gradient with respect to the second
    input, if there are two, is its negative. A power-of-two ``factor`` of the derivative
    is applied after the reduction's scale: the same bits, but a finite ``2 g / size``
    survives where ``2 g`` would overflow. The gradients are a tuple, one per input.
    """
    dtype, shape = inputs[0].dtype, inputs[0].shape
    work = nx.working_dtype(dtype) if work is None else work
    flat = [x.reshape(-1) for x in inputs]
    t, n = target.reshape(-1), target.size
    reduced = BlockReduction(reduction, n, dtype) if value else None
    grads = [np.empty(n, dtype) for _ in flat] if grad else None
    scale = work.type(np.nan if n == 0 else 1.0 / n) if reduction == "mean" else 1
    with np.errstate(all="ignore"):  # overflow, underflow and NaN show in the result
        for block in nx.chunks(n):
            labels = t[block]
            check_pm1_labels(labels, "target")
            blocks = (x[block].astype(work, copy=False) for x in flat)
            values, local, *shares = kernel(*blocks, labels.astype(work, copy=False))
            if value:
                reduced.add(values, block, *shares)
            if grad:
                local *= scale
                if factor != 1:
                    local *= factor
                local += 0.0  # a zero gradient is +0
                grads[0][block] = local
                if len(grads) == 2:
                    grads[1][block] = np.subtract(0.0, local, out=local)
    loss = reduced.result(shape) if value else None
    return loss, (None if not grad else tuple(g.reshape(shape) for g in grads))
