"""Accuracy: ULP error against mpmath over each function's hard sweep (float64).

Non-finite results (overflow to inf, 0/0 = nan) where the exact value is finite
are counted separately; the ULP statistics are over the finite results only.
"""

from __future__ import annotations

import numpy as np

from benchmarks.cases import Case
from benchmarks.contenders import call_recording_warnings, measure_each
from lossutils.testing import ulp_error

CONTRACT_ULP = 4.0
"""The accuracy promised by lossutils' design (float64)."""


def sweep_inputs(case: Case, rng, points: int):
    """The hard sweep as one set of arguments, plus the regime name of every row."""
    regimes = case.hard_inputs(rng, points)
    args = tuple(
        np.concatenate([regime_args[i] for _, regime_args in regimes])
        for i in range(len(regimes[0][1]))
    )
    names = np.concatenate([[name] * len(regime_args[0]) for name, regime_args in regimes])
    return args, names, [name for name, _ in regimes]


def summarize(values, reference, regime_of_row) -> dict:
    """Worst and median ULP over the finite results, and the count of non-finite ones."""
    values = np.asarray(values, dtype=np.float64)
    regime = np.broadcast_to(
        regime_of_row.reshape(regime_of_row.shape + (1,) * (values.ndim - 1)), values.shape
    )
    finite = np.isfinite(values)
    errors = ulp_error(values[finite], reference[finite])
    summary = {
        "points": int(values.size),
        "non_finite": int(np.count_nonzero(~finite)),
        "worst_ulp": float(errors.max()) if errors.size else None,
        "median_ulp": float(np.median(errors)) if errors.size else None,
        f"over_{CONTRACT_ULP:g}_ulp": int(np.count_nonzero(errors > CONTRACT_ULP)),
        "worst_regime": str(regime[finite][np.argmax(errors)]) if errors.size else None,
    }
    bad = regime[~finite]
    summary["non_finite_regimes"] = {
        str(r): int(np.count_nonzero(bad == r)) for r in np.unique(bad)
    }
    return summary


def measure_case(case: Case, rng, points: int) -> dict:
    """The accuracy entry of one function: its sweep and every contender's summary."""
    args, regime_of_row, regimes = sweep_inputs(case, rng, points)
    reference = case.reference(*args)

    def measure_impl(impl):
        values, messages = call_recording_warnings(impl.loss, *args)
        return summarize(values, reference, regime_of_row) | {"warnings": messages}

    results = measure_each(case, measure_impl)
    return {
        "function": case.name,
        "regimes": regimes,
        "points_per_regime": points,
        "note": case.note,
        "results": results,
    }


def measure(cases, points: int, seed: int = 0, progress=print) -> list[dict]:
    """Accuracy entries for every case, each from its own seeded generator."""
    entries = []
    for case in cases:
        progress(f"accuracy: {case.name}")
        entries.append(measure_case(case, np.random.default_rng(seed), points))
    return entries
