"""The row functions' threads: LOSSUTILS_NUM_THREADS sets them; the results do not depend on it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Cross-entropy of (4096, 1000) float32 logits: 16 MB, enough for the row blocks to be
# shared out among threads. Prints the threads used, the pool threads alive afterwards
# and a digest of the loss and gradient bytes.
_SCRIPT = """
import hashlib, threading
import numpy as np
import lossutils
from lossutils import _blocks
rng = np.random.default_rng(0)
x = rng.normal(scale=4, size=(4096, 1000)).astype(np.float32)
y = rng.integers(0, 1000, size=4096)
loss, grad = lossutils.cross_entropy_value_and_grad(x, y, reduction="none")
pool = sum(t.name.startswith("lossutils-rows") for t in threading.enumerate())
digest = hashlib.sha256(loss.tobytes() + grad.tobytes()).hexdigest()
print(_blocks.WORKERS, pool, digest)
"""


def _run(setting):
    env = dict(os.environ)
    env.pop("LOSSUTILS_NUM_THREADS", None)
    if setting is not None:
        env["LOSSUTILS_NUM_THREADS"] = setting
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_number_of_threads_is_set_by_the_environment_and_changes_no_bit():
    runs = {setting: _run(setting) for setting in (None, "1", "3")}
    for setting, run in runs.items():
        assert run.returncode == 0, (setting, run.stderr)
    (default, pool, digest), one, three = (runs[s].stdout.split() for s in (None, "1", "3"))
    assert int(default) == min(2, os.cpu_count() or 1)
    assert int(pool) == int(default) - 1  # the caller is one of the threads
    assert one[:2] == ["1", "0"]  # no pool thread was started
    assert three[:2] == ["3", "2"]
    assert one[2] == digest and three[2] == digest


@pytest.mark.parametrize("setting", ["0", "-1", "two", "1.5"])
def test_a_wrong_number_of_threads_is_an_error_naming_the_variable(setting):
    run = _run(setting)
    assert run.returncode != 0
    assert "ValueError: LOSSUTILS_NUM_THREADS: expected a positive integer" in run.stderr
    assert repr(setting) in run.stderr
