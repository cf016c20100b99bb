"""Every conformance test that the book cites exists, so a citation cannot go stale."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITED = re.compile(r"\btest_(?:claim|deviation)_[a-z0-9_]+")


def cited_names():
    sources = [*ROOT.glob("chapters/*/*.ipynb"), *ROOT.glob("*.md")]
    return {name for path in sources for name in CITED.findall(path.read_text(encoding="utf-8"))}


def defined_names():
    return {
        m.group(1)
        for path in Path(__file__).parent.glob("test_*.py")
        for m in re.finditer(r"^def (test_\w+)\(", path.read_text(encoding="utf-8"), re.M)
    }


def test_the_book_cites_conformance_tests():
    assert "test_deviation_kl_div_zero_target" in cited_names()  # the deviation table


def test_every_cited_test_exists():
    missing = sorted(cited_names() - defined_names())
    assert not missing, f"cited in the book but not defined in conformance/: {missing}"
