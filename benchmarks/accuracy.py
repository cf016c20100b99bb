"""Accuracy: ULP error against mpmath over each function's hard sweep, float32 and float64.

The sweep is rounded to each dtype (rows whose rounded inputs are not finite are
dropped) and the reference is the exact value *of the rounded inputs*, so every
contender is measured in ULP of its own output dtype. Non-finite results (overflow
to inf, 0/0 = nan) where the exact value is finite on the dtype's grid are counted
separately; the ULP statistics are over the other results. An infinity where the
exact value lies beyond the dtype's range (of the same sign) is correct: 0 ULP.
"""

from __future__ import annotations

import numpy as np

from benchmarks.cases import Case
from benchmarks.contenders import call_recording_warnings, measure_each
from lossutils.testing import ulp_error

CONTRACT_ULP = 4.0
"""The accuracy promised by lossutils' design, in ULP of the output dtype."""

DTYPES = (np.float32, np.float64)


def sweep_inputs(case: Case, rng, points: int):
    """The hard sweep as one set of float64 arguments, plus the regime name of every row."""
    regimes = case.hard_inputs(rng, points)
    args = tuple(
        np.concatenate([regime_args[i] for _, regime_args in regimes])
        for i in range(len(regimes[0][1]))
    )
    names = np.concatenate([[name] * len(regime_args[0]) for name, regime_args in regimes])
    return args, names, [name for name, _ in regimes]


def rounded_to(args, regime_of_row, dtype):
    """The floating arguments rounded to ``dtype``; rows with a non-finite input dropped."""
    with np.errstate(over="ignore"):
        rounded = tuple(a.astype(dtype) if a.dtype.kind == "f" else a for a in args)
    keep = np.ones(len(regime_of_row), dtype=bool)
    for a in rounded:
        if a.dtype.kind == "f":
            keep &= np.isfinite(a).reshape(len(a), -1).all(axis=1)
    return tuple(a[keep] for a in rounded), regime_of_row[keep]


def summarize(values, reference, regime_of_row, dtype=np.float64) -> dict:
    """Worst and median ULP (of ``dtype``) and the count of wrongly non-finite results."""
    values = np.asarray(values)
    regime = np.broadcast_to(
        regime_of_row.reshape(regime_of_row.shape + (1,) * (values.ndim - 1)), values.shape
    )
    errors = ulp_error(values.astype(np.float64), reference, dtype)
    wrong = ~np.isfinite(values) & (errors != 0)  # inf/nan where the exact value is finite
    errors = errors[~wrong]
    summary = {
        "points": int(values.size),
        "output_dtype": values.dtype.name,
        "non_finite": int(np.count_nonzero(wrong)),
        "worst_ulp": float(errors.max()) if errors.size else None,
        "median_ulp": float(np.median(errors)) if errors.size else None,
        f"over_{CONTRACT_ULP:g}_ulp": int(np.count_nonzero(errors > CONTRACT_ULP)),
        "worst_regime": str(regime[~wrong][np.argmax(errors)]) if errors.size else None,
    }
    bad = regime[wrong]
    summary["non_finite_regimes"] = {
        str(r): int(np.count_nonzero(bad == r)) for r in np.unique(bad)
    }
    return summary


def measure_case(case: Case, rng, points: int, dtype=np.float64) -> dict:
    """The accuracy entry of one function at one dtype: its sweep and every contender's summary."""
    args, regime_of_row, regimes = sweep_inputs(case, rng, points)
    args, regime_of_row = rounded_to(args, regime_of_row, dtype)
    reference = case.reference(*(a.astype(np.float64) if a.dtype.kind == "f" else a for a in args))

    def measure_impl(impl):
        values, messages = call_recording_warnings(impl.loss, *args)
        return summarize(values, reference, regime_of_row, dtype) | {"warnings": messages}

    results = measure_each(case, measure_impl)
    return {
        "function": case.name,
        "dtype": np.dtype(dtype).name,
        "regimes": regimes,
        "points_per_regime": points,
        "note": case.note,
        "results": results,
    }


def measure(cases, points: int, seed: int = 0, progress=print) -> list[dict]:
    """Accuracy entries for every case with a reference and every dtype, each from its own
    seeded generator (the others are measured for speed and memory only)."""
    entries = []
    for case in (c for c in cases if c.reference is not None):
        for dtype in DTYPES:
            progress(f"accuracy: {case.name} {np.dtype(dtype).name}")
            entries.append(measure_case(case, np.random.default_rng(seed), points, dtype))
    return entries
