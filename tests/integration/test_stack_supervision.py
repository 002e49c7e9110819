"""``hitl stack up`` supervises its services: one that dies is started again, and ``hitl stack status``
says so."""

from __future__ import annotations

import os
import signal

import pytest

from hitl.stack import procs
from tests.integration.conftest import LocalStack

pytestmark = pytest.mark.integration


def test_a_killed_service_comes_back_and_status_counts_the_restart(local_stack: LocalStack) -> None:
    def monitor() -> dict[str, object]:
        [row] = [r for r in local_stack.cli_json("stack", "status")["services"] if r["service"] == "monitor"]
        return dict(row)

    before = monitor()
    assert local_stack.cli_json("stack", "status")["supervisor_running"] is True
    assert before["running"] is True
    os.kill(int(str(before["pid"])), signal.SIGKILL)

    procs.wait_until(lambda: monitor()["pid"] != before["pid"] and monitor()["running"] is True, 30, "monitor back")
    after = monitor()
    assert after["restarts"] == int(str(before["restarts"])) + 1
    assert "service_restarted" in local_stack.log("supervisor")
