"""The validator bites: a wrong stored output or a failing assert fails nbval.

Each case runs nbval, exactly as `make test` runs it, in a subprocess on a
copy of a notebook, and checks the outcome. A control notebook must pass, so a
failure elsewhere is due to the defect and not to the harness.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
CHAPTERS = sorted(
    p for p in (ROOT / "chapters").glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts
)


def run_nbval(notebook: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-o",
        "addopts=",
        "--nbval",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(ROOT / "tests" / "nbval_sanitize.cfg"),
        *extra,
        str(notebook),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(
        command, cwd=notebook.parent, env=env, capture_output=True, text=True, timeout=300
    )


def copy_to(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    target = tmp_path / name
    shutil.copy(FIXTURES / name, target)
    return target


def test_control_notebook_passes(tmp_path):
    result = run_nbval(copy_to(tmp_path, "good.ipynb"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b3 passed\b", result.stdout), result.stdout


def test_wrong_stored_output_fails(tmp_path):
    result = run_nbval(copy_to(tmp_path, "wrong_output.ipynb"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout
    assert "41" in result.stdout and "42" in result.stdout, "the report should show both outputs"


def test_failing_assert_fails(tmp_path):
    result = run_nbval(copy_to(tmp_path, "failing_assert.ipynb"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "AssertionError" in result.stdout and "the derivation disagrees" in result.stdout


def shown_text(output: dict) -> tuple[str, str] | None:
    """(key, text) of an output nbval compares as text: printed, or a cell's plain-text result."""
    if output.get("name") == "stdout":
        return "text", "".join(output["text"])
    if "text/plain" in output.get("data", {}):
        return "text/plain", "".join(output["data"]["text/plain"])
    return None


def test_stale_glued_number_fails(tmp_path):
    """Numbers glued into the prose are stored outputs too, and nbval compares them."""
    result = run_nbval(copy_to(tmp_path, "wrong_glue.ipynb"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout and "0.4" in result.stdout


def first_shown_digit(notebook: dict) -> tuple[dict, str]:
    """The first text output that shows a number (the output and its key)."""
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            shown = shown_text(output)
            if shown and re.search(r"\d", shown[1]) and "<Figure" not in shown[1]:
                return output, shown[0]
    raise AssertionError("the chapter shows no number: nothing it computes is checked by nbval")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: str(p.relative_to(ROOT).with_suffix("")))
def test_chapter_with_a_wrong_number_fails(path, tmp_path):
    """Change one printed digit of a real chapter: nbval must notice."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    output, key = first_shown_digit(notebook)
    text = shown_text(output)[1]
    digit = re.search(r"\d", text)
    wrong = text[: digit.start()] + str((int(digit.group()) + 1) % 10) + text[digit.end() :]
    if key == "text":
        output["text"] = wrong
    else:
        output["data"]["text/plain"] = wrong
    target = tmp_path / path.name
    target.write_text(json.dumps(notebook), encoding="utf-8")
    result = run_nbval(target, "-x")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout, result.stdout
