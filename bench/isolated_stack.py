"""The environment of a benchmark's own local stack: its run directory, its own redis-server and free
loopback ports, and no ``HITL_``/``AWS_`` setting inherited from the caller's shell."""

from __future__ import annotations

import json
import os
from pathlib import Path


def isolated_stack_env(run_dir: Path, key_prefix: str, bucket: str, **settings: str) -> dict[str, str]:
    """``settings``: further ``HITL_*`` values (detect backend, worker concurrency, caches, …)."""
    from hitl.stack import procs

    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))},
        "HITL_RUN_DIR": str(run_dir),
        # Its own redis-server on a free port (data under the run dir): nothing shared with another stack.
        "HITL_STACK_REDIS_PORT": str(procs.free_port()),
        "HITL_KEY_PREFIX": key_prefix,
        "HITL_BUCKET": bucket,
        "HITL_LOOP_LABELS": json.dumps(["face"]),
        "HITL_LOG_LEVEL": "WARNING",
        "HITL_STACK_MOTO_PORT": str(procs.free_port()),
        "HITL_REVIEW_PORT": str(procs.free_port()),
        "HITL_STACK_METRICS_BASE_PORT": str(procs.free_port_range(12)),
        **settings,
    }
