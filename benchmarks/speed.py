"""Speed and memory: forward and forward+gradient at realistic sizes, float32 and float64.

Times are medians over repeated runs of one call each, after one warm-up call, with
the contenders taking turns within each repeat; ratios divide by the textbook NumPy
formula timed in the same run on the same arrays.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from functools import partial

import numpy as np

from benchmarks.cases import Case
from benchmarks.contenders import measure_each, quietly

DTYPES = (np.float32, np.float64)
BASELINE = "numpy"
# PyTorch and XLA keep their worker threads spinning for a while after a call; the next
# contender timed on the same two cores would pay for it (delays of 100 ms were seen).
THREAD_POOLS = {"pytorch", "jax"}
SETTLE_SECONDS = 0.2
# After such a pause the machine has idled: on the 2-core machine these results come from,
# a two-thread computation then ran at single-thread speed (22 ms instead of 12 for
# lossutils' float32 cross-entropy step) until the cores had been busy for about 0.1 s,
# so whoever came next paid for the pause. The run keeps a core busy this long after each
# pause; a training loop, which calls its step back to back, never idles like that.
WAKE_SECONDS = 0.15
# A call that took less than this is timed, in the next repeats, right after an untimed call
# of the same step: its data are then in the caches as it leaves them itself, not as the
# previous contender left them (nll_loss's gather of 8192 entries from a 32 MB array took
# 82 us warm and 329 us after another contender's call, and the textbook formula, timed
# right after lossutils' step on the same arrays, was always warm). Longer calls stream
# arrays far larger than the caches.
WARM_BELOW_SECONDS = 0.01
UNTRACED = {
    "pytorch": "not measured: tracemalloc sees NumPy's allocations, not PyTorch's",
    "jax": "not measured: tracemalloc sees NumPy's allocations, not XLA's",
}


def seconds(fn, args) -> float:
    """Wall time of one call ``fn(*args)``."""
    start = time.perf_counter()
    quietly(fn, *args)
    return time.perf_counter() - start


def forward_and_grad(impl):
    """One training step's work: the contender's own step, or the loss, then its gradient."""
    if impl.step is not None:
        return impl.step

    def step(*args):
        impl.loss(*args)
        return impl.grad(*args)

    return step


def steps(impl) -> dict:
    """The calls to time for one contender (``None``: it has no gradient)."""
    return {"forward": impl.loss, "forward_grad": forward_and_grad(impl) if impl.grad else None}


def first_call(impl, args) -> dict:
    """Call every step once (a warm-up that also finds contenders that fail); return the steps."""
    for step in filter(None, steps(impl).values()):
        quietly(step, *args)
    return {"steps": steps(impl)}


def busy(seconds: float) -> None:
    """Keep the calling thread's core busy for ``seconds`` (wakes an idled machine)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def interleaved_medians(results: dict, args, repeats: int, settle: float = 0.0) -> dict:
    """Replace each contender's ``steps`` by the median seconds of each step.

    Every repeat times every contender once, in turn, so that a burst of load on
    a shared machine slows all of them alike instead of one of them. After a call of a
    library with its own thread pool, the run waits ``settle`` seconds, then keeps a core
    busy for :data:`WAKE_SECONDS`. A step whose last call was short
    (:data:`WARM_BELOW_SECONDS`) is called once untimed before it is timed again.
    """
    runs = {
        (key, kind): (step, [])
        for key, result in results.items()
        for kind, step in result.pop("steps", {}).items()
        if step is not None
    }
    for _ in range(repeats):
        for (key, _kind), (step, times) in runs.items():
            if times and times[-1] < WARM_BELOW_SECONDS:
                quietly(step, *args)  # untimed: the caches as this step leaves them
            times.append(seconds(step, args))
            if key in THREAD_POOLS and settle:
                time.sleep(settle)
                busy(WAKE_SECONDS)
    for key, result in results.items():
        if result["status"] == "ok":
            for kind in ("forward", "forward_grad"):
                times = runs.get((key, kind), (None, []))[1]
                result[f"{kind}_s"] = statistics.median(times) if times else None
    return results


def with_ratios(results: dict) -> dict:
    """Add each contender's time divided by the textbook NumPy time."""
    base = results.get(BASELINE, {})
    for timing in (r for r in results.values() if r["status"] == "ok"):
        for kind in ("forward", "forward_grad"):
            mine, theirs = timing.get(f"{kind}_s"), base.get(f"{kind}_s")
            timing[f"{kind}_ratio"] = mine / theirs if mine and theirs else None
    return results


def time_case(case: Case, dtype, sizes, repeats: int, settle: float = 0.0, seed: int = 0) -> dict:
    """The speed entry of one function at one dtype."""
    args = case.speed_inputs(np.random.default_rng(seed), dtype, sizes)
    results = measure_each(case, partial(first_call, args=args))
    results = interleaved_medians(results, args, repeats, settle)
    return {
        "function": case.name,
        "dtype": np.dtype(dtype).name,
        "shapes": [list(np.shape(a)) for a in args],
        "gradient": case.grad_note or "the loss's own gradient",
        "results": with_ratios(results),
    }


def measure(cases, sizes, repeats: int, settle: float = 0.0, progress=print) -> list[dict]:
    """Speed entries for every case and dtype."""
    entries = []
    for case in cases:
        for dtype in DTYPES:
            progress(f"speed: {case.name} {np.dtype(dtype).name}")
            entries.append(time_case(case, dtype, sizes, repeats, settle))
    return entries


def peak_bytes(fn, args) -> int:
    """Peak memory allocated while ``fn(*args)`` runs, above what was allocated before."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = quietly(fn, *args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del result
    return peak - before


def _not_traced(key, impl) -> str | None:
    if impl.grad is None:
        return "no gradient"
    return UNTRACED.get(key)


def gradient_bytes(impl, args) -> int:
    """Bytes of the gradient: those of the arguments it is taken with respect to."""
    grads = quietly(impl.grad, *args)
    return sum(np.asarray(g).nbytes for g in (grads if isinstance(grads, tuple) else (grads,)))


def memory_of(impl, args) -> dict:
    """Peak extra bytes of one training step, and that as a multiple of the gradient's size.

    The gradient has the size of the differentiable inputs, so 1.0 means no memory
    beyond the gradient itself (and the small per-row or reduced values).
    """
    peak = peak_bytes(impl.training_step or forward_and_grad(impl), args)
    return {"peak_extra_bytes": peak, "times_input": peak / gradient_bytes(impl, args)}


def memory_case(case: Case, sizes, seed: int = 0) -> list[dict]:
    """Peak extra memory of one training step for every contender, relative to the input."""
    entries = []
    for dtype in DTYPES:
        args = case.speed_inputs(np.random.default_rng(seed), dtype, sizes)
        results = measure_each(case, partial(memory_of, args=args), skip=_not_traced)
        entries.append(
            {
                "function": f"{case.name} + {case.name}_grad",
                "dtype": np.dtype(dtype).name,
                "input_bytes": int(gradient_bytes(case.lossutils, args)),
                "shapes": [list(np.shape(a)) for a in args],
                "results": results,
            }
        )
    return entries
