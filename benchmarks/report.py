"""Writing the results: a self-describing JSON file and a Markdown page of tables."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.cases import CONTENDERS

SHORT_STATUS = {"no such function": "n/a", "not installed": "not installed"}


def _warm_note(settings: dict) -> str:
    """How short calls were timed (results from before this rule have no such setting)."""
    below = settings.get("warm_below_seconds")
    if below is None:
        return ""
    return (
        f"A call shorter than {below * 1000:g} ms is timed right after an untimed call of its "
        "own, so that it finds the caches as it leaves them, not as the contender before it "
        "did. "
    )


def write_json(results: dict, path: Path) -> None:
    """``results`` as indented JSON; NaN or inf would be invalid JSON, so they are refused."""
    path.write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")


def _status_cell(result: dict) -> str:
    status = result.get("status", "")
    return SHORT_STATUS.get(status, status.split(":")[0])


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _ulp(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def accuracy_cell(result: dict) -> str:
    """``worst / median`` ULP, and the count of non-finite results when there are any."""
    if result.get("status") != "ok":
        return _status_cell(result)
    cell = f"{_ulp(result['worst_ulp'])} / {_ulp(result['median_ulp'])}"
    if result["non_finite"]:
        cell += f" ({result['non_finite']} non-finite)"
    return cell


def _seconds(value) -> str:
    return "-" if value is None else f"{value * 1e3:.3g} ms"


def speed_cell(result: dict, kind: str, baseline: bool) -> str:
    """Absolute time for the baseline; ratio to it (and the time) for the others."""
    if result.get("status") != "ok":
        return _status_cell(result)
    seconds, ratio = result[f"{kind}_s"], result[f"{kind}_ratio"]
    if seconds is None:
        return "no gradient"
    if baseline or ratio is None:
        return _seconds(seconds)
    return f"{ratio:.2f}x ({_seconds(seconds)})"


def memory_cell(result: dict) -> str:
    """Peak extra memory as a multiple of the differentiable inputs' size, and in MB."""
    if result.get("status") != "ok":
        return _status_cell(result)
    return f"{result['times_input']:.2f}x ({result['peak_extra_bytes'] / 1e6:.3g} MB)"


def machine_line(machine: dict) -> str:
    """One sentence on where the numbers come from."""
    torch = machine["torch"] or "not installed (its columns are skipped)"
    if machine.get("torch_threads"):
        torch += f" ({machine['torch_threads']} threads)"
    jax = "not installed (its columns are skipped)"
    if machine.get("jax"):
        jax = f"{machine['jax']} (jaxlib {machine['jaxlib']}), optax {machine['optax']}"
    load = ""
    if machine.get("load_average"):
        load = " (load average {:g}, {:g}, {:g} at the start)".format(*machine["load_average"])
    return (
        f"{machine['cpu_model']}, {machine['usable_cores']} usable of "
        f"{machine['logical_cores']} logical cores{load}, "
        f"{machine['system']} {machine['machine']}; "
        f"Python {machine['python']}, NumPy {machine['numpy']}, SciPy {machine['scipy']}, "
        f"mpmath {machine['mpmath']}, lossutils {machine['lossutils']}; PyTorch {torch}; "
        f"JAX {jax}."
    )


def speed_only(results: dict) -> list[str]:
    """The functions timed but not in the accuracy tables, in the order of the run."""
    measured = {e["function"] for e in results["accuracy"]}
    return list(
        dict.fromkeys(e["function"] for e in results["speed"] if e["function"] not in measured)
    )


