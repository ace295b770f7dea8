"""Settings shared by every test tier."""

from __future__ import annotations

from hypothesis import settings

# Property tests pin behaviour, not speed (speed is measured in benchmarks/): on the shared 2-core
# machines one example can take ten times its usual time (test_jtl's round trip: 259 ms against
# Hypothesis's default 200 ms deadline, a false failure).
settings.register_profile("relevo", deadline=None)
settings.load_profile("relevo")
