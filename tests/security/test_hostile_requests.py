"""Hostile requests against the running review service over HTTP: each must get the answer a client
should expect, a 4xx with a readable reason, never a 5xx and never success.

The A2I requests are signed here by hand (botocore's signer) so that each can be tampered with in
one way; portal requests go through httpx with the service's cookies, as a browser would send them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from hitl.review.accounts import AccountStore
from hitl.stack import procs
from tests.review.conftest import BUCKET, IMAGE_KEY, a2i_client, flow_arn, input_content, unique, wait_status
from tests.security.conftest import (
    HTML_AS_PNG_KEY,
    METRICS_TOKEN,
    SVG_KEY,
    SecurityService,
    refused,
    sign,
    start_body,
)

pytestmark = pytest.mark.integration
FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
BOX = {"left": 200, "top": 120, "width": 160, "height": 200}


# --- helpers ----------------------------------------------------------------------------------------


class Portal:
    """A browser-like portal client; ``address`` is the client address the proxy reports."""

    def __init__(self, url: str, address: str | None = None) -> None:
        headers = {"X-Forwarded-For": address} if address else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=60, follow_redirects=False)
        self.csrf = ""

    def form_token(self) -> str:
        page = self.http.get("/login")
        found = FORM_TOKEN.search(page.text)
        assert found, page.text[:300]
        return found.group(1)

    def login(self, name: str, password: str, token: str | None = None) -> httpx.Response:
        token = self.form_token() if token is None else token
        return self.http.post("/login", data={"csrf_token": token, "username": name, "password": password})

    def sign_in(self, name: str, password: str) -> Portal:
        response = self.login(name, password)
        assert response.status_code == 303, response.text[:300]
        page = self.http.get("/portal")
        found = META_TOKEN.search(page.text)
        assert found
        self.csrf = found.group(1)
        return self

    def api(self, method: str, path: str, payload: Any = None, csrf: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf if csrf is None else csrf}
        if payload is not None:
            kw["json"] = payload
        return self.http.request(method, path, headers=headers, **kw)

    def claim(self, name: str) -> httpx.Response:
        return self.api("POST", f"/portal/api/tasks/{name}")

    def answer_raw(self, name: str, body: bytes) -> httpx.Response:
        return self.http.post(
            f"/portal/api/tasks/{name}/answer",
            content=body,
            headers={"X-CSRF-Token": self.csrf, "Content-Type": "application/json"},
        )


def box_answer(**box: int) -> dict[str, Any]:
    return {
        "annotatedResult": {
            "boundingBoxes": [{"label": "face", **(box or BOX)}],
            "inputImageProperties": {"width": 640, "height": 480},
        }
    }


@pytest.fixture(scope="module")
def svc(security_service: SecurityService) -> SecurityService:
    return security_service


@pytest.fixture(scope="module")
def a2i(svc: SecurityService) -> Any:
    return a2i_client(svc.url)


@pytest.fixture(scope="module")
def accounts(svc: SecurityService) -> Iterator[AccountStore]:
    client = redis.Redis.from_url(svc.redis_url)
    yield AccountStore(client, lambda *parts: ":".join([svc.key_prefix, *parts]), "test-secret-security")
    client.close()


def start_loop(a2i: Any, flow_name: str, content: str | None = None, prefix: str = "sec") -> str:
    name = unique(prefix)
    a2i.start_human_loop(
        HumanLoopName=name,
        FlowDefinitionArn=flow_arn(flow_name),
        HumanLoopInput={"InputContent": content or input_content()},
    )
    return name


def a2i_call(svc: SecurityService, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
             query: str = "") -> httpx.Response:
    url = svc.url + path + (f"?{query}" if query else "")
    return httpx.request(method, url, content=body, headers=headers or {}, timeout=30)


def signed_call(svc: SecurityService, method: str, path: str, body: bytes = b"", query: str = "",
                **sign_args: Any) -> httpx.Response:
    url = svc.url + path + (f"?{query}" if query else "")
    return a2i_call(svc, method, path, body, sign(method, url, body, **sign_args), query)


def raw_exchange(port: int, head: bytes, send_body: bytes = b"") -> httpx.Response:
    """Send raw request bytes (the body from a thread, so the answer is read while it is refused
    part-way); the answer's status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head)

        def send() -> None:
            with contextlib.suppress(OSError):
                conn.sendall(send_body)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: (\d+)", header, re.IGNORECASE)
        while length and len(rest) < int(length.group(1)):
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        conn.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=30)
    return httpx.Response(int(header.split(b" ", 2)[1]), content=rest)


