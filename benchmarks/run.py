"""Run the lossutils benchmarks and write ``benchmarks/results/`` (``python -m benchmarks.run``).

Accuracy (ULP against mpmath over hard sweeps, float32 and float64), speed (forward
and forward+gradient, float32 and float64) and the memory of a training step (the
loss and its gradient), for lossutils next to the textbook NumPy formula, SciPy and,
when they are installed, PyTorch and JAX/optax (``make bench`` runs it in the
conformance environment, which has them). ``--quick`` runs everything at a tiny size
(seconds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks import accuracy, machine, report, speed, sweeps
from benchmarks.cases import CASES, CONTENDERS
from benchmarks.implementations import jax_available, torch_available
from benchmarks.references import DIGITS

RESULTS = Path(__file__).resolve().parent / "results"
FULL_POINTS, QUICK_POINTS = 200, 6
FULL_REPEATS, QUICK_REPEATS = 5, 1


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    parser.add_argument("--repeats", type=int, help="timing runs per median")
    parser.add_argument("--points", type=int, help="points per accuracy regime")
    parser.add_argument("--only", nargs="+", metavar="FUNCTION", help="benchmark these only")
    return parser.parse_args(argv)


def settings(args, sizes) -> dict:
    """What was measured and in which units, for the JSON file."""
    return {
        "accuracy": {
            "dtypes": [np.dtype(d).name for d in accuracy.DTYPES],
            "unit": "ULP (units in the last place of the exact value, on the output dtype's grid)",
            "reference": f"mpmath at {DIGITS} decimal digits",
            "statistics": "worst and median over the results; non_finite (inf or nan where "
            "the exact value is finite on the dtype's grid) counted apart",
            "inputs": "each sweep rounded to the dtype; rows with a non-finite input dropped",
            "contract_ulp": accuracy.CONTRACT_ULP,
            "points_per_regime": args.points,
            "classes": sweeps.NUM_CLASSES,
            "seed": 0,
        },
        "speed": {
            "unit": "seconds",
            "statistic": f"median of {args.repeats} runs of one call each, after a warm-up call; "
            "contenders interleaved within each run, with a pause of "
            f"{args.settle:g} s after each call of PyTorch or JAX (their worker "
            "threads keep spinning for a while), then "
            f"{speed.WAKE_SECONDS if args.settle else 0:g} s of busy work (the next call "
            "would otherwise start on a machine that has idled); a call shorter than "
            f"{speed.WARM_BELOW_SECONDS:g} s timed right after an untimed call of its own",
            "repeats": args.repeats,
            "warm_below_seconds": speed.WARM_BELOW_SECONDS,
            "ratio": "time / time of the textbook NumPy formula, same dtype, same arrays, same run",
            "reduction": "none: per-element (or per-row) losses; gradients of their sum",
            "dtypes": [np.dtype(d).name for d in speed.DTYPES],
            "sizes": sizes.describe(),
        },
        "memory": {
            "unit": "bytes",
            "method": "Peak memory allocated during one training step (tracemalloc), above "
            "what was allocated before the call: lossutils' X_value_and_grad with "
            "reduction='mean' (the loss and its gradient); the other contenders' "
            "per-element values and the gradient of their sum",
            "ratio": "times_input = peak_extra_bytes / bytes of the differentiable inputs "
            "(the size of the gradient)",
        },
    }


def notes() -> list[str]:
    """Caveats that apply to the whole run."""
    out = []
    if not torch_available():
        out.append(
            "PyTorch is not installed, so its columns are skipped; `make bench` runs the "
            "benchmark in the conformance environment, which has it."
        )
    if not jax_available():
        out.append(
            "JAX/optax are not installed, so their columns are skipped; `make bench` runs "
            "the benchmark in the conformance environment, which has them."
        )
    out.append(
        "JAX: jax.jit of the values and of jax.value_and_grad of their sum, float64 enabled "
        "(jax_enable_x64), CPU; timed after a compiling warm-up call, results waited for "
        "(block_until_ready) and returned as NumPy arrays. PyTorch: one forward pass "
        "recording the graph, then backward() of the sum (autograd)."
    )
    return out


def missing(results: dict) -> list[str]:
    """lossutils functions that could not be measured, with the reason."""
    return sorted(
        {
            f"{entry['function']}: {entry['results']['lossutils']['status']}"
            for entry in results["accuracy"] + results["speed"] + results["memory"]
            if entry["results"]["lossutils"]["status"] != "ok"
        }
    )


def run(args) -> dict:
    """Every measurement, as one JSON-ready dictionary."""
    sizes = sweeps.QUICK if args.quick else sweeps.FULL
    cases = [c for c in CASES if not args.only or c.name in args.only]

    def progress(message):
        print(message, file=sys.stderr, flush=True)

    return {
        "description": "lossutils against the textbook NumPy formula, SciPy, PyTorch and JAX: "
        "accuracy, speed and memory",
        "contenders": CONTENDERS,
        "machine": machine.describe(),
        "settings": settings(args, sizes),
        "notes": notes(),
        "accuracy": accuracy.measure(cases, args.points, progress=progress),
        "speed": speed.measure(cases, sizes, args.repeats, args.settle, progress),
        # the losses: the activations have no gradient function of their own to measure
        "memory": [
            entry
            for case in cases
            if case.lossutils.step is not None
            for entry in speed.memory_case(case, sizes)
        ],
    }


def main(argv=None) -> int:
    """Measure, write ``results.json`` and ``README.md`` into the output folder."""
    args = parse_args(argv)
    args.points = args.points or (QUICK_POINTS if args.quick else FULL_POINTS)
    args.repeats = args.repeats or (QUICK_REPEATS if args.quick else FULL_REPEATS)
    args.settle = 0.0 if args.quick else speed.SETTLE_SECONDS
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, args.out / "results.json")
    report.write_markdown(results, args.out / "README.md")
    for line in missing(results):
        print(f"not measured: {line}", file=sys.stderr)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'README.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
