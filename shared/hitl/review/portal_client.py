"""An HTTP client of the reviewer portal that behaves as the browser does.

It signs in through the login form (CSRF token from the form), reads the page's CSRF token, then
uses the same JSON calls as ``portal.js``: queue, open (claim), image, answer, skip.
"""

from __future__ import annotations

import http.cookiejar
import io
import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from PIL import Image

_FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def _loopback(host: str) -> bool:
    name = urllib.parse.urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _LoopbackIsSecure(http.cookiejar.DefaultCookiePolicy):
    """Browsers treat http://localhost and loopback addresses as secure origins and send ``Secure``
    cookies there (a service bound to 0.0.0.0 in a container sets them); so does this client."""

    def return_ok_secure(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        if cookie.secure and request.type == "http" and _loopback(request.host):
            return True
        return bool(super().return_ok_secure(cookie, request))


class PortalHTTPError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class PortalClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("the portal URL must be http(s)")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._jar = http.cookiejar.CookieJar(policy=_LoopbackIsSecure())
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self._jar))
        self.csrf = ""

    def _request(
        self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, str]:
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.base_url + path, data=data, method=method, headers=headers or {}
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read(), response.headers.get_content_type()
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            try:
                message = json.loads(body).get("error", body)
            except ValueError:
                message = body
            raise PortalHTTPError(error.code, str(message)[:300]) from None

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        headers = {"X-CSRF-Token": self.csrf}
        data = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(payload).encode()
        _, body, _ = self._request(method, path, data, headers)
        return json.loads(body) if body else None

    def sign_in(self, name: str, password: str) -> None:
        _, page, _ = self._request("GET", "/login")
        found = _FORM_TOKEN.search(page.decode())
        if not found:
            raise PortalHTTPError(500, "no CSRF token on the sign-in form")
        form = urllib.parse.urlencode({"csrf_token": found.group(1), "username": name, "password": password})
        _, body, _ = self._request(
            "POST", "/login", form.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        )
        token = _META_TOKEN.search(body.decode())
        if not token or "/logout" not in body.decode():
            raise PortalHTTPError(401, f"sign-in as {name} failed")
        self.csrf = token.group(1)

    def queue(self) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = self._json("GET", "/portal/api/queue")["tasks"]
        return tasks

    def open_task(self, name: str) -> dict[str, Any]:
        task: dict[str, Any] = self._json("POST", f"/portal/api/tasks/{urllib.parse.quote(name)}")
        return task

    def image_size(self, task: dict[str, Any]) -> tuple[int, int]:
        _, body, _ = self._request("GET", task["imageUrl"])
        with Image.open(io.BytesIO(body)) as image:
            return image.width, image.height

    def submit(self, name: str, answer: dict[str, Any]) -> None:
        self._json("POST", f"/portal/api/tasks/{urllib.parse.quote(name)}/answer", {"answer": answer})

    def skip(self, name: str) -> None:
        self._json("POST", f"/portal/api/tasks/{urllib.parse.quote(name)}/skip")