# --- SigV4: forged, tampered, replayed, wrong region ------------------------------------------------------

LIST_QUERY = f"FlowDefinitionArn={flow_arn('sec-open').replace(':', '%3A').replace('/', '%2F')}"


def test_a_valid_signature_is_accepted(svc: SecurityService) -> None:
    assert signed_call(svc, "GET", "/human-loops", query=LIST_QUERY).status_code == 200


def test_missing_and_malformed_authorization(svc: SecurityService) -> None:
    refused("no signature", a2i_call(svc, "GET", "/human-loops/x"), 403, "MissingAuthenticationToken")
    bad = {"Authorization": "AWS4-HMAC-SHA256 garbage", "X-Amz-Date": "20240101T000000Z"}
    refused("malformed Authorization", a2i_call(svc, "GET", "/human-loops/x", headers=bad), 403, "Malformed")
    huge = {"Authorization": "AWS4-HMAC-SHA256 " + "A" * 10_000}
    refused("oversized Authorization", a2i_call(svc, "GET", "/human-loops/x", headers=huge), 403)


def test_forged_signatures(svc: SecurityService) -> None:
    refused("wrong secret", signed_call(svc, "GET", "/human-loops/x", secret="guess"), 403, "InvalidSignature")
    refused("unknown key", signed_call(svc, "GET", "/human-loops/x", key="AKIDFORGED"), 403, "UnrecognizedClient")
    refused("other service", signed_call(svc, "GET", "/human-loops/x", service="s3"), 403, "sagemaker")
    refused("wrong region", signed_call(svc, "GET", "/human-loops/x", region="eu-west-1"), 403, "region")
    later = (datetime.now(UTC) + timedelta(minutes=10)).strftime("%Y%m%dT%H%M%SZ")
    earlier = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y%m%dT%H%M%SZ")
    refused("future date", signed_call(svc, "GET", "/human-loops/x", amz_date=later), 403, "expired")
    refused("stale date", signed_call(svc, "GET", "/human-loops/x", amz_date=earlier), 403, "expired")


def test_host_and_date_must_be_signed(svc: SecurityService) -> None:
    headers = sign("GET", svc.url + "/human-loops/x")
    without_host = headers["Authorization"].replace("SignedHeaders=content-type;host;", "SignedHeaders=content-type;")
    assert without_host != headers["Authorization"]
    refused("host unsigned", a2i_call(svc, "GET", "/human-loops/x", headers={**headers, "Authorization": without_host}),
            403, "host")
    missing = headers["Authorization"].replace("x-hitl-request-id", "x-hitl-request-id;x-not-sent")
    absent = a2i_call(svc, "GET", "/human-loops/x", headers={**headers, "Authorization": missing})
    refused("signed header absent", absent, 403, "missing")


