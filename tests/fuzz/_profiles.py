"""Hypothesis profiles for the fuzz targets.

* ``flyteauth-ci`` (default): 300 examples per target, a few seconds in all: runs with the normal suite.
* ``flyteauth-fuzz`` (``FLYTEAUTH_FUZZ=1``): 10,000 examples per target (override with
  ``FLYTEAUTH_FUZZ_EXAMPLES``).

The profiles are applied per test (``@fuzz``), never globally, so other hypothesis tests keep their own
settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZING = os.environ.get("FLYTEAUTH_FUZZ", "").strip().lower() in ("1", "true", "yes", "on")
CI_EXAMPLES = 300
FUZZ_EXAMPLES = int(os.environ.get("FLYTEAUTH_FUZZ_EXAMPLES") or 10_000)

_common = {
    "deadline": None,
    "database": None,  # no .hypothesis/ in the tree; a failure prints its reproduction blob instead
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
}
settings.register_profile("flyteauth-ci", max_examples=CI_EXAMPLES, **_common)
settings.register_profile("flyteauth-fuzz", max_examples=FUZZ_EXAMPLES, **_common)
PROFILE = "flyteauth-fuzz" if FUZZING else "flyteauth-ci"

#: Decorator for every fuzz target.
fuzz = settings(settings.get_profile(PROFILE))
