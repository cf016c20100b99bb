"""Print the chapter notebooks in the order of _toc.yml (stdlib only, used by the Makefile)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def chapters() -> list[str]:
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"file:\s*([^\s#]+)", toc)
    return [f + ".ipynb" for f in files if (ROOT / (f + ".ipynb")).exists()]


if __name__ == "__main__":
    print(" ".join(chapters()))