def accuracy_section(results: dict) -> list[str]:
    """The accuracy table, the notes on the baselines, and the regimes swept."""
    settings = results["settings"]["accuracy"]
    lines = [
        "## Accuracy",
        "",
        f"Error in {settings['unit']} against {settings['reference']}, over hard sweeps "
        "rounded to each dtype (the reference is the exact value of the rounded inputs). "
        "Each cell is *worst / median*; non-finite results (inf or nan where "
        "the exact value is finite) are counted separately and left out of the ULP figures. "
        f"lossutils promises at most {settings['contract_ulp']:g} ULP.",
        "",
    ]
    for dtype in settings["dtypes"]:
        rows = [
            [f"`{e['function']}`", str(e["results"]["lossutils"].get("points", "-"))]
            + [accuracy_cell(e["results"][key]) for key in CONTENDERS]
            for e in results["accuracy"]
            if e["dtype"] == dtype
        ]
        lines += [
            f"### {dtype}",
            "",
            *_table(["function", "points"] + list(CONTENDERS.values()), rows),
            "",
        ]
    lines += [
        "Regimes swept (points per regime: "
        f"{settings['points_per_regime']}, rows of {settings['classes']} classes for the row "
        "functions):",
        "",
    ]
    for entry in (e for e in results["accuracy"] if e["dtype"] == settings["dtypes"][-1]):
        note = f" ({entry['note']})" if entry["note"] else ""
        lines.append(f"- `{entry['function']}`{note}: " + "; ".join(entry["regimes"]) + ".")
    lines.append("")
    if speed_only(results):
        lines += [
            "Measured for speed and memory only (accuracy: see tests/, which check every "
            "function of lossutils against mpmath, values and gradients, in every dtype): "
            + ", ".join(f"`{name}`" for name in speed_only(results))
            + ".",
            "",
        ]
    return lines


def speed_section(results: dict) -> list[str]:
    """One speed table per dtype: absolute textbook times, ratios for the others."""
    settings = results["settings"]["speed"]
    others = [key for key in CONTENDERS if key != "numpy"]
    header = ["function", "shape", "NumPy fwd", "NumPy fwd+grad"]
    for key in others:
        header += [f"{CONTENDERS[key]} fwd", "fwd+grad"]
    lines = [
        "## Speed",
        "",
        f"Median of {settings['repeats']} runs of one call each, after a warm-up call; "
        "the contenders take turns within each run, so that load on the machine hits "
        "all alike; after each call of PyTorch or JAX the run pauses (their worker threads "
        "keep spinning for a while), then keeps a core busy for a moment, so that the next "
        "call does not start on an idled machine. "
        + _warm_note(settings)
        + "The textbook NumPy formula is given in milliseconds; every other "
        "contender as the ratio of its time to that one (below 1 is faster), measured "
        "in the same run on the same arrays. *fwd+grad* is one training step as each "
        "contender does it: lossutils' `X_value_and_grad` (one pass), PyTorch's forward "
        "pass recording the graph and its backward pass, JAX's `jax.value_and_grad`, and "
        "the textbook loss followed by its gradient. Activations have no `_grad` in "
        "lossutils: their derivative is computed with lossutils' own activations "
        "(sigmoid, softmax).",
        "",
    ]
    for dtype in settings["dtypes"]:
        rows = []
        for entry in (e for e in results["speed"] if e["dtype"] == dtype):
            res = entry["results"]
            row = [f"`{entry['function']}`", "x".join(map(str, entry["shapes"][0]))]
            row += [speed_cell(res["numpy"], k, True) for k in ("forward", "forward_grad")]
            for key in others:
                row += [speed_cell(res[key], k, False) for k in ("forward", "forward_grad")]
            rows.append(row)
        lines += [f"### {dtype}", "", *_table(header, rows), ""]
    return lines


def memory_section(results: dict) -> list[str]:
    """Peak extra memory of a training step, relative to the differentiable inputs."""
    rows = [
        [f"`{e['function']}`", e["dtype"], "x".join(map(str, e["shapes"][0]))]
        + [memory_cell(e["results"][key]) for key in CONTENDERS]
        for e in results["memory"]
    ]
    return [
        "## Memory",
        "",
        results["settings"]["memory"]["method"] + ", as a multiple of the size of the "
        "differentiable inputs (that of the gradient: 1.00x is the gradient alone).",
        "",
        *_table(["work", "dtype", "input"] + list(CONTENDERS.values()), rows),
        "",
    ]


