"""Write the summary of ``results/results.json`` into the README (``python -m benchmarks.summary``).

The README shows a short table between two marker lines; ``make bench`` rewrites it
after each run, and a test checks that it agrees with the committed results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.report import SUMMARY_END, SUMMARY_START, summary

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "results.json"
README = ROOT / "README.md"


def rendered(readme: str, results: dict) -> str:
    """``readme`` with the text between the markers replaced by the summary of ``results``."""
    start, end = readme.index(SUMMARY_START), readme.index(SUMMARY_END) + len(SUMMARY_END)
    return readme[:start] + "\n".join(summary(results)) + readme[end:]


def main() -> int:
    """Rewrite the README's summary from the committed results."""
    results = json.loads(RESULTS.read_text())
    README.write_text(rendered(README.read_text(), results))
    print(f"wrote the benchmark summary into {README.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
