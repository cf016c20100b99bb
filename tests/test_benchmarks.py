"""Smoke test of the benchmark harness: a tiny run into a temporary folder.

Checks the structure of ``results.json`` and ``README.md`` and that lossutils
stays finite and accurate over the hard sweeps. No timing is asserted.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lossutils
from benchmarks import cases, report, speed, summary, sweeps

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = [
    "logsumexp",
    "log_softmax",
    "softplus",
    "log_sigmoid",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "log_cosh_loss",
    "huber_loss",
    "gaussian_kl",
]
CONTENDERS = ["lossutils", "numpy", "scipy", "pytorch", "jax"]
DTYPES = ("float32", "float64")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run ``python -m benchmarks.run --quick`` once, with warnings as errors; return its outputs."""
    out = tmp_path_factory.mktemp("bench")
    subprocess.run(
        [sys.executable, "-W", "error", "-m", "benchmarks.run", "--quick"] + ["--out", str(out)],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    results = json.loads((out / "results.json").read_text())
    return results, (out / "README.md").read_text()


def test_json_describes_machine_and_units(run):
    results, _ = run
    machine = results["machine"]
    assert machine["usable_cores"] >= 1
    assert machine["numpy"] and machine["python"]
    assert set(results["contenders"]) == set(CONTENDERS)
    assert "ULP" in results["settings"]["accuracy"]["unit"]
    assert results["settings"]["accuracy"]["dtypes"] == list(DTYPES)
    assert results["settings"]["speed"]["unit"] == "seconds"
    assert results["settings"]["memory"]["unit"] == "bytes"


def test_every_function_is_measured_for_every_contender(run):
    results, _ = run
    pairs = [(f, d) for f in FUNCTIONS for d in DTYPES]
    assert [(e["function"], e["dtype"]) for e in results["accuracy"]] == pairs
    every = [(c.name, d) for c in cases.CASES for d in DTYPES]
    assert sorted((e["function"], e["dtype"]) for e in results["speed"]) == sorted(every)
    for entry in results["accuracy"] + results["speed"] + results["memory"]:
        assert set(entry["results"]) == set(CONTENDERS), entry["function"]


def test_lossutils_is_finite_and_within_contract(run):
    results, _ = run
    for entry in results["accuracy"]:
        lossutils = entry["results"]["lossutils"]
        assert lossutils["status"] == "ok", (entry["function"], lossutils["status"])
        assert lossutils["output_dtype"] == entry["dtype"], entry["function"]
        assert lossutils["non_finite"] == 0, entry["function"]
        assert math.isfinite(lossutils["worst_ulp"]), entry["function"]
        assert lossutils["worst_ulp"] <= 4.0, (entry["function"], lossutils["worst_ulp"])


def test_sweeps_are_hard_for_the_textbook_formula(run):
    results, _ = run
    textbook = {
        e["function"]: e["results"]["numpy"] for e in results["accuracy"] if e["dtype"] == "float64"
    }
    for name in ("logsumexp", "softplus", "cross_entropy", "log_cosh_loss"):
        assert textbook[name]["non_finite"] > 0, name
    for name in ("log_softmax", "binary_cross_entropy_with_logits", "gaussian_kl"):
        assert textbook[name]["worst_ulp"] > 1e6, name


def test_speed_ratios_are_relative_to_the_textbook_formula(run):
    results, _ = run
    for entry in results["speed"]:
        base = entry["results"]["numpy"]
        assert base["forward_ratio"] == pytest.approx(1.0)
        for timing in entry["results"].values():
            if timing["status"] == "ok":
                assert timing["forward_s"] > 0
                assert timing["forward_ratio"] == pytest.approx(
                    timing["forward_s"] / base["forward_s"]
                )


def test_memory_of_a_training_step_is_reported_relative_to_the_input(run):
    results, _ = run
    names = [case.name for case in cases.CASES]
    losses = [name for name in names if hasattr(lossutils, f"{name}_value_and_grad")]
    assert len(losses) == len(names) - 4  # the activations have no gradient function to measure
    assert [(e["function"], e["dtype"]) for e in results["memory"]] == [
        (f"{name} + {name}_grad", dtype) for name in losses for dtype in ("float32", "float64")
    ]
    for entry in results["memory"]:
        for key in ("lossutils", "numpy"):
            step = entry["results"][key]
            assert step["peak_extra_bytes"] >= entry["input_bytes"], key  # a gradient is returned
            assert step["times_input"] == pytest.approx(
                step["peak_extra_bytes"] / entry["input_bytes"]
            )


def test_markdown_has_the_tables(run):
    _, page = run
    for heading in ("## Accuracy", "## Speed", "### float32", "### float64", "## Memory"):
        assert heading in page
    for name in FUNCTIONS:
        assert page.count(f"| `{name}` |") == 4, name  # accuracy and speed, float32 and float64
    for case in cases.SPEED_ONLY:
        assert page.count(f"| `{case.name}` |") == 2, case.name  # speed, float32 and float64
        assert f"`{case.name}`," in page or f"`{case.name}`." in page, case.name
    assert "accuracy: see tests/" in page
    assert "Machine: " in page


def test_optional_columns_say_why_they_are_absent(run):
    results, _ = run
    installed = {"pytorch": results["machine"]["torch"], "jax": results["machine"]["jax"]}
    for key, version in installed.items():
        statuses = {e["results"][key]["status"] for e in results["accuracy"] + results["speed"]}
        if version is None:
            assert statuses <= {"not installed", "no such function"}, key
        else:
            assert "ok" in statuses and "not installed" not in statuses, key


def test_readme_summary_is_that_of_the_committed_results():
    # make bench rewrites it; a results file committed without it fails here
    readme = summary.README.read_text()
    results = json.loads(summary.RESULTS.read_text())
    assert summary.rendered(readme, results) == readme
    assert readme.count("| `cross_entropy` |") == 2  # float32 and float64
    for dtype in DTYPES:  # the targets over every function timed in the committed run
        timed = sum(e["dtype"] == dtype for e in results["speed"])
        assert readme.count(f"\n| {dtype} | {timed} | ") == 1, dtype


def test_targets_table_counts_the_functions_over_each_target():
    results = json.loads(summary.RESULTS.read_text())
    entry = next(e for e in results["speed"] if e["dtype"] == "float64")
    entry["results"]["lossutils"]["forward_ratio"] = 99.0  # far over 1.5x
    row = next(line for line in report.targets_table(results) if line.startswith("| float64 |"))
    assert f"worst 99.00x (`{entry['function']}`)" in row


def test_summary_replaces_only_the_text_between_the_markers():
    results = json.loads(summary.RESULTS.read_text())
    page = f"before\n{report.SUMMARY_START}\nstale\n{report.SUMMARY_END}\nafter\n"
    out = summary.rendered(page, results)
    assert out.startswith("before\n") and out.endswith("\nafter\n") and "stale" not in out
    assert summary.rendered(out, results) == out


def test_each_pause_after_a_threaded_library_is_followed_by_busy_work(monkeypatch):
    # the next contender must not start on an idled machine (see speed.WAKE_SECONDS)
    calls = []
    monkeypatch.setattr(speed.time, "sleep", lambda s: calls.append(("sleep", s)))
    monkeypatch.setattr(speed, "busy", lambda s: calls.append(("busy", s)))
    results = {
        key: {"status": "ok", "steps": {"forward": lambda: None, "forward_grad": None}}
        for key in ("lossutils", "numpy", "pytorch")
    }
    speed.interleaved_medians(results, (), repeats=2, settle=0.2)
    assert calls == [("sleep", 0.2), ("busy", speed.WAKE_SECONDS)] * 2
    assert all(results[key]["forward_s"] is not None for key in results)


def test_short_calls_are_timed_right_after_an_untimed_call_of_their_own(monkeypatch):
    # a short call's data would otherwise be in the caches as the contender before it left
    # them; long calls are timed as they come
    calls = []
    took = {"short": speed.WARM_BELOW_SECONDS / 10, "long": speed.WARM_BELOW_SECONDS * 10}

    def timed(step, args):
        step()
        return took[calls[-1]]

    monkeypatch.setattr(speed, "seconds", timed)
    results = {
        key: {"status": "ok", "steps": {"forward": lambda k=key: calls.append(k)}}
        for key in ("short", "long")
    }
    speed.interleaved_medians(results, (), repeats=3)
    assert calls == ["short", "long"] + ["short", "short", "long"] * 2
    assert results["short"]["forward_s"] == took["short"]


SMALL = sweeps.Sizes(rows=(32, 12), elements=300)


def _as_tuple(grads):
    return grads if isinstance(grads, tuple) else (grads,)


@pytest.mark.parametrize("case", cases.CASES, ids=[c.name for c in cases.CASES])
def test_textbook_formula_and_gradient_are_the_loss(case):
    # a wrong textbook formula or hand-written gradient would make every ratio meaningless
    args = case.speed_inputs(np.random.default_rng(1), np.float64, SMALL)
    textbook, lossutils_side = case.baselines["numpy"], case.lossutils
    np.testing.assert_allclose(textbook.loss(*args), lossutils_side.loss(*args), rtol=1e-6)
    theirs, ours = _as_tuple(textbook.grad(*args)), _as_tuple(lossutils_side.grad(*args))
    assert len(theirs) == len(ours)
    for mine, exact in zip(theirs, ours, strict=True):
        assert np.shape(mine) == np.shape(exact)
        np.testing.assert_allclose(mine, exact, rtol=1e-6, atol=1e-12 * np.abs(exact).max())


def test_every_loss_with_a_gradient_is_benchmarked_or_left_out_with_a_reason():
    losses = {
        n.removesuffix("_value_and_grad") for n in lossutils.__all__ if n.endswith("_and_grad")
    }
    measured = {case.name for case in cases.CASES if case.lossutils.step is not None}
    assert losses - measured == set(cases.LEFT_OUT)
    assert measured <= losses


@pytest.mark.parametrize("case", cases.CASES, ids=[c.name for c in cases.CASES])
def test_textbook_gradient_keeps_float32(case):
    # a float64 detour would double the textbook's memory and time: not the formula's cost
    args = case.speed_inputs(np.random.default_rng(1), np.float32, SMALL)
    with np.errstate(all="ignore"):
        theirs = _as_tuple(case.baselines["numpy"].grad(*args))
    ours = _as_tuple(case.lossutils.grad(*args))
    assert [np.asarray(g).dtype for g in theirs] == [np.asarray(g).dtype for g in ours]