def markdown(results: dict) -> str:
    """The results page."""
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m benchmarks.run` in the conformance environment, "
        "with PyTorch and JAX); see `benchmarks/README.md`. "
        "Timings depend on the machine and on its load; the accuracy figures do not.",
        "",
        "Machine: " + machine_line(results["machine"]),
        "",
    ]
    lines += accuracy_section(results) + speed_section(results) + memory_section(results)
    if results["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in results["notes"]] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_markdown(results: dict, path: Path) -> None:
    """The results page as a Markdown file."""
    path.write_text(markdown(results))


SUMMARY_START = "<!-- benchmark summary: written by python -m benchmarks.summary -->"
SUMMARY_END = "<!-- end of benchmark summary -->"


def _ratio(result: dict, kind: str) -> str:
    ratio = result.get(f"{kind}_ratio") if result.get("status") == "ok" else None
    return "-" if ratio is None else f"{ratio:.2f}x"


def _versus(mine: dict, theirs: dict, kind: str) -> str:
    """``mine``'s time as a multiple of ``theirs`` (below 1: faster)."""
    ok = mine.get("status") == "ok" and theirs.get("status") == "ok"
    if not ok or not mine.get(f"{kind}_s") or not theirs.get(f"{kind}_s"):
        return "-"
    return f"{mine[f'{kind}_s'] / theirs[f'{kind}_s']:.2f}x"


TARGETS = {"forward": 1.5, "forward_grad": 1.5, "memory": 1.1}
"""The targets of a lossutils function: times and peak memory as ratios (see issue 13)."""


def _memory_by_function(results: dict) -> dict:
    return {
        (e["function"].split(" + ")[0], e["dtype"]): e["results"]["lossutils"]
        for e in results["memory"]
    }


def _over_target(ratios: dict, target: float) -> str:
    """``count of n`` over ``target``, and the worst ratio with its function."""
    if not ratios:
        return "-"
    worst = max(ratios, key=ratios.get)
    over = sum(ratio > target for ratio in ratios.values())
    return f"{over} of {len(ratios)}; worst {ratios[worst]:.2f}x (`{worst}`)"


def targets_table(results: dict) -> list[str]:
    """Per dtype, how many functions miss each target, and the worst ratio of each."""
    memory = _memory_by_function(results)
    rows = []
    for dtype in results["settings"]["speed"]["dtypes"]:
        entries = [e for e in results["speed"] if e["dtype"] == dtype]
        cells = []
        for kind in ("forward", "forward_grad"):
            ratios = {
                e["function"]: e["results"]["lossutils"][f"{kind}_ratio"]
                for e in entries
                if e["results"]["lossutils"].get("status") == "ok"
                and e["results"]["lossutils"].get(f"{kind}_ratio") is not None
            }
            cells.append(_over_target(ratios, TARGETS[kind]))
        peaks = {
            f: m["times_input"]
            for (f, d), m in memory.items()
            if d == dtype and m.get("status") == "ok"
        }
        rows.append([dtype, str(len(entries))] + cells + [_over_target(peaks, TARGETS["memory"])])
    header = [
        "dtype",
        "functions",
        f"forward / textbook > {TARGETS['forward']:g}x",
        f"value and gradient / textbook > {TARGETS['forward_grad']:g}x",
        f"memory / gradient > {TARGETS['memory']:g}x",
    ]
    return _table(header, rows)


def summary(results: dict) -> list[str]:
    """The README's short tables: lossutils' worst error, speed and memory for the functions
    of the accuracy tables, and how many of all the benchmarked functions miss each target."""
    worst = {
        (e["function"], e["dtype"]): e["results"]["lossutils"].get("worst_ulp")
        for e in results["accuracy"]
    }
    memory = _memory_by_function(results)
    rows = []
    for entry in results["speed"]:
        key = (entry["function"], entry["dtype"])
        if key not in worst:
            continue
        res = entry["results"]
        ulp = worst[key]
        mem = memory.get(key, {})
        rows.append(
            [
                f"`{entry['function']}`",
                entry["dtype"],
                "-" if ulp is None else f"{ulp:.3g}",
                _ratio(res["lossutils"], "forward"),
                _ratio(res["lossutils"], "forward_grad"),
                _versus(res["lossutils"], res.get("pytorch", {}), "forward_grad"),
                "-" if mem.get("status") != "ok" else f"{mem['times_input']:.2f}x",
            ]
        )
    header = [
        "function",
        "dtype",
        "worst error (ULP)",
        "forward / textbook",
        "value and gradient / textbook",
        "value and gradient / PyTorch",
        "memory / gradient",
    ]
    return [
        SUMMARY_START,
        "",
        "Machine: " + machine_line(results["machine"]),
        "",
        *_table(header, rows),
        "",
        "Every benchmarked function (those above and the ones measured for speed and memory "
        "only), per dtype: how many exceed each target, and the worst ratio.",
        "",
        *targets_table(results),
        "",
        SUMMARY_END,
    ]
