"""Static checks of the chapter notebooks and the table of contents.

nbval proves that every stored output reproduces, but it silently passes a
notebook stored without outputs, and it does not know the book's rules. These
tests check what nbval cannot: each chapter was executed top to bottom with its
outputs stored, stores no error or stderr output, is listed in _toc.yml,
derives something in SymPy, verifies lossutils with asserts, and is portable.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHAPTERS = sorted(
    p for p in (ROOT / "chapters").glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts
)
TOC_FILES = re.findall(r"file:\s*([^\s#]+)", (ROOT / "_toc.yml").read_text())


def code_cells(notebook: dict) -> list[dict]:
    return [
        c for c in notebook["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()
    ]


def source(notebook: dict) -> str:
    return "\n".join("".join(c["source"]) for c in code_cells(notebook))


def load(path: pathlib.Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def chapter_id(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT).with_suffix(""))


def test_there_are_chapters():
    assert CHAPTERS, "no chapter notebooks found under chapters/"


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_id)
def test_listed_in_toc(path):
    assert chapter_id(path) in TOC_FILES, f"{chapter_id(path)} is not listed in _toc.yml"


@pytest.mark.parametrize("entry", TOC_FILES)
def test_toc_entries_exist(entry):
    assert any((ROOT / (entry + ext)).exists() for ext in (".ipynb", ".md")), (
        f"{entry} does not exist"
    )


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_id)
def test_executed_top_to_bottom(path):
    counts = [c["execution_count"] for c in code_cells(load(path))]
    assert counts, "the notebook has no code"
    assert None not in counts, "unexecuted code cells: store outputs from a fresh top-to-bottom run"
    assert counts == list(range(1, len(counts) + 1)), f"execution counts {counts} are not 1..N"


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_id)
def test_no_stored_errors_or_stderr(path):
    for number, cell in enumerate(code_cells(load(path)), start=1):
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", (
                f"code cell {number} stores an error: {output.get('ename')}: {output.get('evalue')}"
            )
            assert not (output["output_type"] == "stream" and output["name"] == "stderr"), (
                f"code cell {number} stores stderr output: {''.join(output['text'])[:200]!r}"
            )


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_id)
def test_derives_and_verifies(path):
    text = source(load(path))
    assert re.search(r"^\s*(import sympy|from sympy)", text, re.M), "never imports sympy"
    assert re.search(r"^\s*(import lossutils|from lossutils)", text, re.M), (
        "never imports lossutils"
    )
    assert re.search(r"^\s*assert\b", text, re.M), (
        "no assert cell: a chapter that only displays proves nothing"
    )


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_id)
def test_anatomy(path):
    notebook = load(path)
    first = notebook["cells"][0]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# "), (
        "the first cell must be the title (a markdown '# ' heading)"
    )
    cells = code_cells(notebook)
    imports = re.compile(r"^\s*(import|from)\s+\S+", re.M)
    for number, cell in enumerate(cells[1:], start=2):
        assert not imports.search("".join(cell["source"])), (
            f"code cell {number} imports: imports go in the first code cell"
        )
    markdown = "\n".join(
        "".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown"
    )
    assert "{cite" in markdown, "the chapter cites nothing"


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_id)
def test_portable(path):
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"/(home|root|tmp|work|Users)/", text), "contains an absolute machine path"
    assert path.stat().st_size < 3_000_000, "notebook over 3 MB: keep figures small"


# --- Exercises and folded proofs -------------------------------------------------------------
#
# Every chapter ends with at least three exercises under "## Exercises", written with
# sphinx-exercise. Each exercise has a collapsed solution, either gated, so that code cells sit
# inside it (a markdown cell "```{solution-start} <label>" with ":class: dropdown", the code, a
# markdown cell "```{solution-end}"), or a plain "```{solution} <label>" directive followed
# directly by its code cell(s). Every solution proves its answer key with an assert in code.
#
# Folding: a reader sees prose, formulas, figures and results; the proof is one click away.
# The checkable rule: the first code cell (imports and setup) and every code cell outside a
# solution that asserts something (an `assert` statement or a call to an `assert_*` helper such
# as np.testing.assert_allclose or testing.assert_ulp_close) carries the `hide-input` (or
# `hide-cell`) tag, unless the cell displays a SymPy result (a text/latex output): such a cell
# is a derivation the reader should read, and its asserts tie the displayed formula to the
# derivation. Solution cells are already inside a collapsed dropdown and are not tagged.

FENCE = r"(?:`{3,}|:{3,})"
EXERCISE = re.compile(FENCE + r"\{exercise(?:-start)?\}[^\n]*\n(?:[ \t]*:[^\n]*\n)*", re.M)
LABEL = re.compile(r"^[ \t]*:label:[ \t]*(\S+)", re.M)
SOLUTION_START = re.compile(FENCE + r"\{solution-start\}[ \t]+(\S+)", re.M)
SOLUTION_END = re.compile(FENCE + r"\{solution-end\}", re.M)
SOLUTION_PLAIN = re.compile(FENCE + r"\{solution\}[ \t]+(\S+)", re.M)
DROPDOWN = re.compile(r"^[ \t]*:class:[^\n]*\bdropdown\b", re.M)
ASSERTS = re.compile(r"^\s*assert\b|\bassert_\w+\s*\(", re.M)
FOLDED = {"hide-input", "hide-cell"}


def text_of(cell: dict) -> str:
    return "".join(cell["source"])


def exercise_structure(notebook: dict) -> dict:
    """Labels of the exercises, the code cells of each solution, and the cells inside solutions.

    Returns {"exercises": [label, ...], "solutions": {label: [code cell, ...]},
    "dropdown": {label: bool}, "inside": set of cell indices inside a solution,
    "exercise_cells": [cell index, ...], "exercises_heading": index of "## Exercises" or None}.
    """
    cells = notebook["cells"]
    exercises, exercise_cells, solutions, dropdown, inside = [], [], {}, {}, set()
    heading = None
    open_label = None
    plain_label = None
    for index, cell in enumerate(cells):
        text = text_of(cell)
        if cell["cell_type"] == "markdown":
            plain_label = None
            if heading is None and re.search(r"^##\s+Exercises\s*$", text, re.M):
                heading = index
            for match in EXERCISE.finditer(text):
                label = LABEL.search(match.group(0))
                exercises.append(label.group(1) if label else None)
                exercise_cells.append(index)
            start = SOLUTION_START.search(text)
            if start:
                open_label = start.group(1)
                solutions.setdefault(open_label, [])
                dropdown[open_label] = bool(DROPDOWN.search(text[start.start() :]))
            elif SOLUTION_END.search(text):
                open_label = None
            plain = SOLUTION_PLAIN.search(text)
            if plain:
                plain_label = plain.group(1)
                solutions.setdefault(plain_label, [])
                dropdown[plain_label] = bool(DROPDOWN.search(text[plain.start() :]))
        elif cell["cell_type"] == "code":
            label = open_label or plain_label
            if label is not None:
                solutions[label].append(cell)
                inside.add(index)
    return {
        "exercises": exercises,
        "exercise_cells": exercise_cells,
        "solutions": solutions,
        "dropdown": dropdown,
        "inside": inside,
        "exercises_heading": heading,
    }


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_id)
def test_exercises_with_asserted_solutions(path):
    found = exercise_structure(load(path))
    labels = found["exercises"]
    assert len(labels) >= 3, f"{len(labels)} exercise(s): a chapter ends with 3 to 6 exercises"
    assert None not in labels, "every {exercise} needs a :label: (ex-<chapter-slug>-<n>)"
    assert len(set(labels)) == len(labels), f"duplicate exercise labels: {labels}"
    heading = found["exercises_heading"]
    assert heading is not None, 'the exercises go under a "## Exercises" heading'
    assert min(found["exercise_cells"]) > heading, 'an exercise stands before "## Exercises"'
    for label in labels:
        assert label in found["solutions"], f"exercise {label} has no solution"
        assert found["dropdown"][label], (
            f"the solution of {label} is not collapsed (:class: dropdown)"
        )
        code = "\n".join(text_of(cell) for cell in found["solutions"][label])
        assert ASSERTS.search(code), (
            f"the solution of {label} asserts nothing: compute the answer and assert it in code"
        )
    unknown = set(found["solutions"]) - set(labels)
    assert not unknown, f"solutions of no exercise: {sorted(unknown)}"


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_id)
def test_proof_cells_folded(path):
    notebook = load(path)
    inside = exercise_structure(notebook)["inside"]
    code_indices = [
        i
        for i, c in enumerate(notebook["cells"])
        if c["cell_type"] == "code" and text_of(c).strip()
    ]
    assert code_indices, "the notebook has no code"
    open_proofs = []
    for number, index in enumerate(code_indices, start=1):
        cell = notebook["cells"][index]
        tags = set(cell.get("metadata", {}).get("tags", []))
        if index in inside or tags & FOLDED:
            continue
        if number == 1:
            open_proofs.append("1 (imports and setup)")
            continue
        shows_formula = any(
            "text/latex" in output.get("data", {}) for output in cell.get("outputs", [])
        )
        if ASSERTS.search(text_of(cell)) and not shows_formula:
            open_proofs.append(str(number))
    assert not open_proofs, (
        "proof cells not folded (tag them hide-input): code cell(s) " + ", ".join(open_proofs)
    )


def _notebook(*cells: tuple[str, str, list[str]]) -> dict:
    """A minimal notebook from (cell_type, source, tags) triples, for testing the checks."""
    made = []
    for cell_type, text, tags in cells:
        cell = {"cell_type": cell_type, "source": text, "metadata": {"tags": tags}}
        if cell_type == "code":
            cell["outputs"] = []
        made.append(cell)
    return {"cells": made}


GOOD = [
    ("markdown", "# Title", []),
    ("code", "import numpy as np", ["hide-input"]),
    ("code", "assert 1 + 1 == 2", ["hide-input"]),
    ("markdown", "## Exercises", []),
    ("markdown", "```{exercise}\n:label: ex-t-1\nCompute.\n```", []),
    ("markdown", "```{solution-start} ex-t-1\n:class: dropdown\n```", []),
    ("code", "np.testing.assert_allclose(1.0, 1.0)", []),
    ("markdown", "```{solution-end}\n```", []),
    ("markdown", "```{exercise}\n:label: ex-t-2\nDerive.\n```", []),
    ("markdown", "```{solution} ex-t-2\n:class: dropdown\nThe answer.\n```", []),
    ("code", "assert 2 > 1", []),
]


def test_checks_accept_both_solution_forms():
    found = exercise_structure(_notebook(*GOOD))
    assert found["exercises"] == ["ex-t-1", "ex-t-2"]
    assert found["dropdown"] == {"ex-t-1": True, "ex-t-2": True}
    assert [len(found["solutions"][label]) for label in ("ex-t-1", "ex-t-2")] == [1, 1]
    assert found["inside"] == {6, 10} and found["exercises_heading"] == 3


def test_checks_can_fail(tmp_path):
    def run(cells):
        path = tmp_path / "chapter.ipynb"
        path.write_text(json.dumps(_notebook(*cells)))
        for check in (test_exercises_with_asserted_solutions, test_proof_cells_folded):
            check(path)

    third = [
        ("markdown", "```{exercise}\n:label: ex-t-3\nCode.\n```", []),
        ("markdown", "```{solution} ex-t-3\n:class: dropdown\n```", []),
        ("code", "assert True", []),
    ]
    run(GOOD + third)
    broken = {
        "two exercises": GOOD,
        "an open proof cell": [GOOD[0], GOOD[1], ("code", "assert 1 + 1 == 2", [])]
        + GOOD[3:]
        + third,
        "open imports": [GOOD[0], ("code", "import numpy as np", [])] + GOOD[2:] + third,
        "a solution without assert": GOOD[:6] + [("code", "print(1)", [])] + GOOD[7:] + third,
        "an open solution": GOOD[:5]
        + [("markdown", "```{solution-start} ex-t-1\n```", [])]
        + GOOD[6:]
        + third,
        "an exercise before the heading": [GOOD[0], GOOD[1], GOOD[2]]
        + GOOD[4:]
        + [GOOD[3]]
        + third,
    }
    for name, cells in broken.items():
        with pytest.raises(AssertionError):
            run(cells)
            pytest.fail(f"the checks accepted a notebook with {name}")
