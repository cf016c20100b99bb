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
