"""Test-suite configuration.

Hypothesis draws new examples on every run unless told otherwise. The suite's
default profile is derandomized, so that `make test` and CI are reproducible: a
failure is the same failure on every machine and every rerun. To search for new
counterexamples, run `HYPOTHESIS_PROFILE=explore make test` (a fresh random draw
each run, more examples).
"""

import os

from hypothesis import settings

settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
