"""Two review service replicas on one Redis, over HTTP: sessions shared and revoked across them, an
answer after the claim's time limit refused, the bound on A2I bodies received at once, and the
sign-in log.

The replicas share the key prefix and the session secret, as the k8s overlays' pods do (one Secret).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hitl.review.reviewers import hash_password
from hitl.stack import procs
from tests.review.conftest import ReviewProcess, a2i_client, flow, flow_arn, input_content, unique, wait_status
from tests.security.conftest import refused, sign, start_body
from tests.security.test_hostile_requests import Portal, box_answer

pytestmark = pytest.mark.integration
ACCOUNTS = ("rhea", "tess", "lena")
FLOWS = [flow("rep-open"), flow("rep-timed", TaskTimeLimitInSeconds=30)]
BODY_SLOTS = 2
HELD_BYTES = 4_000_000  # a large upload (StartHumanLoop allows ~19 MB), of which only the start is sent


class Replicas:
    def __init__(self, one: ReviewProcess, two: ReviewProcess, passwords: dict[str, str]) -> None:
        self.one, self.two, self.passwords = one, two, passwords

    def log_lines(self, process: ReviewProcess) -> list[str]:
        log: Path = process.group.log_dir / f"{process.name}.log"
        return log.read_text().splitlines()


@pytest.fixture(scope="module")
def replicas(start_review: Any, run_dir: Path, aws_env: dict[str, Any]) -> Replicas:
    folder = run_dir / "replicas"
    folder.mkdir(parents=True, exist_ok=True)
    passwords = {name: secrets.token_urlsafe(16) for name in ACCOUNTS}
    entries = [
        {"name": n, "password_hash": hash_password(p), "roles": ["reviewer"], "teams": []} for n, p in passwords.items()
    ]
    (folder / "reviewers.json").write_text(json.dumps({"reviewers": entries}))
    (folder / "flows.json").write_text(json.dumps({"FlowDefinitions": FLOWS}))
    shared = {
        "HITL_KEY_PREFIX": "hitltest-replicas",
        "HITL_REVIEW_SESSION_SECRET": "test-secret-replicas-" + secrets.token_hex(8),
        "HITL_REVIEW_REVIEWERS_FILE": str(folder / "reviewers.json"),
        "HITL_REVIEW_FLOW_DEFINITIONS_FILE": str(folder / "flows.json"),
        "HITL_REVIEW_API_CONCURRENT_BODIES": str(BODY_SLOTS),
        "HITL_REVIEW_API_BODY_WAIT_SECONDS": "1",
        "HITL_LOG_LEVEL": "INFO",  # sign-in events are INFO
    }
    return Replicas(start_review("replica-one", **shared), start_review("replica-two", **shared), passwords)


def start_loop(url: str, flow_name: str) -> str:
    name = unique("rep")
    a2i_client(url).start_human_loop(
        HumanLoopName=name, FlowDefinitionArn=flow_arn(flow_name), HumanLoopInput={"InputContent": input_content()}
    )
    return name


def queue_names(portal: Portal) -> list[str]:
    response = portal.api("GET", "/portal/api/queue")
    assert response.status_code == 200, response.text[:300]
    return [task["name"] for task in response.json()["tasks"]]


def test_a_session_from_one_replica_works_on_the_other_and_sign_out_ends_it_on_both(replicas: Replicas) -> None:
    name = start_loop(replicas.one.url, "rep-open")
    on_one = Portal(replicas.one.url).sign_in("rhea", replicas.passwords["rhea"])
    on_two = Portal(replicas.two.url)
    on_two.http.cookies.update(dict(on_one.http.cookies))
    on_two.csrf = on_one.csrf  # the page came from one replica, the calls go to the other
    assert name in queue_names(on_two)
    assert on_two.claim(name).status_code == 200
    assert on_two.api("GET", f"/portal/api/tasks/{name}/image").status_code == 200
    answered = on_two.api("POST", f"/portal/api/tasks/{name}/answer", {"answer": box_answer()})
    assert answered.status_code == 200, answered.text[:300]
    assert wait_status(a2i_client(replicas.one.url), name, "Completed")["HumanLoopStatus"] == "Completed"
    queue_names(on_one)  # still signed in on the first replica (asserts 200)
    assert on_two.http.post("/logout", data={"csrf_token": on_two.csrf}).status_code == 303
    stolen = dict(on_one.http.cookies)
    for replica in (replicas.one, replicas.two):
        thief = httpx.Client(base_url=replica.url, cookies=stolen)
        refused(f"session signed out on another replica ({replica.name})", thief.get("/portal/api/queue"), 401,
                "sign in")


def bodies_in_flight(url: str) -> float:
    found = re.search(r"^hitl_review_api_bodies_in_flight (\S+)$", httpx.get(url + "/metrics").text, re.MULTILINE)
    assert found, "the gauge is missing from /metrics"
    return float(found.group(1))


def open_upload(port: int, url: str, sent: int) -> socket.socket:
    """A validly signed StartHumanLoop of HELD_BYTES whose body stops after ``sent`` bytes."""
    body = start_body(unique("held"), "rep-open", "x" * (HELD_BYTES - 300)).ljust(HELD_BYTES)
    headers = sign("POST", url + "/human-loops", body, headers={"Content-Length": str(len(body))})
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(f"POST /human-loops HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}\r\n".encode() + body[:sent])
    return conn


def refusal(conn: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    header, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", header, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(header.split(b" ", 2)[1]), json.loads(rest)


@pytest.fixture
def held_uploads(replicas: Replicas) -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for conn in held:
        conn.close()


def test_more_concurrent_uploads_than_the_bound_are_refused(replicas: Replicas,
                                                            held_uploads: list[socket.socket]) -> None:
    service = replicas.one
    assert bodies_in_flight(service.url) == 0
    for _ in range(BODY_SLOTS):
        held_uploads.append(open_upload(service.port, service.url, 64 * 1024))
    procs.wait_until(lambda: bodies_in_flight(service.url) == BODY_SLOTS, 15, "both slots taken", interval=0.1)
    extra = [open_upload(service.port, service.url, 64 * 1024) for _ in range(2)]
    try:
        for conn in extra:
            status, error = refusal(conn)
            assert status == 429, error
            assert error["__type"] == "ThrottlingException"
            assert f"Too many request bodies are being received at once (at most {BODY_SLOTS})" in error["Message"]
    finally:
        for conn in extra:
            conn.close()
    assert bodies_in_flight(service.url) == BODY_SLOTS  # the refused bodies were never read
    # Meanwhile the service answers everything else.
    assert httpx.get(service.url + "/healthz").status_code == 200
    reviewer = Portal(service.url).sign_in("lena", replicas.passwords["lena"])
    assert reviewer.api("GET", "/portal/api/queue").status_code == 200
    for conn in held_uploads:
        conn.close()
    procs.wait_until(lambda: bodies_in_flight(service.url) == 0, 15, "slots freed", interval=0.1)
    name = start_loop(service.url, "rep-open")  # a slot is free again
    assert a2i_client(service.url).describe_human_loop(HumanLoopName=name)["HumanLoopStatus"] == "InProgress"


def test_sign_ins_are_logged_once_each_with_the_outcome_and_no_password(replicas: Replicas) -> None:
    service = replicas.two
    wrong = "wrong-" + secrets.token_hex(12)
    stranger = "nobody-" + secrets.token_hex(4)
    refused("wrong password", Portal(service.url).login("lena", wrong), 401)
    refused("unknown reviewer", Portal(service.url).login(stranger, wrong), 401)
    Portal(service.url).sign_in("lena", replicas.passwords["lena"])

    def events() -> list[dict[str, Any]]:
        found = []
        for line in replicas.log_lines(service):
            record = json.loads(line)  # every line is one JSON object
            if record.get("event") == "signin" and record.get("reviewer") in ("lena", stranger):
                found.append(record)
        return found

    procs.wait_until(lambda: len(events()) >= 3, 10, "three sign-in events", interval=0.1)
    time.sleep(0.3)  # nothing more may follow
    logged = [(e["reviewer"], e["outcome"]) for e in events()]
    assert logged == [("lena", "failure"), (stranger, "failure"), ("lena", "success")]
    assert all(e["service"] == "review" and e["level"] == "info" and e["client"] for e in events())
    text = "\n".join(replicas.log_lines(service))
    assert wrong not in text
    assert replicas.passwords["lena"] not in text


def test_an_answer_after_the_claims_time_limit_is_refused(replicas: Replicas) -> None:
    """The claim lapses while the loop is still open: the answer path refuses it, then a new claim works."""
    service = replicas.one
    tess = Portal(service.url).sign_in("tess", replicas.passwords["tess"])
    name = start_loop(service.url, "rep-timed")
    claimed = tess.claim(name)
    assert claimed.status_code == 200
    started = time.monotonic()
    procs.wait_until(lambda: time.monotonic() - started > 30.5, 40, "the claim's 30 s time limit", interval=0.5)
    late = tess.api("POST", f"/portal/api/tasks/{name}/answer", {"answer": box_answer()})
    refused("answer after the claim's time limit", late, 409)
    assert late.json() == {"error": "Your time on this task ran out; open it again if it is still offered"}
    assert tess.claim(name).status_code == 200
    assert tess.api("POST", f"/portal/api/tasks/{name}/answer", {"answer": box_answer()}).status_code == 200
