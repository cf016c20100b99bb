"""Copy MathJax 3 from its PyPI wheel into a folder the book serves, so math renders offline.

Usage: python tools/install_mathjax.py DEST

The book's _config.yml points `mathjax_path` at DEST/es5/tex-mml-chtml.js and lists
DEST in `html_extra_path`. The files are not kept under _static on purpose: Jupyter Book
injects every .js file under _static into every page.
"""

import pathlib
import shutil
import sys

import mathjax  # the django-static-mathjax wheel: MathJax's files, no Django needed

SOURCE = pathlib.Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
PARTS = ["tex-mml-chtml.js", "output/chtml/fonts", "input/tex/extensions", "a11y", "ui", "sre"]

if __name__ == "__main__":
    dest = pathlib.Path(sys.argv[1]) / "es5"
    for part in PARTS:
        src, out = SOURCE / part, dest / part
        if src.is_dir():
            shutil.copytree(src, out, dirs_exist_ok=True)
        elif src.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
    print(f"MathJax copied to {dest}")
