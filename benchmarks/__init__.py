"""Accuracy, speed and memory benchmarks of lossutils against the formulas a reader would write.

Run ``make bench`` (or ``python benchmarks/run.py``); the results go to
``benchmarks/results/``. See ``benchmarks/README.md``.
"""
