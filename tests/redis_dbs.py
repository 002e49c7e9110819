"""One Redis database per test stack, allocated here so that no two stacks share one.

Each stack flushes its database when it starts and when it stops: two stacks on the same number would
wipe each other's counters and registries whenever their lifetimes overlap (the session's shared stack
and a test's own). The private test Redis has the default 16 databases.
"""

from __future__ import annotations

UNIT = 13  # the ``redis_url`` fixture: unit and adapter tests
LOCAL_STACK = 14  # tests/integration: the session's shared stack
IAM_STACK = 15  # tests/integration/test_iam_enforced.py
DEMO = 7  # tests/integration/test_demo.py
CONSENSUS = 8  # tests/loops/test_consensus.py
ANNOTATE = 9  # tests/loops/test_annotate.py
DASHBOARDS = 10  # tests/deploy/test_dashboards_live.py
CONTAINERS = 11  # tests/containers
LOOPS = 12  # tests/loops: the loops stack

ALL = [UNIT, LOCAL_STACK, IAM_STACK, DEMO, CONSENSUS, ANNOTATE, DASHBOARDS, CONTAINERS, LOOPS]
assert len(set(ALL)) == len(ALL), "two test stacks share a Redis database"
assert all(0 <= db < 16 for db in ALL)
