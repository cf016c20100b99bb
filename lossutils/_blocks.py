"""Row blocks of cache size, evaluated by a small pool of threads (private).

A row function (softmax, log-sum-exp, cross-entropy) runs a chain of about ten
elementwise NumPy operations over its rows. Over a large array each operation streams
the whole array through memory; over a block of rows that fits in the cache the chain
runs at the speed of the cache, and NumPy releases the GIL inside each ufunc, so two
blocks can run at once on two cores. Every row is computed by the same operations
whatever block it falls in, so the results do not depend on the blocking or on the
number of threads.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# About 1 MB of input per block: with the two or three block-sized temporaries of a row
# function the working set of two threads stays in the last-level cache, and the Python
# cost per block (about a dozen ufunc calls) stays small next to its work. Measured on
# (8192, 1000) logits: blocks of 128 KB cost about 30 % more time, 1 to 4 MB all the same;
# the smallest of those keeps the temporaries (one block per thread) small next to a result.
BLOCK_BYTES = 1 << 20
# Work below this size runs in the calling thread (a thread hand-off costs ~50 us).
_THREAD_MIN_BYTES = 4 * BLOCK_BYTES


def _workers() -> int:
    """Threads per call, the caller included: the environment variable
    ``LOSSUTILS_NUM_THREADS`` if it is set (1: no threads, e.g. in a data loader's worker
    processes), else two at most (the machines this is tuned on have two cores)."""
    setting = os.environ.get("LOSSUTILS_NUM_THREADS", "").strip()
    if not setting:
        return max(1, min(2, os.cpu_count() or 1))
    if not setting.isdecimal() or int(setting) < 1:
        raise ValueError(f"LOSSUTILS_NUM_THREADS: expected a positive integer, got {setting!r}")
    return int(setting)


WORKERS = _workers()

_THREAD_PREFIX = "lossutils-rows"
_pool: ThreadPoolExecutor | None = None
_pool_pid = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The shared pool, made on first use (and again in a forked child, whose copy is dead)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max(1, WORKERS - 1), thread_name_prefix=_THREAD_PREFIX)
            _pool_pid = os.getpid()
        return _pool


# Elements per block of the elementwise kernels (lossutils._numerics). Their few buffers
# (128 KB each in float32, 256 KB in float64) stay in the caches (1 MB L2 per core, a shared
# L3), so that a chain of a dozen ufuncs costs little more than its exp and log1p; full-size
# temporaries would make every step of the chain a trip to memory (on 1e7 elements, each
# as slow as the exp itself). Smaller blocks pay NumPy's call overhead (about a
# microsecond per ufunc call) more often.
CHUNK = 1 << 15


def chunks(size: int, step: int = CHUNK):
    """Slices of ``range(size)`` of at most ``step`` (default ``CHUNK``) elements each."""
    return (slice(start, min(start + step, size)) for start in range(0, size, step))


def row_blocks(n_rows: int, row_bytes: int, max_rows: int | None = None) -> list[slice]:
    """Consecutive slices of about :data:`BLOCK_BYTES` (and at most ``max_rows`` rows) each
    covering ``range(n_rows)``."""
    step = max(1, BLOCK_BYTES // max(1, row_bytes))
    if max_rows is not None:
        step = max(1, min(step, max_rows))
    return list(chunks(n_rows, step))


def for_each_block(function, n_rows: int, row_bytes: int, max_rows: int | None = None) -> None:
    """Call ``function(rows)`` for each block ``rows`` (a slice) of ``range(n_rows)``.

    ``max_rows`` caps a block's rows (smaller blocks: less memory in temporaries).
    The blocks must be independent (each call writes only its own rows). Floating-point
    warnings are off in each call (an error state does not carry over into a worker
    thread); exceptions propagate to the caller.
    """
    blocks = row_blocks(n_rows, row_bytes, max_rows)

    def run(rows: slice) -> None:
        with np.errstate(all="ignore"):
            function(rows)

    nested = threading.current_thread().name.startswith(_THREAD_PREFIX)
    if nested or WORKERS == 1 or len(blocks) < 2 or n_rows * row_bytes < _THREAD_MIN_BYTES:
        for rows in blocks:  # (in a worker already: no waiting on the pool from inside it)
            run(rows)
        return
    # each thread takes the next block when it is done with one (next() on a count is
    # atomic): a core slowed by other work takes fewer blocks. The caller is one of them.
    taken = itertools.count()

    def drain() -> None:
        while (i := next(taken)) < len(blocks):
            run(blocks[i])

    futures = [_executor().submit(drain) for _ in range(WORKERS - 1)]
    try:
        drain()
    finally:
        # a helper that never started (the pool was busy with another call) is not waited for
        for future in futures:
            if not future.cancel():
                future.result()