def test_tampered_requests(svc: SecurityService) -> None:
    body = start_body(unique("tamper"), "sec-open", input_content())
    other = start_body(unique("tamper"), "sec-open", input_content(routeReason="audit"))
    url = svc.url + "/human-loops"
    refused("body swapped", a2i_call(svc, "POST", "/human-loops", other, sign("POST", url, body)), 403, "signature")
    headers = sign("GET", svc.url + "/human-loops/a")
    refused("path swapped", a2i_call(svc, "GET", "/human-loops/b", headers=headers), 403, "signature")
    refused("method swapped", a2i_call(svc, "DELETE", "/human-loops/a", headers=headers), 403, "signature")
    listed = sign("GET", svc.url + "/human-loops?" + LIST_QUERY + "&MaxResults=1")
    refused("query swapped", a2i_call(svc, "GET", "/human-loops", headers=listed, query=LIST_QUERY + "&MaxResults=2"),
            403, "signature")
    dated = sign("GET", svc.url + "/human-loops/a")
    moved = {**dated, "X-Amz-Date": (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")}
    refused("date header changed", a2i_call(svc, "GET", "/human-loops/a", headers=moved), 403)


def test_payload_hash_binds_the_body(svc: SecurityService) -> None:
    """Finding 2: botocore trusts a signed x-amz-content-sha256; the service hashes the body itself."""
    url = svc.url + "/human-loops"
    body = start_body(unique("hash"), "sec-open", input_content())
    evil = start_body(unique("hash"), "sec-open", input_content(image_key="images/other.png"))
    declared = {"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}
    swapped = a2i_call(svc, "POST", "/human-loops", evil, sign("POST", url, body, headers=declared))
    refused("declared hash of another body", swapped, 403, "does not match the body")
    unsigned = {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    refused("UNSIGNED-PAYLOAD", signed_call(svc, "POST", "/human-loops", evil, headers=unsigned), 403, "unsigned")
    streaming = {"X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}
    refused("streaming payload", signed_call(svc, "POST", "/human-loops", evil, headers=streaming), 403)
    plain = sign("POST", url, body)
    refused("hash header added unsigned", a2i_call(svc, "POST", "/human-loops", body, {**plain, **declared}),
            403, "must be signed")
    good = sign("POST", url, body, headers=declared)
    assert a2i_call(svc, "POST", "/human-loops", body, good).status_code == 200


def test_replays_are_refused(svc: SecurityService, a2i: Any) -> None:
    """Finding 6: a captured start, stop or delete cannot be sent again within the skew window."""
    url = svc.url + "/human-loops"
    name = unique("replay")
    body = start_body(name, "sec-open", input_content())
    headers = sign("POST", url, body)
    assert a2i_call(svc, "POST", "/human-loops", body, headers).status_code == 200
    refused("replayed start", a2i_call(svc, "POST", "/human-loops", body, headers), 403, "replay")

    stopped = start_loop(a2i, "sec-open")
    stop_body = json.dumps({"HumanLoopName": stopped}).encode()
    stop_headers = sign("POST", url + "/stop", stop_body)
    assert a2i_call(svc, "POST", "/human-loops/stop", stop_body, stop_headers).status_code == 200
    refused("replayed stop", a2i_call(svc, "POST", "/human-loops/stop", stop_body, stop_headers), 403, "replay")

    olga = Portal(svc.url).sign_in("olga", svc.passwords["olga"])
    assert olga.claim(name).status_code == 200
    assert olga.api("POST", f"/portal/api/tasks/{name}/answer", {"answer": box_answer()}).status_code == 200
    wait_status(a2i, name, "Completed")
    delete_headers = sign("DELETE", f"{url}/{name}")
    assert a2i_call(svc, "DELETE", f"/human-loops/{name}", headers=delete_headers).status_code == 200
    # The name is reused; replaying the captured DELETE must not remove the new loop.
    a2i.start_human_loop(HumanLoopName=name, FlowDefinitionArn=flow_arn("sec-open"),
                         HumanLoopInput={"InputContent": input_content()})
    refused("replayed delete", a2i_call(svc, "DELETE", f"/human-loops/{name}", headers=delete_headers), 403, "replay")
    assert a2i.describe_human_loop(HumanLoopName=name)["HumanLoopStatus"] == "InProgress"


def test_oversized_bodies_are_refused_before_they_are_read(svc: SecurityService) -> None:
    """Finding 3: the signature header is checked, and the declared size, before any body byte is read."""
    port = svc.process.port
    head = (
        b"POST /human-loops HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n"
    )
    # No body byte is sent: the answer must come anyway.
    refused("unsigned 50 MB upload", raw_exchange(port, head), 403, "MissingAuthenticationToken")

    signed = sign("POST", svc.url + "/human-loops", b"")
    lines = "".join(f"{k}: {v}\r\n" for k, v in signed.items())
    head = f"POST /human-loops HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{lines}Content-Length: 50000000\r\n\r\n".encode()
    refused("signed 50 MB upload", raw_exchange(port, head), 400, "too large")

    chunked = (
        f"POST /human-loops HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{lines}Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"x" * (1024 * 1024)
    stream = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(20)) + b"0\r\n\r\n"
    refused("signed chunked 20 MB upload", raw_exchange(port, chunked, stream), 400, "too large")


def test_revoked_api_key(svc: SecurityService, accounts: AccountStore) -> None:
    key, secret = accounts.create_key("revocation test")
    assert signed_call(svc, "GET", "/human-loops", query=LIST_QUERY, key=key, secret=secret).status_code == 200
    assert accounts.revoke_key(key)
    refused("revoked key", signed_call(svc, "GET", "/human-loops", query=LIST_QUERY, key=key, secret=secret),
            403, "UnrecognizedClient")


# --- A2I input: NaN, deep JSON, key tricks ------------------------------------------------------------


def test_non_finite_and_deep_json_in_the_api(svc: SecurityService) -> None:
    name = unique("json")
    nan_body = start_body(name, "sec-open", input_content()).replace(
        b'"HumanLoopName"', b'"Extra": NaN, "HumanLoopName"'
    )
    refused("NaN in body", signed_call(svc, "POST", "/human-loops", nan_body), 400, "NaN")
    inf_content = json.dumps({"taskObject": f"s3://{BUCKET}/{IMAGE_KEY}", "initialValue": [{"confidence": 1}]})
    inf_content = inf_content.replace('"confidence": 1', '"confidence": Infinity')
    infinite = signed_call(svc, "POST", "/human-loops", start_body(name, "sec-open", inf_content))
    refused("Infinity in InputContent", infinite, 400, "Infinity")
    deep = "[" * 50_000 + "]" * 50_000
    deep_content = json.dumps({"taskObject": f"s3://{BUCKET}/{IMAGE_KEY}"})[:-1] + ', "x": ' + deep + "}"
    very_deep = signed_call(svc, "POST", "/human-loops", start_body(name, "sec-open", deep_content))
    refused("50,000-deep InputContent", very_deep, 400, "deeper")
    shallow_deep = json.dumps({"taskObject": f"s3://{BUCKET}/{IMAGE_KEY}"})[:-1] + ', "x": ' + "[" * 40 + "]" * 40 + "}"
    forty = signed_call(svc, "POST", "/human-loops", start_body(name, "sec-open", shallow_deep))
    refused("40-deep InputContent", forty, 400, "deeper")
    deep_body = b'{"HumanLoopName": "' + name.encode() + b'", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    refused("deep request body", signed_call(svc, "POST", "/human-loops", deep_body), 400, "deeper")


@pytest.mark.parametrize(
    ("task_object", "why"),
    [
        (f"s3://{BUCKET}/models/secret/model.onnx", "own data"),
        (f"s3://{BUCKET}/a2i-output/x/output.json", "own data"),
        (f"s3://{BUCKET}/detections/abc.json", "own data"),
        (f"s3://{BUCKET}/images/../models/secret/model.onnx", "plain object key"),
        (f"s3://{BUCKET}//models/x.png", "plain object key"),
        ("s3://another-bucket/images/a.png", "not served"),
    ],
)
def test_task_object_key_tricks(svc: SecurityService, task_object: str, why: str) -> None:
    body = start_body(unique("key"), "sec-open", {"taskObject": task_object})
    refused(f"taskObject {task_object}", signed_call(svc, "POST", "/human-loops", body), 400, why)


# --- sign-in: CSRF, floods, lock-outs ------------------------------------------------------------------


def test_login_needs_a_fresh_form_token(svc: SecurityService) -> None:
    portal = Portal(svc.url)
    refused("login without token", portal.http.post("/login", data={"username": "rita", "password": "x"}), 403,
            "expired")
    token = portal.form_token()
    cookie = dict(portal.http.cookies)
    assert portal.login("rita", svc.passwords["rita"], token).status_code == 303
    replay = Portal(svc.url)
    replay.http.cookies.update(cookie)
    refused("login token used twice", replay.login("rita", svc.passwords["rita"], token), 403, "already used")
    other = Portal(svc.url)
    foreign = Portal(svc.url).form_token()
    refused("token of another browser", other.login("rita", svc.passwords["rita"], foreign), 403)
    big = portal.http.post("/login", data={"csrf_token": "x", "username": "rita", "password": "p" * 20_000})
    refused("oversized sign-in form", big, 413)


def test_login_flood_from_one_address_is_throttled(svc: SecurityService) -> None:
    attacker = Portal(svc.url, address="198.51.100.7")
    for attempt in range(8):
        response = attacker.login(f"guess{attempt}", "wrong-password")
        if attempt < 4:  # three free failures, and the fourth that starts the lock-out
            refused("wrong password", response, 401, "wrong password")
        else:
            refused("flooding address", response, 429, "too many")
            assert int(response.headers["retry-after"]) >= 1
    # A reviewer elsewhere still signs in.
    Portal(svc.url, address="203.0.113.50").sign_in("olga", svc.passwords["olga"])


def test_account_lockout_spans_addresses(svc: SecurityService) -> None:
    for i in range(4):
        refused("guess at paul", Portal(svc.url, address=f"192.0.2.{10 + i}").login("paul", "not-it-" + str(i)),
                401)
    locked = Portal(svc.url, address="192.0.2.99").login("paul", svc.passwords["paul"])
    refused("locked account, right password", locked, 429, "try again")
    assert int(locked.headers["retry-after"]) > 1


def test_metrics_count_sign_ins(svc: SecurityService) -> None:
    metrics = httpx.get(svc.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert metrics.status_code == 200
    counted = re.findall(r'hitl_review_signins_total\{outcome="(\w+)"\} (\d+)', metrics.text)
    assert {outcome for outcome, n in counted if float(n) > 0} >= {"success", "failure", "throttled"}


# --- sessions and roles ---------------------------------------------------------------------------------


def test_requests_without_a_valid_session(svc: SecurityService) -> None:
    anonymous = httpx.Client(base_url=svc.url)
    refused("queue without session", anonymous.get("/portal/api/queue"), 401, "sign in")
    anonymous.cookies.set("hitl_review_session", "forged.cookie.value")
    refused("forged cookie", anonymous.get("/portal/api/queue"), 401, "sign in")
    refused("claim without session", anonymous.post("/portal/api/tasks/x"), 401)


def test_logout_revokes_the_session(svc: SecurityService) -> None:
    portal = Portal(svc.url).sign_in("rita", svc.passwords["rita"])
    stolen = dict(portal.http.cookies)
    refused("logout without CSRF", portal.http.post("/logout", data={}), 403, "CSRF")
    assert portal.http.post("/logout", data={"csrf_token": portal.csrf}).status_code == 303
    thief = httpx.Client(base_url=svc.url, cookies=stolen)
    refused("session after logout", thief.get("/portal/api/queue"), 401)


def test_password_change_and_removal_revoke_sessions(svc: SecurityService, accounts: AccountStore) -> None:
    vera = Portal(svc.url).sign_in("vera", svc.passwords["vera"])
    assert vera.api("GET", "/portal/api/queue").status_code == 200
    svc.passwords["vera"] = "a-new-password-for-vera"
    accounts.set_password("vera", svc.passwords["vera"])
    refused("session after password change", vera.api("GET", "/portal/api/queue"), 401)
    gone = Portal(svc.url).sign_in("gone", svc.passwords["gone"])
    assert accounts.remove("gone")
    refused("session of a removed account", gone.api("GET", "/portal/api/queue"), 401)


def test_roles(svc: SecurityService, a2i: Any) -> None:
    rita = Portal(svc.url).sign_in("rita", svc.passwords["rita"])
    refused("operator page as reviewer", rita.http.get("/operator"), 403, "operator role")
    nora = Portal(svc.url).sign_in("nora", svc.passwords["nora"])
    assert nora.http.get("/operator").status_code == 200
    refused("queue without reviewer role", nora.api("GET", "/portal/api/queue"), 403, "reviewer role")
    name = start_loop(a2i, "sec-open")
    refused("claim without reviewer role", nora.claim(name), 403, "reviewer role")


def test_csrf_on_portal_posts(svc: SecurityService, a2i: Any) -> None:
    rita = Portal(svc.url).sign_in("rita", svc.passwords["rita"])
    name = start_loop(a2i, "sec-red")
    refused("claim without CSRF", rita.http.post(f"/portal/api/tasks/{name}"), 403, "CSRF")
    refused("claim with wrong CSRF", rita.api("POST", f"/portal/api/tasks/{name}", csrf="not-the-token"), 403, "CSRF")
    assert rita.claim(name).status_code == 200
    refused("answer without CSRF", rita.http.post(f"/portal/api/tasks/{name}/answer", json={"answer": box_answer()}),
            403, "CSRF")
    refused("skip without CSRF", rita.http.post(f"/portal/api/tasks/{name}/skip"), 403, "CSRF")


def test_teams(svc: SecurityService, a2i: Any) -> None:
    red = start_loop(a2i, "sec-red")
    bert = Portal(svc.url).sign_in("bert", svc.passwords["bert"])
    rita = Portal(svc.url).sign_in("rita", svc.passwords["rita"])
    assert red not in [t["name"] for t in bert.api("GET", "/portal/api/queue").json()["tasks"]]
    assert red in [t["name"] for t in rita.api("GET", "/portal/api/queue").json()["tasks"]]
    refused("claim across teams", bert.claim(red), 403, "another team")
    assert rita.claim(red).status_code == 200
    refused("image across teams", bert.api("GET", f"/portal/api/tasks/{red}/image"), 404)
    refused("answer across teams", bert.api("POST", f"/portal/api/tasks/{red}/answer", {"answer": box_answer()}),
            403, "another team")
    refused("skip across teams", bert.api("POST", f"/portal/api/tasks/{red}/skip"), 403, "another team")
    open_task = start_loop(a2i, "sec-open")
    assert bert.claim(open_task).status_code == 200  # a flow naming no team is open to everyone


# --- answers ------------------------------------------------------------------------------------------


@pytest.fixture
def claimed(svc: SecurityService, a2i: Any) -> tuple[Portal, str]:
    portal = Portal(svc.url).sign_in("olga", svc.passwords["olga"])
    name = start_loop(a2i, "sec-red")
    assert portal.claim(name).status_code == 200
    return portal, name


def test_hostile_answers(svc: SecurityService, claimed: tuple[Portal, str]) -> None:
    portal, name = claimed
    good = json.dumps({"answer": box_answer()}).encode()
    refused("NaN in answer", portal.answer_raw(name, good.replace(b"200", b"NaN", 1)), 400, "NaN")
    refused("Infinity in answer", portal.answer_raw(name, good.replace(b"200", b"Infinity", 1)), 400, "Infinity")
    refused("-Infinity in answer", portal.answer_raw(name, good.replace(b"200", b"-Infinity", 1)), 400)
    refused("deep answer", portal.answer_raw(name, b'{"answer": ' + b"[" * 60_000 + b"]" * 60_000 + b"}"), 400,
            "deeper")
    refused("not JSON", portal.answer_raw(name, b"{'answer': 1"), 400)
    refused("300 KiB answer", portal.answer_raw(name, b'{"answer": "' + b"x" * 300_000 + b'"}'), 413)
    outside = box_answer(left=600, top=10, width=100, height=100)
    refused("box outside the image", portal.api("POST", f"/portal/api/tasks/{name}/answer", {"answer": outside}),
            400, "inside")
    huge = box_answer(left=10**30, top=1, width=1, height=1)
    refused("absurd coordinate", portal.api("POST", f"/portal/api/tasks/{name}/answer", {"answer": huge}), 400)
    refused("answer to no task", portal.api("POST", "/portal/api/tasks/no-such-task/answer", {"answer": box_answer()}),
            404)
    assert portal.api("POST", f"/portal/api/tasks/{name}/answer", {"answer": box_answer()}).status_code == 200
    refused("second answer", portal.api("POST", f"/portal/api/tasks/{name}/answer", {"answer": box_answer()}), 409)


def test_answer_without_claim(svc: SecurityService, a2i: Any) -> None:
    rita = Portal(svc.url).sign_in("rita", svc.passwords["rita"])
    name = start_loop(a2i, "sec-red")
    refused("answer without claim", rita.api("POST", f"/portal/api/tasks/{name}/answer", {"answer": box_answer()}),
            409, "open the task")


def test_verification_and_classification_answers_stay_within_the_question(svc: SecurityService, a2i: Any) -> None:
    olga = Portal(svc.url).sign_in("olga", svc.passwords["olga"])
    verify = start_loop(a2i, "sec-verify", input_content())  # asks about "face" only
    assert olga.claim(verify).json()["verifyLabels"] == ["face"]
    face, hat = {"label": "face", "verified": True}, {"label": "hat", "verified": True}
    unasked = {"labelVerification": {"labels": [face, hat]}}
    refused("verifying an unasked label", olga.api("POST", f"/portal/api/tasks/{verify}/answer", {"answer": unasked}),
            400, "asked")
    twice = {"labelVerification": {"labels": [face, {"label": "face", "verified": False}]}}
    refused("verifying a label twice", olga.api("POST", f"/portal/api/tasks/{verify}/answer", {"answer": twice}),
            400, "twice")
    ok = {"labelVerification": {"labels": [{"label": "face", "verified": True}]}}
    assert olga.api("POST", f"/portal/api/tasks/{verify}/answer", {"answer": ok}).status_code == 200
    classes = start_loop(a2i, "sec-classes")
    assert olga.claim(classes).status_code == 200
    refused("unknown class", olga.api("POST", f"/portal/api/tasks/{classes}/answer",
                                      {"answer": {"category": {"label": "cat"}}}), 400, "must be one of")


def test_answer_after_the_deadline_is_refused(svc: SecurityService, a2i: Any) -> None:
    """Finding 7: the sweeper is idle in this service, so only the answer path can refuse it."""
    rita = Portal(svc.url).sign_in("rita", svc.passwords["rita"])
    name = start_loop(a2i, "sec-short")
    created = a2i.describe_human_loop(HumanLoopName=name)["CreationTime"]
    assert rita.claim(name).status_code == 200
    deadline = created + timedelta(seconds=3)
    procs.wait_until(lambda: datetime.now(UTC) > deadline + timedelta(milliseconds=200), 30, "loop deadline")
    late = rita.api("POST", f"/portal/api/tasks/{name}/answer", {"answer": box_answer()})
    refused("answer after the loop's deadline", late, 409, "expired")
    refused("image after the deadline", rita.api("GET", f"/portal/api/tasks/{name}/image"), 404)


# --- image proxy ------------------------------------------------------------------------------------------


def test_image_proxy_serves_only_raster_images(svc: SecurityService, a2i: Any) -> None:
    olga = Portal(svc.url).sign_in("olga", svc.passwords["olga"])
    fine = start_loop(a2i, "sec-red")
    refused("image without claim", olga.api("GET", f"/portal/api/tasks/{fine}/image"), 404)
    assert olga.claim(fine).status_code == 200
    image = olga.api("GET", f"/portal/api/tasks/{fine}/image")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.headers["content-disposition"].startswith("attachment")
    svg = start_loop(a2i, "sec-red", json.dumps({"taskObject": f"s3://{BUCKET}/{SVG_KEY}"}))
    assert olga.claim(svg).status_code == 200
    refused("SVG image", olga.api("GET", f"/portal/api/tasks/{svg}/image"), 415, "PNG")
    html = start_loop(a2i, "sec-red", json.dumps({"taskObject": f"s3://{BUCKET}/{HTML_AS_PNG_KEY}"}))
    assert olga.claim(html).status_code == 200
    refused("HTML labelled image/png", olga.api("GET", f"/portal/api/tasks/{html}/image"), 415)


# --- headers and the metrics token ---------------------------------------------------------------------


def test_metrics_token(svc: SecurityService) -> None:
    refused("metrics without token", httpx.get(svc.url + "/metrics"), 401)
    refused("metrics with wrong token", httpx.get(svc.url + "/metrics", headers={"Authorization": "Bearer nope"}), 401)
    prefix = {"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"}
    refused("metrics with a token prefix", httpx.get(svc.url + "/metrics", headers=prefix), 401)


def test_pages_and_json_are_not_cached(svc: SecurityService) -> None:
    login = httpx.get(svc.url + "/login")
    assert login.headers["cache-control"] == "no-store"
    rita = Portal(svc.url).sign_in("rita", svc.passwords["rita"])
    assert rita.api("GET", "/portal/api/queue").headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in login.headers  # loopback, plain HTTP
    assert "secure" not in login.headers["set-cookie"].lower()


def test_at_least_sixty_hostile_requests_were_refused() -> None:
    """The promise of this suite; runs last (file order), after every test above has tallied."""
    from tests.security.conftest import TALLY

    assert len(TALLY.answers) >= 60, len(TALLY.answers)
    assert all(400 <= status < 500 for _, status in TALLY.answers)
