"""Elementwise losses of labels in {-1, +1}, evaluated block by block (private).

The hinge, square, logistic and pairwise margin losses are short chains of elementwise
operations on a score and a label. Over blocks of a few tens of thousands of elements
the chain runs in the cache, and the only full-size arrays are the results: the
per-element losses of a reduction are summed block by block, never stored.
"""

from __future__ import annotations

import threading

import numpy as np

from . import _numerics as nx
from ._checks import check_pm1_labels
from ._reduction import BlockReduction, for_each_span, reduction_scale

# Bytes per block buffer: 64K float32 or 32K float64 elements. Four or five such buffers stay
# in the 1 MB L2 cache, and the chains are short, so NumPy's call overhead (about a
# microsecond per ufunc call) weighs more than with half the length (measured on 1e7 float32
# elements: about 20 % faster than blocks of 32K); float64 gained nothing from 64K.
_BLOCK_BYTES = 1 << 18


def block_length(dtype, n: int, block_bytes: int = _BLOCK_BYTES) -> int:
    """Elements per block for ``n`` elements of the working ``dtype`` (at least 1)."""
    return max(1, min(n, block_bytes // np.dtype(dtype).itemsize))


def _check_labels(labels, spare):
    """:func:`check_pm1_labels` of a block, the common case (every ``|t|`` is 1) in three
    passes over the cache-resident ``spare`` (the block's length, the labels' dtype)."""
    np.abs(labels, out=spare)
    if not np.minimum.reduce(spare) == np.maximum.reduce(spare) == 1:  # also with a NaN
        check_pm1_labels(labels, "target")


def in_blocks(
    kernel,
    inputs,
    target,
    reduction,
    *,
    value,
    grad,
    factor=1,
    work=None,
    into=False,
    block_bytes=_BLOCK_BYTES,
):
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

    With ``into``, the kernel is called as ``kernel(*blocks, labels, out)``, ``out`` the
    pair of places (or None where not asked for) to write the losses and the derivative
    into: the result's own memory where the dtypes allow, else scratch buffers; it
    returns them, and a zero derivative it forms must be +0 (no pass mends the sign).
    ``block_bytes``: a kernel with many temporaries per element (the TwoSums of the margin
    ranking gap) takes smaller blocks, so that they stay in the cache.
    """
    dtype, shape = inputs[0].dtype, inputs[0].shape
    work = nx.working_dtype(dtype) if work is None else work
    flat = [x.reshape(-1) for x in inputs]
    t, n = target.reshape(-1), target.size
    total = BlockReduction(reduction, n, dtype) if value else None
    grads = [np.empty(n, dtype) for _ in flat] if grad else None
    scale = reduction_scale(n, reduction, work) if reduction == "mean" else 1
    length = block_length(work, n, block_bytes)
    local = threading.local()

    def span_of_blocks(span: slice, reduced) -> None:
        if not hasattr(local, "spare"):  # a thread's buffers, reused by every block
            local.spare = np.empty(length, t.dtype)
            # where the losses or the derivatives cannot be formed in the result itself
            local.scratch = [
                np.empty(length, work) if into and needed else None
                for needed in (
                    value and (reduction != "none" or dtype != work),
                    grad and dtype != work,
                )
            ]
        spare, scratch = local.spare, local.scratch
        for start in range(span.start, span.stop, length):
            block = slice(start, min(start + length, span.stop))
            size = block.stop - block.start
            labels = t[block]
            _check_labels(labels, spare[:size])
            blocks = (x[block].astype(work, copy=False) for x in flat)
            if into:
                out = (
                    None
                    if not value
                    else reduced.values[block]  # the result itself
                    if scratch[0] is None
                    else reduced.buffer(block, scratch[0][:size]),
                    (grads[0][block] if dtype == work else scratch[1][:size]) if grad else None,
                )
                values, slope, *shares = kernel(*blocks, labels.astype(work, copy=False), out)
            else:
                values, slope, *shares = kernel(*blocks, labels.astype(work, copy=False))
            if value:
                reduced.add(values, block, *shares)
            if grad:
                if scale != 1:
                    slope *= scale
                if factor != 1:
                    slope *= factor
                if not into:
                    slope += 0.0  # a zero gradient is +0
                if not np.may_share_memory(slope, grads[0]):
                    grads[0][block] = slope
                if len(grads) == 2:
                    np.subtract(0.0, grads[0][block], out=grads[1][block])

    # (overflow, underflow and NaN show in the result: no warnings in any thread)
    for_each_span(span_of_blocks, total, n, work.itemsize)  # on up to two threads
    loss = total.result(shape) if value else None
    return loss, (None if not grad else tuple(g.reshape(shape) for g in grads))
