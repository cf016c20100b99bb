"""Re-run notebooks top to bottom in a fresh kernel and store their outputs in place.

Usage: python tools/execute_notebooks.py chapters/part/slug.ipynb [...]

The kernel is this interpreter's (the project's virtual environment), started in
the notebook's folder, exactly as nbval starts it; a cell error stops and fails.
"""

import os
import pathlib
import sys

import nbformat
from nbclient import NotebookClient

KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def execute(path: pathlib.Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata["kernelspec"] = KERNEL
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    nbformat.write(notebook, path)


if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") != "0":
        sys.exit("set PYTHONHASHSEED=0 (the Makefile does) so that outputs reproduce under nbval")
    for name in sys.argv[1:]:
        print(f"executing {name}", flush=True)
        execute(pathlib.Path(name))
