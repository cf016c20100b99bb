"""Calling a contender safely: absent functions, optional PyTorch and JAX, float warnings."""

from __future__ import annotations

import warnings

import numpy as np

from benchmarks.cases import CONTENDERS, Case
from benchmarks.implementations import Impl, jax_available, torch_available


def contenders(case: Case) -> dict[str, Impl | str]:
    """Every contender of ``case``: its :class:`Impl`, or a short reason why it is absent."""
    out: dict[str, Impl | str] = {}
    for key in CONTENDERS:
        impl = case.lossutils if key == "lossutils" else case.baselines.get(key)
        if impl is None:
            out[key] = "no such function"
        elif (key == "pytorch" and not torch_available()) or (key == "jax" and not jax_available()):
            out[key] = "not installed"
        else:
            out[key] = impl
    return out


def quietly(fn, *args):
    """``fn(*args)`` with floating-point warnings silenced (overflow is what we measure)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args)


def call_recording_warnings(fn, *args):
    """``(fn(*args), sorted distinct warning messages)``; every floating-point warning is kept."""
    with np.errstate(all="warn", under="ignore"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, sorted({str(w.message) for w in caught})


def unavailable(error: Exception) -> str:
    """A one-line status for a contender that raised instead of computing."""
    if isinstance(error, NotImplementedError):
        return "not implemented"
    return f"error: {type(error).__name__}: {error}"


def measure_each(case: Case, measure, skip=None) -> dict[str, dict]:
    """``{"status": "ok"} | measure(impl)`` for every contender of ``case``.

    An absent contender, one that ``skip(key, impl)`` gives a reason for, or one
    that raises, gets ``{"status": reason}`` instead: a failure is a result.
    """
    results = {}
    for key, impl in contenders(case).items():
        reason = impl if isinstance(impl, str) else skip and skip(key, impl)
        if reason:
            results[key] = {"status": reason}
            continue
        try:
            results[key] = {"status": "ok"} | measure(impl)
        except Exception as error:  # a contender that fails is a result, not a crash
            results[key] = {"status": unavailable(error)}
    return results
