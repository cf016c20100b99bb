"""Test-suite configuration.

Hypothesis draws new examples on every run unless told otherwise. The suite's
default profile is derandomized, so that `make test` and CI are reproducible: a
failure is the same failure on every machine and every rerun. To search for new
counterexamples, run `HYPOTHESIS_PROFILE=explore make test` (a fresh random draw
each run, more examples).
"""

import os
import zlib

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def rng(request):
    """A generator seeded by the test's own id.

    A test draws the same data whichever tests ran before it, so a failure seen in
    the full suite is the same failure when the test runs alone.
    """
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
