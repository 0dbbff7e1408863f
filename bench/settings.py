"""The portal's settings plus one trivial view: the yardstick for the page benchmarks."""

from ca_portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
